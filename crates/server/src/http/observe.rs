//! The outermost middleware: a request id on every answer, one structured log line per request
//! (written when the body has been sent or abandoned, so it holds real byte counts), the
//! Prometheus metrics, and the generic body of 500 answers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use tracing::Instrument as _;

use super::error::{InternalErrorMarker, LimitRejection};

/// What a handler tells the log about its answer.
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    pub operation: Option<String>,
    pub rows: Option<u64>,
}

/// A request id: 16 hex digits, random.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn observe(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = RequestId(format!("{:016x}", rand::random::<u64>()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id.0);
    // The consumer audit (`audit.rs`): the handler notes an accepted token in this cell.
    let presented = super::audit::Presented::default();
    let audit = req
        .extensions()
        .get::<super::audit::AuditSink>()
        .cloned()
        .map(|sink| PendingAudit {
            sink,
            presented: presented.clone(),
            at: chrono::Utc::now(),
            query: req.uri().query().map(str::to_owned),
        });
    let mut resp = super::audit::PRESENTED
        .scope(presented, next.run(req).instrument(span))
        .await;
    if resp.extensions().get::<InternalErrorMarker>().is_some() {
        let body = voxtrail_wire::error_body(
            500,
            "INTERNAL SERVER ERROR",
            &format!("AN INTERNAL ERROR OCCURRED; REQUEST ID {}", id.0),
        );
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        *resp.body_mut() = Body::from(body);
    }
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status();
    if let Some(LimitRejection(limit)) = resp.extensions().get::<LimitRejection>() {
        metrics::counter!("voxtrail_limit_rejections_total", "limit" => *limit).increment(1);
    }
    let fields = resp
        .extensions()
        .get::<LogFields>()
        .cloned()
        .unwrap_or_default();
    let expected = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (parts, body) = resp.into_parts();
    let observed = Observed {
        inner: body,
        bytes: 0,
        expected,
        done: false,
        log: Some(Finished {
            id: id.0,
            method: method.to_string(),
            route,
            status,
            fields,
            start,
            audit,
        }),
    };
    Response::from_parts(parts, Body::new(observed))
}

struct Finished {
    id: String,
    method: String,
    route: String,
    status: StatusCode,
    fields: LogFields,
    start: Instant,
    audit: Option<PendingAudit>,
}

/// What the audit record of a request needs besides what the log line has.
struct PendingAudit {
    sink: super::audit::AuditSink,
    presented: super::audit::Presented,
    at: chrono::DateTime<chrono::Utc>,
    query: Option<String>,
}

impl PendingAudit {
    /// Queues the record when the request presented a valid token.
    fn offer(self, f: &Finished, bytes: u64, duration_ms: u64) {
        let noted = self
            .presented
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some((token_id, operation)) = noted else {
            return;
        };
        let p = super::report::ReportParams::parse(self.query.as_deref());
        self.sink.offer(crate::store::audit::AuditRecord {
            at: crate::store::audit::audit_time(self.at),
            token_id,
            operation,
            route: f.route.clone(),
            api: p.api,
            date_ini: p.date_ini,
            date_end: p.date_end,
            status: f.status.as_u16(),
            rows: f.fields.rows.unwrap_or(0),
            bytes,
            duration_ms,
        });
    }
}

/// Wraps a response body to count its bytes and log once it ends or is dropped.
struct Observed {
    inner: Body,
    bytes: u64,
    /// The announced length; the server stops polling once it has been sent.
    expected: Option<u64>,
    done: bool,
    log: Option<Finished>,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.done = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let Some(mut f) = self.log.take() else {
            return;
        };
        let complete = self.done || self.inner.is_end_stream() || Some(self.bytes) == self.expected;
        let secs = f.start.elapsed().as_secs_f64();
        let status = f.status.as_u16().to_string();
        metrics::counter!("voxtrail_http_requests_total", "route" => f.route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("voxtrail_http_request_duration_seconds", "route" => f.route.clone())
            .record(secs);
        metrics::counter!("voxtrail_http_response_bytes_total", "route" => f.route.clone())
            .increment(self.bytes);
        if let Some(rows) = f.fields.rows
            && complete
        {
            metrics::counter!("voxtrail_report_rows_total").increment(rows);
        }
        tracing::info!(
            request_id = %f.id,
            method = %f.method,
            route = %f.route,
            operation = f.fields.operation.as_deref().unwrap_or(""),
            status = f.status.as_u16(),
            rows = f.fields.rows.unwrap_or(0),
            bytes = self.bytes,
            duration_ms = (secs * 1000.0 * 1000.0).round() / 1000.0,
            complete,
            "request"
        );
        if let Some(a) = f.audit.take() {
            a.offer(&f, self.bytes, (secs * 1000.0).round() as u64);
        }
    }
}
