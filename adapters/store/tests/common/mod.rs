//! Shared helpers for the store's tests and benchmark: id builders, deterministic change
//! sets, proptest strategies for random changes, and the reference model.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use gitter_bridge_core::{
    Action, AsTxnId, BridgeInfo, Change, ChangeSet, Effect, EffectId, GhostRecord, GitterCall,
    GitterMessage, GitterMessageId, GitterRoomId, GitterRoomRecord, GitterUser, GitterUserId, Lane,
    Login, MatrixCall, MatrixContent, MessageRecord, NewPortal, Origin, OutMsgType, OwnedEventId,
    OwnedRoomId, OwnedUserId, PortalRecord, PortalState, PortalThen, RelayRef, RelayThen, Secret,
    Snapshot, StreamCall, Then, Ticket, Timestamp, UserRecord,
};
use proptest::prelude::*;

pub fn user(n: u64) -> OwnedUserId {
    OwnedUserId::try_from(format!("@user{n}:example.org")).expect("valid user id")
}

pub fn ghost_mxid(n: u64) -> OwnedUserId {
    OwnedUserId::try_from(format!("@gitter_g{n}:example.org")).expect("valid user id")
}

pub fn room(n: u64) -> OwnedRoomId {
    // Room version 12 style: no server part.
    OwnedRoomId::try_from(format!("!room{n}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .expect("valid room id")
}

pub fn event(n: u64) -> OwnedEventId {
    OwnedEventId::try_from(format!("$event{n}BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"))
        .expect("valid event id")
}

/// A 24-hex Gitter ObjectId-like string.
pub fn oid(kind: u8, n: u64) -> String {
    format!("{kind:02x}{n:022x}")
}

pub fn groom(n: u64) -> GitterRoomId {
    GitterRoomId::new(oid(1, n))
}

pub fn guser(n: u64) -> GitterUserId {
    GitterUserId::new(oid(2, n))
}

pub fn gmsg(n: u64) -> GitterMessageId {
    GitterMessageId::new(oid(3, n))
}

pub fn gitter_message(n: u64, author: u64) -> GitterMessage {
    GitterMessage {
        id: gmsg(n),
        text: format!("hello **{n}**"),
        html: format!("hello <b>{n}</b>"),
        status: n.is_multiple_of(7),
        sent: "2024-01-01T00:00:00.000Z".to_owned(),
        from: GitterUser {
            id: guser(author),
            username: format!("gu{author}"),
            display_name: format!("Gitter User {author}"),
            avatar_url: (author.is_multiple_of(2))
                .then(|| format!("https://avatars.example/{author}")),
        },
        parent_id: (n.is_multiple_of(5)).then(|| gmsg(n.saturating_sub(1))),
        mentions: Vec::new(),
    }
}

pub fn user_record(n: u64, version: u64) -> UserRecord {
    UserRecord {
        user: user(n),
        control_room: (!version.is_multiple_of(3)).then(|| room(n)),
        login: (!version.is_multiple_of(4)).then(|| Login {
            gitter_id: guser(n),
            username: format!("gu{n}"),
            token: Secret::new(format!("token-{n}-{version}")),
            valid: !version.is_multiple_of(5),
        }),
    }
}

pub fn ghost_record(n: u64, version: u64) -> GhostRecord {
    GhostRecord {
        gitter_id: guser(n),
        mxid: ghost_mxid(n),
        display_name: (version.is_multiple_of(2))
            .then(|| format!("Gitter User {n} v{version} (Gitter)")),
        registered: !version.is_multiple_of(3),
    }
}

pub fn portal_record(owner: u64, r: u64, version: u64) -> PortalRecord {
    PortalRecord {
        owner: user(owner),
        gitter_room: groom(r),
        room_id: (!version.is_multiple_of(4)).then(|| room(owner * 1000 + r)),
        state: match version % 4 {
            0 => PortalState::Creating,
            1 => PortalState::Active,
            2 => PortalState::Invited,
            _ => PortalState::Closed,
        },
        joined_ghosts: (0..version % 4).map(guser).collect(),
    }
}

pub fn gitter_room_record(r: u64, version: u64) -> GitterRoomRecord {
    GitterRoomRecord {
        id: groom(r),
        uri: (!r.is_multiple_of(4)).then(|| format!("org{r}/room{r}")),
        name: format!("org{r}/room{r}"),
        topic: format!("topic of room {r}"),
        user_count: Some(r * 10 + version % 100),
        reader: Some(user(r % 3)),
    }
}

pub fn message_record(owner: u64, r: u64, m: u64, with_event: bool) -> MessageRecord {
    MessageRecord {
        owner: user(owner),
        gitter_room: groom(r),
        gitter_id: gmsg(m),
        event_id: with_event.then(|| event(m)),
        origin: if m.is_multiple_of(2) {
            Origin::Gitter
        } else {
            Origin::Matrix
        },
        at: Timestamp(1_700_000_000_000 + m),
    }
}

pub fn ticket(u: u64, expires: u64) -> Ticket {
    Ticket {
        user: user(u),
        expires: Timestamp(expires),
    }
}

/// One effect per kind of shape the outbox holds (Matrix send with relay, Gitter send with a
/// token, stream open).
pub fn effect(id: u64, owner: u64, r: u64) -> Effect {
    let lane = Lane::Portal {
        owner: user(owner),
        room: groom(r),
    };
    let (action, then) = match id % 5 {
        0 => (
            Action::Matrix(MatrixCall::SendMessage {
                room: room(owner * 1000 + r),
                sender: ghost_mxid(id % 9),
                content: MatrixContent {
                    msgtype: OutMsgType::Text,
                    body: format!("message {id}"),
                    formatted_body: Some(format!("<p>message {id}</p>")),
                    thread: None,
                    mentions: None,
                },
                ts: Some(Timestamp(1_700_000_000_000 + id)),
            }),
            Then::Relay(RelayThen::ToMatrix(RelayRef {
                owner: user(owner),
                gitter_id: gmsg(id),
            })),
        ),
        1 => (
            Action::Gitter {
                token: Secret::new(format!("token-{owner}")),
                call: GitterCall::SendMessage {
                    gitter_user: guser(owner),
                    room: groom(r),
                    text: format!("from matrix {id}"),
                    status: false,
                    reconcile: id.is_multiple_of(3),
                    after: id.is_multiple_of(2).then(|| gmsg(id)),
                    parent: None,
                },
            },
            Then::Relay(RelayThen::ToGitter(gitter_bridge_core::SendOrigin {
                owner: user(owner),
                room: room(owner * 1000 + r),
                event_id: event(id),
            })),
        ),
        2 => (
            Action::Stream(StreamCall::Open {
                room: groom(r),
                token: Secret::new(format!("token-{owner}")),
            }),
            Then::Nothing,
        ),
        3 => {
            let alias = format!("_gitter_portal_{id:032x}");
            // Both forms: rows of the older one stay in stores written before the newer.
            let new = NewPortal {
                creator: user(0),
                name: format!("room {r}"),
                topic: String::new(),
                invite: vec![user(owner)],
                power_users: Default::default(),
                alias: alias.clone(),
                is_direct: r.is_multiple_of(2),
                bridge: Some(BridgeInfo {
                    bot: user(0),
                    room_id: groom(r),
                    room_name: format!("room {r}"),
                    web_url: "https://gitter.example".to_owned(),
                    room_uri: (!r.is_multiple_of(3)).then(|| format!("org/room{r}")),
                }),
            };
            let create = if id.is_multiple_of(2) {
                MatrixCall::CreateRoom {
                    creator: new.creator,
                    name: new.name,
                    topic: new.topic,
                    invite: new.invite,
                    power_users: new.power_users,
                    alias: new.alias,
                }
            } else {
                MatrixCall::CreatePortal(Box::new(new))
            };
            (
                Action::Matrix(create),
                Then::Portal(PortalThen::Created {
                    owner: user(owner),
                    room: groom(r),
                    alias,
                }),
            )
        }
        _ => (
            Action::Matrix(MatrixCall::Kick {
                room: room(owner * 1000 + r),
                sender: user(0),
                target: user(owner),
                reason: "logged out".to_owned(),
            }),
            Then::Nothing,
        ),
    };
    Effect {
        id: EffectId(id),
        lane,
        action,
        then,
    }
}

/// The `i`-th change set of the deterministic workload used by the crash test: it touches
/// many tables (users, ghosts, portals, gitter_rooms, messages, outbox, transactions, events,
/// login_links, meta), so a step that was only partly written would show. `login_links["step"]`
/// records `i`, which tells a reader how far the file got.
pub fn numbered_set(i: u64) -> ChangeSet {
    let owner = i % 7;
    let r = i % 5;
    let mut changes = vec![
        Change::PutUser(user_record(owner, i)),
        Change::PutGhost(ghost_record(i % 11, i)),
        Change::PutPortal(portal_record(owner, r, i)),
        Change::PutGitterRoom(gitter_room_record(r, i)),
        Change::SetCursor(groom(r), gmsg(i)),
        // Message ids cycle so the file stays small however long a writer runs.
        Change::PutMessage(message_record(owner, r, i % 500, i.is_multiple_of(2))),
        Change::PutOutbox(effect(i, owner, r)),
        Change::RememberTransaction(AsTxnId::new(format!("txn{i}"))),
        Change::RememberEvent(event(i)),
        Change::PutLoginLink("step".to_owned(), ticket(owner, i)),
        Change::SetNextEffectId(EffectId(i + 1)),
    ];
    if i >= 3 {
        changes.push(Change::DeleteOutbox(EffectId(i - 3)));
    }
    if i >= 20 {
        changes.push(Change::ForgetTransaction(AsTxnId::new(format!(
            "txn{}",
            i - 20
        ))));
        changes.push(Change::ForgetEvent(event(i - 20)));
    }
    if i.is_multiple_of(13) {
        changes.push(Change::RefuseRoom(room(i % 50)));
        changes.push(Change::DeleteGitterRoom(groom((i + 1) % 5)));
    }
    ChangeSet { changes }
}

/// How many numbered sets a loaded snapshot holds (0 for an empty file).
pub fn numbered_progress(snap: &Snapshot) -> u64 {
    snap.login_links.get("step").map_or(0, |t| t.expires.0 + 1)
}

/// The typical step of a bridged Gitter message: cursor update, message mapping, a Matrix
/// send in the outbox, and the completion of an earlier send (the first step of each room
/// also writes the room).
pub fn message_step(i: u64) -> ChangeSet {
    let r = i % 50;
    let owner = i % 20;
    let mut changes = vec![
        Change::SetCursor(groom(r), gmsg(i)),
        Change::PutMessage(message_record(owner, r, i, false)),
        Change::PutOutbox(effect(i * 4, owner, r)),
    ];
    if i > 0 {
        changes.push(Change::DeleteOutbox(EffectId((i - 1) * 4)));
    }
    if i < 50 {
        changes.push(Change::PutGitterRoom(gitter_room_record(r, i)));
    }
    ChangeSet { changes }
}

/// The reference: every change applied with the core's semantics.
pub fn reference(sets: &[ChangeSet]) -> Snapshot {
    let mut snap = Snapshot::default();
    for s in sets {
        snap.apply_set(s);
    }
    snap
}

pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read test file")
}

// ---- proptest strategies ----
//
// Keys come from small pools so that puts overwrite, deletes hit, and forgets find (or miss)
// remembered ids.

pub fn arb_change() -> impl Strategy<Value = Change> {
    let k = || 0u64..6;
    prop_oneof![
        (k(), any::<u64>()).prop_map(|(n, v)| Change::PutUser(user_record(n, v))),
        (k(), any::<u64>()).prop_map(|(n, v)| Change::PutGhost(ghost_record(n, v))),
        (k(), k(), 0u64..40).prop_map(|(o, r, v)| Change::PutPortal(portal_record(o, r, v))),
        (k(), any::<u64>()).prop_map(|(r, c)| Change::PutGitterRoom(gitter_room_record(r, c))),
        k().prop_map(|r| Change::DeleteGitterRoom(groom(r))),
        (k(), 0u64..20).prop_map(|(r, m)| Change::SetCursor(groom(r), gmsg(m))),
        // A Gitter message id belongs to one room (ids are unique across Gitter).
        (k(), 0u64..20, any::<bool>()).prop_map(|(o, m, e)| Change::PutMessage(message_record(
            o,
            m % 6,
            m,
            e
        ))),
        k().prop_map(|r| Change::RefuseRoom(room(r))),
        (k(), k(), any::<u64>())
            .prop_map(|(t, u, e)| Change::PutLoginLink(format!("l{t}"), ticket(u, e))),
        k().prop_map(|t| Change::DeleteLoginLink(format!("l{t}"))),
        (k(), k(), any::<u64>())
            .prop_map(|(t, u, e)| Change::PutOAuthState(format!("s{t}"), ticket(u, e))),
        k().prop_map(|t| Change::DeleteOAuthState(format!("s{t}"))),
        k().prop_map(|t| Change::RememberTransaction(AsTxnId::new(format!("t{t}")))),
        k().prop_map(|t| Change::ForgetTransaction(AsTxnId::new(format!("t{t}")))),
        k().prop_map(|e| Change::RememberEvent(event(e))),
        k().prop_map(|e| Change::ForgetEvent(event(e))),
        (0u64..12, k(), k()).prop_map(|(id, o, r)| Change::PutOutbox(effect(id, o, r))),
        (0u64..12).prop_map(|id| Change::DeleteOutbox(EffectId(id))),
        (k(), k(), 0u64..4, 0u64..9).prop_map(|(o, r, seq, m)| Change::PutQueued(
            (user(o), groom(r), seq),
            gitter_message(m, o)
        )),
        (k(), k(), 0u64..4).prop_map(|(o, r, seq)| Change::DeleteQueued((user(o), groom(r), seq))),
        any::<u64>().prop_map(|id| Change::SetNextEffectId(EffectId(id))),
        (k(), any::<u64>()).prop_map(|(u, m)| Change::PutAvatar {
            url: format!("https://avatars.example/{u}"),
            mxc: format!("mxc://example.org/{m}"),
        }),
        (k(), k()).prop_map(|(r, u)| Change::SetPortalAvatar(
            room(r),
            format!("https://avatars.example/{u}")
        )),
        (k(), k()).prop_map(|(g, u)| Change::SetGhostAvatar(
            GitterUserId::new(format!("g{g}")),
            format!("https://avatars.example/{u}")
        )),
    ]
}

pub fn arb_set() -> impl Strategy<Value = ChangeSet> {
    prop::collection::vec(arb_change(), 0..12).prop_map(|changes| ChangeSet { changes })
}

/// Commits: each is a group of change sets applied in one `Store::apply`.
pub fn arb_commits() -> impl Strategy<Value = Vec<Vec<ChangeSet>>> {
    prop::collection::vec(prop::collection::vec(arb_set(), 0..4), 0..12)
}
