//! Matrix to Gitter formatting: a `formatted_body` (HTML, from the portal owner's own client)
//! becomes the markdown Gitter renders (`htmd`, a turndown.js port): bold, italics, code,
//! fenced code blocks with their language, lists, quotes and links. Two Matrix things need a
//! word of their own:
//!
//! * pills, the links a client makes for a mention (`<a href="https://matrix.to/#/@user:hs">`,
//!   spec: "User and room mentions"): the ghost of a Gitter user becomes `@username`, which
//!   Gitter makes a mention; anybody else their display text;
//! * `<mx-reply>`, the quote of the message a reply answers (spec: "Rich replies", fallbacks):
//!   dropped with its content, since a Gitter reply goes into the thread instead.
//!
//! The converter marks each pill with private-use characters that no client sends; the
//! caller resolves them with [`resolve_pills`], which knows the ghosts.

use std::sync::LazyLock;

use htmd::element_handler::{HandlerResult, Handlers};
use htmd::{Element, HtmlToMarkdown};

/// Around a pill: `OPEN user-id SEP text CLOSE`.
const OPEN: char = '\u{E000}';
const SEP: char = '\u{E001}';
const CLOSE: char = '\u{E002}';

/// The prefix of a matrix.to link (spec: "matrix.to navigation"); a user's link goes on with
/// `@user:server`, percent-encoded by some clients.
const MATRIX_TO: &str = "https://matrix.to/#/";

static CONVERTER: LazyLock<HtmlToMarkdown> = LazyLock::new(|| {
    HtmlToMarkdown::builder()
        .skip_tags(vec!["mx-reply", "script", "style"])
        .add_handler(vec!["a"], |handlers: &dyn Handlers, element: Element| {
            let href = element
                .attrs
                .iter()
                .find(|a| &*a.name.local == "href")
                .map(|a| a.value.to_string());
            let user = href
                .as_deref()
                .and_then(|h| h.strip_prefix(MATRIX_TO))
                .map(|rest| {
                    let user = rest.split(['?', '/']).next().unwrap_or_default();
                    percent_encoding::percent_decode_str(user)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|user| user.starts_with('@'));
            match user {
                Some(user) => {
                    let text = handlers.walk_children(element.node).content;
                    Some(HandlerResult::from(format!(
                        "{OPEN}{user}{SEP}{}{CLOSE}",
                        text.trim()
                    )))
                }
                None => handlers.fallback(element),
            }
        })
        .build()
});

/// The markdown of a Matrix `formatted_body`, its pills marked (see [`resolve_pills`]);
/// `None` when the HTML holds no text (only a reply's quote, say).
pub(crate) fn html_to_markdown(html: &str) -> Option<String> {
    let markdown = CONVERTER.convert(html).ok()?;
    let markdown = markdown.trim();
    (!markdown.is_empty()).then(|| markdown.to_owned())
}

/// Replaces each pill mark with what `mention` says for its user id (`@username` for a
/// ghost), or with the pill's own text.
pub(crate) fn resolve_pills(markdown: &str, mention: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            out.push_str(after);
            return out;
        };
        let pill = &after[..end];
        let (user, text) = pill.split_once(SEP).unwrap_or((pill, ""));
        match mention(user) {
            Some(m) => out.push_str(&m),
            None if !text.is_empty() => out.push_str(text),
            None => out.push_str(user),
        }
        rest = &after[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// A reply's `body` without its fallback quote: the leading `> ` lines and the empty line
/// after them (spec: "Rich replies", "Fallbacks for rich replies").
pub(crate) fn strip_reply_fallback(body: &str) -> &str {
    // The fallback names the sender first (`> <@user:server> ...`); a body that only starts
    // with a quote of the user's own (clients stopped sending fallbacks in spec v1.13) is kept.
    if !body.starts_with("> <@") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        match rest.find('\n') {
            Some(line_end) => rest = &rest[line_end + 1..],
            // Nothing but the quote: keep it all rather than post nothing.
            None => return body,
        }
    }
    let rest = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
        .unwrap_or(rest);
    if rest.trim().is_empty() { body } else { rest }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(html: &str) -> String {
        resolve_pills(&html_to_markdown(html).unwrap(), |u| {
            (u == "@gitter_bob:example.org").then(|| "@bob".to_owned())
        })
    }

    #[test]
    fn rich_text_becomes_the_markdown_gitter_renders() {
        assert_eq!(
            md("<strong>bold</strong> and <em>it</em>"),
            "**bold** and *it*"
        );
        assert_eq!(md("run <code>cargo test</code>"), "run `cargo test`");
        assert_eq!(
            md("<pre><code class=\"language-rust\">fn main() {}\n</code></pre>"),
            "```rust\nfn main() {}\n```"
        );
        assert_eq!(md("<ul><li>one</li><li>two</li></ul>"), "*   one\n*   two");
        assert_eq!(md("<blockquote>quoted</blockquote>"), "> quoted");
        assert_eq!(
            md("see <a href=\"https://example.org/docs\">the docs</a>"),
            "see [the docs](https://example.org/docs)"
        );
    }

    #[test]
    fn pills_of_ghosts_become_mentions_and_other_pills_their_name() {
        assert_eq!(
            md("hi <a href=\"https://matrix.to/#/@gitter_bob:example.org\">Bob (Gitter)</a>!"),
            "hi @bob!"
        );
        assert_eq!(
            md("hi <a href=\"https://matrix.to/#/%40gitter_bob%3Aexample.org\">Bob</a>"),
            "hi @bob"
        );
        assert_eq!(
            md("and <a href=\"https://matrix.to/#/@carol:example.org\">Carol</a>"),
            "and Carol"
        );
    }

    #[test]
    fn the_quote_of_a_reply_is_dropped() {
        assert_eq!(
            md(
                "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r/$e\">In reply to</a> \
                quoted</blockquote></mx-reply>my answer"
            ),
            "my answer"
        );
        assert_eq!(html_to_markdown("<mx-reply>only a quote</mx-reply>"), None);
    }

    #[test]
    fn a_reply_fallback_is_stripped_and_nothing_else() {
        let fallback = "> <@bob:example.org> the question\n> more of it\n\nthe answer";
        assert_eq!(strip_reply_fallback(fallback), "the answer");
        let crlf = "> <@bob:example.org> the question\r\n\r\nthe answer";
        assert_eq!(strip_reply_fallback(crlf), "the answer");
        // A quote the user typed (clients without fallbacks), and a reply that is all quote.
        let own = "> to be or not\n\nthat is it";
        assert_eq!(strip_reply_fallback(own), own);
        let only = "> <@bob:example.org> the question";
        assert_eq!(strip_reply_fallback(only), only);
    }
}
