//! The embedded SQLite backend (the default): one write connection behind a mutex, a small pool
//! of read connections, WAL mode, `synchronous=FULL` so a committed ingestion survives a crash.
//!
//! Interactions keep their `chat_12` JSON object as stored bytes next to the indexed columns
//! `(operation_id, local_ts, seq, json_len)`: counting and sizing a window is an index-only
//! scan, and serving it is copying bytes. See docs/adr/0001-stored-json.md.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::body::{BodyWriter, Ready};
use super::{
    Durability, IngestSink, InsertOutcome, ReportQuery, ReportRefusal, ReportStream, StoreError,
    StoreResult,
};
use crate::domain::{Interaction, Operation, OperationTz, Scope, Token, TokenHash};

/// Page cache of each read connection, in KiB. Small on purpose: the operating system's page
/// cache holds the data, and under 32 concurrent polls 4 MiB per reader made the server's RSS
/// ~200 MB; the index's interior pages fit in 1 MiB.
const READER_CACHE_KIB: i64 = 1_024;
/// Page cache of the write connection, in KiB.
const WRITER_CACHE_KIB: i64 = 65_536;
/// Page size of new databases.
const PAGE_SIZE: i64 = 16_384;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 16;

const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
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

    pub fn ping(&self) -> StoreResult<()> {
        let r = self.reader()?;
        r.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn create_operation(
        &self,
        name: &str,
        tz: OperationTz,
        licenses: u32,
    ) -> StoreResult<Operation> {
        let w = self.writer();
        let res = w.execute(
            "INSERT INTO operations(name, timezone, licenses, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, tz.name(), licenses, now_utc()],
        );
        match res {
            Ok(_) => Ok(Operation {
                id: w.last_insert_rowid(),
                name: name.to_owned(),
                tz,
                licenses,
            }),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Err(StoreError::OperationExists(name.to_owned()))
            }
            Err(e) => Err(StoreError::from_sqlite(e)),
        }
    }

    pub fn list_operations(&self) -> StoreResult<Vec<Operation>> {
        let r = self.reader()?;
        let mut st =
            r.prepare("SELECT id, name, timezone, licenses FROM operations ORDER BY name")?;
        let rows = st.query_map([], operation_from_row)?;
        rows.map(|r| r.map_err(StoreError::from)?).collect()
    }

    pub fn operation(&self, name: &str) -> StoreResult<Operation> {
        let r = self.reader()?;
        r.query_row(
            "SELECT id, name, timezone, licenses FROM operations WHERE name = ?1",
            [name],
            operation_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NoSuchOperation(name.to_owned()))?
    }

    pub fn create_token(
        &self,
        operation_id: i64,
        hash: &TokenHash,
        scope: Scope,
        description: &str,
        daily_limit: Option<u64>,
    ) -> StoreResult<i64> {
        let w = self.writer();
        w.execute(
            "INSERT INTO tokens(operation_id, hash, scope, description, daily_limit, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                operation_id,
                &hash.0[..],
                scope.as_str(),
                description,
                daily_limit.map(|v| v as i64),
                now_utc()
            ],
        )
        .map_err(StoreError::from_sqlite)?;
        Ok(w.last_insert_rowid())
    }

    pub fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare(&format!("{TOKEN_SELECT} ORDER BY t.id"))?;
        let rows = st.query_map([], token_from_row)?;
        rows.map(|r| r.map_err(StoreError::from)?).collect()
    }

    pub fn revoke_token(&self, id: i64) -> StoreResult<bool> {
        let w = self.writer();
        let exists: Option<Option<String>> = w
            .query_row("SELECT revoked_at FROM tokens WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match exists {
            None => Err(StoreError::NoSuchToken(id)),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                w.execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                    params![id, now_utc()],
                )
                .map_err(StoreError::from_sqlite)?;
                Ok(true)
            }
        }
    }

    pub fn token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(&format!("{TOKEN_SELECT} WHERE t.hash = ?1"))?;
        let found = st.query_row([&hash.0[..]], token_from_row).optional()?;
        found.transpose()
    }

    pub fn set_maintenance(&self, on: bool) -> StoreResult<()> {
        self.writer()
            .execute(
                "INSERT INTO switches(name, value) VALUES ('maintenance', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [if on { "on" } else { "off" }],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn maintenance(&self) -> StoreResult<bool> {
        let r = self.reader()?;
        let v: Option<String> = r
            .prepare_cached("SELECT value FROM switches WHERE name = 'maintenance'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(v.as_deref() == Some("on"))
    }

    pub fn token_usage(&self, token_id: i64, day: i64) -> StoreResult<u64> {
        let r = self.reader()?;
        let v: Option<i64> = r
            .prepare_cached("SELECT used FROM token_usage WHERE token_id = ?1 AND day = ?2")?
            .query_row(params![token_id, day], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    pub fn operation_usage(&self, operation_id: i64, day: i64) -> StoreResult<u64> {
        let r = self.reader()?;
        let v: i64 = r
            .prepare_cached(
                "SELECT COALESCE(SUM(u.used), 0) FROM token_usage u JOIN tokens t ON t.id = u.token_id
                 WHERE t.operation_id = ?1 AND u.day = ?2",
            )?
            .query_row(params![operation_id, day], |r| r.get(0))?;
        Ok(v.max(0) as u64)
    }

    pub fn save_usage(&self, rows: &[(i64, i64, u64)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = self.writer();
        let tx = w.transaction().map_err(StoreError::from_sqlite)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO token_usage(token_id, day, used) VALUES (?1, ?2, ?3)
                 ON CONFLICT(token_id, day) DO UPDATE SET used = MAX(used, excluded.used)",
            )?;
            for (token, day, used) in rows {
                st.execute(params![token, day, *used as i64])?;
            }
        }
        tx.commit().map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn begin_ingest(
        &self,
        operation_id: i64,
        durability: Durability,
    ) -> StoreResult<SqliteIngest<'_>> {
        let conn = self.writer();
        // In WAL mode NORMAL syncs at checkpoints only; FULL syncs every commit.
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Deferred => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // Synthetic bulk loads get a larger page cache so big transactions spill less.
        let cache_kib = match durability {
            Durability::Full => WRITER_CACHE_KIB,
            Durability::Deferred => 4 * WRITER_CACHE_KIB,
        };
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from_sqlite)?;
        Ok(SqliteIngest {
            conn,
            operation_id,
            open: true,
        })
    }

    pub fn start_report(
        &self,
        q: ReportQuery,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = match store.reader() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            if let Err(e) = produce_report(&reader, q, ready_tx) {
                tracing::warn!(error = %e, "report stream ended early");
            }
        });
        ready_rx
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

/// Reads count and size, then the rows, all inside one read transaction (one snapshot), so
/// `msg` always equals the rows sent even while ingestion commits meanwhile.
fn produce_report(conn: &Connection, q: ReportQuery, ready: Ready) -> StoreResult<()> {
    conn.execute_batch("BEGIN")?;
    let result = produce_in_tx(conn, q, ready);
    // Ends the snapshot whatever happened; a read transaction has nothing to lose.
    let _ = conn.execute_batch("COMMIT");
    result
}

fn produce_in_tx(conn: &Connection, q: ReportQuery, ready: Ready) -> StoreResult<()> {
    let (ini, end) = (q.window.ini.as_i64(), q.window.end.as_i64());
    let counted = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(json_len), 0) FROM interactions
             WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3",
        )
        .and_then(|mut st| {
            st.query_row(params![q.operation_id, ini, end], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
        });
    let (rows, json_bytes) = match counted {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(StoreError::from_sqlite(e).into()));
            return Ok(());
        }
    };
    let Some(mut body) = BodyWriter::start(ready, &q, rows, json_bytes) else {
        return Ok(());
    };
    let mut st = conn.prepare_cached(
        "SELECT json FROM interactions
         WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3
         ORDER BY local_ts, seq",
    )?;
    let mut cursor = st.query(params![q.operation_id, ini, end])?;
    while body.wants_more() {
        let Some(row) = cursor.next()? else { break };
        let json = row
            .get_ref(0)?
            .as_bytes()
            .map_err(|e| StoreError::Corrupt(format!("stored row: {e}")))?;
        if !body.push(json) {
            return Ok(()); // client gone
        }
    }
    body.finish();
    Ok(())
}

/// An ingestion transaction on the write connection (`BEGIN IMMEDIATE` … `COMMIT`).
pub struct SqliteIngest<'a> {
    conn: MutexGuard<'a, Connection>,
    operation_id: i64,
    open: bool,
}

impl IngestSink for SqliteIngest<'_> {
    fn insert(&mut self, r: &Interaction) -> StoreResult<InsertOutcome> {
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(operation_id, conn_id) DO NOTHING",
        )?;
        let changed = ins
            .execute(params![
                self.operation_id,
                r.conn_id,
                r.date.as_i64(),
                r.json.len() as i64,
                r.json
            ])
            .map_err(StoreError::from_sqlite)?;
        if changed == 1 {
            return Ok(InsertOutcome::Inserted);
        }
        let mut sel = self.conn.prepare_cached(
            "SELECT json FROM interactions WHERE operation_id = ?1 AND conn_id = ?2",
        )?;
        let same = sel.query_row(params![self.operation_id, r.conn_id], |row| {
            Ok(row.get_ref(0)?.as_bytes()? == r.json.as_slice())
        })?;
        Ok(if same {
            InsertOutcome::Duplicate
        } else {
            InsertOutcome::Conflict
        })
    }

    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(StoreError::from_sqlite)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteIngest<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // The write connection's default: every commit durable.
        let _ = self.conn.pragma_update(None, "synchronous", "FULL");
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
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

const TOKEN_SELECT: &str =
    "SELECT t.id, t.scope, t.description, t.daily_limit, t.created_at, t.revoked_at,
        o.id, o.name, o.timezone, o.licenses
   FROM tokens t JOIN operations o ON o.id = t.operation_id";

fn operation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Operation>> {
    operation_at(r, 0)
}

fn operation_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StoreResult<Operation>> {
    let tz_name: String = r.get(at + 2)?;
    let licenses: i64 = r.get(at + 3)?;
    Ok(OperationTz::parse(&tz_name)
        .map_err(StoreError::Corrupt)
        .map(|tz| Operation {
            id: r.get(at).unwrap_or_default(),
            name: r.get(at + 1).unwrap_or_default(),
            tz,
            licenses: licenses.clamp(0, i64::from(u32::MAX)) as u32,
        }))
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Token>> {
    let scope: String = r.get(1)?;
    let daily: Option<i64> = r.get(3)?;
    let op = match operation_at(r, 6)? {
        Ok(op) => op,
        Err(e) => return Ok(Err(e)),
    };
    let scope = match Scope::parse(&scope) {
        Ok(s) => s,
        Err(e) => return Ok(Err(StoreError::Corrupt(e))),
    };
    Ok(Ok(Token {
        id: r.get(0)?,
        operation: op,
        scope,
        description: r.get(2)?,
        daily_limit: daily.map(|d| d.max(0) as u64),
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    }))
}
