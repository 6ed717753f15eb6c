//! SQLite reports: count, size and rows read in one read transaction (one snapshot), on the
//! store's small pool of reader threads (`readers.rs`).
//!
//! An answer is driven by an async task that holds no thread: it asks the pool to count and
//! size the window and fill the first chunks, then, each time the body's channel has room
//! again, to fill more. Between those jobs an answer larger than a few chunks keeps its read
//! transaction open on its connection (a parked [`Snapshot`]), so count, size and rows stay
//! one snapshot while its client reads at any pace. Each job resumes after the last row sent
//! (`(local_ts, seq)`, the index's order) inside that same transaction.
//!
//! Parked snapshots are bounded ([`MAX_OPEN_SNAPSHOTS`]): past the bound a large answer waits
//! (within the consumption timeout) for one to end; answers that fit in the channel at once
//! (every poll) never wait and never park. An open read transaction does not block the writer
//! in WAL mode, but a checkpoint cannot recycle the WAL past the oldest open snapshot: while a
//! slow client holds one, the `-wal` file grows by what is ingested meanwhile and is reset
//! after the snapshot ends.

use bytes::Bytes;
use rusqlite::params;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::digest::xor_result;
use super::{Reader, SqliteStore};
use crate::store::body::{self, CHUNK_BYTES, CHUNKS_IN_FLIGHT, Chunker, Ready};
use crate::store::{ReportHead, ReportQuery, ReportRefusal, ReportStream, StoreError, StoreResult};

/// Large answers whose read transaction may stay open between chunks at once; past it a large
/// answer waits for one to end. Each costs one read connection (two file descriptors) and
/// keeps the WAL from being recycled past it.
pub(super) const MAX_OPEN_SNAPSHOTS: usize = 64;
/// Chunks one job fills (while the channel has room) before it yields its thread to the next
/// job in the queue.
const CHUNKS_PER_TURN: usize = 8;
/// Answers up to this size are produced whole by their first job (their chunks all fit in the
/// empty channel), so they never park a snapshot nor wait for one.
const WHOLE_AT_ONCE: u64 = (CHUNK_BYTES * (CHUNKS_IN_FLIGHT - 1)) as u64;

type ChunkSender = mpsc::Sender<StoreResult<Bytes>>;

impl SqliteStore {
    pub fn start_report(
        &self,
        q: ReportQuery,
    ) -> oneshot::Receiver<Result<ReportStream, ReportRefusal>> {
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(self.clone().produce(q, ready_tx));
        ready_rx
    }

    /// Drives one answer: its head (or refusal) on `ready`, then its chunks.
    async fn produce(self, q: ReportQuery, mut ready: Ready) {
        let (first_tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let mut unused_tx = Some(first_tx);
        let mut permit = None;
        let (head, mut snapshot, mut tx, mut turn) = loop {
            let store = self.clone();
            let sem = self.inner.snapshots.clone();
            let Some(tx) = unused_tx.take() else { return };
            let opened = self
                .inner
                .readers
                .run(move || open_answer(&store, q, permit, &sem, tx))
                .await
                .and_then(|r| r);
            match opened {
                Err(e) => {
                    let _ = ready.send(Err(e.into()));
                    return;
                }
                Ok(Opened::Refused(r)) => {
                    let _ = ready.send(Err(r));
                    return;
                }
                Ok(Opened::Ready {
                    head,
                    snapshot,
                    tx,
                    turn,
                }) => break (head, snapshot, tx, turn),
                Ok(Opened::WaitForSnapshot(tx)) => {
                    unused_tx = Some(tx);
                    // Every snapshot is taken: wait for one, unless nobody waits any more.
                    let sem = self.inner.snapshots.clone();
                    permit = tokio::select! {
                        p = sem.acquire_owned() => match p {
                            Ok(p) => Some(p),
                            Err(_) => return,
                        },
                        () = ready.closed() => return,
                    };
                }
            }
        };
        if ready.send(Ok(ReportStream { head, chunks: rx })).is_err() {
            return; // nobody waits any more; the snapshot ends as it drops
        }
        loop {
            match turn {
                Turn::Done | Turn::Gone => return,
                Turn::Full => {
                    // Wait for the client to take a chunk; the room is ours (one producer).
                    if tx.reserve().await.is_err() {
                        return;
                    }
                }
                Turn::Yield => {}
            }
            let Some(mut snap) = snapshot.take() else {
                return;
            };
            let ran = self
                .inner
                .readers
                .run(move || {
                    let turn = fill(&mut snap, &tx);
                    (snap, tx, turn)
                })
                .await;
            match ran {
                Ok((snap, sender, t)) => {
                    snapshot = Some(snap);
                    tx = sender;
                    turn = t;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "report stream ended early");
                    return;
                }
            }
        }
    }
}

/// What the first job of an answer found.
enum Opened {
    Refused(ReportRefusal),
    /// The answer is large and every snapshot is taken; nothing is held but the channel's
    /// sender, handed back for the next attempt.
    WaitForSnapshot(ChunkSender),
    Ready {
        head: ReportHead,
        /// `None` when the answer was finished (or abandoned) by the first job.
        snapshot: Option<Box<Snapshot>>,
        tx: ChunkSender,
        turn: Turn,
    },
}

/// How a job's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The last chunk (or an error that cuts the answer) was sent.
    Done,
    /// The client has gone.
    Gone,
    /// The channel is full: wait for room.
    Full,
    /// The turn's chunks were sent and there is room: queue again behind other jobs.
    Yield,
}

/// An answer between jobs: a read connection inside the answer's read transaction, where the
/// next chunk starts, and (for a large answer) the bound's permit. Dropping it ends the read
/// transaction and returns the connection to the pool.
struct Snapshot {
    reader: Reader,
    q: ReportQuery,
    /// `(local_ts, seq)` of the last row sent; rows after it come next.
    after: (i64, i64),
    chunker: Option<Chunker>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if !self.reader.is_autocommit() {
            // Ends the snapshot; a read transaction has nothing to lose.
            let _ = self.reader.execute_batch("COMMIT");
        }
    }
}

/// The first job: count and size the window in a new read transaction, apply the limits, and
/// fill the first chunks. A large answer takes a snapshot permit (`permit`, or a free one) or
/// gives everything back and asks to wait for one.
fn open_answer(
    store: &SqliteStore,
    q: ReportQuery,
    permit: Option<OwnedSemaphorePermit>,
    sem: &std::sync::Arc<tokio::sync::Semaphore>,
    tx: ChunkSender,
) -> StoreResult<Opened> {
    let reader = store.reader()?;
    reader.execute_batch("BEGIN")?;
    let mut snap = Snapshot {
        reader,
        q,
        after: (q.window.ini().as_i64(), i64::MIN),
        chunker: None,
        _permit: None,
    };
    let (rows, json_bytes, xor) = {
        let mut st = snap.reader.prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(json_len), 0), voxtrail_xor(row_hash)
               FROM interactions INDEXED BY interactions_window_hash
              WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3",
        )?;
        let mut found = st.query(params![
            q.operation_id,
            q.window.ini().as_i64(),
            q.window.end().as_i64()
        ])?;
        let r = found
            .next()?
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))?;
        (
            r.get::<_, i64>(0)? as u64,
            r.get::<_, i64>(1)? as u64,
            xor_result(r.get_ref(2)?)?,
        )
    };
    // Count, size and the XOR of the row hashes (the ETag) come from one scan of the covering
    // window index, in the snapshot the rows are read from.
    let head = match body::decide(&q, rows, json_bytes, xor) {
        Ok(h) => h,
        Err(r) => return Ok(Opened::Refused(r)),
    };
    if head.body_len > WHOLE_AT_ONCE {
        match permit.or_else(|| sem.clone().try_acquire_owned().ok()) {
            Some(p) => snap._permit = Some(p),
            None => return Ok(Opened::WaitForSnapshot(tx)),
        }
    }
    snap.chunker = Some(Chunker::new(head));
    let turn = fill(&mut snap, &tx);
    let snapshot = matches!(turn, Turn::Full | Turn::Yield).then(|| Box::new(snap));
    Ok(Opened::Ready {
        head,
        snapshot,
        tx,
        turn,
    })
}

/// One turn: fills and sends chunks while the channel has room, at most [`CHUNKS_PER_TURN`].
fn fill(snap: &mut Snapshot, tx: &ChunkSender) -> Turn {
    for _ in 0..CHUNKS_PER_TURN {
        let room = match tx.try_reserve() {
            Ok(r) => r,
            Err(mpsc::error::TrySendError::Full(())) => return Turn::Full,
            Err(mpsc::error::TrySendError::Closed(())) => return Turn::Gone,
        };
        match next_chunk(snap) {
            Ok(Some(chunk)) => room.send(Ok(chunk)),
            Ok(None) => {
                let last = snap.chunker.take().map_or_else(
                    || Err(StoreError::Corrupt("answer already ended".into())),
                    Chunker::last,
                );
                room.send(last);
                return Turn::Done;
            }
            Err(e) => {
                tracing::warn!(error = %e, "report stream ended early");
                room.send(Err(e));
                return Turn::Done;
            }
        }
    }
    Turn::Yield
}

/// Reads rows after the last one sent until a chunk is full (`Some`), or until the counted rows
/// or the window's rows run out (`None`: the tail comes next).
fn next_chunk(snap: &mut Snapshot) -> StoreResult<Option<Bytes>> {
    let Some(chunker) = snap.chunker.as_mut() else {
        return Ok(None);
    };
    if !chunker.wants_more() {
        return Ok(None);
    }
    let q = snap.q;
    let mut st = snap.reader.prepare_cached(
        "SELECT local_ts, seq, json FROM interactions INDEXED BY interactions_window_hash
         WHERE operation_id = ?1 AND (local_ts, seq) > (?2, ?3) AND local_ts <= ?4
         ORDER BY local_ts, seq",
    )?;
    let mut cursor = st.query(params![
        q.operation_id,
        snap.after.0,
        snap.after.1,
        q.window.end().as_i64()
    ])?;
    while chunker.wants_more() {
        let Some(row) = cursor.next()? else { break };
        snap.after = (row.get(0)?, row.get(1)?);
        let json = row
            .get_ref(2)?
            .as_bytes()
            .map_err(|e| StoreError::Corrupt(format!("stored row: {e}")))?;
        if let Some(chunk) = chunker.append(json) {
            return Ok(Some(chunk));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interaction, OperationName, OperationTz, WallClock, Window};
    use crate::store::Durability;
    use crate::store::IngestSink as _;

    /// A store with one operation holding `rows` rows of ~2 KB on one day.
    fn store_with_rows(dir: &std::path::Path, rows: usize) -> (SqliteStore, i64) {
        let store = SqliteStore::open(&dir.join("r.db")).unwrap();
        let op = store
            .create_operation(
                &OperationName::parse("acme").unwrap(),
                OperationTz::parse("UTC").unwrap(),
                1,
            )
            .unwrap();
        let body = "x".repeat(2_000);
        let mut sink = store.begin_ingest(op.id, Durability::Deferred).unwrap();
        for i in 0..rows {
            let date = WallClock::from_i64(20_261_001_000_000 + (i as i64 % 60)).unwrap();
            let json = format!(r#"{{"conn_id":"c{i}","body":"{body}","date":"{date}"}}"#);
            sink.insert(&Interaction {
                conn_id: format!("c{i}"),
                date,
                json: json.into_bytes(),
            })
            .unwrap();
        }
        Box::new(sink).commit().unwrap();
        (store, op.id)
    }

    fn day(op: i64) -> ReportQuery {
        ReportQuery {
            operation_id: op,
            window: Window::parse("20261001000000", "20261001235959", 31).unwrap(),
            max_records: 1_000_000,
            max_bytes: u64::MAX,
        }
    }

    async fn read_all(mut s: ReportStream) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(c) = s.chunks.recv().await {
            body.extend_from_slice(&c.unwrap());
        }
        body
    }

    /// Past the bound a large answer waits for a snapshot, then is served whole from its own
    /// snapshot; a small one never waits; a waiting answer nobody waits for any more gives up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_answers_past_the_snapshot_bound_wait_and_polls_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (store, op) = store_with_rows(dir.path(), 400); // ~800 KB: parks between chunks
        let mut held = Vec::new();
        for _ in 0..MAX_OPEN_SNAPSHOTS {
            let s = store.start_report(day(op)).await.unwrap().unwrap();
            assert_eq!(s.head.rows, 400);
            held.push(s);
        }
        assert_eq!(store.inner.snapshots.available_permits(), 0);
        // The next large answer waits; a small one (a few rows) is answered meanwhile.
        let mut waiting = store.start_report(day(op));
        let mut small_q = day(op);
        small_q.window = Window::parse("20261001000000", "20261001000001", 31).unwrap();
        let small = store.start_report(small_q).await.unwrap().unwrap();
        let rows = small.head.rows;
        assert!(rows > 0 && rows < 400);
        let v: serde_json::Value = serde_json::from_slice(&read_all(small).await).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len() as u64, rows);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "a large answer past the bound waits"
        );
        // Another waiting one whose requester leaves gives up without taking a snapshot.
        drop(store.start_report(day(op)));
        // One held answer read to the end frees its snapshot: the waiting one is served whole.
        let first = held.pop().unwrap();
        let len = first.head.body_len;
        assert_eq!(read_all(first).await.len() as u64, len);
        let s = waiting.await.unwrap().unwrap();
        let len = s.head.body_len;
        let body = read_all(s).await;
        assert_eq!(body.len() as u64, len);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 400);
        // Dropping the held streams ends their snapshots: every permit comes back.
        drop(held);
        let back = async {
            while store.inner.snapshots.available_permits() < MAX_OPEN_SNAPSHOTS {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), back)
            .await
            .expect("every snapshot ends once its body is dropped");
    }
}
