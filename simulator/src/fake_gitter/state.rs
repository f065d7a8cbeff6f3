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

use crate::fake_hs::net::{Budget, take_budget};

use super::render::{self, Rendered};
use crate::util::{is_object_id, iso_ms, random_hex, text_len};

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
    fail_next: Option<(u32, u16)>,
    fail_until: Option<(u64, u16)>,
    /// Added latency for every API-host response but the sign-in page.
    pub delay: Duration,
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

    fn new_token(&mut self) -> String {
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

    fn usernames_to_ids(&self, names: &[String]) -> Result<Vec<String>, String> {
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

    fn add_member(&mut self, room_id: &str, user_id: &str, now_ms: u64) {
        if let Some(room) = self.rooms.get_mut(room_id)
            && !room.members.iter().any(|m| m == user_id)
        {
            room.members.push(user_id.to_string());
            self.last_access
                .insert((user_id.to_string(), room_id.to_string()), now_ms);
        }
    }

    // ------------------------------------------------------------------
    // auth, rate limit, faults

    /// Look up a bearer token (docs/gitter-api.md §1.2). Unknown or revoked: 401.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(ApiError::unauthorized)?;
        let rec = self.tokens.get(token).ok_or_else(ApiError::unauthorized)?;
        if !self.users.contains_key(&rec.user_id) {
            return Err(ApiError::unauthorized());
        }
        Ok(Caller {
            user_id: rec.user_id.clone(),
            client_id: rec.client_id.clone(),
            token: token.to_string(),
        })
    }

    /// Count one request against the fixed window of (user, client)
    /// (docs/gitter-api.md §8, dolph `INCR` + `EXPIRE`). `Err` means 429; both
    /// variants carry the header values, which go on every limited response.
    pub fn rate_check(&mut self, caller: &Caller, now_ms: u64) -> Result<RateInfo, RateInfo> {
        let window = self.config.rate_window.as_millis() as u64;
        let limit = self.config.rate_limit;
        let key = (caller.user_id.clone(), caller.client_id.clone());
        let entry = self.rate.entry(key).or_insert((now_ms, 0));
        if now_ms >= entry.0 + window {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let info = RateInfo {
            limit,
            remaining: limit.saturating_sub(entry.1),
            reset_ms: entry.0 + window,
        };
        if entry.1 > limit { Err(info) } else { Ok(info) }
    }

    /// Make the next `n` `/v1` requests fail with `status` (429 or 5xx).
    pub fn fail_next(&mut self, n: u32, status: u16) {
        self.faults.fail_next = (n > 0).then_some((n, status));
    }

    /// Make every `/v1` request fail with `status` until `until_ms`.
    pub fn fail_until(&mut self, until_ms: u64, status: u16) {
        self.faults.fail_until = Some((until_ms, status));
    }

    /// Delay every `/v1` response by `delay`.
    pub fn set_delay(&mut self, delay: Duration) {
        self.faults.delay = delay;
    }

    pub fn delay(&self) -> Duration {
        self.faults.delay
    }

    /// Remove all injected faults.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// The next `n` `POST /v1/rooms/:roomId/chatMessages` are processed (the
    /// message is stored and streamed) and then get no answer at all.
    pub fn lose_send_answers(&mut self, n: u32) {
        self.faults.lost_sends = n;
    }

    /// Send answers still to be lost.
    pub fn pending_lost_sends(&self) -> u32 {
        self.faults.lost_sends
    }

    /// Whether this send's answer is to be lost (consumes one).
    pub fn take_lost_send(&mut self) -> bool {
        if self.faults.lost_sends == 0 {
            return false;
        }
        self.faults.lost_sends -= 1;
        true
    }

    /// New stream connections answer 200 and end at once, for `budget`.
    pub fn flap_streams(&mut self, budget: Budget) {
        self.faults.flap = Some(budget);
    }

    /// Whether this new stream ends at once (consumes one of a "next N").
    pub fn take_flap(&mut self, now_ms: u64) -> bool {
        take_budget(&mut self.faults.flap, now_ms)
    }

    /// Streams, open and new, send nothing (no heartbeat either) until
    /// `until_ms`; what they should have sent follows then, as after a
    /// stalled TCP path.
    pub fn silence_streams_until(&mut self, until_ms: u64) {
        self.faults.silent_until = Some(until_ms);
    }

    /// How long streams stay silent from `now_ms`, if they are.
    pub fn silence_left(&self, now_ms: u64) -> Option<Duration> {
        self.faults
            .silent_until
            .filter(|u| *u > now_ms)
            .map(|u| Duration::from_millis(u - now_ms))
    }

    /// Turn on a hostile answer for `budget` (each kind has its own).
    pub fn set_hostile(&mut self, hostile: Hostile, budget: Budget) {
        match hostile {
            Hostile::HugeBody { bytes, status } => {
                self.faults.huge_body = Some((budget, bytes, status));
            }
            Hostile::EndlessLine => self.faults.endless_line = Some(budget),
            Hostile::SlowDrip {
                chunk_bytes,
                interval_ms,
            } => {
                self.faults.slow_drip = Some((
                    budget,
                    chunk_bytes.max(1),
                    Duration::from_millis(interval_ms),
                ));
            }
        }
    }

    /// The hostile way to answer this API request, if any (consumes one of
    /// each "next N" that applies): a huge body replaces the answer, else a
    /// slow drip delivers it.
    pub fn take_hostile_answer(&mut self, now_ms: u64) -> Option<Hostile> {
        if let Some((budget, bytes, status)) = self.faults.huge_body {
            let mut slot = Some(budget);
            let hit = take_budget(&mut slot, now_ms);
            self.faults.huge_body = slot.map(|b| (b, bytes, status));
            if hit {
                return Some(Hostile::HugeBody { bytes, status });
            }
        }
        if let Some((budget, chunk_bytes, interval)) = self.faults.slow_drip {
            let mut slot = Some(budget);
            let hit = take_budget(&mut slot, now_ms);
            self.faults.slow_drip = slot.map(|b| (b, chunk_bytes, interval));
            if hit {
                return Some(Hostile::SlowDrip {
                    chunk_bytes,
                    interval_ms: interval.as_millis() as u64,
                });
            }
        }
        None
    }

    /// Whether this new stream is an endless line (consumes one).
    pub fn take_endless_line(&mut self, now_ms: u64) -> bool {
        take_budget(&mut self.faults.endless_line, now_ms)
    }

    /// How many of the "next N" injected failures have not been served yet.
    pub fn pending_failures(&self) -> u32 {
        self.faults.fail_next.map_or(0, |(n, _)| n)
    }

    /// Whether this request should fail with an injected status; consumes one
    /// of the "next N" failures.
    pub fn take_fault(&mut self, now_ms: u64) -> Option<u16> {
        if let Some((n, status)) = self.faults.fail_next {
            self.faults.fail_next = (n > 1).then_some((n - 1, status));
            return Some(status);
        }
        match self.faults.fail_until {
            Some((until, status)) if now_ms < until => Some(status),
            Some(_) => {
                self.faults.fail_until = None;
                None
            }
            None => None,
        }
    }

    /// Revoke a token: it gives 401 from now on and its streams close
    /// (docs/gitter-api.md §2.2 "Tokens stay valid until deleted"; §6.4 token_revoked
    /// "destroys every socket opened with that token").
    pub fn revoke_token(&mut self, token: &str) -> bool {
        let existed = self.tokens.remove(token).is_some();
        self.streams.retain(|s| s.token != token);
        existed
    }

    // ------------------------------------------------------------------
    // OAuth (docs/gitter-api.md §2)

    /// Validate an authorize request. Errors are `(status, html message)`:
    /// the real server shows an HTML page, not JSON.
    pub fn check_authorize(
        &self,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
        response_type: Option<&str>,
    ) -> Result<(), (u16, String)> {
        if client_id != Some(self.config.client_id.as_str()) {
            return Err((401, "Unknown client_id".into()));
        }
        if redirect_uri != Some(self.config.redirect_uri.as_str()) {
            return Err((
                401,
                "Provided redirectUri does not match registered URI for client_id/clientKey".into(),
            ));
        }
        if response_type != Some("code") {
            return Err((
                400,
                "Unsupported response_type; only \"code\" is supported".into(),
            ));
        }
        Ok(())
    }

    /// Issue a single-use 40-hex authorization code for `username`
    /// (docs/gitter-api.md §2.1 step 3). Call after [`Self::check_authorize`].
    pub fn issue_code(&mut self, username: &str) -> Option<String> {
        let user_id = self.user_by_username(username)?.id.clone();
        let code = random_hex(&mut self.rng, 40);
        self.codes.insert(
            code.clone(),
            CodeRec {
                user_id,
                client_id: self.config.client_id.clone(),
                redirect_uri: self.config.redirect_uri.clone(),
            },
        );
        Some(code)
    }

    /// `POST /login/oauth/token` (docs/gitter-api.md §2.1 step 4, §2.3). The
    /// fields are the body's, form or JSON. Returns the access token.
    pub fn exchange_code(&mut self, form: &HashMap<String, String>) -> Result<String, OAuthError> {
        let get = |k: &str| form.get(k).map(String::as_str);
        // passport `oauth2-client-password`: body credentials only.
        if get("client_id") != Some(self.config.client_id.as_str())
            || get("client_secret") != Some(self.config.client_secret.as_str())
        {
            return Err(OAuthError::new(401, "server_error", "Unauthorized"));
        }
        match get("grant_type") {
            None => {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ));
            }
            Some("authorization_code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    501,
                    "unsupported_grant_type",
                    format!("Unsupported grant type: {other}"),
                ));
            }
        }
        let Some(code) = get("code") else {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "Missing required parameter: code",
            ));
        };
        let invalid = || OAuthError::new(403, "invalid_grant", "Invalid authorization code");
        let rec = self.codes.get(code).ok_or_else(invalid)?;
        if rec.client_id != self.config.client_id
            || get("redirect_uri") != Some(rec.redirect_uri.as_str())
        {
            return Err(invalid());
        }
        // Single use: deleted on a successful exchange.
        let rec = self.codes.remove(code).ok_or_else(invalid)?;
        Ok(self.token_for(&rec.user_id, &rec.client_id))
    }

    // ------------------------------------------------------------------
    // serializers (docs/gitter-api.md §4; absent fields are left out, never null)

    /// A User. `providers` only for `/v1/user` and `/v1/user/me` (§4.1).
    pub fn user_json(&self, user: &User, providers: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(user.id));
        m.insert("username".into(), json!(user.username));
        m.insert("displayName".into(), json!(user.display_name));
        m.insert("url".into(), json!(format!("/{}", user.username)));
        m.insert(
            "avatarUrl".into(),
            json!(format!(
                "https://avatars-05.gitter.im/gh/uv/4/{}",
                user.username
            )),
        );
        m.insert(
            "avatarUrlSmall".into(),
            json!(format!(
                "https://avatars.githubusercontent.com/{}?s=60",
                user.username
            )),
        );
        m.insert(
            "avatarUrlMedium".into(),
            json!(format!(
                "https://avatars.githubusercontent.com/{}?s=128",
                user.username
            )),
        );
        if providers {
            m.insert("providers".into(), json!(["github"]));
        }
        m.insert("v".into(), json!(user.v));
        m.insert("gv".into(), json!("4"));
        Value::Object(m)
    }

    fn user_json_by_id(&self, id: &str) -> Value {
        match self.users.get(id) {
            Some(u) => self.user_json(u, false),
            None => json!({ "id": id, "removed": true }),
        }
    }

    /// A Room as seen by `viewer` (§4.2).
    pub fn room_json(&self, room: &Room, viewer: &str) -> Value {
        let mut m = Map::new();
        let other = room
            .one_to_one
            .then(|| {
                room.members
                    .iter()
                    .find(|m| *m != viewer)
                    .and_then(|id| self.users.get(id))
            })
            .flatten();
        let name = match other {
            Some(u) => u.display_name.clone(),
            None => room.name.clone(),
        };
        let unread = self.unread.get(&(viewer.to_string(), room.id.clone()));
        m.insert("id".into(), json!(room.id));
        m.insert("name".into(), json!(name));
        m.insert("topic".into(), json!(room.topic));
        let avatar = match (other, &room.uri) {
            (Some(u), _) => format!("https://avatars-05.gitter.im/gh/uv/4/{}", u.username),
            (None, _) => format!("https://avatars-05.gitter.im/group/iv/4/{}", room.group_id),
        };
        m.insert("avatarUrl".into(), json!(avatar));
        if let Some(uri) = &room.uri {
            m.insert("uri".into(), json!(uri));
        }
        m.insert("oneToOne".into(), json!(room.one_to_one));
        m.insert("userCount".into(), json!(room.members.len()));
        if let Some(u) = other {
            m.insert("user".into(), self.user_json(u, false));
        }
        m.insert(
            "unreadItems".into(),
            json!(unread.map_or(0, |u| u.chat.len())),
        );
        m.insert(
            "mentions".into(),
            json!(unread.map_or(0, |u| u.mention.len())),
        );
        if let Some(t) = self.last_access.get(&(viewer.to_string(), room.id.clone())) {
            m.insert("lastAccessTime".into(), json!(iso_ms(*t)));
        }
        let settings = self.settings.get(&(viewer.to_string(), room.id.clone()));
        if let Some(f) = settings.and_then(|s| s.favourite) {
            m.insert("favourite".into(), json!(f));
        }
        let lurk = settings
            .and_then(|s| s.mode.as_deref())
            .is_some_and(|mode| mode != "all");
        m.insert("lurk".into(), json!(lurk));
        let url = match (other, &room.uri) {
            (Some(u), _) => format!("/{}", u.username),
            (None, Some(uri)) => format!("/{uri}"),
            (None, None) => "/".to_string(),
        };
        m.insert("url".into(), json!(url));
        let github_type = if room.one_to_one {
            "ONETOONE"
        } else if room.uri.as_deref().is_some_and(|u| u.contains('/')) {
            "REPO_CHANNEL"
        } else {
            "ORG"
        };
        m.insert("githubType".into(), json!(github_type));
        if !room.one_to_one {
            m.insert(
                "security".into(),
                json!(if room.public { "PUBLIC" } else { "PRIVATE" }),
            );
        }
        m.insert("noindex".into(), json!(false));
        m.insert("tags".into(), json!([]));
        m.insert(
            "permissions".into(),
            json!({ "admin": room.admins.contains(viewer) }),
        );
        m.insert(
            "roomMember".into(),
            json!(room.members.iter().any(|x| x == viewer)),
        );
        if !room.one_to_one {
            m.insert("groupId".into(), json!(room.group_id));
        }
        m.insert("public".into(), json!(room.public && !room.one_to_one));
        m.insert("v".into(), json!(room.v));
        Value::Object(m)
    }

    /// A Message (§4.3). `viewer` adds `unread`; stream payloads pass `None`
    /// (realtime payloads have no `unread`).
    pub fn message_json(&self, msg: &Message, viewer: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(msg.id));
        m.insert("text".into(), json!(msg.text));
        m.insert("html".into(), json!(msg.rendered.html));
        if msg.status {
            m.insert("status".into(), json!(true));
        }
        m.insert("sent".into(), json!(iso_ms(msg.sent_ms)));
        if let Some(e) = msg.edited_ms {
            m.insert("editedAt".into(), json!(iso_ms(e)));
        }
        if let Some(p) = &msg.parent_id {
            m.insert("parentId".into(), json!(p));
        }
        if msg.thread_count > 0 {
            m.insert("threadMessageCount".into(), json!(msg.thread_count));
        }
        m.insert("fromUser".into(), self.user_json_by_id(&msg.from_user));
        if let Some(viewer) = viewer {
            let unread = self
                .unread
                .get(&(viewer.to_string(), msg.room_id.clone()))
                .is_some_and(|u| u.chat.contains(&msg.id));
            m.insert("unread".into(), json!(unread));
        }
        m.insert("readBy".into(), json!(msg.read_by.len()));
        m.insert(
            "urls".into(),
            Value::Array(
                msg.rendered
                    .urls
                    .iter()
                    .map(|u| json!({ "url": u }))
                    .collect(),
            ),
        );
        m.insert(
            "mentions".into(),
            Value::Array(
                msg.rendered
                    .mentions
                    .iter()
                    .map(|men| {
                        let mut o = Map::new();
                        o.insert("screenName".into(), json!(men.screen_name));
                        if let Some(id) = &men.user_id {
                            o.insert("userId".into(), json!(id));
                        }
                        if men.group {
                            let members = self
                                .rooms
                                .get(&msg.room_id)
                                .map(|r| r.members.clone())
                                .unwrap_or_default();
                            o.insert("userIds".into(), json!(members));
                            o.insert("group".into(), json!(true));
                            o.insert("announcement".into(), json!(true));
                        } else {
                            o.insert("userIds".into(), json!([]));
                        }
                        Value::Object(o)
                    })
                    .collect(),
            ),
        );
        m.insert(
            "issues".into(),
            Value::Array(
                msg.rendered
                    .issues
                    .iter()
                    .map(|n| json!({ "number": n }))
                    .collect(),
            ),
        );
        m.insert("meta".into(), json!([]));
        m.insert("v".into(), json!(msg.v));
        Value::Object(m)
    }

    // ------------------------------------------------------------------
    // users (docs/gitter-api.md §3.1)

    /// `GET /v1/user/:userId`: `me` or your own id, else 403.
    pub fn user_show(&self, caller: &Caller, id: &str) -> Result<Value, ApiError> {
        if id != "me" && id != caller.user_id {
            return Err(ApiError::forbidden());
        }
        let user = self
            .users
            .get(&caller.user_id)
            .ok_or_else(ApiError::unauthorized)?;
        Ok(self.user_json(user, true))
    }

    fn check_self(&self, caller: &Caller, path_user: &str) -> Result<(), ApiError> {
        if path_user == "me" || path_user == caller.user_id {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    // ------------------------------------------------------------------
    // rooms (docs/gitter-api.md §3.2 - §3.5)

    /// `GET /v1/user/:userId/rooms` and `GET /v1/rooms`: member rooms plus
    /// rooms with unread mentions where the user is not a member
    /// (`roomMember: false`), no pagination (§3.2).
    pub fn rooms_for(&self, caller: &Caller, path_user: &str) -> Result<Vec<Value>, ApiError> {
        self.check_self(caller, path_user)?;
        let uid = &caller.user_id;
        Ok(self
            .rooms
            .values()
            .filter(|r| {
                r.members.contains(uid)
                    || self
                        .unread
                        .get(&(uid.clone(), r.id.clone()))
                        .is_some_and(|u| !u.mention.is_empty())
            })
            .map(|r| self.room_json(r, uid))
            .collect())
    }

    /// Room-scoped `load()`: 400 for a malformed id, 404 unknown, 403 when the
    /// caller may not read it (§7.2, `rooms/index.js`).
    fn load_room(&self, caller: &Caller, room_id: &str) -> Result<&Room, ApiError> {
        if !is_object_id(room_id) {
            return Err(ApiError::bad_request(format!("Invalid MongoId: {room_id}")));
        }
        // Mongo reads ObjectIds in either case; ours are stored lowercase.
        let room = self
            .rooms
            .get(&room_id.to_ascii_lowercase())
            .ok_or_else(ApiError::not_found)?;
        let member = room.members.contains(&caller.user_id);
        if !member && (room.one_to_one || !room.public) {
            return Err(ApiError::forbidden());
        }
        Ok(room)
    }

    /// Write permission: members only. (Real Gitter asks `policy.canWrite()`;
    /// its web client makes you press "Join" before you can talk, and a bridge
    /// must not rely on anything looser.)
    fn load_room_for_write(&self, caller: &Caller, room_id: &str) -> Result<&Room, ApiError> {
        let room = self.load_room(caller, room_id)?;
        if !room.members.contains(&caller.user_id) {
            return Err(ApiError::forbidden());
        }
        Ok(room)
    }

    /// A Room with its `group` (show, join and resolve) and `backend` (show and join), §4.2.
    fn room_json_with(&self, room: &Room, viewer: &str, backend: bool) -> Value {
        let mut v = self.room_json(room, viewer);
        if let (Some(o), Some(uri)) = (v.as_object_mut(), &room.uri) {
            let org = uri.split('/').next().unwrap_or(uri);
            o.insert("group".into(), group_json(&room.group_id, org));
            if backend {
                let kind = if uri.contains('/') {
                    "GH_REPO"
                } else {
                    "GH_ORG"
                };
                o.insert("backend".into(), json!({ "type": kind, "linkPath": uri }));
            }
        }
        v
    }

    /// `POST /v1/rooms {uri}`: resolve only, never join (2016+ behaviour,
    /// §3.3). Case-insensitive; a username gives the one-to-one room (created
    /// if needed); your own username, unknown or unreadable rooms give 404.
    pub fn resolve_room(
        &mut self,
        caller: &Caller,
        uri: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let uri = uri.map(str::trim).filter(|u| !u.is_empty());
        let Some(uri) = uri else {
            return Err(ApiError::bad_request("Bad Request"));
        };
        let uri = uri.trim_start_matches('/');
        if let Some(room) = self.room_by_uri(uri) {
            if !room.public && !room.members.contains(&caller.user_id) {
                return Err(ApiError::not_found());
            }
            return Ok(self.room_json_with(room, &caller.user_id, false));
        }
        let Some(other) = self.user_by_username(uri).map(|u| u.id.clone()) else {
            return Err(ApiError::not_found());
        };
        if other == caller.user_id {
            return Err(ApiError::not_found());
        }
        let rid = self.one_to_one_room(&caller.user_id, &other, now_ms);
        let room = self.rooms.get(&rid).ok_or_else(ApiError::not_found)?;
        Ok(self.room_json(room, &caller.user_id))
    }

    /// `POST /v1/user/:userId/rooms {id}`: join. Already a member is fine
    /// (§3.3 step 2).
    pub fn join_room(
        &mut self,
        caller: &Caller,
        path_user: &str,
        room_id: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        self.check_self(caller, path_user)?;
        let room_id = match room_id {
            Some(id) if is_object_id(id) => id.to_ascii_lowercase(),
            _ => return Err(ApiError::bad_request("Bad Request")),
        };
        let room = self.rooms.get(&room_id).ok_or_else(ApiError::not_found)?;
        let member = room.members.contains(&caller.user_id);
        if !member && (room.one_to_one || !room.public) {
            return Err(ApiError::forbidden());
        }
        self.add_member(&room_id, &caller.user_id, now_ms);
        let room = self.rooms.get(&room_id).ok_or_else(ApiError::not_found)?;
        Ok(self.room_json_with(room, &caller.user_id, true))
    }

    /// `DELETE /v1/rooms/:roomId/users/:userId`: leave (or remove, for
    /// admins). Target not a member: 404; not yourself and not admin: 403
    /// (§3.4). `by_username` is `?type=username`.
    pub fn remove_user(
        &mut self,
        caller: &Caller,
        room_id: &str,
        target: &str,
        by_username: bool,
    ) -> Result<Value, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let target_id = if by_username {
            self.user_by_username(target).map(|u| u.id.clone())
        } else {
            Some(target.to_string())
        };
        let Some(target_id) = target_id.filter(|t| room.members.contains(t)) else {
            return Err(ApiError::not_found());
        };
        if target_id != caller.user_id && !room.admins.contains(&caller.user_id) {
            return Err(ApiError::forbidden());
        }
        if room.one_to_one {
            // One-to-one rooms cannot be left, only hidden (§3.4).
            return Err(ApiError::bad_request("One-to-one rooms cannot be left"));
        }
        let room_id = room.id.clone();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|m| *m != target_id);
        }
        Ok(json!({ "success": true }))
    }

    /// `GET /v1/rooms/:roomId/users`: join order, `skip`, `limit` default 30
    /// max 100, `q` filter, `role: "admin"` unless every member is an admin
    /// (§3.5).
    pub fn room_users(
        &self,
        caller: &Caller,
        room_id: &str,
        skip: Option<u64>,
        limit: Option<u64>,
        q: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let limit = match limit {
            None | Some(0) => 30,
            Some(n) => n.min(100),
        } as usize;
        let all_admin = room.members.iter().all(|m| room.admins.contains(m));
        let q = q.map(str::to_lowercase);
        Ok(room
            .members
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| {
                q.as_ref().is_none_or(|q| {
                    u.username.to_lowercase().contains(q)
                        || u.display_name.to_lowercase().contains(q)
                })
            })
            .skip(skip.unwrap_or(0) as usize)
            .take(limit)
            .map(|u| {
                let mut v = self.user_json(u, false);
                if !all_admin
                    && room.admins.contains(&u.id)
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("role".into(), json!("admin"));
                }
                v
            })
            .collect())
    }

    // ------------------------------------------------------------------
    // messages (docs/gitter-api.md §3.6 - §3.10)

    /// `GET /v1/rooms/:roomId/chatMessages` (§3.6): always oldest first.
    pub fn list_messages(
        &self,
        caller: &Caller,
        room_id: &str,
        q: &MessageQuery,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let skip = q.skip.unwrap_or(0);
        if skip > MAX_SKIP {
            return Err(ApiError::bad_request(
                "Skip is limited to 5000 items. Please use beforeId rather than skip. See https://developer.gitter.im",
            ));
        }
        let limit = clamp_limit(q.limit);
        let include_threads = q.include_threads.unwrap_or(false);
        let empty = BTreeMap::new();
        let all = self.messages.get(&room.id).unwrap_or(&empty);
        let visible = |m: &&Message| include_threads || m.parent_id.is_none();
        let viewer = Some(caller.user_id.as_str());

        if let Some(around) = &q.around_id
            && let Some(anchor) = all.get(around)
        {
            // Centre on the parent when the anchor is a thread reply, and
            // append the reply at the end.
            let centre = anchor
                .parent_id
                .clone()
                .unwrap_or_else(|| anchor.id.clone());
            let half = limit / 2;
            let mut older: Vec<&Message> = all
                .range(..=centre.clone())
                .map(|(_, m)| m)
                .rev()
                .filter(visible)
                .take(half)
                .collect();
            older.reverse();
            let newer = all
                .range((
                    std::ops::Bound::Excluded(centre),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, m)| m)
                .filter(visible)
                .take(half);
            let mut out: Vec<&Message> = older.into_iter().chain(newer).collect();
            if anchor.parent_id.is_some() && !out.iter().any(|m| m.id == anchor.id) {
                out.push(anchor);
            }
            return Ok(out
                .into_iter()
                .map(|m| {
                    let mut v = self.message_json(m, viewer);
                    if m.id == anchor.id
                        && let Some(o) = v.as_object_mut()
                    {
                        o.insert("initial".into(), json!(true));
                    }
                    v
                })
                .collect());
        }

        // An aroundId that names no message of the room gives the latest 50,
        // whatever else was asked (§3.6).
        let page = if q.around_id.is_some() {
            page_messages(all, None, None, 0, clamp_limit(None), visible)
        } else {
            page_messages(
                all,
                q.before_id.as_deref(),
                q.after_id.as_deref(),
                skip,
                limit,
                visible,
            )
        };
        Ok(page
            .into_iter()
            .map(|m| self.message_json(m, viewer))
            .collect())
    }

    /// `GET /v1/rooms/:roomId/chatMessages/:messageId`: 404 when the message
    /// is in another room.
    pub fn get_message(
        &self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
    ) -> Result<Value, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let msg = self.find_message(&room.id, msg_id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    fn find_message(&self, room_id: &str, msg_id: &str) -> Result<&Message, ApiError> {
        self.messages
            .get(room_id)
            .and_then(|m| m.get(msg_id))
            .ok_or_else(ApiError::not_found)
    }

    /// `GET /v1/rooms/:roomId/chatMessages/:parentId/thread` (§3.10).
    pub fn thread(
        &self,
        caller: &Caller,
        room_id: &str,
        parent_id: &str,
        q: &MessageQuery,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        self.find_message(&room.id, parent_id)?;
        let empty = BTreeMap::new();
        let all = self.messages.get(&room.id).unwrap_or(&empty);
        let limit = clamp_limit(q.limit);
        let page = page_messages(
            all,
            q.before_id.as_deref(),
            q.after_id.as_deref(),
            0,
            limit,
            |m| m.parent_id.as_deref() == Some(parent_id),
        );
        Ok(page
            .into_iter()
            .map(|m| self.message_json(m, Some(&caller.user_id)))
            .collect())
    }

    /// `POST /v1/rooms/:roomId/chatMessages` (§3.7). Saves, updates unread
    /// items and pushes the message to every open stream of the room
    /// (including the sender's own, §3.7 last bullet).
    pub fn post_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        text: Option<&str>,
        status: bool,
        parent_id: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let room_id = self.load_room_for_write(caller, room_id)?.id.clone();
        let text = text.unwrap_or_default();
        if text.is_empty() {
            return Err(ApiError::bad_request("Text is required"));
        }
        if text_len(text) > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("Message exceeds maximum size"));
        }
        if let Some(pid) = parent_id {
            if !is_object_id(pid) {
                return Err(ApiError::bad_request("parentId must be a valid message ID"));
            }
            if self.find_message(&room_id, pid).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Parent message {pid} doesn't exist in troupe {room_id}"
                )));
            }
        }
        let id = self.new_object_id(now_ms);
        let rendered = self.render_by(text, &room_id, &caller.user_id);
        let msg = Message {
            id: id.clone(),
            room_id: room_id.clone(),
            from_user: caller.user_id.clone(),
            text: text.to_string(),
            rendered,
            status,
            sent_ms: now_ms,
            edited_ms: None,
            parent_id: parent_id.map(str::to_string),
            thread_count: 0,
            v: 1,
            read_by: BTreeSet::new(),
        };
        self.mark_unread_for_others(&msg);
        let room_msgs = self.messages.entry(room_id.clone()).or_default();
        if let Some(pid) = parent_id
            && let Some(parent) = room_msgs.get_mut(pid)
        {
            // Each reply saves the parent: count and version go up (§3.10).
            parent.thread_count += 1;
            parent.v += 1;
        }
        room_msgs.insert(id.clone(), msg);
        self.broadcast(&room_id, &id);
        let msg = self.find_message(&room_id, &id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    /// Renders a text `author` writes in `room_id`. Only a room admin announces with
    /// `@/all`; from anyone else it mentions nobody.
    fn render_by(&self, text: &str, room_id: &str, author: &str) -> Rendered {
        let mut rendered = render::render(text, |name| {
            self.user_by_username(name).map(|u| u.id.clone())
        });
        let admin = self
            .rooms
            .get(room_id)
            .is_some_and(|r| r.admins.contains(author));
        if !admin {
            rendered.mentions.retain(|m| !m.group);
        }
        rendered
    }

    fn mark_unread_for_others(&mut self, msg: &Message) {
        let members = self
            .rooms
            .get(&msg.room_id)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for m in members.iter().filter(|m| **m != msg.from_user) {
            self.unread
                .entry((m.clone(), msg.room_id.clone()))
                .or_default()
                .chat
                .insert(msg.id.clone());
        }
        // Mentions count for non-members too: that is what puts a room with
        // `roomMember: false` into their room list (§3.2).
        if msg.rendered.mentions.iter().any(|m| m.group) {
            for m in members.iter().filter(|m| **m != msg.from_user) {
                self.unread
                    .entry((m.clone(), msg.room_id.clone()))
                    .or_default()
                    .mention
                    .insert(msg.id.clone());
            }
        }
        for men in &msg.rendered.mentions {
            if let Some(uid) = men.user_id.as_ref().filter(|u| **u != msg.from_user) {
                let entry = self
                    .unread
                    .entry((uid.clone(), msg.room_id.clone()))
                    .or_default();
                entry.mention.insert(msg.id.clone());
                if members.contains(uid) {
                    entry.chat.insert(msg.id.clone());
                }
            }
        }
    }

    fn broadcast(&mut self, room_id: &str, msg_id: &str) {
        let Ok(msg) = self.find_message(room_id, msg_id) else {
            return;
        };
        let mut line = self.message_json(msg, None).to_string();
        line.push('\n');
        // A failed send means the client went away: forget that stream.
        self.streams
            .retain(|s| s.room_id != room_id || s.tx.send(line.clone()).is_ok());
    }

    /// `PUT /v1/rooms/:roomId/chatMessages/:messageId` (§3.8): author only,
    /// within the edit window, 4096 chars; empty text allowed. Sets
    /// `editedAt`, bumps `v`. Edits are not sent on the stream (§5.1).
    pub fn edit_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
        text: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let room_id = self.load_room_for_write(caller, room_id)?.id.clone();
        let msg = self.find_message(&room_id, msg_id)?;
        if msg.from_user != caller.user_id {
            return Err(ApiError::new(403, "You can only edit your own messages"));
        }
        if now_ms > msg.sent_ms + self.config.edit_window.as_millis() as u64 {
            return Err(ApiError::bad_request("You can no longer edit this message"));
        }
        let text = text.unwrap_or_default();
        if text_len(text) > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("Message exceeds maximum size"));
        }
        let rendered = self.render_by(text, &room_id, &caller.user_id);
        let Some(msg) = self
            .messages
            .get_mut(&room_id)
            .and_then(|m| m.get_mut(msg_id))
        else {
            return Err(ApiError::not_found());
        };
        msg.text = text.to_string();
        msg.rendered = rendered;
        msg.edited_ms = Some(now_ms);
        msg.v += 1;
        let msg = self.find_message(&room_id, msg_id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    /// `DELETE /v1/rooms/:roomId/chatMessages/:messageId` (§3.9): author or
    /// room admin; a parent with replies is blanked instead of removed;
    /// deleting a reply decrements the parent's count. Answer: 204.
    pub fn delete_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
    ) -> Result<(), ApiError> {
        let room = self.load_room(caller, room_id)?;
        let is_admin = room.admins.contains(&caller.user_id);
        let room_id = room.id.clone();
        let msg = self.find_message(&room_id, msg_id)?;
        if msg.from_user != caller.user_id && !is_admin {
            return Err(ApiError::forbidden());
        }
        let Some(msgs) = self.messages.get_mut(&room_id) else {
            return Err(ApiError::not_found());
        };
        let Some(msg) = msgs.get_mut(msg_id) else {
            return Err(ApiError::not_found());
        };
        if msg.thread_count > 0 {
            msg.text.clear();
            msg.rendered = Rendered::default();
            msg.v += 1;
            return Ok(());
        }
        let parent = msg.parent_id.clone();
        msgs.remove(msg_id);
        if let Some(parent) = parent.and_then(|p| msgs.get_mut(&p)) {
            parent.thread_count = parent.thread_count.saturating_sub(1);
            parent.v += 1;
        }
        for u in self.unread.values_mut() {
            u.chat.remove(msg_id);
            u.mention.remove(msg_id);
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // unread items (docs/gitter-api.md §3.11)

    // ------------------------------------------------------------------
    // streaming (docs/gitter-api.md §5)

    /// Open a stream of the room's new messages. Same auth and read
    /// permission as REST; the receiver gets one `<json>\n` line per new
    /// message. The HTTP layer adds the `" \n"` heartbeats.
    pub fn open_stream(
        &mut self,
        token: Option<&str>,
        room_id: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<String>), ApiError> {
        self.open_sub(token, room_id)
    }

    fn open_sub(
        &mut self,
        token: Option<&str>,
        room_id: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<String>), ApiError> {
        let caller = self.authenticate(token)?;
        let room_id = self.load_room(&caller, room_id)?.id.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.push(StreamSub {
            id,
            room_id,
            token: caller.token,
            tx,
        });
        Ok((id, rx))
    }

    /// Whether the stream `id` is still registered (the HTTP layer ends the
    /// response when it is not).
    pub fn stream_alive(&self, id: u64) -> bool {
        self.streams.iter().any(|s| s.id == id && !s.tx.is_closed())
    }

    /// Close every stream of `room_id` (or all streams): the client sees its
    /// response end, as after a server restart (§5.2).
    pub fn drop_streams(&mut self, room_id: Option<&str>) -> usize {
        let before = self.streams.len();
        self.streams
            .retain(|s| room_id.is_some_and(|r| s.room_id != r));
        before - self.streams.len()
    }

    /// Writes `line` (a `\n` is added) as is to every open stream of
    /// `room_id`, for tests of what a client does with a line that is not a
    /// message. Returns how many streams got it.
    pub fn stream_raw_line(&mut self, room_id: &str, line: &str) -> usize {
        let mut line = line.to_owned();
        line.push('\n');
        let mut sent = 0;
        self.streams.retain(|s| {
            if s.room_id != room_id {
                return true;
            }
            let ok = s.tx.send(line.clone()).is_ok();
            sent += usize::from(ok);
            ok
        });
        sent
    }

    /// Usernames whose tokens hold the open streams of `room_id`, in opening
    /// order (which Gitter user a client reads the room as).
    pub fn stream_readers(&self, room_id: &str) -> Vec<String> {
        self.streams
            .iter()
            .filter(|s| s.is_chat() && s.room_id == room_id)
            .filter_map(|s| self.tokens.get(&s.token))
            .filter_map(|t| self.users.get(&t.user_id).map(|u| u.username.clone()))
            .collect()
    }

    /// Number of open message streams, optionally for one room.
    pub fn stream_count(&self, room_id: Option<&str>) -> usize {
        self.streams
            .iter()
            .filter(|s| s.is_chat() && room_id.is_none_or(|r| s.room_id == r))
            .count()
    }

    // ------------------------------------------------------------------
    // acting as a user (for tests and scenarios)

    /// A `Caller` for `username` as if it used the configured OAuth client.
    pub fn caller_for(&mut self, username: &str) -> Result<Caller, ApiError> {
        let user_id = self
            .user_by_username(username)
            .map(|u| u.id.clone())
            .ok_or_else(ApiError::not_found)?;
        let client_id = self.config.client_id.clone();
        let token = self.token_for(&user_id, &client_id);
        Ok(Caller {
            user_id,
            client_id,
            token,
        })
    }

    fn room_id_of(&self, room: &str) -> Result<String, ApiError> {
        self.room_ref(room)
            .map(|r| r.id.clone())
            .ok_or_else(ApiError::not_found)
    }

    /// Post as `username` into a room given by id or uri.
    pub fn post_as(
        &mut self,
        username: &str,
        room: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), false, None, now_ms)
    }

    /// Post a `/me` status message as `username`.
    pub fn post_status_as(
        &mut self,
        username: &str,
        room: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), true, None, now_ms)
    }

    /// Reply in a thread as `username`.
    pub fn reply_as(
        &mut self,
        username: &str,
        room: &str,
        parent_id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), false, Some(parent_id), now_ms)
    }

    /// Edit as `username`.
    pub fn edit_as(
        &mut self,
        username: &str,
        room: &str,
        msg_id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.edit_message(&caller, &rid, msg_id, Some(text), now_ms)
    }

    /// Delete as `username`.
    pub fn delete_as(&mut self, username: &str, room: &str, msg_id: &str) -> Result<(), ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.delete_message(&caller, &rid, msg_id)
    }

    /// Join as `username`.
    pub fn join_as(&mut self, username: &str, room: &str, now_ms: u64) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.join_room(&caller, "me", Some(&rid), now_ms)
    }

    /// Leave as `username`.
    pub fn leave_as(&mut self, username: &str, room: &str) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        let uid = caller.user_id.clone();
        self.remove_user(&caller, &rid, &uid, false)
    }

    /// The room's main-timeline messages (no thread replies), oldest first,
    /// as a member would fetch them, serialized without `unread`.
    pub fn messages_of(&self, room: &str) -> Result<Vec<Value>, ApiError> {
        let rid = self.room_id_of(room)?;
        Ok(self
            .room_messages(&rid)
            .into_iter()
            .map(|m| self.message_json(m, None))
            .collect())
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

// ----------------------------------------------------------------------
// seed file

/// The TOML seed (`fixtures/sim/gitter-seed.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitterSeed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub rooms: Vec<SeedRoom>,
    #[serde(default)]
    pub one_to_one: Vec<SeedOneToOne>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub id: Option<String>,
    pub username: String,
    #[serde(alias = "displayName")]
    pub display_name: Option<String>,
    /// A pre-issued personal token (40 lowercase hex chars).
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRoom {
    pub id: Option<String>,
    pub uri: String,
    pub name: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// `"PUBLIC"` (default) or `"PRIVATE"`.
    pub security: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    /// Generate this many extra users (`<uri-ish>-member-NNN`) and add them,
    /// for rooms with many members.
    #[serde(default)]
    pub filler_members: u32,
    /// Initial history, oldest first.
    #[serde(default)]
    pub messages: Vec<SeedMessage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMessage {
    pub from: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOneToOne {
    pub users: [String; 2],
    #[serde(default)]
    pub messages: Vec<SeedMessage>,
}

impl GitterSeed {
    pub fn from_toml(s: &str) -> Result<Self, String> {
        toml::from_str(s).map_err(|e| format!("invalid gitter seed: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&s)
    }
}

impl GitterState {
    /// Load a seed into this state. Seeded history is posted "now".
    pub fn apply_seed(&mut self, seed: &GitterSeed, now_ms: u64) -> Result<(), String> {
        for u in &seed.users {
            let id = self.add_user(u.id.clone(), &u.username, u.display_name.as_deref(), now_ms)?;
            if let Some(t) = &u.token {
                if t.len() != 40 || !t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(format!(
                        "token of {} must be 40 lowercase hex chars",
                        u.username
                    ));
                }
                self.insert_token(t, &id, PERSONAL_CLIENT);
            }
        }
        for r in &seed.rooms {
            let mut members = r.members.clone();
            let prefix: String = r
                .uri
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            for i in 1..=r.filler_members {
                let name = format!("{prefix}-member-{i:03}");
                let display = format!("Member {i} of {}", r.uri);
                self.add_user(None, &name, Some(&display), now_ms)?;
                members.push(name);
            }
            let public = match r.security.as_deref() {
                None | Some("PUBLIC") => true,
                Some("PRIVATE") => false,
                Some(other) => return Err(format!("room {}: unknown security {other}", r.uri)),
            };
            self.add_room(
                r.id.clone(),
                &r.uri,
                r.name.as_deref(),
                &r.topic,
                public,
                &members,
                &r.admins,
                now_ms,
            )?;
            for m in &r.messages {
                self.post_as(&m.from, &r.uri, &m.text, now_ms)
                    .map_err(|e| format!("room {} seed message: {e}", r.uri))?;
            }
        }
        for o in &seed.one_to_one {
            let ids = self.usernames_to_ids(&o.users)?;
            let rid = self.one_to_one_room(&ids[0], &ids[1], now_ms);
            for m in &o.messages {
                self.post_as(&m.from, &rid, &m.text, now_ms)
                    .map_err(|e| format!("one-to-one seed message: {e}"))?;
            }
        }
        Ok(())
    }
}
