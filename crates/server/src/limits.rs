//! The per-token limits of SPEC §4 that live in the server process: concurrency slots and the
//! daily use counter.
//!
//! Slots are in memory: a [`SlotGuard`] is moved into the response body so the slot is held
//! until the last byte is written or the client goes away. Daily counts are decided in memory
//! (atomic with the check) and written behind to the store every second and at shutdown, so a
//! restart keeps them; a crash can forget at most the last second of uses. This is the SQLite,
//! single-process design; see docs/adr/0002-limits-in-process.md.
//!
//! On PostgreSQL both limits live in the database so they hold across replicas
//! (docs/adr/0003-limits-in-postgres.md): [`Slots::acquire`] takes a session advisory lock held
//! by the guard, and [`DailyUsage::try_consume`] is one atomic upsert; nothing is written behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::store::{
    Admission, PgSlot, PgStore, ReportQuery, ReportRefusal, ReportStream, Store, StoreResult,
};

/// Concurrency slots per token.
#[derive(Debug)]
pub struct Slots {
    max: u32,
    held: Mutex<HashMap<i64, u32>>,
}

/// One held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    _held: Held,
}

/// What a guard holds; each variant frees its slot in its own `Drop`.
#[derive(Debug)]
#[allow(dead_code)] // held only to be dropped
enum Held {
    Memory(MemorySlot),
    /// A session advisory lock in PostgreSQL, released when the guard drops.
    Database(Box<PgSlot>),
}

#[derive(Debug)]
struct MemorySlot {
    slots: Arc<Slots>,
    token: i64,
}

impl Slots {
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Takes a slot for `token`, or `None` when `max` are already held.
    pub fn try_acquire(self: &Arc<Self>, token: i64) -> Option<SlotGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(token).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SlotGuard {
            _held: Held::Memory(MemorySlot {
                slots: self.clone(),
                token,
            }),
        })
    }

    /// Takes a slot for `token` where the backend keeps them: in this process on SQLite, in
    /// the database (shared by every replica) on PostgreSQL. `None` when `max` are held.
    pub async fn acquire(
        self: &Arc<Self>,
        store: &Store,
        token: i64,
    ) -> StoreResult<Option<SlotGuard>> {
        match store {
            Store::Postgres(pg) => {
                let max = self.max;
                let slot = pg.take_slot(token, max).await?;
                Ok(slot.map(|s| SlotGuard {
                    _held: Held::Database(Box::new(s)),
                }))
            }
            Store::Sqlite(_) => Ok(self.try_acquire(token)),
        }
    }

    /// Slots currently held by `token`.
    pub fn held(&self, token: i64) -> u32 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&token).copied().unwrap_or(0)
    }
}

impl SlotGuard {
    /// Frees the slot now. In memory that is done on return; in the database the returned
    /// handle completes once the unlock is done, so awaiting it before the last byte of an
    /// answer goes out means a client's next request never finds its own previous slot held.
    pub fn release(self) -> Option<tokio::task::JoinHandle<()>> {
        match self._held {
            Held::Memory(m) => {
                drop(m);
                None
            }
            Held::Database(pg) => Some(pg.release()),
        }
    }
}

impl Drop for MemorySlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.token);
            }
        }
    }
}

/// Why [`admit`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// All concurrency slots of the token are held.
    Simultaneous,
    /// The daily limit is used up.
    DailyLimit,
}

/// Both per-token checks of an admitted request, in the contract's order: a concurrency slot,
/// then one use against the daily limit (counted only when a slot was free). On PostgreSQL the
/// two are one round trip.
pub async fn admit(
    slots: &Arc<Slots>,
    usage: &DailyUsage,
    store: &Store,
    token: i64,
    day: i64,
    limit: u64,
) -> StoreResult<Result<(SlotGuard, u64), Refused>> {
    if let Store::Postgres(pg) = store {
        let admitted = in_database(pg, slots, token, day, limit, None).await?;
        return Ok(admitted.map(|(slot, used, _)| (slot, used)));
    }
    let Some(slot) = slots.acquire(store, token).await? else {
        return Ok(Err(Refused::Simultaneous));
    };
    Ok(match usage.try_consume(store, token, day, limit).await? {
        Ok(used) => Ok((slot, used)),
        Err(LimitExceeded) => Err(Refused::DailyLimit),
    })
}

/// Where a report's head (or its refusal) arrives.
pub type HeadReceiver = oneshot::Receiver<Result<ReportStream, ReportRefusal>>;

/// A report request admitted: its slot, today's uses (this one included) and where the
/// answer's head arrives.
pub type AdmittedReport = (SlotGuard, u64, HeadReceiver);

/// [`admit`], then the report `q`. On PostgreSQL both happen in one statement when the window
/// is poll-sized (`PgStore::admit`); the order of checks is the same.
pub async fn admit_report(
    slots: &Arc<Slots>,
    usage: &DailyUsage,
    store: &Store,
    token: i64,
    day: i64,
    limit: u64,
    q: ReportQuery,
) -> StoreResult<Result<AdmittedReport, Refused>> {
    if let Store::Postgres(pg) = store {
        let admitted = in_database(pg, slots, token, day, limit, Some(q)).await?;
        return Ok(admitted.map(|(slot, used, report)| {
            (slot, used, report.unwrap_or_else(|| pg.start_report(q)))
        }));
    }
    Ok(admit(slots, usage, store, token, day, limit)
        .await?
        .map(|(slot, used)| (slot, used, store.start_report(q))))
}

/// Both limits decided by PostgreSQL in one statement (ADR 0003), with the report's first rows
/// when `q` is given.
async fn in_database(
    pg: &PgStore,
    slots: &Slots,
    token: i64,
    day: i64,
    limit: u64,
    q: Option<ReportQuery>,
) -> StoreResult<Result<(SlotGuard, u64, Option<HeadReceiver>), Refused>> {
    Ok(match pg.admit(token, slots.max, day, limit, q).await? {
        Admission::NoSlot => Err(Refused::Simultaneous),
        Admission::LimitExceeded(slot) => {
            // Freed before the refusal is answered, like a finished answer's slot.
            let _ = slot.release().await;
            Err(Refused::DailyLimit)
        }
        Admission::Admitted { slot, used, report } => Ok((
            SlotGuard {
                _held: Held::Database(Box::new(slot)),
            },
            used,
            report,
        )),
    })
}

#[derive(Debug, Clone, Copy)]
struct Count {
    used: u64,
    dirty: bool,
}

/// Daily use counts per `(token, operation-local day)`.
#[derive(Debug, Default)]
pub struct DailyUsage {
    counts: Mutex<HashMap<(i64, i64), Count>>,
}

/// The daily limit is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded;

impl DailyUsage {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Count>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one use if the limit allows it; returns the uses so far today, this one included.
    pub async fn try_consume(
        &self,
        store: &Store,
        token: i64,
        day: i64,
        limit: u64,
    ) -> StoreResult<Result<u64, LimitExceeded>> {
        if let Store::Postgres(pg) = store {
            // One atomic statement: every replica sees the same count.
            let used = pg.consume_daily(token, day, limit).await?;
            return Ok(used.ok_or(LimitExceeded));
        }
        let known = self.lock().contains_key(&(token, day));
        if !known {
            let persisted = store.blocking(move |s| s.token_usage(token, day)).await?;
            self.lock().entry((token, day)).or_insert(Count {
                used: persisted,
                dirty: false,
            });
        }
        let mut counts = self.lock();
        let c = counts.get_mut(&(token, day)).expect("entry inserted above");
        if c.used >= limit {
            return Ok(Err(LimitExceeded));
        }
        c.used += 1;
        c.dirty = true;
        Ok(Ok(c.used))
    }

    /// Writes changed counts to the store. Entries of days long past are dropped afterwards.
    pub async fn flush(&self, store: &Store) -> StoreResult<()> {
        let dirty: Vec<(i64, i64, u64)> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(&(t, d), c)| (t, d, c.used))
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let rows = dirty.clone();
        store.blocking(move |s| s.save_usage(&rows)).await?;
        let oldest_kept = oldest_current_day();
        let mut counts = self.lock();
        for (t, d, used) in dirty {
            if let Some(c) = counts.get_mut(&(t, d))
                && c.used == used
            {
                c.dirty = false;
            }
        }
        counts.retain(|&(_, day), c| c.dirty || day >= oldest_kept);
        Ok(())
    }
}

/// No time zone is more than 14 hours from UTC, so every operation's "today" is at least the
/// UTC date of yesterday.
fn oldest_current_day() -> i64 {
    let y = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    crate::domain::WallClock::from_naive(y.and_hms_opt(0, 0, 0).expect("midnight")).day()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_freed_when_guards_drop() {
        let slots = Slots::new(2);
        let a = slots.try_acquire(1).unwrap();
        let _b = slots.try_acquire(1).unwrap();
        assert!(slots.try_acquire(1).is_none());
        assert!(
            slots.try_acquire(2).is_some(),
            "other tokens are independent"
        );
        drop(a);
        assert_eq!(slots.held(1), 1);
        assert!(slots.try_acquire(1).is_some());
    }
}
