//! The console's pages, rendered with `maud` (every value is escaped unless marked otherwise;
//! nothing here marks e-mail content so). Each page is a `GET` handler: session first, then
//! the filters, then one store call.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Duration, NaiveDate};
use maud::{DOCTYPE, Markup, html};

use super::sanitize::{clean_html, looks_like_html};
use super::{ConsoleError, session};
use crate::domain::{Scope, Token, WallClock, Window};
use crate::http::AppState;
use crate::store::console::{Bucket, ListQuery, Overview, StoredRow, search_words};

/// Rows per page of the interactions list.
pub const PAGE_ROWS: u32 = 50;
/// The longest date range a page accepts (the report's own limit).
const MAX_DAYS: u32 = 31;
/// Ranges up to this many days are charted per hour.
const HOURLY_UP_TO_DAYS: i64 = 2;
/// The eleven fields of an interaction, in wire order.
const FIELDS: [&str; 11] = [
    "conn_id",
    "agent_id",
    "agent_name",
    "channel",
    "from",
    "to",
    "subject",
    "body",
    "date",
    "cod_act",
    "description_cod_act",
];

type Page = Result<Response, ConsoleError>;

fn layout(title: &str, token: Option<&Token>, current: &str, body: Markup) -> Markup {
    let nav = [
        ("/console/", "Overview"),
        ("/console/interactions", "Interactions"),
        ("/console/tokens", "Consumers"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · voxtrail console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                @if let Some(t) = token {
                    header {
                        span.op { bdi { (t.operation.name.as_str()) } }
                        nav aria-label="Console" {
                            @for (href, label) in nav {
                                @if label == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                                " "
                            }
                        }
                        form method="post" action="/console/logout" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    (status, Html(m.into_string())).into_response()
}

/// A page with one message (errors).
pub fn message_page(status: StatusCode, text: &str) -> Response {
    html_response(
        status,
        layout(
            status.canonical_reason().unwrap_or("Error"),
            None,
            "",
            html! {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.error { (text) }
                p { a href="/console/" { "Back to the console" } }
            },
        ),
    )
}

/// The sign-in form. The token goes in the POST body, never in a URL.
pub fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    html_response(
        status,
        layout(
            "Sign in",
            None,
            "",
            html! {
                div.login {
                    h1 { "voxtrail console" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/console/login" autocomplete="off" {
                        label for="token" { "Console token" }
                        input #token type="password" name="token" required autofocus;
                        p { button.primary type="submit" { "Sign in" } }
                    }
                    p.note { "Create one with " code { "voxtrail token create --operation NAME --scope console" } "." }
                }
            },
        ),
    )
}

/// The query string as (key, value) pairs; the last of repeated keys wins.
fn params(raw: &Option<String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |key| {
        raw.as_deref().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == key)
                .last()
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    }
}

/// The date range of a page (`from`, `to` as `YYYY-mm-dd`; default the last 7 days of the
/// operation's calendar) and the report window it means.
struct Range {
    from: NaiveDate,
    to: NaiveDate,
    window: Window,
}

fn range(token: &Token, get: &impl Fn(&str) -> Option<String>) -> Result<Range, ConsoleError> {
    let today = WallClock::now_in(token.operation.tz).to_naive().date();
    let date = |key: &str, default: NaiveDate| match get(key) {
        None => Ok(default),
        Some(v) => NaiveDate::parse_from_str(&v, "%Y-%m-%d").map_err(|_| {
            ConsoleError::BadInput(format!(
                "{key}: use a date such as {}",
                today.format("%Y-%m-%d")
            ))
        }),
    };
    let to = date("to", today)?;
    let from = date("from", to - Duration::days(6))?;
    let ini = format!("{}000000", from.format("%Y%m%d"));
    let end = format!("{}235959", to.format("%Y%m%d"));
    let window = Window::parse(&ini, &end, MAX_DAYS).map_err(|e| {
        ConsoleError::BadInput(match e {
            crate::domain::WindowError::Reversed => "The range starts after it ends.".into(),
            crate::domain::WindowError::TooLong => {
                format!("Choose a range of at most {MAX_DAYS} days.")
            }
            crate::domain::WindowError::BadFormat => "Use dates from year 1000 to 9999.".into(),
        })
    })?;
    Ok(Range { from, to, window })
}

fn range_inputs(r: &Range) -> Markup {
    html! {
        label { "From" input type="date" name="from" value=(r.from.format("%Y-%m-%d")); }
        label { "To" input type="date" name="to" value=(r.to.format("%Y-%m-%d")); }
    }
}

/// `GET /console/`: counts for a date range, a chart, and tables per agent and per code.
pub async fn overview(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Page {
    let token = session(&st, &headers).await?;
    let r = range(&token, &params(&raw))?;
    let hourly = (r.to - r.from).num_days() < HOURLY_UP_TO_DAYS;
    let bucket = if hourly { Bucket::Hour } else { Bucket::Day };
    let (op, window) = (token.operation.id, r.window);
    let o = st
        .store
        .blocking(move |s| s.console_overview(op, window, bucket))
        .await?;
    let q = format!(
        "from={}&to={}",
        r.from.format("%Y-%m-%d"),
        r.to.format("%Y-%m-%d")
    );
    let body = html! {
        h1 { "Overview" }
        form.filters method="get" action="/console/" {
            (range_inputs(&r))
            button.primary type="submit" { "Show" }
        }
        p { span.total #total { (o.total) } " interactions from " (r.from) " to " (r.to)
            " (" (token.operation.tz.name()) ")" }
        h2 { "Interactions per " (if hourly { "hour" } else { "day" }) }
        div.chart { (chart(&r, &o, hourly)) }
        h2 { "Per agent" }
        div.scroll { table #agents {
            thead { tr { th { "Agent" } th { "Name" } th.n { "Interactions" } } }
            tbody { @for (id, name, n) in &o.agents { tr {
                td { a href={ "/console/interactions?" (q) "&agent=" (enc(id)) } { bdi { (id) } } }
                td { bdi { (name) } } td.n { (n) } } } }
        } }
        h2 { "Per typification code" }
        div.scroll { table #codes {
            thead { tr { th { "cod_act" } th { "Description" } th.n { "Interactions" } } }
            tbody { @for (code, desc, n) in &o.codes { tr {
                td { bdi { (code) } } td { bdi { (desc) } } td.n { (n) } } } }
        } }
    };
    Ok(html_response(
        StatusCode::OK,
        layout("Overview", Some(&token), "Overview", body),
    ))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The chart as inline SVG: one bar per bucket of the range (empty buckets too).
fn chart(r: &Range, o: &Overview, hourly: bool) -> Markup {
    let mut keys = Vec::new();
    let mut day = r.from;
    while day <= r.to {
        let d: i64 = day.format("%Y%m%d").to_string().parse().unwrap_or(0);
        if hourly {
            keys.extend((0..24).map(|h| (d * 100 + h, format!("{} {h:02}:00", day))));
        } else {
            keys.push((d, day.to_string()));
        }
        day += Duration::days(1);
    }
    let counts: std::collections::HashMap<i64, u64> = o.buckets.iter().copied().collect();
    let max = counts.values().copied().max().unwrap_or(0).max(1);
    let (w, h, pad) = (720.0_f64, 200.0_f64, 24.0_f64);
    let bw = (w - pad) / keys.len().max(1) as f64;
    let bars: Vec<(f64, f64, f64, f64, &str, u64)> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, label))| {
            let n = counts.get(key).copied().unwrap_or(0);
            let bh = (h - pad) * n as f64 / max as f64;
            let x = pad + i as f64 * bw + bw * 0.1;
            (x, h - pad - bh, (bw * 0.8).max(0.5), bh, label.as_str(), n)
        })
        .collect();
    let first = keys.first().map(|k| k.1.clone()).unwrap_or_default();
    let last = keys.last().map(|k| k.1.clone()).unwrap_or_default();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label={ "Interactions per " (if hourly { "hour" } else { "day" }) ", at most " (max) } {
            line x1=(pad) y1=(h - pad) x2=(w) y2=(h - pad) stroke="#9aa3b2" {}
            text x="0" y="12" font-size="11" fill="#5b6475" { (max) }
            text x=(pad) y=(h - 6.0) font-size="11" fill="#5b6475" { (first) }
            text x=(w) y=(h - 6.0) font-size="11" fill="#5b6475" text-anchor="end" { (last) }
            @for (x, y, bw, bh, label, n) in &bars {
                rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bw:.1}"))
                    height=(format!("{bh:.1}")) fill="#1d4ed8" { title { (label) ": " (n) } }
            }
        }
    }
}

/// The stored object's string fields.
fn fields_of(row: &StoredRow) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_slice(&row.json).unwrap_or_default()
}

/// A field as stored.
fn field<'a>(m: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    m.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// A field as shown: bidirectional overrides, embeddings and isolates (which can make
/// `\u{202E}fdp.exe` read as `exe.pdf`) are shown as visible `[U+XXXX]` marks instead.
fn text<'a>(m: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> Cow<'a, str> {
    let v = field(m, key);
    if v.chars().any(is_bidi_control) {
        Cow::Owned(
            v.chars()
                .map(|c| {
                    if is_bidi_control(c) {
                        format!("[U+{:04X}]", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(v)
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn snippet(s: &str, chars: usize) -> String {
    let mut out: String = s.chars().take(chars).collect();
    if s.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// `GET /console/interactions`: filters, 50 rows newest first, a keyset "next page" link.
pub async fn interactions(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Page {
    let token = session(&st, &headers).await?;
    let get = params(&raw);
    let r = range(&token, &get)?;
    let before = match get("before") {
        None => None,
        Some(v) => Some(parse_cursor(&v).ok_or_else(|| {
            ConsoleError::BadInput(
                "That page link is damaged; start again from the first page.".into(),
            )
        })?),
    };
    let clip = |v: Option<String>| v.map(|s| s.chars().take(256).collect::<String>());
    let (agent, recipient, words_text) =
        (clip(get("agent")), clip(get("recipient")), clip(get("q")));
    let q = ListQuery {
        operation_id: token.operation.id,
        window: r.window,
        agent: agent.clone(),
        recipient: recipient.clone(),
        words: search_words(words_text.as_deref().unwrap_or("")),
        before,
        limit: PAGE_ROWS + 1,
    };
    let mut rows = st.store.blocking(move |s| s.console_list(&q)).await?;
    let more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let mut base = format!(
        "from={}&to={}",
        r.from.format("%Y-%m-%d"),
        r.to.format("%Y-%m-%d")
    );
    for (k, v) in [
        ("agent", &agent),
        ("recipient", &recipient),
        ("q", &words_text),
    ] {
        if let Some(v) = v {
            let _ = write!(base, "&{k}={}", enc(v));
        }
    }
    let next = rows.last().filter(|_| more).map(|l| {
        format!(
            "/console/interactions?{base}&before={}-{}",
            l.local_ts, l.seq
        )
    });
    let body = html! {
        h1 { "Interactions" }
        form.filters method="get" action="/console/interactions" role="search" {
            label { "Words in subject or body" input #q type="search" name="q" value=[words_text.as_deref()]; }
            (range_inputs(&r))
            label { "Agent id" input #agent type="text" name="agent" value=[agent.as_deref()]; }
            label { "Recipient" input #recipient type="text" name="recipient" value=[recipient.as_deref()]; }
            button.primary type="submit" { "Search" }
        }
        @if rows.is_empty() { p #empty { "No interactions match." } }
        @else {
            div.scroll { table #rows {
                thead { tr { th { "Date" } th { "Agent" } th { "To" } th { "Subject" } th { "cod_act" } } }
                tbody { @for row in &rows { @let f = fields_of(row); tr {
                    td { (text(&f, "date")) }
                    td { bdi { (text(&f, "agent_name")) } }
                    td { bdi { (snippet(&text(&f, "to"), 80)) } }
                    td { a href={ "/console/interactions/" (enc_path(field(&f, "conn_id"))) } {
                        bdi { @if text(&f, "subject").is_empty() { "(no subject)" } @else { (snippet(&text(&f, "subject"), 160)) } } } }
                    td { bdi { (text(&f, "cod_act")) } }
                } } }
            } }
        }
        nav.pages aria-label="Pages" {
            @if before.is_some() { a href={ "/console/interactions?" (base) } { "First page" } " " }
            @if let Some(n) = &next { a #next rel="next" href=(n) { "Next page" } }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout("Interactions", Some(&token), "Interactions", body),
    ))
}

/// `LOCALTS-SEQ`, both positive integers.
fn parse_cursor(v: &str) -> Option<(i64, i64)> {
    let (ts, seq) = v.split_once('-')?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(ts) || !ok(seq) {
        return None;
    }
    Some((ts.parse().ok()?, seq.parse().ok()?))
}

/// A conn_id as one path segment (every byte outside unreserved characters escaped).
fn enc_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /console/interactions/{conn_id}`: every field; the body as text or sanitised HTML in
/// a sandboxed frame. Another operation's conn_id is 404.
pub async fn interaction(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(conn_id): Path<String>,
) -> Page {
    let token = session(&st, &headers).await?;
    let op = token.operation.id;
    let row = st
        .store
        .blocking(move |s| s.console_interaction(op, &conn_id))
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let f = fields_of(&row);
    let body_text = field(&f, "body");
    let html_body = looks_like_html(body_text);
    let body = html! {
        p { a href="/console/interactions" { "← Interactions" } }
        h1 { bdi { @if text(&f, "subject").is_empty() { "(no subject)" } @else { (text(&f, "subject")) } } }
        dl #fields {
            @for name in FIELDS { @if name != "body" {
                dt { (name) } dd data-field=(name) { bdi { (text(&f, name)) } }
            } }
        }
        h2 { "body" @if html_body { " (HTML, cleaned; images and styles from other sites removed)" } }
        @if html_body {
            iframe.body sandbox="" referrerpolicy="no-referrer" title="E-mail body"
                srcdoc=(clean_html(body_text)) {}
        } @else {
            pre.body #body { (text(&f, "body")) }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout("Interaction", Some(&token), "Interactions", body),
    ))
}

/// `GET /console/tokens`: the operation's tokens (never secrets) with today's use.
/// Latest audited requests shown per token on the consumers page.
const LATEST_REQUESTS: u32 = 10;

pub async fn tokens(State(st): State<AppState>, headers: HeaderMap) -> Page {
    let token = session(&st, &headers).await?;
    let today = WallClock::now_in(token.operation.tz).day();
    let op = token.operation.id;
    let per_license = st.config.limits.daily_per_license;
    let (list, latest, mirror) = st
        .store
        .blocking(move |s| {
            let list = s.console_tokens(op, today)?;
            let latest = list
                .iter()
                .map(|t| s.latest_audit(t.token.id, LATEST_REQUESTS))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((list, latest, s.mirror(op)?))
        })
        .await?;
    let day = |d: i64| format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100);
    let body = html! {
        h1 { "Consumers" }
        p.note { "Uses are counted per operation-local day; counts reach this page within a few seconds." }
        div.scroll { table #tokens {
            thead { tr { th.n { "ID" } th { "Description" } th { "Scope" } th.n { "Used today" }
                th.n { "Daily limit" } th { "Last day used" } th { "Created" } th { "Revoked" } } }
            tbody { @for t in &list { tr {
                td.n { (t.token.id) }
                td { bdi { (t.token.description) } }
                td { (t.token.scope.as_str()) }
                td.n { (t.used_today) }
                td.n { @if t.token.scope == Scope::Report { (t.token.effective_daily_limit(per_license)) } @else { "–" } }
                td { @if let Some(d) = t.last_day_used { (day(d)) } @else { "never" } }
                td { (t.token.created_at) }
                td { (t.token.revoked_at.as_deref().unwrap_or("–")) }
            } } }
        } }
        h2 { "Latest requests" }
        p.note { "The last " (LATEST_REQUESTS) " requests of each token, newest first, from the consumer audit (times in UTC)." }
        @for (t, records) in list.iter().zip(&latest) {
            h3 { "Token " (t.token.id) " " bdi { (t.token.description) } }
            @if records.is_empty() {
                p.note.requests-none data-token=(t.token.id) { "No request recorded." }
            } @else {
                div.scroll { table.requests data-token=(t.token.id) {
                    thead { tr { th { "At" } th { "Route" } th { "Window" } th.n { "Status" }
                        th.n { "Rows" } th.n { "Bytes" } th.n { "ms" } } }
                    tbody { @for r in records { tr {
                        td { (r.at) }
                        td { (r.route) @if let Some(api) = &r.api { " " (api) } }
                        td { @match (&r.date_ini, &r.date_end) {
                            (Some(a), Some(b)) => { (a) "–" (b) }
                            _ => { "–" }
                        } }
                        td.n { (r.status) }
                        td.n { (r.rows) }
                        td.n { (r.bytes) }
                        td.n { (r.duration_ms) }
                    } } }
                } }
            }
        }
        @if let Some(m) = &mirror {
            h2 { "Mirror" }
            p.note { "This operation is a mirror of an upstream report (the upstream token is never shown)." }
            div.scroll { table #mirror {
                tbody {
                    tr { th { "State" } td #mirror-state { @if m.halted { "halted: the upstream refused the token" } @else { "running" } } }
                    tr { th { "Last success" } td #mirror-success { (m.last_success.as_deref().unwrap_or("never")) } }
                    tr { th { "Checkpoint" } td #mirror-checkpoint { @if let Some(c) = m.checkpoint { (c.display()) } @else { "none yet" } } }
                    tr { th { "Rows inserted / updated" } td #mirror-rows { (m.rows_inserted) " / " (m.rows_updated) } }
                    tr { th { "Errors" } td #mirror-errors { (m.errors) } }
                    tr { th { "Last error" } td #mirror-error { bdi { (m.last_error.as_deref().unwrap_or("–")) } } }
                }
            } }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout("Consumers", Some(&token), "Consumers", body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_strict() {
        assert_eq!(
            parse_cursor("20261001080000-42"),
            Some((20261001080000, 42))
        );
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "99999999999999999999-1",
            "1 -2",
            "+1-2",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn bidi_controls_are_shown_not_obeyed() {
        let m = serde_json::json!({ "subject": "\u{202E}fdp.exe" });
        let m = m.as_object().unwrap();
        assert_eq!(text(m, "subject"), "[U+202E]fdp.exe");
        assert_eq!(text(m, "missing"), "");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(enc_path("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(enc_path("ñ"), "%C3%B1");
    }
}
