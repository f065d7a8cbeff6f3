//! The fake homeserver's world as one plain struct: users, access tokens,
//! rooms with their event lists, the transaction-id cache, the queue of events
//! for the application service, media and injected faults. No I/O, no clock:
//! time comes in as `now_ms`. The HTTP layer (`http.rs`) parses requests, calls
//! one method under a lock, and runs the AS pusher.
//!
//! Where Synapse differs from the bare spec, this copies Synapse 1.163
//! (`docs/matrix.md` §1, §2 "Room version 12
//! pitfalls"): error codes and texts, the masquerading rules, per-AS
//! transaction-id caching, orphan rooms on a refused `createRoom`, room ids
//! without a server part, and the AS transaction scheduler.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::faults::InjectedErrors;
use crate::util::{random_b64url, random_letters};

/// Synapse's cap on events per AS transaction (`scheduler.py`).
pub const MAX_EVENTS_PER_TXN: usize = 100;

/// Synapse `MAX_ALIAS_LENGTH`.
const MAX_ALIAS_LENGTH: usize = 255;

/// Room versions this fake accepts; 12 is Synapse 1.163's default.
const ROOM_VERSIONS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

// ----------------------------------------------------------------------
// registration

/// One namespace entry of the registration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    pub exclusive: bool,
    pub regex: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Namespaces {
    #[serde(default)]
    pub users: Vec<Namespace>,
    #[serde(default)]
    pub aliases: Vec<Namespace>,
    #[serde(default)]
    pub rooms: Vec<Namespace>,
}

/// The application-service registration (spec `registration.yaml`; unknown
/// keys are ignored like Synapse does for keys it does not read).
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    pub id: String,
    /// `null` means "never push" (Synapse accepts an explicit null).
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    pub namespaces: Namespaces,
    #[serde(default)]
    pub receive_ephemeral: Option<bool>,
}

impl Registration {
    pub fn from_yaml(s: &str) -> Result<Self, String> {
        serde_saphyr::from_str(s).map_err(|e| format!("invalid registration: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_yaml(&s)
    }
}

/// Settings of one fake homeserver.
#[derive(Debug, Clone)]
pub struct HsConfig {
    pub server_name: String,
    pub registration: Registration,
    /// First retry delay of a failed AS transaction; Synapse uses 2 s,
    /// doubling up to 512 s. Tests use a few milliseconds.
    pub push_backoff_base: Duration,
    pub push_backoff_max: Duration,
    pub rng_seed: Option<u64>,
}

impl HsConfig {
    pub fn new(server_name: &str, registration: Registration) -> Self {
        Self {
            server_name: server_name.to_string(),
            registration,
            push_backoff_base: Duration::from_secs(2),
            push_backoff_max: Duration::from_secs(512),
            rng_seed: None,
        }
    }
}

// ----------------------------------------------------------------------
// errors and requesters

/// A Matrix error: `{"errcode","error", ...extra}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub status: u16,
    pub errcode: String,
    pub error: String,
    pub extra: Map<String, Value>,
}

impl MatrixError {
    pub fn new(status: u16, errcode: &str, error: impl Into<String>) -> Self {
        Self {
            status,
            errcode: errcode.to_string(),
            error: error.into(),
            extra: Map::new(),
        }
    }
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(403, "M_FORBIDDEN", error)
    }
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(404, "M_NOT_FOUND", error)
    }
    pub fn bad_json(error: impl Into<String>) -> Self {
        Self::new(400, "M_BAD_JSON", error)
    }
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
    /// The JSON body. An empty `errcode` marks a user-interactive-auth
    /// challenge, whose body is only `flows`/`params`/`session` in Synapse.
    pub fn body(&self) -> Value {
        let mut m = self.extra.clone();
        if !self.errcode.is_empty() {
            m.insert("errcode".into(), json!(self.errcode));
            m.insert("error".into(), json!(self.error));
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.error)
    }
}

impl std::error::Error for MatrixError {}

/// Synapse's 404 for an alias nobody made (`get_association`).
fn alias_not_found(alias: &str) -> MatrixError {
    MatrixError::not_found(format!("Room alias {alias} not found"))
}

/// `#local:domain` split at the first `:` (Synapse `RoomAlias.from_string`).
fn split_alias(alias: &str) -> Option<(&str, &str)> {
    alias.strip_prefix('#')?.split_once(':')
}

/// Python's `string.whitespace`, which Synapse refuses in alias local parts.
fn is_python_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Synapse `RoomAlias.is_valid`: `#`, a local part, `:`, and a server name
/// (`parse_and_validate_server_name`: a DNS name, IPv4 or `[IPv6]`, with an
/// optional port). 400 `M_INVALID_PARAM` "Room alias invalid" otherwise.
pub fn check_alias_syntax(alias: &str) -> Result<(), MatrixError> {
    let valid = split_alias(alias).is_some_and(|(_, domain)| valid_server_name(domain));
    if valid {
        Ok(())
    } else {
        Err(MatrixError::new(
            400,
            "M_INVALID_PARAM",
            "Room alias invalid",
        ))
    }
}

fn valid_server_name(name: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = name.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let ok = !v6.is_empty()
            && v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        match after.strip_prefix(':') {
            Some(p) => (ok, Some(p)),
            None if after.is_empty() => (ok, None),
            None => return false,
        }
    } else {
        let (h, p) = match name.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (name, None),
        };
        let ok = !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        (ok, p)
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Who is making a request, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// The application service, acting as `user_id` (its bot or a ghost).
    AppService { user_id: String },
    /// A normal user with their own access token.
    User { user_id: String, device_id: String },
}

impl Requester {
    pub fn user_id(&self) -> &str {
        match self {
            Requester::AppService { user_id } | Requester::User { user_id, .. } => user_id,
        }
    }
}

// ----------------------------------------------------------------------
// rooms and events

/// One event as stored.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub origin_server_ts: u64,
    /// When the server took it, Unix ms: `origin_server_ts` unless an application service
    /// stamped the event with a time of its own (the `ts` parameter), as the bridge does with
    /// Gitter's. Latency is measured from this, not from the stamp.
    pub received_ms: u64,
    pub redacts: Option<String>,
    pub redacted: bool,
}

impl Event {
    /// The relation this event makes (`m.relates_to` with a `rel_type`): (type, target).
    /// A reply alone (`m.in_reply_to`) is not a relation to the server (spec: "Rich
    /// replies" are not aggregated).
    pub fn relation(&self) -> Option<(&str, &str)> {
        let r = self.content.get("m.relates_to")?;
        Some((r.get("rel_type")?.as_str()?, r.get("event_id")?.as_str()?))
    }

    /// The client-format event (as sent to the AS, with Synapse's legacy
    /// `user_id` and `age` next to `sender` and `unsigned.age`).
    pub fn to_client_json(&self, now_ms: u64) -> Value {
        let age = now_ms.saturating_sub(self.origin_server_ts);
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind));
        m.insert("room_id".into(), json!(self.room_id));
        m.insert("sender".into(), json!(self.sender));
        m.insert("content".into(), self.content.clone());
        m.insert("event_id".into(), json!(self.event_id));
        m.insert("origin_server_ts".into(), json!(self.origin_server_ts));
        if let Some(k) = &self.state_key {
            m.insert("state_key".into(), json!(k));
        }
        if let Some(r) = &self.redacts {
            m.insert("redacts".into(), json!(r));
        }
        m.insert("unsigned".into(), json!({ "age": age }));
        m.insert("user_id".into(), json!(self.sender));
        m.insert("age".into(), json!(age));
        Value::Object(m)
    }
}

/// A room as stored.
#[derive(Debug, Clone)]
pub struct Room {
    pub room_id: String,
    pub version: String,
    pub creator: String,
    pub events: Vec<Event>,
    /// Current state: (type, state_key) -> index into `events`.
    pub state: BTreeMap<(String, String), usize>,
}

impl Room {
    /// The aggregations Synapse bundles into an event's `unsigned["m.relations"]`
    /// (spec: "Aggregations of child events"; Synapse `relations.py`): for a thread root,
    /// `m.thread` with the latest reply, the count and whether `user` took part; for an
    /// edited event, `m.replace` with the latest edit by the original's sender (edits by
    /// anyone else are not edits). Redacted children do not count.
    pub fn bundled(&self, event: &Event, user: &str, now_ms: u64) -> Option<Value> {
        let children = || {
            self.events
                .iter()
                .filter(|c| !c.redacted)
                .filter(move |c| c.relation().is_some_and(|(_, t)| t == event.event_id))
        };
        let mut relations = Map::new();
        let replies: Vec<&Event> = children()
            .filter(|c| c.relation().is_some_and(|(r, _)| r == "m.thread"))
            .collect();
        if let Some(latest) = replies.last() {
            let participated = event.sender == user || replies.iter().any(|c| c.sender == user);
            relations.insert(
                "m.thread".into(),
                json!({
                    "latest_event": latest.to_client_json(now_ms),
                    "count": replies.len(),
                    "current_user_participated": participated,
                }),
            );
        }
        if let Some(edit) = children()
            .filter(|c| c.relation().is_some_and(|(r, _)| r == "m.replace"))
            .rfind(|c| c.sender == event.sender && c.kind == event.kind)
        {
            relations.insert("m.replace".into(), edit.to_client_json(now_ms));
        }
        (!relations.is_empty()).then_some(Value::Object(relations))
    }

    pub fn state_content(&self, kind: &str, key: &str) -> Option<&Value> {
        self.state
            .get(&(kind.to_string(), key.to_string()))
            .and_then(|i| self.events.get(*i))
            .map(|e| &e.content)
    }

    /// Whether `user`'s current membership event was sent by `sender` with exactly
    /// `content`. Synapse answers such a repeated membership change with the existing event
    /// instead of a new one or an error (`update_membership_locked`: same sender, same
    /// membership, same content), so a retried leave or kick succeeds.
    pub fn same_membership_event(&self, user: &str, sender: &str, content: &Value) -> bool {
        self.state
            .get(&("m.room.member".to_string(), user.to_string()))
            .map(|i| &self.events[*i])
            .is_some_and(|e| e.sender == sender && &e.content == content)
    }

    pub fn membership(&self, user: &str) -> Option<&str> {
        self.state_content("m.room.member", user)
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str)
    }

    pub fn joined(&self) -> Vec<String> {
        self.members_with("join")
    }

    pub fn members_with(&self, membership: &str) -> Vec<String> {
        self.state
            .iter()
            .filter(|((t, _), _)| t == "m.room.member")
            .filter(|(_, i)| {
                self.events[**i]
                    .content
                    .get("membership")
                    .and_then(Value::as_str)
                    == Some(membership)
            })
            .map(|((_, k), _)| k.clone())
            .collect()
    }

    fn join_rule(&self) -> &str {
        self.state_content("m.room.join_rules", "")
            .and_then(|c| c.get("join_rule"))
            .and_then(Value::as_str)
            .unwrap_or("invite")
    }

    /// v12: creators have infinite power and must not be listed in `users`.
    fn creators_are_privileged(&self) -> bool {
        self.version == "12"
    }

    fn power_levels(&self) -> Value {
        self.state_content("m.room.power_levels", "")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// A user's power level; `i64::MAX` for a v12 creator.
    pub fn power_of(&self, user: &str) -> i64 {
        if self.creators_are_privileged() && user == self.creator {
            return i64::MAX;
        }
        let pl = self.power_levels();
        pl.get("users")
            .and_then(|u| u.get(user))
            .and_then(Value::as_i64)
            .or_else(|| pl.get("users_default").and_then(Value::as_i64))
            .unwrap_or(0)
    }

    fn level(&self, key: &str, default: i64) -> i64 {
        self.power_levels()
            .get(key)
            .and_then(Value::as_i64)
            .unwrap_or(default)
    }

    fn event_level(&self, kind: &str, is_state: bool) -> i64 {
        let pl = self.power_levels();
        pl.get("events")
            .and_then(|e| e.get(kind))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| {
                if is_state {
                    self.level("state_default", 50)
                } else {
                    self.level("events_default", 0)
                }
            })
    }
}

/// What a (human) user sees of one event, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenEvent {
    pub event_id: String,
    pub sender: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub msgtype: Option<String>,
    pub body: Option<String>,
    pub content: Value,
    pub redacted: bool,
    /// `origin_server_ts`, Unix ms.
    pub ts: u64,
    /// When the server took it, Unix ms ([`Event::received_ms`]).
    pub received: u64,
}

/// One AS transaction: its id and events (resent unchanged until 200).
#[derive(Debug, Clone, PartialEq)]
pub struct AsTransaction {
    pub txn_id: String,
    pub events: Vec<Value>,
}

#[derive(Debug, Clone)]
struct UserRec {
    displayname: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Faults {
    /// Errors of the Client-Server API, and the latency added to its answers.
    cs: InjectedErrors,
    push_fail_next: u32,
    /// Requests to process and then leave unanswered: how many, and on
    /// which routes.
    lost_answers: Option<(u32, Vec<CsRoute>)>,
}

/// The Client-Server routes, as the fault controls name them (JSON strings
/// like `"send"`, `"createRoom"`). `Any` matches every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum CsRoute {
    #[serde(rename = "register")]
    Register,
    #[serde(rename = "whoami")]
    Whoami,
    #[serde(rename = "createRoom")]
    CreateRoom,
    #[serde(rename = "joined_rooms")]
    JoinedRooms,
    #[serde(rename = "join")]
    Join,
    #[serde(rename = "invite")]
    Invite,
    #[serde(rename = "leave")]
    Leave,
    #[serde(rename = "forget")]
    Forget,
    #[serde(rename = "kick")]
    Kick,
    /// `PUT /rooms/{id}/send/{type}/{txnId}`.
    #[serde(rename = "send")]
    Send,
    /// `GET` and `PUT /rooms/{id}/state/...`.
    #[serde(rename = "state")]
    State,
    #[serde(rename = "redact")]
    Redact,
    /// `/rooms/{id}/members` and `/joined_members`.
    #[serde(rename = "members")]
    Members,
    #[serde(rename = "event")]
    Event,
    #[serde(rename = "profile")]
    Profile,
    /// `GET`, `PUT` and `DELETE /directory/room/{alias}`.
    #[serde(rename = "directory")]
    Directory,
    /// Upload and download.
    #[serde(rename = "media")]
    Media,
    /// `POST /_matrix/client/v1/appservice/{id}/ping`.
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "versions")]
    Versions,
    /// A path this fake does not serve (404 `M_UNRECOGNIZED`).
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "any")]
    Any,
}

/// One alias of the room directory.
#[derive(Debug, Clone)]
struct AliasRec {
    room_id: String,
    /// Who created it (for a masquerading AS, the ghost it acted as).
    creator: String,
}

/// A `createRoom` request body (the fields this fake reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateRoom {
    pub preset: Option<String>,
    pub visibility: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub invite: Vec<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub room_alias_name: Option<String>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}

/// The fake homeserver's state.
#[derive(Debug)]
pub struct HsState {
    pub config: HsConfig,
    user_regexes: Vec<(Regex, bool)>,
    alias_regexes: Vec<(Regex, bool)>,
    rng: StdRng,
    users: BTreeMap<String, UserRec>,
    /// Access tokens of normal users: token -> (user, device).
    tokens: HashMap<String, (String, String)>,
    rooms: BTreeMap<String, Room>,
    room_order: Vec<String>,
    /// The room directory: `#local:server` -> room and creator.
    aliases: HashMap<String, AliasRec>,
    /// Synapse `HttpTransactionCache`: key -> cached event id.
    txn_cache: HashMap<(String, String), String>,
    queue: VecDeque<Value>,
    in_flight: Option<AsTransaction>,
    next_txn: u64,
    delivered: Vec<AsTransaction>,
    push_attempts: Vec<(String, bool)>,
    media: HashMap<String, (String, Vec<u8>)>,
    faults: Faults,
}

impl HsState {
    /// A new homeserver. Fails if a namespace regex does not compile.
    pub fn new(config: HsConfig) -> Result<Self, String> {
        let mut user_regexes = Vec::new();
        for ns in &config.registration.namespaces.users {
            // Synapse matches the whole user id (`re.match` anchored at the
            // start; registrations conventionally end with `:server`).
            let re = Regex::new(&format!("^(?:{})", ns.regex))
                .map_err(|e| format!("bad users namespace regex {:?}: {e}", ns.regex))?;
            user_regexes.push((re, ns.exclusive));
        }
        let mut alias_regexes = Vec::new();
        for ns in &config.registration.namespaces.aliases {
            let re = Regex::new(&format!("^(?:{})", ns.regex))
                .map_err(|e| format!("bad aliases namespace regex {:?}: {e}", ns.regex))?;
            alias_regexes.push((re, ns.exclusive));
        }
        let rng = match config.rng_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let mut s = Self {
            config,
            user_regexes,
            alias_regexes,
            rng,
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            rooms: BTreeMap::new(),
            room_order: Vec::new(),
            aliases: HashMap::new(),
            txn_cache: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: None,
            next_txn: 1,
            delivered: Vec::new(),
            push_attempts: Vec::new(),
            media: HashMap::new(),
            faults: Faults::default(),
        };
        // Synapse registers the AS sender user at start-up.
        let bot = s.bot_user_id();
        s.users.insert(
            bot.clone(),
            UserRec {
                displayname: Some(s.config.registration.sender_localpart.clone()),
                avatar_url: None,
            },
        );
        Ok(s)
    }

    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// `@<sender_localpart>:<server_name>`.
    pub fn bot_user_id(&self) -> String {
        format!(
            "@{}:{}",
            self.config.registration.sender_localpart, self.config.server_name
        )
    }

    /// Whether the AS may act as `user_id`: its bot, or inside any users
    /// namespace (Synapse `is_interested_in_user`).
    pub fn in_as_namespace(&self, user_id: &str) -> bool {
        user_id == self.bot_user_id()
            || self.user_regexes.iter().any(|(re, _)| re.is_match(user_id))
    }

    fn in_exclusive_namespace(&self, user_id: &str) -> bool {
        self.user_regexes
            .iter()
            .any(|(re, ex)| *ex && re.is_match(user_id))
    }

    pub fn user_exists(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    fn new_event_id(&mut self) -> String {
        format!("${}", random_b64url(&mut self.rng, 43))
    }

    // ------------------------------------------------------------------
    // auth

    /// Authenticate a Client-Server request (Synapse `auth.get_user_by_req`).
    /// `user_id` is the `?user_id=` identity-assertion parameter.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Requester, MatrixError> {
        let Some(token) = token else {
            return Err(MatrixError::new(
                401,
                "M_MISSING_TOKEN",
                "Missing access token.",
            ));
        };
        if token == self.config.registration.as_token {
            let bot = self.bot_user_id();
            let target = user_id.unwrap_or(&bot);
            if target != bot {
                if !self.in_as_namespace(target) {
                    return Err(MatrixError::forbidden(format!(
                        "Application service cannot masquerade as this user ({target})."
                    )));
                }
                if !self.users.contains_key(target) {
                    return Err(MatrixError::forbidden(format!(
                        "Application service has not registered this user ({target})"
                    )));
                }
            }
            return Ok(Requester::AppService {
                user_id: target.to_string(),
            });
        }
        match self.tokens.get(token) {
            Some((user, device)) => Ok(Requester::User {
                user_id: user.clone(),
                device_id: device.clone(),
            }),
            None => Err(
                MatrixError::new(401, "M_UNKNOWN_TOKEN", "Unrecognised access token.")
                    .with("soft_logout", json!(false)),
            ),
        }
    }

    /// `true` if `token` is the AS token.
    pub fn is_as_token(&self, token: Option<&str>) -> bool {
        token == Some(self.config.registration.as_token.as_str())
    }

    // ------------------------------------------------------------------
    // faults

    /// Make the next `n` Client-Server requests fail with `status`.
    pub fn fail_cs_next(&mut self, n: u32, status: u16) {
        self.faults.cs.fail_next(n, status);
    }

    /// Make Client-Server requests fail with `status` until `until_ms`.
    pub fn fail_cs_until(&mut self, until_ms: u64, status: u16) {
        self.faults.cs.fail_until(until_ms, status);
    }

    pub fn set_cs_delay(&mut self, d: Duration) {
        self.faults.cs.delay = d;
    }

    pub fn cs_delay(&self) -> Duration {
        self.faults.cs.delay
    }

    /// Make the next `n` push attempts fail without reaching the AS (as if
    /// the connection were refused).
    pub fn fail_push_next(&mut self, n: u32) {
        self.faults.push_fail_next = n;
    }

    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// The injected error for this request, if any (consumes one "next N").
    pub fn take_cs_fault(&mut self, now_ms: u64) -> Option<MatrixError> {
        let status = self.faults.cs.take(now_ms)?;
        Some(if status == 429 {
            MatrixError::new(429, "M_LIMIT_EXCEEDED", "Too Many Requests")
                .with("retry_after_ms", json!(500))
        } else {
            MatrixError::new(status, "M_UNKNOWN", "Internal server error")
        })
    }

    /// Make the next `n` requests on `routes` (Client-Server routes, see
    /// [`CsRoute`]) be processed as usual and then lose their answer: the
    /// HTTP layer closes the connection without a response.
    pub fn lose_answers(&mut self, n: u32, routes: Vec<CsRoute>) {
        self.faults.lost_answers = (n > 0).then_some((n, routes));
    }

    /// Answers still to be lost.
    pub fn pending_lost_answers(&self) -> u32 {
        self.faults.lost_answers.as_ref().map_or(0, |(n, _)| *n)
    }

    /// Whether the answer to this request on `route` is to be lost
    /// (consumes one).
    pub fn take_lost_answer(&mut self, route: CsRoute) -> bool {
        let Some((n, routes)) = &mut self.faults.lost_answers else {
            return false;
        };
        if !routes.iter().any(|r| *r == CsRoute::Any || *r == route) {
            return false;
        }
        *n -= 1;
        if *n == 0 {
            self.faults.lost_answers = None;
        }
        true
    }

    /// Whether this push attempt should fail (consumes one).
    pub fn take_push_fault(&mut self) -> bool {
        if self.faults.push_fail_next > 0 {
            self.faults.push_fail_next -= 1;
            true
        } else {
            false
        }
    }

    // ------------------------------------------------------------------
    // registration (docs/matrix.md §1.5; Synapse texts measured)

    /// `POST /register`. `token` is the request's access token (if any).
    pub fn register(&mut self, token: Option<&str>, body: &Value) -> Result<Value, MatrixError> {
        let kind = body.get("type").and_then(Value::as_str);
        let username = body.get("username").and_then(Value::as_str);
        let inhibit_login = body
            .get("inhibit_login")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if self.is_as_token(token) {
            if kind != Some("m.login.application_service") {
                return Err(MatrixError::new(400, "M_UNKNOWN", "Invalid login type"));
            }
            let Some(local) = username else {
                return Err(MatrixError::new(400, "M_MISSING_PARAM", "Missing username"));
            };
            let local = local.to_lowercase();
            self.check_localpart(&local)?;
            let user_id = format!("@{local}:{}", self.config.server_name);
            if !self.in_as_namespace(&user_id) {
                return Err(MatrixError::new(
                    400,
                    "M_EXCLUSIVE",
                    "Invalid user localpart for this application service.",
                ));
            }
            if self.users.contains_key(&user_id) {
                return Err(MatrixError::new(
                    400,
                    "M_USER_IN_USE",
                    "User ID already taken.",
                ));
            }
            self.users.insert(
                user_id.clone(),
                UserRec {
                    displayname: Some(local.clone()),
                    avatar_url: None,
                },
            );
            let mut resp = json!({ "user_id": user_id, "home_server": self.config.server_name });
            if !inhibit_login {
                let (token, device) = self.new_login(&user_id);
                resp["access_token"] = json!(token);
                resp["device_id"] = json!(device);
            }
            return Ok(resp);
        }
        if token.is_some() {
            return Err(MatrixError::new(
                401,
                "M_UNKNOWN_TOKEN",
                "Unrecognised access token.",
            ));
        }
        if kind == Some("m.login.application_service") {
            return Err(MatrixError::new(
                401,
                "M_MISSING_TOKEN",
                "Missing access token.",
            ));
        }
        // Open registration with user-interactive auth: one m.login.dummy stage.
        let auth_type = body
            .get("auth")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        if auth_type != Some("m.login.dummy") {
            let session = random_letters(&mut self.rng, 24);
            return Err(MatrixError::new(401, "", "")
                .with("flows", json!([{ "stages": ["m.login.dummy"] }]))
                .with("params", json!({}))
                .with("session", json!(session)));
        }
        let local = match username {
            Some(u) => u.to_lowercase(),
            None => random_letters(&mut self.rng, 12).to_lowercase(),
        };
        let (user_id, token) = self.register_human(&local, None)?;
        let device = self
            .tokens
            .get(&token)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        Ok(json!({
            "user_id": user_id,
            "home_server": self.config.server_name,
            "access_token": token,
            "device_id": device,
        }))
    }

    fn check_localpart(&self, local: &str) -> Result<(), MatrixError> {
        if local.is_empty()
            || !local
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
        {
            return Err(MatrixError::new(
                400,
                "M_INVALID_USERNAME",
                "User ID can only contain characters a-z, 0-9, or '=_-./+'",
            ));
        }
        Ok(())
    }

    fn new_login(&mut self, user_id: &str) -> (String, String) {
        let token = format!("syt_{}", random_b64url(&mut self.rng, 30));
        let device = random_letters(&mut self.rng, 10).to_uppercase();
        self.tokens
            .insert(token.clone(), (user_id.to_string(), device.clone()));
        (token, device)
    }

    /// Register a human (no AS). Synapse refuses `_`-prefixed names before
    /// checking exclusive namespaces (measured). Returns (user id, token).
    pub fn register_human(
        &mut self,
        localpart: &str,
        displayname: Option<&str>,
    ) -> Result<(String, String), MatrixError> {
        let local = localpart.to_lowercase();
        self.check_localpart(&local)?;
        if local.starts_with('_') {
            return Err(MatrixError::new(
                400,
                "M_INVALID_USERNAME",
                "User ID may not begin with _",
            ));
        }
        let user_id = format!("@{local}:{}", self.config.server_name);
        if self.in_exclusive_namespace(&user_id) {
            return Err(MatrixError::new(
                400,
                "M_EXCLUSIVE",
                "This user ID is reserved by an application service.",
            ));
        }
        if self.users.contains_key(&user_id) {
            return Err(MatrixError::new(
                400,
                "M_USER_IN_USE",
                "User ID already taken.",
            ));
        }
        self.users.insert(
            user_id.clone(),
            UserRec {
                displayname: Some(displayname.unwrap_or(&local).to_string()),
                avatar_url: None,
            },
        );
        let (token, _) = self.new_login(&user_id);
        Ok((user_id, token))
    }

    /// The access token of a human (first one issued).
    pub fn token_of(&self, user_id: &str) -> Option<String> {
        self.tokens
            .iter()
            .find(|(_, (u, _))| u == user_id)
            .map(|(t, _)| t.clone())
    }

    /// `GET /account/whoami`.
    pub fn whoami(&self, req: &Requester) -> Value {
        match req {
            Requester::AppService { user_id } => json!({ "user_id": user_id, "is_guest": false }),
            Requester::User { user_id, device_id } => {
                json!({ "user_id": user_id, "is_guest": false, "device_id": device_id })
            }
        }
    }

    /// Validate `POST /_matrix/client/v1/appservice/{id}/ping`; returns the
    /// AS url to call.
    pub fn check_ping(&self, req: &Requester, id: &str) -> Result<String, MatrixError> {
        if !matches!(req, Requester::AppService { .. }) {
            return Err(MatrixError::forbidden(
                "Only application services can use this endpoint",
            ));
        }
        if id != self.config.registration.id {
            return Err(MatrixError::forbidden(
                "Mismatching application service ID in path",
            ));
        }
        self.config.registration.url.clone().ok_or_else(|| {
            MatrixError::new(400, "M_URL_NOT_SET", "Application service URL is not set")
        })
    }

    // ------------------------------------------------------------------
    // events

    fn profile_member_content(&self, user: &str, membership: &str) -> Value {
        let mut c = Map::new();
        c.insert("membership".into(), json!(membership));
        if let Some(u) = self.users.get(user) {
            if let Some(d) = &u.displayname {
                c.insert("displayname".into(), json!(d));
            }
            if let Some(a) = &u.avatar_url {
                c.insert("avatar_url".into(), json!(a));
            }
        }
        Value::Object(c)
    }

    /// Append an event to a room, update state, and queue it for the AS if
    /// the AS is interested. Returns the event id. Stamped with the time it is taken at.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        room_id: &str,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        redacts: Option<String>,
        ts: u64,
        event_id: Option<String>,
    ) -> String {
        self.append_stamped(
            room_id, sender, kind, state_key, content, redacts, ts, ts, event_id,
        )
    }

    /// [`Self::append`], taken at `received_ms` and stamped `ts` (an application service's
    /// `ts` parameter).
    #[allow(clippy::too_many_arguments)]
    fn append_stamped(
        &mut self,
        room_id: &str,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        redacts: Option<String>,
        ts: u64,
        received_ms: u64,
        event_id: Option<String>,
    ) -> String {
        let event_id = event_id.unwrap_or_else(|| self.new_event_id());
        let ev = Event {
            event_id: event_id.clone(),
            room_id: room_id.to_string(),
            sender: sender.to_string(),
            kind: kind.to_string(),
            state_key: state_key.map(str::to_string),
            content,
            origin_server_ts: ts,
            received_ms,
            redacts,
            redacted: false,
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return event_id;
        };
        room.events.push(ev.clone());
        if let Some(k) = state_key {
            room.state
                .insert((kind.to_string(), k.to_string()), room.events.len() - 1);
        }
        if self.as_interested(&ev) {
            self.queue.push_back(ev.to_client_json(ts));
        }
        event_id
    }

    /// Synapse `ApplicationService.is_interested_in_event`: the sender or a
    /// member event's target is in the namespace (or is the bot), or a
    /// joined member of the room is.
    fn as_interested(&self, ev: &Event) -> bool {
        if self.in_as_namespace(&ev.sender) {
            return true;
        }
        if ev.kind == "m.room.member"
            && let Some(k) = &ev.state_key
            && self.in_as_namespace(k)
        {
            return true;
        }
        self.rooms
            .get(&ev.room_id)
            .is_some_and(|r| r.joined().iter().any(|u| self.in_as_namespace(u)))
    }

    fn room(&self, room_id: &str) -> Result<&Room, MatrixError> {
        self.rooms
            .get(room_id)
            .ok_or_else(|| MatrixError::not_found("Unknown room"))
    }

    fn require_joined(&self, room_id: &str, user: &str) -> Result<&Room, MatrixError> {
        let room = self
            .rooms
            .get(room_id)
            .ok_or_else(|| MatrixError::forbidden(format!("User {user} not in room {room_id}")))?;
        if room.membership(user) != Some("join") {
            return Err(MatrixError::forbidden(format!(
                "User {user} not in room {room_id}"
            )));
        }
        Ok(room)
    }

    // ------------------------------------------------------------------
    // rooms

    /// `POST /createRoom` by `requester`. In room version 12 a creator listed in
    /// `power_level_content_override.users` is refused with 400 `M_UNKNOWN`
    /// **after** the create event and the creator's join were persisted and
    /// sent to the AS, leaving an orphan room — exactly what Synapse 1.163
    /// does (docs/matrix.md, "Room version 12 pitfalls").
    ///
    /// `room_alias_name` makes `#<name>:<server>` point at the new room and
    /// sets `m.room.canonical_alias` (unless `initial_state` has one), in
    /// Synapse's order (`handlers/room.py` `create_room`): the name's syntax
    /// and 400 `M_ROOM_IN_USE` "Room alias already taken" are checked before
    /// anything is created, the association is made before the first event,
    /// so an orphan room left by the v12 refusal keeps the alias.
    pub fn create_room(
        &mut self,
        requester: &Requester,
        req: &CreateRoom,
        now_ms: u64,
    ) -> Result<String, MatrixError> {
        let creator = requester.user_id();
        let version = req.room_version.clone().unwrap_or_else(|| "12".into());
        if !ROOM_VERSIONS.contains(&version.as_str()) {
            return Err(MatrixError::new(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                "Your homeserver does not support the features required to interact with this room",
            ));
        }
        let alias = match &req.room_alias_name {
            Some(name) => Some(self.check_alias_name(name)?),
            None => None,
        };
        for u in &req.invite {
            if !u.starts_with('@') || !u.contains(':') {
                return Err(MatrixError::new(
                    400,
                    "M_INVALID_PARAM",
                    format!("Invalid user_id: {u}"),
                ));
            }
        }
        let preset = match (req.preset.as_deref(), req.visibility.as_deref()) {
            (Some(p @ ("private_chat" | "public_chat" | "trusted_private_chat")), _) => {
                p.to_string()
            }
            (Some(_), _) => return Err(MatrixError::new(400, "M_INVALID_PARAM", "Invalid preset")),
            (None, Some("public")) => "public_chat".into(),
            (None, _) => "private_chat".into(),
        };
        if let Some(alias) = &alias {
            // Synapse refuses here after storing an empty room row, which no
            // client can see: refusing before anything exists looks the same.
            self.check_alias_creation(requester, alias, None)?;
        }
        let opaque = random_b64url(&mut self.rng, 43);
        let room_id = if version == "12" {
            format!("!{opaque}")
        } else {
            format!(
                "!{}:{}",
                random_letters(&mut self.rng, 18),
                self.config.server_name
            )
        };
        self.rooms.insert(
            room_id.clone(),
            Room {
                room_id: room_id.clone(),
                version: version.clone(),
                creator: creator.to_string(),
                events: Vec::new(),
                state: BTreeMap::new(),
            },
        );
        self.room_order.push(room_id.clone());
        if let Some(alias) = &alias {
            self.aliases.insert(
                alias.clone(),
                AliasRec {
                    room_id: room_id.clone(),
                    creator: creator.to_string(),
                },
            );
        }

        // m.room.create: v11+ drops `creator` from content. In v12 the room
        // id is the create event's reference hash, so the ids share a suffix.
        let mut create = req.creation_content.clone().unwrap_or_default();
        create.insert("room_version".into(), json!(version));
        if version.parse::<u32>().unwrap_or(12) < 11 {
            create.insert("creator".into(), json!(creator));
        }
        let create_id = (version == "12").then(|| format!("${opaque}"));
        self.append(
            &room_id,
            creator,
            "m.room.create",
            Some(""),
            Value::Object(create),
            None,
            now_ms,
            create_id,
        );
        let join = self.profile_member_content(creator, "join");
        self.append(
            &room_id,
            creator,
            "m.room.member",
            Some(creator),
            join,
            None,
            now_ms,
            None,
        );

        // Power levels (Synapse defaults for the presets).
        let mut users = Map::new();
        if version != "12" {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == "trusted_private_chat" {
            for u in &req.invite {
                users.insert(u.clone(), json!(100));
            }
        }
        let mut pl = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": 0,
            "historical": 100,
            "notifications": { "room": 50 }
        });
        if let Some(over) = &req.power_level_content_override
            && let Some(obj) = pl.as_object_mut()
        {
            for (k, v) in over {
                obj.insert(k.clone(), v.clone());
            }
        }
        if version == "12" && pl.get("users").and_then(|u| u.get(creator)).is_some() {
            tracing::debug!(room = %room_id, "fake hs: createRoom refused, orphan room left behind");
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                format!("Creator user {creator} must not appear in content.users"),
            ));
        }
        self.append(
            &room_id,
            creator,
            "m.room.power_levels",
            Some(""),
            pl,
            None,
            now_ms,
            None,
        );
        if let Some(full) = alias.filter(|_| {
            !req.initial_state
                .iter()
                .any(|st| st.kind == "m.room.canonical_alias" && st.state_key.is_empty())
        }) {
            self.append(
                &room_id,
                creator,
                "m.room.canonical_alias",
                Some(""),
                json!({ "alias": full }),
                None,
                now_ms,
                None,
            );
        }
        let join_rule = if preset == "public_chat" {
            "public"
        } else {
            "invite"
        };
        self.append(
            &room_id,
            creator,
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": join_rule }),
            None,
            now_ms,
            None,
        );
        self.append(
            &room_id,
            creator,
            "m.room.history_visibility",
            Some(""),
            json!({ "history_visibility": "shared" }),
            None,
            now_ms,
            None,
        );
        if preset != "public_chat" {
            self.append(
                &room_id,
                creator,
                "m.room.guest_access",
                Some(""),
                json!({ "guest_access": "can_join" }),
                None,
                now_ms,
                None,
            );
        }
        for st in &req.initial_state {
            self.append(
                &room_id,
                creator,
                &st.kind,
                Some(&st.state_key),
                st.content.clone(),
                None,
                now_ms,
                None,
            );
        }
        if let Some(name) = &req.name {
            self.append(
                &room_id,
                creator,
                "m.room.name",
                Some(""),
                json!({ "name": name }),
                None,
                now_ms,
                None,
            );
        }
        if let Some(topic) = &req.topic {
            self.append(
                &room_id,
                creator,
                "m.room.topic",
                Some(""),
                json!({ "topic": topic }),
                None,
                now_ms,
                None,
            );
        }
        for u in &req.invite {
            let mut content = self.profile_member_content(u, "invite");
            if req.is_direct {
                content["is_direct"] = json!(true);
            }
            self.append(
                &room_id,
                creator,
                "m.room.member",
                Some(u),
                content,
                None,
                now_ms,
                None,
            );
        }
        Ok(room_id)
    }

    /// Resolve a room id or a local alias.
    pub fn resolve_room(&self, id_or_alias: &str) -> Result<String, MatrixError> {
        if id_or_alias.starts_with('#') {
            return self
                .aliases
                .get(id_or_alias)
                .map(|a| a.room_id.clone())
                .ok_or_else(|| alias_not_found(id_or_alias));
        }
        self.room(id_or_alias).map(|r| r.room_id.clone())
    }

    // ------------------------------------------------------------------
    // the room directory (Synapse `handlers/directory.py`,
    // `rest/client/directory.py`)

    /// `room_alias_name` of `createRoom`: no whitespace, no `:` (a local
    /// part, not a full alias), not taken. Returns the full alias.
    fn check_alias_name(&self, name: &str) -> Result<String, MatrixError> {
        if name.chars().any(is_python_whitespace) {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "Invalid characters in room alias",
            ));
        }
        if name.contains(':') {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "':' is not permitted in the room alias name. Please note this expects a local part — 'wombat', not '#wombat:example.com'.",
            ));
        }
        let full = format!("#{name}:{}", self.config.server_name);
        if self.aliases.contains_key(&full) {
            return Err(MatrixError::new(
                400,
                "M_ROOM_IN_USE",
                "Room alias already taken",
            ));
        }
        Ok(full)
    }

    fn alias_in_namespace(&self, alias: &str) -> bool {
        self.alias_regexes.iter().any(|(re, _)| re.is_match(alias))
    }

    fn alias_in_exclusive_namespace(&self, alias: &str) -> bool {
        self.alias_regexes
            .iter()
            .any(|(re, ex)| *ex && re.is_match(alias))
    }

    /// Whether the AS registration's alias namespaces cover `alias` (Synapse
    /// then asks the AS about an unknown one, `query_room_alias_exists`).
    pub fn alias_in_as_namespace(&self, alias: &str) -> bool {
        self.alias_in_namespace(alias)
    }

    /// Synapse `create_association`'s checks before storing: the length, the
    /// AS's own namespace for an AS (also when it masquerades as a ghost),
    /// otherwise membership and other ASes' exclusive namespaces; then
    /// `_create_association`'s. `existing_room` is the target of a
    /// `PUT /directory/room` (`createRoom` skips the membership check and
    /// has refused a taken alias already).
    fn check_alias_creation(
        &self,
        requester: &Requester,
        alias: &str,
        existing_room: Option<&str>,
    ) -> Result<(), MatrixError> {
        if alias.chars().count() > MAX_ALIAS_LENGTH {
            return Err(MatrixError::new(
                400,
                "M_INVALID_PARAM",
                format!("Can't create aliases longer than {MAX_ALIAS_LENGTH} characters"),
            ));
        }
        match requester {
            Requester::AppService { .. } => {
                if !self.alias_in_namespace(alias) {
                    return Err(MatrixError::new(
                        400,
                        "M_EXCLUSIVE",
                        "This application service has not reserved this kind of alias.",
                    ));
                }
            }
            Requester::User { user_id, .. } => {
                if let Some(room_id) = existing_room
                    && self.rooms.get(room_id).and_then(|r| r.membership(user_id)) != Some("join")
                {
                    return Err(MatrixError::forbidden(
                        "You must be in the room to create an alias for it",
                    ));
                }
                if self.alias_in_exclusive_namespace(alias) {
                    return Err(MatrixError::new(
                        400,
                        "M_EXCLUSIVE",
                        "This alias is reserved by an application service.",
                    ));
                }
            }
        }
        let (local, domain) = split_alias(alias).unwrap_or(("", ""));
        if local.chars().any(is_python_whitespace) {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "Invalid characters in room alias",
            ));
        }
        if domain != self.config.server_name {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "Room alias must be local",
            ));
        }
        if existing_room.is_some() && self.aliases.contains_key(alias) {
            return Err(MatrixError::new(
                409,
                "M_UNKNOWN",
                format!("Room alias {alias} already exists"),
            ));
        }
        Ok(())
    }

    /// The room an alias points to, if any.
    pub fn alias_target(&self, alias: &str) -> Option<&str> {
        self.aliases.get(alias).map(|a| a.room_id.as_str())
    }

    /// The aliases pointing at `room_id`, sorted.
    pub fn aliases_of(&self, room_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .aliases
            .iter()
            .filter(|(_, a)| a.room_id == room_id)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// `GET /directory/room/{roomAlias}` (no authentication in Synapse):
    /// `{"room_id", "servers"}`, 404 `M_NOT_FOUND` "Room alias #x:y not found".
    pub fn get_alias(&self, alias: &str) -> Result<Value, MatrixError> {
        check_alias_syntax(alias)?;
        let rec = self
            .aliases
            .get(alias)
            .ok_or_else(|| alias_not_found(alias))?;
        Ok(json!({ "room_id": rec.room_id, "servers": [self.config.server_name] }))
    }

    /// `PUT /directory/room/{roomAlias}` `{"room_id"}`, the checks Synapse
    /// makes before authenticating: the alias's syntax, the body, the room.
    /// Returns the room id for [`HsState::put_alias`].
    pub fn check_put_alias(&self, alias: &str, body: &Value) -> Result<String, MatrixError> {
        check_alias_syntax(alias)?;
        let room_id = match body.get("room_id") {
            Some(Value::String(r)) => r.clone(),
            _ => {
                return Err(MatrixError::bad_json(
                    "room_id: Input should be a valid string",
                ));
            }
        };
        if !self.rooms.contains_key(&room_id) {
            return Err(MatrixError::new(400, "M_UNKNOWN", "Room does not exist"));
        }
        Ok(room_id)
    }

    /// `PUT /directory/room/{roomAlias}` after authentication; a human must be
    /// in the room (`require_membership_for_aliases`, on by default).
    pub fn put_alias(
        &mut self,
        requester: &Requester,
        alias: &str,
        room_id: &str,
    ) -> Result<(), MatrixError> {
        self.check_alias_creation(requester, alias, Some(room_id))?;
        self.aliases.insert(
            alias.to_string(),
            AliasRec {
                room_id: room_id.to_string(),
                creator: requester.user_id().to_string(),
            },
        );
        Ok(())
    }

    /// `DELETE /directory/room/{roomAlias}`. An AS may delete any alias of its
    /// namespaces, whoever made it, and an unknown one is not an error for it
    /// (Synapse `delete_appservice_association` ignores a missing row); the
    /// room's `m.room.canonical_alias` is left as it is. A human may delete
    /// an alias they created, or any with the power to send
    /// `m.room.canonical_alias`, unknown is 404 `M_NOT_FOUND` "Unknown room
    /// alias", and the canonical alias event loses the alias if they may
    /// change it.
    pub fn delete_alias(
        &mut self,
        requester: &Requester,
        alias: &str,
        now_ms: u64,
    ) -> Result<(), MatrixError> {
        check_alias_syntax(alias)?;
        match requester {
            Requester::AppService { .. } => {
                if !self.alias_in_namespace(alias) {
                    return Err(MatrixError::new(
                        400,
                        "M_EXCLUSIVE",
                        "This application service has not reserved this kind of alias",
                    ));
                }
                if split_alias(alias).map(|(_, d)| d) != Some(self.config.server_name.as_str()) {
                    return Err(MatrixError::new(
                        400,
                        "M_UNKNOWN",
                        "Room alias must be local",
                    ));
                }
                self.aliases.remove(alias);
                Ok(())
            }
            Requester::User { user_id, .. } => {
                let Some(rec) = self.aliases.get(alias).cloned() else {
                    return Err(MatrixError::not_found("Unknown room alias"));
                };
                if rec.creator != *user_id {
                    let room = self.require_joined(&rec.room_id, user_id)?;
                    if room.power_of(user_id) < room.event_level("m.room.canonical_alias", true) {
                        return Err(MatrixError::forbidden(
                            "You don't have permission to delete the alias.",
                        ));
                    }
                }
                if self.alias_in_exclusive_namespace(alias) {
                    return Err(MatrixError::new(
                        400,
                        "M_EXCLUSIVE",
                        "This alias is reserved by an application service.",
                    ));
                }
                self.aliases.remove(alias);
                self.drop_canonical_alias(user_id, &rec.room_id, alias, now_ms);
                Ok(())
            }
        }
    }

    /// Synapse `_update_canonical_alias`: a new `m.room.canonical_alias`
    /// without `alias` (and without it in `alt_aliases`), sent as `user` if
    /// they may; a refusal is only logged there, so nothing happens here.
    fn drop_canonical_alias(&mut self, user: &str, room_id: &str, alias: &str, now_ms: u64) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(Value::Object(mut content)) =
            room.state_content("m.room.canonical_alias", "").cloned()
        else {
            return;
        };
        let mut changed = false;
        if content.get("alias").and_then(Value::as_str) == Some(alias) {
            content.remove("alias");
            changed = true;
        }
        if let Some(Value::Array(alt)) = content.get("alt_aliases").cloned()
            && alt.iter().any(|a| a.as_str() == Some(alias))
        {
            let rest: Vec<Value> = alt
                .into_iter()
                .filter(|a| a.as_str() != Some(alias))
                .collect();
            if rest.is_empty() {
                content.remove("alt_aliases");
            } else {
                content.insert("alt_aliases".into(), Value::Array(rest));
            }
            changed = true;
        }
        let allowed = room.membership(user) == Some("join")
            && room.power_of(user) >= room.event_level("m.room.canonical_alias", true);
        if changed && allowed {
            self.append(
                room_id,
                user,
                "m.room.canonical_alias",
                Some(""),
                Value::Object(content),
                None,
                now_ms,
                None,
            );
        }
    }

    /// `POST /rooms/{id}/invite`.
    pub fn invite(
        &mut self,
        inviter: &str,
        room_id: &str,
        target: &str,
        now_ms: u64,
    ) -> Result<(), MatrixError> {
        let room = self.require_joined(room_id, inviter)?;
        match room.membership(target) {
            Some("join") => {
                return Err(MatrixError::forbidden(format!(
                    "{target} is already in the room."
                )));
            }
            Some("ban") => {
                return Err(MatrixError::forbidden(format!(
                    "{target} is banned from the room"
                )));
            }
            _ => {}
        }
        if room.power_of(inviter) < room.level("invite", 0) {
            return Err(MatrixError::forbidden(
                "You don't have permission to invite users",
            ));
        }
        let content = self.profile_member_content(target, "invite");
        self.append(
            room_id,
            inviter,
            "m.room.member",
            Some(target),
            content,
            None,
            now_ms,
            None,
        );
        Ok(())
    }

    /// `POST /rooms/{id}/join` and `/join/{idOrAlias}`: must be invited
    /// unless the room is public; joining again is a no-op.
    pub fn join(&mut self, user: &str, room: &str, now_ms: u64) -> Result<String, MatrixError> {
        let room_id = self.resolve_room(room)?;
        let r = self.room(&room_id)?;
        match r.membership(user) {
            Some("join") => {
                // Synapse re-sends a join only if the profile changed; no-op here.
                return Ok(room_id);
            }
            Some("ban") => return Err(MatrixError::forbidden("You are banned from this room")),
            Some("invite") => {}
            _ if r.join_rule() == "public" => {}
            _ => return Err(MatrixError::forbidden("You are not invited to this room.")),
        }
        let content = self.profile_member_content(user, "join");
        self.append(
            &room_id,
            user,
            "m.room.member",
            Some(user),
            content,
            None,
            now_ms,
            None,
        );
        Ok(room_id)
    }

    /// `POST /rooms/{id}/leave` (also rejects an invite).
    pub fn leave(&mut self, user: &str, room_id: &str, now_ms: u64) -> Result<(), MatrixError> {
        let r = self.room(room_id)?;
        let content = json!({ "membership": "leave" });
        if r.same_membership_event(user, user, &content) {
            return Ok(());
        }
        match r.membership(user) {
            Some("join") | Some("invite") => {}
            _ => {
                return Err(MatrixError::forbidden(format!(
                    "User {user} not in room {room_id}"
                )));
            }
        }
        self.append(
            room_id,
            user,
            "m.room.member",
            Some(user),
            content,
            None,
            now_ms,
            None,
        );
        Ok(())
    }

    /// `POST /rooms/{id}/kick`: target joined or invited; kicker needs the
    /// kick level and more power than the target (a v12 creator has all).
    pub fn kick(
        &mut self,
        kicker: &str,
        room_id: &str,
        target: &str,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), MatrixError> {
        let room = self.require_joined(room_id, kicker)?;
        let mut content = json!({ "membership": "leave" });
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        if room.same_membership_event(target, kicker, &content) {
            return Ok(());
        }
        if !matches!(room.membership(target), Some("join") | Some("invite")) {
            return Err(MatrixError::forbidden("The target user is not in the room"));
        }
        let me = room.power_of(kicker);
        if me < room.level("kick", 50) || (target != kicker && me <= room.power_of(target)) {
            return Err(MatrixError::forbidden(
                "You don't have permission to kick this user",
            ));
        }
        self.append(
            room_id,
            kicker,
            "m.room.member",
            Some(target),
            content,
            None,
            now_ms,
            None,
        );
        Ok(())
    }

    /// Synapse `HttpTransactionCache` key: for an AS the request path plus the
    /// AS id (the `?user_id=` ghost is not part of it); for a user the path
    /// plus user and device.
    fn txn_key(&self, req: &Requester, path: &str) -> (String, String) {
        match req {
            Requester::AppService { .. } => (
                format!("as:{}", self.config.registration.id),
                path.to_string(),
            ),
            Requester::User { user_id, device_id } => {
                (format!("user:{user_id}:{device_id}"), path.to_string())
            }
        }
    }

    /// `PUT /rooms/{id}/send/{type}/{txnId}`. A repeated (requester, path)
    /// returns the first event id without sending anything. `ts` is the AS
    /// timestamp-massaging parameter.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        req: &Requester,
        txn_path: &str,
        room_id: &str,
        kind: &str,
        content: Value,
        ts: Option<u64>,
        now_ms: u64,
    ) -> Result<String, MatrixError> {
        let key = self.txn_key(req, txn_path);
        if let Some(eid) = self.txn_cache.get(&key) {
            return Ok(eid.clone());
        }
        let sender = req.user_id().to_string();
        let room = self.require_joined(room_id, &sender)?;
        if room.power_of(&sender) < room.event_level(kind, false) {
            return Err(MatrixError::forbidden(format!(
                "You don't have permission to post that to the room. user_level ({}) < send_level ({})",
                room.power_of(&sender),
                room.event_level(kind, false)
            )));
        }
        if !content.is_object() {
            return Err(MatrixError::bad_json("Content must be a JSON object."));
        }
        self.validate_relation(room_id, &content)?;
        let ts = match req {
            Requester::AppService { .. } => ts.unwrap_or(now_ms),
            Requester::User { .. } => now_ms,
        };
        let eid = self.append_stamped(
            room_id, &sender, kind, None, content, None, ts, now_ms, None,
        );
        self.txn_cache.insert(key, eid.clone());
        Ok(eid)
    }

    /// `PUT /rooms/{id}/state/{type}/{stateKey}` (not for `m.room.member`:
    /// use the membership endpoints).
    #[allow(clippy::too_many_arguments)]
    pub fn send_state(
        &mut self,
        req: &Requester,
        room_id: &str,
        kind: &str,
        state_key: &str,
        content: Value,
        ts: Option<u64>,
        now_ms: u64,
    ) -> Result<String, MatrixError> {
        let sender = req.user_id().to_string();
        let room = self.require_joined(room_id, &sender)?;
        if kind == "m.room.member" {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "The fake homeserver only changes membership through the membership endpoints",
            ));
        }
        if room.power_of(&sender) < room.event_level(kind, true) {
            return Err(MatrixError::forbidden(
                "You don't have permission to post that to the room.",
            ));
        }
        if !content.is_object() {
            return Err(MatrixError::bad_json("Content must be a JSON object."));
        }
        if kind == "m.room.power_levels"
            && room.creators_are_privileged()
            && content
                .get("users")
                .and_then(|u| u.get(&room.creator))
                .is_some()
        {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                format!(
                    "Creator user {} must not appear in content.users",
                    room.creator
                ),
            ));
        }
        let ts = match req {
            Requester::AppService { .. } => ts.unwrap_or(now_ms),
            Requester::User { .. } => now_ms,
        };
        Ok(self.append(
            room_id,
            &sender,
            kind,
            Some(state_key),
            content,
            None,
            ts,
            None,
        ))
    }

    /// `PUT /rooms/{id}/redact/{eventId}/{txnId}`: own events, or with the
    /// redact power level. Deduplicated like `send`.
    pub fn redact(
        &mut self,
        req: &Requester,
        txn_path: &str,
        room_id: &str,
        target: &str,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<String, MatrixError> {
        let key = self.txn_key(req, txn_path);
        if let Some(eid) = self.txn_cache.get(&key) {
            return Ok(eid.clone());
        }
        let sender = req.user_id().to_string();
        let room = self.require_joined(room_id, &sender)?;
        let Some(idx) = room.events.iter().position(|e| e.event_id == target) else {
            return Err(MatrixError::not_found("Event not found."));
        };
        if room.events[idx].sender != sender && room.power_of(&sender) < room.level("redact", 50) {
            return Err(MatrixError::forbidden(
                "You don't have permission to redact events",
            ));
        }
        let mut content = json!({ "redacts": target });
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        if let Some(room) = self.rooms.get_mut(room_id) {
            let ev = &mut room.events[idx];
            ev.redacted = true;
            // Keep only what the redaction algorithm keeps for the common types.
            ev.content = match ev.kind.as_str() {
                "m.room.member" => {
                    json!({ "membership": ev.content.get("membership").cloned().unwrap_or(Value::Null) })
                }
                _ => json!({}),
            };
        }
        let eid = self.append(
            room_id,
            &sender,
            "m.room.redaction",
            None,
            content,
            Some(target.to_string()),
            now_ms,
            None,
        );
        self.txn_cache.insert(key, eid.clone());
        Ok(eid)
    }

    // ------------------------------------------------------------------
    // profile

    /// `PUT /profile/{userId}/displayname` or `avatar_url`: only your own
    /// profile; like Synapse, a new member event goes to every joined room.
    pub fn set_profile(
        &mut self,
        req: &Requester,
        target: &str,
        field: &str,
        value: Option<&str>,
        now_ms: u64,
    ) -> Result<(), MatrixError> {
        if req.user_id() != target {
            return Err(MatrixError::forbidden(format!(
                "Cannot set another user's {field}"
            )));
        }
        let Some(u) = self.users.get_mut(target) else {
            return Err(MatrixError::not_found("Profile was not found"));
        };
        match field {
            "displayname" => u.displayname = value.map(str::to_string),
            _ => u.avatar_url = value.map(str::to_string),
        }
        let rooms: Vec<String> = self
            .room_order
            .iter()
            .filter(|r| {
                self.rooms
                    .get(*r)
                    .is_some_and(|room| room.membership(target) == Some("join"))
            })
            .cloned()
            .collect();
        for r in rooms {
            let content = self.profile_member_content(target, "join");
            self.append(
                &r,
                target,
                "m.room.member",
                Some(target),
                content,
                None,
                now_ms,
                None,
            );
        }
        Ok(())
    }

    /// `GET /profile/{userId}`.
    pub fn profile(&self, user: &str) -> Result<Value, MatrixError> {
        let u = self
            .users
            .get(user)
            .ok_or_else(|| MatrixError::not_found("Profile was not found"))?;
        let mut m = Map::new();
        if let Some(d) = &u.displayname {
            m.insert("displayname".into(), json!(d));
        }
        if let Some(a) = &u.avatar_url {
            m.insert("avatar_url".into(), json!(a));
        }
        Ok(Value::Object(m))
    }

    // ------------------------------------------------------------------
    // reads

    /// `GET /rooms/{id}/members`: current member events.
    pub fn members(&self, user: &str, room_id: &str, now_ms: u64) -> Result<Value, MatrixError> {
        let room = self.require_joined(room_id, user)?;
        let chunk: Vec<Value> = room
            .state
            .iter()
            .filter(|((t, _), _)| t == "m.room.member")
            .map(|(_, i)| room.events[*i].to_client_json(now_ms))
            .collect();
        Ok(json!({ "chunk": chunk }))
    }

    /// `GET /rooms/{id}/joined_members`.
    pub fn joined_members(&self, user: &str, room_id: &str) -> Result<Value, MatrixError> {
        let room = self.require_joined(room_id, user)?;
        let mut joined = Map::new();
        for u in room.joined() {
            let c = room
                .state_content("m.room.member", &u)
                .cloned()
                .unwrap_or_default();
            let mut o = Map::new();
            o.insert(
                "display_name".into(),
                c.get("displayname").cloned().unwrap_or(Value::Null),
            );
            o.insert(
                "avatar_url".into(),
                c.get("avatar_url").cloned().unwrap_or(Value::Null),
            );
            joined.insert(u, Value::Object(o));
        }
        Ok(json!({ "joined": joined }))
    }

    /// `GET /joined_rooms`.
    /// A room's `m.room.name`.
    pub fn room_name(&self, room: &str) -> Option<String> {
        self.rooms
            .get(room)?
            .state_content("m.room.name", "")?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    }

    /// The room named `name` (`m.room.name`) in which `user` is joined or invited.
    pub fn room_named_for(&self, user: &str, name: &str) -> Option<String> {
        self.room_order
            .iter()
            .filter_map(|id| self.rooms.get(id).map(|r| (id, r)))
            .find(|(_, r)| {
                matches!(r.membership(user), Some("join" | "invite"))
                    && r.state_content("m.room.name", "")
                        .and_then(|c| c.get("name"))
                        .and_then(Value::as_str)
                        == Some(name)
            })
            .map(|(id, _)| id.clone())
    }

    pub fn joined_rooms(&self, user: &str) -> Value {
        let rooms: Vec<&String> = self
            .room_order
            .iter()
            .filter(|r| {
                self.rooms
                    .get(*r)
                    .is_some_and(|room| room.membership(user) == Some("join"))
            })
            .collect();
        json!({ "joined_rooms": rooms })
    }

    /// `GET /rooms/{id}/event/{eventId}`.
    pub fn get_event(
        &self,
        user: &str,
        room_id: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<Value, MatrixError> {
        let room = self.require_joined(room_id, user)?;
        let event = room
            .events
            .iter()
            .find(|e| e.event_id == event_id)
            .ok_or_else(|| MatrixError::not_found("Event not found."))?;
        let mut json = event.to_client_json(now_ms);
        if let Some(relations) = room.bundled(event, user, now_ms) {
            json["unsigned"]["m.relations"] = relations;
        }
        Ok(json)
    }

    /// Synapse's checks of a relation an event makes before it is sent
    /// (`_validate_event_relation`, handlers/message.py): the target must be known (an
    /// event, or the target of other relations), in the same room, and a thread cannot
    /// start from an event that itself relates to another.
    fn validate_relation(&self, room_id: &str, content: &Value) -> Result<(), MatrixError> {
        let Some(r) = content.get("m.relates_to") else {
            return Ok(());
        };
        let (Some(rel_type), Some(target)) = (
            r.get("rel_type").and_then(Value::as_str),
            r.get("event_id").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let refused = |msg: &str| MatrixError::new(400, "M_UNKNOWN", msg);
        let parent = self
            .rooms
            .values()
            .flat_map(|room| room.events.iter())
            .find(|e| e.event_id == target);
        match parent {
            Some(p) if p.room_id != room_id => Err(refused("Relations must be in the same room")),
            Some(p) if rel_type == "m.thread" && p.relation().is_some() => Err(refused(
                "Cannot start threads from an event with a relation",
            )),
            Some(_) => Ok(()),
            None => {
                let known = self.rooms.get(room_id).is_some_and(|room| {
                    room.events
                        .iter()
                        .any(|e| e.relation().is_some_and(|(_, t)| t == target))
                });
                if known {
                    Ok(())
                } else {
                    Err(refused("Can't send relation to unknown event"))
                }
            }
        }
    }

    /// `GET /rooms/{id}/state/{type}/{key}`: the content.
    pub fn get_state(
        &self,
        user: &str,
        room_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Value, MatrixError> {
        let room = self.require_joined(room_id, user)?;
        room.state_content(kind, key)
            .cloned()
            .ok_or_else(|| MatrixError::not_found("Event not found."))
    }

    // ------------------------------------------------------------------
    // media

    /// `POST /_matrix/media/v3/upload`: returns the `mxc://` URI.
    pub fn upload(&mut self, content_type: &str, data: Vec<u8>) -> String {
        let id = random_letters(&mut self.rng, 24);
        self.media
            .insert(id.clone(), (content_type.to_string(), data));
        format!("mxc://{}/{id}", self.config.server_name)
    }

    /// Media by server name and id: (content type, bytes).
    pub fn media(&self, server: &str, id: &str) -> Option<&(String, Vec<u8>)> {
        (server == self.config.server_name)
            .then(|| self.media.get(id))
            .flatten()
    }

    // ------------------------------------------------------------------
    // AS transactions (Synapse `appservice/scheduler.py`)

    /// The transaction to push now: the one in flight (a retry, same id and
    /// same events), or a new one with up to 100 queued events.
    pub fn next_transaction(&mut self) -> Option<AsTransaction> {
        if let Some(t) = &self.in_flight {
            return Some(t.clone());
        }
        if self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(MAX_EVENTS_PER_TXN);
        let events: Vec<Value> = self.queue.drain(..n).collect();
        let txn = AsTransaction {
            txn_id: self.next_txn.to_string(),
            events,
        };
        self.next_txn += 1;
        self.in_flight = Some(txn.clone());
        Some(txn)
    }

    /// The push body: `{"events", "ephemeral"?, "de.sorunome.msc2409.to_device"}`.
    pub fn transaction_body(&self, txn: &AsTransaction) -> Value {
        let mut m = Map::new();
        m.insert("events".into(), Value::Array(txn.events.clone()));
        if self.config.registration.receive_ephemeral.unwrap_or(false) {
            m.insert("ephemeral".into(), json!([]));
        }
        m.insert("de.sorunome.msc2409.to_device".into(), json!([]));
        Value::Object(m)
    }

    /// Record the outcome of a push attempt. Success retires the transaction.
    pub fn record_push(&mut self, txn_id: &str, ok: bool) {
        self.push_attempts.push((txn_id.to_string(), ok));
        if ok
            && self.in_flight.as_ref().is_some_and(|t| t.txn_id == txn_id)
            && let Some(t) = self.in_flight.take()
        {
            self.delivered.push(t);
        }
    }

    /// Transactions the AS acknowledged, in order.
    pub fn delivered(&self) -> &[AsTransaction] {
        &self.delivered
    }

    /// Every push attempt: (txn id, succeeded).
    pub fn push_attempts(&self) -> &[(String, bool)] {
        &self.push_attempts
    }

    /// Events waiting (queued plus in flight).
    pub fn pending_events(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |t| t.events.len())
    }

    // ------------------------------------------------------------------
    // what users see

    /// Rooms where `user` has a membership, with it.
    pub fn rooms_of(&self, user: &str) -> Vec<(String, String)> {
        self.room_order
            .iter()
            .filter_map(|r| {
                let room = self.rooms.get(r)?;
                Some((r.clone(), room.membership(user)?.to_string()))
            })
            .collect()
    }

    pub fn room_ids(&self) -> Vec<String> {
        self.room_order.clone()
    }

    pub fn room_info(&self, room_id: &str) -> Option<&Room> {
        self.rooms.get(room_id)
    }

    /// The timeline as `user`'s client shows it (history visibility
    /// `shared`): everything while joined; up to the leave after leaving;
    /// only the invite while invited.
    pub fn timeline(&self, user: &str, room_id: &str) -> Vec<SeenEvent> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        let mut ever_joined = false;
        let mut end = 0;
        let mut invite_idx = None;
        for (i, e) in room.events.iter().enumerate() {
            if e.kind == "m.room.member" && e.state_key.as_deref() == Some(user) {
                match e.content.get("membership").and_then(Value::as_str) {
                    Some("join") => ever_joined = true,
                    Some("invite") => invite_idx = Some(i),
                    _ => {}
                }
                end = i + 1;
            }
            if ever_joined && room.membership(user) == Some("join") {
                end = room.events.len();
                break;
            }
        }
        let to_seen = |e: &Event| SeenEvent {
            event_id: e.event_id.clone(),
            sender: e.sender.clone(),
            kind: e.kind.clone(),
            state_key: e.state_key.clone(),
            msgtype: e
                .content
                .get("msgtype")
                .and_then(Value::as_str)
                .map(str::to_string),
            body: e
                .content
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_string),
            content: e.content.clone(),
            ts: e.origin_server_ts,
            received: e.received_ms,
            redacted: e.redacted,
        };
        if !ever_joined {
            return invite_idx
                .map(|i| vec![to_seen(&room.events[i])])
                .unwrap_or_default();
        }
        room.events[..end].iter().map(to_seen).collect()
    }
}
