//! What `/ready` reports: whether the bridge's last word with each peer got an answer.
//!
//! `/health` says the process runs; `/ready` says whether it can do its work now. The driver
//! records the outcome of every call to the homeserver and to Gitter: an answer of any kind
//! (even a refusal: the peer is there) makes the peer reachable, a transient failure (no
//! answer, a timeout, a 5xx, the adapter's own retries spent) makes it unreachable from that
//! moment until the next answer. A peer the bridge has not called yet counts as reachable:
//! the start already checked the homeserver, and an idle Gitter is not a fault.

use std::sync::atomic::{AtomicU64, Ordering};

use gitter_bridge_core::{Action, FailureKind};

/// One of the two services the bridge talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Homeserver,
    Gitter,
}

impl Peer {
    /// Who an action's answer comes from (`None`: the bridge itself).
    pub(crate) fn of(action: &Action) -> Option<Peer> {
        match action {
            Action::Matrix(_) => Some(Peer::Homeserver),
            Action::OAuth { .. } | Action::Gitter { .. } => Some(Peer::Gitter),
            // Opening or closing a stream is answered at once by the bridge's own stream
            // manager; what Gitter says comes as stream events (Connected, Disconnected).
            Action::Stream(_) | Action::Store(_) => None,
        }
    }
}

/// Since when each peer has not answered (Unix ms; 0 while it answers).
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    homeserver_down_since: AtomicU64,
    gitter_down_since: AtomicU64,
}

impl Reachability {
    fn cell(&self, peer: Peer) -> &AtomicU64 {
        match peer {
            Peer::Homeserver => &self.homeserver_down_since,
            Peer::Gitter => &self.gitter_down_since,
        }
    }

    /// Records how a call to `peer` ended, at `now_ms`: `None` for success.
    pub(crate) fn record(&self, peer: Peer, failure: Option<FailureKind>, now_ms: u64) {
        let cell = self.cell(peer);
        match failure {
            Some(FailureKind::Transient) => {
                // The first failure of a streak says since when: later ones keep it.
                let _ =
                    cell.compare_exchange(0, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed);
            }
            _ => cell.store(0, Ordering::Relaxed),
        }
    }

    /// Since when `peer` has not answered, if it has not.
    pub(crate) fn down_since(&self, peer: Peer) -> Option<u64> {
        Some(self.cell(peer).load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// The `/ready` answer: ready, and the JSON body naming each peer's state.
    pub(crate) fn report(&self) -> (bool, serde_json::Value) {
        let peer = |p| match self.down_since(p) {
            None => serde_json::json!({ "reachable": true }),
            Some(since) => serde_json::json!({ "reachable": false, "unreachable_since_ms": since }),
        };
        let ready =
            self.down_since(Peer::Homeserver).is_none() && self.down_since(Peer::Gitter).is_none();
        let body = serde_json::json!({
            "status": if ready { "ready" } else { "degraded" },
            "homeserver": peer(Peer::Homeserver),
            "gitter": peer(Peer::Gitter),
        });
        (ready, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_unreachable_from_its_first_unanswered_call_until_it_answers_again() {
        let r = Reachability::default();
        assert!(r.report().0, "nothing called yet");
        r.record(Peer::Gitter, Some(FailureKind::Transient), 1_000);
        r.record(Peer::Gitter, Some(FailureKind::Transient), 2_000);
        assert_eq!(r.down_since(Peer::Gitter), Some(1_000));
        assert_eq!(r.down_since(Peer::Homeserver), None);
        let (ready, body) = r.report();
        assert!(!ready);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["gitter"]["unreachable_since_ms"], 1_000);
        assert_eq!(body["homeserver"]["reachable"], true);
        // A refusal is an answer: Gitter is there.
        r.record(Peer::Gitter, Some(FailureKind::NotFound), 3_000);
        assert!(r.report().0);
        r.record(Peer::Homeserver, Some(FailureKind::Transient), 4_000);
        r.record(Peer::Homeserver, None, 5_000);
        assert_eq!(r.report().1["status"], "ready");
    }
}
