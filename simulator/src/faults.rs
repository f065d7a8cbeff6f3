//! Fault injection, one vocabulary for both fakes: how long a fault lasts ([`FaultLimit`],
//! [`Budget`]) and the injected errors of one kind of request ([`InjectedErrors`]: the next
//! `n`, or all of them until a time, each with its status, and a delay). The fake homeserver
//! injects them into its Client-Server API, the fake Gitter into its REST API; the faults
//! below HTTP (refused connections, dropped answers) live in `fake_hs::net`.

use std::time::Duration;

/// How long a fault lasts: the next `n` occurrences, or a stretch of time.
/// The handles' methods take this; the pure states store [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultLimit {
    /// The next `n` requests (or connections) it applies to.
    Next(u32),
    /// Everything it applies to for this long, from now.
    For(Duration),
}

impl FaultLimit {
    /// The budget, with a period turned into a deadline on the fake's clock.
    pub fn budget(self, now_ms: u64) -> Budget {
        match self {
            FaultLimit::Next(n) => Budget::Next(n),
            FaultLimit::For(d) => Budget::UntilMs(now_ms + d.as_millis() as u64),
        }
    }

    /// From a control request's JSON fields: `duration_ms` wins over `count`;
    /// neither means once.
    pub fn from_fields(count: Option<u32>, duration_ms: Option<u64>) -> Self {
        match (count, duration_ms) {
            (_, Some(ms)) => FaultLimit::For(Duration::from_millis(ms)),
            (n, None) => FaultLimit::Next(n.unwrap_or(1)),
        }
    }
}

/// What is left of a fault, in the pure states (time as the fake's Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Next(u32),
    UntilMs(u64),
}

impl Budget {
    /// Whether the fault applies now; consumes one of a "next N". Returns the
    /// budget left (`None` once spent) so callers can store it back.
    pub fn take(self, now_ms: u64) -> (bool, Option<Budget>) {
        match self {
            Budget::Next(0) => (false, None),
            Budget::Next(n) => (true, (n > 1).then_some(Budget::Next(n - 1))),
            Budget::UntilMs(until) if now_ms < until => (true, Some(self)),
            Budget::UntilMs(_) => (false, None),
        }
    }

    /// Occurrences left of a "next N" (0 for a period).
    pub fn remaining(self) -> u32 {
        match self {
            Budget::Next(n) => n,
            Budget::UntilMs(_) => 0,
        }
    }
}

/// Take one use of an optional budget in place.
pub fn take_budget(slot: &mut Option<Budget>, now_ms: u64) -> bool {
    let Some(b) = *slot else { return false };
    let (hit, left) = b.take(now_ms);
    *slot = left;
    hit
}

/// Errors injected into one kind of request, and a delay for it.
#[derive(Debug, Default, Clone)]
pub struct InjectedErrors {
    next: Option<(u32, u16)>,
    until: Option<(u64, u16)>,
    /// Added to every answer.
    pub delay: Duration,
}

impl InjectedErrors {
    /// The next `n` requests fail with `status` (0 stops it).
    pub fn fail_next(&mut self, n: u32, status: u16) {
        self.next = (n > 0).then_some((n, status));
    }

    /// Every request fails with `status` until `until_ms` (the fake's Unix ms).
    pub fn fail_until(&mut self, until_ms: u64, status: u16) {
        self.until = Some((until_ms, status));
    }

    /// Failures of the "next `n`" still to come.
    pub fn pending(&self) -> u32 {
        self.next.map_or(0, |(n, _)| n)
    }

    /// The status this request fails with, if it does; consumes one of the next `n`, and
    /// forgets a period that has passed.
    pub fn take(&mut self, now_ms: u64) -> Option<u16> {
        if let Some((n, status)) = self.next {
            self.next = (n > 1).then_some((n - 1, status));
            return Some(status);
        }
        match self.until {
            Some((until, status)) if now_ms < until => Some(status),
            Some(_) => {
                self.until = None;
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_count_down_or_expire() {
        let mut slot = Some(FaultLimit::Next(2).budget(0));
        assert!(take_budget(&mut slot, 0));
        assert!(take_budget(&mut slot, 0));
        assert!(!take_budget(&mut slot, 0));
        assert_eq!(slot, None);
        let mut slot = Some(FaultLimit::For(Duration::from_millis(100)).budget(1_000));
        assert!(take_budget(&mut slot, 1_050));
        assert!(take_budget(&mut slot, 1_099));
        assert!(!take_budget(&mut slot, 1_100));
        assert_eq!(slot, None, "an expired period is forgotten");
        assert_eq!(
            FaultLimit::from_fields(Some(3), Some(10)),
            FaultLimit::For(Duration::from_millis(10))
        );
        assert_eq!(FaultLimit::from_fields(None, None), FaultLimit::Next(1));
    }

    #[test]
    fn injected_errors_come_the_next_n_times_or_until_a_time() {
        let mut e = InjectedErrors::default();
        e.fail_next(2, 500);
        assert_eq!(e.pending(), 2);
        assert_eq!(
            (e.take(0), e.take(0), e.take(0)),
            (Some(500), Some(500), None)
        );
        e.fail_until(100, 503);
        assert_eq!(
            (e.take(99), e.take(100), e.take(50)),
            (Some(503), None, None)
        );
    }
}
