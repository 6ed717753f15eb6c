//! `postgres://…`: the same tables as SQLite (`row` kept as the exact JSON text; `row::jsonb`
//! to query it; the feed cursor in `pull_feed_cursors`), one transaction per window or feed
//! page, on the async driver (tokio-postgres) so no
//! runtime thread blocks.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use chrono::NaiveDateTime;
use voxtrail_client::{format_wall_clock, parse_wall_clock};

use super::{
    BoxFuture, Checkpoint, CommitOutcome, Destination, KeyedRow, Mark, PageDone, WindowDone,
};
use crate::Target;

pub(crate) struct PgDestination {
    client: tokio_postgres::Client,
    source: String,
    report: String,
    checkpoint: Option<NaiveDateTime>,
    cursor: Option<String>,
}

impl PgDestination {
    pub(crate) async fn open(url: &str, target: &Target) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to postgres")?;
        // Ends when the client is dropped; an error shows in the next statement's error.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS pulled_rows (
                     source TEXT NOT NULL,
                     report TEXT NOT NULL,
                     conn_id TEXT NOT NULL,
                     date TEXT NOT NULL,
                     row TEXT NOT NULL,
                     pulled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     PRIMARY KEY (source, report, conn_id)
                 );
                 CREATE INDEX IF NOT EXISTS pulled_rows_date ON pulled_rows (source, report, date);
                 CREATE TABLE IF NOT EXISTS pull_checkpoints (
                     source TEXT NOT NULL,
                     report TEXT NOT NULL,
                     until TEXT NOT NULL,
                     updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     PRIMARY KEY (source, report)
                 );
                 CREATE TABLE IF NOT EXISTS pull_feed_cursors (
                     source TEXT NOT NULL,
                     report TEXT NOT NULL,
                     cursor TEXT NOT NULL,
                     updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     PRIMARY KEY (source, report)
                 );",
            )
            .await
            .context("creating the pull tables")?;
        let cp = client
            .query_opt(
                "SELECT until FROM pull_checkpoints WHERE source = $1 AND report = $2",
                &[&target.source, &target.report],
            )
            .await
            .context("reading the checkpoint")?
            .map(|r| r.get::<_, String>(0));
        let checkpoint = cp
            .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("stored checkpoint: {e}")))
            .transpose()?;
        let cursor = client
            .query_opt(
                "SELECT cursor FROM pull_feed_cursors WHERE source = $1 AND report = $2",
                &[&target.source, &target.report],
            )
            .await
            .context("reading the feed cursor")?
            .map(|r| r.get::<_, String>(0));
        Ok(Self {
            client,
            source: target.source.clone(),
            report: target.report.clone(),
            checkpoint,
            cursor,
        })
    }

    /// Upserts `rows` and stores `mark` (the checkpoint or the feed cursor) in one transaction.
    async fn commit_rows(
        &mut self,
        rows: &[KeyedRow],
        mark: &Mark,
    ) -> anyhow::Result<CommitOutcome> {
        let (source, report) = (&self.source, &self.report);
        let tx = self.client.transaction().await?;
        // One statement per 1,000 rows; a key twice in one statement would be an error
        // (ON CONFLICT cannot touch a row twice), so the last occurrence wins. The statement
        // returns inserted and updated rows only; xmax = 0 only on a freshly inserted tuple.
        let ins = tx
            .prepare(
                "INSERT INTO pulled_rows (source, report, conn_id, date, row)
                 SELECT $1, $2, k, d, r FROM unnest($3::text[], $4::text[], $5::text[]) AS t (k, d, r)
                 ON CONFLICT (source, report, conn_id) DO UPDATE
                   SET row = excluded.row, date = excluded.date, pulled_at = now()
                   WHERE pulled_rows.row IS DISTINCT FROM excluded.row
                 RETURNING (xmax = 0)",
            )
            .await?;
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            last.insert(r.key.as_str(), i);
        }
        let unique: Vec<&KeyedRow> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| last[r.key.as_str()] == *i)
            .map(|(_, r)| r)
            .collect();
        let mut out = CommitOutcome::default();
        for chunk in unique.chunks(1000) {
            let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
            let dates: Vec<&str> = chunk
                .iter()
                .map(|r| r.row.get("date").unwrap_or_default())
                .collect();
            let json: Vec<String> = chunk.iter().map(|r| r.row.to_json()).collect();
            for r in tx
                .query(&ins, &[source, report, &keys, &dates, &json])
                .await?
            {
                if r.get::<_, bool>(0) {
                    out.inserted += 1;
                } else {
                    out.updated += 1;
                }
            }
        }
        out.unchanged = rows.len() as u64 - out.inserted - out.updated;
        match mark {
            Mark::Checkpoint(cp) => {
                tx.execute(
                    "INSERT INTO pull_checkpoints (source, report, until) VALUES ($1, $2, $3)
                     ON CONFLICT (source, report) DO UPDATE SET until = excluded.until, updated_at = now()",
                    &[source, report, &format_wall_clock(*cp)],
                )
                .await?
            }
            Mark::Cursor(c) => {
                tx.execute(
                    "INSERT INTO pull_feed_cursors (source, report, cursor) VALUES ($1, $2, $3)
                     ON CONFLICT (source, report) DO UPDATE SET cursor = excluded.cursor, updated_at = now()",
                    &[source, report, c],
                )
                .await?
            }
        };
        tx.commit().await.context("committing to postgres")?;
        Ok(out)
    }
}

impl Destination for PgDestination {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        let cp = self.checkpoint.map(Checkpoint);
        Box::pin(async move { Ok(cp) })
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            let cp = window.checkpoint.0;
            let out = self.commit_rows(&rows, &Mark::Checkpoint(cp)).await?;
            self.checkpoint = Some(cp);
            Ok(out)
        })
    }

    fn follows_feed(&self) -> bool {
        true
    }

    fn feed_cursor(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        let c = self.cursor.clone();
        Box::pin(async move { Ok(c) })
    }

    fn commit_page<'a>(
        &'a mut self,
        page: &'a PageDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            let out = self
                .commit_rows(&rows, &Mark::Cursor(page.cursor.clone()))
                .await?;
            self.cursor = Some(page.cursor.clone());
            Ok(out)
        })
    }

    fn rows_between(
        &self,
        ini: NaiveDateTime,
        end: NaiveDateTime,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let (ini, end) = (super::date_text(ini), super::date_text(end));
            let rows = self
                .client
                .query(
                    "SELECT row FROM pulled_rows
                      WHERE source = $1 AND report = $2 AND date BETWEEN $3 AND $4 ORDER BY date",
                    &[&self.source, &self.report, &ini, &end],
                )
                .await?;
            rows.iter()
                .map(|r| Ok(r.try_get::<_, String>(0)?))
                .collect()
        })
    }
}
