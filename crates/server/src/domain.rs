//! Domain types, parsed once at the edge: wall-clock times, report windows, operation names,
//! time zones, token secrets and scopes.
//!
//! Every type here has a `parse` constructor that is the only way to build it from outside
//! input, so code further in never re-validates. This module knows nothing of HTTP or SQL.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone as _, Timelike};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A wall-clock time in an operation's time zone, at one-second resolution, held as the
/// integer `YYYYmmddHHiiss`. Integers order like the times they stand for, so a report
/// window is a plain integer range and DST needs no arithmetic at query time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallClock(i64);

/// Why a wall-clock text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid date and time")]
pub struct BadWallClock;

impl WallClock {
    /// Parses the report's query format `YYYYmmddHHiiss`: exactly 14 ASCII digits forming a
    /// real calendar time (no Feb 30, no 24:00:00, no leap second). The parser is the wire's,
    /// shared with the client SDK (`voxtrail_wire::wall_clock`).
    pub fn parse_compact(s: &str) -> Result<Self, BadWallClock> {
        voxtrail_wire::wall_clock::parse_compact(s)
            .map(Self::from_naive)
            .map_err(|_| BadWallClock)
    }

    /// Parses the display format `YYYY-mm-dd HH:ii:ss`.
    pub fn parse_display(s: &str) -> Result<Self, BadWallClock> {
        let b = s.as_bytes();
        if b.len() != 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b' '
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(BadWallClock);
        }
        let mut compact = [0u8; 14];
        let mut j = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 4 | 7 | 10 | 13 | 16) {
                continue;
            }
            compact[j] = c;
            j += 1;
        }
        Self::parse_compact(std::str::from_utf8(&compact).map_err(|_| BadWallClock)?)
    }

    /// Builds from calendar parts, refusing impossible times.
    pub fn from_parts(
        y: i32,
        mo: u32,
        d: u32,
        h: u32,
        mi: u32,
        s: u32,
    ) -> Result<Self, BadWallClock> {
        let date = NaiveDate::from_ymd_opt(y, mo, d).ok_or(BadWallClock)?;
        let dt = date.and_hms_opt(h, mi, s).ok_or(BadWallClock)?;
        Ok(Self::from_naive(dt))
    }

    /// The wall clock of a naive date-time (seconds truncated to whole).
    pub fn from_naive(dt: NaiveDateTime) -> Self {
        let v = i64::from(dt.year()) * 10_000_000_000
            + i64::from(dt.month()) * 100_000_000
            + i64::from(dt.day()) * 1_000_000
            + i64::from(dt.hour()) * 10_000
            + i64::from(dt.minute()) * 100
            + i64::from(dt.second());
        Self(v)
    }

    /// Rebuilds from the stored integer. Returns `None` for an integer that is no real time.
    pub fn from_i64(v: i64) -> Option<Self> {
        let s = v.to_string();
        Self::parse_compact(&s).ok()
    }

    /// The stored integer `YYYYmmddHHiiss`.
    pub fn as_i64(self) -> i64 {
        self.0
    }

    /// As a naive date-time.
    pub fn to_naive(self) -> NaiveDateTime {
        let v = self.0;
        let (y, rest) = (v / 10_000_000_000, v % 10_000_000_000);
        let p = |div: i64, m: i64| ((rest / div) % m) as u32;
        NaiveDate::from_ymd_opt(y as i32, p(100_000_000, 100), p(1_000_000, 100))
            .and_then(|d| d.and_hms_opt(p(10_000, 100), p(100, 100), p(1, 100)))
            .expect("a WallClock always holds a real time")
    }

    /// The wall clock of the instant `now` in `tz`.
    pub fn now_in(tz: OperationTz) -> Self {
        Self::from_naive(chrono::Utc::now().with_timezone(&tz.0).naive_local())
    }

    /// The operation-local calendar day `YYYYmmdd`, the key of daily limits.
    pub fn day(self) -> i64 {
        self.0 / 1_000_000
    }

    /// Writes `YYYY-mm-dd HH:ii:ss`.
    pub fn display(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            v / 10_000_000_000,
            (v / 100_000_000) % 100,
            (v / 1_000_000) % 100,
            (v / 10_000) % 100,
            (v / 100) % 100,
            v % 100
        )
    }
}

/// A report window: both bounds inclusive, wall-clock, `ini <= end` (the fields are private
/// so no window can be built that breaks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    ini: WallClock,
    end: WallClock,
}

/// Why a window was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("invalid date format")]
    BadFormat,
    #[error("date_ini after date_end")]
    Reversed,
    #[error("window longer than the limit")]
    TooLong,
}

impl Window {
    /// Parses `date_ini` and `date_end` (`YYYYmmddHHiiss`) and checks order and length.
    /// The length is measured on the wall-clock values, as the contract says.
    pub fn parse(ini: &str, end: &str, max_days: u32) -> Result<Self, WindowError> {
        let ini = WallClock::parse_compact(ini).map_err(|_| WindowError::BadFormat)?;
        let end = WallClock::parse_compact(end).map_err(|_| WindowError::BadFormat)?;
        if ini > end {
            return Err(WindowError::Reversed);
        }
        let span = end.to_naive() - ini.to_naive();
        if span > chrono::Duration::days(i64::from(max_days)) {
            return Err(WindowError::TooLong);
        }
        Ok(Self { ini, end })
    }

    /// The first wall-clock second of the window.
    pub fn ini(&self) -> WallClock {
        self.ini
    }

    /// The last wall-clock second of the window.
    pub fn end(&self) -> WallClock {
        self.end
    }
}

/// An operation's IANA time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationTz(pub chrono_tz::Tz);

impl OperationTz {
    pub const DEFAULT: &'static str = "America/Bogota";

    pub fn parse(s: &str) -> Result<Self, String> {
        s.parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            format!("unknown time zone {s:?} (use an IANA name such as America/Bogota)")
        })
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The wall clock at which an instant (seconds since the epoch) is displayed.
    pub fn wall_clock_of(self, instant: chrono::DateTime<chrono::FixedOffset>) -> WallClock {
        WallClock::from_naive(instant.with_timezone(&self.0).naive_local())
    }

    /// The instant of a wall clock; the earlier one in a fold, the instant just after a gap.
    pub fn instant_of(self, wc: WallClock) -> chrono::DateTime<chrono::Utc> {
        let naive = wc.to_naive();
        match self.0.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.to_utc(),
            chrono::LocalResult::None => {
                // Inside a spring-forward gap: the first instant after it.
                let mut probe = naive;
                loop {
                    probe += chrono::Duration::minutes(15);
                    if let Some(t) = self.0.from_local_datetime(&probe).earliest() {
                        break t.to_utc();
                    }
                }
            }
        }
    }
}

/// An operation's name: 1 to 100 characters, no control characters, not blank at the edges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationName(String);

impl OperationName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().count() > 100 {
            return Err("an operation name has 1 to 100 characters".into());
        }
        if s.trim() != s || s.chars().any(char::is_control) {
            return Err(
                "an operation name has no control characters nor blanks at its edges".into(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads as the name's text (`&op.name` where a `&str` is wanted).
impl std::ops::Deref for OperationName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Report,
    Ingest,
    /// Signs in to the web console (`/console/`); reads no `/api/v2/` endpoint.
    Console,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "report" => Ok(Self::Report),
            "ingest" => Ok(Self::Ingest),
            "console" => Ok(Self::Console),
            _ => Err(format!(
                "unknown scope {s:?} (use report, ingest or console)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Ingest => "ingest",
            Self::Console => "console",
        }
    }
}

/// The prefix of every token voxtrail issues; it makes leaked tokens easy to scan for.
pub const TOKEN_PREFIX: &str = "vxt_";
const TOKEN_SECRET_BYTES: usize = 32;

/// A token secret as presented by a client. Only its hash is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(***)")
    }
}

impl TokenSecret {
    /// A fresh random token: 256 bits from the operating system's generator.
    pub fn generate() -> Self {
        use base64::Engine as _;
        let mut bytes = [0u8; TOKEN_SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self(format!("{TOKEN_PREFIX}{enc}"))
    }

    /// Accepts only the shape voxtrail issues; anything else cannot be a valid token.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(TOKEN_PREFIX)?;
        let ok = rest.len() == 43
            && rest
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

/// SHA-256 of a token secret. Tokens carry 256 random bits, so a fast hash is enough: there
/// is nothing to brute-force.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// Constant-time comparison, so response timing tells nothing about a stored hash.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        other.len() == 32 && bool::from(self.0.ct_eq(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compact_dates_reject_impossible_times() {
        for bad in [
            "20260230000000",
            "20261001240000",
            "20261001236000",
            "20261001235960",
            "2026100108150",
            "202610010815000",
            "2026100108150a",
            "+2026100108150",
            "２０２６１００１０８１５００",
            "",
            "20261301000000",
            "20260000000000",
        ] {
            assert!(WallClock::parse_compact(bad).is_err(), "{bad}");
        }
        let wc = WallClock::parse_compact("20240229235959").unwrap();
        assert_eq!(wc.to_string(), "2024-02-29 23:59:59");
    }

    #[test]
    fn window_limits() {
        assert_eq!(
            Window::parse("20261002000000", "20261001000000", 31),
            Err(WindowError::Reversed)
        );
        assert!(Window::parse("20261001000000", "20261101000000", 31).is_ok());
        assert_eq!(
            Window::parse("20261001000000", "20261101000001", 31),
            Err(WindowError::TooLong)
        );
    }

    #[test]
    fn a_window_shows_the_bounds_it_was_parsed_from() {
        let w = Window::parse("20261001000000", "20261001000000", 31).unwrap();
        assert_eq!(w.ini(), w.end(), "a one-second window");
        let w = Window::parse("20261001080000", "20261031235959", 31).unwrap();
        assert_eq!(
            (w.ini().as_i64(), w.end().as_i64()),
            (20_261_001_080_000, 20_261_031_235_959)
        );
    }

    #[test]
    fn an_operation_name_reads_as_its_text() {
        let n = OperationName::parse("Ventas Norte").unwrap();
        assert_eq!(
            (&*n, n.to_string().as_str()),
            ("Ventas Norte", "Ventas Norte")
        );
        assert!(n.starts_with("Ventas"));
    }

    #[test]
    fn tokens_round_trip_and_reject_other_shapes() {
        let t = TokenSecret::generate();
        assert!(TokenSecret::parse(t.expose()).is_some());
        assert!(TokenSecret::parse("vxt_short").is_none());
        assert!(TokenSecret::parse(&format!("{}é", &t.expose()[..t.expose().len() - 1])).is_none());
        assert!(t.hash().ct_eq(&t.hash().0));
        assert!(!t.hash().ct_eq(&[0u8; 32]));
    }

    #[test]
    fn gap_instant_is_after_the_gap() {
        let tz = OperationTz::parse("America/New_York").unwrap();
        let wc = WallClock::parse_compact("20260308023000").unwrap();
        let t = tz.instant_of(wc);
        assert_eq!(t.to_rfc3339(), "2026-03-08T07:00:00+00:00");
    }

    proptest! {
        #[test]
        fn compact_parser_never_panics(s in "\\PC{0,20}") {
            let _ = WallClock::parse_compact(&s);
            let _ = WallClock::parse_display(&s);
        }

        #[test]
        fn valid_times_round_trip(y in 1970i32..2100, mo in 1u32..=12, d in 1u32..=28,
                                  h in 0u32..24, mi in 0u32..60, s in 0u32..60) {
            let wc = WallClock::from_parts(y, mo, d, h, mi, s).unwrap();
            let compact = format!("{:014}", wc.as_i64());
            prop_assert_eq!(WallClock::parse_compact(&compact).unwrap(), wc);
            prop_assert_eq!(WallClock::parse_display(&wc.to_string()).unwrap(), wc);
            prop_assert_eq!(WallClock::from_naive(wc.to_naive()), wc);
        }

        #[test]
        fn near_valid_digit_strings_parse_iff_chrono_agrees(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, sec in 0u32..60,
        ) {
            // Seconds stop at 59: chrono accepts ":60" as a leap second, the contract does not.
            let s = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}");
            let ours = WallClock::parse_compact(&s).is_ok();
            let chrono = NaiveDateTime::parse_from_str(&s, "%Y%m%d%H%M%S").is_ok();
            prop_assert_eq!(ours, chrono, "{}", s);
        }
    }
}

/// One validated interaction, ready to store: its key, its wall-clock time and its `chat_12`
/// JSON object, serialised once at ingestion and served as stored bytes ever after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub conn_id: String,
    pub date: WallClock,
    pub json: Vec<u8>,
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: i64,
    pub name: OperationName,
    pub tz: OperationTz,
    pub licenses: u32,
}

/// A token as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub operation: Operation,
    pub scope: Scope,
    pub description: String,
    /// The token's own daily limit; `None` means licenses × the configured uses per license.
    pub daily_limit: Option<u64>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl Token {
    pub fn effective_daily_limit(&self, per_license: u64) -> u64 {
        self.daily_limit
            .unwrap_or(u64::from(self.operation.licenses) * per_license)
    }
}
