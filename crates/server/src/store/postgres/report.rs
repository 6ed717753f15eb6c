//! PostgreSQL reports: a poll-sized answer from one statement, a larger one streamed from one
//! `REPEATABLE READ` snapshot on an async report connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_postgres::IsolationLevel;

use super::PgStore;
use super::async_pool::AsyncConn;
use crate::store::body::{BodyWriter, Ready};
use crate::store::digest::{row_hash, xor_into};
use crate::store::{ReportQuery, ReportRefusal, ReportStream, StoreError, StoreResult};

impl PgStore {
    /// Starts producing a report on the async runtime (needs one).
    pub fn start_report(
        &self,
        q: ReportQuery,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        self.spawn_report(q, true)
    }

    /// `start_report`, optionally skipping the poll-sized attempt (known to be too small).
    pub(super) fn spawn_report(
        &self,
        q: ReportQuery,
        try_small: bool,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let store = self.clone();
        tokio::spawn(async move {
            // A streamed answer takes its operation's share first: over it, "busy" at once
            // rather than a wait that other operations would share.
            let share = match try_small {
                true => None,
                false => match store.inner.streaming.take(q.operation_id) {
                    Some(s) => Some(s),
                    None => {
                        let _ = ready_tx.send(Err(StoreError::Busy.into()));
                        return;
                    }
                },
            };
            let mut conn = match store.inner.reports.get().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let streaming = &store.inner.streaming;
            if let Err(e) = produce_report(&mut conn, q, ready_tx, streaming, share).await {
                conn.discard();
                tracing::warn!(error = %e, "report stream ended early");
            }
        });
        ready_rx
    }
}

/// Streamed answers in progress per operation, each holding a report connection while its
/// client reads: at most `cap` per operation.
pub(super) struct Shares {
    cap: usize,
    held: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One streamed answer's place in its operation's share; freed when dropped.
pub(super) struct Share {
    operation: i64,
    held: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Shares {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            held: Arc::default(),
        }
    }

    /// A place for one more streamed answer of `operation`, or `None` at its share.
    pub(super) fn take(&self, operation: i64) -> Option<Share> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(operation).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Share {
            operation,
            held: self.held.clone(),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.operation) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.operation);
            }
        }
    }
}

/// A poll-sized answer (at most this many rows and bytes) comes whole from one statement.
pub(super) const SMALL_ROWS: usize = 256;
const SMALL_BYTES: usize = 4 << 20;

/// The first rows of a window, in order: one index range scan that stops after `$4` rows. A
/// count in the same statement (a CTE, a lateral join and a sort) cost PostgreSQL 75 % more CPU
/// than the rows themselves, so the count of a poll-sized answer is the rows read.
const FIRST_ROWS: &str = "
SELECT json FROM interactions
 WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3
 ORDER BY local_ts, seq
 LIMIT $4";

/// The rows of a possibly poll-sized answer, kept while they stay within `SMALL_ROWS` rows and
/// `SMALL_BYTES` bytes (one row more is read to know the window is larger).
#[derive(Default)]
pub(super) struct SmallRows {
    json: Vec<u8>,
    /// End offset of each row in `json`.
    ends: Vec<usize>,
    /// XOR of the kept rows' hashes (`digest::row_hash` of the JSON, which is what the stored
    /// `row_hash` is): the answer's ETag without another statement.
    xor: [u8; 32],
    pub(super) overflowed: bool,
}

impl SmallRows {
    /// Keeps one row; `false` once the window is known not to be poll-sized.
    pub(super) fn add(&mut self, row: &[u8]) -> bool {
        if self.overflowed {
            return false;
        }
        if self.ends.len() >= SMALL_ROWS || self.json.len() + row.len() > SMALL_BYTES {
            self.overflowed = true;
            self.json = Vec::new();
            self.ends = Vec::new();
            return false;
        }
        xor_into(&mut self.xor, &row_hash(row));
        self.json.extend_from_slice(row);
        self.ends.push(self.json.len());
        true
    }

    /// The answer, produced by a task on the runtime (the body's channel is bounded).
    pub(super) fn answer(
        self,
        q: ReportQuery,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        let (ready, head) = oneshot::channel();
        tokio::spawn(async move { self.write(ready, &q).await });
        head
    }

    /// Applies the limits (through [`BodyWriter`]) and writes the body.
    async fn write(self, ready: Ready, q: &ReportQuery) {
        let (rows, bytes) = (self.ends.len() as u64, self.json.len() as u64);
        let Some(mut body) = BodyWriter::start(ready, q, rows, bytes, self.xor) else {
            return;
        };
        let mut start = 0;
        for &end in &self.ends {
            if !body.push_async(&self.json[start..end]).await {
                return; // client gone
            }
            start = end;
        }
        body.finish_async().await;
    }
}

/// A poll-sized answer from one statement (one snapshot, one round trip), or `Ok(false)` when
/// the window holds more rows or bytes than that.
async fn small_report(
    conn: &mut AsyncConn,
    q: &ReportQuery,
    ready: &mut Option<oneshot::Sender<Result<ReportStream, ReportRefusal>>>,
) -> StoreResult<bool> {
    let st = conn.prepared(FIRST_ROWS).await?;
    let (ini, end) = (q.window.ini().as_i64(), q.window.end().as_i64());
    let limit = SMALL_ROWS as i64 + 1;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&q.operation_id, &ini, &end, &limit];
    let stream = conn.client().query_raw(&st, params).await?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = SmallRows::default();
    while let Some(row) = stream.next().await {
        if !rows.add(row?.try_get::<_, &[u8]>(0)?) {
            return Ok(false); // the rest of the (limited) answer is skipped by the driver
        }
    }
    let sender = ready.take().expect("sent once");
    let (n, bytes) = (rows.ends.len() as u64, rows.json.len() as u64);
    let Some(mut body) = BodyWriter::start(sender, q, n, bytes, rows.xor) else {
        return Ok(true);
    };
    let mut start = 0;
    for &end in &rows.ends {
        if !body.push_async(&rows.json[start..end]).await {
            return Ok(true); // client gone
        }
        start = end;
    }
    body.finish_async().await;
    Ok(true)
}

/// The stored row hashes of a window: an index-only scan of `interactions_window_hash`.
const WINDOW_HASHES: &str = "
SELECT row_hash FROM interactions
 WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3";

/// The XOR of a window's stored row hashes, read in `tx`'s snapshot.
async fn window_xor(
    tx: &tokio_postgres::Transaction<'_>,
    st: &tokio_postgres::Statement,
    q: &ReportQuery,
) -> StoreResult<[u8; 32]> {
    let (ini, end) = (q.window.ini().as_i64(), q.window.end().as_i64());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&q.operation_id, &ini, &end];
    let stream = tx.query_raw(st, params).await?;
    let mut stream = std::pin::pin!(stream);
    let mut xor = [0; 32];
    while let Some(row) = stream.next().await {
        let row = row?;
        let hash = row.try_get::<_, &[u8]>(0)?;
        if hash.len() != 32 {
            return Err(StoreError::Corrupt("a row has a bad row_hash".into()));
        }
        xor_into(&mut xor, hash);
    }
    Ok(xor)
}

/// Count and size, then the rows streamed as they arrive, all in one REPEATABLE READ snapshot
/// — or a poll-sized answer from one statement. Memory stays flat: the driver stops reading the
/// socket while the body's bounded channel is full.
async fn produce_report(
    conn: &mut AsyncConn,
    q: ReportQuery,
    ready: oneshot::Sender<Result<ReportStream, ReportRefusal>>,
    shares: &Shares,
    share: Option<Share>,
) -> StoreResult<()> {
    let mut ready = Some(ready);
    if share.is_none() {
        match small_report(conn, &q, &mut ready).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e.into()));
                }
                return Ok(());
            }
        }
    }
    let ready = ready.expect("not sent when the answer is not small");
    let _share = match share.or_else(|| shares.take(q.operation_id)) {
        Some(s) => s,
        None => {
            let _ = ready.send(Err(StoreError::Busy.into()));
            return Ok(());
        }
    };
    let count_st = conn
        .prepared(
            "SELECT COUNT(*), COALESCE(SUM(json_len), 0)::BIGINT FROM interactions
             WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3",
        )
        .await?;
    let hash_st = conn.prepared(WINDOW_HASHES).await?;
    let rows_st = conn
        .prepared(
            "SELECT json FROM interactions
             WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3
             ORDER BY local_ts, seq",
        )
        .await?;
    let (ini, end) = (q.window.ini().as_i64(), q.window.end().as_i64());
    let tx = conn
        .client_mut()
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let counted = tx
        .query_one(&count_st, &[&q.operation_id, &ini, &end])
        .await;
    let (rows, json_bytes) = match counted {
        Ok(r) => (
            r.get::<_, i64>(0).max(0) as u64,
            r.get::<_, i64>(1).max(0) as u64,
        ),
        Err(e) => {
            let _ = ready.send(Err(StoreError::from(e).into()));
            return Ok(());
        }
    };
    // The XOR of the row hashes, in the same snapshot; not read for a window refused by its
    // count (the size check below needs only the count and the sum).
    let xor = match rows > q.max_records {
        true => Ok([0; 32]),
        false => window_xor(&tx, &hash_st, &q).await,
    };
    let xor = match xor {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return Ok(());
        }
    };
    let Some(mut body) = BodyWriter::start(ready, &q, rows, json_bytes, xor) else {
        return Ok(()); // refused, or nobody waits any more
    };
    let mut gone = false;
    if rows > 0 {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&q.operation_id, &ini, &end];
        let stream = tx.query_raw(&rows_st, params).await?;
        let mut stream = std::pin::pin!(stream);
        while body.wants_more() {
            let Some(row) = stream.next().await else {
                break;
            };
            if !body.push_async(row?.try_get::<_, &[u8]>(0)?).await {
                gone = true;
                break;
            }
        }
    }
    if gone {
        // The client left: close the session rather than let it drain the unwanted rows.
        drop(tx);
        conn.discard();
        return Ok(());
    }
    tx.rollback().await?; // read only: as good as a commit
    body.finish_async().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_gets_its_share_and_others_theirs() {
        let shares = Shares::new(2);
        let a1 = shares.take(1).expect("first of 1");
        let a2 = shares.take(1).expect("second of 1");
        assert!(shares.take(1).is_none(), "1 is at its share");
        let b = shares.take(2).expect("2 has its own share");
        drop(a1);
        let a3 = shares.take(1).expect("a freed place is taken again");
        drop((a2, a3, b));
        assert!(
            shares.held.lock().unwrap().is_empty(),
            "nothing is left behind"
        );
        // A share of zero still lets one answer through per operation.
        assert!(Shares::new(0).take(7).is_some());
    }
}
