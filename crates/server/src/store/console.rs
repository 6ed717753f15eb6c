//! What the web console reads and writes: sign-in sessions, the overview's counts, the list of
//! interactions (filters, word search, keyset pages), one interaction, and the tokens' use.
//!
//! Every method takes the operation id: a console session sees one operation only. Counts use
//! the same window rule as the report (`local_ts BETWEEN ini AND end` on wall-clock integers), so
//! the overview's numbers equal what `chat_12` answers for the same range (docs/api.md,
//! "The console"). The backends are in `sqlite/console.rs` and `postgres/console.rs`.

use super::{Store, StoreResult};
use crate::domain::{Token, Window};

/// How long a console session lives at most, in seconds (12 hours).
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

/// Counts of one overview: per time bucket, per agent and per typification code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    pub total: u64,
    /// (bucket key: `YYYYmmdd` per day or `YYYYmmddHH` per hour, count), buckets with rows
    /// only, ascending.
    pub buckets: Vec<(i64, u64)>,
    /// (agent_id, agent_name, count), most interactions first.
    pub agents: Vec<(String, String, u64)>,
    /// (cod_act, description_cod_act, count), most interactions first.
    pub codes: Vec<(String, String, u64)>,
}

/// Buckets of the overview chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// The divisor that turns `YYYYmmddHHiiss` into the bucket key.
    pub(crate) fn divisor(self) -> i64 {
        match self {
            Self::Hour => 10_000,
            Self::Day => 1_000_000,
        }
    }

    /// The divisor that turns an hour key (`YYYYmmddHH`, of the counts table) into the bucket
    /// key.
    pub(crate) fn hour_divisor(self) -> i64 {
        match self {
            Self::Hour => 1,
            Self::Day => 100,
        }
    }
}

/// How an overview reads a window: the whole local hours inside it from the counts table
/// (`console_counts`, filled by the indexer), and every other row of the window by a scan —
/// the rows of the partial hours at its two ends, and the rows of the whole hours that the
/// indexer has not counted yet. The three row ranges and the counted rows are disjoint and
/// together are exactly the window's rows, so the overview equals what §2 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverviewPlan {
    /// Hour keys (`YYYYmmddHH`) read from the counts table, inclusive; empty when lo > hi.
    pub hours: (i64, i64),
    /// The same hours as `local_ts` bounds (the scan of rows not counted yet).
    pub whole: (i64, i64),
    /// The partial hours at each end, as `local_ts` bounds (empty when lo > hi).
    pub head: (i64, i64),
    pub tail: (i64, i64),
}

impl OverviewPlan {
    pub(crate) fn of(window: Window) -> Self {
        const EMPTY: (i64, i64) = (1, 0);
        let (ini, end) = (window.ini().as_i64(), window.end().as_i64());
        // Hour h covers h·10⁴ + 0000 … h·10⁴ + 5959 (`YYYYmmddHH` then `iiss`).
        let lo = (ini + 9_999).div_euclid(10_000);
        let hi = (end - 5_959).div_euclid(10_000);
        if lo > hi {
            return Self {
                hours: EMPTY,
                whole: EMPTY,
                head: (ini, end),
                tail: EMPTY,
            };
        }
        Self {
            hours: (lo, hi),
            whole: (lo * 10_000, hi * 10_000 + 5_959),
            head: (ini, lo * 10_000 - 1),
            tail: (hi * 10_000 + 5_960, end),
        }
    }
}

/// A page of the interactions list: newest first, strictly before `before` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub operation_id: i64,
    pub window: Window,
    /// Exact `agent_id`.
    pub agent: Option<String>,
    /// A case-insensitive part of `to`.
    pub recipient: Option<String>,
    /// Words that must all appear in the subject or the body (whole words, any case). Each is
    /// a run of letters and digits ([`search_words`]); a word with anything else matches no row.
    pub words: Vec<String>,
    /// Keyset cursor `(local_ts, seq)` of the last row of the previous page.
    pub before: Option<(i64, i64)>,
    pub limit: u32,
}

/// One stored row as the console reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub seq: i64,
    pub local_ts: i64,
    /// The row's `chat_12` JSON object, as stored.
    pub json: Vec<u8>,
}

/// A token of the operation with its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub token: Token,
    /// Uses counted today (operation-local day), as last persisted.
    pub used_today: u64,
    /// The last operation-local day (`YYYYmmdd`) with at least one counted use.
    pub last_day_used: Option<i64>,
}

impl Store {
    /// Stores a new session (its id's hash only) for a console token, and forgets expired
    /// sessions.
    pub fn create_console_session(
        &self,
        id_hash: &[u8; 32],
        token_id: i64,
        now: i64,
    ) -> StoreResult<()> {
        let expires = now + SESSION_TTL_SECS;
        match self {
            Self::Sqlite(s) => s.create_console_session(id_hash, token_id, now, expires),
            Self::Postgres(s) => s.create_console_session(id_hash, token_id, now, expires),
        }
    }

    /// The console token of a live session: not expired, its token neither revoked nor of
    /// another scope. Read from the database on every call, so revocation ends it at once.
    pub fn console_session(&self, id_hash: &[u8; 32], now: i64) -> StoreResult<Option<Token>> {
        let found = match self {
            Self::Sqlite(s) => s.console_session(id_hash, now)?,
            Self::Postgres(s) => s.console_session(id_hash, now)?,
        };
        Ok(found.filter(|t| t.revoked_at.is_none() && t.scope == crate::domain::Scope::Console))
    }

    /// Ends a session (sign-out). Unknown ids are ignored.
    pub fn delete_console_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.delete_console_session(id_hash),
            Self::Postgres(s) => s.delete_console_session(id_hash),
        }
    }

    /// The overview's counts for a window, from one snapshot.
    pub fn console_overview(
        &self,
        operation_id: i64,
        window: Window,
        bucket: Bucket,
    ) -> StoreResult<Overview> {
        let rows = match self {
            Self::Sqlite(s) => s.console_overview(operation_id, window, bucket)?,
            Self::Postgres(s) => s.console_overview(operation_id, window, bucket)?,
        };
        Ok(fold_overview(rows))
    }

    /// One page of interactions, newest first (`ORDER BY local_ts DESC, seq DESC`).
    pub fn console_list(&self, q: &ListQuery) -> StoreResult<Vec<StoredRow>> {
        match self {
            Self::Sqlite(s) => s.console_list(q),
            Self::Postgres(s) => s.console_list(q),
        }
    }

    /// The console's indexer: indexes for word search and counts for the overview the next
    /// rows stored (or replaced, on PostgreSQL) since the last batch — at most `max_rows` per
    /// index (PostgreSQL: per operation), each batch one write transaction that advances its
    /// watermark. Returns the most rows one index took; 0 when caught up. The server calls it
    /// on a timer (`http/mod.rs`); reads stay exact whatever its progress.
    pub fn index_search_batch(&self, max_rows: i64) -> StoreResult<u64> {
        match self {
            Self::Sqlite(s) => Ok(s
                .index_search_batch(max_rows)?
                .max(s.count_batch(max_rows)?)),
            Self::Postgres(s) => s.index_console_batch(max_rows),
        }
    }

    /// One interaction of the operation by its `conn_id`.
    pub fn console_interaction(
        &self,
        operation_id: i64,
        conn_id: &str,
    ) -> StoreResult<Option<StoredRow>> {
        match self {
            Self::Sqlite(s) => s.console_interaction(operation_id, conn_id),
            Self::Postgres(s) => s.console_interaction(operation_id, conn_id),
        }
    }

    /// The operation's tokens with today's use and the last day used.
    pub fn console_tokens(&self, operation_id: i64, today: i64) -> StoreResult<Vec<TokenUse>> {
        let tokens: Vec<Token> = self
            .list_tokens()?
            .into_iter()
            .filter(|t| t.operation.id == operation_id)
            .collect();
        tokens
            .into_iter()
            .map(|token| {
                let used_today = self.token_usage(token.id, today)?;
                let last_day_used = match self {
                    Self::Sqlite(s) => s.last_day_used(token.id)?,
                    Self::Postgres(s) => s.last_day_used(token.id)?,
                };
                Ok(TokenUse {
                    token,
                    used_today,
                    last_day_used,
                })
            })
            .collect()
    }
}

/// Kind of an overview row: a count per agent (`agent_id`, `agent_name`).
pub(crate) const KIND_AGENT: i64 = 0;
/// Kind of an overview row: a count per typification (`cod_act`, `description_cod_act`).
pub(crate) const KIND_CODE: i64 = 1;

/// One grouped row of the overview query: kind ([`KIND_AGENT`] or [`KIND_CODE`]), bucket, key,
/// label, count. Every row of the window is counted once per kind; the same (kind, bucket, key,
/// label) may come several times (counted and scanned parts), and counts are summed.
pub(crate) type OverviewRow = (i64, i64, String, String, i64);

fn fold_overview(rows: Vec<OverviewRow>) -> Overview {
    use std::collections::BTreeMap;
    let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
    let mut agents: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut codes: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (kind, bucket, key, label, n) in rows {
        match kind {
            KIND_AGENT => {
                *buckets.entry(bucket).or_default() += n;
                *agents.entry((key, label)).or_default() += n;
            }
            KIND_CODE => *codes.entry((key, label)).or_default() += n,
            _ => {}
        }
    }
    // A count can fall to 0 when a mirror replaced a counted row: such entries are not shown.
    let ranked = |m: BTreeMap<(String, String), i64>| {
        let mut v: Vec<(String, String, u64)> = m
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((a, b), n)| (a, b, n as u64))
            .collect();
        v.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)));
        v
    };
    let buckets: Vec<(i64, u64)> = buckets
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(b, n)| (b, n as u64))
        .collect();
    Overview {
        total: buckets.iter().map(|b| b.1).sum(),
        buckets,
        agents: ranked(agents),
        codes: ranked(codes),
    }
}

/// Turns a user's search text into words: letters and digits runs, at most 8 words of at most
/// 64 characters each (longer input is ignored, never an error).
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .take(8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_keep_letters_and_digits_only() {
        assert_eq!(
            search_words(r#"Factura "OR" 12*; DROP-- ñandú <script>"#),
            ["factura", "or", "12", "drop", "ñandú", "script"]
        );
        assert!(search_words("\"*()^:-").is_empty());
        assert_eq!(search_words(&"a ".repeat(100)).len(), 8);
    }

    #[test]
    fn overview_folds_groups() {
        let row = |kind, b, k: &str, l: &str, n| (kind, b, k.to_owned(), l.to_owned(), n);
        let o = fold_overview(vec![
            row(KIND_AGENT, 20261001, "a1", "Ana", 2),
            row(KIND_AGENT, 20261001, "a2", "Bo", 3),
            row(KIND_AGENT, 20261002, "a1", "Ana", 4),
            row(KIND_AGENT, 20261003, "a3", "Cy", 1),
            row(KIND_AGENT, 20261003, "a3", "Cy", -1),
            row(KIND_CODE, 20261001, "C1", "Sale", 5),
            row(KIND_CODE, 20261002, "C2", "Lost", 4),
        ]);
        assert_eq!(o.total, 9);
        assert_eq!(o.buckets, vec![(20261001, 5), (20261002, 4)]);
        assert_eq!(o.agents.len(), 2, "a count of 0 is not shown");
        assert_eq!(o.agents[0], ("a1".into(), "Ana".into(), 6));
        assert_eq!(o.codes[0], ("C1".into(), "Sale".into(), 5));
    }

    #[test]
    fn a_plan_splits_the_window_into_whole_hours_and_ends() {
        let p = |a: &str, b: &str| OverviewPlan::of(Window::parse(a, b, 31).unwrap());
        let whole = p("20261001000000", "20261031235959");
        assert_eq!(whole.hours, (2026100100, 2026103123));
        assert_eq!(whole.whole, (20261001000000, 20261031235959));
        assert!(whole.head.0 > whole.head.1 && whole.tail.0 > whole.tail.1);
        let cut = p("20261001083015", "20261002101500");
        assert_eq!(cut.hours, (2026100109, 2026100209));
        assert_eq!(cut.head, (20261001083015, 20261001089999));
        assert_eq!(cut.tail, (20261002095960, 20261002101500));
        let inside = p("20261001081000", "20261001082000");
        assert!(inside.hours.0 > inside.hours.1);
        assert_eq!(inside.head, (20261001081000, 20261001082000));
        let one = p("20261001080000", "20261001085959");
        assert_eq!(one.hours, (2026100108, 2026100108));
    }
}
