//! Store benchmarks: commit rate of the typical message step (one step per commit, and 64
//! steps per group commit), and the startup cost (open + load) of a large state: 100k portals
//! and 1M message mappings, with the resident memory after the load.
//!
//! `cargo bench -p gitter-bridge-store`. Files live in a temp dir on the same filesystem as
//! TMPDIR: commit rates are bounded by that disk's fsync latency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitter_bridge_core::{Change, ChangeSet};
use gitter_bridge_store::{RedbStore, Store};

fn commits(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("commit_message_step");
    group.sample_size(20);
    for per_commit in [1u64, 64] {
        let path = dir.path().join(format!("commit-{per_commit}.redb"));
        let mut store = RedbStore::open(&path).expect("open");
        let mut next = 0u64;
        group.throughput(Throughput::Elements(per_commit));
        group.bench_function(format!("{per_commit}_steps_per_commit"), |b| {
            b.iter(|| {
                let sets: Vec<ChangeSet> = (next..next + per_commit).map(message_step).collect();
                next += per_commit;
                store.apply(black_box(&sets)).expect("apply");
            })
        });
    }
    group.finish();
}

const PORTALS: u64 = 100_000;
const MESSAGES: u64 = 1_000_000;

/// Builds the large file in big commits (setup, not measured by criterion).
fn build_large(path: &std::path::Path) {
    let started = Instant::now();
    let mut store = RedbStore::open(path).expect("open");
    // 1000 owners x 100 Gitter rooms = 100k portals.
    for owner_block in 0..10 {
        let changes = (owner_block * 100..(owner_block + 1) * 100)
            .flat_map(|owner| (0..100).map(move |r| Change::PutPortal(portal_record(owner, r, 1))))
            .collect();
        store
            .apply(&[ChangeSet { changes }])
            .expect("apply portals");
    }
    for chunk in 0..(MESSAGES / 50_000) {
        let changes = (chunk * 50_000..(chunk + 1) * 50_000)
            .map(|m| Change::PutMessage(message_record(m % 1000, m % 100, m, true)))
            .collect();
        store
            .apply(&[ChangeSet { changes }])
            .expect("apply messages");
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    eprintln!(
        "built {PORTALS} portals + {MESSAGES} messages in {:.1?}: file {:.1} MiB",
        started.elapsed(),
        size as f64 / 1048576.0
    );
}

fn vm_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "VmRSS: unknown".to_owned())
}

fn load_large(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("large.redb");
    build_large(&path);

    eprintln!("before open: {}", vm_rss());
    let started = Instant::now();
    let store = RedbStore::open(&path).expect("open");
    eprintln!("open (with integrity check): {:.1?}", started.elapsed());
    let started = Instant::now();
    let snap = store.load().expect("load");
    eprintln!(
        "first load: {:.1?}, {} portals, {} messages; after load: {}",
        started.elapsed(),
        snap.portals.len(),
        snap.messages.len(),
        vm_rss()
    );
    drop(snap);

    let mut group = c.benchmark_group("startup_100k_portals_1m_messages");
    group.sample_size(10);
    group.bench_function("load", |b| {
        b.iter(|| black_box(store.load().expect("load")))
    });
    drop(store);
    group.bench_function("open_and_load", |b| {
        b.iter(|| {
            let store = RedbStore::open(&path).expect("open");
            black_box(store.load().expect("load"))
        })
    });
    group.finish();
}

criterion_group!(benches, commits, load_large);
criterion_main!(benches);
