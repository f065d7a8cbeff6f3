//! Message formatting between Gitter and Matrix.

use std::collections::HashSet;

use crate::effect::{MatrixContent, OutMsgType};
use crate::input::GitterMessage;

/// The tags the Matrix spec suggests clients allow in `formatted_body` (client-server API,
/// "m.room.message msgtypes", HTML subset).
const MATRIX_TAGS: &[&str] = &[
    "font",
    "del",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "p",
    "a",
    "ul",
    "ol",
    "sup",
    "sub",
    "li",
    "b",
    "i",
    "u",
    "strong",
    "em",
    "strike",
    "code",
    "hr",
    "br",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "caption",
    "pre",
    "span",
    "img",
    "details",
    "summary",
];

/// The sanitiser for Gitter HTML. Built once per [`crate::Bridge`] (no global state in the
/// core) and reused for every message.
pub(crate) fn sanitizer() -> ammonia::Builder<'static> {
    {
        let mut b = ammonia::Builder::empty();
        b.tags(MATRIX_TAGS.iter().copied().collect::<HashSet<_>>())
            .add_tag_attributes("a", ["href", "title"])
            .add_tag_attributes("code", ["class"])
            .add_tag_attributes("span", ["data-mx-color", "data-mx-bg-color"])
            .add_tag_attributes("img", ["src", "alt", "title", "width", "height"])
            .add_tag_attributes("ol", ["start"])
            .url_schemes(["http", "https", "ftp", "mailto", "magnet", "mxc"].into())
            .link_rel(Some("noopener"));
        b
    }
}

/// Sanitises Gitter HTML to the Matrix allowed tag set: scripts, styles, event handlers and
/// unknown tags are removed, so nothing Gitter sends can run in a Matrix client.
pub fn sanitize_html(html: &str) -> String {
    sanitizer().clean(html).to_string()
}

/// Sanitises with a sanitiser built beforehand.
pub(crate) fn sanitize_with(builder: &ammonia::Builder<'static>, html: &str) -> String {
    builder.clean(html).to_string()
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Strips the leading `@username ` Gitter puts in front of a status (`/me`) message.
fn strip_status_prefix<'a>(text: &'a str, username: &str) -> &'a str {
    text.strip_prefix('@')
        .and_then(|t| t.strip_prefix(username))
        .map(|t| t.trim_start())
        .unwrap_or(text)
}

/// The Matrix content for a Gitter message: `body` = text, `formatted_body` = Gitter's HTML
/// sanitised (left out when it adds nothing to the text), `m.emote` for status messages.
pub(crate) fn gitter_to_matrix(
    builder: &ammonia::Builder<'static>,
    message: &GitterMessage,
) -> MatrixContent {
    let (msgtype, body) = if message.status {
        (
            OutMsgType::Emote,
            strip_status_prefix(&message.text, &message.from.username).to_owned(),
        )
    } else {
        (OutMsgType::Text, message.text.clone())
    };
    let html = if message.status {
        // The HTML starts with a rendered mention of the author; the emote names them anyway.
        escape(&body)
    } else {
        sanitize_with(builder, &message.html)
    };
    let formatted_body = (!html.is_empty() && html != escape(&body)).then_some(html);
    MatrixContent {
        msgtype,
        body,
        formatted_body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizer_removes_scripts_and_handlers_but_keeps_links() {
        let clean = sanitize_html(
            r#"hi <script>alert(1)</script><a href="https://x.org" onclick="evil()" class="link">x</a><img src="javascript:alert(1)">"#,
        );
        assert!(!clean.contains("script"));
        assert!(!clean.contains("onclick"));
        assert!(!clean.contains("javascript"));
        assert!(clean.contains(r#"href="https://x.org""#));
    }

    #[test]
    fn status_prefix_is_stripped() {
        assert_eq!(strip_status_prefix("@bob waves", "bob"), "waves");
        assert_eq!(strip_status_prefix("waves", "bob"), "waves");
    }
}
