//! End-to-end tests of `voxtrail pull`: against the real server while rows (some late) are
//! ingested, against a fault-injecting fake of the hosted API, and across SIGKILLs. Every test
//! compares the copy with the source row by row: same keys, same contents, no duplicates.

mod common;
#[path = "../../client/tests/fake/mod.rs"]
mod fake;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Server, bin, client, eventually, record};
use serde_json::Value;

type Copy = BTreeMap<String, Value>;

/// A `voxtrail pull` command with its stderr going to `log`.
fn pull(args: &[&str], log: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("pull")
        .args(args)
        .env_remove("VOXTRAIL_LOG")
        .env_remove("VOXTRAIL_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    c
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn wait(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "pull did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn insert_unique(m: &mut Copy, v: Value, from: &str) {
    let id = v["conn_id"].as_str().unwrap().to_owned();
    assert!(m.insert(id.clone(), v).is_none(), "{id} twice in {from}");
}

/// Every row the server holds in `ini..=end` (one request, ≤ 31 days).
async fn truth(server: &Server, token: &str, ini: &str, end: &str) -> Copy {
    let resp = client()
        .get(server.report_url(ini, end))
        .header("wolkvox-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let mut m = Copy::new();
    for row in v["data"].as_array().unwrap() {
        insert_unique(&mut m, row.clone(), "the server");
    }
    m
}

fn ndjson_copy(path: &Path) -> Copy {
    let mut m = Copy::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        insert_unique(
            &mut m,
            serde_json::from_str(line).unwrap(),
            "the ndjson copy",
        );
    }
    m
}

/// Undoes the escaping of a value in a CSV copy: `\\` → `\`, `\n` → LF, `\r` → CR.
fn unescape(s: &str) -> String {
    let mut o = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match (c, c == '\\') {
            (_, true) => match it.next() {
                Some('n') => o.push('\n'),
                Some('r') => o.push('\r'),
                Some('\\') => o.push('\\'),
                other => panic!("unexpected escape \\{other:?} in {s:?}"),
            },
            (c, false) => o.push(c),
        }
    }
    o
}

/// One physical line of a CSV copy, which must hold exactly one whole record, decoded.
fn csv_line(line: &str) -> Vec<String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 1, "{line:?} is not one record");
    recs[0].iter().map(unescape).collect()
}

/// A CSV copy read one physical line at a time: a header, then one record per line.
fn csv_copy(path: &Path) -> Copy {
    let mut m = Copy::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return m;
    };
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    assert!(!text.contains('\r'), "a raw CR in the CSV copy");
    let mut lines = text.split_terminator('\n');
    let Some(head) = lines.next() else {
        return m;
    };
    let header = csv_line(head);
    for line in lines {
        let rec = csv_line(line);
        assert_eq!(rec.len(), header.len(), "{line:?}");
        let obj: serde_json::Map<String, Value> = header
            .iter()
            .zip(rec)
            .map(|(k, v)| (k.clone(), Value::String(v)))
            .collect();
        insert_unique(&mut m, Value::Object(obj), "the csv copy");
    }
    m
}

fn sqlite_copy(path: &Path) -> Copy {
    let mut m = Copy::new();
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut st = conn
        .prepare("SELECT conn_id, row FROM pulled_rows ORDER BY conn_id")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for r in rows {
        let (id, row) = r.unwrap();
        let v: Value = serde_json::from_str(&row).unwrap();
        assert_eq!(v["conn_id"], id.as_str());
        insert_unique(&mut m, v, "the sqlite copy");
    }
    m
}

fn utc_now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn api_ts(t: chrono::NaiveDateTime) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

fn row_ts(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn assert_same(copy: &Copy, truth: &Copy, what: &str) {
    let missing: Vec<_> = truth.keys().filter(|k| !copy.contains_key(*k)).collect();
    let extra: Vec<_> = copy.keys().filter(|k| !truth.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} missing (e.g. {:?}), {} extra (e.g. {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (k, v) in truth {
        assert_eq!(&copy[k], v, "{what}: row {k} differs");
    }
}

/// (a) Two collectors follow a live server (NDJSON by the change feed, the default; SQLite by
/// windows) while another task ingests rows through the API, a third of them dated minutes in
/// the past; once ingestion stops and the collectors catch up, both copies equal the server's
/// data; SIGTERM ends them with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_copies_a_live_server_exactly_late_rows_included() {
    let env = Env::new();
    env.operation("acme", "UTC");
    let ingest = env.token("acme", "ingest", None);
    let t_nd = env.token("acme", "report", Some(1_000_000));
    let t_sq = env.token("acme", "report", Some(1_000_000));
    let t_truth = env.token("acme", "report", Some(1_000_000));
    // History before the collectors start.
    let start = utc_now() - chrono::Duration::hours(30);
    let history: Vec<String> = (0..200)
        .map(|i| {
            record(
                &format!("h{i}"),
                &row_ts(start + chrono::Duration::minutes(9 * i)),
            )
        })
        .collect();
    env.import_ndjson("acme", &(history.join("\n") + "\n"));
    let server = env.serve(None);
    let url = format!("http://{}", server.addr);
    let since = api_ts(start - chrono::Duration::hours(1));
    let nd = env.path("copy.ndjson");
    let sq = env.path("copy.db");
    let common_args = |token: &str, into: String| -> Vec<String> {
        [
            "--url",
            &url,
            "--token",
            token,
            "--since",
            &since,
            "--follow",
            "--every",
            "1s",
            "--lookback",
            "10m",
            "--timezone",
            "UTC",
            "--window",
            "6h",
            "--into",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([into])
        .collect()
    };
    let a_nd = common_args(&t_nd, format!("ndjson:{}", nd.display()));
    let mut a_sq = common_args(&t_sq, format!("sqlite://{}", sq.display()));
    a_sq.extend(["--mode".to_owned(), "windows".to_owned()]);
    let log_nd = env.path("nd.log");
    let log_sq = env.path("sq.log");
    let mut c_nd = pull(
        &a_nd.iter().map(String::as_str).collect::<Vec<_>>(),
        &log_nd,
    )
    .spawn()
    .unwrap();
    let mut c_sq = pull(
        &a_sq.iter().map(String::as_str).collect::<Vec<_>>(),
        &log_sq,
    )
    .spawn()
    .unwrap();

    // Ingest while they run: 12 batches of 10, every third row dated 2-6 minutes ago.
    let http = client();
    for b in 0..12 {
        let now = utc_now();
        let lines: Vec<String> = (0..10)
            .map(|i| {
                let date = if i % 3 == 0 {
                    now - chrono::Duration::seconds(120 + 20 * i)
                } else {
                    now
                };
                record(&format!("live-{b}-{i}"), &row_ts(date))
            })
            .collect();
        let resp = http
            .post(server.url("/api/v2/interactions"))
            .header("wolkvox-token", &ingest)
            .header("content-type", "application/x-ndjson")
            .body(lines.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end = api_ts(utc_now() + chrono::Duration::hours(1));
    let want = truth(&server, &t_truth, &since, &end).await;
    assert_eq!(want.len(), 320);
    let caught_up = eventually(Duration::from_secs(60), async || {
        ndjson_copy(&nd).len() == want.len() && sqlite_copy(&sq).len() == want.len()
    })
    .await;
    assert!(
        caught_up,
        "collectors did not catch up: ndjson {} sqlite {} of {}\n{}\n{}",
        ndjson_copy(&nd).len(),
        sqlite_copy(&sq).len(),
        want.len(),
        read(&log_nd),
        read(&log_sq)
    );
    assert_same(&ndjson_copy(&nd), &want, "ndjson copy");
    assert_same(&sqlite_copy(&sq), &want, "sqlite copy");
    assert!(
        read(&log_nd).contains("following the change feed from its beginning"),
        "{}",
        read(&log_nd)
    );
    assert!(!read(&log_sq).contains("change feed"), "{}", read(&log_sq));
    for (c, log) in [(&mut c_nd, &log_nd), (&mut c_sq, &log_sq)] {
        sigterm(c);
        let st = wait(c, Duration::from_secs(30));
        let text = read(log);
        assert!(st.success(), "pull exited {st}: {text}");
        assert!(text.contains("pull done"), "no summary: {text}");
    }
    // The checkpoint is in the destination, and a second pull writes nothing new.
    let conn = rusqlite::Connection::open(&sq).unwrap();
    let cp: String = conn
        .query_row("SELECT until FROM pull_checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cp.len(), 14);
    drop(conn);
    let once: Vec<&str> = a_sq
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--follow")
        .collect();
    let st = pull(&once, &log_sq).status().unwrap();
    assert!(st.success(), "{}", read(&log_sq));
    assert!(
        read(&log_sq).contains(" 0 new rows written"),
        "{}",
        read(&log_sq)
    );
    assert_same(&sqlite_copy(&sq), &want, "sqlite copy after a second pull");
}

/// (c) SIGKILL in the middle of a run, several times, then a run to the end: every file and
/// database copy still equals the server's data exactly (no row lost, none twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_leaves_an_exact_copy() {
    let env = Env::new();
    env.operation("acme", "UTC");
    env.seed("acme", 1500, "20261001000000", 2);
    let server = env.serve(None);
    let url = format!("http://{}", server.addr);
    let t_truth = env.token("acme", "report", Some(1_000_000));
    let want = truth(&server, &t_truth, "20260928000000", "20261001000000").await;
    assert_eq!(want.len(), 1500);
    for dest in ["ndjson", "csv", "sqlite"] {
        let token = env.token("acme", "report", Some(1_000_000));
        let path = env.path(&format!("copy.{dest}"));
        let into = match dest {
            "sqlite" => format!("sqlite://{}", path.display()),
            d => format!("{d}:{}", path.display()),
        };
        let args = [
            "--url",
            &url,
            "--token",
            &token,
            "--since",
            "20260928000000",
            "--until",
            "20261001000000",
            "--timezone",
            "UTC",
            "--window",
            "10m",
            "--mode",
            "windows",
            "--into",
            &into,
        ];
        let log = env.path(&format!("{dest}.log"));
        let wal = env.path(&format!("copy.{dest}-wal"));
        let size = || {
            [&path, &wal]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>()
        };
        for round in 1..=3 {
            let mut child = pull(&args, &log).spawn().unwrap();
            // Kill it once it has written some more (or if it has finished already): a
            // little at first, more in later rounds.
            let before = size();
            let deadline = Instant::now() + Duration::from_secs(30);
            while size() <= before + 300_000 * round * round
                && child.try_wait().unwrap().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{dest}: {}", read(&log));
        let copy = match dest {
            "ndjson" => ndjson_copy(&path),
            "csv" => csv_copy(&path),
            _ => sqlite_copy(&path),
        };
        assert_same(&copy, &want, dest);
        // And again: nothing new, nothing twice.
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{dest}: {}", read(&log));
        let text = read(&log);
        assert!(
            text.ends_with(" 0 new rows written, checkpoint 20261001000000\n"),
            "{text}"
        );
        eprintln!("{dest}:\n{text}");
    }
}

/// (b) Through a fake of the hosted API that plays its quirks, faults, and silent truncation
/// (at a small threshold), `voxtrail pull` copies every row into CSV exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_a_faulty_truncating_fake_copies_everything() {
    use fake::{Fake, Fault, Mode, spread};
    let mut rows = spread("f", 300, "2026-05-01 00:00:00", 500);
    rows.extend(spread("burst", 20, "2026-05-01 12:00:00", 0));
    let fake = Fake::start(
        rows.clone(),
        Mode {
            cap: Some(25),
            refuse: false,
            quirks: true,
        },
    )
    .await;
    fake.script([
        Fault::Status500,
        Fault::Status500,
        Fault::Status500,
        Fault::Reset,
        Fault::TruncatedJson,
        Fault::CutBody,
        Fault::Simultaneous,
        Fault::Slow(Duration::from_millis(200)),
        Fault::Maintenance,
        Fault::BadGateway,
    ]);
    let env = Env::new();
    let out = env.path("copy.csv");
    let log = env.path("pull.log");
    let into = format!("csv:{}", out.display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260430000000",
        "--until",
        "20260505000000",
        "--timezone",
        "UTC",
        "--window",
        "31d",
        "--truncation-threshold",
        "25",
        "--backoff",
        "1ms",
        // Every scripted fault for the windows (auto: see auto_falls_back_to_windows_…).
        "--mode",
        "windows",
        "--into",
        &into,
    ];
    let st = tokio::task::spawn_blocking({
        let mut c = pull(&args, &log);
        move || c.status().unwrap()
    })
    .await
    .unwrap();
    assert!(st.success(), "{}", read(&log));
    assert_eq!(fake.script_left(), 0);
    let want: Copy = rows
        .iter()
        .map(|r| {
            let obj: serde_json::Map<String, Value> = r
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            (r.get("conn_id").to_owned(), Value::Object(obj))
        })
        .collect();
    assert_same(&csv_copy(&out), &want, "csv copy");
    // The state file sits beside the data, and the file holds a header plus the rows only.
    assert!(env.path("copy.csv.state.json").exists());
    assert_eq!(newlines(&env.path("copy.csv.keys")), rows.len());
    assert_eq!(newlines(&out), rows.len() + 1);
    assert!(read(&log).contains("pull done"), "{}", read(&log));
}

/// A final refusal stops the run with a clear error and a non-zero exit, without retrying;
/// the token's daily limit says when it resets (the limit and today's use: see
/// `a_used_up_daily_limit_says_limit_use_and_reset`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_refusals_end_the_run_clearly() {
    use fake::{Fake, Fault, Mode};
    let env = Env::new();
    for (fault, text) in [
        (Fault::TokenLimit, "midnight America/Bogota"),
        (Fault::InvalidToken, "PLEASE VALIDATE TOKEN"),
        (Fault::Unauthorized, "401"),
    ] {
        let fake = Fake::start(Vec::new(), Mode::default()).await;
        fake.always(Some(fault));
        let log = env.path("refused.log");
        let into = format!("ndjson:{}", env.path("refused.ndjson").display());
        let args = [
            "--url",
            &fake.url(),
            "--token",
            "t",
            "--since",
            "20260430000000",
            "--until",
            "20260501000000",
            "--into",
            &into,
        ];
        let st = tokio::task::spawn_blocking({
            let mut c = pull(&args, &log);
            move || c.status().unwrap()
        })
        .await
        .unwrap();
        assert!(!st.success());
        assert!(read(&log).contains(text), "{text}: {}", read(&log));
        // The daily limit is followed by one token_info call (refused here too).
        let calls = if text.contains("midnight") { 2 } else { 1 };
        assert_eq!(
            fake.requests.load(std::sync::atomic::Ordering::SeqCst),
            calls
        );
    }
    // Bad flags: one line per problem, nothing written.
    let log = env.path("flags.log");
    let st = pull(
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--since",
            "2026",
            "--every",
            "5x",
            "--timezone",
            "Mars/Base",
            "--into",
            "mysql://localhost/x",
        ],
        &log,
    )
    .status()
    .unwrap();
    assert!(!st.success());
    let text = read(&log);
    for needle in ["--since", "--every", "--timezone", "--into"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // A chat_12 CSV file holds only the report's fields: a key outside them is refused at
    // start, before anything is written (it could never be read back).
    let log = env.path("key.log");
    let out = env.path("key.csv");
    let into = format!("csv:{}", out.display());
    let st = pull(
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--since",
            "20260801000000",
            "--key",
            "ticket",
            "--into",
            &into,
        ],
        &log,
    )
    .status()
    .unwrap();
    assert!(!st.success());
    let text = read(&log);
    assert!(
        text.contains("--key \"ticket\": a chat_12 CSV file holds only the fields conn_id,"),
        "{text}"
    );
    assert!(!out.exists());
}

/// The PostgreSQL server for tests (`VOXTRAIL_TEST_POSTGRES`, default local trust auth).
fn pg_admin_url() -> String {
    std::env::var("VOXTRAIL_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own, dropped at the end; `None` (said on stderr) when PostgreSQL is
/// unreachable outside CI.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create() -> Option<PgDb> {
        let admin = pg_admin_url();
        let name = format!(
            "vt_pull_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let (a, n) = (admin.clone(), name.clone());
        let made = std::thread::spawn(move || -> Result<(), postgres::Error> {
            let mut c = postgres::Client::connect(&a, postgres::NoTls)?;
            c.batch_execute(&format!("CREATE DATABASE \"{n}\""))
        })
        .join()
        .unwrap();
        if let Err(e) = made {
            assert!(
                std::env::var("CI").is_err(),
                "CI but PostgreSQL at {admin} is unusable: {e}"
            );
            eprintln!(
                "NOTE: PostgreSQL at {admin} unreachable ({e}): pull-to-postgres test SKIPPED"
            );
            return None;
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(PgDb { admin, name, url })
    }

    fn copy(&self) -> Copy {
        let url = self.url.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut m = Copy::new();
            let exists: bool = c
                .query_one("SELECT to_regclass('pulled_rows') IS NOT NULL", &[])
                .unwrap()
                .get(0);
            if !exists {
                return m;
            }
            for r in c
                .query(
                    "SELECT conn_id, row, row::jsonb::text FROM pulled_rows",
                    &[],
                )
                .unwrap()
            {
                let (id, row, js): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                let v: Value = serde_json::from_str(&row).unwrap();
                assert_eq!(v, serde_json::from_str::<Value>(&js).unwrap());
                assert_eq!(v["conn_id"], id.as_str());
                insert_unique(&mut m, v, "the postgres copy");
            }
            m
        })
        .join()
        .unwrap()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (a, n) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&a, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// `--into postgres://…`, by windows and by the change feed: killed mid-run and restarted, the
/// copy is exact; a second pull adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_into_postgres_survives_sigkill_and_is_exact() {
    let env = Env::new();
    env.operation("acme", "UTC");
    env.seed("acme", 600, "20261001000000", 1);
    let server = env.serve(None);
    let url = format!("http://{}", server.addr);
    let t_truth = env.token("acme", "report", Some(1_000_000));
    let want = truth(&server, &t_truth, "20260930000000", "20261001000000").await;
    assert_eq!(want.len(), 600);
    for (mode, end) in [
        (
            "windows",
            " 0 new rows written, checkpoint 20261001000000\n",
        ),
        ("feed", " 0 new rows written, 0 replaced, cursor 1.600\n"),
    ] {
        let Some(db) = PgDb::create() else {
            return;
        };
        let token = env.token("acme", "report", Some(1_000_000));
        let args = [
            "--url",
            &url,
            "--token",
            &token,
            "--since",
            "20260930000000",
            "--until",
            "20261001000000",
            "--timezone",
            "UTC",
            "--window",
            "10m",
            "--mode",
            mode,
            "--page",
            "50",
            "--into",
            &db.url,
        ];
        let log = env.path(&format!("pg-{mode}.log"));
        let mut child = pull(&args, &log).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.copy().len() < 100
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{mode}: {}", read(&log));
        assert_same(&db.copy(), &want, &format!("postgres copy by {mode}"));
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{mode}: {}", read(&log));
        assert!(read(&log).ends_with(end), "{mode}: {}", read(&log));
    }
}

/// Following, an outage longer than every retry does not end the run: the cycle is tried
/// again, and once the server is back the copy completes; SIGTERM then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_waits_out_an_outage() {
    use fake::{Fake, Fault, Mode, spread};
    let rows = spread("o", 50, "2026-06-01 00:00:00", 60);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    fake.always(Some(Fault::Status500));
    let env = Env::new();
    let out = env.path("copy.ndjson");
    let log = env.path("pull.log");
    let into = format!("ndjson:{}", out.display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260601000000",
        "--until",
        "20260602000000",
        "--follow",
        "--every",
        "1s",
        "--attempts",
        "2",
        "--backoff",
        "1ms",
        "--timezone",
        "UTC",
        "--into",
        &into,
    ];
    let mut child = pull(&args, &log).spawn().unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || read(&log)
            .contains("trying again next cycle"))
        .await,
        "{}",
        read(&log)
    );
    assert!(child.try_wait().unwrap().is_none(), "{}", read(&log));
    fake.always(None);
    assert!(
        eventually(Duration::from_secs(30), async || ndjson_copy(&out).len()
            == 50)
        .await,
        "{}",
        read(&log)
    );
    sigterm(&child);
    let st = wait(&mut child, Duration::from_secs(30));
    assert!(st.success(), "{}", read(&log));
    assert_eq!(ndjson_copy(&out).len(), 50);
}

/// SIGINT while a window is in flight: the window is finished and written, its checkpoint
/// saved, no further window is started, and the exit code is 0. A restart completes the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_the_current_window_and_saves_its_checkpoint() {
    use fake::{Fake, Fault, Mode, spread};
    use std::sync::atomic::Ordering::SeqCst;
    // 72 rows, one every hour over three days: three one-day windows.
    let rows = spread("s", 72, "2026-07-01 00:00:00", 3600);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    fake.always(Some(Fault::Slow(Duration::from_millis(1500))));
    let env = Env::new();
    let out = env.path("copy.ndjson");
    let log = env.path("pull.log");
    let into = format!("ndjson:{}", out.display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260701000000",
        "--until",
        "20260703235959",
        "--window",
        "86399s",
        "--timezone",
        "UTC",
        "--mode",
        "windows",
        "--into",
        &into,
    ];
    let mut child = pull(&args, &log).spawn().unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || fake.requests.load(SeqCst)
            >= 1)
        .await
    );
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let st = wait(&mut child, Duration::from_secs(30));
    assert!(st.success(), "{}", read(&log));
    let windows = fake.requests.load(SeqCst);
    assert!(
        windows < 3,
        "all windows were pulled after SIGINT: {}",
        read(&log)
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(env.path("copy.ndjson.state.json")).unwrap())
            .unwrap();
    let ends = ["20260701235959", "20260702235959"];
    assert_eq!(state["checkpoint"], ends[windows - 1], "{}", read(&log));
    let copied = ndjson_copy(&out);
    assert_eq!(copied.len(), 24 * windows);
    // A restart completes the copy, nothing twice.
    fake.always(None);
    let st = pull(&args, &log).status().unwrap();
    assert!(st.success(), "{}", read(&log));
    assert_eq!(ndjson_copy(&out).len(), 72);
}

/// The fake's rows as the copy must hold them.
fn fake_copy(rows: &[fake::FakeRow]) -> Copy {
    rows.iter()
        .map(|r| {
            let obj: serde_json::Map<String, Value> = r
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            (r.get("conn_id").to_owned(), Value::Object(obj))
        })
        .collect()
}

/// Rows whose values hold everything a line-based CSV must escape: LF, CR LF, lone CR,
/// backslashes (before n, r, at the end), commas and quotes — in bodies, subjects and keys.
fn awkward_rows() -> Vec<fake::FakeRow> {
    let mut rows = fake::spread("k", 40, "2026-08-01 00:00:00", 900);
    let set = |r: &mut fake::FakeRow, k: &str, v: &str| {
        r.fields.iter_mut().find(|(n, _)| n == k).unwrap().1 = v.to_owned();
    };
    set(&mut rows[1], "body", "C:\\new\\table\\");
    set(&mut rows[2], "subject", "\\n is not a newline, \\r neither");
    set(&mut rows[3], "body", "a\r\nb\rc\nd\\\\e\n");
    set(&mut rows[4], "conn_id", "id,\"4\"\\n");
    set(&mut rows[5], "conn_id", "id\nwith a newline\\");
    set(
        &mut rows[6],
        "description_cod_act",
        "\"quoted\", then \\\"escaped\\\"",
    );
    set(&mut rows[7], "body", "\n\n\r\r\\\\\\");
    set(&mut rows[8], "agent_name", "");
    rows
}

fn newlines(path: &Path) -> usize {
    std::fs::read(path)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Issue 5: a CSV copy holds exactly one row per line (values with newlines, CRs and
/// backslashes are escaped), reads back exactly, and a second pull writes nothing. A file cut
/// in its last record (and a key log then longer than the data) or a key log cut short is
/// repaired on the next run, with the same exact copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_copy_is_one_record_per_line_and_reads_back_exactly() {
    use fake::{Fake, Mode};
    let rows = awkward_rows();
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let env = Env::new();
    let out = env.path("copy.csv");
    let keys = env.path("copy.csv.keys");
    let log = env.path("pull.log");
    let into = format!("csv:{}", out.display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260731000000",
        "--until",
        "20260802000000",
        "--timezone",
        "UTC",
        "--window",
        "2h",
        "--into",
        &into,
    ];
    let run = |new: usize| {
        let st = pull(&args, &log).status().unwrap();
        let text = read(&log);
        assert!(st.success(), "{text}");
        let want = format!(" {new} new rows written, checkpoint 20260802000000\n");
        assert!(text.ends_with(&want), "{want}: {text}");
    };
    let want = fake_copy(&rows);
    run(rows.len());
    // `wc -l`: the header and one line per row.
    assert_eq!(newlines(&out), rows.len() + 1);
    assert_eq!(newlines(&keys), rows.len());
    assert_same(&csv_copy(&out), &want, "csv copy");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with(&(voxtrail_wire::CHAT_12_FIELDS.join(",") + "\n")),
        "{text}"
    );
    assert!(text.contains(r#",C:\\new\\table\\,"#), "{text}");

    // Pulling again writes nothing.
    run(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    // A crash in the middle of the last record: the next run cuts it, finds the state (and
    // the key log) describing more rows than the file holds, re-reads from --since, and
    // writes that one row again.
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    f.set_len(text.len() as u64 - 7).unwrap();
    drop(f);
    run(1);
    assert!(read(&log).contains("cutting a torn last record"));
    assert!(read(&log).contains("re-reading from --since"));
    assert!(read(&log).contains("rebuilt from the data file"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    assert_eq!(newlines(&keys), rows.len());

    // A key log cut short (a crash between the data and the key log) is completed.
    let k = std::fs::read_to_string(&keys).unwrap();
    let cut: usize = k
        .split_inclusive('\n')
        .take(rows.len() - 3)
        .map(str::len)
        .sum();
    std::fs::write(&keys, &k[..cut + 2]).unwrap();
    run(0);
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), k);
    assert_same(&csv_copy(&out), &want, "csv copy after repairs");
}

/// Issue 5: the state file beside a file copy holds the checkpoint and counts, not the keys:
/// its size does not grow with the copy (before: every key, rewritten every window). The
/// keys are in the append-only key log, one line per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_state_stays_small_as_the_copy_grows() {
    use fake::{Fake, Mode, spread};
    let rows = spread(
        "many-rows-with-a-long-key-",
        3000,
        "2026-09-01 00:00:00",
        60,
    );
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let env = Env::new();
    let out = env.path("copy.ndjson");
    let state = env.path("copy.ndjson.state.json");
    let log = env.path("pull.log");
    let into = format!("ndjson:{}", out.display());
    let url = fake.url();
    let args = |until: &'static str| {
        [
            "--url",
            &url,
            "--token",
            "t",
            "--since",
            "20260901000000",
            "--until",
            until,
            "--timezone",
            "UTC",
            "--window",
            "1h",
            "--into",
            &into,
        ]
        .map(str::to_owned)
    };
    let run = |until| {
        let a = args(until);
        let st = pull(&a.iter().map(String::as_str).collect::<Vec<_>>(), &log)
            .status()
            .unwrap();
        assert!(st.success(), "{}", read(&log));
        std::fs::metadata(&state).unwrap().len()
    };
    // 300 rows, then all 3,000 (50 one-hour windows).
    let small = run("20260901045959");
    let big = run("20260903040000");
    assert_eq!(ndjson_copy(&out).len(), rows.len());
    assert_eq!(newlines(&env.path("copy.ndjson.keys")), rows.len());
    assert!(big < 1024, "state file of {big} bytes");
    assert!(
        big <= small + 4,
        "the state grew from {small} to {big} bytes"
    );
    let s: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(s["rows"], 3000);
    assert_eq!(s["data_len"], std::fs::metadata(&out).unwrap().len());
    assert!(s.get("keys").is_none(), "{s}");
}

/// A copy made by the first file format (every key in `PATH.state.json`; CSV records that
/// span lines) is migrated once: the state becomes small, the CSV one record per line, and
/// nothing is written twice. An interrupted CSV conversion (`PATH.v1` left behind) is done
/// again from the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_first_file_format_is_migrated_once() {
    use fake::{Fake, Mode};
    let rows = awkward_rows();
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let want = fake_copy(&rows);
    let env = Env::new();
    // The first 25 rows (up to 06:00) as the first format wrote them.
    let old = &rows[..25];
    let mut ndjson = String::new();
    let mut csv_w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    csv_w.write_record(voxtrail_wire::CHAT_12_FIELDS).unwrap();
    for r in old {
        ndjson.push_str(&serde_json::to_string(&want[r.get("conn_id")]).unwrap());
        ndjson.push('\n');
        csv_w
            .write_record(voxtrail_wire::CHAT_12_FIELDS.map(|f| r.get(f)))
            .unwrap();
    }
    let csv_text = csv_w.into_inner().unwrap();
    assert!(
        csv_text.iter().filter(|b| **b == b'\n').count() > old.len() + 1,
        "the first format's CSV should span lines here"
    );
    let keys: Vec<&str> = old.iter().map(|r| r.get("conn_id")).collect();
    for (case, data) in [
        ("ndjson", ndjson.into_bytes()),
        ("csv", csv_text.clone()),
        ("csv-interrupted", csv_text),
    ] {
        let kind = if case == "ndjson" { "ndjson" } else { "csv" };
        let out = env.path(&format!("{case}.{kind}"));
        let state = serde_json::json!({
            "source": fake.url(),
            "report": "chat_12",
            "checkpoint": "20260801055959",
            "data_len": data.len(),
            "keys": keys,
        });
        if case == "csv-interrupted" {
            // Marked, renamed aside, then a half-written conversion.
            std::fs::write(env.path(&format!("{case}.{kind}.converting")), "").unwrap();
            std::fs::write(env.path(&format!("{case}.{kind}.v1")), &data).unwrap();
            std::fs::write(&out, &data[..data.len() / 3]).unwrap();
        } else {
            std::fs::write(&out, &data).unwrap();
        }
        std::fs::write(
            env.path(&format!("{case}.{kind}.state.json")),
            state.to_string(),
        )
        .unwrap();
        let log = env.path(&format!("{case}.log"));
        let into = format!("{kind}:{}", out.display());
        let args = [
            "--url",
            &fake.url(),
            "--token",
            "t",
            "--since",
            "20260731000000",
            "--until",
            "20260802000000",
            "--timezone",
            "UTC",
            "--lookback",
            "0s",
            "--into",
            &into,
        ];
        let st = pull(&args, &log).status().unwrap();
        let text = read(&log);
        assert!(st.success(), "{case}: {text}");
        let new = rows.len() - old.len();
        assert!(
            text.ends_with(&format!(
                " {new} new rows written, checkpoint 20260802000000\n"
            )),
            "{case}: {text}"
        );
        let copy = if kind == "csv" {
            assert_eq!(newlines(&out), rows.len() + 1, "{case}");
            assert!(text.contains("converting"), "{case}: {text}");
            csv_copy(&out)
        } else {
            ndjson_copy(&out)
        };
        assert_same(&copy, &want, case);
        assert!(!env.path(&format!("{case}.{kind}.v1")).exists(), "{case}");
        assert!(
            !env.path(&format!("{case}.{kind}.converting")).exists(),
            "{case}"
        );
        let state = env.path(&format!("{case}.{kind}.state.json"));
        assert!(std::fs::metadata(&state).unwrap().len() < 1024, "{case}");
        assert_eq!(
            newlines(&env.path(&format!("{case}.{kind}.keys"))),
            rows.len()
        );
        // Once only: the next run finds the new format and writes nothing.
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{case}: {}", read(&log));
        let text = read(&log);
        assert!(text.ends_with(" 0 new rows written, checkpoint 20260802000000\n"));
        assert_eq!(
            text.matches("converting").count(),
            usize::from(kind == "csv")
        );
    }
}

/// Issue 5: a used-up daily limit ends `voxtrail pull` with a non-zero exit and one error
/// line saying the limit, today's use and when the day resets — from token_info when the
/// server still answers it. `--token-info` prints the same numbers at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_daily_limit_says_limit_use_and_reset() {
    use fake::{Fake, Fault, Mode, spread};
    use std::sync::atomic::Ordering::SeqCst;
    let env = Env::new();
    let fake = Fake::start(spread("d", 5, "2026-04-30 10:00:00", 60), Mode::default()).await;
    fake.token_info(500, 501, 730);
    fake.always(Some(Fault::TokenLimitOnReports));
    let log = env.path("limit.log");
    let into = format!("ndjson:{}", env.path("limit.ndjson").display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260430000000",
        "--until",
        "20260501000000",
        "--into",
        &into,
    ];
    let st = pull(&args, &log).status().unwrap();
    assert!(!st.success());
    let text = read(&log);
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {text}"));
    for needle in [
        "daily limit is used up (403 TOKEN LIMIT EXCEEDED)",
        "limit 500",
        "used today 501",
        "all tokens of the operation today: 730",
        "it resets at midnight America/Bogota (in ",
    ] {
        assert!(error.contains(needle), "{needle}: {error}");
    }
    assert_eq!(fake.requests.load(SeqCst), 2, "{text}");

    // --token-info: one token_info call at start, its numbers on stderr.
    let fake = Fake::start(spread("d", 5, "2026-04-30 10:00:00", 60), Mode::default()).await;
    fake.token_info(500, 42, 99);
    let log = env.path("info.log");
    let into = format!("ndjson:{}", env.path("info.ndjson").display());
    let url = fake.url();
    let mut with_info = args.to_vec();
    with_info[1] = &url;
    *with_info.last_mut().unwrap() = &into;
    with_info.push("--token-info");
    let st = pull(&with_info, &log).status().unwrap();
    let text = read(&log);
    assert!(st.success(), "{text}");
    assert!(
        text.starts_with(
            "token: limit 500, used today 42 (all tokens of the operation today: 99), 458 left\n"
        ),
        "{text}"
    );
    assert!(text.contains(" 5 new rows written"), "{text}");
}

/// A row of a generic report, fields in the order given.
fn generic_row(fields: &[(&str, &str)]) -> fake::FakeRow {
    fake::FakeRow {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Rows of a generic report (`--api other`, keyed by a hash of the row) whose fields do not
/// all come in the CSV header's order: one reordered, one with a field the header lacks, one
/// missing a field.
fn unordered_rows() -> Vec<fake::FakeRow> {
    vec![
        generic_row(&[("id", "1"), ("date", "2026-08-01 01:00:00"), ("a", "x")]),
        generic_row(&[("a", "y"), ("date", "2026-08-01 02:00:00"), ("id", "2")]),
        generic_row(&[
            ("id", "3"),
            ("date", "2026-08-01 03:00:00"),
            ("a", "z"),
            ("extra", "e"),
        ]),
        generic_row(&[("date", "2026-08-01 04:00:00"), ("id", "4")]),
    ]
}

/// The data lines of a CSV copy, header included.
fn csv_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

const UNORDERED_CSV: [&str; 5] = [
    "id,date,a",
    "1,2026-08-01 01:00:00,x",
    "2,2026-08-01 02:00:00,y",
    "3,2026-08-01 03:00:00,z",
    "4,2026-08-01 04:00:00,",
];

/// A CSV copy keyed by a hash of the row, whose rows do not all come in the header's order:
/// after a crash between the data append and the key-log append (the key log one line short,
/// as an interrupted run leaves it) the re-read rows are recognised, never written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_hash_keys_survive_a_crash_before_the_key_log() {
    use fake::{Fake, Mode};
    let fake = Fake::start(unordered_rows(), Mode::default()).await;
    let env = Env::new();
    let out = env.path("hash.csv");
    let keys = env.path("hash.csv.keys");
    let log = env.path("hash.log");
    let into = format!("csv:{}", out.display());
    let url = fake.url();
    let run = |until: &str, new: usize| {
        let args = [
            "--url",
            &url,
            "--token",
            "t",
            "--api",
            "other",
            "--since",
            "20260801000000",
            "--until",
            until,
            "--timezone",
            "UTC",
            "--window",
            "1h",
            "--lookback",
            "1d",
            "--into",
            &into,
        ];
        let st = pull(&args, &log).status().unwrap();
        let text = read(&log);
        assert!(st.success(), "{text}");
        assert!(
            text.ends_with(&format!(" {new} new rows written, checkpoint {until}\n")),
            "{new} new: {text}"
        );
    };
    // Rows 1 and 2 (2 in another order than the header), then a crash before row 2's key:
    // the key log is one line short.
    run("20260801023000", 2);
    assert_eq!(csv_lines(&out), UNORDERED_CSV[..3]);
    let k = std::fs::read_to_string(&keys).unwrap();
    let first = k.split_inclusive('\n').next().unwrap();
    std::fs::write(&keys, first).unwrap();
    // The next run re-reads row 2 (lookback) with rows 3 and 4, and writes only those.
    run("20260802000000", 2);
    assert_eq!(csv_lines(&out), UNORDERED_CSV);
    assert_eq!(newlines(&keys), 4);
    // Every row comes again (lookback 1d) and none is written again, whatever the key log.
    run("20260802000000", 0);
    let k = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, &k[..k.len() / 2]).unwrap();
    run("20260802000000", 0);
    std::fs::remove_file(&keys).unwrap();
    run("20260802000000", 0);
    assert_eq!(csv_lines(&out), UNORDERED_CSV);
}

/// A CSV copy of the first file format keyed by a hash of the row, some rows in another
/// order than the header: the migration keeps the copy's checkpoint (the old state's keys are
/// hashes of rows as the server sent them, not as the file holds them), writes nothing twice
/// and says nothing contradictory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_format_csv_copy_with_hash_keys_is_migrated_without_duplicates() {
    use fake::{Fake, Mode};
    use sha2::Digest as _;
    let rows = unordered_rows();
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let env = Env::new();
    let out = env.path("old.csv");
    let log = env.path("old.log");
    // Rows 1 and 2 as the first format wrote them; its keys are hashes of the rows as sent.
    let hash = |r: &fake::FakeRow| {
        let fields: Vec<String> = r
            .fields
            .iter()
            .map(|(k, v)| {
                let (k, v) = (Value::from(k.as_str()), Value::from(v.as_str()));
                format!("{k}:{v}")
            })
            .collect();
        let json = format!("{{{}}}", fields.join(","));
        sha2::Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let data = UNORDERED_CSV[..3].join("\n") + "\n";
    std::fs::write(&out, &data).unwrap();
    let state = serde_json::json!({
        "source": fake.url(),
        "report": "other",
        "checkpoint": "20260801023000",
        "data_len": data.len(),
        "keys": [hash(&rows[0]), hash(&rows[1])],
    });
    std::fs::write(env.path("old.csv.state.json"), state.to_string()).unwrap();
    let into = format!("csv:{}", out.display());
    let args = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--api",
        "other",
        "--since",
        "20260801000000",
        "--until",
        "20260802000000",
        "--timezone",
        "UTC",
        "--lookback",
        "1d",
        "--into",
        &into,
    ];
    let st = pull(&args, &log).status().unwrap();
    let text = read(&log);
    assert!(st.success(), "{text}");
    assert!(
        text.ends_with(" 2 new rows written, checkpoint 20260802000000\n"),
        "{text}"
    );
    assert!(!text.contains("re-reading from --since"), "{text}");
    assert_eq!(csv_lines(&out), UNORDERED_CSV);
    assert!(!env.path("old.csv.v1").exists());
    let st = pull(&args, &log).status().unwrap();
    assert!(st.success(), "{}", read(&log));
    assert!(read(&log).ends_with(" 0 new rows written, checkpoint 20260802000000\n"));
    assert_eq!(csv_lines(&out), UNORDERED_CSV);
}

/// `PATH.v1` is voxtrail's only when `PATH.converting` marks it: a user's own `PATH.v1` beside
/// a current copy is left alone, and refused (untouched) when a first-format copy needs the
/// name. A first-format state beside a key log (an earlier voxtrail has run on a converted
/// copy) is refused rather than converted, and escaped, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_v1_file_and_a_state_rewritten_by_an_earlier_voxtrail_are_refused() {
    use fake::{Fake, Mode};
    let rows = unordered_rows();
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let env = Env::new();
    let out = env.path("c.csv");
    let v1 = env.path("c.csv.v1");
    let state = env.path("c.csv.state.json");
    let log = env.path("c.log");
    let into = format!("csv:{}", out.display());
    let url = fake.url();
    let args = [
        "--url",
        &url,
        "--token",
        "t",
        "--api",
        "other",
        "--since",
        "20260801000000",
        "--until",
        "20260802000000",
        "--timezone",
        "UTC",
        "--into",
        &into,
    ];
    // A current copy with a user's own c.csv.v1 beside it: both kept.
    std::fs::write(&v1, "mine\n").unwrap();
    let st = pull(&args, &log).status().unwrap();
    assert!(st.success(), "{}", read(&log));
    let st = pull(&args, &log).status().unwrap();
    assert!(st.success(), "{}", read(&log));
    assert_eq!(std::fs::read_to_string(&v1).unwrap(), "mine\n");
    assert_eq!(csv_lines(&out), UNORDERED_CSV);
    assert!(!read(&log).contains("converting"), "{}", read(&log));

    // An earlier voxtrail rewrote the state in the first format (keys inside): refused, as
    // long as c.csv.keys says the data file is in the current format.
    let data = std::fs::read(&out).unwrap();
    let old_state = serde_json::json!({
        "source": url,
        "report": "other",
        "checkpoint": "20260802000000",
        "data_len": data.len(),
        "keys": ["k1", "k2", "k3", "k4"],
    })
    .to_string();
    std::fs::write(&state, &old_state).unwrap();
    let log2 = env.path("c2.log");
    let st = pull(&args, &log2).status().unwrap();
    let text = read(&log2);
    assert!(!st.success(), "{text}");
    assert!(
        text.contains("converting again would escape values twice"),
        "{text}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(std::fs::read_to_string(&v1).unwrap(), "mine\n");

    // A first-format copy (no key log) that needs the name c.csv.v1 held by the user's file:
    // refused, nothing touched.
    std::fs::remove_file(env.path("c.csv.keys")).unwrap();
    let log3 = env.path("c3.log");
    let st = pull(&args, &log3).status().unwrap();
    let text = read(&log3);
    assert!(!st.success(), "{text}");
    assert!(text.contains("is in the way"), "{text}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(std::fs::read_to_string(&v1).unwrap(), "mine\n");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), old_state);
}

// ---------------------------------------------------------------------------------------
// The change feed (docs/api.md, "Change feed"; README, "voxtrail pull").
// ---------------------------------------------------------------------------------------

/// POSTs NDJSON lines with an ingest token.
async fn ingest(server: &Server, token: &str, lines: &[String]) {
    let resp = client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", token)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// `voxtrail pull ARGS` to its end (off the test's runtime): success and the log's new text.
async fn pull_once(args: &[String], log: &Path) -> (bool, String) {
    let before = read(log).len();
    let mut c = pull(&args.iter().map(String::as_str).collect::<Vec<_>>(), log);
    let st = tokio::task::spawn_blocking(move || c.status().unwrap())
        .await
        .unwrap();
    (st.success(), read(log)[before..].to_owned())
}

/// The feed, by default: every row copied exactly once, 60 rows of one second included, in
/// pages of 7 (so ties straddle pages); rows ingested after the first run — one dated before
/// every other, which windows would need a lookback for — come with the second; the copy
/// verifies; rows outside --since/--until are skipped, not copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pull_copies_every_row_once_ties_included_then_new_rows() {
    let env = Env::new();
    env.operation("acme", "UTC");
    let mut lines: Vec<String> = (0..60)
        .map(|i| record(&format!("tie{i}"), "2026-10-01 08:00:00"))
        .collect();
    lines.extend((0..140).map(|i| {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            + chrono::Duration::minutes(7 * i);
        record(&format!("r{i}"), &row_ts(t))
    }));
    // Outside --since/--until: in the feed, not in the copy.
    lines.push(record("too-old", "2026-09-01 00:00:00"));
    lines.push(record("too-new", "2026-10-05 00:00:00"));
    env.import_ndjson("acme", &(lines.join("\n") + "\n"));
    let ingest_token = env.token("acme", "ingest", None);
    let server = env.serve(None);
    let url = server.url("");
    let t_truth = env.token("acme", "report", Some(1_000_000));
    let token = env.token("acme", "report", Some(1_000_000));
    let (since, until) = ("20260930000000", "20261002235959");
    for (i, dest) in ["sqlite", "ndjson"].into_iter().enumerate() {
        // The source holds 202 rows, and 2 more after each destination's first run.
        let n = 202 + 2 * i;
        let path = env.path(&format!("feed.{dest}"));
        let into = match dest {
            "sqlite" => format!("sqlite://{}", path.display()),
            d => format!("{d}:{}", path.display()),
        };
        let log = env.path(&format!("feed-{dest}.log"));
        let args: Vec<String> = [
            "--url", &url, "--token", &token, "--since", since, "--until", until, "--page", "7",
            "--into", &into,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (ok, text) = pull_once(&args, &log).await;
        assert!(ok, "{dest}: {text}");
        assert!(
            text.contains("following the change feed from its beginning"),
            "{text}"
        );
        assert!(text.contains("(2 outside --since/--until)"), "{text}");
        let done = format!(
            "pull done: {} feed pages, {n} rows read, {} new rows written, 0 replaced, cursor 1.{n}\n",
            n.div_ceil(7),
            n - 2
        );
        assert!(text.ends_with(&done), "{dest}: {text}");
        let copy = |p: &Path| match dest {
            "sqlite" => sqlite_copy(p),
            _ => ndjson_copy(p),
        };
        let want = truth(&server, &t_truth, since, until).await;
        assert_eq!(want.len(), n - 2);
        assert_same(&copy(&path), &want, dest);

        // New rows, one dated before every other; the next run reads only them.
        let now = [
            record(&format!("{dest}-later-1"), "2026-10-02 10:00:00"),
            record(&format!("{dest}-earliest"), "2026-09-30 00:00:01"),
        ];
        ingest(&server, &ingest_token, &now).await;
        let (ok, text) = pull_once(&args, &log).await;
        assert!(ok, "{dest}: {text}");
        assert!(
            text.contains(&format!("following the change feed after cursor 1.{n}\n")),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                " 2 rows read, 2 new rows written, 0 replaced, cursor 1.{}\n",
                n + 2
            )),
            "{dest}: {text}"
        );
        let want = truth(&server, &t_truth, since, until).await;
        assert_same(&copy(&path), &want, &format!("{dest} after new rows"));
    }
    // The SQLite copy lacks the two rows ingested after its last run: --verify names their
    // hours; once pulled again, it proves itself complete.
    let into = format!("sqlite://{}", env.path("feed.sqlite").display());
    let mut args: Vec<String> = [
        "--url", &url, "--token", &token, "--since", since, "--until", until, "--into", &into,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let verify: Vec<String> = args.iter().cloned().chain(["--verify".into()]).collect();
    let (ok, text) = pull_once(&verify, &env.path("verify.log")).await;
    assert!(!ok, "{text}");
    assert!(text.contains("verify: 2 hours differ"), "{text}");
    args.extend(["--page".into(), "7".into()]);
    let (ok, text) = pull_once(&args, &env.path("verify.log")).await;
    assert!(ok, "{text}");
    let (ok, text) = pull_once(&verify, &env.path("verify.log")).await;
    assert!(ok, "{text}");
    assert!(text.contains("every hour matches"), "{text}");
}

/// SIGKILL in the middle of a feed pull, several times, then a run to the end: every file and
/// database copy equals the server's data exactly; one more run reads nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pull_resumes_after_sigkill_without_loss_or_duplicates() {
    let env = Env::new();
    env.operation("acme", "UTC");
    env.seed("acme", 1500, "20261001000000", 2);
    let server = env.serve(None);
    let url = format!("http://{}", server.addr);
    let t_truth = env.token("acme", "report", Some(1_000_000));
    let want = truth(&server, &t_truth, "20260928000000", "20261001000000").await;
    assert_eq!(want.len(), 1500);
    for dest in ["ndjson", "csv", "sqlite"] {
        let token = env.token("acme", "report", Some(1_000_000));
        let path = env.path(&format!("copy.{dest}"));
        let into = match dest {
            "sqlite" => format!("sqlite://{}", path.display()),
            d => format!("{d}:{}", path.display()),
        };
        let args = [
            "--url",
            &url,
            "--token",
            &token,
            "--since",
            "20260928000000",
            "--mode",
            "feed",
            "--page",
            "40",
            "--into",
            &into,
        ];
        let log = env.path(&format!("{dest}.log"));
        let wal = env.path(&format!("copy.{dest}-wal"));
        let size = || {
            [&path, &wal]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>()
        };
        for round in 1..=3 {
            let mut child = pull(&args, &log).spawn().unwrap();
            let before = size();
            let deadline = Instant::now() + Duration::from_secs(30);
            while size() <= before + 200_000 * round * round
                && child.try_wait().unwrap().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{dest}: {}", read(&log));
        let copy = match dest {
            "ndjson" => ndjson_copy(&path),
            "csv" => csv_copy(&path),
            _ => sqlite_copy(&path),
        };
        assert_same(&copy, &want, dest);
        let st = pull(&args, &log).status().unwrap();
        assert!(st.success(), "{dest}: {}", read(&log));
        let text = read(&log);
        assert!(
            text.ends_with(
                "pull done: 0 feed pages, 0 rows read, 0 new rows written, 0 replaced, cursor 1.1500\n"
            ),
            "{dest}: {text}"
        );
        // The runs were killed in the middle: some resumed after a cursor short of the end.
        assert!(
            text.lines().any(
                |l| l.starts_with("following the change feed after cursor 1.")
                    && !l.ends_with("1.1500")
            ),
            "{text}"
        );
    }
}

/// A row that changes upstream (a mirrored operation of the source voxtrail replaces it) comes
/// again in the feed and replaces the copy's row; nothing is duplicated; the copy verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pull_replaces_a_row_changed_upstream() {
    use fake::{Fake, FakeRow, Mode, spread};
    let t0 = utc_now() - chrono::Duration::hours(2);
    let fake = Fake::start(spread("m", 30, &row_ts(t0), 60), Mode::default()).await;
    let env = Env::new();
    let server = env.serve(None);
    let since = api_ts(t0 - chrono::Duration::minutes(1));
    let out = env
        .cmd()
        .args([
            "mirror",
            "set",
            "--operation",
            "live",
            "--url",
            &fake.url(),
            "--timezone",
            "UTC",
            "--since",
            &since,
            "--every",
            "1s",
            "--lookback",
            "3h",
        ])
        .env("VOXTRAIL_UPSTREAM_TOKEN", "upstream-token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = env.token("live", "report", Some(1_000_000));
    let end = api_ts(utc_now() + chrono::Duration::hours(1));
    let mirrored = eventually(Duration::from_secs(20), async || {
        let resp = client()
            .get(server.report_url(&since, &end))
            .header("wolkvox-token", &token)
            .send()
            .await
            .unwrap();
        resp.status() == 200
            && resp.json::<Value>().await.unwrap()["data"]
                .as_array()
                .unwrap()
                .len()
                == 30
    })
    .await;
    assert!(mirrored, "{}", server.logs());

    let path = env.path("copy.db");
    let into = format!("sqlite://{}", path.display());
    let log = env.path("changed.log");
    let args: Vec<String> = [
        "--url",
        &server.url(""),
        "--token",
        &token,
        "--since",
        &since,
        "--timezone",
        "UTC",
        "--into",
        &into,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, text) = pull_once(&args, &log).await;
    assert!(ok, "{text}");
    assert!(text.contains(" 30 new rows written, 0 replaced"), "{text}");

    let mut changed = FakeRow::chat12("m3", &row_ts(t0 + chrono::Duration::minutes(3)), false);
    changed.fields[7].1 = "edited upstream".into();
    fake.upsert_row(changed);
    let replaced = eventually(Duration::from_secs(20), async || {
        truth(&server, &token, &since, &end).await["m3"]["body"] == "edited upstream"
    })
    .await;
    assert!(replaced, "{}", server.logs());
    let (ok, text) = pull_once(&args, &log).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(" 1 rows read, 0 new rows written, 1 replaced"),
        "{text}"
    );
    let copy = sqlite_copy(&path);
    assert_eq!(copy["m3"]["body"], "edited upstream");
    assert_same(
        &copy,
        &truth(&server, &token, &since, &end).await,
        "copy after a change",
    );
    let mut verify = args.clone();
    verify.extend(["--until".to_owned(), end.clone(), "--verify".to_owned()]);
    let (ok, text) = pull_once(&verify, &log).await;
    assert!(ok, "{text}");
}

/// Against the hosted API (its fake: 404 for the feed's path) the default mode says once that
/// there is no feed and copies by windows, exactly; `--mode feed` is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_windows_against_the_hosted_api() {
    use fake::{Fake, Fault, Mode, spread};
    let rows = spread("h", 120, "2026-05-01 00:00:00", 900);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    // A retryable fault on the feed request first: retried, then the 404 decides.
    fake.script([Fault::Status500]);
    let env = Env::new();
    let out = env.path("copy.ndjson");
    let log = env.path("pull.log");
    let into = format!("ndjson:{}", out.display());
    let mut args: Vec<String> = [
        "--url",
        &fake.url(),
        "--token",
        "t",
        "--since",
        "20260430000000",
        "--until",
        "20260503000000",
        "--timezone",
        "UTC",
        "--follow",
        "--every",
        "1s",
        "--backoff",
        "1ms",
        "--into",
        &into,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = pull(&args.iter().map(String::as_str).collect::<Vec<_>>(), &log)
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || ndjson_copy(&out).len()
            == 120)
        .await,
        "{}",
        read(&log)
    );
    // Two more cycles, then stop: the fallback is decided and said once per run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sigterm(&child);
    let st = wait(&mut child, Duration::from_secs(30));
    let text = read(&log);
    assert!(st.success(), "{text}");
    assert_eq!(
        text.matches("the source has no change feed (/api/v2/voxtrail/chat_12/feed answered 404")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("): pulling by windows"), "{text}");
    assert!(text.contains("pull done: "), "{text}");
    assert!(text.contains(" windows, "), "{text}");
    assert_same(&ndjson_copy(&out), &fake_copy(&rows), "copy by windows");
    // A hosted front end that answers every path with a page (200, HTML) has no feed either.
    args.retain(|a| a != "--follow");
    fake.front_page_for_unknown_paths(true);
    let (ok, text) = pull_once(&args, &env.path("front.log")).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "the source has no change feed (/api/v2/voxtrail/chat_12/feed answered HTTP 200 without JSON): pulling by windows"
        ),
        "{text}"
    );
    assert!(text.contains(" 0 new rows written"), "{text}");
    fake.front_page_for_unknown_paths(false);
    // Forced to the feed: a clear error, non-zero.
    args.extend(["--mode".to_owned(), "feed".to_owned()]);
    let (ok, text) = pull_once(&args, &env.path("forced.log")).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: --mode feed: the source has no change feed"),
        "{text}"
    );
}

/// A feed cursor the source never gave out (of another operation, or junk written into the
/// copy) stops the run with a clear error and changes nothing; bad flags are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_feed_cursor_in_the_destination_is_a_clear_error() {
    let env = Env::new();
    env.operation("acme", "UTC");
    env.operation("other", "UTC");
    env.seed("acme", 30, "20261001000000", 1);
    env.seed("other", 30, "20261001000000", 1);
    let server = env.serve(None);
    let path = env.path("copy.db");
    let into = format!("sqlite://{}", path.display());
    let log = env.path("cursor.log");
    let args = |token: &str| -> Vec<String> {
        [
            "--url",
            &server.url(""),
            "--token",
            token,
            "--since",
            "20260901000000",
            "--into",
            &into,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let acme = env.token("acme", "report", None);
    let other = env.token("other", "report", None);
    let (ok, text) = pull_once(&args(&acme), &log).await;
    assert!(ok, "{text}");
    // The same copy with a token of another operation: its cursor is not that operation's.
    let (ok, text) = pull_once(&args(&other), &log).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: the destination's feed cursor \"1.30\" was not given out by http://"),
        "{text}"
    );
    assert!(
        text.contains("pull into a new destination, or with --mode windows"),
        "{text}"
    );
    assert!(text.contains("(400 INVALID CURSOR)"), "{text}");
    for junk in ["1.999", "not-a-cursor"] {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE pull_feed_cursors SET cursor = ?1", [junk])
            .unwrap();
        drop(conn);
        let (ok, text) = pull_once(&args(&acme), &log).await;
        assert!(!ok, "{junk}: {text}");
        assert!(
            text.contains(&format!("error: the destination's feed cursor \"{junk}\"")),
            "{text}"
        );
        assert_eq!(sqlite_copy(&path).len(), 30);
    }
    // Bad flags: one clear line each.
    let mut bad = args(&acme);
    bad.extend(["--page", "0", "--api", "other_report", "--mode", "feed"].map(String::from));
    let (ok, text) = pull_once(&bad, &log).await;
    assert!(!ok);
    assert!(
        text.contains("--page 0: a feed page holds 1 to 10000 rows"),
        "{text}"
    );
    assert!(
        text.contains("--mode feed: the change feed carries chat_12 only"),
        "{text}"
    );
    let mut bad = args(&acme);
    bad.extend(["--mode", "sideways"].map(String::from));
    let (ok, text) = pull_once(&bad, &log).await;
    assert!(!ok);
    assert!(text.contains("sideways"), "{text}");
}
