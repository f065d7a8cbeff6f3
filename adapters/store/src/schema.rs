//! The tables (ARCHITECTURE.md §4) and their key/value types.
//!
//! Keys are the natural string ids so that an upsert is a plain `insert`. Values are postcard
//! encoded records (see `codec.rs`) that repeat their key fields, so a row decodes to the
//! record on its own. The two bounded logs (`transactions`, `events`) are keyed by a
//! monotonically increasing sequence number so their order (oldest first, which
//! [`gitter_bridge_core::Snapshot`] keeps in a `VecDeque`) survives a reload.

use redb::TableDefinition;

/// Matrix user id -> `UserRecord`.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Gitter user id -> `GhostRecord`.
pub(crate) const GHOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ghosts");
/// (owner Matrix user id, Gitter room id) -> `PortalRecord`.
pub(crate) const PORTALS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("portals");
/// Gitter room id -> `GitterRoomRecord`.
pub(crate) const GITTER_ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("gitter_rooms");
/// (owner Matrix user id, Gitter message id) -> `MessageRecord`.
pub(crate) const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
/// Matrix room id -> (): a set.
pub(crate) const REFUSED_ROOMS: TableDefinition<&str, ()> = TableDefinition::new("refused_rooms");
/// Login-link token -> `Ticket`.
pub(crate) const LOGIN_LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("login_links");
/// OAuth state -> `Ticket`.
pub(crate) const OAUTH_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_states");
/// Sequence number -> processed AS transaction id, oldest first.
pub(crate) const TRANSACTIONS: TableDefinition<u64, &str> = TableDefinition::new("transactions");
/// Sequence number -> processed Matrix event id, oldest first.
pub(crate) const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
/// (owner Matrix user id, Gitter room id, sequence number) -> `GitterMessage` queued for a
/// portal whose room is being created (schema version 2).
pub(crate) const QUEUED: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("queued");
/// EffectId -> `Effect` not yet completed.
pub(crate) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Name -> number: [`META_SCHEMA_VERSION`], [`META_NEXT_EFFECT_ID`], [`META_TOKEN_KEY_CHECK`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The schema version of the file (see `migrate.rs`).
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `Snapshot::next_effect_id`.
pub(crate) const META_NEXT_EFFECT_ID: &str = "next_effect_id";
/// Present when the `users` and `outbox` values are sealed (see `seal.rs`): the check value
/// of the key they are sealed with.
pub(crate) const META_TOKEN_KEY_CHECK: &str = "token_key_check";
