//! End-to-end tests of the integrator additions (docs/api.md, "For integrators") through the
//! real binary and real HTTP: quota headers on admitted answers and limit refusals, the ETag
//! and `304` of cheap re-polls, and the per-hour digests.

mod common;

use std::time::Duration;

use common::*;

const INFO: &str = "/api/v2/information.php?api=token_info";

/// `(status, headers, body)` of `GET url` with a token and extra headers, uncompressed.
async fn get_with(
    url: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = plain_client().get(url).header("wolkvox-token", token);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("sending request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, headers, body)
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .expect("ascii header")
        .to_owned()
}

/// `X-Voxtrail-Feed-More`, if present.
fn more(h: &reqwest::header::HeaderMap) -> Option<&str> {
    h.get("x-voxtrail-feed-more")
        .map(|v| v.to_str().expect("ascii header"))
}

/// `(r, t)` of a `RateLimit` header.
fn remaining(h: &reqwest::header::HeaderMap) -> (u64, u64) {
    let v = header(h, "ratelimit");
    let rest = v
        .strip_prefix("\"daily\";r=")
        .unwrap_or_else(|| panic!("{v}"));
    let (r, t) = rest.split_once(";t=").unwrap_or_else(|| panic!("{v}"));
    (r.parse().expect("r"), t.parse().expect("t"))
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_headers_count_down_to_the_refusal() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", Some(3));
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");

    // A request refused before admission carries no quota.
    let (status, h, _) = get_with(&server.report_url("bad", "x"), &token, &[]).await;
    assert_eq!(status, 400);
    assert!(h.get("ratelimit").is_none(), "{h:?}");

    let mut seen = Vec::new();
    for _ in 0..2 {
        let (status, h, body) = get_with(&url, &token, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&h, "ratelimit-policy"), "\"daily\";q=3;w=86400");
        let (r, t) = remaining(&h);
        assert!((1..=86_400).contains(&t), "t={t}");
        seen.push(r);
    }
    // token_info is a §5 answer of an admitted request: it counts and carries the quota.
    let (status, h, body) = get_with(&server.url(INFO), &token, &[]).await;
    assert_eq!(status, 200, "{body}");
    seen.push(remaining(&h).0);
    assert_eq!(seen, [2, 1, 0]);

    for u in [url.clone(), server.url(INFO)] {
        let (status, h, body) = get_with(&u, &token, &[]).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("TOKEN LIMIT EXCEEDED"), "{body}");
        let (r, t) = remaining(&h);
        assert_eq!(r, 0);
        assert_eq!(header(&h, "retry-after"), t.to_string());
        assert_eq!(header(&h, "ratelimit-policy"), "\"daily\";q=3;w=86400");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_slot_says_retry_in_one_second() {
    let env = Env::new();
    env.operation("big", "America/Bogota");
    env.seed("big", 4_000, "20261001235959", 1);
    let token = env.token("big", "report", Some(10));
    let server = env.serve(Some("[limits]\nconcurrent_per_token = 1\n"));
    let big =
        "/api/v2/reports_manager.php?api=chat_12&date_ini=20261001000000&date_end=20261001235959";
    let slow = slow_get(&server.addr, big, &token, 4096).await;
    assert_eq!(slow.status, 200);
    let (status, h, body) = get_with(
        &server.report_url("20250101000000", "20250101000100"),
        &token,
        &[],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SIMULTANEOUS"), "{body}");
    assert_eq!(header(&h, "retry-after"), "1");
    assert_eq!(remaining(&h).0, 9, "one use so far: the slow answer");
    drop(slow);
    let freed = eventually(Duration::from_secs(5), async || {
        get_with(&server.url(INFO), &token, &[]).await.0 == 200
    })
    .await;
    assert!(freed);
}

/// Polls `url` as an integrator does: with the last tag when there is one.
async fn poll(
    url: &str,
    token: &str,
    tag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    match tag {
        Some(t) => get_with(url, token, &[("if-none-match", t)]).await,
        None => get_with(url, token, &[]).await,
    }
}

/// The ETag of a window's 200 answer is stable for the same rows, survives a restart, changes
/// when a row is added, and a matching `If-None-Match` is a `304` that does not count.
async fn etag_story(env: &Env, label: &str) {
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", Some(20));
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");

    let (status, h, body) = poll(&url, &token, None).await;
    assert_eq!(status, 200, "{label}: {body}");
    let tag = header(&h, "etag");
    assert!(
        tag.starts_with('"') && !tag.starts_with("W/"),
        "{label}: strong tag {tag}"
    );
    let r0 = remaining(&h).0;
    assert_eq!(r0, 19);

    // Same rows: same tag; a matching tag is a 304 with no body that leaves r unchanged.
    let (status, h, body) = poll(&url, &token, Some(&tag)).await;
    assert_eq!(status, 304, "{label}");
    assert!(body.is_empty(), "{label}: 304 body {body:?}");
    assert_eq!(header(&h, "etag"), tag);
    assert_eq!(remaining(&h).0, r0, "{label}: a 304 counts no use");
    let (status, h, _) = poll(&url, &token, Some("\"other\", W/".to_owned().as_str())).await;
    assert_eq!(status, 200, "{label}: a tag that differs gets the answer");
    assert_eq!(header(&h, "etag"), tag);
    assert_eq!(remaining(&h).0, r0 - 1);
    // token_info counts itself and the two 200s; the 304 did not count.
    let (_, _, info) = get_with(&server.url(INFO), &token, &[]).await;
    assert!(
        info.contains("\"token_use_today\":\"3\""),
        "{label}: {info}"
    );

    // A restart keeps the tag.
    drop(server);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let (status, _, _) = poll(&url, &token, Some(&tag)).await;
    assert_eq!(status, 304, "{label}: same rows after a restart");

    // A new row in the window: the tag changes; a row outside it: it does not.
    env.import_ndjson("acme", &record("c-0", "2026-09-30 08:15:00"));
    assert_eq!(poll(&url, &token, Some(&tag)).await.0, 304, "{label}");
    env.import_ndjson("acme", &record("c-2", "2026-10-01 09:00:00"));
    let (status, h, body) = poll(&url, &token, Some(&tag)).await;
    assert_eq!(status, 200, "{label}");
    assert!(body.contains("c-2"), "{label}");
    let new_tag = header(&h, "etag");
    assert_ne!(new_tag, tag, "{label}");
    assert_eq!(poll(&url, &token, Some(&new_tag)).await.0, 304, "{label}");
}

/// The tag an unconditional answer reads from its own snapshot is the tag a conditional
/// request reads before its report, on every path: an empty window, a poll, and a window too
/// large to be answered whole at once (streamed from its snapshot).
async fn tags_agree_on_every_path(env: &Env, label: &str) {
    env.operation("acme", "America/Bogota");
    let body = "y".repeat(2_000);
    let lines: Vec<String> = (0..300)
        .map(|i| {
            let date = format!(
                "2026-10-01 {:02}:{:02}:{:02}",
                i / 3600,
                i / 60 % 60,
                i % 60
            );
            record(&format!("c-{i:03}"), &date).replace("\"Texto\"", &format!("\"{body}\""))
        })
        .collect();
    env.import_ndjson("acme", &(lines.join("\n") + "\n"));
    let token = env.token("acme", "report", None);
    let server = env.serve(None);
    for (ini, end, rows) in [
        ("20261002000000", "20261002235959", 0),
        ("20261001000000", "20261001000009", 10),
        ("20261001000000", "20261001235959", 300),
    ] {
        let url = server.report_url(ini, end);
        let (status, h, text) = poll(&url, &token, None).await;
        assert_eq!(status, 200, "{label} {rows}: {text}");
        assert_eq!(
            json(text.as_bytes())["data"].as_array().map_or(0, Vec::len),
            rows,
            "{label}"
        );
        let tag = header(&h, "etag");
        let (status, h, _) = poll(&url, &token, Some(&tag)).await;
        assert_eq!(
            status, 304,
            "{label} {rows} rows: the conditional path agrees"
        );
        assert_eq!(header(&h, "etag"), tag, "{label}");
        let (status, h, _) = poll(&url, &token, Some("\"stale\"")).await;
        assert_eq!(status, 200, "{label}");
        assert_eq!(header(&h, "etag"), tag, "{label}: same tag on both paths");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_agree_on_every_path_on_sqlite() {
    tags_agree_on_every_path(&Env::new(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_agree_on_every_path_on_postgres() {
    let Some(db) = voxtrail_server::store::testing::TestDatabase::create("etag_paths") else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    tags_agree_on_every_path(&env, "postgres").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etags_make_re_polls_cheap_on_sqlite() {
    etag_story(&Env::new(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etags_make_re_polls_cheap_on_postgres() {
    let Some(db) = voxtrail_server::store::testing::TestDatabase::create("etag_story") else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    etag_story(&env, "postgres").await;
    // Two replicas: the same rows give the same tag on each.
    let token = env.token("acme", "report", None);
    let (a, b) = (env.serve(None), env.serve(None));
    let tag_a = header(
        &poll(
            &a.report_url("20261001000000", "20261001235959"),
            &token,
            None,
        )
        .await
        .1,
        "etag",
    );
    let tag_b = header(
        &poll(
            &b.report_url("20261001000000", "20261001235959"),
            &token,
            None,
        )
        .await
        .1,
        "etag",
    );
    assert_eq!(tag_a, tag_b);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_304_still_needs_a_slot_and_an_unspent_limit() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", Some(1));
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let (status, h, _) = poll(&url, &token, None).await;
    assert_eq!(status, 200);
    let tag = header(&h, "etag");
    let (status, h, body) = poll(&url, &token, Some(&tag)).await;
    assert_eq!(status, 403, "the limit is used up: {body}");
    assert!(body.contains("TOKEN LIMIT EXCEEDED"));
    assert_eq!(remaining(&h).0, 0);
}

/// The hours of a window as a client computes them from the report itself: each object of
/// `data` exactly as served, hashed, XORed per hour of its `date`.
fn hours_from_report(body: &str) -> Vec<(String, u64, String)> {
    use serde_json::value::RawValue;
    use sha2::Digest as _;
    let env: std::collections::HashMap<&str, &RawValue> =
        serde_json::from_str(body).expect("report envelope");
    let data: Vec<&RawValue> = serde_json::from_str(env["data"].get()).expect("data");
    let mut out: Vec<(String, u64, [u8; 32])> = Vec::new();
    for raw in data {
        let v: serde_json::Value = serde_json::from_str(raw.get()).expect("row");
        let hour = v["date"].as_str().expect("date")[..13].to_owned();
        let hash: [u8; 32] = sha2::Sha256::digest(raw.get().as_bytes()).into();
        if out.last().is_none_or(|(h, _, _)| *h != hour) {
            out.push((hour.clone(), 0, [0; 32]));
        }
        let last = out.last_mut().expect("pushed");
        last.1 += 1;
        for (x, b) in last.2.iter_mut().zip(hash) {
            *x ^= b;
        }
    }
    out.into_iter()
        .map(|(h, n, x)| (h, n, x.iter().map(|b| format!("{b:02x}")).collect()))
        .collect()
}

fn hours_of(body: &str) -> Vec<(String, u64, String)> {
    let v = json(body.as_bytes());
    assert_eq!(v["code"], "200", "{body}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(v["msg"], format!("{} records were found", data.len()));
    data.iter()
        .map(|o| {
            let keys: Vec<&String> = o.as_object().expect("object").keys().collect();
            assert_eq!(keys.len(), 3, "{o}");
            (
                o["hour"].as_str().expect("hour").to_owned(),
                o["records"]
                    .as_str()
                    .expect("records")
                    .parse()
                    .expect("count"),
                o["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hour_digests_match_the_report_as_served() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.seed("acme", 600, "20261001235959", 2);
    env.import_ndjson(
        "acme",
        &format!(
            "{}\n{}",
            record("é-1", "2026-10-01 08:15:00"),
            record("é-2", "2026-10-01 08:59:59")
        ),
    );
    let token = env.token("acme", "report", Some(10));
    let server = env.serve(None);
    let (ini, end) = ("20260930000000", "20261001235959");
    let (status, _, report) = get_with(&server.report_url(ini, end), &token, &[]).await;
    assert_eq!(status, 200);
    let hours_url = server.url(&format!(
        "/api/v2/voxtrail/chat_12/hours?date_ini={ini}&date_end={end}"
    ));
    let (status, h, body) = get_with(&hours_url, &token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(remaining(&h).0, 8, "one use each");
    let expected = hours_from_report(&report);
    assert!(expected.len() > 24, "rows spread over many hours");
    let got = hours_of(&body);
    assert_eq!(got, expected);
    assert!(got.iter().all(|(_, _, d)| d.len() == 64 && d.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))));

    // A narrower window: only its hours; an empty one: no hours.
    let one = server
        .url("/api/v2/voxtrail/chat_12/hours?date_ini=20261001080000&date_end=20261001085959");
    let got = hours_of(&get_with(&one, &token, &[]).await.2);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "2026-10-01 08");
    let none = server
        .url("/api/v2/voxtrail/chat_12/hours?date_ini=20250101000000&date_end=20250101000100");
    assert!(hours_of(&get_with(&none, &token, &[]).await.2).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hours_apply_the_reports_checks() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", Some(1));
    let server = env.serve(None);
    let base = "/api/v2/voxtrail/chat_12/hours";
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "",
            "?date_ini=20261001000000&date_end=20261001235959",
            401,
            "WOLKVOX-TOKEN",
        ),
        (
            "nope",
            "?date_ini=20261001000000&date_end=20261001235959",
            403,
            "VALIDATE TOKEN",
        ),
        (&token, "", 400, "SOME PARAMETERS ARE REQUIRED"),
        (
            &token,
            "?date_ini=20261001000000",
            400,
            "SOME PARAMETERS ARE REQUIRED",
        ),
        (
            &token,
            "?date_ini=2026-10-01&date_end=20261001235959",
            400,
            "INVALID DATE FORMAT",
        ),
        (
            &token,
            "?date_ini=%FF%00&date_end=20261001235959",
            400,
            "INVALID DATE FORMAT",
        ),
        (
            &token,
            "?date_ini=20261002000000&date_end=20261001235959",
            400,
            "MUST NOT BE AFTER",
        ),
        (
            &token,
            "?date_ini=20260101000000&date_end=20261001235959",
            400,
            "EXCEEDS THE LIMIT OF 31 DAYS",
        ),
    ];
    for (tok, q, status, msg) in cases {
        let mut req = plain_client().get(server.url(&format!("{base}{q}")));
        if !tok.is_empty() {
            req = req.header("wolkvox-token", *tok);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), *status, "{q}");
        let body = resp.text().await.expect("body");
        assert!(body.contains(msg), "{q}: {body}");
    }
    let post = plain_client()
        .post(server.url(&format!(
            "{base}?date_ini=20261001000000&date_end=20261001235959"
        )))
        .header("wolkvox-token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(post.status().as_u16(), 405);
    // None of those counted: one use is left, then the limit refuses.
    let ok = server.url(&format!(
        "{base}?date_ini=20261001000000&date_end=20261001235959"
    ));
    assert_eq!(get_with(&ok, &token, &[]).await.0, 200);
    let (status, h, body) = get_with(&ok, &token, &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(h.contains_key("retry-after"));
}

const FEED: &str = "/api/v2/voxtrail/chat_12/feed";

/// One feed page: `(status, conn_ids, cursor, body)`.
async fn feed_page(
    server: &Server,
    token: &str,
    after: Option<&str>,
    limit: Option<&str>,
) -> (u16, Vec<String>, String, String) {
    let mut q = Vec::new();
    if let Some(a) = after {
        q.push(format!("after={a}"));
    }
    if let Some(l) = limit {
        q.push(format!("limit={l}"));
    }
    let url = server.url(&format!("{FEED}?{}", q.join("&")));
    let (status, _, body) = get_with(&url, token, &[]).await;
    if status != 200 {
        return (status, Vec::new(), String::new(), body);
    }
    let v = json(body.as_bytes());
    let data = v["data"].as_array().expect("data");
    assert_eq!(
        v["msg"],
        format!("{} records were found", data.len()),
        "{body}"
    );
    let ids = data
        .iter()
        .map(|r| r["conn_id"].as_str().expect("conn_id").to_owned())
        .collect();
    let cursor = v["cursor"].as_str().expect("cursor").to_owned();
    (status, ids, cursor, body)
}

async fn post_ndjson(server: &Server, token: &str, lines: &[String]) -> u16 {
    let resp = plain_client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", token)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .expect("posting");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    assert!(status == 200 || status == 201, "ingest {status}: {body}");
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_pages_through_every_row_once() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.operation("other", "America/Bogota");
    let lines: Vec<String> = (0..5)
        .map(|i| record(&format!("c-{i}"), &format!("2026-10-0{} 08:00:00", 5 - i)))
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    env.import_ndjson("other", &record("o-1", "2026-10-01 08:00:00"));
    let token = env.token("acme", "report", Some(100));
    let other = env.token("other", "report", Some(100));
    let server = env.serve(None);

    // Pages of two, in the order the rows were stored (not their dates).
    let (s, ids, c1, body) = feed_page(&server, &token, None, Some("2")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ids, ["c-0", "c-1"]);
    let (_, ids, c2, _) = feed_page(&server, &token, Some(&c1), Some("2")).await;
    assert_eq!(ids, ["c-2", "c-3"]);
    let (_, ids, c3, _) = feed_page(&server, &token, Some(&c2), None).await;
    assert_eq!(ids, ["c-4"]);
    // At the end: nothing, and the same cursor back.
    let (_, ids, c4, body) = feed_page(&server, &token, Some(&c3), None).await;
    assert!(ids.is_empty());
    assert_eq!(c4, c3);
    assert!(
        body.starts_with(
            r#"{"code":"200","error":null,"msg":"0 records were found","data":[],"cursor":""#
        ),
        "{body}"
    );
    // New rows appear after the cursor; a duplicate import changes nothing.
    env.import_ndjson(
        "acme",
        &format!("{}\n{}", lines[0], record("c-5", "2026-09-01 00:00:00")),
    );
    let (_, ids, _, _) = feed_page(&server, &token, Some(&c3), None).await;
    assert_eq!(ids, ["c-5"]);
    // The other operation's feed is its own; its cursors are not ours.
    let (_, ids, oc, _) = feed_page(&server, &other, None, None).await;
    assert_eq!(ids, ["o-1"]);
    let (s, _, _, body) = feed_page(&server, &token, Some(&oc), None).await;
    assert_eq!(
        (s, body),
        (400, error_json(400, "BAD REQUEST", "INVALID CURSOR"))
    );

    // Hostile cursors and limits.
    let (op, _) = c3.split_once('.').expect("cursor shape");
    let beyond = format!("{op}.999999");
    for bad in [
        "x",
        "1",
        "1.",
        ".1",
        "-1.2",
        &beyond,
        "1.2.3",
        "%00",
        "99999999999999999999.1",
    ] {
        let (s, _, _, body) = feed_page(&server, &token, Some(bad), None).await;
        assert_eq!(
            (s, body),
            (400, error_json(400, "BAD REQUEST", "INVALID CURSOR")),
            "{bad}"
        );
    }
    for bad in ["0", "10001", "-1", "abc", "1e3"] {
        let (s, _, _, body) = feed_page(&server, &token, None, Some(bad)).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(
            body.contains("limit MUST BE AN INTEGER FROM 1 TO 10000"),
            "{body}"
        );
    }
    assert_eq!(
        feed_page(&server, &token, None, Some("10000"))
            .await
            .1
            .len(),
        6
    );
}

/// A feed page ends at `limits.feed_page_max_bytes` (never inside a row, at least one row) and
/// says so with `X-Voxtrail-Feed-More: true`, so a server never holds a huge page in memory;
/// `voxtrail pull` follows such short pages at once and copies every row in one run.
#[tokio::test(flavor = "multi_thread")]
async fn feed_pages_end_at_their_byte_budget_and_pull_follows_them() {
    let env = Env::new();
    env.operation("acme", "UTC");
    let lines: Vec<String> = (0..7)
        .map(|i| record(&format!("b-{i}"), &format!("2026-10-01 08:00:0{i}")))
        .collect();
    env.import_ndjson("acme", &lines.join("\n"));
    let token = env.token("acme", "report", Some(1_000));
    // Each stored row is a few hundred bytes: a budget of 1 byte gives one row per page, a
    // budget of two rows gives pages of two (the row that reaches the budget ends the page).
    let one_row = env.serve(Some("[limits]\nfeed_page_max_bytes = 1\n"));
    let url = one_row.url(&format!("{FEED}?limit=5"));
    let (status, headers, body) = get_with(&url, &token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(more(&headers), Some("true"));
    let (_, ids, mut cursor, _) = feed_page(&one_row, &token, None, Some("5")).await;
    assert_eq!(ids, ["b-0"]);
    let mut seen = ids;
    loop {
        let url = one_row.url(&format!("{FEED}?limit=5&after={cursor}"));
        let (_, headers, _) = get_with(&url, &token, &[]).await;
        let (_, ids, next, _) = feed_page(&one_row, &token, Some(&cursor), Some("5")).await;
        if ids.is_empty() {
            assert_eq!(more(&headers), None, "an empty page says no more");
            break;
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(more(&headers), Some("true"));
        seen.extend(ids);
        cursor = next;
    }
    let want: Vec<String> = (0..7).map(|i| format!("b-{i}")).collect();
    assert_eq!(
        seen, want,
        "every row once, in order, none split or skipped"
    );
    // A full page (as many rows as asked) needs no header: a client asks again anyway.
    let (_, headers, _) = get_with(&one_row.url(&format!("{FEED}?limit=1")), &token, &[]).await;
    assert_eq!(more(&headers), None);

    // `voxtrail pull` copies all 7 rows in one run although every page is short.
    let copy = env.path("copy.ndjson");
    let into = format!("ndjson:{}", copy.display());
    let base = one_row.url("");
    let (ok, _, err) = run_pull(&[
        "--url",
        &base,
        "--token",
        &token,
        "--into",
        &into,
        "--mode",
        "feed",
        "--since",
        "20261001000000",
        "--page",
        "5",
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&copy).expect("the copy");
    let mut got: Vec<String> = text
        .lines()
        .map(|l| {
            json(l.as_bytes())["conn_id"]
                .as_str()
                .expect("conn_id")
                .to_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "{err}");
}

/// Two replicas ingest small batches in parallel — each transaction waits a random time
/// before committing, so they commit out of the order they started in — while a reader
/// follows the feed: every row is seen exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_skips_nothing_while_replicas_commit_concurrently() {
    let Some(db) = voxtrail_server::store::testing::TestDatabase::create("feed_race") else {
        return;
    };
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: db.url.clone(),
    };
    env.operation("acme", "America/Bogota");
    let reader = env.token("acme", "report", Some(1_000_000));
    let writers: Vec<String> = (0..4).map(|_| env.token("acme", "ingest", None)).collect();
    let replica = || {
        let mut cmd = env.cmd();
        cmd.env("VOXTRAIL_TEST_COMMIT_DELAY_MS", "30")
            .args(["serve", "--listen", "127.0.0.1:0"]);
        Server::spawn(&mut cmd)
    };
    let servers = std::sync::Arc::new([replica(), replica()]);
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 3;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (w, tok) in writers.iter().enumerate() {
        let (servers, tok, done) = (servers.clone(), tok.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let lines: Vec<String> = (0..PER_BATCH)
                    .map(|i| record(&format!("w{w}-b{b}-{i}"), "2026-10-01 08:00:00"))
                    .collect();
                post_ndjson(&servers[w % 2], &tok, &lines).await;
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    let total = writers.len() * BATCHES * PER_BATCH;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut i = 0usize;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == writers.len();
        let (s, ids, c, body) =
            feed_page(&servers[i % 2], &reader, cursor.as_deref(), Some("5")).await;
        assert_eq!(s, 200, "{body}");
        i += 1;
        let empty = ids.is_empty();
        seen.extend(ids);
        cursor = Some(c);
        if finished && empty {
            break;
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was served twice");
    assert_eq!(
        seen.len(),
        total,
        "rows were skipped: saw {} of {total}",
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_records_token_requests_off_the_hot_path() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.operation("other", "UTC");
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let (token, id) = env.token_with_id("acme", "report", Some(100), None);
    let (other, other_id) = env.token_with_id("other", "report", Some(100), None);
    let server = env.serve(None);
    let url = server.report_url("20261001000000", "20261001235959");
    let (status, _, body) = get_with(&url, &token, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(get_with(&server.url(INFO), &other, &[]).await.0, 200);
    // A hostile date (control characters) is recorded as given, refused with 400.
    let hostile =
        server.url("/api/v2/reports_manager.php?api=chat_12&date_ini=%1B%5B2J&date_end=x");
    assert_eq!(get_with(&hostile, &token, &[]).await.0, 400);
    // Invalid or missing tokens are not audited.
    assert_eq!(get_with(&url, "not-a-token", &[]).await.0, 403);
    assert_eq!(
        plain_client()
            .get(&url)
            .send()
            .await
            .expect("get")
            .status()
            .as_u16(),
        401
    );
    // SIGTERM writes what is queued.
    assert!(server.terminate().success());

    let out = env.ok(&["audit", "--format", "ndjson"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| json(l.as_bytes())).collect();
    assert_eq!(lines.len(), 3, "{out}");
    let first = &lines[0];
    assert_eq!(first["token_id"], id);
    assert_eq!(first["operation"], "acme");
    assert_eq!(first["route"], "/api/v2/reports_manager.php");
    assert_eq!(first["api"], "chat_12");
    assert_eq!(first["date_ini"], "20261001000000");
    assert_eq!(first["date_end"], "20261001235959");
    assert_eq!(first["status"], 200);
    assert_eq!(first["rows"], 1);
    assert_eq!(first["bytes"], body.len());
    assert!(first["duration_ms"].is_u64());
    let at = first["at"].as_str().expect("at");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(lines[1]["token_id"], other_id);
    assert_eq!(lines[1]["route"], "/api/v2/information.php");
    assert_eq!(lines[2]["status"], 400);
    assert_eq!(lines[2]["date_ini"], "\u{1b}[2J");
    // Oldest first.
    let times: Vec<&str> = lines.iter().map(|l| l["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);

    // Filters.
    let n = |args: &[&str]| {
        env.ok(&[&["audit", "--format", "ndjson"], args].concat())
            .lines()
            .count()
    };
    assert_eq!(n(&["--operation", "acme"]), 2);
    assert_eq!(n(&["--operation", "other"]), 1);
    assert_eq!(n(&["--token", &other_id.to_string()]), 1);
    assert_eq!(n(&["--since", "20991231000000"]), 0);
    assert_eq!(n(&["--since", "20000101000000"]), 3);
    // The table: a header and one line per record, control characters neutralised.
    let table = env.ok(&["audit"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.starts_with("TIME"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table:?}");
    // Bad arguments are clear errors.
    for bad in [
        &["--since", "yesterday"][..],
        &["--operation", "nope"],
        &["--format", "xml"],
    ] {
        let o = env.run(&[&["audit"], bad].concat());
        assert!(!o.status.success(), "{bad:?}");
        assert!(!o.stderr.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn old_audit_records_are_deleted() {
    let env = Env::new();
    env.operation("acme", "UTC");
    let token = env.token("acme", "report", Some(100));
    let server = env.serve(None);
    assert_eq!(get_with(&server.url(INFO), &token, &[]).await.0, 200);
    assert!(server.terminate().success());
    assert_eq!(env.ok(&["audit", "--format", "ndjson"]).lines().count(), 1);
    // Age the record by two days: a server kept for one day deletes it when it starts.
    let db = env.db_url.strip_prefix("sqlite://").expect("sqlite env");
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.execute("UPDATE audit SET at = '2000-01-01T00:00:00.000Z'", [])
        .expect("age");
    drop(conn);
    let server = env.serve(Some("[audit]\nretention_days = 1\n"));
    let gone = eventually(Duration::from_secs(10), async || {
        env.ok(&["audit", "--format", "ndjson"]).lines().count() == 0
    })
    .await;
    assert!(gone, "the old record is still there");
    drop(server);
}

/// `voxtrail pull ARGS` run to its end: `(success, stdout, stderr)`.
fn run_pull(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin())
        .arg("pull")
        .args(args)
        .env_remove("VOXTRAIL_LOG")
        .env_remove("VOXTRAIL_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running voxtrail pull");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_verify_finds_the_hour_a_copy_lost() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    env.seed("acme", 300, "20261001235959", 1);
    env.import_ndjson("acme", &record("lost-1", "2026-10-01 08:15:00"));
    let token = env.token("acme", "report", Some(1_000));
    let server = env.serve(None);
    let base = server.url("");
    let copy = env.path("copy.db");
    let into = format!("sqlite://{}", copy.display());
    let window = ["--since", "20261001000000", "--until", "20261001235959"];
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--url", &base, "--token", &token, "--into", &into]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(window.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = common(&[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = run_pull(&refs);
    assert!(ok, "{err}");

    let args = common(&["--verify"]);
    let verify: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = run_pull(&verify);
    assert!(ok, "a complete copy verifies: {out}{err}");
    assert!(out.is_empty(), "{out}");

    // Delete a row from the copy: its hour, and only it, differs.
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    let n = conn
        .execute("DELETE FROM pulled_rows WHERE conn_id = 'lost-1'", [])
        .expect("delete");
    assert_eq!(n, 1);
    drop(conn);
    let (ok, out, err) = run_pull(&verify);
    assert!(!ok, "a copy that lost a row fails: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("2026-10-01 08: source "), "{out}");
    assert!(err.contains("1 hours differ"), "{err}");

    // A source without the endpoint is a clear error.
    let args: Vec<String> = common(&["--verify"])
        .into_iter()
        .map(|a| {
            if a == base {
                format!("{base}/elsewhere")
            } else {
                a
            }
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = run_pull(&refs);
    assert!(!ok);
    assert!(err.contains("no per-hour digests"), "{err}");
    // A file destination cannot be verified: it says so.
    let file = format!("ndjson:{}", env.path("copy.ndjson").display());
    let args: Vec<String> = common(&["--verify"])
        .into_iter()
        .map(|a| if a == into { file.clone() } else { a })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = run_pull(&refs);
    assert!(!ok);
    assert!(err.contains("cannot be verified"), "{err}");
}
