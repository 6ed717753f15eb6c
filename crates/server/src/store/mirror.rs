//! Mirrors (docs/api.md, "Mirrors"): an operation whose rows come only from an upstream
//! `chat_12` API. Here: the stored definition and state of a mirror ([`Mirror`]), the
//! backend-neutral [`Store`] methods over them, and the mirror commit — a window's rows
//! upserted by `(operation, conn_id)` **and** the mirror's checkpoint, in one transaction.
//!
//! A changed row is replaced in place: it keeps its `seq`, so it keeps its position among the
//! rows of its second; its JSON bytes are replaced and its `local_ts` follows its new `date`
//! (a row whose date changed upstream is found in the window of its new date). The upstream
//! token is stored as given (the runner needs it to call the upstream) and is never printed
//! or logged.

use crate::domain::{Interaction, WallClock};

use super::{Store, StoreResult};

/// A mirror as `mirror set` defines it.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorDef {
    pub operation_id: i64,
    /// The upstream's base URL (`https://wv{CODE}.wolkvox.com` or another voxtrail).
    pub url: String,
    /// The upstream token. Never printed: `Debug` hides it.
    pub token: String,
    /// First wall-clock second to copy (operation time).
    pub since: WallClock,
    pub every_secs: u64,
    pub lookback_secs: u64,
    pub window_secs: u64,
}

impl std::fmt::Debug for MirrorDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorDef")
            .field("operation_id", &self.operation_id)
            .field("url", &self.url)
            .field("token", &"<hidden>")
            .field("since", &self.since)
            .field("every_secs", &self.every_secs)
            .field("lookback_secs", &self.lookback_secs)
            .field("window_secs", &self.window_secs)
            .finish()
    }
}

/// A mirror as stored: its definition and what its runs did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub def: MirrorDef,
    /// The operation's name.
    pub operation: String,
    /// The last wall-clock second copied completely; `None` before the first window.
    pub checkpoint: Option<WallClock>,
    /// RFC 3339 time of the last committed window.
    pub last_success: Option<String>,
    pub rows_inserted: u64,
    pub rows_updated: u64,
    /// Errors recorded since the mirror was defined (windows deferred, refusals).
    pub errors: u64,
    pub last_error: Option<String>,
    /// Set when the upstream refused the token: the mirror does not run until `mirror set`.
    pub halted: bool,
    /// Bumped by every `mirror set`: a running server restarts a mirror whose generation moved.
    pub generation: i64,
}

/// The right to run a mirror, held while it runs: on SQLite the database has one server
/// process (its lock file), so the lease is free; on PostgreSQL it is a session advisory lock
/// on a dedicated connection (`postgres/mirror.rs`), gone with that connection.
pub enum MirrorLease {
    Sqlite,
    Postgres(super::postgres::PgMirrorLease),
}

impl MirrorLease {
    /// Whether the lease was lost (its PostgreSQL connection closed): the mirror must stop.
    pub fn is_lost(&self) -> bool {
        match self {
            Self::Sqlite => false,
            Self::Postgres(l) => l.is_lost(),
        }
    }
}

/// What a mirror commit did with a window's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl Store {
    /// Defines a mirror, or redefines it: the generation moves, a recorded halt and last error
    /// are cleared, and the checkpoint is forgotten when the upstream URL or `since` changed
    /// (rows stay: the next run upserts them).
    pub fn set_mirror(&self, def: &MirrorDef) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.set_mirror(def),
            Self::Postgres(s) => s.set_mirror(def),
        }
    }

    /// Removes a mirror's definition (its rows stay); `Ok(false)` when there was none.
    pub fn remove_mirror(&self, operation_id: i64) -> StoreResult<bool> {
        match self {
            Self::Sqlite(s) => s.remove_mirror(operation_id),
            Self::Postgres(s) => s.remove_mirror(operation_id),
        }
    }

    /// Every mirror, by operation name.
    pub fn mirrors(&self) -> StoreResult<Vec<Mirror>> {
        match self {
            Self::Sqlite(s) => s.mirrors(),
            Self::Postgres(s) => s.mirrors(),
        }
    }

    /// The mirror of an operation, if it is one.
    pub fn mirror(&self, operation_id: i64) -> StoreResult<Option<Mirror>> {
        Ok(self
            .mirrors()?
            .into_iter()
            .find(|m| m.def.operation_id == operation_id))
    }

    /// Upserts a window's rows into a mirrored operation and moves its checkpoint to
    /// `checkpoint` (never backwards), in one transaction; counts the outcome and records the
    /// success. A conn_id twice in `rows`: the last occurrence wins.
    pub fn mirror_commit(
        &self,
        operation_id: i64,
        rows: &[Interaction],
        checkpoint: WallClock,
    ) -> StoreResult<MirrorOutcome> {
        let rows = last_occurrences(rows);
        match self {
            Self::Sqlite(s) => s.mirror_commit(operation_id, &rows, checkpoint),
            Self::Postgres(s) => s.mirror_commit(operation_id, &rows, checkpoint),
        }
    }

    /// Takes the lease of a mirror (exactly one runner per mirror across replicas); `None`
    /// when another runner holds it.
    pub async fn mirror_lease(&self, operation_id: i64) -> StoreResult<Option<MirrorLease>> {
        match self {
            Self::Sqlite(_) => Ok(Some(MirrorLease::Sqlite)),
            Self::Postgres(s) => Ok(s
                .mirror_lease(operation_id)
                .await?
                .map(MirrorLease::Postgres)),
        }
    }

    /// Records an error of a mirror's run (counted); `halt` stops the mirror until the next
    /// `mirror set` (a refused token).
    pub fn mirror_error(&self, operation_id: i64, error: &str, halt: bool) -> StoreResult<()> {
        match self {
            Self::Sqlite(s) => s.mirror_error(operation_id, error, halt),
            Self::Postgres(s) => s.mirror_error(operation_id, error, halt),
        }
    }
}

/// The rows with each conn_id once (its last occurrence), in order of those occurrences.
fn last_occurrences(rows: &[Interaction]) -> Vec<&Interaction> {
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.conn_id.as_str(), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, r)| last.get(r.conn_id.as_str()) == Some(i))
        .map(|(_, r)| r)
        .collect()
}

/// A stored error text, bounded so a hostile upstream cannot grow the table.
pub(crate) fn bounded_error(e: &str) -> String {
    const MAX: usize = 500;
    if e.len() <= MAX {
        return e.to_owned();
    }
    let mut end = MAX;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &e[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, json: &str) -> Interaction {
        Interaction {
            conn_id: id.into(),
            date: WallClock::from_i64(20260101000000).unwrap(),
            json: json.as_bytes().to_vec(),
        }
    }

    #[test]
    fn repeated_conn_ids_keep_the_last() {
        let rows = [row("a", "1"), row("b", "2"), row("a", "3")];
        let kept: Vec<_> = last_occurrences(&rows)
            .iter()
            .map(|r| (r.conn_id.clone(), r.json.clone()))
            .collect();
        assert_eq!(
            kept,
            vec![("b".into(), b"2".to_vec()), ("a".into(), b"3".to_vec())]
        );
    }

    #[test]
    fn errors_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(400);
        let b = bounded_error(&long);
        assert!(b.len() <= 504);
        assert!(b.ends_with('…'));
        assert_eq!(bounded_error("short"), "short");
    }

    #[test]
    fn debug_hides_the_token() {
        let d = MirrorDef {
            operation_id: 1,
            url: "http://x".into(),
            token: "secret-token".into(),
            since: WallClock::from_i64(20260101000000).unwrap(),
            every_secs: 300,
            lookback_secs: 900,
            window_secs: 86400,
        };
        assert!(!format!("{d:?}").contains("secret-token"));
    }
}
