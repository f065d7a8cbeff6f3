//! Encryption at rest of the rows that carry Gitter tokens.
//!
//! Observed (issue 13): the store file held every user's Gitter OAuth token in clear, in the
//! `users` table (`UserRecord::login`) and in `outbox` rows (every Gitter effect carries the
//! token it will use; an OAuth code exchange carries the single-use code). Anyone who could
//! read the file, or a backup of it, could act as every bridged Gitter user.
//!
//! When the operator configures a key (`store.token_key_file` or `store.token_key_env`),
//! the whole encoded value of every `users` and `outbox` row is sealed:
//!
//! ```text
//! [ENVELOPE_V1: 1 byte][nonce: 24 bytes][ciphertext + Poly1305 tag: len + 16 bytes]
//! ```
//!
//! * The AEAD is XChaCha20-Poly1305 from RustCrypto's `chacha20poly1305` (Apache-2.0 OR MIT,
//!   pure Rust, audited by NCC Group in 2020, constant time without special CPU support).
//!   Nothing in the tree had an AEAD (`ring` and `aws-lc-rs` come only with the `rustls`
//!   feature; `chacha20` alone is a stream cipher without authentication); its `chacha20`
//!   dependency is the version already in the lock file. The extended 192-bit nonce is why
//!   XChaCha rather than ChaCha20-Poly1305: nonces are drawn at random from the OS for every
//!   write, and at 192 bits a collision is out of reach however many rows are written under
//!   one key (96-bit random nonces are safe only up to about 2^32 messages).
//! * The associated data is the table name and the row's key, so a sealed value cannot be
//!   moved to another row or table without failing to open.
//! * The whole value is sealed, not just the token field: the record types are the core's,
//!   and sealing the envelope means no core type changes and no token can be missed when
//!   the core adds one to a new action.
//! * Which file is sealed is recorded once, in `meta[token_key_check]`: a check value of the
//!   key (the tag of an empty message under the all-zero nonce, which random nonces never
//!   hit). Every row of the two tables is sealed while it is there; there are never mixed
//!   rows. A file is sealed in one write transaction the first time it is opened with a key
//!   (`RedbStore::open_with_key`), so a crash leaves it as it was. A sealed file opened
//!   without a key, or with another key, is refused before anything is read or written.

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The first byte of a sealed value: the envelope format, so a later format (another
/// cipher, key rotation) can be told apart.
const ENVELOPE_V1: u8 = 0x01;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The associated data of the key check value.
const CHECK_AAD: &[u8] = b"gitter-bridge token key check v1";

/// The key that seals the token-bearing rows: 32 bytes. Its `Debug` hides the value and
/// its memory is wiped when dropped.
#[derive(Clone)]
pub struct TokenKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Not 64 characters once surrounding white space is removed.
    #[error(
        "must be 32 bytes written as 64 hex digits (make one with `openssl rand -hex 32`); \
         found {found} characters"
    )]
    Length {
        /// How many characters there were.
        found: usize,
    },
    /// 64 characters, but not all hex digits.
    #[error("must be 64 hex digits (0-9, a-f); found another character")]
    NotHex,
}

impl TokenKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenKey {
        TokenKey(Zeroizing::new(bytes))
    }

    /// A key written as 64 hex digits (either case), surrounding white space (a trailing
    /// newline in a file) ignored. The error never repeats the text.
    pub fn from_hex(text: &str) -> Result<TokenKey, KeyFormatError> {
        let text = text.trim();
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(KeyFormatError::Length {
                found: text.chars().count(),
            });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(KeyFormatError::NotHex)?;
            let lo = hex_digit(pair[1]).ok_or(KeyFormatError::NotHex)?;
            *byte = (hi << 4) | lo;
        }
        Ok(TokenKey(bytes))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a value could not be sealed or opened (the caller adds the path and table).
#[derive(Debug)]
pub(crate) enum SealError {
    /// The OS random source failed.
    Random(String),
    /// The AEAD refused (encrypting: never in practice).
    Encrypt,
    /// The value is not an envelope this binary knows, or its tag does not check out (another
    /// key, or the bytes were changed).
    Open,
}

/// Seals and opens values with one key.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    check: u64,
}

impl Sealer {
    pub(crate) fn new(key: &TokenKey) -> Sealer {
        let cipher = XChaCha20Poly1305::new(&(*key.0).into());
        // The check value: the tag of an empty message under the all-zero nonce. The same
        // key always gives the same value; it says nothing about the key beyond that.
        let zero = XNonce::default();
        let tag = cipher
            .encrypt(
                &zero,
                Payload {
                    msg: &[],
                    aad: CHECK_AAD,
                },
            )
            .unwrap_or_default();
        let mut first = [0u8; 8];
        for (dst, src) in first.iter_mut().zip(tag.iter()) {
            *dst = *src;
        }
        Sealer {
            cipher,
            check: u64::from_le_bytes(first),
        }
    }

    /// The key's check value, kept in `meta[token_key_check]`.
    pub(crate) fn check(&self) -> u64 {
        self.check
    }

    /// Seals `plain`, the value of row `row` of `table`.
    pub(crate) fn seal(&self, table: &str, row: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XNonce::try_generate().map_err(|e| SealError::Random(e.to_string()))?;
        let aad = aad(table, row);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(ENVELOPE_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value [`Sealer::seal`] made for the same row of the same table.
    pub(crate) fn open(
        &self,
        table: &str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let Some((&ENVELOPE_V1, rest)) = sealed.split_first() else {
            return Err(SealError::Open);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Open)?;
        let aad = aad(table, row);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

/// `table`, a zero byte, then the row's key bytes.
fn aad(table: &str, row: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(table.len() + 1 + row.len());
    aad.extend_from_slice(table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> TokenKey {
        TokenKey::from_bytes([n; 32])
    }

    #[test]
    fn hex_keys_parse_and_wrong_ones_are_refused_without_echo() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let k = TokenKey::from_hex(hex).expect("64 hex digits");
        assert_eq!(k.0[1], 0x11);
        assert_eq!(k.0[31], 0xff);
        assert_eq!(format!("{k:?}"), "TokenKey(<redacted>)");
        assert_eq!(
            TokenKey::from_hex("abcd").unwrap_err(),
            KeyFormatError::Length { found: 4 }
        );
        // A base64 key (44 characters) is refused by its length, not misread.
        let b64 = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=";
        assert_eq!(
            TokenKey::from_hex(b64).unwrap_err(),
            KeyFormatError::Length { found: 44 }
        );
        let not_hex = "zz".repeat(32);
        let e = TokenKey::from_hex(&not_hex).unwrap_err();
        assert_eq!(e, KeyFormatError::NotHex);
        assert!(!e.to_string().contains("zz"));
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_row_and_table() {
        let s = Sealer::new(&key(1));
        let sealed = s.seal("users", b"@a:x", b"the token").unwrap();
        assert_eq!(sealed[0], ENVELOPE_V1);
        assert!(!sealed.windows(9).any(|w| w == b"the token"));
        assert_eq!(s.open("users", b"@a:x", &sealed).unwrap(), b"the token");
        assert!(s.open("users", b"@b:x", &sealed).is_err(), "another row");
        assert!(s.open("outbox", b"@a:x", &sealed).is_err(), "another table");
        assert!(
            Sealer::new(&key(2))
                .open("users", b"@a:x", &sealed)
                .is_err()
        );
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(
            s.open("users", b"@a:x", &changed).is_err(),
            "a changed byte"
        );
        assert!(s.open("users", b"@a:x", b"\x01short").is_err());
        // A fresh nonce every time: the same value seals differently.
        assert_ne!(s.seal("users", b"@a:x", b"the token").unwrap(), sealed);
    }

    #[test]
    fn the_check_value_tells_keys_apart_and_is_stable() {
        assert_eq!(Sealer::new(&key(1)).check(), Sealer::new(&key(1)).check());
        assert_ne!(Sealer::new(&key(1)).check(), Sealer::new(&key(2)).check());
    }
}
