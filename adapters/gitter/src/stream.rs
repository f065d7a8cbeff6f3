//! Streaming readers: `GET <stream_base>/v1/rooms/:roomId/chatMessages` (docs/gitter-api.md §5).
//!
//! The body is newline-delimited JSON, one bare Message per line, with `" \n"` heartbeats
//! between them, and a JSON object may be split across TCP chunks at any byte (§5.1). The
//! pure [`LineSplitter`] turns bytes into [`StreamItem`]s; a reader task per room
//! ([`StreamManager`]) feeds it, reports [`StreamEvent`]s to the driver, treats a stream
//! silent for longer than [`StreamConfig::idle_timeout`] as dead, and reconnects with
//! exponential backoff and jitter ([`ReconnectBackoff`]), except after a 401 (the token is
//! dead: reconnecting could only fail again, and the core picks another reader).
//!
//! Deadlines: connecting is bounded by the client's `connect_timeout`, the status line and
//! headers (and a refusal's body, read to at most [`ERROR_BODY_LIMIT`](crate::ERROR_BODY_LIMIT)) by
//! [`StreamConfig::answer_timeout`], and every wait for bytes after that by the idle timeout.
//!
//! The stream is create-only and at-most-once (§5.1): on every [`StreamEvent::Connected`] the
//! core pages `chatMessages?afterId=<cursor>` to fill the gap (§5.2). The stream is not covered
//! by the REST rate limiter (§8), so reader connections do not take from a token's budget.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use gitter_bridge_core::{
    EffectOutput, EffectResult, FailureKind, GitterMessage, GitterRoomId, Input, RealtimeEvent,
    Secret, StreamCall,
};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::client::{GitterClient, read_error_body};
use crate::error::GitterError;
use crate::models::Message;

/// Settings of the streaming readers.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// A stream that delivers nothing (not even a heartbeat) for this long is dead. The
    /// heartbeat interval is undocumented ("periodic", §5.1), so this is generous.
    pub idle_timeout: Duration,
    /// How long a connection may take to answer: from sending the request to the end of the
    /// headers (and of a refusal's body). A host that accepts and never answers, or sends a
    /// status line and no headers, is given up after this.
    pub answer_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// A connection that stayed up this long (or delivered a message) proves the stream
    /// healthy, and the reconnect backoff starts over; see [`ReconnectBackoff`].
    pub stable_after: Duration,
    /// Longest line accepted; longer ones are dropped as malformed (bounds memory).
    pub max_line: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            answer_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(300),
            stable_after: Duration::from_secs(30),
            max_line: 1 << 20,
        }
    }
}

impl StreamConfig {
    fn backoff(&self) -> backon::ExponentialBackoff {
        reconnect_backoff(self.reconnect_min, self.reconnect_max)
    }
}

/// Reconnect delays from `min` to `max`, doubling, with jitter (spreads many readers), never
/// giving up: a stream or realtime client is wanted until it is closed.
pub(crate) fn reconnect_backoff(min: Duration, max: Duration) -> backon::ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .with_jitter()
        .build()
}

// ---- the reconnect decision ----

/// How one connection attempt of a reader ended, as far as the reconnect delay cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// No stream came of it: refused, unreachable, no answer in time, a status other than 200.
    NoStream,
    /// A 200 stream ended (closed by the server, silent, broken) after being up for `up_for`,
    /// having delivered `messages` messages (heartbeats and malformed lines do not count).
    Streamed {
        /// From the 200 to the end.
        up_for: Duration,
        /// Messages delivered.
        messages: u64,
    },
}

/// The reconnect delays of one reader: exponential from [`StreamConfig::reconnect_min`] to
/// [`StreamConfig::reconnect_max`], with jitter (spreads the readers of many rooms), started
/// over only by a connection that proved the stream healthy: one that stayed up for
/// [`StreamConfig::stable_after`] or delivered a message.
///
/// A 200 alone proves nothing: a stream host that accepts and closes at once was answered by
/// a reset after every 200, and 5 rooms made 234 connections in 60 s (issue 12). A heartbeat
/// proves little more (a broken host may well send one and close), so it does not count.
#[derive(Debug)]
pub struct ReconnectBackoff {
    config: StreamConfig,
    backoff: backon::ExponentialBackoff,
}

impl ReconnectBackoff {
    /// The backoff of a fresh reader.
    pub fn new(config: &StreamConfig) -> Self {
        Self {
            config: config.clone(),
            backoff: config.backoff(),
        }
    }

    /// Whether a connection that ended this way proves the stream healthy.
    pub fn is_stable(&self, end: ConnectionEnd) -> bool {
        match end {
            ConnectionEnd::NoStream => false,
            ConnectionEnd::Streamed { up_for, messages } => {
                messages > 0 || up_for >= self.config.stable_after
            }
        }
    }

    /// The delay before the next attempt, after one that ended as `end`.
    pub fn next_delay(&mut self, end: ConnectionEnd) -> Duration {
        if self.is_stable(end) {
            self.backoff = self.config.backoff();
        }
        self.backoff.next().unwrap_or(self.config.reconnect_max)
    }
}

// ---- the pure parser ----

/// One thing read from a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    /// A message line.
    Message(Box<Message>),
    /// A keep-alive (`" \n"`, or any line empty after trimming).
    Heartbeat,
    /// A line that is not a message (lossy UTF-8, cut to 256 bytes), or `"<line too long>"`.
    Malformed(String),
}

/// Splits a byte stream into lines, whatever the chunk boundaries, and parses each: trimmed,
/// empty -> heartbeat, otherwise JSON (§5.1). Lines end at `\n` (what every real client and
/// the later docs say), at `\r` (what the 2014 docs say), or at `\r\n` (one terminator, not
/// two): a raw CR or LF never occurs inside a JSON object, which escapes them, so splitting on
/// either is safe and a server that follows either text is read.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
    overflow: bool,
    /// The last byte consumed was a `\r` ending a line: a `\n` right after it ends nothing.
    after_cr: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(StreamConfig::default().max_line)
    }
}

impl LineSplitter {
    /// A splitter that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            overflow: false,
            after_cr: false,
        }
    }

    /// Whether the line being read is already longer than the limit (its bytes are being
    /// dropped until it ends).
    pub fn overflowing(&self) -> bool {
        self.overflow
    }

    /// Feeds a chunk; returns the items of every line it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<StreamItem> {
        let mut items = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let terminator = rest[pos];
            let crlf = terminator == b'\n' && pos == 0 && self.after_cr;
            if !crlf {
                self.append(&rest[..pos]);
                items.push(self.take_line());
            }
            self.after_cr = terminator == b'\r';
            rest = &rest[pos + 1..];
        }
        if !rest.is_empty() {
            self.after_cr = false;
            self.append(rest);
        }
        items
    }

    /// The memory the unfinished line holds (its buffer's capacity), never more than
    /// `max_line` bytes however long a line without newline goes on.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// The end of the stream: a last line without its `\n`, if any.
    pub fn finish(&mut self) -> Vec<StreamItem> {
        if self.overflow || !self.buf.trim_ascii().is_empty() {
            vec![self.take_line()]
        } else {
            self.buf.clear();
            Vec::new()
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        let needed = self.buf.len() + bytes.len();
        if needed > self.max_line {
            self.overflow = true;
            self.buf = Vec::new();
            return;
        }
        if needed > self.buf.capacity() {
            // Vec's own growth doubles, which could reserve up to twice `max_line` for a line
            // just under it; growing by hand keeps the reservation within `max_line`.
            let target = (self.buf.capacity() * 2).clamp(needed, self.max_line);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    fn take_line(&mut self) -> StreamItem {
        let line = std::mem::take(&mut self.buf);
        if std::mem::replace(&mut self.overflow, false) {
            return StreamItem::Malformed("<line too long>".to_owned());
        }
        parse_line(&line)
    }
}

fn parse_line(line: &[u8]) -> StreamItem {
    let line = line.trim_ascii();
    if line.is_empty() {
        return StreamItem::Heartbeat;
    }
    match serde_json::from_slice::<Message>(line) {
        Ok(m) if !m.id.is_empty() => StreamItem::Message(Box::new(m)),
        _ => {
            let cut = &line[..line.len().min(256)];
            StreamItem::Malformed(String::from_utf8_lossy(cut).into_owned())
        }
    }
}

// ---- events ----

/// What a reader reports to the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The stream is (re)connected: the core should catch up from its cursor.
    Connected {
        /// The room.
        room: GitterRoomId,
    },
    /// A message arrived.
    Message {
        /// The room.
        room: GitterRoomId,
        /// The message (boxed: it is far larger than the other events).
        message: Box<GitterMessage>,
    },
    /// The stream ended or could not be opened. Reported once per outage (not for every
    /// failed attempt of the same kind).
    Disconnected {
        /// The room.
        room: GitterRoomId,
        /// Why: `TokenRevoked` for a 401 (no reconnect), `Transient` for network trouble,
        /// silence and server errors, and so on.
        reason: FailureKind,
        /// A detail for logs (never a token).
        detail: String,
        /// Whether the reader keeps trying (false only after a 401).
        reconnecting: bool,
    },
    /// Something else Gitter's realtime API reported (Faye only, `crate::faye`).
    Realtime(Box<RealtimeEvent>),
}

impl From<StreamEvent> for Input {
    fn from(e: StreamEvent) -> Self {
        match e {
            StreamEvent::Connected { room } => Input::StreamConnected { room },
            StreamEvent::Message { room, message } => Input::GitterMessage {
                room,
                message: *message,
            },
            StreamEvent::Disconnected { room, reason, .. } => {
                Input::StreamDisconnected { room, reason }
            }
            StreamEvent::Realtime(event) => Input::Realtime(*event),
        }
    }
}

// ---- the manager ----

/// One reader task per Gitter room. [`StreamCall::Open`] and [`StreamCall::Close`] map to
/// [`StreamManager::open`] and [`StreamManager::close`] (or [`StreamManager::execute`]).
#[derive(Debug)]
pub struct StreamManager {
    client: GitterClient,
    events: mpsc::Sender<StreamEvent>,
    tasks: HashMap<GitterRoomId, JoinHandle<()>>,
}

impl StreamManager {
    /// A manager whose readers use `client`'s configuration and report to `events`.
    pub fn new(client: GitterClient, events: mpsc::Sender<StreamEvent>) -> Self {
        Self {
            client,
            events,
            tasks: HashMap::new(),
        }
    }

    /// Opens the room's stream with `token`, replacing any reader already there (a new
    /// token, or a fresh start after a revoked one). The old reader has stopped when this
    /// returns, so none of its events follow the new reader's.
    pub async fn open(&mut self, room: GitterRoomId, token: Secret) {
        self.stop(&room).await;
        let reader = Reader {
            url: GitterClient::url(
                &self.client.config().stream_base,
                &["v1", "rooms", room.as_str(), "chatMessages"],
            ),
            client: self.client.clone(),
            config: self.client.config().stream.clone(),
            room: room.clone(),
            token,
            events: self.events.clone(),
        };
        tracing::debug!(%room, "opening Gitter stream");
        self.tasks.insert(room, tokio::spawn(reader.run()));
    }

    /// Closes the room's stream. Returns whether one was open (or had ended by itself).
    pub async fn close(&mut self, room: &GitterRoomId) -> bool {
        let had = self.stop(room).await;
        if had {
            tracing::debug!(%room, "closed Gitter stream");
        }
        had
    }

    /// Closes every stream.
    pub async fn close_all(&mut self) {
        let rooms: Vec<GitterRoomId> = self.tasks.keys().cloned().collect();
        for room in rooms {
            self.stop(&room).await;
        }
    }

    /// Whether the room's reader is running (false after it stopped on a 401).
    pub fn is_running(&self, room: &GitterRoomId) -> bool {
        self.tasks.get(room).is_some_and(|t| !t.is_finished())
    }

    /// The rooms with a reader task (running or stopped on a 401).
    pub fn rooms(&self) -> impl Iterator<Item = &GitterRoomId> {
        self.tasks.keys()
    }

    /// Runs a stream call (both answer `Done`).
    pub async fn execute(&mut self, call: &StreamCall) -> EffectResult {
        match call {
            StreamCall::Open { room, token } => self.open(room.clone(), token.clone()).await,
            StreamCall::Close { room } => {
                self.close(room).await;
            }
            // A user's own channels exist only on Faye (§6.3); the HTTP streams have none.
            StreamCall::Watch { .. } | StreamCall::Unwatch { .. } => {}
        }
        Ok(EffectOutput::Done)
    }

    async fn stop(&mut self, room: &GitterRoomId) -> bool {
        match self.tasks.remove(room) {
            Some(task) => {
                task.abort();
                // Wait until it has really stopped: an aborted task on another worker could
                // otherwise still push an event after its successor's `Connected`.
                let _ = task.await;
                true
            }
            None => false,
        }
    }
}

impl Drop for StreamManager {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

// ---- one reader ----

struct Reader {
    client: GitterClient,
    config: StreamConfig,
    url: Url,
    room: GitterRoomId,
    token: Secret,
    events: mpsc::Sender<StreamEvent>,
}

/// How one connection ended.
enum End {
    /// The driver dropped the receiver: stop.
    ReceiverGone,
    /// The connection failed or ended.
    Failed {
        kind: FailureKind,
        detail: String,
        /// How far it got: whether a stream was up, how long, and what it delivered.
        end: ConnectionEnd,
    },
}

impl Reader {
    async fn run(self) {
        let mut backoff = ReconnectBackoff::new(&self.config);
        // The kind of the last reported disconnect; `None` while connected or before the first
        // attempt. A dead server is reported once, not on every retry.
        let mut reported: Option<FailureKind> = None;
        loop {
            let (kind, detail, end) = match self.connect_and_read().await {
                End::ReceiverGone => return,
                End::Failed { kind, detail, end } => (kind, detail, end),
            };
            if let ConnectionEnd::Streamed { .. } = end {
                // A `Connected` went out, so its end is news again (the backoff is another
                // matter, decided below).
                reported = None;
            }
            let revoked = kind == FailureKind::TokenRevoked;
            tracing::info!(room = %self.room, %kind, detail, "Gitter stream disconnected");
            if reported != Some(kind) {
                reported = Some(kind);
                let event = StreamEvent::Disconnected {
                    room: self.room.clone(),
                    reason: kind,
                    detail,
                    reconnecting: !revoked,
                };
                if self.events.send(event).await.is_err() {
                    return;
                }
            }
            if revoked {
                // The token is dead (§2.2): retrying would only fail again.
                return;
            }
            let delay = backoff.next_delay(end);
            tracing::debug!(room = %self.room, delay_ms = delay.as_millis(), "reconnecting Gitter stream");
            tokio::time::sleep(delay).await;
        }
    }

    async fn connect_and_read(&self) -> End {
        let idle = self.config.idle_timeout;
        let no_stream = |kind, detail: String| End::Failed {
            kind,
            detail,
            end: ConnectionEnd::NoStream,
        };
        let request = self
            .client
            .http()
            .get(self.url.clone())
            .header(ACCEPT, "application/json")
            .bearer_auth(self.token.expose());
        // A server that accepts the connection but never answers, or sends a status line and
        // never ends its headers (`send` waits for all of them), is as dead as a silent one.
        let answer_by = Instant::now() + self.config.answer_timeout;
        let mut response = match tokio::time::timeout_at(answer_by, request.send()).await {
            Err(_) => {
                let detail = format!(
                    "no answer within {} s",
                    self.config.answer_timeout.as_secs_f32()
                );
                return no_stream(FailureKind::Transient, detail);
            }
            Ok(Err(e)) => {
                let e = GitterError::network(&e, 1);
                return no_stream(e.kind(), e.to_string());
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status != StatusCode::OK {
            // Auth failures come back as the REST-style JSON error before streaming (§5.2);
            // read to at most ERROR_BODY_LIMIT, by the same deadline: the status decides.
            let body = tokio::time::timeout_at(answer_by, read_error_body(response))
                .await
                .unwrap_or_default();
            let e = GitterError::from_status(status.as_u16(), &body, 1).scrub_token(&self.token);
            return no_stream(e.kind(), e.to_string());
        }
        let up_since = Instant::now();
        let mut messages = 0u64;
        let failed = |kind, detail: String, messages| End::Failed {
            kind,
            detail,
            end: ConnectionEnd::Streamed {
                up_for: up_since.elapsed(),
                messages,
            },
        };
        tracing::info!(room = %self.room, "Gitter stream connected");
        let connected = StreamEvent::Connected {
            room: self.room.clone(),
        };
        if self.events.send(connected).await.is_err() {
            return End::ReceiverGone;
        }
        let mut splitter = LineSplitter::new(self.config.max_line);
        loop {
            // Only the wait for bytes is timed: a slow driver must not count as silence.
            let chunk = match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => {
                    let detail = format!("silent for {} s", idle.as_secs_f32());
                    return failed(FailureKind::Transient, detail, messages);
                }
                Ok(Err(e)) => {
                    let e = GitterError::network(&e, 1);
                    return failed(FailureKind::Transient, e.to_string(), messages);
                }
                Ok(Ok(None)) => {
                    if !self.deliver(splitter.finish(), &mut messages).await {
                        return End::ReceiverGone;
                    }
                    let detail = "ended by the server".to_owned();
                    return failed(FailureKind::Transient, detail, messages);
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            if !self.deliver(splitter.push(&chunk), &mut messages).await {
                return End::ReceiverGone;
            }
            if splitter.overflowing() {
                // A line past the limit that goes on: a server (or proxy) that sends an
                // endless line keeps the idle timer happy while nothing can ever be read.
                // Only a new connection helps; its catch-up reads what this one hid.
                let detail = format!(
                    "a stream line longer than {} bytes; reconnecting",
                    self.config.max_line
                );
                return failed(FailureKind::Transient, detail, messages);
            }
        }
    }

    /// Sends the messages among `items`, counting them into `delivered`; false when the driver
    /// is gone.
    async fn deliver(&self, items: Vec<StreamItem>, delivered: &mut u64) -> bool {
        for item in items {
            match item {
                StreamItem::Message(m) => {
                    let id = m.id.clone();
                    let Some(message) = m.into_core() else {
                        tracing::warn!(room = %self.room, message = id, "stream message without author; skipped");
                        continue;
                    };
                    let event = StreamEvent::Message {
                        room: self.room.clone(),
                        message: Box::new(message),
                    };
                    if self.events.send(event).await.is_err() {
                        return false;
                    }
                    *delivered += 1;
                }
                StreamItem::Heartbeat => tracing::trace!(room = %self.room, "stream heartbeat"),
                // Message text is user content: log its size, not the line.
                StreamItem::Malformed(line) => {
                    tracing::warn!(room = %self.room, len = line.len(), "malformed stream line skipped");
                }
            }
        }
        true
    }
}
