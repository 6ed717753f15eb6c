//! The embedded SQLite backend (the default): one write connection behind a mutex, a small pool
//! of read connections, WAL mode, `synchronous=FULL` so a committed ingestion survives a crash.
//!
//! Interactions keep their `chat_12` JSON object as stored bytes next to the indexed columns
//! `(operation_id, local_ts, seq, json_len, row_hash)`: counting, sizing and tagging a window is
//! one index-only scan, and serving it is copying bytes. See docs/adr/0001-stored-json.md.
//!
//! Here: opening, connections and migrations. Beside it: `admin.rs` (operations, tokens,
//! switches, usage), `ingest.rs`, `report.rs` (the report producer), `readers.rs` (the small
//! pool of reader threads reports run on) and `limits.rs` (this process's concurrency slots
//! and daily counts).

mod admin;
mod audit;
mod console;
mod digest;
pub(crate) mod feed;
mod ingest;
mod limits;
mod mirror;
mod readers;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, StoreResult};

pub use console::INDEX_BATCH_ROWS;
pub use ingest::SqliteIngest;
use limits::Limits;
pub(crate) use limits::MemorySlot;

/// Page cache of each read connection, in KiB. Small on purpose: the operating system's page
/// cache holds the data, and under 32 concurrent polls 4 MiB per reader made the server's RSS
/// ~200 MB and 1 MiB ~60 MB (SQLite's page caches were most of the heap); with 256 KiB it is
/// ~40 MB at the same CPU per answer (a poll's rows are neighbours in the table, a few pages;
/// bench/slow_readers.sh).
const READER_CACHE_KIB: i64 = 256;
/// Page cache of the write connection, in KiB.
const WRITER_CACHE_KIB: i64 = 65_536;
/// Page size of new databases.
const PAGE_SIZE: i64 = 16_384;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 16;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE operations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    timezone    TEXT NOT NULL,
    licenses    INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations(id),
    hash         BLOB NOT NULL UNIQUE,
    scope        TEXT NOT NULL,
    description  TEXT NOT NULL,
    daily_limit  INTEGER,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE TABLE interactions (
    seq          INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL,
    conn_id      TEXT NOT NULL,
    local_ts     INTEGER NOT NULL,
    json_len     INTEGER NOT NULL,
    json         BLOB NOT NULL
);
CREATE UNIQUE INDEX interactions_conn ON interactions(operation_id, conn_id);
CREATE INDEX interactions_window ON interactions(operation_id, local_ts, seq, json_len);
CREATE TABLE token_usage (
    token_id INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    used     INTEGER NOT NULL,
    PRIMARY KEY (token_id, day)
) WITHOUT ROWID;
CREATE TABLE switches (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    digest::ROW_HASH_MIGRATION,
    feed::FEED_MIGRATION,
    audit::AUDIT_MIGRATION,
    // Mirrors (store/mirror.rs): one row per mirrored operation, definition and state.
    r#"
CREATE TABLE mirrors (
    operation_id  INTEGER PRIMARY KEY REFERENCES operations(id),
    url           TEXT NOT NULL,
    token         TEXT NOT NULL,
    since         INTEGER NOT NULL,
    every_secs    INTEGER NOT NULL,
    lookback_secs INTEGER NOT NULL,
    window_secs   INTEGER NOT NULL,
    checkpoint    INTEGER,
    last_success  TEXT,
    rows_inserted INTEGER NOT NULL DEFAULT 0,
    rows_updated  INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    halted        INTEGER NOT NULL DEFAULT 0,
    generation    INTEGER NOT NULL DEFAULT 1,
    updated_at    TEXT NOT NULL
);
"#,
    // The console: sign-in sessions (hashed ids) and the word-search index of subject and body,
    // an FTS5 table over the `interactions_text` view, kept by triggers in the same transaction
    // as the row (docs/api.md, "The console").
    r#"
CREATE TABLE console_sessions (
    id_hash    BLOB PRIMARY KEY,
    token_id   INTEGER NOT NULL REFERENCES tokens(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE VIEW interactions_text AS
    SELECT seq,
           CASE WHEN json_valid(CAST(json AS TEXT)) THEN json_extract(CAST(json AS TEXT), '$.subject') END AS subject,
           CASE WHEN json_valid(CAST(json AS TEXT)) THEN json_extract(CAST(json AS TEXT), '$.body') END AS body
      FROM interactions;
CREATE VIRTUAL TABLE interactions_fts USING fts5(
    subject, body, content='interactions_text', content_rowid='seq',
    tokenize='unicode61 remove_diacritics 0'
);
CREATE TRIGGER interactions_fts_insert AFTER INSERT ON interactions BEGIN
    INSERT INTO interactions_fts(rowid, subject, body)
        SELECT seq, subject, body FROM interactions_text WHERE seq = new.seq;
END;
CREATE TRIGGER interactions_fts_delete AFTER DELETE ON interactions BEGIN
    INSERT INTO interactions_fts(interactions_fts, rowid, subject, body)
        SELECT 'delete', old.seq,
               CASE WHEN json_valid(CAST(old.json AS TEXT)) THEN json_extract(CAST(old.json AS TEXT), '$.subject') END,
               CASE WHEN json_valid(CAST(old.json AS TEXT)) THEN json_extract(CAST(old.json AS TEXT), '$.body') END;
END;
CREATE TRIGGER interactions_fts_update AFTER UPDATE OF json ON interactions BEGIN
    INSERT INTO interactions_fts(interactions_fts, rowid, subject, body)
        SELECT 'delete', old.seq,
               CASE WHEN json_valid(CAST(old.json AS TEXT)) THEN json_extract(CAST(old.json AS TEXT), '$.subject') END,
               CASE WHEN json_valid(CAST(old.json AS TEXT)) THEN json_extract(CAST(old.json AS TEXT), '$.body') END;
    INSERT INTO interactions_fts(rowid, subject, body)
        SELECT seq, subject, body FROM interactions_text WHERE seq = new.seq;
END;
INSERT INTO interactions_fts(interactions_fts) VALUES ('rebuild');
"#,
    // The word-search index is filled after ingestion, in batches, by the server's indexer
    // (`console.rs`): the triggers go, and `console_fts_state.indexed_upto` is the watermark
    // (every row with `seq <= indexed_upto` is in `interactions_fts`, no row above it is).
    // Until this step the triggers kept every row indexed, so the watermark starts at the end.
    r#"
DROP TRIGGER IF EXISTS interactions_fts_insert;
DROP TRIGGER IF EXISTS interactions_fts_delete;
DROP TRIGGER IF EXISTS interactions_fts_update;
CREATE TABLE console_fts_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
INSERT INTO console_fts_state(id, indexed_upto)
    SELECT 1, COALESCE(MAX(seq), 0) FROM interactions;
"#,
    // One covering window index carrying `row_hash` instead of two (`digest.rs`).
    digest::WINDOW_HASH_MIGRATION,
    console::COUNTS_MIGRATION,
    audit::AUDIT_TOKEN_MIGRATION,
];

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
    /// Concurrency slots and daily counts, held in this process.
    limits: Limits,
    /// The report reader threads (`readers.rs`).
    readers: readers::ReaderPool,
    /// Permits for large answers' snapshots kept open between chunks (`report.rs`).
    snapshots: Arc<tokio::sync::Semaphore>,
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn configure(conn: &Connection, write: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if write {
        // FULL: a committed transaction survives power loss in WAL mode.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    } else {
        // Small per-reader cache: the OS page cache holds the data; RSS stays flat.
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    }
    console::register_functions(conn)?;
    digest::register_functions(conn)?;
    Ok(())
}

impl SqliteStore {
    /// Opens the database file, creating it and running migrations when needed.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Io {
                context: format!("opening sqlite database {}", path.display()),
                cause: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("directory {} does not exist", dir.display()),
                ),
            });
        }
        let conn = Connection::open(path).map_err(StoreError::from_sqlite)?;
        // Large pages: a ~2.5 KB row shares a page with others instead of filling most of one,
        // and bulk writes and streaming reads make 4× fewer I/O calls. Only takes effect on a
        // new, empty database file.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        configure(&conn, true)?;
        migrate(&conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(conn),
                idle_readers: Mutex::new(Vec::new()),
                limits: Limits::default(),
                readers: readers::ReaderPool::start()?,
                snapshots: Arc::new(tokio::sync::Semaphore::new(report::MAX_OPEN_SNAPSHOTS)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version in force (migrations run in `open`).
    pub fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .writer()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.inner.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> StoreResult<Reader> {
        let pooled = self
            .inner
            .idle_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c, false)?;
                c
            }
        };
        Ok(Reader {
            conn: Some(conn),
            store: self.inner.clone(),
        })
    }

    /// Runs a short read (a token lookup, a day's count) on the report reader pool: it never
    /// waits behind long calls (ingestion) on the runtime's blocking threads, and only the
    /// pool's few threads touch read connections on the request path.
    pub(crate) async fn quick<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore) -> StoreResult<T> + Send + 'static,
    {
        let me = self.clone();
        self.inner.readers.run(move || f(&me)).await?
    }

    pub fn ping(&self) -> StoreResult<()> {
        let r = self.reader()?;
        r.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

/// A pooled read connection; goes back to the pool when dropped.
struct Reader {
    conn: Option<Connection>,
    store: Arc<Inner>,
}

impl std::ops::Deref for Reader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("reader holds a connection until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && conn.is_autocommit()
        {
            let mut idle = self
                .store
                .idle_readers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this voxtrail ({known})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        if *sql == digest::ROW_HASH_MIGRATION {
            digest::fill_row_hashes(&tx)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
