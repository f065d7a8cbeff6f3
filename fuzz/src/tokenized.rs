//! The XSS property read with a real HTML tokenizer (html5ever's, the one ammonia parses
//! with): every start tag is in the Matrix set with only its attributes, no attribute is an
//! event handler or `style`, every `href` (entity-decoded, as a browser reads it) is
//! `http://`, `https://` or `mailto:`, every `src` is `mxc://`, and there is no comment,
//! doctype or parse error (the sanitiser's output is well-formed).

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, StartTag, Tag, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use crate::strict::ALLOWED;

#[derive(Default)]
struct Sink {
    found: RefCell<Vec<String>>,
}

impl Sink {
    fn tag(&self, tag: &Tag) {
        let mut found = self.found.borrow_mut();
        let name = &*tag.name;
        let Some((_, allowed)) = ALLOWED.iter().find(|(t, _)| *t == name) else {
            found.push(format!("tag `{name}`"));
            return;
        };
        if tag.kind != StartTag {
            if !tag.attrs.is_empty() {
                found.push(format!("end tag `{name}` with attributes"));
            }
            return;
        }
        for attr in &tag.attrs {
            let attr_name = &*attr.name.local;
            let value = &*attr.value;
            if attr_name.starts_with("on") || attr_name == "style" {
                found.push(format!("`{attr_name}` on `{name}`"));
            }
            if !allowed.contains(&attr_name) {
                found.push(format!("`{attr_name}` not allowed on `{name}`"));
            }
            match attr_name {
                "href"
                    if !["http://", "https://", "mailto:"]
                        .iter()
                        .any(|p| value.starts_with(p)) =>
                {
                    found.push(format!("href {value:?}"))
                }
                "src" if !value.starts_with("mxc://") => found.push(format!("src {value:?}")),
                _ => {}
            }
        }
        if name == "a" && !tag.attrs.iter().any(|a| &*a.name.local == "href") {
            found.push("a link without href".to_owned());
        }
    }
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) => self.tag(&tag),
            Token::CommentToken(c) => self.found.borrow_mut().push(format!("comment {c:?}")),
            Token::DoctypeToken(_) => self.found.borrow_mut().push("doctype".to_owned()),
            Token::ParseError(e) => self.found.borrow_mut().push(format!("parse error: {e}")),
            Token::NullCharacterToken => self.found.borrow_mut().push("NUL".to_owned()),
            Token::CharacterTokens(_) | Token::EOFToken => {}
        }
        TokenSinkResult::Continue
    }
}

/// Everything wrong with `html` as sanitiser output, read by html5ever's tokenizer.
pub fn violations(html: &str) -> Vec<String> {
    let tok = Tokenizer::new(Sink::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tok.feed(&input);
    tok.end();
    tok.sink.found.take()
}
