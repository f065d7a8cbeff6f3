//! # gitter-bridge-store: persistence of the core's change sets and outbox
//!
//! The core ([`gitter_bridge_core`]) keeps its whole persistent state as a [`Snapshot`] and
//! reports every step's modifications as a [`ChangeSet`]. This crate makes those durable.
//!
//! ## The contract
//!
//! * [`Store::apply`]`(sets)` persists one or many steps' change sets, outbox additions and
//!   removals included, in **one** transaction (group commit: the driver may batch the steps
//!   that arrived together). For [`RedbStore`] that is one redb write transaction with
//!   `Durability::Immediate`: when `apply` returns `Ok`, the changes are on disk (fsync'd) and
//!   survive a crash or power loss; if it returns `Err`, or the process dies during the call,
//!   *none* of the sets is visible after reopening. There is never a partial step.
//! * [`Store::load_hot`]`(newest)` returns what a bridge restores from:
//!   [`Store::load`]'s snapshot with only the hot set of its message mappings
//!   ([`Snapshot::hot_set`]); the rest stay on disk.
//! * [`Store::load`]`()` returns exactly the [`Snapshot`] obtained by starting from
//!   `Snapshot::default()` and applying every committed change, in commit order, with
//!   [`Snapshot::apply`]'s semantics, including the order of the `transactions` and `events`
//!   deques (stored under increasing sequence numbers).
//! * The store does not decide any bound itself: the core bounds the processed transaction
//!   and event ids by emitting `ForgetTransaction` / `ForgetEvent` changes, completes outbox
//!   rows with `DeleteOutbox`, and asks for old message mappings to be deleted
//!   ([`Store::prune_mappings`], in batches, from its retention rule). The store holds every
//!   mapping not pruned, while a start reads only their hot set ([`Store::load_hot`]).
//! * [`RedbStore::open`] creates a missing file, migrates an older schema to
//!   [`SCHEMA_VERSION`] in one write transaction, and refuses (leaving the file untouched) a
//!   directory, a file that is not a redb database or is damaged, a foreign redb database,
//!   and a schema newer than this binary knows. Every [`StoreError`] names the path.
//! * [`MemoryStore`] is the same contract without durability, for tests and the simulator.
//!
//! The store is synchronous (redb is); an async driver calls it from `spawn_blocking`.
//!
//! ## Secrets
//!
//! The file holds Gitter OAuth tokens: in `users` (each `Login::token`) and in `outbox` rows
//! of Gitter effects (each carries the token it will use; a code exchange carries the OAuth
//! code). [`RedbStore::open`] keeps them **in clear**. [`RedbStore::open_with_key`] with a
//! [`TokenKey`] seals every value of those two tables (XChaCha20-Poly1305, a random nonce per
//! write; see `seal.rs`), sealing a file written in clear the first time it is opened with a
//! key, and refuses a sealed file opened without its key ([`StoreError::KeyMissing`]) or with
//! another one ([`StoreError::WrongKey`]). Either way a new file is created with mode 0600;
//! protect it like a password file (encrypted backups, and keep the key elsewhere).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod codec;
mod compact;
mod error;
mod legacy;
mod memory;
mod migrate;
mod redb_store;
mod schema;
mod seal;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use migrate::SCHEMA_VERSION;
pub use redb_store::{DiskUsage, RedbStore};
pub use seal::{KeyFormatError, TokenKey};

use gitter_bridge_core::{
    ChangeSet, GitterMessageId, GitterRoomId, MessageRecord, OwnedEventId, OwnedUserId, Snapshot,
    Timestamp,
};

/// Where the core's state is kept. See the crate documentation for the contract.
pub trait Store {
    /// Persists `sets`, in order, in one atomic and (for durable stores) durable transaction.
    fn apply(&mut self, sets: &[ChangeSet]) -> Result<(), StoreError>;

    /// The state every committed change set gives, applied in order with
    /// [`Snapshot::apply`]'s semantics: every mapping not pruned (for tests and tools).
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// What a bridge restores from: [`Store::load`] restricted to the hot set of the message
    /// mappings, exactly [`Snapshot::hot_set`]`(newest)` of it, read without visiting the
    /// others (the time and memory of a start do not grow with history).
    fn load_hot(&self, newest: usize) -> Result<Snapshot, StoreError>;

    /// Deletes the message mappings whose `at` is before `older_than`, visiting at most
    /// `batch` rows from `resume` (a point an earlier call returned; `None` starts at the
    /// beginning), in one write transaction. Returns how many it deleted and where the next
    /// call goes on (`None` once the end was reached). What the core's
    /// `StoreCall::PruneMappings` asks for.
    fn prune_mappings(
        &mut self,
        older_than: Timestamp,
        resume: Option<Vec<u8>>,
        batch: u32,
    ) -> Result<Pruned, StoreError>;

    /// The mapping of a Gitter message in the portal of (owner, room), if the store holds
    /// it (what `StoreCall::MappingByGitterId` asks for: the core holds only its hot set).
    fn mapping_by_gitter_id(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        gitter_id: &GitterMessageId,
    ) -> Result<Option<MessageRecord>, StoreError>;

    /// The mapping of a Matrix event in the portal of (owner, room), if the store holds it
    /// (`StoreCall::MappingByEvent`). The redb store reads the portal's rows in turn, newest
    /// first, at most 100,000 of them: an index by event would cost every mapping about 45
    /// more bytes on disk, for lookups that only edits and redactions of messages older than
    /// the hot set need.
    fn mapping_by_event(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        event_id: &OwnedEventId,
    ) -> Result<Option<MessageRecord>, StoreError>;
}

/// What one [`Store::prune_mappings`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// Mappings deleted.
    pub removed: u64,
    /// Where the next batch goes on; `None` when the end was reached.
    pub resume: Option<Vec<u8>>,
}
