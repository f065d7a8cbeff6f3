//! `bridge-sim load`: traffic both ways through the real bridge and the fakes, checked for
//! exactly-once delivery, with throughput, latency percentiles and memory, and a baseline of
//! the same Matrix PUTs sent straight to the fake homeserver.
//!
//! The world: `users` Matrix users (`u000`..) logged in as Gitter users of the same names, and
//! as many Gitter-only users (`g000`..) who post on Gitter. Every one of them is in every one
//! of `rooms` Gitter rooms, so each Matrix user has one portal per room. A Gitter message is
//! delivered into every portal of its room (`users` Matrix sends); a Matrix message is posted
//! to Gitter once and shown in the other users' portals as their ghost (`users - 1` sends).
//!
//! With `bridge_bin` set the bridge is the real `gitter-bridge` binary in its own process, and
//! its CPU time and resident memory are read from `/proc/<pid>` (the process's own figures,
//! not the fakes'); without it (the tests) it runs inside this process.
//!
//! Latency is measured on the fakes' clocks (one process, one wall clock): for Gitter to
//! Matrix, from the Gitter post to the `origin_server_ts` of each portal's copy; for Matrix to
//! Gitter, from the Matrix send to the Gitter message's `sent`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fake_hs::Human;
use crate::world::{WAIT, World, WorldError, WorldOptions};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Matrix users (each logged in as their own Gitter user).
    pub users: usize,
    /// Gitter rooms, every user in every room.
    pub rooms: usize,
    /// Messages per second, both directions together (alternating).
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// How long to wait for the last deliveries.
    pub settle: Duration,
    /// Seed of the random choices (who sends where).
    pub seed: u64,
    /// The `gitter-bridge` binary to run as its own process (`None`: in this process).
    pub bridge_bin: Option<std::path::PathBuf>,
    /// Read Gitter over the realtime endpoint (Faye) instead of HTTP streams.
    pub faye: bool,
}

/// What `/proc` says of the bridge's process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    /// User and system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident set now, MiB.
    pub rss_mib: f64,
    /// Peak resident set, MiB.
    pub peak_rss_mib: f64,
}

impl ProcessFigures {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (Linux).
    pub fn of(pid: u32) -> Option<ProcessFigures> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count from the
        // closing one. utime and stime are fields 14 and 15, in clock ticks.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu_s = (ticks(11)? + ticks(12)?) / hz;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let (rss_mib, peak_rss_mib) = status_rss(&status);
        Some(ProcessFigures {
            cpu_s,
            rss_mib,
            peak_rss_mib,
        })
    }
}

/// Latency percentiles and throughput of one direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Messages sent.
    pub sent: usize,
    /// Deliveries seen (a Gitter message counts once per portal).
    pub deliveries: usize,
    /// Deliveries per second, from the first send to the last delivery.
    pub throughput: f64,
    /// Latency percentiles in ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
}

impl Figures {
    fn json(&self) -> Value {
        json!({
            "sent": self.sent,
            "deliveries": self.deliveries,
            "throughput_per_s": round(self.throughput),
            "p50_ms": round(self.p50),
            "p95_ms": round(self.p95),
            "p99_ms": round(self.p99),
        })
    }
}

/// The outcome of a load run.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// What was run.
    pub options: LoadOptions,
    /// Gitter to Matrix.
    pub g2m: Figures,
    /// Matrix to Gitter.
    pub m2g: Figures,
    /// The same Matrix PUTs sent straight to the fake homeserver.
    pub baseline: Figures,
    /// Problems with exactly-once delivery (empty when every message arrived once).
    pub problems: Vec<String>,
    /// Resident memory of the process (fakes and bridge) before the bridge started, MiB.
    pub rss_before_bridge_mib: f64,
    /// Peak resident memory of the process at the end, MiB.
    pub peak_rss_mib: f64,
    /// The bridge's own process, when it ran as one: at the start of the sending and at the
    /// end of the run.
    pub bridge_process: Option<(ProcessFigures, ProcessFigures)>,
    /// What read Gitter at the end of the sending: open HTTP streams and realtime clients.
    pub readers: (usize, usize),
}

impl LoadReport {
    /// Whether every message arrived exactly once.
    pub fn exactly_once(&self) -> bool {
        self.problems.is_empty()
    }

    /// The one-line JSON summary.
    pub fn json(&self) -> Value {
        let ratio = |a: f64, b: f64| if b > 0.0 { round(a / b) } else { 0.0 };
        json!({
            "users": self.options.users,
            "rooms": self.options.rooms,
            "rate_per_s": self.options.rate,
            "duration_s": self.options.duration.as_secs_f64(),
            "exactly_once": self.exactly_once(),
            "transport": if self.options.faye { "faye" } else { "http_streams" },
            "gitter_http_streams": self.readers.0,
            "gitter_faye_clients": self.readers.1,
            "gitter_to_matrix": self.g2m.json(),
            "matrix_to_gitter": self.m2g.json(),
            "baseline_direct_puts": self.baseline.json(),
            "overhead": {
                "g2m_p50_vs_baseline": ratio(self.g2m.p50, self.baseline.p50),
                "g2m_p95_vs_baseline": ratio(self.g2m.p95, self.baseline.p95),
                "g2m_throughput_vs_baseline": ratio(self.g2m.throughput, self.baseline.throughput),
            },
            "rss_before_bridge_mib": round(self.rss_before_bridge_mib),
            "peak_rss_mib": round(self.peak_rss_mib),
            "bridge_cpu_s": self.bridge_process.map(|(a, b)| round(b.cpu_s - a.cpu_s)),
            "bridge_rss_mib": self.bridge_process.map(|(_, b)| round(b.rss_mib)),
            "bridge_peak_rss_mib": self.bridge_process.map(|(_, b)| round(b.peak_rss_mib)),
            "bridge_rss_at_start_of_sending_mib": self.bridge_process.map(|(a, _)| round(a.rss_mib)),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn user(i: usize) -> String {
    format!("u{i:03}")
}

pub(crate) fn poster(i: usize) -> String {
    format!("g{i:03}")
}

pub(crate) fn room_uri(i: usize) -> String {
    format!("load/room-{i:02}")
}

/// A seed with the load's users and rooms.
pub(crate) fn seed(users: usize, rooms: usize) -> String {
    let people: Vec<String> = (0..users).flat_map(|i| [user(i), poster(i)]).collect();
    let rooms: Vec<String> = (0..rooms).map(room_uri).collect();
    everyone_everywhere(&people, &rooms)
}

/// A fake Gitter seed where every one of `people` is a member of every one of `rooms`.
pub(crate) fn everyone_everywhere(people: &[String], rooms: &[String]) -> String {
    let mut s = String::new();
    for name in people {
        s.push_str(&format!("[[users]]\nusername = \"{name}\"\n\n"));
    }
    let members: Vec<String> = people.iter().map(|p| format!("\"{p}\"")).collect();
    for uri in rooms {
        s.push_str(&format!(
            "[[rooms]]\nuri = \"{uri}\"\nmembers = [{}]\n\n",
            members.join(", ")
        ));
    }
    s
}

/// Resident memory now and at its peak, MiB (Linux; zero elsewhere).
fn rss_mib() -> (f64, f64) {
    status_rss(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// `VmRSS` and `VmHWM` of a `/proc/<pid>/status`, MiB.
pub(crate) fn status_rss(status: &str) -> (f64, f64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn figures(sent: usize, mut latencies: Vec<f64>, span: Duration) -> Figures {
    latencies.sort_by(f64::total_cmp);
    let secs = span.as_secs_f64().max(1e-3);
    Figures {
        sent,
        deliveries: latencies.len(),
        throughput: latencies.len() as f64 / secs,
        p50: percentile(&latencies, 50.0),
        p95: percentile(&latencies, 95.0),
        p99: percentile(&latencies, 99.0),
    }
}

/// One message sent during the run.
pub(crate) struct Sent {
    pub(crate) room: usize,
    /// The Matrix user (Matrix to Gitter) or Gitter poster (Gitter to Matrix).
    pub(crate) author: usize,
    pub(crate) at_ms: u64,
}

/// Runs the load and returns the report. Progress goes to stderr.
pub async fn run(options: LoadOptions) -> Result<LoadReport, WorldError> {
    let (world, rss_before) = start_world(
        options.users,
        options.rooms,
        options.bridge_bin.as_deref(),
        options.faye,
    )
    .await?;
    let result = drive(&world, &options, rss_before).await;
    world.shutdown().await;
    result
}

/// A load world: the fakes seeded with `users` Matrix and Gitter users in `rooms` rooms,
/// without rate limits (a load measures the bridge, not Gitter's 100 requests a minute), and
/// the bridge: the binary `bridge_bin` as its own process, or inside this one. Also returns
/// this process's resident memory before the bridge started, MiB.
pub(crate) async fn start_world(
    users: usize,
    rooms: usize,
    bridge_bin: Option<&std::path::Path>,
    faye: bool,
) -> Result<(World, f64), WorldError> {
    let world_options = WorldOptions {
        faye,
        gitter_seed: seed(users, rooms),
        gitter_rate_limit: 1_000_000,
        bridge_requests_per_minute: 1_000_000,
        ..WorldOptions::default()
    };
    let mut world = World::without_bridge(world_options).await?;
    let (rss_before, _) = rss_mib();
    match bridge_bin {
        Some(bin) => {
            world
                .start_bridge_process(bin, Duration::from_secs(60))
                .await?
        }
        None => world.start_bridge().await?,
    }
    Ok((world, rss_before))
}

/// Gitter user `poster(author)` posts `body` in room `room`; the post is recorded in `sent`
/// with its time on the fake Gitter's clock.
pub(crate) fn post(
    w: &World,
    sent: &mut HashMap<String, Sent>,
    room: usize,
    author: usize,
    body: String,
) -> Result<(), WorldError> {
    let at_ms = w.gitter.now_ms();
    w.gitter
        .post_message(&room_uri(room), &poster(author), &body)
        .map_err(|e| WorldError::Step(format!("Gitter post: {e:?}")))?;
    sent.insert(
        body,
        Sent {
            room,
            author,
            at_ms,
        },
    );
    Ok(())
}

/// The Matrix users of a load world, each logged in, and their portals by (user, room);
/// returns once every portal exists and every room's stream listens.
pub(crate) async fn prepare(
    w: &World,
    users: usize,
    rooms: usize,
) -> Result<(Vec<Human>, HashMap<(usize, usize), String>), WorldError> {
    let started = Instant::now();
    eprintln!(
        "load: logging in {users} users to {rooms} rooms ({} portals)",
        users * rooms
    );
    let mut humans = Vec::new();
    for i in 0..users {
        let h = w.human(&user(i))?;
        let dm = w.open_dm(&h).await?;
        w.login(&h, &dm, &user(i)).await?;
        humans.push(h);
    }
    let mut portals: HashMap<(usize, usize), String> = HashMap::new();
    let deadline = Instant::now() + WAIT * 3;
    while portals.len() < users * rooms {
        for (u, h) in humans.iter().enumerate() {
            w.accept_invites(h)?;
            for r in 0..rooms {
                if let Some(p) = w.portal_named(h, &room_uri(r)) {
                    portals.insert((u, r), p);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(WorldError::Timeout(format!(
                "{} of {} portals",
                portals.len(),
                users * rooms
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in 0..rooms {
        crate::demo::wait_listening(w, &room_uri(r)).await?;
    }
    eprintln!("load: ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok((humans, portals))
}

async fn drive(w: &World, o: &LoadOptions, rss_before: f64) -> Result<LoadReport, WorldError> {
    let (humans, portals) = prepare(w, o.users, o.rooms).await?;
    eprintln!(
        "load: sending {:.0} msg/s for {:.0}s",
        o.rate,
        o.duration.as_secs_f64()
    );
    let process_at_start = w.bridge_pid().and_then(ProcessFigures::of);
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut g2m: HashMap<String, Sent> = HashMap::new();
    let mut m2g: HashMap<String, Sent> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(0.001));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let send_start = Instant::now();
    let mut n = 0usize;
    while send_start.elapsed() < o.duration {
        ticker.tick().await;
        let room = rng.random_range(0..o.rooms);
        let author = rng.random_range(0..o.users);
        if n.is_multiple_of(2) {
            post(w, &mut g2m, room, author, format!("load g2m {n}"))?;
        } else {
            let body = format!("load m2g {n}");
            let at_ms = w.hs.now_ms();
            w.hs.send_text(&humans[author].user_id, &portals[&(author, room)], &body)
                .map_err(|e| WorldError::Step(format!("Matrix send: {e:?}")))?;
            m2g.insert(
                body,
                Sent {
                    room,
                    author,
                    at_ms,
                },
            );
        }
        n += 1;
    }
    eprintln!("load: sent {n} messages; waiting for deliveries");

    // Expected deliveries: each Gitter message in every portal of its room; each Matrix
    // message once on Gitter and once in each other user's portal.
    let expected = g2m.len() * o.users + m2g.len() * o.users;
    let settle_deadline = Instant::now() + o.settle;
    let server = w.hs.server_name();
    let mut seen;
    loop {
        seen = Observed::collect(w, &humans, &portals, o.rooms);
        if seen.count(&g2m, &m2g) >= expected || Instant::now() > settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let span = send_start.elapsed();

    let mut problems = Vec::new();
    let mut g2m_lat = Vec::new();
    for (body, sent) in &g2m {
        for u in 0..o.users {
            let copies =
                seen.portal_copies(u, sent.room, body, &ghost(&server, &poster(sent.author)));
            match copies.as_slice() {
                [ts] => g2m_lat.push(ts.saturating_sub(sent.at_ms) as f64),
                other => problems.push(format!(
                    "{body:?}: {} copies in {}'s portal of {}",
                    other.len(),
                    user(u),
                    room_uri(sent.room)
                )),
            }
        }
    }
    let mut m2g_lat = Vec::new();
    let mut fanout = 0usize;
    for (body, sent) in &m2g {
        match seen
            .gitter_copies(sent.room, body, &user(sent.author))
            .as_slice()
        {
            [ts] => m2g_lat.push(ts.saturating_sub(sent.at_ms) as f64),
            other => problems.push(format!(
                "{body:?}: {} copies on Gitter in {}",
                other.len(),
                room_uri(sent.room)
            )),
        }
        for u in (0..o.users).filter(|u| *u != sent.author) {
            let copies =
                seen.portal_copies(u, sent.room, body, &ghost(&server, &user(sent.author)));
            if copies.len() == 1 {
                fanout += 1;
            } else {
                problems.push(format!(
                    "{body:?}: {} copies in {}'s portal of {}",
                    copies.len(),
                    user(u),
                    room_uri(sent.room)
                ));
            }
        }
        let echo = seen.portal_copies(
            sent.author,
            sent.room,
            body,
            &ghost(&server, &user(sent.author)),
        );
        if !echo.is_empty() {
            problems.push(format!("{body:?} echoed back to its author"));
        }
    }
    let g2m_figures = figures(g2m.len(), g2m_lat, span);
    let m2g_figures = figures(m2g.len(), m2g_lat, span);
    eprintln!(
        "load: {} Gitter->Matrix deliveries, {} Matrix->Gitter posts, {fanout} fan-out copies, {} problems",
        g2m_figures.deliveries,
        m2g_figures.deliveries,
        problems.len()
    );

    // The baseline: the Matrix PUTs the bridge made for Gitter messages, straight to the
    // homeserver, at the same pace.
    let puts = g2m_figures.deliveries + fanout;
    // Ghosts known to be in each portal: the posters whose messages it received.
    let pairs: Vec<(String, String)> = g2m
        .values()
        .flat_map(|sent| {
            (0..o.users).map(|u| {
                (
                    portals[&(u, sent.room)].clone(),
                    ghost(&server, &poster(sent.author)),
                )
            })
        })
        .collect();
    let process_at_end = w.bridge_pid().and_then(ProcessFigures::of);
    let readers = (
        w.gitter.stream_count(None),
        w.gitter.with_state(|s| s.faye_clients()),
    );
    let baseline = baseline(w, &pairs, puts, span).await?;
    let (_, peak) = rss_mib();
    Ok(LoadReport {
        options: o.clone(),
        g2m: g2m_figures,
        m2g: m2g_figures,
        baseline,
        problems,
        rss_before_bridge_mib: rss_before,
        peak_rss_mib: peak,
        bridge_process: process_at_start.zip(process_at_end),
        readers,
    })
}

/// The ghost of a Gitter user with the default template.
pub(crate) fn ghost(server: &str, username: &str) -> String {
    format!("@gitter_{username}:{server}")
}

/// What the fakes hold after the run: per (user, room) portal, body -> [(sender, ts)]; per
/// Gitter room, text -> [(author, sent)].
pub(crate) struct Observed {
    portals: HashMap<(usize, usize), Copies>,
    gitter: HashMap<usize, Copies>,
}

/// Message body -> every copy's (sender, timestamp ms).
type Copies = HashMap<String, Vec<(String, u64)>>;

impl Observed {
    pub(crate) fn collect(
        w: &World,
        humans: &[Human],
        portals: &HashMap<(usize, usize), String>,
        rooms: usize,
    ) -> Observed {
        let mut out = Observed {
            portals: HashMap::new(),
            gitter: HashMap::new(),
        };
        for ((u, r), room) in portals {
            let entry = out.portals.entry((*u, *r)).or_default();
            for m in w.hs.messages_seen(&humans[*u].user_id, room) {
                if let Some(body) = m.body.filter(|b| b.starts_with("load ")) {
                    // When the homeserver took it: the bridge stamps its copies with the Gitter time.
                    entry.entry(body).or_default().push((m.sender, m.received));
                }
            }
        }
        for r in 0..rooms {
            let entry = out.gitter.entry(r).or_default();
            let uri = room_uri(r);
            w.gitter.with_state(|s| {
                let Some(id) = s.room_by_uri(&uri).map(|room| room.id.clone()) else {
                    return;
                };
                for m in s.room_messages(&id) {
                    if m.text.starts_with("load ") {
                        let author = s
                            .user(&m.from_user)
                            .map(|u| u.username.clone())
                            .unwrap_or_default();
                        entry
                            .entry(m.text.clone())
                            .or_default()
                            .push((author, m.sent_ms));
                    }
                }
            });
        }
        out
    }

    /// Deliveries so far: ghost copies in portals plus Gitter copies of Matrix messages.
    fn count(&self, g2m: &HashMap<String, Sent>, m2g: &HashMap<String, Sent>) -> usize {
        let in_portals: usize = self
            .portals
            .values()
            .flat_map(|bodies| bodies.iter())
            .filter(|(b, _)| g2m.contains_key(*b) || m2g.contains_key(*b))
            .map(|(_, v)| v.iter().filter(|(s, _)| s.starts_with("@gitter_")).count())
            .sum();
        let on_gitter: usize = self
            .gitter
            .values()
            .flat_map(|texts| texts.iter())
            .filter(|(t, _)| m2g.contains_key(*t))
            .map(|(_, v)| v.len())
            .sum();
        in_portals + on_gitter
    }

    pub(crate) fn portal_copies(
        &self,
        user: usize,
        room: usize,
        body: &str,
        sender: &str,
    ) -> Vec<u64> {
        self.portals
            .get(&(user, room))
            .and_then(|b| b.get(body))
            .map(|v| {
                v.iter()
                    .filter(|(s, _)| s == sender)
                    .map(|(_, t)| *t)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn gitter_copies(&self, room: usize, text: &str, author: &str) -> Vec<u64> {
        self.gitter
            .get(&room)
            .and_then(|t| t.get(text))
            .map(|v| {
                v.iter()
                    .filter(|(a, _)| a == author)
                    .map(|(_, t)| *t)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends `count` message PUTs as ghosts into portals (`pairs` of room and ghost), paced over
/// `span`, straight to the fake homeserver with the as_token, like the bridge does.
pub(crate) async fn baseline(
    w: &World,
    pairs: &[(String, String)],
    count: usize,
    span: Duration,
) -> Result<Figures, WorldError> {
    if pairs.is_empty() {
        return Ok(Figures::default());
    }
    let config = w.config()?;
    let token = config.as_token.expose().to_owned();
    let http = reqwest::Client::new();
    let base = w.hs.base_url.clone();
    let pace = span.div_f64(count.max(1) as f64);
    let mut ticker = tokio::time::interval(pace.max(Duration::from_micros(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..count {
        ticker.tick().await;
        let (room, sender) = &pairs[i % pairs.len()];
        let url = format!(
            "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/baseline-{i}?user_id={}",
            sender.replace('@', "%40").replace(':', "%3A")
        );
        let request = http
            .put(url)
            .bearer_auth(&token)
            .json(&json!({"msgtype": "m.text", "body": format!("baseline {i}")}));
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = request.send().await.is_ok_and(|r| r.status().is_success());
            (ok, t.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((true, ms)) => latencies.push(ms),
            _ => failed += 1,
        }
    }
    if failed > 0 {
        return Err(WorldError::Step(format!(
            "{failed} of {count} baseline PUTs failed"
        )));
    }
    Ok(figures(count, latencies, start.elapsed()))
}

/// Prints the report for people, then the JSON line.
pub fn print(report: &LoadReport) {
    let line = |name: &str, f: &Figures| {
        println!(
            "{name:<26} sent {:>6}  deliveries {:>7}  {:>9.1}/s  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
            f.sent, f.deliveries, f.throughput, f.p50, f.p95, f.p99
        );
    };
    line("Gitter -> Matrix", &report.g2m);
    line("Matrix -> Gitter", &report.m2g);
    line("baseline: direct PUTs", &report.baseline);
    println!(
        "reading Gitter: {} HTTP stream(s), {} realtime client(s)",
        report.readers.0, report.readers.1
    );
    match report.bridge_process {
        Some((start, end)) => println!(
            "bridge process: {:.2} CPU s while sending and settling, {:.1} MiB resident \
             ({:.1} MiB when sending began, {:.1} MiB peak)",
            end.cpu_s - start.cpu_s,
            end.rss_mib,
            start.rss_mib,
            end.peak_rss_mib
        ),
        None => println!(
            "memory: {:.1} MiB before the bridge started (fakes), {:.1} MiB peak (fakes + \
             bridge in one process; the fakes keep every event, so most of the growth is theirs)",
            report.rss_before_bridge_mib, report.peak_rss_mib
        ),
    }
    if report.exactly_once() {
        println!("every message arrived exactly once");
    } else {
        println!("{} delivery problems:", report.problems.len());
        for p in report.problems.iter().take(20) {
            println!("  {p}");
        }
    }
    println!("{}", report.json());
}
