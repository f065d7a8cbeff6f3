//! The Gitter message model (adapters/gitter/src/models.rs, `Message`): any JSON a Gitter
//! server sends as a message, from the REST API or a stream line. It must deserialise or
//! fail without panicking, survive a round trip through its own serialisation unchanged, and
//! convert to the core's message exactly when it has an id and an author with an id.
//!
//! `meta` ("not used for anything", kept opaque) is left out of the round trip: serde_json
//! without its `float_roundtrip` feature reads some long floats one bit off what it wrote
//! (found here: `{"meta":444918968511795269178}` comes back as 4.449189685117952e20), which
//! matters nowhere in the bridge.
#![no_main]

use gitter_bridge_gitter::{FromUser, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Message>(data) else {
        return;
    };
    let _ = message.sent_ms();
    let json = serde_json::to_vec(&message).expect("a message serialises");
    let mut again: Message = serde_json::from_slice(&json).expect("a serialised message parses");
    again.meta = message.meta.clone();
    assert_eq!(
        again,
        message,
        "round trip through {}",
        String::from_utf8_lossy(&json)
    );

    let convertible = !message.id.is_empty()
        && matches!(&message.from_user, FromUser::User(u) if !u.id.is_empty());
    let id = message.id.clone();
    let html = message.html.clone();
    match message.into_core() {
        Some(core) => {
            assert!(convertible);
            assert_eq!(core.id.as_str(), id);
            assert_eq!(core.html, html);
        }
        None => assert!(!convertible),
    }
});
