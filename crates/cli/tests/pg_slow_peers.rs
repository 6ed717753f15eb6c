//! On PostgreSQL, one tenant's slow peers (readers that stop reading a big answer, uploads that
//! stall mid-body) must not stall another tenant; a lock keeper that loses its session fails
//! its requests closed and reconnects; a read-only database is answered 503 with
//! `Retry-After`, and writes resume once it is writable, without a restart
//! (docs/adr/0004-lock-keeper.md, docs/api.md's error table). Real processes, real HTTP, a
//! fresh database per test; without a reachable PostgreSQL these tests are skipped (see
//! `replicas.rs`).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use voxtrail_server::store::testing::TestDatabase;

const REPORT: &str = "/api/v2/reports_manager.php";
const INGEST: &str = "/api/v2/interactions";
const BIG_UNTIL: &str = "20261001235959";
const BIG_INI: &str = "20260930000000";
const BIG_ROWS: u64 = 10_000;
/// An upper bound far above a healthy answer and far below the 30 s a stalled pool costs.
const PROMPT: Duration = Duration::from_secs(5);

fn pg_env(label: &str) -> Option<(Env, TestDatabase)> {
    let db = TestDatabase::create(label)?;
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    Some((env, db))
}

fn big_target() -> String {
    format!("{REPORT}?api=chat_12&date_ini={BIG_INI}&date_end={BIG_UNTIL}")
}

/// A GET answered within [`PROMPT`]; never a 500.
async fn prompt_get(url: &str, token: &str) -> (u16, String, Option<String>) {
    let sent = plain_client()
        .get(url)
        .header("wolkvox-token", token)
        .send();
    let resp = tokio::time::timeout(PROMPT, sent)
        .await
        .unwrap_or_else(|_| panic!("no answer within {PROMPT:?}: {url}"))
        .expect("sending request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, body, retry)
}

/// A POST of NDJSON answered within [`PROMPT`]; never a 500.
async fn prompt_post(server: &Server, token: &str, ndjson: String) -> (u16, String) {
    let sent = plain_client()
        .post(server.url(INGEST))
        .header("wolkvox-token", token)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send();
    let resp = tokio::time::timeout(PROMPT, sent)
        .await
        .unwrap_or_else(|_| panic!("no ingestion answer within {PROMPT:?}"))
        .expect("sending request");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, body)
}

/// An upload that announces `len` bytes, sends one, and then stalls (the connection stays open
/// while the returned stream lives).
async fn stalled_upload(addr: &str, token: &str, len: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let head = format!(
        "POST {INGEST} HTTP/1.1\r\nHost: {addr}\r\nwolkvox-token: {token}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {len}\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.expect("sending head");
    s
}

/// 8 report tokens × 2 readers that stop reading a 25 MB answer, and 8 ingestion tokens × 2
/// uploads stalled after one byte of 100 KB, all of one operation: another operation's poll,
/// its larger window and its ingestion are still answered promptly. (Before the lock keeper
/// every in-flight request held one of the 16 lock connections, and the poll waited 30 s for
/// `503 THE DATABASE IS BUSY`.)
#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_slow_peers_do_not_stall_another_tenant() {
    let Some((env, db)) = pg_env("slow_peers") else {
        return;
    };
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS, BIG_UNTIL, 1);
    env.operation("calm", "America/Bogota");
    env.seed("calm", 2_000, BIG_UNTIL, 1);
    let readers: Vec<String> = (0..8).map(|_| env.token("big", "report", None)).collect();
    let writers: Vec<String> = (0..8).map(|_| env.token("big", "ingest", None)).collect();
    let calm = env.token("calm", "report", None);
    let calm_writer = env.token("calm", "ingest", None);
    let server = env.serve(None);

    let mut slow = Vec::new();
    for t in &readers {
        for _ in 0..2 {
            // One body byte: a refusal's body is short, and its connection stays open.
            slow.push(slow_get(&server.addr, &big_target(), t, 1).await);
        }
    }
    // Past its operation's share of the report pool a reader is refused at once ("busy"),
    // instead of holding the last report connections.
    let streaming = slow.iter().filter(|s| s.status == 200).count();
    for s in &slow {
        assert!(
            s.status == 200
                || (s.status == 503 && s.head.to_ascii_lowercase().contains("retry-after")),
            "{}",
            s.head
        );
    }
    assert!(
        streaming >= 8,
        "only {streaming} slow readers were answered"
    );
    let mut stalled = Vec::new();
    for t in &writers {
        for _ in 0..2 {
            stalled.push(stalled_upload(&server.addr, t, 100_000).await);
        }
    }
    // Every streaming reader and every stalled upload holds its token's slot (seen in the
    // database, which a probe request would disturb); then a third upload of a token is refused.
    let held = (streaming + stalled.len()) as i64;
    assert!(
        eventually(Duration::from_secs(30), async || db.advisory_locks()
            == held)
        .await,
        "{} slots held, not {held}",
        db.advisory_locks()
    );
    let (status, body) =
        prompt_post(&server, &writers[7], record("x", "2026-10-01 12:00:00")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SIMULTANEOUS"), "{body}");

    // Another tenant: a poll, a larger window (a streamed answer) and an upload.
    for _ in 0..5 {
        let (status, body, _) = prompt_get(
            &server.url(&format!(
                "{REPORT}?api=chat_12&date_ini=20261001120000&date_end=20261001120500"
            )),
            &calm,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _) = prompt_get(&server.url(&big_target()), &calm).await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    assert_eq!(
        json(body.as_bytes())["data"].as_array().map(Vec::len),
        Some(2_000)
    );
    let (status, body) = prompt_post(
        &server,
        &calm_writer,
        record("calm-1", "2026-10-01 12:00:00"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drop(slow);
    drop(stalled);
}

/// The session of a lock keeper ends (killed by an administrator, a network cut): PostgreSQL
/// frees every slot it held, so the answers those slots covered are cut rather than finished
/// beyond the limit; the keeper reconnects and the limit is exact again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_keeper_session_cuts_its_answers_and_reconnects() {
    let Some((env, db)) = pg_env("keeper_lost") else {
        return;
    };
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS, BIG_UNTIL, 1);
    let token = env.token("big", "report", None);
    let server = env.serve(None);

    let writer = env.token("big", "ingest", None);
    let line = format!("{}\n", record("late-1", "2026-10-01 12:00:00"));
    let mut upload = stalled_upload(&server.addr, &writer, line.len()).await;
    let mut cut = slow_get(&server.addr, &big_target(), &token, 4096).await;
    assert_eq!(cut.status, 200, "{}", cut.head);
    let full: usize = cut
        .head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    assert!(
        db.terminate_sessions_of("voxtrail-locks") >= 1,
        "no keeper session found"
    );

    // The answer ends early: its slot is gone.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), cut.stream.read_to_end(&mut rest))
        .await
        .expect("the cut answer ends");
    let total = cut.body_read + rest.len();
    assert!(
        read.is_err() || total < full,
        "the answer went on to its end ({total} of {full} bytes) without a slot"
    );

    // The upload whose slot was lost while its body arrived is refused, nothing stored.
    upload
        .write_all(&line.as_bytes()[1..])
        .await
        .expect("sending the rest of the body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PROMPT, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = upload.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("THE DATABASE CANNOT BE REACHED"),
        "{answer}"
    );

    // A new session: both slots can be taken again, and not a third.
    let a = slow_get(&server.addr, &big_target(), &token, 4096).await;
    let b = slow_get(&server.addr, &big_target(), &token, 4096).await;
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.head, b.head);
    let (status, body, _) = prompt_get(&server.url(&big_target()), &token).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SIMULTANEOUS"), "{body}");
}

/// The database becomes read-only under a running server (a failover onto a standby, or
/// `default_transaction_read_only`): polls and ingestion are answered 503 with `Retry-After` and
/// their own message, never 500; once it is writable again they succeed, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_503_until_writable_again() {
    let Some((env, db)) = pg_env("read_only") else {
        return;
    };
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("r-1", "2026-10-01 12:01:00"));
    let reader = env.token("acme", "report", None);
    let writer = env.token("acme", "ingest", None);
    let server = env.serve(None);
    let poll = server.url(&format!(
        "{REPORT}?api=chat_12&date_ini=20261001120000&date_end=20261001120500"
    ));
    let (status, body, _) = prompt_get(&poll, &reader).await;
    assert_eq!(status, 200, "{body}");

    db.set_read_only(true);
    let read_only = error_json(
        503,
        "SERVICE UNAVAILABLE",
        "THE DATABASE IS READ-ONLY; RETRY LATER",
    );
    // The first requests may still find the sessions the failover ended ("cannot be reached").
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (status, body, retry) = prompt_get(&poll, &reader).await;
            status == 503 && body == read_only && retry.as_deref() == Some("30")
        })
        .await,
        "polls on a read-only database are not 503 READ-ONLY"
    );
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (status, body) =
                prompt_post(&server, &writer, record("w-1", "2026-10-01 12:02:00")).await;
            status == 503 && body == read_only
        })
        .await,
        "ingestion on a read-only database is not 503 READ-ONLY"
    );

    db.set_read_only(false);
    assert!(
        eventually(Duration::from_secs(20), async || {
            prompt_get(&poll, &reader).await.0 == 200
        })
        .await,
        "polls did not recover once the database was writable"
    );
    assert!(
        eventually(Duration::from_secs(20), async || {
            prompt_post(&server, &writer, record("w-1", "2026-10-01 12:02:00"))
                .await
                .0
                == 200
        })
        .await,
        "ingestion did not recover once the database was writable"
    );
    let (status, body, _) = prompt_get(&poll, &reader).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(body.as_bytes())["data"].as_array().map(Vec::len),
        Some(2)
    );
}
