//! Value encoding.
//!
//! Records are stored as postcard bytes. Why postcard rather than serde_json: it is several
//! times faster to encode and decode and two to four times smaller (no field names, varint
//! integers), which matters for the hot path (a cursor update per bridged message) and for the
//! load of a million message mappings at startup. The price is that postcard is not
//! self-describing: adding, removing or reordering a field of a stored record changes the
//! format, so any such change to a core record type needs a numbered migration (see
//! `migrate.rs`), which re-encodes the table. postcard's own wire format is stable since 1.0.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::StoreError;

pub(crate) fn encode<T: Serialize>(
    path: &Path,
    table: &'static str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|source| StoreError::Codec {
        path: path.to_path_buf(),
        table,
        problem: "encode",
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Codec {
        path: path.to_path_buf(),
        table,
        problem: "decode",
        source,
    })
}
