//! A store written by the main of before issue 14 (schema version 2, `fixtures/store/`)
//! opens with this binary, migrates to the current schema in place, and loads what that
//! binary loaded from it: every row kept, the cursors moved out of the rooms, the mappings
//! moved to their compact table (with the time of the migration as their age).

use std::os::unix::fs::PermissionsExt;

use gitter_bridge_store::{RedbStore, SCHEMA_VERSION, Store};
use serde_json::{Value, json};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/store")
        .join(name)
}

#[test]
fn a_schema_2_store_written_by_the_old_main_migrates_and_loads_the_same_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bridge.redb");
    std::fs::copy(fixture("schema2.redb"), &path).expect("copy the fixture");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("schema2.json")).unwrap()).unwrap();
    assert_eq!(SCHEMA_VERSION, 3);

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let store = RedbStore::open(&path).expect("the old file opens and migrates");
    let snap = store.load().expect("load");

    // Untouched tables load exactly as before.
    let same = json!({
        "users": snap.users.values().collect::<Vec<_>>(),
        "ghosts": snap.ghosts.values().collect::<Vec<_>>(),
        "portals": snap.portals.values().collect::<Vec<_>>(),
        "queued": snap.queued.iter().collect::<Vec<_>>(),
        "refused_rooms": snap.refused_rooms,
        "login_links": snap.login_links,
        "oauth_states": snap.oauth_states,
        "transactions": snap.transactions,
        "events": snap.events,
        "outbox": snap.outbox.values().collect::<Vec<_>>(),
        "next_effect_id": snap.next_effect_id,
    });
    for (table, rows) in same.as_object().unwrap() {
        assert_eq!(rows, &before[table], "table {table}");
    }
    assert!(!snap.outbox.is_empty() && !snap.queued.is_empty());

    // Rooms lose their cursor and ring; the cursor is a row of its own.
    let rooms = before["gitter_rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), snap.gitter_rooms.len());
    for old in rooms {
        let id = old["id"].as_str().unwrap();
        let (_, new) = snap
            .gitter_rooms
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .expect("room kept");
        let mut expected = old.clone();
        let cursor = expected.as_object_mut().unwrap().remove("cursor").unwrap();
        expected.as_object_mut().unwrap().remove("recent");
        assert_eq!(serde_json::to_value(new).unwrap(), expected);
        let moved = snap
            .cursors
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, c)| c.as_str());
        assert_eq!(moved, cursor.as_str(), "the cursor of room {id}");
    }

    // Every mapping is kept, the same but for its age.
    let messages = before["messages"].as_array().unwrap();
    assert_eq!(messages.len(), snap.messages.len());
    assert!(messages.len() > 50);
    for old in messages {
        let found = snap
            .messages
            .values()
            .find(|m| m.owner.as_str() == old["owner"] && m.gitter_id.as_str() == old["gitter_id"])
            .expect("mapping kept");
        let mut new = serde_json::to_value(found).unwrap();
        let at = new.as_object_mut().unwrap().remove("at").unwrap();
        assert_eq!(&new, old);
        assert!(at.as_u64().unwrap() >= start, "aged from the migration");
    }

    // The hot set reads from the new layout too.
    let hot = store.load_hot(1).expect("load the hot set");
    assert_eq!(hot, snap.hot_set(1));
    assert!(hot.messages.len() < snap.messages.len());
    drop(store);

    // A second open finds nothing to migrate and loads the same.
    let again = RedbStore::open(&path)
        .expect("reopen")
        .load()
        .expect("load");
    assert_eq!(again, snap);
}
