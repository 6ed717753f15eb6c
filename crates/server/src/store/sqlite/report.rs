//! SQLite reports: count, size and rows read in one read transaction on a blocking thread.

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::SqliteStore;
use crate::store::body::{BodyWriter, Ready};
use crate::store::{ReportQuery, ReportRefusal, ReportStream, StoreError, StoreResult};

impl SqliteStore {
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
    let (ini, end) = (q.window.ini().as_i64(), q.window.end().as_i64());
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
