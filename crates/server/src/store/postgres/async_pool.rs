//! An async connection pool for the PostgreSQL hot path (tokio-postgres on the server's own
//! runtime): reports (the lock keepers, `keeper.rs`, hold their own sessions).
//!
//! The blocking `postgres` client (used for administration and ingestion) runs a private
//! runtime per connection, so every query it makes on behalf of a request costs two thread
//! hand-offs plus a `spawn_blocking` hop; at poll rates those context switches were most of a
//! poll's CPU. Here a query is a future on the request's own worker thread, and the socket is
//! driven by a task on the same runtime.
//!
//! Connections open lazily, at most `max` at once; a caller waits up to
//! [`CHECKOUT_TIMEOUT`](super::CHECKOUT_TIMEOUT) for one, then gets `Busy`. A connection whose session
//! state is unknown is `discard`ed (closed) rather than reused. A connection made inside one
//! runtime dies with it; the pool notices (`is_closed`) and opens a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

use crate::store::{StoreError, StoreResult};

pub(crate) struct AsyncPool {
    config: tokio_postgres::Config,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Pooled>>,
    checkout_timeout: Duration,
}

struct Pooled {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A connection checked out of an [`AsyncPool`]; goes back when dropped unless `discard`ed.
pub(crate) struct AsyncConn {
    pooled: Option<Pooled>,
    pool: Arc<AsyncPool>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl AsyncPool {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        max: usize,
        checkout_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle: Mutex::new(Vec::new()),
            checkout_timeout,
        })
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open.
    pub(crate) async fn get(self: &Arc<Self>) -> StoreResult<AsyncConn> {
        let permit =
            tokio::time::timeout(self.checkout_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| StoreError::Busy)?
                .map_err(|_| StoreError::Busy)?;
        let reused = loop {
            let next = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match next {
                Some(p) if p.client.is_closed() => continue,
                other => break other,
            }
        };
        let pooled = match reused {
            Some(p) => p,
            None => {
                // Whatever refused the connection, the database cannot be reached.
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(StoreError::Unavailable)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "PostgreSQL connection ended");
                    }
                });
                Pooled {
                    client,
                    statements: HashMap::new(),
                }
            }
        };
        Ok(AsyncConn {
            pooled: Some(pooled),
            pool: self.clone(),
            reusable: true,
            _permit: permit,
        })
    }
}

impl AsyncConn {
    pub(crate) fn client(&self) -> &Client {
        &self.pooled.as_ref().expect("held until dropped").client
    }

    pub(crate) fn client_mut(&mut self) -> &mut Client {
        &mut self.pooled.as_mut().expect("held until dropped").client
    }

    /// A prepared statement for `sql`, cached on this connection.
    pub(crate) async fn prepared(&mut self, sql: &'static str) -> StoreResult<Statement> {
        let p = self.pooled.as_mut().expect("held until dropped");
        if let Some(s) = p.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = p.client.prepare(sql).await?;
        p.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Closes this connection instead of reusing it (its session state is unknown).
    pub(crate) fn discard(&mut self) {
        self.reusable = false;
    }
}

impl Drop for AsyncConn {
    fn drop(&mut self) {
        let Some(p) = self.pooled.take() else { return };
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if self.reusable && !p.client.is_closed() {
            idle.push(p);
        } else if p.client.is_closed() {
            // Lost while in use: the idle connections opened before it most likely are too.
            idle.clear();
        }
        // Otherwise dropping the client closes the session (and frees its advisory locks).
    }
}
