//! The fake homeserver over real HTTP: AS auth and masquerading, registration,
//! room flows, txn dedupe, ping, and Synapse-style transaction pushes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A CS request as the AS (optionally masquerading).
fn as_call(
    method: reqwest::Method,
    base: &str,
    path: &str,
    user: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut url = format!("{base}/_matrix/client/v3{path}");
    if let Some(u) = user {
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str(&format!(
            "user_id={}",
            url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
        ));
    }
    client().request(method, url).bearer_auth(AS_TOKEN)
}

async fn body(r: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn register_ghost(base: &str, local: &str) -> String {
    let (status, v) = body(
        as_call(reqwest::Method::POST, base, "/register", None)
            .json(&json!({"type": "m.login.application_service", "username": local, "inhibit_login": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["user_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn auth_errors_and_masquerading_are_synapse_shaped() {
    let hs = homeserver(None).await;
    let c = client();
    let url = format!("{}/_matrix/client/v3/account/whoami", hs.base_url);
    let (s, v) = body(c.get(&url)).await;
    assert_eq!((s, v["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    let (s, v) = body(c.get(&url).bearer_auth("nope")).await;
    assert_eq!((s, v["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        None,
    ))
    .await;
    assert_eq!((s, v["user_id"].as_str()), (200, Some(BOT)));
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        Some("@someone:localhost"),
    ))
    .await;
    assert_eq!((s, v["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    assert!(v["error"].as_str().unwrap().contains("cannot masquerade"));
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        Some("@_gitter_alice:localhost"),
    ))
    .await;
    assert_eq!(s, 403);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("has not registered this user")
    );
    let alice = register_ghost(&hs.base_url, "_gitter_alice").await;
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        Some(&alice),
    ))
    .await;
    assert_eq!((s, v["user_id"].as_str()), (200, Some(alice.as_str())));
    let (s, v) = body(
        as_call(reqwest::Method::POST, &hs.base_url, "/register", None)
            .json(&json!({"type": "m.login.application_service", "username": "_gitter_alice", "inhibit_login": true})),
    )
    .await;
    assert_eq!((s, v["errcode"].as_str()), (400, Some("M_USER_IN_USE")));
    let (s, v) = body(c.get(format!("{}/_matrix/client/v3/nope", hs.base_url))).await;
    assert_eq!((s, v["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")));
    let (s, v) = body(c.get(format!("{}/_matrix/client/versions", hs.base_url))).await;
    assert_eq!(s, 200);
    assert!(
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "v1.12")
    );
}

#[tokio::test]
async fn portal_flow_with_txn_dedupe_and_the_v12_power_level_rule() {
    let hs = homeserver(None).await;
    let human = hs.register_human("human").unwrap();
    let ghost = register_ghost(&hs.base_url, "_gitter_bob").await;
    let base = &hs.base_url;
    // The v12 pitfall: the creator in the override is refused (but a room was made).
    let (s, v) = body(
        as_call(reqwest::Method::POST, base, "/createRoom", None).json(&json!({
            "preset": "private_chat",
            "power_level_content_override": {"users": {BOT: 100}}
        })),
    )
    .await;
    assert_eq!((s, v["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    assert_eq!(hs.rooms_of(BOT).len(), 1, "orphan room left behind");
    // A proper portal: bot creates, invites the human and the ghost.
    let (s, v) = body(
        as_call(reqwest::Method::POST, base, "/createRoom", None).json(&json!({
            "preset": "private_chat", "name": "org/room", "topic": "t",
            "invite": [human.user_id, ghost],
            "power_level_content_override": {"users": {human.user_id.clone(): 0}}
        })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    assert!(!room.contains(':'));
    hs.join(&human.user_id, &room).unwrap();
    let (s, _) = body(as_call(
        reqwest::Method::POST,
        base,
        &format!("/rooms/{room}/join"),
        Some(&ghost),
    ))
    .await;
    assert_eq!(s, 200);
    // Send twice with the same txn id: one event.
    let send = |txn: &str| {
        as_call(
            reqwest::Method::PUT,
            base,
            &format!("/rooms/{room}/send/m.room.message/{txn}?ts=1600000000000"),
            Some(&ghost),
        )
        .json(&json!({"msgtype": "m.text", "body": "from gitter"}))
    };
    let (s1, a) = body(send("g1")).await;
    let (s2, b) = body(send("g1")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a["event_id"], b["event_id"]);
    let seen = hs.messages_seen(&human.user_id, &room);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].sender.as_str(), seen[0].body.as_deref()),
        (ghost.as_str(), Some("from gitter"))
    );
    // Display name change and member lists.
    let (s, _) = body(
        as_call(
            reqwest::Method::PUT,
            base,
            &format!("/profile/{ghost}/displayname"),
            Some(&ghost),
        )
        .json(&json!({"displayname": "Bob (Gitter)"})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, jm) = body(as_call(
        reqwest::Method::GET,
        base,
        &format!("/rooms/{room}/joined_members"),
        None,
    ))
    .await;
    assert_eq!(jm["joined"][&ghost]["display_name"], "Bob (Gitter)");
    // The creator may kick the human; a bot notice is visible to the human first.
    let (s, _) = body(
        as_call(
            reqwest::Method::PUT,
            base,
            &format!("/rooms/{room}/send/m.room.message/n1"),
            None,
        )
        .json(&json!({"msgtype": "m.notice", "body": "You are now logged in as bob"})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(hs.sees_notice_containing(&human.user_id, "logged in as bob"));
    let (s, _) = body(
        as_call(
            reqwest::Method::POST,
            base,
            &format!("/rooms/{room}/kick"),
            None,
        )
        .json(&json!({"user_id": human.user_id})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) =
        body(as_call(reqwest::Method::POST, base, "/createRoom", None).body("not json")).await;
    assert_eq!((s, v["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    let (s, v) = body(
        client()
            .post(format!("{base}/_matrix/media/v3/upload?filename=a.png"))
            .bearer_auth(AS_TOKEN)
            .header("content-type", "image/png")
            .body(vec![1u8, 2, 3]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["content_uri"]
            .as_str()
            .unwrap()
            .starts_with("mxc://localhost/")
    );
}

#[tokio::test]
async fn as_push_is_retried_with_the_same_txn_id_until_200() {
    let (as_url, rec) = as_receiver(2).await;
    let hs = homeserver(Some(&as_url)).await;
    let human = hs.register_human("human").unwrap();
    // Human opens a DM with the bot: the AS must hear about it.
    let dm = hs.create_dm(&human.user_id, BOT).unwrap();
    assert!(
        eventually(10, || rec.lock().unwrap().transactions.len() >= 3).await,
        "three attempts expected"
    );
    let attempts: Vec<(String, Option<String>, Value)> = rec.lock().unwrap().transactions.clone();
    assert_eq!(attempts[0].0, "1");
    assert!(
        attempts
            .iter()
            .take(3)
            .all(|(id, _, body)| id == "1" && *body == attempts[0].2)
    );
    assert_eq!(
        attempts[0].1.as_deref(),
        Some(&*format!("Bearer {HS_TOKEN}"))
    );
    let events = attempts[0].2["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == BOT
        && e["room_id"] == dm.as_str()));
    assert!(
        hs.wait_until(Duration::from_secs(5), |h| h.delivered_transactions().len()
            == 1)
            .await
    );
    // The next transaction gets the next id; an injected failure retries it.
    hs.fail_push_next(1);
    hs.join(BOT, &dm).unwrap();
    assert!(
        hs.wait_until(Duration::from_secs(5), |h| h.delivered_transactions().len()
            == 2)
            .await
    );
    let attempts = hs.push_attempts();
    let twos: Vec<bool> = attempts
        .iter()
        .filter(|(id, _)| id == "2")
        .map(|(_, ok)| *ok)
        .collect();
    assert_eq!(twos, vec![false, true]);
    assert_eq!(rec.lock().unwrap().transactions.last().unwrap().0, "2");
}

#[tokio::test]
async fn ping_reaches_the_appservice() {
    let (as_url, rec) = as_receiver(0).await;
    let hs = homeserver(Some(&as_url)).await;
    let c = client();
    let (s, v) = body(
        c.post(format!(
            "{}/_matrix/client/v1/appservice/gitter/ping",
            hs.base_url
        ))
        .bearer_auth(AS_TOKEN)
        .json(&json!({"transaction_id": "t1"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["duration_ms"].is_u64());
    assert_eq!(
        rec.lock().unwrap().pings,
        vec![json!({"transaction_id": "t1"})]
    );
    let (s, v) = body(
        c.post(format!(
            "{}/_matrix/client/v1/appservice/other/ping",
            hs.base_url
        ))
        .bearer_auth(AS_TOKEN)
        .json(&json!({})),
    )
    .await;
    assert_eq!((s, v["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
}

#[tokio::test]
async fn cs_faults_return_matrix_errors() {
    let hs = homeserver(None).await;
    hs.fail_cs_next(1, 429);
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        None,
    ))
    .await;
    assert_eq!((s, v["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")));
    assert!(v["retry_after_ms"].is_u64());
    let (s, _) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        None,
    ))
    .await;
    assert_eq!(s, 200);
    client()
        .post(format!("{}/_sim/hs/fail-cs", hs.base_url))
        .json(&json!({"status": 502, "duration_ms": 60000}))
        .send()
        .await
        .unwrap();
    let (s, v) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        None,
    ))
    .await;
    assert_eq!((s, v["errcode"].as_str()), (502, Some("M_UNKNOWN")));
    hs.clear_faults();
    let (s, _) = body(as_call(
        reqwest::Method::GET,
        &hs.base_url,
        "/account/whoami",
        None,
    ))
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_token_in_both_the_header_and_the_query_is_refused_like_synapse() {
    let hs = homeserver(None).await;
    let url = format!(
        "{}/_matrix/client/v3/account/whoami?access_token={AS_TOKEN}",
        hs.base_url
    );
    let (status, v) = body(client().get(&url).bearer_auth(AS_TOKEN)).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["errcode"], "M_MISSING_TOKEN");
    let (status, _) = body(client().get(&url)).await;
    assert_eq!(status, 200);
}
