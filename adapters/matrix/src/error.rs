//! Errors of the Matrix adapter. Every message says whose fault it is (the homeserver, the
//! network, the operator's configuration, or the bridge itself), because the operator reads
//! them in logs and has to know where to look.

use std::time::Duration;

use gitter_bridge_core::{Failure, FailureKind};

/// A failed call to the homeserver's Client-Server API, after the client's own retries.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The homeserver does not know the as_token (`401 M_UNKNOWN_TOKEN` / `M_MISSING_TOKEN`).
    /// Fatal: nothing the bridge does can work until the operator fixes the configuration.
    #[error(
        "configuration error: the homeserver rejected the bridge's as_token ({errcode}); the \
         as_token in the bridge config must equal `as_token` in the registration file the \
         homeserver loaded (and the homeserver must have been restarted after registering)"
    )]
    BadAsToken {
        /// `M_UNKNOWN_TOKEN` or `M_MISSING_TOKEN`.
        errcode: String,
    },
    /// The homeserver refused the request (a 4xx other than 429). Not retried.
    #[error("the homeserver refused {endpoint}: HTTP {status} {errcode}: {message}")]
    Refused {
        /// Which call.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The Matrix `errcode` (`M_UNKNOWN` when the body had none).
        errcode: String,
        /// The homeserver's `error` text.
        message: String,
    },
    /// Still rate-limited after the retries (`429` / `M_LIMIT_EXCEEDED`). Ghosts are
    /// masqueraded users, so `rate_limited: false` in the registration avoids this.
    #[error(
        "the homeserver is still rate-limiting {endpoint} after retries (set \
         `rate_limited: false` in the registration file)"
    )]
    RateLimited {
        /// Which call.
        endpoint: &'static str,
        /// The last wait the homeserver asked for.
        retry_after: Option<Duration>,
    },
    /// The homeserver kept failing (5xx) after the retries.
    #[error(
        "the homeserver failed on {endpoint} after retries: HTTP {status} {errcode}: {message}"
    )]
    Server {
        /// Which call.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The Matrix `errcode`, if any.
        errcode: String,
        /// The homeserver's `error` text, if any.
        message: String,
    },
    /// The homeserver could not be reached (connect error, time-out) after the retries.
    #[error("could not reach the homeserver for {endpoint} (network): {source}")]
    Network {
        /// Which call.
        endpoint: &'static str,
        /// The transport error (its URL never carries a token: the as_token is a header).
        #[source]
        source: reqwest::Error,
    },
    /// The homeserver answered 2xx with a body the bridge cannot read.
    #[error("the homeserver answered {endpoint} with an unreadable body: {detail}")]
    BadResponse {
        /// Which call.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The as_token works but belongs to another user than the configured bot: the bot
    /// localpart in the config and `sender_localpart` in the registration disagree.
    #[error(
        "configuration error: whoami with the as_token says {actual}, but the config's bot is \
         {expected}; make the bot localpart equal `sender_localpart` in the registration file"
    )]
    WrongSender {
        /// The bot from the config.
        expected: String,
        /// What the homeserver says.
        actual: String,
    },
    /// The bridge asked for something impossible (a bug in the caller).
    #[error("bridge bug: {0}")]
    Misuse(String),
    /// A file on the web (an image of a Gitter message) could not be downloaded. The web
    /// server's or the URL's fault: reported for good, as the message's link stands in.
    #[error("the image at {url} was not uploaded: {source}")]
    Download {
        /// The file's URL.
        url: String,
        /// Why.
        #[source]
        source: crate::fetch::FetchError,
    },
}

impl MatrixError {
    /// Whether the bridge cannot go on (the operator must fix the configuration).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            MatrixError::BadAsToken { .. } | MatrixError::WrongSender { .. }
        )
    }

    /// The Matrix `errcode`, when the homeserver sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            MatrixError::BadAsToken { errcode }
            | MatrixError::Refused { errcode, .. }
            | MatrixError::Server { errcode, .. } => Some(errcode),
            MatrixError::RateLimited { .. } => Some("M_LIMIT_EXCEEDED"),
            _ => None,
        }
    }

    /// The core's classification of this error.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            MatrixError::Refused {
                status, errcode, ..
            } => match errcode.as_str() {
                "M_FORBIDDEN" => FailureKind::Forbidden,
                "M_NOT_FOUND" => FailureKind::NotFound,
                _ if *status == 404 => FailureKind::NotFound,
                _ if *status == 403 => FailureKind::Forbidden,
                _ => FailureKind::Rejected,
            },
            MatrixError::RateLimited { .. } => FailureKind::RateLimited,
            // A bad as_token is fixed by the operator and a restart: the effect stays worth
            // retrying, so it is not reported as a permanent refusal.
            MatrixError::Server { .. }
            | MatrixError::Network { .. }
            | MatrixError::BadAsToken { .. }
            | MatrixError::WrongSender { .. } => FailureKind::Transient,
            MatrixError::BadResponse { .. }
            | MatrixError::Misuse(_)
            | MatrixError::Download { .. } => FailureKind::Rejected,
        }
    }

    /// This error as the core's [`Failure`].
    pub fn to_failure(&self) -> Failure {
        Failure::new(self.failure_kind(), self.to_string())
    }
}

impl From<MatrixError> for Failure {
    fn from(e: MatrixError) -> Self {
        e.to_failure()
    }
}

/// Why the appservice ping (`POST /_matrix/client/v1/appservice/{id}/ping`) failed. The
/// homeserver calls back the bridge's `POST /_matrix/app/v1/ping`, so this tests the
/// homeserver -> bridge direction; each message tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// `400 M_URL_NOT_SET`.
    #[error(
        "the homeserver has no URL for the bridge (M_URL_NOT_SET): set `url` in the \
         registration file to the address of the bridge's AS listener and restart the homeserver"
    )]
    UrlNotSet,
    /// `502 M_CONNECTION_FAILED`.
    #[error(
        "the homeserver could not connect to the bridge (M_CONNECTION_FAILED: {detail}): check \
         that `url` in the registration file points at the bridge's AS listener and that the \
         homeserver can reach that host and port (listen address, firewall, container network)"
    )]
    ConnectionFailed {
        /// The homeserver's `error` text.
        detail: String,
    },
    /// `502 M_BAD_STATUS`: the bridge answered the homeserver with an error.
    #[error(
        "the homeserver reached the bridge but got HTTP {status} (M_BAD_STATUS, body: {body}); \
         a 403 means `hs_token` in the bridge config differs from the registration file"
    )]
    BadStatus {
        /// The status the bridge answered, as the homeserver reports it.
        status: String,
        /// The body the bridge answered, as the homeserver reports it.
        body: String,
    },
    /// `403 M_FORBIDDEN`: the as_token belongs to an appservice with another id.
    #[error(
        "the homeserver says the appservice id {id:?} is not ours (M_FORBIDDEN: {message}); \
         make the bridge's appservice id equal `id` in the registration file"
    )]
    WrongId {
        /// The id the bridge used.
        id: String,
        /// The homeserver's `error` text.
        message: String,
    },
    /// The homeserver does not implement the ping (spec v1.7): nothing to fix, just untested.
    #[error("the homeserver does not support the appservice ping (added in Matrix v1.7)")]
    Unsupported,
    /// Anything else, including network errors and a bad as_token.
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}
