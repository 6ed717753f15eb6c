//! `GET /api/v2/voxtrail/chat_12/feed?after=CURSOR&limit=N` (docs/api.md, "Change feed"): the
//! rows of the token's operation stored or changed after a cursor, in the order they became
//! visible (`store/feed.rs`), with the cursor to pass back. Same token and checks as the
//! report up to its limits; one use per page.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::observe::LogFields;
use super::report::{GET_HEAD, admit, quota_of, refused, release};
use crate::domain::{Scope, WallClock};
use crate::store::feed::{Cursor, DEFAULT_FEED_LIMIT, FeedPage, MAX_FEED_LIMIT};
use crate::store::{AdmitRequest, Admitted};

/// The path of the feed (shared with the client SDK).
pub const FEED_PATH: &str = voxtrail_wire::feed::FEED_PATH;
/// Said on a page cut at `limits.feed_page_max_bytes` before its `limit`: ask again at once.
const FEED_MORE: &str = voxtrail_wire::feed::FEED_MORE_HEADER;

/// `after` and `limit` as given (the last occurrence wins); `None` when absent or empty.
fn params(query: Option<&str>) -> (Option<String>, Option<String>) {
    let (mut after, mut limit) = (None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "after" => after = Some(v.into_owned()),
            "limit" => limit = Some(v.into_owned()),
            _ => {}
        }
    }
    let keep = |v: Option<String>| v.filter(|s| !s.is_empty());
    (keep(after), keep(limit))
}

/// `limit`: an integer from 1 to [`MAX_FEED_LIMIT`], default [`DEFAULT_FEED_LIMIT`].
fn parse_limit(v: Option<&str>) -> Result<u32, ApiError> {
    match v {
        None => Ok(DEFAULT_FEED_LIMIT),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_FEED_LIMIT).contains(n) && !s.starts_with('+'))
            .ok_or(ApiError::InvalidFeedLimit(MAX_FEED_LIMIT)),
    }
}

/// Checks in order: method, maintenance, token, `limit`, `after` (syntax and operation), slot
/// and daily limit; then the page, or `INVALID CURSOR` for a position never given out.
#[tracing::instrument(name = "feed", skip_all)]
pub async fn feed(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let token = admit(&st, &method, &headers, Scope::Report, GET_HEAD, "GET, HEAD").await?;
    let (after, limit) = params(query.as_deref());
    let limit = parse_limit(limit.as_deref())?;
    let op = token.operation.id;
    let cursor = match after.as_deref() {
        None => Cursor::start(op),
        Some(t) => Cursor::parse(t)
            .filter(|c| c.operation_id == op)
            .ok_or(ApiError::InvalidCursor)?,
    };
    let limits = &st.config.limits;
    let req = AdmitRequest {
        token: token.id,
        day: WallClock::now_in(token.operation.tz).day(),
        daily_limit: token.effective_daily_limit(limits.daily_per_license),
        max_slots: limits.concurrent_per_token,
    };
    let Admitted { slot, used, .. } = match st.store.admit(req, None).await? {
        Ok(a) => a,
        Err(r) => return Ok(refused(&st, &token, r).await),
    };
    let quota = quota_of(&st, &token, used);
    let found = st
        .store
        .feed(op, cursor.position, limit, limits.feed_page_max_bytes)
        .await;
    release(slot).await;
    let mut resp = match found {
        Ok(Some(page)) => {
            let rows = page.rows.len() as u64;
            let mut resp = page_response(op, page);
            resp.extensions_mut().insert(LogFields {
                operation: Some(token.operation.name.to_string()),
                rows: Some(rows),
            });
            resp
        }
        Ok(None) => ApiError::InvalidCursor.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    quota.apply(resp.headers_mut());
    Ok(resp)
}

/// `{"code":"200","error":null,"msg":"N records were found","data":[…],"cursor":"…"}`, the
/// rows as stored.
fn page_response(operation_id: i64, page: FeedPage) -> Response {
    let cursor = Cursor {
        operation_id,
        position: page.last,
    };
    let head = format!(
        "{{\"code\":\"200\",\"error\":null,\"msg\":\"{} records were found\",\"data\":[",
        page.rows.len()
    );
    let tail = format!("],\"cursor\":\"{}\"}}", cursor.text());
    let more = page.more;
    let len = head.len() + tail.len() + page.rows.iter().map(|r| r.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(head.as_bytes());
    for (i, r) in page.rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.extend_from_slice(tail.as_bytes());
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if more {
        resp.headers_mut()
            .insert(FEED_MORE, HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_integers_in_range() {
        assert_eq!(parse_limit(None).unwrap(), 1_000);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("10000")).unwrap(), 10_000);
        for bad in [
            "0",
            "10001",
            "-1",
            "+5",
            "1.5",
            "x",
            "99999999999999999999",
            " 5",
        ] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn last_parameter_wins_and_empty_is_absent() {
        let (a, l) = params(Some("after=1.2&after=1.3&limit=&x=y"));
        assert_eq!(a.as_deref(), Some("1.3"));
        assert_eq!(l, None);
    }
}
