//! HTTP/1.1 by hand over a TCP socket, for what a client library hides:
//! whether a single byte of an answer arrived before the connection closed,
//! and whether a kept-alive connection was cut.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a read of everything left on a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closed the connection (FIN).
    Eof,
    /// The connection was reset (RST): a close with unread data does that.
    Reset,
    /// Still open when the wait ended.
    StillOpen,
}

impl Ending {
    /// Closed by the server, cleanly or not.
    pub fn closed(self) -> bool {
        self != Ending::StillOpen
    }
}

pub struct RawConn {
    stream: TcpStream,
    addr: SocketAddr,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            stream: TcpStream::connect(addr).await?,
            addr,
        })
    }

    /// Write one request (keep-alive, with `Content-Length`).
    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream
            .write_all(&bytes)
            .await
            .expect("request written");
    }

    /// Read one answer that has a `Content-Length`: its status and body.
    pub async fn read_answer(&mut self) -> (u16, Vec<u8>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("an answer within 5 s")
                .expect("readable");
            assert!(n > 0, "closed before the answer's head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("a content-length");
        while buf.len() < head_end + len {
            let n = self.stream.read(&mut chunk).await.expect("readable");
            assert!(n > 0, "closed inside the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        (status, buf[head_end..head_end + len].to_vec())
    }

    /// Everything the server sends until it closes, or until `wait` passes.
    pub async fn read_rest(&mut self, wait: Duration) -> (Vec<u8>, Ending) {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return (got, Ending::StillOpen),
                Ok(Ok(0)) => return (got, Ending::Eof),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Ok(Err(_)) => return (got, Ending::Reset),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection; what came back and how it ended.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<u8>, Ending) {
    let mut conn = RawConn::connect(addr).await.expect("connects");
    conn.send(method, path, headers, body).await;
    conn.read_rest(Duration::from_secs(5)).await
}

/// Whether a TCP connect to `addr` is refused (ECONNREFUSED), as opposed to
/// accepted.
pub async fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
            true
        }
    }
}
