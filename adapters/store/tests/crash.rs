//! Crash safety: a writer process is SIGKILLed at random moments, again and again, while it
//! commits the deterministic workload (single steps and group commits). After every kill the
//! file must reopen and load as exactly the state after some prefix of the committed steps
//! (never a partial step, never less than before).
//!
//! The writer is this test binary itself, re-executed with `WRITER_ENV` set, running only
//! `crash_writer_child` (which does nothing in a normal test run).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use gitter_bridge_core::Snapshot;
use gitter_bridge_store::{RedbStore, Store};

const WRITER_ENV: &str = "GITTER_BRIDGE_STORE_CRASH_WRITER";
const SEED_ENV: &str = "GITTER_BRIDGE_STORE_CRASH_SEED";
const KILLS: usize = 100;

/// The child: continue the workload from where the file is, forever (bounded by time, so a
/// parent that died cannot leave it running for long).
#[test]
fn crash_writer_child() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let mut store = RedbStore::open(&path).expect("writer: open");
    let mut next = numbered_progress(&store.load().expect("writer: load"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        // Group commits of 1 to 5 steps, so a kill can also land inside a multi-step commit.
        let batch = 1 + next % 5;
        let sets: Vec<_> = (next..next + batch).map(numbered_set).collect();
        store.apply(&sets).expect("writer: apply");
        next += batch;
    }
}

/// xorshift64*: enough randomness for kill delays, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn spawn_writer(path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

#[test]
fn a_killed_writer_leaves_exactly_a_committed_prefix() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bridge.redb");
    // The reference advances incrementally: progress never goes backwards.
    let mut expected = Snapshot::default();
    let mut expected_steps = 0;
    let mut progressed_rounds = 0;

    for round in 0..KILLS {
        let mut child = spawn_writer(&path);
        std::thread::sleep(Duration::from_millis(5 + rng.below(75)));
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("reap the writer");
        assert!(
            !status.success(),
            "round {round}: the writer ended before the kill: {status}"
        );

        let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        let loaded = store
            .load()
            .unwrap_or_else(|e| panic!("round {round}: load: {e}"));
        drop(store);
        let steps = numbered_progress(&loaded);
        assert!(
            steps >= expected_steps,
            "round {round}: committed steps were lost ({steps} < {expected_steps})"
        );
        if steps > expected_steps {
            progressed_rounds += 1;
        }
        while expected_steps < steps {
            expected.apply_set(&numbered_set(expected_steps));
            expected_steps += 1;
        }
        assert!(
            loaded == expected,
            "round {round}: the file is not the state after {steps} steps (a partial commit?)"
        );
    }
    eprintln!(
        "{KILLS} kills, {expected_steps} steps committed, {progressed_rounds} rounds made progress"
    );
    assert!(
        progressed_rounds >= KILLS / 4,
        "the writer rarely got to commit: {progressed_rounds}"
    );
}
