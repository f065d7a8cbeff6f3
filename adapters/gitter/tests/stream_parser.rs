//! The pure stream parser: newline-delimited JSON split at arbitrary chunk boundaries
//! (docs/gitter-api.md §5.1).

mod common;

use common::*;
use gitter_bridge_gitter::{LineSplitter, Message, StreamItem};
use proptest::prelude::*;

fn parse_all(chunks: &[&[u8]]) -> Vec<StreamItem> {
    let mut splitter = LineSplitter::default();
    let mut items: Vec<StreamItem> = chunks.iter().flat_map(|c| splitter.push(c)).collect();
    items.extend(splitter.finish());
    items
}

fn message(json: &str) -> StreamItem {
    StreamItem::Message(Box::new(serde_json::from_str::<Message>(json).unwrap()))
}

#[test]
fn every_fixture_survives_every_split_point() {
    for (name, text) in message_fixtures() {
        let line = one_line(&text);
        // Heartbeats around the message, one with a stray `\r` (old docs, §5.1).
        let wire = format!(" \n{line}\r\n \n");
        let expected = vec![StreamItem::Heartbeat, message(&line), StreamItem::Heartbeat];
        let bytes = wire.as_bytes();
        assert_eq!(parse_all(&[bytes]), expected, "{name} whole");
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(parse_all(&[a, b]), expected, "{name} cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&singles), expected, "{name} byte by byte");
    }
}

#[test]
fn a_carriage_return_delimited_stream_is_read_too() {
    // The 2014 docs: objects "delimited by carriage return"; `\r\n` is one terminator.
    let a = one_line(&fixture("message-plain.json"));
    let b = one_line(&fixture("message-status.json"));
    let wire = format!("{a}\r\r\n{b}\r\n");
    let expected = vec![message(&a), StreamItem::Heartbeat, message(&b)];
    let bytes = wire.as_bytes();
    for cut in 0..=bytes.len() {
        let (x, y) = bytes.split_at(cut);
        assert_eq!(parse_all(&[x, y]), expected, "cut at {cut}");
    }
}

#[test]
fn a_malformed_line_does_not_disturb_the_next_message() {
    let good = one_line(&fixture("message-plain.json"));
    let wire = format!("{{\"id\": \"x\", broken\n[1,2]\n{good}\n");
    let items = parse_all(&[wire.as_bytes()]);
    assert!(matches!(&items[0], StreamItem::Malformed(l) if l.contains("broken")));
    assert!(
        matches!(&items[1], StreamItem::Malformed(_)),
        "not a message object"
    );
    assert_eq!(items[2], message(&good));
}

#[test]
fn a_last_line_without_newline_is_read_at_the_end() {
    let good = one_line(&fixture("message-status.json"));
    assert_eq!(parse_all(&[good.as_bytes()]), vec![message(&good)]);
    // A connection cut mid-object leaves a truncated line: malformed, not lost silently.
    let cut = &good.as_bytes()[..good.len() / 2];
    assert!(matches!(parse_all(&[cut])[..], [StreamItem::Malformed(_)]));
}

#[test]
fn an_oversized_line_is_dropped_and_the_stream_goes_on() {
    let good = one_line(&fixture("message-plain.json"));
    let mut splitter = LineSplitter::new(good.len());
    let huge = "x".repeat(good.len() * 3);
    let mut items = splitter.push(huge.as_bytes());
    items.extend(splitter.push(b"\n"));
    items.extend(splitter.push(format!("{good}\n").as_bytes()));
    assert_eq!(
        items,
        vec![
            StreamItem::Malformed("<line too long>".into()),
            message(&good)
        ]
    );
}

/// What the server may send, item by item.
#[derive(Clone, Debug)]
enum Wire {
    Heartbeat,
    Message(String),
}

fn arb_message() -> impl Strategy<Value = String> {
    let fixtures: Vec<String> = message_fixtures()
        .into_iter()
        .map(|(_, t)| one_line(&t))
        .collect();
    prop_oneof![
        proptest::sample::select(fixtures),
        // Random texts: JSON escapes newlines, so any text stays on one line.
        ("[0-9a-f]{24}", any::<String>(), any::<bool>()).prop_map(|(id, text, status)| {
            serde_json::json!({
                "id": id,
                "text": text,
                "html": text,
                "status": status,
                "sent": "2020-12-31T12:29:53.036Z",
                "fromUser": {"id": "5f9ab228d73408ce4ff2c66c", "username": "u"},
                "meta": []
            })
            .to_string()
        }),
    ]
}

fn arb_wire() -> impl Strategy<Value = Vec<Wire>> {
    prop::collection::vec(
        prop_oneof![1 => Just(Wire::Heartbeat), 3 => arb_message().prop_map(Wire::Message)],
        0..12,
    )
}

proptest! {
    #[test]
    fn random_splits_of_random_streams_give_the_same_items(
        wire in arb_wire(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for w in &wire {
            match w {
                Wire::Heartbeat => {
                    bytes.extend_from_slice(b" \n");
                    expected.push(StreamItem::Heartbeat);
                }
                Wire::Message(m) => {
                    bytes.extend_from_slice(m.as_bytes());
                    bytes.push(b'\n');
                    expected.push(message(m));
                }
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(parse_all(&chunks), expected);
    }
}

#[test]
fn an_endless_line_never_holds_more_than_max_line() {
    // A stream that never sends a newline must not grow memory past the cap, not even by
    // Vec's doubling (which would reserve up to twice the cap).
    let max = 1000;
    let mut splitter = LineSplitter::new(max);
    for _ in 0..1000 {
        assert_eq!(splitter.push(&[b'a'; 300]), Vec::new());
        assert!(splitter.held_bytes() <= max, "{}", splitter.held_bytes());
    }
    let good = one_line(&fixture("message-plain.json"));
    let mut splitter_items = splitter.push(b"\n");
    assert_eq!(
        splitter_items.pop(),
        Some(StreamItem::Malformed("<line too long>".to_owned()))
    );
    assert!(matches!(
        &LineSplitter::new(good.len() + 1).push(format!("{good}\n").as_bytes())[..],
        [StreamItem::Message(_)]
    ));
}

proptest! {
    #[test]
    fn the_partial_line_stays_within_max_line(
        max in 1usize..4096,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..40),
    ) {
        let mut splitter = LineSplitter::new(max);
        for chunk in &chunks {
            splitter.push(chunk);
            prop_assert!(splitter.held_bytes() <= max, "{} > {max}", splitter.held_bytes());
        }
    }
}
