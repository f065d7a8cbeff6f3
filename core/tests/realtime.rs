//! What Gitter's realtime API reports besides new messages (issue 16): edits and deletions
//! reach every portal that has the message, and never twice in the portal whose owner made
//! them from Matrix; members come and go as ghosts; names and topics follow; rooms joined
//! and left elsewhere open and close portals; a revoked token ends the login at once.

mod common;

use common::*;
use gitter_bridge_core::*;

/// Alice and Carol, both logged in, each with a portal of org/chat (Bob is there too).
fn two_portals(h: &mut Harness) -> (GitterRoomId, [(OwnedUserId, OwnedRoomId); 2]) {
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (carol, _) = h.logged_in_user("carol", "carol");
    let a = h.portal(&alice, &room).unwrap();
    let c = h.portal(&carol, &room).unwrap();
    (room, [(alice, a), (carol, c)])
}

fn realtime(h: &mut Harness, event: RealtimeEvent) {
    h.step(Input::Realtime(event));
    h.settle();
}

fn edited(message: &GitterMessage, text: &str, edited_at: &str) -> RealtimeEvent {
    let mut message = message.clone();
    message.text = text.to_owned();
    message.html = text.to_owned();
    RealtimeEvent::MessageUpdated {
        room: GitterRoomId::new("r-org/chat"),
        message,
        edited_at: Some(edited_at.to_owned()),
    }
}

/// Bob opens a one-to-one with `user` on Gitter: it appears in their room list.
fn bob_opens_a_one_to_one_with(h: &mut Harness, user: &OwnedUserId) -> GitterRoomId {
    let room = h.add_gitter_room("dm-bob", &["alice", "bob"]);
    let dm = GitterRoom {
        name: "Bob Display".into(),
        uri: None,
        one_to_one: true,
        room_member: Some(true),
        avatar_url: None,
        ..h.gitter[&room].room.clone()
    };
    realtime(
        h,
        RealtimeEvent::RoomListed {
            user: user.clone(),
            room: dm,
        },
    );
    room
}

fn bodies_of(h: &Harness, portal: &OwnedRoomId, sender: &OwnedUserId) -> Vec<String> {
    h.timeline(portal)
        .into_iter()
        .filter(|(s, _)| s == sender)
        .map(|(_, b)| b)
        .collect()
}

#[test]
fn an_edit_on_gitter_replaces_the_message_in_every_portal_as_its_author() {
    let mut h = Harness::new();
    let (room, portals) = two_portals(&mut h);
    let said = h.gitter_says(&room, "bob", "helo");
    h.settle();
    realtime(&mut h, edited(&said, "hello", "2024-01-01T00:01:00.000Z"));
    let bob = uid("gitter_bob");
    for (_, portal) in &portals {
        assert_eq!(bodies_of(&h, portal, &bob), vec!["hello".to_owned()]);
        assert_eq!(h.matrix[portal].edits.len(), 1);
        assert_eq!(h.matrix[portal].edits[0].0, bob, "replaced by its sender");
    }
}

#[test]
fn an_update_that_does_not_change_edited_at_is_not_an_edit() {
    let mut h = Harness::new();
    let (room, portals) = two_portals(&mut h);
    let said = h.gitter_says(&room, "bob", "root");
    h.settle();
    // A reply in its thread: Gitter saves the root again for its thread count (§3.10).
    realtime(
        &mut h,
        RealtimeEvent::MessageUpdated {
            room: room.clone(),
            message: said.clone(),
            edited_at: None,
        },
    );
    realtime(&mut h, edited(&said, "root!", "2024-01-01T00:01:00.000Z"));
    // And again for the next reply, with the same `editedAt`.
    realtime(&mut h, edited(&said, "root!", "2024-01-01T00:01:00.000Z"));
    for (_, portal) in &portals {
        assert_eq!(h.matrix[portal].edits.len(), 1, "one edit, applied once");
    }
}

#[test]
fn the_owners_edit_from_matrix_is_not_applied_again_in_their_portal() {
    let mut h = Harness::new();
    let (room, [(alice, a), (_, c)]) = two_portals(&mut h);
    let said = h.say(&a, &alice, "helo");
    h.settle();
    h.edit(&a, &alice, &said, "hello");
    h.settle();
    let on_gitter = h.gitter[&room].messages[0].clone();
    assert_eq!(on_gitter.text, "hello");
    // Gitter reports the edit back to every client.
    realtime(
        &mut h,
        edited(&on_gitter, "hello", "2024-01-01T00:01:00.000Z"),
    );
    assert!(
        h.matrix[&a].edits.is_empty(),
        "Alice's client shows her edit already"
    );
    assert_eq!(
        bodies_of(&h, &c, &uid("gitter_alice")),
        vec!["hello".to_owned()],
        "Carol sees Alice's ghost's message edited"
    );
}

#[test]
fn a_deletion_on_gitter_redacts_the_message_in_every_portal() {
    let mut h = Harness::new();
    let (room, portals) = two_portals(&mut h);
    let gone = h.gitter_says(&room, "bob", "oops");
    let root = h.gitter_says(&room, "bob", "a root with replies");
    h.settle();
    realtime(
        &mut h,
        RealtimeEvent::MessageRemoved {
            room: room.clone(),
            id: gone.id.clone(),
        },
    );
    // A root with replies is emptied instead of removed (§3.9).
    let mut emptied = root.clone();
    emptied.text.clear();
    emptied.html.clear();
    // Saved again for every new reply, and removed at last: redacted once.
    for _ in 0..2 {
        realtime(
            &mut h,
            RealtimeEvent::MessageUpdated {
                room: room.clone(),
                message: emptied.clone(),
                edited_at: None,
            },
        );
    }
    realtime(
        &mut h,
        RealtimeEvent::MessageRemoved {
            room: room.clone(),
            id: root.id.clone(),
        },
    );
    for (_, portal) in &portals {
        assert!(bodies_of(&h, portal, &uid("gitter_bob")).is_empty());
        assert!(
            h.matrix[portal]
                .redactions
                .iter()
                .all(|(by, _)| by == &h.bot()),
            "the bot redacts"
        );
        assert_eq!(h.matrix[portal].redactions.len(), 2);
    }
}

#[test]
fn the_owners_redaction_from_matrix_is_not_applied_again_in_their_portal() {
    let mut h = Harness::new();
    let (room, [(alice, a), (_, c)]) = two_portals(&mut h);
    let said = h.say(&a, &alice, "regret");
    h.settle();
    let gitter_id = h.gitter[&room].messages[0].id.clone();
    h.redact(&a, &alice, &said);
    h.settle();
    assert!(h.gitter[&room].messages.is_empty());
    realtime(
        &mut h,
        RealtimeEvent::MessageRemoved {
            room: room.clone(),
            id: gitter_id,
        },
    );
    assert!(h.matrix[&a].redactions.is_empty(), "no second redaction");
    assert_eq!(h.matrix[&c].redactions.len(), 1);
    assert!(bodies_of(&h, &c, &uid("gitter_alice")).is_empty());
}

#[test]
fn an_edit_of_a_message_no_longer_in_memory_is_found_in_the_store() {
    let mut config = config();
    config.hot_mappings_per_portal_at_start = 0;
    let mut h = Harness::with_config(config);
    let (room, portals) = two_portals(&mut h);
    let said = h.gitter_says(&room, "bob", "old text");
    h.settle();
    h.restart();
    h.settle();
    assert!(h.bridge.snapshot().messages.is_empty(), "nothing hot");
    realtime(
        &mut h,
        edited(&said, "new text", "2024-01-01T00:01:00.000Z"),
    );
    realtime(
        &mut h,
        RealtimeEvent::MessageRemoved {
            room: room.clone(),
            id: GitterMessageId::new("000000000000000000000bad"),
        },
    );
    for (_, portal) in &portals {
        assert_eq!(
            bodies_of(&h, portal, &uid("gitter_bob")),
            vec!["new text".to_owned()]
        );
        assert!(
            h.matrix[portal].redactions.is_empty(),
            "a message never bridged is not redacted"
        );
    }
}

#[test]
fn members_who_join_and_leave_on_gitter_come_and_go_as_ghosts() {
    let mut h = Harness::new();
    let (room, [(_, a), (_, c)]) = two_portals(&mut h);
    let dave = uid("gitter_dave");
    realtime(
        &mut h,
        RealtimeEvent::MemberJoined {
            room: room.clone(),
            user: gitter_user("dave"),
        },
    );
    assert!(h.matrix[&a].members.contains(&dave));
    assert!(h.matrix[&c].members.contains(&dave));
    let mut renamed = gitter_user("dave");
    renamed.display_name = "Dave the Brave".into();
    realtime(
        &mut h,
        RealtimeEvent::MemberUpdated {
            room: room.clone(),
            user: renamed,
        },
    );
    let names: Vec<String> = h
        .log
        .iter()
        .filter_map(|e| match &e.action {
            Action::Matrix(MatrixCall::SetDisplayName { user, name }) if user == &dave => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2, "named once at first sight, once renamed");
    assert!(names[1].contains("Dave the Brave"), "{names:?}");
    realtime(
        &mut h,
        RealtimeEvent::MemberLeft {
            room: room.clone(),
            user: gitter_user("dave").id,
        },
    );
    assert!(!h.matrix[&a].members.contains(&dave));
    assert!(!h.matrix[&c].members.contains(&dave));
}

#[test]
fn a_new_name_and_topic_reach_every_portal_once() {
    let mut h = Harness::new();
    let (room, portals) = two_portals(&mut h);
    for _ in 0..2 {
        realtime(
            &mut h,
            RealtimeEvent::RoomChanged {
                room: room.clone(),
                name: Some("org/talk".into()),
                topic: Some("Talk about things".into()),
            },
        );
    }
    for (_, portal) in &portals {
        assert_eq!(
            h.matrix[portal].state,
            vec![
                RoomState::Name("org/talk".into()),
                RoomState::Topic("Talk about things".into())
            ]
        );
    }
}

#[test]
fn a_one_to_one_keeps_its_name_whatever_the_other_member_sees() {
    let mut h = Harness::new();
    let (alice, _) = h.logged_in_user("alice", "alice");
    let room = bob_opens_a_one_to_one_with(&mut h, &alice);
    let portal = h.portal(&alice, &room).unwrap();
    // Bob's view of the room names it after Alice.
    realtime(
        &mut h,
        RealtimeEvent::RoomChanged {
            room: room.clone(),
            name: Some("Alice Display".into()),
            topic: None,
        },
    );
    assert!(
        h.matrix[&portal].state.is_empty(),
        "{:?}",
        h.matrix[&portal].state
    );
}

#[test]
fn a_room_joined_elsewhere_opens_a_portal_and_one_left_elsewhere_closes_it() {
    let mut h = Harness::new();
    let (alice, control) = h.logged_in_user("alice", "alice");
    let room = h.add_gitter_room("org/new", &["alice", "bob"]);
    let listed = GitterRoom {
        room_member: Some(true),
        avatar_url: None,
        ..h.gitter[&room].room.clone()
    };
    // Listed only for a mention: not joined, no portal.
    realtime(
        &mut h,
        RealtimeEvent::RoomListed {
            user: alice.clone(),
            room: GitterRoom {
                room_member: Some(false),
                avatar_url: None,
                ..listed.clone()
            },
        },
    );
    assert!(h.portal(&alice, &room).is_none());
    realtime(
        &mut h,
        RealtimeEvent::RoomListed {
            user: alice.clone(),
            room: listed,
        },
    );
    let portal = h.portal(&alice, &room).expect("a portal");
    assert!(h.matrix[&portal].members.contains(&alice));
    assert!(
        h.last_notice(&control)
            .contains("You joined org/new on Gitter"),
        "{}",
        h.last_notice(&control)
    );
    realtime(
        &mut h,
        RealtimeEvent::RoomUnlisted {
            user: alice.clone(),
            room: room.clone(),
        },
    );
    assert!(!h.matrix[&portal].members.contains(&alice), "kicked");
    assert!(
        h.last_notice(&control)
            .contains("You left org/new on Gitter")
    );
}

#[test]
fn a_one_to_one_someone_opened_gets_a_portal_with_a_notice() {
    let mut h = Harness::new();
    let (alice, control) = h.logged_in_user("alice", "alice");
    let room = bob_opens_a_one_to_one_with(&mut h, &alice);
    assert!(h.portal(&alice, &room).is_some());
    // A direct chat on Gitter is a direct chat in Matrix clients too.
    let create = h.first_portal_creation();
    assert!(create.is_direct);
    assert_eq!(create.bridge.unwrap().room_uri, None);
    assert!(
        h.last_notice(&control)
            .starts_with("Bob Display started a one-to-one chat with you"),
        "{}",
        h.last_notice(&control)
    );
}

#[test]
fn the_join_command_does_not_open_the_portal_twice_when_gitter_reports_it() {
    let mut h = Harness::new();
    let (alice, control) = h.logged_in_user("alice", "alice");
    let room = h.add_gitter_room("org/joined", &["bob"]);
    h.say(&control, &alice, "join org/joined");
    // Gitter reports the join on Faye before its answer comes.
    while !h.pending.iter().any(|e| {
        matches!(
            &e.action,
            Action::Gitter {
                call: GitterCall::JoinRoom { .. },
                ..
            }
        )
    }) {
        h.complete_next().expect("the join comes");
    }
    h.step(Input::Realtime(RealtimeEvent::RoomListed {
        user: alice.clone(),
        room: GitterRoom {
            room_member: Some(true),
            avatar_url: None,
            ..h.gitter[&room].room.clone()
        },
    }));
    h.settle();
    let creations = h
        .log
        .iter()
        .filter(|e| matches!(e.action, Action::Matrix(MatrixCall::CreatePortal(_))))
        .count();
    assert_eq!(creations, 1, "one portal");
    assert!(
        !h.notices(&control)
            .iter()
            .any(|n| n.contains("on Gitter: you are invited")),
        "the command says it, not the realtime event: {:?}",
        h.notices(&control)
    );
}

#[test]
fn a_revoked_token_ends_the_login_at_once_and_says_how_to_log_in_again() {
    let mut h = Harness::new();
    let (room, [(alice, _), _]) = two_portals(&mut h);
    assert!(h.watched.contains(&alice), "watched from login");
    let control = h.bridge.snapshot().users[&alice]
        .control_room
        .clone()
        .unwrap();
    realtime(
        &mut h,
        RealtimeEvent::TokenRevoked {
            user: alice.clone(),
        },
    );
    let login = h.bridge.snapshot().users[&alice].login.clone().unwrap();
    assert!(!login.valid);
    assert!(!h.watched.contains(&alice), "its channels end");
    assert!(h.last_notice(&control).contains("Log in here: http"));
    // Carol reads the room now.
    assert_eq!(
        h.bridge.snapshot().gitter_rooms[&room].reader,
        Some(uid("carol"))
    );
}

#[test]
fn without_a_realtime_transport_nobody_is_watched() {
    let mut config = config();
    config.watch_users = false;
    let mut h = Harness::with_config(config);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.restart();
    h.settle();
    assert!(!h.watched.contains(&alice));
    assert!(
        !h.log
            .iter()
            .any(|e| matches!(e.action, Action::Stream(StreamCall::Watch { .. }))),
        "no watch effect at login or start"
    );
}

#[test]
fn watches_come_back_after_a_restart() {
    let mut h = Harness::new();
    let (_, [(alice, _), (carol, _)]) = two_portals(&mut h);
    h.watched.clear();
    h.restart();
    h.settle();
    assert!(h.watched.contains(&alice) && h.watched.contains(&carol));
}

#[test]
fn a_catch_up_page_read_before_an_edit_or_a_deletion_relays_neither_the_old_text_nor_the_deleted() {
    let mut h = Harness::new();
    let (room, portals) = two_portals(&mut h);
    // Said while the bridge was not listening: a catch-up will read them.
    let old = h.gitter_post(&room, "bob", "old text");
    let gone = h.gitter_post(&room, "bob", "deleted meanwhile");
    h.step(Input::StreamConnected { room: room.clone() });
    // The page is read (the world still has the old text), and before its answer is handled
    // Gitter reports the edit and the deletion.
    h.step(Input::Realtime(edited(
        &old,
        "new text",
        "2024-01-01T00:01:00.000Z",
    )));
    h.step(Input::Realtime(RealtimeEvent::MessageRemoved {
        room: room.clone(),
        id: gone.id.clone(),
    }));
    h.settle();
    for (_, portal) in &portals {
        assert_eq!(
            bodies_of(&h, portal, &uid("gitter_bob")),
            vec!["new text".to_owned()]
        );
    }
    assert_eq!(
        h.bridge.snapshot().cursors.get(&room),
        Some(&gone.id),
        "the cursor passes both"
    );
}
