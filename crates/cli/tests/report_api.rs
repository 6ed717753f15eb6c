//! End-to-end tests of the report API (docs/api.md: the report, its error table, token_info): every
//! error row in the contractual order of checks, byte-exact answers, wall-clock windows with DST,
//! encodings, hostile input, maintenance and revocation — always through the real `voxtrail` binary
//! and real HTTP.

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::{HeaderMap, HeaderValue};

const REPORT: &str = "/api/v2/reports_manager.php";
const DAY_INI: &str = "20261001000000";
const DAY_END: &str = "20261001235959";

/// One answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a response whole and checks what every answer must have: never a 500, always an
/// `X-Request-Id`.
async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    assert!(
        headers.contains_key("x-request-id"),
        "no X-Request-Id on a {status} answer: {body}"
    );
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET url` with an optional token, uncompressed.
async fn get(url: &str, token: Option<&str>) -> Answer {
    let mut req = plain_client().get(url);
    if let Some(t) = token {
        req = req.header("wolkvox-token", t);
    }
    answer(req.send().await.expect("sending request")).await
}

/// `GET /api/v2/reports_manager.php?QUERY` (the query is sent exactly as given).
async fn report(server: &Server, query: &str, token: Option<&str>) -> Answer {
    get(&server.url(&format!("{REPORT}?{query}")), token).await
}

fn window(ini: &str, end: &str) -> String {
    format!("api=chat_12&date_ini={ini}&date_end={end}")
}

#[track_caller]
fn assert_error(a: &Answer, status: u16, error: &str, msg: &str) {
    assert_eq!(a.status, status, "status of {:?}", a.body);
    assert_eq!(a.body, error_json(status, error, msg));
    assert_eq!(
        a.header("content-type"),
        Some("application/json"),
        "content type"
    );
}

/// The JSON object the `record()` helper's line is served as.
fn served_row(conn_id: &str, date: &str) -> String {
    format!(
        r#"{{"conn_id":"{conn_id}","agent_id":"7","agent_name":"Ana","channel":"email","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"Texto","date":"{date}","cod_act":"1","description_cod_act":"Venta"}}"#
    )
}

/// A whole success body from its rows.
fn success_body(rows: &[String]) -> String {
    format!(
        r#"{{"code":"200","error":null,"msg":"{} records were found","data":[{}]}}"#,
        rows.len(),
        rows.join(",")
    )
}

/// Checks the wire shape of a success body (envelope key order, `msg` count, eleven string
/// fields per row in wire order) and returns the rows.
#[track_caller]
fn rows_of(body: &str) -> Vec<serde_json::Value> {
    assert!(
        body.starts_with(r#"{"code":"200","error":null,"msg":""#),
        "envelope: {body:.200}"
    );
    let top: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(body).expect("JSON object");
    let raw_rows: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(top["data"].get()).expect("data is an array");
    let v = json(body.as_bytes());
    assert_eq!(v["msg"], format!("{} records were found", raw_rows.len()));
    raw_rows
        .iter()
        .map(|raw| {
            let text = raw.get();
            let mut last = 0;
            for key in voxtrail_wire::CHAT_12_FIELDS {
                let at = text
                    .find(&format!("\"{key}\":"))
                    .unwrap_or_else(|| panic!("{key} missing in {text}"));
                assert!(at >= last, "{key} out of wire order in {text}");
                last = at;
            }
            let row: serde_json::Value = serde_json::from_str(text).unwrap();
            let obj = row.as_object().expect("row object");
            assert_eq!(obj.len(), 11, "{text}");
            assert!(
                obj.values().all(|x| x.is_string()),
                "non-string value in {text}"
            );
            row
        })
        .collect()
}

/// An environment with operation `acme` (America/Bogota), one report token and a server.
fn acme(config: Option<&str>) -> (Env, String, Server) {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let server = env.serve(config);
    (env, token, server)
}

#[track_caller]
fn assert_no_panic(server: &Server) {
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "the server panicked: {logs}");
}

/// A well-formed token that was never issued.
const UNKNOWN_TOKEN: &str = "vxt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

// ---------------------------------------------------------------------------------------
// docs/api.md, "Errors, in the order they are checked": every row, byte for byte
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn token_errors_are_the_hosted_texts() {
    let (_env, token, server) = acme(None);
    let q = window(DAY_INI, DAY_END);
    assert_error(
        &report(&server, &q, None).await,
        401,
        "UNAUTHORIZED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
    );
    assert_error(
        &report(&server, &q, Some("")).await,
        401,
        "UNAUTHORIZED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
    );
    for bad in [
        UNKNOWN_TOKEN,
        "abc",
        "vxt_short",
        &token.to_uppercase(),
        &token[..token.len() - 1],
    ] {
        assert_error(
            &report(&server, &q, Some(bad)).await,
            403,
            "FORBIDDEN",
            "PLEASE VALIDATE TOKEN",
        );
    }
    // The token travels in the header only.
    let in_query = format!("{q}&wolkvox-token={token}&wolkvox_token={token}");
    assert_error(
        &report(&server, &in_query, None).await,
        401,
        "UNAUTHORIZED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
    );
    assert_eq!(report(&server, &q, Some(&token)).await.status, 200);
}

#[tokio::test]
async fn parameter_errors_are_the_hosted_texts() {
    let (_env, token, server) = acme(None);
    let t = Some(token.as_str());
    for api in ["chat_13", "CHAT_12", "chat_12%20", "token_info", "x"] {
        let q = format!("api={api}&date_ini={DAY_INI}&date_end={DAY_END}");
        assert_error(
            &report(&server, &q, t).await,
            400,
            "BAD REQUEST",
            "THE API YOU WANT TO CONSULT DOES NOT EXIST",
        );
    }
    for q in [
        String::new(),
        format!("date_ini={DAY_INI}&date_end={DAY_END}"),
        format!("api=&date_ini={DAY_INI}&date_end={DAY_END}"),
        format!("api=chat_12&date_end={DAY_END}"),
        format!("api=chat_12&date_ini={DAY_INI}"),
        format!("api=chat_12&date_ini=&date_end={DAY_END}"),
        format!("api=chat_12&date_ini={DAY_INI}&date_end="),
        "api=chat_12".to_owned(),
        "api=chat_12&date_ini&date_end".to_owned(),
    ] {
        assert_error(
            &report(&server, &q, t).await,
            400,
            "BAD REQUEST",
            "SOME PARAMETERS ARE REQUIRED",
        );
    }
}

#[tokio::test]
async fn date_errors_have_their_own_texts() {
    let (_env, token, server) = acme(None);
    let t = Some(token.as_str());
    assert_error(
        &report(&server, &window("20261001", DAY_END), t).await,
        400,
        "BAD REQUEST",
        "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
    );
    assert_error(
        &report(&server, &window("20261002000000", "20261001235959"), t).await,
        400,
        "BAD REQUEST",
        "date_ini MUST NOT BE AFTER date_end",
    );
    assert_error(
        &report(&server, &window("20261001000000", "20261102000000"), t).await,
        400,
        "BAD REQUEST",
        "THE DATE RANGE EXCEEDS THE LIMIT OF 31 DAYS",
    );
    // Equal bounds are a valid one-second window.
    assert_eq!(
        report(&server, &window(DAY_INI, DAY_INI), t).await.status,
        200
    );
}

#[tokio::test]
async fn checks_run_in_the_contract_order() {
    let (env, token, server) = acme(None);
    let ingest = env.token("acme", "ingest", None);
    let t = Some(token.as_str());

    // Path first: an unknown path is a 404 whatever the method, token or query.
    let resp = plain_client()
        .post(server.url("/api/v2/nothing.php?api=x"))
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 404, "{}", a.body);
    // Method before token and parameters.
    let a = answer(
        plain_client()
            .delete(server.url(REPORT))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 405, "{}", a.body);
    // Token presence before token validity is moot; token before every parameter.
    assert_error(
        &report(&server, "api=nope", None).await,
        401,
        "UNAUTHORIZED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
    );
    assert_error(
        &report(&server, &window("bad", "worse"), None).await,
        401,
        "UNAUTHORIZED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
    );
    // A bad token and a bad date: the token error.
    assert_error(
        &report(&server, &window("2026-10-01", DAY_END), Some(UNKNOWN_TOKEN)).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    assert_error(
        &report(&server, "", Some("garbage")).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    // A token of the wrong scope is an invalid token, before any parameter.
    assert_error(
        &report(&server, &window("x", "y"), Some(&ingest)).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    // `api` missing before the dates.
    assert_error(
        &report(&server, "date_ini=bad&date_end=20261002000000", t).await,
        400,
        "BAD REQUEST",
        "SOME PARAMETERS ARE REQUIRED",
    );
    // An unknown `api` before missing dates and before bad dates.
    assert_error(
        &report(&server, "api=chat_99", t).await,
        400,
        "BAD REQUEST",
        "THE API YOU WANT TO CONSULT DOES NOT EXIST",
    );
    assert_error(
        &report(&server, "api=chat_99&date_ini=bad&date_end=bad", t).await,
        400,
        "BAD REQUEST",
        "THE API YOU WANT TO CONSULT DOES NOT EXIST",
    );
    // A missing date before a malformed one.
    assert_error(
        &report(&server, "api=chat_12&date_ini=bad", t).await,
        400,
        "BAD REQUEST",
        "SOME PARAMETERS ARE REQUIRED",
    );
    // Format before order, order before length.
    assert_error(
        &report(&server, &window("20261101000000", "2026100100000"), t).await,
        400,
        "BAD REQUEST",
        "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
    );
    assert_error(
        &report(&server, &window("20271201000000", "20261001000000"), t).await,
        400,
        "BAD REQUEST",
        "date_ini MUST NOT BE AFTER date_end",
    );
    assert_no_panic(&server);
}

#[tokio::test]
async fn unknown_paths_are_json_404s() {
    let (_env, token, server) = acme(None);
    for path in [
        "/",
        "/nothing",
        "/api/v2/reports_manager",
        "/api/v2/reports_manager.php/x",
        "/api/v1/reports_manager.php",
        "/API/V2/REPORTS_MANAGER.PHP",
    ] {
        let a = get(&server.url(path), Some(&token)).await;
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert_eq!(a.header("content-type"), Some("application/json"));
        let v = json(a.body.as_bytes());
        assert_eq!(v["code"], "404", "{path}");
        assert_eq!(v["error"], "NOT FOUND", "{path}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
        assert_eq!(v["data"], serde_json::json!([]), "{path}");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let (_env, token, server) = acme(None);
    let c = plain_client();
    for path in [REPORT, "/api/v2/information.php"] {
        let url = server.url(&format!("{path}?{}", window(DAY_INI, DAY_END)));
        for req in [
            c.post(&url).body("x"),
            c.put(&url).body("x"),
            c.delete(&url),
            c.patch(&url),
            c.request(reqwest::Method::OPTIONS, &url),
        ] {
            let a = answer(req.header("wolkvox-token", &token).send().await.unwrap()).await;
            assert_eq!(a.status, 405, "{path}: {}", a.body);
            let allow = a.header("allow").expect("Allow header").to_owned();
            assert!(
                allow.contains("GET") && allow.contains("HEAD"),
                "Allow: {allow}"
            );
            assert!(!allow.contains("POST"), "Allow: {allow}");
            let v = json(a.body.as_bytes());
            assert_eq!(v["code"], "405");
            assert_eq!(v["error"], "METHOD NOT ALLOWED");
            assert_eq!(v["data"], serde_json::json!([]));
        }
    }
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let (_env, token, server) = acme(None);
    let url = server.report_url(DAY_INI, DAY_END);
    let g = get(&url, Some(&token)).await;
    assert_eq!(g.status, 200);
    let h = answer(
        plain_client()
            .head(&url)
            .header("wolkvox-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body, "");
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(
        h.header("content-length"),
        Some(g.body.len().to_string().as_str())
    );
    // Errors too: same status and headers, no body.
    let h = answer(plain_client().head(&url).send().await.unwrap()).await;
    assert_eq!(h.status, 401);
    assert_eq!(h.body, "");
    let h = answer(
        plain_client()
            .head(server.url(&format!("{REPORT}?api=chat_12")))
            .header("wolkvox-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(h.status, 400);
    assert_eq!(h.body, "");
}

// ---------------------------------------------------------------------------------------
// docs/api.md, "GET /api/v2/reports_manager.php": parameters, body shape, ordering
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn repeated_parameters_last_wins_and_extras_are_ignored() {
    let (_env, token, server) = acme(None);
    let t = Some(token.as_str());
    let expected = success_body(&[served_row("c-1", "2026-10-01 08:15:00")]);
    for q in [
        window(DAY_INI, DAY_END),
        format!(
            "api=chat_13&api=chat_12&date_ini=20200101000000&date_ini={DAY_INI}&date_end=x&date_end={DAY_END}"
        ),
        format!(
            "wolkvox_server=0042&api=chat_12&date_ini={DAY_INI}&date_end={DAY_END}&foo=bar&token=zzz"
        ),
        format!("date_end={DAY_END}&date_ini={DAY_INI}&api=chat_12"),
        format!("api=chat%5F12&date_ini={DAY_INI}&date_end={DAY_END}&&&="),
    ] {
        let a = report(&server, &q, t).await;
        assert_eq!(a.status, 200, "{q}: {}", a.body);
        assert_eq!(a.body, expected, "{q}");
    }
    assert_error(
        &report(
            &server,
            &format!("api=chat_12&api=&date_ini={DAY_INI}&date_end={DAY_END}"),
            t,
        )
        .await,
        400,
        "BAD REQUEST",
        "SOME PARAMETERS ARE REQUIRED",
    );
    assert_error(
        &report(
            &server,
            &format!("api=chat_12&api=chat_13&date_ini={DAY_INI}&date_end={DAY_END}"),
            t,
        )
        .await,
        400,
        "BAD REQUEST",
        "THE API YOU WANT TO CONSULT DOES NOT EXIST",
    );
    assert_error(
        &report(
            &server,
            &format!("api=chat_12&date_ini={DAY_INI}&date_ini=bad&date_end={DAY_END}"),
            t,
        )
        .await,
        400,
        "BAD REQUEST",
        "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
    );
    // Extra headers real clients send, and the Host header, play no role.
    let a = answer(
        plain_client()
            .get(server.report_url(DAY_INI, DAY_END))
            .header("wolkvox-token", &token)
            .header("wolkvox_server", "0042")
            .header("wolkvox-server", "0042")
            .header("x-forwarded-for", "10.0.0.1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.body, expected);
    let target = format!("{REPORT}?{}", window(DAY_INI, DAY_END));
    let tok = format!("wolkvox-token: {token}");
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: some-other-tenant.wolkvox.com\r\n");
    req.push_str(&format!("{tok}\r\nConnection: close\r\n\r\n"));
    let raw = raw_http(&server.addr, req.as_bytes()).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text(), expected);
}

#[tokio::test]
async fn success_body_is_byte_exact_and_ordered_by_date_then_storage() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    env.import_ndjson(
        "acme",
        &[
            record("c-3", "2026-10-01 09:00:00"),
            record("c-1", "2026-10-01 08:00:00"),
        ]
        .join("\n"),
    );
    env.import_ndjson(
        "acme",
        &[
            record("c-2", "2026-10-01 09:00:00"),
            record("c-before", "2026-09-30 23:59:59"),
            record("c-0", "2026-10-01 08:00:00"),
            record("c-after", "2026-10-02 00:00:00"),
        ]
        .join("\n"),
    );
    // Only the required fields, agent_id as a JSON number: every value still a string.
    env.import_ndjson(
        "acme",
        r#"{"conn_id":"c-min","agent_id":42,"from":"x@cc.co","to":"y@x.co","date":"2026-10-01 10:00:00"}"#,
    );
    let server = env.serve(None);
    let a = get(&server.report_url(DAY_INI, DAY_END), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let min = r#"{"conn_id":"c-min","agent_id":"42","agent_name":"","channel":"email","from":"x@cc.co","to":"y@x.co","subject":"","body":"","date":"2026-10-01 10:00:00","cod_act":"","description_cod_act":""}"#;
    let expected = success_body(&[
        served_row("c-1", "2026-10-01 08:00:00"),
        served_row("c-0", "2026-10-01 08:00:00"),
        served_row("c-3", "2026-10-01 09:00:00"),
        served_row("c-2", "2026-10-01 09:00:00"),
        min.to_owned(),
    ]);
    assert_eq!(a.body, expected);
    assert_eq!(rows_of(&a.body).len(), 5);
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn an_empty_window_is_200_by_default() {
    let (_env, token, server) = acme(None);
    let a = get(
        &server.report_url("20261002000000", "20261002235959"),
        Some(&token),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        r#"{"code":"200","error":null,"msg":"0 records were found","data":[]}"#
    );
}

#[tokio::test]
async fn an_empty_window_is_the_hosted_404_in_compat_mode() {
    let (_env, token, server) = acme(Some("[compat]\nempty_window = \"404\"\n"));
    let a = get(
        &server.report_url("20261002000000", "20261002235959"),
        Some(&token),
    )
    .await;
    assert_error(&a, 404, "NOT FOUND", "Validate dates entered");
    // A window with rows is unaffected.
    let a = get(&server.report_url(DAY_INI, DAY_END), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(rows_of(&a.body).len(), 1);
}

// ---------------------------------------------------------------------------------------
// docs/api.md, "Windows: both bounds are inclusive": wall-clock windows
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn both_rows_of_a_dst_fold_match_and_a_gap_bound_is_valid() {
    let env = Env::new();
    env.operation("ny", "America/New_York");
    let token = env.token("ny", "report", None);
    env.import_ndjson(
        "ny",
        &[
            record("edt", "2026-11-01T01:30:00-04:00"),
            record("est", "2026-11-01T01:30:00-05:00"),
            record("utc", "2026-11-01T06:59:59Z"), // 01:59:59 EST
            record("gap", "2026-03-08 02:30:00"),  // inside the spring-forward gap, stored as given
            record("after-gap", "2026-03-08T07:00:00Z"), // 03:00:00 EDT
        ]
        .join("\n"),
    );
    let server = env.serve(None);
    let t = Some(token.as_str());

    let a = get(&server.report_url("20261101013000", "20261101013000"), t).await;
    assert_eq!(
        a.body,
        success_body(&[
            served_row("edt", "2026-11-01 01:30:00"),
            served_row("est", "2026-11-01 01:30:00")
        ])
    );
    let a = get(&server.report_url("20261101010000", "20261101015959"), t).await;
    let ids: Vec<_> = rows_of(&a.body)
        .iter()
        .map(|r| r["conn_id"].clone())
        .collect();
    assert_eq!(ids, ["edt", "est", "utc"]);
    // The later 01:30 (EST) is not "after" 01:59:59 EDT: only the wall clock counts.
    let a = get(&server.report_url("20261101013001", "20261101015958"), t).await;
    assert_eq!(a.body, success_body(&[]));

    // Bounds inside the spring-forward gap are valid.
    let a = get(&server.report_url("20260308023000", "20260308023000"), t).await;
    assert_eq!(
        a.body,
        success_body(&[served_row("gap", "2026-03-08 02:30:00")])
    );
    let a = get(&server.report_url("20260308020000", "20260308025959"), t).await;
    assert_eq!(
        a.body,
        success_body(&[served_row("gap", "2026-03-08 02:30:00")])
    );
    let a = get(&server.report_url("20260308023000", "20260308030000"), t).await;
    let ids: Vec<_> = rows_of(&a.body)
        .iter()
        .map(|r| r["conn_id"].clone())
        .collect();
    assert_eq!(ids, ["gap", "after-gap"]);
    let a = get(&server.report_url("20260308023100", "20260308025900"), t).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, success_body(&[]));
}

#[tokio::test]
async fn bounds_are_inclusive_at_one_second() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    env.import_ndjson(
        "acme",
        &[
            record("a", "2026-10-01 08:15:00"),
            record("b", "2026-10-01 08:15:01"),
        ]
        .join("\n"),
    );
    let server = env.serve(None);
    let t = Some(token.as_str());
    for (ini, end, want) in [
        ("20261001081500", "20261001081500", &["a"][..]),
        ("20261001081501", "20261001081501", &["b"]),
        ("20261001081500", "20261001081501", &["a", "b"]),
        ("20261001081459", "20261001081459", &[]),
        ("20261001000000", "20261001081459", &[]),
        ("20261001081502", "20261001235959", &[]),
        ("20261001081459", "20261001081500", &["a"]),
        ("20261001081501", "20261001081502", &["b"]),
    ] {
        let a = get(&server.report_url(ini, end), t).await;
        let ids: Vec<_> = rows_of(&a.body)
            .iter()
            .map(|r| r["conn_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, want, "window {ini}..{end}");
    }
}

#[tokio::test]
async fn text_round_trips_exactly() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let rec = serde_json::json!({
        "conn_id": "ñ-1 \"quoted\" \\ back",
        "agent_id": "007",
        "agent_name": "  José Ñúñez  ",
        "channel": "email",
        "from": "jose@cc.co",
        "to": "a@x.co; b@y.co,c@z.co",
        "subject": "Re: ¿Pedido #42? — 日本語 😀\tfin",
        "body": "Hola,\n\nLínea 2\r\nLínea 3\u{2028}sep\u{0001}ctl </script> <b>html</b> & 'apos'\n",
        "date": "2026-10-01 08:15:00",
        "cod_act": "",
        "description_cod_act": "Reclamación résolue ✓",
    });
    env.import_ndjson("acme", &serde_json::to_string(&rec).unwrap());
    let server = env.serve(None);
    let a = get(&server.report_url(DAY_INI, DAY_END), Some(&token)).await;
    assert_eq!(a.status, 200);
    let rows = rows_of(&a.body);
    assert_eq!(rows.len(), 1);
    for (k, v) in rec.as_object().unwrap() {
        assert_eq!(&rows[0][k], v, "field {k}");
    }
    // Non-ASCII travels as UTF-8, not as \u escapes.
    assert!(
        a.body.contains("Ñúñez") && a.body.contains("日本語 😀"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn gzip_when_the_client_asks_for_it() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let lines: Vec<String> = (0..50)
        .map(|i| record(&format!("g-{i:02}"), &format!("2026-10-01 08:{i:02}:00")))
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    let server = env.serve(None);
    let url = server.report_url(DAY_INI, DAY_END);
    let plain = get(&url, Some(&token)).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(rows_of(&plain.body).len(), 50);

    let resp = plain_client()
        .get(&url)
        .header("wolkvox-token", &token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = resp.bytes().await.unwrap();
    assert_eq!(&compressed[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(compressed.len() < plain.body.len());

    // A gzip-capable client decodes exactly the plain bytes.
    let resp = client()
        .get(&url)
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), plain.body);
}

// ---------------------------------------------------------------------------------------
// Hostile input: a clear error, never a 500, never a panic
// ---------------------------------------------------------------------------------------

/// Percent-encodes every byte but ASCII letters and digits.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn malformed_dates_are_refused_clearly() {
    let (_env, token, server) = acme(None);
    let t = Some(token.as_str());
    let long = "9".repeat(4000);
    for bad in [
        "20260230000000",  // Feb 30
        "20250229000000",  // not a leap year
        "20261001240000",  // 24:00:00
        "20261001236000",  // minute 60
        "20261001235960",  // second 60 (no leap seconds)
        "20261301000000",  // month 13
        "20261000000000",  // day 0
        "2026100100000",   // 13 digits
        "202610010000000", // 15 digits
        "2026100100000a",
        "abcdefghijklmn",
        "+2026100100000",
        "-2026100100000",
        " 2026100100000",
        "2026100100000 ",
        "2026-10-01 00:00:00",
        "2026-10-01T00:00",
        "２０２６１００１０００００", // full-width digits
        "٢٠٢٦١٠٠١٠٠٠٠٠٠",             // Arabic-Indic digits
        "20261001000000\0",
        "0x1AB",
        "1e13",
        &long,
    ] {
        for q in [window(&pct(bad), DAY_END), window(DAY_INI, &pct(bad))] {
            assert_error(
                &report(&server, &q, t).await,
                400,
                "BAD REQUEST",
                "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
            );
        }
    }
    // A raw `+` is a space in a query string: still a clear date error.
    assert_error(
        &report(&server, &window("+2026100100000", DAY_END), t).await,
        400,
        "BAD REQUEST",
        "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
    );
    assert_no_panic(&server);
}

#[tokio::test]
async fn broken_percent_encoding_and_invalid_utf8_are_date_errors() {
    let (_env, token, server) = acme(None);
    let tok = format!("wolkvox-token: {token}");
    let headers: &[&[u8]] = &[tok.as_bytes()];
    for q in [
        "api=chat_12&date_ini=%ZZ&date_end=%",
        "api=chat_12&date_ini=%&date_end=20261001235959",
        "api=chat_12&date_ini=%2&date_end=20261001235959",
        "api=chat_12&date_ini=%FF%FE%FD2026100100&date_end=20261001235959",
        "api=chat_12&date_ini=%C3%28&date_end=20261001235959",
        "api=chat_12&date_ini=%ED%A0%80&date_end=20261001235959", // an encoded surrogate
        "api=chat_12&date_ini=%C0%AF&date_end=20261001235959",    // overlong encoding
        "api=chat_12&date_ini=20261001000000%&date_end=20261001235959",
    ] {
        let raw = raw_get(&server.addr, format!("{REPORT}?{q}").as_bytes(), headers).await;
        assert_eq!(raw.status, 400, "{q}: {}", raw.text());
        assert!(raw.header("x-request-id").is_some(), "{q}");
        assert_eq!(
            raw.text(),
            error_json(
                400,
                "BAD REQUEST",
                "INVALID DATE FORMAT, USE YYYYmmddHHiiss"
            ),
            "{q}"
        );
    }
    // Bad encoding in the `api` value or in parameter names.
    let raw = raw_get(
        &server.addr,
        format!("{REPORT}?api=%FFchat_12&date_ini=1&date_end=2").as_bytes(),
        headers,
    )
    .await;
    assert_eq!(
        raw.text(),
        error_json(
            400,
            "BAD REQUEST",
            "THE API YOU WANT TO CONSULT DOES NOT EXIST"
        )
    );
    let raw = raw_get(
        &server.addr,
        format!("{REPORT}?%FF=1&%=2&api=chat_12").as_bytes(),
        headers,
    )
    .await;
    assert_eq!(
        raw.text(),
        error_json(400, "BAD REQUEST", "SOME PARAMETERS ARE REQUIRED")
    );
    // Raw (unencoded) valid UTF-8 in the query.
    let raw = raw_get(
        &server.addr,
        format!("{REPORT}?api=chat_12&date_ini=２０２６１００１０００００&date_end={DAY_END}")
            .as_bytes(),
        headers,
    )
    .await;
    assert_eq!(
        raw.text(),
        error_json(
            400,
            "BAD REQUEST",
            "INVALID DATE FORMAT, USE YYYYmmddHHiiss"
        )
    );
    assert_no_panic(&server);
}

/// Raw bytes that are not UTF-8 in the request target: still a 400, never a 500 or a hang.
#[tokio::test]
async fn raw_invalid_utf8_in_the_query_is_a_400() {
    let (_env, token, server) = acme(None);
    let tok = format!("wolkvox-token: {token}");
    for bad in [&b"\xff"[..], b"\xc3\x28", b"\x80", b"\xed\xa0\x80"] {
        let mut target = format!("{REPORT}?api=chat_12&date_ini=2026").into_bytes();
        target.extend_from_slice(bad);
        target.extend_from_slice(format!("&date_end={DAY_END}").as_bytes());
        let raw = raw_get(&server.addr, &target, &[tok.as_bytes()]).await;
        assert_eq!(raw.status, 400, "{bad:?}: {}", raw.text());
    }
    // The server is still answering normally afterwards.
    assert_eq!(
        get(&server.report_url(DAY_INI, DAY_END), Some(&token))
            .await
            .status,
        200
    );
    assert_no_panic(&server);
}

#[tokio::test]
async fn sql_looking_parameters_are_only_text() {
    let (env, token, server) = acme(None);
    let t = Some(token.as_str());
    let sqls = [
        "' OR '1'='1",
        "20261001000000' OR 1=1 --",
        "20261001000000; DROP TABLE interactions;--",
        "1) UNION SELECT json FROM interactions --",
        "\" OR \"\"=\"",
    ];
    for s in sqls {
        assert_error(
            &report(
                &server,
                &format!("api={}&date_ini={DAY_INI}&date_end={DAY_END}", pct(s)),
                t,
            )
            .await,
            400,
            "BAD REQUEST",
            "THE API YOU WANT TO CONSULT DOES NOT EXIST",
        );
        for q in [window(&pct(s), DAY_END), window(DAY_INI, &pct(s))] {
            assert_error(
                &report(&server, &q, t).await,
                400,
                "BAD REQUEST",
                "INVALID DATE FORMAT, USE YYYYmmddHHiiss",
            );
        }
        assert_error(
            &report(&server, &window(DAY_INI, DAY_END), Some(s)).await,
            403,
            "FORBIDDEN",
            "PLEASE VALIDATE TOKEN",
        );
    }
    // Everything is still there.
    let a = get(&server.report_url(DAY_INI, DAY_END), t).await;
    assert_eq!(
        a.body,
        success_body(&[served_row("c-1", "2026-10-01 08:15:00")])
    );
    drop(env);
    assert_no_panic(&server);
}

#[tokio::test]
async fn odd_tokens_are_refused_cleanly() {
    let (_env, token, server) = acme(None);
    let url = server.report_url(DAY_INI, DAY_END);
    for blank in ["", " ", "\t", "   "] {
        let resp = plain_client()
            .get(&url)
            .header("wolkvox-token", HeaderValue::from_str(blank).unwrap())
            .send()
            .await
            .unwrap();
        assert_error(
            &answer(resp).await,
            401,
            "UNAUTHORIZED",
            "PLEASE ENTER THE WOLKVOX-TOKEN",
        );
    }
    let huge_a = "a".repeat(8 * 1024);
    let huge_vxt = format!("vxt_{}", "A".repeat(8 * 1024));
    let padded = format!("{token}{}", "A".repeat(8 * 1024));
    let bad: Vec<Vec<u8>> = vec![
        huge_a.into_bytes(),
        huge_vxt.into_bytes(),
        padded.into_bytes(),
        "vxt_ñññññññññññññññññññññññññññññññññññññññññññ"
            .as_bytes()
            .to_vec(),
        format!("{}é", &token[..token.len() - 1]).into_bytes(),
        "токен".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x80, 0x81], // obs-text, not UTF-8
        format!("{token},{token}").into_bytes(),
        format!("Bearer {token}").into_bytes(),
    ];
    for b in bad {
        let resp = plain_client()
            .get(&url)
            .header("wolkvox-token", HeaderValue::from_bytes(&b).unwrap())
            .send()
            .await
            .unwrap();
        let a = answer(resp).await;
        assert_error(&a, 403, "FORBIDDEN", "PLEASE VALIDATE TOKEN");
    }
    // Two token headers: not a valid token either way, and never a crash.
    let resp = plain_client()
        .get(&url)
        .header("wolkvox-token", UNKNOWN_TOKEN)
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert!(a.status == 200 || a.status == 403, "{a:?}");
    assert_eq!(get(&url, Some(&token)).await.status, 200);
    assert_no_panic(&server);
}

// ---------------------------------------------------------------------------------------
// Switches that take effect on a running server
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn maintenance_closes_the_api_within_5_seconds() {
    let (env, token, server) = acme(Some("maintenance_retry_after_secs = 120\n"));
    let url = server.report_url(DAY_INI, DAY_END);
    let info = server.url("/api/v2/information.php?api=token_info");
    assert_eq!(get(&url, Some(&token)).await.status, 200);

    env.ok(&["maintenance", "on"]);
    let closed = eventually(Duration::from_secs(5), async || {
        get(&url, Some(&token)).await.status == 403
    })
    .await;
    assert!(closed, "maintenance did not take effect within 5 s");
    let a = get(&url, Some(&token)).await;
    assert_error(
        &a,
        403,
        "FORBIDDEN",
        "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
    );
    assert_eq!(a.header("retry-after"), Some("120"));
    let a = get(&info, Some(&token)).await;
    assert_error(
        &a,
        403,
        "FORBIDDEN",
        "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
    );
    assert_eq!(a.header("retry-after"), Some("120"));
    // Maintenance beats the token and the parameters…
    for t in [None, Some(""), Some(UNKNOWN_TOKEN)] {
        let a = report(&server, "api=nope&date_ini=bad", t).await;
        assert_error(
            &a,
            403,
            "FORBIDDEN",
            "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
        );
    }
    // …but not the method nor the path.
    let a = answer(plain_client().post(&url).send().await.unwrap()).await;
    assert_eq!(a.status, 405);
    let a = get(&server.url("/api/v2/nothing.php"), Some(&token)).await;
    assert_eq!(a.status, 404);
    // Operations endpoints stay up.
    let a = get(&server.url("/healthz"), None).await;
    assert_eq!(a.status, 200);

    env.ok(&["maintenance", "off"]);
    let open = eventually(Duration::from_secs(5), async || {
        get(&url, Some(&token)).await.status == 200
    })
    .await;
    assert!(open, "maintenance off did not take effect within 5 s");
}

#[tokio::test]
async fn revocation_takes_effect_within_5_seconds() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let (token, id) = env.token_with_id("acme", "report", None, None);
    let (other, _) = env.token_with_id("acme", "report", None, None);
    let server = env.serve(None);
    let url = server.report_url(DAY_INI, DAY_END);
    let info = server.url("/api/v2/information.php?api=token_info");
    assert_eq!(get(&url, Some(&token)).await.status, 200);
    assert_eq!(get(&info, Some(&token)).await.status, 200);

    env.ok(&["token", "revoke", &id.to_string()]);
    let refused = eventually(Duration::from_secs(5), async || {
        get(&url, Some(&token)).await.status == 403
    })
    .await;
    assert!(refused, "revocation did not take effect within 5 s");
    assert_error(
        &get(&url, Some(&token)).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    assert_error(
        &get(&info, Some(&token)).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    // The other token of the operation is unaffected.
    assert_eq!(get(&url, Some(&other)).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// Tenancy and scope
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_sees_only_its_own_operation() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.operation("globex", "Europe/Madrid");
    let acme = env.token("acme", "report", None);
    let globex = env.token("globex", "report", None);
    // The same conn_id in both operations, with different content.
    env.import_ndjson(
        "acme",
        &[
            record("c-1", "2026-10-01 08:15:00"),
            record("a-2", "2026-10-01 09:00:00"),
        ]
        .join("\n"),
    );
    env.import_ndjson(
        "globex",
        &[
            record("c-1", "2026-10-01 08:15:00").replace("Texto", "Otro texto"),
            record("g-2", "2026-10-01 10:00:00"),
        ]
        .join("\n"),
    );
    let server = env.serve(None);
    let url = server.report_url(DAY_INI, DAY_END);
    let a = get(&url, Some(&acme)).await;
    assert_eq!(
        a.body,
        success_body(&[
            served_row("c-1", "2026-10-01 08:15:00"),
            served_row("a-2", "2026-10-01 09:00:00")
        ])
    );
    let g = get(&url, Some(&globex)).await;
    assert_eq!(
        g.body,
        success_body(&[
            served_row("c-1", "2026-10-01 08:15:00").replace("Texto", "Otro texto"),
            served_row("g-2", "2026-10-01 10:00:00"),
        ])
    );
}

#[tokio::test]
async fn an_ingest_token_cannot_read_reports() {
    let (env, _token, server) = acme(None);
    let ingest = env.token("acme", "ingest", None);
    assert_error(
        &get(&server.report_url(DAY_INI, DAY_END), Some(&ingest)).await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
    assert_error(
        &get(
            &server.url("/api/v2/information.php?api=token_info"),
            Some(&ingest),
        )
        .await,
        403,
        "FORBIDDEN",
        "PLEASE VALIDATE TOKEN",
    );
}
