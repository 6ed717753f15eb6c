//! Several `voxtrail serve` replicas sharing one PostgreSQL database (docs/operations.md,
//! docs/adr/0003-limits-in-postgres.md): every limit holds across them. Each test runs real
//! processes on their own ports against a fresh database that is dropped afterwards. Without a
//! reachable PostgreSQL these tests say so on stderr and pass (skipped); with `CI=true` they fail.

mod common;

use std::time::Duration;

use common::*;
use voxtrail_server::store::testing::TestDatabase;

const REPORT: &str = "/api/v2/reports_manager.php";
const BIG_UNTIL: &str = "20261001235959";
const BIG_INI: &str = "20260930000000";
/// ~25 MB of answer: far more than socket buffers and the producer's channel hold.
const BIG_ROWS: u64 = 10_000;
const EMPTY_INI: &str = "20250101000000";
const EMPTY_END: &str = "20250101000100";
const SIMULTANEOUS_2: &str = "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)";

/// A fresh PostgreSQL database and an `Env` pointing at it; `None` when skipped.
fn pg_env(label: &str) -> Option<(Env, TestDatabase)> {
    let db = TestDatabase::create(label)?;
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    Some((env, db))
}

fn forbidden(msg: &str) -> String {
    error_json(403, "FORBIDDEN", msg)
}

async fn get(url: &str, token: &str) -> (u16, String) {
    let resp = plain_client()
        .get(url)
        .header("wolkvox-token", token)
        .send()
        .await
        .expect("sending request");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, body)
}

async fn small(server: &Server, token: &str) -> (u16, String) {
    get(&server.report_url(EMPTY_INI, EMPTY_END), token).await
}

fn big_target() -> String {
    format!("{REPORT}?api=chat_12&date_ini={BIG_INI}&date_end={BIG_UNTIL}")
}

/// Two slow answers on replica A hold both slots of the token: replica B refuses a third
/// request, and frees up as soon as one of A's clients goes away.
#[tokio::test(flavor = "multi_thread")]
async fn slots_held_on_one_replica_are_seen_by_another() {
    let Some((env, _db)) = pg_env("slots_across") else {
        return;
    };
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS, BIG_UNTIL, 1);
    let token = env.token("big", "report", None);
    let other = env.token("big", "report", None);
    let a = env.serve(None);
    let b = env.serve(None);
    assert_ne!(a.addr, b.addr);

    let slow1 = slow_get(&a.addr, &big_target(), &token, 4096).await;
    let slow2 = slow_get(&a.addr, &big_target(), &token, 4096).await;
    for s in [&slow1, &slow2] {
        assert_eq!(s.status, 200, "{}", s.head);
    }
    let (status, body) = small(&b, &token).await;
    assert_eq!((status, body), (403, forbidden(SIMULTANEOUS_2)), "on B");
    let (status, body) = small(&a, &token).await;
    assert_eq!((status, body), (403, forbidden(SIMULTANEOUS_2)), "on A");
    assert_eq!(small(&b, &other).await.0, 200, "other tokens are free");

    drop(slow1); // the client goes away: A's body is dropped, its slot freed in the database
    assert!(
        eventually(Duration::from_secs(10), async || small(&b, &token).await.0
            == 200)
        .await,
        "B gets the slot A released"
    );
    drop(slow2);
}

/// A daily limit of 5 used from both replicas: the 6th request is refused wherever it lands.
/// Rows ingested through one replica are served by the other.
#[tokio::test(flavor = "multi_thread")]
async fn the_daily_limit_is_shared_and_data_flows_between_replicas() {
    let Some((env, _db)) = pg_env("daily_across") else {
        return;
    };
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", Some(5));
    let ingest = env.token("acme", "ingest", None);
    let a = env.serve(None);
    let b = env.serve(None);

    let ndjson = format!(
        "{}\n{}\n",
        record("r1", "2026-10-01 08:00:00"),
        record("r2", "2026-10-01 09:00:00")
    );
    let resp = plain_client()
        .post(b.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let mut statuses = Vec::new();
    for (i, server) in [&a, &b, &a, &b, &b].into_iter().enumerate() {
        let (status, body) = get(
            &server.report_url("20261001000000", "20261001235959"),
            &token,
        )
        .await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(json(body.as_bytes())["msg"], "2 records were found");
        statuses.push(status);
    }
    for server in [&a, &b] {
        let (status, body) = small(server, &token).await;
        assert_eq!((status, body), (403, forbidden("TOKEN LIMIT EXCEEDED")));
    }
    let info = get(&a.url("/api/v2/information.php?api=token_info"), &token).await;
    assert_eq!(info, (403, forbidden("TOKEN LIMIT EXCEEDED")));
}

/// A replica killed with SIGKILL while two of its answers hold a token's slots does not keep
/// them: its database sessions end and the other replica can serve the token again.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replica_does_not_keep_its_slots() {
    let Some((env, _db)) = pg_env("sigkill_slots") else {
        return;
    };
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS, BIG_UNTIL, 1);
    let token = env.token("big", "report", None);
    let mut a = env.serve(None);
    let b = env.serve(None);
    let slow1 = slow_get(&a.addr, &big_target(), &token, 4096).await;
    let slow2 = slow_get(&a.addr, &big_target(), &token, 4096).await;
    assert_eq!((slow1.status, slow2.status), (200, 200));
    assert_eq!(small(&b, &token).await.0, 403);

    a.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    a.child.wait().expect("reaping");
    assert!(
        eventually(Duration::from_secs(15), async || small(&b, &token).await.0
            == 200)
        .await,
        "the killed replica's slots were freed"
    );
    // Both slots are free again: two slow answers fit on B.
    let s1 = slow_get(&b.addr, &big_target(), &token, 4096).await;
    let s2 = slow_get(&b.addr, &big_target(), &token, 4096).await;
    assert_eq!((s1.status, s2.status), (200, 200));
    drop((slow1, slow2, s1, s2));
}

/// Replicas starting together on an empty database apply the migrations once, without racing.
#[test]
fn concurrent_migrations_do_not_race() {
    let Some((env, _db)) = pg_env("migrate_race") else {
        return;
    };
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd()
                .arg("migrate")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawning migrate")
        })
        .collect();
    let mut versions = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        versions.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    // Every replica ends at the same, latest version (a later `migrate` has nothing to do).
    let latest = env.ok(&["migrate"]);
    assert!(
        latest.starts_with("database schema at version "),
        "{latest}"
    );
    assert!(
        versions.iter().all(|v| v == latest.trim()),
        "{versions:?} vs {latest}"
    );
    env.operation("acme", "America/Bogota");
    assert!(env.ok(&["operation", "list"]).contains("acme"));
}

/// Two clients of one token, each sending its next request as soon as the previous answer
/// ends, alternating replicas: never more than 2 in flight, so never a 403 — a finished
/// answer's slot is free in the database before its last byte reaches the client.
#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_requests_never_find_their_own_slot_held() {
    let Some((env, _db)) = pg_env("back_to_back") else {
        return;
    };
    env.operation("acme", "America/Bogota");
    env.import_ndjson(
        "acme",
        &format!("{}\n", record("r1", "2026-10-01 08:00:00")),
    );
    let token = env.token("acme", "report", None);
    let a = env.serve(None);
    let b = env.serve(None);
    let urls = [
        a.report_url("20261001000000", "20261001235959"),
        b.url("/api/v2/information.php?api=token_info"),
        b.report_url("20261001000000", "20261001235959"),
        a.url("/api/v2/information.php?api=token_info"),
    ];
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (urls, token) = (urls.clone(), token.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let (status, body) = get(&urls[(i + c) % urls.len()], &token).await;
                    assert_eq!(status, 200, "client {c} request {i}: {body}");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
}

/// PostgreSQL going away under a running replica: report, token_info and ingestion requests
/// get 503 THE DATABASE CANNOT BE REACHED with `Retry-After` (never a 500, never a hang), the
/// replica stays up, and it serves again on its own once the database is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_database_answers_503_and_the_replica_recovers() {
    let Some((env, db)) = pg_env("db_lost") else {
        return;
    };
    env.operation("acme", "America/Bogota");
    env.import_ndjson(
        "acme",
        &format!("{}\n", record("r1", "2026-10-01 08:00:00")),
    );
    let token = env.token("acme", "report", None);
    let ingest = env.token("acme", "ingest", None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    assert_eq!(get(&url, &token).await.0, 200);

    db.set_accepting(false);
    let unavailable = error_json(
        503,
        "SERVICE UNAVAILABLE",
        "THE DATABASE CANNOT BE REACHED; RETRY SHORTLY",
    );
    let info = server.url("/api/v2/information.php?api=token_info");
    for _ in 0..3 {
        for target in [&url, &info] {
            let resp = plain_client()
                .get(target.as_str())
                .header("wolkvox-token", &token)
                .send()
                .await
                .expect("the replica answers");
            assert_eq!(resp.status().as_u16(), 503, "{target}");
            assert_eq!(resp.headers()["retry-after"], "5");
            assert_eq!(resp.text().await.unwrap(), unavailable);
        }
    }
    let posted = plain_client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(format!("{}\n", record("r2", "2026-10-01 09:00:00")))
        .send()
        .await
        .expect("the replica answers");
    assert_eq!(posted.status().as_u16(), 503);
    assert!(
        server.logs().contains("database unavailable"),
        "the cause is logged"
    );

    db.set_accepting(true);
    assert!(
        eventually(Duration::from_secs(10), async || get(&url, &token).await.0
            == 200)
        .await,
        "the replica serves again once the database is back"
    );
    // Every request from now on is served: no connection lost with the database is reused
    // (each would cost one more 503 after the database is back).
    for _ in 0..8 {
        let (status, body) = get(&url, &token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(body.as_bytes())["data"].as_array().unwrap().len(), 1);
    }
    let posted = plain_client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(format!("{}\n", record("r3", "2026-10-01 10:00:00")))
        .send()
        .await
        .expect("the replica answers");
    assert!(posted.status().is_success(), "{}", posted.status());
    let ready = plain_client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

/// Clients that vanish while their request is being admitted (connection closed right after
/// the request is sent, at many different moments) never leave a slot held: afterwards two
/// slow answers of the token are admitted at once, one per replica, and a third is refused.
#[tokio::test(flavor = "multi_thread")]
async fn requests_abandoned_during_admission_leave_no_slot_held() {
    use tokio::io::AsyncWriteExt as _;
    let Some((env, _db)) = pg_env("abandoned") else {
        return;
    };
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS, BIG_UNTIL, 1);
    let token = env.token("big", "report", None);
    let a = env.serve(None);
    let b = env.serve(None);
    for (i, server) in (0..300u64).zip([&a, &b].into_iter().cycle()) {
        let target = format!("{REPORT}?api=chat_12&date_ini={EMPTY_INI}&date_end={EMPTY_END}");
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nwolkvox-token: {token}\r\n\r\n",
            server.addr
        );
        let mut s = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        // Vanish after 0–150 µs: before, during or after the admission statement.
        tokio::time::sleep(Duration::from_micros(i / 2)).await;
        drop(s);
    }
    // Abandoned requests that were admitted release their slots within moments.
    let mut held = Vec::new();
    for server in [&a, &b] {
        let mut got = None;
        for _ in 0..200 {
            let c = slow_get(&server.addr, &big_target(), &token, 4096).await;
            if c.status == 200 {
                got = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        held.push(got.expect("a slot stayed held after abandoned requests"));
    }
    let (status, body) = small(&a, &token).await;
    assert_eq!(
        (status, body),
        (403, forbidden(SIMULTANEOUS_2)),
        "exactly two slots"
    );
    drop(held);
}
