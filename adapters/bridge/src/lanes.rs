//! Ordering of effects: one at a time within a [`Lane`], any number of lanes at once.
//!
//! The core emits, say, register-ghost, invite, join and send for one portal in one step and
//! relies on them happening in that order (a send by a ghost that has not joined is refused).
//! Different portals, users and streams do not depend on each other, so they run
//! concurrently; a slow Gitter room cannot stall another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use gitter_bridge_core::{Effect, EffectId, Lane};

/// Queued effects per lane, and which lanes have one running.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    queues: HashMap<Lane, VecDeque<(Effect, Instant)>>,
    running: HashSet<Lane>,
    /// Lanes whose effect failed and waits to be tried again: they stay busy so nothing of
    /// the lane overtakes it (a message after one that waits out an outage stays after it).
    held: HashMap<Lane, EffectId>,
}

impl Lanes {
    /// Queues an effect, emitted at `at`, behind the others of its lane; the retry of the
    /// effect that holds its lane goes first instead.
    pub(crate) fn push(&mut self, effect: Effect, at: Instant) {
        let queue = self.queues.entry(effect.lane.clone()).or_default();
        if self.held.get(&effect.lane) == Some(&effect.id) {
            self.held.remove(&effect.lane);
            self.running.remove(&effect.lane);
            queue.push_front((effect, at));
        } else {
            queue.push_back((effect, at));
        }
    }

    /// The running effect of `lane` has finished but will be tried again: the lane stays
    /// busy until the core re-emits it.
    pub(crate) fn hold(&mut self, lane: &Lane, id: EffectId) {
        self.running.insert(lane.clone());
        self.held.insert(lane.clone(), id);
    }

    /// Takes the head of every lane that has nothing running, and marks those lanes busy.
    pub(crate) fn take_ready(&mut self) -> Vec<(Effect, Instant)> {
        let mut ready = Vec::new();
        self.queues.retain(|lane, queue| {
            if !self.running.contains(lane)
                && let Some(head) = queue.pop_front()
            {
                self.running.insert(lane.clone());
                ready.push(head);
            }
            !queue.is_empty()
        });
        ready
    }

    /// The running effect of `lane` has finished; its next one may start.
    pub(crate) fn finish(&mut self, lane: &Lane) {
        self.running.remove(lane);
    }

    /// Effects running now (a held lane waits rather than runs).
    pub(crate) fn running(&self) -> usize {
        self.running.len() - self.held.len()
    }

    /// Effects waiting behind a running one.
    pub(crate) fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use gitter_bridge_core::{Action, GitterRoomId, OwnedUserId, StreamCall, Then};

    use super::*;

    fn effect(id: u64, lane: &Lane) -> Effect {
        Effect {
            id: EffectId(id),
            lane: lane.clone(),
            action: Action::Stream(StreamCall::Close {
                room: GitterRoomId::new("r"),
            }),
            then: Then::Nothing,
        }
    }

    fn user(name: &str) -> Lane {
        Lane::User(OwnedUserId::try_from(format!("@{name}:example.org")).unwrap())
    }

    fn ids(effects: &[(Effect, Instant)]) -> Vec<u64> {
        let mut v: Vec<u64> = effects.iter().map(|(e, _)| e.id.0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_lane_runs_its_effects_one_after_another_in_order() {
        let (alice, bob) = (user("alice"), user("bob"));
        let mut lanes = Lanes::default();
        for (id, lane) in [(1, &alice), (2, &alice), (3, &bob), (4, &alice)] {
            lanes.push(effect(id, lane), Instant::now());
        }
        assert_eq!(ids(&lanes.take_ready()), [1, 3], "one per lane at a time");
        assert!(lanes.take_ready().is_empty(), "both lanes are busy");
        assert_eq!((lanes.running(), lanes.queued()), (2, 2));
        lanes.finish(&alice);
        assert_eq!(ids(&lanes.take_ready()), [2]);
        lanes.finish(&bob);
        assert!(lanes.take_ready().is_empty(), "bob's lane is empty");
        lanes.finish(&alice);
        assert_eq!(ids(&lanes.take_ready()), [4]);
        lanes.finish(&alice);
        assert_eq!((lanes.running(), lanes.queued()), (0, 0));
    }

    #[test]
    fn a_held_lane_runs_nothing_until_its_effect_comes_back_and_then_that_one_first() {
        let alice = user("alice");
        let mut lanes = Lanes::default();
        lanes.push(effect(1, &alice), Instant::now());
        lanes.push(effect(2, &alice), Instant::now());
        assert_eq!(ids(&lanes.take_ready()), [1]);
        // 1 failed and will be tried again.
        lanes.hold(&alice, EffectId(1));
        assert!(lanes.take_ready().is_empty(), "2 stays behind 1");
        assert_eq!((lanes.running(), lanes.queued()), (0, 1));
        lanes.push(effect(1, &alice), Instant::now());
        assert_eq!(ids(&lanes.take_ready()), [1], "the retry goes first");
        lanes.finish(&alice);
        assert_eq!(ids(&lanes.take_ready()), [2]);
    }
}
