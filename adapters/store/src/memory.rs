//! [`MemoryStore`]: the reference store, a [`Snapshot`] in memory.
//!
//! It is [`Snapshot::apply_set`] behind the [`Store`] trait: the conformance suite checks the
//! redb store against it, and tests and the simulator can run the driver without a file.
//! Nothing survives the process.

use gitter_bridge_core::{
    ChangeSet, GitterMessageId, GitterRoomId, MessageRecord, OwnedEventId, OwnedUserId, Snapshot,
    Timestamp,
};

use crate::{Pruned, Store, StoreError};

/// A store that keeps the state in memory only.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Snapshot,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that starts from `state`.
    pub fn from_snapshot(state: Snapshot) -> Self {
        Self { state }
    }

    /// The current state, without cloning.
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }
}

impl Store for MemoryStore {
    fn apply(&mut self, sets: &[ChangeSet]) -> Result<(), StoreError> {
        for set in sets {
            self.state.apply_set(set);
        }
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.state.clone())
    }

    fn load_hot(&self, newest: usize) -> Result<Snapshot, StoreError> {
        Ok(self.state.hot_set(newest))
    }

    /// Visits everything at once (memory has no writer to hold).
    fn prune_mappings(
        &mut self,
        older_than: Timestamp,
        _resume: Option<Vec<u8>>,
        _batch: u32,
    ) -> Result<Pruned, StoreError> {
        let before = self.state.messages.len();
        self.state.messages.retain(|m| m.at >= older_than);
        Ok(Pruned {
            removed: (before - self.state.messages.len()) as u64,
            resume: None,
        })
    }

    fn mapping_by_gitter_id(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        gitter_id: &GitterMessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        Ok(self
            .state
            .messages
            .get(owner, gitter_id)
            .filter(|m| &m.gitter_room == room)
            .cloned())
    }

    fn mapping_by_event(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        event_id: &OwnedEventId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        Ok(self
            .state
            .messages
            .of_owner(owner)
            .find(|m| &m.gitter_room == room && m.event_id.as_ref() == Some(event_id))
            .cloned())
    }
}
