//! The PostgreSQL backend, for several `voxtrail serve` replicas behind one database.
//!
//! Same schema idea as SQLite (docs/adr/0001-stored-json.md): each row keeps its `chat_12`
//! JSON object as `bytea` beside `(operation_id, local_ts, seq)` and a covering `json_len`.
//! Differences that matter:
//! - Migrations are versioned in `schema_migrations` and run under a session advisory lock, so
//!   replicas starting together apply each migration once (`migrations.rs`).
//! - A report reads count, size and rows in one `REPEATABLE READ READ ONLY` transaction; the
//!   rows are streamed as they arrive, and the driver stops reading the socket while the body's
//!   bounded channel is full (memory does not grow with the answer). A poll-sized answer is
//!   one statement (`report.rs`).
//! - Limits hold across replicas (docs/adr/0003-limits-in-postgres.md): a concurrency slot is a
//!   session advisory lock `(token_id, k)` held by one of the replica's lock keepers
//!   (`keeper.rs`, docs/adr/0004-lock-keeper.md; a killed replica's sessions die and free
//!   them), and a daily use is one atomic upsert; a request's admission is one statement on
//!   the keeper (`admission.rs`). A request holds no connection while its peer is slow.
//! - The request hot path (keepers, reports) is async tokio-postgres on the server's
//!   runtime (`async_pool.rs`). Administration (`admin.rs`) and ingestion (`ingest.rs`) use
//!   the blocking `postgres` client (`pool.rs`), which runs its own small runtime per
//!   connection; it is only used on blocking threads, and such a connection is never dropped on
//!   an async worker thread.

mod admin;
mod admission;
mod async_pool;
mod audit;
mod console;
mod digest;
pub(crate) mod feed;
mod ingest;
mod keeper;
mod migrations;
mod mirror;
mod pool;
mod report;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_pool::AsyncPool;
use keeper::Keepers;
use pool::{Conn, Pool};

use super::{StoreError, StoreResult};

pub(crate) use admission::PgSlot;
pub use ingest::PgIngest;
pub use mirror::PgMirrorLease;

/// Default connections per pool (queries, reports).
const DEFAULT_POOL_SIZE: usize = 16;
/// Lock keeper sessions per replica (at most `pool_size`): a token's slots live in one of them.
const KEEPERS: usize = 4;
/// How long a caller waits for a free pooled connection before "busy, try again".
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------------

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    display: String,
    /// Queries, reports and ingestion.
    pool: Arc<Pool>,
    /// Reports, on the server's runtime (`async_pool.rs`).
    reports: Arc<AsyncPool>,
    /// The sessions that own the concurrency slots' advisory locks (`keeper.rs`): a request
    /// holds no connection while it waits on its peer.
    keepers: Keepers,
    /// Streamed answers in progress per operation: at most [`report_share`] of the report pool
    /// each, so one operation's slow readers cannot hold every report connection.
    streaming: report::Shares,
    /// For the dedicated connection of each mirror lease (`mirror.rs`), outside the pools.
    mirror_config: tokio_postgres::Config,
    /// Rows the console's indexer took since it last analysed its tables (`console.rs`).
    console_unanalyzed: std::sync::atomic::AtomicU64,
}

/// Splits voxtrail's own `pool_size=N` parameter off a URL; the rest goes to the driver.
fn split_pool_size(url: &str) -> StoreResult<(String, usize)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_POOL_SIZE));
    };
    let mut size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size", v)) => {
                size = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| StoreError::BadUrl(format!("pool_size={v}")))?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, size))
}

impl PgStore {
    /// Connects, then applies pending migrations (serialised across replicas).
    pub fn open(url: &str) -> StoreResult<Self> {
        let (driver_url, size) = split_pool_size(url)?;
        let mut config = postgres::Config::from_str(&driver_url)
            .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("voxtrail");
        }
        config.connect_timeout(Duration::from_secs(10));
        let display = describe(&config);
        let mut async_config = tokio_postgres::Config::from_str(&driver_url)
            .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
        if async_config.get_application_name().is_none() {
            async_config.application_name("voxtrail");
        }
        async_config.connect_timeout(Duration::from_secs(10));
        // The hot path's statements are prepared once per connection and their generic plans
        // are as good as custom ones (index range scans on parameters): never re-plan them per
        // execution. Lock connections only take slots, count uses and read poll-sized
        // answers: their commits need not wait for the WAL flush (docs/adr/0003).
        let with_options = |extra: &str| {
            let mut c = async_config.clone();
            match async_config.get_options() {
                Some(o) => c.options(format!("{o} {extra}")),
                None => c.options(extra),
            };
            c
        };
        let report_config = with_options("-c plan_cache_mode=force_generic_plan");
        // No parallel plans on keeper connections: the admission row of ADMIT_AND_FIRST_ROWS
        // must come before the rows (a plain Append runs its branches in order).
        let mut lock_config = with_options(
            "-c plan_cache_mode=force_generic_plan -c synchronous_commit=off \
             -c max_parallel_workers_per_gather=0",
        );
        // Keeper sessions are told apart in `pg_stat_activity` (docs/operations.md).
        let app = async_config.get_application_name().unwrap_or("voxtrail");
        lock_config.application_name(format!("{app}-locks"));
        let store = Self {
            inner: Arc::new(Inner {
                display,
                pool: Pool::new(config.clone(), size),
                reports: AsyncPool::new(report_config, size, CHECKOUT_TIMEOUT),
                keepers: Keepers::new(lock_config, KEEPERS.min(size)),
                streaming: report::Shares::new(report_share(size)),
                mirror_config: async_config.clone(),
                console_unanalyzed: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where this store points, without credentials.
    pub fn describe(&self) -> &str {
        &self.inner.display
    }

    fn conn(&self) -> StoreResult<Conn> {
        self.inner.pool.get()
    }

    /// Whether the database answers. A pooled connection that died while idle (the database
    /// restarted) fails once and is closed; the second try opens a fresh one.
    pub fn ping(&self) -> StoreResult<()> {
        let once = || -> StoreResult<()> {
            let mut conn = self.conn()?;
            let st = conn.prepared("SELECT 1")?;
            conn.client().query_one(&st, &[])?;
            Ok(())
        };
        once().or_else(|_| once())
    }
}

/// Report connections one operation may hold at once for streamed answers: three quarters of
/// the pool (all of a pool of one), so other operations always find one.
fn report_share(size: usize) -> usize {
    (size - size / 4).max(1)
}

fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_split_off_the_url() {
        let (u, n) = split_pool_size("postgres://u@h/db?pool_size=4&sslmode=disable").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://u@h/db?sslmode=disable", 4));
        let (u, n) = split_pool_size("postgres://u@h/db").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://u@h/db", DEFAULT_POOL_SIZE));
        assert!(split_pool_size("postgres://u@h/db?pool_size=0").is_err());
    }
}
