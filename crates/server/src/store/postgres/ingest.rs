//! PostgreSQL ingestion: one transaction on a blocking pooled connection; a batch is one
//! `unnest` multi-row insert with exact per-record outcomes.

use std::collections::HashMap;

use postgres::Statement;
use postgres::error::SqlState;

use super::PgStore;
use super::pool::Conn;
use crate::domain::Interaction;
use crate::store::{Durability, IngestSink, InsertOutcome, StoreError, StoreResult};

impl PgStore {
    pub fn begin_ingest(&self, operation_id: i64, durability: Durability) -> StoreResult<PgIngest> {
        let mut conn = self.conn()?;
        let begun = (|| -> StoreResult<(Statement, Statement)> {
            conn.client().batch_execute("BEGIN")?;
            // Feed positions are drawn in commit order (`feed.rs`): the operation's feed lock,
            // held until this transaction ends.
            let key = super::feed::feed_lock_key(operation_id);
            conn.client().execute(super::feed::LOCK_FEED, &[&key])?;
            if durability == Durability::Deferred {
                // Atomic and consistent; only the last commits may be lost on a crash.
                conn.client()
                    .batch_execute("SET LOCAL synchronous_commit = off")?;
            }
            let insert = conn.prepared(
                "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (operation_id, conn_id) DO NOTHING",
            )?;
            let select = conn.prepared(
                "SELECT json FROM interactions WHERE operation_id = $1 AND conn_id = $2",
            )?;
            Ok((insert, select))
        })();
        match begun {
            Ok((insert, select)) => Ok(PgIngest {
                conn,
                operation_id,
                insert,
                select,
                open: true,
            }),
            Err(e) => {
                conn.discard();
                Err(e)
            }
        }
    }
}

/// An ingestion transaction on one pooled connection (`BEGIN` … `COMMIT`).
pub struct PgIngest {
    conn: Conn,
    operation_id: i64,
    insert: Statement,
    select: Statement,
    open: bool,
}

/// Two ingestion transactions that wait on each other's conn_ids (one is aborted by
/// PostgreSQL's deadlock detector) or a serialization failure: the client may simply retry.
fn retryable(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            StoreError::Busy
        }
        _ => e.into(),
    }
}

impl PgIngest {
    /// A session that answered "read-only" keeps its setting for life: closed rather than
    /// reused, so ingestion works again as soon as the database is writable.
    fn checked<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::ReadOnly(_)) = &result {
            self.conn.discard();
        }
        result
    }

    fn insert_now(&mut self, r: &Interaction) -> StoreResult<InsertOutcome> {
        let len = i32::try_from(r.json.len())
            .map_err(|_| StoreError::Corrupt("record larger than 2 GiB".into()))?;
        let (op, conn_id) = (self.operation_id, r.conn_id.as_bytes());
        let changed = self
            .conn
            .client()
            .execute(
                &self.insert,
                &[&op, &conn_id, &r.date.as_i64(), &len, &r.json],
            )
            .map_err(retryable)?;
        if changed == 1 {
            return Ok(InsertOutcome::Inserted);
        }
        let row = self
            .conn
            .client()
            .query_one(&self.select, &[&op, &conn_id])?;
        let stored: &[u8] = row.try_get(0)?;
        Ok(if stored == r.json.as_slice() {
            InsertOutcome::Duplicate
        } else {
            InsertOutcome::Conflict
        })
    }

    fn insert_batch_now(&mut self, records: &[Interaction]) -> StoreResult<Vec<InsertOutcome>> {
        if records.len() < 2 {
            return records.iter().map(|r| self.insert_now(r)).collect();
        }
        let op = self.operation_id;
        let conn_ids: Vec<&[u8]> = records.iter().map(|r| r.conn_id.as_bytes()).collect();
        let ts: Vec<i64> = records.iter().map(|r| r.date.as_i64()).collect();
        let lens = records
            .iter()
            .map(|r| i32::try_from(r.json.len()))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| StoreError::Corrupt("record larger than 2 GiB".into()))?;
        let jsons: Vec<&[u8]> = records.iter().map(|r| r.json.as_slice()).collect();
        let st = self.conn.prepared(INSERT_BATCH)?;
        let rows = self
            .conn
            .client()
            .query(&st, &[&op, &conn_ids, &ts, &lens, &jsons])
            .map_err(retryable)?;
        if rows.len() != records.len() {
            return Err(StoreError::Corrupt(format!(
                "batch insert answered {} rows for {} records",
                rows.len(),
                records.len()
            )));
        }
        // First occurrence in this batch of each conn_id the statement inserted.
        let mut first: HashMap<&[u8], usize> = HashMap::new();
        let mut out = Vec::with_capacity(records.len());
        for (i, row) in rows.iter().enumerate() {
            let new_key: bool = row.try_get(0)?;
            let same_as_stored: Option<bool> = row.try_get(1)?;
            let r = &records[i];
            let outcome = if new_key {
                match first.get(r.conn_id.as_bytes()) {
                    None => {
                        first.insert(r.conn_id.as_bytes(), i);
                        InsertOutcome::Inserted
                    }
                    Some(&j) if records[j].json == r.json => InsertOutcome::Duplicate,
                    Some(_) => InsertOutcome::Conflict,
                }
            } else {
                match same_as_stored {
                    Some(true) => InsertOutcome::Duplicate,
                    Some(false) => InsertOutcome::Conflict,
                    // Committed by another transaction after this statement's snapshot was
                    // taken: read it with a fresh one.
                    None => self.insert_now(r)?,
                }
            };
            out.push(outcome);
        }
        Ok(out)
    }
}

impl IngestSink for PgIngest {
    fn insert(&mut self, r: &Interaction) -> StoreResult<InsertOutcome> {
        let result = self.insert_now(r);
        self.checked(result)
    }

    fn insert_batch(&mut self, records: &[Interaction]) -> StoreResult<Vec<InsertOutcome>> {
        let result = self.insert_batch_now(records);
        self.checked(result)
    }

    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        test_commit_delay();
        let committed = self
            .conn
            .client()
            .batch_execute("COMMIT")
            .map_err(retryable);
        self.checked(committed)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for PgIngest {
    fn drop(&mut self) {
        if self.open && self.conn.client().batch_execute("ROLLBACK").is_err() {
            self.conn.discard();
        }
    }
}

/// Stores a batch in one statement (rows get `seq` in input order) and tells, per input row in
/// order, whether its conn_id was inserted by this statement and, if not, whether the stored
/// row is byte-identical (looked up only for rows not inserted: new rows cost no extra probe). Rows this statement inserted are invisible to its own join, so their
/// in-batch repeats are compared in Rust.
const INSERT_BATCH: &str = "
WITH input AS (
    SELECT * FROM unnest($2::bytea[], $3::int8[], $4::int4[], $5::bytea[])
        WITH ORDINALITY AS t(conn_id, local_ts, json_len, json, ord)
), ins AS (
    INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
    SELECT $1, conn_id, local_ts, json_len, json FROM input ORDER BY ord
    ON CONFLICT (operation_id, conn_id) DO NOTHING
    RETURNING conn_id
)
SELECT n.conn_id IS NOT NULL,
       CASE WHEN n.conn_id IS NULL THEN
           (SELECT s.json = i.json FROM interactions s
             WHERE s.operation_id = $1 AND s.conn_id = i.conn_id)
       END
  FROM input i
  LEFT JOIN ins n ON n.conn_id = i.conn_id
 ORDER BY i.ord";

/// A test hook: with `VOXTRAIL_TEST_COMMIT_DELAY_MS=N`, every ingestion transaction waits a
/// random 0..N ms before `COMMIT`, so concurrent writers commit in an order other than the one
/// they started in (the change-feed tests use it to prove nothing is skipped; `feed.rs`).
fn test_commit_delay() {
    static DELAY_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let max = *DELAY_MS.get_or_init(|| {
        std::env::var("VOXTRAIL_TEST_COMMIT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    if max > 0 {
        let ms = rand::random_range(0..max);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
