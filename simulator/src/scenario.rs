//! Scenario files: what people do on both sides of the bridge, and what they should see.
//!
//! A scenario is a TOML file (`fixtures/scenarios/*.toml`) run against a fresh [`World`]: the
//! fake homeserver, the fake Gitter and the real bridge runtime. Steps run in order; an
//! expectation waits (bounded) until it holds, and the first step that fails ends the run with
//! what was seen instead. A scenario that shows a bridge bug not fixed yet says so in
//! `known_bug = "..."`: it still runs, its failure is reported as that bug, and a pass is
//! reported as a failure until the line is removed.
//!
//! ```toml
//! name = "relay"
//! description = "Bob on Gitter and Alice on Matrix talk in the lobby."
//!
//! [world]                        # optional
//! bridge = "login_link_lifetime_secs = 2"
//!
//! [[step]]
//! do = "login"                   # registers alice, opens her DM, logs in, joins her portals
//! user = "alice"
//!
//! [[step]]
//! do = "gitter_post"
//! from = "bob"
//! room = "gitter-bridge/lobby"
//! text = "try `cargo run`"
//!
//! [[step]]
//! expect = "message"
//! user = "alice"
//! room = "gitter-bridge/lobby"
//! from = "bob"
//! body = "try `cargo run`"
//! formatted_contains = "<code>cargo run</code>"
//! within_ms = 5000               # optional; 20 s by default
//! ```
//!
//! Names are the ones a person reads:
//!
//! * `user`: a Matrix user by localpart (`alice` is `@alice:<server>`). The first action that
//!   needs a Matrix user registers them.
//! * `from` / `gitter_user`: a Gitter user by username; on the Matrix side that is their ghost.
//!   `from = "bot"` is the bridge bot.
//! * `room`: left out or `"dm"` is the user's DM with the bot; a Gitter room uri
//!   (`gitter-bridge/lobby`) is that room on Gitter and, for a Matrix user, their portal of
//!   it; `"@bob"` is the one-to-one Gitter room between the acting Gitter user and bob (and
//!   its portal); anything else is a Matrix room by name.
//! * In the raw bodies of `as_put`: `${bot}`, `${user:alice}`, `${ghost:bob}`,
//!   `${dm:alice}`, `${room:alice:gitter-bridge/lobby}`, `${event_id}` (a fresh event id) and
//!   `${now}` (Unix ms) are replaced before sending.
//!
//! Actions (`do = ...`): `register`, `open_dm`, `create_group`, `invite_bot`, `say`, `emote`,
//! `leave`, `login`, `open_login_link`, `accept_invites`, `gitter_post`, `gitter_join`,
//! `gitter_leave`, `gitter_stream_line`, `drop_streams`, `gitter_fail`, `gitter_delay`,
//! `revoke_token`, `hs_replay_transaction`, `hs_fail_pushes`, `hs_fail_cs`, `hs_delay`,
//! `clear_faults`, `kill_bridge`, `stop_bridge`, `start_bridge`, `restart_bridge`, `as_put`,
//! `sleep`. See [`Action`].
//!
//! Expectations (`expect = ...`): `notice`, `message`, `message_count`, `sequence`, `no_echo`,
//! `ghost_name`, `invited`, `membership`, `gitter_message`, `gitter_count`, `gitter_member`,
//! `bridge_listening`, `login_page`, `bridge_up`, `hs_retried`, `hs_delivered`,
//! `gitter_faults_spent`. See [`Expectation`]. Each takes `within_ms` (how long to wait for
//! it, 20 s by default) and `settle_ms` (how long it must keep holding once it holds: 500 ms
//! by default for counts, sequences and `no_echo`, so a late duplicate or echo is caught;
//! 0 for the others).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::fake_hs::{Human, SeenEvent};
use crate::world::{World, WorldOptions, login_link};

/// How long an expectation waits when the step does not say.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(20);
/// How long a count or an absence must stay right, when the step does not say.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, for the transcript.
    pub name: String,
    /// What the scenario shows, for a person.
    pub description: String,
    /// A bridge bug this scenario shows, described for whoever fixes it. The scenario is
    /// still run: its failure is reported as the known bug and does not fail the run, and
    /// a pass fails the run until this line is removed (the bug looks fixed).
    pub known_bug: Option<String>,
    /// How to build the world.
    #[serde(default)]
    pub world: WorldSpec,
    /// The steps, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// World options a scenario may set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// The fake Gitter's seed file, relative to the scenario file (default: the simulator's
    /// `fixtures/sim/gitter-seed.toml`).
    pub seed: Option<PathBuf>,
    /// Extra lines for the bridge config's `[bridge]` section.
    pub bridge: Option<String>,
    /// Only these Matrix users (localparts) may use the bridge; by default everyone may.
    pub allowed_users: Option<Vec<String>>,
    /// Stream heartbeat interval of the fake Gitter.
    pub heartbeat_ms: Option<u64>,
    /// Requests per window the fake Gitter allows per user.
    pub gitter_rate_limit: Option<u32>,
    /// The fake Gitter's rate-limit window (Gitter: 60 s). Its 429s say the window resets
    /// at its end, and the bridge waits that long: scenarios shorten it.
    pub gitter_rate_window_ms: Option<u64>,
    /// The bridge's own Gitter request budget per minute.
    pub bridge_requests_per_minute: Option<u32>,
    /// First retry delay of a failed AS push.
    pub push_backoff_ms: Option<u64>,
}

/// One step: an action or an expectation.
#[derive(Clone, Debug)]
pub enum Step {
    /// Something someone does (`do = ...`).
    Do(Action),
    /// Something someone should see (`expect = ...`).
    Expect(Expect),
}

/// An expectation with its bounds.
#[derive(Clone, Debug)]
pub struct Expect {
    /// What should hold.
    pub what: Expectation,
    /// How long to wait for it.
    pub within: Duration,
    /// How long it must keep holding (default: 0, or [`DEFAULT_SETTLE`] for counts and
    /// absences).
    pub settle: Option<Duration>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        match (table.contains_key("do"), table.contains_key("expect")) {
            (true, false) => toml::Value::Table(table)
                .try_into()
                .map(Step::Do)
                .map_err(D::Error::custom),
            (false, true) => {
                let within = take_ms(&mut table, "within_ms").map_err(D::Error::custom)?;
                let settle = take_ms(&mut table, "settle_ms").map_err(D::Error::custom)?;
                let what = toml::Value::Table(table)
                    .try_into()
                    .map_err(D::Error::custom)?;
                Ok(Step::Expect(Expect {
                    what,
                    within: within.unwrap_or(DEFAULT_WITHIN),
                    settle,
                }))
            }
            (true, true) => Err(D::Error::custom(
                "a step is an action (`do = ...`) or an expectation (`expect = ...`), not both",
            )),
            (false, false) => Err(D::Error::custom(
                "a step needs `do = \"...\"` (an action) or `expect = \"...\"` (an expectation)",
            )),
        }
    }
}

fn take_ms(table: &mut toml::Table, key: &str) -> Result<Option<Duration>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Integer(ms)) if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        Some(other) => Err(format!(
            "`{key}` must be a number of milliseconds, not {other}"
        )),
    }
}

fn yes() -> bool {
    true
}

/// How a raw AS request authenticates.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// The homeserver's real token, read from the bridge's config.
    #[default]
    HsToken,
    /// A token that is not the hs_token.
    Wrong,
    /// No token at all.
    None,
}

/// Something someone does.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A Matrix user registers on the homeserver.
    Register {
        /// Localpart.
        user: String,
    },
    /// The user creates a DM with the bot (inviting it) and waits for the bot to answer; it
    /// becomes the user's `dm`.
    OpenDm {
        /// Localpart.
        user: String,
        /// An optional room name, to refer to this DM later once another one replaced it.
        name: Option<String>,
    },
    /// The user creates a named room with other Matrix users, who join, then invites the bot.
    CreateGroup {
        /// Localpart of the creator.
        user: String,
        /// The room's name.
        name: String,
        /// Localparts of the others.
        members: Vec<String>,
    },
    /// The user invites the bot to a room again.
    InviteBot {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
    },
    /// The user sends a text message (`m.text`).
    Say {
        /// Localpart.
        user: String,
        /// The text.
        text: String,
        /// Where (default: their DM with the bot).
        room: Option<String>,
        /// Send the text repeated this many times (long messages).
        repeat: Option<usize>,
    },
    /// The user sends an emote (`m.emote`).
    Emote {
        /// Localpart.
        user: String,
        /// The text.
        text: String,
        /// Where (default: their DM with the bot).
        room: Option<String>,
    },
    /// The user leaves a Matrix room.
    Leave {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
    },
    /// The whole login: (registers and opens a DM if needed,) says `login`, opens the link,
    /// signs in to Gitter, waits for "You are now logged in"; then (unless `open_portals` is
    /// false) waits for a portal of every Gitter room the Gitter user is in, accepts the
    /// invites and waits until the bridge listens to each room.
    Login {
        /// Localpart.
        user: String,
        /// The Gitter username to sign in as (default: the same as `user`).
        gitter_user: Option<String>,
        /// Wait for, accept and listen to the portals.
        #[serde(default = "yes")]
        open_portals: bool,
    },
    /// The user opens the newest login link the bot sent them and, if the bridge sends them
    /// on to Gitter, signs in; the final page is kept for `login_page`.
    OpenLoginLink {
        /// Localpart.
        user: String,
        /// The Gitter username to sign in as (default: the same as `user`).
        gitter_user: Option<String>,
    },
    /// The user accepts every pending invite.
    AcceptInvites {
        /// Localpart.
        user: String,
    },
    /// A Gitter user posts in a room (`status = true`: a `/me` status message, whose text
    /// starts with `@username` as Gitter writes it).
    GitterPost {
        /// Username.
        from: String,
        /// Room uri or `@other`.
        room: String,
        /// The text.
        text: String,
        /// A status message.
        #[serde(default)]
        status: bool,
    },
    /// A Gitter user joins a room.
    GitterJoin {
        /// Username.
        user: String,
        /// Room uri.
        room: String,
    },
    /// A Gitter user leaves a room.
    GitterLeave {
        /// Username.
        user: String,
        /// Room uri.
        room: String,
    },
    /// Gitter writes a raw line to the room's open streams (fails if none is open).
    GitterStreamLine {
        /// Room uri.
        room: String,
        /// The line, as is.
        line: String,
    },
    /// Gitter closes the streams of a room (or all streams).
    DropStreams {
        /// Room uri (default: every room).
        room: Option<String>,
    },
    /// Gitter answers `status` to the next `next` requests, or to every request for `for_ms`.
    GitterFail {
        /// HTTP status.
        status: u16,
        /// How many requests.
        next: Option<u32>,
        /// For how long.
        for_ms: Option<u64>,
    },
    /// Gitter delays every response.
    GitterDelay {
        /// Milliseconds (0 removes the delay).
        ms: u64,
    },
    /// Gitter revokes the token the bridge holds for a Gitter user.
    RevokeToken {
        /// Username.
        gitter_user: String,
    },
    /// The homeserver sends the bridge again a transaction it already delivered (same id,
    /// same events), as Synapse does when the bridge's 200 got lost; with `new_txn_id` the
    /// same events come under a fresh transaction id. The bridge must answer 200.
    HsReplayTransaction {
        /// Pick the newest delivered transaction with an event whose `body` is this (default:
        /// the newest delivered transaction).
        containing: Option<String>,
        /// Send the events under a fresh transaction id.
        #[serde(default)]
        new_txn_id: bool,
    },
    /// The homeserver's next `next` AS pushes fail, so it retries the transaction.
    HsFailPushes {
        /// How many.
        next: u32,
    },
    /// The homeserver answers `status` to Client-Server requests.
    HsFailCs {
        /// HTTP status (429 comes with `retry_after_ms`).
        status: u16,
        /// The next this many requests.
        next: Option<u32>,
        /// Every request for this long.
        for_ms: Option<u64>,
    },
    /// The homeserver delays every Client-Server response.
    HsDelay {
        /// Milliseconds (0 removes the delay).
        ms: u64,
    },
    /// Both fakes stop injecting faults.
    ClearFaults,
    /// The bridge dies as in a crash.
    KillBridge,
    /// The bridge stops gracefully.
    StopBridge,
    /// The bridge starts (after a kill or a stop).
    StartBridge,
    /// The bridge is killed and started again.
    RestartBridge,
    /// A raw `PUT /_matrix/app/v1/transactions/<txn>` straight to the bridge's AS listener.
    AsPut {
        /// The body, sent as is after `${...}` replacement.
        body: String,
        /// Transaction id (default: a fresh one).
        txn: Option<String>,
        /// How to authenticate.
        #[serde(default)]
        auth: Auth,
        /// The HTTP status the bridge must answer.
        expect_status: Option<u16>,
    },
    /// Wait a fixed time (prefer an expectation: it waits only as long as needed).
    Sleep {
        /// Milliseconds.
        ms: u64,
    },
}

/// Something someone should see.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// The bot said something containing `contains` in the room (default: the DM), after
    /// the user's last message there (`anywhere = true`: at any time).
    Notice {
        /// Localpart.
        user: String,
        /// A piece of the notice.
        contains: String,
        /// The room (default: the DM).
        room: Option<String>,
        /// Look at every notice, not only those after the user's last message.
        #[serde(default)]
        anywhere: bool,
    },
    /// The user sees a message from `from` with this body.
    Message {
        /// Localpart.
        user: String,
        /// The room (default: the DM).
        room: Option<String>,
        /// Gitter username (their ghost) or `bot`.
        from: String,
        /// The exact `body`.
        body: String,
        /// `m.text`, `m.emote`, `m.notice`.
        msgtype: Option<String>,
        /// A piece `formatted_body` must contain.
        formatted_contains: Option<String>,
        /// A piece `formatted_body` must not contain.
        formatted_lacks: Option<String>,
    },
    /// The user sees exactly `count` messages (from others, or from `from`) with this body
    /// (or containing `contains`).
    MessageCount {
        /// Localpart.
        user: String,
        /// The room (default: the DM).
        room: Option<String>,
        /// Gitter username (their ghost) or `bot` (default: anyone but the user).
        from: Option<String>,
        /// The exact body.
        body: Option<String>,
        /// Or a piece of it.
        contains: Option<String>,
        /// How many.
        count: usize,
    },
    /// Among the messages from others (or from `from`) the user sees, those whose body is in
    /// `bodies` are exactly `bodies`, in this order: nothing lost, doubled or reordered.
    Sequence {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
        /// Gitter username (their ghost) or `bot` (default: anyone but the user).
        from: Option<String>,
        /// The bodies, in order.
        bodies: Vec<String>,
    },
    /// The user's own messages do not come back in the portal as their ghost.
    NoEcho {
        /// Localpart.
        user: String,
        /// The portal.
        room: String,
    },
    /// The ghost of a Gitter user is shown with this display name in the room.
    GhostName {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
        /// Gitter username.
        ghost: String,
        /// The display name.
        name: String,
    },
    /// The user has a pending invite to the room (a portal, for a Gitter room).
    Invited {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
    },
    /// Someone's membership in a room the user is or was in.
    Membership {
        /// Localpart of the user whose room it is.
        user: String,
        /// The room.
        room: String,
        /// Whose membership: `bot`, `ghost:<Gitter username>` or a Matrix localpart
        /// (default: `user`).
        who: Option<String>,
        /// `join`, `invite`, `leave`, `ban` or `none`.
        is: String,
    },
    /// The Gitter room has a message from `from` with this text.
    GitterMessage {
        /// Room uri or `@other`.
        room: String,
        /// Username.
        from: String,
        /// The exact text.
        text: String,
        /// The text is `text` repeated this many times.
        repeat: Option<usize>,
        /// Whether it is a status (`/me`) message.
        status: Option<bool>,
    },
    /// The Gitter room has exactly `count` messages from `from` with this text.
    GitterCount {
        /// Room uri or `@other`.
        room: String,
        /// Username.
        from: String,
        /// The exact text.
        text: String,
        /// The text is `text` repeated this many times.
        repeat: Option<usize>,
        /// How many.
        count: usize,
    },
    /// Whether a Gitter user is a member of a Gitter room.
    GitterMember {
        /// Room uri.
        room: String,
        /// Username.
        user: String,
        /// Member or not.
        member: bool,
    },
    /// The bridge has a stream open for the Gitter room (read with `reader`'s token).
    BridgeListening {
        /// Room uri, or `@other` with `user`.
        room: String,
        /// The Matrix user whose Gitter login `@other` is relative to.
        user: Option<String>,
        /// The Gitter user whose token the stream uses.
        reader: Option<String>,
    },
    /// The last page the user's browser got from `open_login_link`.
    LoginPage {
        /// Localpart.
        user: String,
        /// A piece of the page.
        contains: String,
        /// Its HTTP status.
        status: Option<u16>,
    },
    /// The bridge is running and both its listeners accept connections.
    BridgeUp,
    /// The homeserver retried at least `at_least` failed pushes until the bridge took them.
    HsRetried {
        /// How many failed attempts were followed by a success of the same transaction.
        at_least: usize,
    },
    /// Every "next N" failure injected into Gitter was served (the fault really happened).
    GitterFaultsSpent,
    /// The bridge acknowledged (HTTP 200) a transaction holding an event with this `body`.
    HsDelivered {
        /// The body.
        body: String,
    },
}

impl Action {
    /// One line for the transcript.
    pub fn describe(&self) -> String {
        match self {
            Action::Register { user } => format!("{user} registers on the homeserver"),
            Action::OpenDm { user, name } => match name {
                Some(n) => format!("{user} opens a DM \"{n}\" with the bot"),
                None => format!("{user} opens a DM with the bot"),
            },
            Action::CreateGroup {
                user,
                name,
                members,
            } => format!(
                "{user} creates \"{name}\" with {} and invites the bot",
                members.join(", ")
            ),
            Action::InviteBot { user, room } => format!("{user} invites the bot to {room}"),
            Action::Say {
                user,
                text,
                room,
                repeat,
            } => format!("{user} says {} {}", repeated(text, *repeat), place(room)),
            Action::Emote { user, text, room } => {
                format!("{user} emotes {} {}", short(text), place(room))
            }
            Action::Leave { user, room } => format!("{user} leaves {room}"),
            Action::Login {
                user,
                gitter_user,
                open_portals,
            } => {
                let g = gitter_user.as_deref().unwrap_or(user);
                if *open_portals {
                    format!("{user} logs in to Gitter as {g} and joins their portals")
                } else {
                    format!("{user} logs in to Gitter as {g}")
                }
            }
            Action::OpenLoginLink { user, gitter_user } => format!(
                "{user} opens their newest login link (signing in as {})",
                gitter_user.as_deref().unwrap_or(user)
            ),
            Action::AcceptInvites { user } => format!("{user} accepts their invites"),
            Action::GitterPost {
                from,
                room,
                text,
                status,
            } => {
                let kind = if *status { " a /me status" } else { "" };
                format!("{from} posts{kind} on Gitter in {room}: {}", short(text))
            }
            Action::GitterJoin { user, room } => format!("{user} joins {room} on Gitter"),
            Action::GitterLeave { user, room } => format!("{user} leaves {room} on Gitter"),
            Action::GitterStreamLine { room, line } => {
                format!(
                    "Gitter writes a raw line to the streams of {room}: {}",
                    short(line)
                )
            }
            Action::DropStreams { room } => match room {
                Some(r) => format!("Gitter drops the streams of {r}"),
                None => "Gitter drops every stream".to_owned(),
            },
            Action::GitterFail {
                status,
                next,
                for_ms,
            } => match (next, for_ms) {
                (Some(n), _) => format!("Gitter answers {status} to the next {n} requests"),
                (None, Some(ms)) => format!("Gitter answers {status} to everything for {ms} ms"),
                (None, None) => format!("Gitter fails with {status} (no `next` or `for_ms`)"),
            },
            Action::GitterDelay { ms } => format!("Gitter delays every response by {ms} ms"),
            Action::RevokeToken { gitter_user } => {
                format!("Gitter revokes the token of {gitter_user}")
            }
            Action::HsReplayTransaction {
                containing,
                new_txn_id,
            } => {
                let which = match containing {
                    Some(c) => format!("the transaction with {}", short(c)),
                    None => "the last transaction".to_owned(),
                };
                if *new_txn_id {
                    format!("the homeserver sends the events of {which} again, under a new id")
                } else {
                    format!("the homeserver sends {which} again")
                }
            }
            Action::HsFailPushes { next } => {
                format!("the homeserver's next {next} AS pushes fail")
            }
            Action::HsFailCs {
                status,
                next,
                for_ms,
            } => match (next, for_ms) {
                (Some(n), _) => format!("the homeserver answers {status} to the next {n} requests"),
                (None, Some(ms)) => {
                    format!("the homeserver answers {status} to everything for {ms} ms")
                }
                (None, None) => format!("the homeserver fails with {status}"),
            },
            Action::HsDelay { ms } => format!("the homeserver delays every response by {ms} ms"),
            Action::ClearFaults => "both fakes stop injecting faults".to_owned(),
            Action::KillBridge => "the bridge is killed (crash)".to_owned(),
            Action::StopBridge => "the bridge stops gracefully".to_owned(),
            Action::StartBridge => "the bridge starts".to_owned(),
            Action::RestartBridge => "the bridge is killed and started again".to_owned(),
            Action::AsPut {
                body, txn, auth, ..
            } => {
                let auth = match auth {
                    Auth::HsToken => "with the hs_token",
                    Auth::Wrong => "with a wrong token",
                    Auth::None => "without a token",
                };
                let txn = txn.as_deref().unwrap_or("<fresh>");
                format!(
                    "raw PUT of transaction {txn} to the AS API {auth}: {}",
                    short(body)
                )
            }
            Action::Sleep { ms } => format!("wait {ms} ms"),
        }
    }
}

impl Expectation {
    /// One line for the transcript.
    pub fn describe(&self) -> String {
        let text = match self {
            Expectation::Notice {
                user,
                contains,
                room,
                anywhere,
            } => format!(
                "{user} gets a bot notice {} containing {}{}",
                place(room),
                short(contains),
                if *anywhere {
                    ""
                } else {
                    " (after their last message)"
                }
            ),
            Expectation::Message {
                user,
                room,
                from,
                body,
                msgtype,
                formatted_contains,
                formatted_lacks,
            } => {
                let mut s = format!(
                    "{user} sees {} a message from {from}: {}",
                    place(room),
                    short(body)
                );
                if let Some(t) = msgtype {
                    let _ = write!(s, " ({t})");
                }
                if let Some(f) = formatted_contains {
                    let _ = write!(s, ", formatted with {}", short(f));
                }
                if let Some(f) = formatted_lacks {
                    let _ = write!(s, ", formatted without {}", short(f));
                }
                s
            }
            Expectation::MessageCount {
                user,
                room,
                from,
                body,
                contains,
                count,
            } => {
                let what = match (body, contains) {
                    (Some(b), _) => short(b),
                    (None, Some(c)) => format!("containing {}", short(c)),
                    (None, None) => "of any body".to_owned(),
                };
                let from = from.as_deref().unwrap_or("others");
                format!(
                    "{user} sees {} exactly {count} message(s) from {from} {what}",
                    place(room)
                )
            }
            Expectation::Sequence {
                user,
                room,
                from,
                bodies,
            } => format!(
                "{user} sees in {room} from {}, in order and once each: {}",
                from.as_deref().unwrap_or("others"),
                bodies
                    .iter()
                    .map(|b| short(b))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Expectation::NoEcho { user, room } => {
                format!("no message of {user} comes back to them in {room} as their ghost")
            }
            Expectation::GhostName {
                user,
                room,
                ghost,
                name,
            } => format!("{user} sees {ghost}'s ghost in {room} named \"{name}\""),
            Expectation::Invited { user, room } => format!("{user} is invited to {room}"),
            Expectation::Membership {
                user,
                room,
                who,
                is,
            } => format!(
                "{} is `{is}` in {user}'s room {room}",
                who.as_deref().unwrap_or(user)
            ),
            Expectation::GitterMessage {
                room,
                from,
                text,
                repeat,
                status,
            } => format!(
                "Gitter room {room} has a {}message from {from}: {}",
                if *status == Some(true) { "status " } else { "" },
                repeated(text, *repeat)
            ),
            Expectation::GitterCount {
                room,
                from,
                text,
                repeat,
                count,
            } => format!(
                "Gitter room {room} has exactly {count} message(s) from {from}: {}",
                repeated(text, *repeat)
            ),
            Expectation::GitterMember { room, user, member } => {
                if *member {
                    format!("{user} is a member of {room} on Gitter")
                } else {
                    format!("{user} is not a member of {room} on Gitter")
                }
            }
            Expectation::BridgeListening { room, reader, .. } => match reader {
                Some(r) => format!("the bridge reads {room} with {r}'s token"),
                None => format!("the bridge has a stream open for {room}"),
            },
            Expectation::LoginPage {
                user,
                contains,
                status,
            } => match status {
                Some(s) => format!("{user}'s browser shows HTTP {s} with {}", short(contains)),
                None => format!("{user}'s browser shows {}", short(contains)),
            },
            Expectation::BridgeUp => "the bridge is up".to_owned(),
            Expectation::HsRetried { at_least } => format!(
                "the homeserver retried {at_least}+ failed pushes until the bridge took them"
            ),
            Expectation::GitterFaultsSpent => "Gitter served every injected failure".to_owned(),
            Expectation::HsDelivered { body } => {
                format!(
                    "the bridge acknowledged the transaction with {}",
                    short(body)
                )
            }
        };
        format!("expect: {text}")
    }

    fn default_settle(&self) -> Duration {
        match self {
            Expectation::MessageCount { .. }
            | Expectation::Sequence { .. }
            | Expectation::NoEcho { .. }
            | Expectation::GitterCount { .. } => DEFAULT_SETTLE,
            _ => Duration::ZERO,
        }
    }
}

/// A text given as `text` × `repeat`, for a transcript line.
fn repeated(text: &str, repeat: Option<usize>) -> String {
    match repeat {
        Some(n) => format!(
            "{} x {n} ({} characters)",
            short(text),
            text.chars().count() * n
        ),
        None => short(text),
    }
}

fn place(room: &Option<String>) -> String {
    match room.as_deref() {
        None | Some("dm") => "in their DM".to_owned(),
        Some(r) => format!("in {r}"),
    }
}

/// A text for a transcript line: quoted, cut at 60 characters.
fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 60 {
        let cut: String = one_line.chars().take(57).collect();
        format!("{:?}", format!("{cut}..."))
    } else {
        format!("{one_line:?}")
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a scenario.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if scenario.steps.is_empty() {
            return Err("the scenario has no `[[step]]`".to_owned());
        }
        for (i, step) in scenario.steps.iter().enumerate() {
            if let Step::Do(Action::GitterFail { next, for_ms, .. })
            | Step::Do(Action::HsFailCs { next, for_ms, .. }) = step
                && next.is_some() == for_ms.is_some()
            {
                return Err(format!(
                    "step {}: give exactly one of `next` and `for_ms`",
                    i + 1
                ));
            }
            if let Step::Expect(Expect {
                what: Expectation::MessageCount { body, contains, .. },
                ..
            }) = step
                && body.is_some() == contains.is_some()
            {
                return Err(format!(
                    "step {}: give exactly one of `body` and `contains`",
                    i + 1
                ));
            }
        }
        Ok(scenario)
    }
}

/// The outcome of one step.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// 1-based.
    pub index: usize,
    /// What the step was.
    pub description: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// What happened (for a pass) or what was seen instead (for a failure).
    pub detail: Option<String>,
}

/// The outcome of a scenario.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's name (the file name when it could not be read).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The steps that ran.
    pub steps: Vec<StepReport>,
    /// Why the scenario failed: the failing step's line and what was seen, or a setup error.
    pub failure: Option<String>,
    /// For a scenario with a `known_bug`: the failure that showed it.
    pub known_bug: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// Everything printed.
    pub transcript: String,
}

impl Report {
    /// Whether every step passed, or the scenario failed as its `known_bug` says.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The step that failed.
    pub fn failing_step(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| !s.passed)
    }
}

/// The scenario files of a directory (`*.toml`, sorted), or the file itself.
pub fn scenario_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.toml scenario in {}", path.display()));
    }
    Ok(files)
}

/// Runs every scenario of a file or directory, one after the other, and prints a summary.
pub async fn run_path(path: &Path) -> Result<Vec<Report>, String> {
    let files = scenario_files(path)?;
    let started = Instant::now();
    let mut reports = Vec::new();
    for file in files {
        reports.push(run_scenario(&file).await);
        println!();
    }
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.passed()).collect();
    let known: Vec<&Report> = reports.iter().filter(|r| r.known_bug.is_some()).collect();
    let known_note = match known.len() {
        0 => String::new(),
        n => format!(" ({n} of them showing a known bug)"),
    };
    println!(
        "{} scenario(s) in {:.1}s: {} passed{known_note}, {} failed",
        reports.len(),
        started.elapsed().as_secs_f64(),
        reports.len() - failed.len(),
        failed.len()
    );
    for r in known {
        println!("  KNOWN BUG {} ({})", r.name, r.path.display());
    }
    for r in failed {
        let at = r
            .failing_step()
            .map(|s| format!("step {}", s.index))
            .unwrap_or_else(|| "setup".to_owned());
        println!("  FAILED {} ({}), {at}", r.name, r.path.display());
    }
    Ok(reports)
}

/// `bridge-sim run <file-or-dir>`: `Err` when a scenario failed or none could be found.
pub async fn run_cli(path: &Path) -> Result<(), String> {
    let reports = run_path(path).await?;
    match reports.iter().filter(|r| !r.passed()).count() {
        0 => Ok(()),
        n => Err(format!("{n} of {} scenario(s) failed", reports.len())),
    }
}

/// Runs one scenario file in a fresh world, printing the transcript as it goes.
pub async fn run_scenario(path: &Path) -> Report {
    let started = Instant::now();
    let mut out = Transcript::default();
    let fallback_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |out: Transcript, name: String, why: String| {
        let mut out = out;
        out.line(&format!("FAIL {name}: {why}"));
        Report {
            name,
            path: path.to_owned(),
            steps: Vec::new(),
            failure: Some(why),
            known_bug: None,
            elapsed: started.elapsed(),
            transcript: out.text,
        }
    };
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return fail(out, fallback_name, format!("cannot read the scenario: {e}")),
    };
    out.line(&format!("scenario {} ({})", scenario.name, path.display()));
    for l in scenario.description.trim().lines() {
        out.line(&format!("  {}", l.trim()));
    }
    let mut runner = match Runner::new(&scenario, path).await {
        Ok(r) => r,
        Err(e) => return fail(out, scenario.name, format!("the world did not start: {e}")),
    };
    let mut steps = Vec::new();
    let mut failure = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        let index = i + 1;
        let step_started = Instant::now();
        let (description, result) = match step {
            Step::Do(action) => (action.describe(), runner.act(action).await),
            Step::Expect(e) => (e.what.describe(), runner.expect(e).await),
        };
        let elapsed = step_started.elapsed();
        let passed = result.is_ok();
        let detail = match result {
            Ok(note) => note,
            Err(seen) => Some(seen),
        };
        out.step(index, passed, elapsed, &description, detail.as_deref());
        if !passed {
            failure = Some(format!(
                "step {index} ({description}): {}",
                detail.clone().unwrap_or_default()
            ));
        }
        steps.push(StepReport {
            index,
            description,
            passed,
            elapsed,
            detail,
        });
        if !passed {
            break;
        }
    }
    // A scenario that ended inside a fault would make the bridge's graceful stop wait it out.
    runner.world.gitter.clear_faults();
    runner.world.hs.clear_faults();
    runner.world.shutdown().await;
    let elapsed = started.elapsed();
    let mut known_bug = None;
    match (&failure, &scenario.known_bug) {
        (None, None) => out.line(&format!(
            "PASS {}: {} steps in {:.2}s",
            scenario.name,
            steps.len(),
            elapsed.as_secs_f64()
        )),
        (Some(_), None) => out.line(&format!(
            "FAIL {} at step {} of {} ({:.2}s)",
            scenario.name,
            steps.len(),
            scenario.steps.len(),
            elapsed.as_secs_f64()
        )),
        (Some(_), Some(bug)) => {
            out.line(&format!(
                "KNOWN BUG {} at step {} of {} ({:.2}s), as its `known_bug` says:",
                scenario.name,
                steps.len(),
                scenario.steps.len(),
                elapsed.as_secs_f64()
            ));
            for l in bug.trim().lines() {
                out.line(&format!("  {}", l.trim()));
            }
            known_bug = failure.take();
        }
        (None, Some(_)) => {
            let why = "every step passed, but the scenario has a `known_bug`: if the bug \
                       is fixed, remove the `known_bug` line"
                .to_owned();
            out.line(&format!("FAIL {}: {why}", scenario.name));
            failure = Some(why);
        }
    }
    Report {
        name: scenario.name,
        path: path.to_owned(),
        steps,
        failure,
        known_bug,
        elapsed,
        transcript: out.text,
    }
}

/// Prints lines as they come and keeps them.
#[derive(Default)]
struct Transcript {
    text: String,
}

impl Transcript {
    fn line(&mut self, line: &str) {
        println!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn step(
        &mut self,
        index: usize,
        passed: bool,
        elapsed: Duration,
        description: &str,
        detail: Option<&str>,
    ) {
        let mark = if passed { "ok  " } else { "FAIL" };
        self.line(&format!(
            "{index:>4}. {mark} {:>6.2}s  {description}",
            elapsed.as_secs_f64()
        ));
        if let Some(detail) = detail {
            for l in detail.lines() {
                self.line(&format!("{:>20}{l}", ""));
            }
        }
    }
}

/// A Matrix user of the scenario.
#[derive(Debug)]
struct Person {
    human: Human,
    /// Their current DM with the bot.
    dm: Option<String>,
    /// The Gitter username they logged in as.
    gitter: Option<String>,
    /// The last page `open_login_link` got: status, text.
    page: Option<(u16, String)>,
}

/// The result of looking at the world once.
enum Check {
    /// The expectation holds.
    Holds,
    /// Not (yet): what was seen.
    NotYet(String),
    /// It cannot hold any more (a duplicate, an echo): what was seen.
    Broken(String),
}

struct Runner {
    world: World,
    people: BTreeMap<String, Person>,
    server: String,
    bot: String,
    ghost_template: String,
    hs_token: String,
    counter: AtomicU64,
}

impl Runner {
    async fn new(scenario: &Scenario, path: &Path) -> Result<Runner, String> {
        let spec = &scenario.world;
        let mut options = WorldOptions::default();
        if let Some(seed) = &spec.seed {
            let seed_path = path.parent().unwrap_or(Path::new(".")).join(seed);
            options.gitter_seed = std::fs::read_to_string(&seed_path)
                .map_err(|e| format!("seed {}: {e}", seed_path.display()))?;
        }
        if let Some(extra) = &spec.bridge {
            options.bridge_extra = extra.clone();
        }
        if let Some(ms) = spec.heartbeat_ms {
            options.heartbeat = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = spec.gitter_rate_limit {
            options.gitter_rate_limit = n;
        }
        if let Some(n) = spec.bridge_requests_per_minute {
            options.bridge_requests_per_minute = n;
        }
        if let Some(ms) = spec.push_backoff_ms {
            options.push_backoff = Duration::from_millis(ms.max(1));
        }
        let server = options.server_name.clone();
        let mut world = World::without_bridge(options)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(users) = &spec.allowed_users {
            // The world's config lets everyone in; a scenario about permissions narrows it.
            let list: Vec<String> = users.iter().map(|u| format!("\"@{u}:{server}\"")).collect();
            let text = std::fs::read_to_string(&world.config_path).map_err(|e| e.to_string())?;
            if !text.contains("allow_all = true") {
                return Err("the world's config has no `allow_all = true` to replace".into());
            }
            let text = text.replacen(
                "allow_all = true",
                &format!("allow_users = [{}]", list.join(", ")),
                1,
            );
            std::fs::write(&world.config_path, text).map_err(|e| e.to_string())?;
        }
        if let Some(ms) = spec.gitter_rate_window_ms {
            world
                .gitter
                .with_state(|s| s.config.rate_window = Duration::from_millis(ms.max(1)));
        }
        let config = world.config().map_err(|e| e.to_string())?;
        world.start_bridge().await.map_err(|e| e.to_string())?;
        Ok(Runner {
            bot: world.bot(),
            world,
            people: BTreeMap::new(),
            server,
            ghost_template: config.core.ghost_template.clone(),
            hs_token: config.hs_token.expose().to_owned(),
            counter: AtomicU64::new(1),
        })
    }

    fn next_number(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    // ---- names ----------------------------------------------------------

    fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server)
    }

    fn ghost_id(&self, username: &str) -> String {
        let localpart = self
            .ghost_template
            .replace("{username}", username)
            .to_lowercase();
        format!("@{localpart}:{}", self.server)
    }

    /// The Matrix sender a `from` names.
    fn sender_id(&self, from: &str) -> String {
        if from == "bot" {
            self.bot.clone()
        } else {
            self.ghost_id(from)
        }
    }

    fn person(&self, user: &str) -> Result<&Person, String> {
        self.people
            .get(user)
            .ok_or_else(|| format!("{user} has not done anything yet"))
    }

    fn person_mut(&mut self, user: &str) -> Result<&mut Person, String> {
        self.people
            .get_mut(user)
            .ok_or_else(|| format!("{user} has not done anything yet"))
    }

    /// Registers the user on first use.
    fn ensure_person(&mut self, user: &str) -> Result<Human, String> {
        if let Some(p) = self.people.get(user) {
            return Ok(p.human.clone());
        }
        let human = self.world.human(user).map_err(|e| e.to_string())?;
        self.people.insert(
            user.to_owned(),
            Person {
                human: human.clone(),
                dm: None,
                gitter: None,
                page: None,
            },
        );
        Ok(human)
    }

    fn dm_of(&self, user: &str) -> Result<String, String> {
        self.person(user)?
            .dm
            .clone()
            .ok_or_else(|| format!("{user} has no DM with the bot yet (add an `open_dm` step)"))
    }

    /// The Gitter room id of a room reference, `@other` being relative to `actor`.
    fn gitter_room(&self, actor: Option<&str>, room: &str) -> Result<String, String> {
        if let Some(other) = room.strip_prefix('@') {
            let me = actor.ok_or_else(|| {
                format!("{room}: a one-to-one room needs to know whose (a Gitter user)")
            })?;
            let (a, b) = (
                self.world.gitter.user_id(me),
                self.world.gitter.user_id(other),
            );
            let (Some(a), Some(b)) = (a, b) else {
                return Err(format!("{room}: no Gitter user {me} or {other}"));
            };
            return self
                .world
                .gitter
                .with_state(|s| {
                    s.rooms()
                        .find(|r| r.one_to_one && r.members.contains(&a) && r.members.contains(&b))
                        .map(|r| r.id.clone())
                })
                .ok_or_else(|| format!("no one-to-one Gitter room between {me} and {other}"));
        }
        self.world
            .gitter
            .room_id(room)
            .ok_or_else(|| format!("no Gitter room {room}"))
    }

    /// The Matrix room name a room reference stands for, as `user` sees it.
    fn room_name(&self, user: &str, room: &str) -> Result<String, String> {
        if let Some(other) = room.strip_prefix('@') {
            let me = self.person(user)?.gitter.clone().ok_or_else(|| {
                format!("{room}: {user} is not logged in to Gitter in this scenario")
            })?;
            self.gitter_room(Some(&me), room)?;
            return self
                .world
                .gitter
                .with_state(|s| s.user_by_username(other).map(|u| u.display_name.clone()))
                .ok_or_else(|| format!("no Gitter user {other}"));
        }
        let gitter_name = self
            .world
            .gitter
            .with_state(|s| s.room_ref(room).map(|r| r.name.clone()));
        Ok(gitter_name.unwrap_or_else(|| room.to_owned()))
    }

    /// The Matrix room of a reference for `user`, whatever their membership (joined first,
    /// then invited, then the newest other).
    fn matrix_room(&self, user: &str, room: Option<&str>) -> Result<String, String> {
        let room = match room {
            None | Some("dm") => return self.dm_of(user),
            Some(r) => r,
        };
        let name = self.room_name(user, room)?;
        let uid = self.user_id(user);
        let found = self.world.hs.with_state(|s| {
            let mut rooms: Vec<(String, String)> = s
                .rooms_of(&uid)
                .into_iter()
                .filter(|(r, _)| room_name_of(s, r).as_deref() == Some(name.as_str()))
                .collect();
            // Newest first, then by membership: a room re-created later wins over an old one.
            rooms.reverse();
            rooms.sort_by_key(|(_, m)| match m.as_str() {
                "join" => 0,
                "invite" => 1,
                _ => 2,
            });
            rooms.into_iter().next().map(|(r, _)| r)
        });
        found.ok_or_else(|| format!("{user} has no room named \"{name}\" ({room})"))
    }

    /// The user's rooms with names and memberships, for "seen instead".
    fn rooms_seen(&self, user: &str) -> String {
        let uid = self.user_id(user);
        let rooms = self.world.hs.with_state(|s| {
            s.rooms_of(&uid)
                .into_iter()
                .map(|(r, m)| {
                    let name = room_name_of(s, &r).unwrap_or_else(|| "(no name)".to_owned());
                    format!("{name}: {m}")
                })
                .collect::<Vec<_>>()
        });
        if rooms.is_empty() {
            format!("{user} is in no room")
        } else {
            format!("{user}'s rooms: {}", rooms.join("; "))
        }
    }

    fn messages(&self, user: &str, room: &str) -> Vec<SeenEvent> {
        self.world.hs.messages_seen(&self.user_id(user), room)
    }

    /// The messages of a room as a user sees them, for "seen instead".
    fn timeline_seen(&self, user: &str, room: &str) -> String {
        let messages = self.messages(user, room);
        if messages.is_empty() {
            return format!("{user} sees no message there");
        }
        let skip = messages.len().saturating_sub(15);
        let mut s = format!("{user} sees ({} message(s)):", messages.len());
        for m in &messages[skip..] {
            let _ = write!(
                s,
                "\n  {} {}: {}",
                m.sender,
                m.msgtype.as_deref().unwrap_or("?"),
                short(m.body.as_deref().unwrap_or(""))
            );
            if let Some(f) = m.content.get("formatted_body").and_then(Value::as_str) {
                let _ = write!(s, " [html {}]", short(f));
            }
        }
        s
    }

    fn gitter_seen(&self, room_id: &str) -> String {
        let messages = self.world.gitter.messages(room_id).unwrap_or_default();
        if messages.is_empty() {
            return "the Gitter room has no message".to_owned();
        }
        let skip = messages.len().saturating_sub(15);
        let mut s = format!("the Gitter room has {} message(s):", messages.len());
        for m in &messages[skip..] {
            let _ = write!(
                s,
                "\n  {}{}: {}",
                m["fromUser"]["username"].as_str().unwrap_or("?"),
                if m["status"] == true { " (status)" } else { "" },
                short(m["text"].as_str().unwrap_or(""))
            );
        }
        s
    }

    fn gitter_matching(&self, room_id: &str, from: &str, text: &str) -> Vec<Value> {
        self.world
            .gitter
            .messages(room_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["fromUser"]["username"] == from && m["text"] == text)
            .collect()
    }

    // ---- actions --------------------------------------------------------

    async fn act(&mut self, action: &Action) -> Result<Option<String>, String> {
        let hs_err = |e: crate::fake_hs::MatrixError| format!("the homeserver said {e:?}");
        let gitter_err = |e: crate::fake_gitter::ApiError| format!("Gitter said {e:?}");
        match action {
            Action::Register { user } => {
                if self.people.contains_key(user) {
                    return Err(format!("{user} is already registered"));
                }
                let human = self.ensure_person(user)?;
                Ok(Some(human.user_id))
            }
            Action::OpenDm { user, name } => {
                let room = self.open_dm(user, name.as_deref()).await?;
                let notices = self.world.bot_notices(&self.person(user)?.human, &room);
                Ok(notices.last().map(|n| format!("bot: {}", short(n))))
            }
            Action::CreateGroup {
                user,
                name,
                members,
            } => {
                let human = self.ensure_person(user)?;
                let mut ids = Vec::new();
                for m in members {
                    ids.push(self.ensure_person(m)?.user_id);
                }
                let room = self
                    .world
                    .hs
                    .create_room(
                        &human.user_id,
                        serde_json::json!({ "preset": "private_chat", "name": name, "invite": ids }),
                    )
                    .map_err(hs_err)?;
                for id in &ids {
                    self.world.hs.join(id, &room).map_err(hs_err)?;
                }
                self.world
                    .hs
                    .invite(&human.user_id, &room, &self.bot)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::InviteBot { user, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, Some(room))?;
                self.world
                    .hs
                    .invite(&human.user_id, &room, &self.bot)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Say {
                user,
                text,
                room,
                repeat,
            } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                let text = text.repeat(repeat.unwrap_or(1));
                self.world
                    .hs
                    .send_text(&human.user_id, &room, &text)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Emote { user, text, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                self.world
                    .hs
                    .send_emote(&human.user_id, &room, text)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Leave { user, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, Some(room))?;
                self.world.hs.leave(&human.user_id, &room).map_err(hs_err)?;
                Ok(None)
            }
            Action::Login {
                user,
                gitter_user,
                open_portals,
            } => {
                let gitter_user = gitter_user.as_deref().unwrap_or(user);
                self.login(user, gitter_user, *open_portals).await
            }
            Action::OpenLoginLink { user, gitter_user } => {
                let gitter_user = gitter_user.as_deref().unwrap_or(user).to_owned();
                let dm = self.dm_of(user)?;
                let human = self.person(user)?.human.clone();
                let link = self
                    .world
                    .bot_notices(&human, &dm)
                    .iter()
                    .rev()
                    .find_map(|n| login_link(n))
                    .ok_or_else(|| format!("the bot never sent {user} a login link"))?;
                let (status, text) = self
                    .world
                    .browse_login_link(&link, &gitter_user)
                    .await
                    .map_err(|e| e.to_string())?;
                let note = format!("HTTP {status}: {}", short(&page_text(&text)));
                if status == 200 {
                    self.person_mut(user)?.gitter = Some(gitter_user);
                }
                self.person_mut(user)?.page = Some((status, text));
                Ok(Some(note))
            }
            Action::AcceptInvites { user } => {
                let human = self.ensure_person(user)?;
                let joined = self
                    .world
                    .accept_invites(&human)
                    .map_err(|e| e.to_string())?;
                let names: Vec<String> = joined
                    .iter()
                    .map(|r| {
                        self.world
                            .hs
                            .with_state(|s| room_name_of(s, r))
                            .unwrap_or_else(|| r.clone())
                    })
                    .collect();
                Ok(Some(if names.is_empty() {
                    "no invite pending".to_owned()
                } else {
                    format!("joined {}", names.join(", "))
                }))
            }
            Action::GitterPost {
                from,
                room,
                text,
                status,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let posted = if *status {
                    self.world.gitter.post_status(&rid, from, text)
                } else {
                    self.world.gitter.post_message(&rid, from, text)
                };
                posted.map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterJoin { user, room } => {
                let rid = self.gitter_room(Some(user), room)?;
                self.world.gitter.join(&rid, user).map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterLeave { user, room } => {
                let rid = self.gitter_room(Some(user), room)?;
                self.world.gitter.leave(&rid, user).map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterStreamLine { room, line } => {
                let rid = self.gitter_room(None, room)?;
                match self.world.gitter.send_stream_line(&rid, line) {
                    0 => Err(format!("no stream of {room} is open")),
                    n => Ok(Some(format!("{n} stream(s) got it"))),
                }
            }
            Action::DropStreams { room } => {
                let rid = match room {
                    Some(r) => Some(self.gitter_room(None, r)?),
                    None => None,
                };
                let n = self.world.gitter.drop_streams(rid.as_deref());
                Ok(Some(format!("{n} stream(s) closed")))
            }
            Action::GitterFail {
                status,
                next,
                for_ms,
            } => {
                match (next, for_ms) {
                    (Some(n), _) => self.world.gitter.fail_next(*n, *status),
                    (None, Some(ms)) => self
                        .world
                        .gitter
                        .fail_for(Duration::from_millis(*ms), *status),
                    (None, None) => return Err("give `next` or `for_ms`".into()),
                }
                Ok(None)
            }
            Action::GitterDelay { ms } => {
                self.world.gitter.set_delay(Duration::from_millis(*ms));
                Ok(None)
            }
            Action::RevokeToken { gitter_user } => {
                let token = self
                    .world
                    .gitter
                    .token_for(gitter_user)
                    .ok_or_else(|| format!("no Gitter user {gitter_user}"))?;
                if self.world.gitter.revoke_token(&token) {
                    Ok(None)
                } else {
                    Err(format!("{gitter_user} had no token to revoke"))
                }
            }
            Action::HsReplayTransaction {
                containing,
                new_txn_id,
            } => {
                let delivered = self.world.hs.delivered_transactions();
                let txn = delivered
                    .iter()
                    .rev()
                    .find(|t| match containing {
                        Some(c) => t.events.iter().any(|e| e["content"]["body"] == c.as_str()),
                        None => true,
                    })
                    .ok_or_else(|| "no such delivered transaction".to_owned())?;
                let body = self.world.hs.with_state(|s| s.transaction_body(txn));
                let id = if *new_txn_id {
                    format!("scenario-replay-{}", self.next_number())
                } else {
                    txn.txn_id.clone()
                };
                let (status, text) = self
                    .put_transaction(&id, body.to_string(), Auth::HsToken)
                    .await?;
                let note = format!(
                    "transaction {id} ({} events): HTTP {status} {}",
                    txn.events.len(),
                    short(&text)
                );
                if status == 200 {
                    Ok(Some(note))
                } else {
                    Err(note)
                }
            }
            Action::HsFailPushes { next } => {
                self.world.hs.fail_push_next(*next);
                Ok(None)
            }
            Action::HsFailCs {
                status,
                next,
                for_ms,
            } => {
                match (next, for_ms) {
                    (Some(n), _) => self.world.hs.fail_cs_next(*n, *status),
                    (None, Some(ms)) => self
                        .world
                        .hs
                        .fail_cs_for(Duration::from_millis(*ms), *status),
                    (None, None) => return Err("give `next` or `for_ms`".into()),
                }
                Ok(None)
            }
            Action::HsDelay { ms } => {
                self.world.hs.set_cs_delay(Duration::from_millis(*ms));
                Ok(None)
            }
            Action::ClearFaults => {
                self.world.gitter.clear_faults();
                self.world.hs.clear_faults();
                Ok(None)
            }
            Action::KillBridge => {
                if !self.world.bridge_running() {
                    return Err("the bridge is not running".into());
                }
                self.world.kill_bridge().await;
                Ok(None)
            }
            Action::StopBridge => {
                if !self.world.bridge_running() {
                    return Err("the bridge is not running".into());
                }
                self.world.stop_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::StartBridge => {
                self.world.start_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::RestartBridge => {
                self.world.kill_bridge().await;
                self.world.start_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::AsPut {
                body,
                txn,
                auth,
                expect_status,
            } => {
                let body = self.expand(body)?;
                let txn = match txn {
                    Some(t) => t.clone(),
                    None => format!("scenario-raw-{}", self.next_number()),
                };
                let (status, text) = self.put_transaction(&txn, body, *auth).await?;
                let note = format!("HTTP {status} {}", short(&text));
                match expect_status {
                    Some(want) if *want != status => {
                        Err(format!("expected HTTP {want}, got {note}"))
                    }
                    _ => Ok(Some(note)),
                }
            }
            Action::Sleep { ms } => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Ok(None)
            }
        }
    }

    /// `PUT /_matrix/app/v1/transactions/<txn>` to the bridge: status and body.
    async fn put_transaction(
        &self,
        txn: &str,
        body: String,
        auth: Auth,
    ) -> Result<(u16, String), String> {
        let txn: String = url::form_urlencoded::byte_serialize(txn.as_bytes()).collect();
        let url = format!(
            "http://{}/_matrix/app/v1/transactions/{txn}",
            self.world.as_addr
        );
        let mut request = self
            .world
            .http
            .put(url)
            .header("content-type", "application/json")
            .body(body);
        match auth {
            Auth::HsToken => request = request.bearer_auth(&self.hs_token),
            Auth::Wrong => request = request.bearer_auth("not-the-hs-token"),
            Auth::None => {}
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    async fn open_dm(&mut self, user: &str, name: Option<&str>) -> Result<String, String> {
        let human = self.ensure_person(user)?;
        let mut body = serde_json::json!({
            "preset": "trusted_private_chat",
            "is_direct": true,
            "invite": [self.bot],
        });
        if let Some(name) = name {
            body["name"] = Value::from(name);
        }
        let room = self
            .world
            .hs
            .create_room(&human.user_id, body)
            .map_err(|e| format!("create the DM: {e:?}"))?;
        self.person_mut(user)?.dm = Some(room.clone());
        let bot = self.bot.clone();
        self.world
            .wait_hs("the bot's first words in the DM", DEFAULT_WITHIN, |hs| {
                hs.messages_seen(&human.user_id, &room)
                    .iter()
                    .any(|m| m.sender == bot)
            })
            .await
            .map_err(|e| format!("{e}; {}", self.rooms_seen(user)))?;
        Ok(room)
    }

    async fn login(
        &mut self,
        user: &str,
        gitter_user: &str,
        open_portals: bool,
    ) -> Result<Option<String>, String> {
        let human = self.ensure_person(user)?;
        let dm = match self.person(user)?.dm.clone() {
            Some(dm) => dm,
            None => self.open_dm(user, None).await?,
        };
        self.world
            .login(&human, &dm, gitter_user)
            .await
            .map_err(|e| format!("{e}; {}", self.timeline_seen(user, &dm)))?;
        self.person_mut(user)?.gitter = Some(gitter_user.to_owned());
        if !open_portals {
            return Ok(None);
        }
        // The portals the bridge should open: one per Gitter room the user is a member of.
        let rooms: Vec<(String, String, String)> = self.world.gitter.with_state(|s| {
            let Some(me) = s.user_by_username(gitter_user).map(|u| u.id.clone()) else {
                return Vec::new();
            };
            s.rooms()
                .filter(|r| r.members.contains(&me))
                .map(|r| {
                    let other = r
                        .one_to_one
                        .then(|| r.members.iter().find(|m| **m != me).and_then(|m| s.user(m)))
                        .flatten();
                    match other {
                        Some(u) => (
                            r.id.clone(),
                            u.display_name.clone(),
                            format!("@{} (one-to-one)", u.username),
                        ),
                        None => (
                            r.id.clone(),
                            r.name.clone(),
                            r.uri.clone().unwrap_or_else(|| r.name.clone()),
                        ),
                    }
                })
                .collect()
        });
        let uid = human.user_id.clone();
        let has_portal = |hs: &crate::fake_hs::FakeHomeserver, name: &str| {
            hs.with_state(|s| s.room_named_for(&uid, name)).is_some()
        };
        self.world
            .wait_hs("a portal for every Gitter room", DEFAULT_WITHIN, |hs| {
                rooms.iter().all(|(_, name, _)| has_portal(hs, name))
            })
            .await
            .map_err(|e| {
                let missing: Vec<&str> = rooms
                    .iter()
                    .filter(|(_, name, _)| !has_portal(&self.world.hs, name))
                    .map(|(_, _, label)| label.as_str())
                    .collect();
                format!(
                    "{e}: none for {}; {}",
                    missing.join(", "),
                    self.rooms_seen(user)
                )
            })?;
        self.world
            .accept_invites(&human)
            .map_err(|e| e.to_string())?;
        self.world
            .wait_gitter("a stream for every room", DEFAULT_WITHIN, |g| {
                rooms.iter().all(|(id, _, _)| g.stream_count(Some(id)) > 0)
            })
            .await
            .map_err(|e| {
                let silent: Vec<&str> = rooms
                    .iter()
                    .filter(|(id, _, _)| self.world.gitter.stream_count(Some(id)) == 0)
                    .map(|(_, _, label)| label.as_str())
                    .collect();
                format!("{e}: no stream for {}", silent.join(", "))
            })?;
        let labels: Vec<&str> = rooms.iter().map(|(_, _, l)| l.as_str()).collect();
        Ok(Some(format!(
            "portals joined and listened to: {}",
            labels.join(", ")
        )))
    }

    /// Replaces the `${...}` names of a raw body.
    fn expand(&self, text: &str) -> Result<String, String> {
        let re = regex::Regex::new(r"\$\{([^}]*)\}").map_err(|e| e.to_string())?;
        let mut out = String::new();
        let mut last = 0;
        for cap in re.captures_iter(text) {
            let whole = cap.get(0).expect("group 0 always matches");
            out.push_str(&text[last..whole.start()]);
            last = whole.end();
            let inner = &cap[1];
            let (key, arg) = inner.split_once(':').unwrap_or((inner, ""));
            let value = match key {
                "bot" => self.bot.clone(),
                "user" => self.user_id(arg),
                "ghost" => self.ghost_id(arg),
                "dm" => self.dm_of(arg)?,
                "room" => {
                    let (user, room) = arg
                        .split_once(':')
                        .ok_or_else(|| format!("${{room:USER:ROOM}}, not ${{{inner}}}"))?;
                    self.matrix_room(user, Some(room))?
                }
                // 43 characters after `$`, like a room version 4+ event id.
                "event_id" => format!("$scenarioraweventid{:024}", self.next_number()),
                "now" => self.world.hs.now_ms().to_string(),
                _ => return Err(format!("unknown name ${{{inner}}} in a raw body")),
            };
            out.push_str(&value);
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    // ---- expectations ---------------------------------------------------

    async fn expect(&self, e: &Expect) -> Result<Option<String>, String> {
        let settle = e.settle.unwrap_or_else(|| e.what.default_settle());
        let deadline = Instant::now() + e.within;
        let mut holding_since: Option<Instant> = None;
        loop {
            match self.check(&e.what) {
                Check::Holds => {
                    let since = *holding_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= settle {
                        return Ok(None);
                    }
                }
                Check::Broken(seen) => return Err(seen),
                Check::NotYet(seen) => {
                    if let Some(since) = holding_since {
                        return Err(format!(
                            "it held, then stopped holding after {} ms: {seen}",
                            since.elapsed().as_millis()
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "not within {:.1}s; seen instead: {seen}",
                            e.within.as_secs_f64()
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn check(&self, what: &Expectation) -> Check {
        match self.try_check(what) {
            Ok(c) => c,
            // A room or a person that does not exist yet may appear later.
            Err(e) => Check::NotYet(e),
        }
    }

    fn try_check(&self, what: &Expectation) -> Result<Check, String> {
        Ok(match what {
            Expectation::Notice {
                user,
                contains,
                room,
                anywhere,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let uid = self.user_id(user);
                let messages = self.messages(user, &room);
                let start = if *anywhere {
                    0
                } else {
                    messages
                        .iter()
                        .rposition(|m| m.sender == uid)
                        .map_or(0, |i| i + 1)
                };
                let notices: Vec<&str> = messages[start..]
                    .iter()
                    .filter(|m| m.sender == self.bot)
                    .filter_map(|m| m.body.as_deref())
                    .collect();
                if notices.iter().any(|n| n.contains(contains.as_str())) {
                    Check::Holds
                } else if notices.is_empty() {
                    Check::NotYet(format!(
                        "no bot notice in scope; {}",
                        self.timeline_seen(user, &room)
                    ))
                } else {
                    Check::NotYet(format!("the bot said:\n  {}", notices.join("\n  ")))
                }
            }
            Expectation::Message {
                user,
                room,
                from,
                body,
                msgtype,
                formatted_contains,
                formatted_lacks,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let sender = self.sender_id(from);
                let candidates: Vec<SeenEvent> = self
                    .messages(user, &room)
                    .into_iter()
                    .filter(|m| m.sender == sender && m.body.as_deref() == Some(body.as_str()))
                    .collect();
                if candidates.is_empty() {
                    return Ok(Check::NotYet(self.timeline_seen(user, &room)));
                }
                let problems: Vec<String> = candidates
                    .iter()
                    .map(|m| {
                        let formatted = m
                            .content
                            .get("formatted_body")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let mut wrong = Vec::new();
                        if let Some(t) = msgtype
                            && m.msgtype.as_deref() != Some(t.as_str())
                        {
                            wrong.push(format!("msgtype is {:?}", m.msgtype));
                        }
                        if let Some(f) = formatted_contains
                            && !formatted.contains(f.as_str())
                        {
                            wrong.push(format!("formatted_body is {formatted:?}"));
                        }
                        if let Some(f) = formatted_lacks
                            && formatted.contains(f.as_str())
                        {
                            wrong.push(format!("formatted_body is {formatted:?}"));
                        }
                        wrong.join(", ")
                    })
                    .collect();
                if problems.iter().any(String::is_empty) {
                    Check::Holds
                } else {
                    Check::Broken(format!(
                        "the message is there, but its {}",
                        problems.join("; ")
                    ))
                }
            }
            Expectation::MessageCount {
                user,
                room,
                from,
                body,
                contains,
                count,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let uid = self.user_id(user);
                let sender = from.as_deref().map(|f| self.sender_id(f));
                let n = self
                    .messages(user, &room)
                    .iter()
                    .filter(|m| match &sender {
                        Some(s) => &m.sender == s,
                        None => m.sender != uid,
                    })
                    .filter(|m| {
                        let b = m.body.as_deref().unwrap_or("");
                        match (body, contains) {
                            (Some(want), _) => b == want,
                            (None, Some(piece)) => b.contains(piece.as_str()),
                            (None, None) => true,
                        }
                    })
                    .count();
                let seen = || format!("{n} of them; {}", self.timeline_seen(user, &room));
                match n.cmp(count) {
                    std::cmp::Ordering::Equal => Check::Holds,
                    std::cmp::Ordering::Less => Check::NotYet(seen()),
                    std::cmp::Ordering::Greater => Check::Broken(seen()),
                }
            }
            Expectation::Sequence {
                user,
                room,
                from,
                bodies,
            } => {
                let room = self.matrix_room(user, Some(room))?;
                let uid = self.user_id(user);
                let sender = from.as_deref().map(|f| self.sender_id(f));
                let got: Vec<String> = self
                    .messages(user, &room)
                    .into_iter()
                    .filter(|m| match &sender {
                        Some(s) => &m.sender == s,
                        None => m.sender != uid,
                    })
                    .filter_map(|m| m.body)
                    .filter(|b| bodies.contains(b))
                    .collect();
                if &got == bodies {
                    Check::Holds
                } else if bodies.starts_with(&got) {
                    Check::NotYet(format!(
                        "only {} of {}; {}",
                        got.len(),
                        bodies.len(),
                        self.timeline_seen(user, &room)
                    ))
                } else {
                    Check::Broken(format!(
                        "got {got:?}, which is not the start of the expected order; {}",
                        self.timeline_seen(user, &room)
                    ))
                }
            }
            Expectation::NoEcho { user, room } => {
                let room = self.matrix_room(user, Some(room))?;
                let me =
                    self.person(user)?.gitter.clone().ok_or_else(|| {
                        format!("{user} is not logged in to Gitter in this scenario")
                    })?;
                let ghost = self.ghost_id(&me);
                let echoes: Vec<String> = self
                    .messages(user, &room)
                    .into_iter()
                    .filter(|m| m.sender == ghost)
                    .filter_map(|m| m.body)
                    .collect();
                if echoes.is_empty() {
                    Check::Holds
                } else {
                    Check::Broken(format!("{ghost} said {echoes:?}"))
                }
            }
            Expectation::GhostName {
                user,
                room,
                ghost,
                name,
            } => {
                let room = self.matrix_room(user, Some(room))?;
                let ghost_id = self.ghost_id(ghost);
                let current = self
                    .world
                    .hs
                    .timeline(&self.user_id(user), &room)
                    .into_iter()
                    .rev()
                    .find(|e| {
                        e.kind == "m.room.member" && e.state_key.as_deref() == Some(&ghost_id)
                    })
                    .map(|e| e.content);
                match current {
                    Some(c) if c["displayname"] == name.as_str() => Check::Holds,
                    Some(c) => Check::NotYet(format!(
                        "{ghost_id} is shown with {} ({})",
                        c["displayname"], c["membership"]
                    )),
                    None => Check::NotYet(format!("{ghost_id} never appeared in the room")),
                }
            }
            Expectation::Invited { user, room } => {
                let name = self.room_name(user, room)?;
                let uid = self.user_id(user);
                let invited = self.world.hs.with_state(|s| {
                    s.rooms_of(&uid).into_iter().any(|(r, m)| {
                        m == "invite" && room_name_of(s, &r).as_deref() == Some(name.as_str())
                    })
                });
                if invited {
                    Check::Holds
                } else {
                    Check::NotYet(self.rooms_seen(user))
                }
            }
            Expectation::Membership {
                user,
                room,
                who,
                is,
            } => {
                let room_id = self.matrix_room(user, Some(room))?;
                let who_id = match who.as_deref() {
                    Some("bot") => self.bot.clone(),
                    Some(w) => match w.strip_prefix("ghost:") {
                        Some(username) => self.ghost_id(username),
                        None => self.user_id(w),
                    },
                    None => self.user_id(user),
                };
                let membership = self.world.hs.with_state(|s| {
                    s.room_info(&room_id)
                        .and_then(|r| r.membership(&who_id).map(str::to_owned))
                });
                let membership = membership.unwrap_or_else(|| "none".to_owned());
                if &membership == is {
                    Check::Holds
                } else {
                    Check::NotYet(format!("{who_id} is `{membership}`"))
                }
            }
            Expectation::GitterMessage {
                room,
                from,
                text,
                repeat,
                status,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let text = text.repeat(repeat.unwrap_or(1));
                let found = self.gitter_matching(&rid, from, &text);
                let right = found
                    .iter()
                    .any(|m| status.is_none_or(|s| (m["status"] == true) == s));
                if right {
                    Check::Holds
                } else {
                    Check::NotYet(self.gitter_seen(&rid))
                }
            }
            Expectation::GitterCount {
                room,
                from,
                text,
                repeat,
                count,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let text = text.repeat(repeat.unwrap_or(1));
                let n = self.gitter_matching(&rid, from, &text).len();
                let seen = || format!("{n} of them; {}", self.gitter_seen(&rid));
                match n.cmp(count) {
                    std::cmp::Ordering::Equal => Check::Holds,
                    std::cmp::Ordering::Less => Check::NotYet(seen()),
                    std::cmp::Ordering::Greater => Check::Broken(seen()),
                }
            }
            Expectation::GitterMember { room, user, member } => {
                let rid = self.gitter_room(Some(user), room)?;
                let members = self.world.gitter.members(&rid);
                if members.contains(user) == *member {
                    Check::Holds
                } else {
                    Check::NotYet(format!("members: {}", members.join(", ")))
                }
            }
            Expectation::BridgeListening { room, user, reader } => {
                let actor = match user {
                    Some(u) => self.person(u)?.gitter.clone(),
                    None => None,
                };
                let rid = self.gitter_room(actor.as_deref(), room)?;
                let readers = self.world.gitter.with_state(|s| s.stream_readers(&rid));
                let right = match reader {
                    Some(r) => readers.contains(r),
                    None => !readers.is_empty(),
                };
                if right {
                    Check::Holds
                } else if readers.is_empty() {
                    Check::NotYet(format!(
                        "no stream open for {room}; {} stream(s) in all",
                        self.world.gitter.stream_count(None)
                    ))
                } else {
                    Check::NotYet(format!("{room} is read as {}", readers.join(", ")))
                }
            }
            Expectation::LoginPage {
                user,
                contains,
                status,
            } => {
                let Some((got, text)) = &self.person(user)?.page else {
                    return Ok(Check::Broken(format!(
                        "{user} opened no login link (add an `open_login_link` step)"
                    )));
                };
                if status.is_none_or(|s| s == *got) && text.contains(contains.as_str()) {
                    Check::Holds
                } else {
                    // The page will not change by waiting.
                    Check::Broken(format!("HTTP {got}: {}", page_text(text)))
                }
            }
            Expectation::BridgeUp => {
                let listening = |addr| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                };
                match (
                    self.world.bridge_running(),
                    listening(self.world.as_addr),
                    listening(self.world.web_addr),
                ) {
                    (true, true, true) => Check::Holds,
                    (running, as_api, web) => Check::NotYet(format!(
                        "running: {running}, AS API listening: {as_api}, pages listening: {web}"
                    )),
                }
            }
            Expectation::HsRetried { at_least } => {
                let attempts = self.world.hs.push_attempts();
                let retried = attempts
                    .iter()
                    .enumerate()
                    .filter(|(i, (id, ok))| {
                        !ok && attempts[i + 1..].iter().any(|(id2, ok2)| *ok2 && id2 == id)
                    })
                    .count();
                if retried >= *at_least {
                    Check::Holds
                } else {
                    let failed = attempts.iter().filter(|(_, ok)| !ok).count();
                    Check::NotYet(format!(
                        "{retried} retried; {} attempts, {failed} failed",
                        attempts.len()
                    ))
                }
            }
            Expectation::GitterFaultsSpent => match self.world.gitter.pending_failures() {
                0 => Check::Holds,
                n => Check::NotYet(format!("{n} injected failure(s) not served yet")),
            },
            Expectation::HsDelivered { body } => {
                let delivered = self.world.hs.delivered_transactions();
                if delivered.iter().any(|t| {
                    t.events
                        .iter()
                        .any(|e| e["content"]["body"] == body.as_str())
                }) {
                    Check::Holds
                } else {
                    let attempts = self.world.hs.push_attempts();
                    Check::NotYet(format!(
                        "{} transaction(s) delivered, {} push attempt(s), {} failed",
                        delivered.len(),
                        attempts.len(),
                        attempts.iter().filter(|(_, ok)| !ok).count()
                    ))
                }
            }
        })
    }
}

/// A room's `m.room.name`.
fn room_name_of(state: &crate::fake_hs::HsState, room: &str) -> Option<String> {
    state
        .room_info(room)?
        .state_content("m.room.name", "")?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// The words of an HTML page, for a transcript.
fn page_text(html: &str) -> String {
    let head = regex::Regex::new(r"(?is)<head.*?</head>").expect("a valid regex");
    let tags = regex::Regex::new(r"<[^>]*>").expect("a valid regex");
    let text = head.replace_all(html, " ");
    let text = tags.replace_all(&text, " ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_actions_or_expectations_with_bounds() {
        let s = Scenario::parse(
            r#"
name = "x"
description = "y"

[[step]]
do = "say"
user = "alice"
text = "help"

[[step]]
expect = "notice"
user = "alice"
contains = "Commands"
within_ms = 1500

[[step]]
do = "kill_bridge"
"#,
        )
        .unwrap();
        assert_eq!(s.steps.len(), 3);
        assert!(matches!(
            &s.steps[0],
            Step::Do(Action::Say { room: None, .. })
        ));
        match &s.steps[1] {
            Step::Expect(e) => assert_eq!(e.within, Duration::from_millis(1500)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s.steps[2], Step::Do(Action::KillBridge)));
    }

    #[test]
    fn typos_and_ambiguities_are_refused_with_the_culprit_named() {
        let base = "name = \"x\"\ndescription = \"y\"\n[[step]]\n";
        let e = Scenario::parse(&format!("{base}do = \"say\"\nuser = \"a\"\ntxt = \"hi\"\n"))
            .unwrap_err();
        assert!(e.contains("txt"), "{e}");
        let e = Scenario::parse(&format!("{base}do = \"dance\"\n")).unwrap_err();
        assert!(e.contains("dance"), "{e}");
        let e = Scenario::parse(&format!("{base}user = \"a\"\n")).unwrap_err();
        assert!(e.contains("do = "), "{e}");
        let e = Scenario::parse(&format!(
            "{base}do = \"gitter_fail\"\nstatus = 429\nnext = 1\nfor_ms = 5\n"
        ))
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = Scenario::parse(&format!(
            "{base}expect = \"bridge_up\"\nwithin_ms = \"soon\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("within_ms"), "{e}");
        let e = Scenario::parse("name = \"x\"\ndescription = \"y\"\n").unwrap_err();
        assert!(e.contains("no `[[step]]`"), "{e}");
    }

    #[test]
    fn pages_read_as_their_words() {
        let html = "<!DOCTYPE html><html><head><title>T</title><style>body{x:y}</style></head>\
                    <body><h1>Login link expired</h1><p>Send `login`.</p></body></html>";
        assert_eq!(page_text(html), "Login link expired Send `login`.");
    }

    #[test]
    fn short_texts_are_quoted_and_cut() {
        assert_eq!(short("hi"), "\"hi\"");
        assert_eq!(short("a\nb"), "\"a b\"");
        let long = "x".repeat(100);
        assert_eq!(short(&long).chars().count(), 62);
    }
}
