//! The two HTTP listeners, built so that strangers cannot exhaust them.
//!
//! Observed (issue 13): about 1100 idle TCP connections to the public login port exhausted
//! the process's file descriptors (limit 1024), and the AS listener stopped answering the
//! homeserver too, for as long as they stayed open. `axum::serve` sets no header-read
//! timeout, caps no connections, and both listeners drew on one descriptor budget.
//!
//! Here each listener:
//!
//! * serves at most [`Limits::max_connections`] connections at once (`web.max_connections`,
//!   `appservice.max_connections`). A connection over the cap is accepted, told `503` and
//!   closed: at most [`POLITE_REFUSALS`] of them at a time are given up to
//!   [`POLITE_LINGER`] to read the answer (closing a socket whose request was not read
//!   resets it, and the visitor would see a reset instead of the 503), any others are closed
//!   at once. So the public listener holds at most its cap plus a few descriptors, for a
//!   moment, and the rest of the process's descriptors stay for the AS listener and the
//!   outgoing connections;
//! * closes a connection whose request headers do not arrive within
//!   [`Limits::header_timeout`]. hyper starts that timer whenever it waits for a request head,
//!   on a new connection and between the requests of a kept-alive one, so the same limit is
//!   the idle (keep-alive) timeout;
//! * on the public pages only: refuses a body larger than [`WEB_MAX_BODY_BYTES`] (by its
//!   `Content-Length` at once, or when it grows past it), headers larger than
//!   [`WEB_MAX_HEADER_BYTES`], and ends a request that takes longer than
//!   [`WEB_REQUEST_TIMEOUT`] from its head to its answer.
//!
//! At startup the binary raises the soft `RLIMIT_NOFILE` to the hard limit
//! ([`raise_descriptor_limit`]) and refuses caps that do not fit it with
//! [`RESERVED_DESCRIPTORS`] to spare ([`check_budget`]).
//!
//! Only HTTP/1.1 is served (as before: axum's default features have no HTTP/2); homeservers
//! and reverse proxies speak it to their upstreams.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// Header-read and idle timeout of the public pages. A browser sends its request head in one
/// packet right after connecting; ten seconds covers a slow mobile link and a browser that
/// keeps a connection open for the next page. Browsers retry a GET on a fresh connection
/// when the server closed an idle one.
pub const WEB_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request time limit of the public pages, from the request head to the answer. Longer
/// than the pages' own wait for the bridge (60 s, after which they say "still working"), so
/// it only cuts a client that sends its body too slowly, or a page that hangs.
pub const WEB_REQUEST_TIMEOUT: Duration = Duration::from_secs(75);
/// Largest request body of the public pages: they are links and a small form.
pub const WEB_MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest request head of the public pages (hyper's read buffer; at least 8 KiB). Login
/// links, OAuth callbacks and a cookie fit many times over.
pub const WEB_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header-read and idle timeout of the AS listener. Longer than the idle time after which a
/// homeserver drops its pooled connections (Synapse's `cachedConnectionTimeout`: 2 minutes),
/// so that the homeserver, not the bridge, closes an idle connection: were the bridge to
/// close it first, a transaction sent at that moment would fail and wait out the
/// homeserver's retry backoff.
pub const AS_HEADER_TIMEOUT: Duration = Duration::from_secs(180);
/// Descriptors kept outside both listeners' caps: stdio, the store file, the connections
/// being refused ([`POLITE_REFUSALS`] per listener), the outgoing connections of the Matrix
/// and Gitter clients and one Gitter stream per bridged room that is open. A bridge with many rooms needs a larger limit (see the systemd unit's
/// `LimitNOFILE=`); the startup log says how many descriptors are left.
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// Connections over the cap, per listener, that may linger for [`POLITE_LINGER`] while the
/// client reads its 503; beyond them, refused connections are closed at once.
pub const POLITE_REFUSALS: usize = 32;
/// How long a refused connection may linger for its client to read the 503 and close.
pub const POLITE_LINGER: Duration = Duration::from_millis(500);
/// How long a stopping listener waits for its connections to finish their requests before
/// closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// After a failed accept (`EMFILE` when the descriptors are gone): a pause, so a full table
/// does not turn the accept loop into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Refusals and accept errors are logged at most this often, with a count.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// What a connection over the cap is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 36\r\nretry-after: 5\r\n\r\n\
Too many connections; try again soon.";

/// What one listener allows.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Time to receive a request head, on a new connection and between requests of a
    /// kept-alive one (the idle timeout).
    pub header_timeout: Duration,
    /// Time from a request head to its answer; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Largest request body; `None`: the router's own limits apply.
    pub max_body_bytes: Option<usize>,
    /// Largest request head (at least 8192); `None`: hyper's default (about 400 KiB).
    pub max_header_bytes: Option<usize>,
}

impl Limits {
    /// The public pages (`web.bind`).
    pub fn web(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_timeout: WEB_HEADER_TIMEOUT,
            request_timeout: Some(WEB_REQUEST_TIMEOUT),
            max_body_bytes: Some(WEB_MAX_BODY_BYTES),
            max_header_bytes: Some(WEB_MAX_HEADER_BYTES),
        }
    }

    /// The AS API (`appservice.bind`). No whole-request limit: a transaction is answered
    /// only once committed, and while the bridge is saturated the homeserver is meant to
    /// wait for that answer (see `MAX_QUEUED_EFFECTS` in the runtime). Its body limit is the
    /// AS router's (`appservice.max_body_bytes`).
    pub fn appservice(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_timeout: AS_HEADER_TIMEOUT,
            request_timeout: None,
            max_body_bytes: None,
            max_header_bytes: None,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stop` turns true (or its sender is
/// gone), on a task of its own.
pub fn spawn(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(serve(name, listener, router, limits, stop))
}

/// The accept loop of [`spawn`]. When stopped it closes the listening socket, lets the
/// connections finish the request they are in (at most [`SHUTDOWN_GRACE`]) and closes them.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let polite = Arc::new(Semaphore::new(POLITE_REFUSALS));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refusals = Tally::default();
    let mut accept_errors = Tally::default();
    loop {
        tokio::select! {
            biased;
            () = async { drop(stop.wait_for(|s| *s).await) } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(connection(
                            name,
                            stream,
                            router.clone(),
                            limits.clone(),
                            closing_rx.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        // Over the cap: never keep it, not even in a queue of ours.
                        match polite.clone().try_acquire_owned() {
                            Ok(slot) => {
                                tokio::spawn(refuse(stream, slot));
                            }
                            Err(_) => {
                                let _ = stream.try_write(FULL);
                                drop(stream);
                            }
                        }
                        if let Some(n) = refusals.note() {
                            tracing::warn!(
                                listener = name,
                                max_connections = limits.max_connections,
                                refused = n,
                                "listener full: new connections are refused until some close"
                            );
                        }
                    }
                },
                Err(e) => {
                    if let Some(n) = accept_errors.note() {
                        tracing::warn!(
                            listener = name,
                            error = %e,
                            failures = n,
                            "cannot accept connections (out of file descriptors?)"
                        );
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    closing.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            listener = name,
            left = connections.len(),
            "connections still busy at the stop deadline; closing them"
        );
        connections.shutdown().await;
    }
}

/// Tells a connection over the cap `503` and closes it, after letting the client read the
/// answer: our side is shut down first, and what the client sent is read and dropped until it
/// closes, at most [`POLITE_LINGER`].
async fn refuse(mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(POLITE_LINGER, async {
        stream.write_all(FULL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One connection, holding its permit (its place under the cap) until it ends.
async fn connection(
    name: &'static str,
    stream: TcpStream,
    router: Router,
    limits: Arc<Limits>,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    if let Some(max) = limits.max_header_bytes {
        builder.max_buf_size(max.max(8192));
    }
    let service =
        hyper::service::service_fn(move |request| handle(router.clone(), request, limits.clone()));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // The guard `wait_for` returns must not live across the await below (not `Send`).
        () = async { drop(closing.wait_for(|c| *c).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // hyper's errors name what happened (a header timeout, a reset), never a request's
        // contents.
        tracing::trace!(listener = name, error = %e, "connection ended");
    }
}

/// One request: the body limit, then the router within the whole-request limit.
async fn handle(
    router: Router,
    request: Request<Incoming>,
    limits: Arc<Limits>,
) -> Result<Response<Body>, Infallible> {
    let request = match limits.max_body_bytes {
        None => request.map(Body::new),
        Some(max) => {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max as u64) {
                return Ok(refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The request body is too large.",
                ));
            }
            // A body without a length (chunked) fails when read past the limit; axum's
            // extractors answer that with 413.
            request.map(|b| Body::new(http_body_util::Limited::new(b, max)))
        }
    };
    let call = router.oneshot(request);
    let response = match limits.request_timeout {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(response) => response,
            Err(_) => Ok(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "The request took too long.",
            )),
        },
    };
    Ok(response.unwrap_or_else(|never| match never {}))
}

/// A plain-text refusal after which the connection is closed (a body may be left unread).
fn refusal(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Counts events and says when to log them: the first at once, then at most every
/// [`LOG_EVERY`] with the count since the last line.
#[derive(Default)]
struct Tally {
    last: Option<Instant>,
    count: u64,
}

impl Tally {
    fn note(&mut self) -> Option<u64> {
        self.count += 1;
        let due = self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        due.then(|| {
            self.last = Some(Instant::now());
            std::mem::take(&mut self.count)
        })
    }
}

/// The process's open-file limit (`RLIMIT_NOFILE`) after [`raise_descriptor_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit found at startup.
    pub before: u64,
    /// The soft limit now in force: what the process may open.
    pub soft: u64,
    /// The hard limit (the most the soft limit may be raised to without privileges).
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit: the soft default (often 1024) is what
/// ran out in issue 13, while the hard limit is usually far higher (systemd: 524288). Where
/// the hard limit is unlimited, the largest value the kernel takes is tried (Linux refuses
/// more than `fs.nr_open`, 1048576 by default). Failing to raise it is not an error: the
/// result says what is in force.
pub fn raise_descriptor_limit() -> std::io::Result<DescriptorLimit> {
    #[cfg(unix)]
    {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = rl.rlim_cur;
        let mut soft = before;
        let candidates = [rl.rlim_max, 1 << 20, 65536];
        for target in candidates {
            if target <= soft || target > rl.rlim_max {
                continue;
            }
            let new = libc::rlimit {
                rlim_cur: target,
                rlim_max: rl.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we pass.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
                soft = target;
                break;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
        Ok(DescriptorLimit {
            before: before as u64,
            soft: soft as u64,
            hard: rl.rlim_max as u64,
        })
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::other("no RLIMIT_NOFILE on this system"))
    }
}

/// The connection caps do not fit the descriptor limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "web.max_connections ({web}) + appservice.max_connections ({appservice}) + {reserved} \
     descriptors kept for the store and outgoing connections = {needed}, more than the {limit} \
     files this process may open (RLIMIT_NOFILE; hard limit {hard}): lower web.max_connections \
     or appservice.max_connections, or raise the limit (LimitNOFILE= in the systemd unit, \
     `ulimit -n`, docker run --ulimit nofile=...)"
)]
pub struct BudgetError {
    /// `web.max_connections`.
    pub web: usize,
    /// `appservice.max_connections`.
    pub appservice: usize,
    /// [`RESERVED_DESCRIPTORS`].
    pub reserved: u64,
    /// What the three need.
    pub needed: u64,
    /// The soft limit in force.
    pub limit: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Checks that both listeners at their caps, plus [`RESERVED_DESCRIPTORS`], fit the limit;
/// returns how many descriptors are left beyond the caps for the store and outgoing
/// connections (the reserve included). With the caps fitting, a flood of the public port can
/// take at most `web` descriptors, never those the AS listener needs.
pub fn check_budget(
    limit: DescriptorLimit,
    web: usize,
    appservice: usize,
) -> Result<u64, BudgetError> {
    let needed = (web as u64)
        .saturating_add(appservice as u64)
        .saturating_add(RESERVED_DESCRIPTORS);
    if needed > limit.soft {
        return Err(BudgetError {
            web,
            appservice,
            reserved: RESERVED_DESCRIPTORS,
            needed,
            limit: limit.soft,
            hard: limit.hard,
        });
    }
    Ok(limit.soft - web as u64 - appservice as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: u64) -> DescriptorLimit {
        DescriptorLimit {
            before: 1024,
            soft,
            hard: soft,
        }
    }

    #[test]
    fn the_default_caps_fit_the_traditional_limit_of_1024() {
        assert_eq!(check_budget(limit(1024), 256, 512), Ok(256));
        assert_eq!(check_budget(limit(65536), 256, 512), Ok(65536 - 768));
    }

    #[test]
    fn caps_that_do_not_fit_are_refused_naming_both_keys() {
        let e = check_budget(limit(1024), 256, 1024).unwrap_err();
        assert_eq!(e.needed, 1536);
        let text = e.to_string();
        for word in [
            "web.max_connections (256)",
            "appservice.max_connections (1024)",
            "1024 files",
            "LimitNOFILE",
        ] {
            assert!(text.contains(word), "{word} missing: {text}");
        }
        let huge = check_budget(limit(1024), usize::MAX, usize::MAX).unwrap_err();
        assert_eq!(huge.needed, u64::MAX);
    }

    #[test]
    fn refusals_are_logged_first_at_once_then_counted() {
        let mut t = Tally::default();
        assert_eq!(t.note(), Some(1));
        assert_eq!(t.note(), None);
        assert_eq!(t.note(), None);
        t.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(t.note(), Some(3));
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_or_kept() {
        let l = raise_descriptor_limit().expect("getrlimit works");
        assert!(l.soft >= l.before && l.soft <= l.hard, "{l:?}");
    }
}
