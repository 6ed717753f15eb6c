//! The web console (`/console/`): server-rendered pages for the people who read an operation's
//! report (docs/api.md, "The console").
//!
//! Sign-in takes a console token in a form and sets a session cookie; the session's id is
//! random, stored hashed (`console_sessions`), and every page re-reads it with its token, so
//! sign-out, the 12-hour limit and revocation end it. Without a session every console URL
//! redirects (303) to the login page. Every answer carries a Content-Security-Policy without
//! inline scripts and `X-Frame-Options: DENY`; e-mail content is escaped everywhere and HTML
//! bodies are sanitised and framed (`sanitize.rs`). Pages are in `pages.rs`; this file holds
//! the router, sessions, the same-origin check and the console's own error answers (HTML,
//! not the API's JSON).

mod pages;
mod sanitize;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::auth::AuthFailure;
use crate::domain::{Scope, Token, TokenSecret};

/// The session cookie's name.
pub const COOKIE: &str = "vxt_console";
/// Longest sign-in form body read.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// Sent with every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The console's routes (paths arrive normalised: `/console/` is `/console`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/interactions", get(pages::interactions))
        .route("/console/interactions/{conn_id}", get(pages::interaction))
        .route("/console/tokens", get(pages::tokens))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/{*rest}", get(unknown).post(unknown))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// What a console request can end in besides its page. Statuses of the console's HTML
/// answers are chosen here only.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: 303 to the login page.
    SignIn,
    /// A POST whose Origin/Referer is not this site.
    CrossSite,
    NotFound,
    /// A filter the page cannot use (shown to the user).
    BadInput(String),
    /// A bug or the database; the cause goes to the log only.
    Internal(String),
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::SignIn => return see_other("/console/login", None),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "This form was sent from another site.".to_owned(),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "Nothing here.".to_owned()),
            Self::BadInput(m) => (StatusCode::BAD_REQUEST, m),
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "console page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong; the server log has the cause.".to_owned(),
                )
            }
        };
        (status, pages::message_page(status, &text)).into_response()
    }
}

fn see_other(to: &'static str, cookie: Option<String>) -> Response {
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    res
}

/// The session id in the request's cookies, hashed.
fn session_hash(headers: &HeaderMap) -> Option<[u8; 32]> {
    let prefix = format!("{COOKIE}=");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(prefix.as_str()))
        .find(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| Sha256::digest(id.as_bytes()).into())
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The console token of the request's live session, or a redirect to the login page.
pub(crate) async fn session(st: &AppState, headers: &HeaderMap) -> Result<Token, ConsoleError> {
    let Some(hash) = session_hash(headers) else {
        return Err(ConsoleError::SignIn);
    };
    st.store
        .blocking(move |s| s.console_session(&hash, now_secs()))
        .await?
        .ok_or(ConsoleError::SignIn)
}

/// Whether the request came over HTTPS (a proxy in front says so with `X-Forwarded-Proto`).
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// A POST must come from a page of this site: its `Origin` (or, without one, its `Referer`)
/// must be this host, at the scheme the request arrived with.
fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or(ConsoleError::CrossSite)?;
    let scheme = if https(headers) { "https" } else { "http" };
    let own = format!("{scheme}://{host}");
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let ok = match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => origin.eq_ignore_ascii_case(&own),
        (None, Some(referer)) => referer
            .get(..own.len() + 1)
            .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{own}/"))),
        (None, None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ConsoleError::CrossSite)
    }
}

fn cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

async fn login_form() -> Response {
    pages::login_page(StatusCode::OK, None).into_response()
}

/// `POST /console/login` with `token=…` in the form body.
async fn login(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    if body.len() > MAX_FORM_BYTES {
        return pages::login_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("That form is too large."),
        )
        .into_response();
    }
    let token = form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "token")
        .last()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let checked = st
        .auth
        .check(&st.store, Some(token.as_bytes()), Scope::Console)
        .await;
    let token = match checked {
        Ok(Ok(t)) => t,
        Ok(Err(AuthFailure::Missing)) => {
            return pages::login_page(StatusCode::BAD_REQUEST, Some("Enter a console token."))
                .into_response();
        }
        Ok(Err(AuthFailure::Invalid)) => {
            return pages::login_page(
                StatusCode::FORBIDDEN,
                Some("This token cannot sign in to the console (unknown, revoked, or not a console token)."),
            )
            .into_response();
        }
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    // 256 random bits, as hex; only its hash is stored.
    let id = TokenSecret::generate();
    let id_hex = hex(&Sha256::digest(id.expose().as_bytes()));
    let hash: [u8; 32] = Sha256::digest(id_hex.as_bytes()).into();
    let token_id = token.id;
    if let Err(e) = st
        .store
        .blocking(move |s| s.create_console_session(&hash, token_id, now_secs()))
        .await
    {
        return ConsoleError::from(e).into_response();
    }
    let ttl = crate::store::console::SESSION_TTL_SECS;
    see_other("/console/", Some(cookie(&id_hex, ttl, https(&headers))))
}

/// `POST /console/logout`: ends the session and clears the cookie.
async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    if let Some(hash) = session_hash(&headers)
        && let Err(e) = st
            .store
            .blocking(move |s| s.delete_console_session(&hash))
            .await
    {
        return ConsoleError::from(e).into_response();
    }
    see_other("/console/login", Some(cookie("", 0, https(&headers))))
}

async fn unknown(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match session(&st, &headers).await {
        Ok(_) => ConsoleError::NotFound.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("static/console.css"),
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_needs_this_host() {
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&ok).is_ok());
        let evil = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]);
        assert!(same_origin(&evil).is_err());
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(same_origin(&null).is_err());
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert!(same_origin(&none).is_err());
        let referer = headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://127.0.0.1:8080/console/login"),
        ]);
        assert!(same_origin(&referer).is_ok());
        let prefix_trick = headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://127.0.0.1:8080.evil.test/x"),
        ]);
        assert!(same_origin(&prefix_trick).is_err());
        let behind_tls = headers(&[
            ("host", "console.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "http://console.example"),
        ]);
        assert!(same_origin(&behind_tls).is_err(), "scheme must match");
    }

    #[test]
    fn session_cookie_is_found_among_others_and_checked() {
        let id = "ab".repeat(32);
        let h = headers(&[("cookie", &format!("a=b; {COOKIE}={id}; c=d"))]);
        assert_eq!(session_hash(&h), Some(Sha256::digest(id.as_bytes()).into()));
        let bad = headers(&[("cookie", &format!("{COOKIE}=../../etc; x=1"))]);
        assert_eq!(session_hash(&bad), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = cookie("ab", 60, true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/console",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!cookie("ab", 60, false).contains("Secure"));
    }
}
