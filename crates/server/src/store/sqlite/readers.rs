//! A small fixed pool of report reader threads, shared by every answer of one store.
//!
//! A report holds a reader thread only while it fills chunks, never while its client reads
//! them: a slow client costs a parked snapshot (a read connection inside its read
//! transaction), not a thread. Jobs run first in, first out, and a job fills a bounded number
//! of chunks before it goes back to the end of the queue, so a poll waits behind at most a few
//! short jobs whatever large answers are streaming. Token lookups and the first-of-day usage
//! read run here too (`SqliteStore::quick`), so they never queue behind long calls
//! (ingestion) on the runtime's blocking threads.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads of the pool: four per core (4–16), so a few long turns never hold every thread
/// and the server keeps its share of a busy machine's cores; reading is CPU work on pages the
/// operating system already caches.
fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .clamp(4, 16)
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Set when the pool's owner is dropped: threads finish the queue and exit.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// The pool. Dropping it lets its threads finish the queued jobs and exit.
pub(crate) struct ReaderPool {
    shared: Arc<Shared>,
}

impl ReaderPool {
    /// Starts the pool's threads.
    pub(crate) fn start() -> StoreResult<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        for i in 0..pool_size() {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("voxtrail-reader-{i}"))
                .spawn(move || work(&shared))
                .map_err(|cause| StoreError::Io {
                    context: "starting a report reader thread".into(),
                    cause,
                })?;
        }
        Ok(Self { shared })
    }

    /// Runs `f` on a pool thread; its result, or [`StoreError::TaskFailed`] if it panicked.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        rx.await
            .map_err(|_| StoreError::TaskFailed("report reader job failed".into()))
    }
}

impl Drop for ReaderPool {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.ready.notify_all();
    }
}

/// One pool thread: takes jobs until the pool is dropped and its queue is empty. A job that
/// panics drops its answer channel (the waiter sees `TaskFailed`); the thread lives on.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a report reader job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = ReaderPool::start().unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let failed = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(StoreError::TaskFailed(_))));
        // Every thread still serves: more jobs than threads, all answered.
        let mut all = Vec::new();
        for i in 0..32u32 {
            all.push(pool.run(move || i * 2));
        }
        for (i, f) in all.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), i as u32 * 2);
        }
    }
}
