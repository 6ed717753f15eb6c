//! The client's errors: final refusals the caller must act on, and retries that ran out.
//!
//! Owns [`Error`]. Retryable conditions (network errors, 5xx, truncated JSON, 403 EXCEEDS THE
//! LIMIT OF SIMULTANEOUS REQUESTS, maintenance) never reach the caller unless every attempt
//! failed ([`Error::GaveUp`]).

/// What a call can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL or a setting is unusable.
    #[error("invalid client setting: {0}")]
    Config(String),
    /// 401: no token reached the server.
    #[error("the server asks for a token (401 {msg})")]
    Unauthorized { msg: String },
    /// 403 PLEASE VALIDATE TOKEN: unknown, revoked or wrong-scope token. Final.
    #[error("the server does not accept this token (403 PLEASE VALIDATE TOKEN)")]
    InvalidToken,
    /// 403 TOKEN LIMIT EXCEEDED: the token's daily limit is used up. Final until the day resets.
    #[error("the token's daily limit is used up (403 TOKEN LIMIT EXCEEDED); {resets}")]
    TokenLimitExceeded {
        /// When the day resets, as far as the client knows.
        resets: String,
    },
    /// 400 THE RESULT HAS N RECORDS, ABOVE THE LIMIT (or a too-large answer): the window
    /// must be narrowed. The windowing calls handle it by splitting.
    #[error("the answer is above the server's limit ({msg})")]
    TooManyRecords { msg: String },
    /// A one-second window still holds too many rows: rows would be lost, so the call fails.
    #[error(
        "the one-second window {window} still holds {rows} rows or more, above the limit; cannot narrow it further"
    )]
    Unsplittable { window: String, rows: usize },
    /// Any other refusal (4xx): not retried.
    #[error("the server refused the request: HTTP {status} {error}: {msg}")]
    Refused {
        status: u16,
        error: String,
        msg: String,
    },
    /// Every attempt failed with a retryable condition.
    #[error("gave up after {attempts} attempts; last: {last}")]
    GaveUp { attempts: u32, last: String },
}

impl Error {
    /// True for the errors that no retry can cure (bad token, daily limit, refused request).
    pub fn is_final(&self) -> bool {
        !matches!(self, Error::GaveUp { .. })
    }
}
