//! The progress bars of `seed`, `import` and `pull` through the real binary under a
//! pseudo-terminal (`script` from util-linux): the bar is drawn and the summary line is still
//! printed. (Without a terminal the plain lines are unchanged; the other suites read them.)

mod common;

use std::process::{Command, Stdio};

use common::{Env, bin};

/// `'…'` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `voxtrail ARGS…` with stdin, stdout and stderr on a pseudo-terminal; returns what
/// the terminal showed, or `None` (said on stderr) when `script` is not installed.
fn on_a_terminal(env: &Env, args: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("`script` (util-linux) is not installed; skipping the terminal test");
        return None;
    }
    let line = std::iter::once(bin())
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &line, "/dev/null"])
        .env("VOXTRAIL_DATABASE_URL", &env.db_url)
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .env_remove("VOXTRAIL_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    Some(text)
}

#[test]
fn seed_draws_a_bar_of_rows_then_prints_its_summary() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let Some(screen) = on_a_terminal(
        &env,
        &[
            "seed",
            "--operation",
            "acme",
            "--count",
            "3000",
            "--until",
            "20260301000000",
            "--days",
            "3",
        ],
    ) else {
        return;
    };
    assert!(screen.contains("3,000/3,000 rows"), "{screen}");
    assert!(
        screen.contains("\nseed done: 3000 inserted"),
        "the summary on a line of its own: {screen:?}"
    );
    assert!(
        !screen.contains("seeded "),
        "plain lines replaced by the bar: {screen}"
    );
}

#[test]
fn import_draws_a_bar_of_bytes_read_then_prints_its_summary() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let mut ndjson = String::new();
    for i in 0..500 {
        ndjson.push_str(&common::record(
            &format!("c{i}"),
            &format!("2026-02-01 10:{:02}:{:02}", i / 60, i % 60),
        ));
        ndjson.push('\n');
    }
    let file = env.path("in.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    let size = ndjson.len();
    let Some(screen) = on_a_terminal(
        &env,
        &["import", "--operation", "acme", &file.display().to_string()],
    ) else {
        return;
    };
    // indicatif shows bytes in binary units: the file's size is the bar's total.
    let total = format!("{:.2} KiB", size as f64 / 1024.0);
    assert!(screen.contains(&total), "{total} in {screen}");
    assert!(screen.contains("500 records"), "{screen}");
    assert!(
        screen.contains("imported into acme: 500 inserted, 0 duplicates"),
        "{screen}"
    );
}

#[test]
fn pull_draws_a_bar_of_the_span_then_prints_its_summary() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let mut ndjson = String::new();
    for i in 0..50 {
        ndjson.push_str(&common::record(
            &format!("p{i}"),
            &format!("2026-02-0{} 10:00:{:02}", 1 + i % 3, i),
        ));
        ndjson.push('\n');
    }
    env.import_ndjson("acme", &ndjson);
    let server = env.serve(None);
    let into = format!("ndjson:{}", env.path("copy.ndjson").display());
    let Some(screen) = on_a_terminal(
        &env,
        &[
            "pull",
            "--url",
            &server.url(""),
            "--token",
            &token,
            "--since",
            "20260201000000",
            "--until",
            "20260203235959",
            "--mode",
            "windows",
            "--into",
            &into,
        ],
    ) else {
        return;
    };
    assert!(screen.contains("100% of the span"), "{screen}");
    assert!(screen.contains("50 rows ("), "{screen}");
    // The per-window lines are still printed, above the bar.
    assert!(screen.contains("window 20260201000000"), "{screen}");
    assert!(
        screen.contains(
            "pull done: 3 windows, 50 rows read, 50 new rows written, checkpoint 20260203235959"
        ),
        "{screen}"
    );
}
