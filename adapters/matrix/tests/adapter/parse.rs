//! Transaction fixtures in Synapse 1.163's shape, parsed into the core's events.

use gitter_bridge_core::{MatrixEventKind, MediaKind, MediaMessage, Membership, MsgType};
use gitter_bridge_matrix::{TransactionParseError, parse_transaction};

use crate::helpers::*;

fn kinds(name: &str) -> Vec<MatrixEventKind> {
    let parsed = parse_transaction(&fixture(name)).expect("fixture parses");
    parsed.events.into_iter().map(|e| e.kind).collect()
}

fn other(t: &str) -> MatrixEventKind {
    MatrixEventKind::Other {
        event_type: t.to_owned(),
    }
}

fn text(msgtype: MsgType, body: &str, html: Option<&str>) -> MatrixEventKind {
    MatrixEventKind::Message {
        msgtype,
        body: body.to_owned(),
        formatted_body: html.map(str::to_owned),
        relation: None,
    }
}

#[test]
fn an_invite_of_the_bot_names_the_bot_as_target_in_a_v12_room() {
    let parsed = parse_transaction(&fixture("transaction_bot_invite.json")).unwrap();
    assert_eq!(parsed.events.len(), 1);
    let invite = &parsed.events[0];
    assert_eq!(invite.sender, user(ALICE));
    assert_eq!(
        invite.room_id.as_str(),
        "!dmLSZOeZ9oP7L236JHqokar8JsV0vQv2azhjfMx6b2Y"
    );
    assert!(
        invite.room_id.server_name().is_none(),
        "v12 room ids have no server"
    );
    assert_eq!(
        invite.kind,
        MatrixEventKind::Member {
            target: user(BOT),
            membership: Membership::Invite,
        }
    );
}

#[test]
fn a_portals_life_parses_event_by_event() {
    assert_eq!(
        kinds("transaction_portal.json"),
        vec![
            other("m.room.create"),
            MatrixEventKind::Member {
                target: user(BOT),
                membership: Membership::Join
            },
            other("m.room.power_levels"),
            MatrixEventKind::Member {
                target: user(ALICE),
                membership: Membership::Invite
            },
            MatrixEventKind::Member {
                target: user(ALICE),
                membership: Membership::Join
            },
            text(
                MsgType::Text,
                "hello **gitter**",
                Some("hello <strong>gitter</strong>")
            ),
            text(MsgType::Emote, "waves", None),
            text(MsgType::Notice, "You are now logged in as alice", None),
            // An edit is not a new message: its new content, not its `* ` fallback.
            MatrixEventKind::Edit {
                target: "$KDSqkl81Qvt16L_G7Wq03VkC4n0u46cxLkvUClypoKI"
                    .try_into()
                    .unwrap(),
                msgtype: MsgType::Text,
                body: "hello there".into(),
                formatted_body: None,
            },
            MatrixEventKind::Media {
                media: MediaMessage {
                    kind: MediaKind::Image,
                    server: "example.org".into(),
                    media_id: "GCmhgzMPRjqgpODLsNQzVuHZ".into(),
                    name: "cat.png".into(),
                    caption: None,
                    size: Some(1234),
                },
                relation: None,
            },
            other("m.reaction"),
            MatrixEventKind::Redaction {
                target: "$KDSqkl81Qvt16L_G7Wq03VkC4n0u46cxLkvUClypoKI"
                    .try_into()
                    .unwrap(),
            },
            text(
                MsgType::Text,
                "hi from gitter",
                Some("<p>hi from gitter</p>")
            ),
            // `formatted_body` counts only with `format: org.matrix.custom.html`.
            text(MsgType::Text, "markdown format is not html", None),
            MatrixEventKind::Member {
                target: user(ALICE),
                membership: Membership::Leave
            },
        ]
    );
    let parsed = parse_transaction(&fixture("transaction_portal.json")).unwrap();
    assert_eq!(parsed.ephemeral, 3);
    assert_eq!(parsed.skipped, 0);
}

#[test]
fn odd_events_become_other_and_unidentifiable_ones_are_skipped() {
    let parsed = parse_transaction(&fixture("transaction_malformed_events.json")).unwrap();
    assert_eq!(parsed.skipped, 4);
    let kinds: Vec<_> = parsed.events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            text(MsgType::Text, "first", None),
            other("m.room.message"), // body is a number
            other("m.room.member"),  // unknown membership
            other("m.room.member"),  // state_key is not a user id
            other("m.room.message"), // content is null
            other("m.room.message"), // no msgtype
            text(MsgType::Text, "last", None),
        ]
    );
}

#[test]
fn the_msc2409_ephemeral_key_is_accepted() {
    let body = br#"{"events": [], "de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "content": {}}]}"#;
    let parsed = parse_transaction(body).unwrap();
    assert_eq!(parsed.ephemeral, 1);
}

#[test]
fn whole_body_errors_are_told_apart() {
    assert!(matches!(
        parse_transaction(b"\xff\xfe"),
        Err(TransactionParseError::NotJson(_))
    ));
    assert!(matches!(
        parse_transaction(br#"{"events": null}"#),
        Err(TransactionParseError::BadJson(_))
    ));
}

#[test]
fn thread_messages_and_replies_carry_their_relation() {
    use gitter_bridge_core::Relation;
    let event = |relates_to: serde_json::Value| {
        serde_json::json!({
            "type": "m.room.message",
            "event_id": "$ev",
            "room_id": "!r:example.org",
            "sender": "@alice:example.org",
            "content": {"msgtype": "m.text", "body": "answer", "m.relates_to": relates_to},
        })
    };
    let relation =
        |raw: serde_json::Value| match gitter_bridge_matrix::parse_event(&raw).unwrap().kind {
            MatrixEventKind::Message { relation, .. } => relation,
            other => panic!("{other:?}"),
        };
    assert_eq!(
        relation(event(serde_json::json!({
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": true,
            "m.in_reply_to": {"event_id": "$last"},
        }))),
        Some(Relation::Thread {
            root: "$root".try_into().unwrap()
        })
    );
    assert_eq!(
        relation(event(
            serde_json::json!({"m.in_reply_to": {"event_id": "$asked"}})
        )),
        Some(Relation::Reply {
            to: "$asked".try_into().unwrap()
        })
    );
    assert_eq!(
        relation(event(serde_json::json!({"rel_type": "m.reference"}))),
        None
    );
}

#[test]
fn an_invite_to_a_room_encrypted_from_the_start_says_so_and_encrypted_events_are_named() {
    // Synapse keeps the stripped state (`unsigned.invite_room_state`) on invites it sends to
    // application services; a client that creates an encrypted DM puts `m.room.encryption`
    // in it.
    let mut txn = fixture_json("transaction_bot_invite.json");
    let invite = &mut txn["events"][0];
    invite["unsigned"]["invite_room_state"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "type": "m.room.encryption",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            "sender": ALICE,
        }));
    let room = invite["room_id"].clone();
    let events = txn["events"].as_array_mut().unwrap();
    events.push(serde_json::json!({
        "type": "m.room.encryption", "state_key": "", "room_id": room, "sender": ALICE,
        "event_id": "$enc", "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }));
    events.push(serde_json::json!({
        "type": "m.room.encrypted", "room_id": room, "sender": ALICE, "event_id": "$msg",
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn..."},
    }));
    // Without a state key it is not the state event that turns encryption on.
    events.push(serde_json::json!({
        "type": "m.room.encryption", "room_id": room, "sender": ALICE, "event_id": "$odd",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }));
    let parsed = parse_transaction(&serde_json::to_vec(&txn).unwrap()).unwrap();
    let kinds: Vec<_> = parsed.events.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            MatrixEventKind::EncryptedInvite { target: user(BOT) },
            MatrixEventKind::EncryptionEnabled,
            MatrixEventKind::Encrypted,
            other("m.room.encryption"),
        ]
    );
}

#[test]
fn a_file_with_a_filename_has_a_caption_and_an_encrypted_or_odd_one_is_no_file() {
    let event = |content: serde_json::Value| {
        gitter_bridge_matrix::parse_event(&serde_json::json!({
            "type": "m.room.message", "event_id": "$e", "room_id": "!r:example.org",
            "sender": "@alice:example.org", "content": content,
        }))
        .unwrap()
        .kind
    };
    let MatrixEventKind::Media { media, .. } = event(serde_json::json!({
        "msgtype": "m.file", "body": "the minutes", "filename": "notes.pdf",
        "url": "mxc://example.org/abc",
    })) else {
        panic!("a file");
    };
    assert_eq!(
        (
            media.kind,
            media.name.as_str(),
            media.caption.as_deref(),
            media.size
        ),
        (MediaKind::File, "notes.pdf", Some("the minutes"), None)
    );
    // An encrypted file has `file`, not `url`; a `url` that is no mxc URI is no file.
    for content in [
        serde_json::json!({"msgtype": "m.image", "body": "x.png", "file": {"url": "mxc://e/x"}}),
        serde_json::json!({"msgtype": "m.image", "body": "x.png", "url": "https://e/x.png"}),
    ] {
        assert_eq!(
            event(content),
            text(MsgType::Other("m.image".to_owned()), "x.png", None)
        );
    }
}
