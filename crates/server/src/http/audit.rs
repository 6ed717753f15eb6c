//! The consumer audit, off the request's hot path (docs/api.md, "Consumer audit").
//!
//! [`note_token`] (called where a token is accepted) marks the request in a task-local cell
//! that the outermost middleware (`observe.rs`) set up; when the answer's body ends, the
//! middleware hands one [`AuditRecord`] to the [`AuditSink`]: a bounded channel, never waited
//! on — when it is full the record is dropped and counted in `voxtrail_audit_dropped_total`.
//! A background [`AuditWriter`] drains it in batches (one transaction each, gathering records
//! for a short moment after the first of a batch) and deletes records older than
//! `audit.retention_days` every hour.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::domain::Token;
use crate::store::Store;
use crate::store::audit::{AuditRecord, audit_time};

/// Records waiting for the writer at most; more are dropped (and counted).
const CHANNEL_CAPACITY: usize = 16_384;
/// Records per insert transaction at most.
const MAX_BATCH: usize = 2_000;
/// How long the writer gathers records after the first of a batch: under load, one insert
/// transaction per this long rather than one per few requests (each takes the store's single
/// writer and a commit, which polls would otherwise pay for in CPU).
const GATHER: Duration = Duration::from_millis(50);
/// How often old records are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// The token a request presented, once it was accepted: `(token id, operation name)`.
pub type Presented = Arc<Mutex<Option<(i64, String)>>>;

tokio::task_local! {
    /// The current request's [`Presented`] cell, set by the observe middleware.
    pub static PRESENTED: Presented;
}

/// Marks the current request as made with a valid `token` (it will be audited).
pub fn note_token(token: &Token) {
    let _ = PRESENTED.try_with(|cell| {
        *cell.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((token.id, token.operation.name.to_string()));
    });
}

/// Where finished requests' records go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
}

impl AuditSink {
    /// Queues a record without waiting; `false` (and counted) when the queue is full or the
    /// writer is gone.
    pub fn offer(&self, record: AuditRecord) -> bool {
        match self.tx.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!("voxtrail_audit_dropped_total").increment(1);
                false
            }
        }
    }
}

/// The background writer; [`AuditWriter::stop`] writes what is queued and ends it.
#[derive(Debug)]
pub struct AuditWriter {
    stop: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl AuditWriter {
    /// Writes the queued records, then ends (waiting at most `within`).
    pub async fn stop(self, within: Duration) {
        self.stop.notify_one();
        let _ = tokio::time::timeout(within, self.handle).await;
    }
}

/// The sink and its writer, on the current runtime.
pub fn start(store: Store, retention_days: u32) -> (AuditSink, AuditWriter) {
    start_with(store, retention_days, CHANNEL_CAPACITY)
}

fn start_with(store: Store, retention_days: u32, capacity: usize) -> (AuditSink, AuditWriter) {
    let (tx, rx) = mpsc::channel(capacity);
    let stop = Arc::new(Notify::new());
    let handle = tokio::spawn(run(store, rx, retention_days, stop.clone()));
    (AuditSink { tx }, AuditWriter { stop, handle })
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<AuditRecord>,
    retention_days: u32,
    stop: Arc<Notify>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(first) = got else { break };
                let mut batch = vec![first];
                tokio::time::sleep(GATHER).await;
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                write(&store, batch).await;
            }
            _ = prune.tick() => {
                let cutoff = audit_time(
                    chrono::Utc::now() - chrono::Duration::days(i64::from(retention_days)),
                );
                match store.blocking(move |s| s.delete_audit_before(&cutoff)).await {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "old audit records deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "deleting old audit records"),
                }
            }
            () = stop.notified() => {
                let mut batch = Vec::new();
                while let Ok(r) = rx.try_recv() {
                    batch.push(r);
                }
                write(&store, batch).await;
                break;
            }
        }
    }
}

async fn write(store: &Store, batch: Vec<AuditRecord>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    if let Err(e) = store.blocking(move |s| s.insert_audit(&batch)).await {
        metrics::counter!("voxtrail_audit_dropped_total").increment(n as u64);
        tracing::warn!(error = %e, records = n, "writing audit records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            at: audit_time(chrono::Utc::now()),
            token_id: 1,
            operation: "acme".into(),
            route: "/r".into(),
            api: None,
            date_ini: None,
            date_end: None,
            status: 200,
            rows: i,
            bytes: 0,
            duration_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting_and_stop_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&format!("sqlite://{}", dir.path().join("a.db").display())).unwrap();
        // A current-thread runtime: the writer cannot run until this test yields.
        let (sink, writer) = start_with(store.clone(), 90, 2);
        assert!(sink.offer(record(1)));
        assert!(sink.offer(record(2)));
        assert!(!sink.offer(record(3)), "full: dropped, not waited for");
        writer.stop(Duration::from_secs(10)).await;
        let got = store.list_audit(&Default::default()).unwrap();
        assert_eq!(got.iter().map(|r| r.rows).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn noting_outside_a_request_is_harmless() {
        let op = crate::domain::Operation {
            id: 1,
            name: crate::domain::OperationName::parse("acme").unwrap(),
            tz: crate::domain::OperationTz::parse("UTC").unwrap(),
            licenses: 1,
        };
        note_token(&Token {
            id: 1,
            operation: op,
            scope: crate::domain::Scope::Report,
            description: String::new(),
            daily_limit: None,
            created_at: String::new(),
            revoked_at: None,
        });
    }
}
