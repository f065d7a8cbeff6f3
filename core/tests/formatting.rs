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
            relation: None,
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

/// Alice's `body` in her portal, in a thread or as a reply.
fn alice_relates(
    h: &mut Harness,
    portal: &OwnedRoomId,
    alice: &OwnedUserId,
    body: &str,
    relation: Relation,
) {
    let ev = h.event(
        portal,
        alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: body.into(),
            formatted_body: None,
            relation: Some(relation),
        },
    );
    h.txn(vec![ev]);
    h.settle();
}

#[test]
fn a_thread_message_and_a_reply_go_into_the_gitter_thread_without_their_fallback() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let root = h.say(&portal, &alice, "a question");
    h.settle();
    let root_id = h.gitter[&room].messages[0].id.clone();
    alice_relates(
        &mut h,
        &portal,
        &alice,
        "in the thread",
        Relation::Thread {
            root: root.event_id.clone(),
        },
    );
    alice_relates(
        &mut h,
        &portal,
        &alice,
        "> <@alice:example.org> a question\n> more quote\n\nmy answer",
        Relation::Reply {
            to: root.event_id.clone(),
        },
    );
    assert_eq!(
        h.gitter_thread_view(&room),
        vec![
            ("a question".to_owned(), None),
            ("in the thread".to_owned(), Some(root_id.clone())),
            ("my answer".to_owned(), Some(root_id)),
        ]
    );
}

#[test]
fn a_reply_to_a_message_the_bridge_never_saw_goes_to_the_room() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    alice_relates(
        &mut h,
        &portal,
        &alice,
        "> <@carol:example.org> before the portal\n\nanswer",
        Relation::Reply {
            to: "$unknown".try_into().unwrap(),
        },
    );
    assert_eq!(
        h.gitter_thread_view(&room),
        vec![("answer".to_owned(), None)]
    );
    assert!(
        h.warnings
            .iter()
            .any(|w| w.to_string().contains("goes to the room")),
        "a reason in the log"
    );
}

#[test]
fn a_gitter_thread_reply_is_in_the_matrix_thread_of_its_root_or_says_it_answers_one() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let root = h.gitter_says(&room, "bob", "the root");
    h.settle();
    let root_event = h
        .bridge
        .snapshot()
        .messages
        .get(&alice, &root.id)
        .and_then(|m| m.event_id.clone())
        .expect("the root reached the portal");
    let mut reply = h.gitter_post(&room, "bob", "in the thread");
    reply.parent_id = Some(root.id.clone());
    let mut orphan = h.gitter_post(&room, "bob", "answering something older");
    orphan.parent_id = Some(GitterMessageId::new("0000000000000000000000aa"));
    for message in [reply, orphan] {
        h.step(Input::GitterMessage {
            room: room.clone(),
            message,
        });
        h.settle();
    }
    let sent: Vec<MatrixContent> = h.matrix[&portal]
        .timeline
        .iter()
        .filter(|(sender, _)| sender == &uid("gitter_bob"))
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[1].thread,
        Some(ThreadRef {
            root: root_event.clone(),
            in_reply_to: root_event,
        })
    );
    assert_eq!(sent[1].body, "in the thread");
    assert_eq!(sent[2].thread, None);
    assert_eq!(
        sent[2].body,
        "> In a Gitter thread\n\nanswering something older"
    );
}

/// A message of Alice's in her portal, related or not (built, not sent).
fn alice_message(
    h: &mut Harness,
    portal: &OwnedRoomId,
    alice: &OwnedUserId,
    body: &str,
    relation: Option<Relation>,
) -> MatrixEvent {
    h.event(
        portal,
        alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: body.into(),
            formatted_body: None,
            relation,
        },
    )
}

#[test]
fn a_reply_to_a_message_older_than_the_hot_set_goes_into_its_thread_and_keeps_its_place() {
    let mut config = config();
    config.hot_mappings = 1;
    let mut h = Harness::with_config(config);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let root = h.say(&portal, &alice, "a question");
    h.settle();
    let root_id = h.gitter[&room].messages[0].id.clone();
    for text in ["two", "three"] {
        h.gitter_says(&room, "bob", text);
        h.settle();
    }
    assert!(
        h.bridge
            .snapshot()
            .messages
            .values()
            .all(|m| m.gitter_id != root_id),
        "the root left the hot set"
    );
    // The reply needs a store lookup; the message after it in the same transaction must
    // not overtake it.
    let reply = alice_message(
        &mut h,
        &portal,
        &alice,
        "my answer",
        Some(Relation::Reply {
            to: root.event_id.clone(),
        }),
    );
    let after = alice_message(&mut h, &portal, &alice, "and then", None);
    h.txn(vec![reply, after]);
    h.settle();
    assert_eq!(
        h.gitter_thread_view(&room)[3..],
        [
            ("my answer".to_owned(), Some(root_id)),
            ("and then".to_owned(), None),
        ]
    );
}

#[test]
fn a_gitter_thread_reply_whose_root_is_on_its_way_or_old_goes_into_the_roots_thread() {
    let mut config = config();
    config.hot_mappings = 1;
    let mut h = Harness::with_config(config);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    // The root and its reply come in one go: the root's send is still on its way when the
    // reply is relayed; a message after the reply stays after it.
    let root = h.gitter_says(&room, "bob", "the root");
    let mut reply = h.gitter_post(&room, "bob", "in the thread");
    reply.parent_id = Some(root.id.clone());
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: reply,
    });
    h.gitter_says(&room, "bob", "after the reply");
    h.settle();
    // Later, with the root long out of the hot set, another reply: found in the store.
    for text in ["two", "three"] {
        h.gitter_says(&room, "bob", text);
        h.settle();
    }
    let mut late = h.gitter_post(&room, "bob", "a late reply");
    late.parent_id = Some(root.id.clone());
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: late,
    });
    h.settle();
    let sent: Vec<MatrixContent> = h.matrix[&portal]
        .timeline
        .iter()
        .filter(|(sender, _)| sender == &uid("gitter_bob"))
        .map(|(_, c)| c.clone())
        .collect();
    let bodies: Vec<&str> = sent.iter().map(|c| c.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "the root",
            "in the thread",
            "after the reply",
            "two",
            "three",
            "a late reply"
        ]
    );
    let root_event = h
        .sent_event_of(&portal, "the root")
        .expect("the root reached the portal");
    let in_root_thread = Some(ThreadRef {
        root: root_event.clone(),
        in_reply_to: root_event,
    });
    assert_eq!(sent[1].thread, in_root_thread);
    assert_eq!(sent[2].thread, None);
    assert_eq!(sent[5].thread, in_root_thread);
}

#[test]
fn a_gitter_mention_of_the_owner_or_a_ghost_is_a_pill_and_an_intentional_mention() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.gitter_says(&room, "carol", "hi");
    h.settle();
    let alice_gitter = h.bridge.snapshot().users[&alice]
        .login
        .as_ref()
        .unwrap()
        .gitter_id
        .clone();
    let mut m = h.gitter_post(&room, "bob", "@alice and @carol, look; @/all too");
    m.html = "<span data-link-type=\"mention\" data-screen-name=\"alice\" class=\"mention\">@alice</span> \
              and <span class=\"mention\">@carol</span>, look; @/all too"
        .into();
    m.mentions = vec![
        GitterMention {
            screen_name: "alice".into(),
            user_id: Some(alice_gitter),
            group: false,
        },
        GitterMention {
            screen_name: "carol".into(),
            user_id: Some(gitter_user("carol").id),
            group: false,
        },
        GitterMention {
            screen_name: "/all".into(),
            user_id: None,
            group: true,
        },
    ];
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    h.settle();
    let (_, content) = h.matrix[&portal]
        .timeline
        .iter()
        .rev()
        .find(|(s, _)| s == &uid("gitter_bob"))
        .unwrap()
        .clone();
    assert_eq!(
        content.mentions,
        Some(Mentions {
            user_ids: vec![alice.clone(), uid("gitter_carol")],
            room: true,
        })
    );
    let html = content.formatted_body.unwrap();
    assert!(
        html.contains("<a href=\"https://matrix.to/#/@alice:example.org\">@alice</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://matrix.to/#/@gitter_carol:example.org\">@carol</a>"),
        "{html}"
    );
    assert_eq!(content.body, "@alice and @carol, look; @/all too");
}
