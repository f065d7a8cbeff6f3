//! The listeners under a flood of idle connections (issue 13: about 1100 idle connections to
//! the public port exhausted the descriptors and the AS listener stopped answering), and the
//! public pages' body and time limits. The listeners are the runtime's own
//! (`gitter_bridge::listen`), with a small cap and short timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gitter_bridge::listen::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CAP: usize = 20;
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);

fn web_limits() -> Limits {
    Limits {
        max_connections: CAP,
        header_timeout: HEADER_TIMEOUT,
        request_timeout: Some(Duration::from_millis(500)),
        ..Limits::web(CAP)
    }
}

fn as_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(5),
        ..Limits::appservice(64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_strangers_on_the_public_port_neither_starve_the_as_listener_nor_stay() {
    let pair = start(as_limits(), web_limits()).await;
    let started = Instant::now();

    // Twice the cap: half send nothing, half a request head that never ends (slowloris).
    let mut idle = Vec::new();
    for i in 0..2 * CAP {
        let mut s = TcpStream::connect(pair.web_addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }

    // The AS listener answers at once, and so does the public one, with a refusal rather
    // than a hang.
    let wait = Duration::from_millis(400);
    assert_eq!(
        get_path(pair.as_addr, "/ping", wait).await,
        Ok((200, "pong".to_owned())),
        "the AS listener did not answer during the flood"
    );
    let (status, _) = get_path(pair.web_addr, "/", wait)
        .await
        .expect("a full public listener must refuse at once, not leave the visitor waiting");
    assert_eq!(status, 503);

    // The connections over the cap were closed at once: they hold no descriptor.
    let mut checks = tokio::task::JoinSet::new();
    for mut s in idle {
        checks.spawn(async move {
            let closed = closed_within(&mut s, Duration::from_millis(200)).await;
            (closed, s)
        });
    }
    let mut open = Vec::new();
    while let Some(done) = checks.join_next().await {
        let (closed, s) = done.unwrap();
        if !closed {
            open.push(s);
        }
    }
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the test was too slow to tell the cap from the timeout"
    );
    assert_eq!(open.len(), CAP, "connections held beyond the cap of {CAP}");

    // Those within the cap are closed once the header-read timeout passes.
    for s in &mut open {
        assert!(
            closed_within(s, HEADER_TIMEOUT * 3).await,
            "an idle connection outlived the header-read timeout"
        );
    }

    // And the public listener serves again.
    assert_eq!(
        get_path(pair.web_addr, "/", wait).await,
        Ok((200, "hello".to_owned()))
    );
    pair.stop.send_replace(true);
    for s in pair.servers {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_when_idle_for_the_header_timeout() {
    let pair = start(as_limits(), web_limits()).await;
    let mut s = TcpStream::connect(pair.web_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive (no `connection: close`), then idle: closed after the timeout, not before.
    assert!(
        !closed_within(&mut s, HEADER_TIMEOUT / 3).await,
        "closed too early"
    );
    assert!(
        closed_within(&mut s, HEADER_TIMEOUT * 3).await,
        "never closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_pages_refuse_large_bodies_and_slow_requests() {
    let pair = start(as_limits(), web_limits()).await;
    let wait = Duration::from_secs(3);
    let small = "x".repeat(100);
    let post = |body: &str, chunked: bool| {
        if chunked {
            format!(
                "POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
                 transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        } else {
            format!(
                "POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    };
    assert_eq!(
        exchange(pair.web_addr, post(&small, false).as_bytes(), wait).await,
        Ok((200, "100".to_owned()))
    );
    let large = "x".repeat(gitter_bridge::listen::WEB_MAX_BODY_BYTES + 1);
    for chunked in [false, true] {
        let (status, _) = exchange(pair.web_addr, post(&large, chunked).as_bytes(), wait)
            .await
            .unwrap();
        assert_eq!(status, 413, "chunked: {chunked}");
    }
    // A declared length over the limit is refused before any of it is sent.
    let head = "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100000000\r\n\r\n";
    let (status, _) = exchange(pair.web_addr, head.as_bytes(), wait)
        .await
        .unwrap();
    assert_eq!(status, 413);

    // A request that takes longer than the whole-request limit is ended.
    let started = Instant::now();
    let (status, _) = get_path(pair.web_addr, "/slow", wait).await.unwrap();
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A head larger than the public pages allow.
    let big_head = format!(
        "GET / HTTP/1.1\r\nhost: t\r\nx-filler: {}\r\nconnection: close\r\n\r\n",
        "y".repeat(gitter_bridge::listen::WEB_MAX_HEADER_BYTES + 1)
    );
    let (status, _) = exchange(pair.web_addr, big_head.as_bytes(), wait)
        .await
        .unwrap();
    assert_eq!(status, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_the_listeners_and_their_idle_connections() {
    let pair = start(as_limits(), web_limits()).await;
    let mut idle = TcpStream::connect(pair.as_addr).await.unwrap();
    // Make sure the connection was accepted before the stop.
    assert_eq!(
        get_path(pair.as_addr, "/ping", Duration::from_secs(2)).await,
        Ok((200, "pong".to_owned()))
    );
    pair.stop.send_replace(true);
    let stopped = tokio::time::timeout(Duration::from_secs(8), async {
        for s in pair.servers {
            s.await.unwrap();
        }
    })
    .await;
    assert!(stopped.is_ok(), "the listeners did not stop");
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    assert!(
        TcpStream::connect(pair.as_addr).await.is_err(),
        "still listening"
    );
}
