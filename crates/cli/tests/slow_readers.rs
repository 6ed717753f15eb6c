//! End to end: clients that read large answers slowly, and large gzip answers, cannot delay
//! another tenant — through the real `voxtrail serve` binary and real HTTP on 127.0.0.1.
//!
//! Assertions are about behaviour (answered, with the right body, while N slow readers are
//! connected); the time bounds are generous ceilings, never measurements
//! (`bench/slow_readers.sh` measures).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// Rows of the large answer, and bytes of filler text in each.
const BIG_ROWS: usize = 3_000;
const FILLER: usize = 2_000;

/// Pseudo-random lowercase text (compresses about 1.6:1), different for each `seed`.
fn filler(seed: u64, len: usize) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect()
}

/// `BIG_ROWS` interactions on 2026-10-01 from 08:00:00, one a second, each ~2 KB.
fn big_ndjson() -> String {
    (0..BIG_ROWS)
        .map(|i| {
            let date = format!(
                "2026-10-01 {:02}:{:02}:{:02}",
                8 + i / 3600,
                (i / 60) % 60,
                i % 60
            );
            format!(
                r#"{{"conn_id":"big-{i}","agent_id":"7","agent_name":"Ana","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"{}","date":"{date}","cod_act":"1","description_cod_act":"Venta"}}"#,
                filler(i as u64, FILLER)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const BIG_WINDOW: (&str, &str) = ("20261001000000", "20261001235959");

fn big_target() -> String {
    format!(
        "/api/v2/reports_manager.php?api=chat_12&date_ini={}&date_end={}",
        BIG_WINDOW.0, BIG_WINDOW.1
    )
}

/// Two operations: `bulk` with the large window, `other` with three rows; a token of each.
fn two_tenants(env: &Env) -> (String, String) {
    env.operation("bulk", "America/Bogota");
    env.operation("other", "America/Bogota");
    env.import_ndjson("bulk", &big_ndjson());
    let small: Vec<String> = (0..3)
        .map(|i| record(&format!("o-{i}"), &format!("2026-10-01 09:0{i}:00")))
        .collect();
    env.import_ndjson("other", &small.join("\n"));
    (
        env.token("bulk", "report", None),
        env.token("other", "report", None),
    )
}

/// Reads up to the end of the head; returns it and the body bytes read with it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..p]).into_owned();
            return (head, got[p + 4..].to_vec());
        }
        let n = stream.read(&mut buf).await.expect("reading head");
        assert!(n > 0, "connection closed before the head");
        got.extend_from_slice(&buf[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Reads an uncompressed answer's body to its `Content-Length` and checks it is the whole
/// large window: `msg` and `data` agree on every row.
async fn read_big_body(stream: &mut TcpStream, head: &str, mut body: Vec<u8>) {
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = header(head, "content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while body.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .expect("body within 60 s")
            .expect("reading body");
        assert!(n > 0, "answer cut at {} of {len} bytes", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body.len(), len, "exact Content-Length");
    let v = json(&body);
    assert_eq!(v["msg"], format!("{BIG_ROWS} records were found"));
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), BIG_ROWS);
    assert_eq!(data[0]["conn_id"], "big-0");
    assert_eq!(
        data[BIG_ROWS - 1]["conn_id"],
        format!("big-{}", BIG_ROWS - 1)
    );
}

/// Another tenant's poll: answered 200 with its three rows within a generous ceiling.
async fn other_tenant_poll(server: &Server, token: &str) -> Duration {
    let started = Instant::now();
    let resp = client()
        .get(server.report_url("20261001000000", "20261001235959"))
        .header("wolkvox-token", token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the other tenant's poll is answered");
    assert_eq!(resp.status(), 200);
    let v = json(&resp.bytes().await.expect("body"));
    assert_eq!(v["data"].as_array().expect("data").len(), 3);
    started.elapsed()
}

/// 600 connections (more than the runtime's 512 blocking threads) ask for a ~6 MB answer (more
/// than a loopback socket buffers) and stop reading after the head: another tenant's poll (a
/// token never seen before, so its lookup reaches the database) is still answered at once, a large answer asked for while
/// every snapshot is held is served once the slow clients leave, whole and exact, and the
/// slow answers themselves complete when read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_readers_do_not_delay_another_tenants_poll() {
    const SLOW: usize = 600;
    let env = Env::new();
    let (bulk, other) = two_tenants(&env);
    let server = env.serve(Some("[limits]\nconcurrent_per_token = 2000\n"));
    let addr = server.addr.clone();

    let heads = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = send_with_small_buffer(&addr, &big_target(), &bulk, "").await;
        let heads = heads.clone();
        let mut release = release_rx.clone();
        slow.push(tokio::spawn(async move {
            // Read the head (when it comes), then nothing until released.
            let got = tokio::select! {
                h = read_head(&mut stream) => Some(h),
                _ = release.wait_for(|r| *r) => None,
            };
            if got.is_some() {
                heads.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|r| *r).await;
            }
            (stream, got)
        }));
    }
    // The server is streaming to many slow clients, all stalled on full sockets.
    let streaming = eventually(Duration::from_secs(60), async || {
        heads.load(Ordering::SeqCst) >= 32
    })
    .await;
    assert!(streaming, "slow clients got their heads");

    let waited = other_tenant_poll(&server, &other).await;
    assert!(
        waited < Duration::from_secs(10),
        "another tenant's poll took {waited:?} while {SLOW} slow readers were connected"
    );
    // token_info of the other tenant too (a store call on the runtime's blocking threads).
    let info = client()
        .get(server.url("/api/v2/information.php?api=token_info"))
        .header("wolkvox-token", &other)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("token_info answered");
    assert_eq!(info.status(), 200);

    // A large answer asked for now may wait for a snapshot; it is served once others leave.
    let mut late = send_with_small_buffer(&addr, &big_target(), &bulk, "").await;
    release_tx.send(true).expect("release");
    let mut finished = Vec::new();
    for t in slow {
        finished.push(t.await.expect("slow client task"));
    }
    // One slow answer read to the end is whole and exact; the rest hang up.
    let (mut kept, got) = finished
        .into_iter()
        .find_map(|(s, g)| g.map(|g| (s, g)))
        .expect("a slow client with a head");
    read_big_body(&mut kept, &got.0, got.1).await;
    let (head, body) = tokio::time::timeout(Duration::from_secs(60), read_head(&mut late))
        .await
        .expect("the late large answer starts once slow clients leave");
    read_big_body(&mut late, &head, body).await;
    let waited = other_tenant_poll(&server, &other).await;
    assert!(waited < Duration::from_secs(10));
}

/// Large gzip answers are compressed only a few at a time: with many asked for at once and
/// their clients not reading, the ones past the bound come uncompressed (with an exact
/// `Content-Length` and the whole window), small answers are still gzipped, another tenant is
/// answered, and once the clients leave a large answer is compressed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_gzip_answers_are_bounded() {
    const ASKED: usize = 16;
    let env = Env::new();
    let (bulk, other) = two_tenants(&env);
    let server = env.serve(Some("[limits]\nconcurrent_per_token = 100\n"));
    let addr = server.addr.clone();

    let mut held = Vec::new();
    for _ in 0..ASKED {
        let mut s =
            send_with_small_buffer(&addr, &big_target(), &bulk, "Accept-Encoding: gzip\r\n").await;
        let (head, body) = tokio::time::timeout(Duration::from_secs(60), read_head(&mut s))
            .await
            .expect("head within 60 s");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push((s, head, body));
    }
    let gzipped = |h: &str| header(h, "content-encoding").is_some_and(|e| e == "gzip");
    let compressed = held.iter().filter(|(_, h, _)| gzipped(h)).count();
    assert!(compressed >= 1, "the first large answer is compressed");
    assert!(
        compressed < ASKED,
        "large answers past the bound go out uncompressed ({compressed} of {ASKED} compressed)"
    );

    // A small answer is still gzipped when asked, and another tenant is answered.
    let small = raw_get(
        &addr,
        b"/api/v2/reports_manager.php?api=chat_12&date_ini=20261001000000&date_end=20261001235959",
        &[
            format!("wolkvox-token: {other}").as_bytes(),
            b"Accept-Encoding: gzip",
        ],
    )
    .await;
    assert_eq!(small.status, 200);
    assert_eq!(small.header("content-encoding").as_deref(), Some("gzip"));
    let waited = other_tenant_poll(&server, &other).await;
    assert!(waited < Duration::from_secs(10));

    // An uncompressed one is the whole window, exact.
    let i = held
        .iter()
        .position(|(_, h, _)| !gzipped(h))
        .expect("one uncompressed");
    let (mut s, head, body) = held.swap_remove(i);
    read_big_body(&mut s, &head, body).await;
    drop(held);
    drop(s);

    // Clients gone: the bound's turns are free again.
    let again = eventually(Duration::from_secs(30), async || {
        let mut s =
            send_with_small_buffer(&addr, &big_target(), &bulk, "Accept-Encoding: gzip\r\n").await;
        let (head, _) = read_head(&mut s).await;
        gzipped(&head)
    })
    .await;
    assert!(
        again,
        "a large answer is compressed again once the others have ended"
    );
}
