//! PostgreSQL queries of the web console: sessions, overview counts, the interactions list
//! (full-text search computed over the window — no index yet, docs/api.md "The console" —,
//! keyset pages) and the tokens'
//! last use.

use postgres::types::ToSql;

use super::PgStore;
use super::admin::{TOKEN_SELECT, token_from_row};
use crate::domain::{Token, Window};
use crate::store::StoreResult;
use crate::store::console::{Bucket, ListQuery, OverviewRow, StoredRow};

/// One field of the stored object as text.
fn field(name: &str) -> String {
    format!("COALESCE(voxtrail_doc(json)->>'{name}', '')")
}

impl PgStore {
    pub fn create_console_session(
        &self,
        id_hash: &[u8; 32],
        token_id: i64,
        now: i64,
        expires: i64,
    ) -> StoreResult<()> {
        let mut conn = self.conn()?;
        let c = conn.client();
        c.execute(
            "DELETE FROM console_sessions WHERE expires_at <= $1",
            &[&now],
        )?;
        c.execute(
            "INSERT INTO console_sessions(id_hash, token_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&&id_hash[..], &token_id, &now, &expires],
        )?;
        Ok(())
    }

    pub fn console_session(&self, id_hash: &[u8; 32], now: i64) -> StoreResult<Option<Token>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_opt(
            &format!(
                "{TOKEN_SELECT} JOIN console_sessions s ON s.token_id = t.id
                 WHERE s.id_hash = $1 AND s.expires_at > $2"
            ),
            &[&&id_hash[..], &now],
        )?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub fn delete_console_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let mut conn = self.conn()?;
        conn.client().execute(
            "DELETE FROM console_sessions WHERE id_hash = $1",
            &[&&id_hash[..]],
        )?;
        Ok(())
    }

    pub fn console_overview(
        &self,
        operation_id: i64,
        window: Window,
        bucket: Bucket,
    ) -> StoreResult<Vec<OverviewRow>> {
        let mut conn = self.conn()?;
        // Each stored object is parsed once (`OFFSET 0` keeps the subquery from being
        // flattened, which would parse it once per field).
        let f = |name: &str| format!("COALESCE(d->>'{name}', '')");
        let sql = format!(
            "SELECT local_ts / $4, {}, {}, {}, {}, COUNT(*) FROM (
                 SELECT local_ts, voxtrail_doc(json) AS d FROM interactions
                  WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3 OFFSET 0
             ) rows
              GROUP BY 1, 2, 3, 4, 5",
            f("agent_id"),
            f("agent_name"),
            f("cod_act"),
            f("description_cod_act"),
        );
        let rows = conn.client().query(
            &sql,
            &[
                &operation_id,
                &window.ini().as_i64(),
                &window.end().as_i64(),
                &bucket.divisor(),
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                ))
            })
            .collect()
    }

    pub fn console_list(&self, q: &ListQuery) -> StoreResult<Vec<StoredRow>> {
        let (ini, end, limit) = (
            q.window.ini().as_i64(),
            q.window.end().as_i64(),
            i64::from(q.limit),
        );
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&q.operation_id, &ini, &end];
        let mut sql = String::from(
            "SELECT seq, local_ts, json FROM interactions
              WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3",
        );
        let before = q.before;
        if let Some((ts, seq)) = &before {
            args.push(ts);
            let a = args.len();
            args.push(seq);
            sql.push_str(&format!(" AND (local_ts, seq) < (${a}, ${})", a + 1));
        }
        if let Some(agent) = &q.agent {
            args.push(agent);
            sql.push_str(&format!(" AND {} = ${}", field("agent_id"), args.len()));
        }
        if let Some(to) = &q.recipient {
            args.push(to);
            sql.push_str(&format!(
                " AND strpos(lower({}), lower(${})) > 0",
                field("to"),
                args.len()
            ));
        }
        let words = q.words.join(" ");
        if !q.words.is_empty() {
            args.push(&words);
            sql.push_str(&format!(
                " AND voxtrail_search(json) @@ plainto_tsquery('simple'::regconfig, ${})",
                args.len()
            ));
        }
        args.push(&limit);
        sql.push_str(&format!(
            " ORDER BY local_ts DESC, seq DESC LIMIT ${}",
            args.len()
        ));
        let mut conn = self.conn()?;
        let rows = conn.client().query(&sql, &args)?;
        rows.iter()
            .map(|r| {
                Ok(StoredRow {
                    seq: r.try_get(0)?,
                    local_ts: r.try_get(1)?,
                    json: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub fn console_interaction(
        &self,
        operation_id: i64,
        conn_id: &str,
    ) -> StoreResult<Option<StoredRow>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_opt(
            "SELECT seq, local_ts, json FROM interactions WHERE operation_id = $1 AND conn_id = $2",
            &[&operation_id, &conn_id.as_bytes()],
        )?;
        row.map(|r| {
            Ok(StoredRow {
                seq: r.try_get(0)?,
                local_ts: r.try_get(1)?,
                json: r.try_get(2)?,
            })
        })
        .transpose()
    }

    pub fn last_day_used(&self, token_id: i64) -> StoreResult<Option<i64>> {
        let mut conn = self.conn()?;
        let row = conn.client().query_one(
            "SELECT MAX(day)::BIGINT FROM token_usage WHERE token_id = $1 AND used > 0",
            &[&token_id],
        )?;
        Ok(row.try_get(0)?)
    }
}
