//! The consumer audit's storage (docs/api.md, "Consumer audit"): one record per request that
//! presented a valid token, written in batches by the server's background writer
//! (`http/audit.rs`), kept for `audit.retention_days`, listed oldest first by `voxtrail audit`.
//!
//! `at` is RFC 3339 in UTC with milliseconds (`2026-10-01T08:15:00.123Z`): as text it sorts in
//! time order, so filters and retention compare text.

use serde::Serialize;

use super::{Store, StoreResult};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When the request arrived, RFC 3339 UTC.
    pub at: String,
    pub token_id: i64,
    pub operation: String,
    /// The normalised route (`/api/v2/reports_manager.php`, …).
    pub route: String,
    pub api: Option<String>,
    pub date_ini: Option<String>,
    pub date_end: Option<String>,
    pub status: u16,
    pub rows: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// Which records `voxtrail audit` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub operation: Option<String>,
    pub token_id: Option<i64>,
    /// RFC 3339 UTC text: records at or after it.
    pub since: Option<String>,
}

/// `at` text of an instant.
pub fn audit_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Stores a batch of records in one transaction.
    pub fn insert_audit(&self, records: &[AuditRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => s.insert_audit(records),
            Store::Postgres(s) => s.insert_audit(records),
        }
    }

    /// Deletes records older than `before` (RFC 3339 UTC text); returns how many.
    pub fn delete_audit_before(&self, before: &str) -> StoreResult<u64> {
        match self {
            Store::Sqlite(s) => s.delete_audit_before(before),
            Store::Postgres(s) => s.delete_audit_before(before),
        }
    }

    /// The latest `limit` records of a token, newest first (the console's consumers page).
    pub fn latest_audit(&self, token_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        match self {
            Store::Sqlite(s) => s.latest_audit(token_id, limit),
            Store::Postgres(s) => s.latest_audit(token_id, limit),
        }
    }

    /// The records a filter selects, oldest first.
    pub fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        match self {
            Store::Sqlite(s) => s.list_audit(filter),
            Store::Postgres(s) => s.list_audit(filter),
        }
    }
}
