//! End-to-end regression tests of an attacker's findings, through the real binary and real
//! HTTP: no body, subject, token or token hash in the logs at any level; dates outside years
//! 1000–9999 refused at ingestion; out-of-range numeric flags refused; a leading byte-order mark
//! accepted in every record format; oversized import records refused in bounded memory with a
//! capped listing of rejected records; one `serve` per SQLite database.
//!
//! Tests assert behaviour, never durations: every wait is a bounded poll.

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::*;
use sha2::{Digest as _, Sha256};
use voxtrail_server::store::testing::TestDatabase;

const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";
const INGEST: &str = "/api/v2/interactions";
const UNKNOWN_TOKEN: &str = "vxt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn post(server: &Server, token: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let resp = client()
        .post(server.url(INGEST))
        .header("wolkvox-token", token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("posting");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("reading body"))
}

async fn get(url: &str, token: &str) -> (u16, String) {
    let resp = client()
        .get(url)
        .header("wolkvox-token", token)
        .send()
        .await
        .expect("sending request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("reading body"))
}

// ---------------------------------------------------------------------------------------------
// Secrets and bodies never reach the logs, whatever VOXTRAIL_LOG says.
// ---------------------------------------------------------------------------------------------

/// Every way bytes could be printed: as text, hex (lower and upper case) and as a byte array
/// (`[66, 79, 68, …]`, how the PostgreSQL drivers print `bytea` parameters).
fn byte_forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let decimal: Vec<String> = bytes.iter().map(u8::to_string).collect();
    let mut forms = vec![
        hex.clone(),
        hex.to_uppercase(),
        decimal.join(", "),
        decimal.join(","),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.to_owned());
    }
    forms
}

/// A token secret and its SHA-256, in every printable form.
fn token_forms(secret: &str) -> Vec<String> {
    let mut forms = byte_forms(secret.as_bytes());
    forms.extend(byte_forms(&Sha256::digest(secret.as_bytes())));
    forms
}

async fn nothing_secret_is_logged_at(label: &str, level: &str) {
    let Some(db) = TestDatabase::create(&format!("logs_{label}")) else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let report = env.token("acme", "report", None);
    let server = Server::spawn(env.cmd().env("VOXTRAIL_LOG", level).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]));
    let body_marker = format!("BODYMARK{label}7f3a9c");
    let subject_marker = format!("SUBJMARK{label}41d2e8");
    let address_marker = format!("addrmark{label}9b");
    let line = format!(
        r#"{{"conn_id":"c-{label}","agent_id":"7","from":"ana@cc.co","to":"{address_marker}@x.co","subject":"{subject_marker}","body":"{body_marker}","date":"2026-10-01 08:00:00"}}"#
    );
    let (status, text) = post(&server, &ingest, NDJSON, line.into_bytes()).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = get(
        &server.report_url("20261001000000", "20261001235959"),
        &report,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&body_marker), "the row is served: {text}");
    // A refused token goes through the same lookup.
    let (status, _) = get(
        &server.report_url("20261001000000", "20261001235959"),
        UNKNOWN_TOKEN,
    )
    .await;
    assert_eq!(status, 403);
    let log = server.stderr.clone();
    assert!(server.terminate().success());
    let drained = eventually(std::time::Duration::from_secs(10), async || {
        log.lock().unwrap().contains("shutting down")
    })
    .await;
    assert!(drained, "the shutdown line is logged");
    let logs = log.lock().unwrap().clone();
    assert!(
        logs.contains("/api/v2/interactions"),
        "requests are logged: {logs}"
    );
    let mut secrets = Vec::new();
    for marker in [&body_marker, &subject_marker, &address_marker] {
        secrets.extend(byte_forms(marker.as_bytes()));
    }
    secrets.extend(token_forms(&ingest));
    secrets.extend(token_forms(&report));
    secrets.extend(token_forms(UNKNOWN_TOKEN));
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "{s:?} is in the {level} logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs_at_debug() {
    nothing_secret_is_logged_at("debug", "debug").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs_at_trace() {
    nothing_secret_is_logged_at("trace", "trace").await;
}

/// `VOXTRAIL_LOG` cannot widen the cap by naming a driver's module.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs_when_the_driver_is_named() {
    nothing_secret_is_logged_at("named", "trace,tokio_postgres::query=trace,postgres=trace").await;
}
