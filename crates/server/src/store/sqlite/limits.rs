//! SQLite's per-token limits, held in this process: one server process owns a SQLite database
//! (docs/adr/0002-limits-in-process.md).
//!
//! Slots are in memory: a [`MemorySlot`] inside the request's slot guard is moved into the
//! response body, so the slot is held until the last byte is written or the client goes away.
//! Daily counts are decided in memory (atomic with the check) and written behind to the
//! database by [`SqliteStore::flush_usage`] (every second and at shutdown), so a restart keeps
//! them; a crash can forget at most the last second of uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::SqliteStore;
use crate::store::admission::{AdmitRequest, Admitted, Refused, SlotGuard};
use crate::store::{ReportQuery, StoreError, StoreResult};

/// The slots and daily counts of every token, for one opened database.
#[derive(Debug, Default)]
pub(super) struct Limits {
    slots: Arc<SlotCounts>,
    counts: Mutex<HashMap<(i64, i64), Count>>,
}

/// Slots held per token.
#[derive(Debug, Default)]
struct SlotCounts {
    held: Mutex<HashMap<i64, u32>>,
}

/// One slot held in memory; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct MemorySlot {
    slots: Arc<SlotCounts>,
    token: i64,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    used: u64,
    dirty: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SlotCounts {
    /// Takes a slot for `token`, or `None` when `max` are already held.
    fn try_acquire(self: &Arc<Self>, token: i64, max: u32) -> Option<MemorySlot> {
        let mut held = locked(&self.held);
        let n = held.entry(token).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(MemorySlot {
            slots: self.clone(),
            token,
        })
    }

    #[cfg(test)]
    fn held(&self, token: i64) -> u32 {
        locked(&self.held).get(&token).copied().unwrap_or(0)
    }
}

impl Drop for MemorySlot {
    fn drop(&mut self) {
        let mut held = locked(&self.slots.held);
        if let Some(n) = held.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.token);
            }
        }
    }
}

impl SqliteStore {
    /// A slot, then one use counted against the daily limit (only when a slot was free); for
    /// a report, its producer is started once both passed. No blocking-thread hop except the
    /// first use of a token on a day, which reads the count persisted before.
    pub(crate) async fn admit(
        &self,
        req: AdmitRequest,
        q: Option<ReportQuery>,
    ) -> StoreResult<Result<Admitted, Refused>> {
        let Some(slot) = self.take_slot(req.token, req.max_slots) else {
            return Ok(Err(Refused::Simultaneous));
        };
        // A refused use drops the slot here, before the refusal is answered.
        let Some(used) = self
            .consume_daily(req.token, req.day, req.daily_limit)
            .await?
        else {
            return Ok(Err(Refused::DailyLimit));
        };
        Ok(Ok(Admitted {
            slot,
            used,
            head: q.map(|q| self.start_report(q)),
        }))
    }

    /// Takes one of `max` slots of a token, or `None` when all are held.
    pub(crate) fn take_slot(&self, token: i64, max: u32) -> Option<SlotGuard> {
        self.limits()
            .slots
            .try_acquire(token, max)
            .map(SlotGuard::memory)
    }

    /// Counts one use if `limit` allows it; the uses so far today, this one included, or
    /// `None` when the limit is used up.
    async fn consume_daily(&self, token: i64, day: i64, limit: u64) -> StoreResult<Option<u64>> {
        let limits = self.limits();
        let known = locked(&limits.counts).contains_key(&(token, day));
        if !known {
            let persisted = self.quick(move |s| s.token_usage(token, day)).await?;
            locked(&limits.counts).entry((token, day)).or_insert(Count {
                used: persisted,
                dirty: false,
            });
        }
        let mut counts = locked(&limits.counts);
        let c = counts.get_mut(&(token, day)).expect("entry inserted above");
        if c.used >= limit {
            return Ok(None);
        }
        c.used += 1;
        c.dirty = true;
        Ok(Some(c.used))
    }

    /// Counts one use of a request whose slot is already held; `None` when the daily limit
    /// is used up.
    pub(crate) async fn count_use(&self, req: AdmitRequest) -> StoreResult<Option<u64>> {
        self.consume_daily(req.token, req.day, req.daily_limit)
            .await
    }

    /// Today's count of a token as held in this process, if it was used since the start.
    pub(crate) fn used_in_memory(&self, token: i64, day: i64) -> Option<u64> {
        locked(&self.limits().counts)
            .get(&(token, day))
            .map(|c| c.used)
    }

    /// Writes changed daily counts to the database. Entries of days long past are dropped
    /// afterwards.
    pub(crate) async fn flush_usage(&self) -> StoreResult<()> {
        let limits = self.limits();
        let dirty: Vec<(i64, i64, u64)> = locked(&limits.counts)
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(&(t, d), c)| (t, d, c.used))
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let rows = dirty.clone();
        self.blocking(move |s| s.save_usage(&rows)).await?;
        let oldest_kept = oldest_current_day();
        let mut counts = locked(&limits.counts);
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

    /// Runs a blocking call on this store off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore) -> StoreResult<T> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::TaskFailed(format!("store task failed: {e}")))?
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
        let slots = Arc::new(SlotCounts::default());
        let a = slots.try_acquire(1, 2).unwrap();
        let _b = slots.try_acquire(1, 2).unwrap();
        assert!(slots.try_acquire(1, 2).is_none());
        assert!(
            slots.try_acquire(2, 2).is_some(),
            "other tokens are independent"
        );
        drop(a);
        assert_eq!(slots.held(1), 1);
        assert!(slots.try_acquire(1, 2).is_some());
        assert!(
            slots.try_acquire(3, 0).is_none(),
            "no slot at all when max is 0"
        );
    }
}
