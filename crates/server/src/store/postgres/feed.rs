//! PostgreSQL feed positions (`store/feed.rs`): a sequence, drawn only while the writing
//! transaction holds the operation's feed lock (a transaction-level advisory lock, released at
//! commit), so positions of an operation are committed in the order they were drawn.

use postgres::Transaction;
use postgres::fallible_iterator::FallibleIterator as _;

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
        max_bytes: usize,
    ) -> StoreResult<Option<FeedPage>> {
        let mut conn = self.conn()?;
        let st = conn.prepared(
            "SELECT (SELECT COALESCE(MAX(feed_pos), 0) FROM interactions WHERE operation_id = $1),
                    NULL::bigint, NULL::bytea
             UNION ALL
             (SELECT NULL, feed_pos, json FROM interactions
               WHERE operation_id = $1 AND feed_pos > $2 ORDER BY feed_pos LIMIT $3)",
        )?;
        let limit64 = i64::from(limit);
        let params: [&(dyn postgres::types::ToSql + Sync); 3] = [&operation_id, &after, &limit64];
        // Rows are taken as they arrive, so a page cut at its byte budget reads no further.
        let mut rows = conn.client().query_raw(&st, params)?;
        let mut page = FeedPage::empty(after);
        let mut bytes = 0;
        let mut max = None;
        while let Some(r) = rows.next()? {
            match r.try_get::<_, Option<i64>>(0)? {
                Some(m) => max = Some(m),
                None => {
                    if !page.push(r.try_get(1)?, r.try_get(2)?, &mut bytes, max_bytes) {
                        break;
                    }
                }
            }
        }
        // A page with a row proves the cursor was given out (the row's position is above it);
        // an empty page has read the operation's highest position.
        if page.rows.is_empty() && after > max.unwrap_or(0) {
            return Ok(None);
        }
        if page.rows.len() as u64 == u64::from(limit) {
            page.more = false;
        }
        Ok(Some(page))
    }
}
