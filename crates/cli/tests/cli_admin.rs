//! End-to-end tests of the admin command line (README.md): `operation`, `token`, `seed`,
//! `maintenance`, `demo` and the global `--database` flag, always through the real binary.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A refused command: non-zero exit, nothing on stdout, one non-empty line on stderr that
/// contains every `needles` (case-insensitive).
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout of a failed command: {}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err:?}");
    for n in needles {
        assert!(
            lines[0].to_lowercase().contains(&n.to_lowercase()),
            "error line {:?} lacks {n:?}",
            lines[0]
        );
    }
}

/// A command refused by the argument parser: non-zero exit and a message on stderr.
fn assert_usage_error(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure; stdout: {}",
        stdout(out)
    );
    assert!(
        stderr(out).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(out)
    );
}

// ---------------------------------------------------------------------------------------
// operation create / list
// ---------------------------------------------------------------------------------------

#[test]
fn operation_list_on_a_fresh_database_is_empty() {
    let env = Env::new();
    assert_eq!(env.ok(&["operation", "list"]), "");
}

#[test]
fn operation_create_applies_defaults_and_list_shows_every_operation() {
    let env = Env::new();
    env.ok(&["operation", "create", "acme"]);
    env.ok(&[
        "operation",
        "create",
        "Ñandú Café",
        "--timezone",
        "Europe/Madrid",
        "--licenses",
        "3",
    ]);
    let list = env.ok(&["operation", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let acme = lines
        .iter()
        .find(|l| l.contains("acme"))
        .expect("acme listed");
    assert!(acme.contains("America/Bogota"), "default time zone: {acme}");
    assert!(
        acme.split_whitespace().any(|f| f == "10"),
        "default licenses: {acme}"
    );
    let nandu = lines
        .iter()
        .find(|l| l.contains("Ñandú Café"))
        .expect("non-ASCII name listed");
    assert!(nandu.contains("Europe/Madrid"), "{nandu}");
    assert!(nandu.split_whitespace().any(|f| f == "3"), "{nandu}");
}

#[test]
fn bad_operations_are_refused_with_one_line_and_nothing_is_written() {
    let env = Env::new();
    env.operation("acme", "America/New_York");
    let before = env.ok(&["operation", "list"]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "operation",
                "create",
                "x",
                "--timezone",
                "Mars/Olympus_Mons",
            ],
            &["Mars/Olympus_Mons"],
        ),
        (
            &["operation", "create", "x", "--timezone", ""],
            &["time zone"],
        ),
        (&["operation", "create", "acme"], &["acme", "exists"]),
        (
            &["operation", "create", "acme", "--timezone", "Europe/Paris"],
            &["acme"],
        ),
        (&["operation", "create", ""], &["name"]),
        (&["operation", "create", "   "], &["name"]),
        (&["operation", "create", " acme"], &["name"]),
        (
            &["operation", "create", "x", "--licenses", "0"],
            &["licenses"],
        ),
        (&["operation", "create", "a\nb"], &["control"]),
        (&["operation", "create", "a\tb"], &["control"]),
        (&["operation", "create", "a\u{7}b"], &["control"]),
        (&["operation", "create", "a\u{1b}[31mb"], &["control"]),
    ];
    for (args, needles) in cases {
        let out = env.run(args);
        assert_one_line_error(&out, needles);
    }
    let long = "n".repeat(101);
    assert_one_line_error(&env.run(&["operation", "create", &long]), &["name"]);
    assert_eq!(
        env.ok(&["operation", "list"]),
        before,
        "a refused create changed the operations"
    );
}

#[test]
fn non_numeric_or_negative_licenses_are_usage_errors() {
    let env = Env::new();
    assert_usage_error(
        &env.run(&["operation", "create", "x", "--licenses=-1"]),
        "-1",
    );
    assert_usage_error(
        &env.run(&["operation", "create", "x", "--licenses", "ten"]),
        "--licenses",
    );
    assert_usage_error(&env.run(&["operation", "create"]), "NAME");
    assert_eq!(env.ok(&["operation", "list"]), "");
}

// ---------------------------------------------------------------------------------------
// token create / list / revoke
// ---------------------------------------------------------------------------------------

/// Bits of entropy a token's random part can carry, from its alphabet and length.
fn token_bits(token: &str) -> f64 {
    let rest = token.strip_prefix("vxt_").expect("vxt_ prefix");
    let per_char = if rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        4.0
    } else {
        assert!(
            rest.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "token {token:?} is not URL-safe"
        );
        6.0
    };
    rest.len() as f64 * per_char
}

fn create_token(env: &Env, args: &[&str]) -> (String, i64) {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(
        out.status.success(),
        "token create failed: {}",
        stderr(&out)
    );
    let stdout = stdout(&out);
    assert!(
        stdout.ends_with('\n'),
        "token line ends with a newline: {stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout holds the token alone: {stdout:?}");
    let token = lines[0].to_owned();
    assert_eq!(token.trim(), token, "no blanks around the token");
    assert!(token.starts_with("vxt_"), "{token}");
    assert!(
        token_bits(&token) >= 128.0,
        "token {token} carries fewer than 128 bits"
    );
    let err = stderr(&out);
    assert!(!err.contains(&token), "the secret must not be on stderr");
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("token id: "))
        .unwrap_or_else(|| panic!("no 'token id: N' on stderr: {err:?}"))
        .trim()
        .parse::<i64>()
        .expect("numeric token id");
    (token, id)
}

/// All bytes of the SQLite database and its WAL/shared-memory companions.
fn database_bytes(env: &Env) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(b) = std::fs::read(env.path(&format!("voxtrail.db{suffix}"))) {
            bytes.extend_from_slice(&b);
        }
    }
    assert!(!bytes.is_empty(), "database file not found");
    bytes
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn list_fields(env: &Env) -> Vec<Vec<String>> {
    env.ok(&["token", "list"])
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn token_create_prints_the_secret_alone_and_its_id_on_stderr() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let (t1, id1) = create_token(&env, &["--operation", "acme"]);
    let (t2, id2) = create_token(&env, &["--operation", "acme", "--scope", "ingest"]);
    let (t3, id3) = create_token(
        &env,
        &[
            "--operation",
            "acme",
            "--description",
            "BI nightly",
            "--daily-limit",
            "5",
        ],
    );
    assert!(t1 != t2 && t2 != t3 && t1 != t3, "tokens repeat");
    assert!(id1 != id2 && id2 != id3 && id1 != id3, "ids repeat");
}

#[test]
fn token_list_shows_one_line_per_token_in_spec_order_and_never_the_secret() {
    let env = Env::new();
    env.ok(&["operation", "create", "acme", "--licenses", "3"]);
    env.operation("beta", "Europe/Madrid");
    let (t1, id1) = create_token(&env, &["--operation", "acme", "--description", "Power BI"]);
    let (t2, id2) = create_token(
        &env,
        &[
            "--operation",
            "beta",
            "--scope",
            "ingest",
            "--description",
            "line one\nline two\ttab",
        ],
    );
    let (t3, id3) = create_token(&env, &["--operation", "acme", "--daily-limit", "7"]);
    env.ok(&["token", "revoke", &id3.to_string()]);

    let raw = env.ok(&["token", "list"]);
    for t in [&t1, &t2, &t3] {
        assert!(!raw.contains(t.as_str()), "token list shows a secret");
        assert!(
            !raw.contains(&t["vxt_".len()..]),
            "token list shows a secret's random part"
        );
    }
    let rows = list_fields(&env);
    assert_eq!(
        rows.len(),
        3,
        "one line per token, even with a multi-line description: {raw:?}"
    );
    for r in &rows {
        assert_eq!(
            r.len(),
            7,
            "ID, operation, scope, description, daily limit, created, revoked: {r:?}"
        );
    }
    let by_id = |id: i64| {
        rows.iter()
            .find(|r| r[0] == id.to_string())
            .unwrap_or_else(|| panic!("id {id} listed first"))
    };

    let r1 = by_id(id1);
    assert_eq!(
        (r1[1].as_str(), r1[2].as_str(), r1[3].as_str()),
        ("acme", "report", "Power BI")
    );
    assert_eq!(r1[4], "3000", "default daily limit = licenses × 1000");
    assert!(r1[5].starts_with("20"), "created is a date: {r1:?}");
    assert!(!r1[6].starts_with("20"), "not revoked: {r1:?}");

    let r2 = by_id(id2);
    assert_eq!((r2[1].as_str(), r2[2].as_str()), ("beta", "ingest"));
    assert!(
        r2[3].contains("line one") && r2[3].contains("line two"),
        "{r2:?}"
    );
    assert!(
        r2[4].parse::<u64>().is_err(),
        "ingest tokens have no daily limit: {r2:?}"
    );

    let r3 = by_id(id3);
    assert_eq!(r3[4], "7");
    assert!(r3[6].starts_with("20"), "revoked shows when: {r3:?}");

    // The database keeps hashes only.
    let db = database_bytes(&env);
    for t in [&t1, &t2, &t3] {
        assert!(
            !contains(&db, t.as_bytes()),
            "the database holds a token secret in clear"
        );
        assert!(
            !contains(&db, &t.as_bytes()["vxt_".len()..]),
            "the database holds a token's random part"
        );
    }
}

#[test]
fn token_revoke_reports_unknown_and_already_revoked() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let (_, id) = create_token(&env, &["--operation", "acme"]);
    let out = env.run(&["token", "revoke", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let created = list_fields(&env)[0][5].clone();
    let revoked_at = list_fields(&env)[0][6].clone();

    let again = env.run(&["token", "revoke", &id.to_string()]);
    assert!(
        stderr(&again).contains("already revoked"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        list_fields(&env)[0][6],
        revoked_at,
        "a second revoke changes nothing"
    );
    assert_eq!(list_fields(&env)[0][5], created);

    assert_one_line_error(&env.run(&["token", "revoke", "999"]), &["999"]);
    assert_usage_error(&env.run(&["token", "revoke", "abc"]), "abc");
    assert_eq!(list_fields(&env).len(), 1);
}

#[test]
fn bad_token_requests_are_refused_and_write_nothing() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    assert_usage_error(
        &env.run(&["token", "create", "--operation", "acme", "--scope", "admin"]),
        "admin",
    );
    assert_usage_error(&env.run(&["token", "create"]), "--operation");
    assert_usage_error(
        &env.run(&["token", "create", "--operation", "acme", "--daily-limit=-3"]),
        "-3",
    );
    assert_one_line_error(
        &env.run(&["token", "create", "--operation", "nope"]),
        &["nope"],
    );
    let long = "d".repeat(501);
    assert_one_line_error(
        &env.run(&[
            "token",
            "create",
            "--operation",
            "acme",
            "--description",
            &long,
        ]),
        &["description"],
    );
    assert_eq!(
        env.ok(&["token", "list"]),
        "",
        "a refused create left a token behind"
    );
}

#[tokio::test]
async fn a_created_token_works_and_a_revoked_one_is_refused_by_a_running_server() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let (token, id) = create_token(&env, &["--operation", "acme"]);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let status = |t: String, u: String| async move {
        let resp = client()
            .get(u)
            .header("wolkvox-token", t)
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.text().await.unwrap())
    };
    let (code, body) = status(token.clone(), url.clone()).await;
    assert_eq!(code, 200, "{body}");
    env.ok(&["token", "revoke", &id.to_string()]);
    let refused = eventually(Duration::from_secs(10), async || {
        let (code, body) = status(token.clone(), url.clone()).await;
        code == 403 && body.contains("PLEASE VALIDATE TOKEN")
    })
    .await;
    assert!(refused, "the revoked token is still accepted");
}

// ---------------------------------------------------------------------------------------
// seed
// ---------------------------------------------------------------------------------------

async fn report_body(server: &Server, token: &str, ini: &str, end: &str) -> String {
    let resp = client()
        .get(server.report_url(ini, end))
        .header("wolkvox-token", token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn seeded_env(args: &[&str]) -> (Env, String) {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let mut all = vec!["seed", "--operation", "acme"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "seed failed: {}", stderr(&out));
    (env, token)
}

#[tokio::test]
async fn seed_is_deterministic_and_idempotent() {
    let args = [
        "--count",
        "3000",
        "--days",
        "2",
        "--until",
        "20261001120000",
        "--seed",
        "7",
    ];
    let (a, ta) = seeded_env(&args);
    let (b, tb) = seeded_env(&args);
    let (c, tc) = seeded_env(&[
        "--count",
        "3000",
        "--days",
        "2",
        "--until",
        "20261001120000",
        "--seed",
        "8",
    ]);
    let (sa, sb, sc) = (a.serve(None), b.serve(None), c.serve(None));
    let (ini, end) = ("20260920000000", "20261010000000");
    let body_a = report_body(&sa, &ta, ini, end).await;
    let body_b = report_body(&sb, &tb, ini, end).await;
    let body_c = report_body(&sc, &tc, ini, end).await;
    assert!(
        body_a
            .starts_with(r#"{"code":"200","error":null,"msg":"3000 records were found","data":["#)
    );
    assert!(
        body_a == body_b,
        "the same seed arguments gave different rows"
    );
    assert!(body_a != body_c, "a different --seed gave the same rows");

    // Seeding the same database again adds nothing.
    let again = a.run(&[
        "seed",
        "--operation",
        "acme",
        "--count",
        "3000",
        "--days",
        "2",
        "--until",
        "20261001120000",
        "--seed",
        "7",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("0 inserted") && err.contains("3000 already present"),
        "{err}"
    );
    assert_eq!(
        report_body(&sa, &ta, ini, end).await,
        body_a,
        "re-seeding changed the report"
    );
}

#[tokio::test]
async fn seeded_rows_are_realistic_and_inside_the_window() {
    let count = 20_000usize;
    let (env, token) = seeded_env(&[
        "--count",
        "20000",
        "--days",
        "3",
        "--until",
        "20261001120000",
    ]);
    let server = env.serve(None);
    // A window much wider than the seeded days: nothing may fall outside [until - 3 d, until].
    let body = report_body(&server, &token, "20260915000000", "20261010000000").await;
    let head =
        format!(r#"{{"code":"200","error":null,"msg":"{count} records were found","data":["#);
    assert!(body.starts_with(&head), "{}", &body[..200.min(body.len())]);
    let v = json(body.as_bytes());
    let data = v["data"].as_array().expect("data array");
    assert_eq!(data.len(), count);

    let (lo, hi) = ("2026-09-28 12:00:00", "2026-10-01 12:00:00");
    let mut spanish = 0;
    let mut english = 0;
    let mut html = 0;
    let mut agents = std::collections::HashSet::new();
    let mut codes = std::collections::HashSet::new();
    let mut last_date = String::new();
    for row in data {
        let obj = row.as_object().expect("row object");
        assert_eq!(obj.len(), 11);
        for (k, val) in obj {
            assert!(val.is_string(), "{k} is not a string");
        }
        let date = row["date"].as_str().unwrap();
        assert!(date >= lo && date <= hi, "date {date} outside [{lo}, {hi}]");
        assert!(date >= last_date.as_str(), "rows not ordered by date");
        last_date = date.to_owned();
        assert_eq!(row["channel"], "email");
        for f in [
            "conn_id",
            "agent_id",
            "agent_name",
            "from",
            "to",
            "subject",
            "body",
            "cod_act",
            "description_cod_act",
        ] {
            assert!(!row[f].as_str().unwrap().is_empty(), "{f} empty in {row}");
        }
        assert!(row["from"].as_str().unwrap().contains('@'));
        assert!(row["to"].as_str().unwrap().contains('@'));
        let b = row["body"].as_str().unwrap();
        if b.contains(" que ") || b.contains(" su ") {
            spanish += 1;
        }
        if b.contains(" the ") || b.contains(" your ") {
            english += 1;
        }
        if b.contains("<table") {
            html += 1;
        }
        agents.insert(row["agent_id"].as_str().unwrap().to_owned());
        codes.insert(row["cod_act"].as_str().unwrap().to_owned());
    }
    assert!(spanish > count / 10, "only {spanish} Spanish bodies");
    assert!(english > count / 10, "only {english} English bodies");
    assert!(html >= 1, "no HTML body among {count} rows");
    assert!(
        html < count / 10,
        "{html} HTML bodies: they should be a few"
    );
    assert!(agents.len() >= 5, "only {} agents", agents.len());
    assert!(codes.len() >= 5, "only {} typification codes", codes.len());
    // About 2.5 KB per row, like real mail: between 2 and 3.2 KB on average.
    let row_bytes = body.len() - head.len() - "]}".len() - (count - 1);
    let avg = row_bytes as f64 / count as f64;
    assert!(
        (2000.0..=3200.0).contains(&avg),
        "average row is {avg:.0} bytes, expected about 2500"
    );
}

#[tokio::test]
async fn seed_without_until_ends_now_in_the_operation_time() {
    let (env, token) = seeded_env(&["--count", "300", "--days", "1"]);
    // Bogotá has no DST: local time is UTC-5.
    let now = chrono::Utc::now().naive_utc() - chrono::Duration::hours(5);
    let fmt = |t: chrono::NaiveDateTime| t.format("%Y%m%d%H%M%S").to_string();
    let server = env.serve(None);
    let ini = now - chrono::Duration::days(3);
    let end = now + chrono::Duration::days(1);
    let v = json(
        report_body(&server, &token, &fmt(ini), &fmt(end))
            .await
            .as_bytes(),
    );
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 300, "every row lies within the last day");
    let latest = chrono::NaiveDateTime::parse_from_str(
        data[299]["date"].as_str().unwrap(),
        "%Y-%m-%d %H:%M:%S",
    )
    .unwrap();
    let earliest = chrono::NaiveDateTime::parse_from_str(
        data[0]["date"].as_str().unwrap(),
        "%Y-%m-%d %H:%M:%S",
    )
    .unwrap();
    assert!(
        latest <= now + chrono::Duration::minutes(10),
        "rows in the future: {latest} > {now}"
    );
    assert!(
        earliest >= now - chrono::Duration::days(1) - chrono::Duration::minutes(10),
        "{earliest}"
    );
}

#[test]
fn bad_seed_arguments_are_refused_with_one_line() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    for until in [
        "20260230120000",
        "20261001240000",
        "20261301000000",
        "2026100112000",
        "202610011200000",
        "tomorrow",
        "2026-10-01 12:00:00",
        "",
    ] {
        let out = env.run(&[
            "seed",
            "--operation",
            "acme",
            "--count",
            "10",
            "--until",
            until,
        ]);
        assert_one_line_error(&out, &["--until"]);
    }
    assert_one_line_error(
        &env.run(&["seed", "--operation", "nope", "--count", "10"]),
        &["nope"],
    );
    assert_one_line_error(
        &env.run(&[
            "seed",
            "--operation",
            "acme",
            "--count",
            "10",
            "--days",
            "0",
        ]),
        &["--days"],
    );
    assert_usage_error(&env.run(&["seed", "--operation", "acme"]), "--count");
    assert_usage_error(
        &env.run(&["seed", "--operation", "acme", "--count=-5"]),
        "-5",
    );
    // Nothing was seeded by any of the refused commands.
    let out = env.run(&[
        "seed",
        "--operation",
        "acme",
        "--count",
        "10",
        "--until",
        "20261001120000",
    ]);
    assert!(stderr(&out).contains("10 inserted"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// maintenance
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn maintenance_on_and_off_switch_a_running_server() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let get = async |u: &str| {
        let resp = client()
            .get(u)
            .header("wolkvox-token", &token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let on = env.run(&["maintenance", "on"]);
    assert!(on.status.success(), "{}", stderr(&on));
    assert!(on.stdout.is_empty());
    let closed = eventually(Duration::from_secs(10), async || {
        let (code, body) = get(&url).await;
        code == 403 && body.contains("THE API IS TEMPORARILY DISABLED FOR MAINTENANCE")
    })
    .await;
    assert!(closed, "maintenance on did not close the API");
    assert!(
        env.run(&["maintenance", "on"]).status.success(),
        "switching on twice is fine"
    );
    let off = env.run(&["maintenance", "off"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let open = eventually(Duration::from_secs(10), async || get(&url).await.0 == 200).await;
    assert!(open, "maintenance off did not reopen the API");
}

#[test]
fn maintenance_takes_only_on_or_off() {
    let env = Env::new();
    assert_usage_error(&env.run(&["maintenance", "maybe"]), "maybe");
    assert_usage_error(&env.run(&["maintenance"]), "on");
    assert_usage_error(&env.run(&["maintenance", "ON"]), "ON");
}

// ---------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------

/// The single-quoted pieces of a shell command line.
fn single_quoted(line: &str) -> Vec<&str> {
    line.split('\'').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn demo_prints_a_curl_command_that_works() {
    let env = Env::new();
    let mut cmd = Command::new(bin());
    // The default: a fresh demo database in the temporary directory.
    cmd.env_remove("VOXTRAIL_DATABASE_URL")
        .env_remove("VOXTRAIL_LOG")
        .env("TMPDIR", env.dir.path())
        .current_dir(env.dir.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--rows", "2000"]);
    let (server, lines) = spawn_with_stdout(&mut cmd);
    let mut seen = Vec::new();
    let curl = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "no curl line; stdout so far: {seen:?}; stderr: {}",
                    server.logs()
                )
            });
        if line.starts_with("curl ") {
            break line;
        }
        seen.push(line);
    };
    assert_eq!(
        seen.first().map(String::as_str),
        Some(format!("voxtrail listening on http://{}", server.addr).as_str())
    );
    let quoted = single_quoted(&curl);
    let token = quoted
        .iter()
        .find_map(|q| q.strip_prefix("wolkvox-token:"))
        .unwrap_or_else(|| panic!("no wolkvox-token header in {curl}"))
        .trim()
        .to_owned();
    let url = quoted
        .iter()
        .find(|q| q.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {curl}"));
    assert!(token.starts_with("vxt_"), "{token}");
    assert!(
        seen.iter().any(|l| l.contains(&token)),
        "the token is printed on its own line too: {seen:?}"
    );
    assert!(
        url.contains(&server.addr),
        "{url} does not point at {}",
        server.addr
    );
    assert!(url.contains("api=chat_12"), "{url}");

    let resp = client()
        .get(*url)
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = json(&resp.bytes().await.unwrap());
    let rows = v["data"].as_array().expect("data").len();
    assert!(rows > 0, "the demo curl command finds no rows: {v}");
    assert_eq!(v["msg"], format!("{rows} records were found"));
    drop(server);
    let demo_db = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("voxtrail-demo-")
        });
    assert!(
        demo_db,
        "the demo database is not in the temporary directory"
    );
}

// ---------------------------------------------------------------------------------------
// global flags
// ---------------------------------------------------------------------------------------

#[test]
fn unsupported_or_unreachable_databases_are_clear_errors() {
    let env = Env::new();
    for (url, needle) in [
        ("mysql://x", "mysql://x"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///nonexistent-dir/x.db", "/nonexistent-dir"),
        ("voxtrail.db", "voxtrail.db"),
    ] {
        for args in [
            &["operation", "list"][..],
            &["token", "list"][..],
            &["maintenance", "on"][..],
        ] {
            let mut all = vec!["--database", url];
            all.extend_from_slice(args);
            assert_one_line_error(&env.run(&all), &[needle]);
        }
    }
    assert!(!std::path::Path::new("/nonexistent-dir").exists());
}

#[test]
fn the_database_flag_overrides_the_environment() {
    let env = Env::new();
    let other = format!("sqlite://{}", env.path("other.db").display());
    env.ok(&["--database", &other, "operation", "create", "elsewhere"]);
    assert_eq!(
        env.ok(&["operation", "list"]),
        "",
        "the env database was used instead of --database"
    );
    assert!(
        env.ok(&["operation", "list", "--database", &other])
            .contains("elsewhere")
    );
}
