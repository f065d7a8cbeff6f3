//! The fake Gitter over real HTTP: auth, rate-limit headers, OAuth, the
//! stream, and fault controls.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_sim::fake_gitter::{FakeGitter, FaultLimit, GitterConfig, GitterHost, Hostile};
use serde_json::{Value, json};

/// Read a streaming response until `done(collected)` or the timeout.
async fn read_stream_until(
    resp: &mut reqwest::Response,
    secs: u64,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut got = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            got.push_str(&String::from_utf8_lossy(&chunk));
            if done(&got) {
                break;
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn every_v1_route_needs_a_token_and_accepts_all_three_forms() {
    let g = gitter().await;
    let c = client();
    let url = format!("{}/v1/user", g.base_url);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().get("x-ratelimit-limit").is_none(),
        "unauthenticated requests are not counted"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Unauthorized"})
    );
    for req in [
        c.get(&url).bearer_auth(ALICE_TOKEN),
        c.get(&url).header("x-access-token", ALICE_TOKEN),
        c.get(format!("{url}?access_token={ALICE_TOKEN}")),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body[0]["username"], "alice", "GET /v1/user is an array");
    }
    let me: Value = c
        .get(format!("{url}/me"))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["providers"], json!(["github"]));
    let bob_id = g.user_id("bob").unwrap();
    let r = c
        .get(format!("{url}/{bob_id}"))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(format!("{}/v1/nope", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn chunked_request_bodies_are_refused_with_406() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        bytes::Bytes::from_static(b"{\"text\":\"hi\"}"),
    )]);
    let r = client()
        .post(format!("{}/v1/rooms/{room}/chatMessages", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Transfer-Encoding: chunked")
    );
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let g = gitter_with(GitterConfig {
        rate_limit: 2,
        ..GitterConfig::default()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/user/me/rooms", g.base_url);
    let before = g.now_ms();
    let first = c.get(&url).bearer_auth(ALICE_TOKEN).send().await.unwrap();
    let h = first.headers();
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert_eq!(h["x-ratelimit-remaining"], "1");
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(
        reset >= before + 59_000 && reset <= before + 61_000,
        "absolute Unix ms"
    );
    c.get(&url).bearer_auth(ALICE_TOKEN).send().await.unwrap();
    let limited = c.get(&url).bearer_auth(ALICE_TOKEN).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        json!({"error": "API rate limit exceeded"})
    );
    // Bob has his own bucket; the window reopens after 60 s.
    assert_eq!(
        c.get(&url)
            .bearer_auth(BOB_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    g.advance_clock(Duration::from_secs(61));
    assert_eq!(
        c.get(&url)
            .bearer_auth(ALICE_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn oauth_login_as_shortcut_then_token_exchange() {
    let g = gitter().await;
    let c = client();
    let cfg = GitterConfig::default();
    let authorize = |redirect: &str| {
        format!(
            "{}?client_id={}&response_type=code&redirect_uri={}&state=s1&login_as=carol",
            g.authorize_url(),
            cfg.client_id,
            url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        )
    };
    let bad = c
        .get(authorize("http://evil.example/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("does not match registered URI")
    );
    let r = c.get(authorize(&cfg.redirect_uri)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&cfg.redirect_uri));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "s1");
    let code = q["code"].clone();
    assert_eq!(code.len(), 40);
    let form = [
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", cfg.redirect_uri.as_str()),
        ("grant_type", "authorization_code"),
    ];
    let r = c.post(g.token_url()).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    let token = tok["access_token"].as_str().unwrap().to_string();
    // The code is gone; JSON bodies work too.
    let body: Value = form
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let r = c.post(g.token_url()).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let me: Value = c
        .get(format!("{}/v1/user/me", g.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "carol");
    // Without login_as the sign-in form lists the users.
    let page = c
        .get(format!(
            "{}?client_id={}&response_type=code&redirect_uri={}",
            g.authorize_url(),
            cfg.client_id,
            url::form_urlencoded::byte_serialize(cfg.redirect_uri.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<form method=\"post\"") && page.contains("value=\"bob\""));
}

#[tokio::test]
async fn a_stream_receives_posted_messages_and_heartbeats() {
    let g = gitter_with(GitterConfig {
        heartbeat: Duration::from_millis(100),
        ..GitterConfig::default()
    })
    .await;
    let room = g.room_id("org/room").unwrap();
    let mut resp = client()
        .get(format!(
            "{}/v1/rooms/{room}/chatMessages",
            g.stream_base_url()
        ))
        .bearer_auth(BOB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(eventually(5, || g.stream_count(Some("org/room")) == 1).await);
    // One heartbeat first, then a message posted through the REST API.
    let got = read_stream_until(&mut resp, 5, |s| s.contains(" \n")).await;
    assert!(got.starts_with(" \n"), "{got:?}");
    let posted: Value = client()
        .post(format!("{}/v1/rooms/{room}/chatMessages", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .json(&json!({"text": "hello stream"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = read_stream_until(&mut resp, 5, |s| s.contains("hello stream")).await;
    let line = got.lines().find(|l| l.contains("hello stream")).unwrap();
    let msg: Value = serde_json::from_str(line).unwrap();
    assert_eq!(msg["id"], posted["id"]);
    assert_eq!(msg["fromUser"]["username"], "alice");
    // Dropping the room's streams ends the response.
    assert_eq!(g.drop_streams(Some("org/room")), 1);
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tail = Vec::new();
        while let Ok(Some(c)) = resp.chunk().await {
            tail.extend_from_slice(&c);
        }
        tail
    })
    .await;
    assert!(rest.is_ok(), "stream must end after drop_streams");
}

#[tokio::test]
async fn stream_auth_errors_come_back_as_json_before_streaming() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let r = client()
        .get(format!(
            "{}/v1/rooms/{room}/chatMessages",
            g.stream_base_url()
        ))
        .bearer_auth("0000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Unauthorized"})
    );
}

#[tokio::test]
async fn revoking_a_token_closes_its_streams_and_gives_401() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let c = client();
    let mut resp = c
        .get(format!(
            "{}/v1/rooms/{room}/chatMessages?access_token={BOB_TOKEN}",
            g.stream_base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(eventually(5, || g.stream_count(None) == 1).await);
    let r = c
        .post(format!("{}/_sim/gitter/revoke", g.base_url))
        .json(&json!({"token": BOB_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revoked"], true);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(ended.is_ok());
    let r = c
        .get(format!("{}/v1/user", g.base_url))
        .bearer_auth(BOB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn injected_failures_and_the_scripting_endpoints() {
    let g = gitter().await;
    let c = client();
    c.post(format!("{}/_sim/gitter/fail", g.base_url))
        .json(&json!({"status": 503, "count": 2}))
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let r = c
            .get(format!("{}/v1/user/me/rooms", g.base_url))
            .bearer_auth(ALICE_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Service Unavailable"})
        );
    }
    g.fail_next(1, 429);
    let r = c
        .get(format!("{}/v1/user/me/rooms", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("x-ratelimit-reset").is_some());
    let r = c
        .get(format!("{}/v1/user/me/rooms", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Post as a Gitter user through the control API and through Rust.
    let r = c
        .post(format!("{}/_sim/gitter/post", g.base_url))
        .json(&json!({"room": "org/room", "username": "bob", "text": "via control"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g.post_message("org/room", "alice", "via rust").unwrap();
    let texts: Vec<String> = g
        .messages("org/room")
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["via control", "via rust"]);
    assert_eq!(
        g.post_message("org/room", "carol", "not a member")
            .unwrap_err()
            .status,
        403
    );
}

#[tokio::test]
async fn join_leave_and_messages_over_http_with_form_bodies() {
    let g = gitter().await;
    let c = client();
    let carol = g.token_for("carol").unwrap();
    let resolved: Value = c
        .post(format!("{}/v1/rooms", g.base_url))
        .bearer_auth(&carol)
        .form(&[("uri", "Org/Room")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = resolved["id"].as_str().unwrap().to_string();
    assert_eq!(resolved["roomMember"], false);
    let joined = c
        .post(format!("{}/v1/user/me/rooms", g.base_url))
        .bearer_auth(&carol)
        .json(&json!({"id": room}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 200);
    let carol_id = g.user_id("carol").unwrap();
    let r = c
        .post(format!("{}/v1/rooms/{room}/chatMessages", g.base_url))
        .bearer_auth(&carol)
        .json(&json!({"text": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["error"].clone()
        ),
        (400, json!("Text is required"))
    );
    let m: Value = c
        .post(format!("{}/v1/rooms/{room}/chatMessages", g.base_url))
        .bearer_auth(&carol)
        .json(&json!({"text": "hi all"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mid = m["id"].as_str().unwrap();
    let r = c
        .delete(format!("{}/v1/rooms/{room}/chatMessages/{mid}", g.base_url))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .delete(format!("{}/v1/rooms/{room}/users/{carol_id}", g.base_url))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let r = c
        .delete(format!("{}/v1/rooms/{room}/users/{carol_id}", g.base_url))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_stream_lives_on_its_own_host_with_the_rest_paths() {
    let g = gitter_with(GitterConfig {
        heartbeat: Duration::from_millis(50),
        ..GitterConfig::default()
    })
    .await;
    let room = g.room_id("org/room").unwrap();
    assert_ne!(g.stream_base_url(), g.api_base_url());
    // The same path on the API host is the REST list, not a stream.
    let rest: Value = get_json(
        format!("{}/v1/rooms/{room}/chatMessages", g.api_base_url()),
        ALICE_TOKEN,
    )
    .await
    .1;
    assert!(rest.is_array());
    // The stream host has no REST routes.
    let r = client()
        .get(format!("{}/v1/user", g.stream_base_url()))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_gitter_404s_after_auth() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let c = client();
    let msg = g.post_message("org/room", "alice", "hi").unwrap();
    let mid = msg["id"].as_str().unwrap();
    // PATCH is not mounted on a message (§3.8): 404, not 405.
    let r = c
        .patch(format!("{}/v1/rooms/{room}/chatMessages/{mid}", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("x-ratelimit-remaining").is_some());
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Not Found"})
    );
    // Without a token an unknown route of an authenticated router is a 401; of no router
    // (or outside /v1) a plain 404.
    let r = c
        .get(format!("{}/v1/rooms/{room}/nope", g.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{}/v1/nope", g.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/nope", g.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Not Found"})
    );
}

#[tokio::test]
async fn a_malformed_body_is_refused_before_auth_as_express_does() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let url = format!("{}/v1/rooms/{room}/chatMessages", g.base_url);
    for token in [None, Some(ALICE_TOKEN)] {
        let mut req = client()
            .post(&url)
            .header("content-type", "application/json")
            .body("{not json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "token {token:?}");
        assert!(
            r.headers().get("x-ratelimit-limit").is_none(),
            "refused before the limiter counts it"
        );
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    // A well-formed body without a token is the 401.
    let r = client()
        .post(&url)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn query_parameters_are_read_one_by_one() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let ids: Vec<String> = (0..5)
        .map(|i| {
            g.post_message("org/room", "alice", &format!("m{i}"))
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let list = |query: String| {
        let url = format!("{}/v1/rooms/{room}/chatMessages?{query}", g.base_url);
        async move {
            let v: Value = get_json(url, ALICE_TOKEN).await.1;
            v.as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // A bad limit falls back to the default and keeps afterId.
    assert_eq!(
        list(format!("afterId={}&limit=abc&includeThreads=1", ids[2])).await,
        ids[3..].to_vec()
    );
    // An unknown aroundId gives the latest page whatever else was asked.
    assert_eq!(
        list(format!(
            "aroundId=000000000000000000000000&afterId={}",
            ids[3]
        ))
        .await,
        ids.clone()
    );
    // Upper-case ObjectIds name the same room.
    let upper = room.to_ascii_uppercase();
    let r = client()
        .get(format!("{}/v1/rooms/{upper}/users", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_pre_approved_user_is_redirected_at_once() {
    let cfg = GitterConfig {
        auto_approve: Some("carol".into()),
        ..GitterConfig::default()
    };
    let g = gitter_with(cfg.clone()).await;
    let r = client()
        .get(format!(
            "{}?client_id={}&response_type=code&redirect_uri={}&state=xyz",
            g.authorize_url(),
            cfg.client_id,
            url::form_urlencoded::byte_serialize(cfg.redirect_uri.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["code"].len(), 40);
}

#[tokio::test]
async fn texts_are_measured_in_utf16_units_like_gitter() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let post = |text: String| {
        let url = format!("{}/v1/rooms/{room}/chatMessages", g.base_url);
        async move {
            client()
                .post(url)
                .bearer_auth(ALICE_TOKEN)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // 2048 emoji are 4096 UTF-16 units; one more is too long.
    assert_eq!(post("😀".repeat(2048)).await, 200);
    assert_eq!(post("😀".repeat(2049)).await, 400);
}

#[tokio::test]
async fn a_token_in_the_user_agent_is_accepted() {
    let g = gitter().await;
    let r = client()
        .get(format!("{}/v1/user", g.base_url))
        .header("user-agent", format!("my-bot/1.0 Token/{ALICE_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cors_lets_a_browser_client_in_and_read_the_rate_headers() {
    let g = gitter().await;
    let url = format!("{}/v1/user", g.base_url);
    let pre = client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204, "preflight comes before auth");
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(
        pre.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let r = client()
        .get(&url)
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("X-RateLimit-Reset")
    );
}

#[tokio::test]
async fn lean_and_lookups_shape_the_message_list() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    g.post_message("org/room", "alice", "Rust is fun").unwrap();
    g.post_message("org/room", "bob", "nothing to see").unwrap();
    g.post_message("org/room", "bob", "more rust, more FUN")
        .unwrap();
    let base = format!("{}/v1/rooms/{room}/chatMessages", g.base_url);
    // lean: no display names, avatars or empty arrays.
    let (_, lean) = get_json(format!("{base}?lean=true"), ALICE_TOKEN).await;
    assert!(
        lean[0]["fromUser"].get("displayName").is_none(),
        "{}",
        lean[0]
    );
    assert!(lean[0].get("meta").is_none(), "{}", lean[0]);
    assert_eq!(lean[0]["fromUser"]["username"], "alice");
    // lookups=user: ids in the items, users once in the lookups.
    let (_, looked) = get_json(format!("{base}?lookups=user"), ALICE_TOKEN).await;
    let bob_id = g.user_id("bob").unwrap();
    assert_eq!(looked["items"][2]["fromUser"], json!(bob_id));
    assert_eq!(looked["lookups"]["users"][&bob_id]["username"], "bob");
    assert_eq!(looked["lookups"]["users"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn an_admins_at_all_is_an_announcement_to_every_member() {
    let g = gitter().await;
    let by_admin = g
        .post_message("org/room", "alice", "@/all release today")
        .unwrap();
    let m = &by_admin["mentions"][0];
    assert_eq!(m["screenName"], "/all");
    assert_eq!(m["group"], true);
    assert_eq!(m["announcement"], true);
    assert_eq!(m["userIds"].as_array().unwrap().len(), 2);
    assert!(by_admin["html"].as_str().unwrap().contains("groupmention"));
    // From a member who is not an admin it mentions nobody.
    let by_member = g.post_message("org/room", "bob", "@/all me too").unwrap();
    assert_eq!(by_member["mentions"], json!([]));
}

// ----------------------------------------------------------------------
// fault modes (issue 12)

async fn control(g: &FakeGitter, what: &str, body: Value) {
    let r = client()
        .post(format!("{}/_sim/gitter/{what}", g.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{what}");
}

async fn open_stream(g: &FakeGitter, token: &str) -> reqwest::Response {
    let room = g.room_id("org/room").unwrap();
    let r = client()
        .get(format!(
            "{}/v1/rooms/{room}/chatMessages",
            g.stream_base_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// The rest of a body, if it ends within `secs` (`None`: still going).
async fn body_end(resp: &mut reqwest::Response, secs: u64) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(secs), async {
        let mut all = Vec::new();
        while let Ok(Some(c)) = resp.chunk().await {
            all.extend_from_slice(&c);
        }
        all
    })
    .await
    .ok()
}

fn heartbeat_config() -> GitterConfig {
    GitterConfig {
        heartbeat: Duration::from_millis(50),
        ..GitterConfig::default()
    }
}

#[tokio::test]
async fn a_lost_send_answer_still_posts_the_message_and_streams_it() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let mut stream = open_stream(&g, BOB_TOKEN).await;
    assert!(eventually(5, || g.stream_count(None) == 1).await);
    control(&g, "lose-answers", json!({"count": 1})).await;
    assert_eq!(g.pending_lost_sends(), 1);
    let auth = format!("Bearer {ALICE_TOKEN}");
    let (bytes, ending) = raw::exchange(
        g.addr,
        "POST",
        &format!("/v1/rooms/{room}/chatMessages"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"text":"nobody heard back"}"#,
    )
    .await;
    assert!(
        bytes.is_empty(),
        "no status line: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(ending.closed(), "{ending:?}");
    let texts: Vec<Value> = g.messages("org/room").unwrap();
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0]["text"], "nobody heard back");
    let got = read_stream_until(&mut stream, 5, |s| s.contains("nobody heard back")).await;
    assert!(got.contains(texts[0]["id"].as_str().unwrap()), "{got:?}");
    // Spent: the next send is answered.
    assert_eq!(g.pending_lost_sends(), 0);
    let (s, v) = send_json(
        reqwest::Method::POST,
        format!("{}/v1/rooms/{room}/chatMessages", g.base_url),
        ALICE_TOKEN,
        json!({"text": "answered"}),
    )
    .await;
    assert_eq!((s, v["text"].as_str()), (200, Some("answered")));
    // Through Rust, what a client library sees: an error without a status.
    g.lose_send_answers(1);
    let err = client()
        .post(format!("{}/v1/rooms/{room}/chatMessages", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .json(&json!({"text": "third"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert_eq!(g.messages("org/room").unwrap().len(), 3);
}

#[tokio::test]
async fn a_long_delay_covers_the_api_and_the_token_endpoint_and_clearing_ends_it() {
    let g = gitter().await;
    control(&g, "delay", json!({"ms": 60000})).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cfg = GitterConfig::default();
    let delayed = [
        impatient
            .get(format!("{}/v1/user", g.base_url))
            .bearer_auth(ALICE_TOKEN),
        impatient
            .post(format!("{}/v1/rooms", g.base_url))
            .bearer_auth(ALICE_TOKEN)
            .json(&json!({"uri": "org/room"})),
        impatient.get(format!("{}/v1/nope", g.base_url)),
        impatient.get(format!("{}/nowhere", g.base_url)),
        impatient.post(g.token_url()).form(&[
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_str()),
            ("code", "0000"),
            ("grant_type", "authorization_code"),
        ]),
    ];
    for req in delayed {
        let err = req.send().await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }
    // Not delayed: the controls, the browser's sign-in page, the stream host.
    let r = impatient
        .get(format!(
            "{}/_sim/gitter/rooms/org%2Froom/messages",
            g.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = impatient
        .get(format!(
            "{}?client_id={}&response_type=code&redirect_uri={}",
            g.authorize_url(),
            cfg.client_id,
            url::form_urlencoded::byte_serialize(cfg.redirect_uri.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _stream = open_stream(&g, BOB_TOKEN).await;
    // A patient client waiting when the faults are cleared gets its answer.
    let url = format!("{}/v1/user", g.base_url);
    let waiting = tokio::spawn(async move { get_json(url, ALICE_TOKEN).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    control(&g, "clear-faults", json!({})).await;
    let (s, v) = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("answered soon after the clear")
        .unwrap();
    assert_eq!((s, v[0]["username"].as_str()), (200, Some("alice")));
}

#[tokio::test]
async fn flapping_streams_answer_200_and_end_at_once_then_recover() {
    let g = gitter_with(heartbeat_config()).await;
    let typo = client()
        .post(format!("{}/_sim/gitter/flap-streams", g.base_url))
        .json(&json!({"cout": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), 400, "a typo is not read as once");
    control(&g, "flap-streams", json!({"count": 2})).await;
    for _ in 0..2 {
        let mut r = open_stream(&g, BOB_TOKEN).await;
        assert_eq!(
            body_end(&mut r, 2).await,
            Some(Vec::new()),
            "ends at once, empty"
        );
    }
    assert_eq!(g.stream_count(None), 0);
    let mut r = open_stream(&g, BOB_TOKEN).await;
    let got = read_stream_until(&mut r, 5, |s| s.contains(" \n")).await;
    assert!(
        got.contains(" \n"),
        "the third stream is a real one: {got:?}"
    );
    drop(r);
    // For a period, through Rust; it ends on the server's clock.
    g.flap_streams(FaultLimit::For(Duration::from_secs(60)));
    for _ in 0..3 {
        let mut r = open_stream(&g, BOB_TOKEN).await;
        assert_eq!(body_end(&mut r, 2).await, Some(Vec::new()));
    }
    g.advance_clock(Duration::from_secs(61));
    let mut r = open_stream(&g, BOB_TOKEN).await;
    let got = read_stream_until(&mut r, 5, |s| s.contains(" \n")).await;
    assert!(got.contains(" \n"), "{got:?}");
}

#[tokio::test]
async fn silent_streams_send_nothing_until_the_silence_ends() {
    let g = gitter_with(heartbeat_config()).await;
    let mut before = open_stream(&g, BOB_TOKEN).await;
    let got = read_stream_until(&mut before, 5, |s| s.contains(" \n")).await;
    assert!(got.contains(" \n"));
    let silenced_at = tokio::time::Instant::now();
    control(&g, "silence-streams", json!({"duration_ms": 2000})).await;
    let mut during = open_stream(&g, BOB_TOKEN).await;
    g.post_message("org/room", "alice", "said during the silence")
        .unwrap();
    // Half a second of nothing at all on both, heartbeats included.
    for resp in [&mut before, &mut during] {
        let quiet = tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await;
        assert!(quiet.is_err(), "a byte during the silence: {quiet:?}");
    }
    // Then the message (held, not lost) and the heartbeats again.
    for resp in [&mut before, &mut during] {
        let got = read_stream_until(resp, 5, |s| s.contains("said during the silence")).await;
        assert!(got.contains("said during the silence"), "{got:?}");
        assert!(silenced_at.elapsed() >= Duration::from_millis(1900));
        let got = read_stream_until(resp, 5, |s| s.contains(" \n")).await;
        assert!(got.contains(" \n"));
    }
    // Clearing faults ends a silence early.
    g.silence_streams_for(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.clear_faults();
    let got = read_stream_until(&mut during, 2, |s| s.contains(" \n")).await;
    assert!(got.contains(" \n"), "heartbeats back after the clear");
}

#[tokio::test]
async fn a_huge_body_is_streamed_lazily_for_the_next_request_only() {
    let g = gitter().await;
    control(
        &g,
        "hostile",
        json!({"kind": "huge_body", "bytes": 1u64 << 30, "status": 500, "count": 1}),
    )
    .await;
    let mut r = client()
        .get(format!("{}/v1/user/me/rooms", g.base_url))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.content_length().is_none(), "no length announced");
    // The first 8 MiB arrive (of 1 GiB); the client stops there.
    let mut first = Vec::new();
    while first.len() < 8 << 20 {
        let c = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("bytes keep coming")
            .unwrap()
            .expect("not the end yet");
        first.extend_from_slice(&c);
    }
    assert!(first.starts_with(b"[\"x"));
    assert!(first[2..].iter().all(|b| *b == b'x'));
    drop(r);
    let (s, v) = get_json(format!("{}/v1/user/me/rooms", g.base_url), ALICE_TOKEN).await;
    assert_eq!(s, 200);
    assert!(v.is_array());
    // A period through Rust, a 200 this time; its size is what was asked.
    g.hostile(
        Hostile::HugeBody {
            bytes: 3 << 20,
            status: 200,
        },
        FaultLimit::For(Duration::from_secs(60)),
    );
    for _ in 0..2 {
        let r = client()
            .get(format!("{}/v1/user", g.base_url))
            .bearer_auth(ALICE_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 3 << 20);
    }
    g.clear_faults();
    let (s, _) = get_json(format!("{}/v1/user", g.base_url), ALICE_TOKEN).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn an_endless_line_never_sends_a_newline() {
    let g = gitter_with(heartbeat_config()).await;
    control(&g, "hostile", json!({"kind": "endless_line", "count": 1})).await;
    let mut r = open_stream(&g, BOB_TOKEN).await;
    let mut seen = 0usize;
    while seen < 4 << 20 {
        let c = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("bytes keep coming")
            .unwrap()
            .expect("never ends");
        assert!(!c.contains(&b'\n'), "a newline after {seen} bytes");
        seen += c.len();
    }
    assert_eq!(g.stream_count(None), 0, "not a registered stream");
    drop(r);
    let mut r = open_stream(&g, BOB_TOKEN).await;
    let got = read_stream_until(&mut r, 5, |s| s.contains(" \n")).await;
    assert!(got.contains(" \n"), "the next stream is a real one");
}

#[tokio::test]
async fn a_slow_drip_delivers_the_real_answer_a_chunk_at_a_time() {
    let g = gitter().await;
    let room = g.room_id("org/room").unwrap();
    let url = format!("{}/v1/rooms/{room}/users", g.base_url);
    let (_, plain) = get_json(&url, ALICE_TOKEN).await;
    let expected = plain.to_string().len();
    control(
        &g,
        "hostile",
        json!({"kind": "slow_drip", "chunk_bytes": 64, "interval_ms": 40, "count": 1}),
    )
    .await;
    let started = tokio::time::Instant::now();
    let mut r = client()
        .get(&url)
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.content_length(),
        Some(expected as u64),
        "the true length, announced"
    );
    let mut chunks = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        chunks.push(c);
    }
    let body: Vec<u8> = chunks.concat();
    assert!(
        chunks.iter().all(|c| c.len() <= 64),
        "{:?}",
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
    let n = expected.div_ceil(64);
    assert!(n >= 3, "a body of {expected} bytes");
    assert!(
        started.elapsed() >= Duration::from_millis(40 * (n as u64 - 1)),
        "{n} chunks in {:?}",
        started.elapsed()
    );
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), plain);
    // Only the next one.
    let quick = tokio::time::Instant::now();
    let (s, v) = get_json(&url, ALICE_TOKEN).await;
    assert_eq!((s, &v), (200, &plain));
    assert!(quick.elapsed() < Duration::from_millis(40 * (n as u64 - 1)));
}

#[tokio::test]
async fn refused_connections_on_either_host_then_the_same_addresses_serve_again() {
    let g = gitter_with(heartbeat_config()).await;
    let mut stream = open_stream(&g, BOB_TOKEN).await;
    control(
        &g,
        "refuse-connections",
        json!({"duration_ms": 60000, "host": "stream"}),
    )
    .await;
    assert!(g.refusing_connections(GitterHost::Stream));
    assert!(!g.refusing_connections(GitterHost::Api));
    // The open stream is cut (no clean end of the body), new connects refused.
    let cut = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stream is cut");
    assert!(cut.is_err(), "cut, not ended: {cut:?}");
    assert!(raw::connect_refused(g.stream_addr).await);
    let (s, _) = get_json(format!("{}/v1/user", g.base_url), ALICE_TOKEN).await;
    assert_eq!(s, 200, "the API host still answers");
    g.clear_faults();
    assert!(eventually(2, || !g.refusing_connections(GitterHost::Both)).await);
    let mut stream = open_stream(&g, BOB_TOKEN).await;
    let got = read_stream_until(&mut stream, 5, |s| s.contains(" \n")).await;
    assert!(got.contains(" \n"));
    // The API host through Rust, for a short while.
    g.refuse_connections_for(Duration::from_millis(300), GitterHost::Api)
        .await;
    assert!(raw::connect_refused(g.addr).await);
    assert!(eventually(3, || !g.refusing_connections(GitterHost::Api)).await);
    let (s, _) = get_json(format!("{}/v1/user", g.base_url), ALICE_TOKEN).await;
    assert_eq!(s, 200);
}
