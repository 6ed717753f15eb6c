//! SQLite feed positions (`store/feed.rs`): the operation's highest position plus one, given on
//! the single write connection, so positions become visible in order.

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::store::StoreResult;
use crate::store::feed::FeedPage;

/// Adds `feed_pos` (existing rows take their `seq`: all are committed) and its index.
pub(super) const FEED_MIGRATION: &str = "
ALTER TABLE interactions ADD COLUMN feed_pos INTEGER;
UPDATE interactions SET feed_pos = seq;
CREATE INDEX interactions_feed ON interactions(operation_id, feed_pos);
";

/// The SQL expression of the next position of operation `?1`.
const NEXT_POSITION: &str =
    "(SELECT IFNULL(MAX(feed_pos), 0) + 1 FROM interactions WHERE operation_id = ?1)";

/// The next position of an operation, inside a write transaction on the write connection.
pub(super) fn next_position(conn: &Connection, operation_id: i64) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(&format!("SELECT {NEXT_POSITION}"))?
        .query_row([operation_id], |r| r.get(0))?)
}

/// Gives a stored row a new feed position, inside the caller's write transaction on the write
/// connection (for writers that change a row in place).
#[allow(dead_code)] // for writers that replace rows in place (mirrors); tested below
pub(crate) fn bump_feed_position(
    conn: &Connection,
    operation_id: i64,
    conn_id: &str,
) -> StoreResult<bool> {
    let n = conn.execute(
        &format!(
            "UPDATE interactions SET feed_pos = {NEXT_POSITION}
              WHERE operation_id = ?1 AND conn_id = ?2"
        ),
        params![operation_id, conn_id],
    )?;
    Ok(n == 1)
}

impl SqliteStore {
    pub(crate) fn feed(
        &self,
        operation_id: i64,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> StoreResult<Option<FeedPage>> {
        let conn = self.reader()?;
        conn.execute_batch("BEGIN")?;
        let result = read_feed(&conn, operation_id, after, limit, max_bytes);
        let _ = conn.execute_batch("COMMIT");
        result
    }
}

fn read_feed(
    conn: &Connection,
    operation_id: i64,
    after: i64,
    limit: u32,
    max_bytes: usize,
) -> StoreResult<Option<FeedPage>> {
    let max: i64 = conn
        .prepare_cached(
            "SELECT IFNULL(MAX(feed_pos), 0) FROM interactions WHERE operation_id = ?1",
        )?
        .query_row([operation_id], |r| r.get(0))?;
    if after > max {
        return Ok(None);
    }
    let mut st = conn.prepare_cached(
        "SELECT feed_pos, json FROM interactions
          WHERE operation_id = ?1 AND feed_pos > ?2 ORDER BY feed_pos LIMIT ?3",
    )?;
    let mut rows = st.query(params![operation_id, after, limit])?;
    let mut page = FeedPage::empty(after);
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        if !page.push(r.get(0)?, r.get(1)?, &mut bytes, max_bytes) {
            break;
        }
    }
    if page.rows.len() as u64 == u64::from(limit) {
        page.more = false;
    }
    Ok(Some(page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interaction, OperationTz, WallClock};

    #[test]
    fn a_bumped_row_moves_to_the_end_of_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("f.db")).unwrap();
        let op = store
            .create_operation(
                &crate::domain::OperationName::parse("acme").unwrap(),
                OperationTz::parse("UTC").unwrap(),
                1,
            )
            .unwrap()
            .id;
        let mut tx = store
            .begin_ingest(op, crate::store::Durability::Full)
            .unwrap();
        for id in ["a", "b"] {
            crate::store::IngestSink::insert(
                &mut tx,
                &Interaction {
                    conn_id: id.into(),
                    date: WallClock::from_i64(20261001080000).unwrap(),
                    json: format!("{{\"conn_id\":\"{id}\"}}").into_bytes(),
                },
            )
            .unwrap();
        }
        crate::store::IngestSink::commit(Box::new(tx)).unwrap();
        let page = store.feed(op, 0, 10, usize::MAX).unwrap().unwrap();
        assert_eq!(page.rows.len(), 2);
        assert!(bump_feed_position(&store.writer(), op, "a").unwrap());
        assert!(!bump_feed_position(&store.writer(), op, "zz").unwrap());
        let next = store.feed(op, page.last, 10, usize::MAX).unwrap().unwrap();
        assert_eq!(next.rows, vec![b"{\"conn_id\":\"a\"}".to_vec()]);
        assert!(
            store
                .feed(op, next.last + 1, 10, usize::MAX)
                .unwrap()
                .is_none(),
            "never given out"
        );
    }
}
