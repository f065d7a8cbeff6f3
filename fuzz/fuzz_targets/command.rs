//! The bot's command parser (core/src/commands.rs, `Command::parse`), through the core's
//! public entry point: `Command::parse` is `pub(crate)`, so the body goes in as a Matrix
//! message in a control room, which is where the core parses it. The first byte picks who
//! writes (Alice, logged in to Gitter, or Bob, not logged in) and the message type.
//!
//! Checked: no panic; every change set rebuilds the bridge's state exactly (the store
//! contract); a text message in one's own control room always gets somewhere: the bot
//! answers, or the work it asks for starts (`list` first reads the Gitter rooms, say).
#![no_main]

use gitter_bridge_core::{AsTxnId, Input, MatrixEvent, MatrixEventKind, MsgType};
use gitter_bridge_fuzz::{Restored, event_id, world};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let w = world();
    let (sender, control) = if pick & 1 == 0 {
        (&w.alice, &w.alice_control)
    } else {
        (&w.bob, &w.bob_control)
    };
    let msgtype = match (pick >> 1) % 3 {
        0 => MsgType::Text,
        1 => MsgType::Notice,
        _ => MsgType::Emote,
    };
    let answered_expected = msgtype == MsgType::Text;
    let mut r = Restored::new(w);
    let out = r.step(Input::Transaction {
        txn_id: AsTxnId::new("fuzz"),
        events: vec![MatrixEvent {
            event_id: event_id(),
            room_id: control.clone(),
            sender: sender.clone(),
            kind: MatrixEventKind::Message {
                msgtype,
                body: body.to_owned(),
                formatted_body: None,
                relation: None,
            },
        }],
    });
    if answered_expected {
        assert!(!out.effects.is_empty(), "nothing comes of {body:?}");
    }
});
