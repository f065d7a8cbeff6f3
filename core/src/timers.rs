//! [`Deadlines`]: when each of many things is due, with the earliest found without a scan,
//! and [`TimerKind`], why the core asks to be woken.
//!
//! The core used to compute its next timer by scanning every login link, OAuth state, stream
//! and retrying effect on every step (issue 14), which costs as much as the bridge is large.
//! Each sub-machine now keeps its deadlines in a table ordered by time (in the spirit of
//! quinn-proto's `TimerTable`, for keyed timers), and `Bridge` asks each for its earliest.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::Timestamp;

/// Why a timer fires: the sub-machine whose deadline it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// An expired login link or OAuth state is forgotten.
    ForgetTicket,
    /// A failed catch-up read is tried again.
    CatchUpRetry,
    /// A durable effect that failed for a reason that can pass is tried again.
    EffectRetry,
    /// A pass of pruning old mappings starts.
    Prune,
}

/// One deadline per key.
#[derive(Clone, Debug)]
pub(crate) struct Deadlines<K> {
    at: BTreeMap<K, Timestamp>,
    order: BTreeSet<(Timestamp, K)>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            at: BTreeMap::new(),
            order: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Deadlines<K> {
    /// Sets (or moves) the deadline of `key`.
    pub(crate) fn set(&mut self, key: K, at: Timestamp) {
        if let Some(old) = self.at.insert(key.clone(), at) {
            self.order.remove(&(old, key.clone()));
        }
        self.order.insert((at, key));
    }

    /// Removes the deadline of `key`, if any.
    pub(crate) fn clear(&mut self, key: &K) {
        if let Some(old) = self.at.remove(key) {
            self.order.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.order.first().map(|(t, _)| *t)
    }

    /// The keys due at `now`, earliest first, taken out of the table.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((t, _)) = self.order.first() {
            if *t > now {
                break;
            }
            let (_, key) = self.order.pop_first().expect("checked above");
            self.at.remove(&key);
            due.push(key);
        }
        due
    }

    /// Forgets every deadline.
    pub(crate) fn clear_all(&mut self) {
        self.at.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_is_next_and_moved_or_cleared_ones_are_not_due() {
        let mut d = Deadlines::default();
        d.set("a", Timestamp(30));
        d.set("b", Timestamp(10));
        d.set("c", Timestamp(20));
        assert_eq!(d.next(), Some(Timestamp(10)));
        d.set("b", Timestamp(40));
        d.clear(&"c");
        assert_eq!(d.next(), Some(Timestamp(30)));
        assert_eq!(d.take_due(Timestamp(35)), vec!["a"]);
        assert_eq!(d.take_due(Timestamp(35)), Vec::<&str>::new());
        assert_eq!(d.take_due(Timestamp(40)), vec!["b"]);
        assert_eq!(d.next(), None);
    }
}
