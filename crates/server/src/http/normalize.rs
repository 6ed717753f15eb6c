//! Path normalisation in front of the router: repeated slashes count as one and one trailing
//! slash is ignored, for every endpoint (docs/api.md, "Paths"). A client configured with a base
//! URL ending in `/` sends `//api/v2/reports_manager.php`; it reaches the report, not a 404 that
//! would read as "no data".
//!
//! The rewrite happens before routing, so the route label of the log line and the metrics is
//! the normalised route. The query string is kept byte for byte; percent-encoded slashes
//! (`%2F`) are not slashes and are left alone.

use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;

/// The normalised form of `path`, or `None` when it is already normal (or not an origin-form
/// path, e.g. `*`). Runs of `/` become one `/`; then one trailing `/` is dropped, except from
/// the root path `/` itself.
pub fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    let mut after_slash = false;
    for c in path.chars() {
        if c == '/' {
            if after_slash {
                continue;
            }
            after_slash = true;
        } else {
            after_slash = false;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    (out != path).then_some(out)
}

/// Rewrites the request's URI to its normalised path, keeping the query string intact.
pub async fn normalize_request(mut req: Request) -> Request {
    if let Some(uri) = normalized_uri(req.uri()) {
        *req.uri_mut() = uri;
    }
    req
}

fn normalized_uri(uri: &Uri) -> Option<Uri> {
    let path = normalize_path(uri.path())?;
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slashes_collapse_and_one_trailing_slash_goes() {
        for (raw, want) in [
            (
                "//api/v2/reports_manager.php/",
                "/api/v2/reports_manager.php",
            ),
            ("/api//v2/information.php", "/api/v2/information.php"),
            ("//healthz/", "/healthz"),
            ("/healthz//", "/healthz"),
            ("/healthz/", "/healthz"),
            ("///", "/"),
            ("//", "/"),
            ("/a///b////c///", "/a/b/c"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Some(want), "{raw}");
        }
        for normal in [
            "/",
            "/healthz",
            "/api/v2/interactions",
            "*",
            "",
            "/a%2F%2Fb",
        ] {
            assert_eq!(normalize_path(normal), None, "{normal}");
        }
    }

    #[test]
    fn the_query_string_is_kept_byte_for_byte() {
        let uri: Uri = "//api/v2/reports_manager.php/?api=chat_12&date_ini=a//b/&x=%2F%2F"
            .parse()
            .unwrap();
        let got = normalized_uri(&uri).unwrap();
        assert_eq!(
            got.to_string(),
            "/api/v2/reports_manager.php?api=chat_12&date_ini=a//b/&x=%2F%2F"
        );
        let uri: Uri = "/healthz/?".parse().unwrap();
        assert_eq!(normalized_uri(&uri).unwrap().to_string(), "/healthz?");
        let uri: Uri = "http://127.0.0.1:8080//readyz/?q=1".parse().unwrap();
        assert_eq!(
            normalized_uri(&uri).unwrap().to_string(),
            "http://127.0.0.1:8080/readyz?q=1"
        );
    }

    proptest! {
        #[test]
        fn normal_form_is_stable_and_keeps_every_segment(
            segs in proptest::collection::vec("[a-z0-9.%_-]{0,4}", 0..6),
            trailing in 0usize..3,
        ) {
            let raw = format!("/{}{}", segs.join("/"), "/".repeat(trailing));
            let norm = normalize_path(&raw).unwrap_or_else(|| raw.clone());
            prop_assert!(!norm.contains("//"), "{}", norm);
            prop_assert!(norm == "/" || !norm.ends_with('/'), "{}", norm);
            prop_assert_eq!(normalize_path(&norm), None);
            let kept: Vec<&str> = segs.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            let got: Vec<&str> = norm.split('/').filter(|s| !s.is_empty()).collect();
            prop_assert_eq!(got, kept);
        }
    }

    /// The real router, on a throwaway SQLite database.
    async fn app() -> (axum::Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let store = crate::store::Store::open(&url).unwrap();
        let config = crate::config::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let app = super::super::Application::build(config, store)
            .await
            .unwrap();
        (super::super::router(app.state), dir)
    }

    async fn send(router: &mut axum::Router, method: &str, target: &str) -> (u16, String) {
        let req = Request::builder()
            .method(method)
            .uri(target)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::Service::call(router, req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_endpoint_is_reached_through_a_messy_path() {
        let (mut r, _dir) = app().await;
        for target in ["//healthz/", "/healthz//", "///healthz", "/healthz/"] {
            assert_eq!(
                send(&mut r, "GET", target).await,
                (200, r#"{"status":"ok"}"#.into()),
                "{target}"
            );
        }
        assert_eq!(send(&mut r, "GET", "//readyz/").await.0, 200);
        let (status, body) = send(&mut r, "GET", "/openapi.json/").await;
        assert_eq!(status, 200);
        assert!(body.contains("\"openapi\""), "{body}");
        // Without a token the report routes answer 401: they were found, not 404.
        let no_token = String::from_utf8(voxtrail_wire::error_body(
            401,
            "UNAUTHORIZED",
            "PLEASE ENTER THE WOLKVOX-TOKEN",
        ))
        .unwrap();
        for target in [
            "//api/v2/reports_manager.php/?api=chat_12&date_ini=20261001000000&date_end=20261001235959",
            "/api//v2/information.php?api=token_info",
            "/api/v2//reports_manager.php//",
        ] {
            assert_eq!(
                send(&mut r, "GET", target).await,
                (401, no_token.clone()),
                "{target}"
            );
        }
        let (status, _) = send(&mut r, "POST", "//api/v2/interactions/").await;
        assert_eq!(status, 401);
        // The method check still sees the normalised route.
        let (status, body) = send(&mut r, "DELETE", "//api/v2/reports_manager.php/").await;
        assert_eq!(status, 405, "{body}");
    }

    #[tokio::test]
    async fn unknown_paths_still_answer_the_documented_404() {
        let (mut r, _dir) = app().await;
        let not_found = String::from_utf8(voxtrail_wire::error_body(
            404,
            "NOT FOUND",
            "THE REQUESTED PATH DOES NOT EXIST",
        ))
        .unwrap();
        for target in [
            "/",
            "//",
            "/healthz/x",
            "/healthzz/",
            "/api/v2/reports_manager.php%2F",
            "/api%2Fv2/information.php",
            "/api/v2/reports_manager.php/x/?api=chat_12",
        ] {
            assert_eq!(
                send(&mut r, "GET", target).await,
                (404, not_found.clone()),
                "{target}"
            );
        }
    }

    #[tokio::test]
    async fn the_metrics_route_label_is_the_normalised_route() {
        let (mut r, _dir) = app().await;
        assert_eq!(send(&mut r, "GET", "//openapi.json//?x=1").await.0, 200);
        let (_, text) = send(&mut r, "GET", "/metrics/").await;
        assert!(
            text.lines()
                .any(|l| l.starts_with("voxtrail_http_requests_total")
                    && l.contains(r#"route="/openapi.json""#)),
            "{text}"
        );
        assert!(!text.contains(r#"route="//openapi.json"#), "{text}");
    }
}
