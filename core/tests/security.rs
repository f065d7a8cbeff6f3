//! Scenario tests of what an attacker or a removed user tries (issue 13): nobody is linked,
//! let in or served where they don't belong.

mod common;

use common::*;
use gitter_bridge_core::*;

#[test]
fn a_user_removed_from_the_allow_list_is_told_once_and_nothing_is_bridged_for_them() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    // The operator narrows the allow list and restarts.
    let mut config = h.bridge.config().clone();
    config.permissions.domains.clear();
    config.permissions.users = vec![uid("somebody-else")];
    h.bridge = Bridge::restore(config, 9, h.store.clone());
    h.step(Input::Startup);
    h.settle();
    let before = h.notices(&dm).len();
    h.say(&dm, &alice, "list");
    h.say(&dm, &alice, "whoami");
    h.say(&portal, &alice, "posted by a removed user");
    h.gitter_says(&room, "bob", "not for alice any more");
    h.settle();
    assert!(
        h.gitter_texts(&room)
            .iter()
            .all(|t| t != "posted by a removed user"),
        "nothing posted on their behalf"
    );
    let bot = h.bot();
    assert!(
        h.timeline(&portal).iter().all(|(s, _)| *s == bot),
        "their portal gets nothing"
    );
    let new: Vec<_> = h.notices(&dm).into_iter().skip(before).collect();
    assert_eq!(new.len(), 1, "told once: {new:?}");
    assert!(new[0].contains("no longer allowed"), "{}", new[0]);
}

#[test]
fn a_login_link_of_a_user_no_longer_allowed_gets_a_refusal_page() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    let mut config = h.bridge.config().clone();
    config.permissions.domains.clear();
    h.bridge = Bridge::restore(config, 9, h.store.clone());
    h.step(Input::Startup);
    let req = h.request();
    h.step(Input::LoginLinkOpened {
        request: req,
        token,
    });
    assert!(matches!(
        h.reply_to(req),
        Some(WebReply::Page { status: 403, .. })
    ));
}

#[test]
fn a_username_taken_over_by_another_gitter_account_gets_a_ghost_of_its_own() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "the first bob");
    h.settle();
    // The first bob renamed himself; a different Gitter account now has the name "bob".
    let mut m = h.gitter_post(&room, "bob", "the second bob");
    m.from.id = GitterUserId::new("5f9ab228d73408ce4ff2c66c");
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    let senders: Vec<_> = h.timeline(&portal).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        senders,
        [uid("gitter_bob"), uid("gitter_bob_5f9ab228")],
        "never the first account's ghost"
    );
}

#[test]
fn a_third_person_in_the_control_room_makes_the_bot_say_why_and_leave_for_good() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    assert_eq!(
        h.store.users[&alice].control_room.as_ref(),
        Some(&dm),
        "a private chat at first"
    );
    // Later, somebody else is invited (and would read every login link).
    let ev = h.event(
        &dm,
        &alice,
        MatrixEventKind::Member {
            target: uid("mallory"),
            membership: Membership::Invite,
        },
    );
    h.txn(vec![ev]);
    h.settle();
    assert!(h.last_notice(&dm).contains("no longer a private chat"));
    assert_eq!(h.store.users[&alice].control_room, None);
    assert!(h.store.refused_rooms.contains(&dm));
    assert!(
        h.log.iter().any(
            |e| matches!(&e.action, Action::Matrix(MatrixCall::Leave { room, user }) if *room == dm && *user == h.bot())
        ),
        "the bot left"
    );
    // Commands there are no longer answered.
    let before = h.notices(&dm).len();
    h.say(&dm, &alice, "login");
    h.settle();
    assert_eq!(h.notices(&dm).len(), before);
}

#[test]
fn login_links_depend_on_all_256_bits_of_the_seed_and_repeat_for_the_same_seed() {
    let link_with = |seed: [u8; 32]| {
        let mut h = Harness::new();
        h.bridge = Bridge::new(config(), seed);
        h.store = Snapshot::default();
        h.step(Input::Startup);
        let dm = h.dm_bot(&uid("alice"), &[]);
        h.link_in(&dm)
    };
    let a = [7u8; 32];
    let mut b = a;
    // Only the last byte differs: a u64 seed would never see it.
    b[31] ^= 1;
    assert_eq!(link_with(a), link_with(a), "deterministic for a seed");
    assert_ne!(link_with(a), link_with(b));
}
