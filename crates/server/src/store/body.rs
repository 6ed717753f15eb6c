//! The report body, the same for every backend: the refusal rules decided from count and size
//! before the first byte, then the stored row objects joined by commas between the envelope's
//! head and tail, sent in chunks through a small bounded channel.
//!
//! A backend only counts, sums and reads rows (in one snapshot); this module owns the bytes:
//! [`decide`] applies the limits, [`Chunker`] cuts the body into chunks, and [`BodyWriter`]
//! sends them from a reader that owns its thread or task (PostgreSQL). SQLite drives a
//! [`Chunker`] itself from a shared pool of reader threads (`sqlite/report.rs`).

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{ReportHead, ReportQuery, ReportRefusal, ReportStream, StoreError, StoreResult};

/// Bytes per chunk sent to the HTTP body: large enough to amortise channel and syscall costs,
/// small enough that a few in flight keep memory flat.
pub(crate) const CHUNK_BYTES: usize = 128 * 1024;
/// Chunks buffered between the reader and the socket.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 4;
/// Room kept in a chunk's buffer for the row that crosses the chunk's end.
const CHUNK_SLACK: usize = 64 * 1024;

/// Where a report's head (or refusal) is sent once count and size are known.
pub(crate) type Ready = oneshot::Sender<Result<ReportStream, ReportRefusal>>;

/// Applies the record and size limits to a counted window: the answer's head (with `xor`, the
/// XOR of its row hashes), or why it is refused.
pub(crate) fn decide(
    q: &ReportQuery,
    rows: u64,
    json_bytes: u64,
    xor: [u8; 32],
) -> Result<ReportHead, ReportRefusal> {
    if rows > q.max_records {
        return Err(ReportRefusal::TooManyRecords(rows));
    }
    let body_len = voxtrail_wire::report_head(rows).len() as u64
        + json_bytes
        + rows.saturating_sub(1)
        + voxtrail_wire::REPORT_TAIL.len() as u64;
    if body_len > q.max_bytes {
        return Err(ReportRefusal::TooLarge);
    }
    Ok(ReportHead {
        rows,
        body_len,
        xor,
    })
}

/// Cuts one answer's body into chunks of about [`CHUNK_BYTES`]: the envelope's head, the
/// stored row objects joined by commas, the tail. Between chunks it holds no buffer, so a
/// parked answer (a slow client) costs no chunk of memory here.
pub(crate) struct Chunker {
    buf: Vec<u8>,
    rows: u64,
    sent: u64,
    /// Capacity of a chunk buffer: a poll-sized answer gets exactly its size (no slack to
    /// fragment the allocator), a larger one a chunk plus room for the row that crosses the
    /// chunk's end.
    cap: usize,
}

impl Chunker {
    pub(crate) fn new(head: ReportHead) -> Self {
        let text = voxtrail_wire::report_head(head.rows);
        let whole = usize::try_from(head.body_len).unwrap_or(usize::MAX);
        let cap = whole.min(CHUNK_BYTES + CHUNK_SLACK);
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(text.as_bytes());
        Self {
            buf,
            rows: head.rows,
            sent: 0,
            cap,
        }
    }

    /// Whether the body still lacks rows: a reader stops once every counted row is written.
    pub(crate) fn wants_more(&self) -> bool {
        self.sent < self.rows
    }

    /// Appends one stored row object; a full chunk, when there is one, is returned for sending.
    pub(crate) fn append(&mut self, json: &[u8]) -> Option<Bytes> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.cap);
        }
        if self.sent > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(json);
        self.sent += 1;
        if self.buf.len() < CHUNK_BYTES {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// The last chunk: the envelope's tail — or, if fewer rows were read than counted (which
    /// one snapshot rules out), an error that cuts the answer: a body whose `msg` lies is
    /// never completed.
    pub(crate) fn last(mut self) -> StoreResult<Bytes> {
        if self.sent != self.rows {
            return Err(StoreError::Corrupt(format!(
                "counted {} rows but read {}",
                self.rows, self.sent
            )));
        }
        self.buf.extend_from_slice(voxtrail_wire::REPORT_TAIL);
        Ok(Bytes::from(self.buf))
    }
}

/// Writes one report body from rows read on an async task (PostgreSQL).
pub(crate) struct BodyWriter {
    chunker: Chunker,
    tx: mpsc::Sender<StoreResult<Bytes>>,
}

impl BodyWriter {
    /// Applies the record and size limits to the counted window, then answers `ready` with the
    /// stream or the refusal. `None` when refused, or when nobody waits any more (the request
    /// timed out or the client left): the caller then stops reading.
    pub(crate) fn start(
        ready: Ready,
        q: &ReportQuery,
        rows: u64,
        json_bytes: u64,
        xor: [u8; 32],
    ) -> Option<Self> {
        let head = match decide(q, rows, json_bytes, xor) {
            Ok(h) => h,
            Err(refusal) => {
                let _ = ready.send(Err(refusal));
                return None;
            }
        };
        let (tx, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        ready.send(Ok(ReportStream { head, chunks })).ok()?;
        Some(Self {
            chunker: Chunker::new(head),
            tx,
        })
    }

    /// Whether the body still lacks rows: a reader stops once every counted row is written.
    pub(crate) fn wants_more(&self) -> bool {
        self.chunker.wants_more()
    }

    /// Appends one stored row object. `false` when the client has gone: stop reading.
    pub(crate) async fn push_async(&mut self, json: &[u8]) -> bool {
        match self.chunker.append(json) {
            Some(chunk) => self.tx.send(Ok(chunk)).await.is_ok(),
            None => true,
        }
    }

    /// Ends the body; see [`Chunker::last`].
    pub(crate) async fn finish_async(self) {
        let last = self.chunker.last();
        let _ = self.tx.send(last).await;
    }
}
