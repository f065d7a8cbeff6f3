//! Retention of message mappings: the store keeps a mapping for every message bridged into
//! every portal, which grows with history, so mappings older than
//! [`crate::Config::mapping_retention_ms`] are deleted (issue 14: "memory and disk must not
//! grow with history without a bound or a retention rule").
//!
//! Only the store holds them all, so the core asks it in batches ([`crate::StoreCall::PruneMappings`],
//! at most [`BATCH`] rows each, on [`Lane::Store`]) and carries the store's opaque resume
//! point from one batch to the next; a pass starts some minutes after a start and then
//! every hour. A batch that fails is not retried on its own: the next pass does it.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, Lane, PruneThen, StoreCall, Then};
use crate::ids::Timestamp;
use crate::input::EffectOutput;

/// Rows one batch visits at most (a bound on how long it holds the store's writer).
pub(crate) const BATCH: u32 = 10_000;
/// The first pass after a start: not at once, while the start's catch-ups run.
const FIRST_AFTER_START_MS: u64 = 10 * 60 * 1000;
/// Between passes.
const EVERY_MS: u64 = 60 * 60 * 1000;

/// The state of pruning (not persisted: a start schedules a new pass).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pruning {
    /// When the next pass starts; `None` while one runs or when retention is off.
    next_at: Option<Timestamp>,
}

impl Pruning {
    /// The timer this sub-machine needs.
    pub(crate) fn deadline(&self) -> Option<Timestamp> {
        self.next_at
    }
}

impl Bridge {
    /// Schedules the first pass of this run.
    pub(crate) fn prune_on_startup(&mut self) {
        self.pruning.next_at = (self.config.mapping_retention_ms > 0)
            .then(|| self.step.now.plus_ms(FIRST_AFTER_START_MS));
    }

    /// Starts a pass when its time has come: the hot set lets go of what the store is about
    /// to delete, and the first batch goes out.
    pub(crate) fn prune_if_due(&mut self) {
        if self.pruning.next_at.is_none_or(|t| t > self.step.now) {
            return;
        }
        self.pruning.next_at = None;
        let older_than = Timestamp(
            self.step
                .now
                .0
                .saturating_sub(self.config.mapping_retention_ms),
        );
        self.state.messages.retain(|m| m.at >= older_than);
        self.prune_batch(older_than, None);
    }

    fn prune_batch(&mut self, older_than: Timestamp, resume: Option<Vec<u8>>) {
        self.ask(
            Lane::Store,
            Action::Store(StoreCall::PruneMappings {
                older_than,
                resume,
                batch: BATCH,
            }),
            Then::Prune(PruneThen::Pruned { older_than }),
        );
    }

    pub(crate) fn on_prune_answer(&mut self, then: PruneThen, answer: Answer) {
        let PruneThen::Pruned { older_than } = then;
        match answer.result {
            Ok(EffectOutput::Pruned { resume, .. }) => self.on_pruned(older_than, resume),
            Ok(got) => {
                self.unexpected(answer.id, answer.name, &got);
                self.on_prune_failed();
            }
            Err(_) => self.on_prune_failed(),
        }
    }

    /// A batch is done: the next goes on where it stopped, or the pass is over.
    fn on_pruned(&mut self, older_than: Timestamp, resume: Option<Vec<u8>>) {
        match resume {
            Some(resume) => self.prune_batch(older_than, Some(resume)),
            None => self.pruning.next_at = Some(self.step.now.plus_ms(EVERY_MS)),
        }
    }

    /// A batch failed (the warning is reported): the next pass tries again.
    fn on_prune_failed(&mut self) {
        self.pruning.next_at = Some(self.step.now.plus_ms(EVERY_MS));
    }
}
