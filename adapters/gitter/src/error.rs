//! [`GitterError`]: what went wrong talking to Gitter, and whose fault it is.
//!
//! Mapping to the core's [`FailureKind`] (docs/gitter-api.md §7.2): 401 -> `TokenRevoked`,
//! 403 -> `Forbidden`, 404 -> `NotFound`, 429 after retries -> `RateLimited`, 5xx and network
//! errors after retries -> `Transient`, an answer over the size limit -> `Transient`,
//! 400/406/unreadable answers -> `Rejected`.
//!
//! No variant ever holds a token: messages come from Gitter's `{"error": ...}` bodies, from
//! status codes, or from reqwest errors stripped of their URL; [`GitterError::into_failure`]
//! scrubs the token once more as a last line of defence.

use gitter_bridge_core::{Failure, FailureKind, Secret};

/// Whose fault a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The user's side: their token was revoked, they may not do this, the thing they named
    /// does not exist. Retrying will not help; telling the user might.
    User,
    /// Gitter's side, and it may pass: 5xx, network trouble, rate limits.
    Transient,
    /// Gitter answered something we cannot read, or refused a request as malformed
    /// (400/406): a bug on one side or a protocol mismatch.
    Remote,
    /// Ours: bad configuration (URLs, OAuth client credentials) or a misuse of this crate.
    Bridge,
}

/// An error from the Gitter adapter.
#[derive(Debug, thiserror::Error)]
pub enum GitterError {
    /// 401: the token is unknown or revoked.
    #[error("Gitter refused the token (401): {message}")]
    Unauthorized {
        /// Gitter's `error` text.
        message: String,
    },
    /// 403: authenticated but not allowed.
    #[error("Gitter forbids this (403): {message}")]
    Forbidden {
        /// Gitter's `error` text.
        message: String,
    },
    /// 404: unknown room/message/route, or not a member.
    #[error("not found on Gitter (404): {message}")]
    NotFound {
        /// Gitter's `error` text.
        message: String,
    },
    /// 429 and still limited after waiting and retrying.
    #[error("rate limited by Gitter (429) after {attempts} attempts")]
    RateLimited {
        /// How many requests were made.
        attempts: u32,
    },
    /// 5xx after retries.
    #[error("Gitter server error ({status}) after {attempts} attempts: {message}")]
    Server {
        /// The status code.
        status: u16,
        /// Gitter's `error` text or reason phrase.
        message: String,
        /// How many requests were made.
        attempts: u32,
    },
    /// Connection, timeout or body errors after retries.
    #[error("network error talking to Gitter after {attempts} attempts: {message}")]
    Network {
        /// What failed (no URL).
        message: String,
        /// How many requests were made.
        attempts: u32,
    },
    /// 400, 406 or another status the bridge does not expect.
    #[error("Gitter rejected the request ({status}): {message}")]
    Rejected {
        /// The status code.
        status: u16,
        /// Gitter's `error` text or reason phrase.
        message: String,
    },
    /// A 2xx answer that is not the JSON we expect.
    #[error("unreadable answer from Gitter: {0}")]
    Decode(String),
    /// A read that could not see all it must before it can answer (a reconcile in a room
    /// with more new messages than it pages through): it may succeed later, when fewer are
    /// new, so it is transient; a partial answer could post a message twice.
    #[error("Gitter read incomplete: {0}")]
    Incomplete(String),
    /// An answer larger than the bridge reads (by its `Content-Length` or by what came):
    /// reading stopped at the limit instead of holding the whole body in memory.
    #[error("answer from Gitter larger than {}: not read", size(*limit))]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The OAuth token endpoint refused the code exchange or answered oddly.
    #[error("OAuth code exchange failed{}: {error}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    OAuth {
        /// The HTTP status, when a response came.
        status: Option<u16>,
        /// The OAuth `error` code and description, or what went wrong.
        error: String,
    },
    /// A bad configuration value (URL) or a misuse of the crate.
    #[error("Gitter adapter misconfigured or misused: {0}")]
    Config(String),
}

impl GitterError {
    /// Builds the error for a non-success status, from Gitter's `{"error": "..."}` body
    /// (§7.1) or the reason phrase when the body says nothing useful.
    pub(crate) fn from_status(status: u16, body: &[u8], attempts: u32) -> Self {
        let message = error_text(status, body);
        match status {
            401 => GitterError::Unauthorized { message },
            // Before dolph 0.2.0 the limiter answered 403 "API rate limit exceeded" (§8): a
            // wait, not a refusal.
            403 if message.to_ascii_lowercase().contains("rate limit exceeded") => {
                GitterError::RateLimited { attempts }
            }
            403 => GitterError::Forbidden { message },
            404 => GitterError::NotFound { message },
            429 => GitterError::RateLimited { attempts },
            500..=599 => GitterError::Server {
                status,
                message,
                attempts,
            },
            _ => GitterError::Rejected { status, message },
        }
    }

    /// The core's classification of this error.
    pub fn kind(&self) -> FailureKind {
        match self {
            GitterError::Unauthorized { .. } => FailureKind::TokenRevoked,
            GitterError::Forbidden { .. } => FailureKind::Forbidden,
            GitterError::NotFound { .. } => FailureKind::NotFound,
            GitterError::RateLimited { .. } => FailureKind::RateLimited,
            GitterError::Server { .. } | GitterError::Network { .. } => FailureKind::Transient,
            // Every answer the bridge asks for (a member page, 100 messages, one user) is far
            // below the limit, so an oversize one is a misbehaving server or a proxy's error
            // page, which may pass: the core may try again later. It is not `Rejected`, which
            // would tell the user their request itself was refused.
            GitterError::TooLarge { .. } | GitterError::Incomplete(_) => FailureKind::Transient,
            GitterError::Rejected { .. } | GitterError::Decode(_) | GitterError::Config(_) => {
                FailureKind::Rejected
            }
            GitterError::OAuth { status, .. } => match status {
                Some(429) => FailureKind::RateLimited,
                Some(500..=599) | None => FailureKind::Transient,
                // The token endpoint answers 401 for bad *client* credentials (passport
                // `oauth2-client-password`, §2.3): that is the operator's configuration, not a
                // user's token, so it must not read as a revoked login.
                Some(401) => FailureKind::Forbidden,
                Some(_) => FailureKind::Rejected,
            },
        }
    }

    /// Whose fault it is.
    pub fn blame(&self) -> Blame {
        match self {
            GitterError::Unauthorized { .. }
            | GitterError::Forbidden { .. }
            | GitterError::NotFound { .. } => Blame::User,
            GitterError::RateLimited { .. }
            | GitterError::Server { .. }
            | GitterError::Network { .. } => Blame::Transient,
            // The server's fault, and not retried at once by the adapter (`is_transient` is
            // false): the same request would most likely get the same answer right away, and
            // each try reads up to the limit again.
            GitterError::Rejected { .. }
            | GitterError::Decode(_)
            | GitterError::Incomplete(_)
            | GitterError::TooLarge { .. } => Blame::Remote,
            GitterError::Config(_) => Blame::Bridge,
            GitterError::OAuth { status, .. } => match status {
                Some(401) => Blame::Bridge,
                Some(429) | Some(500..=599) | None => Blame::Transient,
                Some(_) => Blame::User,
            },
        }
    }

    /// Whether a retry may succeed (5xx, network, 429).
    pub(crate) fn is_transient(&self) -> bool {
        self.blame() == Blame::Transient
    }

    /// The same error with `token` scrubbed from every text it holds: a server that echoes
    /// the request back (in an `error` text) must not get the token into a log line.
    pub(crate) fn scrub_token(self, token: &Secret) -> Self {
        let s = |m: String| scrub(&m, token);
        match self {
            GitterError::Unauthorized { message } => GitterError::Unauthorized {
                message: s(message),
            },
            GitterError::Forbidden { message } => GitterError::Forbidden {
                message: s(message),
            },
            GitterError::NotFound { message } => GitterError::NotFound {
                message: s(message),
            },
            GitterError::Server {
                status,
                message,
                attempts,
            } => GitterError::Server {
                status,
                message: s(message),
                attempts,
            },
            GitterError::Network { message, attempts } => GitterError::Network {
                message: s(message),
                attempts,
            },
            GitterError::Rejected { status, message } => GitterError::Rejected {
                status,
                message: s(message),
            },
            GitterError::Decode(m) => GitterError::Decode(s(m)),
            GitterError::OAuth { status, error } => GitterError::OAuth {
                status,
                error: s(error),
            },
            GitterError::Config(m) => GitterError::Config(s(m)),
            e @ (GitterError::RateLimited { .. }
            | GitterError::TooLarge { .. }
            | GitterError::Incomplete(_)) => e,
        }
    }

    /// Converts into the core's [`Failure`], scrubbing `token` from the message.
    pub fn into_failure(self, token: Option<&Secret>) -> Failure {
        let kind = self.kind();
        let mut message = self.to_string();
        if let Some(token) = token {
            message = scrub(&message, token);
        }
        Failure::new(kind, message)
    }

    /// A network error from reqwest, without its URL (which carries room ids and could carry
    /// query parameters).
    pub(crate) fn network(err: &reqwest::Error, attempts: u32) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else if err.is_body() || err.is_decode() {
            "failed reading the body"
        } else if err.is_request() {
            "failed sending the request"
        } else {
            "request failed"
        };
        // The source chain names the cause (refused, reset, DNS) without the URL that
        // reqwest's own Display adds.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let detail = if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(": "))
        };
        GitterError::Network {
            message: format!("{what}{detail}"),
            attempts,
        }
    }
}

/// The `error` text of a Gitter error body (§7.1), or the status's reason phrase.
fn error_text(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: serde_json::Value,
        #[serde(default)]
        error_description: Option<String>,
    }
    let from_body = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| {
        let error = match b.error {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        match b.error_description {
            Some(d) => format!("{error}: {d}"),
            None => error,
        }
    });
    from_body.unwrap_or_else(|| {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("unexpected status")
            .to_owned()
    })
}

/// A byte count for messages: `8 MiB`, `64 KiB`, `1000 bytes`.
pub(crate) fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Replaces every occurrence of the token's value in `text`.
pub(crate) fn scrub(text: &str, token: &Secret) -> String {
    let value = token.expose();
    if value.is_empty() {
        text.to_owned()
    } else {
        text.replace(value, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (401, FailureKind::TokenRevoked, Blame::User),
            (403, FailureKind::Forbidden, Blame::User),
            (404, FailureKind::NotFound, Blame::User),
            (429, FailureKind::RateLimited, Blame::Transient),
            (500, FailureKind::Transient, Blame::Transient),
            (503, FailureKind::Transient, Blame::Transient),
            (400, FailureKind::Rejected, Blame::Remote),
            (406, FailureKind::Rejected, Blame::Remote),
        ];
        for (status, kind, blame) in cases {
            let e = GitterError::from_status(status, b"{\"error\":\"x\"}", 1);
            assert_eq!((e.kind(), e.blame()), (kind, blame), "{status}");
        }
    }

    #[test]
    fn error_text_from_body_or_reason() {
        let e = GitterError::from_status(404, br#"{"error":"Not Found"}"#, 1);
        assert_eq!(e.to_string(), "not found on Gitter (404): Not Found");
        let e = GitterError::from_status(400, b"<html>oops</html>", 1);
        assert_eq!(
            e.to_string(),
            "Gitter rejected the request (400): Bad Request"
        );
    }

    #[test]
    fn an_oversize_answer_names_the_limit_and_may_pass() {
        let e = GitterError::TooLarge {
            limit: 8 * 1024 * 1024,
        };
        assert_eq!(
            e.to_string(),
            "answer from Gitter larger than 8 MiB: not read"
        );
        assert_eq!(
            (e.kind(), e.blame()),
            (FailureKind::Transient, Blame::Remote)
        );
        assert!(!e.is_transient(), "not retried at once by the adapter");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn failure_never_carries_the_token() {
        let token = Secret::new("0123456789abcdef0123456789abcdef01234567");
        let e = GitterError::from_status(
            403,
            br#"{"error":"token 0123456789abcdef0123456789abcdef01234567 is odd"}"#,
            1,
        );
        let f = e.into_failure(Some(&token));
        assert_eq!(f.kind, FailureKind::Forbidden);
        assert!(!f.message.contains(token.expose()), "{}", f.message);
    }
}
