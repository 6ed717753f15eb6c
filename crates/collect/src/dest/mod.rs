//! The [`Destination`] seam and the four destinations behind it.
//!
//! A destination holds one copy per (source, report): rows stored once per key, a checkpoint
//! (the last wall-clock second copied by windows) and a feed cursor (the position in the
//! source's change feed copied up to). [`Destination::commit`] stores a window's rows **and**
//! moves the checkpoint in one step, [`Destination::commit_page`] a feed page's rows and the
//! cursor, so a crash or an error never leaves a checkpoint or a cursor ahead of its rows
//! (SQLite and PostgreSQL: one transaction; files: data, then key log, then state,
//! reconciled on open). The trait is async with `Send` futures: a
//! collector may run in `tokio::spawn`, several at once; blocking drivers and file I/O run on
//! blocking threads inside the destination.
//!
//! - `sqlite.rs` — `sqlite://FILE`: tables `pulled_rows`, `pull_checkpoints`,
//!   `pull_feed_cursors`, view `chat_12_rows`.
//! - `postgres.rs` — `postgres://…`: the same tables, on tokio-postgres.
//! - `file.rs` — `ndjson:PATH` / `csv:PATH`: one row per line, with `PATH.keys` and
//!   `PATH.state.json` beside it.

pub(crate) mod file;
mod postgres;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use chrono::NaiveDateTime;
use voxtrail_client::{Row, Window, format_wall_clock};

use crate::{Progress, Target};

pub use file::Format;

/// A boxed `Send` future: what the [`Destination`] methods return, so the trait stays
/// usable as `Box<dyn Destination>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The last wall-clock second (operation time) copied completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint(pub NaiveDateTime);

impl fmt::Display for Checkpoint {
    /// `YYYYmmddHHiiss`, as stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_wall_clock(self.0))
    }
}

/// A row and its key (by the copy's [`crate::KeyRule`]).
#[derive(Debug, Clone)]
pub struct KeyedRow {
    pub key: String,
    pub row: Row,
}

/// A window read completely: its rows go with it in [`Destination::commit`].
#[derive(Debug, Clone, Copy)]
pub struct WindowDone {
    pub window: Window,
    /// The checkpoint once this window is stored (never behind the one stored).
    pub checkpoint: Checkpoint,
}

/// A feed page read completely: its rows go with it in [`Destination::commit_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageDone {
    /// The source's cursor after this page: the feed is copied up to it once stored.
    pub cursor: String,
}

/// What a commit did with a window's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Keys not stored before.
    pub inserted: u64,
    /// Keys stored before with other content, now replaced (files never replace).
    pub updated: u64,
    /// Rows already stored as they are (or repeated within the window).
    pub unchanged: u64,
}

/// Where a copy lives. `Send + Sync` so that a collector's future is `Send` (it holds
/// `&self` across `checkpoint().await`) and can run in `tokio::spawn`.
pub trait Destination: Send + Sync {
    /// The stored checkpoint, `None` before the first window.
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>>;

    /// Stores the rows not stored yet (a key twice: the last occurrence) and moves the
    /// checkpoint to `window.checkpoint`, together: after an error, neither happened
    /// (SQLite, PostgreSQL) or what happened is repaired on the next open (files).
    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>>;

    /// The JSON text of every stored row whose `date` lies in `ini..=end`, for
    /// `voxtrail pull --verify` (`verify.rs`). Destinations that cannot list rows by date say
    /// so.
    fn rows_between(
        &self,
        ini: NaiveDateTime,
        end: NaiveDateTime,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        let _ = (ini, end);
        Box::pin(async {
            anyhow::bail!("this destination cannot be verified (use sqlite:// or postgres://)")
        })
    }

    /// True when the destination keeps a feed cursor ([`Destination::commit_page`]).
    fn follows_feed(&self) -> bool {
        false
    }

    /// The stored feed cursor, `None` before the first page.
    fn feed_cursor(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    /// Stores a feed page's rows (upserted by key, like [`Destination::commit`]: a row
    /// that changed upstream replaces the stored one) and moves the feed cursor to
    /// `page.cursor`, together, with the same guarantees as `commit`.
    fn commit_page<'a>(
        &'a mut self,
        page: &'a PageDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        let _ = (page, rows);
        Box::pin(async { anyhow::bail!("this destination cannot follow a change feed") })
    }
}

/// `YYYY-mm-dd HH:ii:ss`, as destinations store `date`.
pub(crate) fn date_text(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl<D: Destination + ?Sized> Destination for Box<D> {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        (**self).checkpoint()
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        (**self).commit(window, rows)
    }

    fn rows_between(
        &self,
        ini: NaiveDateTime,
        end: NaiveDateTime,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        (**self).rows_between(ini, end)
    }

    fn follows_feed(&self) -> bool {
        (**self).follows_feed()
    }

    fn feed_cursor(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        (**self).feed_cursor()
    }

    fn commit_page<'a>(
        &'a mut self,
        page: &'a PageDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        (**self).commit_page(page, rows)
    }
}

/// What a commit moves forward with its rows: a window's checkpoint or a feed page's cursor.
#[derive(Debug, Clone)]
pub(crate) enum Mark {
    Checkpoint(NaiveDateTime),
    Cursor(String),
}

/// A destination as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestSpec {
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `sqlite://FILE`.
    Sqlite(PathBuf),
    /// `ndjson:PATH`.
    Ndjson(PathBuf),
    /// `csv:PATH`.
    Csv(PathBuf),
}

impl DestSpec {
    /// Parses `sqlite://FILE`, `postgres://…`, `ndjson:PATH` or `csv:PATH`. The error says
    /// what was expected, without naming the flag.
    pub fn parse(s: &str) -> Result<Self, String> {
        let d = if let Some(p) = s.strip_prefix("sqlite://") {
            DestSpec::Sqlite(PathBuf::from(p))
        } else if let Some(p) = s.strip_prefix("ndjson:") {
            DestSpec::Ndjson(PathBuf::from(p))
        } else if let Some(p) = s.strip_prefix("csv:") {
            DestSpec::Csv(PathBuf::from(p))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DestSpec::Postgres(s.to_owned()));
        } else {
            return Err("expected sqlite://FILE, postgres://…, ndjson:PATH or csv:PATH".into());
        };
        match &d {
            DestSpec::Sqlite(p) | DestSpec::Ndjson(p) | DestSpec::Csv(p)
                if p.as_os_str().is_empty() =>
            {
                Err("the path is empty".into())
            }
            _ => Ok(d),
        }
    }
}

/// Opens (creating if needed) the destination `spec` for a copy of `target`; repairs a file
/// destination left by an interrupted run and migrates first-format files, saying so through
/// `progress`.
pub async fn open(
    spec: &DestSpec,
    target: &Target,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Box<dyn Destination>> {
    Ok(match spec {
        DestSpec::Postgres(url) => Box::new(postgres::PgDestination::open(url, target).await?),
        DestSpec::Sqlite(p) => Box::new(sqlite::SqliteDestination::open(p, target).await?),
        DestSpec::Ndjson(p) => {
            Box::new(file::FileDestination::open(p, Format::Ndjson, target, progress).await?)
        }
        DestSpec::Csv(p) => {
            Box::new(file::FileDestination::open(p, Format::Csv, target, progress).await?)
        }
    })
}

/// Runs blocking work (a sync driver, file writes and fsyncs) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow::anyhow!("a destination task was cancelled: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(matches!(
            DestSpec::parse("sqlite://x.db").unwrap(),
            DestSpec::Sqlite(_)
        ));
        assert!(matches!(
            DestSpec::parse("ndjson:/tmp/x").unwrap(),
            DestSpec::Ndjson(_)
        ));
        assert!(matches!(
            DestSpec::parse("csv:x.csv").unwrap(),
            DestSpec::Csv(_)
        ));
        assert!(matches!(
            DestSpec::parse("postgres://localhost/x").unwrap(),
            DestSpec::Postgres(_)
        ));
        assert!(matches!(
            DestSpec::parse("postgresql://localhost/x").unwrap(),
            DestSpec::Postgres(_)
        ));
        assert_eq!(DestSpec::parse("ndjson:").unwrap_err(), "the path is empty");
        assert_eq!(
            DestSpec::parse("sqlite://").unwrap_err(),
            "the path is empty"
        );
        assert!(DestSpec::parse("/tmp/x").is_err());
        assert!(DestSpec::parse("").is_err());
        assert!(DestSpec::parse("CSV:x").is_err());
    }
}
