//! PostgreSQL storage of the consumer audit (`store/audit.rs`): a batch is one `unnest` insert.

use super::PgStore;
use crate::store::StoreResult;
use crate::store::audit::{AuditFilter, AuditRecord};

/// The `audit` table and its index.
pub(super) const AUDIT_MIGRATION: &str = "
CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TEXT NOT NULL,
    token_id    BIGINT NOT NULL,
    operation   TEXT NOT NULL,
    route       TEXT NOT NULL,
    api         TEXT,
    date_ini    TEXT,
    date_end    TEXT,
    status      INTEGER NOT NULL,
    rows        BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
";

/// The console's latest requests of a token (`Store::latest_audit`) read this index.
pub(super) const AUDIT_TOKEN_MIGRATION: &str = "CREATE INDEX audit_token ON audit(token_id, at);";

const COLUMNS: &str = "at, token_id, operation, route, api, date_ini, date_end, status, rows,
                    bytes, duration_ms";

fn record(r: &postgres::Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        at: r.try_get(0)?,
        token_id: r.try_get(1)?,
        operation: r.try_get(2)?,
        route: r.try_get(3)?,
        api: r.try_get(4)?,
        date_ini: r.try_get(5)?,
        date_end: r.try_get(6)?,
        status: r.try_get::<_, i32>(7)?.clamp(0, 999) as u16,
        rows: r.try_get::<_, i64>(8)?.max(0) as u64,
        bytes: r.try_get::<_, i64>(9)?.max(0) as u64,
        duration_ms: r.try_get::<_, i64>(10)?.max(0) as u64,
    })
}

impl PgStore {
    pub(crate) fn insert_audit(&self, records: &[AuditRecord]) -> StoreResult<()> {
        let mut conn = self.conn()?;
        let at: Vec<&str> = records.iter().map(|r| r.at.as_str()).collect();
        let token: Vec<i64> = records.iter().map(|r| r.token_id).collect();
        let op: Vec<&str> = records.iter().map(|r| r.operation.as_str()).collect();
        let route: Vec<&str> = records.iter().map(|r| r.route.as_str()).collect();
        let api: Vec<Option<&str>> = records.iter().map(|r| r.api.as_deref()).collect();
        let ini: Vec<Option<&str>> = records.iter().map(|r| r.date_ini.as_deref()).collect();
        let end: Vec<Option<&str>> = records.iter().map(|r| r.date_end.as_deref()).collect();
        let status: Vec<i32> = records.iter().map(|r| i32::from(r.status)).collect();
        let rows: Vec<i64> = records.iter().map(|r| r.rows as i64).collect();
        let bytes: Vec<i64> = records.iter().map(|r| r.bytes as i64).collect();
        let ms: Vec<i64> = records.iter().map(|r| r.duration_ms as i64).collect();
        let st = conn.prepared(
            "INSERT INTO audit(at, token_id, operation, route, api, date_ini, date_end, status,
                               rows, bytes, duration_ms)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int4[], $9::int8[], $10::int8[],
                                  $11::int8[])",
        )?;
        conn.client().execute(
            &st,
            &[
                &at, &token, &op, &route, &api, &ini, &end, &status, &rows, &bytes, &ms,
            ],
        )?;
        Ok(())
    }

    pub(crate) fn delete_audit_before(&self, before: &str) -> StoreResult<u64> {
        let mut conn = self.conn()?;
        Ok(conn
            .client()
            .execute("DELETE FROM audit WHERE at < $1", &[&before])?)
    }

    pub(crate) fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let mut conn = self.conn()?;
        let rows = conn.client().query(
            &format!(
                "SELECT {COLUMNS} FROM audit
                  WHERE ($1::text IS NULL OR operation = $1) AND ($2::int8 IS NULL OR token_id = $2)
                    AND ($3::text IS NULL OR at >= $3)
                  ORDER BY at, id"
            ),
            &[&f.operation, &f.token_id, &f.since],
        )?;
        rows.iter().map(record).collect()
    }

    pub(crate) fn latest_audit(&self, token_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let mut conn = self.conn()?;
        let rows = conn.client().query(
            &format!(
                "SELECT {COLUMNS} FROM audit WHERE token_id = $1
                  ORDER BY at DESC, id DESC LIMIT $2"
            ),
            &[&token_id, &i64::from(limit)],
        )?;
        rows.iter().map(record).collect()
    }
}
