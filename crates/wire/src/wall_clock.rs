//! The wire's wall-clock format `YYYYmmddHHiiss` (the report's `date_ini` / `date_end`): one
//! parser and one formatter, shared by the server and the client SDK so both accept exactly the
//! same texts (docs/api.md, "GET /api/v2/reports_manager.php").
//!
//! Accepted: exactly 14 ASCII digits forming a real calendar time — no Feb 30, no 24:00:00,
//! no leap second `…60`. The time is an operation's wall clock: no time zone, no DST.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};

/// The chrono format of `YYYYmmddHHiiss`.
pub const COMPACT_FORMAT: &str = "%Y%m%d%H%M%S";

/// Why a text is not a `YYYYmmddHHiiss` wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WallClockError {
    /// Not exactly 14 ASCII digits.
    NotFourteenDigits(String),
    /// 14 digits, but no real calendar time (month 13, Feb 30, 24:00:00, second 60, …).
    NotACalendarTime(String),
}

impl fmt::Display for WallClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFourteenDigits(s) => write!(f, "{s:?} is not YYYYmmddHHiiss (14 digits)"),
            Self::NotACalendarTime(s) => write!(f, "{s:?} is not a real calendar time"),
        }
    }
}

impl std::error::Error for WallClockError {}

/// Parses `YYYYmmddHHiiss`.
///
/// ```
/// use voxtrail_wire::wall_clock::{format_compact, parse_compact};
/// let t = parse_compact("20240229235959").unwrap();
/// assert_eq!(t.to_string(), "2024-02-29 23:59:59");
/// assert_eq!(format_compact(t), "20240229235959");
/// assert!(parse_compact("20230229000000").is_err());
/// assert!(parse_compact("2024-02-29").is_err());
/// ```
pub fn parse_compact(s: &str) -> Result<NaiveDateTime, WallClockError> {
    let b = s.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return Err(WallClockError::NotFourteenDigits(s.to_owned()));
    }
    let n = |r: std::ops::Range<usize>| -> u32 {
        b[r].iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    // Four digits are at most 9999: the year always fits an i32.
    NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))
        .and_then(|d| d.and_hms_opt(n(8..10), n(10..12), n(12..14)))
        .ok_or_else(|| WallClockError::NotACalendarTime(s.to_owned()))
}

/// Formats a wall-clock time as `YYYYmmddHHiiss` (fractions of a second are dropped).
pub fn format_compact(t: NaiveDateTime) -> String {
    t.format(COMPACT_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_everything_but_fourteen_digits_of_a_real_time() {
        for bad in [
            "20260230000000",
            "20261001240000",
            "20261001236000",
            "20261001235960",
            "2026100108150",
            "202610010815000",
            "2026100108150a",
            "+2026100108150",
            " 20261001081500",
            "２０２６１００１０８１５００",
            "",
            "20261301000000",
            "20260000000000",
            "20261000000000",
        ] {
            assert!(parse_compact(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_compact("2026100108150a").unwrap_err().to_string(),
            "\"2026100108150a\" is not YYYYmmddHHiiss (14 digits)"
        );
        assert_eq!(
            parse_compact("20260230000000").unwrap_err().to_string(),
            "\"20260230000000\" is not a real calendar time"
        );
        for good in ["00000101000000", "99991231235959", "20240229235959"] {
            assert_eq!(format_compact(parse_compact(good).unwrap()), good);
        }
    }
}
