//! Window and per-hour digests from the per-row SHA-256 stored at ingestion (the SHA-256 of a
//! row's stored JSON bytes, which are exactly the object a report serves): a row count and the
//! byte-wise XOR of the row hashes, per hour of wall clock. The ETag of a report answer and the
//! `hours` endpoint are both made from them (docs/api.md, "For integrators").
//!
//! Each backend reads `(local_ts, row_hash)` of a window in index order from a covering index
//! (`sqlite/digest.rs`, `postgres/digest.rs`); the folding is here, shared.

use sha2::{Digest as _, Sha256};

use super::{Store, StoreResult};
use crate::domain::Window;

/// The SHA-256 of a row's stored JSON bytes, as stored beside it.
pub fn row_hash(json: &[u8]) -> [u8; 32] {
    Sha256::digest(json).into()
}

/// XORs a row hash into `acc` (a hash of another length is XORed over its first 32 bytes).
pub fn xor_into(acc: &mut [u8; 32], hash: &[u8]) {
    for (x, b) in acc.iter_mut().zip(hash) {
        *x ^= b;
    }
}

/// The rows of one wall-clock hour of a window: how many and the XOR of their hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourDigest {
    /// `YYYYmmddHH` of the operation's wall clock.
    pub hour: i64,
    pub rows: u64,
    pub xor: [u8; 32],
}

impl HourDigest {
    /// `YYYY-mm-dd HH`.
    pub fn hour_text(&self) -> String {
        let h = self.hour;
        format!(
            "{:04}-{:02}-{:02} {:02}",
            h / 1_000_000,
            h / 10_000 % 100,
            h / 100 % 100,
            h % 100
        )
    }

    /// The digest in lower-case hex.
    pub fn digest_hex(&self) -> String {
        hex(&self.xor)
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Folds `(local_ts, hash)` pairs in `local_ts` order into hours.
#[derive(Debug, Default)]
pub(crate) struct HourFolder {
    hours: Vec<HourDigest>,
}

impl HourFolder {
    pub(crate) fn add(&mut self, local_ts: i64, hash: &[u8]) {
        let hour = local_ts / 10_000;
        if self.hours.last().is_none_or(|h| h.hour != hour) {
            self.hours.push(HourDigest {
                hour,
                rows: 0,
                xor: [0; 32],
            });
        }
        let h = self.hours.last_mut().expect("pushed above");
        h.rows += 1;
        xor_into(&mut h.xor, hash);
    }

    pub(crate) fn finish(self) -> Vec<HourDigest> {
        self.hours
    }
}

/// Row count and XOR of every row hash of a window: what its ETag is made of.
pub fn window_of(hours: &[HourDigest]) -> (u64, [u8; 32]) {
    hours.iter().fold((0, [0; 32]), |(n, mut x), h| {
        for (a, b) in x.iter_mut().zip(h.xor) {
            *a ^= b;
        }
        (n + h.rows, x)
    })
}

impl Store {
    /// The per-hour digests of a window of an operation, oldest hour first; hours without
    /// rows are absent. Read from one snapshot by an index-only scan.
    pub async fn hour_digests(
        &self,
        operation_id: i64,
        window: Window,
    ) -> StoreResult<Vec<HourDigest>> {
        let (ini, end) = (window.ini().as_i64(), window.end().as_i64());
        self.blocking(move |s| match s {
            Store::Sqlite(s) => s.hour_digests(operation_id, ini, end),
            Store::Postgres(s) => s.hour_digests(operation_id, ini, end),
        })
        .await
    }

    /// Row count and XOR of every row hash of a window (its ETag's inputs), from one snapshot:
    /// on SQLite one index-only scan on the report reader pool (a conditional poll's only read).
    pub async fn window_digest(
        &self,
        operation_id: i64,
        window: Window,
    ) -> StoreResult<(u64, [u8; 32])> {
        let (ini, end) = (window.ini().as_i64(), window.end().as_i64());
        self.read_quick(move |s| match s {
            Store::Sqlite(s) => s.window_digest(operation_id, ini, end),
            Store::Postgres(s) => Ok(window_of(&s.hour_digests(operation_id, ini, end)?)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_fold_in_order_and_xor_cancels_pairs() {
        let a = row_hash(b"{\"a\":1}");
        let b = row_hash(b"{\"b\":2}");
        let mut f = HourFolder::default();
        f.add(20261001081500, &a);
        f.add(20261001081600, &b);
        f.add(20261001090000, &a);
        let hours = f.finish();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].hour_text(), "2026-10-01 08");
        assert_eq!(hours[0].rows, 2);
        let mut ab = a;
        for (x, y) in ab.iter_mut().zip(b) {
            *x ^= y;
        }
        assert_eq!(hours[0].xor, ab);
        assert_eq!(hours[1].xor, a);
        let (n, x) = window_of(&hours);
        assert_eq!(n, 3);
        assert_eq!(x, b, "a XOR a cancels");
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
