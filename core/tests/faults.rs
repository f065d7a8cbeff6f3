//! Scenario tests of faults that outlast the adapters' own retries: outages, lost answers,
//! crashes in the middle of a send, flapping streams, memory bounds (issue 12).

mod common;

use common::*;
use gitter_bridge_core::*;

/// Alice, logged in, with a portal of `org/chat` (members alice and bob).
fn alice_in_chat() -> (Harness, GitterRoomId, OwnedUserId, OwnedRoomId) {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.settle();
    let portal = h.portal(&alice, &room).expect("portal");
    (h, room, alice, portal)
}

// ------------------------------------------------------------------ durable retries

#[test]
fn a_gitter_message_waits_out_a_long_homeserver_outage_and_arrives_once_in_order() {
    let (mut h, room, _alice, portal) = alice_in_chat();
    // The homeserver answers 503 for far longer than any adapter retry loop: 40 tries.
    h.fail_next("send_matrix", FailureKind::Transient, 40);
    h.gitter_says(&room, "bob", "first");
    h.gitter_says(&room, "bob", "second");
    h.settle();
    assert!(h.bodies(&portal).is_empty(), "nothing got through yet");
    assert_eq!(h.bridge.retrying(), 1, "the head of the lane retries");
    assert!(
        h.store
            .outbox
            .values()
            .any(|e| e.action.name() == "send_matrix"),
        "the send stays in the outbox"
    );
    h.settle_with_retries();
    assert_eq!(h.bodies(&portal), ["first", "second"]);
    assert_eq!(h.bridge.retrying(), 0);
    assert!(h.store.outbox.is_empty());
}

#[test]
fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
    let (mut h, room, _alice, _portal) = alice_in_chat();
    h.fail_next("send_matrix", FailureKind::Transient, 30);
    h.gitter_says(&room, "bob", "hello");
    let mut waits = Vec::new();
    for _ in 0..12 {
        h.settle();
        let next = h
            .bridge
            .handle(h.now, Input::Timer)
            .next_timer
            .expect("a retry");
        waits.push(next.0 - h.now.0);
        h.now = next;
        h.step(Input::Timer);
    }
    let config = h.bridge.config().clone();
    assert!(waits[0] >= config.retry_min_ms / 2 && waits[0] <= config.retry_min_ms);
    assert!(waits[4] >= 8 * config.retry_min_ms, "doubling: {waits:?}");
    assert!(
        waits.iter().all(|w| *w <= config.retry_max_ms),
        "capped: {waits:?}"
    );
    assert!(
        waits[11] >= config.retry_max_ms / 2,
        "at the cap: {waits:?}"
    );
}

#[test]
fn a_retrying_effect_survives_a_restart_and_is_tried_again_at_startup() {
    let (mut h, room, _alice, portal) = alice_in_chat();
    h.fail_next("send_matrix", FailureKind::Transient, 3);
    h.gitter_says(&room, "bob", "kept");
    h.settle();
    h.restart();
    h.settle_with_retries();
    assert_eq!(h.bodies(&portal), ["kept"]);
}

#[test]
fn a_permanent_failure_ends_the_effect_and_a_rate_limit_does_not() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.fail_next("send_gitter", FailureKind::RateLimited, 2);
    h.say(&portal, &alice, "patience");
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["patience"]);
    assert!(
        h.notices(&portal).is_empty(),
        "a rate limit that passes tells nobody"
    );
    h.fail_next("send_gitter", FailureKind::Rejected, 1);
    h.say(&portal, &alice, "refused");
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["patience"]);
    assert_eq!(
        h.last_notice(&portal),
        "Your message was not sent to Gitter: Gitter refused the message."
    );
}

#[test]
fn a_user_whose_message_is_delayed_is_told_once_that_it_is_kept() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.fail_next("send_gitter", FailureKind::RateLimited, 8);
    h.say(&portal, &alice, "slowly");
    for _ in 0..3 {
        h.settle();
        h.wait(10 * 60 * 1000);
    }
    h.settle();
    assert!(h.gitter_texts(&room).is_empty());
    assert!(
        h.notices(&portal).iter().any(|n| n.contains("is kept")),
        "told while the send still waits"
    );
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["slowly"]);
    let kept: Vec<_> = h
        .notices(&portal)
        .into_iter()
        .filter(|n| n.contains("will be sent as soon as Gitter is back"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", h.notices(&portal));
}

#[test]
fn later_effects_of_a_portal_stay_behind_a_retrying_one() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.fail_next("send_gitter", FailureKind::RateLimited, 5);
    h.say(&portal, &alice, "one");
    h.say(&portal, &alice, "two");
    h.say(&portal, &alice, "three");
    h.settle();
    assert!(
        h.gitter_texts(&room).is_empty(),
        "two and three wait for one"
    );
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["one", "two", "three"]);
}

// ------------------------------------------------------------------ reconcile

#[test]
fn a_lost_gitter_answer_is_reconciled_and_the_message_posted_once() {
    let (mut h, room, alice, portal) = alice_in_chat();
    // Gitter stores the POST, the answer is lost on the way back (five times in a row on
    // the old main this gave five copies).
    h.lose_send_answers = 1;
    h.say(&portal, &alice, "only once");
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["only once"]);
    assert!(
        h.notices(&portal).is_empty(),
        "the user is not told it failed: {:?}",
        h.notices(&portal)
    );
    let mapped = h
        .store
        .messages
        .values()
        .filter(|m| m.origin == Origin::Matrix)
        .count();
    assert_eq!(mapped, 1, "the Gitter copy is mapped to the Matrix event");
    assert!(
        h.bodies(&portal).is_empty(),
        "the stream's copy is recognised as the echo"
    );
}

#[test]
fn a_send_that_never_reached_gitter_is_posted_after_the_reconcile_finds_nothing() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.fail_next("send_gitter", FailureKind::Transient, 1);
    h.say(&portal, &alice, "lost on the way out");
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["lost on the way out"]);
}

#[test]
fn two_sends_of_the_same_text_give_two_messages_whatever_is_lost() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.say(&portal, &alice, "ok");
    h.settle();
    // The second "ok" is stored by Gitter, then the bridge is killed before the answer.
    h.say(&portal, &alice, "ok");
    let send = h.pending.pop_front().expect("the second send");
    let Action::Gitter {
        call: GitterCall::SendMessage { text, .. },
        ..
    } = &send.action
    else {
        panic!("{send:?}")
    };
    h.gitter_post(&room, "alice", text);
    h.restart();
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["ok", "ok"]);
    let mapped: Vec<_> = h
        .store
        .messages
        .values()
        .filter(|m| m.origin == Origin::Matrix)
        .map(|m| m.gitter_id.clone())
        .collect();
    assert_eq!(
        mapped.len(),
        2,
        "each Matrix event has its own Gitter message"
    );
    assert_ne!(mapped[0], mapped[1]);
}

#[test]
fn two_sends_of_the_same_text_both_unsent_at_a_crash_are_each_posted_once() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.say(&portal, &alice, "again");
    h.say(&portal, &alice, "again");
    // The first reached Gitter, the second did not; then the crash.
    let first = h.pending.pop_front().expect("first send");
    let Action::Gitter {
        call: GitterCall::SendMessage { text, .. },
        ..
    } = &first.action
    else {
        panic!()
    };
    h.gitter_post(&room, "alice", text);
    h.restart();
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["again", "again"]);
}

#[test]
fn reconcile_ignores_an_older_message_of_the_same_text_before_the_send() {
    let (mut h, room, alice, portal) = alice_in_chat();
    // Alice said "yes" on Gitter long ago, before the portal read the room.
    h.gitter_post(&room, "alice", "yes");
    h.gitter_says(&room, "bob", "question?");
    h.settle();
    h.say(&portal, &alice, "yes");
    let send = h.pending.pop_front().expect("the send");
    assert!(matches!(
        send.action,
        Action::Gitter {
            call: GitterCall::SendMessage { .. },
            ..
        }
    ));
    // Killed before the POST went out: the reconcile must not take the old "yes" for it.
    h.restart();
    h.settle_with_retries();
    assert_eq!(h.gitter_texts(&room), ["yes", "question?", "yes"]);
}

// ------------------------------------------------------------------ room creation

#[test]
fn a_portal_is_created_with_a_random_alias_that_is_deleted_once_recorded() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let create = h
        .log
        .iter()
        .find_map(|e| match &e.action {
            Action::Matrix(MatrixCall::CreatePortal(new)) => Some(new.alias.clone()),
            _ => None,
        })
        .expect("a createRoom");
    assert!(create.starts_with(PORTAL_ALIAS_PREFIX));
    assert_eq!(
        create.len(),
        PORTAL_ALIAS_PREFIX.len() + 32,
        "128 random bits"
    );
    let deleted: Vec<_> = h
        .log
        .iter()
        .filter_map(|e| match &e.action {
            Action::Matrix(MatrixCall::DeleteAlias { alias }) => Some(alias.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [format!("#{create}:example.org")]);
    assert!(h.portal(&alice, &room).is_some());
}

#[test]
fn a_room_creation_that_fails_transiently_keeps_its_alias_and_yields_one_portal() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    h.fail_next("create_room", FailureKind::Transient, 4);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.settle_with_retries();
    let aliases: std::collections::BTreeSet<_> = h
        .log
        .iter()
        .filter_map(|e| match &e.action {
            Action::Matrix(MatrixCall::CreatePortal(new)) => Some(new.alias.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(aliases.len(), 1, "every try asks for the same alias");
    assert!(h.portal(&alice, &room).is_some());
    assert_eq!(h.matrix.len(), 2, "the control room and one portal room");
}

// ------------------------------------------------------------------ streams

#[test]
fn a_flapping_stream_runs_one_catch_up_at_a_time_with_one_waiting() {
    let (mut h, room, _alice, _portal) = alice_in_chat();
    for _ in 0..50 {
        h.step(Input::StreamDisconnected {
            room: room.clone(),
            reason: FailureKind::Transient,
        });
        h.step(Input::StreamConnected { room: room.clone() });
    }
    let fetches = h
        .pending
        .iter()
        .filter(|e| e.action.name() == "fetch_messages")
        .count();
    assert_eq!(fetches, 1, "one catch-up runs");
    h.complete_next();
    let fetches = h
        .pending
        .iter()
        .filter(|e| e.action.name() == "fetch_messages")
        .count();
    assert_eq!(fetches, 1, "one more ran after it, then none");
    h.settle();
    assert!(h.pending.is_empty());
}

// ------------------------------------------------------------------ web replies

#[test]
fn a_login_in_flight_at_a_crash_is_not_replayed_and_the_user_gets_a_fresh_link() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.settle();
    h.start_login(&dm, "alice");
    assert!(h.pending.iter().any(|e| e.action.name() == "exchange_code"));
    h.restart();
    assert!(
        !h.pending.iter().any(|e| e.action.name() == "exchange_code"),
        "the code is not exchanged without its browser"
    );
    assert!(
        h.store
            .outbox
            .values()
            .all(|e| e.action.name() != "exchange_code")
    );
    h.settle();
    let notice = h.last_notice(&dm);
    assert!(
        notice.contains("did not finish because the bridge restarted"),
        "{notice}"
    );
    assert!(
        h.link_in(&dm)
            .starts_with("https://bridge.example.org/login/")
    );
}

// ------------------------------------------------------------------ memory bounds

#[test]
fn messages_held_past_the_bound_are_read_again_from_the_cursor_and_none_is_lost() {
    let mut config = config();
    config.max_held_per_room = 5;
    let mut h = Harness::with_config(config);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    // Alice's send is in flight (retrying), so bob's messages wait behind it.
    h.fail_next("send_gitter", FailureKind::RateLimited, 3);
    h.say(&portal, &alice, "mine");
    h.settle();
    for i in 0..20 {
        h.gitter_says(&room, "bob", &format!("b{i}"));
    }
    assert!(h.bridge.held_messages(&room) <= 5, "bounded");
    h.settle_with_retries();
    let expected: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    let bot = h.bot();
    let relayed: Vec<String> = h
        .timeline(&portal)
        .into_iter()
        .filter(|(sender, _)| *sender != bot)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(relayed, expected, "every message once, in order");
    let mine = h
        .gitter_texts(&room)
        .iter()
        .filter(|t| *t == "mine")
        .count();
    assert_eq!(mine, 1);
}

#[test]
fn a_message_queued_for_a_portal_being_created_is_one_row_of_its_own() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (_bob, _) = h.logged_in_user("bob", "bob");
    h.settle();
    // Alice's portal is being created (its createRoom has not answered) while bob's portal
    // reads the room.
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.settle();
    h.start_login(&dm, "alice");
    while let Some(e) = h.pending.front() {
        if e.action.name() == "create_room" {
            break;
        }
        h.complete_next();
    }
    let before = h.store.queued.len();
    let out = h.gitter_says(&room, "carol", "while creating");
    let _ = out;
    assert_eq!(h.store.queued.len(), before + 1);
    h.settle();
    assert!(h.store.queued.is_empty(), "delivered and removed");
    let portal = h.portal(&alice, &room).unwrap();
    assert_eq!(h.bodies(&portal), ["while creating"]);
}

#[test]
fn a_command_that_meets_an_outage_is_told_it_waits_and_answered_once_gitter_is_back() {
    let (mut h, _room, alice, _portal) = alice_in_chat();
    let dm = h.store.users[&alice].control_room.clone().unwrap();
    h.fail_next("list_rooms", FailureKind::Transient, 6);
    h.say(&dm, &alice, "list");
    h.settle();
    assert_eq!(
        h.last_notice(&dm),
        "Gitter is not answering right now. I will keep trying and answer as soon as it is back."
    );
    h.settle_with_retries();
    assert!(
        h.last_notice(&dm).contains("org/chat"),
        "{}",
        h.last_notice(&dm)
    );
    let waits = h
        .notices(&dm)
        .iter()
        .filter(|n| n.contains("I will keep trying"))
        .count();
    assert_eq!(waits, 1, "told once");
}

#[test]
fn a_plain_message_is_not_taken_for_a_lost_me_message() {
    let (mut h, room, alice, portal) = alice_in_chat();
    // Alice once wrote the text of her /me by hand on Gitter (not a status message).
    h.gitter_post(&room, "alice", "@alice waves");
    h.settle();
    let ev = h.event(
        &portal,
        &alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Emote,
            body: "waves".into(),
            formatted_body: None,
            relation: None,
        },
    );
    h.fail_next("send_gitter", FailureKind::Transient, 1);
    h.txn(vec![ev]);
    h.settle_with_retries();
    let statuses: Vec<bool> = h.gitter[&room].messages.iter().map(|m| m.status).collect();
    assert_eq!(statuses, [false, true], "the /me was posted, as a status");
}

#[test]
fn a_send_gitter_keeps_failing_for_too_long_is_given_up_and_the_room_flows_again() {
    let (mut h, room, alice, portal) = alice_in_chat();
    h.fail_next("send_gitter", FailureKind::Transient, 10_000);
    h.say(&portal, &alice, "poison");
    h.settle();
    h.gitter_says(&room, "bob", "held behind it");
    // Hours of failures: past `send_give_up_ms` the next reconcile finds nothing and the
    // send ends for good.
    for _ in 0..100 {
        h.wait(60_000);
        h.settle();
        if h.bridge.retrying() == 0 {
            break;
        }
    }
    h.failures.clear();
    assert_eq!(h.bridge.retrying(), 0, "given up");
    assert!(h.gitter_texts(&room).iter().all(|t| t != "poison"));
    let notices = h.notices(&portal);
    assert!(
        notices
            .iter()
            .any(|n| n.contains("kept failing on it for too long")),
        "{notices:?}"
    );
    let bot = h.bot();
    let relayed: Vec<_> = h
        .timeline(&portal)
        .into_iter()
        .filter(|(s, _)| *s != bot)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(relayed, ["held behind it"], "the room is no longer held");
}
