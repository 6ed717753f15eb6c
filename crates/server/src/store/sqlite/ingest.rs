//! SQLite ingestion: one `BEGIN IMMEDIATE` transaction on the write connection.

use std::sync::MutexGuard;

use rusqlite::{Connection, params};

use super::{SqliteStore, WRITER_CACHE_KIB};
use crate::domain::Interaction;
use crate::store::digest::row_hash;
use crate::store::{Durability, IngestSink, InsertOutcome, StoreError, StoreResult};

impl SqliteStore {
    pub fn begin_ingest(
        &self,
        operation_id: i64,
        durability: Durability,
    ) -> StoreResult<SqliteIngest<'_>> {
        let conn = self.writer();
        // In WAL mode NORMAL syncs at checkpoints only; FULL syncs every commit.
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Deferred => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // Synthetic bulk loads get a larger page cache so big transactions spill less.
        let cache_kib = match durability {
            Durability::Full => WRITER_CACHE_KIB,
            Durability::Deferred => 4 * WRITER_CACHE_KIB,
        };
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from_sqlite)?;
        // The transaction holds the database's write lock: nobody else gives out positions of
        // the operation until it ends, so they are counted here instead of looked up per row.
        let mut ingest = SqliteIngest {
            conn,
            operation_id,
            open: true,
            next_feed_pos: 0,
        };
        ingest.next_feed_pos = super::feed::next_position(&ingest.conn, operation_id)?;
        Ok(ingest)
    }
}

/// An ingestion transaction on the write connection (`BEGIN IMMEDIATE` … `COMMIT`).
pub struct SqliteIngest<'a> {
    conn: MutexGuard<'a, Connection>,
    operation_id: i64,
    open: bool,
    /// The feed position of the next row stored (`store/feed.rs`).
    next_feed_pos: i64,
}

impl SqliteIngest<'_> {
    /// Stores one record whose row hash is `hash` (`digest::row_hash` of its JSON).
    fn insert_hashed(&mut self, r: &Interaction, hash: &[u8; 32]) -> StoreResult<InsertOutcome> {
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json, row_hash,
                                      feed_pos)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(operation_id, conn_id) DO NOTHING",
        )?;
        let changed = ins
            .execute(params![
                self.operation_id,
                r.conn_id,
                r.date.as_i64(),
                r.json.len() as i64,
                r.json,
                hash.as_slice(),
                self.next_feed_pos
            ])
            .map_err(StoreError::from_sqlite)?;
        if changed == 1 {
            self.next_feed_pos += 1;
            return Ok(InsertOutcome::Inserted);
        }
        let mut sel = self.conn.prepare_cached(
            "SELECT json FROM interactions WHERE operation_id = ?1 AND conn_id = ?2",
        )?;
        let same = sel.query_row(params![self.operation_id, r.conn_id], |row| {
            Ok(row.get_ref(0)?.as_bytes()? == r.json.as_slice())
        })?;
        Ok(if same {
            InsertOutcome::Duplicate
        } else {
            InsertOutcome::Conflict
        })
    }
}

/// Batches at least this large have their row hashes computed on a second thread while the
/// rows are inserted (SHA-256 of ~2.3 KB rows is ~8 % of an import's CPU on one thread).
const HASH_ALONGSIDE: usize = 64;

impl IngestSink for SqliteIngest<'_> {
    fn insert(&mut self, r: &Interaction) -> StoreResult<InsertOutcome> {
        self.insert_hashed(r, &row_hash(&r.json))
    }

    fn insert_batch(&mut self, records: &[Interaction]) -> StoreResult<Vec<InsertOutcome>> {
        if records.len() < HASH_ALONGSIDE {
            return records.iter().map(|r| self.insert(r)).collect();
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<[u8; 32]>(records.len());
            scope.spawn(move || {
                for r in records {
                    if tx.send(row_hash(&r.json)).is_err() {
                        return; // the inserts stopped early (an error)
                    }
                }
            });
            let mut outcomes = Vec::with_capacity(records.len());
            for r in records {
                let hash = match rx.recv() {
                    Ok(h) => h,
                    Err(_) => row_hash(&r.json), // the hashing thread died: hash here
                };
                outcomes.push(self.insert_hashed(r, &hash)?);
            }
            Ok(outcomes)
        })
    }

    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(StoreError::from_sqlite)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteIngest<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // The write connection's default: every commit durable.
        let _ = self.conn.pragma_update(None, "synchronous", "FULL");
    }
}
