//! PostgreSQL admission: a request's concurrency slot (a session advisory lock held by a lock
//! keeper's session, `keeper.rs`) and daily use (one atomic upsert), decided in one statement
//! on the keeper's connection together with a poll-sized report's first rows
//! (docs/adr/0003-limits-in-postgres.md, docs/adr/0004-lock-keeper.md).

use std::sync::Arc;

use futures_util::StreamExt;

use super::PgStore;
use super::keeper::Session;
use super::report::{SMALL_ROWS, SmallRows};
use crate::store::admission::{AdmitRequest, Admitted, HeadReceiver, Refused, SlotGuard};
use crate::store::{ReportQuery, StoreError, StoreResult};

impl PgStore {
    // The calls a request makes on a keeper run as tasks of their own: a request dropped
    // mid-statement (its client gone, a shutdown) must not lose track of a lock the statement
    // may take — the task finishes, and the slot it returns to nobody is released by
    // `PgSlot`'s `Drop` as usual.

    /// Both limits of a request in one statement on the token's keeper — a slot, then a use —
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
    /// a session advisory lock `(token_id, k)` held by the token's keeper.
    pub(crate) async fn take_slot(
        &self,
        token_id: i64,
        max: u32,
    ) -> StoreResult<Option<SlotGuard>> {
        let me = self.clone();
        let slot = detached(async move { me.take_slot_now(token_id, max).await }).await?;
        Ok(slot.map(SlotGuard::database))
    }

    /// Both limits of a request in one statement on the token's keeper: takes one of `max`
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
        let keeper = self.inner.keepers.of(key);
        let session = keeper.session().await?;
        let slots = session.token(key);
        let mut handed = slots.lock().await;
        // `slot` is referenced twice, so it is evaluated once; the insert runs only when it
        // yields a row. Keeper connections commit without waiting for the WAL flush (ADR 0003).
        let read = async {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
                &key, &max, &token_id, &day, &limit, &op, &ini, &end, &first, &*handed,
            ];
            let stream = session.client().query_raw(&session.admit, params).await?;
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
                session.undo(key, max, &handed).await;
                drop(handed);
                failed(keeper, &session, &e).await;
                return Err(e);
            }
        };
        let Some(k) = slot else {
            return Ok(Admission::NoSlot);
        };
        handed.push(k);
        drop(handed);
        let slot = PgSlot::new(session, key, k);
        Ok(match used {
            None => Admission::LimitExceeded(slot),
            Some(n) => Admission::Admitted {
                slot,
                used: n.max(0) as u64,
                report: q.map(|q| match rows.overflowed {
                    true => self.spawn_report(q, false),
                    false => rows.answer(q),
                }),
            },
        })
    }

    /// Takes one of `max` concurrency slots of a token for as long as the returned guard lives:
    /// a session advisory lock `(token_id, k)` held by the token's keeper.
    async fn take_slot_now(&self, token_id: i64, max: u32) -> StoreResult<Option<PgSlot>> {
        let key = slot_key(token_id)?;
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        if max == 0 {
            return Ok(None);
        }
        let keeper = self.inner.keepers.of(key);
        let session = keeper.session().await?;
        let slots = session.token(key);
        let mut handed = slots.lock().await;
        let found = async {
            let row = session
                .client()
                .query_opt(&session.take, &[&key, &max, &*handed])
                .await?;
            row.map(|r| r.try_get::<_, i32>(0))
                .transpose()
                .map_err(StoreError::from)
        }
        .await;
        match found {
            Ok(Some(k)) => {
                handed.push(k);
                drop(handed);
                Ok(Some(PgSlot::new(session, key, k)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                session.undo(key, max, &handed).await;
                drop(handed);
                failed(keeper, &session, &e).await;
                Err(e)
            }
        }
    }
}

/// After a failed admission statement: a session that answered "read-only" is retired, so the
/// next admission opens one that sees the database writable again (no restart needed).
async fn failed(keeper: &super::keeper::Keeper, session: &Arc<Session>, e: &StoreError) {
    if matches!(e, StoreError::ReadOnly(_)) {
        keeper.retire(session).await;
    }
}

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

/// A held concurrency slot: one advisory lock in a keeper's session. Dropping it unlocks (in a
/// task); if that fails the session is ended, which frees the lock too.
pub(crate) struct PgSlot {
    session: Option<Arc<Session>>,
    /// The advisory lock `(token key, k)` the keeper's session holds.
    lock: (i32, i32),
}

impl std::fmt::Debug for PgSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSlot")
    }
}

impl PgSlot {
    fn new(session: Arc<Session>, key: i32, k: i32) -> Self {
        Self {
            session: Some(session),
            lock: (key, k),
        }
    }

    /// Unlocks in a task; the handle completes once every replica sees the slot free. Needs a
    /// Tokio runtime.
    pub(crate) fn release(mut self) -> tokio::task::JoinHandle<()> {
        let session = self.session.take();
        let (key, k) = self.lock;
        tokio::spawn(async move {
            if let Some(s) = session {
                s.release(key, k).await;
            }
        })
    }

    /// Completes when the slot is lost: its keeper's session died, so PostgreSQL no longer
    /// holds the lock and the holder must stop (fail closed).
    pub(crate) fn lost(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.session.as_ref().map(|s| s.lost())
    }

    /// Whether the slot is lost already (see [`lost`](Self::lost)).
    pub(crate) fn is_lost(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.is_lost())
    }
}

impl Drop for PgSlot {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let (key, k) = self.lock;
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(session.release(key, k));
            }
            // No runtime to unlock with: ending the session frees the lock.
            Err(_) => session.kill(),
        }
    }
}
