//! [`Step`]: the context of one call of `Bridge::handle`: its time and what it produces.
//!
//! Every change a step makes to the persistent state and every effect it emits is recorded
//! here, through `Bridge::change` and `Bridge::ask` (which also apply the change to the state
//! and let the sub-machines that index it follow), and nowhere else; `handle` takes the
//! outputs when the step is done.

use crate::effect::Effect;
use crate::error::CoreError;
use crate::ids::{EffectId, RequestId, Timestamp};
use crate::output::{Outputs, WebReply};
use crate::state::Change;

/// At most how many changes and effects a step makes room for ahead.
const STEP_ROOM: usize = 1024;

/// One step's time and outputs.
#[derive(Debug)]
pub(crate) struct Step {
    /// The step's time (never earlier than the previous step's).
    pub(crate) now: Timestamp,
    out: Outputs,
}

impl Default for Step {
    fn default() -> Step {
        Step {
            now: Timestamp(0),
            out: Outputs::default(),
        }
    }
}

impl Step {
    /// Starts a step at `now`, or at the previous step's time if the driver's clock went
    /// back.
    pub(crate) fn start(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    /// Records a change of the persistent state (already applied by the caller).
    pub(crate) fn record(&mut self, change: Change) {
        self.out.changes.changes.push(change);
    }

    /// Adds an effect to execute after the commit.
    pub(crate) fn execute(&mut self, effect: Effect) {
        self.out.effects.push(effect);
    }

    /// Asks the driver to keep an effect's lane busy: the effect will be tried again.
    pub(crate) fn happened(&mut self, h: crate::output::Happening) {
        self.out.happenings.push(h);
    }

    pub(crate) fn hold(&mut self, id: EffectId) {
        self.out.holds.push(id);
    }

    /// Reports a problem worth a log line.
    pub(crate) fn warn(&mut self, e: CoreError) {
        self.out.warnings.push(e);
    }

    /// Answers a pending web request.
    pub(crate) fn reply(&mut self, request: RequestId, reply: WebReply) {
        self.out.replies.push((request, reply));
    }

    /// Ends the step: its outputs, with the timer the core needs next.
    pub(crate) fn finish(&mut self, next_timer: Option<Timestamp>) -> Outputs {
        self.out.next_timer = next_timer;
        // The next step starts with room for as many changes and effects as this one had
        // (a fan-out to many portals has hundreds; growing to them by doubling moved every
        // change several times), bounded so one big step does not keep memory.
        let changes = self.out.changes.changes.len().min(STEP_ROOM);
        let effects = self.out.effects.len().min(STEP_ROOM);
        let mut next = Outputs::default();
        next.changes.changes.reserve(changes);
        next.effects.reserve(effects);
        std::mem::replace(&mut self.out, next)
    }
}
