//! The lock keepers: a few long-lived PostgreSQL sessions that own the concurrency slots
//! (session advisory locks) of every in-flight request of this replica
//! (docs/adr/0004-lock-keeper.md).
//!
//! A request holds no connection while its answer or upload waits on a slow peer: its slot is a
//! lock in a keeper's session, taken and released by short statements pipelined on that one
//! connection. A token's slots always live in the same keeper (`key` modulo the number of
//! keepers), so one session decides among them.
//!
//! Advisory locks are re-entrant per session: `pg_try_advisory_lock(key, k)` succeeds again in
//! the session that already holds `(key, k)`. A session therefore remembers which `k` of each
//! token it has handed out ([`TokenSlots`]); admissions of one token in one session are
//! serialised by that record's mutex and never try a `k` it holds.
//!
//! A keeper session that dies (connection lost, backend terminated) frees every lock it held —
//! as a killed replica's does — so its slots are *lost*: their holders learn it through
//! [`Session::lost`] and fail closed (a report body is cut, an upload refused); the next
//! admission opens a new session. A session that answers "read-only" is *retired*: new
//! admissions open a fresh one (which sees the database's current setting), the old one lives
//! until its last slot is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_postgres::{Client, NoTls, Statement};

use crate::store::{StoreError, StoreResult};

/// Admission (slot, then use) and the window's first rows, in one statement. The first branch
/// yields exactly one row with a NULL json (stored json is never NULL); the rows are read only
/// when a slot was taken and a use counted (`counted` is not empty). `$10` lists the slots of
/// the token this session already holds (locks are re-entrant per session); the `CASE` makes
/// sure such a slot is never even tried (PostgreSQL orders plain `AND`ed conditions by cost).
pub(super) const ADMIT_AND_FIRST_ROWS: &str = "
WITH slot AS (
    SELECT k FROM generate_series(0, $2 - 1) AS k
     WHERE CASE WHEN k = ANY($10::int4[]) THEN false ELSE pg_try_advisory_lock($1, k) END
     LIMIT 1
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

/// One slot, no use (ingestion). Rows are pulled one by one and LIMIT stops at the first lock
/// obtained: at most one.
pub(super) const TAKE_SLOT: &str = "
SELECT k FROM generate_series(0, $2 - 1) AS k
 WHERE CASE WHEN k = ANY($3::int4[]) THEN false ELSE pg_try_advisory_lock($1, k) END
 LIMIT 1";

/// Frees one slot.
const UNLOCK: &str = "SELECT pg_advisory_unlock($1, $2)";

/// After a failed statement, frees whatever lock of the token it may have taken: every `k` this
/// session does not hand out (a session-level lock survives the statement's rollback).
const UNDO: &str = "
SELECT count(*) FROM generate_series(0, $2 - 1) AS k
 WHERE CASE WHEN k = ANY($3::int4[]) THEN false ELSE pg_advisory_unlock($1, k) END";

/// The keepers of one replica.
pub(super) struct Keepers {
    shards: Vec<Keeper>,
}

impl Keepers {
    pub(super) fn new(config: tokio_postgres::Config, n: usize) -> Self {
        Self {
            shards: (0..n.max(1))
                .map(|_| Keeper {
                    config: config.clone(),
                    current: tokio::sync::Mutex::new(None),
                })
                .collect(),
        }
    }

    /// The keeper of a token's slots.
    pub(super) fn of(&self, key: i32) -> &Keeper {
        &self.shards[key.rem_euclid(self.shards.len() as i32) as usize]
    }
}

/// One keeper: its current session, opened on demand.
pub(super) struct Keeper {
    config: tokio_postgres::Config,
    current: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl Keeper {
    /// The live session, or a new one (opened once for all waiters).
    pub(super) async fn session(&self) -> StoreResult<Arc<Session>> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref()
            && !s.is_lost()
        {
            return Ok(s.clone());
        }
        *current = None;
        let s = Session::open(&self.config).await?;
        *current = Some(s.clone());
        Ok(s)
    }

    /// New admissions go to a fresh session; `s` lives on until its last slot is released.
    pub(super) async fn retire(&self, s: &Arc<Session>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, s)) {
            *current = None;
        }
    }
}

/// The `k`s of one token this session has handed out; its mutex serialises the token's
/// admissions and releases in this session.
pub(super) type TokenSlots = Arc<tokio::sync::Mutex<Vec<i32>>>;

/// One keeper connection and the slots handed out from it.
pub(super) struct Session {
    client: Client,
    pub(super) admit: Statement,
    pub(super) take: Statement,
    unlock: Statement,
    undo: Statement,
    held: Mutex<HashMap<i32, TokenSlots>>,
    /// `true` once the session is gone (its locks freed by PostgreSQL).
    lost: watch::Sender<bool>,
    driver: tokio::task::AbortHandle,
}

impl Session {
    async fn open(config: &tokio_postgres::Config) -> StoreResult<Arc<Self>> {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(StoreError::Unavailable)?;
        let (lost, _) = watch::channel(false);
        let on_end = lost.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "lock keeper connection ended");
            }
            on_end.send_replace(true);
        })
        .abort_handle();
        let prepared = async {
            Ok::<_, tokio_postgres::Error>((
                client.prepare(ADMIT_AND_FIRST_ROWS).await?,
                client.prepare(TAKE_SLOT).await?,
                client.prepare(UNLOCK).await?,
                client.prepare(UNDO).await?,
            ))
        }
        .await;
        let (admit, take, unlock, undo) = match prepared {
            Ok(p) => p,
            Err(e) => {
                driver.abort();
                return Err(e.into());
            }
        };
        Ok(Arc::new(Self {
            client,
            admit,
            take,
            unlock,
            undo,
            held: Mutex::new(HashMap::new()),
            lost,
            driver,
        }))
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the session is gone, and every slot it held with it.
    pub(super) fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.client.is_closed()
    }

    /// Completes once the session is gone.
    pub(super) fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.lost.subscribe();
        async move {
            // An error means the session itself was dropped, which only happens once no slot
            // refers to it: nobody waits then.
            let _ = rx.wait_for(|lost| *lost).await;
        }
    }

    /// Ends the session: PostgreSQL frees every lock it held, and its holders fail closed.
    pub(super) fn kill(&self) {
        self.driver.abort();
        self.lost.send_replace(true);
    }

    /// The record of a token's handed-out slots.
    pub(super) fn token(&self, key: i32) -> TokenSlots {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.entry(key).or_default().clone()
    }

    /// Forgets a token's record when no slot of it is handed out and nobody else uses it.
    fn forget_if_idle(&self, key: i32, slots: TokenSlots) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Records are cloned only under this mutex: the map's reference and ours are the last.
        if Arc::strong_count(&slots) == 2
            && slots.try_lock().is_ok_and(|ks| ks.is_empty())
            && held.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slots))
        {
            held.remove(&key);
        }
    }

    /// After a failed statement of the token's admission: frees any lock of the token this
    /// session holds but has not handed out. If even that fails, the session is ended.
    pub(super) async fn undo(&self, key: i32, max: i32, handed: &[i32]) {
        if self.is_lost() {
            return;
        }
        let handed = handed.to_vec();
        if let Err(e) = self
            .client
            .query_one(&self.undo, &[&key, &max, &handed])
            .await
        {
            tracing::warn!(error = %e, "lock keeper could not undo a failed admission; reconnecting");
            self.kill();
        }
    }

    /// Frees slot `(key, k)`: one statement on the keeper's connection. On any surprise the
    /// session is ended, which frees the lock too (and fails its other slots closed).
    pub(super) async fn release(self: Arc<Self>, key: i32, k: i32) {
        let slots = self.token(key);
        {
            let mut ks = slots.lock().await;
            if let Some(i) = ks.iter().position(|x| *x == k) {
                ks.swap_remove(i);
            }
            if !self.is_lost() {
                let unlocked = self.client.query_one(&self.unlock, &[&key, &k]).await;
                match unlocked.map(|r| r.try_get::<_, bool>(0)) {
                    Ok(Ok(true)) => {}
                    other => {
                        tracing::warn!(?other, "lock keeper could not free a slot; reconnecting");
                        self.kill();
                    }
                }
            }
        }
        self.forget_if_idle(key, slots);
    }
}
