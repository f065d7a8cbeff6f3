//! Prometheus metrics, served at `/metrics` on the web listener.
//!
//! The driver updates them as it goes; nothing here decides anything. Names follow the
//! Prometheus conventions (`_total` counters, `_seconds` histograms).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub(crate) use gitter_bridge_core::Direction;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

impl From<Direction> for DirectionLabel {
    fn from(d: Direction) -> Self {
        DirectionLabel {
            direction: match d {
                Direction::GitterToMatrix => "gitter_to_matrix",
                Direction::MatrixToGitter => "matrix_to_gitter",
            },
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    action: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn latency_buckets() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the bridge.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    transactions: Counter,
    transaction_events: Counter,
    bridged: Family<DirectionLabel, Counter>,
    effect_failures: Family<FailureLabels, Counter>,
    rate_limit_waits: Counter,
    rate_limit_seen: AtomicU64,
    open_streams: Gauge,
    effects_running: Gauge,
    effects_queued: Gauge,
    effects_retrying: Gauge,
    oldest_retry_seconds: Gauge,
    latency: Family<DirectionLabel, Histogram, fn() -> Histogram>,
    commit_seconds: Histogram,
    users: Gauge,
    logged_in: Gauge,
    portals: Gauge,
    ghosts: Gauge,
    gitter_rooms: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
}

/// How many of each thing the bridge holds now (the gauges of [`Metrics::population`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Population {
    pub(crate) users: usize,
    pub(crate) logged_in: usize,
    pub(crate) portals: usize,
    pub(crate) ghosts: usize,
    pub(crate) gitter_rooms: usize,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("gitter_bridge");
        let m = Metrics {
            transactions: Counter::default(),
            transaction_events: Counter::default(),
            bridged: Family::default(),
            effect_failures: Family::default(),
            rate_limit_waits: Counter::default(),
            rate_limit_seen: AtomicU64::new(0),
            open_streams: Gauge::default(),
            effects_running: Gauge::default(),
            effects_queued: Gauge::default(),
            effects_retrying: Gauge::default(),
            oldest_retry_seconds: Gauge::default(),
            latency: Family::new_with_constructor(latency_buckets),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            users: Gauge::default(),
            logged_in: Gauge::default(),
            portals: Gauge::default(),
            ghosts: Gauge::default(),
            gitter_rooms: Gauge::default(),
            cpu_seconds: Counter::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            registry: Registry::default(),
        };
        // Label sets known in advance exist from the start, at zero, so a rate() or an
        // alert on them works before the first message crosses.
        for d in [Direction::GitterToMatrix, Direction::MatrixToGitter] {
            let _ = m.bridged.get_or_create(&d.into());
            let _ = m.latency.get_or_create(&d.into());
        }
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build: 1, with its version as a label",
            build_info,
        );
        registry.register("users", "Matrix users the bridge knows", m.users.clone());
        registry.register(
            "users_logged_in",
            "Matrix users with a valid Gitter login",
            m.logged_in.clone(),
        );
        registry.register(
            "portals",
            "Portals (one Matrix room of one user for one Gitter room), in any state",
            m.portals.clone(),
        );
        registry.register("ghosts", "Ghosts of Gitter users", m.ghosts.clone());
        registry.register(
            "gitter_rooms",
            "Gitter rooms the bridge reads",
            m.gitter_rooms.clone(),
        );
        registry.register(
            "as_transactions",
            "Application-service transactions received from the homeserver",
            m.transactions.clone(),
        );
        registry.register(
            "as_events",
            "Events received in application-service transactions",
            m.transaction_events.clone(),
        );
        registry.register(
            "messages_bridged",
            "Messages delivered to the other side, by direction",
            m.bridged.clone(),
        );
        registry.register(
            "effect_failures",
            "Effects that failed after the adapters' retries, by action and failure kind",
            m.effect_failures.clone(),
        );
        registry.register(
            "gitter_rate_limit_waits",
            "Gitter requests that waited for the client-side rate limit",
            m.rate_limit_waits.clone(),
        );
        registry.register(
            "gitter_open_streams",
            "Gitter room streams connected now",
            m.open_streams.clone(),
        );
        registry.register(
            "effects_running",
            "Effects being executed now",
            m.effects_running.clone(),
        );
        registry.register(
            "effects_queued",
            "Effects waiting behind another of their portal, user or stream",
            m.effects_queued.clone(),
        );
        registry.register(
            "effects_retrying",
            "Effects that failed for a reason that can pass and wait in the outbox to be tried again",
            m.effects_retrying.clone(),
        );
        registry.register(
            "oldest_retry_age_seconds",
            "How long the oldest retrying effect has been failing (0 when none is)",
            m.oldest_retry_seconds.clone(),
        );
        registry.register(
            "bridging_latency_seconds",
            "From the bridge taking in the input that led to a send (a stream message, an AS \
             transaction, or the result of an earlier step such as a ghost join) to the other \
             side accepting the send, commit and queueing included, by direction",
            m.latency.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Duration of one durable store commit (a group of steps)",
            m.commit_seconds.clone(),
        );
        // Process metrics under their standard names (no prefix), as the Prometheus client
        // libraries export them.
        root.register(
            "process_cpu_seconds",
            "User and system CPU time the process has used",
            m.cpu_seconds.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            m.resident_bytes.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors of the process",
            m.open_fds.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// How many users, portals, ghosts and rooms there are now.
    pub(crate) fn population(&self, p: Population) {
        self.users.set(p.users as i64);
        self.logged_in.set(p.logged_in as i64);
        self.portals.set(p.portals as i64);
        self.ghosts.set(p.ghosts as i64);
        self.gitter_rooms.set(p.gitter_rooms as i64);
    }

    /// Reads the process's CPU time, memory and descriptors (Linux `/proc/self`; elsewhere
    /// they stay at zero).
    fn sample_process(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // The fields after the command name (which may hold spaces, in parentheses) start
        // at field 3, the state; utime is field 14, stime 15, rss 24 (proc(5)).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if let (Some(utime), Some(stime)) = (field(14), field(15))
            && ticks > 0
        {
            let total = (utime + stime) as f64 / ticks as f64;
            let seen = self.cpu_seconds.get();
            if total > seen {
                self.cpu_seconds.inc_by(total - seen);
            }
        }
        if let Some(rss) = field(24)
            && page > 0
        {
            self.resident_bytes.set((rss * page as u64) as i64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
    }

    pub(crate) fn transaction(&self, events: usize) {
        self.transactions.inc();
        self.transaction_events.inc_by(events as u64);
    }

    pub(crate) fn bridged(&self, direction: Direction, latency_secs: f64) {
        self.bridged.get_or_create(&direction.into()).inc();
        self.latency
            .get_or_create(&direction.into())
            .observe(latency_secs);
    }

    pub(crate) fn effect_failed(&self, action: &'static str, kind: &'static str) {
        self.effect_failures
            .get_or_create(&FailureLabels { action, kind })
            .inc();
    }

    pub(crate) fn open_streams(&self, n: usize) {
        self.open_streams.set(n as i64);
    }

    pub(crate) fn effects(&self, running: usize, queued: usize) {
        self.effects_running.set(running as i64);
        self.effects_queued.set(queued as i64);
    }

    pub(crate) fn retrying(&self, count: usize, oldest_age_secs: u64) {
        self.effects_retrying.set(count as i64);
        self.oldest_retry_seconds.set(oldest_age_secs as i64);
    }

    pub(crate) fn commit(&self, secs: f64) {
        self.commit_seconds.observe(secs);
    }

    /// The text exposition. `rate_limit_waits` is the Gitter client's running count.
    pub(crate) fn render(&self, rate_limit_waits: u64) -> String {
        let before = self
            .rate_limit_seen
            .fetch_max(rate_limit_waits, Ordering::Relaxed);
        self.rate_limit_waits
            .inc_by(rate_limit_waits.saturating_sub(before));
        self.sample_process();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.transaction(3);
        m.bridged(Direction::GitterToMatrix, 0.02);
        m.effect_failed("send_gitter", "rate_limited");
        m.open_streams(2);
        m.population(Population {
            users: 4,
            logged_in: 3,
            portals: 7,
            ghosts: 9,
            gitter_rooms: 2,
        });
        let text = m.render(5);
        for needle in [
            "gitter_bridge_as_transactions_total 1",
            "gitter_bridge_as_events_total 3",
            "gitter_bridge_messages_bridged_total{direction=\"gitter_to_matrix\"} 1",
            "gitter_bridge_effect_failures_total{action=\"send_gitter\",kind=\"rate_limited\"} 1",
            // A direction nothing crossed yet is there, at zero.
            "gitter_bridge_messages_bridged_total{direction=\"matrix_to_gitter\"} 0",
            "gitter_bridge_build_info{version=\"",
            "gitter_bridge_users 4",
            "gitter_bridge_users_logged_in 3",
            "gitter_bridge_portals 7",
            "gitter_bridge_ghosts 9",
            "gitter_bridge_gitter_rooms 2",
            "\nprocess_cpu_seconds_total ",
            "\nprocess_resident_memory_bytes ",
            "\nprocess_open_fds ",
            "gitter_bridge_gitter_rate_limit_waits_total 5",
            "gitter_bridge_gitter_open_streams 2",
            "gitter_bridge_bridging_latency_seconds_count{direction=\"gitter_to_matrix\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // The waits counter follows the client's count without double counting.
        assert!(m.render(7).contains("rate_limit_waits_total 7"));
        assert!(m.render(7).contains("rate_limit_waits_total 7"));
    }
}
