//! `GET /api/v2/voxtrail/chat_12/hours` (docs/api.md, "Per-hour digests"): the report's checks
//! and date rules, one use counted, no record limit; the answer lists each hour of the window
//! that holds rows with its row count and the XOR of the SHA-256 of its rows' JSON objects,
//! read from the hashes stored at ingestion (`store/digest.rs`).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::observe::LogFields;
use super::report::{
    GET_HEAD, ReportParams, admit, limits_of, quota_of, refused, release, window_param,
};
use crate::domain::Scope;
use crate::store::Admitted;

/// The digests of a window, in the report's order of checks: method, maintenance, token,
/// dates (present, format, order, length), then slot and daily limit.
#[tracing::instrument(name = "hours", skip_all)]
pub async fn hours(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limits = &st.config.limits;
    let token = admit(&st, &method, &headers, Scope::Report, GET_HEAD, "GET, HEAD").await?;
    let params = ReportParams::parse(query.as_deref());
    let window = window_param(&params, limits.max_window_days)?;
    let req = limits_of(&st, &token);
    let Admitted { slot, used, .. } = match st.store.admit(req, None).await? {
        Ok(a) => a,
        Err(r) => return Ok(refused(&st, &token, r).await),
    };
    let quota = quota_of(&st, &token, used);
    let found = st.store.hour_digests(token.operation.id, window).await;
    release(slot).await;
    let mut resp = match found {
        Ok(hours) => {
            let rows: Vec<voxtrail_wire::hours::HourRow> = hours
                .iter()
                .map(|h| voxtrail_wire::hours::HourRow {
                    hour: h.hour_text(),
                    records: h.rows.to_string(),
                    digest: h.digest_hex(),
                })
                .collect();
            let total: u64 = hours.iter().map(|h| h.rows).sum();
            let body = voxtrail_wire::ok_body(&format!("{} records were found", rows.len()), &rows);
            let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            resp.extensions_mut().insert(LogFields {
                operation: Some(token.operation.name.to_string()),
                rows: Some(total),
            });
            resp
        }
        Err(e) => ApiError::from(e).into_response(),
    };
    quota.apply(resp.headers_mut());
    Ok(resp)
}
