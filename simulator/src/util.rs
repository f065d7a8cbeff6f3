//! Small helpers shared by both fakes: wall-clock time, ISO-8601 formatting,
//! random identifiers.
//!
//! The state structs never read the clock themselves: every time-dependent
//! method takes `now_ms` (Unix milliseconds) so unit tests can drive time by
//! hand. The HTTP layers read [`SimClock`], which tests may move forward.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Wall clock plus an adjustable offset, so an HTTP test can jump past Gitter's
/// 600 s edit window or a 60 s rate-limit window without sleeping.
#[derive(Debug, Default)]
pub struct SimClock {
    offset_ms: AtomicI64,
}

impl SimClock {
    /// Current simulated Unix time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (real + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Move simulated time forward (never backwards: ids must keep increasing).
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

/// Format Unix milliseconds like JavaScript's `Date.toISOString()`:
/// `2014-03-24T15:41:18.991Z` (docs/gitter-api.md §1.2 "Timestamps").
pub fn iso_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `n` random lowercase hex characters (Gitter tokens and OAuth codes are 40).
pub fn random_hex(rng: &mut impl Rng, n: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    (0..n)
        .map(|_| HEX[rng.random_range(0..16)] as char)
        .collect()
}

/// `n` random characters of the URL-safe base64 alphabet (Matrix room and
/// event ids in room versions 4+ and 12 are 43 of these after the sigil).
pub fn random_b64url(rng: &mut impl Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..64)] as char)
        .collect()
}

/// Random ASCII letters, for Synapse-style media ids and pre-v12 room ids.
pub fn random_letters(rng: &mut impl Rng, n: usize) -> String {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

/// A text's length as Gitter's server measures it: JavaScript's
/// `text.length`, in UTF-16 code units (an emoji outside the BMP counts 2).
pub fn text_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// True when `s` is exactly 24 lowercase-or-uppercase hex characters, the
/// shape of a MongoDB ObjectId (docs/gitter-api.md §1.2 "IDs").
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formatting_matches_javascript() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        // 2014-03-24T15:41:18.991Z from the Gitter docs.
        assert_eq!(iso_ms(1_395_675_678_991), "2014-03-24T15:41:18.991Z");
        assert_eq!(iso_ms(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn object_id_shape() {
        assert!(is_object_id("5330521e20d939a3be000018"));
        assert!(!is_object_id("5330521e20d939a3be00001"));
        assert!(!is_object_id("zz30521e20d939a3be000018"));
    }
}
