//! Shared helpers for the end-to-end tests: a fresh database directory per test, the real
//! `voxtrail` binary for admin commands, and real `voxtrail serve` processes on port 0.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_voxtrail")
}

/// A fresh directory with its own SQLite database.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db_url: String,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = format!("sqlite://{}", dir.path().join("voxtrail.db").display());
        Self { dir, db_url }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `voxtrail` command against this database.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("VOXTRAIL_DATABASE_URL", &self.db_url);
        c.env_remove("VOXTRAIL_LOG");
        c
    }

    /// Runs `voxtrail ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running voxtrail")
    }

    /// Runs `voxtrail ARGS…` with `stdin` as standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning voxtrail");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("waiting for voxtrail");
        writer.join().expect("stdin writer");
        out
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "voxtrail {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn operation(&self, name: &str, tz: &str) {
        self.ok(&["operation", "create", name, "--timezone", tz]);
    }

    /// Creates a token and returns its secret.
    pub fn token(&self, op: &str, scope: &str, daily_limit: Option<u64>) -> String {
        let limit = daily_limit.map(|l| l.to_string());
        let mut args = vec!["token", "create", "--operation", op, "--scope", scope];
        if let Some(l) = &limit {
            args.extend(["--daily-limit", l.as_str()]);
        }
        self.ok(&args).trim().to_owned()
    }

    /// Imports NDJSON text into an operation; panics on failure.
    pub fn import_ndjson(&self, op: &str, ndjson: &str) {
        let out = self.run_stdin(&["import", "--operation", op, "-"], ndjson.as_bytes());
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `voxtrail serve` on a free port with optional TOML configuration.
    pub fn serve(&self, config_toml: Option<&str>) -> Server {
        let mut args = vec!["serve".to_owned(), "--listen".to_owned(), "127.0.0.1:0".to_owned()];
        if let Some(toml) = config_toml {
            let path = self.path("voxtrail.toml");
            std::fs::write(&path, toml).expect("writing config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        Server::spawn(self.cmd().args(&args))
    }
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning voxtrail serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log_w = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log_w.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("voxtrail listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", log.lock().unwrap());
            }
        };
        Self { child, addr, stderr: log }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// URL of a chat_12 report for a window.
    pub fn report_url(&self, ini: &str, end: &str) -> String {
        self.url(&format!(
            "/api/v2/reports_manager.php?api=chat_12&date_ini={ini}&date_end={end}"
        ))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("waiting for server") {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with no connection reuse surprises and generous timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// One NDJSON interaction line.
pub fn record(conn_id: &str, date: &str) -> String {
    format!(
        r#"{{"conn_id":"{conn_id}","agent_id":"7","agent_name":"Ana","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"Texto","date":"{date}","cod_act":"1","description_cod_act":"Venta"}}"#
    )
}

/// Parses a JSON body.
pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Polls `f` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
