//! The report body, the same for every backend: the refusal rules decided from count and size
//! before the first byte, then the stored row objects joined by commas between the envelope's
//! head and tail, sent in chunks through a small bounded channel.
//!
//! A backend only counts, sums and reads rows (in one snapshot); this module owns the bytes.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{ReportHead, ReportQuery, ReportRefusal, ReportStream, StoreError, StoreResult};

/// Bytes per chunk sent to the HTTP body: large enough to amortise channel and syscall costs,
/// small enough that a few in flight keep memory flat.
const CHUNK_BYTES: usize = 128 * 1024;
/// Chunks buffered between the reading thread and the socket.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Where a report's head (or refusal) is sent once count and size are known.
pub(crate) type Ready = oneshot::Sender<Result<ReportStream, ReportRefusal>>;

/// Writes one report body from rows read on a blocking thread or an async task.
pub(crate) struct BodyWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<StoreResult<Bytes>>,
    rows: u64,
    sent: u64,
}

impl BodyWriter {
    /// Applies the record and size limits to the counted window, then answers `ready` with the
    /// stream or the refusal. `None` when refused, or when nobody waits any more (the request
    /// timed out or the client left): the caller then stops reading.
    pub(crate) fn start(ready: Ready, q: &ReportQuery, rows: u64, json_bytes: u64) -> Option<Self> {
        if rows > q.max_records {
            let _ = ready.send(Err(ReportRefusal::TooManyRecords(rows)));
            return None;
        }
        let head = voxtrail_wire::report_head(rows);
        let body_len = head.len() as u64
            + json_bytes
            + rows.saturating_sub(1)
            + voxtrail_wire::REPORT_TAIL.len() as u64;
        if body_len > q.max_bytes {
            let _ = ready.send(Err(ReportRefusal::TooLarge));
            return None;
        }
        let (tx, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let stream = ReportStream {
            head: ReportHead { rows, body_len },
            chunks,
        };
        ready.send(Ok(stream)).ok()?;
        // A poll-sized answer gets exactly its size (no slack to fragment the allocator);
        // a larger one a chunk plus room for the row that crosses the chunk's end.
        let whole = usize::try_from(body_len).unwrap_or(usize::MAX);
        let cap = whole.min(CHUNK_BYTES + 64 * 1024);
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(head.as_bytes());
        Some(Self {
            buf,
            tx,
            rows,
            sent: 0,
        })
    }

    /// Whether the body still lacks rows: a reader stops once every counted row is written.
    pub(crate) fn wants_more(&self) -> bool {
        self.sent < self.rows
    }

    /// Appends one stored row object; a full chunk, when there is one, is returned for sending.
    fn append(&mut self, json: &[u8]) -> Option<Bytes> {
        if self.sent > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(json);
        self.sent += 1;
        if self.buf.len() < CHUNK_BYTES {
            return None;
        }
        let next = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
        Some(Bytes::from(std::mem::replace(&mut self.buf, next)))
    }

    /// Appends one stored row object (from a blocking thread). `false` when the client has
    /// gone: stop reading.
    pub(crate) fn push(&mut self, json: &[u8]) -> bool {
        match self.append(json) {
            Some(chunk) => self.tx.blocking_send(Ok(chunk)).is_ok(),
            None => true,
        }
    }

    /// [`push`](Self::push) for a reader on the async runtime.
    pub(crate) async fn push_async(&mut self, json: &[u8]) -> bool {
        match self.append(json) {
            Some(chunk) => self.tx.send(Ok(chunk)).await.is_ok(),
            None => true,
        }
    }

    /// The last chunk: the envelope's tail — or, if fewer rows were read than counted (which
    /// one snapshot rules out), an error that cuts the answer: a body whose `msg` lies is
    /// never completed.
    fn last(mut self) -> (mpsc::Sender<StoreResult<Bytes>>, StoreResult<Bytes>) {
        if self.sent != self.rows {
            let e =
                StoreError::Corrupt(format!("counted {} rows but read {}", self.rows, self.sent));
            return (self.tx, Err(e));
        }
        self.buf.extend_from_slice(voxtrail_wire::REPORT_TAIL);
        (self.tx, Ok(Bytes::from(self.buf)))
    }

    /// Ends the body (from a blocking thread); see [`last`](Self::last).
    pub(crate) fn finish(self) {
        let (tx, last) = self.last();
        let _ = tx.blocking_send(last);
    }

    /// [`finish`](Self::finish) for a reader on the async runtime.
    pub(crate) async fn finish_async(self) {
        let (tx, last) = self.last();
        let _ = tx.send(last).await;
    }
}
