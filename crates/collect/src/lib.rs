//! `voxtrail-collect`: the collector behind `voxtrail pull`, as a library. It copies a report
//! from a voxtrail server or the hosted API into a [`Destination`] (SQLite, PostgreSQL, NDJSON
//! or CSV file), gap-free and without duplicates, once or forever (`follow`).
//!
//! Built on `voxtrail-client` (HTTP, retries, quirks, window halving) and `voxtrail-wire`;
//! it knows nothing of the server crate. The pieces:
//! - [`Config`] — what to copy and how (windows, lookback, follow); [`Target`] names the copy
//!   (source, report, key rule) for the destination.
//! - [`Collector`] — the run: [`Mode`] says how the source is read. By windows (`cycle.rs`):
//!   windows in the operation's wall clock, `lookback` re-reads, every window's rows and
//!   checkpoint committed together. By the change feed (`feed.rs`, a voxtrail source): pages
//!   after the destination's feed cursor, every page's rows and cursor committed together;
//!   `Auto` tries the feed and falls back to windows when the source has none. It takes a
//!   [`Stop`] handle instead of installing signal handlers (a stopped run finishes the
//!   current window), reports through [`Progress`] instead of printing, and returns a
//!   [`Summary`].
//! - [`Destination`] (`dest/`) — the seam: an async, `Send` trait with one `commit` per
//!   window (rows and checkpoint together) and `checkpoint`, and `commit_page` per feed page
//!   (rows and feed cursor together) and `feed_cursor`. Blocking I/O runs on blocking
//!   threads, so a collector can run on any tokio runtime, several at once.
//! - `verify.rs` — `pull --verify`: per-hour digests of source and destination compared.
//! - `escape.rs` (one record per line), `migrate.rs` (first-format files), `duration.rs`.

pub mod cycle;
pub mod dest;
pub mod duration;
pub mod escape;
mod feed;
pub mod key;
mod migrate;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;

pub use cycle::Collector;
pub use dest::{
    BoxFuture, Checkpoint, CommitOutcome, DestSpec, Destination, KeyedRow, PageDone, WindowDone,
    open,
};
pub use duration::{chrono_dur, parse_duration};
pub use key::KeyRule;
pub use voxtrail_client::{Client, Row, Window};

/// What a copy is of: the destination keeps one copy per (source, report) and stores each
/// key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API's base URL as the client uses it (`Client::base_url`).
    pub source: String,
    /// The report name (`api=…`), e.g. `chat_12`.
    pub report: String,
    /// What identifies a row.
    pub key: KeyRule,
}

/// How a run reads the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The change feed when the source has it (a voxtrail server; `chat_12` only), else
    /// windows: the first feed request decides, and a source without the feed is said once
    /// ([`Event::FeedUnavailable`]).
    #[default]
    Auto,
    /// The change feed only; a source without it is an error.
    Feed,
    /// Windows only.
    Windows,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "feed" => Ok(Mode::Feed),
            "windows" => Ok(Mode::Windows),
            _ => Err(format!("{s:?}: expected feed, windows or auto")),
        }
    }
}

/// A checked plan of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// First wall-clock second to copy (operation time).
    pub since: NaiveDateTime,
    /// Last wall-clock second to copy; `None`: now, in the operation's time.
    pub until: Option<NaiveDateTime>,
    /// Keep going: a cycle every `every` until stopped.
    pub follow: bool,
    /// Pause between cycles when following.
    pub every: Duration,
    /// Re-read this much before the checkpoint on every cycle, to catch late rows.
    pub lookback: chrono::Duration,
    /// Longest window per request (the client halves crowded ones anyway).
    pub window: chrono::Duration,
    /// The operation's time zone: windows are built in its wall-clock time.
    pub tz: chrono_tz::Tz,
    /// Ask `token_info` once at start (costs one use of the daily limit).
    pub token_info: bool,
    /// Windows, the change feed, or the feed when the source has it.
    pub mode: Mode,
    /// Rows per feed page (1 to [`voxtrail_client::MAX_FEED_LIMIT`]).
    pub page: u32,
}

/// Something a run reports while it goes. Lines for people are made from these by the
/// caller; the library prints nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A destination repaired, converted or refused something while opening; the text says
    /// what, for an operator.
    Notice(&'a str),
    /// The answer of `token_info` (with [`Config::token_info`]).
    TokenInfo(&'a voxtrail_wire::TokenInfoRow),
    /// `token_info` failed; the run goes on (the first window meets the same refusal).
    TokenInfoFailed(&'a voxtrail_client::Error),
    /// A cycle starts: it copies `from..=to` (to is `until`, or now).
    CycleStarted {
        from: NaiveDateTime,
        to: NaiveDateTime,
    },
    /// A window's rows and checkpoint were committed.
    WindowCommitted {
        window: Window,
        rows: usize,
        outcome: CommitOutcome,
    },
    /// Following, a window failed through every retry (not finally): the next cycle starts
    /// again from the checkpoint.
    WindowDeferred {
        window: Window,
        error: &'a voxtrail_client::Error,
    },
    /// [`Mode::Auto`]: the source has no change feed; the run reads windows.
    FeedUnavailable { error: &'a voxtrail_client::Error },
    /// The run follows the change feed from `cursor` (`None`: from its beginning).
    FeedStarted { cursor: Option<&'a str> },
    /// A feed page's rows and cursor were committed: `rows` read, of which `kept` lie in
    /// `since..=until` and were given to the destination.
    PageCommitted {
        rows: usize,
        kept: usize,
        cursor: &'a str,
        outcome: CommitOutcome,
    },
    /// Following, a feed page failed through every retry (not finally): the next cycle asks
    /// again from the stored cursor.
    PageDeferred { error: &'a voxtrail_client::Error },
}

/// Receives a run's [`Event`]s, from any thread (destinations report from blocking threads).
pub trait Progress: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> Progress for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// A [`Progress`] that ignores everything.
pub fn no_progress() -> Arc<dyn Progress> {
    Arc::new(|_: &Event<'_>| {})
}

/// Asks a run to stop: the window under way finishes and its checkpoint is committed, no
/// other starts, a pause between cycles ends at once. Cloned handles share one state.
#[derive(Debug, Clone)]
pub struct Stop(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    pub fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }

    /// Asks every run holding this handle to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Stop::stop`] has been called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// The run followed the change feed (else it read windows).
    pub feed: bool,
    /// Windows committed.
    pub windows: u64,
    /// Feed pages committed.
    pub pages: u64,
    /// Rows read from the source.
    pub rows: u64,
    /// Rows new to the destination.
    pub written: u64,
    /// Rows the destination held with other content, replaced.
    pub updated: u64,
    /// The destination's checkpoint at the end.
    pub checkpoint: Option<Checkpoint>,
    /// The destination's feed cursor at the end.
    pub cursor: Option<String>,
    /// Why the run ended early; `None`: done (or stopped as asked).
    pub error: Option<anyhow::Error>,
}

impl Summary {
    /// `Err` with the run's error, if any.
    pub fn into_result(self) -> anyhow::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}
