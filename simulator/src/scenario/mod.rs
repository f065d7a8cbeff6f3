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
//! `edit`, `redact`,
//! `leave`, `login`, `open_login_link`, `accept_invites`, `gitter_post`, `gitter_join`,
//! `gitter_leave`, `gitter_stream_line`, `drop_streams`, `gitter_fail`, `gitter_delay`,
//! `revoke_token`, `hs_replay_transaction`, `hs_fail_pushes`, `hs_fail_cs`, `hs_delay`,
//! `clear_faults`, `kill_bridge`, `stop_bridge`, `start_bridge`, `restart_bridge`, `as_put`.
//! See [`Action`]. There is no fixed sleep: a step waits for a condition, bounded
//! (`open_login_link` with `until_status` waits for a link to expire).
//!
//! Expectations (`expect = ...`): `notice`, `message`, `message_count`, `sequence`, `no_echo`,
//! `ghost_name`, `invited`, `membership`, `gitter_message`, `gitter_count`, `gitter_absent`,
//! `gitter_member`,
//! `bridge_listening`, `login_page`, `bridge_up`, `hs_retried`, `hs_delivered`,
//! `hs_delayed`, `gitter_faults_spent`. See [`Expectation`]. Each takes `within_ms` (how long to wait for
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

mod act;
mod check;
mod describe;
mod format;
mod report;
mod run;
mod runner;
#[cfg(test)]
mod tests;

pub use format::*;
pub use report::*;
pub use run::*;

use check::{page_text, room_name_of};
use describe::short;

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
