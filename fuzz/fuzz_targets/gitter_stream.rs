//! The Gitter streaming API reader (adapters/gitter/src/stream.rs, `LineSplitter`): bytes
//! from the network, split into lines whatever the chunk boundaries, each line a heartbeat,
//! a message or malformed. Checked against a one-byte-at-a-time model of the documented
//! rules (lines end at `\n`, `\r` or `\r\n`; a line longer than the limit is one
//! "<line too long>" item), with the memory held never above the limit.
//!
//! Input: two bytes of line limit (1..=4096), one byte of chunk size (1..=256), the stream.
#![no_main]

use gitter_bridge_gitter::{LineSplitter, Message, StreamItem};
use libfuzzer_sys::fuzz_target;

/// What one complete line must give (the documented rules, not the code under test).
fn expected(line: &[u8], max_line: usize) -> StreamItem {
    if line.len() > max_line {
        return StreamItem::Malformed("<line too long>".to_owned());
    }
    let line = line.trim_ascii();
    if line.is_empty() {
        return StreamItem::Heartbeat;
    }
    match serde_json::from_slice::<Message>(line) {
        Ok(m) if !m.id.is_empty() => StreamItem::Message(Box::new(m)),
        _ => StreamItem::Malformed(
            String::from_utf8_lossy(&line[..line.len().min(256)]).into_owned(),
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max_line = 1 + usize::from(u16::from_le_bytes([data[0], data[1]])) % 4096;
    let chunk = 1 + usize::from(data[2]);
    let stream = &data[3..];

    let mut splitter = LineSplitter::new(max_line);
    let mut items = Vec::new();
    for piece in stream.chunks(chunk) {
        items.extend(splitter.push(piece));
        assert!(
            splitter.held_bytes() <= max_line,
            "holds {} bytes, limit {max_line}",
            splitter.held_bytes()
        );
    }
    items.extend(splitter.finish());

    // The model: one byte at a time.
    let mut want = Vec::new();
    let mut line = Vec::new();
    let mut after_cr = false;
    for &b in stream {
        match b {
            b'\n' if after_cr => after_cr = false,
            b'\n' | b'\r' => {
                want.push(expected(&line, max_line));
                line.clear();
                after_cr = b == b'\r';
            }
            _ => {
                line.push(b);
                after_cr = false;
            }
        }
    }
    if line.len() > max_line || !line.trim_ascii().is_empty() {
        want.push(expected(&line, max_line));
    }
    assert_eq!(items.len(), want.len(), "item count");
    for (got, want) in items.iter().zip(&want) {
        assert_eq!(got, want);
        if let StreamItem::Malformed(text) = got {
            // 256 bytes, each at most a 3-byte U+FFFD once lossily decoded.
            assert!(
                text.len() <= 3 * 256,
                "a malformed item of {} bytes",
                text.len()
            );
        }
    }
});
