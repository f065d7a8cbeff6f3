//! What the fuzz targets share: the core's test harness and XSS check (the same files the
//! core's tests use, so the targets hold the code to the same rules), a second XSS check
//! that reads the output with html5ever's tokenizer, and bridges set up once per process.

use std::cell::RefCell;
use std::sync::OnceLock;

use gitter_bridge_core::{
    Bridge, Config, GitterRoomId, Outputs, OwnedRoomId, OwnedUserId, Snapshot, Timestamp,
};

/// The core's test harness (a model store and a deterministic world), used only to set up.
#[path = "../../core/tests/common/mod.rs"]
pub mod harness;

/// The strict hand-written check of `core/tests/sanitiser.rs`.
#[path = "../../core/tests/xss_check/mod.rs"]
pub mod strict;

pub mod tokenized;

/// A bridge's persisted state after a setup, and who is in it.
pub struct World {
    /// The config the harness runs with.
    pub config: Config,
    /// The harness's clock after setup: every fuzzed step happens then (login links and
    /// pending logins expire).
    pub now: Timestamp,
    /// Rebuilds a bridge from a snapshot, with the harness's config and seed.
    restore: Box<dyn Fn(Snapshot) -> Bridge + Send + Sync>,
    /// The state after setup (what the store holds).
    pub snapshot: Snapshot,
    /// A user logged in to Gitter, with a control room.
    pub alice: OwnedUserId,
    /// Alice's control room (a DM with the bot).
    pub alice_control: OwnedRoomId,
    /// A user with a control room who is not logged in.
    pub bob: OwnedUserId,
    /// Bob's control room.
    pub bob_control: OwnedRoomId,
    /// A Gitter room Alice is in, with her portal.
    pub room: GitterRoomId,
    /// Alice's portal of `room`.
    pub portal: OwnedRoomId,
    /// Bob's login-link token (from the bot's notice).
    pub bob_token: String,
}

/// The world, set up once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut h = harness::Harness::new();
        let room = h.add_gitter_room("org/chat", &["alice"]);
        let (alice, alice_control) = h.logged_in_user("alice", "alice");
        let bob = harness::uid("bob");
        let bob_control = h.dm_bot(&bob, &[]);
        h.settle();
        let link = h.link_in(&bob_control);
        let bob_token = link.rsplit('/').next().unwrap().to_owned();
        let portal = h.portal(&alice, &room).expect("alice's portal");
        let (config, seed) = (h.bridge.config().clone(), h.seed);
        World {
            now: h.now,
            config: config.clone(),
            restore: Box::new(move |snapshot| Bridge::restore(config.clone(), seed, snapshot)),
            snapshot: h.store.clone(),
            alice,
            alice_control,
            bob,
            bob_control,
            room,
            portal,
            bob_token,
        }
    })
}

/// A bridge restored from the world's state, with a model store beside it that must always
/// equal the bridge's own state (the contract of `Snapshot::apply`).
pub struct Restored {
    now: Timestamp,
    /// The bridge.
    pub bridge: Bridge,
    /// The model store.
    pub store: Snapshot,
}

impl Restored {
    /// A fresh bridge from the world's snapshot.
    pub fn new(world: &World) -> Restored {
        Restored {
            now: world.now,
            bridge: (world.restore)(world.snapshot.clone()),
            store: world.snapshot.clone(),
        }
    }

    /// One step, committed to the model store and checked against the bridge.
    pub fn step(&mut self, input: gitter_bridge_core::Input) -> Outputs {
        let out = self.bridge.handle(self.now, input);
        self.store.apply_set(&out.changes);
        assert!(
            &self.store == self.bridge.snapshot(),
            "the change sets must rebuild the bridge's state exactly"
        );
        out
    }
}

thread_local! {
    static EVENT: RefCell<u64> = const { RefCell::new(0) };
}

/// A fresh event id for this process.
pub fn event_id() -> gitter_bridge_core::OwnedEventId {
    let n = EVENT.with(|e| {
        let mut e = e.borrow_mut();
        *e += 1;
        *e
    });
    format!("$fuzz{n}").try_into().unwrap()
}
