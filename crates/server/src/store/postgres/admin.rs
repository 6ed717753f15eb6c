//! PostgreSQL administration: operations, tokens, the maintenance switch and usage reads and
//! writes, on the blocking pool.

use postgres::error::SqlState;

use super::{PgStore, now_utc};
use crate::domain::{Operation, OperationName, OperationTz, Scope, Token, TokenHash};
use crate::store::{StoreError, StoreResult, stored_operation};

impl PgStore {
    pub fn create_operation(
        &self,
        name: &OperationName,
        tz: OperationTz,
        licenses: u32,
    ) -> StoreResult<Operation> {
        let mut conn = self.conn()?;
        let res = conn.client().query_one(
            "INSERT INTO operations(name, timezone, licenses, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name.as_str(), &tz.name(), &i64::from(licenses), &now_utc()],
        );
        match res {
            Ok(row) => Ok(Operation {
                id: row.get(0),
                name: name.clone(),
                tz,
                licenses,
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::OperationExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn list_operations(&self) -> StoreResult<Vec<Operation>> {
        let mut conn = self.conn()?;
        // Byte order, as SQLite sorts.
        let rows = conn.client().query(
            "SELECT id, name, timezone, licenses FROM operations ORDER BY name COLLATE \"C\"",
            &[],
        )?;
        rows.iter().map(|r| operation_at(r, 0)).collect()
    }

    pub fn operation(&self, name: &str) -> StoreResult<Operation> {
        let mut conn = self.conn()?;
        let st =
            conn.prepared("SELECT id, name, timezone, licenses FROM operations WHERE name = $1")?;
        match conn.client().query_opt(&st, &[&name])? {
            Some(r) => operation_at(&r, 0),
            None => Err(StoreError::NoSuchOperation(name.to_owned())),
        }
    }

    pub fn create_token(
        &self,
        operation_id: i64,
        hash: &TokenHash,
        scope: Scope,
        description: &str,
        daily_limit: Option<u64>,
    ) -> StoreResult<i64> {
        let mut conn = self.conn()?;
        let row = conn.client().query_one(
            "INSERT INTO tokens(operation_id, hash, scope, description, daily_limit, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &operation_id,
                &&hash.0[..],
                &scope.as_str(),
                &description,
                &daily_limit.map(|v| v.min(i64::MAX as u64) as i64),
                &now_utc(),
            ],
        )?;
        Ok(row.get(0))
    }

    pub fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        let mut conn = self.conn()?;
        let rows = conn
            .client()
            .query(&format!("{TOKEN_SELECT} ORDER BY t.id"), &[])?;
        rows.iter().map(token_from_row).collect()
    }

    pub fn revoke_token(&self, id: i64) -> StoreResult<bool> {
        let mut conn = self.conn()?;
        let c = conn.client();
        let changed = c.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now_utc()],
        )?;
        if changed == 1 {
            return Ok(true);
        }
        match c.query_opt("SELECT 1 FROM tokens WHERE id = $1", &[&id])? {
            Some(_) => Ok(false),
            None => Err(StoreError::NoSuchToken(id)),
        }
    }

    pub fn token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        const SQL: &str =
            "SELECT t.id, t.scope, t.description, t.daily_limit, t.created_at, t.revoked_at,
        o.id, o.name, o.timezone, o.licenses
   FROM tokens t JOIN operations o ON o.id = t.operation_id WHERE t.hash = $1";
        let mut conn = self.conn()?;
        let st = conn.prepared(SQL)?;
        conn.client()
            .query_opt(&st, &[&&hash.0[..]])?
            .map(|r| token_from_row(&r))
            .transpose()
    }

    pub fn set_maintenance(&self, on: bool) -> StoreResult<()> {
        let mut conn = self.conn()?;
        conn.client().execute(
            "INSERT INTO switches(name, value) VALUES ('maintenance', $1)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            &[&if on { "on" } else { "off" }],
        )?;
        Ok(())
    }

    pub fn maintenance(&self) -> StoreResult<bool> {
        let mut conn = self.conn()?;
        let st = conn.prepared("SELECT value FROM switches WHERE name = 'maintenance'")?;
        let v: Option<String> = conn.client().query_opt(&st, &[])?.map(|r| r.get(0));
        Ok(v.as_deref() == Some("on"))
    }

    pub fn token_usage(&self, token_id: i64, day: i64) -> StoreResult<u64> {
        let mut conn = self.conn()?;
        let st = conn.prepared("SELECT used FROM token_usage WHERE token_id = $1 AND day = $2")?;
        let v: Option<i64> = conn
            .client()
            .query_opt(&st, &[&token_id, &day])?
            .map(|r| r.get(0));
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    pub fn operation_usage(&self, operation_id: i64, day: i64) -> StoreResult<u64> {
        let mut conn = self.conn()?;
        let st = conn.prepared(
            "SELECT COALESCE(SUM(u.used), 0)::BIGINT FROM token_usage u JOIN tokens t ON t.id = u.token_id
             WHERE t.operation_id = $1 AND u.day = $2",
        )?;
        let v: i64 = conn.client().query_one(&st, &[&operation_id, &day])?.get(0);
        Ok(v.max(0) as u64)
    }

    pub fn save_usage(&self, rows: &[(i64, i64, u64)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction()?;
        let st = tx.prepare(
            "INSERT INTO token_usage(token_id, day, used) VALUES ($1, $2, $3)
             ON CONFLICT(token_id, day) DO UPDATE SET used = GREATEST(token_usage.used, excluded.used)",
        )?;
        for (token, day, used) in rows {
            tx.execute(&st, &[token, day, &(*used as i64)])?;
        }
        tx.commit()?;
        Ok(())
    }
}

pub(super) const TOKEN_SELECT: &str =
    "SELECT t.id, t.scope, t.description, t.daily_limit, t.created_at, t.revoked_at,
        o.id, o.name, o.timezone, o.licenses
   FROM tokens t JOIN operations o ON o.id = t.operation_id";

fn operation_at(r: &postgres::Row, at: usize) -> StoreResult<Operation> {
    let name: String = r.try_get(at + 1)?;
    let tz_name: String = r.try_get(at + 2)?;
    stored_operation(r.try_get(at)?, &name, &tz_name, r.try_get(at + 3)?)
}

pub(super) fn token_from_row(r: &postgres::Row) -> StoreResult<Token> {
    let scope: String = r.try_get(1)?;
    let daily: Option<i64> = r.try_get(3)?;
    Ok(Token {
        id: r.try_get(0)?,
        operation: operation_at(r, 6)?,
        scope: Scope::parse(&scope).map_err(StoreError::Corrupt)?,
        description: r.try_get(2)?,
        daily_limit: daily.map(|d| d.max(0) as u64),
        created_at: r.try_get(4)?,
        revoked_at: r.try_get(5)?,
    })
}
