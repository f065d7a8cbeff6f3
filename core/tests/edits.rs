//! Edits and redactions of the portal owner's messages reach Gitter (issue 15, Matrix to
//! Gitter): within Gitter's 10 minutes an edit edits, past them it becomes a correction in
//! the thread (told once), a redaction deletes, and a target the bridge never bridged changes
//! nothing on Gitter and is explained.

mod common;

use common::*;
use gitter_bridge_core::*;

/// Alice logged in with her portal of org/chat, where she said `text`.
fn alice_said(
    h: &mut Harness,
    text: &str,
) -> (GitterRoomId, OwnedRoomId, OwnedUserId, MatrixEvent) {
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let said = h.say(&portal, &alice, text);
    h.settle();
    assert_eq!(h.gitter_texts(&room), vec![text.to_owned()]);
    (room, portal, alice, said)
}

const PAST_WINDOW: &str = "Gitter lets a message be edited for 10 minutes only";

#[test]
fn an_edit_within_ten_minutes_edits_the_message_on_gitter() {
    let mut h = Harness::new();
    let (room, portal, alice, said) = alice_said(&mut h, "helo wrold");
    h.now = h.now.plus_ms(5 * 60 * 1000);
    h.edit(&portal, &alice, &said, "hello world");
    h.settle();
    assert_eq!(h.gitter_texts(&room), vec!["hello world".to_owned()]);
    assert!(h.notices(&portal).is_empty(), "{:?}", h.notices(&portal));
}

#[test]
fn an_edit_past_the_window_is_a_correction_in_the_thread_and_the_owner_is_told_once() {
    let mut h = Harness::new();
    let (room, portal, alice, said) = alice_said(&mut h, "helo");
    let original = h.gitter[&room].messages[0].id.clone();
    h.now = h.now.plus_ms(11 * 60 * 1000);
    h.edit(&portal, &alice, &said, "hello");
    h.settle();
    h.edit(&portal, &alice, &said, "hello!");
    h.settle();
    assert_eq!(
        h.gitter_thread_view(&room),
        vec![
            ("helo".to_owned(), None),
            ("Correction: hello".to_owned(), Some(original.clone())),
            ("Correction: hello!".to_owned(), Some(original)),
        ]
    );
    let told: Vec<_> = h
        .notices(&portal)
        .into_iter()
        .filter(|n| n.starts_with(PAST_WINDOW))
        .collect();
    assert_eq!(told.len(), 1, "told once: {:?}", h.notices(&portal));
}

#[test]
fn an_edit_gitter_refuses_as_too_late_becomes_a_correction() {
    let mut h = Harness::new();
    let (room, portal, alice, said) = alice_said(&mut h, "first");
    // Gitter's clock is ahead of ours: it refuses what we thought was in time (§3.8, 400).
    h.fail_next("edit_gitter", FailureKind::Rejected, 1);
    h.edit(&portal, &alice, &said, "first, fixed");
    h.settle();
    assert_eq!(
        h.gitter_texts(&room),
        vec!["first".to_owned(), "Correction: first, fixed".to_owned()]
    );
    assert!(h.last_notice(&portal).starts_with(PAST_WINDOW));
}

#[test]
fn a_redaction_deletes_the_message_on_gitter() {
    let mut h = Harness::new();
    let (room, portal, alice, said) = alice_said(&mut h, "oops");
    h.redact(&portal, &alice, &said);
    h.settle();
    assert!(h.gitter_texts(&room).is_empty());
    assert!(h.notices(&portal).is_empty());
}

#[test]
fn a_change_to_a_message_never_bridged_changes_nothing_on_gitter_and_says_why() {
    let mut h = Harness::new();
    let (room, portal, alice, _) = alice_said(&mut h, "kept");
    let stranger = h.event(
        &portal,
        &alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: "never sent".into(),
            formatted_body: None,
            relation: None,
        },
    );
    h.edit(&portal, &alice, &stranger, "edited");
    h.settle();
    h.redact(&portal, &alice, &stranger);
    h.settle();
    assert_eq!(h.gitter_texts(&room), vec!["kept".to_owned()]);
    // The edit is explained; a redaction of something never bridged (a reaction taken back,
    // say) is common and gets no notice.
    let notices = h.notices(&portal);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("Your edit was not made on Gitter"),
        "{notices:?}"
    );
    assert!(
        h.warnings
            .iter()
            .any(|w| w.to_string().contains("has no Gitter message")),
        "a reason in the log"
    );
}

#[test]
fn an_old_message_outside_the_hot_set_is_found_in_the_store() {
    let mut config = config();
    config.hot_mappings = 1;
    let mut h = Harness::with_config(config);
    let (room, portal, alice, first) = alice_said(&mut h, "one");
    for text in ["two", "three"] {
        h.say(&portal, &alice, text);
        h.settle();
    }
    assert!(
        !h.bridge
            .snapshot()
            .messages
            .values()
            .any(|m| m.event_id.as_ref() == Some(&first.event_id)),
        "the first mapping left the hot set"
    );
    h.edit(&portal, &alice, &first, "one, edited");
    h.settle();
    assert_eq!(
        h.gitter_texts(&room),
        vec![
            "one, edited".to_owned(),
            "two".to_owned(),
            "three".to_owned()
        ]
    );
    assert!(
        h.log
            .iter()
            .any(|e| matches!(e.action, Action::Store(StoreCall::MappingByEvent { .. }))),
        "looked up in the store"
    );
}

#[test]
fn an_edit_made_while_its_message_is_still_being_sent_waits_for_the_send() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let said = h.say(&portal, &alice, "quick typo");
    // The edit comes before the send's answer: no mapping yet.
    h.edit(&portal, &alice, &said, "quick, no typo");
    h.settle();
    assert_eq!(h.gitter_texts(&room), vec!["quick, no typo".to_owned()]);
}

#[test]
fn someone_elses_edit_in_the_portal_is_not_bridged() {
    let mut h = Harness::new();
    let (room, portal, _alice, said) = alice_said(&mut h, "mine");
    let mallory = uid("mallory");
    h.edit(&portal, &mallory, &said, "not yours");
    h.redact(&portal, &mallory, &said);
    h.settle();
    assert_eq!(h.gitter_texts(&room), vec!["mine".to_owned()]);
}
