//! [`Retries`]: the durable retry schedule of the effects that failed for a reason that can
//! pass (an outage, a rate limit). Each stays in the outbox and is tried again on this
//! sub-machine's timer, as often as it takes, with capped exponential backoff and jitter
//! (so many effects failing together do not all come back at once). Not persisted: every
//! outbox row is tried at startup, which starts its backoff over.

use std::collections::BTreeMap;

use rand_core::RngCore;

use crate::ids::{EffectId, Timestamp};
use crate::timers::Deadlines;

/// How one effect has failed so far.
#[derive(Clone, Debug)]
struct RetryState {
    /// Failed tries since the last start.
    attempts: u32,
    /// When the first of them failed.
    since: Timestamp,
}

/// The effects waiting to be tried again, and when.
#[derive(Clone, Debug, Default)]
pub(crate) struct Retries {
    states: BTreeMap<EffectId, RetryState>,
    /// When each is tried again (absent while its try runs).
    timers: Deadlines<EffectId>,
}

impl Retries {
    /// The timer this sub-machine needs.
    pub(crate) fn deadline(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// The effects whose next try has come, earliest first.
    pub(crate) fn due(&mut self, now: Timestamp) -> Vec<EffectId> {
        self.timers.take_due(now)
    }

    /// Records a failed try of `id` at `now` and schedules the next one: the delay doubles
    /// from `min_ms` up to `max_ms`, half fixed and half drawn from `rng` (never sooner than
    /// half the ceiling). Returns the number of failed tries and the delay.
    pub(crate) fn failed(
        &mut self,
        id: EffectId,
        now: Timestamp,
        min_ms: u64,
        max_ms: u64,
        rng: &mut impl RngCore,
    ) -> (u32, u64) {
        let state = self.states.entry(id).or_insert(RetryState {
            attempts: 0,
            since: now,
        });
        state.attempts += 1;
        let attempts = state.attempts;
        let ceiling = min_ms
            .max(1)
            .saturating_mul(1u64 << (attempts - 1).min(30))
            .min(max_ms.max(1));
        let delay = ceiling / 2 + rng.next_u64() % (ceiling - ceiling / 2 + 1);
        self.timers.set(id, now.plus_ms(delay));
        (attempts, delay)
    }

    /// `id` is tried again at once (not on the timer); it counts as retrying from `now` if
    /// it was not already.
    pub(crate) fn again_now(&mut self, id: EffectId, now: Timestamp) {
        self.states.entry(id).or_insert(RetryState {
            attempts: 0,
            since: now,
        });
    }

    /// Whether `id` has failed before in this run (it is being tried again).
    pub(crate) fn is_retrying(&self, id: EffectId) -> bool {
        self.states.contains_key(&id)
    }

    /// `id` is done (or failed for good): forget it.
    pub(crate) fn done(&mut self, id: EffectId) {
        self.states.remove(&id);
        self.timers.clear(&id);
    }

    /// Whether `id` has been failing for longer than `ms` (in this run).
    pub(crate) fn failing_longer_than(&self, id: EffectId, now: Timestamp, ms: u64) -> bool {
        self.states
            .get(&id)
            .is_some_and(|r| now.0.saturating_sub(r.since.0) > ms)
    }

    /// How many effects are retrying.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// When the oldest retrying effect first failed.
    pub(crate) fn oldest_since(&self) -> Option<Timestamp> {
        self.states.values().map(|r| r.since).min()
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_a_done_effect_is_forgotten() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut r = Retries::default();
        let id = EffectId(7);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            let (_, delay) = r.failed(id, Timestamp(0), 1_000, 8_000, &mut rng);
            ceilings.push(delay);
        }
        for (delay, ceiling) in ceilings
            .iter()
            .zip([1_000, 2_000, 4_000, 8_000, 8_000, 8_000])
        {
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "{delay} within {ceiling}"
            );
        }
        assert_eq!(r.len(), 1);
        assert!(r.failing_longer_than(id, Timestamp(5), 4));
        assert!(r.deadline().is_some());
        r.done(id);
        assert_eq!((r.len(), r.deadline()), (0, None));
    }
}
