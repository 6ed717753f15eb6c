//! SQLite digests: `(local_ts, row_hash)` of a window from the covering index
//! `interactions_hash`, folded into hours (`store/digest.rs`); and the filling of `row_hash` for
//! rows stored before the column existed.

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::store::digest::{HourDigest, HourFolder, row_hash};
use crate::store::{StoreError, StoreResult};

/// Adds the per-row SHA-256 and its covering index; `fill_row_hashes` runs right after it.
pub(super) const ROW_HASH_MIGRATION: &str = "
ALTER TABLE interactions ADD COLUMN row_hash BLOB;
CREATE INDEX interactions_hash ON interactions(operation_id, local_ts, row_hash);
";

/// Computes `row_hash` of every row that has none (rows stored before the column existed).
pub(super) fn fill_row_hashes(conn: &Connection) -> StoreResult<()> {
    let mut read = conn.prepare("SELECT seq, json FROM interactions WHERE row_hash IS NULL")?;
    let mut write = conn.prepare("UPDATE interactions SET row_hash = ?1 WHERE seq = ?2")?;
    let mut rows = read.query([])?;
    let mut pending = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let json = r.get_ref(1)?.as_bytes().map_err(rusqlite::Error::from)?;
        pending.push((seq, row_hash(json)));
    }
    drop(rows);
    for (seq, hash) in pending {
        write.execute(params![hash.as_slice(), seq])?;
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) fn hour_digests(
        &self,
        operation_id: i64,
        ini: i64,
        end: i64,
    ) -> StoreResult<Vec<HourDigest>> {
        let conn = self.reader()?;
        let mut st = conn.prepare_cached(
            "SELECT local_ts, row_hash FROM interactions INDEXED BY interactions_hash
             WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3 ORDER BY local_ts",
        )?;
        let mut rows = st.query(params![operation_id, ini, end])?;
        let mut folder = HourFolder::default();
        while let Some(r) = rows.next()? {
            let ts: i64 = r.get(0)?;
            let hash = r
                .get_ref(1)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?
                .filter(|h| h.len() == 32)
                .ok_or_else(|| StoreError::Corrupt(format!("row at {ts} has no row_hash")))?;
            folder.add(ts, hash);
        }
        Ok(folder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_stored_before_the_column_get_their_hash_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(super::super::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json)
                 VALUES (1, 'c-1', 20261001081500, 7, CAST('{\"a\":1}' AS BLOB))",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let hours = store
            .hour_digests(1, 20261001000000, 20261001235959)
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].rows, 1);
        assert_eq!(hours[0].xor, row_hash(b"{\"a\":1}"));
        assert_eq!(hours[0].hour_text(), "2026-10-01 08");
    }
}
