//! Media, avatars and history (issue 17): a Matrix file reaches Gitter users, who have no
//! Matrix account, as a link to the bridge's signed media page.

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
