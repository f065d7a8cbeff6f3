//! # gitter-bridge-gitter: the Gitter side of the bridge's I/O
//!
//! This crate talks to a server that speaks the legacy Gitter API (see
//! `docs/gitter-api.md`; every URL is configuration, since gitter.im itself is gone):
//!
//! * [`GitterClient`]: the REST client (`/v1/user`, `/v1/rooms`, `chatMessages`, ...) and
//!   [`GitterClient::execute`], which runs one core [`Action`](gitter_bridge_core::Action) and
//!   returns its [`EffectResult`](gitter_bridge_core::EffectResult).
//! * [`GitterOAuth`]: the authorize URL and the authorization-code exchange (`oauth2` crate).
//! * [`StreamManager`]: one streaming reader task per Gitter room, reporting
//!   [`StreamEvent`]s (connected, message, disconnected) through a channel.
//! * [`LineSplitter`]: the pure newline-delimited JSON parser behind the streams.
//! * [`RateLimiter`]: the client-side per-token limit (100 requests per 60 s by default).
//!
//! What it does: translates between the wire and the core's types, waits for rate limits,
//! retries transient faults (5xx, network errors, 429) with bounded exponential backoff (a
//! message post only when it certainly did not go out: a lost answer is never posted again),
//! reconnects streams, and reports the final outcome classified as a core
//! [`FailureKind`](gitter_bridge_core::FailureKind).
//!
//! Every call has a deadline (connect, whole request, stream answer and silence) and every
//! answer body is read to a size limit ([`GitterConfig::max_body_bytes`],
//! [`ERROR_BODY_LIMIT`], [`OAUTH_BODY_LIMIT`]).
//!
//! What it does not do: decide anything. Which rooms to bridge, who reads a stream, what to do
//! about a revoked token, echo suppression and deduplication are the core's business. The
//! crate holds no state beyond connections, rate-limit windows and stream tasks.
//!
//! Tokens never appear in logs or error messages: they travel as
//! [`Secret`](gitter_bridge_core::Secret), rate limits are keyed by a hash of the token, and
//! every [`Failure`](gitter_bridge_core::Failure) message is scrubbed of the token it was made
//! with.
//!
//! TLS: the `rustls` feature enables HTTPS through reqwest's rustls backend for production
//! builds; without it the client speaks plain HTTP only (enough for loopback tests).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod client;
mod error;
mod exec;
mod faye;
mod models;
mod oauth;
mod ratelimit;
mod stream;
mod time;

pub use client::{
    DEFAULT_MAX_BODY_BYTES, ERROR_BODY_LIMIT, GitterClient, GitterConfig, RetryConfig,
};
pub use error::{Blame, GitterError};
pub use faye::{
    Advice, BayeuxMessage, Channel, FayeConfig, FayeManager, Sequence, Transport, decode,
    error_code,
};
pub use models::{FromUser, Issue, Mention, Message, Room, UrlRef, User};
pub use oauth::{GitterOAuth, OAUTH_BODY_LIMIT, OAuthConfig};
pub use ratelimit::{RateLimitConfig, RateLimiter, TokenKey};
pub use stream::{
    ConnectionEnd, LineSplitter, ReconnectBackoff, StreamConfig, StreamEvent, StreamItem,
    StreamManager,
};
pub use time::parse_iso_ms;
