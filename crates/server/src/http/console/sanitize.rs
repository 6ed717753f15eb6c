//! E-mail bodies made safe to show: a plain-text body is shown as text (escaped by the
//! template); an HTML body is cleaned by `ammonia`'s allow-list — no script, no event handler,
//! no style, only `http`, `https` and `mailto` links, and images without a source (a remote
//! image would tell the sender the mail was read; `data:` URLs are not among the allowed
//! schemes either) — and then shown in a sandboxed frame
//! without scripts or same-origin rights.

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

/// The cleaned HTML of a body.
pub fn clean_html(body: &str) -> String {
    let schemes: HashSet<&str> = ["http", "https", "mailto"].into_iter().collect();
    ammonia::Builder::default()
        .url_schemes(schemes)
        .link_rel(Some("noopener noreferrer nofollow"))
        .rm_tag_attributes("img", &["srcset", "longdesc"])
        .attribute_filter(|element, attribute, value| {
            let remote = matches!(attribute, "src" | "background" | "poster" | "srcset")
                && !value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("data:image/");
            if element == "img" && remote || attribute == "style" {
                None
            } else {
                Some(value.into())
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
        assert!(!clean.contains("src="), "images keep no source: {clean}");
        assert!(clean.contains("https://example.com/x"), "{clean}");
        assert!(clean.contains("noopener"), "{clean}");
    }

    #[test]
    fn html_is_told_from_text() {
        assert!(looks_like_html("<p>Hola</p>"));
        assert!(looks_like_html("Hola<br>mundo"));
        assert!(!looks_like_html("2 < 3 and 5 > 4, a -> b"));
    }
}
