//! Matrix files on Gitter: signed links to the bridge's own media page.
//!
//! A Gitter user has no Matrix account, and a homeserver serves media only to its users
//! (authenticated media, spec v1.11 "Content repository": `/_matrix/client/v1/media/download`
//! needs an access token). So a Matrix image or file becomes a Gitter message with a link to
//! the bridge's public listener, `{public_url}/media/{signature}/{server}/{media id}/{name}`,
//! which fetches it from the homeserver with the bridge's own token and streams it through.
//!
//! The signature is HMAC-SHA256 over the server, media id and name, with a key only the
//! bridge holds ([`MediaKey`]): without it nobody can make the bridge serve some other file
//! of the homeserver (the media page would otherwise be an open proxy to every upload), and
//! a link cannot be renamed. It is cut to 128 bits, which is what an unguessable capability
//! needs; the comparison is constant-time ([`Mac::verify_truncated_left`]).

use std::fmt;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The kinds of Matrix media messages the bridge links to (spec: `m.image`, `m.file`,
/// `m.video`, `m.audio`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaKind {
    /// `m.image`: shown inline on Gitter (`![name](link)`).
    Image,
    /// `m.file`.
    File,
    /// `m.video`.
    Video,
    /// `m.audio`.
    Audio,
}

/// A Matrix media message: what a `m.image`, `m.file`, `m.video` or `m.audio` event carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMessage {
    /// Which kind.
    pub kind: MediaKind,
    /// The server name of its `mxc://` URI.
    pub server: String,
    /// The media id of its `mxc://` URI.
    pub media_id: String,
    /// The file name: `filename`, or `body` when there is none (spec v1.10, "Media captions").
    pub name: String,
    /// The caption: `body` when `filename` is given and differs from it.
    pub caption: Option<String>,
    /// `info.size` in bytes, when the sender's client said.
    pub size: Option<u64>,
}

/// The key that signs media links: 32 bytes. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaKey([u8; 32]);

impl MediaKey {
    /// A key from 32 bytes.
    pub fn new(bytes: [u8; 32]) -> MediaKey {
        MediaKey(bytes)
    }

    /// A key derived from another secret (HMAC-SHA256 of a fixed label under it), so a
    /// bridge whose operator configured no media key still signs with one only it knows.
    pub fn derive(secret: &[u8]) -> MediaKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"gitter-bridge media links v1");
        MediaKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, server: &str, media_id: &str, name: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Length-prefixed, so no two triples sign the same bytes.
        for part in [server, media_id, name] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The signature of a link: 128 bits of the HMAC, as 32 lowercase hex digits.
    pub fn sign(&self, server: &str, media_id: &str, name: &str) -> String {
        let tag = self.mac(server, media_id, name).finalize().into_bytes();
        tag[..SIGNATURE_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` is this key's signature of the link (constant-time).
    pub fn verify(&self, signature: &str, server: &str, media_id: &str, name: &str) -> bool {
        let Some(tag) = from_hex(signature) else {
            return false;
        };
        tag.len() == SIGNATURE_BYTES
            && self
                .mac(server, media_id, name)
                .verify_truncated_left(&tag)
                .is_ok()
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaKey(<redacted>)")
    }
}

/// Bytes of HMAC kept in a link.
const SIGNATURE_BYTES: usize = 16;

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Characters left as they are in a path segment: RFC 3986 "unreserved".
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of a media link under the public URL, each part one encoded segment.
pub fn media_path(key: &MediaKey, server: &str, media_id: &str, name: &str) -> String {
    let segment = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
    format!(
        "/media/{}/{}/{}/{}",
        key.sign(server, media_id, name),
        segment(server),
        segment(media_id),
        segment(name),
    )
}

/// The Gitter markdown of a media message: its caption (if any), then the image or the
/// link with the size.
pub(crate) fn gitter_text(media: &MediaMessage, public_url: &str, key: &MediaKey) -> String {
    let name = if media.name.trim().is_empty() {
        "file"
    } else {
        media.name.as_str()
    };
    let url = format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        media_path(key, &media.server, &media.media_id, name)
    );
    let label = escape_link_text(name);
    let link = match (media.kind, media.size) {
        (MediaKind::Image, _) => format!("![{label}]({url})"),
        (_, Some(size)) => format!("[{label}]({url}) ({})", human_size(size)),
        (_, None) => format!("[{label}]({url})"),
    };
    match media.caption.as_deref().map(str::trim) {
        Some(caption) if !caption.is_empty() => format!("{caption}\n\n{link}"),
        _ => link,
    }
}

/// A file name as markdown link text: the characters that would end or restyle it are
/// escaped with a backslash (CommonMark "Backslash escapes").
fn escape_link_text(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(
            c,
            '\\' | '[' | ']' | '(' | ')' | '*' | '_' | '`' | '<' | '>' | '!'
        ) {
            out.push('\\');
        }
        // A line break would end the link; a file name has none that matter.
        out.push(if c == '\n' || c == '\r' { ' ' } else { c });
    }
    out
}

/// A size as people read it: `812 bytes`, `4.2 KB`, `1.3 MB`, `2.0 GB` (powers of 1000).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MediaKey {
        MediaKey::derive(b"test secret")
    }

    fn image(name: &str, caption: Option<&str>) -> MediaMessage {
        MediaMessage {
            kind: MediaKind::Image,
            server: "hs.test".into(),
            media_id: "abc123".into(),
            name: name.into(),
            caption: caption.map(Into::into),
            size: Some(2048),
        }
    }

    #[test]
    fn a_signed_link_verifies_and_any_change_to_it_does_not() {
        let k = key();
        let sig = k.sign("hs.test", "abc", "cat.png");
        assert_eq!(sig.len(), 32);
        assert!(k.verify(&sig, "hs.test", "abc", "cat.png"));
        assert!(!k.verify(&sig, "hs.test", "abd", "cat.png"));
        assert!(!k.verify(&sig, "hs.test", "abc", "cat.svg"));
        assert!(!k.verify(&sig, "other.test", "abc", "cat.png"));
        // Moving a byte between parts changes the signature (length-prefixed parts).
        assert!(!k.verify(&sig, "hs.tes", "tabc", "cat.png"));
        let mut tampered = sig.clone().into_bytes();
        tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
        assert!(!k.verify(
            std::str::from_utf8(&tampered).unwrap(),
            "hs.test",
            "abc",
            "cat.png"
        ));
        assert!(!k.verify(&sig[..30], "hs.test", "abc", "cat.png"));
        assert!(!k.verify("zz", "hs.test", "abc", "cat.png"));
        assert!(!MediaKey::derive(b"another").verify(&sig, "hs.test", "abc", "cat.png"));
    }

    #[test]
    fn an_image_is_shown_inline_and_a_file_is_a_link_with_its_size() {
        let k = key();
        let text = gitter_text(&image("cat.png", None), "https://b.example/", &k);
        let sig = k.sign("hs.test", "abc123", "cat.png");
        assert_eq!(
            text,
            format!("![cat.png](https://b.example/media/{sig}/hs.test/abc123/cat.png)")
        );
        let file = MediaMessage {
            kind: MediaKind::File,
            size: Some(1_300_000),
            ..image("report (final).pdf", Some("Here it is"))
        };
        let text = gitter_text(&file, "https://b.example", &k);
        let sig = k.sign("hs.test", "abc123", "report (final).pdf");
        assert_eq!(
            text,
            format!(
                "Here it is\n\n[report \\(final\\).pdf](https://b.example/media/{sig}/hs.test/\
                 abc123/report%20%28final%29.pdf) (1.3 MB)"
            )
        );
    }

    #[test]
    fn a_name_cannot_break_out_of_its_link() {
        let text = gitter_text(&image("a](https://evil)[x\nb", None), "https://b", &key());
        assert!(text.starts_with("![a\\]\\(https://evil\\)\\[x b](https://b/media/"));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(812), "812 bytes");
        assert_eq!(human_size(4_200), "4.2 KB");
        assert_eq!(human_size(52_428_800), "52.4 MB");
        assert_eq!(human_size(2_000_000_000), "2.0 GB");
    }
}
