//! Following the change feed of a voxtrail source (docs/api.md, "Change feed"): pages after
//! the destination's stored cursor, each page's rows and its cursor committed together, until
//! a page comes back short (caught up; a page the server cut at its byte budget says so and
//! is followed at once); with `follow`, again every `every` until stopped.
//!
//! The feed hands every row stored or changed after a cursor, once, in its latest version, so
//! there is no lookback: a late row and a row changed upstream simply come next. Rows whose
//! `date` lies outside `since..=until` are skipped (the cursor still moves past them), so a
//! feed-filled copy holds what a window-filled one would. While the next page is asked for,
//! the one before it is committed (the next page's cursor is known before the commit): the
//! destination's writes and the network overlap. A page is asked for only once the cursor of
//! the one before is known, so nothing is read twice.

use anyhow::Context as _;
use voxtrail_client::{Error, FeedPage};

use crate::dest::{Destination, KeyedRow, PageDone, date_text};
use crate::{Collector, Event, Stop, Summary};

/// How following the feed ended.
pub(crate) enum FeedEnd {
    /// Caught up (or stopped as asked).
    Done,
    /// The source has no feed ([`Error::NoFeed`]).
    NoFeed(Error),
}

/// A page being committed while the next one is read.
type Commit<'a> = crate::dest::BoxFuture<'a, anyhow::Result<crate::CommitOutcome>>;

/// What one feed request came to.
enum Got {
    Page(FeedPage),
    /// Following, the source failed through every retry: said; the next cycle asks again.
    Later,
    End(FeedEnd),
}

impl<D: Destination> Collector<D> {
    /// Follows the feed from the destination's cursor; see the module's text.
    pub(crate) async fn follow_feed(
        &mut self,
        stop: &Stop,
        totals: &mut Summary,
    ) -> anyhow::Result<FeedEnd> {
        let plan = self.config.clone();
        let (since, until) = (date_text(plan.since), plan.until.map(date_text));
        let mut cursor = self.dest.feed_cursor().await?;
        self.progress.event(&Event::FeedStarted {
            cursor: cursor.as_deref(),
        });
        loop {
            // One pass: pages until a short one.
            let first = self.client.feed(cursor.as_deref(), plan.page).await;
            let mut got = self.judge(first, cursor.as_deref())?;
            while let Got::Page(page) = got {
                // Full, or cut short by the server's byte budget: more may follow at once.
                let full = page.rows.len() >= plan.page as usize || page.more;
                if page.rows.is_empty() && cursor.as_deref() == Some(page.cursor.as_str()) {
                    got = Got::Later;
                    break;
                }
                let read = page.rows.len();
                let keyed = page
                    .rows
                    .into_iter()
                    .filter(|row| {
                        let d = row.get("date").unwrap_or_default();
                        d >= since.as_str() && until.as_ref().is_none_or(|u| d <= u.as_str())
                    })
                    .map(|row| {
                        Ok(KeyedRow {
                            key: plan.target.key.key(&row)?,
                            row,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let kept = keyed.len();
                let done = PageDone {
                    cursor: page.cursor,
                };
                // A full page: commit it while the next one is read.
                let commit: Commit<'_> = self.dest.commit_page(&done, keyed);
                let (outcome, next) = if full && !stop.is_stopped() {
                    let (c, n) =
                        tokio::join!(commit, self.client.feed(Some(&done.cursor), plan.page));
                    (c, Some(n))
                } else {
                    (commit.await, None)
                };
                let outcome = outcome.context("writing a feed page")?;
                totals.pages += 1;
                totals.rows += read as u64;
                totals.written += outcome.inserted;
                totals.updated += outcome.updated;
                self.progress.event(&Event::PageCommitted {
                    rows: read,
                    kept,
                    cursor: &done.cursor,
                    outcome,
                });
                cursor = Some(done.cursor);
                got = match next {
                    Some(n) => self.judge(n, cursor.as_deref())?,
                    None => Got::Later,
                };
            }
            if let Got::End(end) = got {
                return Ok(end);
            }
            if !plan.follow || stop.is_stopped() {
                return Ok(FeedEnd::Done);
            }
            tokio::select! {
                _ = tokio::time::sleep(plan.every) => {}
                _ = stop.stopped() => {}
            }
            if stop.is_stopped() {
                return Ok(FeedEnd::Done);
            }
        }
    }

    /// What the answer to the request after `cursor` means: a page, a source without the
    /// feed, a pause (following, on a failure that is not final) or a final error.
    fn judge(&self, got: Result<FeedPage, Error>, cursor: Option<&str>) -> anyhow::Result<Got> {
        match got {
            Ok(p) => Ok(Got::Page(p)),
            Err(e @ Error::NoFeed { .. }) => Ok(Got::End(FeedEnd::NoFeed(e))),
            Err(e) if self.config.follow && !e.is_final() => {
                self.progress.event(&Event::PageDeferred { error: &e });
                Ok(Got::Later)
            }
            Err(e @ Error::InvalidCursor { .. }) => Err(anyhow::Error::new(e).context(format!(
                "the destination's feed cursor {:?} was not given out by {} for this token's operation (a copy made from another source or operation?); pull into a new destination, or with --mode windows",
                cursor.unwrap_or_default(),
                self.config.target.source
            ))),
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "reading the change feed of {}",
                self.config.target.source
            ))),
        }
    }
}
