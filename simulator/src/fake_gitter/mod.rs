//! Fake Gitter server: REST v1, the streaming API and OAuth, on loopback HTTP.
//!
//! It copies the 2020 Gitter server (`gitlab-org/gitter/webapp`) as written up
//! in `docs/gitter-api.md`, following its §9 checklist:
//! bearer auth everywhere (§1.2), 406 on chunked request bodies, the OAuth
//! authorization-code flow with single-use 40-hex codes and one token per
//! (user, client) (§2), the REST endpoints the bridge calls with their paging and
//! error rules (§3) and no others (the message edit, delete and thread routes are the
//! next to be called: edits and threads), absent-not-null serialization (§4), the newline-delimited
//! stream with `" \n"` heartbeats (§5) and dolph's fixed-window rate limiter
//! with absolute-millisecond `X-RateLimit-Reset` (§8). Faye (item 12) is not
//! implemented.
//!
//! Layout: [`state::GitterState`] holds every rule as plain methods (unit
//! tested without HTTP); [`http`] is a thin axum layer; [`FakeGitter`] runs it
//! on a socket and gives tests a Rust API to act as Gitter users and to
//! inject faults.
//!
//! Faults, each from Rust and from `/_sim/gitter/...`, all undone by
//! clear-faults: errors for the next N requests or a while, a delay of the
//! API host, dropped streams, revoked tokens, lost send answers (stored and
//! streamed, never answered), flapping streams, silent streams, hostile
//! answers (a huge body, an endless line, a slow drip) and refused
//! connections per host (the socket side lives in [`crate::fake_hs::net`]).

pub mod http;
pub mod render;
pub mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use crate::faults::FaultLimit;
pub use state::{
    ApiError, Caller, GitterConfig, GitterSeed, GitterState, Hostile, MessageQuery, RateInfo,
};

use crate::fake_hs::net::{self, NetControl};
use crate::util::SimClock;

/// Which of the two hosts a socket-level fault is for (JSON `"api"`,
/// `"stream"`, `"both"`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitterHost {
    Api,
    Stream,
    #[default]
    Both,
}

/// State shared between the HTTP handlers and the test-facing handle.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<GitterState>,
    /// The clock every handler reads; tests can move it forward.
    pub clock: SimClock,
    /// The API host's listener and connections.
    pub api_net: Arc<NetControl>,
    /// The stream host's.
    pub stream_net: Arc<NetControl>,
    /// Wakes delayed requests and silent streams when faults are cleared.
    pub cleared: Notify,
}

impl Shared {
    /// Lock the state. A panic while holding the lock cannot leave it
    /// half-updated in a way worth refusing service for, so poisoning is
    /// ignored.
    pub fn lock(&self) -> MutexGuard<'_, GitterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every injected fault off: the state's, refusal windows (the sockets
    /// are bound again at once), and delays and silences end now.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
        self.api_net.clear();
        self.stream_net.clear();
        self.cleared.notify_waiters();
    }

    /// Refuse connections on `host` for `d` (see [`NetControl::refuse_for`]);
    /// `keep` is a connection of the API host to leave open.
    pub async fn refuse_for(&self, d: Duration, host: GitterHost, keep: Option<u64>) {
        if matches!(host, GitterHost::Api | GitterHost::Both) {
            self.api_net.refuse_for(d, keep).await;
        }
        if matches!(host, GitterHost::Stream | GitterHost::Both) {
            self.stream_net.refuse_for(d, None).await;
        }
    }
}

/// A running fake Gitter: the API host (REST, OAuth, controls) and the stream
/// host on two listeners, as `api.gitter.im` and `stream.gitter.im` are two
/// hosts that both serve `/v1/rooms/:roomId/chatMessages` (§1.1, §5.1).
/// Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGitter {
    /// `http://127.0.0.1:PORT` — the REST base (use it as `api.gitter.im`,
    /// and as `gitter.im` for OAuth).
    pub base_url: String,
    pub addr: SocketAddr,
    /// Where the stream host listens.
    pub stream_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeGitter {
    /// Bind `bind` (use port 0 for a free port) for the API and a free port on
    /// the same address for the stream host, and serve `state`.
    pub async fn spawn(bind: SocketAddr, state: GitterState) -> std::io::Result<Self> {
        Self::spawn_with_stream(bind, SocketAddr::new(bind.ip(), 0), state).await
    }

    /// Bind `bind` for the API and `stream_bind` for the stream host.
    pub async fn spawn_with_stream(
        bind: SocketAddr,
        stream_bind: SocketAddr,
        state: GitterState,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock: SimClock::default(),
            api_net: NetControl::new(),
            stream_net: NetControl::new(),
            cleared: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let stream_listener = tokio::net::TcpListener::bind(stream_bind).await?;
        let addr = listener.local_addr()?;
        let stream_addr = stream_listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let tasks = vec![
            serve(
                listener,
                http::router(shared.clone()),
                shared.api_net.clone(),
                rx.clone(),
            )?,
            serve(
                stream_listener,
                http::stream_router(shared.clone()),
                shared.stream_net.clone(),
                rx,
            )?,
        ];
        tracing::info!(%addr, %stream_addr, "fake gitter listening");
        shared.lock().files_base = Some(format!("http://{addr}/_sim/gitter/files"));
        Ok(Self {
            base_url: format!("http://{addr}"),
            addr,
            stream_addr,
            shared,
            shutdown: Some(tx),
            tasks,
        })
    }

    /// Convenience: a state with `config`, seeded from `seed`.
    pub fn seeded_state(config: GitterConfig, seed: &GitterSeed) -> Result<GitterState, String> {
        let mut state = GitterState::new(config);
        state.apply_seed(seed, SimClock::default().now_ms())?;
        Ok(state)
    }

    /// REST base URL (`https://api.gitter.im` equivalent).
    pub fn api_base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Streaming base URL (`https://stream.gitter.im` equivalent).
    pub fn stream_base_url(&self) -> String {
        format!("http://{}", self.stream_addr)
    }

    /// Realtime endpoint (`https://ws.gitter.im/bayeux` equivalent), on the stream host.
    pub fn faye_url(&self) -> String {
        format!("http://{}/bayeux", self.stream_addr)
    }

    /// Publishes everything realtime clients hear to another Faye server as well (the
    /// e2e test's, the protocol's reference implementation): one HTTP publish per event,
    /// with `secret` in `ext`, which that server's extension requires of server-side
    /// publishes. Publishes that fail are logged and dropped, as a lost delivery (the bridge
    /// catches up by REST).
    pub fn forward_faye(&mut self, url: String, secret: String) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        self.with_state(|s| s.faye_forward(tx));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        self.tasks.push(tokio::spawn(async move {
            while let Some(mut message) = rx.recv().await {
                message["ext"] = serde_json::json!({ "secret": secret });
                let sent = http
                    .post(&url)
                    .json(&serde_json::Value::Array(vec![message]))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "external Faye refused a publish")
                    }
                    Err(e) => tracing::warn!(error = %e.without_url(), "external Faye unreachable"),
                }
            }
        }));
    }

    /// OAuth authorize URL (`https://gitter.im/login/oauth/authorize`).
    pub fn authorize_url(&self) -> String {
        format!("{}/login/oauth/authorize", self.base_url)
    }

    /// OAuth token URL (`https://gitter.im/login/oauth/token`).
    pub fn token_url(&self) -> String {
        format!("{}/login/oauth/token", self.base_url)
    }

    /// Run `f` on the state under the lock (for anything not wrapped below).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut GitterState) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// Simulated now, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Move the server's clock forward (edit window, rate-limit windows).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    // ---- acting as Gitter users -------------------------------------

    /// Post `text` as `username` into a room given by id or uri; open streams
    /// of the room receive it. Returns the Message JSON.
    pub fn post_message(&self, room: &str, username: &str, text: &str) -> Result<Value, ApiError> {
        let now = self.now_ms();
        self.with_state(|s| s.post_as(username, room, text, now))
    }

    /// Post a `/me` status message.
    pub fn post_status(&self, room: &str, username: &str, text: &str) -> Result<Value, ApiError> {
        let now = self.now_ms();
        self.with_state(|s| s.post_status_as(username, room, text, now))
    }

    /// Reply in the thread of `parent_id`.
    pub fn reply_in_thread(
        &self,
        room: &str,
        username: &str,
        parent_id: &str,
        text: &str,
    ) -> Result<Value, ApiError> {
        let now = self.now_ms();
        self.with_state(|s| s.reply_as(username, room, parent_id, text, now))
    }

    /// Edit a message as its author.
    pub fn edit_message(
        &self,
        room: &str,
        username: &str,
        msg_id: &str,
        text: &str,
    ) -> Result<Value, ApiError> {
        let now = self.now_ms();
        self.with_state(|s| s.edit_as(username, room, msg_id, text, now))
    }

    /// Delete a message (author or room admin).
    pub fn delete_message(&self, room: &str, username: &str, msg_id: &str) -> Result<(), ApiError> {
        self.with_state(|s| s.delete_as(username, room, msg_id))
    }

    /// Join a room as `username`.
    pub fn join(&self, room: &str, username: &str) -> Result<Value, ApiError> {
        let now = self.now_ms();
        self.with_state(|s| s.join_as(username, room, now))
    }

    /// Leave a room as `username`.
    pub fn leave(&self, room: &str, username: &str) -> Result<Value, ApiError> {
        self.with_state(|s| s.leave_as(username, room))
    }

    /// Main-timeline messages of a room (id or uri), oldest first.
    pub fn messages(&self, room: &str) -> Result<Vec<Value>, ApiError> {
        self.with_state(|s| s.messages_of(room))
    }

    /// Usernames of a room's members, in join order.
    pub fn members(&self, room: &str) -> Vec<String> {
        self.with_state(|s| {
            s.room_ref(room)
                .map(|r| {
                    r.members
                        .iter()
                        .filter_map(|id| s.user(id).map(|u| u.username.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Room id of a uri (or id).
    pub fn room_id(&self, room: &str) -> Option<String> {
        self.with_state(|s| s.room_ref(room).map(|r| r.id.clone()))
    }

    /// User id of a username.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.with_state(|s| s.user_by_username(username).map(|u| u.id.clone()))
    }

    /// The token `username` would get from OAuth with the configured client
    /// (created if needed) — a shortcut past the browser flow.
    pub fn token_for(&self, username: &str) -> Option<String> {
        self.with_state(|s| s.caller_for(username).ok().map(|c| c.token))
    }

    // ---- faults -----------------------------------------------------

    /// Close the streams of a room (id or uri), or all streams.
    pub fn drop_streams(&self, room: Option<&str>) -> usize {
        self.with_state(|s| {
            let rid = room.map(|r| {
                s.room_ref(r)
                    .map(|x| x.id.clone())
                    .unwrap_or_else(|| r.to_string())
            });
            s.drop_streams(rid.as_deref())
        })
    }

    /// Whether someone reads the room (id or uri): an open HTTP stream or a realtime
    /// subscription to its messages.
    pub fn is_read(&self, room: &str) -> bool {
        self.with_state(|s| {
            let rid = s
                .room_ref(room)
                .map(|x| x.id.clone())
                .unwrap_or_else(|| room.to_string());
            !s.stream_readers(&rid).is_empty()
        })
    }

    /// Open streams (of one room, or all).
    pub fn stream_count(&self, room: Option<&str>) -> usize {
        self.with_state(|s| {
            let rid = room.map(|r| {
                s.room_ref(r)
                    .map(|x| x.id.clone())
                    .unwrap_or_else(|| r.to_string())
            });
            s.stream_count(rid.as_deref())
        })
    }

    /// Writes a raw line to the open streams of a room (id or uri); returns
    /// how many streams got it.
    pub fn send_stream_line(&self, room: &str, line: &str) -> usize {
        self.with_state(|s| {
            let rid = s
                .room_ref(room)
                .map(|x| x.id.clone())
                .unwrap_or_else(|| room.to_string());
            s.stream_raw_line(&rid, line)
        })
    }

    /// Fail the next `n` `/v1` requests (and stream opens) with `status`.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.with_state(|s| s.fail_next(n, status));
    }

    /// Fail every `/v1` request with `status` for `duration`.
    pub fn fail_for(&self, duration: Duration, status: u16) {
        let until = self.now_ms() + duration.as_millis() as u64;
        self.with_state(|s| s.fail_until(until, status));
    }

    /// Delay every answer of the API host (REST, the OAuth token endpoint,
    /// unknown paths; not the browser's sign-in page, not the streams).
    /// Clearing faults ends the wait of requests already delayed.
    pub fn set_delay(&self, delay: Duration) {
        self.with_state(|s| s.set_delay(delay));
    }

    /// The next `n` `POST /v1/rooms/:roomId/chatMessages` are processed as
    /// usual (the message is stored and streamed) and get no answer at all:
    /// the connection closes before the status line.
    pub fn lose_send_answers(&self, n: u32) {
        self.with_state(|s| s.lose_send_answers(n));
    }

    /// Send answers still to be lost.
    pub fn pending_lost_sends(&self) -> u32 {
        self.with_state(|s| s.pending_lost_sends())
    }

    /// New stream connections answer 200 and end at once, for `limit`.
    pub fn flap_streams(&self, limit: FaultLimit) {
        let now = self.now_ms();
        self.with_state(|s| s.flap_streams(limit.budget(now)));
    }

    /// Streams, open and new, send nothing at all (no heartbeats) for `d`;
    /// messages due meanwhile follow when it ends.
    pub fn silence_streams_for(&self, d: Duration) {
        let until = self.now_ms() + d.as_millis() as u64;
        self.with_state(|s| s.silence_streams_until(until));
    }

    /// A hostile answer for `limit`: a huge body for API requests, an endless
    /// line for new streams, or a slow drip of API answers (see [`Hostile`]).
    pub fn hostile(&self, hostile: Hostile, limit: FaultLimit) {
        let now = self.now_ms();
        self.with_state(|s| s.set_hostile(hostile, limit.budget(now)));
    }

    /// Refuse connections on `host` for `d`: the listening socket is closed
    /// (ECONNREFUSED) and its open connections, streams included, are cut;
    /// then the same address serves the same state. Returns once closed.
    pub async fn refuse_connections_for(&self, d: Duration, host: GitterHost) {
        self.shared.refuse_for(d, host, None).await;
    }

    /// Whether `host`'s listener refuses connections now (for `Both`: either).
    pub fn refusing_connections(&self, host: GitterHost) -> bool {
        match host {
            GitterHost::Api => self.shared.api_net.refusing(),
            GitterHost::Stream => self.shared.stream_net.refusing(),
            GitterHost::Both => self.shared.api_net.refusing() || self.shared.stream_net.refusing(),
        }
    }

    /// Injected "next N" failures not served yet.
    pub fn pending_failures(&self) -> u32 {
        self.with_state(|s| s.pending_failures())
    }

    /// Remove all injected faults (also refusal windows; delays and
    /// silences being waited out end now).
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Revoke a token: 401 from now on, its streams closed.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.with_state(|s| s.revoke_token(token))
    }

    /// Stop the server and wait for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        // Open streams and held realtime connects would keep graceful shutdown waiting:
        // close them, and end the forwarding to an external Faye server.
        self.with_state(|s| {
            s.drop_streams(None);
            s.faye_forward_stop();
        });
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for FakeGitter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        // The connections' own tasks outlive the aborted server tasks: cut
        // them, or an endless answer would go on.
        self.shared.api_net.kill_connections(None);
        self.shared.stream_net.kill_connections(None);
        self.shared.lock().drop_streams(None);
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// Serve `app` on `listener` under `net` until `stop` turns true.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    net: Arc<NetControl>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    net::serve(listener, app, net, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
}
