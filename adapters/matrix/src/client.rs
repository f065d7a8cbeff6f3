//! The Client-Server API client, acting as the bot or (with `?user_id=`) as a ghost.
//!
//! * The as_token goes in `Authorization: Bearer` only, never in the query string, where it
//!   would end up in proxy and homeserver access logs.
//! * Identity assertion (spec: application-service-api, "Identity assertion"): a request for
//!   a ghost carries `?user_id=@ghost:server`; requests as the bot carry none (the homeserver
//!   assumes the `sender_localpart` user).
//! * Path parameters (room ids, user ids, transaction ids) are percent-encoded as single
//!   segments: `!room:server` and `@user:server` contain characters a path may not carry.
//! * 429 / `M_LIMIT_EXCEEDED`, 5xx and connection errors are retried with exponential backoff,
//!   honouring `retry_after_ms` or `Retry-After`, a bounded number of times ([`RetryPolicy`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use gitter_bridge_core::{
    BridgeInfo, MatrixContent, NewPortal, OwnedEventId, OwnedRoomId, OwnedUserId, Secret,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, header};
use ruma::UserId;
use serde_json::{Value, json};
use url::Url;

use crate::error::{MatrixError, PingError};

/// How failed calls are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Longest wait honoured from `retry_after_ms` / `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// How to reach the homeserver.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The homeserver's Client-Server base URL (may contain a path).
    pub homeserver_url: Url,
    /// The registration's as_token.
    pub as_token: Secret,
    /// The bot's user id (`@<sender_localpart>:<server>`); requests as the bot are not
    /// masqueraded.
    pub bot: OwnedUserId,
    /// The registration's `id` (for the ping).
    pub appservice_id: String,
    /// Time limit of one attempt.
    pub request_timeout: Duration,
    /// Time limit of one connection attempt.
    pub connect_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Downloads of the images of Gitter messages ([`MatrixCall`]`::MirrorMedia`); `None`:
    /// none are made (each fails for good, and its link stands in).
    pub fetch: Option<crate::fetch::FetchConfig>,
}

impl ClientConfig {
    /// A config with default time limits and retries.
    pub fn new(
        homeserver_url: Url,
        as_token: Secret,
        bot: OwnedUserId,
        appservice_id: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            homeserver_url,
            as_token,
            bot,
            appservice_id: appservice_id.into(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            fetch: None,
        }
    }
}

/// The Client-Server API client. Cheap to clone.
#[derive(Clone)]
pub struct MatrixClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    as_token: Secret,
    bot: OwnedUserId,
    appservice_id: String,
    retry: RetryPolicy,
    fetcher: Option<crate::fetch::Fetcher>,
}

impl fmt::Debug for MatrixClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixClient")
            .field("homeserver", &self.inner.base)
            .field("bot", &self.inner.bot)
            .finish_non_exhaustive()
    }
}

/// Characters left as they are in a path segment: RFC 3986 "unreserved".
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// One request, described before it is sent (so a retry can send it again).
struct Call {
    endpoint: &'static str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Body,
    retry: bool,
}

enum Body {
    None,
    Json(Value),
    Raw { bytes: Bytes, content_type: String },
}

impl Call {
    fn new(endpoint: &'static str, method: Method, path: String) -> Call {
        Call {
            endpoint,
            method,
            path,
            query: Vec::new(),
            body: Body::None,
            retry: true,
        }
    }
    fn json(mut self, body: Value) -> Call {
        self.body = Body::Json(body);
        self
    }
    fn query(mut self, key: &'static str, value: impl Into<String>) -> Call {
        self.query.push((key, value.into()));
        self
    }
}

/// The homeserver's versions (`GET /_matrix/client/versions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// Supported spec versions (`v1.11`, ...).
    pub versions: Vec<String>,
    /// Unstable features that are switched on.
    pub unstable_features: Vec<String>,
}

impl MatrixClient {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<MatrixClient, MatrixError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("gitter-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MatrixError::Misuse(format!("cannot build the HTTP client: {e}")))?;
        let fetcher = config
            .fetch
            .map(crate::fetch::Fetcher::new)
            .transpose()
            .map_err(|e| MatrixError::Misuse(e.to_string()))?;
        Ok(MatrixClient {
            inner: Arc::new(Inner {
                http,
                base: config
                    .homeserver_url
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                as_token: config.as_token,
                bot: config.bot,
                appservice_id: config.appservice_id,
                retry: config.retry,
                fetcher,
            }),
        })
    }

    /// The bot's user id.
    pub fn bot(&self) -> &OwnedUserId {
        &self.inner.bot
    }

    /// Adds `?user_id=` when `user` is not the bot.
    fn as_user(&self, call: Call, user: &UserId) -> Call {
        if user == self.inner.bot {
            call
        } else {
            call.query("user_id", user.as_str())
        }
    }

    // ---------------------------------------------------------------- startup checks

    /// `GET /_matrix/client/versions` (no auth needed): is the homeserver there at all?
    pub async fn versions(&self) -> Result<Versions, MatrixError> {
        self.fetch_versions(true).await
    }

    async fn fetch_versions(&self, retry: bool) -> Result<Versions, MatrixError> {
        let mut call = Call::new(
            "versions",
            Method::GET,
            "/_matrix/client/versions".to_owned(),
        );
        call.retry = retry;
        let v = self.call(call).await?;
        let strings = |key: &str| -> Vec<String> {
            v.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let unstable_features = v
            .get("unstable_features")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Versions {
            versions: strings("versions"),
            unstable_features,
        })
    }

    /// `GET /_matrix/client/v3/account/whoami` with the as_token (as the bot).
    pub async fn whoami(&self) -> Result<OwnedUserId, MatrixError> {
        let v = self
            .call(Call::new(
                "whoami",
                Method::GET,
                "/_matrix/client/v3/account/whoami".to_owned(),
            ))
            .await?;
        parse_id(&v, "user_id", "whoami")
    }

    /// The startup check of the bridge -> homeserver direction: the homeserver answers, knows
    /// the as_token, and the token belongs to the configured bot. A
    /// [`MatrixError::BadAsToken`] or [`MatrixError::WrongSender`] is fatal
    /// ([`MatrixError::is_fatal`]). The first request is not retried: a homeserver that is
    /// still starting is the caller's to wait for, on its own schedule.
    pub async fn check_homeserver(&self) -> Result<Versions, MatrixError> {
        let versions = self.fetch_versions(false).await?;
        let me = self.whoami().await?;
        if me != self.inner.bot {
            return Err(MatrixError::WrongSender {
                expected: self.inner.bot.to_string(),
                actual: me.to_string(),
            });
        }
        Ok(versions)
    }

    /// `POST /_matrix/client/v1/appservice/{id}/ping`: the homeserver calls the bridge's
    /// `/_matrix/app/v1/ping` and reports the round trip. Tests the homeserver -> bridge
    /// direction, so call it once the AS listener is up. Not retried: each failure says what
    /// the operator has to fix ([`PingError`]).
    pub async fn ping(&self, transaction_id: &str) -> Result<Duration, PingError> {
        let path = format!(
            "/_matrix/client/v1/appservice/{}/ping",
            encode_segment(&self.inner.appservice_id)
        );
        let mut call = Call::new("appservice ping", Method::POST, path)
            .json(json!({ "transaction_id": transaction_id }));
        call.retry = false;
        let (status, body, retry_after) = self.send_raw(&call).await?;
        if status.is_success() {
            let ms = body.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
            return Ok(Duration::from_millis(ms));
        }
        let errcode = body.get("errcode").and_then(Value::as_str).unwrap_or("");
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Err(match errcode {
            "M_URL_NOT_SET" => PingError::UrlNotSet,
            "M_CONNECTION_FAILED" => PingError::ConnectionFailed { detail: message },
            "M_BAD_STATUS" => PingError::BadStatus {
                status: body
                    .get("status")
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                body: body
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect(),
            },
            "M_FORBIDDEN" => PingError::WrongId {
                id: self.inner.appservice_id.clone(),
                message,
            },
            "M_UNRECOGNIZED" => PingError::Unsupported,
            _ if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED => {
                PingError::Unsupported
            }
            _ => PingError::Matrix(classify(call.endpoint, status, &body, retry_after)),
        })
    }

    // ---------------------------------------------------------------- accounts and profiles

    /// Registers a ghost (`m.login.application_service`, `inhibit_login` so no device or
    /// token is created; spec v1.17 servers without legacy auth require it).
    /// `M_USER_IN_USE` means it already exists: success.
    pub async fn register_ghost(&self, user: &UserId) -> Result<(), MatrixError> {
        let call = Call::new(
            "register",
            Method::POST,
            "/_matrix/client/v3/register".to_owned(),
        )
        .json(json!({
            "type": "m.login.application_service",
            "username": user.localpart(),
            "inhibit_login": true,
        }));
        match self.call(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `PUT /profile/{userId}/displayname` as that user.
    pub async fn set_display_name(&self, user: &UserId, name: &str) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/displayname",
            encode_segment(user.as_str())
        );
        let call =
            Call::new("set displayname", Method::PUT, path).json(json!({ "displayname": name }));
        self.call(self.as_user(call, user)).await.map(drop)
    }

    /// `GET /profile/{userId}`: the display name and avatar the homeserver has (either may
    /// be missing).
    pub async fn profile(
        &self,
        user: &UserId,
    ) -> Result<(Option<String>, Option<String>), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/profile/{}",
            encode_segment(user.as_str())
        );
        let v = self
            .call(self.as_user(Call::new("get profile", Method::GET, path), user))
            .await?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok((field("displayname"), field("avatar_url")))
    }

    /// `PUT /profile/{userId}/avatar_url` as that user (`mxc` from [`Self::upload_media`]).
    pub async fn set_avatar_url(&self, user: &UserId, mxc: &str) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/avatar_url",
            encode_segment(user.as_str())
        );
        let call =
            Call::new("set avatar_url", Method::PUT, path).json(json!({ "avatar_url": mxc }));
        self.call(self.as_user(call, user)).await.map(drop)
    }

    /// `POST /_matrix/media/v3/upload` as `user`; returns the `mxc://` URI.
    pub async fn upload_media(
        &self,
        user: &UserId,
        bytes: Bytes,
        content_type: &str,
        filename: Option<&str>,
    ) -> Result<String, MatrixError> {
        let mut call = Call::new(
            "upload",
            Method::POST,
            "/_matrix/media/v3/upload".to_owned(),
        );
        call.body = Body::Raw {
            bytes,
            content_type: content_type.to_owned(),
        };
        if let Some(name) = filename {
            call = call.query("filename", name);
        }
        let v = self.call(self.as_user(call, user)).await?;
        v.get("content_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| MatrixError::BadResponse {
                endpoint: "upload",
                detail: "no `content_uri`".to_owned(),
            })
    }

    /// `GET /_matrix/client/v1/media/download/{server}/{id}` as the bot (authenticated
    /// media, spec v1.11 "Content repository"): the answer, whose body the caller streams
    /// and bounds. `time_limit` covers the whole download, body included (a file may be far
    /// larger than any JSON answer, so the client's own limit does not fit it). Tried once: a
    /// person waits on the other end and can ask again.
    pub async fn download_media(
        &self,
        server: &str,
        media_id: &str,
        time_limit: Duration,
    ) -> Result<reqwest::Response, MatrixError> {
        const ENDPOINT: &str = "media download";
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}/{}",
            self.inner.base,
            encode_segment(server),
            encode_segment(media_id)
        );
        let response = self
            .inner
            .http
            .get(url)
            .bearer_auth(self.inner.as_token.expose())
            .timeout(time_limit)
            .send()
            .await
            .map_err(|source| MatrixError::Network {
                endpoint: ENDPOINT,
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // An error answer is small JSON; read a bounded piece of it to say why.
        let mut response = response;
        let mut bytes = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > 64 * 1024 {
                break;
            }
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(classify(ENDPOINT, status, &body, None))
    }

    /// Downloads a file from the web (within the client's [`crate::fetch::FetchConfig`]) and
    /// uploads it as the bot; returns the upload.
    pub async fn mirror_media(
        &self,
        url: &str,
        name: &str,
    ) -> Result<gitter_bridge_core::Uploaded, MatrixError> {
        let download = |source| MatrixError::Download {
            url: url.to_owned(),
            source,
        };
        let fetcher = self.inner.fetcher.as_ref().ok_or_else(|| {
            download(crate::fetch::FetchError::Refused(
                "this bridge downloads no images".to_owned(),
            ))
        })?;
        let (bytes, content_type) = fetcher.fetch(url).await.map_err(download)?;
        // Only pictures are put on the homeserver (images and avatars are all it fetches).
        if !content_type
            .trim()
            .to_ascii_lowercase()
            .starts_with("image/")
        {
            return Err(download(crate::fetch::FetchError::Refused(format!(
                "{content_type} is not an image"
            ))));
        }
        let size = bytes.len() as u64;
        let mxc = self
            .upload_media(&self.inner.bot, bytes, &content_type, Some(name))
            .await?;
        Ok(gitter_bridge_core::Uploaded {
            mxc,
            content_type,
            size,
        })
    }

    // ---------------------------------------------------------------- rooms

    /// `POST /createRoom` as `creator`: a private room (`preset: private_chat`) with name,
    /// topic and invites. `power_users` go into `power_level_content_override.users`; the
    /// creator is left out even if listed, because room version 12 gives creators implicit
    /// top power and Synapse 1.163 refuses ("Creator ... must not appear in content.users")
    /// *after* creating an orphan room.
    ///
    /// The room is created with `room_alias_name` (the portal's alias), which makes the call
    /// idempotent: createRoom has no transaction id, so a retry after a lost answer would make
    /// a second room. With the alias, that retry gets `M_ROOM_IN_USE`, and the alias (on the
    /// bot's server) names the room the first try made. A one-to-one portal is created
    /// `is_direct`; the bridge info goes into the initial state ([`bridge_state`]). No
    /// `m.room.encryption` is asked for: the bridge cannot read encrypted events (a homeserver
    /// that encrypts new rooms by default still can, and the core then says so in the room).
    pub async fn create_room(&self, new: &NewPortal) -> Result<OwnedRoomId, MatrixError> {
        self.create_with(new, Some(&new.alias)).await
    }

    async fn create_with(
        &self,
        new: &NewPortal,
        alias: Option<&str>,
    ) -> Result<OwnedRoomId, MatrixError> {
        let NewPortal {
            creator,
            name,
            topic,
            invite,
            power_users,
            is_direct,
            bridge,
            ..
        } = new;
        let mut body = json!({
            "preset": "private_chat",
            "name": name,
            "invite": invite,
        });
        if *is_direct {
            // Spec: createRoom `is_direct`: the invitations carry it, so the owner's client
            // lists the room with their direct chats.
            body["is_direct"] = json!(true);
        }
        // Synapse would publish the alias as the room's address (`m.room.canonical_alias`)
        // and, when an application service deletes the alias later, leave that event
        // pointing at nothing. An empty canonical alias in the initial state keeps the alias
        // a private creation marker.
        let mut initial_state = vec![json!({
            "type": "m.room.canonical_alias",
            "state_key": "",
            "content": {},
        })];
        if let Some(bridge) = bridge {
            initial_state.extend(bridge_state(bridge));
        }
        body["initial_state"] = json!(initial_state);
        if let Some(alias) = alias {
            body["room_alias_name"] = json!(alias);
        }
        if !topic.is_empty() {
            body["topic"] = json!(topic);
        }
        let users: BTreeMap<&str, i64> = power_users
            .iter()
            .filter(|(user, _)| user.as_str() != creator.as_str())
            .map(|(user, level)| (user.as_str(), *level))
            .collect();
        if !users.is_empty() {
            // Synapse merges the override key by key, so `users` replaces the default map
            // (which in older room versions would have held the creator): only send it when
            // there is someone to list.
            body["power_level_content_override"] = json!({ "users": users });
        }
        let call = Call::new(
            "createRoom",
            Method::POST,
            "/_matrix/client/v3/createRoom".to_owned(),
        )
        .json(body);
        match self.call(self.as_user(call, creator)).await {
            Ok(v) => parse_id(&v, "room_id", "createRoom"),
            Err(MatrixError::Refused { errcode, .. })
                if errcode == "M_ROOM_IN_USE"
                    && let Some(alias) = alias =>
            {
                let full = format!("#{alias}:{}", self.bot().server_name());
                tracing::info!(alias = %full, "createRoom: the alias exists, an earlier try made the room");
                let room = self.resolve_alias(&full).await?;
                // The earlier try may have stopped between the alias and the invites (Synapse
                // makes the alias first): invite again; an invitee already there is fine.
                for user in invite {
                    if let Err(e) = self.invite(&room, creator, user).await {
                        tracing::debug!(error = %e, "re-invite after createRoom found by alias");
                    }
                }
                Ok(room)
            }
            Err(MatrixError::Refused { errcode, .. })
                if errcode == "M_EXCLUSIVE" && alias.is_some() =>
            {
                // A registration from before portal aliases: the homeserver refuses an alias
                // outside the bridge's namespace. The room is still created, without the
                // marker that makes a retry safe; the operator should regenerate the file.
                tracing::warn!(
                    "the homeserver refused the portal alias (M_EXCLUSIVE): the registration \
                     does not claim `#_gitter_portal_*`; run `gitter-bridge generate-registration` \
                     again and restart the homeserver. Creating the room without it."
                );
                Box::pin(self.create_with(new, None)).await
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /directory/room/{roomAlias}`: the room an alias points to.
    pub async fn resolve_alias(&self, alias: &str) -> Result<OwnedRoomId, MatrixError> {
        let call = Call::new(
            "directory",
            Method::GET,
            format!(
                "/_matrix/client/v3/directory/room/{}",
                encode_segment(alias)
            ),
        );
        let v = self.call(call).await?;
        parse_id(&v, "room_id", "directory")
    }

    /// `DELETE /directory/room/{roomAlias}` as the bot; an alias already gone is success
    /// (a retry after a lost answer).
    pub async fn delete_alias(&self, alias: &str) -> Result<(), MatrixError> {
        let call = Call::new(
            "directory",
            Method::DELETE,
            format!(
                "/_matrix/client/v3/directory/room/{}",
                encode_segment(alias)
            ),
        );
        let bot = self.bot().clone();
        match self.call(self.as_user(call, &bot)).await {
            Ok(_) => Ok(()),
            Err(MatrixError::Refused { errcode, .. }) if errcode == "M_NOT_FOUND" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /rooms/{roomId}/invite` as `sender`.
    pub async fn invite(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        target: &UserId,
    ) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/invite",
            encode_segment(room.as_str())
        );
        let call = Call::new("invite", Method::POST, path).json(json!({ "user_id": target }));
        self.call(self.as_user(call, sender)).await.map(drop)
    }

    /// `POST /rooms/{roomId}/join` as `user`.
    pub async fn join(&self, room: &OwnedRoomId, user: &UserId) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/join",
            encode_segment(room.as_str())
        );
        let call = Call::new("join", Method::POST, path).json(json!({}));
        self.call(self.as_user(call, user)).await.map(drop)
    }

    /// `POST /rooms/{roomId}/leave` as `user`.
    pub async fn leave(
        &self,
        room: &OwnedRoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/leave",
            encode_segment(room.as_str())
        );
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        let call = Call::new("leave", Method::POST, path).json(body);
        self.call(self.as_user(call, user)).await.map(drop)
    }

    /// `POST /rooms/{roomId}/kick` as `sender`.
    pub async fn kick(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        target: &UserId,
        reason: &str,
    ) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/kick",
            encode_segment(room.as_str())
        );
        let mut body = json!({ "user_id": target });
        if !reason.is_empty() {
            body["reason"] = json!(reason);
        }
        let call = Call::new("kick", Method::POST, path).json(body);
        self.call(self.as_user(call, sender)).await.map(drop)
    }

    /// `PUT /rooms/{roomId}/send/m.room.message/{txnId}` as `sender`. The homeserver
    /// deduplicates on the transaction id (per as_token), so a retried send returns the same
    /// event id. `ts` asks for that `origin_server_ts` (timestamp massaging, spec v1.3).
    pub async fn send_message(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        txn_id: &str,
        content: &MatrixContent,
        ts: Option<u64>,
    ) -> Result<OwnedEventId, MatrixError> {
        self.send_event(
            room,
            sender,
            "m.room.message",
            txn_id,
            &message_content(content),
            ts,
        )
        .await
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` with any content.
    pub async fn send_event(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        event_type: &str,
        txn_id: &str,
        content: &Value,
        ts: Option<u64>,
    ) -> Result<OwnedEventId, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}",
            encode_segment(room.as_str()),
            encode_segment(event_type),
            encode_segment(txn_id)
        );
        let mut call = Call::new("send", Method::PUT, path).json(content.clone());
        if let Some(ts) = ts {
            call = call.query("ts", ts.to_string());
        }
        let v = self.call(self.as_user(call, sender)).await?;
        parse_id(&v, "event_id", "send")
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}` as `sender`. Setting the same
    /// state again is harmless, so a retry needs no transaction id.
    pub async fn put_state(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        event_type: &str,
        state_key: &str,
        content: &Value,
    ) -> Result<OwnedEventId, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            encode_segment(room.as_str()),
            encode_segment(event_type),
            encode_segment(state_key)
        );
        let call = Call::new("state", Method::PUT, path).json(content.clone());
        let v = self.call(self.as_user(call, sender)).await?;
        parse_id(&v, "event_id", "state")
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` as `sender`.
    pub async fn redact(
        &self,
        room: &OwnedRoomId,
        sender: &UserId,
        event_id: &OwnedEventId,
        txn_id: &str,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{}",
            encode_segment(room.as_str()),
            encode_segment(event_id.as_str()),
            encode_segment(txn_id)
        );
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        let call = Call::new("redact", Method::PUT, path).json(body);
        let v = self.call(self.as_user(call, sender)).await?;
        parse_id(&v, "event_id", "redact")
    }

    /// The joined and invited members of `room`, seen by `as_user` (`GET /rooms/{id}/members`,
    /// filtered here: the endpoint takes only one `membership` filter).
    pub async fn room_members(
        &self,
        room: &OwnedRoomId,
        as_user: &UserId,
    ) -> Result<Vec<OwnedUserId>, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/members",
            encode_segment(room.as_str())
        );
        let call = Call::new("members", Method::GET, path);
        let v = self.call(self.as_user(call, as_user)).await?;
        let chunk =
            v.get("chunk")
                .and_then(Value::as_array)
                .ok_or_else(|| MatrixError::BadResponse {
                    endpoint: "members",
                    detail: "no `chunk` array".to_owned(),
                })?;
        let mut members: Vec<OwnedUserId> = chunk
            .iter()
            .filter(|ev| {
                matches!(
                    ev.pointer("/content/membership").and_then(Value::as_str),
                    Some("join" | "invite")
                )
            })
            .filter_map(|ev| ev.get("state_key")?.as_str())
            .filter_map(|s| OwnedUserId::try_from(s.to_owned()).ok())
            .collect();
        members.sort();
        members.dedup();
        Ok(members)
    }

    // ---------------------------------------------------------------- transport

    /// Sends `call`, retrying transient failures per the [`RetryPolicy`].
    async fn call(&self, call: Call) -> Result<Value, MatrixError> {
        if !call.retry {
            return self.send_once(&call).await;
        }
        let policy = &self.inner.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let max_retry_after = policy.max_retry_after;
        (|| self.send_once(&call))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(is_retryable)
            .adjust(|e, backoff| {
                // `None` means the retries are used up: keep it so.
                let backoff = backoff?;
                match e {
                    MatrixError::RateLimited {
                        retry_after: Some(wait),
                        ..
                    } => Some((*wait).min(max_retry_after)),
                    _ => Some(backoff),
                }
            })
            .notify(|e, delay| {
                tracing::warn!(endpoint = call.endpoint, error = %e, delay_ms = delay.as_millis() as u64, "retrying a homeserver call");
            })
            .await
    }

    async fn send_once(&self, call: &Call) -> Result<Value, MatrixError> {
        let (status, body, retry_after) = self.send_raw(call).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify(call.endpoint, status, &body, retry_after))
        }
    }

    /// One attempt: status, JSON body (`Null` when empty or not JSON) and `Retry-After`.
    async fn send_raw(
        &self,
        call: &Call,
    ) -> Result<(StatusCode, Value, Option<Duration>), MatrixError> {
        let url = format!("{}{}", self.inner.base, call.path);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .bearer_auth(self.inner.as_token.expose());
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        request = match &call.body {
            Body::None => request,
            Body::Json(v) => request.json(v),
            Body::Raw {
                bytes,
                content_type,
            } => request
                .header(header::CONTENT_TYPE, content_type)
                .body(bytes.clone()),
        };
        let network = |source: reqwest::Error| MatrixError::Network {
            endpoint: call.endpoint,
            source,
        };
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A bounded read: every answer the bridge reads from the homeserver is small JSON
        // (a member list of a portal is the largest); a misbehaving server or proxy must not
        // make the bridge hold an endless body (the Gitter side once took 1 GiB).
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(MatrixError::BadResponse {
                    endpoint: call.endpoint,
                    detail: format!(
                        "answer larger than {} MiB: not read",
                        MAX_ANSWER_BYTES >> 20
                    ),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) if status.is_success() => {
                    return Err(MatrixError::BadResponse {
                        endpoint: call.endpoint,
                        detail: format!("not JSON: {e}"),
                    });
                }
                // An error page from a proxy: the status alone classifies it.
                Err(_) => Value::Null,
            }
        };
        Ok((status, body, retry_after))
    }
}

/// The largest homeserver answer the client reads.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// A portal's bridge info (MSC2346): `m.bridge`, and the same content as
/// `uk.half-shot.bridge` for clients that know only the older name. The state key names the
/// bridge and the Gitter room, so one room could carry the state of several bridges.
fn bridge_state(bridge: &BridgeInfo) -> [Value; 2] {
    let web = bridge.web_url.trim_end_matches('/');
    let mut channel = json!({
        "id": bridge.room_id.as_str(),
        "displayname": bridge.room_name,
    });
    if let Some(uri) = &bridge.room_uri {
        channel["external_url"] = json!(format!("{web}/{uri}"));
    }
    let content = json!({
        "bridgebot": bridge.bot,
        "creator": bridge.bot,
        "protocol": {
            "id": "gitter",
            "displayname": "Gitter",
            "external_url": web,
        },
        "channel": channel,
    });
    let state_key = format!("gitter-bridge://gitter/{}", bridge.room_id.as_str());
    ["m.bridge", "uk.half-shot.bridge"]
        .map(|kind| json!({ "type": kind, "state_key": state_key, "content": content }))
}

/// The content of an `m.room.message` the bridge sends.
pub fn message_content(content: &MatrixContent) -> Value {
    let mut v = json!({
        "msgtype": content.msgtype.as_str(),
        "body": content.body,
    });
    if let Some(html) = &content.formatted_body {
        v["format"] = json!("org.matrix.custom.html");
        v["formatted_body"] = json!(html);
    }
    // Spec: "User and room mentions" (intentional mentions).
    if let Some(mentions) = &content.mentions {
        // Nobody mentioned is `{}`: no ping, and nothing a client must read.
        let mut m = json!({});
        if !mentions.user_ids.is_empty() {
            m["user_ids"] = json!(mentions.user_ids);
        }
        if mentions.room {
            m["room"] = json!(true);
        }
        v["m.mentions"] = m;
    }
    if let Some(thread) = &content.thread {
        v["m.relates_to"] = thread_relation(thread);
    }
    v
}

/// The content of an `m.image` the bridge sends (spec: "m.image"), in its thread when it
/// has one (as [`message_content`] writes it).
pub fn image_content(image: &gitter_bridge_core::ImageMessage) -> Value {
    let mut v = json!({
        "msgtype": "m.image",
        "body": image.name,
        "url": image.mxc,
        "info": {},
        // An image says nothing of anyone: no one is pinged by it.
        "m.mentions": {},
    });
    if let Some(mimetype) = &image.mimetype {
        v["info"]["mimetype"] = json!(mimetype);
    }
    if let Some(size) = image.size {
        v["info"]["size"] = json!(size);
    }
    if let Some(thread) = &image.thread {
        v["m.relates_to"] = thread_relation(thread);
    }
    v
}

/// `m.relates_to` of a message in a thread (spec: "Threading"); the fallback reply is for
/// clients without threads.
fn thread_relation(thread: &gitter_bridge_core::ThreadRef) -> Value {
    json!({
        "rel_type": "m.thread",
        "event_id": thread.root,
        "is_falling_back": true,
        "m.in_reply_to": { "event_id": thread.in_reply_to },
    })
}

/// The content of an edit (spec: "Event replacements"): the new content in `m.new_content`
/// (without the original's thread: a replacement's relation is the replacement), and a
/// `* `-prefixed fallback for clients without edits. Mentions are in the new content only,
/// so an edit does not notify again.
pub fn replacement_content(target: &ruma::OwnedEventId, content: &MatrixContent) -> Value {
    let new = MatrixContent {
        thread: None,
        ..content.clone()
    };
    let new_content = message_content(&new);
    let mut v = json!({
        "msgtype": content.msgtype.as_str(),
        "body": format!("* {}", content.body),
        "m.new_content": new_content,
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
        "m.mentions": {},
    });
    if let Some(html) = &content.formatted_body {
        v["format"] = json!("org.matrix.custom.html");
        v["formatted_body"] = json!(format!("* {html}"));
    }
    v
}

fn is_retryable(e: &MatrixError) -> bool {
    matches!(
        e,
        MatrixError::RateLimited { .. } | MatrixError::Server { .. } | MatrixError::Network { .. }
    )
}

/// The error for a non-2xx answer.
fn classify(
    endpoint: &'static str,
    status: StatusCode,
    body: &Value,
    retry_after_header: Option<Duration>,
) -> MatrixError {
    let errcode = body
        .get("errcode")
        .and_then(Value::as_str)
        .unwrap_or("M_UNKNOWN")
        .to_owned();
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(500)
        .collect::<String>();
    if status == StatusCode::UNAUTHORIZED
        && matches!(errcode.as_str(), "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN")
    {
        return MatrixError::BadAsToken { errcode };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || errcode == "M_LIMIT_EXCEEDED" {
        // `retry_after_ms` in the body (spec) wins; `Retry-After` (seconds) is the v1.10+ way.
        let retry_after = body
            .get("retry_after_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .or(retry_after_header);
        return MatrixError::RateLimited {
            endpoint,
            retry_after,
        };
    }
    if status.is_server_error() {
        return MatrixError::Server {
            endpoint,
            status: status.as_u16(),
            errcode,
            message,
        };
    }
    MatrixError::Refused {
        endpoint,
        status: status.as_u16(),
        errcode,
        message,
    }
}

fn parse_id<T: TryFrom<String>>(
    v: &Value,
    key: &str,
    endpoint: &'static str,
) -> Result<T, MatrixError> {
    let s = v
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::BadResponse {
            endpoint,
            detail: format!("no `{key}`"),
        })?;
    T::try_from(s.to_owned()).map_err(|_| MatrixError::BadResponse {
        endpoint,
        detail: format!("`{key}` is not a valid id: {s:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn path_segments_are_fully_encoded() {
        assert_eq!(encode_segment("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(
            encode_segment("@gitter_bob:example.org"),
            "%40gitter_bob%3Aexample.org"
        );
        assert_eq!(
            encode_segment("$ev/with?odd#chars"),
            "%24ev%2Fwith%3Fodd%23chars"
        );
        assert_eq!(encode_segment("gb42"), "gb42");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
