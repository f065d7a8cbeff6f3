//! Schema versions and numbered migrations.
//!
//! The file records its schema version in `meta[schema_version]`. A fresh (empty) file is
//! version 0. `MIGRATIONS[n]` turns version `n` into version `n + 1`; [`SCHEMA_VERSION`] is
//! their count. On open, every missing migration runs in ONE write transaction together with
//! the version bump, so a crash mid-migration leaves the file at its old version, and the
//! next open simply runs them again.
//!
//! A file whose version is newer than [`SCHEMA_VERSION`] is refused before anything is
//! written (see `RedbStore::open`): an old binary cannot know what the newer tables mean.
//!
//! To change the format (a new table, a new field in a record, a re-keyed table): append a
//! migration here, never edit an old one, and add a test that opens a file of the previous
//! version.
//!
//! A migration that decodes `users` or `outbox` values must expect them sealed: when
//! `meta[token_key_check]` is present (the store was opened with `store.token_key_file`),
//! each value is an envelope of `seal.rs`, not postcard bytes. Migrations run after the key
//! check, and get the `Sealer` of the key the store was opened with (`None` for a store in
//! clear). Version 1 to 2 only ever meets files of version 1, which no binary with sealing
//! wrote; version 3 to 4 unseals and seals again every outbox row.

use std::path::Path;

use redb::{ReadableDatabase, TableError, WriteTransaction};

use crate::error::{RedbContext, StoreError};
use crate::schema::{self, META, META_SCHEMA_VERSION};
use crate::seal::Sealer;

/// A migration from version `n` (its index in the list) to `n + 1`. It runs inside the write
/// transaction that also records the new version.
pub(crate) type Migration = fn(&WriteTransaction, &Path, Option<&Sealer>) -> Result<(), StoreError>;

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    v0_create_tables,
    v1_durable_effects,
    v2_small_rows,
    v3_typed_effects,
    v4_avatars,
];

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

/// Version 4 -> 5: the avatars uploaded and the avatar each ghost and portal was given
/// (issue 17): three new tables, empty, so ghosts get their avatars as they next speak and
/// portals as their rooms are next listed.
fn v4_avatars(
    txn: &WriteTransaction,
    path: &Path,
    _sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    const DURING: &str = "migrating to schema version 5";
    txn.open_table(schema::AVATARS).ctx(path, DURING)?;
    txn.open_table(schema::GHOST_AVATARS).ctx(path, DURING)?;
    txn.open_table(schema::PORTAL_AVATARS).ctx(path, DURING)?;
    Ok(())
}

/// Version 0 -> 1: create every table of docs/store.md (creating them up front means
/// `load` never meets a missing table).
fn v0_create_tables(
    txn: &WriteTransaction,
    path: &Path,
    _sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    const DURING: &str = "creating the tables";
    txn.open_table(schema::USERS).ctx(path, DURING)?;
    txn.open_table(schema::GHOSTS).ctx(path, DURING)?;
    txn.open_table(schema::PORTALS).ctx(path, DURING)?;
    txn.open_table(schema::GITTER_ROOMS).ctx(path, DURING)?;
    txn.open_table(schema::MESSAGES_V2).ctx(path, DURING)?;
    txn.open_table(schema::REFUSED_ROOMS).ctx(path, DURING)?;
    txn.open_table(schema::LOGIN_LINKS).ctx(path, DURING)?;
    txn.open_table(schema::OAUTH_STATES).ctx(path, DURING)?;
    txn.open_table(schema::TRANSACTIONS).ctx(path, DURING)?;
    txn.open_table(schema::EVENTS).ctx(path, DURING)?;
    txn.open_table(schema::OUTBOX).ctx(path, DURING)?;
    txn.open_table(schema::META).ctx(path, DURING)?;
    Ok(())
}

/// Version 1 -> 2: durable effects and small writes.
///
/// * Outbox rows: room creations carry the alias that makes them idempotent, and Gitter sends
///   the room cursor they were sent at instead of our clock (reconcile never compares clocks).
/// * Portal rows lose their inline queue of messages waiting for the room: each waiting
///   message becomes a row of the new `queued` table, so adding one costs the same however
///   many wait.
fn v1_durable_effects(
    txn: &WriteTransaction,
    path: &Path,
    _sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    use crate::codec::{decode, encode};
    use crate::legacy::{EffectV1, EffectV3, PortalRecordV1};
    use gitter_bridge_core::PortalRecord;
    use redb::ReadableTable;

    const DURING: &str = "migrating to schema version 2";
    let mut queued = txn.open_table(schema::QUEUED).ctx(path, DURING)?;
    let mut cursors = std::collections::BTreeMap::new();
    for row in txn
        .open_table(schema::GITTER_ROOMS)
        .ctx(path, DURING)?
        .iter()
        .ctx(path, DURING)?
    {
        let (_, v) = row.ctx(path, DURING)?;
        let r: crate::legacy::GitterRoomRecordV2 = decode(path, "gitter_rooms", v.value())?;
        cursors.insert(r.id, r.cursor);
    }
    {
        let mut outbox = txn.open_table(schema::OUTBOX).ctx(path, DURING)?;
        let mut rows = Vec::new();
        for row in outbox.iter().ctx(path, DURING)? {
            let (k, v) = row.ctx(path, DURING)?;
            let old: EffectV1 = decode(path, "outbox", v.value())?;
            rows.push((k.value(), old));
        }
        for (key, old) in rows {
            let effect = EffectV3 {
                id: old.id,
                lane: old.lane,
                action: old
                    .action
                    .upgrade(random_alias, |room| cursors.get(room).cloned().flatten()),
            };
            let bytes = encode(path, "outbox", &effect)?;
            outbox.insert(key, bytes.as_slice()).ctx(path, DURING)?;
        }
    }
    let mut portals = txn.open_table(schema::PORTALS).ctx(path, DURING)?;
    let mut rows = Vec::new();
    for row in portals.iter().ctx(path, DURING)? {
        let (_, v) = row.ctx(path, DURING)?;
        let old: PortalRecordV1 = decode(path, "portals", v.value())?;
        rows.push(old);
    }
    for old in rows {
        for (seq, message) in old.queued.iter().enumerate() {
            let bytes = encode(path, "queued", message)?;
            queued
                .insert(
                    (old.owner.as_str(), old.gitter_room.as_str(), seq as u64),
                    bytes.as_slice(),
                )
                .ctx(path, DURING)?;
        }
        let portal = PortalRecord {
            owner: old.owner,
            gitter_room: old.gitter_room,
            room_id: old.room_id,
            state: old.state,
            joined_ghosts: old.joined_ghosts,
        };
        let bytes = encode(path, "portals", &portal)?;
        portals
            .insert(
                (portal.owner.as_str(), portal.gitter_room.as_str()),
                bytes.as_slice(),
            )
            .ctx(path, DURING)?;
    }
    Ok(())
}

/// Version 2 -> 3: small rows for what grows with traffic (issue 14).
///
/// * `gitter_rooms` rows lose the cursor (now a row of `cursors`, written per relayed
///   message instead of the whole room) and the ring of recent ids (kept in memory now).
/// * Portals get numbers (`portal_numbers`), and every `messages` row moves to `mappings`
///   under (portal number, Gitter id) with only its event id, direction and age; `messages`
///   is deleted. The age of a migrated mapping is the time of the migration, so retention
///   counts from the upgrade (the old rows had no time).
fn v2_small_rows(
    txn: &WriteTransaction,
    path: &Path,
    _sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    use crate::codec::{decode, encode};
    use crate::compact::{StoredEvent, gitter_id_key};
    use crate::legacy::{GitterRoomRecordV2, MessageRecordV2};
    use crate::redb_store::{StoredMapping, number_portal};
    use gitter_bridge_core::GitterRoomRecord;
    use redb::ReadableTable;

    const DURING: &str = "migrating to schema version 3";
    {
        let mut rooms = txn.open_table(schema::GITTER_ROOMS).ctx(path, DURING)?;
        let mut cursors = txn.open_table(schema::CURSORS).ctx(path, DURING)?;
        let mut rows = Vec::new();
        for row in rooms.iter().ctx(path, DURING)? {
            let (_, v) = row.ctx(path, DURING)?;
            let old: GitterRoomRecordV2 = decode(path, "gitter_rooms", v.value())?;
            rows.push(old);
        }
        for old in rows {
            if let Some(cursor) = &old.cursor {
                cursors
                    .insert(old.id.as_str(), cursor.as_str())
                    .ctx(path, DURING)?;
            }
            let room = GitterRoomRecord {
                id: old.id,
                uri: old.uri,
                name: old.name,
                topic: old.topic,
                user_count: old.user_count,
                reader: old.reader,
            };
            let bytes = encode(path, "gitter_rooms", &room)?;
            rooms
                .insert(room.id.as_str(), bytes.as_slice())
                .ctx(path, DURING)?;
        }
    }
    let mut numbers = txn.open_table(schema::PORTAL_NUMBERS).ctx(path, DURING)?;
    let mut meta = txn.open_table(schema::META).ctx(path, DURING)?;
    {
        let portals = txn.open_table(schema::PORTALS).ctx(path, DURING)?;
        for row in portals.iter().ctx(path, DURING)? {
            let (k, _) = row.ctx(path, DURING)?;
            let (owner, room) = k.value();
            number_portal(&mut numbers, &mut meta, path, owner, room)?;
        }
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    {
        let old_table = txn.open_table(schema::MESSAGES_V2).ctx(path, DURING)?;
        let mut mappings = txn.open_table(schema::MAPPINGS).ctx(path, DURING)?;
        for row in old_table.iter().ctx(path, DURING)? {
            let (_, v) = row.ctx(path, DURING)?;
            let old: MessageRecordV2 = decode(path, "messages", v.value())?;
            let no = number_portal(
                &mut numbers,
                &mut meta,
                path,
                old.owner.as_str(),
                old.gitter_room.as_str(),
            )?;
            let value = StoredMapping {
                event: old.event_id.as_ref().map(StoredEvent::from_id),
                origin: old.origin,
                at,
            };
            let bytes = encode(path, "mappings", &value)?;
            let key = gitter_id_key(old.gitter_id.as_str());
            mappings
                .insert((no, key.as_slice()), bytes.as_slice())
                .ctx(path, DURING)?;
        }
    }
    txn.delete_table(schema::MESSAGES_V2).ctx(path, DURING)?;
    Ok(())
}

/// Version 3 -> 4: effects typed by destination (issue 14), and the mentions of queued
/// messages (issue 15). Every outbox row is decoded
/// with the flat action of version 3 and written as the action of its destination (Matrix,
/// OAuth, Gitter with one token field, stream, store) and the continuation the core hands the
/// answer to (what the old action held in its `purpose`, `relay`, `origin`, `user` and
/// `request` fields). Sealed rows are opened and sealed again with the store's key.
fn v3_typed_effects(
    txn: &WriteTransaction,
    path: &Path,
    sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    use crate::codec::{decode, encode};
    use crate::legacy::EffectV3;
    use crate::redb_store::{seal, unseal};
    use redb::ReadableTable;

    const DURING: &str = "migrating to schema version 4";
    let mut outbox = txn.open_table(schema::OUTBOX).ctx(path, DURING)?;
    let mut rows = Vec::new();
    for row in outbox.iter().ctx(path, DURING)? {
        let (k, v) = row.ctx(path, DURING)?;
        let key = k.value();
        let plain = unseal(sealer, path, "outbox", &key.to_le_bytes(), v.value())?;
        let old: EffectV3 = decode(path, "outbox", &plain)?;
        rows.push((key, old));
    }
    for (key, old) in rows {
        let effect = old.upgrade();
        let bytes = encode(path, "outbox", &effect)?;
        let bytes = seal(sealer, path, "outbox", &key.to_le_bytes(), bytes)?;
        outbox.insert(key, bytes.as_slice()).ctx(path, DURING)?;
    }
    // Queued messages gain their (unknown, so empty) mentions.
    let mut queued = txn.open_table(schema::QUEUED).ctx(path, DURING)?;
    let mut rows = Vec::new();
    for row in queued.iter().ctx(path, DURING)? {
        let (k, v) = row.ctx(path, DURING)?;
        let (owner, room, seq) = k.value();
        let old: crate::legacy::GitterMessageV3 = decode(path, "queued", v.value())?;
        rows.push(((owner.to_owned(), room.to_owned(), seq), old));
    }
    for ((owner, room, seq), old) in rows {
        let bytes = encode(path, "queued", &old.upgrade())?;
        queued
            .insert((owner.as_str(), room.as_str(), seq), bytes.as_slice())
            .ctx(path, DURING)?;
    }
    Ok(())
}

/// An alias for a room creation migrated from version 1 (which had none): 128 bits from
/// two randomly keyed SipHash instances of the standard library (the store has no RNG of its
/// own, and this runs once per such row).
fn random_alias() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        h.finish()
    };
    format!(
        "{}{:016x}{:016x}",
        gitter_bridge_core::PORTAL_ALIAS_PREFIX,
        half(),
        half()
    )
}

/// The schema version of an open database, without writing. An empty database is version 0;
/// a database with tables but no version is not ours.
pub(crate) fn read_version(db: &impl ReadableDatabase, path: &Path) -> Result<u64, StoreError> {
    const DURING: &str = "reading the schema version";
    let txn = db.begin_read().ctx(path, DURING)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let has_tables = txn.list_tables().ctx(path, DURING)?.next().is_some();
            return if has_tables {
                Err(StoreError::NotAStore {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(0)
            };
        }
        // A `meta` table of other key/value types: somebody else's database.
        Err(TableError::TableTypeMismatch { .. }) => {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(e).ctx(path, DURING),
    };
    match meta.get(META_SCHEMA_VERSION).ctx(path, DURING)? {
        Some(v) => Ok(v.value()),
        None => Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        }),
    }
}

/// Refuses a version this binary does not know.
pub(crate) fn check_supported(
    path: &Path,
    found: u64,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let supported = migrations.len() as u64;
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}

/// Brings the database to `migrations.len()`, in one durable write transaction. Does nothing
/// (and writes nothing) when it is already there.
pub(crate) fn run(
    db: &redb::Database,
    path: &Path,
    migrations: &[Migration],
    sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    let found = read_version(db, path)?;
    check_supported(path, found, migrations)?;
    let target = migrations.len() as u64;
    if found == target {
        return Ok(());
    }
    let txn = db.begin_write().ctx(path, "starting the migration")?;
    // `found < target` here, so the slice is in range; `get` keeps it panic-free anyway.
    let pending = migrations.get(found as usize..).unwrap_or_default();
    for migration in pending {
        migration(&txn, path, sealer)?;
    }
    {
        let mut meta = txn
            .open_table(META)
            .ctx(path, "recording the schema version")?;
        meta.insert(META_SCHEMA_VERSION, target)
            .ctx(path, "recording the schema version")?;
    }
    txn.commit().ctx(path, "committing the migration")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use gitter_bridge_core::{Change, ChangeSet, EffectId};
    use redb::{ReadableDatabase, TableDefinition};

    use super::*;
    use crate::{RedbStore, Store};

    const EXTRA: TableDefinition<&str, u64> = TableDefinition::new("extra");

    fn v1_add_extra(
        txn: &WriteTransaction,
        path: &Path,
        _sealer: Option<&Sealer>,
    ) -> Result<(), StoreError> {
        txn.open_table(EXTRA)
            .ctx(path, "test")?
            .insert("answer", 42)
            .ctx(path, "test")?;
        Ok(())
    }

    fn v1_fails_halfway(
        txn: &WriteTransaction,
        path: &Path,
        _sealer: Option<&Sealer>,
    ) -> Result<(), StoreError> {
        v1_add_extra(txn, path, None)?;
        Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        })
    }

    fn version_of(path: &Path) -> u64 {
        let db = redb::Database::open(path).expect("raw open");
        read_version(&db, path).expect("version")
    }

    fn v1_store_with_data(path: &Path) -> ChangeSet {
        let set = ChangeSet {
            changes: vec![Change::SetNextEffectId(EffectId(7))],
        };
        let mut store = RedbStore::open_with(path, V1).expect("open");
        store.apply(std::slice::from_ref(&set)).expect("apply");
        set
    }

    /// The migrations of a binary that knew schema version 1.
    const V1: &[Migration] = &[v0_create_tables];

    #[test]
    fn a_new_store_is_created_whole_and_a_half_made_one_from_a_kill_is_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        // What a kill during the very first start leaves: redb had sized the file (zeros)
        // but not written its header. It is the temporary file now, never the store.
        std::fs::write(dir.path().join("s.redb.new"), vec![0u8; 4096]).unwrap();
        drop(RedbStore::open(&path).expect("open"));
        assert_eq!(version_of(&path), SCHEMA_VERSION);
        assert!(!dir.path().join("s.redb.new").exists());
    }

    #[test]
    fn a_new_file_is_created_at_the_current_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        drop(RedbStore::open(&path).expect("open"));
        assert_eq!(version_of(&path), SCHEMA_VERSION);
    }

    #[test]
    fn pending_migrations_run_once_and_keep_the_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        v1_store_with_data(&path);
        let newer: &[Migration] = &[v0_create_tables, v1_add_extra];

        let store = RedbStore::open_with(&path, newer).expect("migrate to v2");
        assert_eq!(store.load().expect("load").next_effect_id, 7);
        drop(store);
        assert_eq!(version_of(&path), 2);
        let db = redb::Database::open(&path).expect("raw open");
        let txn = db.begin_read().expect("read");
        let extra = txn.open_table(EXTRA).expect("migration created the table");
        assert_eq!(
            extra.get("answer").expect("get").map(|v| v.value()),
            Some(42)
        );
        drop((extra, txn, db));

        // Opening again at v2 runs nothing; the binary that only knows v1 refuses the file.
        drop(RedbStore::open_with(&path, newer).expect("reopen at v2"));
        let err = RedbStore::open_with(&path, V1).expect_err("v1 binary on a v2 file");
        assert!(
            matches!(
                err,
                StoreError::TooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_failed_migration_leaves_the_old_version_and_no_trace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        v1_store_with_data(&path);
        let broken: &[Migration] = &[v0_create_tables, v1_fails_halfway];
        RedbStore::open_with(&path, broken).expect_err("the migration fails");

        assert_eq!(version_of(&path), 1);
        let db = redb::Database::open(&path).expect("raw open");
        let txn = db.begin_read().expect("read");
        assert!(
            txn.open_table(EXTRA).is_err(),
            "half a migration was committed"
        );
        drop((txn, db));
        let store = RedbStore::open_with(&path, V1).expect("the old binary still opens it");
        assert_eq!(store.load().expect("load").next_effect_id, 7);
    }

    #[test]
    fn a_version_1_outbox_and_portal_queue_are_carried_over_to_version_2() {
        use crate::codec::encode;
        use crate::legacy::{ActionV1, CreatePurposeV3, EffectV1, PortalRecordV1};
        use gitter_bridge_core::{
            Action, GitterCall, GitterMessageId, GitterRoomId, GitterUser, GitterUserId, Lane,
            MatrixCall, OwnedUserId, PortalState, PortalThen, RelayThen, Secret, SendOrigin, Then,
            Timestamp,
        };

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        drop(RedbStore::open_with(&path, V1).expect("a version 1 file"));
        let alice: OwnedUserId = "@alice:example.org".try_into().unwrap();
        let room = GitterRoomId::new("r1");
        let message = |n: u32| crate::legacy::GitterMessageV3 {
            id: GitterMessageId::new(format!("m{n}")),
            text: format!("queued {n}"),
            html: format!("queued {n}"),
            status: false,
            sent: "2024-01-01T00:00:00.000Z".into(),
            from: GitterUser {
                id: GitterUserId::new("u1"),
                username: "bob".into(),
                display_name: "Bob".into(),
                avatar_url: None,
            },
            parent_id: None,
        };
        let lane = Lane::Portal {
            owner: alice.clone(),
            room: room.clone(),
        };
        let create = EffectV1 {
            id: EffectId(1),
            lane: lane.clone(),
            action: ActionV1::CreateRoom {
                creator: "@gitterbot:example.org".try_into().unwrap(),
                name: "org/chat".into(),
                topic: String::new(),
                invite: vec![alice.clone()],
                power_users: Default::default(),
                purpose: CreatePurposeV3::Portal {
                    owner: alice.clone(),
                    room: room.clone(),
                },
            },
        };
        let send = EffectV1 {
            id: EffectId(2),
            lane,
            action: ActionV1::SendGitter {
                token: Secret::new("tok"),
                gitter_user: GitterUserId::new("u-alice"),
                room: room.clone(),
                text: "hi".into(),
                status: false,
                reconcile: false,
                not_before: Timestamp(5),
                origin: SendOrigin {
                    owner: alice.clone(),
                    room: "!p:example.org".try_into().unwrap(),
                    event_id: "$e:example.org".try_into().unwrap(),
                },
            },
        };
        let portal = PortalRecordV1 {
            owner: alice.clone(),
            gitter_room: room.clone(),
            room_id: None,
            state: PortalState::Creating,
            joined_ghosts: Default::default(),
            queued: vec![message(1), message(2)],
        };
        {
            let db = redb::Database::open(&path).expect("raw open");
            let txn = db.begin_write().expect("write");
            {
                let mut outbox = txn.open_table(schema::OUTBOX).unwrap();
                for e in [&create, &send] {
                    let v = encode(&path, "outbox", e).unwrap();
                    outbox.insert(e.id.0, v.as_slice()).unwrap();
                }
                let mut portals = txn.open_table(schema::PORTALS).unwrap();
                let v = encode(&path, "portals", &portal).unwrap();
                portals
                    .insert((alice.as_str(), room.as_str()), v.as_slice())
                    .unwrap();
                let mut rooms = txn.open_table(schema::GITTER_ROOMS).unwrap();
                let record = crate::legacy::GitterRoomRecordV2 {
                    id: room.clone(),
                    uri: Some("org/chat".into()),
                    name: "org/chat".into(),
                    topic: String::new(),
                    user_count: None,
                    cursor: Some(GitterMessageId::new("c1")),
                    reader: None,
                    recent: Default::default(),
                };
                let v = encode(&path, "gitter_rooms", &record).unwrap();
                rooms.insert(room.as_str(), v.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }

        let store = RedbStore::open(&path).expect("migrates");
        let snap = store.load().expect("load");
        drop(store);
        assert_eq!(version_of(&path), SCHEMA_VERSION);
        let create = &snap.outbox[&EffectId(1)];
        assert!(
            matches!(&create.then, Then::Portal(PortalThen::Created { owner, .. }) if owner == &alice)
        );
        match &create.action {
            Action::Matrix(MatrixCall::CreateRoom { alias, name, .. }) => {
                assert_eq!(name, "org/chat");
                assert!(alias.starts_with(gitter_bridge_core::PORTAL_ALIAS_PREFIX));
                assert_eq!(
                    alias.len(),
                    gitter_bridge_core::PORTAL_ALIAS_PREFIX.len() + 32
                );
            }
            other => panic!("{other:?}"),
        }
        let send = &snap.outbox[&EffectId(2)];
        assert!(matches!(&send.then, Then::Relay(RelayThen::ToGitter(o)) if o.owner == alice));
        match &send.action {
            Action::Gitter {
                call: GitterCall::SendMessage { text, after, .. },
                ..
            } => {
                assert_eq!(text, "hi");
                assert_eq!(
                    after,
                    &Some(GitterMessageId::new("c1")),
                    "the room's cursor"
                );
            }
            other => panic!("{other:?}"),
        }
        let p = &snap.portals[&(alice.clone(), room.clone())];
        assert_eq!(p.state, PortalState::Creating);
        let queued: Vec<_> = snap
            .queued_for(&alice, &room)
            .map(|(_, m)| m.text.clone())
            .collect();
        assert_eq!(queued, ["queued 1", "queued 2"], "in their order");
        assert_eq!(
            snap.cursors.get(&room),
            Some(&GitterMessageId::new("c1")),
            "version 3 keeps the cursor in its own row"
        );
    }

    #[test]
    fn a_sealed_version_3_outbox_is_opened_typed_and_sealed_again() {
        use crate::codec::encode;
        use crate::legacy::{ActionV3, EffectV3};
        use crate::seal::{Sealer, TokenKey};
        use gitter_bridge_core::{Action, GitterCall, Lane, LoginThen, Secret, Then};

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        let key = TokenKey::from_bytes([7; 32]);
        drop(RedbStore::open_with_and_key(&path, &MIGRATIONS[..3], &key).expect("a sealed v3"));
        let user: gitter_bridge_core::OwnedUserId = "@alice:example.org".try_into().unwrap();
        let old = EffectV3 {
            id: EffectId(5),
            lane: Lane::Login(user.clone()),
            action: ActionV3::GetGitterUser {
                token: Secret::new("sealed-token"),
                user: user.clone(),
                request: gitter_bridge_core::RequestId(3),
            },
        };
        {
            let db = redb::Database::open(&path).expect("raw open");
            let txn = db.begin_write().expect("write");
            {
                let mut outbox = txn.open_table(schema::OUTBOX).unwrap();
                let plain = encode(&path, "outbox", &old).unwrap();
                let sealed = Sealer::new(&key)
                    .seal("outbox", &5u64.to_le_bytes(), &plain)
                    .unwrap();
                outbox.insert(5, sealed.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        assert_eq!(version_of(&path), 3);

        let store = RedbStore::open_with_key(&path, Some(&key)).expect("migrates with the key");
        let snap = store.load().expect("load");
        drop(store);
        assert_eq!(version_of(&path), SCHEMA_VERSION);
        let e = &snap.outbox[&EffectId(5)];
        assert_eq!(
            (&e.action, &e.then),
            (
                &Action::Gitter {
                    token: Secret::new("sealed-token"),
                    call: GitterCall::CurrentUser,
                },
                &Then::Login(LoginThen::UserFetched {
                    user,
                    request: gitter_bridge_core::RequestId(3),
                })
            )
        );
        // Still sealed on disk: the token is not in the file.
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"sealed-token"));
    }
}
