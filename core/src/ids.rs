//! Typed identifiers and small value types shared by every module.
//!
//! Matrix ids come from ruma. Room ids are never parsed for a server part: room version 12 ids
//! have none (`!CAey79Ay3Oizokol3wpj41pVDWUFrx1jn9l0-zPZA68`).

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

// Gitter's ids are 24-character ObjectIds and the homeserver's transaction ids are short:
// `CompactString` keeps up to 24 bytes inline, so the clones a fan-out makes of a room's and a
// message's id do not allocate; the serialised form is a plain string either way, so stored
// rows read the same.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(s: impl Into<CompactString>) -> Self {
                Self(s.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// A Gitter user id (24-hex ObjectId). Ghosts are keyed by it, so renames keep the ghost.
    GitterUserId
);
string_id!(
    /// A Gitter room id (24-hex ObjectId).
    GitterRoomId
);
string_id!(
    /// A Gitter message id (24-hex ObjectId). Ids of one server grow with time.
    GitterMessageId
);
string_id!(
    /// An application-service transaction id chosen by the homeserver.
    AsTxnId
);

/// Milliseconds since the Unix epoch. The core never reads a clock: every `handle` call
/// passes the current time in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// An RFC 3339 date-time as Gitter writes them (JS `Date.toISOString()`,
    /// `"2014-03-24T15:41:18.991Z"`, docs/gitter-api.md §1.2; any fraction length, `Z` or an
    /// offset), the fraction cut to milliseconds. `None` for anything else or a time before
    /// 1970.
    pub fn from_rfc3339(s: &str) -> Option<Timestamp> {
        use time::format_description::well_known::Rfc3339;
        let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
        u64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
            .ok()
            .map(Timestamp)
    }
}

/// The stable id of one effect. Assigned in order by the core, persisted with the outbox, and
/// the source of the Matrix transaction id of a send (so a retry after a crash reuses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EffectId(pub u64);

impl EffectId {
    /// The Matrix client transaction id for a send made by this effect. Unique across ghosts
    /// because effect ids are global (Synapse keys transaction ids per access token, not per
    /// masqueraded user: matrix-org/synapse#2937), and stable across restarts.
    pub fn matrix_txn_id(self) -> String {
        format!("gb{}", self.0)
    }
}

impl fmt::Display for EffectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// A pending web request (login link opened, OAuth callback) that the driver holds open
/// until the core answers it with a [`crate::WebReply`]. Assigned by the driver; not persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// A secret (a Gitter OAuth token or code). Its `Debug` and `Display` never show the value, so
/// a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
