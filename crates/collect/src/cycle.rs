//! The run and its window cycles. [`Collector::run`] picks the mode ([`crate::Mode`]): the
//! change feed (`feed.rs`), or windows — from the checkpoint (minus `lookback`, never before
//! `since`) to `until` or now, in windows of at most `window`, each committed with its
//! checkpoint before the next is asked for; with `follow`, again every `every` until stopped.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::{NaiveDateTime, Timelike as _};
use voxtrail_client::{Client, Window};

use crate::dest::{Checkpoint, Destination, KeyedRow, WindowDone};
use crate::feed::FeedEnd;
use crate::{Config, Event, Mode, Progress, Stop, Summary, no_progress};

/// One run of the collector over one destination.
pub struct Collector<D> {
    pub(crate) config: Config,
    pub(crate) client: Client,
    pub(crate) dest: D,
    pub(crate) progress: Arc<dyn Progress>,
}

impl<D: Destination> Collector<D> {
    /// A collector copying with `client` into `dest` (opened for `config.target`).
    pub fn new(config: Config, client: Client, dest: D) -> Self {
        Self {
            config,
            client,
            dest,
            progress: no_progress(),
        }
    }

    /// Where the run's [`Event`]s go (nowhere by default).
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Runs until done (`until` reached, or one pass without `follow`), stopped through
    /// `stop`, or a final error; the summary says which.
    pub async fn run(mut self, stop: Stop) -> Summary {
        if self.config.token_info {
            match self.client.token_info().await {
                Ok(t) => self.progress.event(&Event::TokenInfo(&t)),
                // The first window meets the same refusal and ends the run with it, if final.
                Err(e) => self.progress.event(&Event::TokenInfoFailed(&e)),
            }
        }
        let mut summary = Summary::default();
        let result = self.read(&stop, &mut summary).await;
        summary.checkpoint = self.dest.checkpoint().await.ok().flatten();
        summary.cursor = self.dest.feed_cursor().await.ok().flatten();
        summary.error = result.err();
        summary
    }

    /// The feed or windows, as the mode and the source say.
    async fn read(&mut self, stop: &Stop, summary: &mut Summary) -> anyhow::Result<()> {
        let chat_12 = self.config.target.report == voxtrail_wire::CHAT_12;
        match self.config.mode {
            Mode::Windows => self.cycles(stop, summary).await,
            Mode::Feed if !chat_12 => anyhow::bail!(
                "--mode feed: the change feed carries chat_12 only, not {}",
                self.config.target.report
            ),
            Mode::Feed | Mode::Auto if !self.dest.follows_feed() => match self.config.mode {
                Mode::Feed => anyhow::bail!("this destination cannot follow a change feed"),
                _ => self.cycles(stop, summary).await,
            },
            Mode::Auto if !chat_12 => self.cycles(stop, summary).await,
            Mode::Feed | Mode::Auto => {
                summary.feed = true;
                match self.follow_feed(stop, summary).await? {
                    FeedEnd::Done => Ok(()),
                    FeedEnd::NoFeed(e) if self.config.mode == Mode::Feed => {
                        Err(anyhow::Error::new(e).context("--mode feed"))
                    }
                    FeedEnd::NoFeed(e) => {
                        self.progress.event(&Event::FeedUnavailable { error: &e });
                        summary.feed = false;
                        self.cycles(stop, summary).await
                    }
                }
            }
        }
    }

    async fn checkpoint(&self) -> anyhow::Result<Option<NaiveDateTime>> {
        Ok(self.dest.checkpoint().await?.map(|c| c.0))
    }

    async fn cycles(&mut self, stop: &Stop, totals: &mut Summary) -> anyhow::Result<()> {
        let plan = self.config.clone();
        loop {
            let now = chrono::Utc::now()
                .with_timezone(&plan.tz)
                .naive_local()
                .with_nanosecond(0)
                .unwrap_or_default();
            let end = plan.until.unwrap_or(now);
            let stored = self.checkpoint().await?;
            let start = match stored {
                Some(cp) => (cp + chrono::Duration::seconds(1) - plan.lookback).max(plan.since),
                None => plan.since,
            };
            if let Some(range) = Window::new(start, end) {
                self.progress.event(&Event::CycleStarted {
                    from: start,
                    to: end,
                });
                self.windows(&plan, range.split(plan.window), stored, stop, totals)
                    .await?;
            }
            let done = match plan.until {
                Some(u) => self.checkpoint().await?.is_some_and(|c| c >= u),
                None => false,
            };
            if !plan.follow || stop.is_stopped() || done {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(plan.every) => {}
                _ = stop.stopped() => {}
            }
            if stop.is_stopped() {
                return Ok(());
            }
        }
    }

    /// Copies a cycle's windows in order. Window N+1 is asked of the source while window N is
    /// being committed (one request at a time all the same: the commit is not a request), so
    /// a catch-up costs about max(fetch, commit) per window instead of their sum. Each commit
    /// carries its window's checkpoint — the stored one (`stored`, read once per cycle) moved
    /// forward window by window, never backwards — and commits stay in window order.
    async fn windows(
        &mut self,
        plan: &crate::Config,
        windows: Vec<Window>,
        mut stored: Option<NaiveDateTime>,
        stop: &Stop,
        totals: &mut Summary,
    ) -> anyhow::Result<()> {
        let Self {
            client,
            dest,
            progress,
            ..
        } = self;
        let report = plan.target.report.as_str();
        let mut windows = windows.into_iter();
        let Some(first) = windows.next() else {
            return Ok(());
        };
        if stop.is_stopped() {
            return Ok(());
        }
        let mut current = (first, client.window(report, first).await);
        loop {
            let (w, fetched) = current;
            let rows = match fetched {
                Ok(rows) => rows,
                // Following, a server that stays unreachable through every retry is waited
                // for: the next cycle starts again from the checkpoint. Final refusals (token,
                // limit) end the run.
                Err(e) if plan.follow && !e.is_final() => {
                    progress.event(&Event::WindowDeferred {
                        window: w,
                        error: &e,
                    });
                    return Ok(());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("pulling {report} window {w}"));
                }
            };
            let count = rows.len();
            let keyed = rows
                .into_iter()
                .map(|row| {
                    Ok(KeyedRow {
                        key: plan.target.key.key(&row)?,
                        row,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let cp = stored.map_or(w.end, |c| c.max(w.end));
            let done = WindowDone {
                window: w,
                checkpoint: Checkpoint(cp),
            };
            let commit = dest.commit(&done, keyed);
            // The next window is read while this one is written — unless a stop was asked:
            // then this window is the last.
            let next = windows.next().filter(|_| !stop.is_stopped());
            let (committed, next) = match next {
                Some(n) => {
                    let (c, f) = tokio::join!(commit, client.window(report, n));
                    (c, Some((n, f)))
                }
                None => (commit.await, None),
            };
            let outcome = committed.with_context(|| format!("writing window {w}"))?;
            stored = Some(cp);
            totals.windows += 1;
            totals.rows += count as u64;
            totals.written += outcome.inserted;
            totals.updated += outcome.updated;
            progress.event(&Event::WindowCommitted {
                window: w,
                rows: count,
                outcome,
            });
            match next {
                // A stop asked while the next window was read: it is not written.
                Some(n) if !stop.is_stopped() => current = n,
                _ => return Ok(()),
            }
        }
    }
}
