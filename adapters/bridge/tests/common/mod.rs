//! Shared by the listener tests: two routers standing in for the AS API and the public
//! pages, and a raw HTTP/1.1 client (no pool, so every connection is one the test controls).

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use gitter_bridge::listen::{self, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Both listeners, serving.
pub struct Pair {
    pub as_addr: SocketAddr,
    pub web_addr: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub servers: Vec<JoinHandle<()>>,
}

/// The AS and web listeners on loopback ports, as the runtime starts them, with the given
/// limits.
pub async fn start(appservice: Limits, web: Limits) -> Pair {
    let as_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let as_router = Router::new().route("/ping", get(|| async { "pong" }));
    let web_router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/echo",
            post(|body: String| async move { body.len().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let pair = Pair {
        as_addr: as_listener.local_addr().unwrap(),
        web_addr: web_listener.local_addr().unwrap(),
        stop,
        servers: Vec::new(),
    };
    let servers = vec![
        listen::spawn(
            "appservice",
            as_listener,
            as_router,
            appservice,
            stop_rx.clone(),
        ),
        listen::spawn("web", web_listener, web_router, web, stop_rx),
    ];
    Pair { servers, ..pair }
}

/// Sends `request` (raw bytes) on a new connection and reads until the server closes it or
/// `wait` passes. Returns the status and the body, or why there was none.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Result<(u16, String), String> {
    let run = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse(&out).ok_or_else(|| format!("no HTTP answer: {:?}", String::from_utf8_lossy(&out)))
    };
    tokio::time::timeout(wait, run)
        .await
        .map_err(|_| format!("no answer within {wait:?}"))?
}

/// `GET path` with `Connection: close`.
pub async fn get_path(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
) -> Result<(u16, String), String> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    exchange(addr, request.as_bytes(), wait).await
}

fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// Whether the server has closed `s` (EOF or a reset, after whatever it sent) within `wait`.
pub async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
