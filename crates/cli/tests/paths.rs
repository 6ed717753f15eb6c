//! End-to-end: messy paths reach their endpoint through the real binary and real HTTP
//! (docs/api.md, "Paths"). A client whose base URL ends in `/` sends `//api/v2/…` and gets
//! the same answer as a tidy one; unknown paths still get the documented 404.

mod common;

use common::*;

const QUERY: &str = "api=chat_12&date_ini=20261001000000&date_end=20261001235959";

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = plain_client().get(url);
    if let Some(t) = token {
        req = req.header("wolkvox-token", t);
    }
    let resp = req.send().await.expect("sending request");
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("x-request-id"));
    (status, resp.text().await.expect("reading body"))
}

#[tokio::test]
async fn a_base_url_with_a_trailing_slash_reaches_every_endpoint() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    env.import_ndjson(
        "acme",
        &format!(
            "{}\n{}\n",
            record("c-1", "2026-10-01 08:15:00"),
            record("c-2", "2026-10-01 09:15:00")
        ),
    );
    let server = env.serve(None);
    // What an integrator's HTTP client builds from `base = "http://host:port/"`.
    let base = server.url("/");

    let tidy = get(
        &server.url(&format!("/api/v2/reports_manager.php?{QUERY}")),
        Some(&token),
    )
    .await;
    assert_eq!(tidy.0, 200, "{}", tidy.1);
    assert!(
        tidy.1.contains(r#""msg":"2 records were found""#),
        "{}",
        tidy.1
    );
    for path in [
        "/api/v2/reports_manager.php",
        "/api/v2/reports_manager.php/",
        "api//v2/reports_manager.php//",
    ] {
        let messy = get(&format!("{base}{path}?{QUERY}"), Some(&token)).await;
        assert_eq!(messy, tidy, "{base}{path}");
    }

    let (status, body) = get(
        &format!("{base}/api//v2/information.php?api=token_info"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""description""#), "{body}");
    for path in ["/healthz/", "/healthz", "healthz//"] {
        assert_eq!(
            get(&format!("{base}{path}"), None).await,
            (200, r#"{"status":"ok"}"#.to_owned()),
            "{base}{path}"
        );
    }

    // Sent byte for byte, with no HTTP library in the way.
    let raw = raw_get(&server.addr, b"//healthz/", &[]).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text(), r#"{"status":"ok"}"#);

    let not_found = error_json(404, "NOT FOUND", "THE REQUESTED PATH DOES NOT EXIST");
    for path in ["/nothing/", "/healthz/x", "/api/v2/reports_manager.php%2F"] {
        assert_eq!(
            get(&format!("{base}{path}"), Some(&token)).await,
            (404, not_found.clone()),
            "{base}{path}"
        );
    }

    // The metrics and the log line name the normalised route.
    let (_, metrics) = get(&format!("{base}/metrics/"), None).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("voxtrail_http_requests_total")
                && l.contains(r#"route="/api/v2/reports_manager.php""#)
                && l.contains(r#"status="200""#)),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"route="//"#), "{metrics}");
    // A log line is written once its body has ended: wait for the four report answers.
    let logged = eventually(std::time::Duration::from_secs(10), async || {
        server
            .logs()
            .lines()
            .filter(|l| l.contains(r#""route":"/api/v2/reports_manager.php""#))
            .count()
            >= 4
    })
    .await;
    let logs = server.logs();
    assert!(logged, "{logs}");
    assert!(!logs.contains(r#""route":"//"#), "{logs}");
}
