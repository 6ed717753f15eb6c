//! The change feed's storage (docs/api.md, "Change feed"): every row carries a feed position,
//! assigned when it is stored and assigned anew when it changes; positions of an operation
//! become visible in increasing order, so a reader that asks for "positions after the last one
//! I saw" never skips a row.
//!
//! - SQLite has one writer: a position is the operation's highest plus one, given inside the
//!   write transaction (`sqlite/feed.rs`).
//! - PostgreSQL has many writers (replicas, imports, mirrors). Positions come from a sequence,
//!   and each writing transaction first takes a transaction-level advisory lock per operation
//!   (`postgres/feed.rs`), held until it commits: positions are handed out in commit order, and
//!   a row visible at position `p` means every lower position of the operation is committed
//!   already. A naive `seq > cursor` over a plain sequence loses rows whenever a transaction
//!   that drew a lower number commits after one that drew a higher number.
//!
//! A writer that changes a stored row (mirrors replace rows in place) must give it a new
//! position the same way, inside its own write transaction: on SQLite
//! `sqlite::feed::bump_feed_position`; on PostgreSQL `postgres::feed::lock_feed` first, then
//! `SET feed_pos = nextval('interactions_feed_pos')`.

use super::{Store, StoreResult};

/// Most rows one feed page may hold.
pub const MAX_FEED_LIMIT: u32 = voxtrail_wire::feed::MAX_FEED_LIMIT;
/// Rows of a feed page when the client does not say.
pub const DEFAULT_FEED_LIMIT: u32 = voxtrail_wire::feed::DEFAULT_FEED_LIMIT;

/// One page of the feed: rows in position order, and the position of the last one (or the
/// cursor given, when there are none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub rows: Vec<Vec<u8>>,
    pub last: i64,
    /// The page ended at its byte budget before its row limit: more rows may follow at once.
    pub more: bool,
}

impl FeedPage {
    pub(crate) fn empty(after: i64) -> Self {
        Self {
            rows: Vec::new(),
            last: after,
            more: false,
        }
    }

    /// Adds a row; `false` once the page holds `max_bytes` of rows or more (stop reading:
    /// `more` is then set, as rows may follow).
    pub(crate) fn push(
        &mut self,
        position: i64,
        row: Vec<u8>,
        bytes: &mut usize,
        max_bytes: usize,
    ) -> bool {
        *bytes += row.len();
        self.last = position;
        self.rows.push(row);
        if *bytes >= max_bytes {
            self.more = true;
            return false;
        }
        true
    }
}

/// A feed cursor: the operation it belongs to and the position of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub operation_id: i64,
    pub position: i64,
}

impl Cursor {
    /// The start of an operation's feed.
    pub fn start(operation_id: i64) -> Self {
        Self {
            operation_id,
            position: 0,
        }
    }

    /// `OPERATION.POSITION`, both decimal without sign or leading zeros.
    pub fn parse(text: &str) -> Option<Self> {
        let (op, pos) = text.split_once('.')?;
        let num = |s: &str| -> Option<i64> {
            let ok = !s.is_empty()
                && s.len() <= 18
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if ok { s.parse().ok() } else { None }
        };
        Some(Self {
            operation_id: num(op)?,
            position: num(pos)?,
        })
    }

    pub fn text(&self) -> String {
        format!("{}.{}", self.operation_id, self.position)
    }
}

impl Store {
    /// The rows of an operation whose feed position is after `after`, at most `limit`, in
    /// position order, ending early once they hold `max_bytes` (at least one row: a row is
    /// never split); `None` when `after` is beyond every position the operation ever had (a
    /// cursor this server never gave out).
    pub async fn feed(
        &self,
        operation_id: i64,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> StoreResult<Option<FeedPage>> {
        self.blocking(move |s| match s {
            Store::Sqlite(s) => s.feed(operation_id, after, limit, max_bytes),
            Store::Postgres(s) => s.feed(operation_id, after, limit, max_bytes),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor {
            operation_id: 3,
            position: 1234,
        };
        assert_eq!(Cursor::parse(&c.text()), Some(c));
        assert_eq!(Cursor::parse("3.0"), Some(Cursor::start(3)));
        for bad in [
            "",
            ".",
            "3",
            "3.",
            ".4",
            "-3.4",
            "3.-4",
            "03.4",
            "3.04",
            "3.4.5",
            "a.b",
            "3 .4",
            "3.4 ",
            "99999999999999999999.1",
            "+3.4",
            "３.４",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
