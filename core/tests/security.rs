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

/// Whether the bot left `room` with a reason saying it cannot read encrypted chats.
fn left_for_encryption(h: &Harness, room: &OwnedRoomId) -> bool {
    h.log.iter().any(|e| {
        matches!(&e.action, Action::Matrix(MatrixCall::LeaveWithReason { room: r, user, reason })
            if r == room && *user == h.bot() && reason.contains("encrypted"))
    })
}

#[test]
fn an_encrypted_dm_is_refused_with_a_notice_and_a_reason_before_anything_else() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let room: OwnedRoomId = "!secret:hs".try_into().unwrap();
    h.matrix
        .entry(room.clone())
        .or_default()
        .members
        .insert(alice.clone());
    // The invite's stripped state shows `m.room.encryption`: the client made it encrypted.
    h.happen(
        &room,
        &alice,
        MatrixEventKind::EncryptedInvite { target: h.bot() },
    );
    let notices = h.notices(&room);
    assert_eq!(
        notices.len(),
        1,
        "no greeting, only the reason: {notices:?}"
    );
    assert!(notices[0].contains("without encryption"), "{notices:?}");
    assert!(left_for_encryption(&h, &room), "the bot left with a reason");
    assert!(h.store.refused_rooms.contains(&room));
    assert_eq!(
        h.store
            .users
            .get(&alice)
            .and_then(|u| u.control_room.clone()),
        None
    );
    // Invited again, it declines at once.
    h.happen(
        &room,
        &alice,
        MatrixEventKind::EncryptedInvite { target: h.bot() },
    );
    assert_eq!(h.notices(&room).len(), 1);
}

#[test]
fn an_encrypted_invite_of_someone_else_into_the_control_room_still_ends_it() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.happen(
        &dm,
        &alice,
        MatrixEventKind::EncryptedInvite {
            target: uid("mallory"),
        },
    );
    assert!(h.last_notice(&dm).contains("no longer a private chat"));
    assert!(h.store.refused_rooms.contains(&dm));
}

#[test]
fn encryption_turned_on_in_the_control_room_makes_the_bot_explain_and_leave() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    // The first encrypted message: the bot cannot read the command in it.
    h.happen(&dm, &alice, MatrixEventKind::Encrypted);
    assert!(h.last_notice(&dm).contains("cannot read encrypted"));
    assert!(left_for_encryption(&h, &dm));
    assert_eq!(h.store.users[&alice].control_room, None);
    assert!(h.store.refused_rooms.contains(&dm));
    // A new, unencrypted DM works as before.
    let fresh = h.dm_bot(&alice, &[]);
    assert_eq!(h.store.users[&alice].control_room.as_ref(), Some(&fresh));
    assert!(h.last_notice(&fresh).contains("Log in"));
}

#[test]
fn an_encrypted_message_in_a_portal_is_not_bridged_and_the_owner_is_told() {
    let mut h = Harness::new();
    let groom = h.add_gitter_room("org/room", &["alice_gh", "bob"]);
    let (alice, _dm) = h.logged_in_user("alice", "alice_gh");
    h.settle();
    let portal = h.portal(&alice, &groom).expect("a portal");
    let before = h.gitter_texts(&groom).len();
    h.happen(&portal, &alice, MatrixEventKind::Encrypted);
    assert!(h.last_notice(&portal).contains("cannot be bridged"));
    assert_eq!(
        h.gitter_texts(&groom).len(),
        before,
        "nothing reached Gitter"
    );
    // Encryption itself turned on: the owner learns that the room no longer bridges.
    h.happen(&portal, &alice, MatrixEventKind::EncryptionEnabled);
    assert!(h.last_notice(&portal).contains("Encryption was turned on"));
    // Someone else's encrypted event (a ghost's would never be) says nothing.
    let count = h.notices(&portal).len();
    h.happen(&portal, &uid("stranger"), MatrixEventKind::Encrypted);
    assert_eq!(h.notices(&portal).len(), count);
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
