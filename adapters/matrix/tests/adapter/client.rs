//! The CS client against a fake homeserver: each call's method, path, identity assertion,
//! auth header and body; the executor of the core's actions; startup checks.

use std::collections::BTreeMap;

use gitter_bridge_core::{
    Action, BridgeInfo, EffectId, EffectOutput, FailureKind, GitterRoomId, MatrixCall,
    MatrixContent, NewPortal, OutMsgType, Secret, StreamCall, Timestamp,
};
use gitter_bridge_matrix::{MatrixError, PingError};
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{
    body_json, body_partial_json, header, query_param, query_param_is_missing,
};

use crate::helpers::*;

/// A portal room with no bridge info (as from an effect stored before it had one).
fn plain_room(invite: &[&str]) -> NewPortal {
    NewPortal {
        creator: user(BOT),
        name: "room".to_owned(),
        topic: String::new(),
        invite: invite.iter().map(|u| user(u)).collect(),
        power_users: BTreeMap::new(),
        alias: "_gitter_portal_00ff".to_owned(),
        is_direct: false,
        bridge: None,
    }
}

/// Every portal is created with an empty one (the alias is only a creation marker).
const CANONICAL_ALIAS: &str = "m.room.canonical_alias";

fn ok(body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn matrix_err(status: u16, errcode: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "errcode": errcode, "error": "test" }))
}

#[tokio::test]
async fn registering_a_ghost_posts_an_appservice_registration_as_the_bot() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/register")
        .sent_as_bot()
        .and(body_json(json!({
            "type": "m.login.application_service",
            "username": "gitter_bob",
            "inhibit_login": true,
        })))
        .respond_with(ok(json!({ "user_id": GHOST, "home_server": SERVER_NAME })))
        .expect(1)
        .mount(&hs)
        .await;

    let out = client
        .execute(
            EffectId(1),
            &Action::Matrix(MatrixCall::RegisterGhost { user: user(GHOST) }),
        )
        .await;
    assert_eq!(out, Ok(EffectOutput::Done));
}

#[tokio::test]
async fn a_ghost_that_already_exists_is_registered() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/register")
        .respond_with(matrix_err(400, "M_USER_IN_USE"))
        .expect(1)
        .mount(&hs)
        .await;
    assert!(client.register_ghost(&user(GHOST)).await.is_ok());
}

#[tokio::test]
async fn a_ghost_outside_the_namespace_is_rejected() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/register")
        .respond_with(matrix_err(400, "M_EXCLUSIVE"))
        .expect(1)
        .mount(&hs)
        .await;
    let failure = client
        .execute(
            EffectId(1),
            &Action::Matrix(MatrixCall::RegisterGhost { user: user(GHOST) }),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(
        failure.message.contains("M_EXCLUSIVE"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn creating_a_portal_never_lists_the_creator_in_power_levels() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .sent_as_bot()
        .and(body_json(json!({
            "preset": "private_chat",
            "name": "gitter/community",
            "topic": "Chat about Gitter",
            "invite": [ALICE],
            "power_level_content_override": { "users": { ALICE: 10 } },
            "room_alias_name": "_gitter_portal_00ff",
            "initial_state": [
                { "type": "m.room.canonical_alias", "state_key": "", "content": {} }
            ],
        })))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;

    // The creator sneaks into power_users: the client must drop it (room version 12 gives
    // creators implicit top power, and Synapse refuses the room otherwise).
    let power_users = BTreeMap::from([(user(BOT), 100), (user(ALICE), 10)]);
    let out = client
        .execute(
            EffectId(2),
            &Action::Matrix(MatrixCall::CreateRoom {
                creator: user(BOT),
                name: "gitter/community".to_owned(),
                topic: "Chat about Gitter".to_owned(),
                invite: vec![user(ALICE)],
                power_users,
                alias: "_gitter_portal_00ff".to_owned(),
            }),
        )
        .await;
    assert_eq!(out, Ok(EffectOutput::RoomCreated(room(ROOM))));
}

#[tokio::test]
async fn a_room_without_extra_power_users_sends_no_power_level_override() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .and(body_json(json!({
            "preset": "private_chat",
            "name": "room",
            "invite": [],
            "room_alias_name": "_gitter_portal_00ff",
            "initial_state": [
                { "type": CANONICAL_ALIAS, "state_key": "", "content": {} }
            ],
        })))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;
    let created = client.create_room(&plain_room(&[])).await.unwrap();
    assert_eq!(created, room(ROOM));
}

#[tokio::test]
async fn a_one_to_one_portal_is_direct_and_every_portal_says_what_it_bridges() {
    let (hs, client) = homeserver().await;
    let info = json!({
        "bridgebot": BOT,
        "creator": BOT,
        "protocol": {
            "id": "gitter",
            "displayname": "Gitter",
            "external_url": "https://gitter.im",
        },
        "channel": { "id": "5f00aa", "displayname": "Bob Builder" },
    });
    let key = "gitter-bridge://gitter/5f00aa";
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .and(body_json(json!({
            "preset": "private_chat",
            "name": "room",
            "invite": [ALICE],
            "is_direct": true,
            "room_alias_name": "_gitter_portal_00ff",
            "initial_state": [
                { "type": CANONICAL_ALIAS, "state_key": "", "content": {} },
                { "type": "m.bridge", "state_key": key, "content": info },
                { "type": "uk.half-shot.bridge", "state_key": key, "content": info },
            ],
        })))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;
    let new = NewPortal {
        is_direct: true,
        bridge: Some(BridgeInfo {
            bot: user(BOT),
            room_id: GitterRoomId::new("5f00aa"),
            room_name: "Bob Builder".to_owned(),
            web_url: "https://gitter.im/".to_owned(),
            room_uri: None,
        }),
        ..plain_room(&[ALICE])
    };
    let out = client
        .execute(
            EffectId(3),
            &Action::Matrix(MatrixCall::CreatePortal(Box::new(new))),
        )
        .await;
    assert_eq!(out, Ok(EffectOutput::RoomCreated(room(ROOM))));
}

#[tokio::test]
async fn a_room_channel_links_to_the_room_on_gitter() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .and(body_partial_json(json!({
            "initial_state": [
                { "type": CANONICAL_ALIAS, "state_key": "", "content": {} },
                { "type": "m.bridge", "content": { "channel": {
                    "id": "5f00bb",
                    "displayname": "gitterhq/sandbox",
                    "external_url": "https://gitter.im/gitterhq/sandbox",
                } } },
                { "type": "uk.half-shot.bridge" },
            ],
        })))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;
    let new = NewPortal {
        bridge: Some(BridgeInfo {
            bot: user(BOT),
            room_id: GitterRoomId::new("5f00bb"),
            room_name: "gitterhq/sandbox".to_owned(),
            web_url: "https://gitter.im".to_owned(),
            room_uri: Some("gitterhq/sandbox".to_owned()),
        }),
        ..plain_room(&[])
    };
    assert_eq!(client.create_room(&new).await.unwrap(), room(ROOM));
}

#[tokio::test]
async fn a_room_creation_retried_after_a_lost_answer_finds_the_room_by_its_alias() {
    let (hs, client) = homeserver().await;
    // The first try made the room and its alias; its answer was lost. The retry is refused
    // because the alias is taken, and the alias names the room: no second portal room.
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .respond_with(matrix_err(400, "M_ROOM_IN_USE"))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call(
        "GET",
        &format!("/_matrix/client/v3/directory/room/%23_gitter_portal_00ff%3A{SERVER_NAME}"),
    )
    .respond_with(ok(json!({ "room_id": ROOM, "servers": [SERVER_NAME] })))
    .expect(1)
    .mount(&hs)
    .await;
    // The first try may have stopped before its invites: the owner is invited again.
    expect_call(
        "POST",
        &format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/invite"),
    )
    .and(body_json(json!({ "user_id": ALICE })))
    .respond_with(ok(json!({})))
    .expect(1)
    .mount(&hs)
    .await;
    let created = client.create_room(&plain_room(&[ALICE])).await.unwrap();
    assert_eq!(created, room(ROOM));
}

#[tokio::test]
async fn a_registration_without_the_alias_namespace_still_gets_its_room() {
    let (hs, client) = homeserver().await;
    // Synapse: "This application service has not reserved this kind of alias."
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .and(body_partial_json(
            json!({ "room_alias_name": "_gitter_portal_00ff" }),
        ))
        .respond_with(matrix_err(400, "M_EXCLUSIVE"))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", "/_matrix/client/v3/createRoom")
        .and(body_json(json!({
            "preset": "private_chat",
            "name": "room",
            "invite": [],
            "initial_state": [
                { "type": CANONICAL_ALIAS, "state_key": "", "content": {} }
            ],
        })))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;
    let created = client.create_room(&plain_room(&[])).await.unwrap();
    assert_eq!(created, room(ROOM));
}

#[tokio::test]
async fn deleting_an_alias_that_is_already_gone_succeeds() {
    let (hs, client) = homeserver().await;
    expect_call(
        "DELETE",
        &format!("/_matrix/client/v3/directory/room/%23_gitter_portal_00ff%3A{SERVER_NAME}"),
    )
    .sent_as_bot()
    .respond_with(matrix_err(404, "M_NOT_FOUND"))
    .expect(1)
    .mount(&hs)
    .await;
    let out = client
        .execute(
            EffectId(3),
            &Action::Matrix(MatrixCall::DeleteAlias {
                alias: format!("#_gitter_portal_00ff:{SERVER_NAME}"),
            }),
        )
        .await;
    assert_eq!(out, Ok(EffectOutput::Done));
}

#[tokio::test]
async fn a_ghost_sends_with_the_effects_transaction_id_and_a_massaged_timestamp() {
    let (hs, client) = homeserver().await;
    let event_id = "$Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5";
    expect_call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/send/m.room.message/gb42"),
    )
    .sent_as(GHOST)
    .and(query_param("ts", "1600000000000"))
    .and(body_json(json!({
        "msgtype": "m.text",
        "body": "hi **there**",
        "format": "org.matrix.custom.html",
        "formatted_body": "hi <strong>there</strong>",
    })))
    .respond_with(ok(json!({ "event_id": event_id })))
    .expect(1)
    .mount(&hs)
    .await;

    let out = client
        .execute(
            EffectId(42),
            &Action::Matrix(MatrixCall::SendMessage {
                room: room(ROOM),
                sender: user(GHOST),
                content: MatrixContent {
                    msgtype: OutMsgType::Text,
                    body: "hi **there**".to_owned(),
                    formatted_body: Some("hi <strong>there</strong>".to_owned()),
                    thread: None,
                    mentions: None,
                },
                ts: Some(Timestamp(1_600_000_000_000)),
            }),
        )
        .await;
    assert_eq!(
        out,
        Ok(EffectOutput::EventSent(event_id.try_into().unwrap()))
    );
}

#[tokio::test]
async fn the_bot_sends_a_notice_without_identity_assertion_or_timestamp() {
    let (hs, client) = homeserver().await;
    expect_call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/send/m.room.message/gb7"),
    )
    .sent_as_bot()
    .and(query_param_is_missing("ts"))
    .and(body_json(json!({ "msgtype": "m.notice", "body": "Hello" })))
    .respond_with(ok(json!({ "event_id": "$abc" })))
    .expect(1)
    .mount(&hs)
    .await;
    let out = client
        .execute(
            EffectId(7),
            &Action::Matrix(MatrixCall::SendMessage {
                room: room(ROOM),
                sender: user(BOT),
                content: MatrixContent::notice("Hello"),
                ts: None,
            }),
        )
        .await;
    assert!(matches!(out, Ok(EffectOutput::EventSent(_))), "{out:?}");
}

#[tokio::test]
async fn membership_calls_use_encoded_room_ids_and_the_acting_user() {
    let (hs, client) = homeserver().await;
    let rooms = format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}");
    expect_call("POST", &format!("{rooms}/join"))
        .sent_as(GHOST)
        .and(body_json(json!({})))
        .respond_with(ok(json!({ "room_id": ROOM })))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", &format!("{rooms}/leave"))
        .sent_as_bot()
        .respond_with(ok(json!({})))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", &format!("{rooms}/kick"))
        .sent_as_bot()
        .and(body_json(
            json!({ "user_id": ALICE, "reason": "Logged out" }),
        ))
        .respond_with(ok(json!({})))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", &format!("{rooms}/invite"))
        .sent_as_bot()
        .and(body_json(json!({ "user_id": ALICE })))
        .respond_with(ok(json!({})))
        .expect(1)
        .mount(&hs)
        .await;

    let actions = [
        Action::Matrix(MatrixCall::Join {
            room: room(ROOM),
            user: user(GHOST),
        }),
        Action::Matrix(MatrixCall::Leave {
            room: room(ROOM),
            user: user(BOT),
        }),
        Action::Matrix(MatrixCall::Kick {
            room: room(ROOM),
            sender: user(BOT),
            target: user(ALICE),
            reason: "Logged out".to_owned(),
        }),
        Action::Matrix(MatrixCall::Invite {
            room: room(ROOM),
            sender: user(BOT),
            target: user(ALICE),
        }),
    ];
    for (i, action) in actions.iter().enumerate() {
        let out = client.execute(EffectId(i as u64), action).await;
        assert_eq!(out, Ok(EffectOutput::Done), "{}", action.name());
    }
}

#[tokio::test]
async fn a_ghost_sets_its_own_display_name() {
    let (hs, client) = homeserver().await;
    expect_call(
        "PUT",
        "/_matrix/client/v3/profile/%40gitter_bob%3Aexample.org/displayname",
    )
    .sent_as(GHOST)
    .and(body_json(json!({ "displayname": "Bob (Gitter)" })))
    .respond_with(ok(json!({})))
    .expect(1)
    .mount(&hs)
    .await;
    let out = client
        .execute(
            EffectId(3),
            &Action::Matrix(MatrixCall::SetDisplayName {
                user: user(GHOST),
                name: "Bob (Gitter)".to_owned(),
            }),
        )
        .await;
    assert_eq!(out, Ok(EffectOutput::Done));
}

#[tokio::test]
async fn room_members_are_the_joined_and_invited_ones() {
    let (hs, client) = homeserver().await;
    expect_call(
        "GET",
        &format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/members"),
    )
    .sent_as_bot()
    .respond_with(ok(fixture_json("members_response.json")))
    .expect(1)
    .mount(&hs)
    .await;
    let out = client
        .execute(
            EffectId(4),
            &Action::Matrix(MatrixCall::RoomMembers { room: room(ROOM) }),
        )
        .await;
    assert_eq!(
        out,
        Ok(EffectOutput::MatrixMembers(vec![
            user(ALICE),
            user("@carol:example.org"),
            user(BOT),
        ]))
    );
}

#[tokio::test]
async fn avatar_upload_and_redaction() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/media/v3/upload")
        .sent_as(GHOST)
        .and(query_param("filename", "bob.png"))
        .and(header("content-type", "image/png"))
        .respond_with(ok(json!({ "content_uri": "mxc://example.org/abc" })))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call(
        "PUT",
        "/_matrix/client/v3/profile/%40gitter_bob%3Aexample.org/avatar_url",
    )
    .sent_as(GHOST)
    .and(body_json(json!({ "avatar_url": "mxc://example.org/abc" })))
    .respond_with(ok(json!({})))
    .expect(1)
    .mount(&hs)
    .await;
    expect_call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/redact/%24orig/gb9"),
    )
    .sent_as(GHOST)
    .and(body_json(json!({ "reason": "deleted on Gitter" })))
    .respond_with(ok(json!({ "event_id": "$redaction" })))
    .expect(1)
    .mount(&hs)
    .await;

    let mxc = client
        .upload_media(
            &user(GHOST),
            bytes::Bytes::from_static(b"\x89PNG"),
            "image/png",
            Some("bob.png"),
        )
        .await
        .unwrap();
    assert_eq!(mxc, "mxc://example.org/abc");
    client.set_avatar_url(&user(GHOST), &mxc).await.unwrap();
    let redaction = client
        .redact(
            &room(ROOM),
            &user(GHOST),
            &"$orig".try_into().unwrap(),
            "gb9",
            Some("deleted on Gitter"),
        )
        .await
        .unwrap();
    assert_eq!(redaction.as_str(), "$redaction");
}

#[tokio::test]
async fn refusals_map_to_the_cores_failure_kinds() {
    let (hs, client) = homeserver().await;
    let rooms = format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}");
    expect_call("POST", &format!("{rooms}/join"))
        .respond_with(matrix_err(403, "M_FORBIDDEN"))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", &format!("{rooms}/leave"))
        .respond_with(matrix_err(404, "M_NOT_FOUND"))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("POST", &format!("{rooms}/invite"))
        .respond_with(matrix_err(400, "M_BAD_JSON"))
        .expect(1)
        .mount(&hs)
        .await;
    let join = Action::Matrix(MatrixCall::Join {
        room: room(ROOM),
        user: user(BOT),
    });
    let leave = Action::Matrix(MatrixCall::Leave {
        room: room(ROOM),
        user: user(BOT),
    });
    let invite = Action::Matrix(MatrixCall::Invite {
        room: room(ROOM),
        sender: user(BOT),
        target: user(ALICE),
    });
    let kind = |r: gitter_bridge_core::EffectResult| r.unwrap_err().kind;
    assert_eq!(
        kind(client.execute(EffectId(1), &join).await),
        FailureKind::Forbidden
    );
    assert_eq!(
        kind(client.execute(EffectId(2), &leave).await),
        FailureKind::NotFound
    );
    assert_eq!(
        kind(client.execute(EffectId(3), &invite).await),
        FailureKind::Rejected
    );
}

#[tokio::test]
async fn a_gitter_action_is_not_executed_here() {
    let (_hs, client) = homeserver().await;
    let failure = client
        .execute(
            EffectId(1),
            &Action::Stream(StreamCall::Close {
                room: GitterRoomId::new("r"),
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Rejected);
}

#[tokio::test]
async fn a_bad_as_token_is_fatal_and_not_retried() {
    let (hs, client) = homeserver().await;
    expect_call("GET", "/_matrix/client/versions")
        .respond_with(ok(json!({ "versions": ["v1.11", "v1.12"] })))
        .mount(&hs)
        .await;
    expect_call("GET", "/_matrix/client/v3/account/whoami")
        .respond_with(matrix_err(401, "M_UNKNOWN_TOKEN"))
        .expect(1)
        .mount(&hs)
        .await;
    let err = client.check_homeserver().await.unwrap_err();
    assert!(matches!(err, MatrixError::BadAsToken { .. }), "{err:?}");
    assert!(err.is_fatal());
    let text = err.to_string();
    assert!(
        text.contains("as_token") && text.contains("registration"),
        "{text}"
    );
    assert!(!text.contains(AS_TOKEN), "the token must never be printed");
}

#[tokio::test]
async fn startup_check_passes_with_versions_and_whoami() {
    let (hs, client) = homeserver().await;
    expect_call("GET", "/_matrix/client/versions")
        .respond_with(ok(json!({
            "versions": ["v1.11", "v1.12"],
            "unstable_features": { "org.matrix.msc3030": true, "off": false },
        })))
        .expect(1)
        .mount(&hs)
        .await;
    expect_call("GET", "/_matrix/client/v3/account/whoami")
        .sent_as_bot()
        .respond_with(ok(json!({ "user_id": BOT })))
        .expect(1)
        .mount(&hs)
        .await;
    let versions = client.check_homeserver().await.unwrap();
    assert_eq!(versions.versions, ["v1.11", "v1.12"]);
    assert_eq!(versions.unstable_features, ["org.matrix.msc3030"]);
}

#[tokio::test]
async fn startup_check_catches_a_bot_localpart_that_differs_from_the_registration() {
    let (hs, client) = homeserver().await;
    expect_call("GET", "/_matrix/client/versions")
        .respond_with(ok(json!({ "versions": ["v1.11"] })))
        .mount(&hs)
        .await;
    expect_call("GET", "/_matrix/client/v3/account/whoami")
        .respond_with(ok(json!({ "user_id": "@_gitter_bot:example.org" })))
        .mount(&hs)
        .await;
    let err = client.check_homeserver().await.unwrap_err();
    assert!(matches!(err, MatrixError::WrongSender { .. }), "{err:?}");
    assert!(err.to_string().contains("sender_localpart"));
}

#[tokio::test]
async fn ping_reports_the_round_trip() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v1/appservice/gitter/ping")
        .sent_as_bot()
        .and(body_json(json!({ "transaction_id": "startup-1" })))
        .respond_with(ok(json!({ "duration_ms": 12 })))
        .expect(1)
        .mount(&hs)
        .await;
    let rtt = client.ping("startup-1").await.unwrap();
    assert_eq!(rtt, std::time::Duration::from_millis(12));
}

#[tokio::test]
async fn ping_failures_tell_the_operator_what_to_fix() {
    let cases = [
        (
            ResponseTemplate::new(400)
                .set_body_json(json!({ "errcode": "M_URL_NOT_SET", "error": "no url" })),
            "`url` in the registration",
        ),
        (
            ResponseTemplate::new(502).set_body_json(
                json!({ "errcode": "M_CONNECTION_FAILED", "error": "Connection refused" }),
            ),
            "could not connect to the bridge",
        ),
        (
            ResponseTemplate::new(502).set_body_json(json!({
                "errcode": "M_BAD_STATUS", "error": "bad status", "status": 403,
                "body": "{\"errcode\":\"M_FORBIDDEN\"}",
            })),
            "hs_token",
        ),
        (
            ResponseTemplate::new(403).set_body_json(
                json!({ "errcode": "M_FORBIDDEN", "error": "Mismatching application service ID in path" }),
            ),
            "`id` in the registration",
        ),
    ];
    for (response, hint) in cases {
        let (hs, client) = homeserver().await;
        // Not retried: one call per ping, whatever the answer.
        expect_call("POST", "/_matrix/client/v1/appservice/gitter/ping")
            .respond_with(response)
            .expect(1)
            .mount(&hs)
            .await;
        let err = client.ping("t").await.unwrap_err();
        assert!(
            err.to_string().contains(hint),
            "{err} should mention {hint}"
        );
    }
}

#[tokio::test]
async fn ping_on_an_old_homeserver_is_unsupported_not_broken() {
    let (hs, client) = homeserver().await;
    expect_call("POST", "/_matrix/client/v1/appservice/gitter/ping")
        .respond_with(matrix_err(404, "M_UNRECOGNIZED"))
        .mount(&hs)
        .await;
    assert!(matches!(
        client.ping("t").await,
        Err(PingError::Unsupported)
    ));
}

#[tokio::test]
async fn tokens_stay_out_of_debug_output() {
    let (_hs, client) = homeserver().await;
    let config = client_config("http://127.0.0.1:1");
    assert!(!format!("{client:?}").contains(AS_TOKEN));
    assert!(!format!("{config:?}").contains(AS_TOKEN));
    assert!(!format!("{:?}", Secret::new(AS_TOKEN)).contains(AS_TOKEN));
}

#[tokio::test]
async fn an_oversized_answer_is_refused_not_read_whole() {
    let (hs, client) = homeserver().await;
    let huge = "x".repeat(9 << 20);
    expect_call(
        "GET",
        "/_matrix/client/v3/directory/room/%23a%3Aexample.org",
    )
    .respond_with(ResponseTemplate::new(200).set_body_string(huge))
    .mount(&hs)
    .await;
    let err = client.resolve_alias("#a:example.org").await.unwrap_err();
    assert!(err.to_string().contains("larger than 8 MiB"), "{err}");
}

#[test]
fn a_thread_reply_carries_the_thread_relation_and_its_reply_fallback() {
    let root: gitter_bridge_core::OwnedEventId = "$root".try_into().unwrap();
    let content = MatrixContent {
        msgtype: OutMsgType::Text,
        body: "in the thread".into(),
        formatted_body: None,
        thread: Some(gitter_bridge_core::ThreadRef {
            root: root.clone(),
            in_reply_to: root,
        }),
        mentions: None,
    };
    assert_eq!(
        gitter_bridge_matrix::message_content(&content),
        json!({
            "msgtype": "m.text",
            "body": "in the thread",
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": "$root",
                "is_falling_back": true,
                "m.in_reply_to": {"event_id": "$root"},
            },
        })
    );
}
