//! The per-hour digests answer (`GET /api/v2/voxtrail/chat_12/hours`): one object per hour of
//! the window that holds rows, in order, inside the usual envelope.

use serde::{Deserialize, Serialize};

/// The path of the per-hour digests.
pub const HOURS_PATH: &str = "/api/v2/voxtrail/chat_12/hours";

/// One hour of rows: `hour` is `YYYY-mm-dd HH` of the operation's wall clock, `records` the
/// row count (as text, like every number of the hosted API), `digest` the byte-wise XOR of the
/// SHA-256 of each row's JSON object as the report serves it, in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRow {
    pub hour: String,
    pub records: String,
    pub digest: String,
}
