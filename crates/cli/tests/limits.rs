//! End-to-end tests of the limits (docs/api.md, "Configuration" and the error table) and
//! `token_info` (docs/api.md, "GET /api/v2/information.php"): concurrency slots held until the last
//! byte or the client's departure, daily limits that survive a restart, result size limits checked
//! before the first byte, the 31-day window, the consumption timeout, a consistent `msg` under
//! concurrent imports, gzip streaming and a graceful drain on SIGTERM.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

const REPORT: &str = "/api/v2/reports_manager.php";
const INFO: &str = "/api/v2/information.php?api=token_info";
/// The seeded data of [`big`]: 20,000 rows over the day that ends here.
const BIG_UNTIL: &str = "20261001235959";
const BIG_INI: &str = "20260930000000";
const BIG_ROWS: usize = 20_000;
/// A window with no rows: cheap answers for probing limits.
const EMPTY_INI: &str = "20250101000000";
const EMPTY_END: &str = "20250101000100";

fn report_target(ini: &str, end: &str) -> String {
    format!("{REPORT}?api=chat_12&date_ini={ini}&date_end={end}")
}

/// `(status, body)` of `GET url` with a token, uncompressed; never a 500.
async fn get(url: &str, token: &str) -> (u16, String) {
    let resp = plain_client()
        .get(url)
        .header("wolkvox-token", token)
        .send()
        .await
        .expect("sending request");
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, body)
}

async fn small(server: &Server, token: &str) -> (u16, String) {
    get(&server.report_url(EMPTY_INI, EMPTY_END), token).await
}

const SIMULTANEOUS_2: &str = "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)";

fn forbidden(msg: &str) -> String {
    error_json(403, "FORBIDDEN", msg)
}

/// Parses a success body and checks that `msg` counts the rows of `data`; returns the count.
#[track_caller]
fn count_rows(body: &str) -> usize {
    let v = json(body.as_bytes());
    assert_eq!(v["code"], "200", "{body:.300}");
    let n = v["data"].as_array().expect("data array").len();
    assert_eq!(v["msg"], format!("{n} records were found"));
    n
}

/// Operation `big` (America/Bogota) with 20,000 seeded rows (about 50 MB of answer).
fn big() -> Env {
    let env = Env::new();
    env.operation("big", "America/Bogota");
    env.seed("big", BIG_ROWS as u64, BIG_UNTIL, 1);
    env
}

// ---------------------------------------------------------------------------------------
// Concurrency slots
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_hold_their_slots_until_they_vanish() {
    let env = big();
    let token = env.token("big", "report", None);
    let other = env.token("big", "report", None);
    let server = env.serve(None);
    let big_target = report_target(BIG_INI, BIG_UNTIL);

    // Two answers start (headers and some body arrive: the handlers have returned), then
    // their clients stop reading.
    let slow1 = slow_get(&server.addr, &big_target, &token, 4096).await;
    let slow2 = slow_get(&server.addr, &big_target, &token, 4096).await;
    for s in [&slow1, &slow2] {
        assert_eq!(s.status, 200, "{}", s.head);
        assert!(s.body_read >= 4096);
    }

    // The slots are still held while the bodies stream.
    let (status, body) = small(&server, &token).await;
    assert_eq!(
        (status, body.as_str()),
        (403, forbidden(SIMULTANEOUS_2).as_str())
    );
    let (status, body) = small(&server, &token).await;
    assert_eq!(
        (status, body),
        (403, forbidden(SIMULTANEOUS_2)),
        "still held"
    );
    // The dates are checked before concurrency.
    let (status, body) = get(&server.report_url("bad", EMPTY_END), &token).await;
    assert_eq!(
        (status, body),
        (
            400,
            error_json(
                400,
                "BAD REQUEST",
                "INVALID DATE FORMAT, USE YYYYmmddHHiiss"
            )
        )
    );
    // token_info takes a slot too.
    let (status, body) = get(&server.url(INFO), &token).await;
    assert_eq!((status, body), (403, forbidden(SIMULTANEOUS_2)));
    // Other tokens, even of the same operation, are unaffected.
    let (status, body) = small(&server, &other).await;
    assert_eq!(status, 200, "{body}");

    // The slow clients vanish: their slots are freed.
    drop(slow1);
    drop(slow2);
    let freed = eventually(Duration::from_secs(5), async || {
        small(&server, &token).await.0 == 200
    })
    .await;
    assert!(freed, "slots were not freed after the clients went away");
    // Both of them.
    let slow3 = slow_get(&server.addr, &big_target, &token, 4096).await;
    assert_eq!(slow3.status, 200);
    let (status, body) = small(&server, &token).await;
    assert_eq!(status, 200, "{body}");
    drop(slow3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_is_held_after_the_handler_returned_while_the_body_streams() {
    let env = big();
    let token = env.token("big", "report", None);
    let server = env.serve(Some("[limits]\nconcurrent_per_token = 1\n"));
    let slow = slow_get(&server.addr, &report_target(BIG_INI, BIG_UNTIL), &token, 1).await;
    assert_eq!(slow.status, 200, "{}", slow.head);
    let expected_len: usize = slow
        .head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    assert!(
        expected_len > 10_000_000,
        "the answer should be far larger than socket buffers"
    );
    let (status, body) = small(&server, &token).await;
    assert_eq!(
        (status, body),
        (
            403,
            forbidden("EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (1)")
        )
    );

    // Reading the answer to its end frees the slot.
    use tokio::io::AsyncReadExt as _;
    let mut stream = slow.stream;
    let mut rest = vec![0u8; 1 << 16];
    let mut read = slow.body_read;
    while read < expected_len {
        let n = stream.read(&mut rest).await.unwrap();
        assert!(n > 0, "answer ended after {read} of {expected_len} bytes");
        read += n;
    }
    assert_eq!(read, expected_len);
    let freed = eventually(Duration::from_secs(5), async || {
        small(&server, &token).await.0 == 200
    })
    .await;
    assert!(freed, "the slot was not freed after the last byte");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_is_checked_before_the_daily_limit() {
    let env = big();
    let token = env.token("big", "report", Some(2));
    let server = env.serve(None);
    let big_target = report_target(BIG_INI, BIG_UNTIL);
    let slow1 = slow_get(&server.addr, &big_target, &token, 4096).await;
    let slow2 = slow_get(&server.addr, &big_target, &token, 4096).await;
    assert_eq!((slow1.status, slow2.status), (200, 200));
    // Both daily uses are spent and both slots held: the concurrency error comes first.
    let (status, body) = small(&server, &token).await;
    assert_eq!((status, body), (403, forbidden(SIMULTANEOUS_2)));
    drop(slow1);
    drop(slow2);
    let limited = eventually(Duration::from_secs(5), async || {
        small(&server, &token).await == (403, forbidden("TOKEN LIMIT EXCEEDED"))
    })
    .await;
    assert!(
        limited,
        "after the slots were freed the daily limit should answer"
    );
}

// ---------------------------------------------------------------------------------------
// Daily limit and token_info
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_limit_counts_admitted_requests_and_survives_a_restart() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", Some(3));
    let other = env.token("acme", "report", None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");

    // Requests refused before admission do not count.
    let bad = [
        server.report_url("bad", "20261001235959"),
        server.report_url("20261002000000", "20261001000000"),
        server.url(&format!("{REPORT}?api=chat_12")),
        server.url(&format!("{REPORT}?api=chat_99&date_ini=1&date_end=2")),
        server.url("/api/v2/information.php?api=nope"),
    ];
    for u in &bad {
        assert_eq!(get(u, &token).await.0, 400, "{u}");
    }
    for i in 0..3 {
        let (status, body) = get(&url, &token).await;
        assert_eq!(status, 200, "use {i}: {body}");
    }
    // Exhausted: but the dates are still checked first.
    assert_eq!(get(&bad[0], &token).await.0, 400);
    assert_eq!(
        get(&url, &token).await,
        (403, forbidden("TOKEN LIMIT EXCEEDED"))
    );
    assert_eq!(
        get(&server.url(INFO), &token).await,
        (403, forbidden("TOKEN LIMIT EXCEEDED"))
    );
    assert_eq!(get(&url, &other).await.0, 200);

    // SIGTERM, then a new server on the same database: the counts are still there.
    let status = server.terminate();
    assert!(
        status.success(),
        "server exit status after SIGTERM: {status}"
    );
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    assert_eq!(
        get(&url, &token).await,
        (403, forbidden("TOKEN LIMIT EXCEEDED"))
    );
    let (status, body) = get(&server.url(INFO), &other).await;
    assert_eq!(status, 200, "{body}");
    let v = json(body.as_bytes());
    assert_eq!(v["data"][0]["token_use_today"], "2", "{body}");
    assert_eq!(v["data"][0]["all_token_today"], "5", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_info_reports_strings_and_counts_itself() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.ok(&["operation", "create", "small", "--licenses", "3"]);
    let (token, _) = env.token_with_id("acme", "report", Some(10), Some("Reportes nocturnos ñ"));
    let other = env.token("acme", "report", None);
    let foreign = env.token("small", "report", None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let info = server.url(INFO);

    assert_eq!(get(&url, &token).await.0, 200);
    assert_eq!(get(&url, &token).await.0, 200);
    assert_eq!(get(&url, &other).await.0, 200);
    assert_eq!(get(&url, &foreign).await.0, 200);

    let (status, body) = get(&info, &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(r#"{"code":"200","error":null,"msg":""#),
        "{body}"
    );
    assert!(
        body.ends_with(
            r#","data":[{"description":"Reportes nocturnos ñ","token_limit":"10","token_use_today":"3","all_token_today":"4","available_consumption_options":"7"}]}"#
        ),
        "{body}"
    );
    // It counts itself each time.
    let (_, body) = get(&info, &token).await;
    let v = json(body.as_bytes());
    assert_eq!(v["data"][0]["token_use_today"], "4", "{body}");
    assert_eq!(v["data"][0]["all_token_today"], "5", "{body}");
    assert_eq!(v["data"][0]["available_consumption_options"], "6", "{body}");

    // Without an own limit: licenses × 1000; the operation total covers every token.
    let (_, body) = get(&info, &other).await;
    let v = json(body.as_bytes());
    assert_eq!(
        v["data"],
        serde_json::json!([{
            "description": "",
            "token_limit": "10000",
            "token_use_today": "2",
            "all_token_today": "6",
            "available_consumption_options": "9998",
        }]),
        "{body}"
    );
    let (_, body) = get(&info, &foreign).await;
    let v = json(body.as_bytes());
    assert_eq!(v["data"][0]["token_limit"], "3000", "{body}");
    assert_eq!(
        v["data"][0]["all_token_today"], "2",
        "other operations do not count: {body}"
    );

    // HEAD counts like GET; bad parameters do not count.
    let resp = plain_client()
        .head(&info)
        .header("wolkvox-token", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for q in ["", "?api=", "?api=chat_12"] {
        let (status, _) = get(&server.url(&format!("/api/v2/information.php{q}")), &other).await;
        assert_eq!(status, 400, "{q}");
    }
    let (_, body) = get(&info, &other).await;
    assert_eq!(
        json(body.as_bytes())["data"][0]["token_use_today"],
        "4",
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Result size, window length, timeout
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn result_size_limits_refuse_before_the_first_byte() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let lines: Vec<String> = (0..6)
        .map(|i| record(&format!("r-{i}"), &format!("2026-10-01 08:00:0{i}")))
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    let six = report_target("20261001080000", "20261001080005");
    let five = report_target("20261001080000", "20261001080004");
    let tok = format!("wolkvox-token: {token}");
    let headers: &[&[u8]] = &[tok.as_bytes()];

    // Records: the refusal is the whole answer, nothing of the rows precedes it.
    let server = env.serve(Some("[limits]\nmax_records = 5\n"));
    let raw = raw_get(&server.addr, six.as_bytes(), headers).await;
    assert_eq!(raw.status, 400);
    assert_eq!(
        raw.text(),
        error_json(
            400,
            "BAD REQUEST",
            "THE RESULT HAS 6 RECORDS, ABOVE THE LIMIT OF 5; NARROW THE DATE RANGE"
        )
    );
    assert_eq!(
        raw.header("content-length"),
        Some(raw.body.len().to_string())
    );
    let raw = raw_get(&server.addr, five.as_bytes(), headers).await;
    assert_eq!(raw.status, 200);
    assert_eq!(count_rows(&raw.text()), 5);
    let five_len = raw.body.len();
    drop(server);

    // Bytes: a body of exactly max_bytes is served, one byte more is refused.
    let server = env.serve(Some(&format!("[limits]\nmax_bytes = {five_len}\n")));
    let raw = raw_get(&server.addr, five.as_bytes(), headers).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body.len(), five_len);
    let raw = raw_get(&server.addr, six.as_bytes(), headers).await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    let v = json(&raw.body);
    assert_eq!(v["error"], "BAD REQUEST");
    // A limit that is not whole mebibytes is stated in bytes (whole ones read "256 MB").
    assert_eq!(
        v["msg"],
        format!("THE RESULT EXCEEDS THE LIMIT OF {five_len} BYTES; NARROW THE DATE RANGE")
    );
    assert_eq!(v["data"], serde_json::json!([]));
    drop(server);
    let server = env.serve(Some(&format!("[limits]\nmax_bytes = {}\n", five_len - 1)));
    let raw = raw_get(&server.addr, five.as_bytes(), headers).await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    drop(server);

    // The text names the limit in MB.
    let big_body = "x".repeat(300 * 1024);
    let lines: Vec<String> = (0..4)
        .map(|i| {
            record(&format!("b-{i}"), &format!("2026-10-02 08:00:0{i}")).replace("Texto", &big_body)
        })
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    let server = env.serve(Some("[limits]\nmax_bytes = 1048576\n"));
    let raw = raw_get(
        &server.addr,
        report_target("20261002000000", "20261002235959").as_bytes(),
        headers,
    )
    .await;
    assert_eq!(
        raw.text(),
        error_json(
            400,
            "BAD REQUEST",
            "THE RESULT EXCEEDS THE LIMIT OF 1 MB; NARROW THE DATE RANGE"
        )
    );
    // The records limit is checked before the bytes limit.
    drop(server);
    let server = env.serve(Some("[limits]\nmax_bytes = 1048576\nmax_records = 3\n"));
    let raw = raw_get(
        &server.addr,
        report_target("20261002000000", "20261002235959").as_bytes(),
        headers,
    )
    .await;
    assert_eq!(
        raw.text(),
        error_json(
            400,
            "BAD REQUEST",
            "THE RESULT HAS 4 RECORDS, ABOVE THE LIMIT OF 3; NARROW THE DATE RANGE"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_large_result_still_counts_as_a_use() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let lines: Vec<String> = (0..3)
        .map(|i| record(&format!("r-{i}"), &format!("2026-10-01 08:00:0{i}")))
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    let token = env.token("acme", "report", Some(2));
    let server = env.serve(Some("[limits]\nmax_records = 2\n"));
    let url = server.report_url("20261001000000", "20261001235959");
    let (status, _) = get(&url, &token).await;
    assert_eq!(status, 400);
    let (status, body) = get(&server.url(INFO), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(body.as_bytes())["data"][0]["token_use_today"],
        "2",
        "{body}"
    );
    // The daily limit is checked before the result size.
    assert_eq!(
        get(&url, &token).await,
        (403, forbidden("TOKEN LIMIT EXCEEDED"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_limit_is_31_wall_clock_days_to_the_second() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.operation("ny", "America/New_York");
    let acme = env.token("acme", "report", None);
    let ny = env.token("ny", "report", None);
    let server = env.serve(None);
    let too_long = error_json(
        400,
        "BAD REQUEST",
        "THE DATE RANGE EXCEEDS THE LIMIT OF 31 DAYS",
    );
    for (token, ini, end, ok) in [
        (&acme, "20261001000000", "20261101000000", true),
        (&acme, "20261001000000", "20261101000001", false),
        (&acme, "20260201000000", "20260304000000", true), // February
        (&acme, "20260201000000", "20260304000001", false),
        (&acme, "20240201123456", "20240303123456", true), // leap February
        (&acme, "20240201123456", "20240303123457", false),
        (&acme, "20261231120000", "20270131120000", true), // across the year
        // Across DST: 31 wall-clock days, whatever the elapsed time.
        (&ny, "20261015000000", "20261115000000", true), // 31 days + 1 h elapsed
        (&ny, "20260301000000", "20260401000000", true), // 31 days − 1 h elapsed
        (&ny, "20260301000000", "20260401000001", false), // < 31 days elapsed, > 31 on the wall
    ] {
        let (status, body) = get(&server.report_url(ini, end), token).await;
        if ok {
            assert_eq!(status, 200, "{ini}..{end}: {body}");
        } else {
            assert_eq!(
                (status, body.as_str()),
                (400, too_long.as_str()),
                "{ini}..{end}"
            );
        }
    }
    drop(server);
    let server = env.serve(Some("[limits]\nmax_window_days = 7\n"));
    assert_eq!(
        get(
            &server.report_url("20261001000000", "20261008000000"),
            &acme
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get(
            &server.report_url("20261001000000", "20261008000001"),
            &acme
        )
        .await,
        (
            400,
            error_json(
                400,
                "BAD REQUEST",
                "THE DATE RANGE EXCEEDS THE LIMIT OF 7 DAYS"
            )
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_cannot_start_in_time_is_a_504() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", None);
    let server = env.serve(Some("[limits]\nconsumption_timeout_ms = 0\n"));
    let resp = plain_client()
        .get(server.report_url("20261001000000", "20261001235959"))
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let v = json(&resp.bytes().await.unwrap());
    assert_eq!(v["code"], "504");
    assert_eq!(v["error"], "GATEWAY TIMEOUT");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(v["data"], serde_json::json!([]));
    // The timed-out request released its slot.
    let (status, _) = small(&server, &token).await;
    assert_eq!(status, 504);
    let (status, _) = small(&server, &token).await;
    assert_eq!(
        status, 504,
        "a slot leaked: the third request should time out, not be refused"
    );
}

// ---------------------------------------------------------------------------------------
// Consistency, streaming, shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn msg_counts_the_rows_sent_while_an_import_runs() {
    let env = Arc::new(Env::new());
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    const BATCHES: usize = 15;
    const PER_BATCH: usize = 300;

    let done = Arc::new(AtomicBool::new(false));
    let importer = {
        let (env, done) = (env.clone(), done.clone());
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                let lines: Vec<String> = (0..PER_BATCH)
                    .map(|i| {
                        let secs = (b * PER_BATCH + i) % 86_400;
                        let date = format!(
                            "2026-10-01 {:02}:{:02}:{:02}",
                            secs / 3600,
                            secs / 60 % 60,
                            secs % 60
                        );
                        record(&format!("m-{b}-{i}"), &date)
                    })
                    .collect();
                env.import_ndjson("acme", &lines.join("\n"));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut polls = 0;
    let mut last = 0;
    let mut partial = 0;
    while !done.load(Ordering::SeqCst) || polls == 0 {
        let (status, body) = get(&url, &token).await;
        assert_eq!(status, 200);
        let n = count_rows(&body);
        assert!(n >= last, "rows went from {last} to {n}");
        assert_eq!(n % PER_BATCH, 0, "a batch is all-or-nothing: {n} rows");
        if n > 0 && n < BATCHES * PER_BATCH {
            partial += 1;
        }
        last = n;
        polls += 1;
    }
    importer.join().expect("importer thread");
    let (_, body) = get(&url, &token).await;
    assert_eq!(count_rows(&body), BATCHES * PER_BATCH);
    assert!(partial > 0, "no poll overlapped the import ({polls} polls)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_answer_streams_gzipped_and_decodes_fully() {
    let env = big();
    let token = env.token("big", "report", None);
    let server = env.serve(None);
    let url = server.report_url(BIG_INI, BIG_UNTIL);
    let (status, plain) = get(&url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(count_rows(&plain), BIG_ROWS);

    let resp = plain_client()
        .get(&url)
        .header("wolkvox-token", &token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-encoding").unwrap(), "gzip");
    let gz = resp.bytes().await.unwrap();
    assert!(
        gz.len() < plain.len() / 2,
        "{} compressed vs {} plain",
        gz.len(),
        plain.len()
    );

    let resp = client()
        .get(&url)
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let decoded = resp.text().await.unwrap();
    assert!(
        decoded == plain,
        "decoded gzip answer differs from the plain one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_streaming_answer_finish() {
    let env = big();
    let token = env.token("big", "report", None);
    let server = env.serve(None);
    let mut resp = plain_client()
        .get(server.report_url(BIG_INI, BIG_UNTIL))
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let expected = resp.content_length().expect("content-length") as usize;
    let mut body = resp.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert!(body.len() < expected);

    server.sigterm();
    let logs = server.stderr.clone();
    let draining = eventually(Duration::from_secs(10), async || {
        logs.lock().unwrap().contains("shutting down")
    })
    .await;
    assert!(draining, "the server did not start shutting down");

    while let Some(chunk) = resp.chunk().await.expect("the answer is not cut") {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), expected);
    assert_eq!(count_rows(std::str::from_utf8(&body).unwrap()), BIG_ROWS);
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "exit status after draining: {status}");
}
