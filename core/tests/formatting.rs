//! What the portal owner writes in a rich Matrix client keeps its formatting on Gitter
//! (issue 15): `formatted_body` becomes Gitter markdown, and a pill of a Gitter user's ghost
//! becomes their `@username` mention.

mod common;

use common::*;
use gitter_bridge_core::*;

#[test]
fn formatting_and_pills_reach_gitter_as_markdown_and_mentions() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    // Bob has spoken, so he has a ghost.
    h.gitter_says(&room, "bob", "hi");
    h.settle();
    let ev = h.event(
        &portal,
        &alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: "Bob (Gitter): see the *docs*".into(),
            formatted_body: Some(
                "<a href=\"https://matrix.to/#/@gitter_bob:example.org\">Bob (Gitter)</a>: \
                 see the <em>docs</em> and run <code>cargo test</code>"
                    .into(),
            ),
        },
    );
    h.txn(vec![ev]);
    h.settle();
    assert_eq!(
        h.gitter_texts(&room).last().unwrap(),
        "@bob: see the *docs* and run `cargo test`"
    );
}

#[test]
fn a_plain_message_is_posted_as_its_body() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.say(&portal, &alice, "1 * 2 * 3 is 6, not <b>");
    h.settle();
    assert_eq!(
        h.gitter_texts(&room),
        vec!["1 * 2 * 3 is 6, not <b>".to_owned()]
    );
}
