//! Ordering of effects: one at a time within a [`Lane`], any number of lanes at once.
//!
//! The core emits, say, register-ghost, invite, join and send for one portal in one step and
//! relies on them happening in that order (a send by a ghost that has not joined is refused).
//! Different portals, users and streams do not depend on each other, so they run
//! concurrently; a slow Gitter room cannot stall another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use gitter_bridge_core::{Effect, Lane};

/// Queued effects per lane, and which lanes have one running.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    queues: HashMap<Lane, VecDeque<(Effect, Instant)>>,
    running: HashSet<Lane>,
}

impl Lanes {
    /// Queues an effect, emitted at `at`, behind the others of its lane.
    pub(crate) fn push(&mut self, effect: Effect, at: Instant) {
        self.queues
            .entry(effect.lane.clone())
            .or_default()
            .push_back((effect, at));
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

    /// Effects running now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Effects waiting behind a running one.
    pub(crate) fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use gitter_bridge_core::{Action, EffectId, GitterRoomId, OwnedUserId};

    use super::*;

    fn effect(id: u64, lane: &Lane) -> Effect {
        Effect {
            id: EffectId(id),
            lane: lane.clone(),
            action: Action::CloseStream {
                room: GitterRoomId::new("r"),
            },
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
}
