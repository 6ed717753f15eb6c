//! End-to-end tests of connection-level hardening through the real binary and real TCP:
//! slowloris and idle connections closed by the header-read timeout while other clients'
//! polls are answered, idle keep-alive connections closed, oversized request heads refused,
//! the connection cap (503 and a rate-limited log line), the open-file limit raised at start,
//! and a SIGTERM that ends despite slow readers and half-sent requests.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const OP: &str = "acme";
const INI: &str = "20260301000000";
const END: &str = "20260301235959";

/// Raises this test process's soft open-file limit so it can hold thousands of sockets.
fn raise_own_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// An operation with one known row and a report token.
fn one_row_env() -> (Env, String) {
    let env = Env::new();
    env.operation(OP, "America/Bogota");
    env.import_ndjson(OP, &record("known-row", "2026-03-01 10:00:00"));
    let token = env.token(OP, "report", None);
    (env, token)
}

/// A poll through a fresh connection; asserts the exact row comes back.
async fn poll_ok(server: &Server, token: &str) {
    let resp = plain_client()
        .get(server.report_url(INI, END))
        .header("wolkvox-token", token)
        .send()
        .await
        .expect("the poll is answered");
    assert_eq!(resp.status(), 200);
    let v = json(&resp.bytes().await.unwrap());
    assert_eq!(v["msg"], "1 records were found");
    assert_eq!(v["data"][0]["conn_id"], "known-row");
}

/// Waits (at most 10 s) for a log line holding `needle`; panics with the logs otherwise.
async fn wait_log(server: &Server, needle: &str) {
    let logs = server.stderr.clone();
    let seen = eventually(Duration::from_secs(10), async || {
        logs.lock().unwrap().contains(needle)
    })
    .await;
    assert!(seen, "no log line with {needle:?}: {}", server.logs());
}

/// A connection that sent part of a request head and nothing more.
async fn half_sent(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connecting");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .expect("sending part of a head");
    s
}

/// Waits until the server closes `s` (end of stream or reset); false if it is still open
/// after `within`. Anything the server sent first is returned.
async fn closed_within(mut s: TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(got)
}

/// Waits until every stream is closed by the server; returns how many stayed open.
async fn count_still_open(streams: Vec<TcpStream>, within: Duration) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for s in streams {
        tasks.spawn(async move { closed_within(s, within).await.is_none() });
    }
    let mut open = 0;
    while let Some(r) = tasks.join_next().await {
        open += usize::from(r.unwrap());
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed_while_polls_are_answered() {
    raise_own_fd_limit();
    let (env, token) = one_row_env();
    let server = env.serve(Some("[http]\nheader_read_timeout_ms = 3000\n"));
    let mut held = Vec::new();
    for _ in 0..1000 {
        held.push(half_sent(&server.addr).await);
    }
    for _ in 0..2000 {
        held.push(TcpStream::connect(&server.addr).await.expect("connecting"));
    }
    // Other clients are still served while the 3,000 connections are open.
    poll_ok(&server, &token).await;
    poll_ok(&server, &token).await;
    // Every one of them is closed by the header-read timeout (bound generous: "eventually").
    let still_open = count_still_open(held, Duration::from_secs(60)).await;
    assert_eq!(still_open, 0, "connections the server never closed");
    poll_ok(&server, &token).await;
    let logs = server.stderr.clone();
    assert!(
        eventually(Duration::from_secs(10), async || {
            logs.lock()
                .unwrap()
                .contains("closing connections that sent no request in time")
        })
        .await,
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (env, token) = one_row_env();
    let server = env.serve(Some(
        "[http]\nidle_timeout_ms = 1000\nheader_read_timeout_ms = 30000\n",
    ));
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    let req = format!(
        "GET /api/v2/reports_manager.php?api=chat_12&date_ini={INI}&date_end={END} HTTP/1.1\r\nHost: x\r\nwolkvox-token: {token}\r\n\r\n"
    );
    // Two requests on the same connection: keep-alive works, then idleness closes it.
    for _ in 0..2 {
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before the answer ended");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("content-length");
                if body.len() >= len {
                    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                    assert!(body.contains("known-row"));
                    break;
                }
            }
        }
    }
    // Closed by the idle timeout (1 s), not by the header timeout (30 s from the last answer).
    assert!(
        closed_within(s, Duration::from_secs(15)).await.is_some(),
        "the idle keep-alive connection was not closed by the idle timeout"
    );
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_the_connection_closes() {
    let (env, token) = one_row_env();
    let server = env.serve(Some("[http]\nmax_header_bytes = 16384\n"));
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 32 * 1024));
    s.write_all(&req).await.unwrap();
    let got = closed_within(s, Duration::from_secs(30))
        .await
        .expect("the connection with an oversized head was never closed");
    if !got.is_empty() {
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    }
    // A head under the cap is still served.
    let big_ok = format!("X-Fine: {}", "b".repeat(8000));
    let resp = raw_get(&server.addr, b"/healthz", &[big_ok.as_bytes()]).await;
    assert_eq!(resp.status, 200);
    poll_ok(&server, &token).await;
    let logs = server.stderr.clone();
    assert!(
        eventually(Duration::from_secs(10), async || {
            logs.lock().unwrap().contains("request head too large")
        })
        .await,
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_and_a_log_line() {
    let (env, token) = one_row_env();
    let server = env.serve(Some(
        "[http]\nmax_connections = 20\nheader_read_timeout_ms = 30000\n",
    ));
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_sent(&server.addr).await);
    }
    for _ in 0..3 {
        let s = TcpStream::connect(&server.addr).await.unwrap();
        let got = closed_within(s, Duration::from_secs(30))
            .await
            .expect("a connection over the cap is closed");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.ends_with(&error_json(
            503,
            "SERVICE UNAVAILABLE",
            "TOO MANY CONNECTIONS; RETRY SHORTLY"
        )));
    }
    let logs = server.stderr.clone();
    assert!(
        eventually(Duration::from_secs(10), async || {
            let l = logs.lock().unwrap();
            l.contains("connection cap reached") && l.contains("\"refused\":1")
        })
        .await,
        "{}",
        server.logs()
    );
    // Rate-limited: three refusals in quick succession make at most two lines.
    let lines = server
        .logs()
        .lines()
        .filter(|l| l.contains("connection cap reached"))
        .count();
    assert!((1..=2).contains(&lines), "{lines} lines");
    // Once the held connections go, new clients are served again.
    drop(held);
    let served = eventually(Duration::from_secs(30), async || {
        let Ok(resp) = plain_client()
            .get(server.report_url(INI, END))
            .header("wolkvox-token", &token)
            .send()
            .await
        else {
            return false;
        };
        resp.status() == 200
    })
    .await;
    assert!(served, "the server did not serve again after the cap freed");
    poll_ok(&server, &token).await;
}

/// `voxtrail serve` started by a shell that first applies `ulimit_args` (e.g. `-S -n 256`).
fn serve_with_ulimit(env: &Env, ulimit_args: &str, config_toml: &str) -> Server {
    let path = env.path("voxtrail.toml");
    std::fs::write(&path, config_toml).unwrap();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit {ulimit_args} && exec \"$0\" \"$@\""),
        bin(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
    ])
    .arg(&path)
    .env("VOXTRAIL_DATABASE_URL", &env.db_url)
    .env_remove("VOXTRAIL_LOG");
    Server::spawn(&mut cmd)
}

fn hard_fd_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_at_start() {
    raise_own_fd_limit();
    let hard = hard_fd_limit();
    if hard < 2048 {
        eprintln!("skipped: the hard open-file limit ({hard}) is too low to show the raise");
        return;
    }
    let (env, token) = one_row_env();
    let server = serve_with_ulimit(
        &env,
        "-S -n 256",
        "[http]\nheader_read_timeout_ms = 30000\n",
    );
    wait_log(&server, "open-file limit raised").await;
    let logs = server.logs();
    assert!(logs.contains("\"old\":256"), "{logs}");
    assert!(logs.contains(&format!("\"new\":{hard}")), "{logs}");
    // More connections than the old soft limit, and a poll is still answered.
    let mut held = Vec::new();
    for _ in 0..400 {
        held.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    poll_ok(&server, &token).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_hard_fd_limit_idle_floods_are_refused_logged_and_then_closed() {
    raise_own_fd_limit();
    let (env, token) = one_row_env();
    let server = serve_with_ulimit(&env, "-n 200", "[http]\nheader_read_timeout_ms = 2000\n");
    wait_log(&server, "lowered to what the open-file limit allows").await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    let logs = server.stderr.clone();
    assert!(
        eventually(Duration::from_secs(20), async || {
            logs.lock().unwrap().contains("connection cap reached")
        })
        .await,
        "{}",
        server.logs()
    );
    // The flood is closed by the header-read timeout; the server answers again.
    let still_open = count_still_open(held, Duration::from_secs(60)).await;
    assert_eq!(still_open, 0);
    poll_ok(&server, &token).await;
    assert!(!server.logs().contains("accepting connections failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_despite_a_slow_reader_and_half_sent_requests() {
    let env = Env::new();
    env.operation("big", "America/Bogota");
    env.seed("big", 5000, "20261001235959", 1);
    let token = env.token("big", "report", None);
    let server = env.serve(Some(
        "[limits]\nconcurrent_per_token = 4\n[http]\nshutdown_grace_ms = 5000\nheader_read_timeout_ms = 30000\n",
    ));
    let target =
        "/api/v2/reports_manager.php?api=chat_12&date_ini=20260930000000&date_end=20261001235959";
    // One reader that never reads past its first bytes, and one that will read to the end.
    let stuck = slow_get(&server.addr, target, &token, 4096).await;
    assert_eq!(stuck.status, 200);
    let mut fast = plain_client()
        .get(server.url(target))
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), 200);
    let expected = fast.content_length().expect("content-length") as usize;
    let mut body = fast.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert!(body.len() < expected);
    let mut half = Vec::new();
    for _ in 0..50 {
        half.push(half_sent(&server.addr).await);
    }
    // Give the server time to take the 50 connections in (they are accepted, not queued).
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.sigterm();
    // Half-sent requests are closed at once (well before the grace period would end them).
    let still_open = count_still_open(half, Duration::from_secs(20)).await;
    assert_eq!(
        still_open, 0,
        "half-sent requests kept open during shutdown"
    );
    // The answer in flight before SIGTERM completes intact.
    while let Some(chunk) = fast.chunk().await.expect("the answer in flight is not cut") {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), expected);
    let v = json(&body);
    assert_eq!(v["msg"], "5000 records were found");
    // And the process exits although one reader never reads: cut after the grace period.
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "exit status: {status}");
    drop(stuck);
}
