//! Throughput of the pure core: Gitter messages (plain text, and formatted HTML) fanned into
//! 1, 10 and 100 portals, Matrix messages relayed to Gitter, and a Matrix transaction while
//! the event dedupe window is full. Run with `cargo bench -p gitter-bridge-core`;
//! `scripts/bench-compare.sh` runs these side by side with an earlier commit's core.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gitter_bridge_core::*;

const DOMAIN: &str = "bench.example";

fn uid(local: &str) -> OwnedUserId {
    format!("@{local}:{DOMAIN}").try_into().unwrap()
}

fn user(name: &str) -> GitterUser {
    GitterUser {
        id: GitterUserId::new(format!("u-{name}")),
        username: name.into(),
        display_name: name.into(),
        avatar_url: None,
    }
}

/// The defaults, with every user allowed (the defaults allow nobody, and permissions are
/// checked on every message: a bench with the defaults relays nothing).
fn config() -> Config {
    let mut config = Config::with_defaults(DOMAIN);
    config.permissions.allow_all = true;
    config
}

/// A snapshot with `portals` users logged in and bridged to one Gitter room, every portal
/// created and the author's ghost already joined.
fn snapshot(portals: usize) -> (Snapshot, GitterRoomId) {
    let room = GitterRoomId::new("5f0000000000000000000001");
    let mut s = Snapshot::default();
    let author = user("author");
    s.ghosts.insert(
        author.id.clone(),
        GhostRecord {
            gitter_id: author.id.clone(),
            mxid: uid("gitter_author"),
            display_name: Some("author (Gitter)".into()),
            registered: true,
        },
    );
    for i in 0..portals {
        let owner = uid(&format!("u{i}"));
        s.users.insert(
            owner.clone(),
            UserRecord {
                user: owner.clone(),
                control_room: None,
                login: Some(Login {
                    gitter_id: GitterUserId::new(format!("g{i}")),
                    username: format!("g{i}"),
                    token: Secret::new(format!("t{i}")),
                    valid: true,
                }),
            },
        );
        s.portals.insert(
            (owner.clone(), room.clone()),
            PortalRecord {
                owner,
                gitter_room: room.clone(),
                room_id: Some(format!("!p{i}").try_into().unwrap()),
                state: PortalState::Active,
                joined_ghosts: [author.id.clone()].into(),
            },
        );
    }
    s.gitter_rooms.insert(
        room.clone(),
        GitterRoomRecord {
            id: room.clone(),
            uri: Some("org/bench".into()),
            name: "org/bench".into(),
            topic: String::new(),
            user_count: Some(1000),
            reader: Some(uid("u0")),
        },
    );
    s.cursors.insert(
        room.clone(),
        GitterMessageId::new("000000000000000000000000"),
    );
    (s, room)
}

/// A Gitter message fanned into 1, 10 and 100 portals: `group` names the benchmark,
/// `text` and `html` are the message as Gitter sends it.
fn fan_out(c: &mut Criterion, group: &str, text: &str, html: &str) {
    let mut group = c.benchmark_group(group);
    for portals in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(portals),
            &portals,
            |b, &portals| {
                let (snap, room) = snapshot(portals);
                let mut bridge = Bridge::restore(config(), 1, snap);
                let mut n: u64 = 0;
                let author = user("author");
                b.iter(|| {
                    n += 1;
                    let message = GitterMessage {
                        id: GitterMessageId::new(format!("{n:024x}")),
                        text: text.into(),
                        html: html.into(),
                        status: false,
                        sent: "2024-01-01T00:00:00.000Z".into(),
                        from: author.clone(),
                        parent_id: None,
                        mentions: Vec::new(),
                    };
                    let out = bridge.handle(
                        Timestamp(n),
                        Input::GitterMessage {
                            room: room.clone(),
                            message,
                        },
                    );
                    if n == 1 {
                        // What is measured is a relay: one send per portal, with the HTML
                        // when there is any.
                        let sends: Vec<_> = out
                            .effects
                            .iter()
                            .filter_map(|e| match &e.action {
                                Action::Matrix(MatrixCall::SendMessage { content, .. }) => {
                                    Some(content)
                                }
                                _ => None,
                            })
                            .collect();
                        assert_eq!(sends.len(), portals, "{:?}", out.effects);
                        assert_eq!(sends[0].formatted_body.is_some(), html != text);
                    }
                    // Complete the sends so the outbox stays small, as a driver would.
                    for e in out.effects {
                        bridge.handle(
                            Timestamp(n),
                            Input::EffectDone {
                                id: e.id,
                                result: Ok(EffectOutput::EventSent(
                                    format!("$e{n}").try_into().unwrap(),
                                )),
                            },
                        );
                    }
                });
            },
        );
    }
    group.finish();
}

/// A plain-text message (Gitter's HTML is the text itself).
fn gitter_to_matrix(c: &mut Criterion) {
    fan_out(c, "gitter_to_matrix", "hello world", "hello world");
}

/// A formatted message (Gitter's HTML needs the sanitiser).
fn gitter_to_matrix_formatted(c: &mut Criterion) {
    fan_out(
        c,
        "gitter_to_matrix_formatted",
        "hello **world**",
        "hello <strong>world</strong>",
    );
}

/// The portal owner's `n`-th message, in a transaction of its own, and the completion of
/// its Gitter send.
fn owner_message(bridge: &mut Bridge, n: u64, portal: &OwnedRoomId, owner: &OwnedUserId) {
    let event = MatrixEvent {
        event_id: format!("$m{n:08}").try_into().unwrap(),
        room_id: portal.clone(),
        sender: owner.clone(),
        kind: MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: "hi there".into(),
            formatted_body: None,
            relation: None,
        },
    };
    let out = bridge.handle(
        Timestamp(n),
        Input::Transaction {
            txn_id: AsTxnId::new(n.to_string()),
            events: vec![event],
        },
    );
    if n <= 1 || n == 10_001 {
        // What is measured is a relay: the owner's message goes to Gitter.
        assert!(
            out.effects.iter().any(|e| matches!(
                e.action,
                Action::Gitter {
                    call: GitterCall::SendMessage { .. },
                    ..
                }
            )),
            "{:?}",
            out.effects
        );
    }
    for e in out.effects {
        let sent = GitterMessage {
            id: GitterMessageId::new(format!("{n:024x}")),
            text: "hi there".into(),
            html: "hi there".into(),
            status: false,
            sent: String::new(),
            from: user("g0"),
            parent_id: None,
            mentions: Vec::new(),
        };
        bridge.handle(
            Timestamp(n),
            Input::EffectDone {
                id: e.id,
                result: Ok(EffectOutput::GitterMessage(sent)),
            },
        );
    }
}

fn matrix_to_gitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix_to_gitter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("owner_message", |b| {
        let (snap, room) = snapshot(10);
        let mut bridge = Bridge::restore(config(), 1, snap);
        let owner = uid("u0");
        let portal: OwnedRoomId = "!p0".try_into().unwrap();
        let mut n: u64 = 0;
        b.iter(|| {
            n += 1;
            owner_message(&mut bridge, n, &portal, &owner);
            let _ = &room;
        });
    });
    group.finish();
}

/// One portal message in a transaction while the transaction and event dedupe windows are
/// full (`dedupe_capacity`, 10,000 ids each): what every event costs on a busy bridge.
fn matrix_transaction(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix_transaction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_dedupe", |b| {
        let (snap, _room) = snapshot(10);
        let config = config();
        let window = config.dedupe_capacity as u64;
        let mut bridge = Bridge::restore(config, 1, snap);
        let owner = uid("u0");
        let portal: OwnedRoomId = "!p0".try_into().unwrap();
        let elsewhere: OwnedRoomId = "!elsewhere".try_into().unwrap();
        // Fill both windows with events of a room the bridge does not bridge.
        for n in 0..window {
            bridge.handle(
                Timestamp(n),
                Input::Transaction {
                    txn_id: AsTxnId::new(format!("fill{n}")),
                    events: vec![MatrixEvent {
                        event_id: format!("$fill{n:08}").try_into().unwrap(),
                        room_id: elsewhere.clone(),
                        sender: owner.clone(),
                        kind: MatrixEventKind::Message {
                            msgtype: MsgType::Text,
                            body: "not bridged".into(),
                            formatted_body: None,
                            relation: None,
                        },
                    }],
                },
            );
        }
        let mut n: u64 = window;
        b.iter(|| {
            n += 1;
            owner_message(&mut bridge, n, &portal, &owner);
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    gitter_to_matrix,
    gitter_to_matrix_formatted,
    matrix_to_gitter,
    matrix_transaction
);
criterion_main!(benches);
