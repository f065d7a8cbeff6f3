//! A strict check of sanitised HTML: nothing in it may run code or load anything remote
//! (issue 13, item 8). Used by `core/tests/sanitiser.rs` and, through `#[path]`, by the fuzz
//! target `fuzz/fuzz_targets/sanitize.rs`, so both hold the output to the same rules.
//!
//! It tokenises the way an HTML tokenizer does (a tag opens at `<` followed by a letter or
//! `/`, attribute names end at whitespace, `/`, `>` or `=`, values are quoted or not), and is
//! stricter than a browser wherever the two differ: anything it cannot read as the
//! sanitiser's canonical output (html5ever's serialiser: `<name attr="value">`, `<` always
//! escaped in text, no comments) counts as a violation too.

#![allow(dead_code)]

/// What the output may contain: the Matrix spec's HTML subset (client-server API,
/// "m.room.message msgtypes", "HTML tags to permit" and its attribute table), plus the
/// `rel` the sanitiser puts on links. Kept apart from `core/src/format.rs` on purpose: a
/// sanitiser that allows more than this fails the tests.
pub const ALLOWED: &[(&str, &[&str])] = &[
    ("font", &["data-mx-bg-color", "data-mx-color", "color"]),
    ("del", &[]),
    ("h1", &[]),
    ("h2", &[]),
    ("h3", &[]),
    ("h4", &[]),
    ("h5", &[]),
    ("h6", &[]),
    ("blockquote", &[]),
    ("p", &[]),
    ("a", &["href", "rel"]),
    ("ul", &[]),
    ("ol", &["start"]),
    ("sup", &[]),
    ("sub", &[]),
    ("li", &[]),
    ("b", &[]),
    ("i", &[]),
    ("u", &[]),
    ("strong", &[]),
    ("em", &[]),
    ("strike", &[]),
    ("code", &["class"]),
    ("hr", &[]),
    ("br", &[]),
    ("div", &["data-mx-maths"]),
    ("table", &[]),
    ("thead", &[]),
    ("tbody", &[]),
    ("tr", &[]),
    ("th", &[]),
    ("td", &[]),
    ("caption", &[]),
    ("pre", &[]),
    (
        "span",
        &[
            "data-mx-bg-color",
            "data-mx-color",
            "data-mx-spoiler",
            "data-mx-maths",
        ],
    ),
    ("img", &["width", "height", "alt", "title", "src"]),
    ("details", &[]),
    ("summary", &[]),
];

/// Substrings that must never appear (lower-cased), whatever the tokenizer thinks: the
/// elements that run code or load something, and comment or declaration openers.
const FORBIDDEN: &[&str] = &[
    "<script",
    "<iframe",
    "<frame",
    "<object",
    "<embed",
    "<applet",
    "<svg",
    "<math",
    "<style",
    "<link",
    "<meta",
    "<base",
    "<form",
    "<input",
    "<button",
    "<textarea",
    "<select",
    "<video",
    "<audio",
    "<source",
    "<template",
    "<!",
    "<?",
];

fn allowed_attrs(tag: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(t, _)| *t == tag).map(|(_, a)| *a)
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Everything wrong with `html` as sanitiser output; empty when it is safe.
pub fn violations(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = html.to_ascii_lowercase();
    for needle in FORBIDDEN {
        if lower.contains(needle) {
            found.push(format!("contains `{needle}`"));
        }
    }
    let b = lower.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let at = i;
        i += 1;
        let end_tag = b.get(i) == Some(&b'/');
        if end_tag {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            // Text to a browser, but the sanitiser escapes every `<` in text.
            found.push(format!("unescaped `<` at byte {at}"));
            continue;
        }
        let name_start = i;
        while i < b.len() && !is_space(b[i]) && b[i] != b'/' && b[i] != b'>' {
            i += 1;
        }
        let tag = &lower[name_start..i];
        let attrs = allowed_attrs(tag);
        if attrs.is_none() {
            found.push(format!("tag `{tag}` is not in the Matrix set"));
        }
        let mut seen = Vec::new();
        loop {
            while i < b.len() && (is_space(b[i]) || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() {
                found.push(format!("tag `{tag}` at byte {at} never ends"));
                break;
            }
            if b[i] == b'>' {
                i += 1;
                break;
            }
            let attr_start = i;
            // A leading `=` belongs to the name (HTML tokenizer, "before attribute name").
            i += 1;
            while i < b.len() && !is_space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
                i += 1;
            }
            let attr = &lower[attr_start..i];
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            let mut value = None;
            if b.get(i) == Some(&b'=') {
                i += 1;
                while i < b.len() && is_space(b[i]) {
                    i += 1;
                }
                match b.get(i) {
                    Some(&quote) if quote == b'"' || quote == b'\'' => {
                        if quote == b'\'' {
                            found.push(format!("`{attr}` of `{tag}` is single-quoted"));
                        }
                        i += 1;
                        let start = i;
                        while i < b.len() && b[i] != quote {
                            i += 1;
                        }
                        value = Some(&html[start..i]);
                        i += 1;
                    }
                    _ => {
                        found.push(format!("`{attr}` of `{tag}` is not quoted"));
                        let start = i;
                        while i < b.len() && !is_space(b[i]) && b[i] != b'>' {
                            i += 1;
                        }
                        value = Some(&html[start..i.min(b.len())]);
                    }
                }
            }
            if end_tag {
                found.push(format!("end tag `{tag}` has attribute `{attr}`"));
            }
            if seen.contains(&attr) {
                found.push(format!("`{attr}` twice on `{tag}`"));
            }
            seen.push(attr);
            check_attribute(tag, attr, value, attrs, &mut found);
        }
        if !end_tag && tag == "a" && !seen.contains(&"href") {
            found.push("a link without `href`".to_owned());
        }
        if !end_tag && tag == "img" && !seen.contains(&"src") {
            found.push("an image without `src`".to_owned());
        }
    }
    found
}

fn check_attribute(
    tag: &str,
    attr: &str,
    value: Option<&str>,
    allowed: Option<&[&str]>,
    found: &mut Vec<String>,
) {
    if attr.starts_with("on") {
        found.push(format!("event handler `{attr}` on `{tag}`"));
    }
    if attr == "style" {
        found.push(format!("`style` on `{tag}`"));
    }
    if allowed.is_some_and(|a| !a.contains(&attr)) {
        found.push(format!("attribute `{attr}` is not allowed on `{tag}`"));
    }
    // The raw (still entity-encoded) value is checked: a prefix of plain ASCII letters and
    // punctuation cannot be an entity, so `&#x6A;avascript:` fails as it should.
    let value = value.unwrap_or("");
    let web = ["http://", "https://", "mailto:"];
    match attr {
        "href" if !web.iter().any(|p| value.starts_with(p)) => {
            found.push(format!("href {value:?}"));
        }
        "src" if !value.starts_with("mxc://") => {
            found.push(format!("src {value:?}"));
        }
        "class" => {
            for class in value.split_ascii_whitespace() {
                let ok = class.strip_prefix("language-").is_some_and(|n| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
                });
                if !ok {
                    found.push(format!("class {class:?}"));
                }
            }
        }
        _ => {}
    }
}
