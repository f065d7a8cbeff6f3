//! `PUT /_matrix/app/v1/transactions/{txnId}` bodies (adapters/matrix/src/parse.rs): the
//! homeserver's JSON, parsed before anything is acknowledged. Checked against serde_json:
//! a body is refused as not JSON exactly when it is not JSON; a JSON object with an `events`
//! array is accepted and every event is either parsed or counted as skipped.
#![no_main]

use gitter_bridge_matrix::{TransactionParseError, parse_transaction};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_transaction(data);
    let json = serde_json::from_slice::<Value>(data);
    match (&json, &parsed) {
        (Err(_), Err(TransactionParseError::NotJson(_))) => {}
        (Err(e), other) => panic!("not JSON ({e}) but {other:?}"),
        (Ok(_), Err(TransactionParseError::NotJson(e))) => panic!("JSON refused as not JSON: {e}"),
        (Ok(value), result) => {
            let events = value.get("events").and_then(Value::as_array);
            match (value.is_object(), events, result) {
                (true, Some(events), Ok(t)) => {
                    assert_eq!(t.events.len() + t.skipped, events.len());
                    let ephemeral: usize = ["ephemeral", "de.sorunome.msc2409.ephemeral"]
                        .iter()
                        .filter_map(|k| value.get(k).and_then(Value::as_array))
                        .map(Vec::len)
                        .sum();
                    assert_eq!(t.ephemeral, ephemeral);
                }
                (true, Some(_), Err(e)) => panic!("a transaction refused: {e}"),
                (_, None, Ok(t)) | (false, _, Ok(t)) => {
                    panic!("no `events` array but accepted: {t:?}")
                }
                _ => {}
            }
        }
    }
});
