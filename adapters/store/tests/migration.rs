//! Stores written by earlier mains (`fixtures/store/`) open with this binary, migrate to the
//! current schema in place, and load what those binaries loaded from them:
//!
//! * schema version 2 (before issue 14): every row kept, the cursors moved out of the rooms,
//!   the mappings moved to their compact table (with the time of the migration as their age);
//! * schema version 3 (before typed effects): every row kept, and each kind of outbox row
//!   the old binary could hold becomes the typed effect and continuation written out by hand
//!   below (not by the migration's code).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{effect, event, gmsg, groom, guser, room, user};
use gitter_bridge_core::{
    Action, CommandThen, Effect, EffectId, GhostThen, GitterCall, InviteThen, Lane, LoginThen,
    MatrixCall, MatrixContent, OutMsgType, PortalThen, PruneThen, RelayRef, RelayThen, RequestId,
    ResolvePurpose, Secret, SendOrigin, StoreCall, StreamCall, StreamThen, Then, Timestamp,
};
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
    assert_eq!(SCHEMA_VERSION, 5);

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let store = RedbStore::open(&path).expect("the old file opens and migrates");
    let snap = store.load().expect("load");

    // Untouched tables load exactly as before.
    assert_tables_as_before(&snap, &before, UNTOUCHED);
    assert!(!snap.queued.is_empty());
    // Version 5's tables are there, empty: ghosts get their avatars as they next speak.
    assert!(snap.avatars.is_empty() && snap.ghost_avatars.is_empty());
    assert!(snap.portal_avatars.is_empty());
    // The outbox holds three of the numbered effects, typed now.
    let outbox: Vec<_> = snap.outbox.values().cloned().collect();
    assert_eq!(
        outbox,
        vec![effect(57, 1, 2), effect(58, 2, 3), effect(59, 3, 4)]
    );

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

/// The tables that no migration since schema 2 changed.
const UNTOUCHED: &[&str] = &[
    "users",
    "ghosts",
    "portals",
    "queued",
    "refused_rooms",
    "login_links",
    "oauth_states",
    "transactions",
    "events",
    "next_effect_id",
];

/// Each of `tables` loads as the old binary loaded it (maps as lists of their values).
fn assert_tables_as_before(snap: &gitter_bridge_core::Snapshot, before: &Value, tables: &[&str]) {
    let now = json!({
        "users": snap.users.values().collect::<Vec<_>>(),
        "ghosts": snap.ghosts.values().collect::<Vec<_>>(),
        "portals": snap.portals.values().collect::<Vec<_>>(),
        "gitter_rooms": snap.gitter_rooms.values().collect::<Vec<_>>(),
        "cursors": snap.cursors.iter().collect::<Vec<_>>(),
        "messages": Vec::<gitter_bridge_core::MessageRecord>::from(snap.messages.clone()),
        "queued": snap.queued.iter().collect::<Vec<_>>(),
        "refused_rooms": snap.refused_rooms,
        "login_links": snap.login_links,
        "oauth_states": snap.oauth_states,
        "transactions": snap.transactions,
        "events": snap.events,
        "next_effect_id": snap.next_effect_id,
    });
    for table in tables {
        let mut was = before[table].clone();
        if *table == "queued" {
            // Schema 4 keeps a message's mentions; those queued by an older binary have none.
            for row in was.as_array_mut().unwrap() {
                row[1]["mentions"] = json!([]);
            }
        }
        assert_eq!(now[table], was, "table {table}");
    }
}

fn open_fixture(name: &str, dir: &tempfile::TempDir) -> (std::path::PathBuf, Value) {
    let path = dir.path().join("bridge.redb");
    std::fs::copy(fixture(&format!("{name}.redb")), &path).expect("copy the fixture");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap())
            .unwrap();
    (path, before)
}

#[test]
fn a_schema_3_store_written_by_the_old_main_migrates_every_kind_of_effect_to_its_typed_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, before) = open_fixture("schema3", &dir);
    let store = RedbStore::open(&path).expect("the old file opens and migrates");
    let snap = store.load().expect("load");
    assert_tables_as_before(&snap, &before, UNTOUCHED);
    assert_tables_as_before(&snap, &before, &["gitter_rooms", "cursors", "messages"]);
    let mut expected = vec![effect(57, 1, 2), effect(58, 2, 3), effect(59, 3, 4)];
    expected.extend(
        every_kind_typed()
            .into_iter()
            .enumerate()
            .map(|(i, (lane, action, then))| Effect {
                id: EffectId(1000 + i as u64),
                lane,
                action,
                then,
            }),
    );
    let outbox: Vec<_> = snap.outbox.values().cloned().collect();
    assert_eq!(outbox.len(), expected.len());
    for (got, want) in outbox.iter().zip(&expected) {
        assert_eq!(got, want, "effect {}", want.id);
    }
    drop(store);
    let again = RedbStore::open(&path)
        .expect("reopen")
        .load()
        .expect("load");
    assert_eq!(again, snap, "a second open migrates nothing");
}

/// The 30 effects of `fixtures/store/schema3.redb` (ids 1000 on), as this binary writes them.
fn every_kind_typed() -> Vec<(Lane, Action, Then)> {
    let tok = || Secret::new("token-made-up-1");
    let pl = || Lane::Portal {
        owner: user(1),
        room: groom(1),
    };
    let m = Action::Matrix;
    let g = |call| Action::Gitter { token: tok(), call };
    let cmd = |then| Then::Command(then);
    let alias = "_gitter_portal_0123456789abcdef0123456789abcdef".to_owned();
    vec![
        (
            pl(),
            m(MatrixCall::RegisterGhost {
                user: common::ghost_mxid(1),
            }),
            Then::Ghost(GhostThen::Registered(common::ghost_mxid(1))),
        ),
        (
            pl(),
            m(MatrixCall::SetDisplayName {
                user: common::ghost_mxid(1),
                name: "Ghost One".into(),
            }),
            Then::Nothing,
        ),
        (
            pl(),
            m(MatrixCall::CreateRoom {
                creator: user(0),
                name: "room one".into(),
                topic: "topic".into(),
                invite: vec![user(1)],
                power_users: [(user(1), 100)].into_iter().collect(),
                alias: alias.clone(),
            }),
            Then::Portal(PortalThen::Created {
                owner: user(1),
                room: groom(1),
                alias,
            }),
        ),
        (
            pl(),
            m(MatrixCall::Invite {
                room: room(1),
                sender: user(0),
                target: user(1),
            }),
            Then::Nothing,
        ),
        (
            Lane::User(user(2)),
            m(MatrixCall::Join {
                room: room(2),
                user: user(0),
            }),
            Then::Invite(InviteThen::BotJoined {
                room: room(2),
                inviter: user(2),
                permitted: true,
            }),
        ),
        (
            pl(),
            m(MatrixCall::Join {
                room: room(1),
                user: common::ghost_mxid(3),
            }),
            Then::Nothing,
        ),
        (
            pl(),
            m(MatrixCall::Leave {
                room: room(1),
                user: common::ghost_mxid(3),
            }),
            Then::Nothing,
        ),
        (
            pl(),
            m(MatrixCall::Kick {
                room: room(1),
                sender: user(0),
                target: user(1),
                reason: "logged out".into(),
            }),
            Then::Nothing,
        ),
        (
            pl(),
            m(MatrixCall::SendMessage {
                room: room(1),
                sender: common::ghost_mxid(2),
                content: MatrixContent {
                    msgtype: OutMsgType::Text,
                    body: "hi".into(),
                    formatted_body: Some("<b>hi</b>".into()),
                    thread: None,
                    mentions: None,
                },
                ts: Some(Timestamp(1_700_000_000_123)),
            }),
            Then::Relay(RelayThen::ToMatrix(RelayRef {
                owner: user(1),
                gitter_id: gmsg(900),
            })),
        ),
        (
            Lane::User(user(1)),
            m(MatrixCall::SendMessage {
                room: room(5),
                sender: user(0),
                content: MatrixContent::notice("a notice"),
                ts: None,
            }),
            Then::Nothing,
        ),
        (
            Lane::User(user(1)),
            m(MatrixCall::DeleteAlias {
                alias: "#_gitter_portal_0123:example.org".into(),
            }),
            Then::Nothing,
        ),
        (
            Lane::User(user(2)),
            m(MatrixCall::RoomMembers { room: room(2) }),
            Then::Invite(InviteThen::CheckPrivate {
                room: room(2),
                inviter: user(2),
            }),
        ),
        (
            Lane::Login(user(3)),
            Action::OAuth {
                code: Secret::new("code-made-up"),
            },
            Then::Login(LoginThen::CodeExchanged {
                user: user(3),
                request: RequestId(7),
            }),
        ),
        (
            Lane::Login(user(3)),
            g(GitterCall::CurrentUser),
            Then::Login(LoginThen::UserFetched {
                user: user(3),
                request: RequestId(7),
            }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::ListRooms),
            cmd(CommandThen::Listed { user: user(1) }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::ListRooms),
            Then::Login(LoginThen::OpenPortals { user: user(1) }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::ResolveRoom {
                uri: "org/one".into(),
            }),
            cmd(CommandThen::Resolved {
                user: user(1),
                uri: "org/one".into(),
                purpose: ResolvePurpose::Join,
            }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::ResolveRoom {
                uri: "org/two".into(),
            }),
            cmd(CommandThen::Resolved {
                user: user(1),
                uri: "org/two".into(),
                purpose: ResolvePurpose::Leave,
            }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::ResolveRoom {
                uri: "org/three".into(),
            }),
            cmd(CommandThen::Resolved {
                user: user(1),
                uri: "org/three".into(),
                purpose: ResolvePurpose::Invite,
            }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::JoinRoom {
                gitter_user: guser(1),
                room: groom(2),
            }),
            cmd(CommandThen::Joined { user: user(1) }),
        ),
        (
            Lane::User(user(1)),
            g(GitterCall::LeaveRoom {
                gitter_user: guser(1),
                room: groom(3),
            }),
            cmd(CommandThen::Left {
                user: user(1),
                room: groom(3),
                uri: "org/three".into(),
            }),
        ),
        (
            pl(),
            g(GitterCall::RoomMembers { room: groom(1) }),
            Then::Portal(PortalThen::Members {
                owner: user(1),
                room: groom(1),
            }),
        ),
        (
            Lane::Stream(groom(1)),
            g(GitterCall::FetchMessages {
                room: groom(1),
                after: Some(gmsg(5)),
                limit: 100,
            }),
            Then::Stream(StreamThen::CaughtUp {
                room: groom(1),
                after: Some(gmsg(5)),
            }),
        ),
        (
            Lane::Stream(groom(2)),
            g(GitterCall::FetchMessages {
                room: groom(2),
                after: None,
                limit: 1,
            }),
            Then::Stream(StreamThen::CaughtUp {
                room: groom(2),
                after: None,
            }),
        ),
        (
            pl(),
            g(GitterCall::SendMessage {
                gitter_user: guser(1),
                room: groom(1),
                text: "from matrix".into(),
                status: true,
                reconcile: true,
                after: Some(gmsg(6)),
                parent: None,
            }),
            Then::Relay(RelayThen::ToGitter(SendOrigin {
                owner: user(1),
                room: room(1),
                event_id: event(77),
            })),
        ),
        (
            pl(),
            g(GitterCall::SendMessage {
                gitter_user: guser(1),
                room: groom(1),
                text: "second".into(),
                status: false,
                reconcile: false,
                after: None,
                parent: None,
            }),
            Then::Relay(RelayThen::ToGitter(SendOrigin {
                owner: user(1),
                room: room(1),
                event_id: event(78),
            })),
        ),
        (
            Lane::Stream(groom(1)),
            Action::Stream(StreamCall::Open {
                room: groom(1),
                token: tok(),
            }),
            Then::Nothing,
        ),
        (
            Lane::Stream(groom(4)),
            Action::Stream(StreamCall::Close { room: groom(4) }),
            Then::Nothing,
        ),
        (
            Lane::Store,
            Action::Store(StoreCall::PruneMappings {
                older_than: Timestamp(1_600_000_000_000),
                resume: Some(vec![1, 2, 3]),
                batch: 1000,
            }),
            Then::Prune(PruneThen::Pruned {
                older_than: Timestamp(1_600_000_000_000),
            }),
        ),
        (
            Lane::Notices(user(1)),
            m(MatrixCall::SendMessage {
                room: room(1),
                sender: user(0),
                content: MatrixContent {
                    msgtype: OutMsgType::Emote,
                    body: "waves".into(),
                    formatted_body: None,
                    thread: None,
                    mentions: None,
                },
                ts: None,
            }),
            Then::Nothing,
        ),
    ]
}
