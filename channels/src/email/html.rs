//! HTML mail, sanitised: what is kept of a message's HTML (in `content.html`, inbound and
//! outbound) is safe to show in a browser.
//!
//! ammonia parses with html5ever (the HTML5 algorithm browsers use, so malformed markup is read
//! the way a browser would read it) and keeps an allowlist: formatting, lists, tables, links
//! and images, never scripts, styles, forms, frames or event handlers. On top of its defaults:
//! - links may only be `http`, `https`, `mailto` or `tel`, and open with
//!   `rel="noopener noreferrer"`;
//! - an image keeps its `src` only when it points into the message itself (`cid:`): a remote
//!   image is how a sender learns that and when a mail was read (a tracking pixel), so it is
//!   not fetched by whoever shows the kept HTML; its `alt` text stays.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.url_schemes(HashSet::from(["http", "https", "mailto", "tel", "cid"]))
        .link_rel(Some("noopener noreferrer"))
        .attribute_filter(|element, attribute, value| {
            if element == "img" && attribute == "src" && !value.starts_with("cid:") {
                return None;
            }
            if element == "a" && attribute == "href" && value.starts_with("cid:") {
                return None;
            }
            Some(Cow::Borrowed(value))
        });
    b
});

/// `html` with everything unsafe removed (see the module docs).
pub fn sanitize(html: &str) -> String {
    CLEANER.clean(html).to_string()
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn scripts_handlers_and_dangerous_links_are_removed() {
        let out = sanitize(
            "<p onclick=\"steal()\">Hi <b>Jane</b><script>alert(1)</script></p>\
             <style>p{}</style><iframe src=\"https://x.test\"></iframe>\
             <a href=\"javascript:alert(1)\">x</a><a href=\"https://ok.test/a\">ok</a>\
             <form action=\"https://x.test\"><input name=p></form>",
        );
        for bad in [
            "onclick",
            "script",
            "alert",
            "style",
            "iframe",
            "javascript",
            "form",
            "input",
        ] {
            assert!(!out.contains(bad), "{bad} in {out}");
        }
        assert!(out.contains("<b>Jane</b>"), "{out}");
        assert!(
            out.contains("href=\"https://ok.test/a\"") && out.contains("noopener noreferrer"),
            "{out}"
        );
    }

    #[test]
    fn remote_images_lose_their_source_and_inline_ones_keep_it() {
        let out = sanitize(
            "<img src=\"https://track.test/p.gif?u=1\" alt=\"pixel\">\
             <img src=\"cid:logo@acme\" alt=\"logo\"><img src=\"data:image/png;base64,AAAA\">",
        );
        assert!(
            !out.contains("track.test") && !out.contains("data:"),
            "{out}"
        );
        assert!(out.contains("src=\"cid:logo@acme\""), "{out}");
        assert!(out.contains("alt=\"pixel\""), "{out}");
    }

    #[test]
    fn links_to_inline_parts_lose_their_target() {
        let out = sanitize("<a href=\"cid:part1@x\" title=\"cid:t\">see</a>");
        assert!(!out.contains("href"), "{out}");
        assert!(
            out.contains("title=\"cid:t\""),
            "other attributes stay: {out}"
        );
        let out = sanitize("<a href=\"https://ok.test/\">ok</a>");
        assert!(out.contains("href=\"https://ok.test/\""), "{out}");
    }

    #[test]
    fn broken_markup_is_read_as_a_browser_would() {
        let out = sanitize("<div><b>bold <i>both</b> after</div><scr<script>ipt>x</script>");
        assert!(!out.contains("<script"), "{out}");
        assert!(out.starts_with("<div><b>bold <i>both</i></b>"), "{out}");
    }
}
