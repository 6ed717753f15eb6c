//! The shared `YYYYmmddHHiiss` parser accepts exactly what the server's and the client's own
//! parsers accepted before they were replaced by it; the two old parsers are kept here, in
//! substance, as the reference. The one known difference: the client's old parser (chrono's
//! `%S`) took a leap second `…60`, which the server always refused with a 400; the shared parser
//! refuses it too.

use chrono::{NaiveDate, NaiveDateTime, Timelike as _};
use proptest::prelude::*;
use voxtrail_wire::wall_clock::{format_compact, parse_compact};

/// The server's old `WallClock::parse_compact`, as a date-time.
fn old_server(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> u32 {
        b[r].iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let date = NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))?;
    date.and_hms_opt(n(8..10), n(10..12), n(12..14))
}

/// The client's old `parse_wall_clock`.
fn old_client(s: &str) -> Option<NaiveDateTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()
}

fn is_leap_second(t: NaiveDateTime) -> bool {
    t.nanosecond() >= 1_000_000_000
}

fn check(s: &str) -> Result<(), TestCaseError> {
    let new = parse_compact(s).ok();
    prop_assert_eq!(new, old_server(s), "server vs shared on {:?}", s);
    match old_client(s) {
        Some(t) if is_leap_second(t) => prop_assert_eq!(new, None, "{:?}", s),
        client => prop_assert_eq!(new, client, "client vs shared on {:?}", s),
    }
    if let Some(t) = new {
        prop_assert_eq!(format_compact(t), s);
        prop_assert_eq!(format_compact(t), t.format("%Y%m%d%H%M%S").to_string());
    }
    Ok(())
}

#[test]
fn a_leap_second_is_the_one_difference_from_the_old_client_parser() {
    let s = "20161231235960";
    assert!(old_client(s).is_some_and(is_leap_second));
    assert_eq!(old_server(s), None);
    assert!(parse_compact(s).is_err());
}

proptest! {
    #[test]
    fn agrees_on_near_valid_digit_strings(
        y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, sec in 0u32..62,
    ) {
        check(&format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}"))?;
    }

    #[test]
    fn agrees_on_any_text(s in "\\PC{0,20}") {
        check(&s)?;
    }

    #[test]
    fn agrees_on_digit_runs_of_any_length(s in "[0-9]{0,16}") {
        check(&s)?;
    }
}
