//! The scenario file format: a scenario, its world, its steps (actions and expectations),
//! and how a file or a directory of them is read.

use super::*;

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
    /// The bridge reads Gitter over the realtime API (Faye, `gitter.faye_url`) instead of
    /// one HTTP stream per room.
    pub faye: Option<bool>,
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

pub(super) fn take_ms(table: &mut toml::Table, key: &str) -> Result<Option<Duration>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Integer(ms)) if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        Some(other) => Err(format!(
            "`{key}` must be a number of milliseconds, not {other}"
        )),
    }
}

pub(super) fn yes() -> bool {
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
    /// The user edits their earlier message `of` (its original text) to `text` (an
    /// `m.replace` with `m.new_content`, as clients send it).
    Edit {
        /// Localpart.
        user: String,
        /// The original text of the message edited.
        of: String,
        /// The new text.
        text: String,
        /// Where (default: their DM with the bot).
        room: Option<String>,
    },
    /// The user redacts their earlier message `of` (its original text).
    Redact {
        /// Localpart.
        user: String,
        /// The original text of the message redacted.
        of: String,
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
        /// Open it again (a GET spends nothing) until the page has this HTTP status, for
        /// at most `within_ms` (20 s by default): waits for an expiry without a sleep.
        until_status: Option<u16>,
        /// The bound of `until_status`.
        within_ms: Option<u64>,
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
    /// A Gitter user edits their message (found by its text) in another Gitter client.
    GitterEdit {
        /// Username.
        from: String,
        /// Room uri.
        room: String,
        /// The message's text now.
        text: String,
        /// Its new text.
        new_text: String,
    },
    /// A Gitter user deletes their message (found by its text).
    GitterDelete {
        /// Username.
        from: String,
        /// Room uri.
        room: String,
        /// The message's text.
        text: String,
    },
    /// A room's admin changes its topic on Gitter.
    GitterTopic {
        /// Room uri.
        room: String,
        /// The new topic.
        topic: String,
    },
    /// The realtime server's faults: it forgets every client (a restart), or it loses the
    /// next delivery (whose sequence number the one after it then skips).
    FayeFault {
        /// Forget every client.
        #[serde(default)]
        forget_clients: bool,
        /// Lose the next delivery.
        #[serde(default)]
        skip_sequence: bool,
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
    /// The user's own messages (sent from Matrix) do not come back in the portal as their
    /// ghost.
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
    /// A message the user saw is gone from their room (redacted): waits until it is.
    Redacted {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
        /// Gitter username (their ghost) or `bot`.
        from: String,
        /// The body it had.
        body: String,
    },
    /// The room's topic, as the user's client shows it.
    Topic {
        /// Localpart.
        user: String,
        /// The room.
        room: String,
        /// The topic.
        topic: String,
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
    /// No message of `from` in a Gitter room has this text (any more: a deletion).
    GitterAbsent {
        /// Room uri or `@other`.
        room: String,
        /// Username.
        from: String,
        /// The exact text.
        text: String,
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
    /// At least `at_least` Client-Server requests are held by the injected delay right now
    /// (the bridge's request is under way: a kill now cuts it off).
    HsDelayed {
        /// How many.
        at_least: usize,
    },
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
