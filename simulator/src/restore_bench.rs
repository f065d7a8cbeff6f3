//! `bridge-sim restore-bench`: how long a start takes and how much memory it needs for a
//! store with a long history (issue 14: memory and start time independent of history).
//!
//! It builds a redb store like a busy bridge's: `portals` portals of 10 rooms per user and
//! 100 portals per room, every Gitter message of a room mapped in each of that room's
//! portals (so `mappings` = messages × portals per room), then measures, in a fresh child
//! process (so the build's memory does not count), what the binary does at start: open the
//! store, load the hot set ([`Store::load_hot`]) and [`Bridge::restore`] from it. It prints
//! one JSON line with `open_restore_s`, `rss_mib` (the child's peak resident size),
//! `file_bytes_per_mapping` (after compacting away the free pages the bulk build leaves) and
//! what it built.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gitter_bridge_core::{
    Bridge, Change, ChangeSet, Config, GhostRecord, GitterMessageId, GitterRoomId,
    GitterRoomRecord, GitterUserId, Login, MessageRecord, Origin, OwnedUserId, PortalRecord,
    PortalState, Secret, Timestamp, UserRecord,
};
use gitter_bridge_store::{RedbStore, Store};

/// Portals per user (each user is in this many rooms).
const ROOMS_PER_USER: usize = 10;
/// Changes per write transaction while building.
const BATCH: usize = 100_000;
const DOMAIN: &str = "bench.example";

/// What the build made and the start measured.
#[derive(Debug, serde::Serialize)]
struct Report {
    portals: usize,
    mappings: u64,
    users: usize,
    rooms: usize,
    build_s: f64,
    /// The file as the build left it, before compaction.
    file_bytes_built: u64,
    file_bytes: u64,
    file_bytes_per_mapping: f64,
    /// redb's count of the space in use: keys and values, its own structure, and the empty
    /// part of allocated pages (the rest of the file is free pages).
    stored_bytes: u64,
    metadata_bytes: u64,
    fragmented_bytes: u64,
    allocated_bytes: u64,
    open_restore_s: f64,
    rss_mib: f64,
    mappings_loaded: usize,
}

/// What the child measured.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    /// Seconds to open the store, load its hot set and restore a bridge from it.
    pub open_restore_s: f64,
    /// Peak resident set of the measuring process, MiB (`VmHWM`).
    pub rss_mib: f64,
    /// Mappings the start loaded.
    pub mappings_loaded: usize,
}

fn uid(local: &str) -> OwnedUserId {
    format!("@{local}:{DOMAIN}")
        .try_into()
        .expect("a valid user id")
}

/// A Gitter ObjectId: 4 bytes of seconds, then a counter (the order Gitter makes them in).
fn object_id(seconds: u32, counter: u64) -> String {
    format!("{seconds:08x}{counter:016x}")
}

/// An event id as Synapse makes them from room version 4 on: `$` and the unpadded URL-safe
/// base64 of a 32-byte hash (here a made-up one from `n`).
fn event_id(n: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = n;
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut id = String::with_capacity(44);
    id.push('$');
    for _ in 0..42 {
        id.push(ALPHABET[(next() % 64) as usize] as char);
    }
    // 43 characters carry 258 bits: the last one's two low bits are zero for 32 bytes.
    id.push(ALPHABET[(next() % 16 * 4) as usize] as char);
    id
}

fn room_id(r: usize) -> GitterRoomId {
    GitterRoomId::new(object_id(0x5000_0000, r as u64))
}

/// Builds the store at `path` and measures a start in a child process (`exe` is this
/// binary).
pub fn run(exe: &Path, dir: &Path, portals: usize, mappings: u64) -> Result<(), String> {
    let users = portals.div_ceil(ROOMS_PER_USER).max(1);
    // 100 portals per room (at least one room).
    let rooms = (portals / 100).max(1);
    let path = dir.join("bridge.redb");
    let _ = std::fs::remove_file(&path);
    let started = Instant::now();
    build(&path, users, rooms, portals, mappings)?;
    let build_s = started.elapsed().as_secs_f64();
    let file_bytes_built = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    // The build's large transactions leave many pages free (a running bridge's small ones
    // reuse them); the file is compacted before it is measured, as after an import.
    let usage = RedbStore::open(&path)
        .and_then(|mut s| {
            s.compact()?;
            s.disk_usage()
        })
        .map_err(|e| e.to_string())?;
    let file_bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let out = std::process::Command::new(exe)
        .args(["restore-bench", "--measure"])
        .arg(&path)
        .output()
        .map_err(|e| format!("starting the measuring process: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the measuring process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let measured: Measured = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the measuring process printed no figures: {e}"))?;
    let report = Report {
        portals,
        mappings,
        users,
        rooms,
        build_s,
        file_bytes_built,
        file_bytes,
        file_bytes_per_mapping: file_bytes as f64 / mappings.max(1) as f64,
        stored_bytes: usage.stored_bytes,
        metadata_bytes: usage.metadata_bytes,
        fragmented_bytes: usage.fragmented_bytes,
        allocated_bytes: usage.allocated_bytes,
        open_restore_s: measured.open_restore_s,
        rss_mib: measured.rss_mib,
        mappings_loaded: measured.mappings_loaded,
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The measuring child: what `gitter-bridge` does at start, timed.
pub fn measure(path: &Path) -> Result<(), String> {
    let config = Config::with_defaults(DOMAIN);
    let started = Instant::now();
    let store = RedbStore::open(path).map_err(|e| e.to_string())?;
    let snapshot = store
        .load_hot(config.hot_mappings_per_portal_at_start)
        .map_err(|e| e.to_string())?;
    let mappings_loaded = snapshot.messages.len();
    let bridge = Bridge::restore(config, [0u8; 32], snapshot);
    let open_restore_s = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let (_, rss_mib) = crate::load::status_rss(&status);
    drop(bridge);
    let m = Measured {
        open_restore_s,
        rss_mib,
        mappings_loaded,
    };
    println!("{}", serde_json::to_string(&m).map_err(|e| e.to_string())?);
    Ok(())
}

fn build(
    path: &PathBuf,
    users: usize,
    rooms: usize,
    portals: usize,
    mappings: u64,
) -> Result<(), String> {
    let mut store = RedbStore::open(path).map_err(|e| e.to_string())?;
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<Change>, store: &mut RedbStore| -> Result<(), String> {
        let set = ChangeSet {
            changes: std::mem::take(batch),
        };
        store.apply(&[set]).map_err(|e| e.to_string())
    };
    for r in 0..rooms {
        batch.push(Change::PutGitterRoom(GitterRoomRecord {
            id: room_id(r),
            uri: Some(format!("org{r}/room")),
            name: format!("org{r}/room"),
            topic: "a room of the restore bench".to_owned(),
            user_count: Some(100),
            reader: Some(uid(&format!("u{}", r % users))),
        }));
    }
    for g in 0..1000u64 {
        batch.push(Change::PutGhost(GhostRecord {
            gitter_id: GitterUserId::new(object_id(0x5100_0000, g)),
            mxid: uid(&format!("gitter_author{g}")),
            display_name: Some(format!("Author {g} (Gitter)")),
            registered: true,
        }));
    }
    // Portal p belongs to user p / 10 and room (user * 7 + j) mod rooms, the j-th of the
    // user's rooms: 10 distinct rooms per user when there are at least 10.
    let mut room_portals: Vec<Vec<OwnedUserId>> = vec![Vec::new(); rooms];
    for u in 0..users {
        let user = uid(&format!("u{u}"));
        batch.push(Change::PutUser(UserRecord {
            user: user.clone(),
            control_room: Some(format!("!control{u}").try_into().expect("room id")),
            login: Some(Login {
                gitter_id: GitterUserId::new(object_id(0x5200_0000, u as u64)),
                username: format!("u{u}"),
                token: Secret::new(format!("bench-token-{u}")),
                valid: true,
            }),
        }));
        for j in 0..ROOMS_PER_USER {
            let p = u * ROOMS_PER_USER + j;
            if p >= portals {
                break;
            }
            let r = (u * 7 + j) % rooms;
            if room_portals[r].contains(&user) {
                continue;
            }
            room_portals[r].push(user.clone());
            batch.push(Change::PutPortal(PortalRecord {
                owner: user.clone(),
                gitter_room: room_id(r),
                room_id: Some(format!("!portal{p}").try_into().expect("room id")),
                state: PortalState::Active,
                joined_ghosts: Default::default(),
            }));
        }
        if batch.len() >= BATCH {
            flush(&mut batch, &mut store)?;
        }
    }
    flush(&mut batch, &mut store)?;
    // Messages round-robin over the rooms, each mapped in every portal of its room, until
    // `mappings` rows exist.
    let mut written = 0u64;
    let mut counter = 0u64;
    let mut last: Vec<Option<String>> = vec![None; rooms];
    'messages: loop {
        for r in 0..rooms {
            counter += 1;
            let gitter_id = object_id(0x6000_0000 + (counter / 1000) as u32, counter);
            for owner in &room_portals[r] {
                if written == mappings {
                    break 'messages;
                }
                written += 1;
                batch.push(Change::PutMessage(MessageRecord {
                    owner: owner.clone(),
                    gitter_room: room_id(r),
                    gitter_id: GitterMessageId::new(gitter_id.clone()),
                    event_id: Some(event_id(written).try_into().expect("event id")),
                    origin: Origin::Gitter,
                    at: Timestamp(1_700_000_000_000 + counter),
                }));
            }
            last[r] = Some(gitter_id);
            if batch.len() >= BATCH {
                flush(&mut batch, &mut store)?;
            }
        }
        if room_portals.iter().all(Vec::is_empty) {
            break;
        }
    }
    for (r, cursor) in last.into_iter().enumerate() {
        if let Some(c) = cursor {
            batch.push(Change::SetCursor(room_id(r), GitterMessageId::new(c)));
        }
    }
    flush(&mut batch, &mut store)?;
    Ok(())
}
