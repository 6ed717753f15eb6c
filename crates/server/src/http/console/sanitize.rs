//! E-mail bodies made safe to show: a plain-text body is shown as text (escaped by the
//! template); an HTML body is cleaned by `ammonia`'s allow-list — no script, no event handler,
//! no style, only `http`, `https` and `mailto` links, and no remote image (it would tell the
//! sender the mail was read): an image keeps its source only when it is inline, a
//! `data:image/png`, `gif`, `jpeg` or `webp` URL (no request leaves the page; the console's CSP
//! allows `img-src data:` and the frame inherits it; no SVG, which can carry script and links);
//! any other `data:` URL is dropped — and then shown in a sandboxed frame without scripts or
//! same-origin rights.

use std::collections::HashSet;

/// Whether a body is meant as HTML (it holds markup that a mail client would render).
pub fn looks_like_html(body: &str) -> bool {
    let head: String = body
        .chars()
        .take(4096)
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "<html", "<body", "<div", "<p>", "<p ", "<br", "<table", "<a ", "<img", "<span", "</",
    ]
    .iter()
    .any(|tag| head.contains(tag))
}

/// Inline image types an `<img src>` may keep.
const INLINE_IMAGES: [&str; 4] = ["png", "gif", "jpeg", "webp"];

/// Whether a URL attribute's value is a `data:` URL, read as a browser and ammonia's URL parser
/// read it (leading and trailing spaces and controls, and tabs and newlines anywhere, ignored).
fn data_url(value: &str) -> Option<String> {
    let v: String = value
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect::<String>()
        .trim_matches(|c: char| c <= ' ')
        .to_ascii_lowercase();
    v.strip_prefix("data:").map(str::to_owned)
}

/// Whether the rest of a `data:` URL (after `data:`) is an image type of [`INLINE_IMAGES`].
fn inline_image(rest: &str) -> bool {
    rest.strip_prefix("image/").is_some_and(|t| {
        INLINE_IMAGES.iter().any(|ty| {
            t.strip_prefix(ty)
                .is_some_and(|after| after.starts_with(';') || after.starts_with(','))
        })
    })
}

/// The cleaned HTML of a body.
pub fn clean_html(body: &str) -> String {
    // `data` passes ammonia's scheme check; the attribute filter then keeps it only in an
    // `<img src>` of an inline image type.
    let schemes: HashSet<&str> = ["http", "https", "mailto", "data"].into_iter().collect();
    ammonia::Builder::default()
        .url_schemes(schemes)
        .link_rel(Some("noopener noreferrer nofollow"))
        .rm_tag_attributes("img", &["srcset", "longdesc"])
        .attribute_filter(|element, attribute, value| {
            if attribute == "style" {
                return None;
            }
            match data_url(value) {
                Some(rest) if element == "img" && attribute == "src" && inline_image(&rest) => {
                    Some(value.into())
                }
                Some(_) => None,
                // An image's remote source.
                None if element == "img" && attribute == "src" => None,
                None => Some(value.into()),
            }
        })
        .clean(body)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_is_inert() {
        let dirty = r#"<p onclick="x()">Hi<script>document.title='owned'</script>
            <img src="http://127.0.0.1:9/pixel.gif" onerror="alert(1)">
            <img src="data:image/png;base64,iVBORw0KGgo=">
            <a href="javascript:alert(1)">click</a> <a href="https://example.com/x">ok</a>
            <style>body{display:none}</style><div style="position:fixed;inset:0">over</div>
            <iframe src="http://127.0.0.1:9/"></iframe><link rel=stylesheet href="http://127.0.0.1:9/a.css">
            <svg><script>1</script></svg><form action="http://127.0.0.1:9/"><input></form></p>"#;
        let clean = clean_html(dirty);
        for bad in [
            "<script",
            "onclick",
            "onerror",
            "javascript:",
            "127.0.0.1",
            "<style",
            "style=",
            "<iframe",
            "<link",
            "<form",
            "<svg",
        ] {
            assert!(!clean.contains(bad), "{bad} survived in {clean}");
        }
        assert_eq!(
            clean.matches("src=").count(),
            1,
            "only the inline PNG keeps its source: {clean}"
        );
        assert!(clean.contains(r#"src="data:image/png;base64,iVBORw0KGgo=""#));
        assert!(clean.contains("https://example.com/x"), "{clean}");
        assert!(clean.contains("noopener"), "{clean}");
    }

    #[test]
    fn only_inline_raster_images_keep_a_data_url() {
        let kept = |html: &str| clean_html(html).contains("src=");
        for ok in [
            "<img src=\"data:image/png;base64,AAAA\">",
            "<img src=\"data:image/gif;base64,AAAA\">",
            "<img src=\" DATA:Image/JPEG;base64,AAAA\">",
            "<img src=\"data:image/webp,AAAA\">",
        ] {
            assert!(kept(ok), "{ok}");
        }
        for bad in [
            "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
            "<img src=\"data:image/svg+xml,<svg onload=alert(1)>\">",
            "<img src=\"data:text/html;base64,AAAA\">",
            "<img src=\"data:image/pngx;base64,AAAA\">",
            "<img src=\"da\nta:image/svg+xml,<svg/onload=alert(1)>\">",
            "<img src=\"data:image/png\">",
            "<img src=\"http://127.0.0.1:9/data:image/png;base64,AAAA\">",
            "<img src=\"//127.0.0.1:9/x.png\">",
        ] {
            assert!(!kept(bad), "{bad}: {}", clean_html(bad));
        }
        for bad in [
            "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
            "<a href=\"data:image/png;base64,AAAA\">x</a>",
            "<a href=\" da\tta:text/html,x\">x</a>",
        ] {
            assert!(
                !clean_html(bad).contains("href"),
                "{bad}: {}",
                clean_html(bad)
            );
        }
    }

    #[test]
    fn html_is_told_from_text() {
        assert!(looks_like_html("<p>Hola</p>"));
        assert!(looks_like_html("Hola<br>mundo"));
        assert!(!looks_like_html("2 < 3 and 5 > 4, a -> b"));
    }
}
