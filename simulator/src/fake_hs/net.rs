//! The sockets under both fakes, with the faults that live below HTTP: a
//! listener that can stop accepting (connections refused) for a while and
//! bind the same address again, and connections that can be dropped without
//! an answer.
//!
//! Shared by the fake homeserver and the fake Gitter (`crate::fake_gitter`
//! uses it from here: one module for both, kept inside the fakes' own files).
//!
//! How a connection is dropped without an answer: axum handlers must return a
//! response, so every accepted socket is wrapped in a [`LinkIo`] holding a
//! kill switch, and the switch reaches the handlers as a [`Conn`] (axum's
//! `ConnectInfo`). A handler that stores what it was asked to store and then
//! trips the switch returns its response as usual, but the socket refuses
//! every read and write from then on: hyper cannot write a single byte of the
//! answer, gives up on the connection and drops the socket, so the client sees
//! its request accepted and then the connection closed with no status line.
//! Tripping also wakes a read or write that is waiting, so an idle keep-alive
//! connection closes at once too.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::request::Parts;
use axum::serve::{IncomingStream, Listener};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use crate::faults::{Budget, FaultLimit, take_budget};

// ----------------------------------------------------------------------
// the kill switch

#[derive(Debug, Default)]
struct Switch {
    tripped: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Switch {
    fn trip(&self) {
        self.tripped.store(true, Ordering::SeqCst);
        self.read.wake();
        self.write.wake();
    }

    fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by the simulator",
    )
}

/// The connection a request arrived on (axum `ConnectInfo`; handlers get it
/// through [`ThisConn`]).
#[derive(Debug, Clone)]
pub struct Conn {
    id: u64,
    switch: Arc<Switch>,
}

impl Conn {
    /// Close the connection without answering: the handler's response is
    /// never written (not even the status line).
    pub fn drop_answer(&self) {
        self.switch.trip();
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().conn.clone()
    }
}

/// Extractor: the request's [`Conn`], `None` when the router is driven
/// without [`serve`] (a test calling it directly).
#[derive(Debug, Clone)]
pub struct ThisConn(pub Option<Conn>);

impl<S: Send + Sync> FromRequestParts<S> for ThisConn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ThisConn(
            parts
                .extensions
                .get::<ConnectInfo<Conn>>()
                .map(|c| c.0.clone()),
        ))
    }
}

impl ThisConn {
    /// Drop this request's connection without an answer (see
    /// [`Conn::drop_answer`]).
    pub fn drop_answer(&self) {
        match &self.0 {
            Some(c) => c.drop_answer(),
            None => tracing::warn!("lost-answer fault on a request without a connection"),
        }
    }

    pub fn id(&self) -> Option<u64> {
        self.0.as_ref().map(Conn::id)
    }
}

/// An accepted socket that refuses all I/O once its switch is tripped.
#[derive(Debug)]
pub struct LinkIo {
    inner: TcpStream,
    conn: Conn,
    net: Arc<NetControl>,
}

impl Drop for LinkIo {
    fn drop(&mut self) {
        self.net.forget(self.conn.id);
    }
}

impl LinkIo {
    /// Register `waker` first and check after, so a trip between the check
    /// and the inner poll still wakes this task.
    fn refused(switch: &Switch, slot: &AtomicWaker, cx: &Context<'_>) -> bool {
        if switch.is_tripped() {
            return true;
        }
        slot.register(cx.waker());
        switch.is_tripped()
    }
}

impl AsyncRead for LinkIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let switch = self.conn.switch.clone();
        if Self::refused(&switch, &switch.read, cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LinkIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let switch = self.conn.switch.clone();
        if Self::refused(&switch, &switch.write, cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let switch = self.conn.switch.clone();
        if Self::refused(&switch, &switch.write, cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let switch = self.conn.switch.clone();
        if Self::refused(&switch, &switch.write, cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.switch.is_tripped() {
            // Nothing more may go out; dropping the socket closes it.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ----------------------------------------------------------------------
// the listener and its control

/// What the listener should do: accept, or stay closed until `refuse_until`.
#[derive(Debug, Clone, Copy, Default)]
struct Plan {
    refuse_until: Option<Instant>,
    /// Bumped on every change, acknowledged by the listener once applied.
    epoch: u64,
}

/// Control of one listening address: its refusal window and its live
/// connections. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct NetControl {
    plan: watch::Sender<Plan>,
    /// The last plan epoch the listener applied.
    applied: watch::Sender<u64>,
    /// Whether the listening socket is closed now (set by the listener).
    closed: AtomicBool,
    conns: Mutex<HashMap<u64, Arc<Switch>>>,
    next_id: AtomicU64,
}

impl NetControl {
    /// The control for one listener, handed to [`serve`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            plan: watch::channel(Plan::default()).0,
            applied: watch::channel(0).0,
            closed: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Switch>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, id: u64) {
        self.conns().remove(&id);
    }

    fn wrap(self: &Arc<Self>, inner: TcpStream) -> LinkIo {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let switch = Arc::new(Switch::default());
        self.conns().insert(id, switch.clone());
        LinkIo {
            inner,
            conn: Conn { id, switch },
            net: self.clone(),
        }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.conns().len()
    }

    /// Close every open connection (except `keep`) at once, without
    /// answering whatever they were waiting for. Returns how many.
    pub fn kill_connections(&self, keep: Option<u64>) -> usize {
        let conns = self.conns();
        let mut n = 0;
        for (id, s) in conns.iter() {
            if Some(*id) != keep {
                s.trip();
                n += 1;
            }
        }
        n
    }

    /// Refuse connections for `d`: close the listening socket (new connects
    /// get ECONNREFUSED) and every open connection except `keep` (the control
    /// request's own, which answers and then closes), then bind the same
    /// address again and serve the same state. Returns once the socket is
    /// closed, so a connect right after fails.
    pub async fn refuse_for(&self, d: Duration, keep: Option<u64>) {
        let mut epoch = 0;
        self.plan.send_modify(|p| {
            p.refuse_until = Some(Instant::now() + d);
            p.epoch += 1;
            epoch = p.epoch;
        });
        self.kill_connections(keep);
        self.wait_applied(epoch).await;
        // A client may have connected between the first sweep and the close.
        self.kill_connections(keep);
    }

    /// Accept again now (the end of a refusal, from clear-faults).
    pub fn clear(&self) {
        self.plan.send_modify(|p| {
            if p.refuse_until.take().is_some() {
                p.epoch += 1;
            }
        });
    }

    /// Whether connections are refused now: the listening socket is closed
    /// (it stays so for a moment after a clear, until it is bound again).
    pub fn refusing(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn wait_applied(&self, epoch: u64) {
        let mut rx = self.applied.subscribe();
        // The listener applies a plan as soon as its task runs; the bound is
        // for a stopped server, which has nothing to close.
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|e| *e >= epoch)).await;
    }
}

/// The listener handed to `axum::serve`: accepts from its socket, or holds it
/// closed during a refusal window and binds the same address afterwards.
#[derive(Debug)]
pub struct SimListener {
    addr: SocketAddr,
    socket: Option<TcpListener>,
    net: Arc<NetControl>,
    plan: watch::Receiver<Plan>,
}

impl SimListener {
    async fn bind_again(&mut self) {
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    tracing::debug!(addr = %self.addr, "fake server: accepting again");
                    self.socket = Some(l);
                    self.net.closed.store(false, Ordering::SeqCst);
                    return;
                }
                // Something else may hold the port for a moment; try again
                // rather than serving nothing for ever.
                Err(e) => {
                    tracing::warn!(addr = %self.addr, error = %e, "fake server: cannot bind again yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Listener for SimListener {
    type Io = LinkIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LinkIo, SocketAddr) {
        loop {
            let plan = *self.plan.borrow_and_update();
            if let Some(until) = plan.refuse_until.filter(|u| *u > Instant::now()) {
                if self.socket.take().is_some() {
                    self.net.closed.store(true, Ordering::SeqCst);
                    tracing::debug!(addr = %self.addr, "fake server: refusing connections");
                }
                self.net.applied.send_replace(plan.epoch);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = self.plan.changed() => {}
                }
                continue;
            }
            if self.socket.is_none() {
                self.bind_again().await;
            }
            self.net.applied.send_replace(plan.epoch);
            let Some(socket) = &self.socket else { continue };
            tokio::select! {
                r = socket.accept() => match r {
                    Ok((stream, remote)) => return (self.net.wrap(stream), remote),
                    Err(e) => accept_error(e).await,
                },
                _ = self.plan.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// As axum's own listener does: a client giving up during the handshake is
/// nothing; anything else (out of file descriptors) waits a moment.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "fake server: accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serve `app` on `socket` under `net` until `stop` resolves. On stop, open
/// connections are closed at once (streams and stuck answers would keep a
/// graceful stop waiting for ever).
pub fn serve(
    socket: TcpListener,
    app: Router,
    net: Arc<NetControl>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let addr = socket.local_addr()?;
    let listener = SimListener {
        addr,
        socket: Some(socket),
        net: net.clone(),
        plan: net.plan.subscribe(),
    };
    let killer = net.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
            .with_graceful_shutdown(async move {
                stop.await;
                killer.kill_connections(None);
            });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "fake server stopped");
        }
    });
    Ok(task)
}
