//! The core's configuration: the policy knobs of the bridge, already validated by the binary.

use serde::{Deserialize, Serialize};

use crate::ids::OwnedUserId;

/// Configuration of the bridge core.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The homeserver's server name (the part after `:` in user ids).
    pub server_name: String,
    /// The bot's user id (`@<bot_localpart>:<server_name>`).
    pub bot: OwnedUserId,
    /// Ghost localpart template; `{username}` is replaced by the Gitter username.
    pub ghost_template: String,
    /// Ghost display-name template; `{displayName}` and `{username}` are replaced.
    pub ghost_displayname_template: String,
    /// Public base URL of the login pages (no trailing slash needed).
    pub public_url: String,
    /// Gitter's OAuth authorize URL.
    pub oauth_authorize_url: String,
    /// Gitter's web address, which portals name in their `m.bridge` state.
    pub gitter_web_url: String,
    /// The OAuth client id.
    pub oauth_client_id: String,
    /// Who may use the bridge.
    pub permissions: Permissions,
    /// Open a portal for every Gitter room the user is in, right after login.
    pub open_portals_on_login: bool,
    /// Watch each logged-in user's own realtime channels (their room list and their token's
    /// revocation). Only a realtime transport (Faye) has them: without one, the watches
    /// would be effects at every start that do nothing.
    pub watch_users: bool,
    /// Ghosts of every member join at portal creation when the room has fewer members than
    /// this (0 disables eager joins).
    pub eager_join_threshold: u64,
    /// Lifetime of login links and OAuth states, in milliseconds.
    pub login_link_lifetime_ms: u64,
    /// Longest text Gitter accepts (4096), in UTF-16 code units as its server counts.
    pub max_message_len: usize,
    /// How many AS transaction ids and event ids are remembered for deduplication.
    pub dedupe_capacity: usize,
    /// How many recent Gitter message ids per room are remembered (in memory) for
    /// deduplication of repeated deliveries.
    pub recent_capacity: usize,
    /// Message mappings the bridge keeps in memory beyond those it must (the newest first;
    /// older ones stay in the store). Memory does not grow with history.
    pub hot_mappings: usize,
    /// Of those, at most this many per portal: a busy portal does not push a quiet one's
    /// recent messages out of memory (a reply or an edit to them needs no store lookup).
    pub hot_mappings_per_portal: usize,
    /// Mappings per portal the store loads at start, besides those after the room's
    /// cursor (see [`crate::Snapshot::hot_set`]).
    pub hot_mappings_per_portal_at_start: usize,
    /// Mappings older than this are deleted from the store, in milliseconds (0 keeps them
    /// for ever). Past it a Gitter message can no longer be matched to its Matrix event.
    pub mapping_retention_ms: u64,

    /// Page size of catch-up reads (Gitter allows at most 100).
    pub catch_up_page: u32,
    /// How long to wait before retrying a failed catch-up, in milliseconds.
    pub catch_up_retry_ms: u64,
    /// First wait before a durable effect that failed for a reason that can pass is tried
    /// again, in milliseconds; it doubles with every failure, up to `retry_max_ms`.
    pub retry_min_ms: u64,
    /// Longest wait between two tries of a durable effect, in milliseconds.
    pub retry_max_ms: u64,
    /// How long a Gitter send may keep failing before the bridge gives up on it, in
    /// milliseconds. While a send is in flight, the room's later messages wait (so its echo
    /// is recognised); a send Gitter refuses with a 5xx for ever would hold the room for
    /// ever. Past this age, once a read shows it is not on Gitter, it fails for good and the
    /// author is told.
    pub send_give_up_ms: u64,
    /// Stream messages a room keeps in memory while a catch-up runs or a send of their
    /// author is in flight. Past it they are let go and read again from the cursor later,
    /// so memory stays bounded and nothing is lost.
    pub max_held_per_room: usize,
    /// The key that signs links to Matrix files sent to Gitter ([`crate::media`]); `None`:
    /// files are not bridged (the sender is told).
    pub media_key: Option<crate::MediaKey>,
    /// Largest Matrix file linked from Gitter, in bytes (the media page refuses larger ones
    /// too, whatever the sender's client said).
    pub media_max_bytes: u64,
    /// How many of its Gitter room's last messages a new portal starts with (0: none; at
    /// most 100, Gitter's page).
    pub backfill_messages: u32,
}

impl Config {
    /// A configuration with the documented defaults for a homeserver `server_name`.
    pub fn with_defaults(server_name: &str) -> Config {
        let bot = format!("@gitterbot:{server_name}");
        Config {
            server_name: server_name.to_owned(),
            bot: bot
                .try_into()
                .expect("a valid server name gives a valid bot id"),
            ghost_template: "gitter_{username}".to_owned(),
            ghost_displayname_template: "{displayName} (Gitter)".to_owned(),
            public_url: "http://127.0.0.1:29320".to_owned(),
            oauth_authorize_url: "https://gitter.im/login/oauth/authorize".to_owned(),
            gitter_web_url: "https://gitter.im".to_owned(),
            oauth_client_id: "client".to_owned(),
            permissions: Permissions::default(),
            open_portals_on_login: true,
            watch_users: true,
            eager_join_threshold: 50,
            login_link_lifetime_ms: 15 * 60 * 1000,
            max_message_len: 4096,
            dedupe_capacity: 10_000,
            recent_capacity: 256,
            hot_mappings: 100_000,
            hot_mappings_per_portal: 1_000,
            hot_mappings_per_portal_at_start: 1,
            mapping_retention_ms: 365 * 24 * 60 * 60 * 1000,
            catch_up_page: 100,
            catch_up_retry_ms: 30_000,
            retry_min_ms: 1_000,
            retry_max_ms: 60 * 1000,
            max_held_per_room: 1_000,
            send_give_up_ms: 60 * 60 * 1000,
            media_key: None,
            media_max_bytes: 50 * 1024 * 1024,
            backfill_messages: 50,
        }
    }
}

/// Who may use the bridge. Empty lists mean nobody; the binary's default config allows the
/// homeserver's own domain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Permissions {
    /// Allow every user.
    pub allow_all: bool,
    /// Allowed server names (`example.org` allows `@*:example.org`).
    pub domains: Vec<String>,
    /// Allowed user ids.
    pub users: Vec<OwnedUserId>,
}

impl Permissions {
    /// Whether `user` may use the bridge.
    pub fn allows(&self, user: &OwnedUserId) -> bool {
        self.allow_all
            || self.users.iter().any(|u| u == user)
            || self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(user.server_name().as_str()))
    }
}
