//! The change feed (`GET /api/v2/voxtrail/chat_12/feed?after=CURSOR&limit=N`): the usual
//! envelope plus `"cursor"`, the text to pass back as `after`. A cursor is opaque to clients.

/// The path of the change feed.
pub const FEED_PATH: &str = "/api/v2/voxtrail/chat_12/feed";
/// Most rows one feed page may hold.
pub const MAX_FEED_LIMIT: u32 = 10_000;
/// Rows of a feed page when the client does not say.
pub const DEFAULT_FEED_LIMIT: u32 = 1_000;
/// The `msg` of a `400` refusing a cursor.
pub const INVALID_CURSOR: &str = "INVALID CURSOR";
/// Header of a feed page that ended at the server's byte budget before its `limit`
/// (value `true`): more rows may follow at once, although the page is short.
pub const FEED_MORE_HEADER: &str = "x-voxtrail-feed-more";
