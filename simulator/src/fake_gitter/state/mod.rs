//! The fake Gitter's whole world as one plain struct: users, rooms, messages,
//! tokens, OAuth codes, unread mentions, rate-limit windows, open streams and
//! injected faults. No I/O and no clock: every method that depends on time
//! takes `now_ms`, so the paging, edit-window and rate-limit rules are unit
//! tested directly. The HTTP layer (`http.rs`) only parses requests, calls one
//! method under a lock and writes the answer.
//!
//! Behaviour follows the 2020 Gitter server as documented in
//! `docs/gitter-api.md`; each method cites its section.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::faults::{Budget, InjectedErrors, take_budget};

use super::render::{self, Rendered};
use crate::util::{is_object_id, iso_ms, random_hex, text_len};

mod acting;
mod auth;
mod faults;
mod faye;
mod json;
mod messages;
mod oauth;
mod rooms;
mod seed;
mod streams;
mod users;

pub use faye::{FAYE_HOLD_MS, Held};
pub use seed::*;

/// Maximum message length (docs/gitter-api.md §3.7).
pub const MAX_TEXT_CHARS: usize = 4096;
/// `skip` above this is refused (docs/gitter-api.md §3.6).
pub const MAX_SKIP: u64 = 5000;
/// Client id recorded for tokens that were not issued through OAuth (seeded
/// personal tokens, like the developer-portal token of docs/gitter-api.md §2.1).
pub const PERSONAL_CLIENT: &str = "developer-portal";

/// Settings of one fake Gitter instance.
#[derive(Debug, Clone)]
pub struct GitterConfig {
    /// The one registered OAuth app (docs/gitter-api.md §2.1 step 1).
    pub client_id: String,
    pub client_secret: String,
    /// Must match `redirect_uri` exactly on authorize and token.
    pub redirect_uri: String,
    /// Requests per window per (user, OAuth client); real value 100 (§8).
    pub rate_limit: u32,
    /// Fixed rate-limit window; real value 60 s (§8).
    pub rate_window: Duration,
    /// Edit window after `sent`; real value 600 s (§3.8).
    pub edit_window: Duration,
    /// Interval between `" \n"` keep-alives on the stream (§5.1; the real
    /// interval is unknown).
    pub heartbeat: Duration,
    /// Seed for ids, tokens and codes, for reproducible runs.
    pub rng_seed: Option<u64>,
    /// A pre-approved test user (docs/gitter-api.md §9): a plain `GET
    /// /login/oauth/authorize` signs them in and redirects at once, as Gitter
    /// does for a logged-in user of a trusted app. Without it the authorize
    /// page is a sign-in form.
    pub auto_approve: Option<String>,
}

impl Default for GitterConfig {
    fn default() -> Self {
        Self {
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            redirect_uri: "http://127.0.0.1:29322/oauth/callback".into(),
            rate_limit: 100,
            rate_window: Duration::from_secs(60),
            edit_window: Duration::from_secs(600),
            heartbeat: Duration::from_secs(5),
            rng_seed: None,
            auto_approve: None,
        }
    }
}

/// An error in the real API's terms: an HTTP status and the `error` string of
/// the `{"error": "..."}` body (docs/gitter-api.md §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }
    pub fn forbidden() -> Self {
        Self::new(403, "Forbidden")
    }
    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }
    pub fn body(&self) -> Value {
        json!({ "error": self.message })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// OAuth token-endpoint error: status plus oauth2orize's
/// `{"error","error_description"}` body (docs/gitter-api.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: String,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            description: description.into(),
        }
    }
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

/// A user as stored.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub v: u64,
}

/// A room as stored. One-to-one rooms have no `uri`.
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub uri: Option<String>,
    pub name: String,
    pub topic: String,
    pub one_to_one: bool,
    /// Member user ids in join order (the member list is served in this order).
    pub members: Vec<String>,
    pub admins: BTreeSet<String>,
    pub public: bool,
    pub group_id: String,
    pub v: u64,
}

/// A chat message as stored.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub room_id: String,
    pub from_user: String,
    pub text: String,
    pub rendered: Rendered,
    pub status: bool,
    pub sent_ms: u64,
    pub edited_ms: Option<u64>,
    pub parent_id: Option<String>,
    pub thread_count: u64,
    pub v: u64,
    pub read_by: BTreeSet<String>,
}

/// Who a request is from, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub client_id: String,
    pub token: String,
}

/// The values of the `X-RateLimit-*` headers (docs/gitter-api.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Absolute Unix time in **milliseconds** (dolph: `Date.now() + ttl*1000`).
    pub reset_ms: u64,
}

/// Query of `GET /v1/rooms/:roomId/chatMessages` (docs/gitter-api.md §3.6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQuery {
    pub limit: Option<u64>,
    pub skip: Option<u64>,
    pub before_id: Option<String>,
    pub after_id: Option<String>,
    pub around_id: Option<String>,
    pub include_threads: Option<bool>,
}

/// A user's own settings of a room: its favourite position and notification mode.
#[derive(Debug, Clone, Default)]
struct RoomSettings {
    favourite: Option<u64>,
    /// `all` (the default), `announcement` or `mute`; the last two are "lurking".
    mode: Option<String>,
}

/// One open streaming connection.
#[derive(Debug)]
struct StreamSub {
    id: u64,
    room_id: String,
    token: String,
    tx: mpsc::UnboundedSender<String>,
}

impl StreamSub {
    /// An open `chatMessages` stream.
    fn is_chat(&self) -> bool {
        !self.tx.is_closed()
    }
}

#[derive(Debug)]
struct TokenRec {
    user_id: String,
    client_id: String,
}

#[derive(Debug)]
struct CodeRec {
    user_id: String,
    client_id: String,
    redirect_uri: String,
}

#[derive(Debug, Default)]
struct Unread {
    chat: BTreeSet<String>,
    mention: BTreeSet<String>,
}

/// Injected failures (see [`GitterState::fail_next`] and friends).
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Errors of the API host, and the latency added to every API-host response but the
    /// sign-in page.
    pub api: InjectedErrors,
    /// `POST chatMessages` to store and leave unanswered.
    lost_sends: u32,
    /// Stream connections that answer 200 and end at once.
    flap: Option<Budget>,
    /// Streams say nothing until then (Unix ms).
    silent_until: Option<u64>,
    huge_body: Option<(Budget, u64, u16)>,
    endless_line: Option<Budget>,
    slow_drip: Option<(Budget, usize, Duration)>,
}

/// A hostile answer (see [`GitterState::set_hostile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hostile {
    /// An API answer replaced by `bytes` bytes of body (no newline, no end
    /// of JSON) with `status`, produced lazily in chunks: never held whole.
    HugeBody {
        #[serde(default = "one_gib")]
        bytes: u64,
        #[serde(default = "ok_status")]
        status: u16,
    },
    /// A stream connection that answers 200 and then sends bytes without a
    /// newline for ever, until the client goes away.
    EndlessLine,
    /// An API answer (the real one) sent `chunk_bytes` at a time, one chunk
    /// per `interval_ms`.
    SlowDrip {
        #[serde(default = "one_byte")]
        chunk_bytes: usize,
        #[serde(default = "tenth_second")]
        interval_ms: u64,
    },
}

fn one_gib() -> u64 {
    1 << 30
}

fn ok_status() -> u16 {
    200
}

fn one_byte() -> usize {
    1
}

fn tenth_second() -> u64 {
    100
}

/// The fake Gitter's state.
#[derive(Debug)]
pub struct GitterState {
    pub config: GitterConfig,
    rng: StdRng,
    last_oid: u128,
    users: BTreeMap<String, User>,
    rooms: BTreeMap<String, Room>,
    /// Per room, messages keyed by id; fixed-width lowercase hex ids sort in
    /// creation order, so range queries implement beforeId/afterId directly.
    messages: HashMap<String, BTreeMap<String, Message>>,
    tokens: HashMap<String, TokenRec>,
    codes: HashMap<String, CodeRec>,
    rate: HashMap<(String, String), (u64, u32)>,
    unread: HashMap<(String, String), Unread>,
    last_access: HashMap<(String, String), u64>,
    /// (user, room) -> the user's settings of the room (§3.0 #22).
    settings: HashMap<(String, String), RoomSettings>,
    streams: Vec<StreamSub>,
    next_stream_id: u64,
    faults: Faults,
    faye: faye::Faye,
    /// Where the fake serves its files (`/_sim/gitter/files/`), once it listens: users'
    /// avatars point there, so the bridge can download them.
    pub files_base: Option<String>,
}

impl GitterState {
    pub fn new(config: GitterConfig) -> Self {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            config,
            rng,
            last_oid: 0,
            users: BTreeMap::new(),
            rooms: BTreeMap::new(),
            messages: HashMap::new(),
            tokens: HashMap::new(),
            codes: HashMap::new(),
            rate: HashMap::new(),
            unread: HashMap::new(),
            last_access: HashMap::new(),
            settings: HashMap::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            faults: Faults::default(),
            faye: faye::Faye::default(),
            files_base: None,
        }
    }

    // ------------------------------------------------------------------
    // ids

    /// A new ObjectId-style id: 4 bytes of Unix seconds then 8 bytes of
    /// counter, always strictly greater than the previous one, so ids sort in
    /// creation order and their timestamp matches `sent` (docs/gitter-api.md §1.2,
    /// §3.6 "A fake server that makes ids whose timestamp equals `sent`...").
    pub fn new_object_id(&mut self, now_ms: u64) -> String {
        let secs = ((now_ms / 1000) & 0xffff_ffff) as u128;
        let base = secs << 64;
        let candidate = if self.last_oid >= base {
            self.last_oid + 1
        } else {
            // Random low bits, like Mongo's per-process random + counter,
            // leaving head-room so the counter never carries into the time.
            base | (rand::Rng::random::<u32>(&mut self.rng) as u128) << 24
        };
        self.last_oid = candidate;
        format!("{candidate:024x}")
    }

    pub(super) fn new_token(&mut self) -> String {
        random_hex(&mut self.rng, 40)
    }

    // ------------------------------------------------------------------
    // seeding and lookups

    /// Add a user. `id` is generated when `None`.
    pub fn add_user(
        &mut self,
        id: Option<String>,
        username: &str,
        display_name: Option<&str>,
        now_ms: u64,
    ) -> Result<String, String> {
        if self.user_by_username(username).is_some() {
            return Err(format!("duplicate username {username}"));
        }
        let id = match id {
            Some(id) if is_object_id(&id) => id.to_ascii_lowercase(),
            Some(id) => return Err(format!("user id {id} is not a 24-hex ObjectId")),
            None => self.new_object_id(now_ms),
        };
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                username: username.to_string(),
                display_name: display_name.unwrap_or(username).to_string(),
                v: 1,
            },
        );
        Ok(id)
    }

    /// Add a group room. `members` and `admins` are usernames.
    #[allow(clippy::too_many_arguments)]
    pub fn add_room(
        &mut self,
        id: Option<String>,
        uri: &str,
        name: Option<&str>,
        topic: &str,
        public: bool,
        members: &[String],
        admins: &[String],
        now_ms: u64,
    ) -> Result<String, String> {
        if self.room_by_uri(uri).is_some() {
            return Err(format!("duplicate room uri {uri}"));
        }
        let id = match id {
            Some(id) if is_object_id(&id) => id.to_ascii_lowercase(),
            Some(id) => return Err(format!("room id {id} is not a 24-hex ObjectId")),
            None => self.new_object_id(now_ms),
        };
        let member_ids = self.usernames_to_ids(members)?;
        let admin_ids = self.usernames_to_ids(admins)?;
        // One group (community) per org: the rooms of `org/...` share it (§4.2 `groupId`).
        let org = uri.split('/').next().unwrap_or(uri).to_string();
        let group_id = match self
            .rooms
            .values()
            .find(|r| r.uri.as_deref().and_then(|u| u.split('/').next()) == Some(org.as_str()))
        {
            Some(sibling) => sibling.group_id.clone(),
            None => self.new_object_id(now_ms),
        };
        self.rooms.insert(
            id.clone(),
            Room {
                id: id.clone(),
                uri: Some(uri.to_string()),
                name: name.unwrap_or(uri).to_string(),
                topic: topic.to_string(),
                one_to_one: false,
                members: Vec::new(),
                admins: admin_ids.into_iter().collect(),
                public,
                group_id,
                v: 1,
            },
        );
        for uid in member_ids {
            self.add_member(&id, &uid, now_ms);
        }
        Ok(id)
    }

    pub(super) fn usernames_to_ids(&self, names: &[String]) -> Result<Vec<String>, String> {
        names
            .iter()
            .map(|n| {
                self.user_by_username(n)
                    .map(|u| u.id.clone())
                    .ok_or_else(|| format!("unknown username {n}"))
            })
            .collect()
    }

    /// Find or create the one-to-one room of two users (docs/gitter-api.md §3.3).
    pub fn one_to_one_room(&mut self, a: &str, b: &str, now_ms: u64) -> String {
        if let Some(room) = self.rooms.values().find(|r| {
            r.one_to_one && r.members.iter().any(|m| m == a) && r.members.iter().any(|m| m == b)
        }) {
            return room.id.clone();
        }
        let id = self.new_object_id(now_ms);
        self.rooms.insert(
            id.clone(),
            Room {
                id: id.clone(),
                uri: None,
                name: String::new(),
                topic: String::new(),
                one_to_one: true,
                members: vec![a.to_string(), b.to_string()],
                admins: BTreeSet::new(),
                public: false,
                group_id: String::new(),
                v: 1,
            },
        );
        id
    }

    /// Record a token as issued to `username` for `client_id` (a seeded
    /// personal token, or a test's shortcut past OAuth).
    pub fn insert_token(&mut self, token: &str, user_id: &str, client_id: &str) {
        self.tokens.insert(
            token.to_string(),
            TokenRec {
                user_id: user_id.to_string(),
                client_id: client_id.to_string(),
            },
        );
    }

    /// The token of (user, client), created on first use: one token per pair
    /// (docs/gitter-api.md §2.2, `findOrCreateToken`).
    pub fn token_for(&mut self, user_id: &str, client_id: &str) -> String {
        if let Some((t, _)) = self
            .tokens
            .iter()
            .find(|(_, r)| r.user_id == user_id && r.client_id == client_id)
        {
            return t.clone();
        }
        let t = self.new_token();
        self.insert_token(&t, user_id, client_id);
        t
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    pub fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.get(id)
    }

    pub fn room_by_uri(&self, uri: &str) -> Option<&Room> {
        self.rooms.values().find(|r| {
            r.uri
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(uri))
        })
    }

    /// Resolve a room given by id or (case-insensitive) uri.
    pub fn room_ref(&self, room: &str) -> Option<&Room> {
        self.rooms.get(room).or_else(|| self.room_by_uri(room))
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.values()
    }

    /// All messages of a room, oldest first, thread replies included.
    pub fn room_messages(&self, room_id: &str) -> Vec<&Message> {
        self.messages
            .get(room_id)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    pub fn is_member(&self, room_id: &str, user_id: &str) -> bool {
        self.rooms
            .get(room_id)
            .is_some_and(|r| r.members.iter().any(|m| m == user_id))
    }

    pub(super) fn add_member(&mut self, room_id: &str, user_id: &str, now_ms: u64) {
        if let Some(room) = self.rooms.get_mut(room_id)
            && !room.members.iter().any(|m| m == user_id)
        {
            room.members.push(user_id.to_string());
            self.last_access
                .insert((user_id.to_string(), room_id.to_string()), now_ms);
        }
    }
}

/// A Group (§4.4) for an org backed by GitHub.
fn group_json(id: &str, org: &str) -> Value {
    json!({
        "id": id,
        "name": org,
        "uri": org,
        "backedBy": { "type": "GH_ORG", "linkPath": org },
        "avatarUrl": format!("https://avatars-05.gitter.im/group/iv/4/{id}"),
    })
}

/// `limit`: 0 or missing means 50, larger than 100 is clamped (§3.6).
fn clamp_limit(limit: Option<u64>) -> usize {
    match limit {
        None | Some(0) => 50,
        Some(n) => n.min(100) as usize,
    }
}

/// `beforeId`: the newest `limit` older than it; `afterId`: the oldest
/// `limit` newer than it; neither: the newest `limit`. Always oldest first.
fn page_messages<'a>(
    all: &'a BTreeMap<String, Message>,
    before: Option<&str>,
    after: Option<&str>,
    skip: u64,
    limit: usize,
    keep: impl Fn(&&'a Message) -> bool,
) -> Vec<&'a Message> {
    use std::ops::Bound::{Excluded, Unbounded};
    let lower = after.map_or(Unbounded, |a| Excluded(a.to_string()));
    let upper = before.map_or(Unbounded, |b| Excluded(b.to_string()));
    if let (Excluded(l), Excluded(u)) = (&lower, &upper)
        && l >= u
    {
        return Vec::new();
    }
    let range = all.range((lower, upper)).map(|(_, m)| m).filter(keep);
    if after.is_some() {
        range.skip(skip as usize).take(limit).collect()
    } else {
        let mut v: Vec<&Message> = range.rev().skip(skip as usize).take(limit).collect();
        v.reverse();
        v
    }
}
