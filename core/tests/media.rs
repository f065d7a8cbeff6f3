//! Media, avatars and history (issue 17): a Matrix file reaches Gitter users, who have no
//! Matrix account, as a link to the bridge's signed media page; a new portal starts with its
//! room's last messages, each stamped with the time it was written on Gitter.

mod common;

use common::*;
use gitter_bridge_core::*;

fn media_config() -> Config {
    let mut c = config();
    c.media_key = Some(MediaKey::derive(b"media test key"));
    c.media_max_bytes = 10_000_000;
    c
}

fn file(kind: MediaKind, name: &str, caption: Option<&str>, size: Option<u64>) -> MediaMessage {
    MediaMessage {
        kind,
        server: "example.org".into(),
        media_id: "AbC123".into(),
        name: name.into(),
        caption: caption.map(Into::into),
        size,
    }
}

/// Alice, logged in, with her portal of `org/chat`.
fn alice_in_portal(h: &mut Harness) -> (GitterRoomId, OwnedUserId, OwnedRoomId) {
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    (room, alice, portal)
}

fn send_media(h: &mut Harness, portal: &OwnedRoomId, alice: &OwnedUserId, media: MediaMessage) {
    h.happen(
        portal,
        alice,
        MatrixEventKind::Media {
            media,
            relation: None,
        },
    );
}

#[test]
fn an_image_from_matrix_is_shown_on_gitter_through_a_signed_link() {
    let mut h = Harness::with_config(media_config());
    let (room, alice, portal) = alice_in_portal(&mut h);
    send_media(
        &mut h,
        &portal,
        &alice,
        file(MediaKind::Image, "cat.png", None, Some(2048)),
    );
    let key = MediaKey::derive(b"media test key");
    let sig = key.sign("example.org", "AbC123", "cat.png");
    assert_eq!(
        h.gitter_texts(&room),
        vec![format!(
            "![cat.png](https://bridge.example.org/media/{sig}/example.org/AbC123/cat.png)"
        )]
    );
}

#[test]
fn a_file_with_a_caption_is_the_caption_and_a_link_with_its_size() {
    let mut h = Harness::with_config(media_config());
    let (room, alice, portal) = alice_in_portal(&mut h);
    send_media(
        &mut h,
        &portal,
        &alice,
        file(
            MediaKind::File,
            "notes.pdf",
            Some("the minutes"),
            Some(1_250_000),
        ),
    );
    let text = h.gitter_texts(&room).pop().unwrap();
    assert!(text.starts_with("the minutes\n\n[notes.pdf](https://bridge.example.org/media/"));
    assert!(
        text.ends_with("/example.org/AbC123/notes.pdf) (1.2 MB)"),
        "{text}"
    );
}

#[test]
fn a_file_over_the_cap_is_not_sent_and_the_notice_names_the_cap() {
    let mut h = Harness::with_config(media_config());
    let (room, alice, portal) = alice_in_portal(&mut h);
    send_media(
        &mut h,
        &portal,
        &alice,
        file(MediaKind::Video, "talk.mp4", None, Some(80_000_000)),
    );
    assert!(h.gitter_texts(&room).is_empty());
    assert_eq!(
        h.last_notice(&portal),
        "Your file was not sent to Gitter: it is 80.0 MB and the bridge shares files up to \
         10.0 MB."
    );
}

#[test]
fn without_a_media_key_a_file_is_not_sent_and_the_sender_is_told() {
    let mut h = Harness::new();
    let (room, alice, portal) = alice_in_portal(&mut h);
    send_media(
        &mut h,
        &portal,
        &alice,
        file(MediaKind::Audio, "song.ogg", None, None),
    );
    assert!(h.gitter_texts(&room).is_empty());
    assert!(
        h.last_notice(&portal)
            .contains("this bridge does not share files")
    );
}

#[test]
fn a_file_in_a_thread_goes_into_the_gitter_thread() {
    let mut h = Harness::with_config(media_config());
    let (room, alice, portal) = alice_in_portal(&mut h);
    let root = h.gitter_says(&room, "bob", "show me");
    h.settle();
    let root_event = h.sent_event_of(&portal, "show me").unwrap();
    h.happen(
        &portal,
        &alice,
        MatrixEventKind::Media {
            media: file(MediaKind::Image, "it.png", None, None),
            relation: Some(Relation::Thread { root: root_event }),
        },
    );
    let (text, parent) = h.gitter_thread_view(&room).pop().unwrap();
    assert!(
        text.starts_with("![it.png](https://bridge.example.org/media/"),
        "{text}"
    );
    assert_eq!(parent, Some(root.id));
}

#[test]
fn a_file_someone_else_sends_in_the_portal_is_not_bridged() {
    let mut h = Harness::with_config(media_config());
    let (room, _alice, portal) = alice_in_portal(&mut h);
    let mallory = uid("mallory");
    send_media(
        &mut h,
        &portal,
        &mallory,
        file(MediaKind::Image, "x.png", None, None),
    );
    assert!(h.gitter_texts(&room).is_empty());
}

// ------------------------------------------------------------------ history

/// The bodies of a portal's timeline, in order.
fn bodies_in(h: &Harness, portal: &OwnedRoomId) -> Vec<String> {
    h.timeline(portal).into_iter().map(|(_, b)| b).collect()
}

#[test]
fn a_new_portal_starts_with_the_rooms_last_messages_stamped_with_their_gitter_time() {
    let mut c = config();
    c.backfill_messages = 3;
    let mut h = Harness::with_config(c);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    for text in ["one", "two", "three", "four"] {
        h.gitter_post(&room, "bob", text);
    }
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.gitter_says(&room, "bob", "live");
    h.settle();
    assert_eq!(bodies_in(&h, &portal), ["two", "three", "four", "live"]);
    // Every message carries its Gitter `sent` as `ts`.
    let gitter_time = Timestamp::from_rfc3339("2024-01-01T00:00:00.000Z");
    let stamps = &h.matrix[&portal].stamps;
    let ghost_events: Vec<_> = h.matrix[&portal]
        .events
        .iter()
        .zip(&h.matrix[&portal].timeline)
        .filter(|(_, (sender, _))| *sender != h.bot())
        .map(|(e, _)| e.clone())
        .collect();
    assert_eq!(ghost_events.len(), 4);
    for event in ghost_events {
        assert_eq!(stamps[&event], gitter_time);
    }
}

#[test]
fn a_message_that_comes_live_during_the_history_read_is_bridged_once_after_it() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "carol", "before bob came");
    h.settle();
    // Bob logs in; his portal's history read is on its way when carol writes again.
    let bob = bob_until_his_history_read(&mut h);
    h.gitter_says(&room, "carol", "during the read");
    h.settle();
    let bobs = h.portal(&bob, &room).unwrap();
    assert_eq!(bodies_in(&h, &bobs), ["before bob came", "during the read"]);
    // Alice's portal got each message once, as before.
    let alices = h.portal(&alice, &room).unwrap();
    assert_eq!(
        bodies_in(&h, &alices),
        ["before bob came", "during the read"]
    );
}

/// Bob logs in and runs until his portal's history read is the next effect.
fn bob_until_his_history_read(h: &mut Harness) -> OwnedUserId {
    let bob = uid("bob");
    let control = h.dm_bot(&bob, &[]);
    h.start_login(&control, "bob");
    let history_read = |e: &Effect| {
        matches!(&e.lane, Lane::Portal { owner, .. } if *owner == bob)
            && matches!(
                e.action,
                Action::Gitter {
                    call: GitterCall::FetchMessages { after: None, .. },
                    ..
                }
            )
    };
    while !h.pending.front().is_some_and(history_read) {
        h.complete_next().expect("bob's history is read");
    }
    bob
}

#[test]
fn a_live_message_the_history_also_holds_keeps_its_place_in_it() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (_alice, _) = h.logged_in_user("alice", "alice");
    let bob = bob_until_his_history_read(&mut h);
    // m1 comes live during the read; m2 is on Gitter before the read is answered, but the
    // stream has not brought it yet.
    h.gitter_says(&room, "carol", "m1");
    h.gitter_post(&room, "carol", "m2");
    h.settle();
    let bobs = h.portal(&bob, &room).unwrap();
    assert_eq!(bodies_in(&h, &bobs), ["m1", "m2"]);
}

#[test]
fn a_restart_during_the_history_read_reads_it_again() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.gitter_post(&room, "alice", "from before");
    let bob = bob_until_his_history_read(&mut h);
    h.restart();
    h.settle();
    let bobs = h.portal(&bob, &room).unwrap();
    assert_eq!(bodies_in(&h, &bobs), ["from before"]);
}

#[test]
fn a_portal_whose_creation_failed_gets_its_history_on_the_next_try() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.gitter_post(&room, "bob", "old news");
    h.fail_next("create_room", FailureKind::Rejected, 1);
    let (alice, control) = h.logged_in_user("alice", "alice");
    assert!(h.portal(&alice, &room).is_none());
    h.say(&control, &alice, "invite org/chat");
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    assert_eq!(bodies_in(&h, &portal), ["old news"]);
}

#[test]
fn with_backfill_off_a_new_portal_starts_empty() {
    let mut c = config();
    c.backfill_messages = 0;
    let mut h = Harness::with_config(c);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.gitter_post(&room, "bob", "old");
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    assert!(bodies_in(&h, &portal).is_empty());
}

#[test]
fn a_failed_history_read_opens_the_portal_empty_and_says_so() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.gitter_post(&room, "bob", "old");
    // The first read of the room is the portal's history (its lane comes first).
    h.fail_next("fetch_messages", FailureKind::Transient, 1);
    let (alice, control) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    assert!(
        h.notices(&control)
            .iter()
            .any(|n| n.contains("could not read the recent messages of org/chat")),
        "{:?}",
        h.notices(&control)
    );
    h.gitter_says(&room, "bob", "new");
    h.settle();
    assert_eq!(bodies_in(&h, &portal), ["new"]);
}

// ------------------------------------------------------------------ Gitter images

const CAT: &str = "https://img.example/cat.png";

/// `author` posts a markdown image in `room`, with the HTML Gitter renders for it, and the
/// stream delivers it.
fn gitter_image(h: &mut Harness, room: &GitterRoomId, author: &str, text: &str) -> GitterMessage {
    let mut m = h.gitter_post(room, author, text);
    m.html = format!(
        "{} <img src=\"{CAT}\" alt=\"cat\">",
        text.split(" ![").next().unwrap()
    );
    *h.gitter.get_mut(room).unwrap().messages.last_mut().unwrap() = m.clone();
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m.clone(),
    });
    h.settle();
    m
}

#[test]
fn a_gitter_image_is_uploaded_and_follows_its_text_as_an_m_image() {
    let mut h = Harness::new();
    h.web_files.insert(CAT.into(), vec![1, 2, 3]);
    let (room, alice, portal) = alice_in_portal(&mut h);
    gitter_image(&mut h, &room, "bob", &format!("look ![cat]({CAT})"));
    h.gitter_says(&room, "bob", "next");
    h.settle();
    let mxc = h.uploads[0].1.clone();
    assert_eq!(
        bodies_in(&h, &portal),
        [
            format!("look ![cat]({CAT})"),
            format!("m.image cat {mxc}"),
            "next".to_owned()
        ]
    );
    // The text shows the image as a link (a client would not load an outside image).
    let text = &h.matrix[&portal].timeline[0].1;
    assert_eq!(
        text.formatted_body.as_deref(),
        Some(format!("look <a href=\"{CAT}\" rel=\"noopener\">cat</a>").as_str())
    );
    // Both carry the Gitter time; the image comes from bob's ghost.
    let events = &h.matrix[&portal].events;
    assert_eq!(
        h.matrix[&portal].stamps[&events[1]],
        Timestamp::from_rfc3339("2024-01-01T00:00:00.000Z")
    );
    assert_eq!(h.matrix[&portal].timeline[1].0, uid("gitter_bob"));
    let _ = alice;
}

#[test]
fn an_image_is_uploaded_once_per_message_burst_and_reused_after() {
    let mut h = Harness::new();
    h.web_files.insert(CAT.into(), vec![1, 2, 3]);
    let (room, _alice, portal) = alice_in_portal(&mut h);
    let (carol, _) = h.logged_in_user("carol", "bob");
    let carols = h.portal(&carol, &room).unwrap();
    gitter_image(&mut h, &room, "dave", &format!("one ![cat]({CAT})"));
    // Both portals asked in the same step, before either upload was done: one each.
    assert_eq!(h.uploads.len(), 2, "{:?}", h.uploads);
    gitter_image(&mut h, &room, "dave", &format!("two ![cat]({CAT})"));
    // Then the upload is remembered: the same image again is not downloaded again.
    assert_eq!(h.uploads.len(), 2, "{:?}", h.uploads);
    for p in [&portal, &carols] {
        let images = bodies_in(&h, p)
            .into_iter()
            .filter(|b| b.starts_with("m.image cat mxc://"))
            .count();
        assert_eq!(images, 2, "{:?}", bodies_in(&h, p));
    }
}

#[test]
fn an_image_that_cannot_be_downloaded_leaves_its_link_and_nothing_is_lost() {
    let mut h = Harness::new();
    let (room, _alice, portal) = alice_in_portal(&mut h);
    gitter_image(&mut h, &room, "bob", &format!("gone ![cat]({CAT})"));
    h.gitter_says(&room, "bob", "after");
    h.settle();
    assert_eq!(
        bodies_in(&h, &portal),
        [format!("gone ![cat]({CAT})"), "after".to_owned()]
    );
}

#[test]
fn an_image_in_a_gitter_thread_reply_goes_into_the_matrix_thread() {
    let mut h = Harness::new();
    h.web_files.insert(CAT.into(), vec![1]);
    let (room, _alice, portal) = alice_in_portal(&mut h);
    let root = h.gitter_says(&room, "bob", "root");
    h.settle();
    let root_event = h.sent_event_of(&portal, "root").unwrap();
    let mut reply = h.gitter_post(&room, "bob", &format!("here ![cat]({CAT})"));
    reply.parent_id = Some(root.id.clone());
    reply.html = format!("here <img src=\"{CAT}\" alt=\"cat\">");
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: reply,
    });
    h.settle();
    let (_, image) = h.matrix[&portal].timeline.last().unwrap().clone();
    assert!(image.body.starts_with("m.image cat"));
    assert_eq!(image.thread.map(|t| t.root), Some(root_event));
}

// ------------------------------------------------------------------ avatars

/// The avatars set on ghosts, in order: (ghost, mxc).
fn avatars_set(h: &Harness) -> Vec<(OwnedUserId, String)> {
    h.log
        .iter()
        .filter_map(|e| match &e.action {
            Action::Matrix(MatrixCall::SetAvatar { user, mxc }) => {
                Some((user.clone(), mxc.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `author`, whose Gitter avatar is at `avatar`, says `text` in `room`.
fn says_with_avatar(h: &mut Harness, room: &GitterRoomId, author: &str, avatar: &str, text: &str) {
    let mut m = h.gitter_post(room, author, text);
    m.from.avatar_url = Some(avatar.to_owned());
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    h.settle();
}

#[test]
fn a_ghost_gets_its_gitter_avatar_uploaded_once_per_picture() {
    let mut h = Harness::new();
    let shared = "https://avatars.example/shared.png";
    h.web_files.insert(shared.into(), vec![9; 10]);
    let (room, _alice, portal) = alice_in_portal(&mut h);
    says_with_avatar(&mut h, &room, "bob", shared, "one");
    says_with_avatar(&mut h, &room, "bob", shared, "two");
    // Another Gitter user with the same picture (a default avatar) reuses the upload.
    says_with_avatar(&mut h, &room, "carol", shared, "three");
    assert_eq!(h.uploads.len(), 1, "{:?}", h.uploads);
    let mxc = h.uploads[0].1.clone();
    assert_eq!(
        avatars_set(&h),
        [
            (uid("gitter_bob"), mxc.clone()),
            (uid("gitter_carol"), mxc.clone())
        ]
    );
    // Every message arrived beside the pictures (their lane is the ghost's own).
    assert_eq!(bodies_in(&h, &portal), ["one", "two", "three"]);

    // After a restart nothing is uploaded or set again; a new picture is.
    h.restart();
    h.settle();
    says_with_avatar(&mut h, &room, "bob", shared, "four");
    assert_eq!(h.uploads.len(), 1);
    let new = "https://avatars.example/bob-2.png";
    h.web_files.insert(new.into(), vec![7; 10]);
    says_with_avatar(&mut h, &room, "bob", new, "five");
    assert_eq!(h.uploads.len(), 2);
    assert_eq!(
        avatars_set(&h).last().unwrap(),
        &(uid("gitter_bob"), h.uploads[1].1.clone())
    );
}

#[test]
fn an_avatar_that_cannot_be_downloaded_is_not_asked_for_again_and_holds_nothing() {
    let mut h = Harness::new();
    let (room, _alice, portal) = alice_in_portal(&mut h);
    let gone = "https://avatars.example/gone.png";
    says_with_avatar(&mut h, &room, "bob", gone, "one");
    says_with_avatar(&mut h, &room, "bob", gone, "two");
    assert!(avatars_set(&h).is_empty());
    let tries = h
        .log
        .iter()
        .filter(|e| matches!(e.action, Action::Matrix(MatrixCall::MirrorMedia { .. })))
        .count();
    assert_eq!(tries, 1);
    assert_eq!(bodies_in(&h, &portal), ["one", "two"]);
}

#[test]
fn a_portal_gets_its_gitter_rooms_picture_once() {
    let mut h = Harness::new();
    let picture = "https://avatars.example/org.png";
    h.web_files.insert(picture.into(), vec![5; 10]);
    let room = h.add_gitter_room("org/chat", &["alice", "carol"]);
    h.gitter.get_mut(&room).unwrap().room.avatar_url = Some(picture.into());
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let set = |h: &Harness| -> Vec<(OwnedRoomId, String)> {
        h.log
            .iter()
            .filter_map(|e| match &e.action {
                Action::Matrix(MatrixCall::SetRoomState {
                    room,
                    state: RoomState::Avatar(mxc),
                    ..
                }) => Some((room.clone(), mxc.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(set(&h), [(portal.clone(), h.uploads[0].1.clone())]);
    // Carol's portal of the same room reuses the upload; a later listing changes nothing.
    let (carol, control) = h.logged_in_user("carol", "carol");
    let carols = h.portal(&carol, &room).unwrap();
    h.say(&control, &carol, "list");
    h.settle();
    assert_eq!(h.uploads.len(), 1);
    assert_eq!(
        set(&h),
        [
            (portal, h.uploads[0].1.clone()),
            (carols, h.uploads[0].1.clone())
        ]
    );
}

#[test]
fn the_history_does_not_ping_the_owner_again() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let mut old = h.gitter_post(&room, "bob", "@alice see this");
    old.mentions = vec![GitterMention {
        screen_name: "alice".into(),
        user_id: Some(GitterUserId::new("u-alice")),
        group: false,
    }];
    *h.gitter
        .get_mut(&room)
        .unwrap()
        .messages
        .last_mut()
        .unwrap() = old;
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let content = h.last_message(&portal);
    assert_eq!(content.body, "@alice see this");
    assert!(
        content
            .mentions
            .as_ref()
            .is_none_or(|m| m.user_ids.is_empty()),
        "{content:?}"
    );
}
