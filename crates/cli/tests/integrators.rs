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
