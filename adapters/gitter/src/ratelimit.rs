//! The client-side rate limit: at most N requests per window per token.
//!
//! Gitter allows 100 requests per 60 s per (user, OAuth app) in a fixed Redis window that
//! starts at the first request (docs/gitter-api.md §8), and answers 429 beyond that. Waiting here
//! instead of collecting 429s keeps a busy bridge inside the limit; the server's own
//! `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset` is fed back through
//! [`RateLimiter::block_until`] so both sides agree when they drift.
//!
//! Windows are keyed by [`TokenKey`], a hash of the token, so the token itself is never kept
//! here (nor logged). Time is tokio's, so tests run on a paused clock.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gitter_bridge_core::Secret;
use tokio::time::Instant;

/// How many requests per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests allowed per window (Gitter: 100).
    pub requests: u32,
    /// The window (Gitter: 60 s).
    pub window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// The rate-limit key of a token: a hash, so the limiter never holds the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(u64);

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &Secret) -> Self {
        // SipHash with fixed keys: stable within the process, and the limiter only needs
        // equality. It is not shown anywhere.
        let mut h = DefaultHasher::new();
        token.expose().hash(&mut h);
        TokenKey(h.finish())
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
    /// Set when the server said `Remaining: 0`; nothing goes out before it.
    blocked_until: Option<Instant>,
}

/// A fixed-window limiter per token. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    windows: Mutex<HashMap<TokenKey, Window>>,
    waits: AtomicU64,
}

/// Above this many tracked tokens, expired windows are dropped on the next request.
const PRUNE_ABOVE: usize = 1024;

impl RateLimiter {
    /// A limiter with this configuration.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            windows: Mutex::new(HashMap::new()),
            waits: AtomicU64::new(0),
        }
    }

    /// How many times a request had to wait for its window (for the operator's metrics).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Waits until a request with this token may go out, and counts it.
    pub async fn acquire(&self, key: TokenKey) {
        loop {
            match self.try_acquire(key, Instant::now()) {
                Ok(()) => return,
                Err(until) => {
                    self.waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        wait_ms = until.saturating_duration_since(Instant::now()).as_millis(),
                        "Gitter rate limit reached; waiting"
                    );
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }

    /// Counts a request at `now` if the window allows it, or says when to try again.
    pub fn try_acquire(&self, key: TokenKey, now: Instant) -> Result<(), Instant> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            let window = self.config.window;
            windows
                .retain(|_, w| w.blocked_until.is_some_and(|b| b > now) || w.start + window > now);
        }
        let w = windows.entry(key).or_insert(Window {
            start: now,
            count: 0,
            blocked_until: None,
        });
        if let Some(until) = w.blocked_until {
            if now < until {
                return Err(until);
            }
            // The server's window has reset: start a fresh one in step with it.
            w.blocked_until = None;
            w.start = now;
            w.count = 0;
        }
        if now >= w.start + self.config.window {
            w.start = now;
            w.count = 0;
        }
        if w.count < self.config.requests {
            w.count += 1;
            Ok(())
        } else {
            Err(w.start + self.config.window)
        }
    }

    /// The server said the window is used up until `until` (`X-RateLimit-Remaining: 0`, or a
    /// 429): hold every request with this token until then.
    pub fn block_until(&self, key: TokenKey, until: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(key).or_insert(Window {
            start: Instant::now(),
            count: 0,
            blocked_until: None,
        });
        w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, secs: u64) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            requests,
            window: Duration::from_secs(secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_over_the_limit_waits_for_the_next_window() {
        let l = limiter(3, 60);
        let key = TokenKey::of(&Secret::new("a"));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.acquire(key).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "within the limit: no wait");
        l.acquire(key).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_have_separate_windows() {
        let l = limiter(1, 60);
        let (a, b) = (
            TokenKey::of(&Secret::new("a")),
            TokenKey::of(&Secret::new("b")),
        );
        let t0 = Instant::now();
        l.acquire(a).await;
        l.acquire(b).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        l.acquire(a).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_block_holds_requests_until_reset() {
        let l = limiter(100, 60);
        let key = TokenKey::of(&Secret::new("a"));
        let t0 = Instant::now();
        l.block_until(key, t0 + Duration::from_millis(2_500));
        l.acquire(key).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(2_500));
        // After the reset a full window is available again.
        for _ in 0..99 {
            l.acquire(key).await;
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(2_500));
    }

    #[test]
    fn token_key_hides_the_token() {
        let key = TokenKey::of(&Secret::new("sekrit"));
        assert_eq!(format!("{key:?}"), "TokenKey(..)");
    }
}
