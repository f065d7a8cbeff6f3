//! Memory that does not grow with history (issue 14): the bridge holds a bounded hot set of
//! the message mappings while the store keeps them all, a relayed message writes small rows
//! (its cursor and mappings, never the room's record), and nothing is bridged twice when the
//! hot set has moved on or after a restart that loaded only the hot set.

mod common;

use common::*;
use gitter_bridge_core::*;

fn small_hot_set(hot: usize, at_start: usize) -> Harness {
    let mut config = config();
    config.hot_mappings = hot;
    config.hot_mappings_per_portal_at_start = at_start;
    Harness::with_config(config)
}

#[test]
fn memory_holds_a_bounded_hot_set_while_the_store_keeps_every_mapping() {
    let mut h = small_hot_set(5, 2);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    for i in 0..40 {
        let m = h.gitter_post(&room, "carol", &format!("message {i}"));
        let out = h.step(Input::GitterMessage {
            room: room.clone(),
            message: m.clone(),
        });
        // A relayed message writes its cursor and one mapping per portal: small rows (the
        // first also creates Carol's ghost and joins it).
        for change in out.changes.changes.iter().filter(|_| i > 0) {
            assert!(
                matches!(
                    change,
                    Change::SetCursor(..)
                        | Change::PutMessage(_)
                        | Change::PutOutbox(_)
                        | Change::SetNextEffectId(_)
                ),
                "a relayed message writes small rows, not {change:?}"
            );
        }
        h.settle();
    }
    for owner in [&alice, &bob] {
        assert_eq!(h.timeline(&h.portal(owner, &room).unwrap()).len(), 40);
    }
    assert_eq!(h.store.messages.len(), 80, "the store keeps every mapping");
    assert!(
        h.bridge.snapshot().messages.len() <= 5,
        "memory holds {} mappings",
        h.bridge.snapshot().messages.len()
    );
    // The room's record was written when the room was first seen, not per message.
    assert!(h.store.gitter_rooms.contains_key(&room));
}

#[test]
fn a_busy_portal_does_not_push_a_quiet_ones_recent_mappings_out_of_memory() {
    let mut config = config();
    // The overall bound is far above what the two portals may hold (2 + 3) but below the
    // busy portal's thirty: the names its own trim let go must not count against it.
    config.hot_mappings = 20;
    config.hot_mappings_per_portal = 3;
    let mut h = Harness::with_config(config);
    let quiet = h.add_gitter_room("org/quiet", &["alice"]);
    let busy = h.add_gitter_room("org/busy", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    for i in 0..2 {
        h.gitter_says(&quiet, "carol", &format!("quiet {i}"));
        h.settle();
    }
    for i in 0..30 {
        h.gitter_says(&busy, "dave", &format!("busy {i}"));
        h.settle();
    }
    let in_memory = |room: &GitterRoomId| {
        h.bridge
            .snapshot()
            .messages
            .values()
            .filter(|m| &m.gitter_room == room)
            .count()
    };
    assert_eq!(
        in_memory(&quiet),
        2,
        "the quiet portal keeps its recent mappings"
    );
    assert_eq!(
        in_memory(&busy),
        3,
        "the busy portal keeps its newest three"
    );
    assert_eq!(h.store.messages.len(), 32, "the store keeps every mapping");
    assert_eq!(h.timeline(&h.portal(&alice, &busy).unwrap()).len(), 30);
}

#[test]
fn echoes_of_the_owners_sends_are_recognised_however_small_the_hot_set() {
    let mut h = small_hot_set(1, 0);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    let pa = h.portal(&alice, &room).unwrap();
    for i in 0..5 {
        h.say(&pa, &alice, &format!("from matrix {i}"));
    }
    h.settle();
    // The stream delivers the copies after the sends' results.
    let copies: Vec<_> = h.gitter[&room].messages.clone();
    assert_eq!(copies.len(), 5);
    for copy in copies {
        h.step(Input::GitterMessage {
            room: room.clone(),
            message: copy,
        });
        h.settle();
    }
    assert!(h.timeline(&pa).is_empty(), "no echo in the owner's portal");
    assert_eq!(h.timeline(&h.portal(&bob, &room).unwrap()).len(), 5);
    assert!(h.bridge.snapshot().messages.len() <= 1);
}

#[test]
fn a_restart_loads_the_hot_set_only_and_bridges_nothing_twice() {
    let mut h = small_hot_set(3, 1);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    let pa = h.portal(&alice, &room).unwrap();
    let pb = h.portal(&bob, &room).unwrap();
    for i in 0..10 {
        h.gitter_says(&room, "carol", &format!("before {i}"));
        h.settle();
    }
    // Alice's sends reach Gitter, but the stream is cut before their copies come back.
    h.down.insert(room.clone());
    for i in 0..3 {
        h.say(&pa, &alice, &format!("mine {i}"));
    }
    h.settle();
    h.restart();
    let loaded = h.bridge.snapshot().messages.len();
    // Per portal: Alice's three sends (after the cursor) and the newest other one; Bob's
    // newest one.
    assert_eq!(loaded, 5, "the restart loads the hot set only");
    h.settle();
    assert_eq!(h.timeline(&pa).len(), 10, "no echo, nothing twice");
    let bob_sees: Vec<String> = h.timeline(&pb).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bob_sees.len(), 13);
    assert_eq!(&bob_sees[10..], ["mine 0", "mine 1", "mine 2"]);
}

const HOUR: u64 = 60 * 60 * 1000;
const DAY: u64 = 24 * HOUR;

#[test]
fn mappings_past_the_retention_are_pruned_from_the_store_and_recent_ones_stay() {
    let mut config = config();
    config.mapping_retention_ms = DAY;
    let mut h = Harness::with_config(config);
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let old: Vec<_> = (0..3)
        .map(|i| h.gitter_says(&room, "carol", &format!("old {i}")))
        .collect();
    h.settle();
    assert_eq!(h.store.messages.len(), 3);
    // Two days on, with a pass of pruning every hour.
    for _ in 0..48 {
        h.wait(HOUR);
        h.settle();
    }
    let new = h.gitter_says(&room, "carol", "new");
    h.settle();
    h.wait(HOUR);
    h.settle();
    let kept: Vec<_> = h
        .store
        .messages
        .values()
        .map(|m| m.gitter_id.clone())
        .collect();
    assert_eq!(kept, vec![new.id.clone()], "only the recent mapping stays");
    assert!(
        old.iter()
            .all(|m| { !h.bridge.snapshot().messages.contains(&alice, &m.id) })
    );
    assert_eq!(h.timeline(&h.portal(&alice, &room).unwrap()).len(), 4);
}

#[test]
fn a_retention_of_zero_keeps_every_mapping() {
    let mut config = config();
    config.mapping_retention_ms = 0;
    let mut h = Harness::with_config(config);
    let room = h.add_gitter_room("org/chat", &["alice"]);
    h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "carol", "kept");
    h.settle();
    for _ in 0..30 {
        h.wait(DAY);
        h.settle();
    }
    assert_eq!(h.store.messages.len(), 1);
}
