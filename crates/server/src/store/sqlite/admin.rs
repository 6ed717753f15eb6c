//! SQLite administration: operations, tokens, the maintenance switch and usage reads and
//! writes.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, now_utc};
use crate::domain::{Operation, OperationName, OperationTz, Scope, Token, TokenHash};
use crate::store::{StoreError, StoreResult, stored_operation};

impl SqliteStore {
    pub fn create_operation(
        &self,
        name: &OperationName,
        tz: OperationTz,
        licenses: u32,
    ) -> StoreResult<Operation> {
        let w = self.writer();
        let res = w.execute(
            "INSERT INTO operations(name, timezone, licenses, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name.as_str(), tz.name(), licenses, now_utc()],
        );
        match res {
            Ok(_) => Ok(Operation {
                id: w.last_insert_rowid(),
                name: name.clone(),
                tz,
                licenses,
            }),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Err(StoreError::OperationExists(name.to_string()))
            }
            Err(e) => Err(StoreError::from_sqlite(e)),
        }
    }

    pub fn list_operations(&self) -> StoreResult<Vec<Operation>> {
        let r = self.reader()?;
        let mut st =
            r.prepare("SELECT id, name, timezone, licenses FROM operations ORDER BY name")?;
        let rows = st.query_map([], operation_from_row)?;
        rows.map(|r| r.map_err(StoreError::from)?).collect()
    }

    pub fn operation(&self, name: &str) -> StoreResult<Operation> {
        let r = self.reader()?;
        r.query_row(
            "SELECT id, name, timezone, licenses FROM operations WHERE name = ?1",
            [name],
            operation_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NoSuchOperation(name.to_owned()))?
    }

    pub fn create_token(
        &self,
        operation_id: i64,
        hash: &TokenHash,
        scope: Scope,
        description: &str,
        daily_limit: Option<u64>,
    ) -> StoreResult<i64> {
        let w = self.writer();
        w.execute(
            "INSERT INTO tokens(operation_id, hash, scope, description, daily_limit, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                operation_id,
                &hash.0[..],
                scope.as_str(),
                description,
                daily_limit.map(|v| v as i64),
                now_utc()
            ],
        )
        .map_err(StoreError::from_sqlite)?;
        Ok(w.last_insert_rowid())
    }

    pub fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare(&format!("{TOKEN_SELECT} ORDER BY t.id"))?;
        let rows = st.query_map([], token_from_row)?;
        rows.map(|r| r.map_err(StoreError::from)?).collect()
    }

    pub fn revoke_token(&self, id: i64) -> StoreResult<bool> {
        let w = self.writer();
        let exists: Option<Option<String>> = w
            .query_row("SELECT revoked_at FROM tokens WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match exists {
            None => Err(StoreError::NoSuchToken(id)),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                w.execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                    params![id, now_utc()],
                )
                .map_err(StoreError::from_sqlite)?;
                Ok(true)
            }
        }
    }

    pub fn token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(&format!("{TOKEN_SELECT} WHERE t.hash = ?1"))?;
        let found = st.query_row([&hash.0[..]], token_from_row).optional()?;
        found.transpose()
    }

    pub fn set_maintenance(&self, on: bool) -> StoreResult<()> {
        self.writer()
            .execute(
                "INSERT INTO switches(name, value) VALUES ('maintenance', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [if on { "on" } else { "off" }],
            )
            .map_err(StoreError::from_sqlite)?;
        Ok(())
    }

    pub fn maintenance(&self) -> StoreResult<bool> {
        let r = self.reader()?;
        let v: Option<String> = r
            .prepare_cached("SELECT value FROM switches WHERE name = 'maintenance'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(v.as_deref() == Some("on"))
    }

    pub fn token_usage(&self, token_id: i64, day: i64) -> StoreResult<u64> {
        let r = self.reader()?;
        let v: Option<i64> = r
            .prepare_cached("SELECT used FROM token_usage WHERE token_id = ?1 AND day = ?2")?
            .query_row(params![token_id, day], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    pub fn operation_usage(&self, operation_id: i64, day: i64) -> StoreResult<u64> {
        let r = self.reader()?;
        let v: i64 = r
            .prepare_cached(
                "SELECT COALESCE(SUM(u.used), 0) FROM token_usage u JOIN tokens t ON t.id = u.token_id
                 WHERE t.operation_id = ?1 AND u.day = ?2",
            )?
            .query_row(params![operation_id, day], |r| r.get(0))?;
        Ok(v.max(0) as u64)
    }

    pub fn save_usage(&self, rows: &[(i64, i64, u64)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = self.writer();
        let tx = w.transaction().map_err(StoreError::from_sqlite)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO token_usage(token_id, day, used) VALUES (?1, ?2, ?3)
                 ON CONFLICT(token_id, day) DO UPDATE SET used = MAX(used, excluded.used)",
            )?;
            for (token, day, used) in rows {
                st.execute(params![token, day, *used as i64])?;
            }
        }
        tx.commit().map_err(StoreError::from_sqlite)?;
        Ok(())
    }
}

pub(super) const TOKEN_SELECT: &str =
    "SELECT t.id, t.scope, t.description, t.daily_limit, t.created_at, t.revoked_at,
        o.id, o.name, o.timezone, o.licenses
   FROM tokens t JOIN operations o ON o.id = t.operation_id";

fn operation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Operation>> {
    operation_at(r, 0)
}

fn operation_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StoreResult<Operation>> {
    let id: i64 = r.get(at)?;
    let name: String = r.get(at + 1)?;
    let tz_name: String = r.get(at + 2)?;
    let licenses: i64 = r.get(at + 3)?;
    Ok(stored_operation(id, &name, &tz_name, licenses))
}

pub(super) fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Token>> {
    let scope: String = r.get(1)?;
    let daily: Option<i64> = r.get(3)?;
    let op = match operation_at(r, 6)? {
        Ok(op) => op,
        Err(e) => return Ok(Err(e)),
    };
    let scope = match Scope::parse(&scope) {
        Ok(s) => s,
        Err(e) => return Ok(Err(StoreError::Corrupt(e))),
    };
    Ok(Ok(Token {
        id: r.get(0)?,
        operation: op,
        scope,
        description: r.get(2)?,
        daily_limit: daily.map(|d| d.max(0) as u64),
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    }))
}
