//! The tables and their key/value types.
//!
//! Keys are the natural string ids so that an upsert is a plain `insert`. Values are postcard
//! encoded records (see `codec.rs`) that repeat their key fields, so a row decodes to the
//! record on its own, except in the two tables that grow with traffic: `mappings` (one row
//! per bridged message and portal) is keyed by a portal's number and the Gitter id and holds
//! only the rest, and `cursors` holds one id per room, so that a relayed message writes a
//! few small rows and the file stays small per message (issue 14). The two bounded logs (`transactions`, `events`) are keyed by a
//! monotonically increasing sequence number so their order (oldest first, which
//! [`gitter_bridge_core::Snapshot`] keeps in a `VecDeque`) survives a reload.

use redb::TableDefinition;

/// Matrix user id -> `UserRecord`.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Gitter user id -> `GhostRecord`.
pub(crate) const GHOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ghosts");
/// (owner Matrix user id, Gitter room id) -> `PortalRecord`.
pub(crate) const PORTALS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("portals");
/// (owner Matrix user id, Gitter room id) -> the portal's number, which keys its mappings
/// (schema version 3; numbers are never reused).
pub(crate) const PORTAL_NUMBERS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("portal_numbers");
/// Gitter room id -> `GitterRoomRecord`.
pub(crate) const GITTER_ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("gitter_rooms");
/// Gitter room id -> the room's cursor, a Gitter message id (schema version 3; before, the
/// cursor lived in the room's record).
pub(crate) const CURSORS: TableDefinition<&str, &str> = TableDefinition::new("cursors");
/// (owner Matrix user id, Gitter message id) -> `MessageRecord` of schema versions 1 and 2
/// (`legacy::MessageRecordV2`); version 3 moves them to [`MAPPINGS`] and deletes it.
pub(crate) const MESSAGES_V2: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("messages");
/// (portal number, Gitter message id in its compact form, `compact.rs`) -> `StoredMapping`
/// (the rest of a `MessageRecord`). A portal's rows are contiguous and in Gitter's order
/// (ObjectIds sort as they were made), so the newest of a portal are a short reverse range.
pub(crate) const MAPPINGS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("mappings");
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
/// Avatar URL on the web -> the `mxc://` URI of its upload (schema version 5).
pub(crate) const AVATARS: TableDefinition<&str, &str> = TableDefinition::new("avatars");
/// Gitter user id -> the avatar URL its ghost's avatar was set from (schema version 5).
pub(crate) const GHOST_AVATARS: TableDefinition<&str, &str> = TableDefinition::new("ghost_avatars");
/// Portal's Matrix room id -> the avatar URL its avatar was set from (schema version 5).
pub(crate) const PORTAL_AVATARS: TableDefinition<&str, &str> =
    TableDefinition::new("portal_avatars");
/// Name -> number: [`META_SCHEMA_VERSION`], [`META_NEXT_EFFECT_ID`], [`META_TOKEN_KEY_CHECK`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The next portal number to give (schema version 3).
pub(crate) const META_NEXT_PORTAL_NO: &str = "next_portal_no";
/// The schema version of the file (see `migrate.rs`).
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `Snapshot::next_effect_id`.
pub(crate) const META_NEXT_EFFECT_ID: &str = "next_effect_id";
/// Present when the `users` and `outbox` values are sealed (see `seal.rs`): the check value
/// of the key they are sealed with.
pub(crate) const META_TOKEN_KEY_CHECK: &str = "token_key_check";
