//! Secrets at rest (issue 13): the store file is its owner's only, and with a key the rows
//! that carry Gitter tokens (`users`, `outbox`) hold no token bytes; a file sealed with a key
//! never opens without it or with another one, and a file written in clear is sealed the
//! first time it is opened with a key.

mod common;

use std::path::Path;

use common::*;
use gitter_bridge_core::{
    Action, Change, ChangeSet, Effect, EffectId, Lane, LoginThen, RequestId, Secret, Snapshot, Then,
};
use gitter_bridge_store::{RedbStore, Store, StoreError, TokenKey};

const TOKEN: &str = "gitter-token-0123456789abcdef-must-not-be-on-disk";
const CODE: &str = "oauth-code-fedcba9876543210-must-not-be-on-disk";

fn key(n: u8) -> TokenKey {
    TokenKey::from_bytes([n; 32])
}

/// A user logged in with [`TOKEN`], a Gitter send carrying it, and a code exchange carrying
/// [`CODE`], in one commit.
fn secret_rows() -> Vec<ChangeSet> {
    let mut u = user_record(1, 1);
    u.login.as_mut().expect("version 1 has a login").token = Secret::new(TOKEN);
    let mut send = effect(1, 1, 1);
    match &mut send.action {
        Action::Gitter { token, .. } => *token = Secret::new(TOKEN),
        other => panic!("effect 1 is a Gitter send, not {other:?}"),
    }
    let exchange = Effect {
        id: EffectId(2),
        lane: Lane::User(user(1)),
        action: Action::OAuth {
            code: Secret::new(CODE),
        },
        then: Then::Login(LoginThen::CodeExchanged {
            user: user(1),
            request: RequestId(9),
        }),
    };
    vec![ChangeSet {
        changes: vec![
            Change::PutUser(u),
            Change::PutOutbox(send),
            Change::PutOutbox(exchange),
            Change::SetNextEffectId(EffectId(3)),
        ],
    }]
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn write(path: &Path, key: Option<&TokenKey>, sets: &[ChangeSet]) {
    let mut store = RedbStore::open_with_key(path, key).expect("open");
    store.apply(sets).expect("apply");
}

#[cfg(unix)]
#[test]
fn a_new_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in [("clear.redb", None), ("sealed.redb", Some(key(1)))] {
        let path = dir.path().join(name);
        write(&path, key.as_ref(), &secret_rows());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} was created {mode:o}");
    }
}

#[test]
fn without_a_key_the_tokens_are_in_clear_as_the_readme_says() {
    // The control for the test below: the search does find a token that is there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    write(&path, None, &secret_rows());
    let bytes = file_bytes(&path);
    assert!(contains(&bytes, TOKEN) && contains(&bytes, CODE));
}

#[test]
fn with_a_key_no_token_or_code_is_in_the_file_and_the_rows_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let sets = secret_rows();
    write(&path, Some(&key(1)), &sets);
    let bytes = file_bytes(&path);
    assert!(!contains(&bytes, TOKEN), "a Gitter token is in the file");
    assert!(!contains(&bytes, CODE), "an OAuth code is in the file");

    let store = RedbStore::open_with_key(&path, Some(&key(1))).expect("reopen");
    assert!(store.tokens_encrypted());
    assert_eq!(store.sealed_on_open(), 0);
    assert_eq!(store.load().expect("load"), reference(&sets));
}

#[test]
fn a_store_written_in_clear_is_sealed_when_first_opened_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let sets = secret_rows();
    write(&path, None, &sets);

    let mut store = RedbStore::open_with_key(&path, Some(&key(1))).expect("open with a key");
    assert_eq!(store.sealed_on_open(), 3, "one user and two outbox rows");
    assert_eq!(store.load().expect("load"), reference(&sets));
    // Rows written from now on are sealed too.
    let more = vec![ChangeSet {
        changes: vec![Change::PutUser(user_record(2, 1))],
    }];
    store.apply(&more).expect("apply");
    drop(store);
    let bytes = file_bytes(&path);
    assert!(!contains(&bytes, TOKEN) && !contains(&bytes, CODE));
    assert!(!contains(&bytes, "token-2-1"));

    let store = RedbStore::open_with_key(&path, Some(&key(1))).expect("reopen");
    assert_eq!(store.sealed_on_open(), 0, "sealed once");
    let mut expected: Snapshot = reference(&sets);
    expected.apply_set(&more[0]);
    assert_eq!(store.load().expect("load"), expected);
}

#[test]
fn a_sealed_store_without_its_key_is_refused_naming_the_key_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    write(&path, Some(&key(1)), &secret_rows());
    let before = file_bytes(&path);

    let err = RedbStore::open(&path).expect_err("opened without its key");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("store.token_key_file") && text.contains(&path.display().to_string()),
        "{text}"
    );
    assert_eq!(file_bytes(&path), before, "a refused open changed the file");
}

#[test]
fn a_sealed_store_with_another_key_is_refused_naming_the_key_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    write(&path, Some(&key(1)), &secret_rows());
    let before = file_bytes(&path);

    let err = RedbStore::open_with_key(&path, Some(&key(2))).expect_err("another key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    assert!(err.to_string().contains("store.token_key_file"), "{err}");
    assert_eq!(file_bytes(&path), before, "a refused open changed the file");
    // The right key still opens it.
    let store = RedbStore::open_with_key(&path, Some(&key(1))).expect("the right key");
    assert_eq!(store.load().expect("load"), reference(&secret_rows()));
}

#[test]
fn an_empty_sealed_store_still_knows_its_key() {
    // No row to fail on: the key check alone refuses the wrong key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open_with_key(&path, Some(&key(1))).expect("create"));
    let err = RedbStore::open_with_key(&path, Some(&key(2))).expect_err("another key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    let err = RedbStore::open(&path).expect_err("no key");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
}

#[test]
fn a_sealed_row_moved_to_another_row_does_not_open() {
    // The row's key is authenticated with its value: copying Alice's sealed login over
    // Bob's row must not give Bob Alice's token.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    write(
        &path,
        Some(&key(1)),
        &[ChangeSet {
            changes: vec![
                Change::PutUser(user_record(1, 1)),
                Change::PutUser(user_record(2, 1)),
            ],
        }],
    );
    {
        use redb::ReadableDatabase;
        const USERS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("users");
        let db = redb::Database::open(&path).unwrap();
        let read = db.begin_read().unwrap();
        let alice = read
            .open_table(USERS)
            .unwrap()
            .get(user(1).as_str())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        drop(read);
        let txn = db.begin_write().unwrap();
        txn.open_table(USERS)
            .unwrap()
            .insert(user(2).as_str(), alice.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open_with_key(&path, Some(&key(1))).expect("opens");
    let err = store.load().expect_err("a moved row loaded");
    assert!(
        matches!(err, StoreError::Sealed { table: "users", .. }),
        "{err:?}"
    );
}
