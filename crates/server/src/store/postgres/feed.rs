//! PostgreSQL feed positions (`store/feed.rs`): a sequence, drawn only while the writing
//! transaction holds the operation's feed lock (a transaction-level advisory lock, released at
//! commit), so positions of an operation are committed in the order they were drawn.

use postgres::Transaction;

use super::PgStore;
use crate::store::StoreResult;
use crate::store::feed::FeedPage;

/// Adds `feed_pos` from its own sequence (existing rows are numbered by the table rewrite) and
/// its index.
pub(super) const FEED_MIGRATION: &str = "
CREATE SEQUENCE interactions_feed_pos;
ALTER TABLE interactions ADD COLUMN feed_pos BIGINT NOT NULL DEFAULT nextval('interactions_feed_pos');
CREATE INDEX interactions_feed ON interactions(operation_id, feed_pos);
";

/// The feed lock's key of an operation, in the one-bigint key space (slot locks use the
/// two-int4 space; the migration lock is one fixed key outside this range).
pub(crate) fn feed_lock_key(operation_id: i64) -> i64 {
    0x6665_6564_0000_0000 | (operation_id & 0xffff_ffff)
}

/// The statement that takes an operation's feed lock until the transaction ends. A writer
/// runs it before its first write of an operation's rows.
pub(crate) const LOCK_FEED: &str = "SELECT pg_advisory_xact_lock($1)";

/// Takes the feed lock of an operation in `tx` (for writers that change rows in place, before
/// `SET feed_pos = nextval('interactions_feed_pos')`).
pub(crate) fn lock_feed(tx: &mut Transaction<'_>, operation_id: i64) -> StoreResult<()> {
    tx.execute(LOCK_FEED, &[&feed_lock_key(operation_id)])?;
    Ok(())
}

impl PgStore {
    pub(crate) fn feed(
        &self,
        operation_id: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Option<FeedPage>> {
        let mut conn = self.conn()?;
        let st = conn.prepared(
            "SELECT (SELECT COALESCE(MAX(feed_pos), 0) FROM interactions WHERE operation_id = $1),
                    NULL::bigint, NULL::bytea
             UNION ALL
             (SELECT NULL, feed_pos, json FROM interactions
               WHERE operation_id = $1 AND feed_pos > $2 ORDER BY feed_pos LIMIT $3)",
        )?;
        let rows = conn
            .client()
            .query(&st, &[&operation_id, &after, &i64::from(limit)])?;
        let mut page = FeedPage {
            rows: Vec::new(),
            last: after,
        };
        let mut max = 0;
        for r in &rows {
            match r.try_get::<_, Option<i64>>(0)? {
                Some(m) => max = m,
                None => {
                    page.last = r.try_get(1)?;
                    page.rows.push(r.try_get(2)?);
                }
            }
        }
        if after > max {
            return Ok(None);
        }
        Ok(Some(page))
    }
}
