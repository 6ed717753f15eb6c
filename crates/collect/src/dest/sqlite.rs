//! `sqlite://FILE`: rows upserted by (source, report, conn_id) in `pulled_rows`, the
//! checkpoint in `pull_checkpoints` (windows) and the feed cursor in `pull_feed_cursors`
//! (feed pages), each in one transaction with its rows (WAL, `synchronous=FULL`). The view `chat_12_rows` shows chat_12 rows as columns. The
//! connection runs on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use chrono::NaiveDateTime;
use voxtrail_client::{format_wall_clock, parse_wall_clock};

use super::{
    BoxFuture, Checkpoint, CommitOutcome, Destination, KeyedRow, Mark, PageDone, WindowDone,
    blocking,
};
use crate::Target;

pub(crate) struct SqliteDestination {
    inner: Arc<Mutex<Inner>>,
    checkpoint: Option<NaiveDateTime>,
    cursor: Option<String>,
}

struct Inner {
    conn: rusqlite::Connection,
    source: String,
    report: String,
}

impl SqliteDestination {
    pub(crate) async fn open(path: &Path, target: &Target) -> anyhow::Result<Self> {
        let (path, target) = (path.to_owned(), target.clone());
        let (inner, checkpoint, cursor) = blocking(move || open_blocking(&path, &target)).await?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            checkpoint,
            cursor,
        })
    }
}

type Opened = (Inner, Option<NaiveDateTime>, Option<String>);

fn open_blocking(path: &PathBuf, target: &Target) -> anyhow::Result<Opened> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("opening sqlite database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS pulled_rows (
             source TEXT NOT NULL,
             report TEXT NOT NULL,
             conn_id TEXT NOT NULL,
             date TEXT NOT NULL,
             row TEXT NOT NULL,
             pulled_at TEXT NOT NULL,
             PRIMARY KEY (source, report, conn_id)
         );
         CREATE INDEX IF NOT EXISTS pulled_rows_date ON pulled_rows (source, report, date);
         CREATE TABLE IF NOT EXISTS pull_checkpoints (
             source TEXT NOT NULL,
             report TEXT NOT NULL,
             until TEXT NOT NULL,
             updated_at TEXT NOT NULL,
             PRIMARY KEY (source, report)
         );
         CREATE TABLE IF NOT EXISTS pull_feed_cursors (
             source TEXT NOT NULL,
             report TEXT NOT NULL,
             cursor TEXT NOT NULL,
             updated_at TEXT NOT NULL,
             PRIMARY KEY (source, report)
         );
         CREATE VIEW IF NOT EXISTS chat_12_rows AS
           SELECT source, conn_id,
             json_extract(row, '$.agent_id') AS agent_id,
             json_extract(row, '$.agent_name') AS agent_name,
             json_extract(row, '$.channel') AS channel,
             json_extract(row, '$.from') AS \"from\",
             json_extract(row, '$.to') AS \"to\",
             json_extract(row, '$.subject') AS subject,
             json_extract(row, '$.body') AS body,
             date,
             json_extract(row, '$.cod_act') AS cod_act,
             json_extract(row, '$.description_cod_act') AS description_cod_act
           FROM pulled_rows WHERE report = 'chat_12';",
    )
    .context("creating the pull tables")?;
    let cp: Option<String> = conn
        .query_row(
            "SELECT until FROM pull_checkpoints WHERE source = ?1 AND report = ?2",
            (&target.source, &target.report),
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .context("reading the checkpoint")?;
    let checkpoint = cp
        .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("stored checkpoint: {e}")))
        .transpose()?;
    let cursor: Option<String> = conn
        .query_row(
            "SELECT cursor FROM pull_feed_cursors WHERE source = ?1 AND report = ?2",
            (&target.source, &target.report),
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .context("reading the feed cursor")?;
    Ok((
        Inner {
            conn,
            source: target.source.clone(),
            report: target.report.clone(),
        },
        checkpoint,
        cursor,
    ))
}

impl Inner {
    /// Upserts `rows` and stores `mark` (the checkpoint or the feed cursor) in one transaction.
    fn commit(&mut self, rows: &[KeyedRow], mark: &Mark) -> anyhow::Result<CommitOutcome> {
        let now = chrono::Utc::now().to_rfc3339();
        let tx = self.conn.transaction()?;
        let mut out = CommitOutcome::default();
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO pulled_rows (source, report, conn_id, date, row, pulled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source, report, conn_id) DO UPDATE
                   SET row = excluded.row, date = excluded.date, pulled_at = excluded.pulled_at
                   WHERE pulled_rows.row IS NOT excluded.row",
            )?;
            let mut exists = tx.prepare_cached(
                "SELECT 1 FROM pulled_rows WHERE source = ?1 AND report = ?2 AND conn_id = ?3",
            )?;
            for KeyedRow { key, row } in rows {
                let new = !exists.exists((&self.source, &self.report, key))?;
                let date = row.get("date").unwrap_or_default();
                let changed =
                    ins.execute((&self.source, &self.report, key, date, row.to_json(), &now))?;
                if new {
                    out.inserted += 1;
                } else if changed > 0 {
                    out.updated += 1;
                } else {
                    out.unchanged += 1;
                }
            }
        }
        match mark {
            Mark::Checkpoint(cp) => tx.execute(
                "INSERT INTO pull_checkpoints (source, report, until, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (source, report) DO UPDATE SET until = excluded.until, updated_at = excluded.updated_at",
                (&self.source, &self.report, format_wall_clock(*cp), &now),
            )?,
            Mark::Cursor(c) => tx.execute(
                "INSERT INTO pull_feed_cursors (source, report, cursor, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (source, report) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                (&self.source, &self.report, c, &now),
            )?,
        };
        tx.commit().context("committing to sqlite")?;
        Ok(out)
    }
}

impl Destination for SqliteDestination {
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
            let inner = self.inner.clone();
            let cp = window.checkpoint.0;
            let out = blocking(move || {
                // A panic inside a commit rolled its transaction back: the connection is fine.
                inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .commit(&rows, &Mark::Checkpoint(cp))
            })
            .await?;
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
            let inner = self.inner.clone();
            let mark = Mark::Cursor(page.cursor.clone());
            let out = blocking(move || {
                inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .commit(&rows, &mark)
            })
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
        let inner = self.inner.clone();
        let (ini, end) = (super::date_text(ini), super::date_text(end));
        Box::pin(blocking(move || {
            let inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let mut st = inner.conn.prepare_cached(
                "SELECT row FROM pulled_rows
                  WHERE source = ?1 AND report = ?2 AND date BETWEEN ?3 AND ?4 ORDER BY date",
            )?;
            let rows = st
                .query_map((&inner.source, &inner.report, &ini, &end), |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(rows)
        }))
    }
}
