//! Injected faults: errors, delays, lost answers, flapping and silent streams, hostile
//! answers. Each counts down or expires, and `clear_faults` undoes them all.

use super::*;

impl GitterState {
    /// Make the next `n` `/v1` requests fail with `status` (429 or 5xx).
    pub fn fail_next(&mut self, n: u32, status: u16) {
        self.faults.api.fail_next(n, status);
    }

    /// Make every `/v1` request fail with `status` until `until_ms`.
    pub fn fail_until(&mut self, until_ms: u64, status: u16) {
        self.faults.api.fail_until(until_ms, status);
    }

    /// Delay every `/v1` response by `delay`.
    pub fn set_delay(&mut self, delay: Duration) {
        self.faults.api.delay = delay;
    }

    pub fn delay(&self) -> Duration {
        self.faults.api.delay
    }

    /// Remove all injected faults.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// The next `n` `POST /v1/rooms/:roomId/chatMessages` are processed (the
    /// message is stored and streamed) and then get no answer at all.
    pub fn lose_send_answers(&mut self, n: u32) {
        self.faults.lost_sends = n;
    }

    /// Send answers still to be lost.
    pub fn pending_lost_sends(&self) -> u32 {
        self.faults.lost_sends
    }

    /// Whether this send's answer is to be lost (consumes one).
    pub fn take_lost_send(&mut self) -> bool {
        if self.faults.lost_sends == 0 {
            return false;
        }
        self.faults.lost_sends -= 1;
        true
    }

    /// New stream connections answer 200 and end at once, for `budget`.
    pub fn flap_streams(&mut self, budget: Budget) {
        self.faults.flap = Some(budget);
    }

    /// Whether this new stream ends at once (consumes one of a "next N").
    pub fn take_flap(&mut self, now_ms: u64) -> bool {
        take_budget(&mut self.faults.flap, now_ms)
    }

    /// Streams, open and new, send nothing (no heartbeat either) until
    /// `until_ms`; what they should have sent follows then, as after a
    /// stalled TCP path.
    pub fn silence_streams_until(&mut self, until_ms: u64) {
        self.faults.silent_until = Some(until_ms);
    }

    /// How long streams stay silent from `now_ms`, if they are.
    pub fn silence_left(&self, now_ms: u64) -> Option<Duration> {
        self.faults
            .silent_until
            .filter(|u| *u > now_ms)
            .map(|u| Duration::from_millis(u - now_ms))
    }

    /// Turn on a hostile answer for `budget` (each kind has its own).
    pub fn set_hostile(&mut self, hostile: Hostile, budget: Budget) {
        match hostile {
            Hostile::HugeBody { bytes, status } => {
                self.faults.huge_body = Some((budget, bytes, status));
            }
            Hostile::EndlessLine => self.faults.endless_line = Some(budget),
            Hostile::SlowDrip {
                chunk_bytes,
                interval_ms,
            } => {
                self.faults.slow_drip = Some((
                    budget,
                    chunk_bytes.max(1),
                    Duration::from_millis(interval_ms),
                ));
            }
        }
    }

    /// The hostile way to answer this API request, if any (consumes one of
    /// each "next N" that applies): a huge body replaces the answer, else a
    /// slow drip delivers it.
    pub fn take_hostile_answer(&mut self, now_ms: u64) -> Option<Hostile> {
        if let Some((budget, bytes, status)) = self.faults.huge_body {
            let mut slot = Some(budget);
            let hit = take_budget(&mut slot, now_ms);
            self.faults.huge_body = slot.map(|b| (b, bytes, status));
            if hit {
                return Some(Hostile::HugeBody { bytes, status });
            }
        }
        if let Some((budget, chunk_bytes, interval)) = self.faults.slow_drip {
            let mut slot = Some(budget);
            let hit = take_budget(&mut slot, now_ms);
            self.faults.slow_drip = slot.map(|b| (b, chunk_bytes, interval));
            if hit {
                return Some(Hostile::SlowDrip {
                    chunk_bytes,
                    interval_ms: interval.as_millis() as u64,
                });
            }
        }
        None
    }

    /// Whether this new stream is an endless line (consumes one).
    pub fn take_endless_line(&mut self, now_ms: u64) -> bool {
        take_budget(&mut self.faults.endless_line, now_ms)
    }

    /// How many of the "next N" injected failures have not been served yet.
    pub fn pending_failures(&self) -> u32 {
        self.faults.api.pending()
    }

    /// Whether this request should fail with an injected status; consumes one
    /// of the "next N" failures.
    pub fn take_fault(&mut self, now_ms: u64) -> Option<u16> {
        self.faults.api.take(now_ms)
    }

    /// Revoke a token: it gives 401 from now on and its streams close
    /// (docs/gitter-api.md §2.2 "Tokens stay valid until deleted"; §6.4 token_revoked
    /// "destroys every socket opened with that token").
    pub fn revoke_token(&mut self, token: &str) -> bool {
        let existed = self.tokens.remove(token).is_some();
        self.streams.retain(|s| s.token != token);
        self.faye_revoked(token);
        existed
    }
}
