//! [`Window`]: a bounded set of the ids seen last, for deduplication.
//!
//! The homeserver re-sends a transaction until it gets a 200 and can deliver one event in
//! two transactions (element-hq/synapse#11447); a Gitter stream and a catch-up read can both
//! deliver a message. Each id is looked up once per delivery, so the lookup is a hash set's,
//! not a scan: a linear scan of a full 10,000-id window was the top hotspot of a load run
//! (issue 14). The ring remembers the order so the oldest id is the one forgotten.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use crate::ids::{AsTxnId, OwnedEventId};
use crate::state::{Change, Snapshot};

/// What the bridge has processed from the homeserver: transaction ids and event ids, each
/// the last `dedupe_capacity` of them (persisted as `Snapshot::transactions` and
/// `Snapshot::events`, of which these are the hash indexes).
#[derive(Clone, Debug)]
pub(crate) struct Dedupe {
    txns: Window<AsTxnId>,
    events: Window<OwnedEventId>,
}

impl Dedupe {
    /// The windows of a restored state.
    pub(crate) fn restore(state: &Snapshot, capacity: usize) -> Dedupe {
        Dedupe {
            txns: Window::from_oldest_first(state.transactions.iter().cloned(), capacity),
            events: Window::from_oldest_first(state.events.iter().cloned(), capacity),
        }
    }

    /// `None` if the transaction was processed already, else the changes that remember it
    /// (and forget the oldest).
    pub(crate) fn new_txn(&mut self, id: &AsTxnId) -> Option<Vec<Change>> {
        first_sight(
            &mut self.txns,
            id,
            Change::RememberTransaction,
            Change::ForgetTransaction,
        )
    }

    /// `None` if the event was processed already, else the changes that remember it.
    pub(crate) fn new_event(&mut self, id: &OwnedEventId) -> Option<Vec<Change>> {
        first_sight(
            &mut self.events,
            id,
            Change::RememberEvent,
            Change::ForgetEvent,
        )
    }
}

/// `None` if `window` holds `id`, else the changes that remember it and forget what it
/// pushed out.
fn first_sight<T: Clone + Eq + Hash>(
    window: &mut Window<T>,
    id: &T,
    remember: fn(T) -> Change,
    forget: fn(T) -> Change,
) -> Option<Vec<Change>> {
    if window.contains(id) {
        return None;
    }
    let gone = window.push(id.clone());
    let mut changes = vec![remember(id.clone())];
    changes.extend(gone.into_iter().map(forget));
    Some(changes)
}

/// The last `capacity` distinct ids pushed, with O(1) lookup.
#[derive(Clone, Debug)]
pub(crate) struct Window<T> {
    seen: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone + Eq + Hash> Window<T> {
    /// An empty window of `capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Window {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// A window holding `ids` (oldest first), as a store loaded them. Ids past the capacity
    /// are not forgotten here: the caller's change set forgets them with the next push.
    pub(crate) fn from_oldest_first(ids: impl IntoIterator<Item = T>, capacity: usize) -> Self {
        let mut w = Window::new(capacity);
        for id in ids {
            if w.seen.insert(id.clone()) {
                w.order.push_back(id);
            }
        }
        w
    }

    /// Whether `id` is in the window.
    pub(crate) fn contains(&self, id: &T) -> bool {
        self.seen.contains(id)
    }

    /// Adds `id` as the newest; returns the ids that fell out of the window, oldest first
    /// (so the caller can forget them in the store too). An id already present stays where
    /// it is.
    pub(crate) fn push(&mut self, id: T) -> Vec<T> {
        if !self.seen.insert(id.clone()) {
            return Vec::new();
        }
        self.order.push_back(id);
        let mut gone = Vec::new();
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
                gone.push(old);
            }
        }
        gone
    }

    /// How many ids the window holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_id_falls_out_first_and_a_repeat_keeps_its_place() {
        let mut w = Window::new(3);
        assert!(w.push(1).is_empty());
        assert!(w.push(2).is_empty());
        assert!(w.push(1).is_empty(), "a repeat adds nothing");
        assert!(w.push(3).is_empty());
        assert_eq!(w.push(4), vec![1]);
        assert!(!w.contains(&1));
        assert!(w.contains(&2) && w.contains(&3) && w.contains(&4));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn a_loaded_window_over_capacity_shrinks_on_the_next_push() {
        let mut w = Window::from_oldest_first([1, 2, 3, 4], 2);
        assert!(w.contains(&1));
        assert_eq!(w.push(5), vec![1, 2, 3]);
        assert_eq!(w.len(), 2);
    }
}
