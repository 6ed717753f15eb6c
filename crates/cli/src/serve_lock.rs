//! One `voxtrail serve` per SQLite database. On SQLite the daily limits and concurrency slots
//! live in the serving process (docs/adr/0002-limits-in-process.md), so two servers on one
//! file would each admit a token's whole daily limit. `serve` and `demo` therefore hold an
//! exclusive advisory lock on `PATH.lock` beside the database for as long as they run; the
//! file records the holder's pid and listen address for the refusal message.
//!
//! The lock is the operating system's (`flock`), so it dies with its process: a lock file
//! left by a killed server blocks nobody. The file is never deleted, since deleting a lock
//! file another process has just opened would let two servers lock two different files.
//! Other commands (import, token, seed, …) do not take the lock. PostgreSQL is not concerned:
//! its limits live in the database, and any number of replicas may serve it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

/// The lock of a running server, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ServeLock {
    file: File,
    path: PathBuf,
}

/// The lock file of a SQLite database URL; `None` for other databases.
pub fn lock_path(database_url: &str) -> Option<PathBuf> {
    let db = database_url.strip_prefix("sqlite://")?;
    (!db.is_empty()).then(|| PathBuf::from(format!("{db}.lock")))
}

/// Takes the serving lock of a SQLite database, or says who holds it. Does nothing (returns
/// `None`) for PostgreSQL.
pub fn acquire(database_url: &str) -> anyhow::Result<Option<ServeLock>> {
    let Some(path) = lock_path(database_url) else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the holder's pid and address stay readable until we hold the lock
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "the SQLite database {} is already served by another voxtrail serve ({}; lock file {}): \
                 one server per SQLite database, because its limits live in that process; \
                 stop that server first, or use PostgreSQL to run several replicas",
                database_url.trim_start_matches("sqlite://"),
                describe(&holder),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    let mut lock = ServeLock { file, path };
    lock.record(None)?;
    Ok(Some(lock))
}

impl ServeLock {
    /// Writes this process's pid, and the listen address once known, into the lock file.
    pub fn record(&mut self, listen: Option<SocketAddr>) -> anyhow::Result<()> {
        let mut text = format!("pid {}\n", std::process::id());
        if let Some(addr) = listen {
            text.push_str(&format!("listen http://{addr}\n"));
        }
        (|| -> std::io::Result<()> {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(text.as_bytes())?;
            self.file.flush()
        })()
        .with_context(|| format!("writing the lock file {}", self.path.display()))
    }
}

/// "pid 123, listening on http://…" from the lock file's text (written by [`ServeLock::record`]).
fn describe(text: &str) -> String {
    let mut parts = Vec::new();
    for line in text.lines().take(2) {
        let line: String = line.chars().filter(|c| !c.is_control()).take(100).collect();
        if let Some(pid) = line.strip_prefix("pid ") {
            parts.push(format!("pid {pid}"));
        } else if let Some(addr) = line.strip_prefix("listen ") {
            parts.push(format!("listening on {addr}"));
        }
    }
    if parts.is_empty() {
        "pid unknown".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlite_urls_have_a_lock_file() {
        assert_eq!(
            lock_path("sqlite://dir/v.db"),
            Some(PathBuf::from("dir/v.db.lock"))
        );
        assert_eq!(lock_path("sqlite://"), None);
        assert_eq!(lock_path("postgres://u@h/db"), None);
    }

    #[test]
    fn the_holder_is_described_from_its_lock_file() {
        assert_eq!(
            describe("pid 12\nlisten http://127.0.0.1:80\n"),
            "pid 12, listening on http://127.0.0.1:80"
        );
        assert_eq!(describe("pid 12\n"), "pid 12");
        assert_eq!(describe(""), "pid unknown");
        assert_eq!(describe("garbage\u{1b}[31m"), "pid unknown");
    }

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let mut first = acquire(&url).unwrap().expect("a lock for sqlite");
        first.record(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let refused = acquire(&url).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id()))
                && refused.contains("listening on http://127.0.0.1:9"),
            "{refused}"
        );
        drop(first);
        assert!(acquire(&url).unwrap().is_some());
        assert!(acquire("postgres://u@h/db").unwrap().is_none());
    }
}
