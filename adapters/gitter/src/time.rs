//! Timestamps as Gitter writes them, and the wall clock.
//!
//! Gitter's timestamps are JS `Date.toISOString()` output, e.g. `"2014-03-24T15:41:18.991Z"`
//! (docs/gitter-api.md §1.2): RFC 3339, which the core parses ([`Timestamp::from_rfc3339`],
//! with the `time` crate), because it stamps relayed messages with them.

use std::time::{SystemTime, UNIX_EPOCH};

use gitter_bridge_core::Timestamp;

/// Parses an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm|-hh:mm)`) into
/// milliseconds since the Unix epoch, the fraction cut to milliseconds. `None` for anything
/// else or a time before 1970.
pub fn parse_iso_ms(s: &str) -> Option<u64> {
    Timestamp::from_rfc3339(s).map(|t| t.0)
}

/// The wall clock in ms since the Unix epoch. Only used to turn Gitter's absolute
/// `X-RateLimit-Reset` into a delay; everything that waits uses tokio's clock.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gitter_timestamps() {
        assert_eq!(parse_iso_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_iso_ms("2020-12-31T12:29:53.036Z"),
            Some(1_609_417_793_036)
        );
        assert_eq!(
            parse_iso_ms("2014-03-24T15:41:18.991Z"),
            Some(1_395_675_678_991)
        );
        assert_eq!(
            parse_iso_ms("2014-03-24T15:41:18Z"),
            Some(1_395_675_678_000)
        );
        assert_eq!(
            parse_iso_ms("2014-03-24T15:41:18.9Z"),
            Some(1_395_675_678_900)
        );
        assert_eq!(
            parse_iso_ms("2014-03-24T15:41:18.991234Z"),
            Some(1_395_675_678_991)
        );
        assert_eq!(
            parse_iso_ms("2014-03-24T17:41:18.991+02:00"),
            Some(1_395_675_678_991)
        );
        assert_eq!(
            parse_iso_ms("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "yesterday",
            "2014-03-24",
            "2014-13-24T15:41:18.991Z",
            "2014-03-24T15:41:18.Z",
            "2014-03-24T15:41:18.991",
            "1969-12-31T23:59:59.000Z",
            "2014-03-24T15:41:18.991Zjunk",
            // Six bytes after the fraction, one character of them two bytes long: the fuzz
            // target's crash (a byte slice inside a character panicked).
            "0440-07-01T12:00:00.0-06\u{4da}Z",
        ] {
            assert_eq!(parse_iso_ms(bad), None, "{bad}");
        }
    }
}
