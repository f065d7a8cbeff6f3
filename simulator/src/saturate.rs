//! `bridge-sim load --saturate`: the highest sustained rate, for the bridge and for the
//! homeserver alone, in the same run (issue 14: "an honest load instrument").
//!
//! The offered load ramps up by `growth` per step. A bridge step posts Gitter messages for
//! `step` seconds (each is one Matrix PUT per portal of its room) and passes when every copy
//! arrived and the 99th percentile from the Gitter post to the homeserver's timestamp of the
//! copy is under `p99_limit_ms`. A direct step sends the same kind of PUTs (as ghosts, into
//! the portals, with the as_token) straight to the fake homeserver at the same PUT rates,
//! and passes when they all succeed with the same percentile under the limit. Each maximum
//! is the PUT rate of the last step that passed, so the two compare like for like. The
//! bridge is the real binary in its own process; its CPU time and memory come from `/proc`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::{
    Observed, ProcessFigures, Sent, baseline, figures, ghost, post, poster, prepare, start_world,
};
use crate::world::{World, WorldError};

/// What to ramp.
#[derive(Clone, Debug)]
pub struct SaturateOptions {
    /// Matrix users, each with a portal of every room.
    pub users: usize,
    /// Gitter rooms.
    pub rooms: usize,
    /// Gitter messages per second of the first step.
    pub start_rate: f64,
    /// Factor between steps.
    pub growth: f64,
    /// Length of a step.
    pub step: Duration,
    /// Steps at most, per side.
    pub max_steps: usize,
    /// The latency a sustained rate must keep at its 99th percentile, ms.
    pub p99_limit_ms: f64,
    /// The `gitter-bridge` binary (`None`: in this process).
    pub bridge_bin: Option<std::path::PathBuf>,
}

/// One step of a ramp.
#[derive(Clone, Debug)]
pub struct Step {
    /// Matrix PUTs per second offered.
    pub puts_per_s: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Every message arrived (the bridge) or every PUT succeeded (direct).
    pub complete: bool,
}

impl Step {
    fn passed(&self, limit: f64) -> bool {
        self.complete && self.p99_ms < limit
    }

    fn json(&self) -> Value {
        json!({"puts_per_s": round(self.puts_per_s), "p99_ms": round(self.p99_ms), "complete": self.complete})
    }
}

/// The outcome.
#[derive(Clone, Debug)]
pub struct SaturateReport {
    /// What was run.
    pub options: SaturateOptions,
    /// The bridge's steps.
    pub bridge: Vec<Step>,
    /// The direct steps.
    pub direct: Vec<Step>,
    /// The bridge process after its ramp.
    pub process: Option<(ProcessFigures, ProcessFigures)>,
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn max_passed(steps: &[Step], limit: f64) -> f64 {
    steps
        .iter()
        .take_while(|s| s.passed(limit))
        .map(|s| s.puts_per_s)
        .fold(0.0, f64::max)
}

impl SaturateReport {
    /// The highest PUT rate the bridge sustained.
    pub fn bridge_max(&self) -> f64 {
        max_passed(&self.bridge, self.options.p99_limit_ms)
    }

    /// The highest PUT rate the homeserver sustained alone.
    pub fn direct_max(&self) -> f64 {
        max_passed(&self.direct, self.options.p99_limit_ms)
    }

    /// The one-line JSON summary.
    pub fn json(&self) -> Value {
        let (b, d) = (self.bridge_max(), self.direct_max());
        json!({
            "users": self.options.users,
            "rooms": self.options.rooms,
            "p99_limit_ms": self.options.p99_limit_ms,
            "step_s": self.options.step.as_secs_f64(),
            "bridge_max_per_s": round(b),
            "direct_max_per_s": round(d),
            "bridge_vs_direct": if d > 0.0 { round(b / d) } else { 0.0 },
            "bridge_cpu_s": self.process.map(|(a, z)| round(z.cpu_s - a.cpu_s)),
            "bridge_rss_mib": self.process.map(|(_, z)| round(z.rss_mib)),
            "bridge_peak_rss_mib": self.process.map(|(_, z)| round(z.peak_rss_mib)),
            "bridge_steps": self.bridge.iter().map(Step::json).collect::<Vec<_>>(),
            "direct_steps": self.direct.iter().map(Step::json).collect::<Vec<_>>(),
        })
    }
}

/// Runs both ramps in one world.
pub async fn run(o: SaturateOptions) -> Result<SaturateReport, WorldError> {
    let (world, _) = start_world(o.users, o.rooms, o.bridge_bin.as_deref(), false).await?;
    let result = ramps(&world, &o).await;
    world.shutdown().await;
    result
}

async fn ramps(w: &World, o: &SaturateOptions) -> Result<SaturateReport, WorldError> {
    let (humans, portals) = prepare(w, o.users, o.rooms).await?;
    let server = w.hs.server_name();
    let start = w.bridge_pid().and_then(ProcessFigures::of);
    let mut bridge = Vec::new();
    let mut rate = o.start_rate;
    let mut n = 0usize;
    if o.start_rate * o.step.as_secs_f64() < (o.users * o.rooms) as f64 {
        return Err(WorldError::Setup(format!(
            "the first step must post at least {} messages (one per poster and room)",
            o.users * o.rooms
        )));
    }
    for k in 0..o.max_steps {
        let mut sent: HashMap<String, Sent> = HashMap::new();
        let pace = Duration::from_secs_f64(1.0 / rate);
        let mut ticker = tokio::time::interval(pace);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let began = Instant::now();
        while began.elapsed() < o.step {
            ticker.tick().await;
            post(
                w,
                &mut sent,
                n % o.rooms,
                n % o.users,
                format!("load sat{k} {n}"),
            )?;
            n += 1;
        }
        // Every copy, or the time a sustained rate would have needed, whichever first.
        let deadline = Instant::now() + o.step + Duration::from_secs(5);
        let (latencies, complete) = loop {
            let seen = Observed::collect(w, &humans, &portals, o.rooms);
            let mut latencies = Vec::new();
            for (body, s) in &sent {
                for u in 0..o.users {
                    let copies =
                        seen.portal_copies(u, s.room, body, &ghost(&server, &poster(s.author)));
                    if let [ts] = copies.as_slice() {
                        latencies.push(ts.saturating_sub(s.at_ms) as f64);
                    }
                }
            }
            let complete = latencies.len() == sent.len() * o.users;
            if complete || Instant::now() > deadline {
                break (latencies, complete);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let f = figures(sent.len(), latencies, o.step);
        let step = Step {
            puts_per_s: rate * o.users as f64,
            p99_ms: f.p99,
            complete,
        };
        eprintln!(
            "saturate: bridge {:.0} PUT/s: p99 {:.1} ms{}",
            step.puts_per_s,
            step.p99_ms,
            if complete { "" } else { ", not all delivered" }
        );
        let passed = step.passed(o.p99_limit_ms);
        bridge.push(step);
        if !passed {
            break;
        }
        rate *= o.growth;
    }
    let end = w.bridge_pid().and_then(ProcessFigures::of);

    // The same PUTs straight to the homeserver: ghosts into portals (every poster has
    // posted in every room by the end of the first step, so every ghost is in every portal).
    let pairs: Vec<(String, String)> = portals
        .values()
        .flat_map(|room| (0..o.users).map(|a| (room.clone(), ghost(&server, &poster(a)))))
        .collect();
    let mut direct = Vec::new();
    let mut puts_per_s = o.start_rate * o.users as f64;
    for _ in 0..o.max_steps {
        let count = (puts_per_s * o.step.as_secs_f64()).ceil() as usize;
        let step = match baseline(w, &pairs, count, o.step).await {
            Ok(f) => Step {
                puts_per_s,
                p99_ms: f.p99,
                complete: true,
            },
            Err(_) => Step {
                puts_per_s,
                p99_ms: f64::INFINITY,
                complete: false,
            },
        };
        eprintln!(
            "saturate: direct {:.0} PUT/s: p99 {:.1} ms{}",
            step.puts_per_s,
            step.p99_ms,
            if step.complete { "" } else { ", PUTs failed" }
        );
        let passed = step.passed(o.p99_limit_ms);
        direct.push(step);
        if !passed {
            break;
        }
        puts_per_s *= o.growth;
    }
    Ok(SaturateReport {
        options: o.clone(),
        bridge,
        direct,
        process: start.zip(end),
    })
}
