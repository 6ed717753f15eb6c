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
use super::etag;
use super::observe::LogFields;
use super::quota::Quota;
use crate::auth::AuthFailure;
use crate::config::EmptyWindow;
use crate::domain::{Scope, Token, WallClock, Window, WindowError};
use crate::store::{
    AdmitRequest, Admitted, HeadReceiver, Refused, ReportQuery, ReportRefusal, ReportStream,
    SlotGuard, SlotLost, StoreError, StoreResult,
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

/// Rows 8–11 of the order of checks, shared by every endpoint with a window: both dates
/// present, then their format, order and length.
pub(super) fn window_param(params: &ReportParams, max_days: u32) -> Result<Window, ApiError> {
    let (Some(ini), Some(end)) = (present(&params.date_ini), present(&params.date_end)) else {
        return Err(ApiError::ParametersRequired);
    };
    Window::parse(ini, end, max_days).map_err(|e| match e {
        WindowError::BadFormat => ApiError::InvalidDateFormat,
        WindowError::Reversed => ApiError::DatesReversed,
        WindowError::TooLong => ApiError::RangeTooLong(max_days),
    })
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
        Ok(t) => {
            super::audit::note_token(&t);
            Ok(t)
        }
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
pub(super) fn limits_of(st: &AppState, token: &Token) -> AdmitRequest {
    let limits = &st.config.limits;
    AdmitRequest {
        token: token.id,
        day: WallClock::now_in(token.operation.tz).day(),
        daily_limit: token.effective_daily_limit(limits.daily_per_license),
        max_slots: limits.concurrent_per_token,
    }
}

/// The strong ETag of a window's answer from its stored row hashes (`super::etag`).
async fn window_etag(st: &AppState, token: &Token, window: Window) -> Result<String, ApiError> {
    let (rows, xor) = st.store.window_digest(token.operation.id, window).await?;
    Ok(etag::etag(
        window,
        st.config.compat.empty_window,
        rows,
        &xor,
    ))
}

/// A conditional report whose tag matched: `304` with the tag and the quota, no body and no
/// use counted — unless the daily limit is already used up, which still refuses.
async fn not_modified(
    st: &AppState,
    token: &Token,
    slot: SlotGuard,
    tag: String,
) -> Result<Response, ApiError> {
    let day = WallClock::now_in(token.operation.tz).day();
    let used = st.store.used_today(token.id, day).await?;
    let limit = token.effective_daily_limit(st.config.limits.daily_per_license);
    if used >= limit {
        release(slot).await;
        return Ok(refused(st, token, Refused::DailyLimit).await);
    }
    release(slot).await;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = axum::http::StatusCode::NOT_MODIFIED;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    Quota::now(limit, used, token.operation.tz).apply(h);
    resp.extensions_mut().insert(LogFields {
        operation: Some(token.operation.name.to_string()),
        rows: Some(0),
    });
    Ok(resp)
}

/// The quota of `token` after a request that brought today's uses to `used`.
pub(super) fn quota_of(st: &AppState, token: &Token, used: u64) -> Quota {
    let limit = token.effective_daily_limit(st.config.limits.daily_per_license);
    Quota::now(limit, used, token.operation.tz)
}

/// The answer to a refused admission with its quota headers and `Retry-After`: the seconds
/// until the operation's midnight for the daily limit, one second for a busy slot.
pub(super) async fn refused(st: &AppState, token: &Token, r: Refused) -> Response {
    let limit = token.effective_daily_limit(st.config.limits.daily_per_license);
    let used = match r {
        Refused::DailyLimit => limit,
        Refused::Simultaneous => {
            let day = WallClock::now_in(token.operation.tz).day();
            // The quota is informative here: a failed look-up reports nothing used.
            st.store.used_today(token.id, day).await.unwrap_or(0)
        }
    };
    let quota = Quota::now(limit, used, token.operation.tz);
    let retry_after = match r {
        Refused::DailyLimit => quota.reset_secs,
        Refused::Simultaneous => 1,
    };
    let mut resp = refusal(st, r).into_response();
    let h = resp.headers_mut();
    quota.apply(h);
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
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

pub(super) const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];

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
    // 8–11. Both dates present, then format, order, length.
    let window = window_param(&params, limits.max_window_days)?;
    // 12–13. Concurrency slot, then the daily limit: one store call, which also starts the
    // report (on PostgreSQL a poll-sized answer comes from the same statement).
    let q = ReportQuery {
        operation_id: token.operation.id,
        window,
        max_records: limits.max_records,
        max_bytes: limits.max_bytes,
    };
    let asked = tokio::time::Instant::now();
    let req = limits_of(&st, &token);
    // Without `If-None-Match` the ETag comes with the report's head, from its own snapshot
    // (`super::etag`). With it the slot is taken first, the tag read and compared, and a use
    // counted only when it differs: a `304` holds a slot and passes the daily limit but does not
    // count (docs/api.md, "Cheap re-polls").
    let (admitted, tag) = match headers.get(header::IF_NONE_MATCH) {
        None => (st.store.admit(req, Some(q)).await?, None),
        Some(field) => {
            let Some(slot) = st.store.take_slot(req.token, req.max_slots).await? else {
                return Ok(refused(&st, &token, Refused::Simultaneous).await);
            };
            let tag = window_etag(&st, &token, window).await?;
            if etag::matches(field, &tag) {
                return not_modified(&st, &token, slot, tag).await;
            }
            (st.store.admit_held(slot, req, Some(q)).await?, Some(tag))
        }
    };
    let Admitted { slot, head, used } = match admitted {
        Ok(a) => a,
        Err(r) => return Ok(refused(&st, &token, r).await),
    };
    // Every answer of an admitted request carries the quota (docs/api.md, "Quota headers").
    let quota = quota_of(&st, &token, used);
    let mut resp = match answer(&st, &token, &headers, slot, head, asked, window, tag).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    quota.apply(resp.headers_mut());
    Ok(resp)
}

/// Rows 14–17 of an admitted report, then its 200 answer, tagged with `tag` (read before the
/// report) or else with the tag of the report's own head.
#[allow(clippy::too_many_arguments)]
async fn answer(
    st: &AppState,
    token: &Token,
    headers: &HeaderMap,
    slot: SlotGuard,
    head: Option<HeadReceiver>,
    asked: tokio::time::Instant,
    window: Window,
    tag: Option<String>,
) -> Result<Response, ApiError> {
    // 14–16. Result size (records, then bytes) from the head, before the first byte; or the
    // consumption timeout when the head does not come in time.
    let stream = wait_for_head(head, asked, st).await?;
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
    // Compression of a large answer is bounded; past the bound it goes out uncompressed.
    let compressing = compression_turn(headers, stream.head.body_len);
    let body = Body::from_stream(SlotBody {
        chunks: stream.chunks,
        lost: slot.lost(),
        slot: Some(slot),
        remaining: stream.head.body_len,
        releasing: None,
        _compressing: compressing.permit,
        handed_on: false,
    });
    let mut resp = Response::new(body);
    if compressing.refused {
        resp.extensions_mut().insert(Uncompressed);
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(stream.head.body_len),
    );
    let tag = tag.unwrap_or_else(|| {
        let compat = st.config.compat.empty_window;
        etag::etag(window, compat, stream.head.rows, &stream.head.xor)
    });
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
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

/// Answers larger than this count against [`compressed_streams`] when compressed; smaller
/// ones are always compressed when the client asks.
const LARGE_COMPRESSED: u64 = 1024 * 1024;

/// Large answers compressed at once in this process: half the cores (at least one), so
/// compressing big answers — CPU work on the runtime's threads — always leaves cores for other
/// tokens' requests. A large answer past the bound goes out uncompressed (`Accept-Encoding` is
/// only a preference; docs/api.md, "Common to every answer").
fn compressed_streams() -> &'static tokio::sync::Semaphore {
    static SEM: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SEM.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new((cores / 2).max(1))
    })
}

/// A response extension: do not compress this answer (read by the router's compression
/// predicate, [`compression_allowed`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Uncompressed;

/// The compression predicate's part that honours [`Uncompressed`].
pub(super) fn compression_allowed(
    _: axum::http::StatusCode,
    _: axum::http::Version,
    _: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> bool {
    extensions.get::<Uncompressed>().is_none()
}

/// Whether a large answer may be compressed: the permit it holds while it streams, or refused.
struct CompressionTurn {
    permit: Option<tokio::sync::SemaphorePermit<'static>>,
    refused: bool,
}

fn compression_turn(headers: &HeaderMap, body_len: u64) -> CompressionTurn {
    if body_len <= LARGE_COMPRESSED || !accepts_gzip(headers) {
        return CompressionTurn {
            permit: None,
            refused: false,
        };
    }
    match compressed_streams().try_acquire() {
        Ok(p) => CompressionTurn {
            permit: Some(p),
            refused: false,
        },
        Err(_) => CompressionTurn {
            permit: None,
            refused: true,
        },
    }
}

/// Whether `Accept-Encoding` accepts gzip (`gzip`, `x-gzip` or `*`, with a non-zero `q`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let wanted = ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c));
            let refused = parts.any(|p| {
                let p = p.trim();
                p.len() >= 2
                    && p[..2].eq_ignore_ascii_case("q=")
                    && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            });
            wanted && !refused
        })
}

/// The report body: chunks from the producer, with the concurrency slot held until the stream
/// ends or is dropped (client gone) — not when the handler returns. When the last chunk is
/// ready the slot is released first (and, on PostgreSQL, the unlock awaited), then the chunk
/// is handed on: a client that sends its next request on receiving the last byte never finds
/// its own previous slot still held. A slot lost while the answer is sent (PostgreSQL: its lock
/// keeper's session ended) cuts the body: the limit no longer covers it.
///
/// A chunk is handed on per turn of the connection's task: after each chunk that is not the
/// last, the body yields to the runtime once, so a fast client of a large answer — and its
/// compression, done as the chunks pass — cannot keep a runtime thread from other requests for
/// more than a chunk's work.
struct SlotBody {
    chunks: mpsc::Receiver<StoreResult<Bytes>>,
    /// Completes if the slot is lost before the body ends.
    lost: Option<SlotLost>,
    slot: Option<SlotGuard>,
    /// Body bytes not yet handed on.
    remaining: u64,
    /// The last chunk, waiting for the slot's release to complete.
    releasing: Option<(tokio::task::JoinHandle<()>, Bytes)>,
    /// A large answer's turn to be compressed, held until the body ends or is dropped.
    _compressing: Option<tokio::sync::SemaphorePermit<'static>>,
    /// A chunk was handed on in this turn: yield before the next.
    handed_on: bool,
}

impl Stream for SlotBody {
    type Item = StoreResult<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if std::mem::take(&mut this.handed_on) {
            // Waking itself puts the task at the back of the runtime's queue.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some((release, _)) = this.releasing.as_mut() {
            // A failed unlock task still freed the slot (its connection is closed).
            let _ = std::task::ready!(Pin::new(release).poll(cx));
            let (_, last) = this.releasing.take().expect("checked above");
            return Poll::Ready(Some(Ok(last)));
        }
        if this.slot.is_some()
            && let Some(lost) = this.lost.as_mut()
            && lost.as_mut().poll(cx).is_ready()
        {
            this.lost = None;
            this.slot = None;
            this.chunks.close();
            return Poll::Ready(Some(Err(StoreError::SlotLost)));
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
            this.handed_on = this.remaining > 0;
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
    let Admitted { slot, used, .. } = match admitted {
        Ok(a) => a,
        Err(r) => return Ok(refused(&st, &token, r).await),
    };
    let quota = quota_of(&st, &token, used);
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
    quota.apply(resp.headers_mut());
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

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn gzip_acceptance_reads_codings_and_q_values() {
        assert!(accepts_gzip(&accept("gzip")));
        assert!(accepts_gzip(&accept("br, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("gzip; q=0.000, br")));
        assert!(!accepts_gzip(&accept("identity")));
        assert!(!accepts_gzip(&accept("gzipx, ;;;, q=1")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn small_answers_never_take_a_compression_turn() {
        let t = compression_turn(&accept("gzip"), LARGE_COMPRESSED);
        assert!(t.permit.is_none() && !t.refused);
        let t = compression_turn(&accept("identity"), LARGE_COMPRESSED * 10);
        assert!(t.permit.is_none() && !t.refused);
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
