//! The client's errors: final refusals the caller must act on, and retries that ran out.
//!
//! Owns [`Error`]. Retryable conditions (network errors, 5xx, truncated JSON, 403 EXCEEDS THE
//! LIMIT OF SIMULTANEOUS REQUESTS, maintenance) never reach the caller unless every attempt
//! failed ([`Error::GaveUp`]).

use voxtrail_wire::TokenInfoRow;

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
    ///
    /// After the refusal the client makes one `token_info` call (never retried): when it is
    /// answered, the limit and today's use come with the error; when it is refused too (voxtrail
    /// counts `token_info` as a use and refuses it once the limit is used), `usage` is `None`.
    #[error(
        "the token's daily limit is used up (403 TOKEN LIMIT EXCEEDED){}; {resets}",
        usage_text(.usage.as_deref())
    )]
    TokenLimitExceeded {
        /// When the day resets: the next midnight of the operation's time zone, when the client
        /// was given one.
        resets: String,
        /// The token's limit and today's use, from `token_info`, when it answered (boxed:
        /// keeps every `Result` of the client small).
        usage: Option<Box<TokenInfoRow>>,
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
    /// The source has no change feed (the hosted API and voxtrails older than the feed answer
    /// its path with 404; a front end may answer it with a page that is not JSON); `why` says
    /// what it answered. Read by windows instead.
    #[error("the source has no change feed ({why})")]
    NoFeed { why: String },
    /// 400 INVALID CURSOR: the source does not know the feed cursor given (malformed, of
    /// another operation or another source, or never given out). Final.
    #[error("the source refused the feed cursor {cursor:?} (400 INVALID CURSOR)")]
    InvalidCursor { cursor: String },
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

/// `: limit N, used today U (all tokens of the operation: A)` from a `token_info` row; empty
/// without one. Blank fields are left out.
fn usage_text(usage: Option<&TokenInfoRow>) -> String {
    let Some(u) = usage else {
        return String::new();
    };
    let mut parts = Vec::new();
    if !u.token_limit.trim().is_empty() {
        parts.push(format!("limit {}", u.token_limit.trim()));
    }
    if !u.token_use_today.trim().is_empty() {
        parts.push(format!("used today {}", u.token_use_today.trim()));
    }
    let mut s = parts.join(", ");
    if !u.all_token_today.trim().is_empty() {
        s.push_str(&format!(
            " (all tokens of the operation today: {})",
            u.all_token_today.trim()
        ));
    }
    if s.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", s.trim_start())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_limit_text_with_and_without_usage() {
        let resets = "it resets at midnight America/Bogota (in 3h 05m)".to_owned();
        let bare = Error::TokenLimitExceeded {
            resets: resets.clone(),
            usage: None,
        };
        assert_eq!(
            bare.to_string(),
            "the token's daily limit is used up (403 TOKEN LIMIT EXCEEDED); it resets at midnight America/Bogota (in 3h 05m)"
        );
        let full = Error::TokenLimitExceeded {
            resets,
            usage: Some(Box::new(TokenInfoRow {
                description: "x".into(),
                token_limit: "500".into(),
                token_use_today: "501".into(),
                all_token_today: "730".into(),
                available_consumption_options: "0".into(),
            })),
        };
        assert_eq!(
            full.to_string(),
            "the token's daily limit is used up (403 TOKEN LIMIT EXCEEDED): limit 500, used today 501 (all tokens of the operation today: 730); it resets at midnight America/Bogota (in 3h 05m)"
        );
    }
}
