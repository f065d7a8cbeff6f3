//! The REST client: configuration, the request pipeline (rate limit, retries, error mapping)
//! and one method per endpoint the bridge uses (docs/gitter-api.md §3).
//!
//! Every request carries `Accept: application/json` and `Authorization: Bearer <token>`
//! (§1.2). Bodies are serialised up front and sent with a `Content-Length`: Gitter answers
//! 406 to chunked request bodies (§1.2), so no streaming bodies are ever sent, and bodiless
//! writes send `Content-Length: 0`.
//!
//! Every request has a deadline (connect and whole-request time limits, the body included) and
//! every answer is read through [`read_capped`], which stops at a size limit: a server that
//! never answers or answers without end must cost a lane seconds and the process kilobytes,
//! not minutes and gigabytes (issue 12).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use gitter_bridge_core::Secret;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::error::{GitterError, size};
use crate::models::{Message, OneOrMany, Room, User};
use crate::oauth::{GitterOAuth, OAuthConfig};
use crate::ratelimit::{RateLimitConfig, RateLimiter, TokenKey};
use crate::stream::StreamConfig;

/// Everything the Gitter adapter needs to know. Every URL is configuration (gitter.im's API
/// is gone; tests and the simulator run a fake one on loopback).
#[derive(Clone, Debug)]
pub struct GitterConfig {
    /// REST base, e.g. `https://api.gitter.im` (or `https://gitter.im/api`); `/v1/...` is
    /// appended.
    pub api_base: Url,
    /// Streaming base, e.g. `https://stream.gitter.im`; `/v1/rooms/:id/chatMessages` is
    /// appended.
    pub stream_base: Url,
    /// The OAuth application and endpoints.
    pub oauth: OAuthConfig,
    /// Client-side rate limit per token.
    pub rate_limit: RateLimitConfig,
    /// Retries of transient REST failures.
    pub retry: RetryConfig,
    /// Time limit of one REST request or OAuth code exchange, from connecting until the last
    /// byte of the answer's body (`None`: no limit; only for tests on a paused clock).
    pub request_timeout: Option<Duration>,
    /// Time limit of establishing a connection, REST and streams (`None`: no limit; only for
    /// tests on a paused clock).
    pub connect_timeout: Option<Duration>,
    /// Largest REST answer body read, in bytes. A member page or 100 messages is a few hundred
    /// KiB at most; anything larger is refused with [`GitterError::TooLarge`]. Error bodies
    /// are read up to [`ERROR_BODY_LIMIT`] whatever this says.
    pub max_body_bytes: usize,
    /// How long an idle pooled connection is kept (`None`: until the server closes it).
    pub pool_idle_timeout: Option<Duration>,
    /// Streaming readers.
    pub stream: StreamConfig,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
}

impl GitterConfig {
    /// A configuration with these endpoints and the default limits: 100 requests per 60 s,
    /// 5 attempts within 2 minutes, 30 s per request, 10 s to connect, 8 MiB per answer.
    pub fn new(api_base: Url, stream_base: Url, oauth: OAuthConfig) -> Self {
        Self {
            api_base,
            stream_base,
            oauth,
            rate_limit: RateLimitConfig::default(),
            retry: RetryConfig::default(),
            request_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            stream: StreamConfig::default(),
            user_agent: concat!("gitter-bridge/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Default of [`GitterConfig::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Largest error body read (REST, OAuth, a stream's refusal). Only its `error` text is used,
/// which is a line; the rest is dropped unread and the status alone classifies the answer.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the limit: announced by `Content-Length`, or arrived.
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The connection failed or the time limit passed while reading.
    Read(reqwest::Error),
}

impl BodyError {
    /// As the adapter's error (`attempts` for a network failure's message).
    pub(crate) fn into_gitter(self, attempts: u32) -> GitterError {
        match self {
            BodyError::TooLarge { limit } => GitterError::TooLarge { limit },
            BodyError::Read(e) => GitterError::network(&e, attempts),
        }
    }
}

/// Reads `response`'s body, at most `limit` bytes. This is the only way the adapter reads a
/// body (REST data and errors, the OAuth answer, a stream's refusal): `Response::bytes` would
/// hold whatever the server sends, and one 1 GiB error body took the bridge from 30 MB to
/// 1.09 GB (issue 12).
///
/// A `Content-Length` over the limit is refused before reading anything; otherwise chunks are
/// appended until one would pass the limit, and the rest is never read (dropping the response
/// closes the connection). The time limit is the request's own (reqwest applies a request's
/// `timeout` to the body too).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if let Some(declared) = response.content_length()
        && declared > limit as u64
    {
        return Err(BodyError::TooLarge { limit });
    }
    // Capacity from what is announced (already known to be within the limit), but no more than
    // a modest start: a server may announce more than it sends.
    let start = response
        .content_length()
        .map_or(0, |n| n as usize)
        .min(64 * 1024);
    let mut body = Vec::with_capacity(start);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if chunk.len() > limit - body.len() {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error body for [`GitterError::from_status`]: at most [`ERROR_BODY_LIMIT`] bytes, and
/// empty when it is larger or breaks off. The status is what classifies an error, so a body
/// that cannot be read must not turn a 401 or a 429 into a network error.
pub(crate) async fn read_error_body(response: reqwest::Response) -> Vec<u8> {
    match read_capped(response, ERROR_BODY_LIMIT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { limit }) => {
            tracing::warn!(
                "Gitter error body larger than {}; classified by its status alone",
                size(limit)
            );
            Vec::new()
        }
        Err(BodyError::Read(e)) => {
            tracing::debug!(error = %GitterError::network(&e, 1), "Gitter error body unreadable");
            Vec::new()
        }
    }
}

/// Whether a request may be sent again when the outcome of an earlier attempt is unknown.
///
/// A lost answer to `POST chatMessages` (a time-out, a connection dropped after the request
/// went out, a 5xx from a proxy in front of a server that did store it) was retried and gave
/// two copies of one message on Gitter (issue 12). Gitter has no idempotency key, so a request
/// that is not idempotent is repeated only when it certainly did not take effect; otherwise the
/// error goes back at once (still `Transient`) and the core reconciles against the room's
/// recent messages before any new attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Doing it twice is the same as once (GET, PUT of the same text, DELETE, joining a room,
    /// resolving a uri): retried after any transient fault.
    Idempotent,
    /// Doing it twice makes two (posting a message): retried only after a fault that proves
    /// it did not take effect (see [`AttemptError::not_applied`]).
    NotIdempotent,
}

/// Bounded exponential backoff for 5xx, network errors and 429.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Give up rather than wait past this much time since the first attempt.
    pub max_elapsed: Duration,
    /// Wait after a 429 that has no `X-RateLimit-Reset` header.
    pub rate_limited_wait: Duration,
    /// Randomise backoff delays (spreads retries of many tokens).
    pub jitter: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
            rate_limited_wait: Duration::from_secs(10),
            jitter: true,
        }
    }
}

impl RetryConfig {
    fn backoff(&self) -> backon::ExponentialBackoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times();
        let builder = if self.jitter {
            builder.with_jitter()
        } else {
            builder
        };
        builder.build()
    }
}

/// One failed attempt: the error, how long the server asked us to wait (429), and whether
/// the request certainly did not take effect.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) error: GitterError,
    pub(crate) wait: Option<Duration>,
    /// The request certainly had no effect on the server, so even a non-idempotent one may be
    /// sent again. True only for a rate-limit refusal (Gitter's limiter answers before any
    /// route runs, docs/gitter-api.md §8) and for a failure to connect (reqwest's `is_connect`:
    /// the connector failed, so no byte of the request was written). False for everything
    /// else that can happen after the request left: a time-out, a connection lost after it
    /// was made, a 5xx, a body that breaks off or is too large.
    pub(crate) not_applied: bool,
}

impl From<GitterError> for AttemptError {
    /// An error after which the outcome is unknown.
    fn from(error: GitterError) -> Self {
        Self {
            error,
            wait: None,
            not_applied: false,
        }
    }
}

impl AttemptError {
    /// A reqwest error from sending: not applied only if it never connected.
    fn sending(err: &reqwest::Error, attempt: u32) -> Self {
        Self {
            error: GitterError::network(err, attempt),
            wait: None,
            not_applied: err.is_connect(),
        }
    }
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, fails for good, or the
/// retry budget is spent. Only transient errors are retried, and for a
/// [`Idempotency::NotIdempotent`] request only those that prove it did not take effect; a 429
/// waits as long as the server said, anything else follows the exponential backoff.
pub(crate) async fn with_retries<T, F, Fut>(
    retry: &RetryConfig,
    idempotency: Idempotency,
    mut op: F,
) -> Result<T, GitterError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let started = Instant::now();
    let mut backoff = retry.backoff();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let AttemptError {
            error,
            wait,
            not_applied,
        } = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !error.is_transient() || attempt >= retry.max_attempts.max(1) {
            return Err(error);
        }
        if idempotency == Idempotency::NotIdempotent && !not_applied {
            // It may have been stored: sending it again could post it twice (issue 12).
            tracing::info!(attempt, error = %error, "not retrying a Gitter write whose outcome is unknown");
            return Err(error);
        }
        let delay = wait.unwrap_or_else(|| backoff.next().unwrap_or(retry.max_delay));
        if started.elapsed() + delay > retry.max_elapsed {
            tracing::warn!(attempt, error = %error, "giving up on Gitter request: retry budget spent");
            return Err(error);
        }
        tracing::info!(attempt, delay_ms = delay.as_millis(), error = %error, "retrying Gitter request");
        tokio::time::sleep(delay).await;
    }
}

/// The Gitter REST client. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone, Debug)]
pub struct GitterClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: GitterConfig,
    http: reqwest::Client,
    limiter: RateLimiter,
    oauth: GitterOAuth,
}

/// How many members to ask for per page, and how far to advance: MAGB advances by 95 so
/// pages overlap and a member who joins or leaves mid-listing shifts nobody out of view
/// (§3.5). Duplicates are dropped by id.
const MEMBERS_PAGE: u32 = 100;
const MEMBERS_STEP: u32 = 95;
/// `/users` documents no `skip` limit (the 5000 of §3.6 is `chatMessages`'); this bound only
/// keeps a misbehaving server from paging us forever. Gitter's largest rooms had ~30k members.
const MAX_MEMBERS_SKIP: u32 = 100_000;

impl GitterClient {
    /// A client for this configuration. Fails on base URLs that cannot take a path.
    pub fn new(config: GitterConfig) -> Result<Self, GitterError> {
        for (what, url) in [
            ("api_base", &config.api_base),
            ("stream_base", &config.stream_base),
        ] {
            if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
                return Err(GitterError::Config(format!(
                    "{what} is not an http(s) base URL"
                )));
            }
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            // Gitter never redirects API calls; following a redirect would carry the bearer
            // token somewhere else (oauth2 advises the same against SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(config.pool_idle_timeout);
        if let Some(t) = config.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let http = builder
            .build()
            .map_err(|e| GitterError::Config(format!("HTTP client: {}", e.without_url())))?;
        let oauth =
            GitterOAuth::new(&config.oauth, http.clone()).with_timeout(config.request_timeout);
        let limiter = RateLimiter::new(config.rate_limit);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
                oauth,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GitterConfig {
        &self.inner.config
    }

    /// The OAuth helper (authorize URL, code exchange).
    pub fn oauth(&self) -> &GitterOAuth {
        &self.inner.oauth
    }

    /// The per-token rate limiter shared by every request of this client.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `<base>/<segments...>`, each segment percent-encoded.
    pub(crate) fn url(base: &Url, segments: &[&str]) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn api(&self, segments: &[&str]) -> Url {
        Self::url(&self.inner.config.api_base, segments)
    }

    // ---- endpoints (§3) ----

    /// The token's user: `GET /v1/user/me` (§3.1). Accepts the object or the one-element
    /// array form, and falls back to `GET /v1/user` on servers without the `me` route.
    pub async fn current_user(&self, token: &Secret) -> Result<User, GitterError> {
        let me: Result<OneOrMany, _> = self.get(token, self.api(&["v1", "user", "me"])).await;
        let users = match me {
            Err(GitterError::NotFound { .. }) => self.get(token, self.api(&["v1", "user"])).await?,
            other => other?,
        };
        users
            .into_first()
            .ok_or_else(|| GitterError::Decode("empty user list".to_owned()))
    }

    /// The user's rooms: `GET /v1/user/:id/rooms` (§3.2), `me` when `user_id` is `None`.
    /// Includes rooms with `roomMember: false`; filtering is the caller's choice.
    pub async fn rooms(
        &self,
        token: &Secret,
        user_id: Option<&str>,
    ) -> Result<Vec<Room>, GitterError> {
        let user = user_id.unwrap_or("me");
        self.get(token, self.api(&["v1", "user", user, "rooms"]))
            .await
    }

    /// Resolves a uri to a room without joining: `POST /v1/rooms {uri}` (§3.3 step 1).
    pub async fn resolve_room(&self, token: &Secret, uri: &str) -> Result<Room, GitterError> {
        let body = serde_json::json!({ "uri": uri });
        // A POST, but it only looks a room up (and creating a room for a uri, where the server
        // does, makes the same room again): safe to repeat.
        self.send_json(
            token,
            Method::POST,
            self.api(&["v1", "rooms"]),
            Some(&body),
            Idempotency::Idempotent,
        )
        .await
    }

    /// Joins a room: `POST /v1/user/:userId/rooms {id}` (§3.3 step 2).
    pub async fn join_room(
        &self,
        token: &Secret,
        user_id: &str,
        room_id: &str,
    ) -> Result<Room, GitterError> {
        let body = serde_json::json!({ "id": room_id });
        let url = self.api(&["v1", "user", user_id, "rooms"]);
        // Joining a room one is in already changes nothing: safe to repeat.
        self.send_json(
            token,
            Method::POST,
            url,
            Some(&body),
            Idempotency::Idempotent,
        )
        .await
    }

    /// Leaves a room: `DELETE /v1/rooms/:roomId/users/:userId` (§3.4).
    pub async fn leave_room(
        &self,
        token: &Secret,
        room_id: &str,
        user_id: &str,
    ) -> Result<(), GitterError> {
        let url = self.api(&["v1", "rooms", room_id, "users", user_id]);
        self.request(token, Method::DELETE, url, None, Idempotency::Idempotent)
            .await
            .map(drop)
    }

    /// Every member of a room: `GET /v1/rooms/:roomId/users?skip=&limit=100` (§3.5), pages
    /// overlapping by 5, deduplicated, until a short page (or Gitter's skip cap of 5000).
    pub async fn room_members(
        &self,
        token: &Secret,
        room_id: &str,
    ) -> Result<Vec<User>, GitterError> {
        let mut members: Vec<User> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut skip = 0u32;
        loop {
            let mut url = self.api(&["v1", "rooms", room_id, "users"]);
            url.query_pairs_mut()
                .append_pair("skip", &skip.to_string())
                .append_pair("limit", &MEMBERS_PAGE.to_string());
            let page: Vec<User> = self.get(token, url).await?;
            let full = page.len() >= MEMBERS_PAGE as usize;
            for user in page {
                if seen.insert(user.id.clone()) {
                    members.push(user);
                }
            }
            if !full {
                return Ok(members);
            }
            skip += MEMBERS_STEP;
            if skip > MAX_MEMBERS_SKIP {
                tracing::warn!(
                    room = room_id,
                    count = members.len(),
                    "Gitter member list cut at {MAX_MEMBERS_SKIP} members"
                );
                return Ok(members);
            }
        }
    }

    /// A page of messages, oldest first: `GET /v1/rooms/:roomId/chatMessages` with
    /// `afterId` (the oldest `limit` newer than it), `beforeId` (the newest `limit` older
    /// than it) or neither (the newest `limit`), §3.6. `limit` is clamped to 1..=100.
    pub async fn messages(
        &self,
        token: &Secret,
        room_id: &str,
        after_id: Option<&str>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, GitterError> {
        let mut url = self.api(&["v1", "rooms", room_id, "chatMessages"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = after_id {
                q.append_pair("afterId", a);
            }
            if let Some(b) = before_id {
                q.append_pair("beforeId", b);
            }
            // 0 would mean "50" to the server; more than 100 is silently clamped there.
            q.append_pair("limit", &limit.clamp(1, 100).to_string());
            // Thread replies are left out of the list unless asked for (§3.6, §3.10). Whether
            // the stream carries them is not known (§5.1); the fake's does. Asking for them
            // keeps a catch-up from losing the replies posted while the stream was down.
            q.append_pair("includeThreads", "true");
        }
        let mut page: Vec<Message> = self.get(token, url).await?;
        // The server already answers oldest first; sorting by id (ObjectIds grow with time)
        // keeps that promise even for a server that does not.
        page.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(page)
    }

    /// Sends a message: `POST /v1/rooms/:roomId/chatMessages {text, status?, parentId?}`
    /// (§3.7; with `parent`, a reply in that message's thread).
    ///
    /// Not idempotent, so retried only after a rate-limit refusal or a failure to connect.
    /// After a time-out, a connection lost once the request may have gone out, a 5xx or an
    /// answer that cannot be read, the error comes back at once (`Transient`): the message may
    /// be on Gitter, and the caller must look (the core's reconciling send) before posting it
    /// again.
    pub async fn send_message(
        &self,
        token: &Secret,
        room_id: &str,
        text: &str,
        status: bool,
        parent: Option<&str>,
    ) -> Result<Message, GitterError> {
        let mut body = serde_json::json!({ "text": text });
        if status {
            body["status"] = true.into();
        }
        if let Some(parent) = parent {
            body["parentId"] = parent.into();
        }
        let url = self.api(&["v1", "rooms", room_id, "chatMessages"]);
        self.send_json(
            token,
            Method::POST,
            url,
            Some(&body),
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// Edits a message: `PUT /v1/rooms/:roomId/chatMessages/:id {text}` (§3.8; author only,
    /// within 10 minutes). The answer's body is not read: an edit that was made is done,
    /// whatever shape Gitter gives the message.
    pub async fn edit_message(
        &self,
        token: &Secret,
        room_id: &str,
        message_id: &str,
        text: &str,
    ) -> Result<(), GitterError> {
        let body = serde_json::json!({ "text": text });
        let url = self.api(&["v1", "rooms", room_id, "chatMessages", message_id]);
        // The same text twice is one edit.
        self.request(
            token,
            Method::PUT,
            url,
            Some(&body),
            Idempotency::Idempotent,
        )
        .await
        .map(drop)
    }

    /// Deletes a message: `DELETE /v1/rooms/:roomId/chatMessages/:id`, 204 (§3.9).
    pub async fn delete_message(
        &self,
        token: &Secret,
        room_id: &str,
        message_id: &str,
    ) -> Result<(), GitterError> {
        let url = self.api(&["v1", "rooms", room_id, "chatMessages", message_id]);
        self.request(token, Method::DELETE, url, None, Idempotency::Idempotent)
            .await
            .map(drop)
    }

    // ---- the pipeline ----

    async fn get<T: DeserializeOwned>(&self, token: &Secret, url: Url) -> Result<T, GitterError> {
        self.send_json(token, Method::GET, url, None, Idempotency::Idempotent)
            .await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        token: &Secret,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<T, GitterError> {
        let bytes = self.request(token, method, url, body, idempotency).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            // serde's message names the field and position, not the values.
            GitterError::Decode(format!("{e}"))
        })
    }

    /// Sends one request with rate limiting and retries (as far as `idempotency` allows); the
    /// body of a 2xx answer.
    async fn request(
        &self,
        token: &Secret,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<Vec<u8>, GitterError> {
        let key = TokenKey::of(token);
        let body: Option<Vec<u8>> = match body {
            Some(v) => {
                Some(serde_json::to_vec(v).map_err(|e| GitterError::Config(format!("body: {e}")))?)
            }
            None => None,
        };
        let path = url.path().to_owned();
        let result = with_retries(&self.inner.config.retry, idempotency, |attempt| {
            let (method, url, body) = (method.clone(), url.clone(), body.clone());
            async move {
                self.inner.limiter.acquire(key).await;
                self.attempt(token, key, method, url, body, attempt).await
            }
        })
        .await;
        if let Err(e) = &result {
            tracing::debug!(%method, path, error = %e, "Gitter request failed");
        }
        result
    }

    async fn attempt(
        &self,
        token: &Secret,
        key: TokenKey,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        attempt: u32,
    ) -> Result<Vec<u8>, AttemptError> {
        let path = url.path().to_owned();
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .header(ACCEPT, "application/json")
            // `bearer_auth` marks the header sensitive, so it is never printed by Debug.
            .bearer_auth(token.expose());
        req = match body {
            // A Vec body has a known length, so hyper sends Content-Length, never chunked.
            Some(b) => req.header(CONTENT_TYPE, "application/json").body(b),
            None if method != Method::GET => req.header(CONTENT_LENGTH, "0"),
            None => req,
        };
        // The whole request, body read included (reqwest carries the deadline into the body).
        if let Some(t) = self.inner.config.request_timeout {
            req = req.timeout(t);
        }
        let response = req
            .send()
            .await
            .map_err(|e| AttemptError::sending(&e, attempt))?;
        let status = response.status();
        let reset_wait = self.note_rate_headers(key, status, response.headers());
        if status.is_success() {
            return read_capped(response, self.inner.config.max_body_bytes)
                .await
                .map_err(|e| {
                    let error = e.into_gitter(attempt);
                    if let GitterError::TooLarge { .. } = error {
                        tracing::warn!(%method, path, "{error}");
                    }
                    error.into()
                });
        }
        let body = read_error_body(response).await;
        let error = GitterError::from_status(status.as_u16(), &body, attempt).scrub_token(token);
        let rate_limited = matches!(error, GitterError::RateLimited { .. });
        let wait =
            rate_limited.then(|| reset_wait.unwrap_or(self.inner.config.retry.rate_limited_wait));
        if let Some(w) = wait {
            tracing::warn!(
                status = status.as_u16(),
                wait_ms = w.as_millis(),
                "Gitter is rate-limiting this token; waiting for the window to reset"
            );
            self.inner.limiter.block_until(key, Instant::now() + w);
        }
        Err(AttemptError {
            error,
            wait,
            // The limiter refuses before any route runs (§8): nothing was stored.
            not_applied: rate_limited,
        })
    }

    /// Honours `X-RateLimit-Remaining`/`X-RateLimit-Reset` (§8): when nothing remains, the
    /// token's requests wait until the reset. Reset is an **absolute** Unix time in **ms**.
    /// Returns the wait until the reset, when the header is there.
    fn note_rate_headers(
        &self,
        key: TokenKey,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let wait = number("x-ratelimit-reset").map(|reset_ms| {
            let delta = Duration::from_millis(reset_ms.saturating_sub(crate::time::now_unix_ms()));
            // A skewed clock must not stall a token for hours: the window is the most the
            // server can ask for, plus a little slack.
            delta.min(self.inner.config.rate_limit.window + Duration::from_secs(1))
        });
        if number("x-ratelimit-remaining") == Some(0)
            && status != StatusCode::TOO_MANY_REQUESTS
            && let Some(w) = wait
        {
            tracing::debug!(wait_ms = w.as_millis(), "Gitter rate window used up");
            self.inner.limiter.block_until(key, Instant::now() + w);
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn retry(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(3600),
            rate_limited_wait: Duration::from_secs(10),
            jitter: false,
        }
    }

    fn server_error(attempt: u32) -> AttemptError {
        GitterError::from_status(503, b"", attempt).into()
    }

    /// Runs `with_retries` over scripted outcomes; returns the result, the number of calls
    /// and the virtual time spent.
    async fn run(
        config: RetryConfig,
        script: impl Fn(u32) -> Result<u32, AttemptError>,
    ) -> (Result<u32, GitterError>, u32, Duration) {
        run_with(config, Idempotency::Idempotent, script).await
    }

    async fn run_with(
        config: RetryConfig,
        idempotency: Idempotency,
        script: impl Fn(u32) -> Result<u32, AttemptError>,
    ) -> (Result<u32, GitterError>, u32, Duration) {
        let calls = AtomicU32::new(0);
        let t0 = Instant::now();
        let result = with_retries(&config, idempotency, |attempt| {
            calls.fetch_add(1, Ordering::Relaxed);
            let outcome = script(attempt);
            async move { outcome }
        })
        .await;
        (result, calls.load(Ordering::Relaxed), t0.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_cap() {
        let (result, calls, spent) =
            run(
                retry(6),
                |a| if a < 6 { Err(server_error(a)) } else { Ok(a) },
            )
            .await;
        assert_eq!(result.unwrap(), 6);
        assert_eq!(calls, 6);
        // 1 + 2 + 4 + 8 + 8 (capped).
        assert_eq!(spent, Duration::from_secs(23));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let (result, calls, spent) = run(retry(3), |a| Err(server_error(a))).await;
        assert!(matches!(
            result,
            Err(GitterError::Server { attempts: 3, .. })
        ));
        assert_eq!(calls, 3);
        assert_eq!(spent, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (result, calls, spent) = run(retry(5), |a| {
            Err(GitterError::from_status(401, b"", a).into())
        })
        .await;
        assert_eq!(
            result.unwrap_err().kind(),
            gitter_bridge_core::FailureKind::TokenRevoked
        );
        assert_eq!((calls, spent), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_waits_as_long_as_the_server_said() {
        let (result, _, spent) = run(retry(5), |a| {
            if a == 1 {
                Err(AttemptError {
                    error: GitterError::from_status(429, b"", a),
                    wait: Some(Duration::from_millis(42_500)),
                    not_applied: true,
                })
            } else {
                Ok(a)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(spent, Duration::from_millis(42_500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_outcome_is_unknown_is_not_repeated() {
        // A 5xx, a time-out, a connection lost after sending: the message may be stored.
        let (result, calls, spent) = run_with(retry(5), Idempotency::NotIdempotent, |a| {
            Err(server_error(a))
        })
        .await;
        assert_eq!(
            result.unwrap_err().kind(),
            gitter_bridge_core::FailureKind::Transient
        );
        assert_eq!((calls, spent), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_certainly_did_not_happen_is_repeated() {
        let (result, calls, _) = run_with(retry(5), Idempotency::NotIdempotent, |a| {
            if a < 3 {
                Err(AttemptError {
                    error: GitterError::from_status(429, b"", a),
                    wait: Some(Duration::from_secs(1)),
                    not_applied: true,
                })
            } else {
                Ok(a)
            }
        })
        .await;
        assert_eq!((result.unwrap(), calls), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_budget_bounds_the_waits() {
        let mut config = retry(100);
        config.max_elapsed = Duration::from_secs(10);
        let (result, calls, spent) = run(config, |a| Err(server_error(a))).await;
        assert!(result.is_err());
        // Waits 1, 2, 4 (7 s); the next (8 s) would pass 10 s.
        assert_eq!((calls, spent), (4, Duration::from_secs(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_one_extra_delay() {
        let mut config = retry(2);
        config.jitter = true;
        let (_, _, spent) = run(config, |a| Err(server_error(a))).await;
        assert!(
            spent >= Duration::from_secs(1) && spent < Duration::from_secs(2),
            "{spent:?}"
        );
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let base: Url = "https://gitter.im/api".parse().unwrap();
        let url = GitterClient::url(&base, &["v1", "rooms", "a/b", "chatMessages"]);
        assert_eq!(
            url.as_str(),
            "https://gitter.im/api/v1/rooms/a%2Fb/chatMessages"
        );
        let base: Url = "https://api.gitter.im/".parse().unwrap();
        assert_eq!(
            GitterClient::url(&base, &["v1", "user", "me"]).as_str(),
            "https://api.gitter.im/v1/user/me"
        );
    }
}
