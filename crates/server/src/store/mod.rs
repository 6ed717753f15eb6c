//! Storage: operations, tokens, interactions, daily usage and switches.
//!
//! `Store` is the one entry point the rest of the server uses. It has two backends with the
//! same methods, tested by the same conformance suite (`crates/server/tests/conformance.rs`):
//! embedded SQLite (`sqlite/`, one process) and PostgreSQL (`postgres/`, several replicas
//! behind one database). The store knows SQL and the domain types; it knows nothing of HTTP.
//!
//! Each backend owns its per-token limits: a request is admitted by one call,
//! [`Store::admit`] (types in `admission.rs`), and only code in this module knows which
//! backend is behind a `Store`.

mod admission;
pub mod audit;
mod body;
pub mod console;
pub mod digest;
pub mod feed;
mod mirror;
pub mod postgres;
pub mod sqlite;
pub mod testing;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{
    Interaction, Operation, OperationName, OperationTz, Scope, Token, TokenHash, Window,
};

pub use admission::{AdmitRequest, Admitted, HeadReceiver, Refused, SlotGuard, SlotLost};
pub use mirror::{Mirror, MirrorDef, MirrorLease, MirrorOutcome};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no operation named {0:?}")]
    NoSuchOperation(String),
    #[error("an operation named {0:?} already exists")]
    OperationExists(String),
    /// A name offered for a new operation that `OperationName::parse` refuses.
    #[error("invalid operation name: {0}")]
    InvalidOperationName(String),
    /// A mirror commit for an operation that is no longer a mirror (removed meanwhile).
    #[error("operation {0} is not a mirror")]
    NotAMirror(i64),
    #[error("no token with id {0}")]
    NoSuchToken(i64),
    #[error("the database is busy (another writer holds it); try again")]
    Busy,
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    /// A PostgreSQL concurrency slot was lost: the lock keeper's session holding it ended, so
    /// other replicas may hand it out again; its holder stops (docs/adr/0004-lock-keeper.md).
    #[error("the concurrency slot was lost (the lock keeper's database session ended)")]
    SlotLost,
    /// A task running a store call failed (it panicked or was cancelled).
    #[error("{0}")]
    TaskFailed(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The database refuses writes (PostgreSQL made read-only, or a hot standby): reads go on,
    /// writes are refused until it is writable again.
    #[error("the database is read-only: {}", pg_text(.0))]
    ReadOnly(::postgres::Error),
    /// The disk under the database is full (SQLite's `SQLITE_FULL`); nothing was written.
    #[error("the disk is full: {0}")]
    DiskFull(rusqlite::Error),
    #[error("database error: {}", pg_text(.0))]
    Postgres(::postgres::Error),
    /// The database cannot be reached (connection refused or lost, server shutting down, too
    /// many connections): the client may retry; the operator must look.
    #[error("the database cannot be reached: {}", pg_text(.0))]
    Unavailable(::postgres::Error),
    /// Displayed with its cause; the cause is deliberately not a `source`, so error chains
    /// do not print it twice.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl StoreError {
    /// Maps SQLite's busy/locked codes to `Busy` so callers can answer "try again".
    pub(crate) fn from_sqlite(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            _ => Self::from(e),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    /// A full disk becomes [`StoreError::DiskFull`]; everything else stays
    /// [`StoreError::Sqlite`] (busy codes are mapped by [`StoreError::from_sqlite`]).
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull(e),
            _ => Self::Sqlite(e),
        }
    }
}

impl From<::postgres::Error> for StoreError {
    /// Connection-level failures become [`StoreError::Unavailable`]; everything else (a
    /// statement PostgreSQL refused) stays [`StoreError::Postgres`].
    fn from(e: ::postgres::Error) -> Self {
        use ::postgres::error::SqlState;
        let unavailable = match e.code() {
            Some(c) => {
                *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::TOO_MANY_CONNECTIONS
                    || *c == SqlState::CONNECTION_EXCEPTION
                    || *c == SqlState::CONNECTION_FAILURE
                    || *c == SqlState::INVALID_CATALOG_NAME
            }
            // No SQLSTATE: unavailable when the connection is closed or I/O failed (refused,
            // reset, timed out) — not for the driver's own conversion errors.
            None => {
                e.is_closed()
                    || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
            }
        };
        if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
            Self::ReadOnly(e)
        } else if unavailable {
            Self::Unavailable(e)
        } else {
            Self::Postgres(e)
        }
    }
}

/// A PostgreSQL error with the server's message and detail (the driver's `Display` alone says
/// only "db error").
fn pg_text(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {d}", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An operation as read from a row of either backend: a stored name or time zone this version
/// refuses is [`StoreError::Corrupt`].
pub(crate) fn stored_operation(
    id: i64,
    name: &str,
    tz: &str,
    licenses: i64,
) -> StoreResult<Operation> {
    Ok(Operation {
        id,
        name: OperationName::parse(name)
            .map_err(|e| StoreError::Corrupt(format!("operation {id} {name:?}: {e}")))?,
        tz: OperationTz::parse(tz).map_err(StoreError::Corrupt)?,
        licenses: licenses.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the process or the machine once `commit` returns.
    Full,
    /// Survives a crash of the process; the machine's power loss may undo the last commits.
    Deferred,
}

/// What happened to one record offered to an ingestion transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Already stored with identical content.
    Duplicate,
    /// Already stored with different content.
    Conflict,
}

/// A write transaction that receives interactions one by one. Dropping it without `commit`
/// rolls everything back.
pub trait IngestSink {
    fn insert(&mut self, record: &Interaction) -> StoreResult<InsertOutcome>;
    /// Offers several records at once; the outcomes, in order, are exactly those that
    /// `insert` called on each in turn would give. Backends with round trips (PostgreSQL)
    /// store the whole slice in one statement.
    fn insert_batch(&mut self, records: &[Interaction]) -> StoreResult<Vec<InsertOutcome>> {
        records.iter().map(|r| self.insert(r)).collect()
    }
    fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Count and size of a report answer, known before its first byte is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportHead {
    pub rows: u64,
    /// Exact length of the whole JSON body.
    pub body_len: u64,
    /// Byte-wise XOR of the stored row hashes of the answer's rows (`digest::row_hash`), read
    /// in the same snapshot as `rows`: with `rows` it makes the answer's ETag.
    pub xor: [u8; 32],
}

/// Why a report was refused before streaming.
#[derive(Debug, thiserror::Error)]
pub enum ReportRefusal {
    #[error("{0} records, above the limit")]
    TooManyRecords(u64),
    #[error("answer larger than the limit")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A report being produced: its head, then the body in chunks. Dropping `chunks` stops the
/// producer and ends its read transaction.
pub struct ReportStream {
    pub head: ReportHead,
    pub chunks: mpsc::Receiver<StoreResult<Bytes>>,
}

/// The parameters a report producer needs.
#[derive(Debug, Clone, Copy)]
pub struct ReportQuery {
    pub operation_id: i64,
    pub window: Window,
    pub max_records: u64,
    pub max_bytes: u64,
}

/// The storage backend. An enum rather than a trait object: two backends, static dispatch.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(s) => write!(f, "Store::Sqlite({})", s.path().display()),
            Self::Postgres(s) => write!(f, "Store::Postgres({})", s.describe()),
        }
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the database a URL names.
    pub fn open(url: &str) -> StoreResult<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.to_owned()));
            }
            return Ok(Self::Sqlite(SqliteStore::open(std::path::Path::new(path))?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PgStore::open(url)?));
        }
        Err(StoreError::BadUrl(url.to_owned()))
    }

    /// Applies pending schema migrations (also done by `open`); returns the schema version.
    pub fn migrate(&self) -> StoreResult<i64> {
        match self {
            Self::Sqlite(s) => s.schema_version(),
            Self::Postgres(s) => s.migrate(),
        }
    }

    /// Runs a blocking store call off the async runtime.
    pub async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::TaskFailed(format!("store task failed: {e}")))?
    }

    /// Runs a short read-only store call on the request path (a token lookup): on SQLite on its
    /// small pool of reader threads, so it never waits behind long calls (ingestion) on the
    /// runtime's blocking threads; on PostgreSQL like [`blocking`](Self::blocking).
    pub async fn read_quick<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        match self {
            Self::Sqlite(s) => {
                let me = self.clone();
                s.quick(move |_| f(&me)).await
            }
            Self::Postgres(_) => self.blocking(f).await,
        }
    }

    /// Admits one request against its token's limits, in the contract's order: a concurrency
    /// slot, then one use counted against the daily limit (only when a slot was free), then —
    /// for a `report` — its producer is started. On PostgreSQL the three are one statement
    /// when the window is poll-sized (docs/adr/0003-limits-in-postgres.md). A slot taken for a
    /// request the daily limit refuses is freed before this returns.
    pub async fn admit(
        &self,
        req: AdmitRequest,
        report: Option<ReportQuery>,
    ) -> StoreResult<Result<Admitted, Refused>> {
        match self {
            Self::Sqlite(s) => s.admit(req, report).await,
            Self::Postgres(s) => s.admit(req, report).await,
        }
    }

    /// The second half of an admission whose slot is already held (a conditional report,
    /// whose ETag is compared before any use is counted): counts one use against the daily
    /// limit and, when counted, starts the report. A refused use frees the slot before this
    /// returns.
    pub async fn admit_held(
        &self,
        slot: SlotGuard,
        req: AdmitRequest,
        report: Option<ReportQuery>,
    ) -> StoreResult<Result<Admitted, Refused>> {
        let counted = match self {
            Self::Sqlite(s) => s.count_use(req).await?,
            Self::Postgres(s) => s.count_use(req).await?,
        };
        let Some(used) = counted else {
            if let Some(h) = slot.release() {
                let _ = h.await;
            }
            return Ok(Err(Refused::DailyLimit));
        };
        Ok(Ok(Admitted {
            slot,
            used,
            head: report.map(|q| self.start_report(q)),
        }))
    }

    /// Takes one of `max` concurrency slots of a token without counting a use (ingestion);
    /// `None` when all are held.
    pub async fn take_slot(&self, token: i64, max: u32) -> StoreResult<Option<SlotGuard>> {
        match self {
            Self::Sqlite(s) => Ok(s.take_slot(token, max)),
            Self::Postgres(s) => s.take_slot(token, max).await,
        }
    }

    /// Uses of a token on an operation-local day (`YYYYmmdd`) as the limits see them now:
    /// on SQLite the count held in this process, on PostgreSQL the shared count.
    pub async fn used_today(&self, token: i64, day: i64) -> StoreResult<u64> {
        match self {
            Self::Sqlite(s) => match s.used_in_memory(token, day) {
                Some(n) => Ok(n),
                None => self.blocking(move |s| s.token_usage(token, day)).await,
            },
            Self::Postgres(_) => self.blocking(move |s| s.token_usage(token, day)).await,
        }
    }

    /// Writes daily counts held behind to the database (SQLite: every second and at shutdown;
    /// PostgreSQL counts in the database, so there is nothing to write).
    pub async fn flush_usage(&self) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.flush_usage().await,
            Self::Postgres(_) => Ok(()),
        }
    }

    pub fn ping(&self) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.ping(),
            Self::Postgres(s) => s.ping(),
        }
    }

    pub fn create_operation(
        &self,
        name: &str,
        tz: OperationTz,
        licenses: u32,
    ) -> StoreResult<Operation> {
        let name = OperationName::parse(name).map_err(StoreError::InvalidOperationName)?;
        match self {
            Self::Sqlite(s) => s.create_operation(&name, tz, licenses),
            Self::Postgres(s) => s.create_operation(&name, tz, licenses),
        }
    }

    pub fn list_operations(&self) -> StoreResult<Vec<Operation>> {
        match self {
            Self::Sqlite(s) => s.list_operations(),
            Self::Postgres(s) => s.list_operations(),
        }
    }

    pub fn operation(&self, name: &str) -> StoreResult<Operation> {
        match self {
            Self::Sqlite(s) => s.operation(name),
            Self::Postgres(s) => s.operation(name),
        }
    }

    pub fn create_token(
        &self,
        operation_id: i64,
        hash: &TokenHash,
        scope: Scope,
        description: &str,
        daily_limit: Option<u64>,
    ) -> StoreResult<i64> {
        match self {
            Self::Sqlite(s) => s.create_token(operation_id, hash, scope, description, daily_limit),
            Self::Postgres(s) => {
                s.create_token(operation_id, hash, scope, description, daily_limit)
            }
        }
    }

    pub fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        match self {
            Self::Sqlite(s) => s.list_tokens(),
            Self::Postgres(s) => s.list_tokens(),
        }
    }

    /// Revokes a token; `Ok(false)` when it was already revoked.
    pub fn revoke_token(&self, id: i64) -> StoreResult<bool> {
        match self {
            Self::Sqlite(s) => s.revoke_token(id),
            Self::Postgres(s) => s.revoke_token(id),
        }
    }

    pub fn token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        match self {
            Self::Sqlite(s) => s.token_by_hash(hash),
            Self::Postgres(s) => s.token_by_hash(hash),
        }
    }

    pub fn set_maintenance(&self, on: bool) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.set_maintenance(on),
            Self::Postgres(s) => s.set_maintenance(on),
        }
    }

    pub fn maintenance(&self) -> StoreResult<bool> {
        match self {
            Self::Sqlite(s) => s.maintenance(),
            Self::Postgres(s) => s.maintenance(),
        }
    }

    /// Uses of a token on an operation-local day (`YYYYmmdd`), as last persisted.
    pub fn token_usage(&self, token_id: i64, day: i64) -> StoreResult<u64> {
        match self {
            Self::Sqlite(s) => s.token_usage(token_id, day),
            Self::Postgres(s) => s.token_usage(token_id, day),
        }
    }

    /// Uses of all tokens of an operation on a day, as last persisted.
    pub fn operation_usage(&self, operation_id: i64, day: i64) -> StoreResult<u64> {
        match self {
            Self::Sqlite(s) => s.operation_usage(operation_id, day),
            Self::Postgres(s) => s.operation_usage(operation_id, day),
        }
    }

    /// Persists absolute usage counts `(token_id, day, used)`.
    pub fn save_usage(&self, rows: &[(i64, i64, u64)]) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.save_usage(rows),
            Self::Postgres(s) => s.save_usage(rows),
        }
    }

    /// Opens a write transaction for ingestion into one operation; `commit` makes it durable.
    pub fn begin_ingest(&self, operation_id: i64) -> StoreResult<Box<dyn IngestSink + '_>> {
        match self {
            Self::Sqlite(s) => Ok(Box::new(s.begin_ingest(operation_id, Durability::Full)?)),
            Self::Postgres(s) => Ok(Box::new(s.begin_ingest(operation_id, Durability::Full)?)),
        }
    }

    /// Like `begin_ingest`, for synthetic data only (`voxtrail seed`): a commit is atomic and
    /// consistent but may be lost if the machine loses power shortly after it.
    pub fn begin_synthetic(&self, operation_id: i64) -> StoreResult<Box<dyn IngestSink + '_>> {
        match self {
            Self::Sqlite(s) => Ok(Box::new(
                s.begin_ingest(operation_id, Durability::Deferred)?,
            )),
            Self::Postgres(s) => Ok(Box::new(
                s.begin_ingest(operation_id, Durability::Deferred)?,
            )),
        }
    }

    /// Starts producing a report on a blocking thread. The head (or the refusal) arrives on the
    /// returned channel once count and size are known from the same snapshot as the rows.
    pub fn start_report(
        &self,
        q: ReportQuery,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        match self {
            Self::Sqlite(s) => s.start_report(q),
            Self::Postgres(s) => s.start_report(q),
        }
    }
}
