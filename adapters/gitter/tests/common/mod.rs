//! Shared helpers of the integration tests: fixtures, a client pointed at a mock Gitter, and
//! assertions on what the mock received.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use gitter_bridge_core::Secret;
use gitter_bridge_gitter::{GitterClient, GitterConfig, OAuthConfig, RetryConfig};
use wiremock::{MockServer, Request, ResponseTemplate};

/// A made-up token, shaped like Gitter's (40 hex chars).
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
/// The OAuth client secret of the test app.
pub const CLIENT_SECRET: &str = "client-secret-0000000000000000000000000";

pub fn token() -> Secret {
    Secret::new(TOKEN)
}

/// The directory of recorded Gitter payloads.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gitter")
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture parsed as JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// A 200 answer with a fixture as its JSON body.
pub fn ok_fixture(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
}

/// An error answer with a fixture as its JSON body.
pub fn error_fixture(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(name), "application/json")
}

/// A configuration for a fake Gitter at `base` (REST, stream and OAuth on one server), with
/// quick, jitter-free retries so tests stay short.
pub fn config(base: &str) -> GitterConfig {
    let url = |p: &str| format!("{base}{p}").parse().unwrap();
    let oauth = OAuthConfig {
        authorize_url: url("/login/oauth/authorize"),
        token_url: url("/login/oauth/token"),
        client_id: "client-key".to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        redirect_uri: "http://bridge.test/oauth/callback".parse().unwrap(),
    };
    let mut c = GitterConfig::new(base.parse().unwrap(), base.parse().unwrap(), oauth);
    c.retry = RetryConfig {
        max_attempts: 3,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
        rate_limited_wait: Duration::from_millis(50),
        jitter: false,
    };
    c
}

/// The same, for tests on tokio's paused clock. The paused clock jumps to the next timer
/// whenever the runtime waits for I/O, so no timer may be pending during a request: no
/// request or connect time limits, and no idle-connection reaper.
pub fn paused_config(base: &str) -> GitterConfig {
    let mut c = config(base);
    c.request_timeout = None;
    c.connect_timeout = None;
    c.pool_idle_timeout = None;
    c
}

/// A mock Gitter and a client pointed at it.
pub async fn gitter() -> (MockServer, GitterClient) {
    let server = MockServer::start().await;
    let client = GitterClient::new(config(&server.uri())).unwrap();
    (server, client)
}

/// Every request the mock received.
pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

/// The one request the mock received.
pub async fn only_request(server: &MockServer) -> Request {
    let mut all = requests(server).await;
    assert_eq!(
        all.len(),
        1,
        "expected exactly one request, got {}",
        all.len()
    );
    all.pop().unwrap()
}

/// Asserts the conventions of docs/gitter-api.md §1.2 on one request: bearer auth, JSON accepted,
/// and for writes a Content-Length that matches the body (never chunked).
pub fn assert_conventions(req: &Request) {
    let header = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        header("authorization").as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(header("accept").as_deref(), Some("application/json"));
    assert!(
        header("transfer-encoding").is_none(),
        "chunked request body"
    );
    if req.method != "GET" {
        let len = header("content-length").expect("Content-Length on a write");
        assert_eq!(len, req.body.len().to_string());
    }
}

/// Asserts method, path and (when given) JSON body of a request, plus the conventions.
pub fn assert_request(req: &Request, method: &str, path: &str, body: Option<serde_json::Value>) {
    assert_eq!(req.method.as_str(), method);
    assert_eq!(req.url.path(), path);
    if let Some(body) = body {
        assert_eq!(req.body_json::<serde_json::Value>().unwrap(), body);
        assert_eq!(
            req.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
    assert_conventions(req);
}

/// A query parameter of a request.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every `message-*.json` fixture.
pub fn message_fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            (name.starts_with("message-") && name.ends_with(".json")).then_some(name)
        })
        .map(|name| {
            let text = fixture(&name);
            (name, text)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 6, "message fixtures missing");
    out
}

/// A fixture re-serialised on one line, the way the stream sends it (§5.1).
pub fn one_line(json_text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json_text).unwrap();
    serde_json::to_string(&v).unwrap()
}

// ---- a raw loopback server, for what wiremock cannot express ----

/// What [`RawServer`] does with every connection, once it has read the whole request.
#[derive(Clone, Debug)]
pub enum Raw {
    /// Close the connection without answering (a lost answer).
    CloseUnanswered,
    /// Say nothing, forever (a server that never answers).
    Hang,
    /// Send these bytes (a status line, maybe headers and the start of a body), then say
    /// nothing, forever.
    SendThenHang(&'static str),
    /// Answer `status` with a body of `len` bytes, made up while it is sent (never held in
    /// memory): with a `Content-Length` of `len` when `declared`, chunked otherwise. With
    /// `then_hang` the connection stays open and silent after the body instead of ending it.
    Body {
        status: u16,
        len: u64,
        declared: bool,
        then_hang: bool,
    },
}

impl Raw {
    /// A 100 MiB chunked answer with this status that ends normally.
    pub fn huge(status: u16) -> Raw {
        Raw::Body {
            status,
            len: 100 * 1024 * 1024,
            declared: false,
            then_hang: false,
        }
    }
}

/// A loopback HTTP/1.1 server written on a bare `TcpListener`: it reads each request (head and
/// `Content-Length` body), then plays one [`Raw`] behaviour, and counts connections.
pub struct RawServer {
    pub base: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RawServer {
    pub async fn start(behaviour: Raw) -> RawServer {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(play(socket, behaviour.clone()));
            }
        });
        RawServer { base, connections }
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A client for this server (the usual test configuration), changed by `tweak`.
    pub fn client(&self, tweak: impl FnOnce(&mut GitterConfig)) -> GitterClient {
        let mut c = config(&self.base);
        tweak(&mut c);
        GitterClient::new(c).unwrap()
    }
}

async fn play(mut socket: tokio::net::TcpStream, behaviour: Raw) {
    use tokio::io::AsyncWriteExt;
    if read_request(&mut socket).await.is_err() {
        return;
    }
    match behaviour {
        Raw::CloseUnanswered => drop(socket),
        Raw::Hang => hang(socket).await,
        Raw::SendThenHang(bytes) => {
            if socket.write_all(bytes.as_bytes()).await.is_ok() {
                hang(socket).await;
            }
        }
        Raw::Body {
            status,
            len,
            declared,
            then_hang,
        } => {
            let framing = if declared {
                format!("content-length: {len}")
            } else {
                "transfer-encoding: chunked".to_owned()
            };
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // One 64 KiB piece, sent again and again: the body is never held whole.
            let piece = vec![b' '; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(piece.len() as u64) as usize;
                let sent = if declared {
                    socket.write_all(&piece[..n]).await
                } else {
                    let mut chunk = format!("{n:x}\r\n").into_bytes();
                    chunk.extend_from_slice(&piece[..n]);
                    chunk.extend_from_slice(b"\r\n");
                    socket.write_all(&chunk).await
                };
                if sent.is_err() {
                    return; // the client stopped reading and closed
                }
                left -= n as u64;
            }
            if then_hang {
                hang(socket).await;
            } else if !declared {
                let _ = socket.write_all(b"0\r\n\r\n").await;
            }
        }
    }
}

/// Keeps the connection open and silent until the client goes away.
async fn hang(socket: tokio::net::TcpStream) {
    let _socket = socket;
    std::future::pending::<()>().await;
}

/// Reads one request: the head up to the blank line, then `Content-Length` bytes of body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut piece).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&piece[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = socket.read(&mut piece).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(())
}

/// Runs `f`, failing the test if it has not ended within `limit`: tests of deadlines assert
/// that a call ended, never how long it took.
pub async fn ends_within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("still running after {limit:?}: no deadline applied"))
}

/// A port nobody listens on: bind, note the port, close.
pub fn dead_port_base() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}
