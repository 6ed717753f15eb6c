//! PostgreSQL mirrors: definitions and state in `mirrors`; a mirror commit is one transaction:
//! the feed lock, the window's rows as arrays through one prepared upsert per 1,000 rows
//! ([`UPSERT`]: new conn_ids inserted, changed ones replaced in place), and the checkpoint.
//!
//! A running mirror holds a lease: a session advisory lock (one-bigint key space,
//! [`MIRROR_LOCK_BASE`] + operation id) taken with `pg_try_advisory_lock` on a dedicated
//! connection that lives as long as the lease. A replica that dies (SIGKILL included) closes
//! that connection with it, and the lock is free for another replica.

use super::PgStore;
use super::now_utc;
use crate::domain::{Interaction, WallClock};
use crate::store::mirror::{Mirror, MirrorDef, MirrorOutcome, bounded_error};
use crate::store::{StoreError, StoreResult};

const SELECT: &str = "SELECT m.operation_id, o.name, m.url, m.token, m.since, m.every_secs,
        m.lookback_secs, m.window_secs, m.checkpoint, m.last_success, m.rows_inserted,
        m.rows_updated, m.errors, m.last_error, m.halted, m.generation
   FROM mirrors m JOIN operations o ON o.id = m.operation_id ORDER BY o.name COLLATE \"C\"";

/// Up to [`UPSERT_CHUNK`] rows of a window in one statement: a new conn_id is inserted (rows take `seq` in the
/// window's order); a known one whose JSON differs is replaced in place — it keeps `seq`, so it
/// keeps its place among the rows of its second, and takes a new feed position (the
/// transaction holds the operation's feed lock, `feed.rs`); `row_hash` is a generated column
/// and follows `json` by itself. An identical row is left alone (no new row version). Answers
/// how many rows were inserted and how many replaced (`xmax = 0` marks a row version this
/// statement inserted).
const UPSERT: &str = "
WITH up AS (
    INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
    SELECT $1, conn_id, local_ts, json_len, json
      FROM unnest($2::bytea[], $3::int8[], $4::int4[], $5::bytea[]) WITH ORDINALITY
           AS t(conn_id, local_ts, json_len, json, ord)
     ORDER BY ord
    ON CONFLICT (operation_id, conn_id) DO UPDATE
       SET local_ts = excluded.local_ts, json_len = excluded.json_len, json = excluded.json,
           feed_pos = nextval('interactions_feed_pos')
     WHERE interactions.json <> excluded.json
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up";

/// Rows per upsert statement: ~2 MB of 2 KB rows, within PostgreSQL's default `work_mem` (4 MB).
const UPSERT_CHUNK: usize = 1_000;

/// Moves the checkpoint (never backwards) and counts the window's outcome.
const ADVANCE: &str = "UPDATE mirrors SET checkpoint = GREATEST(COALESCE(checkpoint, 0), $2),
        last_success = $3, rows_inserted = rows_inserted + $4,
        rows_updated = rows_updated + $5, last_error = NULL
  WHERE operation_id = $1";

fn wall_clock(v: i64, what: &str) -> StoreResult<WallClock> {
    WallClock::from_i64(v).ok_or_else(|| StoreError::Corrupt(format!("mirror {what} {v}")))
}

/// Key space of mirror leases: "mirr" in the high bytes, the operation id in the low ones.
/// Distinct from the migration lock (one other bigint) and slot locks (two-int4 keys).
const MIRROR_LOCK_BASE: i64 = 0x6d69_7272_0000_0000;

/// A held mirror lease on PostgreSQL: its connection, and the task driving it.
pub struct PgMirrorLease {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
}

impl PgMirrorLease {
    /// Whether the lease's connection (and with it the lock) is gone.
    pub fn is_lost(&self) -> bool {
        self.client.is_closed() || self.connection.is_finished()
    }
}

impl Drop for PgMirrorLease {
    fn drop(&mut self) {
        // Closing the session frees the lock.
        self.connection.abort();
    }
}

impl PgStore {
    /// Takes the lease of a mirror when no other session holds it; `None` when one does.
    pub async fn mirror_lease(&self, operation_id: i64) -> StoreResult<Option<PgMirrorLease>> {
        let (client, connection) = self
            .inner
            .mirror_config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(StoreError::Unavailable)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "mirror lease connection ended");
            }
        });
        let lease = PgMirrorLease { client, connection };
        let key = MIRROR_LOCK_BASE | (operation_id & 0xffff_ffff);
        let got: bool = lease
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?
            .get(0);
        Ok(got.then_some(lease))
    }

    pub fn set_mirror(&self, d: &MirrorDef) -> StoreResult<()> {
        let mut conn = self.conn()?;
        conn.client().execute(
            "INSERT INTO mirrors(operation_id, url, token, since, every_secs, lookback_secs,
                                 window_secs, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (operation_id) DO UPDATE SET
                 checkpoint = CASE WHEN mirrors.url = excluded.url
                                    AND mirrors.since = excluded.since
                                   THEN mirrors.checkpoint END,
                 url = excluded.url, token = excluded.token, since = excluded.since,
                 every_secs = excluded.every_secs, lookback_secs = excluded.lookback_secs,
                 window_secs = excluded.window_secs, last_error = NULL, halted = false,
                 generation = mirrors.generation + 1, updated_at = excluded.updated_at",
            &[
                &d.operation_id,
                &d.url,
                &d.token,
                &d.since.as_i64(),
                &(d.every_secs as i64),
                &(d.lookback_secs as i64),
                &(d.window_secs as i64),
                &now_utc(),
            ],
        )?;
        Ok(())
    }

    pub fn remove_mirror(&self, operation_id: i64) -> StoreResult<bool> {
        let mut conn = self.conn()?;
        let n = conn.client().execute(
            "DELETE FROM mirrors WHERE operation_id = $1",
            &[&operation_id],
        )?;
        Ok(n == 1)
    }

    pub fn mirrors(&self) -> StoreResult<Vec<Mirror>> {
        let mut conn = self.conn()?;
        let st = conn.prepared(SELECT)?;
        let rows = conn.client().query(&st, &[])?;
        rows.iter()
            .map(|r| {
                let num =
                    |i: usize| -> StoreResult<u64> { Ok(r.try_get::<_, i64>(i)?.max(0) as u64) };
                Ok(Mirror {
                    def: MirrorDef {
                        operation_id: r.try_get(0)?,
                        url: r.try_get(2)?,
                        token: r.try_get(3)?,
                        since: wall_clock(r.try_get(4)?, "since")?,
                        every_secs: num(5)?,
                        lookback_secs: num(6)?,
                        window_secs: num(7)?,
                    },
                    operation: r.try_get(1)?,
                    checkpoint: r
                        .try_get::<_, Option<i64>>(8)?
                        .map(|v| wall_clock(v, "checkpoint"))
                        .transpose()?,
                    last_success: r.try_get(9)?,
                    rows_inserted: num(10)?,
                    rows_updated: num(11)?,
                    errors: num(12)?,
                    last_error: r.try_get(13)?,
                    halted: r.try_get(14)?,
                    generation: r.try_get(15)?,
                })
            })
            .collect()
    }

    pub fn mirror_commit(
        &self,
        operation_id: i64,
        rows: &[&Interaction],
        checkpoint: WallClock,
    ) -> StoreResult<MirrorOutcome> {
        let mut conn = self.conn()?;
        let result = (|| -> StoreResult<MirrorOutcome> {
            let upsert = conn.prepared(UPSERT)?;
            let advance = conn.prepared(ADVANCE)?;
            let mut tx = conn.client().transaction()?;
            // Feed positions of this window's rows commit in the order they are drawn.
            super::feed::lock_feed(&mut tx, operation_id)?;
            // The console's counts of the rows about to change (`console.rs`) are taken back
            // first, its state row held so the indexer cannot count them meanwhile.
            let indexed = super::console::lock_index_state(&mut tx, operation_id)?;
            let (mut inserted, mut updated) = (0u64, 0u64);
            // In chunks, in order: each statement's rows sort in memory (`ORDER BY ord` over a
            // whole 60,000-row window would spill to disk past `work_mem`).
            for chunk in rows.chunks(UPSERT_CHUNK) {
                let conn_ids: Vec<&[u8]> = chunk.iter().map(|r| r.conn_id.as_bytes()).collect();
                let ts: Vec<i64> = chunk.iter().map(|r| r.date.as_i64()).collect();
                let lens = chunk
                    .iter()
                    .map(|r| i32::try_from(r.json.len()))
                    .collect::<Result<Vec<i32>, _>>()
                    .map_err(|_| StoreError::Corrupt("record larger than 2 GiB".into()))?;
                let jsons: Vec<&[u8]> = chunk.iter().map(|r| r.json.as_slice()).collect();
                tx.execute(
                    super::console::UNCOUNT_REPLACED,
                    &[&operation_id, &conn_ids, &ts, &lens, &jsons, &indexed],
                )?;
                let counts =
                    tx.query_one(&upsert, &[&operation_id, &conn_ids, &ts, &lens, &jsons])?;
                inserted += counts.try_get::<_, i64>(0)?.max(0) as u64;
                updated += counts.try_get::<_, i64>(1)?.max(0) as u64;
            }
            let n = tx.execute(
                &advance,
                &[
                    &operation_id,
                    &checkpoint.as_i64(),
                    &now_utc(),
                    &(inserted as i64),
                    &(updated as i64),
                ],
            )?;
            if n != 1 {
                // Removed while running: nothing of the window is kept (rolled back on drop).
                return Err(StoreError::NotAMirror(operation_id));
            }
            tx.commit()?;
            Ok(MirrorOutcome {
                inserted,
                updated,
                unchanged: (rows.len() as u64).saturating_sub(inserted + updated),
            })
        })();
        if matches!(result, Err(StoreError::Unavailable(_))) {
            conn.discard();
        }
        result
    }

    pub fn mirror_error(&self, operation_id: i64, error: &str, halt: bool) -> StoreResult<()> {
        let mut conn = self.conn()?;
        conn.client().execute(
            "UPDATE mirrors SET errors = errors + 1, last_error = $2, halted = halted OR $3
              WHERE operation_id = $1",
            &[&operation_id, &bounded_error(error), &halt],
        )?;
        Ok(())
    }
}
