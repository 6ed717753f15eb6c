//! SQLite mirrors: definitions and state in `mirrors`; a mirror commit is one
//! `BEGIN IMMEDIATE` transaction on the write connection (rows, then checkpoint).

use rusqlite::{OptionalExtension as _, params};

use super::{SqliteStore, now_utc};
use crate::domain::{Interaction, WallClock};
use crate::store::mirror::{Mirror, MirrorDef, MirrorOutcome, bounded_error};
use crate::store::{StoreError, StoreResult};

const SELECT: &str = "SELECT m.operation_id, o.name, m.url, m.token, m.since, m.every_secs,
        m.lookback_secs, m.window_secs, m.checkpoint, m.last_success, m.rows_inserted,
        m.rows_updated, m.errors, m.last_error, m.halted, m.generation
   FROM mirrors m JOIN operations o ON o.id = m.operation_id ORDER BY o.name";

fn wall_clock(v: Option<i64>, what: &str) -> StoreResult<Option<WallClock>> {
    v.map(|v| {
        WallClock::from_i64(v).ok_or_else(|| StoreError::Corrupt(format!("mirror {what} {v}")))
    })
    .transpose()
}

impl SqliteStore {
    pub fn set_mirror(&self, d: &MirrorDef) -> StoreResult<()> {
        self.writer()
            .execute(
                "INSERT INTO mirrors(operation_id, url, token, since, every_secs, lookback_secs,
                                     window_secs, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(operation_id) DO UPDATE SET
                     checkpoint = CASE WHEN mirrors.url = excluded.url
                                        AND mirrors.since = excluded.since
                                       THEN mirrors.checkpoint END,
                     url = excluded.url, token = excluded.token, since = excluded.since,
                     every_secs = excluded.every_secs, lookback_secs = excluded.lookback_secs,
                     window_secs = excluded.window_secs, last_error = NULL, halted = 0,
                     generation = mirrors.generation + 1, updated_at = excluded.updated_at",
                params![
                    d.operation_id,
                    d.url,
                    d.token,
                    d.since.as_i64(),
                    d.every_secs as i64,
                    d.lookback_secs as i64,
                    d.window_secs as i64,
                    now_utc()
                ],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn remove_mirror(&self, operation_id: i64) -> StoreResult<bool> {
        let n = self
            .writer()
            .execute(
                "DELETE FROM mirrors WHERE operation_id = ?1",
                [operation_id],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(n == 1)
    }

    pub fn mirrors(&self) -> StoreResult<Vec<Mirror>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(SELECT)?;
        let rows = st.query_map([], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ),
                (
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, i64>(11)?,
                    r.get::<_, i64>(12)?,
                    r.get::<_, Option<String>>(13)?,
                    r.get::<_, bool>(14)?,
                    r.get::<_, i64>(15)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((id, name, url, token, since, every, lookback, window), state) = row?;
            let (checkpoint, last_success, ins, upd, errors, last_error, halted, generation) =
                state;
            out.push(Mirror {
                def: MirrorDef {
                    operation_id: id,
                    url,
                    token,
                    since: WallClock::from_i64(since)
                        .ok_or_else(|| StoreError::Corrupt(format!("mirror since {since}")))?,
                    every_secs: every.max(0) as u64,
                    lookback_secs: lookback.max(0) as u64,
                    window_secs: window.max(0) as u64,
                },
                operation: name,
                checkpoint: wall_clock(checkpoint, "checkpoint")?,
                last_success,
                rows_inserted: ins.max(0) as u64,
                rows_updated: upd.max(0) as u64,
                errors: errors.max(0) as u64,
                last_error,
                halted,
                generation,
            });
        }
        Ok(out)
    }

    /// A window's rows and the checkpoint in one `BEGIN IMMEDIATE` transaction. Each row is
    /// first inserted (`ON CONFLICT DO NOTHING`: one statement for a new conn_id, the common
    /// case of a catch-up); only a conn_id already stored is read back and compared, and
    /// replaced in place when its content changed. Statements are prepared once per
    /// connection; feed positions are counted up from the operation's highest, read once (the
    /// write connection is held until commit, so nobody else draws one meanwhile).
    pub fn mirror_commit(
        &self,
        operation_id: i64,
        rows: &[&Interaction],
        checkpoint: WallClock,
    ) -> StoreResult<MirrorOutcome> {
        let mut w = self.writer();
        let tx = w
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from_sqlite)?;
        let mut out = MirrorOutcome::default();
        {
            // New and replaced rows carry their SHA-256 (`store/digest.rs`) and take the next
            // feed position of the operation (`sqlite/feed.rs`): one writer, so in commit order.
            let mut feed_pos: i64 = tx
                .prepare_cached(
                    "SELECT IFNULL(MAX(feed_pos), 0) FROM interactions WHERE operation_id = ?1",
                )?
                .query_row([operation_id], |r| r.get(0))?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json, row_hash,
                                          feed_pos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(operation_id, conn_id) DO NOTHING",
            )?;
            let mut find = tx.prepare_cached(
                "SELECT seq, json, local_ts FROM interactions WHERE operation_id = ?1 AND conn_id = ?2",
            )?;
            let mut replace = tx.prepare_cached(
                "UPDATE interactions SET local_ts = ?2, json_len = ?3, json = ?4, row_hash = ?5,
                        feed_pos = ?6
                  WHERE seq = ?1",
            )?;
            let mut unindex = tx.prepare_cached(
                "INSERT INTO interactions_fts(interactions_fts, rowid, subject, body)
                 SELECT 'delete', ?1,
                        CASE WHEN json_valid(CAST(?2 AS TEXT))
                             THEN json_extract(CAST(?2 AS TEXT), '$.subject') END,
                        CASE WHEN json_valid(CAST(?2 AS TEXT))
                             THEN json_extract(CAST(?2 AS TEXT), '$.body') END
                  WHERE ?1 <= (SELECT indexed_upto FROM console_fts_state WHERE id = 1)",
            )?;
            let mut reindex = tx.prepare_cached(
                "INSERT INTO interactions_fts(rowid, subject, body)
                 SELECT seq, subject, body FROM interactions_text
                  WHERE seq = ?1
                    AND ?1 <= (SELECT indexed_upto FROM console_fts_state WHERE id = 1)",
            )?;
            for r in rows {
                let len = r.json.len() as i64;
                let hash = crate::store::digest::row_hash(&r.json);
                let inserted = insert
                    .execute(params![
                        operation_id,
                        r.conn_id,
                        r.date.as_i64(),
                        len,
                        r.json,
                        hash.as_slice(),
                        feed_pos + 1
                    ])
                    .map_err(StoreError::from_sqlite)?;
                if inserted == 1 {
                    feed_pos += 1;
                    out.inserted += 1;
                    continue;
                }
                let (seq, old, old_ts) = find
                    .query_row(params![operation_id, r.conn_id], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "conn_id {:?} neither new nor found",
                            r.conn_id
                        ))
                    })?;
                if old == r.json {
                    out.unchanged += 1;
                    continue;
                }
                // A row the console's word search already indexed leaves the index with its
                // old words and comes back with its new ones; a row the overview counted moves
                // its counts (`console.rs`).
                unindex
                    .execute(params![seq, old])
                    .map_err(StoreError::from_sqlite)?;
                super::console::adjust_counts(&tx, operation_id, seq, old_ts, &old, -1)
                    .map_err(StoreError::from_sqlite)?;
                feed_pos += 1;
                replace
                    .execute(params![
                        seq,
                        r.date.as_i64(),
                        len,
                        r.json,
                        hash.as_slice(),
                        feed_pos
                    ])
                    .map_err(StoreError::from_sqlite)?;
                reindex
                    .execute(params![seq])
                    .map_err(StoreError::from_sqlite)?;
                super::console::adjust_counts(&tx, operation_id, seq, r.date.as_i64(), &r.json, 1)
                    .map_err(StoreError::from_sqlite)?;
                out.updated += 1;
            }
        }
        let n = tx
            .execute(
                "UPDATE mirrors SET checkpoint = MAX(COALESCE(checkpoint, 0), ?2),
                        last_success = ?3, rows_inserted = rows_inserted + ?4,
                        rows_updated = rows_updated + ?5, last_error = NULL
                  WHERE operation_id = ?1",
                params![
                    operation_id,
                    checkpoint.as_i64(),
                    now_utc(),
                    out.inserted as i64,
                    out.updated as i64
                ],
            )
            .map_err(StoreError::from_sqlite)?;
        if n != 1 {
            // Removed while running: nothing of the window is kept.
            return Err(StoreError::NotAMirror(operation_id));
        }
        tx.commit().map_err(StoreError::from_sqlite)?;
        Ok(out)
    }

    pub fn mirror_error(&self, operation_id: i64, error: &str, halt: bool) -> StoreResult<()> {
        self.writer()
            .execute(
                "UPDATE mirrors SET errors = errors + 1, last_error = ?2,
                        halted = MAX(halted, ?3) WHERE operation_id = ?1",
                params![operation_id, bounded_error(error), halt],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }
}
