//! The bridge.
use crate::{Config, Input, Outputs, Snapshot, Timestamp};
/// The bridge.
pub struct Bridge {
    config: Config,
    state: Snapshot,
}
impl Bridge {
    /// New.
    pub fn new(config: Config, _seed: u64) -> Self {
        Self {
            config,
            state: Snapshot::default(),
        }
    }
    /// Restore.
    pub fn restore(config: Config, _seed: u64, snapshot: Snapshot) -> Self {
        Self {
            config,
            state: snapshot,
        }
    }
    /// Handle.
    pub fn handle(&mut self, _now: Timestamp, _input: Input) -> Outputs {
        let _ = (&self.config, &self.state);
        Outputs::default()
    }
    /// The persistent state.
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }
}
