//! ISO-8601 timestamps as Gitter writes them, and the wall clock.
//!
//! Gitter's timestamps are JS `Date.toISOString()` output, e.g. `"2014-03-24T15:41:18.991Z"`
//! (docs/gitter-api.md §1.2). A full date-time crate would be a heavy dependency for one format, so
//! this is a small strict parser that also accepts other fraction lengths and `+hh:mm` offsets.

use std::time::{SystemTime, UNIX_EPOCH};

/// Parses an ISO-8601 UTC date-time (`YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm]`) into
/// milliseconds since the Unix epoch. `None` for anything else or a time before 1970.
pub fn parse_iso_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Keep millisecond precision: pad or cut the fraction to three digits.
        let mut ms = frac[..digits.min(3)].to_owned();
        while ms.len() < 3 {
            ms.push('0');
        }
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        // `is_ascii` first: the slices below index bytes, and a multi-byte character there
        // (a hostile `sent`, found by the gitter_message fuzz target) would panic.
        _ if rest.len() == 6
            && rest.is_ascii()
            && matches!(&rest[..1], "+" | "-")
            && &rest[3..4] == ":" =>
        {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    let ms = secs.checked_mul(1000)?.checked_add(millis)?;
    u64::try_from(ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
