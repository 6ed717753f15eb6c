//! `POST /api/v2/interactions`: the ingestion endpoint (docs/api.md, "POST /api/v2/interactions").
//! It only reads the body (bounded in size and time) and maps outcomes to the wire; the rules
//! themselves live in `crate::ingest`, shared with `voxtrail import`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use super::AppState;
use super::error::ApiError;
use super::observe::LogFields;
use super::report::{admit, release};
use crate::domain::Scope;
use crate::ingest::{self, Format, IngestError};

/// The body's format, from its Content-Type (parameters such as `charset` are ignored).
fn format_of(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(Format::JsonArray),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Some(Format::Ndjson),
        _ => None,
    }
}

/// Reads the whole body, refusing more than `max` bytes or a body slower than `timeout`.
async fn read_body(body: Body, max: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(ApiError::BodyUnreadable),
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > max {
                    return Err(ApiError::BodyTooLarge(max));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

#[tracing::instrument(name = "ingest", skip_all)]
pub async fn interactions(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = admit(
        &st,
        &method,
        &headers,
        Scope::Ingest,
        &[Method::POST],
        "POST",
    )
    .await?;
    let format = format_of(&headers).ok_or(ApiError::UnsupportedMediaType)?;
    // A mirrored operation takes rows from its upstream only (docs/api.md, "Mirrors").
    let op_id = token.operation.id;
    if st.store.blocking(move |s| s.mirror(op_id)).await?.is_some() {
        return Err(ApiError::MirrorWriteRefused);
    }
    let max_slots = st.config.limits.concurrent_per_token;
    let slot = st
        .store
        .take_slot(token.id, max_slots)
        .await?
        .ok_or(ApiError::TooManySimultaneous(max_slots))?;
    let limits = &st.config.limits;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.ingest_max_body_bytes as u64) {
        return Err(ApiError::BodyTooLarge(limits.ingest_max_body_bytes));
    }
    let bytes = read_body(
        body,
        limits.ingest_max_body_bytes,
        Duration::from_millis(limits.ingest_body_timeout_ms),
    )
    .await?;
    // A slot lost while the body arrived (PostgreSQL: its lock keeper's session ended) no
    // longer limits this upload: refuse it before anything is written.
    if slot.is_lost() {
        return Err(crate::store::StoreError::SlotLost.into());
    }
    let op = token.operation.clone();
    let max_records = limits.ingest_max_records;
    let outcome = st
        .store
        .blocking(move |store| {
            let records = match format {
                Format::Ndjson => ingest::read_ndjson(&bytes[..]),
                _ => ingest::read_json_array(&bytes[..]),
            };
            let sink = store.begin_ingest(op.id)?;
            // Every invalid record is listed (docs/api.md, "POST /api/v2/interactions"); a batch
            // is bounded by the record limit.
            Ok(ingest::ingest(
                records,
                op.tz,
                Some(max_records),
                sink,
                &mut (),
            ))
        })
        .await?;
    release(slot).await;
    let summary = match outcome {
        Ok(s) => s,
        Err(IngestError::Invalid { total, listed }) => {
            return Err(ApiError::InvalidRecords { total, listed });
        }
        Err(IngestError::Conflicts(ids)) => return Err(ApiError::Conflicts(ids)),
        Err(IngestError::TooManyRecords(max)) => return Err(ApiError::IngestTooManyRecords(max)),
        Err(IngestError::Store(e)) => return Err(e.into()),
    };
    let body = voxtrail_wire::ok_body(
        &format!("{} records were stored", summary.inserted),
        &summary,
    );
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    resp.extensions_mut().insert(LogFields {
        operation: Some(token.operation.name.to_string()),
        rows: None,
    });
    Ok(resp)
}
