//! Compact forms of the two ids every `mappings` row holds, so that a long history costs
//! little disk (issue 14: at most 150 bytes per mapping).
//!
//! * A Gitter message id is a MongoDB ObjectId, 24 lowercase hex characters (gitter-api
//!   reference §1.2): stored as its 12 bytes, whose byte order is the hex strings' order (so
//!   a portal's rows stay in Gitter's order). Any other id is stored as `0xFF` and its bytes;
//!   an ObjectId never starts with `0xFF` before the year 2105, and one that does is stored
//!   the second way, so the two forms never meet. One bridge sees one kind.
//! * A Matrix event id of room version 4 and later is `$` and the unpadded URL-safe base64 of
//!   a 32-byte hash (Matrix spec, room version 4 "Event IDs"): stored as the 32 bytes. Any
//!   other form (room versions 1 to 3: `$local:server`) is stored as text. Each form decodes
//!   to exactly the id it came from (the base64 is checked to be canonical).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gitter_bridge_core::OwnedEventId;
use serde::{Deserialize, Serialize};

/// The marker of a Gitter id stored as text.
const TEXT: u8 = 0xFF;

/// The key form of a Gitter message id.
pub(crate) fn gitter_id_key(id: &str) -> Vec<u8> {
    let b = id.as_bytes();
    if b.len() == 24
        && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && !id.starts_with("ff")
    {
        b.chunks(2)
            .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
            .collect()
    } else {
        let mut key = Vec::with_capacity(b.len() + 1);
        key.push(TEXT);
        key.extend_from_slice(b);
        key
    }
}

/// The Gitter message id of a key made by [`gitter_id_key`].
pub(crate) fn gitter_id_from_key(key: &[u8]) -> Result<String, String> {
    match key.first() {
        Some(&TEXT) => String::from_utf8(key[1..].to_vec())
            .map_err(|_| "a Gitter id stored as text is not UTF-8".to_owned()),
        Some(_) if key.len() == 12 => Ok(key.iter().map(|b| format!("{b:02x}")).collect()),
        _ => Err(format!("a Gitter id key of {} bytes", key.len())),
    }
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// A Matrix event id as a `mappings` value holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredEvent {
    /// `$` + unpadded URL-safe base64 of these 32 bytes.
    Hash([u8; 32]),
    /// Any other form, as it is.
    Text(String),
}

impl StoredEvent {
    pub(crate) fn from_id(id: &OwnedEventId) -> StoredEvent {
        let s = id.as_str();
        if let Some(b64) = s.strip_prefix('$')
            && b64.len() == 43
            && let Ok(bytes) = URL_SAFE_NO_PAD.decode(b64)
            && let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice())
            && URL_SAFE_NO_PAD.encode(hash) == b64
        {
            return StoredEvent::Hash(hash);
        }
        StoredEvent::Text(s.to_owned())
    }

    pub(crate) fn to_id(&self) -> Result<OwnedEventId, String> {
        let s = match self {
            StoredEvent::Hash(hash) => format!("${}", URL_SAFE_NO_PAD.encode(hash)),
            StoredEvent::Text(s) => s.clone(),
        };
        s.try_into()
            .map_err(|e: ruma::IdParseError| format!("an invalid event id: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_take_12_bytes_in_their_order_and_other_ids_come_back_as_they_were() {
        let a = gitter_id_key("5330521e20d939a3be000018");
        let b = gitter_id_key("5330521e20d939a3be000019");
        assert_eq!(a.len(), 12);
        assert!(a < b, "byte order is Gitter's order");
        for id in [
            "5330521e20d939a3be000018",
            "m0001",
            "5330521E20D939A3BE000018",
            "ff30521e20d939a3be000018",
            "",
            "12345678901",
        ] {
            assert_eq!(gitter_id_from_key(&gitter_id_key(id)).unwrap(), id);
        }
        assert!(gitter_id_from_key(&[1, 2, 3]).is_err());
    }

    #[test]
    fn hashed_event_ids_take_32_bytes_and_every_id_comes_back_as_it_was() {
        let v4: OwnedEventId = "$acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJk"
            .try_into()
            .unwrap();
        assert!(matches!(StoredEvent::from_id(&v4), StoredEvent::Hash(_)));
        for id in [
            "$acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJk",
            "$acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJl",
            "$event:example.org",
            "$e0001",
        ] {
            let id: OwnedEventId = id.try_into().unwrap();
            assert_eq!(StoredEvent::from_id(&id).to_id().unwrap(), id);
        }
    }
}
