//! `GET /api/v2/reports_manager.php` (report `chat_12`) and `GET /api/v2/information.php`
//! (`token_info`), with the checks in their contractual order (docs/api.md, "Errors, in the
//! order they are checked"); [`report`] reads that order top to bottom.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::AppState;
use super::error::ApiError;
use super::observe::LogFields;
use crate::auth::AuthFailure;
use crate::config::EmptyWindow;
use crate::domain::{Scope, Token, WallClock, Window, WindowError};
use crate::store::{
    AdmitRequest, Admitted, HeadReceiver, Refused, ReportQuery, ReportRefusal, ReportStream,
    SlotGuard, StoreResult,
};

/// The query parameters the report reads. A repeated parameter: the last one wins, as in PHP.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReportParams {
    pub api: Option<String>,
    pub date_ini: Option<String>,
    pub date_end: Option<String>,
}

impl ReportParams {
    /// Parses a raw query string. Bad percent-encoding is kept literally and invalid UTF-8
    /// replaced, so such values fail later as the parameter they are, never as a crash.
    pub fn parse(query: Option<&str>) -> Self {
        let mut p = Self::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "api" => &mut p.api,
                "date_ini" => &mut p.date_ini,
                "date_end" => &mut p.date_end,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        p
    }
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// The method check: `allowed`, or 405 with `Allow: allow_text`.
fn check_method(
    method: &Method,
    allowed: &'static [Method],
    allow_text: &'static str,
) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed { allow: allow_text })
    }
}

/// The maintenance switch: while it is on every `/api/v2/` request is refused.
fn check_maintenance(st: &AppState) -> Result<(), ApiError> {
    if st.maintenance_on() {
        return Err(ApiError::Maintenance {
            retry_after_secs: st.config.maintenance_retry_after_secs,
        });
    }
    Ok(())
}

/// The token: present (401 otherwise), then known, unrevoked and of `scope` (403 otherwise).
async fn authenticate(st: &AppState, headers: &HeaderMap, scope: Scope) -> Result<Token, ApiError> {
    let header = headers.get("wolkvox-token").map(HeaderValue::as_bytes);
    match st.auth.check(&st.store, header, scope).await? {
        Ok(t) => Ok(t),
        Err(AuthFailure::Missing) => Err(ApiError::TokenMissing),
        Err(AuthFailure::Invalid) => Err(ApiError::TokenInvalid),
    }
}

/// Checks shared by every `/api/v2/` endpoint, in order: method, maintenance, token.
pub(super) async fn admit(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    scope: Scope,
    allowed: &'static [Method],
    allow_text: &'static str,
) -> Result<Token, ApiError> {
    check_method(method, allowed, allow_text)?;
    check_maintenance(st)?;
    authenticate(st, headers, scope).await
}

/// What a request of `token` asks of its per-token limits today.
fn limits_of(st: &AppState, token: &Token) -> AdmitRequest {
    let limits = &st.config.limits;
    AdmitRequest {
        token: token.id,
        day: WallClock::now_in(token.operation.tz).day(),
        daily_limit: token.effective_daily_limit(limits.daily_per_license),
        max_slots: limits.concurrent_per_token,
    }
}

/// The answer to a refused admission.
fn refusal(st: &AppState, r: Refused) -> ApiError {
    match r {
        Refused::Simultaneous => {
            ApiError::TooManySimultaneous(st.config.limits.concurrent_per_token)
        }
        Refused::DailyLimit => ApiError::TokenLimitExceeded,
    }
}

const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];

/// Frees a slot before the answer goes out, waiting for the database where it lives there.
pub(super) async fn release(slot: SlotGuard) {
    if let Some(handle) = slot.release() {
        let _ = handle.await;
    }
}

/// `chat_12`. The checks run top to bottom in the contract's order (docs/api.md, "Errors, in
/// the order they are checked"; the numbers below are its rows): the first that fails decides
/// the answer, so a request with several faults always gets the same one, and a use is counted
/// only once every check up to the daily limit has passed.
#[tracing::instrument(name = "report", skip_all)]
pub async fn report(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limits = &st.config.limits;
    // 1. Path: only `/api/v2/reports_manager.php` is routed here (`super::router`).
    // 2. Method.
    check_method(&method, GET_HEAD, "GET, HEAD")?;
    // 3. Maintenance.
    check_maintenance(&st)?;
    // 4–5. Token: present, then valid for reports.
    let token = authenticate(&st, &headers, Scope::Report).await?;
    // 6–7. `api`: present, then `chat_12`.
    let params = ReportParams::parse(query.as_deref());
    match present(&params.api) {
        None => return Err(ApiError::ParametersRequired),
        Some(voxtrail_wire::CHAT_12) => {}
        Some(_) => return Err(ApiError::ApiDoesNotExist),
    }
    // 8. Both dates present.
    let (Some(ini), Some(end)) = (present(&params.date_ini), present(&params.date_end)) else {
        return Err(ApiError::ParametersRequired);
    };
    // 9–11. Dates: format, order, length.
    let window = Window::parse(ini, end, limits.max_window_days).map_err(|e| match e {
        WindowError::BadFormat => ApiError::InvalidDateFormat,
        WindowError::Reversed => ApiError::DatesReversed,
        WindowError::TooLong => ApiError::RangeTooLong(limits.max_window_days),
    })?;
    // 12–13. Concurrency slot, then the daily limit: one store call, which also starts the
    // report (on PostgreSQL a poll-sized answer comes from the same statement).
    let q = ReportQuery {
        operation_id: token.operation.id,
        window,
        max_records: limits.max_records,
        max_bytes: limits.max_bytes,
    };
    let asked = tokio::time::Instant::now();
    let admitted = st.store.admit(limits_of(&st, &token), Some(q)).await?;
    let Admitted { slot, head, .. } = admitted.map_err(|r| refusal(&st, r))?;
    // 14–16. Result size (records, then bytes) from the head, before the first byte; or the
    // consumption timeout when the head does not come in time.
    let stream = wait_for_head(head, asked, &st).await?;
    // 17. An empty window in the hosted API's 404 compatibility mode.
    let fields = LogFields {
        operation: Some(token.operation.name.to_string()),
        rows: Some(stream.head.rows),
    };
    if stream.head.rows == 0 && st.config.compat.empty_window == EmptyWindow::NotFound {
        let mut resp = ApiError::EmptyWindowCompat.into_response();
        resp.extensions_mut().insert(fields);
        return Ok(resp);
    }
    let body = Body::from_stream(SlotBody {
        chunks: stream.chunks,
        slot: Some(slot),
        remaining: stream.head.body_len,
        releasing: None,
    });
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(stream.head.body_len),
    );
    // A mirrored operation says how fresh it is (docs/api.md, "Mirrors").
    if let Some(cp) = st.mirrors.checkpoint(token.operation.id)
        && let Ok(v) = HeaderValue::from_str(&super::mirrors::header_value(cp))
    {
        h.insert(super::mirrors::CHECKPOINT_HEADER, v);
    }
    resp.extensions_mut().insert(fields);
    Ok(resp)
}

/// The report's head within the consumption limit (counted from `asked`), or the refusal the
/// producer decided from count and size.
async fn wait_for_head(
    head: Option<HeadReceiver>,
    asked: tokio::time::Instant,
    st: &AppState,
) -> Result<ReportStream, ApiError> {
    let limits = &st.config.limits;
    let started = head.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no report started")))?;
    let limit = limits.consumption_timeout();
    let waited = tokio::time::timeout(limit, started).await;
    // The timer has millisecond granularity; the elapsed check makes the limit exact.
    if waited.is_err() || asked.elapsed() > limit {
        return Err(ApiError::Timeout(limit));
    }
    match waited {
        Err(_) => Err(ApiError::Timeout(limit)),
        Ok(Err(_)) => Err(ApiError::Internal(anyhow::anyhow!(
            "report producer stopped"
        ))),
        Ok(Ok(Err(ReportRefusal::TooManyRecords(found)))) => Err(ApiError::TooManyRecords {
            found,
            limit: limits.max_records,
        }),
        Ok(Ok(Err(ReportRefusal::TooLarge))) => Err(ApiError::TooLarge {
            limit_bytes: limits.max_bytes,
        }),
        Ok(Ok(Err(ReportRefusal::Store(e)))) => Err(e.into()),
        Ok(Ok(Ok(s))) => Ok(s),
    }
}

/// The report body: chunks from the producer, with the concurrency slot held until the stream
/// ends or is dropped (client gone) — not when the handler returns. When the last chunk is
/// ready the slot is released first (and, on PostgreSQL, the unlock awaited), then the chunk
/// is handed on: a client that sends its next request on receiving the last byte never finds
/// its own previous slot still held.
struct SlotBody {
    chunks: mpsc::Receiver<StoreResult<Bytes>>,
    slot: Option<SlotGuard>,
    /// Body bytes not yet handed on.
    remaining: u64,
    /// The last chunk, waiting for the slot's release to complete.
    releasing: Option<(tokio::task::JoinHandle<()>, Bytes)>,
}

impl Stream for SlotBody {
    type Item = StoreResult<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some((release, _)) = this.releasing.as_mut() {
            // A failed unlock task still freed the slot (its connection is closed).
            let _ = std::task::ready!(Pin::new(release).poll(cx));
            let (_, last) = this.releasing.take().expect("checked above");
            return Poll::Ready(Some(Ok(last)));
        }
        let item = std::task::ready!(this.chunks.poll_recv(cx));
        if let Some(Ok(chunk)) = &item {
            this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
            if this.remaining == 0
                && let Some(handle) = this.slot.take().and_then(SlotGuard::release)
            {
                let Some(Ok(chunk)) = item else {
                    unreachable!("matched above")
                };
                this.releasing = Some((handle, chunk));
                return self.poll_next(cx);
            }
        }
        Poll::Ready(item)
    }
}

#[tracing::instrument(name = "token_info", skip_all)]
pub async fn token_info(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let token = admit(&st, &method, &headers, Scope::Report, GET_HEAD, "GET, HEAD").await?;
    let params = ReportParams::parse(query.as_deref());
    match present(&params.api) {
        None => return Err(ApiError::ParametersRequired),
        Some("token_info") => {}
        Some(_) => return Err(ApiError::ApiDoesNotExist),
    }
    let admitted = st.store.admit(limits_of(&st, &token), None).await?;
    let Admitted { slot, used, .. } = admitted.map_err(|r| refusal(&st, r))?;
    // Persist pending counts so the operation-wide figure includes every token's uses.
    st.store.flush_usage().await?;
    let day = WallClock::now_in(token.operation.tz).day();
    let op_id = token.operation.id;
    let all = st
        .store
        .blocking(move |s| s.operation_usage(op_id, day))
        .await?;
    let limit = token.effective_daily_limit(st.config.limits.daily_per_license);
    let row = voxtrail_wire::TokenInfoRow {
        description: token.description.clone(),
        token_limit: limit.to_string(),
        token_use_today: used.to_string(),
        all_token_today: all.max(used).to_string(),
        available_consumption_options: limit.saturating_sub(used).to_string(),
    };
    release(slot).await;
    let body = voxtrail_wire::ok_body("1 records were found", &[row]);
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    resp.extensions_mut().insert(LogFields {
        operation: Some(token.operation.name.to_string()),
        rows: Some(1),
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn last_occurrence_wins_and_others_are_ignored() {
        let p = ReportParams::parse(Some(
            "api=x&api=chat_12&date_ini=1&wolkvox_server=0042&date_end=2",
        ));
        assert_eq!(p.api.as_deref(), Some("chat_12"));
        assert_eq!(p.date_ini.as_deref(), Some("1"));
        assert_eq!(p.date_end.as_deref(), Some("2"));
    }

    #[test]
    fn broken_encoding_survives_as_text() {
        let p = ReportParams::parse(Some("api=chat_12&date_ini=%ZZ%C3%28&date_end=%"));
        assert_eq!(p.date_ini.as_deref(), Some("%ZZ\u{fffd}("));
        assert_eq!(p.date_end.as_deref(), Some("%"));
    }

    proptest! {
        #[test]
        fn query_parser_never_panics(q in "\\PC{0,64}") {
            let p = ReportParams::parse(Some(&q));
            if let (Some(a), Some(b)) = (&p.date_ini, &p.date_end) {
                let _ = Window::parse(a, b, 31);
            }
        }

        #[test]
        fn query_parser_never_panics_on_bytes(q in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&q);
            let _ = ReportParams::parse(Some(&s));
        }
    }
}
