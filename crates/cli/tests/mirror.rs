//! End-to-end tests of mirrors (docs/api.md, "Mirrors") through the real binary and real
//! HTTP: `voxtrail mirror set/list/remove/run` against the fault-injecting fake of the hosted
//! API and against a second `voxtrail serve`; `serve` running mirrors itself; writes refused;
//! the checkpoint header and the metrics. Every copy is compared with the upstream rows,
//! normalised to the report's shape: same conn_ids, same contents, no duplicates.

mod common;
#[path = "../../client/tests/fake/mod.rs"]
mod fake;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use common::{Env, Server, client, eventually, record};
use fake::{Fake, FakeRow, Fault, Mode, spread};
use serde_json::Value;

/// `voxtrail mirror set` with the upstream token in the environment.
fn mirror_set(env: &Env, op: &str, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "mirror",
        "set",
        "--operation",
        op,
        "--url",
        url,
        "--timezone",
        "UTC",
    ];
    args.extend_from_slice(extra);
    env.cmd()
        .args(&args)
        .env("VOXTRAIL_UPSTREAM_TOKEN", "upstream-secret-token")
        .output()
        .unwrap()
}

/// Runs a blocking command off the test's runtime (the fake answers on it).
async fn off<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// An upstream row as the mirror must store it: the eleven fields, in order, strings.
fn normalised(r: &FakeRow) -> Value {
    let mut o = serde_json::Map::new();
    for f in voxtrail_wire::CHAT_12_FIELDS {
        o.insert(f.to_string(), Value::String(r.get(f).to_owned()));
    }
    Value::Object(o)
}

fn by_conn_id(rows: &[Value]) -> BTreeMap<String, Value> {
    let map: BTreeMap<String, Value> = rows
        .iter()
        .map(|r| (r["conn_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(map.len(), rows.len(), "duplicates in the copy");
    map
}

/// The §2 answer's rows for a window, and its checkpoint header.
async fn report(
    server: &Server,
    token: &str,
    ini: &str,
    end: &str,
) -> (Vec<Value>, Option<String>) {
    let resp = client()
        .get(server.report_url(ini, end))
        .header("wolkvox-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cp = resp
        .headers()
        .get("x-voxtrail-mirror-checkpoint")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    (body["data"].as_array().cloned().unwrap_or_default(), cp)
}

fn expected(fake: &Fake, ini: &str, end: &str) -> BTreeMap<String, Value> {
    let rows: Vec<Value> = fake
        .rows()
        .iter()
        .filter(|r| {
            let w: String = r.get("date").chars().filter(char::is_ascii_digit).collect();
            w.as_str() >= ini && w.as_str() <= end
        })
        .map(normalised)
        .collect();
    by_conn_id(&rows)
}

fn list(env: &Env) -> String {
    env.ok(&["mirror", "list"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_copies_exactly_upserts_changes_and_refuses_writes() {
    let mut rows = spread("m", 200, "2026-05-01 00:00:00", 1_500);
    rows.extend(spread("burst", 30, "2026-05-02 12:00:00", 0));
    let fake = Fake::start(
        rows,
        Mode {
            cap: Some(40),
            refuse: true,
            quirks: true,
        },
    )
    .await;
    fake.script([
        Fault::Status500,
        Fault::Reset,
        Fault::Simultaneous,
        Fault::Slow(Duration::from_millis(200)),
        Fault::BadGateway,
    ]);
    let env = Env::new();
    let out = mirror_set(
        &env,
        "acme",
        &fake.url(),
        &["--since", "20260430000000", "--window", "1d"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Never the token, in list or in the database dump's printed forms.
    let line = list(&env);
    assert!(
        line.starts_with(&format!("acme\t{}\t-\t-\t0\t0\t-", fake.url())),
        "{line}"
    );
    assert!(!line.contains("upstream-secret-token"));

    let e = env_clone(&env);
    let out = off(move || run_once(&e, "acme")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.script_left(), 0, "every fault was met and survived");
    assert!(fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 1);
    let line = list(&env);
    let cols: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(cols[4], "230", "{line}");
    assert_eq!((cols[5], cols[6]), ("0", "-"), "{line}");

    // A late row, a changed row: the next run inserts one and replaces one in place.
    fake.add_rows([FakeRow::chat12("late", "2026-05-01 00:00:30", true)]);
    let mut changed = FakeRow::chat12("m3", "2026-05-01 01:15:00", false);
    changed.fields[7].1 = "edited upstream".into();
    fake.upsert_row(changed);
    let e = env_clone(&env);
    let out = off(move || run_once(&e, "acme")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The lookback (15m) does not reach back to 2026-05-01: make the mirror start over by
    // moving `since` (rows stay, the copy is upserted, nothing duplicated).
    let out = mirror_set(
        &env,
        "acme",
        &fake.url(),
        &["--since", "20260430000001", "--window", "1d"],
    );
    assert!(out.status.success());
    let e = env_clone(&env);
    let out = off(move || run_once(&e, "acme")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cols: Vec<String> = list(&env)
        .trim_end()
        .split('\t')
        .map(str::to_owned)
        .collect();
    assert_eq!(
        (cols[4].as_str(), cols[5].as_str()),
        ("231", "1"),
        "{cols:?}"
    );

    // Read through §2 with a local token: exactly the upstream rows, several windows.
    let token = env.token("acme", "report", None);
    let ingest = env.token("acme", "ingest", None);
    let server = env.serve(None);
    for (ini, end) in [
        ("20260430000000", "20260505000000"),
        ("20260501000000", "20260501235959"),
        ("20260502120000", "20260502120000"),
        ("20260501011500", "20260501011500"),
    ] {
        let (got, cp) = report(&server, &token, ini, end).await;
        assert_eq!(by_conn_id(&got), expected(&fake, ini, end), "{ini}..{end}");
        let cp = cp.expect("a mirrored operation carries its checkpoint");
        assert_eq!(cp.len(), 14, "{cp}");
    }
    let (got, _) = report(&server, &token, "20260501011500", "20260501011500").await;
    assert_eq!(got[0]["body"], "edited upstream");

    // Writes by anything else are refused.
    let resp = client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(record("local-1", "2026-05-01 10:00:00"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "CONFLICT");
    assert_eq!(
        body["msg"],
        "THE OPERATION IS A MIRROR; WRITE TO ITS SOURCE"
    );
    let out = env.run_stdin(
        &["import", "--operation", "acme", "-"],
        record("local-2", "2026-05-01 10:00:00").as_bytes(),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("THE OPERATION IS A MIRROR; WRITE TO ITS SOURCE")
    );

    // The metrics name the mirror.
    let metrics_ok = eventually(Duration::from_secs(10), async || {
        let text = client()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("voxtrail_mirror_checkpoint_lag_seconds{operation=\"acme\"}")
            && text
                .contains("voxtrail_mirror_rows_total{operation=\"acme\",outcome=\"inserted\"} 231")
            && text.contains("voxtrail_mirror_rows_total{operation=\"acme\",outcome=\"updated\"} 1")
            && text.contains("voxtrail_mirror_errors_total{operation=\"acme\"}")
    })
    .await;
    assert!(metrics_ok);

    // Removed: writes are accepted again, and the rows stay.
    env.ok(&["mirror", "remove", "--operation", "acme"]);
    assert_eq!(list(&env), "");
    let (got, _) = report(&server, &token, "20260430000000", "20260505000000").await;
    assert_eq!(got.len(), 231);
}

/// `Env` holds a temporary directory; tests hand a copy of its paths to blocking tasks.
fn env_clone(env: &Env) -> EnvRef {
    EnvRef {
        db_url: env.db_url.clone(),
    }
}

struct EnvRef {
    db_url: String,
}

impl EnvRef {
    fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(common::bin());
        c.env("VOXTRAIL_DATABASE_URL", &self.db_url);
        c.env_remove("VOXTRAIL_LOG");
        c
    }
}

/// Name and nice value of every thread of a process.
#[cfg(target_os = "linux")]
fn thread_priorities(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the command's closing parenthesis: state is field 3, nice field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = after.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm.trim().to_owned(), nice));
    }
    out
}

fn run_once(env: &EnvRef, op: &str) -> Output {
    env.cmd()
        .args(["mirror", "run", "--operation", op, "--once"])
        .env("VOXTRAIL_MIRROR_BACKOFF_MS", "10")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_mirrors_picks_up_changes_and_halts_on_a_refused_token() {
    // Rows of the last hours (UTC): the lookback re-reads them every cycle.
    let t0 = chrono::Utc::now().naive_utc() - chrono::Duration::hours(2);
    let fmt = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let compact = |t: chrono::NaiveDateTime| t.format("%Y%m%d%H%M%S").to_string();
    let (ini, end) = (
        compact(t0 - chrono::Duration::hours(1)),
        compact(t0 + chrono::Duration::hours(3)),
    );
    let since = compact(t0 - chrono::Duration::minutes(1));
    let fake = Fake::start(
        spread("s", 50, &fmt(t0), 60),
        Mode {
            quirks: true,
            ..Mode::default()
        },
    )
    .await;
    let env = Env::new();
    env.operation("other", "UTC");
    let token_other = env.token("other", "report", None);
    let server = env.serve(None);
    // Defined while serve runs: picked up within 10 s.
    let out = mirror_set(
        &env,
        "live",
        &fake.url(),
        &["--since", &since, "--every", "1s", "--lookback", "3h"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = env.token("live", "report", None);
    let copied = eventually(Duration::from_secs(12), async || {
        let (got, _) = report(&server, &token, &ini, &end).await;
        got.len() == 50
    })
    .await;
    assert!(
        copied,
        "serve did not run the new mirror: {}",
        server.logs()
    );
    // The mirror ran on its own threads, at a lower scheduling priority than the threads
    // that answer reports (Linux: nice values are per thread, in /proc).
    #[cfg(target_os = "linux")]
    {
        let threads = thread_priorities(server.child.id());
        let mirror: Vec<i64> = threads
            .iter()
            .filter(|(name, _)| name == "voxtrail-mirror")
            .map(|(_, nice)| *nice)
            .collect();
        assert!(!mirror.is_empty(), "no mirror thread: {threads:?}");
        assert!(mirror.iter().all(|n| *n == 19), "{threads:?}");
        // The server's runtime workers and the report readers keep theirs.
        let report_threads: Vec<i64> = threads
            .iter()
            .filter(|(name, _)| name.starts_with("tokio-") || name == "voxtrail-reader")
            .map(|(_, nice)| *nice)
            .collect();
        assert!(!report_threads.is_empty(), "{threads:?}");
        assert!(report_threads.iter().all(|n| *n == 0), "{threads:?}");
    }
    // Rows changed and added upstream arrive with the next cycles.
    fake.add_rows([FakeRow::chat12(
        "new",
        &fmt(t0 + chrono::Duration::minutes(70)),
        true,
    )]);
    let mut changed = FakeRow::chat12("s1", &fmt(t0 + chrono::Duration::minutes(1)), true);
    changed.fields[6].1 = "subject changed".into();
    fake.upsert_row(changed);
    let caught_up = eventually(Duration::from_secs(12), async || {
        let (got, _) = report(&server, &token, &ini, &end).await;
        by_conn_id(&got) == expected(&fake, &ini, &end)
    })
    .await;
    assert!(caught_up);
    // A non-mirrored operation carries no checkpoint header.
    let (_, cp) = report(&server, &token_other, &ini, &end).await;
    assert_eq!(cp, None);

    // The upstream refuses the token: the mirror halts with the error shown.
    fake.always(Some(Fault::InvalidToken));
    let halted = eventually(Duration::from_secs(12), async || {
        let e = env_clone(&env);
        let line = off(move || {
            let out = e.cmd().args(["mirror", "list"]).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .await;
        line.contains("PLEASE VALIDATE TOKEN")
    })
    .await;
    assert!(halted, "{}", list(&env));
    let requests = fake.requests.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        requests,
        "a halted mirror asks nothing more"
    );
    // `mirror set` again: the error is cleared and the mirror runs again.
    fake.always(None);
    fake.add_rows([FakeRow::chat12(
        "after-halt",
        &fmt(t0 + chrono::Duration::minutes(80)),
        false,
    )]);
    let out = mirror_set(
        &env,
        "live",
        &fake.url(),
        &["--since", &since, "--every", "1s", "--lookback", "3h"],
    );
    assert!(out.status.success());
    let resumed = eventually(Duration::from_secs(12), async || {
        let (got, _) = report(&server, &token, &ini, &end).await;
        got.len() == 52
    })
    .await;
    assert!(resumed);
    assert!(list(&env).trim_end().ends_with("\t-"), "{}", list(&env));
    assert!(fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 1);
    // A clean stop while mirroring.
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_another_voxtrail_is_byte_exact() {
    // The upstream: a voxtrail with rows imported the ordinary way.
    let up = Env::new();
    up.operation("src", "UTC");
    let mut ndjson = String::new();
    for i in 0..120 {
        let date = format!("2026-06-0{} {:02}:{:02}:00", 1 + i % 3, i % 24, i % 60);
        ndjson.push_str(&record(&format!("u{i}"), &date));
        ndjson.push('\n');
    }
    up.import_ndjson("src", &ndjson);
    let up_token = up.token("src", "report", None);
    let upstream = up.serve(None);

    let down = Env::new();
    let token_file = down.path("upstream.token");
    std::fs::write(&token_file, format!("{up_token}\n")).unwrap();
    let out = down
        .cmd()
        .args([
            "mirror",
            "set",
            "--operation",
            "copy",
            "--url",
            &upstream.url(""),
            "--since",
            "20260601000000",
            "--window",
            "6h",
            "--timezone",
            "UTC",
            "--token-file",
        ])
        .arg(&token_file)
        .env_remove("VOXTRAIL_UPSTREAM_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = env_clone(&down);
    let out = off(move || run_once(&e, "copy")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!list(&down).contains(&up_token));
    let token = down.token("copy", "report", None);
    let downstream = down.serve(None);
    for (ini, end) in [
        ("20260601000000", "20260603235959"),
        ("20260602000000", "20260602120000"),
    ] {
        let a = client()
            .get(upstream.report_url(ini, end))
            .header("wolkvox-token", &up_token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let b = client()
            .get(downstream.report_url(ini, end))
            .header("wolkvox-token", &token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "{ini}..{end}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_commands_refuse_bad_input_and_never_take_the_token_as_a_flag() {
    let env = Env::new();
    // No token anywhere.
    let out = env
        .cmd()
        .args([
            "mirror",
            "set",
            "--operation",
            "x",
            "--url",
            "http://127.0.0.1:9",
            "--since",
            "20260101000000",
        ])
        .env_remove("VOXTRAIL_UPSTREAM_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VOXTRAIL_UPSTREAM_TOKEN"));
    // A --token flag does not exist.
    let out = env.run(&[
        "mirror",
        "set",
        "--operation",
        "x",
        "--url",
        "http://127.0.0.1:9",
        "--since",
        "20260101000000",
        "--token",
        "t",
    ]);
    assert!(!out.status.success());
    for (extra, text) in [
        (vec!["--since", "2026"], "--since"),
        (
            vec!["--since", "20260101000000", "--every", "0s"],
            "--every",
        ),
        (
            vec!["--since", "20260101000000", "--window", "soon"],
            "--window",
        ),
    ] {
        let out = mirror_set(&env, "x", "http://127.0.0.1:9", &extra);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(text),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = mirror_set(&env, "x", "ftp://nope", &["--since", "20260101000000"]);
    assert!(!out.status.success());
    // An empty or multi-word token file is refused.
    let f = env.path("t");
    std::fs::write(&f, "\n").unwrap();
    let out = env
        .cmd()
        .args([
            "mirror",
            "set",
            "--operation",
            "x",
            "--server",
            "123",
            "--since",
            "20260101000000",
            "--token-file",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    // Nothing was defined by the refusals; unknown operations are said so.
    assert_eq!(list(&env), "");
    assert!(
        !env.run(&["mirror", "remove", "--operation", "x"])
            .status
            .success()
    );
    assert!(
        !env.run(&["mirror", "run", "--operation", "x", "--once"])
            .status
            .success()
    );
    // A token refused upstream: `run --once` fails and the error is listed.
    let fake = Fake::start(Vec::new(), Mode::default()).await;
    fake.always(Some(Fault::Unauthorized));
    assert!(
        mirror_set(&env, "y", &fake.url(), &["--since", "20260101000000"])
            .status
            .success()
    );
    let e = env_clone(&env);
    let out = off(move || run_once(&e, "y")).await;
    assert!(!out.status.success());
    assert!(list(&env).contains("401"), "{}", list(&env));
}

/// Rows of the mirrored operation over the whole test span, read through §2.
async fn all_rows(server: &Server, token: &str) -> Vec<Value> {
    report(server, token, "20260401000000", "20260430235959")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_killed_in_the_middle_of_a_catch_up_resumes_exactly() {
    // Ten days in one-hour windows, each answer slowed: a catch-up of many windows.
    let fake = Fake::start(
        spread("k", 400, "2026-04-10 00:00:00", 2_000),
        Mode::default(),
    )
    .await;
    fake.always(Some(Fault::Slow(Duration::from_millis(40))));
    let env = Env::new();
    let out = mirror_set(
        &env,
        "kill",
        &fake.url(),
        &["--since", "20260410000000", "--window", "1h"],
    );
    assert!(out.status.success());
    let token = env.token("kill", "report", None);
    let server = env.serve(None);
    let midway = eventually(Duration::from_secs(30), async || {
        let n = all_rows(&server, &token).await.len();
        n > 20 && n < 300
    })
    .await;
    assert!(midway, "the catch-up did not start");
    // SIGKILL: no chance to finish a window or save anything. The upstream still finishes
    // the killed process's request; politeness is measured from the restart on.
    drop(server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.max_in_flight
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let before = all_rows_after_restart(&env, &token, &fake).await;
    assert_eq!(before, expected(&fake, "20260401000000", "20260430235959"));
    assert!(fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 1);
}

/// Restarts `serve` and waits until the mirror has every upstream row; the copy by conn_id.
async fn all_rows_after_restart(env: &Env, token: &str, fake: &Fake) -> BTreeMap<String, Value> {
    let server = env.serve(None);
    let want = fake.rows().len();
    let done = eventually(Duration::from_secs(60), async || {
        all_rows(&server, token).await.len() >= want
    })
    .await;
    assert!(
        done,
        "the restarted serve did not finish: {}",
        server.logs()
    );
    by_conn_id(&all_rows(&server, token).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_run_a_mirror_once_and_take_over_from_a_killed_one() {
    let Some(db) = voxtrail_server::store::testing::TestDatabase::create("mirror_replicas") else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        db_url: db.url.clone(),
    };
    let fake = Fake::start(
        spread("p", 300, "2026-04-10 00:00:00", 1_000),
        Mode::default(),
    )
    .await;
    fake.always(Some(Fault::Slow(Duration::from_millis(30))));
    let out = mirror_set(
        &env,
        "shared",
        &fake.url(),
        &[
            "--since",
            "20260410000000",
            "--window",
            "2h",
            "--every",
            "1s",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = env.token("shared", "report", None);
    let a = env.serve(None);
    let b = env.serve(None);
    let want = expected(&fake, "20260401000000", "20260430235959");
    let done = eventually(Duration::from_secs(60), async || {
        all_rows(&a, &token).await.len() >= want.len()
    })
    .await;
    assert!(done);
    assert_eq!(by_conn_id(&all_rows(&b, &token).await), want);
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one request at a time for the token, across replicas"
    );
    // Exactly one replica runs it; SIGKILL that one, and the other takes over.
    let running = |s: &Server| s.logs().contains("mirror running");
    let ran = eventually(Duration::from_secs(5), async || running(&a) || running(&b)).await;
    assert!(ran);
    assert!(
        !(running(&a) && running(&b)),
        "both replicas ran the mirror"
    );
    let (holder, other) = if running(&a) { (a, b) } else { (b, a) };
    drop(holder);
    fake.add_rows([FakeRow::chat12("after-kill", "2026-04-12 00:00:00", true)]);
    // The lookback (15m) does not reach 2026-04-12: redefine `since` so the survivor reads
    // the span again (and the restart of the run is part of what is tested).
    let out = mirror_set(
        &env,
        "shared",
        &fake.url(),
        &[
            "--since",
            "20260410000001",
            "--window",
            "2h",
            "--every",
            "1s",
        ],
    );
    assert!(out.status.success());
    let took_over = eventually(Duration::from_secs(40), async || {
        all_rows(&other, &token).await.len() > want.len()
    })
    .await;
    assert!(took_over, "{}", other.logs());
    assert!(running(&other));
    assert_eq!(
        by_conn_id(&all_rows(&other, &token).await),
        expected(&fake, "20260401000000", "20260430235959")
    );
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_61000_rows_cut_short_silently_upstream_is_copied_whole() {
    // The hosted API cuts an answer at 60,000 rows without saying so: the day is halved.
    let fake = Fake::start(
        spread("d", 61_000, "2026-04-15 00:00:00", 1),
        Mode {
            cap: Some(60_000),
            refuse: false,
            quirks: true,
        },
    )
    .await;
    let env = Env::new();
    let out = mirror_set(
        &env,
        "big",
        &fake.url(),
        &["--since", "20260415000000", "--window", "1d"],
    );
    assert!(out.status.success());
    let e = env_clone(&env);
    let out = off(move || run_once(&e, "big")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cols: Vec<String> = list(&env)
        .trim_end()
        .split('\t')
        .map(str::to_owned)
        .collect();
    assert_eq!(cols[4], "61000", "{cols:?}");
    let token = env.token("big", "report", None);
    let server = env.serve(None);
    // Read back in two halves (a §2 answer holds at most 60,000 rows).
    let mut got = report(&server, &token, "20260415000000", "20260415080000")
        .await
        .0;
    got.extend(
        report(&server, &token, "20260415080001", "20260415235959")
            .await
            .0,
    );
    assert_eq!(
        by_conn_id(&got),
        expected(&fake, "20260415000000", "20260415235959")
    );
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_daily_limit_waits_for_midnight_without_asking_again() {
    let fake = Fake::start(Vec::new(), Mode::default()).await;
    fake.always(Some(Fault::TokenLimit));
    let env = Env::new();
    let server = env.serve(None);
    let out = mirror_set(
        &env,
        "quota",
        &fake.url(),
        &["--since", "20260501000000", "--every", "1s"],
    );
    assert!(out.status.success());
    let recorded = eventually(Duration::from_secs(15), async || {
        let e = env_clone(&env);
        off(move || {
            let out = e.cmd().args(["mirror", "list"]).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .await
        .contains("TOKEN LIMIT EXCEEDED")
    })
    .await;
    assert!(recorded, "{}", list(&env));
    // The refusal and its one token_info call; then nothing until the operation's midnight,
    // although the mirror cycles every second.
    let asked = fake.requests.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        asked
    );
    assert!(server.terminate().success());
}
