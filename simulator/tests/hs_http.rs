//! The fake homeserver over real HTTP: AS auth and masquerading, registration,
//! room flows, txn dedupe, ping, and Synapse-style transaction pushes.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_sim::fake_hs::CsRoute;
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

// ----------------------------------------------------------------------
// fault modes (issue 12) and the room directory

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A room made by the bot with `ghost` and `human` joined: (room, ghost, human).
async fn portal(hs: &gitter_bridge_sim::fake_hs::FakeHomeserver) -> (String, String, String) {
    let ghost = register_ghost(&hs.base_url, "_gitter_bob").await;
    let human = hs.register_human("human").unwrap().user_id;
    let room = hs
        .create_room(
            BOT,
            json!({"preset": "private_chat", "invite": [ghost, human]}),
        )
        .unwrap();
    hs.join(&ghost, &room).unwrap();
    hs.join(&human, &room).unwrap();
    (room, ghost, human)
}

#[tokio::test]
async fn an_outage_answers_503_on_every_route_the_bridge_uses_until_it_ends() {
    let (as_url, rec) = as_receiver(0).await;
    let hs = homeserver(Some(&as_url)).await;
    let (room, ghost, human) = portal(&hs).await;
    let r = client()
        .post(format!("{}/_sim/hs/fail-cs", hs.base_url))
        .json(&json!({"status": 503, "duration_ms": 60000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = &hs.base_url;
    let v3 = format!("{b}/_matrix/client/v3");
    let alias = enc("#_gitter_x:localhost");
    let c = client();
    let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("versions", c.get(format!("{b}/_matrix/client/versions"))),
        (
            "register",
            c.post(format!("{v3}/register"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({"type": "m.login.application_service", "username": "_gitter_new"})),
        ),
        (
            "whoami",
            c.get(format!("{v3}/account/whoami")).bearer_auth(AS_TOKEN),
        ),
        (
            "createRoom",
            c.post(format!("{v3}/createRoom"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({})),
        ),
        (
            "invite",
            c.post(format!("{v3}/rooms/{room}/invite"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({"user_id": "@_gitter_x:localhost"})),
        ),
        (
            "join",
            c.post(format!("{v3}/rooms/{room}/join?user_id={}", enc(&ghost)))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "join by alias",
            c.post(format!("{v3}/join/{alias}")).bearer_auth(AS_TOKEN),
        ),
        (
            "send",
            c.put(format!("{v3}/rooms/{room}/send/m.room.message/o1"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({"msgtype": "m.text", "body": "x"})),
        ),
        (
            "put state",
            c.put(format!("{v3}/rooms/{room}/state/m.room.topic/"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({"topic": "t"})),
        ),
        (
            "get state",
            c.get(format!("{v3}/rooms/{room}/state/m.room.topic/"))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "profile",
            c.get(format!("{v3}/profile/{}", enc(&human)))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "displayname",
            c.put(format!(
                "{v3}/profile/{}/displayname?user_id={}",
                enc(&ghost),
                enc(&ghost)
            ))
            .bearer_auth(AS_TOKEN)
            .json(&json!({"displayname": "B"})),
        ),
        (
            "members",
            c.get(format!("{v3}/rooms/{room}/members"))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "joined_members",
            c.get(format!("{v3}/rooms/{room}/joined_members"))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "directory get",
            c.get(format!("{v3}/directory/room/{alias}")),
        ),
        (
            "directory put",
            c.put(format!("{v3}/directory/room/{alias}"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({"room_id": room})),
        ),
        (
            "directory delete",
            c.delete(format!("{v3}/directory/room/{alias}"))
                .bearer_auth(AS_TOKEN),
        ),
        (
            "upload",
            c.post(format!("{b}/_matrix/media/v3/upload"))
                .bearer_auth(AS_TOKEN)
                .body("x"),
        ),
        (
            "ping",
            c.post(format!("{b}/_matrix/client/v1/appservice/gitter/ping"))
                .bearer_auth(AS_TOKEN)
                .json(&json!({})),
        ),
        (
            "unknown path",
            c.get(format!("{v3}/nope")).bearer_auth(AS_TOKEN),
        ),
    ];
    for (name, call) in calls {
        let (s, v) = body(call).await;
        assert_eq!(
            (s, v["errcode"].as_str()),
            (503, Some("M_UNKNOWN")),
            "{name}: {v}"
        );
    }
    assert!(
        rec.lock().unwrap().pings.is_empty(),
        "the AS was not pinged during the outage"
    );
    assert_eq!(hs.messages_seen(&human, &room).len(), 0, "nothing was sent");
    // The period ends on the server's clock; everything works again.
    hs.advance_clock(Duration::from_secs(61));
    let (s, v) = body(
        as_call(
            reqwest::Method::PUT,
            b,
            &format!("/rooms/{room}/send/m.room.message/o2"),
            Some(&ghost),
        )
        .json(&json!({"msgtype": "m.text", "body": "after"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = body(
        c.post(format!("{b}/_matrix/client/v1/appservice/gitter/ping"))
            .bearer_auth(AS_TOKEN)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn refused_connections_then_the_same_address_serves_the_same_state() {
    let hs = homeserver(None).await;
    let human = hs.register_human("human").unwrap();
    let room = hs.create_room(&human.user_id, json!({})).unwrap();
    // A kept-alive connection that has been answered once.
    let mut kept = raw::RawConn::connect(hs.addr).await.unwrap();
    kept.send("GET", "/_matrix/client/versions", &[], b"").await;
    assert_eq!(kept.read_answer().await.0, 200);
    assert!(eventually(5, || hs.open_connections() >= 1).await);

    // Measured from before the request: the window cannot start earlier.
    let asked_at = tokio::time::Instant::now();
    let r = client()
        .post(format!("{}/_sim/hs/refuse-connections", hs.base_url))
        .json(&json!({"duration_ms": 700}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    assert!(hs.refusing_connections());
    // The kept connection is cut without a byte; new connects are refused.
    let (bytes, ending) = kept.read_rest(Duration::from_secs(3)).await;
    assert!(bytes.is_empty() && ending.closed(), "{bytes:?} {ending:?}");
    assert!(raw::connect_refused(hs.addr).await);
    let err = client()
        .get(format!("{}/_matrix/client/versions", hs.base_url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // The window ends by itself; the same address answers with the same state.
    let mut back = false;
    while asked_at.elapsed() < Duration::from_secs(5) {
        if !raw::connect_refused(hs.addr).await {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "accepting again");
    assert!(
        asked_at.elapsed() >= Duration::from_millis(690),
        "refused for the whole period: {:?}",
        asked_at.elapsed()
    );
    let (s, v) = get_json(
        format!("{}/_matrix/client/v3/joined_rooms", hs.base_url),
        &human.token,
    )
    .await;
    assert_eq!(
        (s, v["joined_rooms"][0].as_str()),
        (200, Some(room.as_str()))
    );

    // The Rust control: refused once it returns; clear-faults binds again at once.
    hs.refuse_connections_for(Duration::from_secs(60)).await;
    assert!(raw::connect_refused(hs.addr).await);
    hs.clear_faults();
    assert!(
        eventually(2, || !hs.refusing_connections()).await,
        "cleared"
    );
    let (s, _) = get_json(
        format!("{}/_matrix/client/v3/joined_rooms", hs.base_url),
        &human.token,
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_lost_send_answer_still_stores_the_event_and_the_retry_gets_its_id() {
    let hs = homeserver(None).await;
    let (room, ghost, human) = portal(&hs).await;
    let r = client()
        .post(format!("{}/_sim/hs/lose-answers", hs.base_url))
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hs.pending_lost_answers(), 1);
    let path = format!(
        "/_matrix/client/v3/rooms/{room}/send/m.room.message/g1?user_id={}",
        enc(&ghost)
    );
    let auth = format!("Bearer {AS_TOKEN}");
    let (bytes, ending) = raw::exchange(
        hs.addr,
        "PUT",
        &path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"msgtype":"m.text","body":"lost answer"}"#,
    )
    .await;
    assert!(
        bytes.is_empty(),
        "not even a status line: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(ending.closed(), "{ending:?}");
    // Stored all the same, and visible.
    let seen = hs.messages_seen(&human, &room);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_deref(), Some("lost answer"));
    // The retry with the same txn id is deduplicated, as Synapse does.
    let retry = || {
        as_call(
            reqwest::Method::PUT,
            &hs.base_url,
            &format!("/rooms/{room}/send/m.room.message/g1"),
            Some(&ghost),
        )
        .json(&json!({"msgtype": "m.text", "body": "lost answer"}))
    };
    let (s, v) = body(retry()).await;
    assert_eq!(
        (s, v["event_id"].as_str()),
        (200, Some(seen[0].event_id.as_str()))
    );
    assert_eq!(hs.messages_seen(&human, &room).len(), 1);
    // What a client library sees: an error, not a status and not a time-out.
    hs.lose_answers(1, &[CsRoute::Send]);
    let err = as_call(
        reqwest::Method::PUT,
        &hs.base_url,
        &format!("/rooms/{room}/send/m.room.message/g2"),
        Some(&ghost),
    )
    .json(&json!({"msgtype": "m.text", "body": "second"}))
    .send()
    .await
    .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert_eq!(hs.messages_seen(&human, &room).len(), 2);
    // Other routes were not affected, and the budget is spent.
    assert_eq!(hs.pending_lost_answers(), 0);
    let (s, _) = body(retry()).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_lost_create_room_answer_is_found_again_through_its_alias() {
    let hs = homeserver(None).await;
    let c = client();
    let typo = c
        .post(format!("{}/_sim/hs/lose-answers", hs.base_url))
        .json(&json!({"count": 1, "routes": ["create_room"]}))
        .send()
        .await
        .unwrap();
    assert!(
        typo.status().is_client_error(),
        "an unknown route name is refused"
    );
    let r = c
        .post(format!("{}/_sim/hs/lose-answers", hs.base_url))
        .json(&json!({"count": 1, "routes": ["createRoom"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let create = || {
        as_call(reqwest::Method::POST, &hs.base_url, "/createRoom", None)
            .json(&json!({"preset": "private_chat", "room_alias_name": "_gitter_portal_ab12"}))
    };
    let err = create().send().await.unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    let alias = "#_gitter_portal_ab12:localhost";
    let made = hs.alias_target(alias).expect("the room was made");
    // The retry is refused without a second room; the alias names the first.
    let (s, v) = body(create()).await;
    assert_eq!(
        (s, v["errcode"].as_str(), v["error"].as_str()),
        (400, Some("M_ROOM_IN_USE"), Some("Room alias already taken"))
    );
    assert_eq!(hs.rooms_of(BOT).len(), 1);
    let url = format!(
        "{}/_matrix/client/v3/directory/room/{}",
        hs.base_url,
        enc(alias)
    );
    let (s, v) = body(c.get(&url)).await;
    assert_eq!(s, 200, "no token needed");
    assert_eq!(v, json!({"room_id": made, "servers": ["localhost"]}));
    assert_eq!(
        hs.with_state(|s| s
            .room_info(&made)
            .and_then(|r| r.state_content("m.room.canonical_alias", "").cloned())),
        Some(json!({"alias": alias}))
    );
    // The bot deletes it; gone is not an error for the AS (Synapse).
    for _ in 0..2 {
        let (s, v) = body(c.delete(&url).bearer_auth(AS_TOKEN)).await;
        assert_eq!((s, v), (200, json!({})));
    }
    let (s, v) = body(c.get(&url)).await;
    assert_eq!(
        (s, v["errcode"].as_str(), v["error"].as_str()),
        (
            404,
            Some("M_NOT_FOUND"),
            Some("Room alias #_gitter_portal_ab12:localhost not found")
        )
    );
}

#[tokio::test]
async fn the_room_directory_follows_synapse_over_http() {
    let (as_url, rec) = as_receiver(0).await;
    let hs = homeserver(Some(&as_url)).await;
    let alice = hs.register_human("alice").unwrap();
    let bob = hs.register_human("bob").unwrap();
    let room = hs
        .create_room(&alice.user_id, json!({"preset": "public_chat"}))
        .unwrap();
    let dir = |alias: &str| {
        format!(
            "{}/_matrix/client/v3/directory/room/{}",
            hs.base_url,
            enc(alias)
        )
    };
    let c = client();
    let (s, v) = body(c.get(dir("no-sigil:localhost"))).await;
    assert_eq!((s, v["errcode"].as_str()), (400, Some("M_INVALID_PARAM")));
    // Synapse checks the room before the token.
    let (s, v) = body(
        c.put(dir("#hangout:localhost"))
            .json(&json!({"room_id": "!nope"})),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("Room does not exist")));
    let (s, v) = body(
        c.put(dir("#hangout:localhost"))
            .json(&json!({"room_id": room})),
    )
    .await;
    assert_eq!((s, v["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    let (s, v) = body(
        c.put(dir("#hangout:localhost"))
            .bearer_auth(&alice.token)
            .json(&json!({"room_id": room})),
    )
    .await;
    assert_eq!((s, v), (200, json!({})));
    let (s, v) = body(
        c.put(dir("#hangout:localhost"))
            .bearer_auth(&alice.token)
            .json(&json!({"room_id": room})),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("Room alias #hangout:localhost already exists"))
    );
    let (s, v) = body(c.get(dir("#hangout:localhost"))).await;
    assert_eq!((s, v["room_id"].as_str()), (200, Some(room.as_str())));
    // Bob, not in the room, may not delete it; alice, who made it, may.
    let (s, _) = body(c.delete(dir("#hangout:localhost")).bearer_auth(&bob.token)).await;
    assert_eq!(s, 403);
    let (s, _) = body(
        c.delete(dir("#hangout:localhost"))
            .bearer_auth(&alice.token),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = body(
        c.delete(dir("#hangout:localhost"))
            .bearer_auth(&alice.token),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("Unknown room alias")));
    // An unknown alias in the AS's namespace is asked of the AS first.
    let (s, _) = body(c.get(dir("#_gitter_unknown:localhost"))).await;
    assert_eq!(s, 404);
    assert_eq!(
        rec.lock().unwrap().alias_queries,
        vec![(
            "/_matrix/app/v1/rooms/%23_gitter_unknown%3Alocalhost".to_string(),
            Some(format!("Bearer {HS_TOKEN}"))
        )]
    );
    let (s, _) = body(c.get(dir("#other:localhost"))).await;
    assert_eq!(s, 404);
    assert_eq!(
        rec.lock().unwrap().alias_queries.len(),
        1,
        "outside the namespace: not asked"
    );
}

#[tokio::test]
async fn a_long_delay_applies_everywhere_and_is_cut_short_by_clear_faults() {
    let hs = homeserver(None).await;
    client()
        .post(format!("{}/_sim/hs/delay", hs.base_url))
        .json(&json!({"ms": 60000}))
        .send()
        .await
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for url in [
        format!("{}/_matrix/client/versions", hs.base_url),
        format!("{}/_matrix/client/v3/account/whoami", hs.base_url),
    ] {
        let err = impatient
            .get(&url)
            .bearer_auth(AS_TOKEN)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{url}: {err:?}");
    }
    // A patient client is waiting when the faults are cleared: it gets its answer.
    let url = format!("{}/_matrix/client/v3/account/whoami", hs.base_url);
    let waiting = tokio::spawn(async move { body(client().get(url).bearer_auth(AS_TOKEN)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let cleared_at = tokio::time::Instant::now();
    client()
        .post(format!("{}/_sim/hs/clear-faults", hs.base_url))
        .send()
        .await
        .unwrap();
    let (s, v) = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("answered soon after the clear")
        .unwrap();
    assert_eq!((s, v["user_id"].as_str()), (200, Some(BOT)));
    assert!(cleared_at.elapsed() < Duration::from_secs(3));
}
