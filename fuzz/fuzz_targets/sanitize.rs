//! The HTML sanitiser and the Gitter -> Matrix formatter (core/src/format.rs): HTML any
//! Gitter user writes. The XSS property of `core/tests/sanitiser.rs` must hold on arbitrary
//! input, read two ways (the strict hand-written check and html5ever's tokenizer), for the
//! output of `sanitize_html`, for that output sanitised again (a client re-parses it), and
//! for the `formatted_body` the bridge sends to a portal for a Gitter message with this HTML
//! (the formatter is `pub(crate)`; `Bridge::handle` is its public way in).
#![no_main]

use gitter_bridge_core::{Action, GitterMessage, GitterMessageId, Input, MatrixCall, sanitize_html};
use gitter_bridge_fuzz::harness::gitter_user;
use gitter_bridge_fuzz::{Restored, strict, tokenized, world};
use libfuzzer_sys::fuzz_target;

fn check(what: &str, input: &str, html: &str) {
    let mut found = strict::violations(html);
    found.extend(tokenized::violations(html));
    assert!(
        found.is_empty(),
        "{what}: {input:?}\n  -> {html:?}\n  {found:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let once = sanitize_html(&input);
    check("sanitize_html", &input, &once);
    let twice = sanitize_html(&once);
    check("sanitize_html twice", &input, &twice);

    let w = world();
    let mut r = Restored::new(w);
    let out = r.step(Input::GitterMessage {
        room: w.room.clone(),
        message: GitterMessage {
            id: GitterMessageId::new("ffffffffffffffffffffffff"),
            text: "fuzz".to_owned(),
            html: input.clone().into_owned(),
            status: false,
            sent: "2024-01-01T00:00:00.000Z".to_owned(),
            from: gitter_user("mallory"),
            parent_id: None,
            mentions: Vec::new(),
        },
    });
    let mut sent = false;
    for e in &out.effects {
        if let Action::Matrix(MatrixCall::SendMessage { room, content, .. }) = &e.action
            && room == &w.portal
        {
            sent = true;
            if let Some(html) = &content.formatted_body {
                check("formatted_body", &input, html);
            }
        }
    }
    assert!(sent, "the message was not relayed: {:?}", out.effects);
});
