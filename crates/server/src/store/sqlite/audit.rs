//! SQLite storage of the consumer audit (`store/audit.rs`).

use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreResult;
use crate::store::audit::{AuditFilter, AuditRecord};

/// The `audit` table and its indexes.
pub(super) const AUDIT_MIGRATION: &str = "
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    token_id    INTEGER NOT NULL,
    operation   TEXT NOT NULL,
    route       TEXT NOT NULL,
    api         TEXT,
    date_ini    TEXT,
    date_end    TEXT,
    status      INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit(at);
";

/// The console's latest requests of a token (`Store::latest_audit`) read this index.
pub(super) const AUDIT_TOKEN_MIGRATION: &str = "CREATE INDEX audit_token ON audit(token_id, at);";

const COLUMNS: &str = "at, token_id, operation, route, api, date_ini, date_end, status, rows,
                    bytes, duration_ms";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        at: r.get(0)?,
        token_id: r.get(1)?,
        operation: r.get(2)?,
        route: r.get(3)?,
        api: r.get(4)?,
        date_ini: r.get(5)?,
        date_end: r.get(6)?,
        status: r.get(7)?,
        rows: r.get::<_, i64>(8)?.max(0) as u64,
        bytes: r.get::<_, i64>(9)?.max(0) as u64,
        duration_ms: r.get::<_, i64>(10)?.max(0) as u64,
    })
}

impl SqliteStore {
    pub(crate) fn insert_audit(&self, records: &[AuditRecord]) -> StoreResult<()> {
        let conn = self.writer();
        let tx = conn.unchecked_transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO audit(at, token_id, operation, route, api, date_ini, date_end,
                                   status, rows, bytes, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for r in records {
                st.execute(params![
                    r.at,
                    r.token_id,
                    r.operation,
                    r.route,
                    r.api,
                    r.date_ini,
                    r.date_end,
                    r.status,
                    r.rows as i64,
                    r.bytes as i64,
                    r.duration_ms as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn delete_audit_before(&self, before: &str) -> StoreResult<u64> {
        let n = self
            .writer()
            .execute("DELETE FROM audit WHERE at < ?1", [before])?;
        Ok(n as u64)
    }

    pub(crate) fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.reader()?;
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM audit
              WHERE (?1 IS NULL OR operation = ?1) AND (?2 IS NULL OR token_id = ?2)
                AND (?3 IS NULL OR at >= ?3)
              ORDER BY at, id"
        ))?;
        let rows = st.query_map(params![f.operation, f.token_id, f.since], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn latest_audit(&self, token_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.reader()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit WHERE token_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![token_id, limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
