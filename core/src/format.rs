//! Message formatting between Gitter and Matrix.
//!
//! Gitter's HTML is untrusted: any Gitter user writes it (the server renders their markdown,
//! and a hostile or buggy server can send anything). What reaches a Matrix client follows the
//! spec's HTML subset for `formatted_body` (client-server API, "m.room.message msgtypes",
//! the tables "HTML tags to permit" and their attributes), tightened where the observed
//! output was unsafe or misleading (issue 13, item 8):
//!
//! * images only from `mxc:` (the spec's rule for `img src`): an `http(s)` image would load
//!   from a remote server the moment the message is shown (a tracking pixel), so it becomes a
//!   link with its alt text (or its URL) as the text; any other image is dropped, its alt text
//!   kept;
//! * links only to absolute `http://`, `https://` and `mailto:` URLs: a relative or
//!   scheme-relative link (`//evil.example/x`) resolves against the client's own origin, any
//!   other scheme may run code; such an `<a>` is unwrapped (its text kept);
//! * `class` only on `code`, and only `language-<name>` classes (the spec's rule, for syntax
//!   highlighting); `language-rust onmouseover=x` used to survive whole;
//! * `<mx-reply>` removed with everything in it: it is the quote of a Matrix reply, which a
//!   Gitter message cannot be, so its content is a spoofed quote (the spec tells clients to
//!   strip it, content included, when they show the reply themselves);
//! * nothing else: no generic attributes (`title`, `lang`, `id`, `style`), no comments.
//!
//! [`sanitize_with`] runs ammonia (html5ever parses, ammonia keeps the allowed set and
//! serialises), then [`finish`] walks ammonia's serialised output, whose form is fixed (every
//! attribute value double-quoted with `"`, `<` and `>` escaped, no comments), and does what
//! ammonia cannot: turns `http(s)` images into links and unwraps links left without `href`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

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

/// The attributes the same section permits, per tag; every other attribute is dropped.
/// `a` keeps only `href`: the spec's `name` invites DOM clobbering and `target` reverse
/// tab-nabbing, and clients open links their own way. `rel="noopener"` is added to every
/// link, as the spec asks web clients to.
const MATRIX_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("font", &["data-mx-bg-color", "data-mx-color", "color"]),
    (
        "span",
        &[
            "data-mx-bg-color",
            "data-mx-color",
            "data-mx-spoiler",
            "data-mx-maths",
        ],
    ),
    ("div", &["data-mx-maths"]),
    ("a", &["href"]),
    ("img", &["width", "height", "alt", "title", "src"]),
    ("ol", &["start"]),
    ("code", &["class"]),
];

/// Elements removed together with their content: scripts and styles (their text is code, not
/// prose), and `mx-reply` (the quoted event of a Matrix reply: a spoofed quote here).
const REMOVED_WITH_CONTENT: &[&str] = &["mx-reply", "script", "style"];

/// The sanitiser for Gitter HTML, built once per process on first use and shared read-only
/// (an immutable constant, not state: building it allocates a dozen sets, which cost more
/// than sanitising a short message). [`sanitize_with`] adds the pass ammonia cannot do.
static SANITIZER: std::sync::LazyLock<ammonia::Builder<'static>> =
    std::sync::LazyLock::new(sanitizer);

fn sanitizer() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::empty();
    b.tags(MATRIX_TAGS.iter().copied().collect::<HashSet<_>>())
        .clean_content_tags(REMOVED_WITH_CONTENT.iter().copied().collect())
        // ammonia's defaults allow `lang` and `title` everywhere; the spec allows neither.
        .generic_attributes(HashSet::new())
        .tag_attributes(
            MATRIX_ATTRIBUTES
                .iter()
                .map(|(tag, attrs)| (*tag, attrs.iter().copied().collect()))
                .collect::<HashMap<_, HashSet<_>>>(),
        )
        // `mxc` for images only and `http(s)` images for [`finish`] to turn into links:
        // [`filter_attribute`] narrows these per attribute.
        .url_schemes(["http", "https", "mailto", "mxc"].into())
        .url_relative(ammonia::UrlRelative::Deny)
        .strip_comments(true)
        .link_rel(Some("noopener"))
        .attribute_filter(filter_attribute);
    b
}

/// Per-attribute rules ammonia's allow-lists cannot say. Runs on the parsed (entity-decoded)
/// value, which is what a client sees too.
fn filter_attribute<'a>(element: &str, attribute: &str, value: &'a str) -> Option<Cow<'a, str>> {
    match (element, attribute) {
        ("a", "href") => absolute_url(value, &["http", "https", "mailto"]),
        // `http(s)` survives here only to be turned into a link by `finish`.
        ("img", "src") => absolute_url(value, &["mxc", "http", "https"]),
        ("code", "class") => language_classes(value),
        _ => Some(Cow::Borrowed(value)),
    }
}

/// `value` if it is an absolute URL of one of `schemes` (lower case), with its scheme
/// lower-cased, else `None`. Strict on purpose: the value must start with the scheme itself
/// (no leading space or control character for a parser to skip), contain no control
/// character (browsers drop tabs and newlines inside a URL, so `java\tscript:` is
/// `javascript:`), and for the hierarchical schemes carry `//` and a host right after the
/// colon (`https:evil` and `https:/evil` are relative to a page of the same scheme).
fn absolute_url<'a>(value: &'a str, schemes: &[&str]) -> Option<Cow<'a, str>> {
    if value.chars().any(|c| c.is_control()) {
        return None;
    }
    let (scheme, rest) = value.split_once(':')?;
    let scheme_lower = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme_lower.as_str()) {
        return None;
    }
    if scheme_lower == "mailto" {
        if rest.is_empty() {
            return None;
        }
    } else {
        let host = rest.strip_prefix("//")?;
        if host.is_empty() || host.starts_with(['/', '\\']) {
            return None;
        }
    }
    let url = ammonia::url::Url::parse(value).ok()?;
    if url.scheme() != scheme_lower {
        return None;
    }
    Some(if scheme == scheme_lower {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("{scheme_lower}:{rest}"))
    })
}

/// The `language-<name>` classes of a `class` value (spec: "only classes which start with
/// `language-` for syntax highlighting"), `<name>` made of `[A-Za-z0-9_+-]`; `None` when
/// there are none.
fn language_classes(value: &str) -> Option<Cow<'_, str>> {
    let kept: Vec<&str> = value
        .split_ascii_whitespace()
        .filter(|class| {
            class.strip_prefix("language-").is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
            })
        })
        .collect();
    match kept.as_slice() {
        [] => None,
        [one] if *one == value => Some(Cow::Borrowed(value)),
        _ => Some(Cow::Owned(kept.join(" "))),
    }
}

/// Sanitises Gitter HTML to the Matrix allowed tag set: scripts, styles, event handlers,
/// remote images, non-`http(s)`/`mailto` links and unknown tags are removed, so nothing
/// Gitter sends can run or load anything in a Matrix client.
pub fn sanitize_html(html: &str) -> String {
    sanitize_with(&SANITIZER, html)
}

/// Sanitises with a given sanitiser (the shared one).
fn sanitize_with(builder: &ammonia::Builder<'static>, html: &str) -> String {
    sanitize_collecting(builder, html, &mut Vec::new())
}

/// [`sanitize_with`], also listing the `http(s)` images it turned into links.
fn sanitize_collecting(
    builder: &ammonia::Builder<'static>,
    html: &str,
    images: &mut Vec<WebImage>,
) -> String {
    let clean = builder.clean(html).to_string();
    match finish_collecting(&clean, images) {
        Some(done) => done,
        None => {
            // Unreachable while ammonia serialises the way `finish` reads (the fuzz target
            // `sanitize` and the tests would trip this). Should it change, the message keeps
            // its text and loses its formatting rather than pass markup unchecked.
            debug_assert!(false, "unexpected sanitiser output: {clean:?}");
            ammonia::Builder::empty().clean(&clean).to_string()
        }
    }
}

/// One tag of ammonia's output: its name and its attributes (values as serialised, that is
/// still escaped, which is also valid as text).
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, &'a str)>,
}

impl<'a> Tag<'a> {
    /// Parses the inside of `<...>`: `name( attr="value")*`, the only form html5ever's
    /// serialiser writes.
    fn parse(inner: &'a str) -> Option<Tag<'a>> {
        let (name, mut rest) = inner.split_once(' ').unwrap_or((inner, ""));
        if name.is_empty() {
            return None;
        }
        let mut attrs = Vec::new();
        while !rest.is_empty() {
            let (attr, after) = rest.split_once("=\"")?;
            let (value, after) = after.split_once('"')?;
            if attr.is_empty() || attr.contains([' ', '"']) {
                return None;
            }
            attrs.push((attr, value));
            rest = match after.strip_prefix(' ') {
                Some(more) if !more.is_empty() => more,
                None if after.is_empty() => "",
                _ => return None,
            };
        }
        Some(Tag { name, attrs })
    }

    fn get(&self, attr: &str) -> Option<&'a str> {
        self.attrs.iter().find(|(a, _)| *a == attr).map(|(_, v)| *v)
    }
}

/// The pass after ammonia, over its serialised output: an `img` whose `src` is `http(s)`
/// becomes `<a href="src">alt or src</a>` (only its text inside a link, as links cannot
/// nest), an `img` without `src` leaves its alt text, and an `<a>` without `href` is
/// unwrapped. `None` if the input is not in the form html5ever's serialiser writes (text
/// with `<` escaped; tags `<name attr="value">` with `"` escaped in values; every element
/// but the void `br`, `hr`, `img` closed, in order).
#[cfg(test)]
fn finish(clean: &str) -> Option<String> {
    finish_collecting(clean, &mut Vec::new())
}

/// [`finish`], also listing the `http(s)` images it turned into links.
fn finish_collecting(clean: &str, images: &mut Vec<WebImage>) -> Option<String> {
    let mut out = String::with_capacity(clean.len() + 32);
    // Open elements: name, and whether its tags are written.
    let mut open: Vec<(&str, bool)> = Vec::new();
    let mut links = 0usize;
    let mut rest = clean;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt + 1..];
        // Values never hold `"`, so the first `>` outside quotes ends the tag.
        let mut quoted = false;
        let gt = after.find(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            c == '>' && !quoted
        })?;
        let inner = &after[..gt];
        rest = &after[gt + 1..];
        if let Some(name) = inner.strip_prefix('/') {
            let (expected, written) = open.pop()?;
            if name != expected {
                return None;
            }
            if written {
                if name == "a" {
                    links -= 1;
                }
                out.push_str("</");
                out.push_str(name);
                out.push('>');
            }
            continue;
        }
        let tag = Tag::parse(inner)?;
        match tag.name {
            "img" => image(&mut out, &tag, links > 0, images),
            "br" | "hr" => {
                out.push('<');
                out.push_str(inner);
                out.push('>');
            }
            name => {
                let written = name != "a" || tag.get("href").is_some();
                if written {
                    if name == "a" {
                        links += 1;
                    }
                    out.push('<');
                    out.push_str(inner);
                    out.push('>');
                }
                open.push((name, written));
            }
        }
    }
    out.push_str(rest);
    open.is_empty().then_some(out)
}

/// Writes what an `img` of ammonia's output becomes (see [`finish`]).
fn image(out: &mut String, tag: &Tag<'_>, in_link: bool, images: &mut Vec<WebImage>) {
    let alt = tag.get("alt").filter(|alt| !alt.trim().is_empty());
    match tag.get("src") {
        Some(src) if src.starts_with("mxc://") => {
            out.push_str("<img");
            for (attr, value) in &tag.attrs {
                out.push(' ');
                out.push_str(attr);
                out.push_str("=\"");
                out.push_str(value);
                out.push('"');
            }
            out.push('>');
        }
        Some(src) if src.starts_with("http://") || src.starts_with("https://") => {
            images.push(WebImage {
                url: unescape_attr(src),
                alt: alt.map(unescape_attr),
            });
            let text = alt.unwrap_or(src);
            if in_link {
                out.push_str(text);
            } else {
                out.push_str("<a href=\"");
                out.push_str(src);
                out.push_str("\" rel=\"noopener\">");
                out.push_str(text);
                out.push_str("</a>");
            }
        }
        _ => out.push_str(alt.unwrap_or("")),
    }
}

/// An image of a Gitter message that lives on the web (`<img src="http(s)://...">`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebImage {
    /// Its URL.
    pub(crate) url: String,
    /// Its alt text, when it has one.
    pub(crate) alt: Option<String>,
}

/// Most images of one Gitter message the bridge uploads: a message of a hundred images
/// must not become a hundred downloads per portal.
const MAX_IMAGES: usize = 4;

/// An attribute value as html5ever serialises it, unescaped (`&amp;`, `&quot;`, `&nbsp;`).
fn unescape_attr(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Escapes text for HTML element content and quoted attribute values (`&`, `<`, `>`, `"`,
/// `'`), with pulldown-cmark's escaper: the one helper the bridge's HTML (messages, notices,
/// the login pages) and the simulator's fake Gitter share.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    pulldown_cmark_escape::escape_html(&mut out, text).expect("writing to a String cannot fail");
    out
}

pub(crate) use escape_html as escape;

/// `html` (the sanitiser's output: well-formed) with each `@name` (not followed by more of
/// a name) made a pill of `mxid` (spec: "User and room mentions": a link to
/// `https://matrix.to/#/<user id>`). Only text is touched, and not text inside a link or
/// code (a pill there would nest a link, or change what the code says).
pub(crate) fn pill(html: &str, name: &str, mxid: &str) -> String {
    let needle = format!("@{name}");
    let link = format!(
        "<a href=\"https://matrix.to/#/{}\">{}</a>",
        escape(mxid),
        escape(&needle)
    );
    let mut out = String::with_capacity(html.len() + link.len());
    // Open `a`, `code` and `pre` elements around the current text.
    let mut inside = 0usize;
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            let tag = &rest[..end];
            let name = tag
                .trim_start_matches('<')
                .trim_start_matches('/')
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            if matches!(name, "a" | "code" | "pre") {
                if tag.starts_with("</") {
                    inside = inside.saturating_sub(1);
                } else if !tag.ends_with("/>") {
                    inside += 1;
                }
            }
            out.push_str(tag);
            i += end;
            continue;
        }
        if inside == 0 && rest.starts_with(&needle) {
            let next = rest[needle.len()..].chars().next();
            if !next.is_some_and(|n| n.is_alphanumeric() || n == '_' || n == '-') {
                out.push_str(&link);
                i += needle.len();
                continue;
            }
        }
        let c = rest.chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether Gitter's HTML for a message is just its text: the text itself (no markup or
/// entity at all) or the text escaped. Either way it carries no formatting.
fn is_plain(html: &str, text: &str, escaped: &str) -> bool {
    html == escaped || (html == text && !html.contains(['<', '&']))
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
///
/// Called once per message, not once per portal: every portal of the room gets the same
/// content. A plain-text message (its HTML is its text, escaped or not: no tag, nothing for
/// a client to render) has no `formatted_body` and never reaches the sanitiser, the costly
/// part of a relay.
pub(crate) fn gitter_to_matrix(message: &GitterMessage) -> MatrixContent {
    convert(message, &mut Vec::new())
}

/// A Gitter message as every portal of its room gets it, converted once: its Matrix
/// content, its web images (at most [`MAX_IMAGES`], each URL once, found by the same
/// sanitiser pass) and its Gitter time (`sent`, for the `ts` of its sends).
#[derive(Clone, Debug)]
pub(crate) struct Relayed {
    pub(crate) content: MatrixContent,
    pub(crate) images: Vec<WebImage>,
    pub(crate) ts: Option<crate::Timestamp>,
}

/// [`Relayed`] of a Gitter message.
pub(crate) fn relayed(message: &GitterMessage) -> Relayed {
    let mut images = Vec::new();
    let content = convert(message, &mut images);
    let mut seen = HashSet::new();
    images.retain(|i| seen.insert(i.url.clone()));
    images.truncate(MAX_IMAGES);
    Relayed {
        content,
        images,
        ts: crate::Timestamp::from_rfc3339(&message.sent),
    }
}

fn convert(message: &GitterMessage, images: &mut Vec<WebImage>) -> MatrixContent {
    let (msgtype, body) = if message.status {
        (
            OutMsgType::Emote,
            strip_status_prefix(&message.text, &message.from.username).to_owned(),
        )
    } else {
        (OutMsgType::Text, message.text.clone())
    };
    let escaped = escape(&body);
    let html = if message.status || is_plain(&message.html, &body, &escaped) {
        // A status's HTML starts with a rendered mention of the author; the emote names them
        // anyway.
        escaped.clone()
    } else {
        sanitize_collecting(&SANITIZER, &message.html, images)
    };
    let formatted_body = (!html.is_empty() && html != escaped).then_some(html);
    MatrixContent {
        msgtype,
        body,
        formatted_body,
        thread: None,
        mentions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_quoted_attributes() {
        assert_eq!(
            escape_html("<a href=\"x\" title='y'>&amp;</a> é"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt; é"
        );
    }

    #[test]
    fn a_pill_replaces_the_name_in_text_only_and_whole_names_only() {
        let p = |html: &str| pill(html, "bob", "@gitter_bob:example.org");
        let link = "<a href=\"https://matrix.to/#/@gitter_bob:example.org\">@bob</a>";
        assert_eq!(p("hi @bob!"), format!("hi {link}!"));
        assert_eq!(p("@bobby and @bob_x stay"), "@bobby and @bob_x stay");
        // Not inside a link or code, and pilling twice changes nothing more.
        assert_eq!(
            p("<a href=\"mailto:x@bob\">@bob</a> <code>@bob</code>"),
            "<a href=\"mailto:x@bob\">@bob</a> <code>@bob</code>"
        );
        assert_eq!(p(&p("hi @bob")), format!("hi {link}"));
    }

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

    #[test]
    fn urls_must_be_absolute_with_an_allowed_scheme() {
        let web = &["http", "https", "mailto"];
        assert_eq!(
            absolute_url("https://x.org/a", web).as_deref(),
            Some("https://x.org/a")
        );
        // The scheme is lower-cased so the output's `href` starts with `https://` literally.
        assert_eq!(
            absolute_url("HTTPS://x.org/a", web).as_deref(),
            Some("https://x.org/a")
        );
        assert_eq!(
            absolute_url("mailto:a@x.org", web).as_deref(),
            Some("mailto:a@x.org")
        );
        for bad in [
            "//evil.example/x",
            "/x",
            "x",
            "#x",
            "https:evil.example",
            "https:/evil.example",
            "https:///evil.example",
            "https:\\\\evil.example",
            " https://x.org",
            "https://x.org/\n",
            "java\tscript:alert(1)",
            "javascript:alert(1)",
            "ftp://x.org",
            "mxc://x.org/a",
            "mailto:",
        ] {
            assert_eq!(absolute_url(bad, web), None, "{bad:?}");
        }
        assert!(absolute_url("mxc://x.org/a", &["mxc"]).is_some());
    }

    #[test]
    fn only_language_classes_are_kept() {
        assert_eq!(
            language_classes("language-rust").as_deref(),
            Some("language-rust")
        );
        assert_eq!(
            language_classes("hljs language-c++ onmouseover=x language-").as_deref(),
            Some("language-c++")
        );
        assert_eq!(language_classes("language-rust\" onclick"), None);
        assert_eq!(language_classes("x"), None);
    }

    #[test]
    fn finish_rejects_what_the_serialiser_never_writes() {
        assert_eq!(
            finish(r#"<b title="x">y</b>"#).as_deref(),
            Some(r#"<b title="x">y</b>"#)
        );
        for odd in [
            "<b>x",
            "x</b>",
            "<b>x</i>",
            "<b title='x'>y</b>",
            "<b title=x>y</b>",
            "<b  title=\"x\">y</b>",
            "<>",
            "<b",
        ] {
            assert_eq!(finish(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn finish_rewrites_images_and_unwraps_bare_links() {
        assert_eq!(
            finish(r#"<a rel="noopener">t</a><img src="https://h/p.png" alt="A &amp; B">"#)
                .as_deref(),
            Some(r#"t<a href="https://h/p.png" rel="noopener">A &amp; B</a>"#)
        );
        assert_eq!(
            finish(r#"<a href="https://x/" rel="noopener"><img src="http://h/p"></a>"#).as_deref(),
            Some(r#"<a href="https://x/" rel="noopener">http://h/p</a>"#)
        );
        assert_eq!(
            finish(r#"<img alt="only alt">"#).as_deref(),
            Some("only alt")
        );
    }
}
