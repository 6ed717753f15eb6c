//! Quota headers (docs/api.md, "Quota headers"): the IETF RateLimit fields on every answer of an
//! admitted report or `token_info` request and on its `403` limit refusals, and `Retry-After` on
//! those refusals.
//!
//! `RateLimit-Policy: "daily";q=LIMIT;w=86400` and `RateLimit: "daily";r=REMAINING;t=SECONDS`,
//! where `t` counts the seconds until the next midnight of the operation's time zone (the
//! moment the daily count starts again).

use axum::http::{HeaderMap, HeaderValue};
use chrono::{Days, TimeZone as _};

use crate::domain::OperationTz;

/// A token's daily quota as one answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Uses allowed per operation-local day.
    pub limit: u64,
    /// Uses left today after this request.
    pub remaining: u64,
    /// Seconds until the count starts again (the operation's next midnight).
    pub reset_secs: u64,
}

impl Quota {
    /// The quota of a token with `limit` uses a day of which `used` are spent, now.
    pub fn now(limit: u64, used: u64, tz: OperationTz) -> Self {
        Self {
            limit,
            remaining: limit.saturating_sub(used),
            reset_secs: seconds_to_midnight(tz, chrono::Utc::now()),
        }
    }

    /// Writes `RateLimit-Policy` and `RateLimit`.
    pub fn apply(&self, h: &mut HeaderMap) {
        let policy = format!("\"daily\";q={};w=86400", self.limit);
        let current = format!("\"daily\";r={};t={}", self.remaining, self.reset_secs);
        if let Ok(v) = HeaderValue::from_str(&policy) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&current) {
            h.insert("ratelimit", v);
        }
    }
}

/// Whole seconds (at least 1) from `now` to the next local midnight of `tz`. A midnight that a
/// daylight-saving change skips is the first instant after the gap.
pub fn seconds_to_midnight(tz: OperationTz, now: chrono::DateTime<chrono::Utc>) -> u64 {
    let local = now.with_timezone(&tz.0).date_naive();
    let Some(next_day) = local.checked_add_days(Days::new(1)) else {
        return 86_400;
    };
    let midnight = next_day.and_hms_opt(0, 0, 0).expect("midnight exists");
    let at = match tz.0.from_local_datetime(&midnight).earliest() {
        Some(t) => t.to_utc(),
        None => tz.instant_of(crate::domain::WallClock::from_naive(midnight)),
    };
    let secs = ((at - now).num_milliseconds().max(0) as u64).div_ceil(1000);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn seconds_count_to_the_operations_midnight() {
        let bogota = OperationTz::parse("America/Bogota").unwrap();
        // 23:00 in Bogotá (UTC-5) is 04:00 UTC the next day: one hour left.
        assert_eq!(
            seconds_to_midnight(bogota, utc("2026-03-02T04:00:00Z")),
            3_600
        );
        let utc_tz = OperationTz::parse("UTC").unwrap();
        assert_eq!(
            seconds_to_midnight(utc_tz, utc("2026-03-02T00:00:00Z")),
            86_400
        );
        assert_eq!(
            seconds_to_midnight(utc_tz, utc("2026-03-02T23:59:59.5Z")),
            1
        );
    }

    #[test]
    fn a_skipped_midnight_resets_after_the_gap() {
        // Santiago skipped 2022-09-11 00:00 (clocks went from 00:00 to 01:00, UTC-4 → UTC-3).
        let santiago = OperationTz::parse("America/Santiago").unwrap();
        // 2022-09-10 23:00 local (UTC-4) = 2022-09-11 03:00 UTC; the next day starts at 01:00
        // local = 04:00 UTC.
        assert_eq!(
            seconds_to_midnight(santiago, utc("2022-09-11T03:00:00Z")),
            3_600
        );
    }

    #[test]
    fn headers_have_the_rfc_shape() {
        let mut h = HeaderMap::new();
        Quota {
            limit: 10,
            remaining: 0,
            reset_secs: 42,
        }
        .apply(&mut h);
        assert_eq!(h["ratelimit-policy"], "\"daily\";q=10;w=86400");
        assert_eq!(h["ratelimit"], "\"daily\";r=0;t=42");
    }
}
