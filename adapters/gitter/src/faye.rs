//! Gitter's realtime API: a Bayeux client over long-polling (`docs/gitter-api.md` §6).
//!
//! **One client per token carries every subscription made with it** ([`FayeManager`]): the
//! rooms a user reads for the bridge (`chatMessages`, `users` and the room itself, §6.3) and
//! that user's own channels (`user/:id/rooms`, `token/:token`). A Faye server holds a
//! long-poll `/meta/connect` open until it has something to deliver, so one connection per
//! token replaces one HTTP stream per room.
//!
//! What the client reports is what the per-room HTTP streams report ([`StreamEvent`]), plus
//! [`StreamEvent::Realtime`] for everything else Faye carries, so the core does not know which
//! transport it reads. A room is `Connected` once its `chatMessages` subscription succeeds on
//! a fresh client; whenever the client may have missed something (a failed connect, an
//! unknown client, advice to handshake again, a gap in the `ext.c` sequence) every room is
//! reported `Disconnected`, the client handshakes again and subscribes anew, and each room's
//! new `Connected` makes the core catch up from its cursor by REST (§5.2): Bayeux delivery is
//! at-most-once too.
//!
//! Deadlines: a handshake or subscribe answers within [`FayeConfig::answer_timeout`]; a
//! connect within the server's advised hold (`advice.timeout`) plus
//! [`FayeConfig::connect_margin`]. Answers are read to at most [`FayeConfig::max_body`].
//! Reconnects back off exponentially with jitter; a 401 at handshake (the token is invalid,
//! with advice `none`) stops the client for good.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitter_bridge_core::{
    EffectOutput, EffectResult, FailureKind, GitterMessageId, GitterRoomId, GitterUserId,
    OwnedUserId, RealtimeEvent, Secret, StreamCall,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use url::Url;

use crate::client::read_capped;
use crate::models::{Message, Room, User};
use crate::ratelimit::TokenKey;
use crate::stream::StreamEvent;

/// Settings of the realtime client.
#[derive(Clone, Debug, PartialEq)]
pub struct FayeConfig {
    /// The Bayeux endpoint, e.g. `https://ws.gitter.im/bayeux`.
    pub url: Url,
    /// Time limit of a handshake, subscribe or unsubscribe, from sending to the last byte.
    pub answer_timeout: Duration,
    /// Added to the server's advised long-poll hold to make a connect's time limit.
    pub connect_margin: Duration,
    /// The hold assumed until the server advises one (Gitter's `fayeTimeout` is 120 s, §6.1).
    pub default_hold: Duration,
    /// Largest answer read, in bytes.
    pub max_body: usize,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
}

impl FayeConfig {
    /// The defaults for this endpoint.
    pub fn new(url: Url) -> Self {
        FayeConfig {
            url,
            answer_timeout: Duration::from_secs(30),
            connect_margin: Duration::from_secs(30),
            default_hold: Duration::from_secs(120),
            max_body: 8 << 20,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(300),
        }
    }

    fn backoff(&self) -> backon::ExponentialBackoff {
        crate::stream::reconnect_backoff(self.reconnect_min, self.reconnect_max)
    }
}

// ---- the wire (pure) ----

/// One Bayeux message, either way (Bayeux 1.0 §3; only the fields Gitter uses).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BayeuxMessage {
    /// The channel.
    pub channel: String,
    /// The client, after the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The request id, echoed in the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether a meta request succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successful: Option<bool>,
    /// `"<code>::<args>::<message>"`; Gitter writes `"401::Invalid access token"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<Advice>,
    /// The channel of a subscribe or unsubscribe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// A data message's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Extensions: `token` on the handshake, `snapshot` on a subscribe, `c` on deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<Value>,
    /// `long-polling` on a connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_type: Option<String>,
    /// `1.0` on the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The handshake's offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_connection_types: Option<Vec<String>>,
}

/// A server's advice (Bayeux 1.0 §3.11).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advice {
    /// `retry`, `handshake` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<String>,
    /// Wait this long (ms) before the next connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// The server holds a connect this long (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The status code of a Bayeux error string (`"401::Invalid access token"` gives 401).
pub fn error_code(error: &str) -> Option<u16> {
    error.split("::").next()?.trim().parse().ok()
}

/// The channels Gitter delivers on, as the client tells them apart (§6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `/api/v1/rooms/:id/chatMessages`.
    Messages(GitterRoomId),
    /// `/api/v1/rooms/:id/users`.
    Members(GitterRoomId),
    /// `/api/v1/rooms/:id`.
    Room(GitterRoomId),
    /// `/api/v1/user/:id/rooms`.
    UserRooms(GitterUserId),
    /// `/api/v1/token/:token`.
    Token,
    /// Anything else (ignored).
    Other,
}

impl Channel {
    /// Parses a channel name.
    pub fn parse(channel: &str) -> Channel {
        let parts: Vec<&str> = channel.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", "v1", "rooms", id, "chatMessages"] => Channel::Messages(GitterRoomId::new(*id)),
            ["api", "v1", "rooms", id, "users"] => Channel::Members(GitterRoomId::new(*id)),
            ["api", "v1", "rooms", id] => Channel::Room(GitterRoomId::new(*id)),
            ["api", "v1", "user", id, "rooms"] => Channel::UserRooms(GitterUserId::new(*id)),
            ["api", "v1", "token", _] => Channel::Token,
            _ => Channel::Other,
        }
    }
}

/// The channels a room is read on: its messages, its members and the room itself.
fn room_channels(room: &GitterRoomId) -> [String; 3] {
    let base = format!("/api/v1/rooms/{room}");
    [
        format!("{base}/chatMessages"),
        format!("{base}/users"),
        base,
    ]
}

/// The channels of a user: their room list and their token's revocation.
fn user_channels(gitter_user: &GitterUserId, token: &Secret) -> [String; 2] {
    [
        format!("/api/v1/user/{gitter_user}/rooms"),
        format!("/api/v1/token/{}", token.expose()),
    ]
}

/// What a data message means for the core, if anything. `user` is the Matrix user whose
/// channels these are (for `user/:id/rooms` and `token/:token`).
pub fn decode(channel: &Channel, data: &Value, user: Option<&OwnedUserId>) -> Option<StreamEvent> {
    let operation = data.get("operation").and_then(Value::as_str);
    let model = data.get("model");
    let model_id = || {
        model
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    };
    let realtime = |event| Some(StreamEvent::Realtime(Box::new(event)));
    match channel {
        Channel::Messages(room) => {
            let message = || serde_json::from_value::<Message>(model?.clone()).ok();
            match operation? {
                "create" => {
                    let message = message()?.into_core()?;
                    Some(StreamEvent::Message {
                        room: room.clone(),
                        message: Box::new(message),
                    })
                }
                "update" => {
                    let message = message()?;
                    let edited_at = message.edited_at.clone();
                    realtime(RealtimeEvent::MessageUpdated {
                        room: room.clone(),
                        message: message.into_core()?,
                        edited_at,
                    })
                }
                "remove" => realtime(RealtimeEvent::MessageRemoved {
                    room: room.clone(),
                    id: GitterMessageId::new(model_id()?),
                }),
                // `patch` carries read counts only.
                _ => None,
            }
        }
        Channel::Members(room) => {
            let user = || {
                serde_json::from_value::<User>(model?.clone())
                    .ok()
                    .filter(|u| !u.id.is_empty())
                    .map(Into::into)
            };
            match operation? {
                "create" => realtime(RealtimeEvent::MemberJoined {
                    room: room.clone(),
                    user: user()?,
                }),
                "remove" => realtime(RealtimeEvent::MemberLeft {
                    room: room.clone(),
                    user: GitterUserId::new(model_id()?),
                }),
                "update" => realtime(RealtimeEvent::MemberUpdated {
                    room: room.clone(),
                    user: user()?,
                }),
                _ => None,
            }
        }
        Channel::Room(room) => match operation? {
            "patch" | "update" => room_changed(room.clone(), model?),
            _ => None,
        },
        Channel::UserRooms(_) => {
            let user = user?.clone();
            match operation? {
                "create" => {
                    let room = serde_json::from_value::<Room>(model?.clone()).ok()?;
                    if room.id.is_empty() {
                        return None;
                    }
                    realtime(RealtimeEvent::RoomListed {
                        user,
                        room: room.into(),
                    })
                }
                "remove" => realtime(RealtimeEvent::RoomUnlisted {
                    user,
                    room: GitterRoomId::new(model_id()?),
                }),
                // A topic seen in the user's list (`patch` `{id, topic}`, §6.4). Not its
                // name: a one-to-one room is named for each member after the other one.
                "patch" | "update" => {
                    let topic = model?.get("topic").and_then(Value::as_str)?.to_owned();
                    realtime(RealtimeEvent::RoomChanged {
                        room: GitterRoomId::new(model_id()?),
                        name: None,
                        topic: Some(topic),
                    })
                }
                _ => None,
            }
        }
        Channel::Token => {
            if data.get("notification").and_then(Value::as_str) != Some("token_revoked") {
                return None;
            }
            realtime(RealtimeEvent::TokenRevoked {
                user: user?.clone(),
            })
        }
        Channel::Other => None,
    }
}

fn room_changed(room: GitterRoomId, model: &Value) -> Option<StreamEvent> {
    let field = |name: &str| model.get(name).and_then(Value::as_str).map(str::to_owned);
    let (name, topic) = (field("name"), field("topic"));
    if name.is_none() && topic.is_none() {
        return None;
    }
    Some(StreamEvent::Realtime(Box::new(
        RealtimeEvent::RoomChanged { room, name, topic },
    )))
}

/// Follows `ext.c`, the per-client sequence numbers of deliveries (§6.4): a number that is
/// not the next one means a message was lost.
#[derive(Clone, Debug, Default)]
pub struct Sequence {
    last: Option<u64>,
}

impl Sequence {
    /// Takes the next delivery's number (if it has one); false on a gap.
    pub fn take(&mut self, c: Option<u64>) -> bool {
        let Some(c) = c else {
            return true;
        };
        let ok = self.last.is_none_or(|last| c == last + 1);
        self.last = Some(c);
        ok
    }

    /// A new client starts its own count.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

// ---- the manager ----

/// Who carries each room and user: the session of one token. Shared with the sessions, which
/// read what they should subscribe to from it and report only for what is still theirs (a
/// room moved to another token is never reported by the old one again).
#[derive(Debug, Default)]
struct Owners {
    rooms: HashMap<GitterRoomId, u64>,
    users: HashMap<OwnedUserId, (u64, GitterUserId)>,
    /// Rooms opened again on the client that carries them: they subscribe again, and their
    /// new `Connected` makes the core catch up, as a new HTTP stream would.
    reopened: BTreeSet<GitterRoomId>,
}

impl Owners {
    fn rooms_of(&self, session: u64) -> BTreeSet<GitterRoomId> {
        self.rooms
            .iter()
            .filter(|(_, s)| **s == session)
            .map(|(r, _)| r.clone())
            .collect()
    }

    fn user_of(&self, session: u64) -> Option<(OwnedUserId, GitterUserId)> {
        self.users
            .iter()
            .find(|(_, (s, _))| *s == session)
            .map(|(u, (_, g))| (u.clone(), g.clone()))
    }

    fn owns_anything(&self, session: u64) -> bool {
        self.rooms.values().any(|s| *s == session)
            || self.users.values().any(|(s, _)| *s == session)
    }
}

#[derive(Debug)]
struct SessionHandle {
    id: u64,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// One Bayeux client per token, carrying the rooms and users given to it. Runs the
/// [`StreamCall`]s as [`crate::StreamManager`] does for HTTP streams.
#[derive(Debug)]
pub struct FayeManager {
    http: reqwest::Client,
    config: FayeConfig,
    events: mpsc::Sender<StreamEvent>,
    owners: Arc<Mutex<Owners>>,
    sessions: HashMap<TokenKey, SessionHandle>,
    next_session: u64,
}

impl FayeManager {
    /// A manager whose clients use `client`'s HTTP client (its user agent, connect timeout
    /// and no redirects) and report to `events`.
    pub fn new(
        client: &crate::GitterClient,
        config: FayeConfig,
        events: mpsc::Sender<StreamEvent>,
    ) -> Self {
        FayeManager {
            http: client.http().clone(),
            config,
            events,
            owners: Arc::default(),
            sessions: HashMap::new(),
            next_session: 1,
        }
    }

    /// Runs a stream call (all answer `Done`).
    pub async fn execute(&mut self, call: &StreamCall) -> EffectResult {
        let touched = match call {
            StreamCall::Open { room, token } => {
                let session = self.session_for(token);
                let mut owners = self.lock();
                let before = owners.rooms.insert(room.clone(), session);
                // Every open starts the room over with a fresh `Connected` (and so a
                // catch-up), as a new HTTP stream would, even if this client carried it
                // already or carries it again before it noticed it had gone.
                owners.reopened.insert(room.clone());
                drop(owners);
                vec![Some(session), before]
            }
            StreamCall::Close { room } => {
                let mut owners = self.lock();
                owners.reopened.remove(room);
                vec![owners.rooms.remove(room)]
            }
            StreamCall::Watch {
                user,
                gitter_user,
                token,
            } => {
                let session = self.session_for(token);
                let before = self
                    .lock()
                    .users
                    .insert(user.clone(), (session, gitter_user.clone()));
                vec![Some(session), before.map(|(s, _)| s)]
            }
            StreamCall::Unwatch { user } => vec![self.lock().users.remove(user).map(|(s, _)| s)],
        };
        for session in touched.into_iter().flatten() {
            self.wake_or_stop(session);
        }
        Ok(EffectOutput::Done)
    }

    /// Stops every client.
    pub async fn close_all(&mut self) {
        for (_, handle) in self.sessions.drain() {
            handle.task.abort();
            let _ = handle.task.await;
        }
        let mut owners = self.lock();
        owners.rooms.clear();
        owners.users.clear();
    }

    /// How many clients run (one per token in use).
    pub fn clients(&self) -> usize {
        self.sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session_for(&mut self, token: &Secret) -> u64 {
        let key = TokenKey::of(token);
        if let Some(handle) = self.sessions.get(&key)
            && !handle.task.is_finished()
        {
            return handle.id;
        }
        let id = self.next_session;
        self.next_session += 1;
        if let Some(old) = self.sessions.get(&key).map(|h| h.id) {
            // The token's client stopped (refused at handshake): the new one takes over what
            // it carried, each room starting over.
            let mut owners = self.lock();
            let moved: Vec<GitterRoomId> = owners.rooms_of(old).into_iter().collect();
            for room in moved {
                owners.rooms.insert(room.clone(), id);
                owners.reopened.insert(room);
            }
            for (session, _) in owners.users.values_mut() {
                if *session == old {
                    *session = id;
                }
            }
        }
        let wake = Arc::new(Notify::new());
        let session = Session {
            id,
            http: self.http.clone(),
            config: self.config.clone(),
            token: token.clone(),
            owners: self.owners.clone(),
            wake: wake.clone(),
            events: self.events.clone(),
            client_id: None,
            subscribed: BTreeSet::new(),
            connected: BTreeSet::new(),
            sequence: Sequence::default(),
            hold: self.config.default_hold,
            next_message: 0,
        };
        let task = tokio::spawn(session.run());
        self.sessions.insert(key, SessionHandle { id, wake, task });
        id
    }

    fn wake_or_stop(&mut self, session: u64) {
        let owns = self.lock().owns_anything(session);
        let Some((key, _)) = self.sessions.iter().find(|(_, h)| h.id == session) else {
            return;
        };
        let key = *key;
        if owns {
            self.sessions[&key].wake.notify_one();
        } else if let Some(handle) = self.sessions.remove(&key) {
            // Nothing left to carry: the client goes (the server forgets it after its timeout).
            handle.task.abort();
        }
    }
}

impl Drop for FayeManager {
    fn drop(&mut self) {
        for handle in self.sessions.values() {
            handle.task.abort();
        }
    }
}

/// The transport of the rooms' new messages: per-room HTTP streams, or Faye.
#[derive(Debug)]
pub enum Transport {
    /// One HTTP stream per room (`stream.gitter.im`, §5).
    Http(crate::StreamManager),
    /// One Bayeux client per token (§6).
    Faye(FayeManager),
}

impl Transport {
    /// Runs a stream call.
    pub async fn execute(&mut self, call: &StreamCall) -> EffectResult {
        match self {
            Transport::Http(m) => m.execute(call).await,
            Transport::Faye(m) => m.execute(call).await,
        }
    }

    /// Stops every stream or client.
    pub async fn close_all(&mut self) {
        match self {
            Transport::Http(m) => m.close_all().await,
            Transport::Faye(m) => m.close_all().await,
        }
    }
}

// ---- one client ----

struct Session {
    id: u64,
    http: reqwest::Client,
    config: FayeConfig,
    token: Secret,
    owners: Arc<Mutex<Owners>>,
    wake: Arc<Notify>,
    events: mpsc::Sender<StreamEvent>,
    client_id: Option<String>,
    /// Channels subscribed on the current client.
    subscribed: BTreeSet<String>,
    /// Rooms reported `Connected` since the client last lost anything.
    connected: BTreeSet<GitterRoomId>,
    sequence: Sequence,
    /// The server's long-poll hold.
    hold: Duration,
    next_message: u64,
}

/// Why a round with the server failed.
#[derive(Debug)]
enum Trouble {
    /// The token is dead (401 at handshake): stop.
    Revoked(String),
    /// The client must start over (a handshake): unknown client, advice, a sequence gap.
    Rehandshake(String),
    /// The server or the network failed: back off, then start over.
    Failed(String),
    /// The driver is gone.
    Gone,
}

impl Session {
    async fn run(mut self) {
        let mut backoff = self.config.backoff();
        // Whether a connect was answered since the client last started over: a server that
        // keeps forgetting its clients, or keeps losing deliveries, is not handshaken with
        // in a tight loop (each start over costs every room a REST catch-up).
        let mut healthy = true;
        loop {
            let trouble = match self.round().await {
                Ok(()) => {
                    backoff = self.config.backoff();
                    healthy = true;
                    continue;
                }
                Err(t) => t,
            };
            match trouble {
                Trouble::Gone => return,
                Trouble::Revoked(detail) => {
                    tracing::info!(%detail, "Gitter realtime client refused: the token is invalid");
                    // Every room carried hears it, connected or not: the core hands them to
                    // another reader.
                    let carried = self.owners().rooms_of(self.id);
                    self.connected = carried;
                    self.lost(FailureKind::TokenRevoked, &detail, false).await;
                    if let Some((user, _)) = self.user() {
                        let event = RealtimeEvent::TokenRevoked { user };
                        let _ = self
                            .events
                            .send(StreamEvent::Realtime(Box::new(event)))
                            .await;
                    }
                    // Advice `none` (§6.2): never again with this token. The manager starts a
                    // new client if the token is given again, taking over what this one
                    // carried.
                    return;
                }
                Trouble::Rehandshake(detail) => {
                    tracing::info!(%detail, "Gitter realtime client starts over");
                    self.lost(FailureKind::Transient, &detail, true).await;
                    self.client_id = None;
                    if !std::mem::replace(&mut healthy, false) {
                        let delay = backoff.next().unwrap_or(self.config.reconnect_max);
                        tokio::time::sleep(delay).await;
                    }
                }
                Trouble::Failed(detail) => {
                    tracing::info!(%detail, "Gitter realtime connection failed");
                    self.lost(FailureKind::Transient, &detail, true).await;
                    self.client_id = None;
                    // A new room or user does not cut the wait short: the server is down.
                    let delay = backoff.next().unwrap_or(self.config.reconnect_max);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn user(&self) -> Option<(OwnedUserId, GitterUserId)> {
        self.owners().user_of(self.id)
    }

    /// The channels this client should be subscribed to now.
    fn wanted(&self) -> BTreeSet<String> {
        let owners = self.owners();
        let mut wanted: BTreeSet<String> = owners
            .rooms_of(self.id)
            .iter()
            .flat_map(room_channels)
            .collect();
        if let Some((_, gitter_user)) = owners.user_of(self.id) {
            wanted.extend(user_channels(&gitter_user, &self.token));
        }
        wanted
    }

    /// Whether `room` is still carried by this client.
    fn carries(&self, room: &GitterRoomId) -> bool {
        self.owners().rooms.get(room) == Some(&self.id)
    }

    /// Everything since the last `Connected` may be lost: every room hears it.
    async fn lost(&mut self, reason: FailureKind, detail: &str, reconnecting: bool) {
        self.subscribed.clear();
        self.sequence.reset();
        for room in std::mem::take(&mut self.connected) {
            if !self.carries(&room) {
                continue;
            }
            let event = StreamEvent::Disconnected {
                room,
                reason,
                detail: detail.to_owned(),
                reconnecting,
            };
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }

    /// One round: handshake if needed, bring the subscriptions up to date, one connect.
    /// A room or user that comes or goes meanwhile is subscribed in a request of its own
    /// while the connect stays open: a connect dropped by the client is still the one the
    /// server delivers to (Faye answers the waiting connect), so dropping it would lose what
    /// is published until the next one arrives.
    async fn round(&mut self) -> Result<(), Trouble> {
        if self.client_id.is_none() {
            self.handshake().await?;
        }
        self.sync_subscriptions().await?;
        let (request, limit) = self.connect_request()?;
        let connect = post_batch(
            self.http.clone(),
            self.config.url.clone(),
            vec![request],
            limit,
            self.config.max_body,
        );
        tokio::pin!(connect);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                result = &mut connect => return self.deliver(result?).await,
                _ = wake.notified() => self.sync_subscriptions().await?,
            }
        }
    }

    /// A server's error string, without the token: errors may name the channel refused
    /// (`404::Unknown subscription <channel>`), and `/api/v1/token/<token>` is one.
    fn scrub(&self, error: Option<String>) -> String {
        error
            .unwrap_or_default()
            .replace(self.token.expose(), "<token>")
    }

    fn message_id(&mut self) -> String {
        self.next_message += 1;
        self.next_message.to_string()
    }

    async fn post(
        &self,
        batch: &[BayeuxMessage],
        limit: Duration,
    ) -> Result<Vec<BayeuxMessage>, Trouble> {
        post_batch(
            self.http.clone(),
            self.config.url.clone(),
            batch.to_vec(),
            limit,
            self.config.max_body,
        )
        .await
    }

    async fn handshake(&mut self) -> Result<(), Trouble> {
        let id = self.message_id();
        let request = BayeuxMessage {
            channel: "/meta/handshake".into(),
            id: Some(id.clone()),
            version: Some("1.0".into()),
            supported_connection_types: Some(vec!["long-polling".into()]),
            // §6.2: the token goes in the handshake's `ext` only.
            ext: Some(json!({ "token": self.token.expose() })),
            ..Default::default()
        };
        let answers = self.post(&[request], self.config.answer_timeout).await?;
        let answer = answers
            .into_iter()
            .find(|m| m.channel == "/meta/handshake")
            .ok_or_else(|| Trouble::Failed("no handshake answer".into()))?;
        if answer.successful == Some(true)
            && let Some(client) = answer.client_id.filter(|c| !c.is_empty())
        {
            self.client_id = Some(client);
            self.subscribed.clear();
            self.sequence.reset();
            self.take_advice(answer.advice.as_ref());
            tracing::debug!("Gitter realtime handshake done");
            return Ok(());
        }
        let error = self.scrub(answer.error);
        let none = answer.advice.as_ref().and_then(|a| a.reconnect.as_deref()) == Some("none");
        if error_code(&error) == Some(401) || none {
            return Err(Trouble::Revoked(error));
        }
        Err(Trouble::Failed(format!("handshake refused: {error}")))
    }

    fn take_advice(&mut self, advice: Option<&Advice>) {
        if let Some(timeout) = advice.and_then(|a| a.timeout) {
            // Bounded: a server advising hours would make a dead connection invisible.
            self.hold = Duration::from_millis(timeout).min(Duration::from_secs(600));
        }
    }

    async fn sync_subscriptions(&mut self) -> Result<(), Trouble> {
        let Some(client) = self.client_id.clone() else {
            return Ok(());
        };
        let reopened: Vec<GitterRoomId> = {
            let mut owners = self.owners();
            let mine: Vec<GitterRoomId> = owners
                .reopened
                .iter()
                .filter(|r| owners.rooms.get(*r) == Some(&self.id))
                .cloned()
                .collect();
            for room in &mine {
                owners.reopened.remove(room);
            }
            mine
        };
        for room in reopened {
            self.connected.remove(&room);
            self.subscribed.remove(&room_channels(&room)[0]);
        }
        let wanted = self.wanted();
        let mut batch = Vec::new();
        let to_subscribe: Vec<String> = wanted.difference(&self.subscribed).cloned().collect();
        let to_unsubscribe: Vec<String> = self.subscribed.difference(&wanted).cloned().collect();
        for channel in to_subscribe {
            let id = self.message_id();
            batch.push(BayeuxMessage {
                channel: "/meta/subscribe".into(),
                client_id: Some(client.clone()),
                id: Some(id),
                subscription: Some(channel),
                // The bridge reads history by REST from its cursor; the default snapshot of
                // the last 30 messages or members (§6.3) would only be read twice.
                ext: Some(json!({ "snapshot": false })),
                ..Default::default()
            });
        }
        for channel in to_unsubscribe {
            let id = self.message_id();
            batch.push(BayeuxMessage {
                channel: "/meta/unsubscribe".into(),
                client_id: Some(client.clone()),
                id: Some(id),
                subscription: Some(channel),
                ..Default::default()
            });
        }
        // Rooms no longer carried are no longer connected here.
        let carried = self.owners().rooms_of(self.id);
        self.connected.retain(|r| carried.contains(r));
        if batch.is_empty() {
            return Ok(());
        }
        let answers = self.post(&batch, self.config.answer_timeout).await?;
        for answer in answers {
            let Some(channel) = answer.subscription.clone() else {
                continue;
            };
            match answer.channel.as_str() {
                "/meta/subscribe" if answer.successful == Some(true) => {
                    self.subscribed.insert(channel.clone());
                    if let Channel::Messages(room) = Channel::parse(&channel)
                        && self.carries(&room)
                        && self.connected.insert(room.clone())
                    {
                        tracing::info!(%room, "Gitter realtime subscription up");
                        self.send(StreamEvent::Connected { room }).await?;
                    }
                }
                "/meta/subscribe" => {
                    let error = self.scrub(answer.error);
                    if error_code(&error) == Some(401) {
                        return Err(Trouble::Rehandshake(format!("subscribe: {error}")));
                    }
                    // Refused for good (403: not a member any more, 404: no such room).
                    // Remembered as subscribed so it is not asked for again on this client.
                    tracing::warn!(channel = %redact_channel(&channel), %error, "Gitter refused a realtime subscription");
                    self.subscribed.insert(channel.clone());
                    if let Channel::Messages(room) = Channel::parse(&channel)
                        && self.carries(&room)
                    {
                        let reason = match error_code(&error) {
                            Some(404) => FailureKind::NotFound,
                            _ => FailureKind::Forbidden,
                        };
                        self.send(StreamEvent::Disconnected {
                            room,
                            reason,
                            detail: error,
                            reconnecting: false,
                        })
                        .await?;
                    }
                }
                "/meta/unsubscribe" => {
                    self.subscribed.remove(&channel);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn connect_request(&mut self) -> Result<(BayeuxMessage, Duration), Trouble> {
        let Some(client) = self.client_id.clone() else {
            return Err(Trouble::Rehandshake("no client".into()));
        };
        let id = self.message_id();
        let request = BayeuxMessage {
            channel: "/meta/connect".into(),
            client_id: Some(client),
            id: Some(id),
            connection_type: Some("long-polling".into()),
            ..Default::default()
        };
        Ok((request, self.hold + self.config.connect_margin))
    }

    async fn deliver(&mut self, messages: Vec<BayeuxMessage>) -> Result<(), Trouble> {
        let mut advice = None;
        for message in messages {
            if message.channel == "/meta/connect" {
                if message.successful != Some(true) {
                    let error = self.scrub(message.error.clone());
                    return Err(Trouble::Rehandshake(format!("connect: {error}")));
                }
                advice = message.advice.clone();
                continue;
            }
            if message.channel.starts_with("/meta/") {
                continue;
            }
            let c = message
                .ext
                .as_ref()
                .and_then(|e| e.get("c"))
                .and_then(Value::as_u64);
            if !self.sequence.take(c) {
                // RTC resets the connection on a gap (§6.4). Nothing from here on is
                // delivered: a room's cursor must not pass the lost message, which the
                // catch-up after the new subscription reads with the rest.
                return Err(Trouble::Rehandshake("a gap in the ext.c sequence".into()));
            }
            let Some(data) = &message.data else {
                continue;
            };
            let channel = Channel::parse(&message.channel);
            if let Channel::Messages(room) | Channel::Members(room) | Channel::Room(room) = &channel
                && !self.carries(room)
            {
                continue;
            }
            let user = self.user().map(|(u, _)| u);
            if let Some(event) = decode(&channel, data, user.as_ref()) {
                let revoked = matches!(&event, StreamEvent::Realtime(e) if matches!(**e, RealtimeEvent::TokenRevoked { .. }));
                self.send(event).await?;
                if revoked {
                    // The server destroys the token's sockets (§6.4): nothing more comes.
                    return Err(Trouble::Revoked("token_revoked".into()));
                }
            }
        }
        match advice.as_ref().and_then(|a| a.reconnect.as_deref()) {
            Some("handshake") => return Err(Trouble::Rehandshake("advice: handshake".into())),
            // Not a verdict on the token (only a 401 at handshake or `token_revoked` is):
            // back off and start over.
            Some("none") => return Err(Trouble::Failed("advice: none".into())),
            _ => {}
        }
        self.take_advice(advice.as_ref());
        if let Some(interval) = advice.and_then(|a| a.interval).filter(|i| *i > 0) {
            tokio::time::sleep(Duration::from_millis(interval).min(Duration::from_secs(60))).await;
        }
        Ok(())
    }

    async fn send(&self, event: StreamEvent) -> Result<(), Trouble> {
        self.events.send(event).await.map_err(|_| Trouble::Gone)
    }
}

/// POSTs one batch of Bayeux messages and reads the answer, within `limit` and `max_body`.
/// Owns what it needs, so a connect can stay in flight while other requests are made.
async fn post_batch(
    http: reqwest::Client,
    url: Url,
    batch: Vec<BayeuxMessage>,
    limit: Duration,
    max_body: usize,
) -> Result<Vec<BayeuxMessage>, Trouble> {
    let request = http.post(url).json(&batch).timeout(limit).send();
    let response = match tokio::time::timeout(limit, request).await {
        Err(_) => {
            return Err(Trouble::Failed(format!(
                "no answer within {} s",
                limit.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(Trouble::Failed(format!("network: {}", e.without_url()))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if !status.is_success() {
        return Err(Trouble::Failed(format!("status {status}")));
    }
    let body = match tokio::time::timeout(limit, read_capped(response, max_body)).await {
        Err(_) => return Err(Trouble::Failed("the answer broke off".into())),
        Ok(Err(e)) => return Err(Trouble::Failed(format!("{:?}", e.into_gitter(1)))),
        Ok(Ok(body)) => body,
    };
    serde_json::from_slice::<Vec<BayeuxMessage>>(&body)
        .map_err(|e| Trouble::Failed(format!("not a Bayeux answer: {e}")))
}

/// A channel name for logs: a token channel's token is never shown.
fn redact_channel(channel: &str) -> String {
    match Channel::parse(channel) {
        Channel::Token => "/api/v1/token/<token>".into(),
        _ => channel.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> OwnedUserId {
        OwnedUserId::try_from("@alice:example.org").unwrap()
    }

    fn message(text: &str, edited: Option<&str>) -> Value {
        json!({
            "id": "5fedc44197312f4b6bfe4519", "text": text, "html": text,
            "sent": "2020-12-31T12:29:53.036Z", "editedAt": edited, "v": 2,
            "fromUser": {"id": "u1", "username": "bob", "displayName": "Bob"},
        })
    }

    #[test]
    fn channels_are_told_apart() {
        assert_eq!(
            Channel::parse("/api/v1/rooms/r1/chatMessages"),
            Channel::Messages(GitterRoomId::new("r1"))
        );
        assert_eq!(
            Channel::parse("/api/v1/rooms/r1/users"),
            Channel::Members(GitterRoomId::new("r1"))
        );
        assert_eq!(
            Channel::parse("/api/v1/rooms/r1"),
            Channel::Room(GitterRoomId::new("r1"))
        );
        assert_eq!(
            Channel::parse("/api/v1/user/u1/rooms"),
            Channel::UserRooms(GitterUserId::new("u1"))
        );
        assert_eq!(Channel::parse("/api/v1/token/abc"), Channel::Token);
        assert_eq!(Channel::parse("/api/v1/rooms/r1/events"), Channel::Other);
        assert_eq!(
            redact_channel("/api/v1/token/secret"),
            "/api/v1/token/<token>"
        );
    }

    #[test]
    fn error_strings_carry_their_status() {
        assert_eq!(error_code("401::Invalid access token"), Some(401));
        assert_eq!(error_code("403::Authorisation denied."), Some(403));
        assert_eq!(error_code("nonsense"), None);
    }

    #[test]
    fn message_envelopes_become_messages_edits_and_removals() {
        let room = Channel::Messages(GitterRoomId::new("r1"));
        let create = json!({"operation": "create", "model": message("hi", None)});
        assert!(matches!(
            decode(&room, &create, None),
            Some(StreamEvent::Message { message, .. }) if message.text == "hi"
        ));
        let update = json!({"operation": "update", "model": message("hi!", Some("2021-01-01T00:00:00.000Z"))});
        match decode(&room, &update, None) {
            Some(StreamEvent::Realtime(e)) => match *e {
                RealtimeEvent::MessageUpdated { edited_at, .. } => {
                    assert_eq!(edited_at.as_deref(), Some("2021-01-01T00:00:00.000Z"))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let remove = json!({"operation": "remove", "model": {"id": "m1"}});
        assert_eq!(
            decode(&room, &remove, None),
            Some(StreamEvent::Realtime(Box::new(
                RealtimeEvent::MessageRemoved {
                    room: GitterRoomId::new("r1"),
                    id: GitterMessageId::new("m1"),
                }
            )))
        );
        // Read counts, and anything malformed, mean nothing.
        let patch = json!({"operation": "patch", "model": {"id": "m1", "readBy": 3}});
        assert_eq!(decode(&room, &patch, None), None);
        assert_eq!(decode(&room, &json!({"operation": "create"}), None), None);
        assert_eq!(decode(&room, &json!("garbage"), None), None);
    }

    #[test]
    fn user_channels_need_their_user_and_name_it() {
        let list = Channel::UserRooms(GitterUserId::new("u1"));
        let created = json!({"operation": "create", "model": {"id": "r9", "name": "org/new", "uri": "org/new", "roomMember": true}});
        assert_eq!(decode(&list, &created, None), None, "whose list is unknown");
        match decode(&list, &created, Some(&user())) {
            Some(StreamEvent::Realtime(e)) => match *e {
                RealtimeEvent::RoomListed { user: u, room } => {
                    assert_eq!(u, user());
                    assert_eq!(room.id, GitterRoomId::new("r9"));
                    assert_eq!(room.room_member, Some(true));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let revoked = json!({"notification": "token_revoked"});
        assert_eq!(
            decode(&Channel::Token, &revoked, Some(&user())),
            Some(StreamEvent::Realtime(Box::new(
                RealtimeEvent::TokenRevoked { user: user() }
            )))
        );
        assert_eq!(
            decode(
                &Channel::Token,
                &json!({"notification": "other"}),
                Some(&user())
            ),
            None
        );
    }

    #[test]
    fn a_sequence_gap_is_seen_and_a_new_client_counts_afresh() {
        let mut s = Sequence::default();
        assert!(
            s.take(Some(7)),
            "the first number is whatever the server starts at"
        );
        assert!(s.take(Some(8)));
        assert!(s.take(None), "no number, nothing to check");
        assert!(!s.take(Some(10)), "9 was lost");
        s.reset();
        assert!(s.take(Some(1)));
    }
}
