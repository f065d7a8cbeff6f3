//! A small stand-in for `gitter-markdown-processor`: enough to produce the
//! `html`, `mentions`, `urls` and `issues` fields in the shapes of the
//! captured 2020 payloads (docs/gitter-api.md §4.3 "HTML rendering conventions").
//!
//! It is not a full Markdown renderer. It escapes HTML (`'` becomes `&#39;` as
//! in the captured payloads), links mentions, issues and URLs, renders the
//! inline Markdown people use most (`` `code` ``, `**strong**`, `*em*`,
//! `~~del~~`, `![alt](https://...)` images) and fenced code blocks (`<pre><code>`), and wraps multi-line
//! text in `<p>...<br>...</p>` while leaving a single line unwrapped, like the
//! real server. Lists, headings, quotes and Markdown links stay plain text.

use std::sync::OnceLock;

use regex::Regex;

/// One `@name` found in a message. `known` is the matched user's id, if any:
/// the real server leaves `userId` out for names that match nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub screen_name: String,
    pub user_id: Option<String>,
    /// `@/all`: a group mention (an announcement when a room admin writes it, §4.3).
    pub group: bool,
}

/// What the renderer extracted from a message text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub html: String,
    pub mentions: Vec<Mention>,
    pub urls: Vec<String>,
    pub issues: Vec<String>,
}

fn token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Order matters: images, then URLs first so `#frag` inside a URL is not an issue.
        Regex::new(r"(?P<image>!\[[^\]\n]*\]\(https?://[^\s)]+\))|(?P<url>https?://[^\s<>]+)|(?P<all>@/all\b)|(?P<mention>@[A-Za-z0-9_\-]+)|(?P<issue>#\d+)|(?P<code>`[^`\n]+`)|(?P<strong>\*\*[^*\n]+\*\*)|(?P<em>\*[^*\s][^*\n]*\*)|(?P<del>~~[^~\n]+~~)")
            .expect("static regex is valid")
    })
}

/// HTML-escape like the real renderer (`&`, `<`, `>`, `"`, and `'` as `&#39;`): the core's
/// helper, which escapes exactly these.
pub use gitter_bridge_core::escape_html as escape;

/// Render `text`. `lookup_user` maps a screen name to a user id (case-insensitive
/// on the caller's side).
pub fn render(text: &str, lookup_user: impl Fn(&str) -> Option<String>) -> Rendered {
    let mut r = Rendered::default();
    let trimmed = text.trim_end_matches('\n');
    if !trimmed.contains('\n') {
        r.html = render_line(trimmed, &lookup_user, &mut r);
        return r;
    }
    // Multi-line: blank lines separate paragraphs, single newlines become <br>, and a
    // fenced block (```lang ... ```) is a block of its own, its text kept as written.
    let mut html = String::new();
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, html: &mut String, r: &mut Rendered| {
        if para.is_empty() {
            return;
        }
        let lines: Vec<String> = para
            .iter()
            .map(|l| render_line(l, &lookup_user, r))
            .collect();
        html.push_str("<p>");
        html.push_str(&lines.join("<br>"));
        html.push_str("</p>");
        para.clear();
    };
    let mut lines = trimmed.split('\n');
    while let Some(line) = lines.next() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            flush(&mut para, &mut html, &mut r);
            let code: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let lang = lang.trim();
            let class = if lang.is_empty() {
                String::new()
            } else {
                format!(" class=\"language-{}\"", escape(lang))
            };
            html.push_str(&format!(
                "<pre><code{class}>{}</code></pre>",
                escape(&code.join("\n"))
            ));
        } else if line.trim().is_empty() {
            flush(&mut para, &mut html, &mut r);
        } else {
            para.push(line);
        }
    }
    flush(&mut para, &mut html, &mut r);
    r.html = html;
    r
}

fn render_line(
    line: &str,
    lookup_user: &impl Fn(&str) -> Option<String>,
    r: &mut Rendered,
) -> String {
    let mut out = String::new();
    let mut last = 0;
    for caps in token_re().captures_iter(line) {
        let Some(m) = caps.get(0) else { continue };
        // A mention or issue must start a word ("foo@bar" is an e-mail-ish string).
        let starts_word = m.start() == 0
            || line[..m.start()]
                .chars()
                .last()
                .is_some_and(|c| c.is_whitespace() || c == '(');
        out.push_str(&escape(&line[last..m.start()]));
        last = m.end();
        let tok = m.as_str();
        if caps.name("image").is_some() {
            // `![alt](url)`, as marked renders it.
            let (alt, url) = tok[2..tok.len() - 1]
                .split_once("](")
                .expect("the pattern has both");
            out.push_str(&format!(
                "<img src=\"{}\" alt=\"{}\" rel=\"nofollow\">",
                escape(url),
                escape(alt)
            ));
            r.urls.push(url.to_string());
        } else if caps.name("url").is_some() {
            let url = tok.trim_end_matches(['.', ',', ')', '!', '?']);
            let rest = &tok[url.len()..];
            let e = escape(url);
            out.push_str(&format!(
                "<a href=\"{e}\" rel=\"nofollow noopener noreferrer\" target=\"_blank\" class=\"link \">{e}</a>{}",
                escape(rest)
            ));
            r.urls.push(url.to_string());
        } else if caps.name("all").is_some() && starts_word {
            out.push_str(
                "<span data-link-type=\"groupmention\" data-group-name=\"all\" class=\"groupmention\">@/all</span>",
            );
            r.mentions.push(Mention {
                screen_name: "/all".to_string(),
                user_id: None,
                group: true,
            });
        } else if caps.name("mention").is_some() && starts_word {
            let name = &tok[1..];
            out.push_str(&format!(
                "<span data-link-type=\"mention\" data-screen-name=\"{n}\" class=\"mention\">@{n}</span>",
                n = escape(name)
            ));
            r.mentions.push(Mention {
                screen_name: name.to_string(),
                user_id: lookup_user(name),
                group: false,
            });
        } else if caps.name("issue").is_some() && starts_word {
            let n = &tok[1..];
            out.push_str(&format!(
                "<a target=\"_blank\" data-link-type=\"issue\" data-issue=\"{n}\" class=\"issue\">#{n}</a>"
            ));
            r.issues.push(n.to_string());
        } else if caps.name("code").is_some() {
            out.push_str(&format!("<code>{}</code>", escape(&tok[1..tok.len() - 1])));
        } else if caps.name("strong").is_some() {
            out.push_str(&format!(
                "<strong>{}</strong>",
                escape(&tok[2..tok.len() - 2])
            ));
        } else if caps.name("em").is_some() {
            out.push_str(&format!("<em>{}</em>", escape(&tok[1..tok.len() - 1])));
        } else if caps.name("del").is_some() {
            out.push_str(&format!("<del>{}</del>", escape(&tok[2..tok.len() - 2])));
        } else {
            out.push_str(&escape(tok));
        }
    }
    out.push_str(&escape(&line[last..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> Option<String> {
        (name.eq_ignore_ascii_case("alice")).then(|| "5f9ab228d73408ce4ff2c66c".to_string())
    }

    #[test]
    fn single_line_is_not_wrapped_and_is_escaped() {
        let r = render("it's <b> & done", known);
        assert_eq!(r.html, "it&#39;s &lt;b&gt; &amp; done");
    }

    #[test]
    fn multi_line_becomes_paragraphs() {
        let r = render("one\ntwo\n\nthree", known);
        assert_eq!(r.html, "<p>one<br>two</p><p>three</p>");
    }

    #[test]
    fn mentions_issues_and_links_like_the_captured_payload() {
        let r = render("test @alice #11  https://gitter.im/a/b", known);
        assert_eq!(
            r.html,
            "test <span data-link-type=\"mention\" data-screen-name=\"alice\" class=\"mention\">@alice</span> \
             <a target=\"_blank\" data-link-type=\"issue\" data-issue=\"11\" class=\"issue\">#11</a>  \
             <a href=\"https://gitter.im/a/b\" rel=\"nofollow noopener noreferrer\" target=\"_blank\" class=\"link \">https://gitter.im/a/b</a>"
        );
        assert_eq!(
            r.mentions[0].user_id.as_deref(),
            Some("5f9ab228d73408ce4ff2c66c")
        );
        assert_eq!(r.urls, vec!["https://gitter.im/a/b"]);
        assert_eq!(r.issues, vec!["11"]);
        let unknown = render("hi @nobody", known);
        assert_eq!(unknown.mentions[0].user_id, None);
    }

    #[test]
    fn inline_markdown_people_use_most() {
        let r = render("hello *world*, **bold** and ~~gone~~ <i>", known);
        assert_eq!(
            r.html,
            "hello <em>world</em>, <strong>bold</strong> and <del>gone</del> &lt;i&gt;"
        );
        // A lone star or a product like 2 * 3 * 4 stays text.
        assert_eq!(render("2 * 3 * 4 *", known).html, "2 * 3 * 4 *");
        let r = render("see ![a cat](https://h.example/c.png?x=1&y=2)", known);
        assert_eq!(
            r.html,
            "see <img src=\"https://h.example/c.png?x=1&amp;y=2\" alt=\"a cat\" rel=\"nofollow\">"
        );
    }

    #[test]
    fn a_fenced_block_keeps_its_text_as_written() {
        let r = render(
            "look:\n```rust\nlet x = a < b && *p;\n  @alice\n```\nok",
            known,
        );
        assert_eq!(
            r.html,
            "<p>look:</p><pre><code class=\"language-rust\">let x = a &lt; b &amp;&amp; *p;\n  @alice</code></pre><p>ok</p>"
        );
        assert!(r.mentions.is_empty(), "no mentions inside code");
    }
}
