//! SQLite digests: `(local_ts, row_hash)` of a window from the covering window index
//! `interactions_window_hash`, folded into hours (`store/digest.rs`); the `voxtrail_xor`
//! aggregate, so one statement counts, sizes and XORs a window in one index-only scan; and the
//! filling of `row_hash` for rows stored before the column existed.

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::domain::WallClock;
use crate::store::digest::{HourDigest, row_hash, xor_into};
use crate::store::{StoreError, StoreResult};

/// Adds the per-row SHA-256 and its covering index; `fill_row_hashes` runs right after it.
pub(super) const ROW_HASH_MIGRATION: &str = "
ALTER TABLE interactions ADD COLUMN row_hash BLOB;
CREATE INDEX interactions_hash ON interactions(operation_id, local_ts, row_hash);
";

/// One covering index for every window read (ETag, report, hours): it replaces the window index
/// `(operation_id, local_ts, seq, json_len)` and `interactions_hash`
/// `(operation_id, local_ts, row_hash)`, so an answer's count, size and ETag come from one
/// index-only scan and ingestion maintains one index fewer.
pub(super) const WINDOW_HASH_MIGRATION: &str = "
DROP INDEX IF EXISTS interactions_hash;
DROP INDEX IF EXISTS interactions_window;
CREATE INDEX interactions_window_hash
    ON interactions(operation_id, local_ts, seq, json_len, row_hash);
";

/// `voxtrail_xor(row_hash)`: the byte-wise XOR of the 32-byte hashes of the rows aggregated
/// (32 zero bytes for none), or NULL when a row has no 32-byte hash (a corrupt row; the caller
/// says so).
struct XorHashes;

/// The running XOR, and whether a row had no proper hash.
type XorAcc = ([u8; 32], bool);

impl Aggregate<XorAcc, Option<Vec<u8>>> for XorHashes {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<XorAcc> {
        Ok(([0; 32], false))
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut XorAcc) -> rusqlite::Result<()> {
        match ctx.get_raw(0) {
            ValueRef::Blob(h) if h.len() == 32 => xor_into(&mut acc.0, h),
            _ => acc.1 = true,
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<XorAcc>,
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(match acc {
            None => Some(vec![0; 32]),
            Some((_, true)) => None,
            Some((xor, false)) => Some(xor.to_vec()),
        })
    }
}

/// Registers `voxtrail_xor` on a connection.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_aggregate_function(
        "voxtrail_xor",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        XorHashes,
    )
}

/// The result of `voxtrail_xor`: its 32 bytes, or the window has a corrupt row.
pub(super) fn xor_result(v: ValueRef<'_>) -> StoreResult<[u8; 32]> {
    v.as_blob_or_null()
        .map_err(rusqlite::Error::from)?
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| StoreError::Corrupt("a row has no row_hash".into()))
}

/// The hours of `ini ..= end` (both `YYYYmmddHHiiss`), each aggregated by one statement.
fn hours_in(
    conn: &Connection,
    operation_id: i64,
    ini: i64,
    end: i64,
) -> StoreResult<Vec<HourDigest>> {
    let first = WallClock::from_i64(ini - ini % 10_000)
        .ok_or_else(|| StoreError::Corrupt(format!("window start {ini} is not a wall clock")))?;
    let mut st = conn.prepare_cached(
        "SELECT COUNT(*), voxtrail_xor(row_hash) FROM interactions
         INDEXED BY interactions_window_hash
         WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3",
    )?;
    let mut hours = Vec::new();
    let mut hour = first.to_naive();
    loop {
        let start = WallClock::from_naive(hour).as_i64();
        if start > end {
            break;
        }
        let mut rows = st.query(params![
            operation_id,
            start.max(ini),
            (start + 5_959).min(end)
        ])?;
        let r = rows
            .next()?
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))?;
        let n = r.get::<_, i64>(0)? as u64;
        if n > 0 {
            hours.push(HourDigest {
                hour: start / 10_000,
                rows: n,
                xor: xor_result(r.get_ref(1)?)?,
            });
        }
        hour += chrono::Duration::hours(1);
    }
    Ok(hours)
}

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
    /// The per-hour digests of a window: one aggregate (`voxtrail_xor`) per wall-clock hour
    /// over the covering window index, all in one read transaction. SQLite folds each hour's
    /// hashes itself, which is ~3× faster than stepping every `(local_ts, row_hash)` pair out to
    /// Rust (220,000 rows over 31 days: ~40 ms instead of ~120 ms on 2 shared cores).
    pub(crate) fn hour_digests(
        &self,
        operation_id: i64,
        ini: i64,
        end: i64,
    ) -> StoreResult<Vec<HourDigest>> {
        let conn = self.reader()?;
        conn.execute_batch("BEGIN")?;
        let result = hours_in(&conn, operation_id, ini, end);
        let _ = conn.execute_batch("COMMIT");
        result
    }

    /// Row count and XOR of the row hashes of a window (what its ETag is made of): one
    /// index-only scan.
    pub(crate) fn window_digest(
        &self,
        operation_id: i64,
        ini: i64,
        end: i64,
    ) -> StoreResult<(u64, [u8; 32])> {
        let conn = self.reader()?;
        let mut st = conn.prepare_cached(
            "SELECT COUNT(*), voxtrail_xor(row_hash) FROM interactions
             INDEXED BY interactions_window_hash
             WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3",
        )?;
        let mut rows = st.query(params![operation_id, ini, end])?;
        let r = rows
            .next()?
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))?;
        Ok((r.get::<_, i64>(0)? as u64, xor_result(r.get_ref(1)?)?))
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

    /// The window digest (one aggregate over the covering index) agrees with the hours folded
    /// in Rust; an empty window is zero rows and zero bytes; a row without a hash is corrupt,
    /// not a wrong tag; and the window index is the one covering index left.
    #[test]
    fn window_digest_is_the_fold_of_the_hours_and_refuses_a_missing_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let rows = [
            (20261001081500_i64, "{\"a\":1}"),
            (20261001081500, "{\"b\":2}"),
            (20261001093000, "{\"c\":3}"),
            (20261002000000, "{\"d\":4}"),
        ];
        {
            let w = store.writer();
            for (i, (ts, json)) in rows.iter().enumerate() {
                w.execute(
                    "INSERT INTO interactions(operation_id, conn_id, local_ts, json_len, json,
                                              row_hash, feed_pos)
                     VALUES (1, ?1, ?2, ?3, CAST(?4 AS BLOB), ?5, ?6)",
                    params![
                        format!("c{i}"),
                        ts,
                        json.len() as i64,
                        json,
                        row_hash(json.as_bytes()).as_slice(),
                        i as i64 + 1
                    ],
                )
                .unwrap();
            }
        }
        let (ini, end) = (20261001000000, 20261001235959);
        let hours = store.hour_digests(1, ini, end).unwrap();
        assert_eq!(hours.len(), 2);
        let (n, xor) = store.window_digest(1, ini, end).unwrap();
        assert_eq!((n, xor), crate::store::digest::window_of(&hours));
        assert_eq!(n, 3);
        let mut want = [0; 32];
        for (_, json) in &rows[..3] {
            xor_into(&mut want, &row_hash(json.as_bytes()));
        }
        assert_eq!(xor, want);
        // Hours cut by the window's bounds, across midnight: each hour holds exactly the rows
        // of the window inside it.
        let cut = store
            .hour_digests(1, 20261001081500, 20261002000000)
            .unwrap();
        let got: Vec<(String, u64)> = cut.iter().map(|h| (h.hour_text(), h.rows)).collect();
        assert_eq!(
            got,
            [
                ("2026-10-01 08".to_string(), 2),
                ("2026-10-01 09".to_string(), 1),
                ("2026-10-02 00".to_string(), 1)
            ]
        );
        let later = store
            .hour_digests(1, 20261001081501, 20261001235959)
            .unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].xor, row_hash(rows[2].1.as_bytes()));
        assert!(
            store
                .hour_digests(1, 20261001000000, 20261001081459)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .window_digest(1, 20261003000000, 20261003235959)
                .unwrap(),
            (0, [0; 32])
        );
        assert_eq!(store.window_digest(2, ini, end).unwrap(), (0, [0; 32]));
        store
            .writer()
            .execute(
                "UPDATE interactions SET row_hash = NULL WHERE conn_id = 'c2'",
                [],
            )
            .unwrap();
        assert!(matches!(
            store.window_digest(1, ini, end),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            store
                .window_digest(1, 20261002000000, 20261002235959)
                .unwrap()
                .0,
            1,
            "other windows are not affected"
        );
        let indexes: Vec<String> = store
            .writer()
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'interactions'
                  AND sql IS NOT NULL ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "interactions_conn",
                "interactions_feed",
                "interactions_window_hash"
            ]
        );
    }
}
