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
            let start = match self.checkpoint().await? {
                Some(cp) => (cp + chrono::Duration::seconds(1) - plan.lookback).max(plan.since),
                None => plan.since,
            };
            if let Some(range) = Window::new(start, end) {
                self.progress.event(&Event::CycleStarted {
                    from: start,
                    to: end,
                });
                for w in range.split(plan.window) {
                    if stop.is_stopped() {
                        return Ok(());
                    }
                    let rows = match self.client.window(&plan.target.report, w).await {
                        Ok(rows) => rows,
                        // Following, a server that stays unreachable through every retry is
                        // waited for: the next cycle starts again from the checkpoint. Final
                        // refusals (token, limit) end the run.
                        Err(e) if plan.follow && !e.is_final() => {
                            self.progress.event(&Event::WindowDeferred {
                                window: w,
                                error: &e,
                            });
                            break;
                        }
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("pulling {} window {w}", plan.target.report)
                            });
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
                    let cp = self.checkpoint().await?.map_or(w.end, |c| c.max(w.end));
                    let done = WindowDone {
                        window: w,
                        checkpoint: Checkpoint(cp),
                    };
                    let outcome = self
                        .dest
                        .commit(&done, keyed)
                        .await
                        .with_context(|| format!("writing window {w}"))?;
                    totals.windows += 1;
                    totals.rows += count as u64;
                    totals.written += outcome.inserted;
                    totals.updated += outcome.updated;
                    self.progress.event(&Event::WindowCommitted {
                        window: w,
                        rows: count,
                        outcome,
                    });
                }
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
}
