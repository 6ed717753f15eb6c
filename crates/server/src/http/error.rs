//! Every error the HTTP API can answer, mapped to status, error type and message in one table
//! (`ApiError::parts`). The first six texts are the hosted API's own, byte for byte.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use voxtrail_wire::RecordError;

/// Marks a 500 answer; the request-id middleware writes its body (it knows the request id).
#[derive(Debug, Clone, Copy)]
pub struct InternalErrorMarker;

/// Marks an answer refused by a limit, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct LimitRejection(pub &'static str);

/// The message of a write refused because the operation is a mirror; `voxtrail import` says
/// the same.
pub const MIRROR_WRITE_REFUSED: &str = "THE OPERATION IS A MIRROR; WRITE TO ITS SOURCE";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown api")]
    ApiDoesNotExist,
    #[error("missing parameters")]
    ParametersRequired,
    #[error("missing token")]
    TokenMissing,
    #[error("invalid token")]
    TokenInvalid,
    #[error("daily limit used up")]
    TokenLimitExceeded,
    #[error("too many simultaneous requests")]
    TooManySimultaneous(u32),
    #[error("invalid date format")]
    InvalidDateFormat,
    #[error("date_ini after date_end")]
    DatesReversed,
    #[error("window too long")]
    RangeTooLong(u32),
    #[error("too many records")]
    TooManyRecords { found: u64, limit: u64 },
    #[error("answer too large")]
    TooLarge { limit_bytes: u64 },
    #[error("maintenance")]
    Maintenance { retry_after_secs: u64 },
    #[error("no such path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("the answer could not start in time")]
    Timeout(std::time::Duration),
    /// The hosted API's answer to an empty window, when `compat.empty_window = "404"`.
    #[error("empty window (compat 404)")]
    EmptyWindowCompat,
    #[error("invalid records")]
    InvalidRecords {
        total: u64,
        listed: Vec<RecordError>,
    },
    #[error("conflicting records")]
    Conflicts(Vec<String>),
    /// A write into an operation that is a mirror (docs/api.md, "Mirrors").
    #[error("the operation is a mirror")]
    MirrorWriteRefused,
    #[error("too many records in one request")]
    IngestTooManyRecords(usize),
    #[error("request body too large")]
    BodyTooLarge(usize),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("request body sent too slowly")]
    BodyTimeout(std::time::Duration),
    #[error("the database is busy")]
    Busy,
    /// A change-feed cursor that is malformed, of another operation or never given out.
    #[error("invalid feed cursor")]
    InvalidCursor,
    /// A change-feed `limit` that is not an integer from 1 to the maximum.
    #[error("invalid feed limit")]
    InvalidFeedLimit(u32),
    /// The database cannot be reached (PostgreSQL down, restarting or out of connections);
    /// the cause goes to the log only.
    #[error("database unavailable: {0:#}")]
    DatabaseUnavailable(anyhow::Error),
    /// The database refuses writes (read-only PostgreSQL, hot standby); the cause goes to the
    /// log only.
    #[error("database read-only: {0:#}")]
    ReadOnly(anyhow::Error),
    /// The disk under the database is full; the cause goes to the log only.
    #[error("disk full: {0:#}")]
    DiskFull(anyhow::Error),
    /// A bug or an infrastructure failure; the cause goes to the log only.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// Status, error type and message: the single place where errors meet the wire.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        const BAD: &str = "BAD REQUEST";
        const FORBIDDEN: &str = "FORBIDDEN";
        match self {
            Self::ApiDoesNotExist => (
                S::BAD_REQUEST,
                BAD,
                "THE API YOU WANT TO CONSULT DOES NOT EXIST".into(),
            ),
            Self::ParametersRequired => {
                (S::BAD_REQUEST, BAD, "SOME PARAMETERS ARE REQUIRED".into())
            }
            Self::TokenMissing => (
                S::UNAUTHORIZED,
                "UNAUTHORIZED",
                "PLEASE ENTER THE WOLKVOX-TOKEN".into(),
            ),
            Self::TokenInvalid => (S::FORBIDDEN, FORBIDDEN, "PLEASE VALIDATE TOKEN".into()),
            Self::TokenLimitExceeded => (S::FORBIDDEN, FORBIDDEN, "TOKEN LIMIT EXCEEDED".into()),
            Self::TooManySimultaneous(n) => (
                S::FORBIDDEN,
                FORBIDDEN,
                format!("EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN ({n})"),
            ),
            Self::InvalidDateFormat => (
                S::BAD_REQUEST,
                BAD,
                "INVALID DATE FORMAT, USE YYYYmmddHHiiss".into(),
            ),
            Self::DatesReversed => (
                S::BAD_REQUEST,
                BAD,
                "date_ini MUST NOT BE AFTER date_end".into(),
            ),
            Self::RangeTooLong(days) => (
                S::BAD_REQUEST,
                BAD,
                format!("THE DATE RANGE EXCEEDS THE LIMIT OF {days} DAYS"),
            ),
            Self::TooManyRecords { found, limit } => (
                S::BAD_REQUEST,
                BAD,
                format!(
                    "THE RESULT HAS {found} RECORDS, ABOVE THE LIMIT OF {limit}; NARROW THE DATE RANGE"
                ),
            ),
            Self::TooLarge { limit_bytes } => (
                S::BAD_REQUEST,
                BAD,
                format!(
                    "THE RESULT EXCEEDS THE LIMIT OF {}; NARROW THE DATE RANGE",
                    size_text(*limit_bytes)
                ),
            ),
            Self::Maintenance { .. } => (
                S::FORBIDDEN,
                FORBIDDEN,
                "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE".into(),
            ),
            Self::NotFound => (
                S::NOT_FOUND,
                "NOT FOUND",
                "THE REQUESTED PATH DOES NOT EXIST".into(),
            ),
            Self::MethodNotAllowed { allow } => (
                S::METHOD_NOT_ALLOWED,
                "METHOD NOT ALLOWED",
                format!("THIS ENDPOINT ONLY ACCEPTS {allow}"),
            ),
            Self::Timeout(limit) => (
                S::GATEWAY_TIMEOUT,
                "GATEWAY TIMEOUT",
                format!(
                    "THE ANSWER COULD NOT START WITHIN {}; NARROW THE DATE RANGE",
                    duration_text(*limit)
                ),
            ),
            Self::EmptyWindowCompat => (S::NOT_FOUND, "NOT FOUND", "Validate dates entered".into()),
            Self::InvalidRecords { total, .. } => (
                S::BAD_REQUEST,
                BAD,
                format!("{total} INVALID RECORDS; NOTHING WAS STORED"),
            ),
            Self::Conflicts(ids) => (
                S::CONFLICT,
                "CONFLICT",
                format!(
                    "{} RECORDS CONFLICT WITH STORED ONES (SAME conn_id, DIFFERENT CONTENT); NOTHING WAS STORED",
                    ids.len()
                ),
            ),
            Self::MirrorWriteRefused => (S::CONFLICT, "CONFLICT", MIRROR_WRITE_REFUSED.into()),
            Self::IngestTooManyRecords(max) => (
                S::PAYLOAD_TOO_LARGE,
                "PAYLOAD TOO LARGE",
                format!("AT MOST {max} RECORDS PER REQUEST"),
            ),
            Self::BodyTooLarge(max) => (
                S::PAYLOAD_TOO_LARGE,
                "PAYLOAD TOO LARGE",
                format!("THE BODY EXCEEDS {max} BYTES"),
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED MEDIA TYPE",
                "USE Content-Type: application/json OR application/x-ndjson".into(),
            ),
            Self::BodyUnreadable => (
                S::BAD_REQUEST,
                BAD,
                "THE REQUEST BODY COULD NOT BE READ".into(),
            ),
            Self::BodyTimeout(limit) => (
                S::REQUEST_TIMEOUT,
                "REQUEST TIMEOUT",
                format!(
                    "THE REQUEST BODY WAS NOT RECEIVED WITHIN {}",
                    duration_text(*limit)
                ),
            ),
            Self::InvalidCursor => (S::BAD_REQUEST, BAD, "INVALID CURSOR".into()),
            Self::InvalidFeedLimit(max) => (
                S::BAD_REQUEST,
                BAD,
                format!("limit MUST BE AN INTEGER FROM 1 TO {max}"),
            ),
            Self::Busy => (
                S::SERVICE_UNAVAILABLE,
                "SERVICE UNAVAILABLE",
                "THE DATABASE IS BUSY; RETRY SHORTLY".into(),
            ),
            Self::DatabaseUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "SERVICE UNAVAILABLE",
                "THE DATABASE CANNOT BE REACHED; RETRY SHORTLY".into(),
            ),
            Self::ReadOnly(_) => (
                S::SERVICE_UNAVAILABLE,
                "SERVICE UNAVAILABLE",
                "THE DATABASE IS READ-ONLY; RETRY LATER".into(),
            ),
            Self::DiskFull(_) => (
                S::SERVICE_UNAVAILABLE,
                "SERVICE UNAVAILABLE",
                "THE DISK IS FULL; RETRY LATER".into(),
            ),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "INTERNAL SERVER ERROR",
                String::new(),
            ),
        }
    }

    fn limit_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::TokenLimitExceeded => "daily",
            Self::TooManySimultaneous(_) => "concurrency",
            Self::RangeTooLong(_) => "window",
            Self::TooManyRecords { .. } => "records",
            Self::TooLarge { .. } => "bytes",
            Self::Timeout(_) => "timeout",
            Self::IngestTooManyRecords(_) | Self::BodyTooLarge(_) => "ingest_size",
            _ => return None,
        })
    }
}

/// `256 MB` for whole mebibytes (the hosted API's wording), else the exact byte count.
fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MB", bytes / MIB)
    } else {
        format!("{bytes} BYTES")
    }
}

/// `60 SECONDS` for whole seconds, else milliseconds.
fn duration_text(d: std::time::Duration) -> String {
    if d.as_millis() >= 1000 && d.as_millis().is_multiple_of(1000) {
        format!("{} SECONDS", d.as_secs())
    } else {
        format!("{} MILLISECONDS", d.as_millis())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Busy => Self::Busy,
            e @ (crate::store::StoreError::Unavailable(_) | crate::store::StoreError::SlotLost) => {
                Self::DatabaseUnavailable(e.into())
            }
            e @ crate::store::StoreError::ReadOnly(_) => Self::ReadOnly(e.into()),
            e @ crate::store::StoreError::DiskFull(_) => Self::DiskFull(e.into()),
            e @ crate::store::StoreError::TaskFailed(_) => Self::Internal(e.into()),
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, msg) = self.parts();
        let body = match &self {
            Self::InvalidRecords { listed, .. } => {
                voxtrail_wire::error_body_with(status.as_u16(), error, &msg, listed)
            }
            Self::Conflicts(ids) => {
                voxtrail_wire::error_body_with(status.as_u16(), error, &msg, ids)
            }
            _ => voxtrail_wire::error_body(status.as_u16(), error, &msg),
        };
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            Self::Maintenance { retry_after_secs } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Busy => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::DatabaseUnavailable(cause) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                tracing::error!(error = format!("{cause:#}"), "database unavailable");
            }
            Self::ReadOnly(cause) | Self::DiskFull(cause) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                tracing::error!(error = format!("{cause:#}"), "database refuses writes");
            }
            Self::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                resp.extensions_mut().insert(InternalErrorMarker);
            }
            _ => {}
        }
        if let Some(limit) = self.limit_name() {
            resp.extensions_mut().insert(LimitRejection(limit));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_store_task_is_a_generic_500() {
        let e = crate::store::StoreError::TaskFailed("store task failed: panicked".into());
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_full_disk_is_a_503_with_retry_after() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = crate::store::StoreError::from(full);
        assert!(matches!(e, crate::store::StoreError::DiskFull(_)), "{e:?}");
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "30");
        assert!(resp.extensions().get::<InternalErrorMarker>().is_none());
    }

    #[test]
    fn a_write_into_a_mirror_is_a_409_conflict() {
        let (status, error, msg) = ApiError::MirrorWriteRefused.parts();
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error, "CONFLICT");
        assert_eq!(msg, "THE OPERATION IS A MIRROR; WRITE TO ITS SOURCE");
    }
}
