//! SQLite queries of the web console: sessions, overview counts, the interactions list (word
//! search, keyset pages) and the tokens' last use; and the word-search indexer.
//!
//! Word search is exact at all times without costing ingestion anything: `interactions_fts`
//! (FTS5) holds the rows up to the watermark `console_fts_state.indexed_upto`, filled after
//! ingestion in batches by [`SqliteStore::index_search_batch`] (the server's indexer, on a
//! timer); rows above the watermark (normally the last second's) are matched by a scan with
//! `voxtrail_has_words`, which tokenizes like FTS5's `unicode61` (docs/api.md, "The console").

use std::collections::HashSet;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::SqliteStore;
use super::admin::{TOKEN_SELECT, token_from_row};
use crate::domain::{Token, Window};
use crate::store::console::{Bucket, ListQuery, OverviewPlan, OverviewRow, StoredRow};
use crate::store::{StoreError, StoreResult};

/// `json_extract` of one field of the stored object.
fn field(name: &str) -> String {
    field_of("json", name)
}

/// `json_extract` of one field of the object in the SQL expression `json`.
fn field_of(json: &str, name: &str) -> String {
    format!("COALESCE(json_extract(CAST({json} AS TEXT), '$.{name}'), '')")
}

/// The overview's counts (`store/console.rs`, `OverviewPlan`): per operation, local hour
/// (`local_ts / 10000`), kind (0: agent id and name, 1: `cod_act` and its description), the
/// number of rows with `seq <= console_counts_state.counted_upto`. Filled by the indexer
/// ([`SqliteStore::count_batch`]); a mirror that replaces a counted row moves its count in the
/// same transaction ([`adjust_counts`]). Starts empty with the watermark at 0: a database made
/// before it is counted by the server's indexer, the overview scanning what is not counted yet.
pub(super) const COUNTS_MIGRATION: &str = "
CREATE TABLE console_counts (
    operation_id INTEGER NOT NULL,
    hour         INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    key          TEXT NOT NULL,
    label        TEXT NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (operation_id, hour, kind, key, label)
) WITHOUT ROWID;
CREATE TABLE console_counts_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    counted_upto INTEGER NOT NULL
);
INSERT INTO console_counts_state(id, counted_upto) VALUES (1, 0);
";

/// The (kind, key, label) pairs of the object in the SQL expression `json`: one `SELECT` per
/// kind, joined by `UNION ALL`, each prefixed by `cols` (other selected columns) and followed
/// by `rest` (its FROM and WHERE).
fn kinds_of(json: &str, cols: &str, rest: &str) -> String {
    format!(
        "SELECT {cols} 0 AS kind, {} AS key, {} AS label {rest}
         UNION ALL
         SELECT {cols} 1, {}, {} {rest}",
        field_of(json, "agent_id"),
        field_of(json, "agent_name"),
        field_of(json, "cod_act"),
        field_of(json, "description_cod_act"),
    )
}

/// Moves the overview's counts of one replaced row (`mirror.rs`, in its write transaction):
/// `delta` (-1 for the old object, +1 for the new one) at `local_ts`, when the row is counted
/// already (`seq <= counted_upto`; a row above the watermark is counted by the indexer later).
pub(super) fn adjust_counts(
    tx: &Connection,
    operation_id: i64,
    seq: i64,
    local_ts: i64,
    json: &[u8],
    delta: i64,
) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT INTO console_counts(operation_id, hour, kind, key, label, n)
         SELECT ?1, ?2 / 10000, kind, key, label, ?4 FROM ({})
          WHERE ?5 <= (SELECT counted_upto FROM console_counts_state WHERE id = 1)
         ON CONFLICT(operation_id, hour, kind, key, label) DO UPDATE SET n = n + excluded.n",
        kinds_of("?3", "", "")
    );
    tx.prepare_cached(&sql)?
        .execute(params![operation_id, local_ts, json, delta, seq])?;
    Ok(())
}

/// The subject or the body of the stored object as FTS5 indexes it (the `interactions_text`
/// view): NULL when the stored bytes are not JSON.
fn text_field(name: &str) -> String {
    format!(
        "CAST(CASE WHEN json_valid(CAST(json AS TEXT)) \
         THEN json_extract(CAST(json AS TEXT), '$.{name}') END AS TEXT)"
    )
}

/// Rows indexed per write transaction of the indexer.
pub const INDEX_BATCH_ROWS: i64 = 2_000;

/// Registers `voxtrail_has_words(subject, body, words)` on a connection: 1 when every word of
/// `words` (lower-case, separated by spaces) is a whole word of the subject or the body.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "voxtrail_has_words",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx: &Context<'_>| {
            let text = |i: usize| -> rusqlite::Result<String> {
                Ok(match ctx.get_raw(i) {
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => String::new(),
                })
            };
            let (subject, body, words) = (text(0)?, text(1)?, text(2)?);
            Ok(has_words(&[&subject, &body], &words))
        },
    )
}

/// Whether every word of `words` (lower-case, space-separated) is a token of one of `texts`,
/// tokens being runs of letters and digits compared in lower case: FTS5's `unicode61` tokenizer
/// with `remove_diacritics 0`, as closely as Rust's `char::is_alphanumeric` and `to_lowercase`
/// follow it.
pub(crate) fn has_words(texts: &[&str], words: &str) -> bool {
    let wanted: Vec<&str> = words.split(' ').filter(|w| !w.is_empty()).collect();
    if wanted.is_empty() {
        return true;
    }
    let mut seen: HashSet<String> = HashSet::new();
    for text in texts {
        for token in text.split(|c: char| !c.is_alphanumeric()) {
            if !token.is_empty() {
                seen.insert(token.to_lowercase());
            }
        }
    }
    wanted.iter().all(|w| seen.contains(*w))
}

/// Whether `w` is one search token: a non-empty run of letters and digits.
fn is_token(w: &str) -> bool {
    !w.is_empty() && w.chars().all(char::is_alphanumeric)
}

/// An FTS5 query in which every word is a quoted string (no operator of the user's reaches
/// FTS5's query syntax): all words must appear.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl SqliteStore {
    pub fn create_console_session(
        &self,
        id_hash: &[u8; 32],
        token_id: i64,
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        let w = self.writer();
        w.execute("DELETE FROM console_sessions WHERE expires_at <= ?1", [now])
            .map_err(StoreError::from_sqlite)?;
        w.execute(
            "INSERT INTO console_sessions(id_hash, token_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![&id_hash[..], token_id, now, expires],
        )
        .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn console_session(&self, id_hash: &[u8; 32], now: i64) -> StoreResult<Option<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(&format!(
            "{TOKEN_SELECT} JOIN console_sessions s ON s.token_id = t.id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2"
        ))?;
        let found = st
            .query_row(params![&id_hash[..], now], token_from_row)
            .optional()?;
        found.transpose()
    }

    pub fn delete_console_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        self.writer()
            .execute(
                "DELETE FROM console_sessions WHERE id_hash = ?1",
                [&id_hash[..]],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn console_overview(
        &self,
        operation_id: i64,
        window: Window,
        bucket: Bucket,
    ) -> StoreResult<Vec<OverviewRow>> {
        let plan = OverviewPlan::of(window);
        // One statement, one snapshot: the counted whole hours, and the rows the counts do not
        // hold (the partial hours at both ends; the whole hours' rows above the watermark,
        // found by the rowid range — the `+` keep the planner on it, it is short).
        let sql = format!(
            "WITH raw(local_ts, json) AS (
                 SELECT local_ts, json FROM interactions
                  WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3
                 UNION ALL
                 SELECT local_ts, json FROM interactions
                  WHERE operation_id = ?1 AND local_ts BETWEEN ?4 AND ?5
                 UNION ALL
                 SELECT local_ts, json FROM interactions
                  WHERE seq > (SELECT counted_upto FROM console_counts_state WHERE id = 1)
                    AND +operation_id = ?1 AND +local_ts BETWEEN ?6 AND ?7
             )
             SELECT kind, hour / ?8, key, label, SUM(n) FROM console_counts
              WHERE operation_id = ?1 AND hour BETWEEN ?9 AND ?10
              GROUP BY 1, 2, 3, 4
             UNION ALL
             SELECT kind, b, key, label, COUNT(*) FROM ({})
              GROUP BY 1, 2, 3, 4",
            kinds_of("json", "local_ts / ?11 AS b,", "FROM raw")
        );
        let r = self.reader()?;
        let mut st = r.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                operation_id,
                plan.head.0,
                plan.head.1,
                plan.tail.0,
                plan.tail.1,
                plan.whole.0,
                plan.whole.1,
                bucket.hour_divisor(),
                plan.hours.0,
                plan.hours.1,
                bucket.divisor(),
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts for the overview the next rows above the counts' watermark, at most `max_rows`,
    /// and advances the watermark, in one write transaction. Returns the rows counted (0:
    /// caught up).
    pub fn count_batch(&self, max_rows: i64) -> StoreResult<u64> {
        let mut w = self.writer();
        let tx = w
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from_sqlite)?;
        let from: i64 = tx.query_row(
            "SELECT counted_upto FROM console_counts_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let (upto, n): (Option<i64>, i64) = tx.query_row(
            "SELECT MAX(seq), COUNT(*) FROM
                 (SELECT seq FROM interactions WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
            params![from, max_rows.max(1)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some(upto) = upto else {
            return Ok(0);
        };
        let sql = format!(
            "INSERT INTO console_counts(operation_id, hour, kind, key, label, n)
             SELECT operation_id, hour, kind, key, label, COUNT(*) FROM ({}) WHERE true
              GROUP BY 1, 2, 3, 4, 5
             ON CONFLICT(operation_id, hour, kind, key, label) DO UPDATE SET n = n + excluded.n",
            kinds_of(
                "json",
                "operation_id, local_ts / 10000 AS hour,",
                "FROM interactions WHERE seq > ?1 AND seq <= ?2"
            )
        );
        tx.execute(&sql, params![from, upto])
            .map_err(StoreError::from_sqlite)?;
        tx.execute(
            "UPDATE console_counts_state SET counted_upto = ?1 WHERE id = 1",
            [upto],
        )
        .map_err(StoreError::from_sqlite)?;
        tx.commit().map_err(StoreError::from_sqlite)?;
        Ok(n as u64)
    }

    /// The overview counts' watermark: every row with `seq` up to it is counted.
    pub fn counted_upto(&self) -> StoreResult<i64> {
        let r = self.reader()?;
        Ok(r.query_row(
            "SELECT counted_upto FROM console_counts_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn console_list(&self, q: &ListQuery) -> StoreResult<Vec<StoredRow>> {
        let mut filter = String::from("operation_id = ? AND local_ts BETWEEN ? AND ?");
        let mut args: Vec<Value> = vec![
            q.operation_id.into(),
            q.window.ini().as_i64().into(),
            q.window.end().as_i64().into(),
        ];
        if let Some((ts, seq)) = q.before {
            filter.push_str(" AND (local_ts < ? OR (local_ts = ? AND seq < ?))");
            args.extend([ts.into(), ts.into(), seq.into()]);
        }
        if let Some(agent) = &q.agent {
            filter.push_str(&format!(" AND {} = ?", field("agent_id")));
            args.push(agent.clone().into());
        }
        if let Some(to) = &q.recipient {
            filter.push_str(&format!(" AND instr(lower({}), lower(?)) > 0", field("to")));
            args.push(to.clone().into());
        }
        // A word is one token (what `search_words` makes); anything else can match no row, and
        // must not reach FTS5 (a NUL ends its query string).
        if q.words.iter().any(|w| !is_token(w)) {
            return Ok(Vec::new());
        }
        let words: Vec<String> = q.words.iter().map(|w| w.to_lowercase()).collect();
        let mut sql;
        if words.is_empty() {
            sql = format!("SELECT seq, local_ts, json FROM interactions WHERE {filter}");
        } else {
            // Two disjoint arms: the indexed rows through FTS5, the rows above the watermark by a
            // scan of the rowid range (the `+` keep the planner on that range, which is short).
            let scan_filter = filter
                .replacen("operation_id = ?", "+operation_id = ?", 1)
                .replacen("local_ts BETWEEN", "+local_ts BETWEEN", 1);
            sql = format!(
                "SELECT seq, local_ts, json FROM interactions WHERE {filter}
                    AND seq IN (SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH ?)
                 UNION ALL
                 SELECT seq, local_ts, json FROM interactions WHERE {scan_filter}
                    AND seq > (SELECT indexed_upto FROM console_fts_state WHERE id = 1)
                    AND voxtrail_has_words({}, {}, ?)",
                text_field("subject"),
                text_field("body"),
            );
            let mut both = args.clone();
            both.push(fts_query(&words).into());
            both.extend(args);
            both.push(words.join(" ").into());
            args = both;
        }
        sql.push_str(" ORDER BY local_ts DESC, seq DESC LIMIT ?");
        args.push(i64::from(q.limit).into());
        let r = self.reader()?;
        let mut st = r.prepare_cached(&sql)?;
        let rows = st.query_map(params_from_iter(args), |r| {
            Ok(StoredRow {
                seq: r.get(0)?,
                local_ts: r.get(1)?,
                json: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Indexes for word search the next rows above the watermark, at most `max_rows`, and
    /// advances the watermark, in one write transaction. Returns the rows indexed (0: caught up).
    pub fn index_search_batch(&self, max_rows: i64) -> StoreResult<u64> {
        let mut w = self.writer();
        let tx = w
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from_sqlite)?;
        let from: i64 = tx.query_row(
            "SELECT indexed_upto FROM console_fts_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let upto: Option<i64> = tx.query_row(
            "SELECT MAX(seq) FROM (SELECT seq FROM interactions WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
            params![from, max_rows.max(1)],
            |r| r.get(0),
        )?;
        let Some(upto) = upto else {
            return Ok(0);
        };
        let n = tx
            .execute(
                "INSERT INTO interactions_fts(rowid, subject, body)
                 SELECT seq, subject, body FROM interactions_text WHERE seq > ?1 AND seq <= ?2",
                params![from, upto],
            )
            .map_err(StoreError::from_sqlite)?;
        tx.execute(
            "UPDATE console_fts_state SET indexed_upto = ?1 WHERE id = 1",
            [upto],
        )
        .map_err(StoreError::from_sqlite)?;
        tx.commit().map_err(StoreError::from_sqlite)?;
        Ok(n as u64)
    }

    /// The word-search watermark: every row with `seq` up to it is in the FTS5 index.
    pub fn search_indexed_upto(&self) -> StoreResult<i64> {
        let r = self.reader()?;
        Ok(r.query_row(
            "SELECT indexed_upto FROM console_fts_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn console_interaction(
        &self,
        operation_id: i64,
        conn_id: &str,
    ) -> StoreResult<Option<StoredRow>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(
            "SELECT seq, local_ts, json FROM interactions WHERE operation_id = ?1 AND conn_id = ?2",
        )?;
        Ok(st
            .query_row(params![operation_id, conn_id], |r| {
                Ok(StoredRow {
                    seq: r.get(0)?,
                    local_ts: r.get(1)?,
                    json: r.get(2)?,
                })
            })
            .optional()?)
    }

    pub fn last_day_used(&self, token_id: i64) -> StoreResult<Option<i64>> {
        let r = self.reader()?;
        let v: Option<i64> = r
            .prepare_cached("SELECT MAX(day) FROM token_usage WHERE token_id = ?1 AND used > 0")?
            .query_row([token_id], |r| r.get(0))?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{has_words, register_functions};

    #[test]
    fn has_words_matches_whole_tokens_in_any_case() {
        assert!(has_words(&["Su FACTURA, gracias", ""], "factura gracias"));
        assert!(has_words(&["", "ñandú\u{0}envío"], "ñandú envío"));
        assert!(!has_words(&["facturas"], "factura"), "no prefixes");
        assert!(!has_words(&["factura"], "factura hola"), "all words");
        assert!(has_words(&["x"], ""), "no words: every row");
        assert!(has_words(&["<b>zebra</b>"], "zebra"));
        assert!(!has_words(&["envio"], "envío"), "diacritics are kept");
    }

    #[test]
    fn the_sql_function_takes_nulls_and_blobs() {
        let c = Connection::open_in_memory().unwrap();
        register_functions(&c).unwrap();
        let got: i64 = c
            .query_row(
                "SELECT voxtrail_has_words(NULL, CAST('Hola Mundo' AS BLOB), 'mundo')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(got, 1);
        let got: i64 = c
            .query_row("SELECT voxtrail_has_words(NULL, 42, 'x')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(got, 0);
    }

    /// A database made while triggers kept the index: the migration drops them and starts the
    /// watermark at the last row, which was indexed already.
    #[test]
    fn migrating_from_the_triggers_keeps_every_row_findable() {
        let c = Connection::open_in_memory().unwrap();
        for sql in &super::super::MIGRATIONS[..2] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute_batch(
            "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
             VALUES (1, 'a', 1, 0, '{\"subject\":\"hola\",\"body\":\"factura\"}'),
                    (1, 'b', 2, 0, '{\"subject\":\"x\",\"body\":\"factura\"}');",
        )
        .unwrap();
        super::super::migrate(&c).unwrap();
        let (upto, triggers, indexed): (i64, i64, i64) = c
            .query_row(
                "SELECT (SELECT indexed_upto FROM console_fts_state),
                        (SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'),
                        (SELECT COUNT(*) FROM interactions_fts WHERE interactions_fts MATCH 'factura')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((upto, triggers, indexed), (2, 0, 2));
    }
}
