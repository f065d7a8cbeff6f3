//! One conformance suite, run against every backend: whatever is committed, `load()` returns
//! the snapshot the core's own `Snapshot::apply` gives, before and after a reopen.

mod common;

use common::*;
use gitter_bridge_core::{AsTxnId, Change, ChangeSet, EffectId, Snapshot, Timestamp};
use gitter_bridge_store::{MemoryStore, RedbStore, Store, TokenKey};
use proptest::prelude::*;
use tempfile::TempDir;

/// How a suite makes and reopens a store of one backend.
trait Backend {
    type S: Store;
    fn fresh(&mut self) -> Self::S;
    /// Closes the store and opens it again from wherever it keeps its state.
    fn reopen(&mut self, store: Self::S) -> Self::S;
}

struct Memory;

impl Backend for Memory {
    type S = MemoryStore;
    fn fresh(&mut self) -> MemoryStore {
        MemoryStore::new()
    }
    fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        // Nothing outlives a MemoryStore; "reopening" keeps the value.
        store
    }
}

struct Redb {
    dir: Option<TempDir>,
}

impl Redb {
    fn new() -> Self {
        Redb { dir: None }
    }
}

impl Backend for Redb {
    type S = RedbStore;
    fn fresh(&mut self) -> RedbStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open(dir.path().join("bridge.redb")).expect("create store");
        self.dir = Some(dir);
        store
    }
    fn reopen(&mut self, store: RedbStore) -> RedbStore {
        let path = store.path().to_path_buf();
        drop(store);
        RedbStore::open(&path).expect("reopen store")
    }
}

/// The redb store with its token-bearing rows sealed (`store.token_key_file`): the same
/// contract, every `users` and `outbox` value going through the envelope.
struct RedbSealed {
    dir: Option<TempDir>,
    key: TokenKey,
}

impl RedbSealed {
    fn new() -> Self {
        RedbSealed {
            dir: None,
            key: TokenKey::from_bytes([7; 32]),
        }
    }
}

impl Backend for RedbSealed {
    type S = RedbStore;
    fn fresh(&mut self) -> RedbStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open_with_key(dir.path().join("bridge.redb"), Some(&self.key))
            .expect("create store");
        assert!(store.tokens_encrypted());
        self.dir = Some(dir);
        store
    }
    fn reopen(&mut self, store: RedbStore) -> RedbStore {
        let path = store.path().to_path_buf();
        drop(store);
        RedbStore::open_with_key(&path, Some(&self.key)).expect("reopen store")
    }
}

/// Applies `commits` (each a group commit) and checks load() against the reference after every
/// commit and after a reopen at the end.
fn check_commits<B: Backend>(backend: &mut B, commits: &[Vec<ChangeSet>]) {
    let mut store = backend.fresh();
    let mut expected = Snapshot::default();
    for group in commits {
        store.apply(group).expect("apply");
        for set in group {
            expected.apply_set(set);
        }
        assert_eq!(store.load().expect("load"), expected);
    }
    let store = backend.reopen(store);
    assert_eq!(store.load().expect("load after reopen"), expected);
    for newest in [0, 1, 3] {
        assert_eq!(
            store.load_hot(newest).expect("load the hot set"),
            expected.hot_set(newest),
            "the hot set with {newest} per portal"
        );
    }
}

/// Applies `commits`, prunes in batches of `batch` rows until the store says it reached the
/// end, and checks that exactly the mappings recorded before `cut` are gone.
/// A fresh store with `commits` applied, and the reference they give.
fn committed<B: Backend>(backend: &mut B, commits: &[Vec<ChangeSet>]) -> (B::S, Snapshot) {
    let mut store = backend.fresh();
    let mut expected = Snapshot::default();
    for group in commits {
        store.apply(group).expect("apply");
        for set in group {
            expected.apply_set(set);
        }
    }
    (store, expected)
}

fn check_prune<B: Backend>(backend: &mut B, commits: &[Vec<ChangeSet>], cut: u64, batch: u32) {
    let (mut store, mut expected) = committed(backend, commits);
    let cut = Timestamp(1_700_000_000_000 + cut);
    let before = expected.messages.len();
    expected.messages.retain(|m| m.at >= cut);
    let mut resume = None;
    let mut removed = 0;
    for _ in 0..1_000 {
        let p = store.prune_mappings(cut, resume, batch).expect("prune");
        removed += p.removed;
        resume = p.resume;
        if resume.is_none() {
            break;
        }
    }
    assert!(resume.is_none(), "pruning reaches the end");
    assert_eq!(removed as usize, before - expected.messages.len());
    let store = backend.reopen(store);
    assert_eq!(store.load().expect("load after pruning"), expected);
}

/// Every mapping committed is found by its Gitter id and by its event in its own portal,
/// and nothing is found in another portal or for an id never mapped.
fn check_lookups<B: Backend>(backend: &mut B, commits: &[Vec<ChangeSet>]) {
    let (store, expected) = committed(backend, commits);
    let store = backend.reopen(store);
    for m in expected.messages.values() {
        let by_id = store
            .mapping_by_gitter_id(&m.owner, &m.gitter_room, &m.gitter_id)
            .expect("lookup by Gitter id");
        assert_eq!(by_id.as_ref(), Some(m));
        let other_room = gitter_bridge_core::GitterRoomId::new("no-such-room");
        let elsewhere = store
            .mapping_by_gitter_id(&m.owner, &other_room, &m.gitter_id)
            .expect("lookup in another portal");
        assert_eq!(elsewhere, None);
        if let Some(event) = &m.event_id {
            let by_event = store
                .mapping_by_event(&m.owner, &m.gitter_room, event)
                .expect("lookup by event");
            // Two mappings of one portal may name the same event only in generated data;
            // whichever is found names it.
            assert_eq!(
                by_event.as_ref().and_then(|f| f.event_id.as_ref()),
                Some(event)
            );
        }
    }
    let nobody = user(999);
    assert_eq!(
        store
            .mapping_by_gitter_id(&nobody, &groom(1), &gmsg(1))
            .expect("lookup of nothing"),
        None
    );
    assert_eq!(
        store
            .mapping_by_event(&nobody, &groom(1), &event(1))
            .expect("lookup of nothing"),
        None
    );
}

fn set(changes: Vec<Change>) -> ChangeSet {
    ChangeSet { changes }
}

macro_rules! conformance_suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn a_new_store_loads_the_empty_snapshot() {
                let mut b = $backend;
                let store = b.fresh();
                assert_eq!(store.load().expect("load"), Snapshot::default());
                let store = b.reopen(store);
                assert_eq!(store.load().expect("load"), Snapshot::default());
            }

            #[test]
            fn the_deterministic_workload_round_trips() {
                let commits: Vec<Vec<ChangeSet>> = (0..60).map(|i| vec![numbered_set(i)]).collect();
                check_commits(&mut $backend, &commits);
            }

            #[test]
            fn a_group_commit_equals_the_steps_one_by_one() {
                let sets: Vec<ChangeSet> = (0..40).map(numbered_set).collect();
                let mut b = $backend;
                let mut store = b.fresh();
                store.apply(&sets[..1]).expect("apply one");
                store.apply(&sets[1..33]).expect("apply a group");
                store.apply(&[]).expect("apply nothing");
                store
                    .apply(&[ChangeSet::default(), ChangeSet::default()])
                    .expect("empty sets");
                store.apply(&sets[33..]).expect("apply the rest");
                let store = b.reopen(store);
                assert_eq!(store.load().expect("load"), reference(&sets));
            }

            #[test]
            fn an_outbox_row_added_and_removed_in_one_commit_is_gone() {
                let mut b = $backend;
                let mut store = b.fresh();
                store
                    .apply(&[
                        set(vec![
                            Change::PutOutbox(effect(1, 1, 1)),
                            Change::PutOutbox(effect(2, 1, 1)),
                        ]),
                        set(vec![
                            Change::DeleteOutbox(EffectId(1)),
                            Change::SetNextEffectId(EffectId(3)),
                        ]),
                    ])
                    .expect("apply");
                let store = b.reopen(store);
                let snap = store.load().expect("load");
                assert_eq!(
                    snap.outbox.keys().copied().collect::<Vec<_>>(),
                    vec![EffectId(2)]
                );
                assert_eq!(snap.next_effect_id, 3);
            }

            #[test]
            fn remembered_ids_keep_their_order_and_forget_removes_the_oldest_match() {
                let t = |s: &str| AsTxnId::new(s);
                let sets = vec![
                    set(vec![
                        Change::RememberTransaction(t("c")),
                        Change::RememberTransaction(t("a")),
                        Change::RememberTransaction(t("b")),
                        Change::RememberTransaction(t("a")),
                        Change::RememberEvent(event(2)),
                        Change::RememberEvent(event(1)),
                    ]),
                    // Forget a middle one, a duplicate (the first copy goes), and an unknown id.
                    set(vec![
                        Change::ForgetTransaction(t("a")),
                        Change::ForgetTransaction(t("zzz")),
                        Change::ForgetEvent(event(2)),
                        Change::RememberTransaction(t("d")),
                        Change::RememberEvent(event(3)),
                    ]),
                ];
                let mut b = $backend;
                let mut store = b.fresh();
                store.apply(&sets).expect("apply");
                let store = b.reopen(store);
                let snap = store.load().expect("load");
                assert_eq!(snap, reference(&sets));
                let order: Vec<&str> = snap.transactions.iter().map(AsTxnId::as_str).collect();
                assert_eq!(order, ["c", "b", "a", "d"]);
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

                #[test]
                fn random_commits_load_as_the_reference(commits in arb_commits()) {
                    check_commits(&mut $backend, &commits);
                }

                #[test]
                fn every_mapping_is_found_by_its_gitter_id_and_its_event(commits in arb_commits()) {
                    check_lookups(&mut $backend, &commits);
                }

                #[test]
                fn pruning_in_batches_removes_exactly_the_old_mappings(
                    commits in arb_commits(),
                    cut in 0u64..25,
                    batch in 1u32..6,
                ) {
                    check_prune(&mut $backend, &commits, cut, batch);
                }
            }
        }
    };
}

conformance_suite!(memory, Memory);
conformance_suite!(redb, Redb::new());
conformance_suite!(redb_sealed, RedbSealed::new());

/// Both backends, fed the same commits, load the same snapshot.
#[test]
fn both_backends_agree_on_the_same_history() {
    let sets: Vec<ChangeSet> = (0..30).map(numbered_set).collect();
    let mut mem = Memory.fresh();
    let mut r = Redb::new();
    let mut redb = r.fresh();
    for chunk in sets.chunks(7) {
        mem.apply(chunk).expect("memory apply");
        redb.apply(chunk).expect("redb apply");
    }
    let redb = r.reopen(redb);
    assert_eq!(mem.load().expect("load"), redb.load().expect("load"));
}
