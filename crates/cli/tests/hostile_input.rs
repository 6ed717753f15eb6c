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

// ---------------------------------------------------------------------------------------------
// Dates outside years 1000–9999.
// ---------------------------------------------------------------------------------------------

const OUT_OF_RANGE: [&str; 4] = [
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "0999-12-31 23:59:59",
    "1000-01-01T04:00:00Z", // 999-12-31 in Bogota (local mean time, -4:56:16)
];

fn dated(conn_id: &str, date: &str) -> String {
    record(conn_id, date)
}

#[tokio::test(flavor = "multi_thread")]
async fn dates_outside_years_1000_to_9999_are_refused_by_the_api() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let server = env.serve(None);
    for date in OUT_OF_RANGE {
        for (ct, body) in [
            (NDJSON, dated("d1", date)),
            (JSON, format!("[{}]", dated("d1", date))),
        ] {
            let (status, text) = post(&server, &ingest, ct, body.into_bytes()).await;
            assert_eq!(status, 400, "{date}: {text}");
            let v = json(text.as_bytes());
            let data = &v["data"][0];
            assert_eq!(data["field"], "date", "{date}: {text}");
            assert!(
                data["reason"]
                    .as_str()
                    .unwrap()
                    .contains("between 1000-01-01 00:00:00 and 9999-12-31 23:59:59"),
                "{date}: {text}"
            );
        }
    }
    // The edges themselves are accepted.
    let edges = format!(
        "{}\n{}\n",
        dated("lo", "1000-01-01 00:00:00"),
        dated("hi", "9999-12-31T23:59:59-05:00")
    );
    let (status, text) = post(&server, &ingest, NDJSON, edges.into_bytes()).await;
    assert_eq!(status, 200, "{text}");
}

#[test]
fn dates_outside_years_1000_to_9999_are_refused_by_import_in_every_format() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    for date in OUT_OF_RANGE {
        let nd = dated("d1", date);
        let arr = format!("[{nd}]");
        let csv = format!("conn_id,agent_id,from,to,date\nd1,7,a@x.co,b@y.co,{date}\n");
        for (name, content) in [("a.ndjson", nd), ("a.json", arr), ("a.csv", csv)] {
            let path = env.path(name);
            std::fs::write(&path, content).unwrap();
            let out = env.run(&["import", "--operation", "acme", path.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{date} {name}: {err}");
            assert!(
                err.contains(
                    "record 0: date: must fall between 1000-01-01 00:00:00 and 9999-12-31 23:59:59"
                ),
                "{date} {name}: {err}"
            );
        }
    }
    let count = rusqlite::Connection::open(env.path("voxtrail.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM interactions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(count, 0);
}

// ---------------------------------------------------------------------------------------------
// Numeric flags that are stored.
// ---------------------------------------------------------------------------------------------

fn refused(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stderr: {err}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

#[test]
fn out_of_range_numeric_flags_are_refused_and_nothing_is_stored() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let create = |limit: &str| {
        env.run(&[
            "token",
            "create",
            "--operation",
            "acme",
            "--daily-limit",
            limit,
        ])
    };
    for limit in ["9223372036854775808", "18446744073709551615", "0"] {
        refused(
            &create(limit),
            "--daily-limit must be from 1 to 9223372036854775807",
        );
    }
    refused(&create("18446744073709551616"), "--daily-limit");
    refused(&create("-1"), "-1");
    assert_eq!(env.ok(&["token", "list"]), "", "no token was stored");
    // The largest limit is stored as given.
    env.ok(&[
        "token",
        "create",
        "--operation",
        "acme",
        "--daily-limit",
        "9223372036854775807",
    ]);
    assert!(
        env.ok(&["token", "list"])
            .contains("\t9223372036854775807\t")
    );

    for licenses in ["0", "4294967296", "99999999999999999999"] {
        refused(
            &env.run(&["operation", "create", "x", "--licenses", licenses]),
            "--licenses",
        );
    }
    refused(
        &env.run(&["operation", "create", "x", "--licenses=-1"]),
        "-1",
    );

    let seed = |extra: &[&str]| {
        let mut args = vec!["seed", "--operation", "acme", "--until", "20261001000000"];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    refused(
        &seed(&["--count", "100000001"]),
        "--count is at most 100000000",
    );
    refused(
        &seed(&["--count", "1", "--days", "0"]),
        "--days must be from 1 to 36600",
    );
    refused(
        &seed(&["--count", "1", "--days", "4294967295"]),
        "--days must be from 1 to 36600",
    );
    refused(
        &env.run(&[
            "seed",
            "--operation",
            "acme",
            "--count",
            "1",
            "--days",
            "2",
            "--until",
            "10000101120000",
        ]),
        "must not fall before 1000-01-01",
    );
    refused(
        &env.run(&["demo", "--rows", "100000001"]),
        "--rows is at most 100000000",
    );
    let count = rusqlite::Connection::open(env.path("voxtrail.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM interactions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(count, 0);
    assert_eq!(env.ok(&["operation", "list"]).lines().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// A leading byte-order mark.
// ---------------------------------------------------------------------------------------------

const BOM: &str = "\u{feff}";

#[tokio::test(flavor = "multi_thread")]
async fn a_leading_bom_is_accepted_by_the_api() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let ingest = env.token("acme", "ingest", None);
    let server = env.serve(None);
    let nd = format!("{BOM}{}\n", record("b1", "2026-10-01 08:00:00"));
    let (status, text) = post(&server, &ingest, NDJSON, nd.into_bytes()).await;
    assert_eq!(status, 200, "{text}");
    let arr = format!("{BOM}[{}]", record("b2", "2026-10-01 08:00:00"));
    let (status, text) = post(&server, &ingest, JSON, arr.into_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(text.as_bytes())["data"]["inserted"], 1);
}

#[test]
fn a_leading_bom_is_accepted_by_import_in_every_format_with_and_without_format() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let files = [
        (
            "ndjson",
            format!("{BOM}{}\n", record("n1", "2026-10-01 08:00:00")),
        ),
        (
            "json",
            format!("{BOM}[{}]", record("j1", "2026-10-01 08:00:00")),
        ),
        (
            "csv",
            format!("{BOM}conn_id,agent_id,from,to,date\nc1,7,a@x.co,b@y.co,2026-10-01 08:00:00\n"),
        ),
    ];
    for (format, content) in &files {
        let path = env.path(&format!("bom.{format}"));
        std::fs::write(&path, content).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["import", "--operation", "acme", p],
            vec!["import", "--operation", "acme", "--format", format, p],
        ] {
            let out = env.run(&args);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = env.run_stdin(&["import", "--operation", "acme", "-"], content.as_bytes());
        assert!(
            out.status.success(),
            "stdin {format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let count = rusqlite::Connection::open(env.path("voxtrail.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM interactions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(count, 3);
}

// ---------------------------------------------------------------------------------------------
// Unbounded import input.
// ---------------------------------------------------------------------------------------------

#[test]
fn many_invalid_records_are_listed_up_to_100_and_counted_exactly() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let path = env.path("bad.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "{}", record("ok", "2026-10-01 08:00:00")).unwrap();
    for _ in 0..200_000 {
        writeln!(f, "not json").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let out = env.run(&["import", "--operation", "acme", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let rejected: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .collect();
    assert_eq!(rejected.len(), 100, "{}", &err[..err.len().min(2000)]);
    assert!(
        rejected[0].contains("bad.ndjson record 1: not a JSON object"),
        "{}",
        rejected[0]
    );
    assert!(
        rejected[99].contains("bad.ndjson record 100: "),
        "{}",
        rejected[99]
    );
    assert!(
        err.contains("\n… and 199900 more invalid records\n"),
        "{err}"
    );
    assert!(
        err.contains("error: 200000 invalid records; nothing was imported"),
        "{err}"
    );
    assert!(
        err.lines().count() < 110,
        "stderr is capped: {} lines",
        err.lines().count()
    );
}

/// A file of `len` bytes that is one NDJSON line with no end (an unclosed string).
fn endless_line(path: &std::path::Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(br#"{"conn_id":"x","body":""#).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

#[test]
fn an_endless_line_is_refused_naming_its_line_and_nothing_is_stored() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let path = env.path("endless.ndjson");
    endless_line(&path, 40 << 20);
    let good = env.path("good.ndjson");
    std::fs::write(&good, format!("{}\n", record("g1", "2026-10-01 08:00:00"))).unwrap();
    for args in [
        vec![
            "import",
            "--operation",
            "acme",
            good.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
        vec![
            "import",
            "--operation",
            "acme",
            "--format",
            "ndjson",
            path.to_str().unwrap(),
        ],
    ] {
        let out = env.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("endless.ndjson record 0: line 1: record larger than 16 MiB"),
            "{err}"
        );
        assert!(
            err.contains("1 invalid records; nothing was imported"),
            "{err}"
        );
    }
    // A CSV record whose quote never closes, and a JSON array element with no end, likewise.
    let csv = env.path("endless.csv");
    {
        let mut f = std::fs::File::create(&csv).unwrap();
        f.write_all(
            b"conn_id,agent_id,from,to,date,body\nc1,7,a@x.co,b@y.co,2026-10-01 08:00:00,\"",
        )
        .unwrap();
        f.write_all(&vec![b'a'; 20 << 20]).unwrap();
    }
    let out = env.run(&["import", "--operation", "acme", csv.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("endless.csv record 0: line 2: record larger than 16 MiB"),
        "{err}"
    );
    let arr = env.path("endless.json");
    {
        let mut f = std::fs::File::create(&arr).unwrap();
        f.write_all(b"[{\"body\":\"").unwrap();
        f.write_all(&vec![b'a'; 20 << 20]).unwrap();
    }
    let out = env.run(&["import", "--operation", "acme", arr.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("endless.json record 0: "), "{err}");
    let count = rusqlite::Connection::open(env.path("voxtrail.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM interactions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(count, 0);
}

// ---------------------------------------------------------------------------------------------
// One `serve` per SQLite database.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_serve_on_one_sqlite_file_is_refused_naming_the_first() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let first = env.serve(None);
    let pid = first.child.id();
    let out = env
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        out.stdout.is_empty(),
        "the second server listened: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("already served by another voxtrail serve"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(
        err.contains(&format!("listening on http://{}", first.addr)),
        "{err}"
    );
    // So is `demo` on the same database.
    let out = env
        .cmd()
        .args(["demo", "--rows", "1", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("pid {pid}")));
    // Other commands keep working while it serves.
    env.ok(&["token", "create", "--operation", "acme"]);
    env.import_ndjson("acme", &record("r1", "2026-10-01 08:00:00"));
    env.ok(&[
        "seed",
        "--operation",
        "acme",
        "--count",
        "5",
        "--until",
        "20261001000000",
    ]);
    env.ok(&["operation", "list"]);
    // Once it stops, a new server starts; so it does after a SIGKILLed one (the lock file
    // stays, the lock dies with its process).
    assert!(first.terminate().success());
    let mut second = env.serve(None);
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    assert!(env.path("voxtrail.db.lock").exists());
    // Spawning waits for the listening line: the third server is up (dropping it kills it).
    let _third = env.serve(None);
}

/// PostgreSQL replicas are not concerned: two servers share one database.
#[test]
fn two_serves_share_a_postgresql_database() {
    let Some(db) = TestDatabase::create("two_serves") else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    let a = env.serve(None);
    let b = env.serve(None);
    assert_ne!(a.addr, b.addr);
}
