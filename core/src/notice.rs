//! What the bot says, written in markdown and sent as an `m.notice` with both forms.
//!
//! Notices are written in CommonMark: commands in backticks, the help as a list. The `body`
//! is the markdown itself (readable as plain text in any client, and what a client without
//! HTML shows), and `formatted_body` is its HTML (spec: "m.room.message msgtypes",
//! `org.matrix.custom.html`), rendered by pulldown-cmark. A notice quotes names that strangers
//! choose (a Gitter display name, a room's name), so what could turn one into a trap is not
//! rendered:
//!
//! * raw HTML is shown as text, never passed through;
//! * a link or an image is shown as it was written: the bot writes none, so one in a notice
//!   came with a quoted name (a display name `[log in again](https://evil.example)` must not
//!   become a link in the chat that carries the real login links);
//! * only the bridge's own addresses (its login links, under `public_url`) become links;
//!   CommonMark links only `<...>` autolinks, and the plain body must keep the bare address.
//!
//! Every notice carries an empty `m.mentions` (spec: "User and room mentions"): the bot
//! pings nobody, whatever a quoted name happens to contain.

use pulldown_cmark::{CowStr, Event, LinkType, Parser, Tag, TagEnd};

use crate::effect::{MatrixContent, Mentions, OutMsgType};

/// The `m.notice` for a markdown text; addresses under `own_url` (the bridge's public URL)
/// become links.
pub(crate) fn render(markdown: &str, own_url: &str) -> MatrixContent {
    MatrixContent {
        msgtype: OutMsgType::Notice,
        body: markdown.to_owned(),
        formatted_body: Some(to_html(markdown, own_url)),
        thread: None,
        mentions: Some(Mentions::default()),
    }
}

/// `text` as an inline code span, whatever backticks it holds (CommonMark "Code spans": a
/// run of backticks longer than any inside, padded with spaces when it starts or ends with
/// one). For names the bot quotes but did not write.
pub(crate) fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// The HTML of a markdown text: raw HTML, links and images shown as written, and addresses
/// under `own_url` linked.
fn to_html(markdown: &str, own_url: &str) -> String {
    let mut events = Vec::new();
    // Adjacent text (pulldown-cmark splits it at characters that might start markup) is
    // joined first, so an address is seen whole.
    let mut text = String::new();
    // Inside a link or image shown as written: its own events are skipped.
    let mut skipping = 0usize;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        if skipping > 0 {
            match event {
                Event::Start(Tag::Link { .. } | Tag::Image { .. }) => skipping += 1,
                Event::End(TagEnd::Link | TagEnd::Image) => skipping -= 1,
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                text.push_str(&markdown[range]);
                skipping = 1;
            }
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => text.push_str(&t),
            other => {
                link_addresses(std::mem::take(&mut text), own_url, &mut events);
                events.push(other);
            }
        }
    }
    link_addresses(text, own_url, &mut events);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html.trim_end().to_owned()
}

/// Pushes `text` as text events, with each address under `own_url` as a link. An address
/// ends at whitespace or at a character that cannot end one in a sentence (a closing bracket
/// or a full stop after it is punctuation, not part of the address).
fn link_addresses(text: String, own_url: &str, events: &mut Vec<Event<'_>>) {
    let push_text = |t: &str, events: &mut Vec<Event<'_>>| {
        if !t.is_empty() {
            events.push(Event::Text(CowStr::from(t.to_owned())));
        }
    };
    let mut rest = text.as_str();
    while let Some(start) = find_address(rest, own_url) {
        let tail = &rest[start..];
        let mut end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        while end > 0 && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', ']', '\'', '"'])
        {
            end -= 1;
        }
        // At least one character: the loop always moves on.
        let end = end.max(1);
        let address = &tail[..end];
        push_text(&rest[..start], events);
        events.push(Event::Start(Tag::Link {
            link_type: LinkType::Autolink,
            dest_url: CowStr::from(address.to_owned()),
            title: CowStr::Borrowed(""),
            id: CowStr::Borrowed(""),
        }));
        push_text(address, events);
        events.push(Event::End(TagEnd::Link));
        rest = &tail[end..];
    }
    push_text(rest, events);
}

/// Where the first address under `own_url` (with something after it) starts in `text`.
fn find_address(text: &str, own_url: &str) -> Option<usize> {
    let own_url = own_url.trim_end_matches('/');
    if own_url.is_empty() {
        return None;
    }
    text.match_indices(own_url)
        .find(|(i, s)| text[i + s.len()..].starts_with('/'))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://bridge.example/";

    #[test]
    fn commands_are_code_and_the_plain_body_is_the_markdown() {
        let notice = render(
            "Unknown command `dance`. Send `help` for the list of commands.",
            OWN,
        );
        assert_eq!(
            notice.body,
            "Unknown command `dance`. Send `help` for the list of commands."
        );
        assert_eq!(
            notice.formatted_body.as_deref(),
            Some(
                "<p>Unknown command <code>dance</code>. Send <code>help</code> for the list of \
                 commands.</p>"
            )
        );
        assert_eq!(notice.msgtype, OutMsgType::Notice);
        assert_eq!(notice.mentions, Some(Mentions::default()));
    }

    #[test]
    fn the_login_link_is_a_link_and_stays_bare_in_the_body() {
        let notice = render(
            "Log in to Gitter here: https://bridge.example/login/ab12cd.",
            OWN,
        );
        assert!(
            notice
                .body
                .ends_with("https://bridge.example/login/ab12cd.")
        );
        assert_eq!(
            notice.formatted_body.as_deref(),
            Some(
                "<p>Log in to Gitter here: <a href=\"https://bridge.example/login/ab12cd\">\
                 https://bridge.example/login/ab12cd</a>.</p>"
            )
        );
    }

    #[test]
    fn a_list_is_a_list() {
        let html = to_html("Commands:\n\n- `help`: this text\n- `login`: a link", OWN);
        assert_eq!(
            html,
            "<p>Commands:</p>\n<ul>\n<li><code>help</code>: this text</li>\n<li><code>login</code>: \
             a link</li>\n</ul>"
        );
    }

    #[test]
    fn raw_html_from_a_quoted_name_is_shown_as_text() {
        let html = to_html("No Gitter room named <img src=x onerror=alert(1)>.", OWN);
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        let html = to_html("<script>alert(1)</script>", OWN);
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn a_link_or_image_that_came_with_a_name_is_shown_as_written() {
        // A stranger's display name, quoted in a notice, must not become a link or a picture.
        let html = to_html(
            "[Log in again](https://evil.example/x) started a chat with you. \
             ![pic](https://evil.example/p.png) <https://evil.example/auto> and \
             [ref][1]\n\n[1]: https://evil.example/ref",
            OWN,
        );
        assert!(!html.contains("<a") && !html.contains("<img"), "{html}");
        assert!(
            html.contains("[Log in again](https://evil.example/x) started"),
            "{html}"
        );
        assert!(
            html.contains("![pic](https://evil.example/p.png)"),
            "{html}"
        );
        assert!(html.contains("&lt;https://evil.example/auto&gt;"), "{html}");
    }

    #[test]
    fn only_the_bridge_own_addresses_become_links() {
        assert_eq!(
            to_html(
                "see https://evil.example/login/x or `https://bridge.example/c`",
                OWN
            ),
            "<p>see https://evil.example/login/x or <code>https://bridge.example/c</code></p>"
        );
        assert_eq!(
            to_html("https://bridge.example alone", OWN),
            "<p>https://bridge.example alone</p>"
        );
        assert_eq!(
            to_html("a https://bridge.example.evil/login/x", OWN),
            "<p>a https://bridge.example.evil/login/x</p>"
        );
    }

    #[test]
    fn code_holds_any_name() {
        assert_eq!(code("gitterhq/sandbox"), "`gitterhq/sandbox`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        for name in ["a`b", "`x", "**bold** <b>", "x``y`"] {
            let html = to_html(&code(name), OWN);
            let shown = html
                .trim_start_matches("<p><code>")
                .trim_end_matches("</code></p>")
                .replace("&lt;", "<")
                .replace("&gt;", ">");
            assert_eq!(shown, name, "{html}");
        }
    }
}
