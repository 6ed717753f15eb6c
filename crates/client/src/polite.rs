//! Politeness: one request at a time per token in this process, an optional advisory lock file
//! shared with other processes, and exponential backoff with jitter.
//!
//! Owns the process-wide token locks and the lock-file guard. Knows nothing of answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::Rng as _;

/// The async mutex every client of this process holding `token` shares.
pub(crate) fn token_lock(token: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(token.to_owned()).or_default().clone()
}

/// An exclusive advisory lock on a file, held until dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Waits (on a blocking thread) until the lock on `path` is ours.
    pub(crate) async fn acquire(path: &Path) -> std::io::Result<FileLock> {
        let path: PathBuf = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // std's advisory lock (flock on Unix, LockFileEx on Windows) — no extra crate needed.
            file.lock()?;
            Ok(FileLock { _file: file })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Backoff settings: delay before retry `n` (1-based) is `base·2^(n-1)`, capped at `max`, with
/// "equal jitter" (a random point in the upper half) so clients spread out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let d = exp.min(self.max);
        let half = d / 2;
        let extra = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for n in 1..30 {
            let d = b.delay(n);
            assert!(d <= Duration::from_millis(2001), "{n}: {d:?}");
        }
        assert!(b.delay(1) <= Duration::from_millis(101));
        assert!(b.delay(10) >= Duration::from_secs(1));
    }

    #[test]
    fn same_token_same_lock() {
        let a = token_lock("t1");
        let b = token_lock("t1");
        let c = token_lock("t2");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
