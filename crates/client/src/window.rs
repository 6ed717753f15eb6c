//! Wall-clock windows: `YYYYmmddHHiiss` bounds, both inclusive, at one-second resolution.
//!
//! Owns [`Window`], the split of a range into windows of bounded length and the split of one
//! window into halves. Bounds are the operation's wall-clock times (no time zone, no DST
//! arithmetic), as the API compares them. Knows nothing of HTTP.

use std::fmt;

use chrono::{Duration, NaiveDateTime};

/// The `YYYYmmddHHiiss` format of `date_ini` / `date_end`.
pub const API_FORMAT: &str = voxtrail_wire::wall_clock::COMPACT_FORMAT;

/// The longest window the API accepts.
pub const MAX_WINDOW_DAYS: i64 = 31;

/// Parses `YYYYmmddHHiiss` (exactly 14 digits, a real calendar time): the wire's parser, the
/// one the server checks `date_ini` / `date_end` with.
///
/// ```
/// let t = voxtrail_client::parse_wall_clock("20261001081500").unwrap();
/// assert_eq!(t.to_string(), "2026-10-01 08:15:00");
/// assert!(voxtrail_client::parse_wall_clock("2026-10-01").is_err());
/// ```
pub fn parse_wall_clock(s: &str) -> Result<NaiveDateTime, String> {
    voxtrail_wire::wall_clock::parse_compact(s).map_err(|e| e.to_string())
}

/// Formats a wall-clock time as `YYYYmmddHHiiss`.
pub fn format_wall_clock(t: NaiveDateTime) -> String {
    voxtrail_wire::wall_clock::format_compact(t)
}

/// A closed range of wall-clock seconds: `ini..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub ini: NaiveDateTime,
    pub end: NaiveDateTime,
}

impl Window {
    /// A window; `None` when `ini` is after `end`.
    pub fn new(ini: NaiveDateTime, end: NaiveDateTime) -> Option<Self> {
        (ini <= end).then_some(Self { ini, end })
    }

    /// Splits the range into consecutive windows of at most `max` each (and never more than
    /// the API's 31 days), covering every second exactly once.
    ///
    /// ```
    /// use voxtrail_client::{parse_wall_clock as p, Window};
    /// let w = Window::new(p("20260101000000").unwrap(), p("20260301000000").unwrap()).unwrap();
    /// let parts = w.split(chrono::Duration::days(31));
    /// assert_eq!(parts.len(), 2);
    /// assert_eq!(parts[0].to_string(), "20260101000000..20260201000000");
    /// assert_eq!(parts[1].to_string(), "20260201000001..20260301000000");
    /// ```
    pub fn split(self, max: Duration) -> Vec<Window> {
        let max = max
            .min(Duration::days(MAX_WINDOW_DAYS))
            .max(Duration::seconds(0));
        let mut out = Vec::new();
        let mut ini = self.ini;
        loop {
            let end = (ini + max).min(self.end);
            out.push(Window { ini, end });
            if end >= self.end {
                return out;
            }
            ini = end + Duration::seconds(1);
        }
    }

    /// The two halves of the window, or `None` for a one-second window.
    ///
    /// ```
    /// use voxtrail_client::{parse_wall_clock as p, Window};
    /// let w = Window::new(p("20260101000000").unwrap(), p("20260101000003").unwrap()).unwrap();
    /// let (a, b) = w.halves().unwrap();
    /// assert_eq!((a.to_string(), b.to_string()),
    ///     ("20260101000000..20260101000001".into(), "20260101000002..20260101000003".into()));
    /// let one = Window::new(a.ini, a.ini).unwrap();
    /// assert!(one.halves().is_none());
    /// ```
    pub fn halves(self) -> Option<(Window, Window)> {
        let secs = (self.end - self.ini).num_seconds();
        if secs < 1 {
            return None;
        }
        let mid = self.ini + Duration::seconds((secs - 1) / 2);
        Some((
            Window {
                ini: self.ini,
                end: mid,
            },
            Window {
                ini: mid + Duration::seconds(1),
                end: self.end,
            },
        ))
    }

    /// `date_ini` as the API wants it.
    pub fn date_ini(&self) -> String {
        format_wall_clock(self.ini)
    }

    /// `date_end` as the API wants it.
    pub fn date_end(&self) -> String {
        format_wall_clock(self.end)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.date_ini(), self.date_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NaiveDateTime {
        parse_wall_clock(s).unwrap()
    }

    #[test]
    fn split_covers_every_second_once() {
        let w = Window::new(p("20260101000000"), p("20260101000100")).unwrap();
        for max in [0, 1, 7, 59, 60, 61, 1000] {
            let parts = w.split(Duration::seconds(max));
            assert_eq!(parts[0].ini, w.ini);
            assert_eq!(parts.last().unwrap().end, w.end);
            for pair in parts.windows(2) {
                assert_eq!(pair[0].end + Duration::seconds(1), pair[1].ini);
            }
            assert!(
                parts
                    .iter()
                    .all(|x| x.end - x.ini <= Duration::seconds(max))
            );
        }
    }

    #[test]
    fn halves_cover_the_window() {
        let w = Window::new(p("20260101000000"), p("20260101000010")).unwrap();
        let (a, b) = w.halves().unwrap();
        assert_eq!(a.ini, w.ini);
        assert_eq!(b.end, w.end);
        assert_eq!(a.end + Duration::seconds(1), b.ini);
        let two = Window::new(p("20260101000000"), p("20260101000001")).unwrap();
        let (a, b) = two.halves().unwrap();
        assert_eq!(a.ini, a.end);
        assert_eq!(b.ini, b.end);
    }
}
