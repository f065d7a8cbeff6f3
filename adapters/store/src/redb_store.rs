//! [`RedbStore`]: the durable store, one redb file.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use gitter_bridge_core::{
    Change, ChangeSet, Effect, GhostRecord, GitterMessageId, GitterRoomId, GitterRoomRecord,
    MessageRecord, Origin, OwnedEventId, OwnedUserId, PortalRecord, Snapshot, Ticket, Timestamp,
    UserRecord,
};
use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, Table, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::compact::{StoredEvent, gitter_id_from_key, gitter_id_key};
use crate::error::{RedbContext, StoreError, redb_error};
use crate::migrate::{self, MIGRATIONS, Migration};
use crate::schema::{
    AVATARS, CURSORS, EVENTS, GHOST_AVATARS, GHOSTS, GITTER_ROOMS, LOGIN_LINKS, MAPPINGS, META,
    META_NEXT_EFFECT_ID, META_NEXT_PORTAL_NO, META_TOKEN_KEY_CHECK, OAUTH_STATES, OUTBOX,
    PORTAL_AVATARS, PORTAL_NUMBERS, PORTALS, QUEUED, REFUSED_ROOMS, TRANSACTIONS, USERS,
};
use crate::seal::{SealError, Sealer, TokenKey};
use crate::{Pruned, Store};

/// redb's page cache. redb defaults to 1 GiB; the bridge reads the whole state once at start
/// and then mostly appends, so a small cache keeps the resident size modest without slowing
/// commits (they touch a few pages per table). It fills as the store grows: at 64 MiB the
/// bridge's RSS in `bridge-sim load --rate 200` went on rising for minutes (87 MiB after
/// 90 s, 136 MiB after 420 s), at 16 MiB it levels off within two (67 MiB at 60 s, 80 MiB
/// from 120 s on): the resident size of a long run is that of a short one.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How a store file's space is used ([`RedbStore::disk_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of keys and values.
    pub stored_bytes: u64,
    /// Bytes of redb's own structure (page headers, branch pages, table tree).
    pub metadata_bytes: u64,
    /// Bytes in allocated pages that hold nothing (partly filled pages).
    pub fragmented_bytes: u64,
    /// Bytes of all allocated pages; the rest of the file is free space redb reuses.
    pub allocated_bytes: u64,
}

/// A `mappings` value: a [`MessageRecord`] without the fields its key and its portal give.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredMapping {
    pub(crate) event: Option<StoredEvent>,
    pub(crate) origin: Origin,
    /// `MessageRecord::at`, ms since the Unix epoch.
    pub(crate) at: u64,
}

/// The number of the portal (owner, room), given on first sight and never reused.
pub(crate) fn number_portal(
    numbers: &mut Table<'_, (&'static str, &'static str), u64>,
    meta: &mut Table<'_, &'static str, u64>,
    path: &Path,
    owner: &str,
    room: &str,
) -> Result<u64, StoreError> {
    if let Some(no) = numbers.get((owner, room)).ctx(path, WRITING)? {
        return Ok(no.value());
    }
    let no = meta
        .get(META_NEXT_PORTAL_NO)
        .ctx(path, WRITING)?
        .map_or(0, |v| v.value());
    meta.insert(META_NEXT_PORTAL_NO, no + 1)
        .ctx(path, WRITING)?;
    numbers.insert((owner, room), no).ctx(path, WRITING)?;
    Ok(no)
}

/// The durable store: one redb file holding the tables of `schema.rs`.
///
/// Holds the file open exclusively (redb locks it): a second `open` of the same path, in this
/// process or another, fails with [`StoreError::AlreadyOpen`].
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    /// Seals the `users` and `outbox` values when the store was opened with a key.
    sealer: Option<Sealer>,
    /// Rows written in clear by an earlier run and sealed by this open.
    sealed_on_open: usize,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file (not its directory) if it does not exist,
    /// and migrating it to [`crate::SCHEMA_VERSION`] in one write transaction.
    ///
    /// Refused, with the file left byte-for-byte as it was: a directory, a missing parent
    /// directory, a file that is not a redb database or is damaged, a redb database that is not
    /// a gitter-bridge store, and a store whose schema is newer than this binary's.
    ///
    /// Gitter tokens stay in clear (see [`RedbStore::open_with_key`]); a store whose tokens are
    /// encrypted is refused with [`StoreError::KeyMissing`].
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        Self::open_sealed_with(path.as_ref(), MIGRATIONS, None)
    }

    /// [`RedbStore::open`], sealing the rows that carry Gitter tokens (every `users` and
    /// `outbox` value) with `key` when there is one (see the crate documentation, "Secrets").
    ///
    /// * A store written in clear and opened with a key is sealed at once, every such row in
    ///   one write transaction ([`RedbStore::sealed_on_open`] says how many), and stays sealed.
    /// * A sealed store opened without a key fails with [`StoreError::KeyMissing`], with
    ///   another key with [`StoreError::WrongKey`], before any row is read or written.
    pub fn open_with_key(
        path: impl AsRef<Path>,
        key: Option<&TokenKey>,
    ) -> Result<RedbStore, StoreError> {
        Self::open_sealed_with(path.as_ref(), MIGRATIONS, key)
    }

    /// [`RedbStore::open`] with an explicit migration list (tests exercise the mechanism).
    #[cfg(test)]
    pub(crate) fn open_with(
        path: &Path,
        migrations: &[Migration],
    ) -> Result<RedbStore, StoreError> {
        Self::open_sealed_with(path, migrations, None)
    }

    /// [`RedbStore::open_with`] with a token key.
    #[cfg(test)]
    pub(crate) fn open_with_and_key(
        path: &Path,
        migrations: &[Migration],
        key: &TokenKey,
    ) -> Result<RedbStore, StoreError> {
        Self::open_sealed_with(path, migrations, Some(key))
    }

    /// [`RedbStore::open_with_key`] with an explicit migration list.
    fn open_sealed_with(
        path: &Path,
        migrations: &[Migration],
        key: Option<&TokenKey>,
    ) -> Result<RedbStore, StoreError> {
        let sealer = key.map(Sealer::new);
        let existing = inspect_path(path)?;
        if existing {
            precheck(path, migrations, sealer.as_ref())?;
        } else {
            create_atomically(path, migrations)?;
        }
        let db = guard_panic(path, || {
            Builder::new()
                .set_cache_size(CACHE_BYTES)
                // No full check of every page on open: it reads the whole file, and since a
                // start loads only the hot set (issue 14) the file is mostly history nobody
                // reads at start (`bridge-sim restore-bench`, 10M mappings: a start took
                // 3.06 s with the check and 0.83 s without). A damaged page is still refused
                // when it is read (`tests/bad_input.rs` damages every page in turn), panics
                // included (`guard_panic`), and a kill mid-commit still reopens at the last
                // commit (`tests/crash.rs`).
                .set_check_integrity_on_open(false)
                .create(path)
                .map_err(|e| open_error(path, e))
        })?;
        // The key again (`precheck` could not read a file that needed a repair): a sealed
        // file must not be migrated or written by a bridge that could not read it afterwards.
        let check = guard_panic(path, || read_key_check(&db, path))?;
        check_key(path, check, sealer.as_ref())?;
        // Migrations meet sealed rows only in a file that is sealed already; a file in clear
        // opened with a key for the first time is migrated in clear and sealed after.
        let sealed = sealer.as_ref().filter(|_| check.is_some());
        migrate::run(&db, path, migrations, sealed)?;
        let sealed_on_open = match (&sealer, check) {
            (Some(s), None) => seal_all(&db, path, s)?,
            _ => 0,
        };
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            sealer,
            sealed_on_open,
        })
    }

    /// How the file's space is used (redb's own count, for benchmarks and operators). Opens
    /// and aborts an empty write transaction.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let path = self.path.as_path();
        const DURING: &str = "reading the space usage";
        let txn = self.db.begin_write().ctx(path, DURING)?;
        let stats = txn.stats().ctx(path, DURING)?;
        txn.abort().ctx(path, DURING)?;
        Ok(DiskUsage {
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
        })
    }

    /// Gives the file's free pages back (redb's compaction): for after a bulk import, whose
    /// large transactions leave many pages free. Needs every read and write to be over, so
    /// the bridge never runs it by itself. Returns whether anything was compacted.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone();
        self.db.compact().map_err(|e| StoreError::Redb {
            path,
            during: "compacting",
            source: Box::new(e.into()),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the rows that carry Gitter tokens are encrypted (the store was opened with a
    /// key).
    pub fn tokens_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// How many rows an earlier run wrote in clear that this open encrypted (0 unless the
    /// store was opened with a key for the first time).
    pub fn sealed_on_open(&self) -> usize {
        self.sealed_on_open
    }

    fn write(&self, sets: &[ChangeSet]) -> Result<(), StoreError> {
        let path = self.path.as_path();
        let txn = self.db.begin_write().ctx(path, "starting a commit")?;
        {
            let mut tables = Tables::open(&txn, path, self.sealer.as_ref())?;
            for change in sets.iter().flat_map(|s| &s.changes) {
                tables.apply(change)?;
            }
        }
        // Durability::Immediate is redb's default: commit returns after fsync. Dropping the
        // transaction on an earlier `?` aborts it, so a failed apply writes nothing.
        txn.commit().ctx(path, "committing")
    }

    /// Loads the state: every mapping (`hot` is `None`) or the hot set of `Snapshot::hot_set`.
    fn read(&self, hot: Option<usize>) -> Result<Snapshot, StoreError> {
        let path = self.path.as_path();
        const DURING: &str = "loading";
        let txn = self.db.begin_read().ctx(path, DURING)?;
        let mut snap = Snapshot::default();

        let sealer = self.sealer.as_ref();
        for row in txn
            .open_table(USERS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let plain = unseal(sealer, path, "users", k.value().as_bytes(), v.value())?;
            let r: UserRecord = decode(path, "users", &plain)?;
            snap.users.insert(r.user.clone(), r);
        }
        for row in txn
            .open_table(GHOSTS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (_, v) = row.ctx(path, DURING)?;
            let r: GhostRecord = decode(path, "ghosts", v.value())?;
            snap.ghosts.insert(r.gitter_id.clone(), r);
        }
        for row in txn
            .open_table(PORTALS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (_, v) = row.ctx(path, DURING)?;
            let r: PortalRecord = decode(path, "portals", v.value())?;
            snap.portals
                .insert((r.owner.clone(), r.gitter_room.clone()), r);
        }
        for row in txn
            .open_table(GITTER_ROOMS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (_, v) = row.ctx(path, DURING)?;
            let r: GitterRoomRecord = decode(path, "gitter_rooms", v.value())?;
            snap.gitter_rooms.insert(r.id.clone(), r);
        }
        for row in txn
            .open_table(CURSORS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            snap.cursors.insert(
                GitterRoomId::new(k.value()),
                GitterMessageId::new(v.value()),
            );
        }
        let portals = portal_numbers(&txn, path)?;
        let mappings = txn.open_table(MAPPINGS).ctx(path, DURING)?;
        match hot {
            None => {
                for row in mappings.iter().ctx(path, DURING)? {
                    let (k, v) = row.ctx(path, DURING)?;
                    let (no, gitter_id) = k.value();
                    let m = mapping(path, &portals, no, gitter_id, v.value())?;
                    snap.messages.insert(m);
                }
            }
            Some(newest) => {
                // Per portal, two short ranges of its contiguous rows: those after the
                // room's cursor, and the `newest` at or before it (`Snapshot::hot_set`).
                for (no, (_, room)) in &portals {
                    let cursor = snap.cursors.get(room).map(|c| gitter_id_key(c.as_str()));
                    let mut take = |row: Result<MappingRow<'_>, redb::StorageError>| {
                        let (k, v) = row.ctx(path, DURING)?;
                        let (no, gitter_id) = k.value();
                        let m = mapping(path, &portals, no, gitter_id, v.value())?;
                        snap.messages.insert(m);
                        Ok(())
                    };
                    let none: &[u8] = &[];
                    match cursor.as_deref() {
                        None => {
                            for row in mappings
                                .range((*no, none)..(*no + 1, none))
                                .ctx(path, DURING)?
                            {
                                take(row)?;
                            }
                        }
                        Some(c) => {
                            let after = (
                                std::ops::Bound::Excluded((*no, c)),
                                std::ops::Bound::Excluded((*no + 1, none)),
                            );
                            for row in mappings.range::<(u64, &[u8])>(after).ctx(path, DURING)? {
                                take(row)?;
                            }
                            for row in mappings
                                .range((*no, none)..=(*no, c))
                                .ctx(path, DURING)?
                                .rev()
                                .take(newest)
                            {
                                take(row)?;
                            }
                        }
                    }
                }
            }
        }
        for row in txn
            .open_table(REFUSED_ROOMS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, _) = row.ctx(path, DURING)?;
            let room =
                k.value()
                    .try_into()
                    .map_err(|e: ruma::IdParseError| StoreError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!("refused_rooms holds an invalid room id: {e}"),
                    })?;
            snap.refused_rooms.insert(room);
        }
        for row in txn
            .open_table(LOGIN_LINKS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let t: Ticket = decode(path, "login_links", v.value())?;
            snap.login_links.insert(k.value().to_owned(), t);
        }
        for row in txn
            .open_table(OAUTH_STATES)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let t: Ticket = decode(path, "oauth_states", v.value())?;
            snap.oauth_states.insert(k.value().to_owned(), t);
        }
        // Sequence keys iterate in ascending order: oldest first, as the deque wants.
        for row in txn
            .open_table(TRANSACTIONS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (_, v) = row.ctx(path, DURING)?;
            snap.transactions
                .push_back(gitter_bridge_core::AsTxnId::new(v.value()));
        }
        for row in txn
            .open_table(EVENTS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (_, v) = row.ctx(path, DURING)?;
            let id = v
                .value()
                .try_into()
                .map_err(|e: ruma::IdParseError| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("events holds an invalid event id: {e}"),
                })?;
            snap.events.push_back(id);
        }
        for row in txn
            .open_table(OUTBOX)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let plain = unseal(sealer, path, "outbox", &k.value().to_le_bytes(), v.value())?;
            let e: Effect = decode(path, "outbox", &plain)?;
            snap.outbox.insert(e.id, e);
        }
        for row in txn
            .open_table(QUEUED)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let (owner, room, seq) = k.value();
            let owner = owner
                .try_into()
                .map_err(|e: ruma::IdParseError| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("queued holds an invalid user id: {e}"),
                })?;
            let m: gitter_bridge_core::GitterMessage = decode(path, "queued", v.value())?;
            snap.queued
                .insert((owner, gitter_bridge_core::GitterRoomId::new(room), seq), m);
        }
        for row in txn
            .open_table(AVATARS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            snap.avatars
                .insert(k.value().to_owned(), v.value().to_owned());
        }
        for row in txn
            .open_table(GHOST_AVATARS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            snap.ghost_avatars.insert(
                gitter_bridge_core::GitterUserId::new(k.value()),
                v.value().to_owned(),
            );
        }
        for row in txn
            .open_table(PORTAL_AVATARS)
            .ctx(path, DURING)?
            .iter()
            .ctx(path, DURING)?
        {
            let (k, v) = row.ctx(path, DURING)?;
            let room =
                k.value()
                    .try_into()
                    .map_err(|e: ruma::IdParseError| StoreError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!("portal_avatars holds an invalid room id: {e}"),
                    })?;
            snap.portal_avatars.insert(room, v.value().to_owned());
        }
        let meta = txn.open_table(META).ctx(path, DURING)?;
        snap.next_effect_id = meta
            .get(META_NEXT_EFFECT_ID)
            .ctx(path, DURING)?
            .map_or(0, |v| v.value());
        Ok(snap)
    }
}

impl Store for RedbStore {
    fn apply(&mut self, sets: &[ChangeSet]) -> Result<(), StoreError> {
        if sets.iter().all(ChangeSet::is_empty) {
            // Nothing to persist: skip the fsync.
            return Ok(());
        }
        self.write(sets)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        guard_panic(&self.path, || self.read(None))
    }

    fn load_hot(&self, newest: usize) -> Result<Snapshot, StoreError> {
        guard_panic(&self.path, || self.read(Some(newest)))
    }

    fn prune_mappings(
        &mut self,
        older_than: Timestamp,
        resume: Option<Vec<u8>>,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        guard_panic(&self.path, || self.prune(older_than, resume, batch))
    }

    fn mapping_by_gitter_id(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        gitter_id: &GitterMessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        guard_panic(&self.path, || {
            self.find_mapping(owner, room, |mappings, no, path| {
                let key = gitter_id_key(gitter_id.as_str());
                Ok(mappings
                    .get((no, key.as_slice()))
                    .ctx(path, LOOKING_UP)?
                    .map(|v| (key.clone(), v.value().to_vec())))
            })
        })
    }

    fn mapping_by_event(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        event_id: &OwnedEventId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let wanted = StoredEvent::from_id(event_id);
        guard_panic(&self.path, || {
            self.find_mapping(owner, room, |mappings, no, path| {
                let none: &[u8] = &[];
                // Newest first, and only so far: the store's lock is held meanwhile, and an
                // edit or redaction is of a recent message far more often than of an old one.
                for row in mappings
                    .range((no, none)..(no + 1, none))
                    .ctx(path, LOOKING_UP)?
                    .rev()
                    .take(EVENT_SCAN_ROWS)
                {
                    let (k, v) = row.ctx(path, LOOKING_UP)?;
                    let m: StoredMapping = decode(path, "mappings", v.value())?;
                    if m.event.as_ref() == Some(&wanted) {
                        return Ok(Some((k.value().1.to_vec(), v.value().to_vec())));
                    }
                }
                Ok(None)
            })
        })
    }
}

const LOOKING_UP: &str = "looking up a mapping";

/// How many of a portal's newest mappings a lookup by event reads at most (about 10 ms of
/// reading): a mapping older than that is answered as not found, and the asker falls back as
/// for a message the bridge never saw.
pub(crate) const EVENT_SCAN_ROWS: usize = 100_000;

/// The `mappings` table as a read transaction opens it.
type MappingsTable = redb::ReadOnlyTable<(u64, &'static [u8]), &'static [u8]>;

impl RedbStore {
    /// One mapping of the portal (owner, room): `find` gets the portal's number and returns
    /// the row it chose (its Gitter id key and value).
    fn find_mapping(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        find: impl FnOnce(&MappingsTable, u64, &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let path = self.path.as_path();
        let txn = self.db.begin_read().ctx(path, LOOKING_UP)?;
        let Some(no) = txn
            .open_table(PORTAL_NUMBERS)
            .ctx(path, LOOKING_UP)?
            .get((owner.as_str(), room.as_str()))
            .ctx(path, LOOKING_UP)?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let mappings = txn.open_table(MAPPINGS).ctx(path, LOOKING_UP)?;
        let Some((key, value)) = find(&mappings, no, path)? else {
            return Ok(None);
        };
        let portals = std::iter::once((no, (owner.clone(), room.clone()))).collect();
        mapping(path, &portals, no, &key, &value).map(Some)
    }
}

impl RedbStore {
    /// One batch of [`Store::prune_mappings`]. The resume point is the key of the last row
    /// visited: its portal number (8 bytes, big-endian) and its compact Gitter id.
    fn prune(
        &self,
        older_than: Timestamp,
        resume: Option<Vec<u8>>,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let path = self.path.as_path();
        const DURING: &str = "pruning old mappings";
        let start = match &resume {
            None => None,
            Some(r) if r.len() >= 8 => {
                let (no, id) = r.split_at(8);
                Some((
                    u64::from_be_bytes(no.try_into().expect("8 bytes")),
                    id.to_vec(),
                ))
            }
            Some(_) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "a prune resume point of fewer than 8 bytes".to_owned(),
                });
            }
        };
        let txn = self.db.begin_write().ctx(path, DURING)?;
        let mut removed = 0u64;
        let mut last = None;
        let mut visited = 0u32;
        {
            let mut mappings = txn.open_table(MAPPINGS).ctx(path, DURING)?;
            let mut old = Vec::new();
            {
                let range = match &start {
                    None => mappings.range::<(u64, &[u8])>(..).ctx(path, DURING)?,
                    Some((no, id)) => mappings
                        .range::<(u64, &[u8])>((
                            std::ops::Bound::Excluded((*no, id.as_slice())),
                            std::ops::Bound::Unbounded,
                        ))
                        .ctx(path, DURING)?,
                };
                for row in range {
                    if visited == batch.max(1) {
                        break;
                    }
                    visited += 1;
                    let (k, v) = row.ctx(path, DURING)?;
                    let (no, id) = k.value();
                    let m: StoredMapping = decode(path, "mappings", v.value())?;
                    if m.at < older_than.0 {
                        old.push((no, id.to_vec()));
                    }
                    last = Some((no, id.to_vec()));
                }
            }
            for (no, id) in &old {
                mappings.remove((*no, id.as_slice())).ctx(path, DURING)?;
                removed += 1;
            }
        }
        txn.commit().ctx(path, DURING)?;
        let resume = if visited < batch.max(1) {
            None
        } else {
            last.map(|(no, id)| {
                let mut r = no.to_be_bytes().to_vec();
                r.extend_from_slice(&id);
                r
            })
        };
        Ok(Pruned { removed, resume })
    }
}

/// A row of `mappings` as a range yields it.
type MappingRow<'a> = (
    redb::AccessGuard<'a, (u64, &'static [u8])>,
    redb::AccessGuard<'a, &'static [u8]>,
);

/// Portal number -> (owner, Gitter room), from `portal_numbers`.
fn portal_numbers(
    txn: &redb::ReadTransaction,
    path: &Path,
) -> Result<std::collections::BTreeMap<u64, (OwnedUserId, GitterRoomId)>, StoreError> {
    const DURING: &str = "loading";
    let mut portals = std::collections::BTreeMap::new();
    for row in txn
        .open_table(PORTAL_NUMBERS)
        .ctx(path, DURING)?
        .iter()
        .ctx(path, DURING)?
    {
        let (k, v) = row.ctx(path, DURING)?;
        let (owner, room) = k.value();
        let owner = owner
            .try_into()
            .map_err(|e: ruma::IdParseError| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("portal_numbers holds an invalid user id: {e}"),
            })?;
        portals.insert(v.value(), (owner, GitterRoomId::new(room)));
    }
    Ok(portals)
}

/// The [`MessageRecord`] of a `mappings` row.
fn mapping(
    path: &Path,
    portals: &std::collections::BTreeMap<u64, (OwnedUserId, GitterRoomId)>,
    no: u64,
    gitter_id: &[u8],
    value: &[u8],
) -> Result<MessageRecord, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let Some((owner, room)) = portals.get(&no) else {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("mappings holds a row of portal {no}, which has no number"),
        });
    };
    let v: StoredMapping = decode(path, "mappings", value)?;
    let gitter_id = gitter_id_from_key(gitter_id).map_err(|e| corrupt(format!("mappings: {e}")))?;
    let event_id = match &v.event {
        None => None,
        Some(e) => Some(e.to_id().map_err(|e| corrupt(format!("mappings: {e}")))?),
    };
    Ok(MessageRecord {
        owner: owner.clone(),
        gitter_room: room.clone(),
        gitter_id: GitterMessageId::new(gitter_id),
        event_id,
        origin: v.origin,
        at: Timestamp(v.at),
    })
}

/// The tables of one write transaction, opened once per commit rather than once per change.
struct Tables<'txn> {
    path: &'txn Path,
    sealer: Option<&'txn Sealer>,
    users: Table<'txn, &'static str, &'static [u8]>,
    ghosts: Table<'txn, &'static str, &'static [u8]>,
    portals: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    gitter_rooms: Table<'txn, &'static str, &'static [u8]>,
    cursors: Table<'txn, &'static str, &'static str>,
    portal_numbers: Table<'txn, (&'static str, &'static str), u64>,
    mappings: Table<'txn, (u64, &'static [u8]), &'static [u8]>,
    refused_rooms: Table<'txn, &'static str, ()>,
    login_links: Table<'txn, &'static str, &'static [u8]>,
    oauth_states: Table<'txn, &'static str, &'static [u8]>,
    transactions: Table<'txn, u64, &'static str>,
    events: Table<'txn, u64, &'static str>,
    outbox: Table<'txn, u64, &'static [u8]>,
    queued: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    avatars: Table<'txn, &'static str, &'static str>,
    ghost_avatars: Table<'txn, &'static str, &'static str>,
    portal_avatars: Table<'txn, &'static str, &'static str>,
}

const WRITING: &str = "writing a change";

impl<'txn> Tables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        path: &'txn Path,
        sealer: Option<&'txn Sealer>,
    ) -> Result<Self, StoreError> {
        const DURING: &str = "opening the tables";
        Ok(Tables {
            path,
            sealer,
            users: txn.open_table(USERS).ctx(path, DURING)?,
            ghosts: txn.open_table(GHOSTS).ctx(path, DURING)?,
            portals: txn.open_table(PORTALS).ctx(path, DURING)?,
            gitter_rooms: txn.open_table(GITTER_ROOMS).ctx(path, DURING)?,
            cursors: txn.open_table(CURSORS).ctx(path, DURING)?,
            portal_numbers: txn.open_table(PORTAL_NUMBERS).ctx(path, DURING)?,
            mappings: txn.open_table(MAPPINGS).ctx(path, DURING)?,
            refused_rooms: txn.open_table(REFUSED_ROOMS).ctx(path, DURING)?,
            login_links: txn.open_table(LOGIN_LINKS).ctx(path, DURING)?,
            oauth_states: txn.open_table(OAUTH_STATES).ctx(path, DURING)?,
            transactions: txn.open_table(TRANSACTIONS).ctx(path, DURING)?,
            events: txn.open_table(EVENTS).ctx(path, DURING)?,
            outbox: txn.open_table(OUTBOX).ctx(path, DURING)?,
            queued: txn.open_table(QUEUED).ctx(path, DURING)?,
            meta: txn.open_table(META).ctx(path, DURING)?,
            avatars: txn.open_table(AVATARS).ctx(path, DURING)?,
            ghost_avatars: txn.open_table(GHOST_AVATARS).ctx(path, DURING)?,
            portal_avatars: txn.open_table(PORTAL_AVATARS).ctx(path, DURING)?,
        })
    }

    /// One change, with exactly [`Snapshot::apply`]'s semantics.
    fn apply(&mut self, change: &Change) -> Result<(), StoreError> {
        let path = self.path;
        match change {
            Change::PutUser(u) => {
                let v = encode(path, "users", u)?;
                let v = seal(self.sealer, path, "users", u.user.as_str().as_bytes(), v)?;
                self.users
                    .insert(u.user.as_str(), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::PutGhost(g) => {
                let v = encode(path, "ghosts", g)?;
                self.ghosts
                    .insert(g.gitter_id.as_str(), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::PutPortal(p) => {
                number_portal(
                    &mut self.portal_numbers,
                    &mut self.meta,
                    path,
                    p.owner.as_str(),
                    p.gitter_room.as_str(),
                )?;
                let v = encode(path, "portals", p)?;
                self.portals
                    .insert((p.owner.as_str(), p.gitter_room.as_str()), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::PutGitterRoom(r) => {
                let v = encode(path, "gitter_rooms", r)?;
                self.gitter_rooms
                    .insert(r.id.as_str(), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::DeleteGitterRoom(id) => {
                self.gitter_rooms.remove(id.as_str()).ctx(path, WRITING)?;
                self.cursors.remove(id.as_str()).ctx(path, WRITING)?;
            }
            Change::SetCursor(room, id) => {
                self.cursors
                    .insert(room.as_str(), id.as_str())
                    .ctx(path, WRITING)?;
            }
            Change::PutMessage(m) => {
                let no = number_portal(
                    &mut self.portal_numbers,
                    &mut self.meta,
                    path,
                    m.owner.as_str(),
                    m.gitter_room.as_str(),
                )?;
                let v = encode(
                    path,
                    "mappings",
                    &StoredMapping {
                        event: m.event_id.as_ref().map(StoredEvent::from_id),
                        origin: m.origin,
                        at: m.at.0,
                    },
                )?;
                let key = gitter_id_key(m.gitter_id.as_str());
                self.mappings
                    .insert((no, key.as_slice()), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::PutQueued((owner, room, seq), m) => {
                let v = encode(path, "queued", m)?;
                self.queued
                    .insert((owner.as_str(), room.as_str(), *seq), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::DeleteQueued((owner, room, seq)) => {
                self.queued
                    .remove((owner.as_str(), room.as_str(), *seq))
                    .ctx(path, WRITING)?;
            }
            Change::RefuseRoom(r) => {
                self.refused_rooms
                    .insert(r.as_str(), ())
                    .ctx(path, WRITING)?;
            }
            Change::PutLoginLink(k, t) => {
                let v = encode(path, "login_links", t)?;
                self.login_links
                    .insert(k.as_str(), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::DeleteLoginLink(k) => {
                self.login_links.remove(k.as_str()).ctx(path, WRITING)?;
            }
            Change::PutOAuthState(k, t) => {
                let v = encode(path, "oauth_states", t)?;
                self.oauth_states
                    .insert(k.as_str(), v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::DeleteOAuthState(k) => {
                self.oauth_states.remove(k.as_str()).ctx(path, WRITING)?;
            }
            Change::RememberTransaction(t) => push_back(&mut self.transactions, t.as_str(), path)?,
            Change::ForgetTransaction(t) => forget_first(&mut self.transactions, t.as_str(), path)?,
            Change::RememberEvent(e) => push_back(&mut self.events, e.as_str(), path)?,
            Change::ForgetEvent(e) => forget_first(&mut self.events, e.as_str(), path)?,
            Change::PutOutbox(e) => {
                let v = encode(path, "outbox", e)?;
                let v = seal(self.sealer, path, "outbox", &e.id.0.to_le_bytes(), v)?;
                self.outbox
                    .insert(e.id.0, v.as_slice())
                    .ctx(path, WRITING)?;
            }
            Change::DeleteOutbox(id) => {
                self.outbox.remove(id.0).ctx(path, WRITING)?;
            }
            Change::SetNextEffectId(id) => {
                self.meta
                    .insert(META_NEXT_EFFECT_ID, id.0)
                    .ctx(path, WRITING)?;
            }
            Change::PutAvatar { url, mxc } => {
                self.avatars
                    .insert(url.as_str(), mxc.as_str())
                    .ctx(path, WRITING)?;
            }
            Change::SetGhostAvatar(ghost, url) => {
                self.ghost_avatars
                    .insert(ghost.as_str(), url.as_str())
                    .ctx(path, WRITING)?;
            }
            Change::SetPortalAvatar(room, url) => {
                self.portal_avatars
                    .insert(room.as_str(), url.as_str())
                    .ctx(path, WRITING)?;
            }
        }
        Ok(())
    }
}

/// The stored form of a `users` or `outbox` value: sealed when there is a key.
pub(crate) fn seal(
    sealer: Option<&Sealer>,
    path: &Path,
    table: &'static str,
    row: &[u8],
    plain: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    match sealer {
        None => Ok(plain),
        Some(s) => s
            .seal(table, row, &plain)
            .map_err(|e| seal_error(path, table, e)),
    }
}

/// The encoded record of a stored `users` or `outbox` value.
pub(crate) fn unseal<'v>(
    sealer: Option<&Sealer>,
    path: &Path,
    table: &'static str,
    row: &[u8],
    stored: &'v [u8],
) -> Result<Cow<'v, [u8]>, StoreError> {
    match sealer {
        None => Ok(Cow::Borrowed(stored)),
        Some(s) => s
            .open(table, row, stored)
            .map(Cow::Owned)
            .map_err(|e| seal_error(path, table, e)),
    }
}

fn seal_error(path: &Path, table: &'static str, e: SealError) -> StoreError {
    StoreError::Sealed {
        path: path.to_path_buf(),
        table,
        problem: match e {
            SealError::Random(why) => format!("no random nonce for a row: {why}"),
            SealError::Encrypt => "a row could not be encrypted".to_owned(),
            SealError::Open => "a row does not decrypt with the key: it was changed or moved, \
                                or the file was written with another key"
                .to_owned(),
        },
    }
}

/// The check value of the key the file is sealed with, if it is sealed. A file without a
/// `meta` table yet (new) is not sealed; one whose `meta` is not ours is refused by the
/// schema check that follows.
fn read_key_check(db: &impl ReadableDatabase, path: &Path) -> Result<Option<u64>, StoreError> {
    const DURING: &str = "reading the token key check";
    let txn = db.begin_read().ctx(path, DURING)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(
            redb::TableError::TableDoesNotExist(_) | redb::TableError::TableTypeMismatch { .. },
        ) => {
            return Ok(None);
        }
        Err(e) => return Err(e).ctx(path, DURING),
    };
    Ok(meta
        .get(META_TOKEN_KEY_CHECK)
        .ctx(path, DURING)?
        .map(|v| v.value()))
}

/// Refuses a sealed file without its key, or with another key.
fn check_key(path: &Path, check: Option<u64>, sealer: Option<&Sealer>) -> Result<(), StoreError> {
    match (check, sealer) {
        (Some(_), None) => Err(StoreError::KeyMissing {
            path: path.to_path_buf(),
        }),
        (Some(found), Some(s)) if found != s.check() => Err(StoreError::WrongKey {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Seals every `users` and `outbox` value of a file written in clear and records the key's
/// check value, in one durable write transaction: a crash leaves the file in clear, and the
/// next open with the key seals it again. Returns how many rows were sealed.
fn seal_all(db: &Database, path: &Path, sealer: &Sealer) -> Result<usize, StoreError> {
    const DURING: &str = "encrypting the rows that hold Gitter tokens";
    let txn = db.begin_write().ctx(path, DURING)?;
    let mut sealed = 0;
    {
        let mut users = txn.open_table(USERS).ctx(path, DURING)?;
        let mut rows = Vec::new();
        for row in users.iter().ctx(path, DURING)? {
            let (k, v) = row.ctx(path, DURING)?;
            rows.push((k.value().to_owned(), v.value().to_vec()));
        }
        for (k, v) in rows {
            let v = seal(Some(sealer), path, "users", k.as_bytes(), v)?;
            users.insert(k.as_str(), v.as_slice()).ctx(path, DURING)?;
            sealed += 1;
        }
        let mut outbox = txn.open_table(OUTBOX).ctx(path, DURING)?;
        let mut rows = Vec::new();
        for row in outbox.iter().ctx(path, DURING)? {
            let (k, v) = row.ctx(path, DURING)?;
            rows.push((k.value(), v.value().to_vec()));
        }
        for (k, v) in rows {
            let v = seal(Some(sealer), path, "outbox", &k.to_le_bytes(), v)?;
            outbox.insert(k, v.as_slice()).ctx(path, DURING)?;
            sealed += 1;
        }
        let mut meta = txn.open_table(META).ctx(path, DURING)?;
        meta.insert(META_TOKEN_KEY_CHECK, sealer.check())
            .ctx(path, DURING)?;
    }
    txn.commit().ctx(path, DURING)?;
    Ok(sealed)
}

/// Creates a new store as a complete file or not at all: redb sizes a new file before it
/// writes its header, so a bridge killed during its very first start left a file of zeros
/// that no later start could open ("not a redb database", seen in the SIGKILL crash test).
/// The file is made under a temporary name, initialised to the current schema, synced, and
/// only then renamed into place; a leftover temporary file from such a kill is replaced.
fn create_atomically(path: &Path, migrations: &[Migration]) -> Result<(), StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    let tmp = path.with_file_name(name);
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        during: "creating the store file",
        source,
    };
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    create_private(&tmp)?;
    {
        let db = guard_panic(&tmp, || {
            Builder::new().create(&tmp).map_err(|e| open_error(&tmp, e))
        })?;
        migrate::run(&db, &tmp, migrations, None)?;
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Creates a missing store file readable and writable by its owner only, before redb opens
/// it. Observed (issue 13): the file was created 0644 (the umask's default) while it holds
/// every user's Gitter token. Someone else creating it first is fine: redb opens that file.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            during: "creating the file",
            source,
        }),
    }
}

/// Appends to a sequence-keyed log: the key after the last one, so ascending keys are the
/// deque's order. Keys are never reused while the log is non-empty, and u64 does not run out.
fn push_back(
    table: &mut Table<'_, u64, &'static str>,
    value: &str,
    path: &Path,
) -> Result<(), StoreError> {
    let next = table
        .last()
        .ctx(path, WRITING)?
        .map_or(0, |(k, _)| k.value().saturating_add(1));
    table.insert(next, value).ctx(path, WRITING)?;
    Ok(())
}

/// Removes the oldest entry equal to `value`, like `VecDeque::remove(position(..))`. The core
/// forgets the oldest entry, so the scan almost always stops at the first row.
fn forget_first(
    table: &mut Table<'_, u64, &'static str>,
    value: &str,
    path: &Path,
) -> Result<(), StoreError> {
    let mut found = None;
    for row in table.iter().ctx(path, WRITING)? {
        let (k, v) = row.ctx(path, WRITING)?;
        if v.value() == value {
            found = Some(k.value());
            break;
        }
    }
    if let Some(k) = found {
        table.remove(k).ctx(path, WRITING)?;
    }
    Ok(())
}

/// Checks the path before redb touches it. Returns whether a non-empty file is there (one
/// that must be checked before we write to it).
fn inspect_path(path: &Path) -> Result<bool, StoreError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(StoreError::IsDirectory {
            path: path.to_path_buf(),
        }),
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                // A bare file name: its parent is the current directory.
                Some(p) if p.as_os_str().is_empty() => Path::new("."),
                Some(p) => p,
                None => Path::new("/"),
            };
            if parent.is_dir() {
                Ok(false)
            } else {
                Err(StoreError::MissingParent {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            during: "inspecting the path",
            source,
        }),
    }
}

/// Opens an existing file read-only and checks its schema version before anything is
/// written: a writable open may update the header, and a migration would write tables, so a
/// file that is not ours or is too new must be refused here to stay byte-for-byte untouched.
///
/// A file that was not closed cleanly (the bridge crashed or was killed) cannot be opened
/// read-only, because redb must first rebuild its allocator state. Such a file was written by
/// redb, and the repair does not change its committed contents, so we let the writable open
/// repair it and check the version afterwards (still before any migration writes).
///
/// The key is checked here too, so a sealed file opened without its key, or with another,
/// is refused byte-for-byte untouched.
fn precheck(
    path: &Path,
    migrations: &[Migration],
    sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    let ro = guard_panic(path, || match Builder::new().open_read_only(path) {
        Ok(db) => Ok(Some(db)),
        Err(DatabaseError::RepairAborted) => Ok(None),
        Err(e) => Err(open_error(path, e)),
    })?;
    let Some(ro) = ro else {
        return Ok(());
    };
    let found = guard_panic(path, || migrate::read_version(&ro, path))?;
    migrate::check_supported(path, found, migrations)?;
    let check = guard_panic(path, || read_key_check(&ro, path))?;
    check_key(path, check, sealer)
}

/// Maps an open failure. redb reports a file that is not a database, or whose header does not
/// check out, in several ways (a corrupted-storage error, an I/O error of kind `InvalidData`
/// or `UnexpectedEof` for a short file, an upgrade request for an unknown format byte); all of
/// them mean "this file is not a usable store".
fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: io.to_string(),
            }
        }
        redb::Error::UpgradeRequired(v) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("unknown redb file format version {v}"),
        },
        other => redb_error(path, "opening", other),
    }
}

/// redb documents that opening or reading a file damaged outside redb may panic rather than
/// return an error. A damaged store must not take the process down with an unhelpful panic
/// message, so such a panic becomes [`StoreError::Corrupt`] naming the file.
fn guard_panic<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("redb failed while reading the file: {msg}"),
            })
        }
    }
}
