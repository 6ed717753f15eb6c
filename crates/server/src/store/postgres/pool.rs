//! A small bounded pool of blocking `postgres` clients (administration and ingestion), with a
//! per-connection statement cache. Only used on blocking threads.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use postgres::{Client, NoTls, Statement};

use super::CHECKOUT_TIMEOUT;
use crate::store::{StoreError, StoreResult};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops a client where blocking is allowed: its `Drop` talks to the server through the
/// client's own runtime, which must never happen on an async worker thread (it panics). Inside
/// a runtime a plain thread does it (rare: broken connections, shutdown).
fn dispose(client: Client) {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::spawn(move || drop(client));
    } else {
        drop(client);
    }
}

pub(super) struct Pool {
    config: postgres::Config,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Pooled>,
    open: usize,
}

struct Pooled {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A connection checked out of a pool; goes back when dropped (or is closed when `discard`ed).
pub(super) struct Conn {
    pooled: Option<Pooled>,
    pool: Arc<Pool>,
    reusable: bool,
}

impl Pool {
    pub(super) fn new(config: postgres::Config, max: usize) -> Arc<Self> {
        Arc::new(Self {
            config,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    pub(super) fn get(self: &Arc<Self>) -> StoreResult<Conn> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut st = lock(&self.state);
        loop {
            if let Some(p) = st.idle.pop() {
                if p.client.is_closed() {
                    st.open -= 1;
                    drop(st);
                    dispose(p.client);
                    st = lock(&self.state);
                    continue;
                }
                return Ok(self.wrap(p));
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(self.wrap(Pooled {
                        client,
                        statements: HashMap::new(),
                    })),
                    Err(e) => {
                        lock(&self.state).open -= 1;
                        self.freed.notify_one();
                        Err(StoreError::Unavailable(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy);
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn wrap(self: &Arc<Self>, pooled: Pooled) -> Conn {
        Conn {
            pooled: Some(pooled),
            pool: self.clone(),
            reusable: true,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut lock(&self.state).idle);
        for p in idle {
            dispose(p.client);
        }
    }
}

impl Conn {
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.pooled.as_mut().expect("held until dropped").client
    }

    /// A prepared statement for `sql`, cached on this connection.
    pub(super) fn prepared(&mut self, sql: &'static str) -> StoreResult<Statement> {
        let p = self.pooled.as_mut().expect("held until dropped");
        if let Some(s) = p.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = p.client.prepare(sql)?;
        p.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Closes this connection instead of reusing it (its session state is unknown).
    pub(super) fn discard(&mut self) {
        self.reusable = false;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(p) = self.pooled.take() else { return };
        let mut st = lock(&self.pool.state);
        if self.reusable && !p.client.is_closed() {
            st.idle.push(p);
            drop(st);
        } else {
            // A connection lost while in use (the server restarted, or terminated its
            // sessions): the idle ones opened before it are most likely lost too, and a blocking
            // client only notices when next used — one failed request each after the database
            // is back. Close them all now; new ones are opened on demand.
            let stale = if p.client.is_closed() {
                std::mem::take(&mut st.idle)
            } else {
                Vec::new()
            };
            st.open -= 1 + stale.len();
            drop(st);
            dispose(p.client);
            for s in stale {
                dispose(s.client);
            }
        }
        self.pool.freed.notify_all();
    }
}
