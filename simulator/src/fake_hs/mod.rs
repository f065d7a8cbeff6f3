//! Fake Matrix homeserver: the Client-Server calls a puppeting bridge makes,
//! and Synapse's application-service transaction pushes.
//!
//! It copies Synapse 1.163 where a bridge can notice
//! (`docs/matrix.md`): `as_token` auth with
//! `M_MISSING_TOKEN`/`M_UNKNOWN_TOKEN`; `?user_id=` masquerading only inside
//! the registration's users namespace ("cannot masquerade as this user") and
//! only for registered ghosts ("has not registered this user"); AS
//! registration with `M_USER_IN_USE`/`M_EXCLUSIVE`; room version 12 room ids
//! without a server part and the "Creator user ... must not appear in
//! content.users" refusal that still leaves an orphan room; per-AS
//! transaction-id caching on send; and the AS scheduler (one transaction in
//! flight, ≤100 events, ids "1","2",..., same id and events on retry,
//! exponential backoff, the AS's own ghosts' events included).
//!
//! Humans are simulated through the Rust API of [`FakeHomeserver`] (or their
//! own access tokens over HTTP); the state records the timeline each user
//! sees so tests can assert on it.
//!
//! Faults, each from Rust and from `/_sim/hs/...`, all undone by
//! clear-faults: errors for the next N requests or a while (an outage: every
//! route, the ping and unknown paths included), a delay, failed AS pushes,
//! lost answers (the request is carried out, the connection closes before
//! the status line) and refused connections (the listening socket closed for
//! a while, then bound again; [`net`] holds the socket side, shared with the
//! fake Gitter).

pub mod http;
pub mod net;
pub mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use net::NetControl;

pub use net::FaultLimit;
pub use state::{
    AsTransaction, CreateRoom, CsRoute, HsConfig, HsState, MatrixError, Registration, Requester,
    SeenEvent,
};

use crate::util::SimClock;

/// State shared between handlers, the pusher and the test-facing handle.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<HsState>,
    pub clock: SimClock,
    /// Wakes the pusher when something may have been queued.
    pub notify: Notify,
    pub http: reqwest::Client,
    /// The listening address's refusal window and open connections.
    pub net: Arc<NetControl>,
    /// Wakes requests waiting out an injected delay when faults are cleared.
    pub cleared: Notify,
    /// Client-Server requests waiting out an injected delay now.
    pub delayed: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Lock the state (poisoning ignored: see the fake Gitter's `Shared`).
    pub fn lock(&self) -> MutexGuard<'_, HsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every injected fault off: the state's, a refusal window (the socket
    /// is bound again at once), and delays being waited out end now.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
        self.net.clear();
        self.cleared.notify_waiters();
    }
}

/// A simulated human: their user id and access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Human {
    pub user_id: String,
    pub token: String,
}

/// A running fake homeserver. Dropping it stops the server and the pusher.
#[derive(Debug)]
pub struct FakeHomeserver {
    /// `http://127.0.0.1:PORT`, the homeserver URL for the bridge.
    pub base_url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pusher: Option<JoinHandle<()>>,
    txn_counter: AtomicU64,
}

impl FakeHomeserver {
    /// Bind `bind` (port 0 for a free port), serve `state`, start pushing
    /// to the AS url of the registration.
    pub async fn spawn(bind: SocketAddr, state: HsState) -> std::io::Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(std::io::Error::other)?;
        let net = NetControl::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock: SimClock::default(),
            notify: Notify::new(),
            http,
            net: net.clone(),
            cleared: Notify::new(),
            delayed: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let task = net::serve(listener, app, net, async {
            let _ = rx.await;
        })?;
        let pusher = tokio::spawn(http::run_pusher(shared.clone()));
        tracing::info!(%addr, "fake homeserver listening");
        Ok(Self {
            base_url: format!("http://{addr}"),
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
            pusher: Some(pusher),
            txn_counter: AtomicU64::new(1),
        })
    }

    /// Run `f` on the state under the lock; wakes the pusher afterwards.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut HsState) -> R) -> R {
        let r = f(&mut self.shared.lock());
        self.shared.notify.notify_one();
        r
    }

    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Move the server's clock forward (past the end of a timed fault, for
    /// instance, without sleeping).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    pub fn server_name(&self) -> String {
        self.with_state(|s| s.server_name().to_string())
    }

    pub fn bot_user_id(&self) -> String {
        self.with_state(|s| s.bot_user_id())
    }

    // ---- humans -----------------------------------------------------

    /// Register a human user with a password-less account and a token.
    pub fn register_human(&self, localpart: &str) -> Result<Human, MatrixError> {
        self.with_state(|s| s.register_human(localpart, None))
            .map(|(user_id, token)| Human { user_id, token })
    }

    fn as_user(&self, user: &str) -> Requester {
        Requester::User {
            user_id: user.to_string(),
            device_id: "SIMDEVICE".into(),
        }
    }

    /// Create a room as `user` with a raw `createRoom` body; the bot and the
    /// AS's ghosts act through the AS (its alias rules apply), anyone else as
    /// a user with their own token.
    pub fn create_room(&self, user: &str, body: Value) -> Result<String, MatrixError> {
        let req: CreateRoom =
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let now = self.now_ms();
        self.with_state(|s| {
            let requester = if s.in_as_namespace(user) {
                Requester::AppService {
                    user_id: user.to_string(),
                }
            } else {
                Requester::User {
                    user_id: user.to_string(),
                    device_id: "SIMDEVICE".into(),
                }
            };
            s.create_room(&requester, &req, now)
        })
    }

    /// The room an alias (`#local:server`) points to.
    pub fn alias_target(&self, alias: &str) -> Option<String> {
        self.with_state(|s| s.alias_target(alias).map(str::to_string))
    }

    /// The aliases pointing at a room, sorted.
    pub fn aliases_of(&self, room: &str) -> Vec<String> {
        self.with_state(|s| s.aliases_of(room))
    }

    /// Start a DM the way Element does: `trusted_private_chat`, `is_direct`,
    /// inviting `with` (usually the bridge bot).
    pub fn create_dm(&self, user: &str, with: &str) -> Result<String, MatrixError> {
        self.create_room(
            user,
            json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [with] }),
        )
    }

    pub fn invite(&self, user: &str, room: &str, target: &str) -> Result<(), MatrixError> {
        let now = self.now_ms();
        self.with_state(|s| s.invite(user, room, target, now))
    }

    pub fn join(&self, user: &str, room: &str) -> Result<String, MatrixError> {
        let now = self.now_ms();
        self.with_state(|s| s.join(user, room, now))
    }

    pub fn leave(&self, user: &str, room: &str) -> Result<(), MatrixError> {
        let now = self.now_ms();
        self.with_state(|s| s.leave(user, room, now))
    }

    pub fn kick(&self, user: &str, room: &str, target: &str) -> Result<(), MatrixError> {
        let now = self.now_ms();
        self.with_state(|s| s.kick(user, room, target, None, now))
    }

    /// Send any event as `user`.
    pub fn send_event(
        &self,
        user: &str,
        room: &str,
        kind: &str,
        content: Value,
    ) -> Result<String, MatrixError> {
        let now = self.now_ms();
        let n = self.txn_counter.fetch_add(1, Ordering::Relaxed);
        let path = format!("/_sim/human/{n}");
        let req = self.as_user(user);
        self.with_state(|s| s.send(&req, &path, room, kind, content, None, now))
    }

    /// `user` redacts `event_id` in `room` (`PUT /rooms/{id}/redact/{eventId}/{txnId}`).
    pub fn redact(&self, user: &str, room: &str, event_id: &str) -> Result<String, MatrixError> {
        let now = self.now_ms();
        let n = self.txn_counter.fetch_add(1, Ordering::Relaxed);
        let path = format!("/_sim/human/redact/{n}");
        let req = self.as_user(user);
        self.with_state(|s| s.redact(&req, &path, room, event_id, None, now))
    }

    fn send_msg(
        &self,
        user: &str,
        room: &str,
        msgtype: &str,
        body: &str,
    ) -> Result<String, MatrixError> {
        self.send_event(
            user,
            room,
            "m.room.message",
            json!({ "msgtype": msgtype, "body": body }),
        )
    }

    pub fn send_text(&self, user: &str, room: &str, body: &str) -> Result<String, MatrixError> {
        self.send_msg(user, room, "m.text", body)
    }

    pub fn send_notice(&self, user: &str, room: &str, body: &str) -> Result<String, MatrixError> {
        self.send_msg(user, room, "m.notice", body)
    }

    pub fn send_emote(&self, user: &str, room: &str, body: &str) -> Result<String, MatrixError> {
        self.send_msg(user, room, "m.emote", body)
    }

    pub fn set_displayname(&self, user: &str, name: &str) -> Result<(), MatrixError> {
        let now = self.now_ms();
        let req = self.as_user(user);
        self.with_state(|s| s.set_profile(&req, user, "displayname", Some(name), now))
    }

    // ---- what users see ---------------------------------------------

    /// The timeline `user` sees in `room`.
    pub fn timeline(&self, user: &str, room: &str) -> Vec<SeenEvent> {
        self.with_state(|s| s.timeline(user, room))
    }

    /// Only the `m.room.message` events `user` sees in `room`.
    pub fn messages_seen(&self, user: &str, room: &str) -> Vec<SeenEvent> {
        self.timeline(user, room)
            .into_iter()
            .filter(|e| e.kind == "m.room.message")
            .collect()
    }

    /// Rooms where `user` has a membership, with it ("join", "invite", ...).
    pub fn rooms_of(&self, user: &str) -> Vec<(String, String)> {
        self.with_state(|s| s.rooms_of(user))
    }

    /// Rooms `user` is invited to.
    pub fn invites_of(&self, user: &str) -> Vec<String> {
        self.rooms_of(user)
            .into_iter()
            .filter(|(_, m)| m == "invite")
            .map(|(r, _)| r)
            .collect()
    }

    /// Whether `user` sees, in any room, an `m.notice` whose body contains
    /// `needle`.
    pub fn sees_notice_containing(&self, user: &str, needle: &str) -> bool {
        self.find_seen(user, |e| {
            e.msgtype.as_deref() == Some("m.notice")
                && e.body.as_deref().is_some_and(|b| b.contains(needle))
        })
        .is_some()
    }

    /// The first event `user` sees (any room) matching `pred`, with its room.
    pub fn find_seen(
        &self,
        user: &str,
        pred: impl Fn(&SeenEvent) -> bool,
    ) -> Option<(String, SeenEvent)> {
        self.with_state(|s| {
            s.rooms_of(user).into_iter().find_map(|(r, _)| {
                s.timeline(user, &r)
                    .into_iter()
                    .find(|e| pred(e))
                    .map(|e| (r.clone(), e))
            })
        })
    }

    /// Poll `pred` every 20 ms until it holds or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ---- AS pushes and faults ---------------------------------------

    /// Transactions the AS acknowledged.
    pub fn delivered_transactions(&self) -> Vec<AsTransaction> {
        self.with_state(|s| s.delivered().to_vec())
    }

    /// Client-Server requests held by an injected delay right now (a scenario waits for the
    /// bridge's request to be under way instead of sleeping).
    pub fn delayed_requests(&self) -> usize {
        self.shared
            .delayed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every push attempt: (txn id, succeeded).
    pub fn push_attempts(&self) -> Vec<(String, bool)> {
        self.with_state(|s| s.push_attempts().to_vec())
    }

    /// Make the next `n` push attempts fail before reaching the AS.
    pub fn fail_push_next(&self, n: u32) {
        self.with_state(|s| s.fail_push_next(n));
    }

    /// Fail the next `n` Client-Server requests with `status` (429 gives
    /// `M_LIMIT_EXCEEDED` with `retry_after_ms`).
    pub fn fail_cs_next(&self, n: u32, status: u16) {
        self.with_state(|s| s.fail_cs_next(n, status));
    }

    /// Fail Client-Server requests with `status` for `duration`.
    pub fn fail_cs_for(&self, duration: Duration, status: u16) {
        let until = self.now_ms() + duration.as_millis() as u64;
        self.with_state(|s| s.fail_cs_until(until, status));
    }

    /// Delay every Client-Server response (every route, the ping included;
    /// clearing faults ends the wait of requests already delayed).
    pub fn set_cs_delay(&self, d: Duration) {
        self.with_state(|s| s.set_cs_delay(d));
    }

    /// Refuse connections for `d`: the listening socket is closed (a connect
    /// gets ECONNREFUSED) and every open connection is cut, then the same
    /// address is bound again and serves the same state. Returns once the
    /// socket is closed.
    pub async fn refuse_connections_for(&self, d: Duration) {
        self.shared.net.refuse_for(d, None).await;
    }

    /// Whether the listener is refusing connections now.
    pub fn refusing_connections(&self) -> bool {
        self.shared.net.refusing()
    }

    /// Connections open now (keep-alive ones included).
    pub fn open_connections(&self) -> usize {
        self.shared.net.open_connections()
    }

    /// The next `n` requests on `routes` are processed as usual (a send is
    /// stored and deduplicated by its txn id like any other) and then get no
    /// answer at all: the connection closes before the status line.
    /// `CsRoute::Any` covers every Client-Server route.
    pub fn lose_answers(&self, n: u32, routes: &[CsRoute]) {
        self.with_state(|s| s.lose_answers(n, routes.to_vec()));
    }

    /// Answers still to be lost.
    pub fn pending_lost_answers(&self) -> u32 {
        self.with_state(|s| s.pending_lost_answers())
    }

    /// Every fault off (errors, delays, lost answers, push failures, a
    /// refusal window).
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
        self.shared.notify.notify_one();
    }

    /// Stop the server and the pusher.
    pub async fn shutdown(mut self) {
        if let Some(p) = self.pusher.take() {
            p.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeHomeserver {
    fn drop(&mut self) {
        if let Some(p) = self.pusher.take() {
            p.abort();
        }
        // The connections' own tasks outlive the aborted server task: cut
        // them, or a stuck request would hold its socket open.
        self.shared.net.kill_connections(None);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
