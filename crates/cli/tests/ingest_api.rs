//! End-to-end tests of `POST /api/v2/interactions` (docs/api.md, "POST /api/v2/interactions")
//! against the real binary over real HTTP: formats, envelopes, every refusal, all-or-nothing
//! batches, hostile bodies, the per-token concurrency limit, safe retries, slow-drip bodies, and a
//! SIGKILL loop showing that a 200 is durable and that no batch is ever half-stored.
//!
//! Tests assert behaviour, never durations: every wait is a bounded poll.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DAY_INI: &str = "20261001000000";
const DAY_END: &str = "20261001235959";
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";
const PATH: &str = "/api/v2/interactions";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh database with operation `acme`, an ingest and a report token, and a running server.
struct Fixture {
    env: Env,
    server: Server,
    ingest: String,
    report: String,
}

fn fixture(config: Option<&str>) -> Fixture {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let report = env.token("acme", "report", None);
    let server = env.serve(config);
    Fixture {
        env,
        server,
        ingest,
        report,
    }
}

/// An HTTP answer, fully read.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        json(self.text.as_bytes())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Fixture {
    async fn post(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Answer {
        post(&self.server, Some(&self.ingest), content_type, body).await
    }

    async fn ndjson(&self, lines: &[String]) -> Answer {
        self.post(Some(NDJSON), ndjson_body(lines)).await
    }

    async fn array(&self, lines: &[String]) -> Answer {
        self.post(Some(JSON), array_body(lines)).await
    }

    /// Every row of 2026-10-01 as served by the report API: (raw body, rows).
    async fn stored(&self) -> (String, Vec<Value>) {
        report(&self.server, &self.report, DAY_INI, DAY_END).await
    }

    async fn stored_ids(&self) -> Vec<String> {
        self.stored()
            .await
            .1
            .iter()
            .map(|r| r["conn_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn post(
    server: &Server,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    send(
        client().post(server.url(PATH)).body(body),
        token,
        content_type,
    )
    .await
}

async fn send(
    mut req: reqwest::RequestBuilder,
    token: Option<&str>,
    content_type: Option<&str>,
) -> Answer {
    if let Some(t) = token {
        req = req.header("wolkvox-token", t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("sending the request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("reading the answer");
    Answer {
        status,
        headers,
        text,
    }
}

/// A report window; asserts 200 and `msg` = number of rows.
async fn report(server: &Server, token: &str, ini: &str, end: &str) -> (String, Vec<Value>) {
    let resp = client()
        .get(server.report_url(ini, end))
        .header("wolkvox-token", token)
        .send()
        .await
        .expect("report request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("report body");
    assert_eq!(status, 200, "report {ini}..{end}: {text}");
    let v = json(text.as_bytes());
    let rows = v["data"].as_array().expect("data array").clone();
    assert_eq!(v["msg"], format!("{} records were found", rows.len()));
    (text, rows)
}

fn ndjson_body(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn array_body(lines: &[String]) -> String {
    format!("[{}]", lines.join(","))
}

/// The row `record(conn_id, date)` is served as, byte for byte.
fn row(conn_id: &str, date: &str) -> String {
    format!(
        r#"{{"conn_id":"{conn_id}","agent_id":"7","agent_name":"Ana","channel":"email","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"Texto","date":"{date}","cod_act":"1","description_cod_act":"Venta"}}"#
    )
}

/// The whole report body for these rows, byte for byte.
fn report_body(rows: &[String]) -> String {
    format!(
        r#"{{"code":"200","error":null,"msg":"{} records were found","data":[{}]}}"#,
        rows.len(),
        rows.join(",")
    )
}

/// `record(conn_id, date)` with some fields changed (`Value::Null` removes the key).
fn record_with(conn_id: &str, date: &str, changes: &[(&str, Value)]) -> String {
    let mut m: Map<String, Value> = serde_json::from_str(&record(conn_id, date)).unwrap();
    for (k, v) in changes {
        if v.is_null() {
            m.remove(*k);
        } else {
            m.insert((*k).to_owned(), v.clone());
        }
    }
    serde_json::to_string(&m).unwrap()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// The success envelope, byte for byte.
fn assert_stored(a: &Answer, inserted: u64, duplicates: u64) {
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.text,
        format!(
            r#"{{"code":"200","error":null,"msg":"{inserted} records were stored","data":{{"inserted":{inserted},"duplicates":{duplicates}}}}}"#
        )
    );
    assert_common_headers(a);
}

fn assert_common_headers(a: &Answer) {
    assert!(
        a.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "no X-Request-Id"
    );
    assert!(
        a.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content type {:?}",
        a.header("content-type")
    );
}

/// A plain error envelope, byte for byte (`data` empty).
fn assert_error(a: &Answer, status: u16, error: &str, msg: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(
        a.text,
        format!(r#"{{"code":"{status}","error":"{error}","msg":"{msg}","data":[]}}"#)
    );
    assert_common_headers(a);
}

/// An error envelope of the given status and type, whatever its message and details.
fn assert_error_kind(a: &Answer, status: u16, error: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.text);
    let v = a.json();
    assert_eq!(v["code"], status.to_string(), "{}", a.text);
    assert_eq!(v["error"], error, "{}", a.text);
    assert!(
        v["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.text
    );
    assert!(v["data"].is_array(), "{}", a.text);
    assert_common_headers(a);
    v
}

/// `(index, field)` of every listed invalid record, checking each entry's shape.
fn listed_errors(v: &Value) -> Vec<(u64, String)> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| {
            let o = e
                .as_object()
                .unwrap_or_else(|| panic!("entry is not an object: {e}"));
            assert_eq!(o.len(), 3, "entry has exactly index, field, reason: {e}");
            let reason = o["reason"].as_str().expect("reason string");
            assert!(!reason.is_empty(), "empty reason: {e}");
            (
                o["index"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("index is not a JSON number: {e}")),
                o["field"].as_str().expect("field string").to_owned(),
            )
        })
        .collect()
}

/// The conn_ids a 409 names (strings, or objects with `conn_id`).
fn conflicting_ids(v: &Value) -> HashSet<String> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            Value::Object(o) => o["conn_id"].as_str().expect("conn_id").to_owned(),
            other => panic!("unexpected conflict entry {other}"),
        })
        .collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Head of a raw HTTP/1.1 ingestion request announcing `content_length` body bytes.
fn raw_head(token: &str, content_type: &str, content_length: usize) -> String {
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: localhost\r\nwolkvox-token: {token}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// Reads one HTTP/1.1 answer (body by Content-Length). `None` when the connection closes (or
/// is reset) before a status line arrives.
async fn read_response<R: AsyncRead + Unpin>(r: &mut R) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let start = head_end + 4;
    if let Some(len) = len {
        while buf.len() < start + len {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    Some((
        status,
        String::from_utf8_lossy(&buf[start.min(buf.len())..]).into_owned(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Formats and the success envelope
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_json_array_is_stored_and_served_byte_exact() {
    let fx = fixture(None);
    // Later date first: the report orders by date.
    let a = fx
        .array(&[
            record("arr-2", "2026-10-01 10:00:00"),
            record("arr-1", "2026-10-01 08:15:00"),
        ])
        .await;
    assert_stored(&a, 2, 0);
    let (raw, _) = fx.stored().await;
    assert_eq!(
        raw,
        report_body(&[
            row("arr-1", "2026-10-01 08:15:00"),
            row("arr-2", "2026-10-01 10:00:00")
        ])
    );
}

#[tokio::test]
async fn ndjson_blank_lines_are_not_records() {
    let fx = fixture(None);
    let body = format!(
        "\n{}\r\n\n   \n\t\n{}\n\n{}",
        record("nd-1", "2026-10-01 09:00:00"),
        record("nd-2", "2026-10-01 09:00:01"),
        record("nd-3", "2026-10-01 09:00:02"), // no final newline
    );
    let a = fx.post(Some(NDJSON), body).await;
    assert_stored(&a, 3, 0);
    let (raw, _) = fx.stored().await;
    assert_eq!(
        raw,
        report_body(&[
            row("nd-1", "2026-10-01 09:00:00"),
            row("nd-2", "2026-10-01 09:00:01"),
            row("nd-3", "2026-10-01 09:00:02"),
        ])
    );

    // Indexes count records, not lines: the bad record is the third record on the ninth line.
    let body = format!(
        "\n\n{}\n\n\n{}\n\n\n{}\n",
        record("nd-4", "2026-10-01 09:00:03"),
        record("nd-5", "2026-10-01 09:00:04"),
        record_with("nd-6", "2026-10-01 09:00:05", &[("from", s("nobody"))]),
    );
    let a = fx.post(Some(NDJSON), body).await;
    let v = assert_error_kind(&a, 400, "BAD REQUEST");
    assert_eq!(listed_errors(&v), vec![(2, "from".to_owned())]);
    assert_eq!(
        fx.stored().await.1.len(),
        3,
        "nothing of the refused batch is stored"
    );
}

#[tokio::test]
async fn content_types() {
    let fx = fixture(None);
    let one = |id: &str| record(id, "2026-10-01 11:00:00");

    let a = fx
        .post(Some("text/plain"), ndjson_body(&[one("ct-plain")]))
        .await;
    assert_eq!(a.status, 415, "{}", a.text);
    assert_error_kind(&a, 415, "UNSUPPORTED MEDIA TYPE");
    let a = fx.post(None, ndjson_body(&[one("ct-none")])).await;
    assert_error_kind(&a, 415, "UNSUPPORTED MEDIA TYPE");
    let a = fx
        .post(Some("application/xml"), array_body(&[one("ct-xml")]))
        .await;
    assert_error_kind(&a, 415, "UNSUPPORTED MEDIA TYPE");
    assert!(fx.stored_ids().await.is_empty(), "a 415 stores nothing");

    let a = fx
        .post(
            Some("application/json; charset=utf-8"),
            array_body(&[one("ct-json-utf8")]),
        )
        .await;
    assert_stored(&a, 1, 0);
    let a = fx
        .post(
            Some("application/x-ndjson; charset=utf-8"),
            ndjson_body(&[one("ct-nd-utf8")]),
        )
        .await;
    assert_stored(&a, 1, 0);
    let a = fx
        .post(Some("Application/JSON"), array_body(&[one("ct-json-case")]))
        .await;
    assert_stored(&a, 1, 0);
    assert_eq!(fx.stored_ids().await.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Tokens, methods, maintenance
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_and_methods() {
    let fx = fixture(None);
    let body = ndjson_body(&[record("tm-1", "2026-10-01 12:00:00")]);

    let a = post(&fx.server, Some(&fx.report), Some(NDJSON), body.clone()).await;
    assert_error(&a, 403, "FORBIDDEN", "PLEASE VALIDATE TOKEN");
    let a = post(&fx.server, Some("not-a-token"), Some(NDJSON), body.clone()).await;
    assert_error(&a, 403, "FORBIDDEN", "PLEASE VALIDATE TOKEN");
    let a = post(&fx.server, None, Some(NDJSON), body.clone()).await;
    assert_error(&a, 401, "UNAUTHORIZED", "PLEASE ENTER THE WOLKVOX-TOKEN");
    let a = post(&fx.server, Some(""), Some(NDJSON), body.clone()).await;
    assert_error(&a, 401, "UNAUTHORIZED", "PLEASE ENTER THE WOLKVOX-TOKEN");

    let url = fx.server.url(PATH);
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let a = send(
            client().request(m, &url).body(body.clone()),
            Some(&fx.ingest),
            Some(NDJSON),
        )
        .await;
        let v = assert_error_kind(&a, 405, "METHOD NOT ALLOWED");
        assert_eq!(v["data"], Value::Array(vec![]));
        assert!(
            a.header("allow").is_some_and(|h| h.contains("POST")),
            "{method}: Allow {:?}",
            a.header("allow")
        );
    }
    // The method is checked before the token.
    let a = send(client().get(&url), None, None).await;
    assert_error_kind(&a, 405, "METHOD NOT ALLOWED");
    assert!(
        fx.stored_ids().await.is_empty(),
        "refused requests store nothing"
    );

    // A report token cannot ingest, and an ingest token cannot read the report.
    let resp = client()
        .get(fx.server.report_url(DAY_INI, DAY_END))
        .header("wolkvox-token", &fx.ingest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"code":"403","error":"FORBIDDEN","msg":"PLEASE VALIDATE TOKEN","data":[]}"#
    );
}

#[tokio::test]
async fn maintenance_closes_ingestion_with_retry_after() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let report_tok = env.token("acme", "report", None);
    env.ok(&["maintenance", "on"]);
    let server = env.serve(Some(
        "maintenance_retry_after_secs = 7\nrefresh_interval_ms = 200\n",
    ));
    let body = ndjson_body(&[record("mt-1", "2026-10-01 12:00:00")]);

    let a = post(&server, Some(&ingest), Some(NDJSON), body.clone()).await;
    assert_error(
        &a,
        403,
        "FORBIDDEN",
        "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
    );
    assert_eq!(a.header("retry-after"), Some("7"));
    // Maintenance is checked before the token.
    let a = post(&server, None, Some(NDJSON), body.clone()).await;
    assert_error(
        &a,
        403,
        "FORBIDDEN",
        "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
    );
    assert_eq!(a.header("retry-after"), Some("7"));

    env.ok(&["maintenance", "off"]);
    let reopened = eventually(Duration::from_secs(15), async || {
        post(&server, Some(&ingest), Some(NDJSON), body.clone())
            .await
            .status
            == 200
    })
    .await;
    assert!(reopened, "ingestion did not reopen after maintenance off");
    let (raw, _) = report(&server, &report_tok, DAY_INI, DAY_END).await;
    assert_eq!(raw, report_body(&[row("mt-1", "2026-10-01 12:00:00")]));
}

// ---------------------------------------------------------------------------------------------
// All-or-nothing: invalid records and conflicts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_records_are_all_listed_and_nothing_is_stored() {
    let fx = fixture(None);
    let d = "2026-10-01 13:00:00";
    let lines = vec![
        record("inv-0", d),                                   // 0 valid
        record_with("inv-1", d, &[("conn_id", Value::Null)]), // 1 conn_id missing
        record("inv-2", d),                                   // 2 valid
        record_with("inv-3", d, &[("from", s("nobody")), ("channel", s("sms"))]), // 3 two fields
        "not json".to_owned(),                                // 4 unreadable
        record_with("inv-5", d, &[("date", s("2026-02-30 10:00:00"))]), // 5 no such day
        record_with("inv-6", d, &[("agent_id", Value::Bool(true))]), // 6 wrong type
        record_with("inv-7", d, &[("to", s("a@b.co; nobody"))]), // 7 one bad address
        record_with("inv-8", d, &[("date", s("01/10/2026 13:00"))]), // 8 date format
        record("inv-9", d),                                   // 9 valid
    ];
    let mut body = String::new();
    for l in &lines {
        body.push_str(l);
        body.push_str("\n\n"); // blank lines between: not records
    }
    let a = fx.post(Some(NDJSON), body).await;
    let v = assert_error_kind(&a, 400, "BAD REQUEST");
    let listed = listed_errors(&v);
    let indexes: HashSet<u64> = listed.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, HashSet::from([1, 3, 4, 5, 6, 7, 8]), "{}", a.text);
    for (i, field) in [
        (1, "conn_id"),
        (3, "from"),
        (3, "channel"),
        (5, "date"),
        (6, "agent_id"),
        (7, "to"),
        (8, "date"),
    ] {
        assert!(
            listed.contains(&(i, field.to_owned())),
            "({i}, {field}) not listed: {}",
            a.text
        );
    }
    assert!(
        fx.stored_ids().await.is_empty(),
        "the valid records of a refused batch were stored"
    );

    // The same in a JSON array, with elements that are not objects.
    let elems = vec![
        record("arr-0", d),
        "5".to_owned(),
        record_with("arr-2", d, &[("date", s("2026-10-01 25:00:00"))]),
        "null".to_owned(),
        record("arr-4", d),
    ];
    let a = fx.array(&elems).await;
    let v = assert_error_kind(&a, 400, "BAD REQUEST");
    let listed = listed_errors(&v);
    let indexes: HashSet<u64> = listed.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, HashSet::from([1, 2, 3]), "{}", a.text);
    assert!(listed.contains(&(2, "date".to_owned())), "{}", a.text);
    assert!(fx.stored_ids().await.is_empty());

    // The valid ones alone go in.
    let a = fx
        .ndjson(&[record("inv-0", d), record("inv-2", d), record("inv-9", d)])
        .await;
    assert_stored(&a, 3, 0);
}

#[tokio::test]
async fn conflicts_are_all_named_and_nothing_is_stored() {
    let fx = fixture(None);
    let d = "2026-10-01 14:00:00";
    assert_stored(
        &fx.ndjson(&[record("c-1", d), record("c-2", d), record("c-3", d)])
            .await,
        3,
        0,
    );
    let before = fx.stored().await.0;

    let a = fx
        .ndjson(&[
            record("n-1", d),                                        // new
            record_with("c-1", d, &[("subject", s("Otro asunto"))]), // conflict
            record("c-2", d),                                        // duplicate
            record_with("c-3", "2026-10-01 14:00:01", &[]),          // conflict (date)
            record("n-2", d),                                        // new
        ])
        .await;
    let v = assert_error_kind(&a, 409, "CONFLICT");
    assert_eq!(conflicting_ids(&v), set(&["c-1", "c-3"]), "{}", a.text);
    assert_eq!(fx.stored().await.0, before, "a 409 batch stored something");
}

#[tokio::test]
async fn within_a_batch_a_repeat_is_a_duplicate_and_a_change_a_conflict() {
    let fx = fixture(None);
    let d = "2026-10-01 14:00:00";
    // Within one batch: the same conn_id twice with the same content is a duplicate…
    let a = fx
        .array(&[record("w-1", d), record("w-2", d), record("w-1", d)])
        .await;
    assert_stored(&a, 2, 1);
    // …and with different content a conflict, of which nothing is stored.
    let a = fx
        .ndjson(&[
            record("w-3", d),
            record("w-4", d),
            record_with("w-3", d, &[("body", s("otro cuerpo"))]),
        ])
        .await;
    let v = assert_error_kind(&a, 409, "CONFLICT");
    assert_eq!(conflicting_ids(&v), set(&["w-3"]), "{}", a.text);
    let ids: HashSet<String> = fx.stored_ids().await.into_iter().collect();
    assert_eq!(ids, set(&["w-1", "w-2"]));
}

#[tokio::test]
async fn every_invalid_record_is_listed_even_when_there_are_many() {
    // docs/api.md, "POST /api/v2/interactions": `data` lists {index, field, reason} for
    // *every* invalid record.
    let fx = fixture(None);
    let lines: Vec<String> = (0..1500)
        .map(|i| {
            record_with(
                &format!("many-{i}"),
                "2026-10-01 14:30:00",
                &[("from", s("nobody"))],
            )
        })
        .collect();
    let a = fx.ndjson(&lines).await;
    let v = assert_error_kind(&a, 400, "BAD REQUEST");
    let indexes: HashSet<u64> = listed_errors(&v).into_iter().map(|(i, _)| i).collect();
    assert_eq!(
        indexes.len(),
        1500,
        "only {} of 1500 invalid records listed (msg {})",
        indexes.len(),
        v["msg"]
    );
    assert!(fx.stored_ids().await.is_empty());
}

#[tokio::test]
async fn ingest_tokens_have_no_daily_limit() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", Some(1));
    let server = env.serve(None);
    for i in 0..4 {
        let body = ndjson_body(&[record(&format!("dl-{i}"), "2026-10-01 14:45:00")]);
        assert_stored(
            &post(&server, Some(&ingest), Some(NDJSON), body).await,
            1,
            0,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn too_many_records_is_413_and_nothing_is_stored() {
    let fx = fixture(Some("[limits]\ningest_max_records = 5\n"));
    let lines = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| record(&format!("tmr-{i}"), "2026-10-01 15:00:00"))
            .collect()
    };
    let a = fx.ndjson(&lines(6)).await;
    assert_error_kind(&a, 413, "PAYLOAD TOO LARGE");
    let a = fx.array(&lines(6)).await;
    assert_error_kind(&a, 413, "PAYLOAD TOO LARGE");
    assert!(fx.stored_ids().await.is_empty());
    // Five records separated by blank lines are five records.
    let body = lines(5).join("\n\n\n");
    assert_stored(&fx.post(Some(NDJSON), body).await, 5, 0);
    assert_eq!(fx.stored_ids().await.len(), 5);
}

#[tokio::test]
async fn too_many_bytes_is_413_and_nothing_is_stored() {
    let fx = fixture(Some("[limits]\ningest_max_body_bytes = 1000\n"));
    let lines: Vec<String> = (0..6)
        .map(|i| record(&format!("tmb-{i}"), "2026-10-01 15:00:00"))
        .collect();
    let big = ndjson_body(&lines);
    assert!(big.len() > 1000);
    // Announced with Content-Length…
    let a = fx.post(Some(NDJSON), big.clone()).await;
    assert_error_kind(&a, 413, "PAYLOAD TOO LARGE");
    // …and streamed in chunks with no Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let a = fx
        .post(
            Some(NDJSON),
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_error_kind(&a, 413, "PAYLOAD TOO LARGE");
    assert!(fx.stored_ids().await.is_empty());
    let small = ndjson_body(&lines[..3]);
    assert!(small.len() <= 1000);
    assert_stored(&fx.post(Some(NDJSON), small).await, 3, 0);
}

#[tokio::test]
async fn bodies_of_several_megabytes_are_accepted_by_default() {
    // The default body limit is 64 MiB: a 3 MB batch must not hit a framework default (2 MB).
    let fx = fixture(None);
    let text = "x".repeat(4000);
    let lines: Vec<String> = (0..750)
        .map(|i| {
            record_with(
                &format!("big-{i}"),
                "2026-10-01 16:00:00",
                &[("body", s(&text))],
            )
        })
        .collect();
    let body = ndjson_body(&lines);
    assert!(body.len() > 3_000_000);
    assert_stored(&fx.post(Some(NDJSON), body).await, 750, 0);
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_bodies_are_refused_never_500() {
    let fx = fixture(None);
    let d = "2026-10-01 17:00:00";
    let valid = record("hostile-valid", d);
    let array3 = array_body(&[record("h-a", d), record("h-b", d), record("h-c", d)]);
    let deep = "[".repeat(200_000);
    let mut bad_utf8 = record("h-utf8", d).into_bytes();
    let pos = bad_utf8.windows(5).position(|w| w == b"Texto").unwrap();
    bad_utf8.splice(pos..pos, [0xff, 0xfe, 0xc3]);
    let mut bad_utf8_arr = b"[".to_vec();
    bad_utf8_arr.extend_from_slice(&bad_utf8);
    bad_utf8_arr.push(b']');

    // (what, content type, body, expected status or None for "any 4xx")
    let cases: Vec<(&str, &str, Vec<u8>, Option<u16>)> = vec![
        (
            "malformed array",
            JSON,
            br#"[{"conn_id": "h-m",}]"#.to_vec(),
            Some(400),
        ),
        (
            "truncated array",
            JSON,
            array3.as_bytes()[..array3.len() / 2].to_vec(),
            Some(400),
        ),
        (
            "object instead of array",
            JSON,
            valid.clone().into_bytes(),
            Some(400),
        ),
        ("null instead of array", JSON, b"null".to_vec(), Some(400)),
        ("a lone bracket", JSON, b"[".to_vec(), Some(400)),
        (
            "array of scalars",
            JSON,
            br#"[1, "x", true]"#.to_vec(),
            Some(400),
        ),
        ("empty JSON body", JSON, Vec::new(), None),
        (
            "deep nesting (array)",
            JSON,
            deep.clone().into_bytes(),
            Some(400),
        ),
        (
            "deep nesting (ndjson)",
            NDJSON,
            format!(r#"{{"body":{deep}"#).into_bytes(),
            Some(400),
        ),
        (
            "invalid UTF-8 (ndjson)",
            NDJSON,
            bad_utf8.clone(),
            Some(400),
        ),
        ("invalid UTF-8 (array)", JSON, bad_utf8_arr, Some(400)),
        (
            "raw bytes",
            NDJSON,
            (0u8..=255).cycle().take(100_000).collect(),
            Some(400),
        ),
        (
            "lone surrogate",
            NDJSON,
            record_with("h-sur", d, &[])
                .replace("Hola", "\\ud800")
                .into_bytes(),
            Some(400),
        ),
        (
            "raw NUL in a string",
            NDJSON,
            record("h-nul", d).replace("Texto", "Te\0xto").into_bytes(),
            Some(400),
        ),
        (
            "truncated ndjson",
            NDJSON,
            format!("{valid}\n{{\"conn_id\":\"h-t\",\"agent").into_bytes(),
            Some(400),
        ),
        (
            "array line in ndjson",
            NDJSON,
            format!("{valid}\n{array3}\n").into_bytes(),
            Some(400),
        ),
        (
            "number out of range",
            NDJSON,
            record("h-num", d)
                .replace(r#""agent_id":"7""#, r#""agent_id":1e999"#)
                .into_bytes(),
            Some(400),
        ),
        (
            "huge integer",
            NDJSON,
            record("h-int", d)
                .replace(
                    r#""agent_id":"7""#,
                    r#""agent_id":123456789012345678901234567890"#,
                )
                .into_bytes(),
            None,
        ),
        (
            "conn_id too long",
            NDJSON,
            record(&"h".repeat(100_000), d).into_bytes(),
            Some(400),
        ),
        (
            "control character in conn_id",
            NDJSON,
            record("h-ctl\\u0001", d).into_bytes(),
            Some(400),
        ),
        (
            "required fields null",
            NDJSON,
            record_with("h-null", d, &[])
                .replace(r#""from":"ana@cc.co""#, r#""from":null"#)
                .into_bytes(),
            Some(400),
        ),
        (
            "duplicate keys",
            NDJSON,
            record("h-dup", d)
                .replace("{", r#"{"conn_id":"h-dup2","#)
                .into_bytes(),
            None,
        ),
        (
            "5 MB of garbage on one line",
            NDJSON,
            vec![b'x'; 5_000_000],
            Some(400),
        ),
        (
            "a 17 MiB body field",
            NDJSON,
            record_with("h-17m", d, &[("body", s(&"b".repeat(17 * 1024 * 1024)))]).into_bytes(),
            None,
        ),
        (
            "an object as a field value",
            JSON,
            array_body(&[record_with(
                "h-obj",
                d,
                &[("to", serde_json::json!({"$ne": null}))],
            )])
            .into_bytes(),
            Some(400),
        ),
        (
            "an array as a field value",
            NDJSON,
            record_with("h-arr", d, &[("to", serde_json::json!(["a@b.co"]))]).into_bytes(),
            Some(400),
        ),
    ];
    let mut must_be_absent = Vec::new();
    for (what, ct, body, expected) in cases {
        let a = fx.post(Some(ct), body).await;
        println!("hostile body {what:?}: HTTP {}", a.status);
        assert!(a.status < 500, "{what}: {} {}", a.status, a.text);
        let v = a.json();
        assert_eq!(v["code"], a.status.to_string(), "{what}: {}", a.text);
        assert_common_headers(&a);
        match expected {
            Some(st) => {
                assert_eq!(a.status, st, "{what}: {}", a.text);
                must_be_absent.push(what);
            }
            None => assert!(
                a.status == 200 || (400..500).contains(&a.status),
                "{what}: {}",
                a.text
            ),
        }
        if a.status == 400 {
            assert_eq!(v["error"], "BAD REQUEST", "{what}");
            listed_errors(&v); // every entry is {index, field, reason}
        }
    }
    // Nothing of a refused body was stored; in particular the valid record beside broken ones.
    let ids: HashSet<String> = fx.stored_ids().await.into_iter().collect();
    for id in [
        "hostile-valid",
        "h-a",
        "h-b",
        "h-c",
        "h-m",
        "h-t",
        "h-utf8",
        "h-nul",
        "h-sur",
    ] {
        assert!(
            !ids.contains(id),
            "{id} was stored from a refused body ({must_be_absent:?})"
        );
    }
    // The server is still fine.
    assert_stored(&fx.ndjson(&[record("after-hostile", d)]).await, 1, 0);
}

#[tokio::test]
async fn empty_batches_store_nothing() {
    let fx = fixture(None);
    assert_stored(&fx.post(Some(JSON), "[]").await, 0, 0);
    assert_stored(&fx.post(Some(JSON), " [ ] \n").await, 0, 0);
    assert_stored(&fx.post(Some(NDJSON), "").await, 0, 0);
    assert_stored(&fx.post(Some(NDJSON), "\n\n  \n").await, 0, 0);
    assert!(fx.stored_ids().await.is_empty());
}

#[tokio::test]
async fn sql_looking_and_odd_text_is_stored_verbatim() {
    let fx = fixture(None);
    let d = "2026-10-01 18:00:00";
    let odd: Vec<(&str, Vec<(&str, Value)>)> = vec![
        (
            "sql-1'); DROP TABLE interactions;--",
            vec![("subject", s("' OR '1'='1"))],
        ),
        (
            "sql-2",
            vec![
                (
                    "body",
                    s(
                        "Robert'); DELETE FROM interactions WHERE 1=1; --\n\"quoted\" \\ back\\slash",
                    ),
                ),
                ("agent_name", s("x\" OR \"\"=\"")),
            ],
        ),
        (
            "sql-3 %_*",
            vec![("description_cod_act", s("100% _wild_ [a-z]* $1 ${x} %s {}"))],
        ),
        (
            "sql-4",
            vec![(
                "body",
                s("NUL:\u{0}; tab:\t; cr:\r; bell:\u{7}; ü ñ 日本 🙂 \u{202e}rtl"),
            )],
        ),
        (
            "sql-5",
            vec![
                ("subject", s("<script>alert(1)</script>")),
                ("to", s("a@b.co; c@d.co,e@f.co")),
            ],
        ),
        (
            "sql-6",
            vec![
                ("body", s(&"Lorem ipsum ñ ".repeat(5000))),
                ("subject", s("")),
            ],
        ),
        (
            "sql-7",
            vec![
                ("from", s("Ana María <ana@cc.co>")),
                ("cod_act", s("'; --")),
            ],
        ),
        (
            "  sql-8  ",
            vec![("body", s("  leading and trailing spaces  "))],
        ),
        ("sql-8", vec![]),
    ];
    let lines: Vec<String> = odd.iter().map(|(id, ch)| record_with(id, d, ch)).collect();
    assert_stored(&fx.ndjson(&lines).await, lines.len() as u64, 0);

    let (_, rows) = fx.stored().await;
    assert_eq!(rows.len(), lines.len());
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["conn_id"].as_str().unwrap(), r))
        .collect();
    for line in &lines {
        let mut sent: Map<String, Value> = serde_json::from_str(line).unwrap();
        sent.insert("channel".into(), s("email"));
        let id = sent["conn_id"].as_str().unwrap().to_owned();
        let got = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id:?} not served"));
        assert_eq!(**got, Value::Object(sent), "{id:?} not served verbatim");
    }
    // Sending the same again is all duplicates: what was stored is exactly what was sent.
    assert_stored(&fx.ndjson(&lines).await, 0, lines.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Retries and concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_resent_batch_is_all_duplicates() {
    let fx = fixture(None);
    let lines: Vec<String> = (0..40)
        .map(|i| record(&format!("rt-{i:02}"), &format!("2026-10-01 19:{i:02}:00")))
        .collect();
    assert_stored(&fx.ndjson(&lines).await, 40, 0);
    let (first, _) = fx.stored().await;
    // The client timed out and sends the same batch again, then once more as a JSON array.
    assert_stored(&fx.ndjson(&lines).await, 0, 40);
    assert_stored(&fx.array(&lines).await, 0, 40);
    assert_eq!(
        fx.stored().await.0,
        first,
        "a resend changed what is stored"
    );
    // A batch overlapping a stored one stores only the new part.
    let more: Vec<String> = (30..50)
        .map(|i| record(&format!("rt-{i:02}"), &format!("2026-10-01 19:{i:02}:00")))
        .collect();
    assert_stored(&fx.ndjson(&more).await, 10, 10);
    assert_eq!(fx.stored().await.1.len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_simultaneous_request_of_a_token_is_refused() {
    let fx = fixture(None);
    let other = fx.env.token("acme", "ingest", None);
    let bodies: Vec<String> = (0..2)
        .map(|k| ndjson_body(&[record(&format!("held-{k}"), "2026-10-01 20:00:00")]))
        .collect();
    // Two requests whose bodies arrive slowly: each holds a slot.
    async fn hold(fx: &Fixture, body: &str) -> TcpStream {
        let mut s = TcpStream::connect(&fx.server.addr).await.unwrap();
        s.write_all(raw_head(&fx.ingest, NDJSON, body.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&body.as_bytes()[..10]).await.unwrap();
        s
    }
    let mut held = Vec::new();
    for body in &bodies {
        held.push(hold(&fx, body).await);
    }
    let third = ndjson_body(&[record("third", "2026-10-01 20:00:01")]);
    let mut refusal = None;
    let refused = eventually(Duration::from_secs(20), async || {
        // A held request that reached the server while a probe held a slot was itself refused
        // (it already has an answer): open it again, so both slots end up held by slow bodies.
        for (s, body) in held.iter_mut().zip(&bodies) {
            let mut peek = [0u8; 1];
            match s.try_read(&mut peek) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => *s = hold(&fx, body).await,
            }
        }
        let a = fx.post(Some(NDJSON), third.clone()).await;
        if a.status == 403 {
            refusal = Some(a);
            true
        } else {
            assert_eq!(a.status, 200, "{}", a.text);
            false
        }
    })
    .await;
    assert!(refused, "the third simultaneous request was never refused");
    assert_error(
        &refusal.unwrap(),
        403,
        "FORBIDDEN",
        "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)",
    );
    // The limit is per token: another token of the same operation is not affected.
    let a = post(
        &fx.server,
        Some(&other),
        Some(NDJSON),
        ndjson_body(&[record("other", "2026-10-01 20:00:02")]),
    )
    .await;
    assert_stored(&a, 1, 0);

    // The held requests complete normally once their bodies arrive.
    for (s, body) in held.iter_mut().zip(&bodies) {
        s.write_all(&body.as_bytes()[10..]).await.unwrap();
    }
    for s in &mut held {
        let (status, text) = tokio::time::timeout(Duration::from_secs(30), read_response(s))
            .await
            .expect("no answer to a held request")
            .expect("connection closed without an answer");
        assert_eq!(status, 200, "{text}");
        assert_eq!(json(text.as_bytes())["data"]["inserted"], 1);
    }
    drop(held);
    // And the slots are free again.
    let a = fx
        .post(
            Some(NDJSON),
            ndjson_body(&[record("fourth", "2026-10-01 20:00:03")]),
        )
        .await;
    assert_stored(&a, 1, 0);
    let ids: HashSet<String> = fx.stored_ids().await.into_iter().collect();
    assert!(
        ids.is_superset(&set(&["held-0", "held-1", "other", "fourth"])),
        "{ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_drip_body_is_cut_off_and_its_slot_released() {
    // One slot per token: if the slow request kept its slot, nothing else could get in.
    let fx = fixture(Some(
        "[limits]\ningest_body_timeout_ms = 1000\nconcurrent_per_token = 1\n",
    ));
    let lines: Vec<String> = (0..5)
        .map(|i| record(&format!("slow-{i}"), "2026-10-01 21:00:00"))
        .collect();
    let body = ndjson_body(&lines).into_bytes();
    let stream = TcpStream::connect(&fx.server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(raw_head(&fx.ingest, NDJSON, body.len()).as_bytes())
        .await
        .unwrap();
    wr.write_all(&body[..40]).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dribbling = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // One byte every 200 ms, never the last one.
            for &b in &body[40..body.len() - 1] {
                if stop.load(Ordering::Relaxed) {
                    return (wr, true);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if wr.write_all(&[b]).await.is_err() {
                    return (wr, false);
                }
            }
            (wr, true)
        })
    };
    match tokio::time::timeout(Duration::from_secs(60), read_response(&mut rd)).await {
        Err(_) => panic!("the slow-drip request was not cut off"),
        Ok(None) => println!("slow drip: connection closed without an answer"),
        Ok(Some((status, text))) => {
            println!("slow drip: HTTP {status} {text}");
            assert_eq!(status, 408, "{text}");
            let v = json(text.as_bytes());
            assert_eq!(v["code"], "408");
            assert_eq!(v["error"], "REQUEST TIMEOUT");
        }
    }
    // While the slow client may still be dribbling, the token's only slot is free again.
    let normal = ndjson_body(&[record("after-slow", "2026-10-01 21:00:01")]);
    let mut last = String::new();
    let freed = eventually(Duration::from_secs(10), async || {
        let a = fx.post(Some(NDJSON), normal.clone()).await;
        last = format!("{} {}", a.status, a.text);
        a.status == 200
    })
    .await;
    assert!(
        freed,
        "the slot of the cut-off request was not released: {last}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = dribbling.await;
    let ids = fx.stored_ids().await;
    assert_eq!(
        ids,
        vec!["after-slow".to_owned()],
        "a cut-off body stored something"
    );
}

// ---------------------------------------------------------------------------------------------
// Crash safety: SIGKILL while clients send batches in a loop
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64), so a failing run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Record `i` of batch `b`: conn_id `b{b}-{i}`, on 2026-10-01, content derived from both.
fn crash_record(b: u64, i: usize) -> String {
    let secs = (b * 7919 + i as u64 * 13) % 86_400;
    let date = format!(
        "2026-10-01 {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let m = serde_json::json!({
        "conn_id": format!("b{b}-{i}"),
        "agent_id": (b % 50).to_string(),
        "agent_name": format!("Agente {b}"),
        "from": format!("agent{}@cc.co", b % 50),
        "to": format!("c{i}@x.co; d{i}@y.co"),
        "subject": format!("Lote {b} nº {i}"),
        "body": format!("Hola,\nlínea {i} del lote {b}.\n{}", "texto ".repeat(i % 20)),
        "date": date,
        "cod_act": (i % 9).to_string(),
        "description_cod_act": "Venta",
    });
    m.to_string()
}

struct BatchState {
    content_type: &'static str,
    body: Arc<String>,
    /// Records of its own (`b{id}-0 … b{id}-{own-1}`).
    own: usize,
    acked: bool,
    attempts: u32,
}

#[derive(Default)]
struct Ledger {
    batches: BTreeMap<u64, BatchState>,
    /// Lines of acknowledged batches, mixed into new batches as duplicates.
    acked_lines: Vec<String>,
    anomalies: Vec<String>,
    requests: u64,
    cut: u64,
    resends: u64,
}

fn register_ack(l: &mut Ledger, id: u64) {
    let b = l.batches.get_mut(&id).expect("registered batch");
    if !b.acked {
        b.acked = true;
        for i in 0..b.own.min(3) {
            l.acked_lines.push(crash_record(id, i));
        }
    }
}

async fn crash_client(
    url: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    next_id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let http = client();
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        // Either resend an earlier batch (as a client that timed out would) or build a new one.
        let resend = {
            let l = ledger.lock().unwrap();
            if !l.batches.is_empty() && rng.below(4) == 0 {
                let k = rng.below(l.batches.len() as u64) as usize;
                let (id, b) = l.batches.iter().nth(k).unwrap();
                Some((*id, b.content_type, b.body.clone(), b.own, b.acked))
            } else {
                None
            }
        };
        let (id, ct, body, own, total, was_acked, fresh) = match resend {
            Some((id, ct, body, own, acked)) => {
                let total = if ct == NDJSON {
                    body.lines().filter(|l| !l.trim().is_empty()).count()
                } else {
                    serde_json::from_str::<Vec<Value>>(&body).unwrap().len()
                };
                (id, ct, body, own, total, acked, false)
            }
            None => {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let own = 50 + rng.below(151) as usize;
                let mut lines: Vec<String> = (0..own).map(|i| crash_record(id, i)).collect();
                if rng.below(3) == 0 {
                    // The same record twice in one batch.
                    for _ in 0..1 + rng.below(5) {
                        lines.push(crash_record(id, rng.below(own as u64) as usize));
                    }
                }
                {
                    let l = ledger.lock().unwrap();
                    if !l.acked_lines.is_empty() && rng.below(3) == 0 {
                        // Records of batches already acknowledged.
                        for _ in 0..1 + rng.below(5) {
                            let k = rng.below(l.acked_lines.len() as u64) as usize;
                            lines.push(l.acked_lines[k].clone());
                        }
                    }
                }
                let total = lines.len();
                let (ct, body) = if rng.below(5) == 0 {
                    (JSON, array_body(&lines))
                } else {
                    (
                        NDJSON,
                        lines.join(if rng.below(4) == 0 { "\n\n" } else { "\n" }) + "\n",
                    )
                };
                (id, ct, Arc::new(body), own, total, false, true)
            }
        };
        let result = http
            .post(&url)
            .header("wolkvox-token", &token)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .await;
        let (resp, status) = {
            let mut l = ledger.lock().unwrap();
            l.requests += 1;
            if fresh {
                // Registered only once its first attempt is over, so no resend races it.
                l.batches.insert(
                    id,
                    BatchState {
                        content_type: ct,
                        body: body.clone(),
                        own,
                        acked: false,
                        attempts: 0,
                    },
                );
            } else {
                l.resends += 1;
            }
            l.batches.get_mut(&id).unwrap().attempts += 1;
            let Ok(resp) = result else {
                // The server died under this request: its outcome is unknown.
                l.cut += 1;
                return;
            };
            let status = resp.status().as_u16();
            if status == 200 {
                // The status line is written after the commit: this batch is acknowledged.
                register_ack(&mut l, id);
            }
            (resp, status)
        };
        let text = resp.text().await;
        let mut l = ledger.lock().unwrap();
        match (status, text) {
            (200, Ok(t)) => {
                let v = json(t.as_bytes());
                let ins = v["data"]["inserted"].as_u64().expect("inserted number");
                let dup = v["data"]["duplicates"].as_u64().expect("duplicates number");
                let ok_counts = ins + dup == total as u64
                    && if fresh {
                        ins == own as u64
                    } else if was_acked {
                        ins == 0
                    } else {
                        ins == 0 || ins == own as u64
                    };
                if !ok_counts {
                    l.anomalies.push(format!(
                        "batch {id} (fresh {fresh}, acked before {was_acked}, own {own}, total {total}): {t}"
                    ));
                }
            }
            (200, Err(_)) => return,
            (s, t) => {
                l.anomalies
                    .push(format!("batch {id}: HTTP {s}: {}", t.unwrap_or_default()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_ingestion_never_loses_an_acknowledged_batch_nor_half_stores_one() {
    let kills: usize = std::env::var("CRASH_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test: {kills} kills, seed {seed} (CRASH_TEST_SEED to replay)");
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let report_tok = env.token("acme", "report", None);
    let config = "[limits]\nconcurrent_per_token = 16\n";
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(seed | 1);
    let clients = 4;

    for round in 0..kills {
        let mut server = env.serve(Some(config));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                tokio::spawn(crash_client(
                    server.url(PATH),
                    ingest.clone(),
                    ledger.clone(),
                    next_id.clone(),
                    stop.clone(),
                    rng.next(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50 + rng.below(351))).await;
        server.child.kill().expect("SIGKILL"); // std's Child::kill sends SIGKILL
        let st = server.child.wait().expect("reaping the server");
        assert!(!st.success(), "round {round}: the server was not killed");
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("a client did not stop after the kill")
                .expect("client task panicked");
        }
    }

    // Restart on the same database and read everything back through the report API.
    let server = env.serve(Some(config));
    let mut seen: HashMap<String, Value> = HashMap::new();
    for hour in 0..24 {
        let (_, rows) = report(
            &server,
            &report_tok,
            &format!("20261001{hour:02}0000"),
            &format!("20261001{hour:02}5959"),
        )
        .await;
        for r in rows {
            let id = r["conn_id"].as_str().unwrap().to_owned();
            assert!(!seen.contains_key(&id), "{id} served twice");
            seen.insert(id, r);
        }
    }
    let mut present: HashMap<u64, usize> = HashMap::new();
    for (id, r) in &seen {
        let (b, i) = id[1..]
            .split_once('-')
            .unwrap_or_else(|| panic!("unexpected conn_id {id}"));
        let (b, i): (u64, usize) = (b.parse().unwrap(), i.parse().unwrap());
        let mut expected: Map<String, Value> = serde_json::from_str(&crash_record(b, i)).unwrap();
        expected.insert("channel".into(), s("email"));
        assert_eq!(*r, Value::Object(expected), "{id} is not what was sent");
        *present.entry(b).or_default() += 1;
    }

    // Every client has stopped: the ledger is final.
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    let mut failures = l.anomalies.clone();
    let (mut acked, mut committed_unacked, mut absent_unacked) = (0, 0, 0);
    for (id, b) in &l.batches {
        let p = present.get(id).copied().unwrap_or(0);
        if b.acked {
            acked += 1;
            if p != b.own {
                failures.push(format!(
                    "acknowledged batch {id}: {p} of {} records present",
                    b.own
                ));
            }
        } else if p == b.own {
            committed_unacked += 1;
        } else if p == 0 {
            absent_unacked += 1;
        } else {
            failures.push(format!(
                "unacknowledged batch {id} ({} attempts) half-stored: {p} of {} records present",
                b.attempts, b.own
            ));
        }
    }
    for b in present.keys() {
        if !l.batches.contains_key(b) {
            failures.push(format!("batch {b} present but never sent"));
        }
    }
    println!(
        "crash test: {kills} SIGKILLs, {} requests ({} resends, {} cut by a kill), {} batches: \
         {acked} acknowledged, {committed_unacked} stored without an answer, {absent_unacked} absent; {} rows",
        l.requests,
        l.resends,
        l.cut,
        l.batches.len(),
        seen.len()
    );
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
    assert!(acked > 0, "no batch was ever acknowledged");

    // After the crashes, retries behave: an acknowledged batch is all duplicates, and an
    // unacknowledged absent one goes in whole.
    let mut retried = 0;
    for (id, b) in l.batches.iter().filter(|(_, b)| b.acked).take(5) {
        let a = post(
            &server,
            Some(&ingest),
            Some(b.content_type),
            b.body.to_string(),
        )
        .await;
        assert_eq!(a.status, 200, "batch {id}: {}", a.text);
        assert_eq!(a.json()["data"]["inserted"], 0, "batch {id}: {}", a.text);
        retried += 1;
    }
    for (id, b) in l
        .batches
        .iter()
        .filter(|(id, b)| !b.acked && !present.contains_key(id))
        .take(5)
    {
        let a = post(
            &server,
            Some(&ingest),
            Some(b.content_type),
            b.body.to_string(),
        )
        .await;
        assert_eq!(a.status, 200, "batch {id}: {}", a.text);
        assert_eq!(
            a.json()["data"]["inserted"],
            b.own as u64,
            "batch {id}: {}",
            a.text
        );
        retried += 1;
    }
    assert!(retried > 0);
    server.terminate();
}
