//! The strong `ETag` of a report answer and `If-None-Match` (docs/api.md, "Cheap re-polls").
//!
//! The tag is a SHA-256 over the window's bounds, the compatibility setting that shapes the
//! answer, the window's row count and the XOR of its stored row hashes (`store/digest.rs`): it
//! depends on nothing but the stored rows, so every replica and every restart gives the same
//! tag for the same rows, and a row added, removed or replaced changes it.
//!
//! A `200` without `If-None-Match` carries the tag of its own rows: the backend reads the count
//! and the XOR in the report's snapshot (`ReportHead`), no other read. A conditional request
//! reads the tag *before* the report's snapshot: an answer's rows are never older than its tag,
//! so a client holding a tag never misses a row behind a `304` (at worst one extra `200`).

use axum::http::HeaderValue;
use sha2::{Digest as _, Sha256};

use crate::config::EmptyWindow;
use crate::domain::Window;
use crate::store::digest::hex;

/// The quoted strong entity tag of a window's answer.
pub fn etag(window: Window, compat: EmptyWindow, rows: u64, xor: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"voxtrail chat_12 etag v1\0");
    h.update(window.ini().as_i64().to_be_bytes());
    h.update(window.end().as_i64().to_be_bytes());
    h.update(match compat {
        EmptyWindow::Ok => b"200",
        EmptyWindow::NotFound => b"404",
    });
    h.update(rows.to_be_bytes());
    h.update(xor);
    let d = h.finalize();
    format!("\"{}\"", hex(&d[..20]))
}

/// Whether an `If-None-Match` field matches `tag` (`*`, or any listed tag; the comparison is
/// weak, as RFC 9110 asks for `If-None-Match`). A field that is not text never matches.
pub fn matches(field: &HeaderValue, tag: &str) -> bool {
    let Ok(text) = field.to_str() else {
        return false;
    };
    let text = text.trim();
    if text == "*" {
        return true;
    }
    let bare = tag.trim_start_matches("W/");
    text.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window::parse("20261001000000", "20261001235959", 31).unwrap()
    }

    #[test]
    fn tag_depends_on_rows_bounds_and_compat() {
        let w = window();
        let base = etag(w, EmptyWindow::Ok, 2, &[1; 32]);
        assert_eq!(base, etag(w, EmptyWindow::Ok, 2, &[1; 32]));
        assert!(base.starts_with('"') && base.ends_with('"') && base.len() == 42);
        assert_ne!(base, etag(w, EmptyWindow::Ok, 3, &[1; 32]));
        assert_ne!(base, etag(w, EmptyWindow::Ok, 2, &[2; 32]));
        assert_ne!(base, etag(w, EmptyWindow::NotFound, 2, &[1; 32]));
        let other = Window::parse("20261001000000", "20261001235958", 31).unwrap();
        assert_ne!(base, etag(other, EmptyWindow::Ok, 2, &[1; 32]));
    }

    #[test]
    fn if_none_match_lists_and_star() {
        let tag = "\"abc\"";
        let m = |s: &str| matches(&HeaderValue::from_str(s).unwrap(), tag);
        assert!(m("\"abc\""));
        assert!(m("W/\"abc\""));
        assert!(m("\"x\", \"abc\""));
        assert!(m("*"));
        assert!(!m("\"abcd\""));
        assert!(!m("abc"));
        assert!(!m(""));
        assert!(!matches(
            &HeaderValue::from_bytes(b"\"abc\xff\"").unwrap(),
            tag
        ));
    }
}
