//! SQLite queries of the web console: sessions, overview counts, the interactions list (FTS5
//! word search over `interactions_fts`, keyset pages) and the tokens' last use.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::SqliteStore;
use super::admin::{TOKEN_SELECT, token_from_row};
use crate::domain::{Token, Window};
use crate::store::console::{Bucket, ListQuery, OverviewRow, StoredRow};
use crate::store::{StoreError, StoreResult};

/// `json_extract` of one field of the stored object.
fn field(name: &str) -> String {
    format!("COALESCE(json_extract(CAST(json AS TEXT), '$.{name}'), '')")
}

/// An FTS5 query in which every word is a quoted string (no operator of the user's reaches
/// FTS5's query syntax): all words must appear.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl SqliteStore {
    pub fn create_console_session(
        &self,
        id_hash: &[u8; 32],
        token_id: i64,
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        let w = self.writer();
        w.execute("DELETE FROM console_sessions WHERE expires_at <= ?1", [now])
            .map_err(StoreError::from_sqlite)?;
        w.execute(
            "INSERT INTO console_sessions(id_hash, token_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![&id_hash[..], token_id, now, expires],
        )
        .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn console_session(&self, id_hash: &[u8; 32], now: i64) -> StoreResult<Option<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(&format!(
            "{TOKEN_SELECT} JOIN console_sessions s ON s.token_id = t.id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2"
        ))?;
        let found = st
            .query_row(params![&id_hash[..], now], token_from_row)
            .optional()?;
        found.transpose()
    }

    pub fn delete_console_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        self.writer()
            .execute(
                "DELETE FROM console_sessions WHERE id_hash = ?1",
                [&id_hash[..]],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn console_overview(
        &self,
        operation_id: i64,
        window: Window,
        bucket: Bucket,
    ) -> StoreResult<Vec<OverviewRow>> {
        let r = self.reader()?;
        let sql = format!(
            "SELECT local_ts / ?4, {}, {}, {}, {}, COUNT(*) FROM interactions
              WHERE operation_id = ?1 AND local_ts BETWEEN ?2 AND ?3
              GROUP BY 1, 2, 3, 4, 5",
            field("agent_id"),
            field("agent_name"),
            field("cod_act"),
            field("description_cod_act"),
        );
        let mut st = r.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                operation_id,
                window.ini().as_i64(),
                window.end().as_i64(),
                bucket.divisor()
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn console_list(&self, q: &ListQuery) -> StoreResult<Vec<StoredRow>> {
        let mut sql = String::from(
            "SELECT seq, local_ts, json FROM interactions
              WHERE operation_id = ? AND local_ts BETWEEN ? AND ?",
        );
        let mut args: Vec<Value> = vec![
            q.operation_id.into(),
            q.window.ini().as_i64().into(),
            q.window.end().as_i64().into(),
        ];
        if let Some((ts, seq)) = q.before {
            sql.push_str(" AND (local_ts < ? OR (local_ts = ? AND seq < ?))");
            args.extend([ts.into(), ts.into(), seq.into()]);
        }
        if let Some(agent) = &q.agent {
            sql.push_str(&format!(" AND {} = ?", field("agent_id")));
            args.push(agent.clone().into());
        }
        if let Some(to) = &q.recipient {
            sql.push_str(&format!(" AND instr(lower({}), lower(?)) > 0", field("to")));
            args.push(to.clone().into());
        }
        if !q.words.is_empty() {
            sql.push_str(
                " AND seq IN (SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH ?)",
            );
            args.push(fts_query(&q.words).into());
        }
        sql.push_str(" ORDER BY local_ts DESC, seq DESC LIMIT ?");
        args.push(i64::from(q.limit).into());
        let r = self.reader()?;
        let mut st = r.prepare_cached(&sql)?;
        let rows = st.query_map(params_from_iter(args), |r| {
            Ok(StoredRow {
                seq: r.get(0)?,
                local_ts: r.get(1)?,
                json: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn console_interaction(
        &self,
        operation_id: i64,
        conn_id: &str,
    ) -> StoreResult<Option<StoredRow>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(
            "SELECT seq, local_ts, json FROM interactions WHERE operation_id = ?1 AND conn_id = ?2",
        )?;
        Ok(st
            .query_row(params![operation_id, conn_id], |r| {
                Ok(StoredRow {
                    seq: r.get(0)?,
                    local_ts: r.get(1)?,
                    json: r.get(2)?,
                })
            })
            .optional()?)
    }

    pub fn last_day_used(&self, token_id: i64) -> StoreResult<Option<i64>> {
        let r = self.reader()?;
        let v: Option<i64> = r
            .prepare_cached("SELECT MAX(day) FROM token_usage WHERE token_id = ?1 AND used > 0")?
            .query_row([token_id], |r| r.get(0))?;
        Ok(v)
    }
}
