//! PostgreSQL digests: `(local_ts, row_hash)` of a window by an index-only scan of
//! `interactions_window_hash`, folded into hours (`store/digest.rs`); and the counted half of a conditional report's admission. `row_hash` is a stored
//! generated column (`sha256(json)`), so every writer — ingestion, imports, rows replaced in
//! place — keeps it right without code of its own.

use super::PgStore;
use crate::store::AdmitRequest;
use crate::store::digest::{HourDigest, HourFolder};
use crate::store::{StoreError, StoreResult};

/// Adds the per-row SHA-256 (filled for existing rows by the table rewrite) and its covering
/// index.
pub(super) const ROW_HASH_MIGRATION: &str = "
ALTER TABLE interactions ADD COLUMN row_hash BYTEA GENERATED ALWAYS AS (sha256(json)) STORED;
CREATE INDEX interactions_window_hash ON interactions(operation_id, local_ts) INCLUDE (row_hash);
";

impl PgStore {
    /// Counts one use of a request whose slot is already held (a conditional report): one
    /// atomic upsert; `None` when the daily limit is used up.
    pub(crate) async fn count_use(&self, req: AdmitRequest) -> StoreResult<Option<u64>> {
        if req.daily_limit == 0 {
            return Ok(None);
        }
        let limit = req.daily_limit.min(i64::MAX as u64) as i64;
        let mut conn = self.inner.reports.get().await?;
        let st = conn
            .prepared(
                "INSERT INTO token_usage(token_id, day, used) VALUES ($1, $2, 1)
                 ON CONFLICT (token_id, day) DO UPDATE SET used = token_usage.used + 1
                 WHERE token_usage.used < $3
                 RETURNING used",
            )
            .await?;
        let row = conn
            .client()
            .query_opt(&st, &[&req.token, &req.day, &limit])
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<_, i64>(0)?.max(0) as u64),
            None => None,
        })
    }

    pub(crate) fn hour_digests(
        &self,
        operation_id: i64,
        ini: i64,
        end: i64,
    ) -> StoreResult<Vec<HourDigest>> {
        let mut conn = self.conn()?;
        let st = conn.prepared(
            "SELECT local_ts, row_hash FROM interactions
              WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3 ORDER BY local_ts",
        )?;
        let rows = conn.client().query(&st, &[&operation_id, &ini, &end])?;
        let mut folder = HourFolder::default();
        for r in &rows {
            let ts: i64 = r.try_get(0)?;
            let hash: &[u8] = r.try_get(1)?;
            if hash.len() != 32 {
                return Err(StoreError::Corrupt(format!(
                    "row at {ts} has a bad row_hash"
                )));
            }
            folder.add(ts, hash);
        }
        Ok(folder.finish())
    }
}
