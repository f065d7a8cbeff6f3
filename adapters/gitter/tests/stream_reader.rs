//! Streaming readers against a tiny loopback server (axum) that plays a script per
//! connection: status codes, chunks cut mid-object, heartbeats, silence, closed connections.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use gitter_bridge_core::{FailureKind, GitterRoomId, Input, Secret};
use gitter_bridge_gitter::{
    ConnectionEnd, GitterClient, ReconnectBackoff, StreamConfig, StreamEvent, StreamManager,
};
use tokio::sync::mpsc;

const ROOM: &str = "5787e94cc2f0db084a230583";

/// What the fake server does with one connection.
#[derive(Clone, Debug)]
enum Play {
    /// Answer with this status and a JSON error body.
    Status(u16, &'static str),
    /// Answer 200 and play these steps; after the last one the connection is closed.
    Stream(Vec<Step>),
}

#[derive(Clone, Debug)]
enum Step {
    Send(Vec<u8>),
    Wait(Duration),
    /// Keep the connection open and say nothing, forever.
    Silence,
}

/// One request the server saw.
#[derive(Clone, Debug)]
struct Hit {
    room: String,
    authorization: Option<String>,
    accept: Option<String>,
}

#[derive(Default)]
struct Script {
    plays: Mutex<VecDeque<Play>>,
    hits: Mutex<Vec<Hit>>,
}

struct FakeStream {
    script: Arc<Script>,
    base: String,
}

impl FakeStream {
    /// Starts a server that plays `plays` in order, then keeps every later connection silent.
    async fn start(plays: Vec<Play>) -> FakeStream {
        let script = Arc::new(Script {
            plays: Mutex::new(plays.into()),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/v1/rooms/{room}/chatMessages", axum::routing::get(serve))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeStream { script, base }
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.hits.lock().unwrap().clone()
    }

    /// A stream manager whose readers talk to this server, with short timeouts.
    fn manager(&self) -> (StreamManager, mpsc::Receiver<StreamEvent>) {
        manager_at(&self.base, |_| {})
    }
}

/// A stream manager whose readers talk to `base`, with short timeouts, changed by `tweak`.
fn manager_at(
    base: &str,
    tweak: impl FnOnce(&mut StreamConfig),
) -> (StreamManager, mpsc::Receiver<StreamEvent>) {
    let mut config = config(base);
    config.stream.idle_timeout = Duration::from_millis(500);
    config.stream.reconnect_min = Duration::from_millis(20);
    config.stream.reconnect_max = Duration::from_millis(100);
    tweak(&mut config.stream);
    let (tx, rx) = mpsc::channel(64);
    (
        StreamManager::new(GitterClient::new(config).unwrap(), tx),
        rx,
    )
}

async fn serve(
    State(script): State<Arc<Script>>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    script.hits.lock().unwrap().push(Hit {
        room,
        authorization: header("authorization"),
        accept: header("accept"),
    });
    let play = script
        .plays
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Play::Stream(vec![Step::Silence]));
    match play {
        Play::Status(code, body) => (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Play::Stream(steps) => {
            let steps: VecDeque<Step> = steps.into();
            let body = futures_util::stream::unfold(steps, |mut steps| async move {
                loop {
                    match steps.pop_front()? {
                        Step::Send(bytes) => {
                            return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), steps));
                        }
                        Step::Wait(d) => tokio::time::sleep(d).await,
                        Step::Silence => std::future::pending::<()>().await,
                    }
                }
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(body))
                .unwrap()
        }
    }
}

fn room() -> GitterRoomId {
    GitterRoomId::new(ROOM)
}

/// The next event, or a failed test after 5 s.
async fn next(rx: &mut mpsc::Receiver<StreamEvent>) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no stream event within 5 s")
        .expect("channel closed")
}

/// Asserts nothing arrives for a while.
async fn quiet(rx: &mut mpsc::Receiver<StreamEvent>, for_ms: u64) {
    if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(for_ms), rx.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

fn disconnected(e: &StreamEvent) -> (FailureKind, bool) {
    match e {
        StreamEvent::Disconnected {
            reason,
            reconnecting,
            ..
        } => (*reason, *reconnecting),
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_cut_across_chunks_are_delivered_in_order() {
    let plain = one_line(&fixture("message-plain.json"));
    let status = one_line(&fixture("message-status.json"));
    let (a, b) = plain.as_bytes().split_at(plain.len() / 2);
    let fake = FakeStream::start(vec![Play::Stream(vec![
        Step::Send(b" \n".to_vec()),
        Step::Send(a.to_vec()),
        Step::Wait(Duration::from_millis(20)),
        Step::Send([b, b"\n", status.as_bytes()].concat()),
        Step::Send(b"\n \n".to_vec()),
        Step::Silence,
    ])])
    .await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    let StreamEvent::Message {
        message: first,
        room: r,
    } = next(&mut rx).await
    else {
        panic!()
    };
    let StreamEvent::Message {
        message: second, ..
    } = next(&mut rx).await
    else {
        panic!()
    };
    assert_eq!(r, room());
    assert_eq!(first.id.as_str(), "5fedc44197312f4b6bfe4519");
    assert!(second.status);
    let hit = &fake.hits()[0];
    assert_eq!(hit.room, ROOM);
    assert_eq!(
        hit.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(hit.accept.as_deref(), Some("application/json"));
    assert!(streams.is_running(&room()));
}

#[tokio::test]
async fn a_revoked_token_is_reported_once_and_not_retried() {
    let fake = FakeStream::start(vec![Play::Status(401, r#"{"error":"Unauthorized"}"#)]).await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    let event = next(&mut rx).await;
    assert_eq!(disconnected(&event), (FailureKind::TokenRevoked, false));
    let StreamEvent::Disconnected { detail, .. } = &event else {
        unreachable!()
    };
    assert!(!detail.contains(TOKEN));
    quiet(&mut rx, 400).await;
    assert_eq!(fake.hits().len(), 1, "no reconnect loop");
    assert!(!streams.is_running(&room()));
    assert_eq!(
        Input::from(event),
        Input::StreamDisconnected {
            room: room(),
            reason: FailureKind::TokenRevoked
        }
    );
}

#[tokio::test]
async fn a_silent_stream_times_out_and_reconnects() {
    let fake = FakeStream::start(vec![Play::Stream(vec![
        Step::Send(b" \n".to_vec()),
        Step::Silence,
    ])])
    .await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::Transient, true)
    );
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    assert!(fake.hits().len() >= 2);
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_stream_alive() {
    // Heartbeats every 100 ms for 1 s, well past the 500 ms idle limit.
    let mut steps = Vec::new();
    for _ in 0..10 {
        steps.push(Step::Wait(Duration::from_millis(100)));
        steps.push(Step::Send(b" \n".to_vec()));
    }
    steps.push(Step::Silence);
    let fake = FakeStream::start(vec![Play::Stream(steps)]).await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    quiet(&mut rx, 900).await;
    assert_eq!(fake.hits().len(), 1);
}

#[tokio::test]
async fn a_stream_closed_by_the_server_reconnects() {
    let line = one_line(&fixture("message-plain.json"));
    let fake = FakeStream::start(vec![Play::Stream(vec![Step::Send(
        format!("{line}\n").into_bytes(),
    )])])
    .await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    assert!(matches!(next(&mut rx).await, StreamEvent::Message { .. }));
    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::Transient, true)
    );
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
}

#[tokio::test]
async fn an_outage_is_reported_once_until_the_stream_is_back() {
    let down = Play::Status(503, r#"{"error":"Service Unavailable"}"#);
    let fake = FakeStream::start(vec![down.clone(), down.clone(), down.clone(), down]).await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::Transient, true)
    );
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    assert_eq!(fake.hits().len(), 5);
}

#[tokio::test]
async fn forbidden_and_missing_rooms_are_reported_and_retried() {
    let fake = FakeStream::start(vec![
        Play::Status(403, r#"{"error":"Forbidden"}"#),
        Play::Status(404, r#"{"error":"Not Found"}"#),
    ])
    .await;
    let (mut streams, mut rx) = fake.manager();

    streams.open(room(), token()).await;

    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::Forbidden, true)
    );
    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::NotFound, true)
    );
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
}

#[tokio::test]
async fn reopening_replaces_the_token_and_closing_stops_the_reader() {
    let fake = FakeStream::start(vec![]).await;
    let (mut streams, mut rx) = fake.manager();
    let other = "fedcba9876543210fedcba9876543210fedcba98";

    streams.open(room(), token()).await;
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    streams.open(room(), Secret::new(other)).await;
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });

    let hits = fake.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[1].authorization.as_deref(),
        Some(&*format!("Bearer {other}"))
    );

    assert!(streams.close(&room()).await);
    assert!(!streams.is_running(&room()));
    quiet(&mut rx, 400).await;
    assert_eq!(fake.hits().len(), 2, "closed readers do not reconnect");
}

#[tokio::test]
async fn open_and_close_stream_actions_are_executed_by_the_manager() {
    use gitter_bridge_core::StreamCall;
    let fake = FakeStream::start(vec![]).await;
    let (mut streams, mut rx) = fake.manager();
    let open = StreamCall::Open {
        room: room(),
        token: token(),
    };
    let close = StreamCall::Close { room: room() };

    assert_eq!(
        streams.execute(&open).await,
        Ok(gitter_bridge_core::EffectOutput::Done)
    );
    assert_eq!(next(&mut rx).await, StreamEvent::Connected { room: room() });
    assert_eq!(
        streams.execute(&close).await,
        Ok(gitter_bridge_core::EffectOutput::Done)
    );
    assert!(!streams.is_running(&room()));
}

#[tokio::test]
async fn a_dropped_receiver_stops_the_reader() {
    let fake = FakeStream::start(vec![Play::Stream(vec![Step::Send(b" \n".to_vec())])]).await;
    let (mut streams, rx) = fake.manager();
    drop(rx);

    streams.open(room(), token()).await;

    // Wait on the condition, bounded, rather than for a fixed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while streams.is_running(&room()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!streams.is_running(&room()));
}

// ---- deadlines and size limits of the answer (issue 12) ----

#[tokio::test]
async fn a_stream_whose_headers_never_come_hits_the_answer_deadline() {
    // A status line, then nothing: `Connected` must not be reported, and the silence timeout
    // (long here) must not be what ends it.
    let server = RawServer::start(Raw::SendThenHang("HTTP/1.1 200 OK\r\n")).await;
    let (mut streams, mut rx) = manager_at(&server.base, |s| {
        s.idle_timeout = Duration::from_secs(600);
        s.answer_timeout = Duration::from_millis(300);
    });

    streams.open(room(), token()).await;

    let event = next(&mut rx).await;
    assert_eq!(disconnected(&event), (FailureKind::Transient, true));
    let StreamEvent::Disconnected { detail, .. } = event else {
        unreachable!()
    };
    assert!(detail.contains("no answer"), "{detail}");
}

#[tokio::test]
async fn a_huge_stream_refusal_is_read_only_to_the_limit() {
    // A 401 with 100 MiB of body and then silence: the status is known after 64 KiB.
    let server = RawServer::start(Raw::Body {
        status: 401,
        len: 100 * 1024 * 1024,
        declared: false,
        then_hang: true,
    })
    .await;
    let (mut streams, mut rx) = manager_at(&server.base, |s| {
        s.idle_timeout = Duration::from_secs(600);
        s.answer_timeout = Duration::from_secs(600);
    });

    streams.open(room(), token()).await;

    assert_eq!(
        disconnected(&next(&mut rx).await),
        (FailureKind::TokenRevoked, false)
    );
}

#[tokio::test]
async fn an_endless_line_ends_the_connection_so_a_new_one_can_catch_up() {
    // 200, then spaces without a newline for ever: bytes keep coming, so the idle timer never
    // fires, and nothing can ever be read from this connection.
    let server = RawServer::start(Raw::Body {
        status: 200,
        len: 100 * 1024 * 1024,
        declared: false,
        then_hang: true,
    })
    .await;
    let (mut streams, mut rx) = manager_at(&server.base, |s| {
        s.idle_timeout = Duration::from_secs(600);
        s.max_line = 64 * 1024;
    });

    streams.open(room(), token()).await;

    assert!(matches!(next(&mut rx).await, StreamEvent::Connected { .. }));
    match next(&mut rx).await {
        StreamEvent::Disconnected {
            reason,
            reconnecting,
            detail,
            ..
        } => {
            assert_eq!((reason, reconnecting), (FailureKind::Transient, true));
            assert!(detail.contains("longer than 65536 bytes"), "{detail}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

// ---- reconnect backoff: only a stream that proved itself starts it over (issue 12) ----

fn backoff_config() -> StreamConfig {
    StreamConfig {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(300),
        stable_after: Duration::from_secs(30),
        ..StreamConfig::default()
    }
}

/// A 200 that closed at once, with nothing but perhaps a heartbeat.
const FLAP: ConnectionEnd = ConnectionEnd::Streamed {
    up_for: Duration::from_millis(5),
    messages: 0,
};

#[test]
fn flapping_connections_make_the_reconnect_delay_grow() {
    let mut backoff = ReconnectBackoff::new(&backoff_config());
    // With jitter the k-th delay lies in [2^k s, 2^(k+1) s): each is above every earlier one.
    for k in 0..8u32 {
        let delay = backoff.next_delay(FLAP);
        let floor = Duration::from_secs(1 << k);
        assert!(delay >= floor && delay < floor * 2, "delay {k}: {delay:?}");
    }
}

#[test]
fn refusals_make_the_reconnect_delay_grow_too() {
    let mut backoff = ReconnectBackoff::new(&backoff_config());
    let delays: Vec<Duration> = (0..6)
        .map(|_| backoff.next_delay(ConnectionEnd::NoStream))
        .collect();
    assert!(delays[5] >= Duration::from_secs(32), "{delays:?}");
}

#[test]
fn a_message_or_a_long_connection_starts_the_backoff_over() {
    let config = backoff_config();
    let grown = || {
        let mut b = ReconnectBackoff::new(&config);
        for _ in 0..6 {
            b.next_delay(FLAP);
        }
        b
    };
    let fresh = |d: Duration| d < Duration::from_secs(2);

    let mut b = grown();
    let d = b.next_delay(ConnectionEnd::Streamed {
        up_for: Duration::from_millis(5),
        messages: 1,
    });
    assert!(fresh(d), "one message: {d:?}");

    let mut b = grown();
    let d = b.next_delay(ConnectionEnd::Streamed {
        up_for: Duration::from_secs(30),
        messages: 0,
    });
    assert!(fresh(d), "up for stable_after: {d:?}");

    let mut b = grown();
    let d = b.next_delay(ConnectionEnd::Streamed {
        up_for: Duration::from_secs(29),
        messages: 0,
    });
    assert!(d >= Duration::from_secs(64), "not yet stable: {d:?}");
    assert!(!b.is_stable(ConnectionEnd::NoStream));
}

#[tokio::test]
async fn a_host_that_accepts_and_closes_is_reconnected_ever_more_slowly() {
    // Every connection: 200, one heartbeat (which proves nothing), closed.
    let flap = Play::Stream(vec![Step::Send(b" \n".to_vec())]);
    let fake = FakeStream::start(vec![flap; 100]).await;
    let (mut streams, mut rx) = manager_at(&fake.base, |s| {
        s.reconnect_min = Duration::from_millis(100);
        s.reconnect_max = Duration::from_secs(10);
    });
    // Keep the reader from waiting on a full channel.
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });

    streams.open(room(), token()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = fake.hits().len();
    streams.close_all().await;
    drain.abort();

    // Delays of at least 0.1, 0.2, 0.4, 0.8 s (1.5 s), the next at least 1.6 s: at most 5
    // connections in 2 s. A backoff reset by every 200 makes one per 0.1 to 0.2 s.
    assert!(hits >= 2, "it did reconnect: {hits}");
    assert!(hits <= 6, "{hits} connections in 2 s");
}
