//! PostgreSQL queries of the web console: sessions, overview counts, the interactions list
//! (full-text search, keyset pages), the tokens' last use; and the console's indexer.
//!
//! Neither the overview's counts nor the word-search index cost ingestion anything: the
//! indexer ([`PgStore::index_console_batch`], the server's background task) fills
//! `console_counts` and `console_search` per operation up to a watermark on `feed_pos`
//! (`console_index_state.upto`). Feed positions of an operation commit in the order they are
//! drawn (`feed.rs`), so every row at or below the highest visible position is committed, and
//! a row replaced in place takes a new position above the watermark. Reads combine the index
//! below the watermark with a scan of the operation's rows above it, in one statement (one
//! snapshot), so they are exact whatever the indexer's progress (docs/api.md, "The console").

use std::sync::atomic::Ordering;

use postgres::types::ToSql;

use super::PgStore;
use super::admin::{TOKEN_SELECT, token_from_row};
use crate::domain::{Token, Window};
use crate::store::StoreResult;
use crate::store::console::{Bucket, ListQuery, OverviewPlan, OverviewRow, StoredRow};

/// One field of the stored object (of `interactions i`) as text.
fn field(name: &str) -> String {
    format!("COALESCE(voxtrail_doc(i.json)->>'{name}', '')")
}

/// The overview's counts, the word-search index and their watermark (module docs). The counts'
/// key and label are compared through `md5` in the unique index, so any length fits it; the
/// search table keeps `operation_id` and `local_ts` beside the `tsvector`: a rare word is
/// filtered to the window through the GIN index before any row is read, a frequent one is found
/// walking `console_search_time` newest first until the page is full.
pub(super) const INDEX_MIGRATION: &str = "
CREATE TABLE console_counts (
    operation_id BIGINT NOT NULL,
    hour         BIGINT NOT NULL,
    kind         BIGINT NOT NULL,
    key          TEXT NOT NULL,
    label        TEXT NOT NULL,
    n            BIGINT NOT NULL
);
CREATE UNIQUE INDEX console_counts_key
    ON console_counts(operation_id, hour, kind, md5(key), md5(label));
CREATE TABLE console_search (
    seq          BIGINT PRIMARY KEY,
    operation_id BIGINT NOT NULL,
    local_ts     BIGINT NOT NULL,
    tsv          tsvector NOT NULL
);
CREATE INDEX console_search_words ON console_search USING GIN (tsv);
CREATE INDEX console_search_time ON console_search(operation_id, local_ts, seq);
CREATE TABLE console_index_state (
    operation_id BIGINT PRIMARY KEY,
    upto         BIGINT NOT NULL
);
";

/// Rows indexed after which the indexer, once caught up, analyses its tables.
const ANALYZE_AFTER_ROWS: u64 = 50_000;

/// The (kind, key, label) pairs of a parsed object `d` (a lateral join).
const KINDS: &str = "CROSS JOIN LATERAL (VALUES
    (0::bigint, COALESCE(d->>'agent_id', ''), COALESCE(d->>'agent_name', '')),
    (1::bigint, COALESCE(d->>'cod_act', ''), COALESCE(d->>'description_cod_act', ''))
) k(kind, key, label)";

/// The watermark of operation `$1` in a statement (0 before the indexer's first batch).
const WATERMARK: &str =
    "COALESCE((SELECT upto FROM console_index_state WHERE operation_id = $1), 0)";

/// The watermark of an operation, read before the statement that uses it (a bound parameter,
/// so the planner sees it: the scan above it takes the feed index). Exact with any snapshot
/// after it: the indexer only moves it up, every row at or below it is indexed and counted as
/// it is (a replaced row takes a new position, above), and the rows above it are scanned.
fn watermark(conn: &mut super::pool::Conn, operation_id: i64) -> StoreResult<i64> {
    let row = conn
        .client()
        .query_one(&format!("SELECT {WATERMARK}"), &[&operation_id])?;
    Ok(row.try_get(0)?)
}

/// Takes operation `operation_id`'s indexer state row (made when missing) until the
/// transaction ends, and returns its watermark. The indexer and a mirror replacing rows take it
/// first, so a replaced row is either indexed with its new content or un-counted with its old.
pub(super) fn lock_index_state(
    tx: &mut postgres::Transaction<'_>,
    operation_id: i64,
) -> StoreResult<i64> {
    tx.execute(
        "INSERT INTO console_index_state(operation_id, upto) VALUES ($1, 0)
         ON CONFLICT (operation_id) DO NOTHING",
        &[&operation_id],
    )?;
    let row = tx.query_one(
        "SELECT upto FROM console_index_state WHERE operation_id = $1 FOR UPDATE",
        &[&operation_id],
    )?;
    Ok(row.try_get(0)?)
}

/// Un-counts (mirror commit, `mirror.rs`, with the state row held) the rows about to be replaced
/// that are counted already (`feed_pos <= $6`): same parameters as the mirror's statements. A
/// replaced row takes a new feed position, above the watermark: scanned, then indexed anew.
pub(super) const UNCOUNT_REPLACED: &str = "
UPDATE console_counts c SET n = c.n - g.n
  FROM (SELECT o.local_ts / 10000 AS hour, k.kind, k.key, k.label, COUNT(*) AS n
          FROM (SELECT s.local_ts, voxtrail_doc(s.json) AS d
                  FROM interactions s
                  JOIN unnest($2::bytea[], $3::int8[], $4::int4[], $5::bytea[])
                       AS t(conn_id, local_ts, json_len, json) ON s.conn_id = t.conn_id
                 WHERE s.operation_id = $1 AND s.json <> t.json AND s.feed_pos <= $6
                OFFSET 0) o
          CROSS JOIN LATERAL (VALUES
              (0::bigint, COALESCE(d->>'agent_id', ''), COALESCE(d->>'agent_name', '')),
              (1::bigint, COALESCE(d->>'cod_act', ''), COALESCE(d->>'description_cod_act', ''))
          ) k(kind, key, label)
         GROUP BY 1, 2, 3, 4) g
 WHERE c.operation_id = $1 AND c.hour = g.hour AND c.kind = g.kind
   AND md5(c.key) = md5(g.key) AND md5(c.label) = md5(g.label)";

impl PgStore {
    pub fn create_console_session(
        &self,
        id_hash: &[u8; 32],
        token_id: i64,
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        let mut conn = self.conn()?;
        let c = conn.client();
        c.execute(
            "DELETE FROM console_sessions WHERE expires_at <= $1",
            &[&now],
        )?;
        c.execute(
            "INSERT INTO console_sessions(id_hash, token_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&&id_hash[..], &token_id, &now, &expires],
        )?;
        Ok(())
    }

    pub fn console_session(&self, id_hash: &[u8; 32], now: i64) -> StoreResult<Option<Token>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_opt(
            &format!(
                "{TOKEN_SELECT} JOIN console_sessions s ON s.token_id = t.id
                 WHERE s.id_hash = $1 AND s.expires_at > $2"
            ),
            &[&&id_hash[..], &now],
        )?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub fn delete_console_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let mut conn = self.conn()?;
        conn.client().execute(
            "DELETE FROM console_sessions WHERE id_hash = $1",
            &[&&id_hash[..]],
        )?;
        Ok(())
    }

    pub fn console_overview(
        &self,
        operation_id: i64,
        window: Window,
        bucket: Bucket,
    ) -> StoreResult<Vec<OverviewRow>> {
        let plan = OverviewPlan::of(window);
        let mut conn = self.conn()?;
        let indexed = watermark(&mut conn, operation_id)?;
        // The counted whole hours, and the rows the counts do not hold (the partial hours at
        // both ends; the whole hours' rows above the watermark), in one statement. Each scanned
        // object is parsed once (MATERIALIZED).
        let sql = format!(
            "WITH raw AS MATERIALIZED (
                 SELECT local_ts, voxtrail_doc(json) AS d FROM interactions
                  WHERE operation_id = $1
                    AND (local_ts BETWEEN $2 AND $3 OR local_ts BETWEEN $4 AND $5)
                 UNION ALL
                 SELECT local_ts, voxtrail_doc(json) FROM interactions
                  WHERE operation_id = $1 AND feed_pos > $12
                    AND local_ts BETWEEN $6 AND $7
             )
             SELECT kind, hour / $8, key, label, SUM(n)::BIGINT FROM console_counts
              WHERE operation_id = $1 AND hour BETWEEN $9 AND $10
              GROUP BY 1, 2, 3, 4
             UNION ALL
             SELECT k.kind, local_ts / $11, k.key, k.label, COUNT(*) FROM raw {KINDS}
              GROUP BY 1, 2, 3, 4"
        );
        let rows = conn.client().query(
            &sql,
            &[
                &operation_id,
                &plan.head.0,
                &plan.head.1,
                &plan.tail.0,
                &plan.tail.1,
                &plan.whole.0,
                &plan.whole.1,
                &bucket.hour_divisor(),
                &plan.hours.0,
                &plan.hours.1,
                &bucket.divisor(),
                &indexed,
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    /// One batch of the console's indexer for every operation: the next `max_rows` rows above
    /// the operation's watermark counted for the overview and indexed for word search, the
    /// watermark advanced, in one transaction per operation. Returns the most rows one
    /// operation took (0: caught up).
    pub fn index_console_batch(&self, max_rows: i64) -> StoreResult<u64> {
        let mut conn = self.conn()?;
        // Only the operations with rows above their watermark (a read, so an idle indexer
        // writes nothing).
        let ops: Vec<i64> = conn
            .client()
            .query(
                "SELECT o.id FROM operations o
                   LEFT JOIN console_index_state s ON s.operation_id = o.id
                  WHERE EXISTS (SELECT 1 FROM interactions i
                                 WHERE i.operation_id = o.id
                                   AND i.feed_pos > COALESCE(s.upto, 0))
                  ORDER BY o.id",
                &[],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let (mut most, mut total) = (0, 0);
        for op in ops {
            let mut tx = conn.client().transaction()?;
            let from = lock_index_state(&mut tx, op)?;
            // The highest position of the next rows: committed, and so is every row of the
            // operation below it (`feed.rs`); nothing below it changes while the state row is
            // held (a mirror takes it before replacing rows).
            let row = tx.query_one(
                "SELECT MAX(feed_pos), COUNT(*) FROM
                     (SELECT feed_pos FROM interactions WHERE operation_id = $1 AND feed_pos > $2
                       ORDER BY feed_pos LIMIT $3) t",
                &[&op, &from, &max_rows.max(1)],
            )?;
            let (upto, n): (Option<i64>, i64) = (row.try_get(0)?, row.try_get(1)?);
            let Some(upto) = upto else {
                tx.commit()?;
                continue;
            };
            tx.execute(
                &format!(
                    "INSERT INTO console_counts(operation_id, hour, kind, key, label, n)
                     SELECT $1, local_ts / 10000, k.kind, k.key, k.label, COUNT(*)
                       FROM (SELECT local_ts, voxtrail_doc(json) AS d FROM interactions
                              WHERE operation_id = $1 AND feed_pos > $2 AND feed_pos <= $3
                             OFFSET 0) r {KINDS}
                      GROUP BY 2, 3, 4, 5
                     ON CONFLICT (operation_id, hour, kind, md5(key), md5(label))
                     DO UPDATE SET n = console_counts.n + excluded.n"
                ),
                &[&op, &from, &upto],
            )?;
            tx.execute(
                "INSERT INTO console_search(seq, operation_id, local_ts, tsv)
                 SELECT seq, operation_id, local_ts, voxtrail_search(json) FROM interactions
                  WHERE operation_id = $1 AND feed_pos > $2 AND feed_pos <= $3
                 ON CONFLICT (seq) DO UPDATE SET local_ts = excluded.local_ts, tsv = excluded.tsv",
                &[&op, &from, &upto],
            )?;
            tx.execute(
                "UPDATE console_index_state SET upto = $2 WHERE operation_id = $1",
                &[&op, &upto],
            )?;
            tx.commit()?;
            most = most.max(n as u64);
            total += n as u64;
        }
        // Once caught up after many rows (a first start on a large database, a bulk import),
        // the planner learns the new tables' statistics now rather than at autovacuum's next
        // pass: how frequent a word is decides between the GIN index and the newest-first walk.
        let unanalyzed = &self.inner.console_unanalyzed;
        let pending = unanalyzed.fetch_add(total, Ordering::Relaxed) + total;
        if total == 0 && pending >= ANALYZE_AFTER_ROWS {
            unanalyzed.store(0, Ordering::Relaxed);
            conn.client()
                .batch_execute("ANALYZE console_search, console_counts")?;
        }
        Ok(most)
    }

    /// The console indexer's watermark of an operation (a feed position; 0 before its first
    /// batch).
    pub fn console_indexed_upto(&self, operation_id: i64) -> StoreResult<i64> {
        let mut conn = self.conn()?;
        let row = conn
            .client()
            .query_one(&format!("SELECT {WATERMARK}"), &[&operation_id])?;
        Ok(row.try_get(0)?)
    }

    pub fn console_list(&self, q: &ListQuery) -> StoreResult<Vec<StoredRow>> {
        let (ini, end, limit) = (
            q.window.ini().as_i64(),
            q.window.end().as_i64(),
            i64::from(q.limit),
        );
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&q.operation_id, &ini, &end];
        let mut filter = String::from("i.operation_id = $1 AND i.local_ts BETWEEN $2 AND $3");
        let before = q.before;
        if let Some((ts, seq)) = &before {
            args.push(ts);
            let a = args.len();
            args.push(seq);
            filter.push_str(&format!(" AND (i.local_ts, i.seq) < (${a}, ${})", a + 1));
        }
        if let Some(agent) = &q.agent {
            args.push(agent);
            filter.push_str(&format!(" AND {} = ${}", field("agent_id"), args.len()));
        }
        if let Some(to) = &q.recipient {
            args.push(to);
            filter.push_str(&format!(
                " AND strpos(lower({}), lower(${})) > 0",
                field("to"),
                args.len()
            ));
        }
        let words = q.words.join(" ");
        let mut conn = self.conn()?;
        let indexed = if q.words.is_empty() {
            0
        } else {
            watermark(&mut conn, q.operation_id)?
        };
        let sql = if q.words.is_empty() {
            format!("SELECT i.seq, i.local_ts, i.json FROM interactions i WHERE {filter}")
        } else {
            // Two disjoint arms: the indexed rows (at or below the watermark) through the GIN
            // index, the rows above it (new or replaced since the indexer's last batch) by a
            // scan of their feed positions.
            // The index arm has its own LIMIT, so the planner weighs, by the word's frequency,
            // walking `console_search_time` newest first (a frequent word fills the page within a
            // few hundred rows) against the GIN index (a rare word); without it, it matched
            // every row of a frequent word first (seconds). It orders by `s.local_ts`, `s.seq`:
            // a row at or below the watermark has the same values in both tables.
            args.push(&words);
            let w = args.len();
            args.push(&indexed);
            let m = args.len();
            args.push(&limit);
            let l = args.len();
            let index_filter = filter
                .replacen("i.operation_id = $1", "s.operation_id = $1", 1)
                .replacen("i.local_ts BETWEEN", "s.local_ts BETWEEN", 1)
                .replacen("(i.local_ts, i.seq) <", "(s.local_ts, s.seq) <", 1);
            format!(
                "SELECT seq, local_ts, json FROM (
                     (SELECT s.seq, s.local_ts, i.json
                        FROM console_search s JOIN interactions i ON i.seq = s.seq
                       WHERE s.tsv @@ plainto_tsquery('simple'::regconfig, ${w})
                         AND i.feed_pos <= ${m} AND {index_filter}
                       ORDER BY s.local_ts DESC, s.seq DESC LIMIT ${l})
                     UNION ALL
                     SELECT i.seq, i.local_ts, i.json FROM interactions i
                      WHERE i.feed_pos > ${m} AND {filter}
                        AND voxtrail_search(i.json) @@ plainto_tsquery('simple'::regconfig, ${w})
                 ) i"
            )
        };
        args.push(&limit);
        let sql = format!(
            "{sql} ORDER BY local_ts DESC, seq DESC LIMIT ${}",
            args.len()
        );
        let rows = conn.client().query(&sql, &args)?;
        rows.iter()
            .map(|r| {
                Ok(StoredRow {
                    seq: r.try_get(0)?,
                    local_ts: r.try_get(1)?,
                    json: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub fn console_interaction(
        &self,
        operation_id: i64,
        conn_id: &str,
    ) -> StoreResult<Option<StoredRow>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_opt(
            "SELECT seq, local_ts, json FROM interactions WHERE operation_id = $1 AND conn_id = $2",
            &[&operation_id, &conn_id.as_bytes()],
        )?;
        row.map(|r| {
            Ok(StoredRow {
                seq: r.try_get(0)?,
                local_ts: r.try_get(1)?,
                json: r.try_get(2)?,
            })
        })
        .transpose()
    }

    pub fn last_day_used(&self, token_id: i64) -> StoreResult<Option<i64>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_one(
            "SELECT MAX(day)::BIGINT FROM token_usage WHERE token_id = $1 AND used > 0",
            &[&token_id],
        )?;
        Ok(row.try_get(0)?)
    }
}
