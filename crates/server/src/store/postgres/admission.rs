//! PostgreSQL admission: a request's concurrency slot (a session advisory lock held by the
//! slot guard) and daily use (one atomic upsert), decided in one statement on a lock
//! connection together with a poll-sized report's first rows (docs/adr/0003-limits-in-postgres.md).

use futures_util::StreamExt;

use super::PgStore;
use super::async_pool::AsyncConn;
use super::report::{SMALL_ROWS, SmallRows};
use crate::store::admission::{AdmitRequest, Admitted, HeadReceiver, Refused, SlotGuard};
use crate::store::{ReportQuery, StoreError, StoreResult};

impl PgStore {
    // The calls a request makes on a lock connection run as tasks of their own: a
    // request dropped mid-statement (its client gone, a shutdown) must not drop a connection
    // whose session may already hold a slot's lock — the task finishes, and the slot it
    // returns to nobody is released by `PgSlot`'s `Drop` as usual.

    /// Both limits of a request in one statement on a lock connection — a slot, then a use —
    /// and, with a report `q`, the window's first rows when the use was counted (ADR 0003).
    /// A slot taken for a request refused by the daily limit is freed before this returns.
    pub(crate) async fn admit(
        &self,
        req: AdmitRequest,
        q: Option<ReportQuery>,
    ) -> StoreResult<Result<Admitted, Refused>> {
        let me = self.clone();
        let AdmitRequest {
            token,
            day,
            daily_limit,
            max_slots,
        } = req;
        let found =
            detached(async move { me.admit_now(token, max_slots, day, daily_limit, q).await })
                .await?;
        Ok(match found {
            Admission::NoSlot => Err(Refused::Simultaneous),
            Admission::LimitExceeded(slot) => {
                // Freed before the refusal is answered, like a finished answer's slot.
                let _ = slot.release().await;
                Err(Refused::DailyLimit)
            }
            Admission::Admitted { slot, used, report } => Ok(Admitted {
                slot: SlotGuard::database(slot),
                used,
                head: report,
            }),
        })
    }

    /// Takes one of `max` concurrency slots of a token for as long as the returned guard lives:
    /// a session advisory lock `(token_id, k)` on a connection the guard holds.
    pub(crate) async fn take_slot(
        &self,
        token_id: i64,
        max: u32,
    ) -> StoreResult<Option<SlotGuard>> {
        let me = self.clone();
        let slot = detached(async move { me.take_slot_now(token_id, max).await }).await?;
        Ok(slot.map(SlotGuard::database))
    }

    /// Both limits of a request in one statement on a lock connection: takes one of `max`
    /// slots, and only if one was free counts a use against `limit`. With a report `q`, the
    /// same statement also reads the window's first `SMALL_ROWS + 1` rows when (and only when)
    /// the use was counted: a poll-sized answer costs no other statement; a larger window then
    /// streams from a report connection as [`start_report`](Self::start_report) does.
    async fn admit_now(
        &self,
        token_id: i64,
        max: u32,
        day: i64,
        limit: u64,
        q: Option<ReportQuery>,
    ) -> StoreResult<Admission> {
        if limit == 0 {
            return Ok(match self.take_slot_now(token_id, max).await? {
                Some(slot) => Admission::LimitExceeded(slot),
                None => Admission::NoSlot,
            });
        }
        let key = slot_key(token_id)?;
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        let limit = limit.min(i64::MAX as u64) as i64;
        // Without a report, `LIMIT 0` reads no row.
        let (op, ini, end, first) = match &q {
            Some(q) => (
                q.operation_id,
                q.window.ini().as_i64(),
                q.window.end().as_i64(),
                SMALL_ROWS as i64 + 1,
            ),
            None => (0, 0, 0, 0),
        };
        let mut conn = self.inner.locks.get().await?;
        // `slot` is referenced twice, so it is evaluated once; the insert runs only when it
        // yields a row. Lock connections commit without waiting for the WAL flush (ADR 0003).
        let read = async {
            let st = conn.prepared(ADMIT_AND_FIRST_ROWS).await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] =
                [&key, &max, &token_id, &day, &limit, &op, &ini, &end, &first];
            let stream = conn.client().query_raw(&st, params).await?;
            let mut stream = std::pin::pin!(stream);
            let mut admission: Option<(Option<i32>, Option<i64>)> = None;
            let mut rows = SmallRows::default();
            while let Some(row) = stream.next().await {
                let row = row?;
                match row.try_get::<_, Option<&[u8]>>(2)? {
                    None => admission = Some((row.try_get(0)?, row.try_get(1)?)),
                    Some(json) => {
                        if !rows.add(json) && admission.is_some() {
                            break; // not poll-sized; the driver skips the rest (≤ 257 rows)
                        }
                    }
                }
            }
            let admission =
                admission.ok_or_else(|| StoreError::Corrupt("admission row missing".into()))?;
            StoreResult::Ok((admission, rows))
        }
        .await;
        let ((slot, used), rows) = match read {
            Ok(r) => r,
            Err(e) => {
                conn.discard(); // whatever the session holds dies with it
                return Err(e);
            }
        };
        Ok(match (slot, used) {
            (None, _) => Admission::NoSlot,
            (Some(k), None) => Admission::LimitExceeded(PgSlot::new(conn, key, k)),
            (Some(k), Some(n)) => Admission::Admitted {
                slot: PgSlot::new(conn, key, k),
                used: n.max(0) as u64,
                report: q.map(|q| match rows.overflowed {
                    true => self.spawn_report(q, false),
                    false => rows.answer(q),
                }),
            },
        })
    }

    /// Takes one of `max` concurrency slots of a token for as long as the returned guard lives:
    /// a session advisory lock `(token_id, k)` on a connection the guard holds.
    async fn take_slot_now(&self, token_id: i64, max: u32) -> StoreResult<Option<PgSlot>> {
        let key = slot_key(token_id)?;
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        if max == 0 {
            return Ok(None);
        }
        let mut conn = self.inner.locks.get().await?;
        // Rows are pulled one by one and LIMIT stops at the first lock obtained: at most one.
        let found = async {
            let st = conn
                .prepared(
                    "SELECT k FROM generate_series(0, $2 - 1) AS k
                     WHERE pg_try_advisory_lock($1, k) LIMIT 1",
                )
                .await?;
            Ok(conn.client().query_opt(&st, &[&key, &max]).await?)
        }
        .await;
        match found {
            Ok(Some(row)) => match row.try_get::<_, i32>(0) {
                Ok(k) => Ok(Some(PgSlot::new(conn, key, k))),
                Err(e) => {
                    conn.discard();
                    Err(e.into())
                }
            },
            Ok(None) => Ok(None),
            Err(e) => {
                conn.discard();
                Err(e)
            }
        }
    }
}

/// Admission (slot, then use) and the window's first rows, in one statement. The first branch
/// yields exactly one row with a NULL json (stored json is never NULL); the rows are read only
/// when a slot was taken and a use counted (`counted` is not empty).
const ADMIT_AND_FIRST_ROWS: &str = "
WITH slot AS (
    SELECT k FROM generate_series(0, $2 - 1) AS k
     WHERE pg_try_advisory_lock($1, k) LIMIT 1
), counted AS (
    INSERT INTO token_usage(token_id, day, used) SELECT $3, $4, 1 FROM slot
    ON CONFLICT (token_id, day) DO UPDATE SET used = token_usage.used + 1
    WHERE token_usage.used < $5
    RETURNING used
)
SELECT (SELECT k FROM slot), (SELECT used FROM counted), NULL::bytea
UNION ALL
(SELECT NULL, NULL, json FROM interactions
  WHERE operation_id = $6 AND local_ts BETWEEN $7 AND $8 AND EXISTS (SELECT 1 FROM counted)
  ORDER BY local_ts, seq
  LIMIT $9)";

/// Runs `f` as a task of its own and waits for it: dropping the waiter does not cancel `f`.
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    tokio::spawn(f)
        .await
        .map_err(|e| StoreError::TaskFailed(format!("database task failed: {e}")))?
}

/// The advisory-lock key of a token's slots (two-int4 key space).
fn slot_key(token_id: i64) -> StoreResult<i32> {
    i32::try_from(token_id)
        .map_err(|_| StoreError::Corrupt(format!("token id {token_id} exceeds int4")))
}

/// What one admission statement found.
enum Admission {
    /// Every slot of the token is held.
    NoSlot,
    /// A slot was free but the daily limit is used up (the slot is freed when this drops).
    LimitExceeded(PgSlot),
    /// Admitted: the held slot, the uses today (this one included) and, when a report was
    /// asked for, where its head arrives.
    Admitted {
        slot: PgSlot,
        used: u64,
        report: Option<HeadReceiver>,
    },
}

/// A held concurrency slot: a pooled connection whose session owns one advisory lock. Dropping
/// it unlocks (in a task) and returns the connection to the pool; if that fails the connection
/// is closed, which frees the lock too.
pub(crate) struct PgSlot {
    conn: Option<AsyncConn>,
    /// The advisory lock `(token key, k)` this slot's session holds.
    lock: (i32, i32),
}

impl std::fmt::Debug for PgSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSlot")
    }
}

impl PgSlot {
    fn new(conn: AsyncConn, key: i32, k: i32) -> Self {
        Self {
            conn: Some(conn),
            lock: (key, k),
        }
    }

    /// Unlocks in a task; the handle completes once every replica sees the slot free. Needs a
    /// Tokio runtime.
    pub(crate) fn release(mut self) -> tokio::task::JoinHandle<()> {
        let conn = self.conn.take();
        tokio::spawn(unlock(conn, self.lock))
    }
}

/// Frees the slot's lock with a prepared statement (no parsing per request) and returns the
/// connection to the pool; on any surprise the connection is closed instead, which frees
/// whatever its session holds.
async fn unlock(conn: Option<AsyncConn>, (key, k): (i32, i32)) {
    let Some(mut conn) = conn else { return };
    let unlocked = async {
        let st = conn.prepared("SELECT pg_advisory_unlock($1, $2)").await?;
        let row = conn.client().query_one(&st, &[&key, &k]).await?;
        StoreResult::Ok(row.try_get::<_, bool>(0)?)
    }
    .await;
    if !matches!(unlocked, Ok(true)) {
        conn.discard();
    }
}

impl Drop for PgSlot {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(unlock(Some(conn), self.lock));
            }
            // No runtime to unlock with: closing the session frees the lock.
            Err(_) => conn.discard(),
        }
    }
}
