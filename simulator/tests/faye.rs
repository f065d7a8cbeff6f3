//! The realtime client of the Gitter adapter against the fake Gitter's Bayeux endpoint, over
//! real HTTP: what it reports for each thing that happens on Gitter, how it starts over when
//! the server forgets it or loses a delivery, and how it stops for a revoked token. Also the
//! fake's own rules (§6.2, §6.3), spoken raw.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_core::{
    FailureKind, GitterRoomId, GitterUserId, RealtimeEvent, Secret, StreamCall,
};
use gitter_bridge_gitter::{
    FayeConfig, FayeManager, GitterClient, GitterConfig, OAuthConfig, StreamEvent,
};
use gitter_bridge_sim::fake_gitter::FakeGitter;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn adapter(g: &FakeGitter) -> (FayeManager, mpsc::Receiver<StreamEvent>) {
    let url = |s: &str| url::Url::parse(s).unwrap();
    let config = GitterConfig::new(
        url(&g.api_base_url()),
        url(&g.stream_base_url()),
        OAuthConfig {
            authorize_url: url(&g.authorize_url()),
            token_url: url(&g.token_url()),
            client_id: "sim-client-id".into(),
            client_secret: Secret::new("sim-client-secret"),
            redirect_uri: url("http://127.0.0.1:1/oauth/callback"),
        },
    );
    let client = GitterClient::new(config).unwrap();
    let mut faye = FayeConfig::new(url(&g.faye_url()));
    faye.reconnect_min = Duration::from_millis(10);
    faye.reconnect_max = Duration::from_millis(100);
    let (tx, rx) = mpsc::channel(64);
    (FayeManager::new(&client, faye, tx), rx)
}

/// The next event the client reports, within 10 s.
async fn next(rx: &mut mpsc::Receiver<StreamEvent>) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event in time")
        .expect("the channel is open")
}

fn room(g: &FakeGitter) -> GitterRoomId {
    GitterRoomId::new(g.room_id("org/room").unwrap())
}

/// Alice's token reads org/room, and her own channels are watched with it.
async fn alice_reads_and_is_watched(
    g: &FakeGitter,
    faye: &mut FayeManager,
) -> (GitterRoomId, gitter_bridge_core::OwnedUserId) {
    let room = room(g);
    let alice = gitter_bridge_core::OwnedUserId::try_from("@alice:localhost").unwrap();
    faye.execute(&StreamCall::Open {
        room: room.clone(),
        token: Secret::new(ALICE_TOKEN),
    })
    .await
    .unwrap();
    faye.execute(&StreamCall::Watch {
        user: alice.clone(),
        gitter_user: GitterUserId::new(g.user_id("alice").unwrap()),
        token: Secret::new(ALICE_TOKEN),
    })
    .await
    .unwrap();
    (room, alice)
}

#[tokio::test]
async fn one_client_carries_a_room_and_a_user_and_reports_what_happens() {
    let g = gitter().await;
    let (mut faye, mut rx) = adapter(&g);
    let (room, _) = alice_reads_and_is_watched(&g, &mut faye).await;
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Connected { room: room.clone() }
    );
    assert_eq!(faye.clients(), 1, "one client for the token");
    // The user channels are subscribed by now too (the same batch as the room's).
    assert!(
        g.with_state(|s| s.faye_subscriptions("alice"))
            .iter()
            .any(|c| c.ends_with("/rooms") && c.starts_with("/api/v1/user/"))
    );

    let posted = g.post_message("org/room", "bob", "hello").unwrap();
    let id = posted["id"].as_str().unwrap().to_owned();
    match next(&mut rx).await {
        StreamEvent::Message { message, .. } => assert_eq!(message.text, "hello"),
        other => panic!("{other:?}"),
    }
    let now = g.now_ms();
    g.with_state(|s| s.edit_as("bob", "org/room", &id, "hello!", now))
        .unwrap();
    match next(&mut rx).await {
        StreamEvent::Realtime(e) => match *e {
            RealtimeEvent::MessageUpdated {
                message, edited_at, ..
            } => {
                assert_eq!(message.text, "hello!");
                assert!(edited_at.is_some(), "an edit has editedAt");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    g.with_state(|s| s.delete_as("bob", "org/room", &id))
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Realtime(Box::new(RealtimeEvent::MessageRemoved {
            room: room.clone(),
            id: gitter_bridge_core::GitterMessageId::new(id),
        }))
    );
    g.with_state(|s| s.set_room_details("org/room", None, Some("new topic")))
        .unwrap();
    let mut topics = 0;
    // The room's channel and Alice's room list both say it.
    for _ in 0..2 {
        match next(&mut rx).await {
            StreamEvent::Realtime(e) => match *e {
                RealtimeEvent::RoomChanged { topic, .. } => {
                    assert_eq!(topic.as_deref(), Some("new topic"));
                    topics += 1;
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(topics, 2);
    g.leave("org/room", "bob").unwrap();
    match next(&mut rx).await {
        StreamEvent::Realtime(e) => {
            assert!(matches!(*e, RealtimeEvent::MemberLeft { .. }), "{e:?}")
        }
        other => panic!("{other:?}"),
    }
    faye.close_all().await;
}

#[tokio::test]
async fn a_forgotten_client_starts_over_and_its_rooms_reconnect() {
    let g = gitter().await;
    let (mut faye, mut rx) = adapter(&g);
    let room = room(&g);
    faye.execute(&StreamCall::Open {
        room: room.clone(),
        token: Secret::new(ALICE_TOKEN),
    })
    .await
    .unwrap();
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Connected { room: room.clone() }
    );
    assert_eq!(g.with_state(|s| s.faye_forget_clients()), 1);
    match next(&mut rx).await {
        StreamEvent::Disconnected {
            reason,
            reconnecting,
            ..
        } => {
            assert_eq!(reason, FailureKind::Transient);
            assert!(reconnecting);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Connected { room: room.clone() }
    );
    // A lost delivery: the next one shows the gap, and is not delivered (the catch-up
    // reads both from the cursor).
    g.post_message("org/room", "bob", "seen").unwrap();
    assert!(matches!(next(&mut rx).await, StreamEvent::Message { .. }));
    g.with_state(|s| s.faye_skip_sequence());
    g.post_message("org/room", "bob", "lost").unwrap();
    g.post_message("org/room", "bob", "after the gap").unwrap();
    assert!(matches!(
        next(&mut rx).await,
        StreamEvent::Disconnected { .. }
    ));
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Connected { room: room.clone() }
    );
    faye.close_all().await;
}

#[tokio::test]
async fn a_revoked_token_is_reported_and_the_client_stops() {
    let g = gitter().await;
    let (mut faye, mut rx) = adapter(&g);
    let (room, alice) = alice_reads_and_is_watched(&g, &mut faye).await;
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Connected { room: room.clone() }
    );
    assert!(g.revoke_token(ALICE_TOKEN));
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Realtime(Box::new(RealtimeEvent::TokenRevoked {
            user: alice.clone()
        }))
    );
    let mut revoked_room = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
        if let StreamEvent::Disconnected {
            reason: FailureKind::TokenRevoked,
            reconnecting: false,
            ..
        } = event
        {
            revoked_room = true;
        }
    }
    assert!(revoked_room, "the room hears the token is dead");
    assert_eq!(
        g.with_state(|s| s.faye_clients()),
        0,
        "no client left on the server"
    );
    faye.close_all().await;
}

#[tokio::test]
async fn an_invalid_token_is_refused_at_the_handshake() {
    let g = gitter().await;
    let (mut faye, mut rx) = adapter(&g);
    let room = room(&g);
    faye.execute(&StreamCall::Open {
        room: room.clone(),
        token: Secret::new("0".repeat(40)),
    })
    .await
    .unwrap();
    // Never connected, but the room hears the token is dead (the core finds another reader).
    match next(&mut rx).await {
        StreamEvent::Disconnected {
            reason,
            reconnecting,
            ..
        } => {
            assert_eq!(reason, FailureKind::TokenRevoked);
            assert!(!reconnecting);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(g.with_state(|s| s.faye_clients()), 0);
}

async fn bayeux(g: &FakeGitter, batch: Value) -> Vec<Value> {
    let r = client()
        .post(g.faye_url())
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_fake_follows_gitters_handshake_and_channel_rules() {
    let g = gitter().await;
    let no_token = bayeux(
        &g,
        json!([{"channel": "/meta/handshake", "version": "1.0"}]),
    )
    .await;
    assert_eq!(no_token[0]["error"], "401::Access token required");
    assert_eq!(no_token[0]["advice"]["reconnect"], "none");
    let bad = bayeux(
        &g,
        json!([{"channel": "/meta/handshake", "ext": {"token": "0".repeat(40)}}]),
    )
    .await;
    assert_eq!(bad[0]["error"], "401::Invalid access token");
    let ok = bayeux(
        &g,
        json!([{"channel": "/meta/handshake", "ext": {"token": ALICE_TOKEN}}]),
    )
    .await;
    assert_eq!(ok[0]["successful"], true);
    assert_eq!(ok[0]["ext"]["userId"], g.user_id("alice").unwrap());
    let client_id = ok[0]["clientId"].clone();
    let room = g.room_id("org/room").unwrap();
    let bob = g.user_id("bob").unwrap();
    let answers = bayeux(
        &g,
        json!([
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": format!("/api/v1/rooms/{room}/chatMessages")},
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": format!("/api/v1/user/{bob}/rooms")},
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": format!("/api/v1/token/{BOB_TOKEN}")},
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/api/v1/nothing"},
            {"channel": "/meta/subscribe", "clientId": "nobody", "subscription": "/api/v1/ping"},
            {"channel": format!("/api/v1/rooms/{room}/chatMessages"), "clientId": client_id, "data": {}},
        ]),
    )
    .await;
    assert_eq!(answers[0]["successful"], true);
    assert!(
        answers[0]["ext"]["snapshot"].is_array(),
        "a snapshot by default"
    );
    assert_eq!(answers[1]["error"], "403::Authorisation denied.");
    assert_eq!(answers[2]["error"], "403::Authorisation denied.");
    assert_eq!(
        answers[3]["error"],
        "404::Unknown subscription /api/v1/nothing"
    );
    assert_eq!(answers[4]["error"], "401::Client nobody not authenticated");
    assert_eq!(answers[4]["advice"]["reconnect"], "handshake");
    assert_eq!(answers[5]["error"], "403::Push access denied");
    // A delivery carries `ext.c`.
    g.post_message("org/room", "bob", "numbered").unwrap();
    let delivered = bayeux(
        &g,
        json!([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]),
    )
    .await;
    assert_eq!(delivered[0]["successful"], true);
    assert_eq!(delivered[1]["data"]["operation"], "create");
    assert_eq!(delivered[1]["data"]["model"]["text"], "numbered");
    assert_eq!(delivered[1]["ext"]["c"], 1);
}
