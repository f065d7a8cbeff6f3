//! What the bot says, written in markdown and sent as an `m.notice` with both forms.
//!
//! Notices are written in CommonMark: commands in backticks, the help as a list. The `body`
//! is the markdown itself (readable as plain text in any client, and what a client without
//! HTML shows), and `formatted_body` is its HTML (spec: "m.room.message msgtypes",
//! `org.matrix.custom.html`), rendered by pulldown-cmark. Two things are changed on the way:
//!
//! * raw HTML in the source is shown as text, never passed through: a notice can quote a
//!   Gitter room name or an error, which come from strangers;
//! * a bare `http(s)://` address (the login link) becomes a link: CommonMark links only
//!   `<...>` autolinks, and the plain body must keep the bare address.
//!
//! Every notice carries an empty `m.mentions` (spec: "User and room mentions"): the bot
//! pings nobody, whatever a quoted name happens to contain.

use pulldown_cmark::{CowStr, Event, LinkType, Parser, Tag, TagEnd, TextMergeStream};

use crate::effect::{MatrixContent, Mentions, OutMsgType};

/// The `m.notice` for a markdown text.
pub(crate) fn render(markdown: &str) -> MatrixContent {
    MatrixContent {
        msgtype: OutMsgType::Notice,
        body: markdown.to_owned(),
        formatted_body: Some(to_html(markdown)),
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

/// The HTML of a markdown text, with raw HTML shown as text and bare addresses linked.
fn to_html(markdown: &str) -> String {
    let mut events = Vec::new();
    let mut in_link = 0usize;
    for event in TextMergeStream::new(Parser::new(markdown)) {
        match event {
            Event::Start(Tag::Link { .. }) => {
                in_link += 1;
                events.push(event);
            }
            Event::End(TagEnd::Link) => {
                in_link = in_link.saturating_sub(1);
                events.push(event);
            }
            Event::Html(html) | Event::InlineHtml(html) => events.push(Event::Text(html)),
            Event::Text(text) if in_link == 0 => link_addresses(text, &mut events),
            other => events.push(other),
        }
    }
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html.trim_end().to_owned()
}

/// Pushes `text` as text events, with each bare `http://` or `https://` address as a link.
/// An address ends at whitespace or at a character that cannot end one in a sentence
/// (a closing bracket or a full stop after it is punctuation, not part of the address).
fn link_addresses<'a>(text: CowStr<'a>, events: &mut Vec<Event<'a>>) {
    let mut rest: &str = &text;
    let mut pieces: Vec<(String, bool)> = Vec::new();
    while let Some(start) = find_address(rest) {
        let tail = &rest[start..];
        let mut end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        while end > 0 && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', ']', '\'', '"'])
        {
            end -= 1;
        }
        if start > 0 {
            pieces.push((rest[..start].to_owned(), false));
        }
        pieces.push((tail[..end].to_owned(), true));
        rest = &tail[end..];
    }
    if pieces.is_empty() {
        events.push(Event::Text(text));
        return;
    }
    if !rest.is_empty() {
        pieces.push((rest.to_owned(), false));
    }
    for (piece, is_address) in pieces {
        if is_address {
            events.push(Event::Start(Tag::Link {
                link_type: LinkType::Autolink,
                dest_url: CowStr::from(piece.clone()),
                title: CowStr::Borrowed(""),
                id: CowStr::Borrowed(""),
            }));
            events.push(Event::Text(CowStr::from(piece)));
            events.push(Event::End(TagEnd::Link));
        } else {
            events.push(Event::Text(CowStr::from(piece)));
        }
    }
}

/// Where the first address starts in `text`: `http://` or `https://` with something after it.
fn find_address(text: &str) -> Option<usize> {
    ["https://", "http://"]
        .iter()
        .filter_map(|scheme| {
            text.match_indices(scheme)
                .find(|(i, s)| text[i + s.len()..].starts_with(|c: char| !c.is_whitespace()))
                .map(|(i, _)| i)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_code_and_the_plain_body_is_the_markdown() {
        let notice = render("Unknown command `dance`. Send `help` for the list of commands.");
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
        let notice = render("Log in to Gitter here: https://bridge.example/login/ab12cd.");
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
        let html = to_html("Commands:\n\n- `help`: this text\n- `login`: a link");
        assert_eq!(
            html,
            "<p>Commands:</p>\n<ul>\n<li><code>help</code>: this text</li>\n<li><code>login</code>: \
             a link</li>\n</ul>"
        );
    }

    #[test]
    fn raw_html_from_a_quoted_name_is_shown_as_text() {
        let html = to_html("No Gitter room named <img src=x onerror=alert(1)>.");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        let html = to_html("<script>alert(1)</script>");
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn an_address_inside_a_link_or_code_is_left_alone() {
        assert_eq!(
            to_html("[here](https://a.example/x) and `http://b.example`"),
            "<p><a href=\"https://a.example/x\">here</a> and <code>http://b.example</code></p>"
        );
        assert_eq!(to_html("http:// alone"), "<p>http:// alone</p>");
    }

    #[test]
    fn code_holds_any_name() {
        assert_eq!(code("gitterhq/sandbox"), "`gitterhq/sandbox`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        for name in ["a`b", "`x", "**bold** <b>", "x``y`"] {
            let html = to_html(&code(name));
            let shown = html
                .trim_start_matches("<p><code>")
                .trim_end_matches("</code></p>")
                .replace("&lt;", "<")
                .replace("&gt;", ">");
            assert_eq!(shown, name, "{html}");
        }
    }
}
