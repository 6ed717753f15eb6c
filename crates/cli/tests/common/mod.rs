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
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `voxtrail serve` on a free port with optional TOML configuration.
    pub fn serve(&self, config_toml: Option<&str>) -> Server {
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
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
    /// Starts a server process and waits for its listening line; its stdout is drained.
    pub fn spawn(cmd: &mut Command) -> Self {
        spawn_with_stdout(cmd).0
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
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("waiting for server") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
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
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
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

/// Starts a server process like [`Server::spawn`], but hands back every line it prints on
/// standard output (the listening line included), for commands such as `voxtrail demo` that
/// print more than the address.
pub fn spawn_with_stdout(cmd: &mut Command) -> (Server, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning voxtrail");
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
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("voxtrail listening on http://")
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
            let _ = lines_tx.send(line);
        }
    });
    let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start: {}", log.lock().unwrap());
        }
    };
    (
        Server {
            child,
            addr,
            stderr: log,
        },
        lines_rx,
    )
}

// ---------------------------------------------------------------------------------------
// Helpers of the report API and limits tests (report_api.rs, limits.rs).
// ---------------------------------------------------------------------------------------

/// An HTTP client that never asks for compression, so bodies and lengths are the server's own
/// bytes.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_gzip()
        .build()
        .expect("http client")
}

/// The exact error body (docs/api.md, "Common to every answer"):
/// `{"code":"…","error":"…","msg":"…","data":[]}`.
pub fn error_json(status: u16, error: &str, msg: &str) -> String {
    format!(r#"{{"code":"{status}","error":"{error}","msg":"{msg}","data":[]}}"#)
}

impl Env {
    /// Creates a token; returns its secret and its ID (printed as `token id: N` on stderr).
    pub fn token_with_id(
        &self,
        op: &str,
        scope: &str,
        daily_limit: Option<u64>,
        description: Option<&str>,
    ) -> (String, i64) {
        let limit = daily_limit.map(|l| l.to_string());
        let mut args = vec!["token", "create", "--operation", op, "--scope", scope];
        if let Some(l) = &limit {
            args.extend(["--daily-limit", l.as_str()]);
        }
        if let Some(d) = description {
            args.extend(["--description", d]);
        }
        let out = self.run(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "token create failed: {err}");
        let id = err
            .lines()
            .find_map(|l| l.trim().strip_prefix("token id: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `token id: N` on stderr: {err}"));
        (
            String::from_utf8(out.stdout)
                .expect("utf-8 token")
                .trim()
                .to_owned(),
            id,
        )
    }

    /// `voxtrail seed --operation OP --count N --until UNTIL --days D`.
    pub fn seed(&self, op: &str, count: u64, until: &str, days: u32) {
        self.ok(&[
            "seed",
            "--operation",
            op,
            "--count",
            &count.to_string(),
            "--until",
            until,
            "--days",
            &days.to_string(),
        ]);
    }
}

impl Server {
    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// Waits (at most 30 s) for the process to exit on its own.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("waiting for server") {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An answer read off a raw TCP connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and headers, as text.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `GET target` with the given extra header lines (raw bytes, no CRLF) and
/// `Connection: close`, then reads the answer to the end. Nothing is encoded or checked on
/// the way, so the request may hold bytes an HTTP library would refuse to send.
pub async fn raw_get(addr: &str, target: &[u8], headers: &[&[u8]]) -> RawResponse {
    let mut req = Vec::new();
    req.extend_from_slice(b"GET ");
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(addr.as_bytes());
    req.extend_from_slice(b"\r\n");
    for h in headers {
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    raw_http(addr, &req).await
}

/// Sends raw bytes as one request and reads until the server closes the connection.
pub async fn raw_http(addr: &str, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    s.write_all(request).await.expect("sending request");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut all))
        .await
        .expect("answer within 60 s")
        .expect("reading answer");
    let split = find_bytes(&all, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no complete head in answer: {:?}",
            String::from_utf8_lossy(&all)
        )
    });
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    RawResponse {
        status,
        head,
        body: all[split + 4..].to_vec(),
    }
}

/// A client that asked for an answer, read its head and a little of its body, and then stopped
/// reading (its receive buffer is small, so the server soon cannot write any more).
#[derive(Debug)]
pub struct SlowClient {
    pub stream: tokio::net::TcpStream,
    pub status: u16,
    pub head: String,
    /// Body bytes read so far.
    pub body_read: usize,
}

/// Connects with a 4 KiB receive buffer (so a peer that stops reading soon blocks the server's
/// writes) and sends `GET path_and_query` with the token and the `extra` header lines (each
/// ending in `\r\n`); reads nothing.
pub async fn send_with_small_buffer(
    addr: &str,
    path_and_query: &str,
    token: &str,
    extra: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = sock
        .connect(addr.parse().expect("socket address"))
        .await
        .expect("connecting");
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nwolkvox-token: {token}\r\n{extra}\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("sending request");
    stream
}

/// Sends `GET path_and_query` with the token and reads the head plus at least `body_bytes`
/// bytes of body (or until the answer ends), then returns without reading further.
pub async fn slow_get(
    addr: &str,
    path_and_query: &str,
    token: &str,
    body_bytes: usize,
) -> SlowClient {
    use tokio::io::AsyncReadExt as _;
    let mut stream = send_with_small_buffer(addr, path_and_query, token, "").await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("data within 30 s")
            .expect("reading");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if let Some(p) = find_bytes(&got, b"\r\n\r\n")
            && got.len() >= p + 4 + body_bytes
        {
            break;
        }
    }
    let split = find_bytes(&got, b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&got[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    SlowClient {
        stream,
        status,
        head,
        body_read: got.len() - split - 4,
    }
}
