//! `bridge-sim chaos`: a fault campaign against the real `gitter-bridge` binary.
//!
//! The bridge runs as its own process (`gitter-bridge run`, started from the binary beside
//! `bridge-sim` unless `--bridge-bin` says otherwise) between the fake homeserver and the fake
//! Gitter, which run in this process. Matrix users, each logged in to their own Gitter account,
//! have a portal in every room; steady traffic flows both ways the whole time: Gitter-only
//! posters write on Gitter, the Matrix users write in their portals. One fault after another is
//! applied for a while and then lifted, and the campaign waits until everything sent so far
//! has arrived (the recovery time). The faults are the ones a deployment meets: a homeserver
//! answering 503 or refusing connections for minutes, Gitter 5xx storms and answers slower than
//! the bridge's deadline, answers lost after the request was stored (on both sides), streams
//! that flap or fall silent, hostile answers (huge bodies, endless lines, a slow drip),
//! SIGKILLs at random moments, SIGTERMs, and a store whose filesystem fills up.
//!
//! At the end every message is checked: each Gitter message once in every portal of its room,
//! each Matrix message once on Gitter and once in every other portal of its room, none echoed,
//! and in order (per portal, Gitter's order of the room; on Gitter, per author, the order they
//! were sent). The report has one row per fault (messages sent during it, lost, duplicated,
//! reordered, recovery time, the bridge's peak resident memory) and one JSON line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fake_gitter::Hostile;
use crate::fake_hs::{CsRoute, FaultLimit, Human};
use crate::load::ghost;
use crate::world::{WAIT, World, WorldError, WorldOptions};

/// What to run.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// The shortened campaign (outages of seconds, about 10 kills, a few minutes in all).
    pub quick: bool,
    /// Seed of every random choice (who sends where, when the kills fall).
    pub seed: u64,
    /// The `gitter-bridge` binary.
    pub bridge_bin: PathBuf,
    /// Matrix users (each logged in as their own Gitter user).
    pub users: usize,
    /// Gitter rooms, everybody in every room.
    pub rooms: usize,
    /// Messages per second, both directions together.
    pub rate: f64,
}

impl ChaosOptions {
    /// The defaults, with the binary found beside the running `bridge-sim`.
    pub fn new(quick: bool) -> ChaosOptions {
        ChaosOptions {
            quick,
            seed: 12,
            bridge_bin: default_bridge_bin(),
            users: 2,
            rooms: 2,
            rate: 4.0,
        }
    }
}

/// `gitter-bridge` in the directory of the running executable (cargo puts both binaries of
/// the workspace there).
pub fn default_bridge_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("gitter-bridge")))
        .unwrap_or_else(|| PathBuf::from("gitter-bridge"))
}

/// The bridge's deadlines in chaos runs, short so that the faults outlast them quickly.
const GITTER_REQUEST_TIMEOUT_SECS: u64 = 5;
const STREAM_IDLE_TIMEOUT_SECS: u64 = 8;

/// The faults of the campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Every Client-Server call answers 503.
    HsUnavailable,
    /// The homeserver refuses connections.
    HsRefusing,
    /// The homeserver stores sends and room creations, then closes without answering.
    HsLostAnswers,
    /// Gitter answers 5xx to everything.
    GitterErrors,
    /// Gitter answers later than the bridge's deadline.
    GitterSlow,
    /// Gitter stores posts, then closes without answering.
    GitterLostPosts,
    /// Streams answer 200 and close at once.
    StreamFlapping,
    /// Streams answer 200 and then say nothing, not even heartbeats.
    StreamSilent,
    /// API answers of a GiB.
    HugeBodies,
    /// Stream lines that never end.
    EndlessLines,
    /// API answers a byte at a time.
    SlowDrip,
    /// SIGKILL at random moments, restarted at once.
    Kills,
    /// SIGTERM, then a restart.
    Terms,
    /// The store's filesystem fills up.
    DiskFull,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::HsUnavailable => "homeserver 503",
            Fault::HsRefusing => "homeserver refuses connections",
            Fault::HsLostAnswers => "homeserver loses answers",
            Fault::GitterErrors => "Gitter 5xx storm",
            Fault::GitterSlow => "Gitter slower than the deadline",
            Fault::GitterLostPosts => "Gitter loses post answers",
            Fault::StreamFlapping => "streams flap",
            Fault::StreamSilent => "streams fall silent",
            Fault::HugeBodies => "huge answers",
            Fault::EndlessLines => "endless stream lines",
            Fault::SlowDrip => "slow drip",
            Fault::Kills => "SIGKILL",
            Fault::Terms => "SIGTERM",
            Fault::DiskFull => "disk full",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Default)]
pub struct PhaseReport {
    /// The fault.
    pub name: String,
    /// How long it lasted.
    pub duration: Duration,
    /// Messages sent while it lasted (both directions).
    pub sent: usize,
    /// Expected deliveries of those messages that never happened.
    pub lost: usize,
    /// Deliveries that happened more than once (echoes included).
    pub duplicated: usize,
    /// Messages out of order.
    pub reordered: usize,
    /// From lifting the fault to everything sent so far having arrived.
    pub recovery: Option<Duration>,
    /// The bridge process's peak resident memory while it lasted, MiB.
    pub peak_rss_mib: f64,
    /// Kills (SIGKILL) during it.
    pub kills: usize,
    /// Why it was skipped, when it was.
    pub skipped: Option<String>,
}

/// The outcome of a campaign.
#[derive(Clone, Debug, Default)]
pub struct ChaosReport {
    /// One row per fault.
    pub phases: Vec<PhaseReport>,
    /// The first problems found, for the log.
    pub problems: Vec<String>,
}

impl ChaosReport {
    fn total(&self, f: impl Fn(&PhaseReport) -> usize) -> usize {
        self.phases.iter().map(f).sum()
    }

    /// Whether every message arrived exactly once and in order, and every fault healed by
    /// itself within the campaign's patience.
    pub fn clean(&self) -> bool {
        self.total(|p| p.lost) == 0
            && self.total(|p| p.duplicated) == 0
            && self.total(|p| p.reordered) == 0
            && self
                .phases
                .iter()
                .all(|p| p.skipped.is_some() || p.recovery.is_some())
    }

    /// The table, for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6} {:>10} {:>9}\n",
            "fault", "for s", "sent", "lost", "dup", "reord", "kills", "recovery s", "peak MiB"
        );
        for p in &self.phases {
            if let Some(why) = &p.skipped {
                out += &format!("{:<34} skipped: {why}\n", p.name);
                continue;
            }
            out += &format!(
                "{:<34} {:>7.0} {:>6} {:>5} {:>5} {:>5} {:>6} {:>10} {:>9.1}\n",
                p.name,
                p.duration.as_secs_f64(),
                p.sent,
                p.lost,
                p.duplicated,
                p.reordered,
                p.kills,
                p.recovery
                    .map_or_else(|| "never".to_owned(), |r| format!("{:.1}", r.as_secs_f64())),
                p.peak_rss_mib,
            );
        }
        out
    }

    /// The one-line JSON summary.
    pub fn json(&self) -> Value {
        let peak = self
            .phases
            .iter()
            .map(|p| p.peak_rss_mib)
            .fold(0.0, f64::max);
        json!({
            "lost": self.total(|p| p.lost),
            "duplicated": self.total(|p| p.duplicated),
            "reordered": self.total(|p| p.reordered),
            "kills": self.total(|p| p.kills),
            "sent": self.total(|p| p.sent),
            "peak_rss_mib": (peak * 10.0).round() / 10.0,
            "phases": self.phases.iter().map(|p| json!({
                "fault": p.name,
                "duration_s": p.duration.as_secs(),
                "sent": p.sent,
                "lost": p.lost,
                "duplicated": p.duplicated,
                "reordered": p.reordered,
                "kills": p.kills,
                "recovery_s": p.recovery.map(|r| (r.as_secs_f64() * 10.0).round() / 10.0),
                "peak_rss_mib": (p.peak_rss_mib * 10.0).round() / 10.0,
                "skipped": p.skipped,
            })).collect::<Vec<_>>(),
        })
    }
}

fn user(i: usize) -> String {
    format!("c{i:02}")
}

fn poster(i: usize) -> String {
    format!("p{i:02}")
}

fn room_uri(i: usize) -> String {
    format!("chaos/room-{i:02}")
}

/// A seed with the campaign's users and rooms.
fn seed(users: usize, rooms: usize) -> String {
    let people: Vec<String> = (0..users).flat_map(|i| [user(i), poster(i)]).collect();
    let rooms: Vec<String> = (0..rooms).map(room_uri).collect();
    crate::load::everyone_everywhere(&people, &rooms)
}

/// One message of the campaign.
#[derive(Clone, Debug)]
struct Sent {
    phase: usize,
    room: usize,
    author: usize,
    /// Matrix to Gitter (else Gitter to Matrix).
    from_matrix: bool,
}

/// The world, the users and what was sent.
struct Campaign {
    w: World,
    o: ChaosOptions,
    humans: Vec<Human>,
    portals: HashMap<(usize, usize), String>,
    sent: BTreeMap<String, Sent>,
    rng: StdRng,
    n: usize,
    /// Kept mounted for the campaign when the store is on a small tmpfs.
    tmpfs: Option<PathBuf>,
}

/// Runs the campaign. Progress goes to stderr.
pub async fn run(o: ChaosOptions) -> Result<ChaosReport, WorldError> {
    if !o.bridge_bin.exists() {
        return Err(WorldError::Setup(format!(
            "no gitter-bridge binary at {} (build it: cargo build --release --bin gitter-bridge, \
             or pass --bridge-bin)",
            o.bridge_bin.display()
        )));
    }
    let dir = tempfile::tempdir().map_err(|e| WorldError::Setup(e.to_string()))?;
    // The store on a small filesystem of its own, so the disk-full fault can fill it without
    // touching the machine's disk.
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).map_err(|e| WorldError::Setup(e.to_string()))?;
    let tmpfs = mount_tmpfs(&store_dir, 64).then(|| store_dir.clone());
    let world_options = WorldOptions {
        gitter_seed: seed(o.users, o.rooms),
        gitter_rate_limit: 1_000_000,
        bridge_requests_per_minute: 1_000_000,
        dir: Some(dir.path().join("bridge")),
        bridge_extra: "retry_max_secs = 5\ncatch_up_retry_secs = 2\n".to_owned(),
        gitter_extra: format!(
            "request_timeout_secs = {GITTER_REQUEST_TIMEOUT_SECS}\n\
             stream_idle_timeout_secs = {STREAM_IDLE_TIMEOUT_SECS}\n"
        ),
        store_path: Some(store_dir.join("gitter-bridge.redb")),
        ..WorldOptions::default()
    };
    let mut w = World::without_bridge(world_options).await?;
    w.start_bridge_process(&o.bridge_bin, WAIT).await?;
    let mut c = Campaign {
        w,
        rng: StdRng::seed_from_u64(o.seed),
        o,
        humans: Vec::new(),
        portals: HashMap::new(),
        sent: BTreeMap::new(),
        n: 0,
        tmpfs,
    };
    let result = c.campaign().await;
    eprintln!(
        "chaos: the bridge's log is {}",
        c.w.dir.join("bridge.log").display()
    );
    let w = c.w;
    w.shutdown().await;
    if let Some(mount) = &c.tmpfs {
        unmount(mount);
    }
    // Keep the files of a failed run for whoever looks into it.
    if !result.as_ref().is_ok_and(ChaosReport::clean) {
        let kept = dir.keep();
        eprintln!("chaos: files kept in {}", kept.display());
    }
    result
}

impl Campaign {
    async fn campaign(&mut self) -> Result<ChaosReport, WorldError> {
        self.setup().await?;
        let quick = self.o.quick;
        // (fault, how long it lasts)
        let secs =
            |full: u64, quick_secs: u64| Duration::from_secs(if quick { quick_secs } else { full });
        let schedule = [
            (Fault::HsUnavailable, secs(300, 20)),
            (Fault::HsRefusing, secs(300, 20)),
            (Fault::HsLostAnswers, secs(60, 10)),
            (Fault::GitterErrors, secs(120, 15)),
            (Fault::GitterSlow, secs(60, 15)),
            (Fault::GitterLostPosts, secs(60, 10)),
            (Fault::StreamFlapping, secs(60, 10)),
            (Fault::StreamSilent, secs(60, 15)),
            (Fault::HugeBodies, secs(30, 8)),
            (Fault::EndlessLines, secs(30, 10)),
            (Fault::SlowDrip, secs(30, 8)),
            (Fault::Kills, secs(100, 20)),
            (Fault::Terms, secs(30, 10)),
            (Fault::DiskFull, secs(30, 10)),
        ];
        let mut report = ChaosReport::default();
        // A calm first phase shows the traffic flows before anything breaks.
        report.phases.push(self.phase(0, None, secs(10, 5)).await?);
        for (fault, duration) in schedule {
            let index = report.phases.len();
            report
                .phases
                .push(self.phase(index, Some(fault), duration).await?);
        }
        self.final_check(&mut report).await;
        Ok(report)
    }

    async fn setup(&mut self) -> Result<(), WorldError> {
        let o = self.o.clone();
        eprintln!(
            "chaos: logging in {} users to {} rooms ({} portals), bridge process {}",
            o.users,
            o.rooms,
            o.users * o.rooms,
            self.w.bridge_pid().unwrap_or(0)
        );
        for i in 0..o.users {
            let h = self.w.human(&user(i))?;
            let dm = self.w.open_dm(&h).await?;
            self.w.login(&h, &dm, &user(i)).await?;
            self.humans.push(h);
        }
        let deadline = Instant::now() + WAIT * 3;
        while self.portals.len() < o.users * o.rooms {
            for (u, h) in self.humans.iter().enumerate() {
                self.w.accept_invites(h)?;
                for r in 0..o.rooms {
                    if let Some(p) = self.w.portal_named(h, &room_uri(r)) {
                        self.portals.insert((u, r), p);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(WorldError::Timeout(format!(
                    "{} of {} portals",
                    self.portals.len(),
                    o.users * o.rooms
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for r in 0..o.rooms {
            crate::demo::wait_listening(&self.w, &room_uri(r)).await?;
        }
        Ok(())
    }

    /// One message, in a random direction, room and author.
    fn send_one(&mut self, phase: usize) -> Result<(), WorldError> {
        let room = self.rng.random_range(0..self.o.rooms);
        let author = self.rng.random_range(0..self.o.users);
        let from_matrix = self.rng.random_bool(0.5);
        let n = self.n;
        self.n += 1;
        let body = if from_matrix {
            let body = format!("chaos {phase} m2g {n}");
            self.w
                .hs
                .send_text(
                    &self.humans[author].user_id,
                    &self.portals[&(author, room)],
                    &body,
                )
                .map_err(|e| WorldError::Step(format!("Matrix send: {e:?}")))?;
            body
        } else {
            let body = format!("chaos {phase} g2m {n}");
            self.w
                .gitter
                .post_message(&room_uri(room), &poster(author), &body)
                .map_err(|e| WorldError::Step(format!("Gitter post: {e:?}")))?;
            body
        };
        self.sent.insert(
            body,
            Sent {
                phase,
                room,
                author,
                from_matrix,
            },
        );
        Ok(())
    }

    /// Sends at the campaign's rate for `d`, keeping the bridge process alive (a bridge that
    /// exits on its own, as it does when its store cannot be written, is started again) and
    /// sampling its memory. With `kills`, SIGKILLs it that many times at random moments
    /// (spaced within the given range, the traffic going on) and starts it again at once,
    /// for as long as that takes. Returns (peak RSS MiB, kills).
    async fn traffic(
        &mut self,
        phase: usize,
        d: Duration,
        kills_wanted: Option<(usize, Duration, Duration)>,
    ) -> Result<(f64, usize), WorldError> {
        let interval = Duration::from_secs_f64(1.0 / self.o.rate.max(0.1));
        let end = Instant::now() + d;
        let mut peak: f64 = 0.0;
        let mut kills = 0;
        let kill_every = kills_wanted.map(|(_, lo, hi)| (lo, hi));
        let mut next_kill = kill_every.map(|(lo, hi)| Instant::now() + self.between(lo, hi));
        let more_kills = |kills: usize| kills_wanted.is_some_and(|(n, _, _)| kills < n);
        while Instant::now() < end || more_kills(kills) {
            self.send_one(phase)?;
            if let Some(rss) = self.w.bridge_rss_mib() {
                peak = peak.max(rss);
            }
            if let Some(status) = self.w.bridge_process_exited() {
                eprintln!("chaos: the bridge exited ({status}); starting it again");
                self.restart().await?;
            }
            if let (Some(at), Some((lo, hi))) = (next_kill, kill_every)
                && Instant::now() >= at
                && more_kills(kills)
            {
                self.w.kill_bridge_process().await;
                kills += 1;
                self.restart().await?;
                next_kill = Some(Instant::now() + self.between(lo, hi));
            }
            tokio::time::sleep(interval).await;
        }
        Ok((peak, kills))
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let ms = self
            .rng
            .random_range(lo.as_millis() as u64..=hi.as_millis() as u64);
        Duration::from_millis(ms)
    }

    async fn restart(&mut self) -> Result<(), WorldError> {
        let bin = self.o.bridge_bin.clone();
        self.w.start_bridge_process(&bin, WAIT).await
    }

    async fn apply(&mut self, fault: Fault, d: Duration) -> Result<Option<String>, WorldError> {
        let w = &self.w;
        match fault {
            Fault::HsUnavailable => w.hs.fail_cs_for(d, 503),
            Fault::HsRefusing => w.hs.refuse_connections_for(d).await,
            Fault::HsLostAnswers => {
                w.hs.lose_answers(u32::MAX, &[CsRoute::Send, CsRoute::CreateRoom])
            }
            Fault::GitterErrors => w.gitter.fail_for(d, 503),
            Fault::GitterSlow => w
                .gitter
                .set_delay(Duration::from_secs(GITTER_REQUEST_TIMEOUT_SECS + 3)),
            Fault::GitterLostPosts => w.gitter.lose_send_answers(u32::MAX),
            Fault::StreamFlapping => {
                w.gitter.flap_streams(FaultLimit::For(d));
                w.gitter.drop_streams(None);
            }
            Fault::StreamSilent => {
                w.gitter.silence_streams_for(d);
                w.gitter.drop_streams(None);
            }
            Fault::HugeBodies => w.gitter.hostile(
                Hostile::HugeBody {
                    bytes: 1 << 30,
                    status: 500,
                },
                FaultLimit::For(d),
            ),
            Fault::EndlessLines => {
                w.gitter.hostile(Hostile::EndlessLine, FaultLimit::For(d));
                w.gitter.drop_streams(None);
            }
            Fault::SlowDrip => w.gitter.hostile(
                Hostile::SlowDrip {
                    chunk_bytes: 1,
                    interval_ms: 100,
                },
                FaultLimit::For(d),
            ),
            Fault::Kills | Fault::Terms => {}
            Fault::DiskFull => {
                let Some(mount) = self.tmpfs.clone() else {
                    return Ok(Some(
                        "no tmpfs could be mounted here for the store (needs root and mount \
                         rights)"
                            .to_owned(),
                    ));
                };
                fill(&mount);
            }
        }
        Ok(None)
    }

    fn lift(&mut self) {
        self.w.hs.clear_faults();
        self.w.gitter.clear_faults();
        if let Some(mount) = &self.tmpfs {
            let _ = std::fs::remove_file(mount.join("filler"));
        }
    }

    async fn phase(
        &mut self,
        index: usize,
        fault: Option<Fault>,
        d: Duration,
    ) -> Result<PhaseReport, WorldError> {
        let name = fault.map_or("no fault (baseline)", Fault::name).to_owned();
        eprintln!("chaos: {name} for {:.0}s", d.as_secs_f64());
        let mut row = PhaseReport {
            name,
            duration: d,
            ..PhaseReport::default()
        };
        let before = self.sent.len();
        if let Some(f) = fault
            && let Some(why) = self.apply(f, d).await?
        {
            eprintln!("chaos: skipped: {why}");
            row.skipped = Some(why);
            return Ok(row);
        }
        let (peak, kills) = match fault {
            Some(Fault::Kills) => {
                // At random moments: right after a restart (the outbox being replayed), in
                // the middle of a catch-up, between a send and its answer.
                let kills = if self.o.quick { 10 } else { 50 };
                let spacing = (Duration::from_millis(200), Duration::from_millis(4000));
                self.traffic(index, d, Some((kills, spacing.0, spacing.1)))
                    .await?
            }
            Some(Fault::Terms) => {
                let mut peak: f64 = 0.0;
                for _ in 0..3 {
                    let (p, _) = self.traffic(index, d / 3, None).await?;
                    peak = peak.max(p);
                    if !self.w.term_bridge_process(Duration::from_secs(15)).await {
                        eprintln!("chaos: SIGTERM did not stop the bridge within 15 s");
                    }
                    self.restart().await?;
                }
                (peak, 0)
            }
            _ => self.traffic(index, d, None).await?,
        };
        row.peak_rss_mib = peak;
        row.kills = kills;
        self.lift();
        row.sent = self.sent.len() - before;
        let lifted = Instant::now();
        // Wait for everything sent so far, keeping the bridge alive and measured.
        let patience = if self.o.quick {
            Duration::from_secs(90)
        } else {
            Duration::from_secs(600)
        };
        while Instant::now() - lifted < patience {
            if let Some(rss) = self.w.bridge_rss_mib() {
                row.peak_rss_mib = row.peak_rss_mib.max(rss);
            }
            if self.w.bridge_process_exited().is_some() {
                self.restart().await?;
            }
            if self.missing() == 0 {
                row.recovery = Some(lifted.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "chaos: {} sent, recovered in {}",
            row.sent,
            row.recovery.map_or_else(
                || "never".to_owned(),
                |r| format!("{:.1}s", r.as_secs_f64())
            )
        );
        Ok(row)
    }

    /// Expected deliveries not seen yet (quick to compute: counts only).
    fn missing(&self) -> usize {
        let seen = Observed::collect(self);
        let mut missing = 0;
        for (body, s) in &self.sent {
            if s.from_matrix {
                if seen.on_gitter(s.room, body).is_empty() {
                    missing += 1;
                }
                for u in (0..self.o.users).filter(|u| *u != s.author) {
                    if seen.in_portal(u, s.room, body).is_empty() {
                        missing += 1;
                    }
                }
            } else {
                for u in 0..self.o.users {
                    if seen.in_portal(u, s.room, body).is_empty() {
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    /// Counts every problem, by the phase of the message it concerns.
    async fn final_check(&mut self, report: &mut ChaosReport) {
        // The last phase waited for recovery; give stragglers a moment more.
        for _ in 0..20 {
            if self.missing() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let seen = Observed::collect(self);
        let server = self.w.hs.server_name();
        for (body, s) in &self.sent {
            let expect =
                |report: &mut ChaosReport, copies: Vec<String>, want: &str, place: String| {
                    match copies.iter().filter(|c| *c == want).count() {
                        0 => problem(
                            report,
                            s.phase,
                            Problem::Lost,
                            format!("{body:?} never reached {place}"),
                        ),
                        1 => {}
                        n => problem(
                            report,
                            s.phase,
                            Problem::Duplicated,
                            format!("{body:?}: {n} copies in {place}"),
                        ),
                    }
                };
            if s.from_matrix {
                expect(
                    report,
                    seen.on_gitter(s.room, body),
                    &user(s.author),
                    format!("Gitter {}", room_uri(s.room)),
                );
                for u in 0..self.o.users {
                    let copies = seen.in_portal(u, s.room, body);
                    if u == s.author {
                        let echoes = copies
                            .iter()
                            .filter(|c| **c == ghost(&server, &user(s.author)))
                            .count();
                        for _ in 0..echoes {
                            problem(
                                report,
                                s.phase,
                                Problem::Duplicated,
                                format!("{body:?} echoed to its author"),
                            );
                        }
                    } else {
                        expect(
                            report,
                            copies,
                            &ghost(&server, &user(s.author)),
                            format!("{}'s portal of {}", user(u), room_uri(s.room)),
                        );
                    }
                }
            } else {
                for u in 0..self.o.users {
                    expect(
                        report,
                        seen.in_portal(u, s.room, body),
                        &ghost(&server, &poster(s.author)),
                        format!("{}'s portal of {}", user(u), room_uri(s.room)),
                    );
                }
            }
        }
        // Order: every portal shows its room's messages in Gitter's order; Gitter has each
        // author's Matrix messages in the order they were sent (the campaign's numbers).
        for r in 0..self.o.rooms {
            let gitter_order: HashMap<&str, usize> = seen
                .gitter_order
                .get(&r)
                .map(|v| v.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect())
                .unwrap_or_default();
            for u in 0..self.o.users {
                let Some(timeline) = seen.portal_order.get(&(u, r)) else {
                    continue;
                };
                let mut last: Option<usize> = None;
                for body in timeline {
                    let Some(&at) = gitter_order.get(body.as_str()) else {
                        continue;
                    };
                    if last.is_some_and(|l| at < l) {
                        let phase = self.sent.get(body).map_or(0, |s| s.phase);
                        problem(
                            report,
                            phase,
                            Problem::Reordered,
                            format!("{body:?} out of Gitter's order in {}'s portal", user(u)),
                        );
                    }
                    last = Some(last.map_or(at, |l| l.max(at)));
                }
            }
            let mut last_by_author: HashMap<usize, usize> = HashMap::new();
            for text in seen.gitter_order.get(&r).into_iter().flatten() {
                let Some(s) = self.sent.get(text).filter(|s| s.from_matrix) else {
                    continue;
                };
                let n = number(text);
                let last = last_by_author.entry(s.author).or_insert(0);
                if n < *last {
                    problem(
                        report,
                        s.phase,
                        Problem::Reordered,
                        format!("{text:?} posted to Gitter after a later message of its author"),
                    );
                }
                *last = (*last).max(n);
            }
        }
    }
}

/// The kinds of problem a message can have.
#[derive(Clone, Copy)]
enum Problem {
    Lost,
    Duplicated,
    Reordered,
}

/// Counts a problem against the phase its message was sent in, and keeps the first texts.
fn problem(report: &mut ChaosReport, phase: usize, kind: Problem, text: String) {
    if let Some(row) = report.phases.get_mut(phase) {
        match kind {
            Problem::Lost => row.lost += 1,
            Problem::Duplicated => row.duplicated += 1,
            Problem::Reordered => row.reordered += 1,
        }
    }
    if report.problems.len() < 50 {
        report.problems.push(text);
    }
}

/// The campaign number at the end of a body.
fn number(body: &str) -> usize {
    body.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What the fakes hold: per portal, body -> senders and the order of bodies; per Gitter
/// room, text -> authors and the order of texts.
struct Observed {
    portals: HashMap<(usize, usize), HashMap<String, Vec<String>>>,
    portal_order: HashMap<(usize, usize), Vec<String>>,
    gitter: HashMap<usize, HashMap<String, Vec<String>>>,
    gitter_order: HashMap<usize, Vec<String>>,
}

impl Observed {
    fn collect(c: &Campaign) -> Observed {
        let mut out = Observed {
            portals: HashMap::new(),
            portal_order: HashMap::new(),
            gitter: HashMap::new(),
            gitter_order: HashMap::new(),
        };
        for ((u, r), room) in &c.portals {
            let bodies = out.portals.entry((*u, *r)).or_default();
            let order = out.portal_order.entry((*u, *r)).or_default();
            for m in c.w.hs.messages_seen(&c.humans[*u].user_id, room) {
                if let Some(body) = m.body.filter(|b| b.starts_with("chaos ")) {
                    if m.sender.starts_with("@gitter_") {
                        order.push(body.clone());
                    }
                    bodies.entry(body).or_default().push(m.sender);
                }
            }
        }
        for r in 0..c.o.rooms {
            let texts = out.gitter.entry(r).or_default();
            let order = out.gitter_order.entry(r).or_default();
            let uri = room_uri(r);
            c.w.gitter.with_state(|s| {
                let Some(id) = s.room_by_uri(&uri).map(|room| room.id.clone()) else {
                    return;
                };
                for m in s.room_messages(&id) {
                    if m.text.starts_with("chaos ") {
                        let author = s
                            .user(&m.from_user)
                            .map(|u| u.username.clone())
                            .unwrap_or_default();
                        order.push(m.text.clone());
                        texts.entry(m.text.clone()).or_default().push(author);
                    }
                }
            });
        }
        out
    }

    fn in_portal(&self, user: usize, room: usize, body: &str) -> Vec<String> {
        self.portals
            .get(&(user, room))
            .and_then(|b| b.get(body))
            .cloned()
            .unwrap_or_default()
    }

    fn on_gitter(&self, room: usize, text: &str) -> Vec<String> {
        self.gitter
            .get(&room)
            .and_then(|t| t.get(text))
            .cloned()
            .unwrap_or_default()
    }
}

/// Mounts a tmpfs of `mib` MiB on `dir`; false where the machine does not allow it.
fn mount_tmpfs(dir: &Path, mib: u64) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "chaos-store"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn unmount(dir: &Path) {
    let _ = std::process::Command::new("umount")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Fills the filesystem of `dir` with a filler file until a write fails.
fn fill(dir: &Path) {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(dir.join("filler")) else {
        return;
    };
    let block = vec![0u8; 1 << 20];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}
