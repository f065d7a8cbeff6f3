//! Bad input: every refused open is a `StoreError` naming the path and the problem, and the
//! file it refused is left byte-for-byte as it was.
//!
//! The tests run as root, which bypasses permission bits, so "a directory without write
//! permission" cannot be observed here: root writes into a 0o555 directory. The permission
//! case is therefore not tested; the path cases an operator actually meets (the path is a
//! directory, its parent directory is missing) are.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gitter_bridge_store::{RedbStore, SCHEMA_VERSION, Store, StoreError};
use redb::TableDefinition;

/// A store file holding `n` steps of the deterministic workload, closed cleanly.
fn good_store(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("good.redb");
    let mut store = RedbStore::open(&path).expect("create store");
    let sets: Vec<_> = (0..n).map(numbered_set).collect();
    for chunk in sets.chunks(10) {
        store.apply(chunk).expect("apply");
    }
    path
}

/// Opens `path`, expects a refusal, checks the message names the path, and checks the file
/// bytes did not change. Returns the error for more specific checks.
fn expect_refused(path: &Path) -> StoreError {
    let before = std::fs::read(path).ok();
    let err = RedbStore::open(path).expect_err("the open should be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the path: {msg}"
    );
    assert_eq!(
        std::fs::read(path).ok(),
        before,
        "refused file was modified ({msg})"
    );
    err
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "operator notes, not a database\n".repeat(500)).expect("write");
    let err = expect_refused(&path);
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_truncated_store_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = good_store(dir.path(), 200);
    let bytes = file_bytes(&good);
    let bad = dir.path().join("bad.redb");
    for cut in [
        1,
        100,
        511,
        4096,
        bytes.len() / 2,
        bytes.len() - 4096,
        bytes.len() - 1,
    ] {
        std::fs::write(&bad, &bytes[..cut]).expect("write truncated copy");
        let err = expect_refused(&bad);
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "cut at {cut}: {err:?}"
        );
    }
}

/// Damages each 4 KiB page of a store in turn. A damaged page that holds committed data must
/// be reported (redb's checksums catch it; the file is left as it was); damage to a free page
/// is harmless and the store must then load exactly what was committed.
#[test]
fn a_damaged_page_is_either_detected_or_harmless() {
    let dir = tempfile::tempdir().expect("temp dir");
    let steps = 200;
    let good = good_store(dir.path(), steps);
    let expected = reference(&(0..steps).map(numbered_set).collect::<Vec<_>>());
    let bytes = file_bytes(&good);
    let bad = dir.path().join("bad.redb");
    let mut detected = 0;
    for offset in (0..bytes.len()).step_by(4096) {
        let mut damaged = bytes.clone();
        for b in &mut damaged[offset..(offset + 4096).min(bytes.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(&bad, &damaged).expect("write damaged copy");
        match RedbStore::open(&bad) {
            Err(err) => {
                detected += 1;
                assert!(
                    matches!(err, StoreError::Corrupt { .. }),
                    "page {offset}: {err:?}"
                );
                assert!(err.to_string().contains(&bad.display().to_string()));
                assert_eq!(
                    file_bytes(&bad),
                    damaged,
                    "page {offset}: refused file modified"
                );
            }
            Ok(store) => {
                let loaded = store.load().expect("a store that opened loads");
                assert_eq!(loaded, expected, "page {offset}: damage went unnoticed");
            }
        }
    }
    assert!(detected > 0, "no damaged page was detected");
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = expect_refused(dir.path());
    assert!(matches!(err, StoreError::IsDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory"));
}

#[test]
fn a_missing_parent_directory_is_refused_and_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("bridge.redb");
    let err = expect_refused(&path);
    assert!(matches!(err, StoreError::MissingParent { .. }), "{err:?}");
    assert!(!path.parent().expect("parent").exists());
}

#[test]
fn a_store_from_a_newer_bridge_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = good_store(dir.path(), 5);
    // What a future bridge would have written: the same file with a higher schema version.
    {
        let db = redb::Database::open(&path).expect("raw open");
        let txn = db.begin_write().expect("begin");
        {
            let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
            let mut t = txn.open_table(meta).expect("meta");
            t.insert("schema_version", SCHEMA_VERSION + 1)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = expect_refused(&path);
    match err {
        StoreError::TooNew {
            found, supported, ..
        } => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn a_foreign_redb_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other-app.redb");
    {
        let db = redb::Database::create(&path).expect("raw create");
        let txn = db.begin_write().expect("begin");
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("their_data");
            txn.open_table(def)
                .expect("table")
                .insert(1, 2)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = expect_refused(&path);
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bridge.redb");
    let _first = RedbStore::open(&path).expect("first open");
    let err = RedbStore::open(&path).expect_err("second open");
    assert!(matches!(err, StoreError::AlreadyOpen { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn an_empty_file_becomes_a_new_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bridge.redb");
    std::fs::write(&path, b"").expect("touch");
    let store = RedbStore::open(&path).expect("open empty file");
    assert_eq!(store.load().expect("load"), Default::default());
}
