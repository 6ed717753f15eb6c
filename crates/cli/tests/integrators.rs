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
