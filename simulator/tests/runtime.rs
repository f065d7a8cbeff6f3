//! The real bridge runtime, in-process, against the fake homeserver and the fake Gitter:
//! startup checks, a message each way, restart with outbox replay, and shutdown.

use std::time::Duration;

use gitter_bridge::StartError;
use gitter_bridge_sim::world::{WAIT, World, WorldOptions};

const LOBBY: &str = "gitter-bridge/lobby";

async fn world() -> World {
    World::start(WorldOptions::default())
        .await
        .expect("the world starts")
}

/// Alice logs in as Gitter's alice and accepts her portal invites; returns the lobby portal.
async fn alice_in_the_lobby(w: &World) -> (gitter_bridge_sim::fake_hs::Human, String) {
    let alice = w.human("alice").unwrap();
    let dm = w.open_dm(&alice).await.unwrap();
    w.login(&alice, &dm, "alice").await.unwrap();
    w.wait_hs("a portal invite for the lobby", WAIT, |_| {
        w.portal_named(&alice, LOBBY).is_some()
    })
    .await
    .unwrap();
    w.accept_invites(&alice).unwrap();
    let portal = w.portal_named(&alice, LOBBY).unwrap();
    // A new room is read live from its newest message on (its baseline); a message posted
    // before the bridge has read that baseline would come as history instead. Posting only
    // once the stream listens keeps the tests about relaying.
    gitter_bridge_sim::demo::wait_listening(w, LOBBY)
        .await
        .unwrap();
    (alice, portal)
}

fn bodies_from(
    w: &World,
    human: &gitter_bridge_sim::fake_hs::Human,
    room: &str,
    sender: &str,
) -> Vec<String> {
    w.messages_from_others(human, room)
        .into_iter()
        .filter(|m| m.sender == sender)
        .filter_map(|m| m.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_each_way_without_echo() {
    let w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let bob_ghost = format!("@gitter_bob:{}", w.hs.server_name());

    w.gitter
        .post_message(LOBBY, "bob", "hello from `Gitter`")
        .unwrap();
    w.wait_hs("bob's message in alice's portal", WAIT, |_| {
        bodies_from(&w, &alice, &portal, &bob_ghost)
            .iter()
            .any(|b| b == "hello from `Gitter`")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", w.hs.timeline(&alice.user_id, &portal)));
    let seen = w
        .messages_from_others(&alice, &portal)
        .into_iter()
        .find(|m| m.body.as_deref() == Some("hello from `Gitter`"))
        .unwrap();
    assert_eq!(seen.content["format"], "org.matrix.custom.html");
    assert!(
        seen.content["formatted_body"]
            .as_str()
            .unwrap()
            .contains("<code>Gitter</code>"),
        "{:?}",
        seen.content
    );

    w.say(&alice, &portal, "hello from Matrix").unwrap();
    w.wait_gitter("alice's message in the Gitter room", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice")
            .contains(&"hello from Matrix".to_owned())
    })
    .await
    .unwrap();
    // Give an echo every chance to arrive, then check there is none.
    w.gitter.post_message(LOBBY, "bob", "marker").unwrap();
    w.wait_hs("the marker", WAIT, |_| {
        bodies_from(&w, &alice, &portal, &bob_ghost).contains(&"marker".to_owned())
    })
    .await
    .unwrap();
    let alice_ghost = format!("@gitter_alice:{}", w.hs.server_name());
    assert!(
        bodies_from(&w, &alice, &portal, &alice_ghost).is_empty(),
        "alice's own message came back as her ghost"
    );
    assert_eq!(w.gitter_texts_from(LOBBY, "alice"), ["hello from Matrix"]);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_has_its_configured_name_and_a_portal_says_what_it_bridges() {
    let w = world().await;
    let bot = w.bot();
    let profile = w.hs.with_state(|s| s.profile(&bot)).unwrap();
    assert_eq!(profile["displayname"], "Gitter bridge", "{profile}");
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let timeline = w.hs.timeline(&alice.user_id, &portal);
    for kind in ["m.bridge", "uk.half-shot.bridge"] {
        let state = timeline
            .iter()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} state in the portal"));
        assert_eq!(state.content["bridgebot"], bot.as_str());
        assert_eq!(state.content["protocol"]["id"], "gitter");
        assert_eq!(state.content["channel"]["displayname"], LOBBY);
        assert!(
            state.content["channel"]["external_url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/gitter-bridge/lobby")),
            "{}",
            state.content
        );
    }
    // Not a direct chat: the lobby is a room on Gitter.
    let invite = timeline
        .iter()
        .find(|e| e.kind == "m.room.member" && e.state_key.as_deref() == Some(&alice.user_id))
        .unwrap();
    assert_ne!(invite.content["is_direct"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_which_peer_does_not_answer_and_recovers_with_it() {
    let w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    w.wait_ready("ready", WAIT, |status, body| {
        status == 200 && body["status"] == "ready"
    })
    .await
    .unwrap();

    // Gitter answers 503 to everything: alice's message cannot go, and /ready says why.
    w.gitter.fail_for(Duration::from_secs(120), 503);
    w.say(&alice, &portal, "during the Gitter outage").unwrap();
    let body = w
        .wait_ready("not ready", WAIT, |status, _| status == 503)
        .await
        .unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["gitter"]["reachable"], false, "{body}");
    assert!(
        body["gitter"]["unreachable_since_ms"].as_u64().is_some(),
        "{body}"
    );
    assert_eq!(body["homeserver"]["reachable"], true, "{body}");

    // Gitter is back: the message goes on its retry, and the bridge is ready again.
    w.gitter.clear_faults();
    w.wait_gitter("the message sent during the outage", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice")
            .contains(&"during the Gitter outage".to_owned())
    })
    .await
    .unwrap();
    w.wait_ready("ready again", WAIT, |status, body| {
        status == 200 && body["gitter"]["reachable"] == true
    })
    .await
    .unwrap();
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cut_off_by_a_crash_is_replayed_once_after_restart() {
    let mut w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;

    // Gitter hangs: the send is committed to the outbox but cannot finish.
    w.gitter.set_delay(Duration::from_secs(30));
    w.say(&alice, &portal, "sent just before the crash")
        .unwrap();
    w.wait_hs("the homeserver delivered alice's message", WAIT, |hs| {
        hs.delivered_transactions().iter().any(|t| {
            t.events
                .iter()
                .any(|e| e["content"]["body"] == "sent just before the crash")
        })
    })
    .await
    .unwrap();
    w.kill_bridge().await;
    w.gitter.clear_faults();

    w.start_bridge().await.unwrap();
    w.wait_gitter("the replayed send", WAIT, |_| {
        !w.gitter_texts_from(LOBBY, "alice").is_empty()
    })
    .await
    .unwrap();
    // A later message proves the bridge is past the replay; the first is still there once.
    w.say(&alice, &portal, "after the restart").unwrap();
    w.wait_gitter("the message after the restart", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice").len() >= 2
    })
    .await
    .unwrap();
    assert_eq!(
        w.gitter_texts_from(LOBBY, "alice"),
        ["sent just before the crash", "after the restart"]
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_logins_and_streams_come_back_after_restart() {
    let mut w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let health = format!("{}/health", w.public_url());
    assert_eq!(w.http.get(&health).send().await.unwrap().status(), 200);

    w.stop_bridge().await.unwrap();
    assert!(
        w.http.get(&health).send().await.is_err(),
        "the pages stop with the bridge"
    );
    // Bob talks while the bridge is down.
    w.gitter
        .post_message(LOBBY, "bob", "while you were away")
        .unwrap();

    w.start_bridge().await.unwrap();
    let bob_ghost = format!("@gitter_bob:{}", w.hs.server_name());
    w.wait_hs(
        "the message sent during the downtime (catch-up)",
        WAIT,
        |_| {
            bodies_from(&w, &alice, &portal, &bob_ghost).contains(&"while you were away".to_owned())
        },
    )
    .await
    .unwrap();
    let dm = w.hs.rooms_of(&alice.user_id);
    let dm = dm
        .iter()
        .map(|(room, _)| room)
        .find(|room| w.bot_notices(&alice, room).len() > 1)
        .unwrap()
        .clone();
    let skip = w.bot_notices(&alice, &dm).len();
    w.say(&alice, &dm, "whoami").unwrap();
    w.wait_notice(&alice, &dm, "logged in to Gitter as alice", skip)
        .await
        .unwrap();
    w.shutdown().await;
}

/// Stops the bridge and waits until the fake Gitter has noticed its stream is gone (it does
/// at the next heartbeat), so a later wait for an open stream sees the next bridge's.
async fn stop_and_wait_for_the_stream_to_close(w: &mut World) {
    w.stop_bridge().await.unwrap();
    w.wait_gitter("the stopped bridge's stream to close", WAIT, |g| {
        g.stream_count(Some(LOBBY)) == 0
    })
    .await
    .unwrap();
}

/// The outbox as the store has it, described by action name.
/// The effects left in the stored outbox that are not durable: the rows a start re-derives
/// instead of replaying, which must never pile up. (Durable work a stop caught half way, such
/// as a ghost's avatar whose upload finished during the stop, stays for the next start.)
fn stored_outbox(w: &World) -> Vec<&'static str> {
    use gitter_bridge_store::Store;
    let path = w.config().unwrap().store_path;
    let store = gitter_bridge_store::RedbStore::open(&path).expect("the store opens");
    let snapshot = store.load().expect("the store loads");
    snapshot
        .outbox
        .values()
        .filter(|e| !e.action.is_durable())
        .map(|e| e.action.name())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_commit_their_startup_step_and_leave_no_stale_outbox_rows() {
    use gitter_bridge_core::{Action, Change, ChangeSet, Effect, EffectId, Lane};
    use gitter_bridge_store::Store;

    let mut w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let lobby = gitter_bridge_core::GitterRoomId::new(w.gitter.room_id(LOBBY).unwrap());
    for round in 0..2 {
        w.wait_gitter("the lobby stream is open", WAIT, |g| {
            g.stream_count(Some(LOBBY)) >= 1
        })
        .await
        .unwrap();
        stop_and_wait_for_the_stream_to_close(&mut w).await;
        // A crash between committing a catch-up read and finishing it leaves its row; the
        // next start re-derives reads instead of replaying them, and must commit that.
        let stale = Effect {
            id: EffectId(1_000_000 + round),
            lane: Lane::Stream(lobby.clone()),
            action: Action::Gitter {
                token: gitter_bridge_core::Secret::new("a-token-of-a-crashed-run"),
                call: gitter_bridge_core::GitterCall::FetchMessages {
                    room: lobby.clone(),
                    after: None,
                    limit: 1,
                },
            },
            then: gitter_bridge_core::Then::Stream(gitter_bridge_core::StreamThen::CaughtUp {
                room: lobby.clone(),
                after: None,
            }),
        };
        {
            let path = w.config().unwrap().store_path;
            let mut store = gitter_bridge_store::RedbStore::open(&path).unwrap();
            let set = ChangeSet {
                changes: vec![Change::PutOutbox(stale)],
            };
            store.apply(&[set]).unwrap();
        }
        w.start_bridge().await.unwrap();
        w.wait_gitter("the lobby stream is open again", WAIT, |g| {
            g.stream_count(Some(LOBBY)) >= 1
        })
        .await
        .unwrap();
        stop_and_wait_for_the_stream_to_close(&mut w).await;
        let outbox = stored_outbox(&w);
        assert!(
            outbox.is_empty(),
            "round {round}: the stopped bridge left {outbox:?} in the outbox"
        );
        w.start_bridge().await.unwrap();
    }
    // And it still works.
    w.gitter
        .post_message(LOBBY, "bob", "after the restarts")
        .unwrap();
    let bob_ghost = format!("@gitter_bob:{}", w.hs.server_name());
    w.wait_hs("bob's message after the restarts", WAIT, |_| {
        bodies_from(&w, &alice, &portal, &bob_ghost).contains(&"after the restarts".to_owned())
    })
    .await
    .unwrap();
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_escape_and_refuse_what_they_should() {
    let w = world().await;
    let base = w.public_url();
    let index = w.http.get(&base).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(
        index.headers()["referrer-policy"],
        "no-referrer",
        "login URLs carry secrets"
    );
    let text = index.text().await.unwrap();
    assert!(text.contains(&w.bot()), "{text}");

    let bad = w
        .http
        .get(format!("{base}/login/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error(), "{}", bad.status());
    let text = bad.text().await.unwrap();
    assert!(!text.contains("<script>"), "{text}");

    let forged = w
        .http
        .get(format!("{base}/oauth/callback?code=x&state=forged"))
        .send()
        .await
        .unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());

    // Metrics are on the private AS listener only.
    let public_metrics = w.http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public_metrics.status(), 404);
    let metrics = w
        .http
        .get(format!("http://{}/metrics", w.as_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gitter_bridge_as_transactions_total"),
        "{metrics}"
    );

    // The AS API is not on the public listener, and refuses a wrong hs_token on its own.
    let on_public = w
        .http
        .put(format!("{base}/_matrix/app/v1/transactions/1"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(on_public.status(), 404);
    let wrong_token = w
        .http
        .put(format!(
            "http://{}/_matrix/app/v1/transactions/1",
            w.as_addr
        ))
        .bearer_auth("not-the-hs-token")
        .json(&serde_json::json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 403);
    w.shutdown().await;
}

/// Replaces `from` by `to` in the world's bridge config.
fn edit_config(w: &World, from: &str, to: &str) {
    let text = std::fs::read_to_string(&w.config_path).unwrap();
    assert!(text.contains(from), "{from} not in the config");
    std::fs::write(&w.config_path, text.replacen(from, to, 1)).unwrap();
}

async fn start_error(w: &mut World) -> String {
    match w.start_bridge().await {
        Ok(()) => panic!("the bridge started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_failures_say_what_to_fix() {
    let mut w = World::without_bridge(WorldOptions::default())
        .await
        .unwrap();
    let config = std::fs::read_to_string(&w.config_path).unwrap();

    // Homeserver unreachable.
    let hs_url = format!("http://{}", w.hs.addr);
    edit_config(&w, &hs_url, "http://127.0.0.1:9");
    let e = start_error(&mut w).await;
    assert!(e.contains("homeserver.url"), "{e}");
    std::fs::write(&w.config_path, &config).unwrap();

    // A wrong as_token.
    let as_token = w.config().unwrap().as_token;
    edit_config(&w, as_token.expose(), "wrong-as-token");
    let e = start_error(&mut w).await;
    assert!(e.contains("as_token"), "{e}");
    assert!(
        !e.contains("wrong-as-token"),
        "a token reached a message: {e}"
    );
    std::fs::write(&w.config_path, &config).unwrap();

    // The homeserver cannot reach us: the registration says where we listen, but we listen
    // elsewhere.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    drop(other);
    edit_config(
        &w,
        &format!("bind = \"{}\"", w.as_addr),
        &format!("bind = \"{other_addr}\""),
    );
    let e = start_error(&mut w).await;
    assert!(e.contains("cannot reach the bridge"), "{e}");
    std::fs::write(&w.config_path, &config).unwrap();

    // An unreadable store.
    std::fs::write(w.dir.join("gitter-bridge.redb"), "not a database").unwrap();
    let e = start_error(&mut w).await;
    assert!(e.contains("store"), "{e}");
    assert!(matches!(
        gitter_bridge::start(w.config().unwrap()).await,
        Err(StartError::Store(_))
    ));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_journey_passes() {
    gitter_bridge_sim::demo::run(WorldOptions::default())
        .await
        .expect("every step of the demo happens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_run_delivers_everything_exactly_once_over_either_transport() {
    for faye in [false, true] {
        let report = gitter_bridge_sim::load::run(gitter_bridge_sim::load::LoadOptions {
            users: 2,
            rooms: 2,
            rate: 20.0,
            duration: Duration::from_secs(2),
            settle: Duration::from_secs(30),
            seed: 7,
            bridge_bin: None,
            faye,
        })
        .await
        .expect("the load runs");
        assert!(report.exactly_once(), "faye {faye}: {:?}", report.problems);
        // Each Gitter message reaches both portals of its room.
        assert_eq!(report.g2m.deliveries, report.g2m.sent * 2, "faye {faye}");
        assert_eq!(report.m2g.deliveries, report.m2g.sent, "faye {faye}");
        assert!(report.g2m.sent > 5 && report.m2g.sent > 5, "{report:?}");
        assert!(report.json()["exactly_once"].as_bool().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_waits_for_a_homeserver_that_is_still_starting() {
    let mut w = World::without_bridge(WorldOptions {
        homeserver_startup_wait: Duration::from_secs(20),
        ..WorldOptions::default()
    })
    .await
    .unwrap();
    // The homeserver answers 502 (a reverse proxy in front of a Synapse that is not up yet)
    // to the first requests.
    w.hs.fail_cs_next(2, 502);
    w.start_bridge().await.unwrap();
    assert!(w.bridge_running());
    w.stop_bridge().await.unwrap();

    // With no time to wait, the same failure stops the start, naming what to check.
    let text = std::fs::read_to_string(&w.config_path).unwrap();
    std::fs::write(
        &w.config_path,
        text.replace("startup_wait_secs = 20", "startup_wait_secs = 0"),
    )
    .unwrap();
    w.hs.fail_cs_next(1, 502);
    let e = start_error(&mut w).await;
    assert!(e.contains("homeserver.url"), "{e}");
    w.shutdown().await;
}

/// The link in a Gitter text that points at the bridge's media page.
fn media_link(text: &str) -> String {
    let start = text.find("](").expect("a markdown link") + 2;
    let end = start + text[start..].find(')').expect("the link ends");
    text[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_file_reaches_gitter_as_a_signed_link_that_serves_its_bytes() {
    let w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let png: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mxc = w.hs.with_state(|s| s.upload("image/png", png.clone()));
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    let svg_mxc = w.hs.with_state(|s| s.upload("image/svg+xml", svg.clone()));
    for (url, name) in [(&mxc, "cat.png"), (&svg_mxc, "drawing.svg")] {
        w.hs.send_event(
            &alice.user_id,
            &portal,
            "m.room.message",
            serde_json::json!({
                "msgtype": "m.image", "body": name, "url": url,
                "info": {"mimetype": "image/png", "size": 70_000},
            }),
        )
        .unwrap();
    }
    w.wait_gitter("both images on Gitter", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice").len() == 2
    })
    .await
    .unwrap();
    let texts = w.gitter_texts_from(LOBBY, "alice");
    assert!(texts[0].starts_with("![cat.png]("), "{texts:?}");
    let link = media_link(&texts[0]);
    assert!(
        link.starts_with(&format!("{}/media/", w.public_url())),
        "{link}"
    );

    // Anyone with the link gets the bytes, with no Matrix token; the image is shown inline.
    let got = w.http.get(&link).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let h = got.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);

    // An SVG can carry script: it is an attachment, never shown on the bridge's origin.
    let got = w.http.get(media_link(&texts[1])).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert!(
        got.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(got.bytes().await.unwrap().to_vec(), svg);

    // A tampered signature, another media id under the same signature, or a renamed file:
    // refused, with a text a person can read.
    let (prefix, rest) = link.split_at(link.find("/media/").unwrap() + 7);
    let flipped = if rest.starts_with('0') { "1" } else { "0" };
    let tampered = [
        format!("{prefix}{flipped}{}", &rest[1..]),
        link.replace(
            mxc.rsplit('/').next().unwrap(),
            svg_mxc.rsplit('/').next().unwrap(),
        ),
        link.replace("cat.png", "cat.html"),
    ];
    for bad in tampered {
        let got = w.http.get(&bad).send().await.unwrap();
        assert_eq!(got.status(), 403, "{bad}");
        assert_eq!(got.text().await.unwrap(), "This link is not valid.");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_cap_is_refused_by_the_media_page_whatever_its_sender_said() {
    let w = World::start(WorldOptions {
        web_extra: "media_max_bytes = 1000\n".into(),
        ..WorldOptions::default()
    })
    .await
    .expect("the world starts");
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let mxc =
        w.hs.with_state(|s| s.upload("application/pdf", vec![7; 5000]));
    // The sender's client claims a small size: the page checks the real one.
    w.hs.send_event(
        &alice.user_id,
        &portal,
        "m.room.message",
        serde_json::json!({
            "msgtype": "m.file", "body": "big.pdf", "url": mxc, "info": {"size": 10},
        }),
    )
    .unwrap();
    w.wait_gitter("the file's link on Gitter", WAIT, |_| {
        !w.gitter_texts_from(LOBBY, "alice").is_empty()
    })
    .await
    .unwrap();
    let link = media_link(&w.gitter_texts_from(LOBBY, "alice")[0]);
    let got = w.http.get(&link).send().await.unwrap();
    assert_eq!(got.status(), 502);
    assert_eq!(
        got.text().await.unwrap(),
        "This file is larger than the bridge shares (1.0 KB)."
    );

    // A file the sender says is too large is not sent at all, and the notice names the cap.
    w.hs.send_event(
        &alice.user_id,
        &portal,
        "m.room.message",
        serde_json::json!({
            "msgtype": "m.file", "body": "huge.pdf", "url": mxc, "info": {"size": 5000},
        }),
    )
    .unwrap();
    let notice = w
        .wait_notice(&alice, &portal, "not sent to Gitter", 0)
        .await
        .unwrap();
    assert!(notice.contains("up to 1.0 KB"), "{notice}");
    w.shutdown().await;
}

/// Gitter's `sent` of each message of a room, by text, in ms.
fn gitter_times(w: &World, room: &str) -> Vec<(String, u64)> {
    w.gitter
        .messages(room)
        .unwrap()
        .iter()
        .map(|m| {
            let sent = m["sent"].as_str().unwrap();
            (
                m["text"].as_str().unwrap().to_owned(),
                gitter_bridge_gitter::parse_iso_ms(sent).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_starts_with_its_history_and_every_message_shows_its_gitter_time() {
    let mut w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    // The lobby's two seeded messages, written an hour and more ago, came first.
    w.wait_hs("the lobby's history in alice's portal", WAIT, |_| {
        w.messages_from_others(&alice, &portal)
            .iter()
            .filter(|m| m.sender != w.bot())
            .count()
            >= 2
    })
    .await
    .unwrap();
    let times = gitter_times(&w, LOBBY);
    assert_eq!(times.len(), 2, "{times:?}");
    let ghosts = |w: &World| -> Vec<_> {
        w.messages_from_others(&alice, &portal)
            .into_iter()
            .filter(|m| m.sender != w.bot())
            .collect()
    };
    let history = ghosts(&w);
    assert_eq!(history[0].body.as_deref(), Some("Welcome to the lobby!"));
    assert_eq!(
        history[0].sender,
        format!("@gitter_bob:{}", w.hs.server_name())
    );
    assert_eq!(
        history[1].sender,
        format!("@gitter_carol:{}", w.hs.server_name())
    );
    for (event, (_, sent)) in history.iter().zip(&times) {
        assert_eq!(event.ts, *sent, "{event:?}");
    }
    assert!(history[0].ts < history[1].ts);

    // A message caught up after a restart shows when it was written, not when it came.
    w.stop_bridge().await.unwrap();
    w.gitter
        .post_message(LOBBY, "bob", "while you were away")
        .unwrap();
    w.start_bridge().await.unwrap();
    w.wait_hs("the message of the downtime", WAIT, |_| {
        ghosts(&w)
            .iter()
            .any(|m| m.body.as_deref() == Some("while you were away"))
    })
    .await
    .unwrap();
    let caught_up = ghosts(&w).pop().unwrap();
    let (text, sent) = gitter_times(&w, LOBBY).pop().unwrap();
    assert_eq!(text, "while you were away");
    assert_eq!(caught_up.ts, sent);
    // Nothing of the history came twice after the restart.
    assert_eq!(ghosts(&w).len(), 3, "{:?}", ghosts(&w));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitter_image_arrives_as_an_m_image_with_its_bytes_and_a_missing_one_as_its_link() {
    let w = world().await;
    let (alice, portal) = alice_in_the_lobby(&w).await;
    let url = format!("{}/_sim/gitter/files/cat.png", w.gitter.api_base_url());
    let missing = format!("{}/_sim/gitter/files/missing.png", w.gitter.api_base_url());
    w.gitter
        .post_message(LOBBY, "bob", &format!("look ![a cat]({url})"))
        .unwrap();
    w.gitter
        .post_message(LOBBY, "bob", &format!("gone ![lost]({missing})"))
        .unwrap();
    w.gitter.post_message(LOBBY, "bob", "after both").unwrap();
    let bob = format!("@gitter_bob:{}", w.hs.server_name());
    w.wait_hs("bob's three messages and the image", WAIT, |_| {
        bodies_from(&w, &alice, &portal, &bob).contains(&"after both".to_owned())
    })
    .await
    .unwrap();
    let bodies = bodies_from(&w, &alice, &portal, &bob);
    assert_eq!(
        &bodies[bodies.len() - 4..],
        [
            format!("look ![a cat]({url})"),
            "a cat".to_owned(),
            format!("gone ![lost]({missing})"),
            "after both".to_owned()
        ]
    );
    let image = w
        .messages_from_others(&alice, &portal)
        .into_iter()
        .find(|m| m.msgtype.as_deref() == Some("m.image"))
        .unwrap();
    let mxc = image.content["url"].as_str().unwrap().to_owned();
    let (server, id) = mxc.trim_start_matches("mxc://").split_once('/').unwrap();
    let (content_type, bytes) = w.hs.with_state(|s| s.media(server, id).cloned()).unwrap();
    assert_eq!(content_type, "image/png");
    assert_eq!(
        bytes,
        gitter_bridge_sim::fake_gitter::http::sim_file_bytes("cat.png")
    );
    assert_eq!(image.content["info"]["size"], bytes.len());

    // Bob's ghost wears his Gitter avatar, uploaded from the fake Gitter's file.
    w.wait_hs("bob's ghost's avatar", WAIT, |hs| {
        hs.with_state(|s| s.profile(&bob))
            .is_ok_and(|p| p["avatar_url"].is_string())
    })
    .await
    .unwrap();
    let avatar = w.hs.with_state(|s| s.profile(&bob)).unwrap()["avatar_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (server, id) = avatar.trim_start_matches("mxc://").split_once('/').unwrap();
    let (_, bytes) = w.hs.with_state(|s| s.media(server, id).cloned()).unwrap();
    assert_eq!(
        bytes,
        gitter_bridge_sim::fake_gitter::http::sim_file_bytes("avatar-bob.png")
    );

    // The portal wears the lobby's picture.
    let bot = w.bot();
    let avatar_state = |w: &World| {
        w.hs.with_state(|s| s.get_state(&bot, &portal, "m.room.avatar", ""))
    };
    w.wait_hs("the portal's avatar", WAIT, |_| avatar_state(&w).is_ok())
        .await
        .unwrap();
    let url = avatar_state(&w).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (server, id) = url.trim_start_matches("mxc://").split_once('/').unwrap();
    let (_, bytes) = w.hs.with_state(|s| s.media(server, id).cloned()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "{url}");
    w.shutdown().await;
}
