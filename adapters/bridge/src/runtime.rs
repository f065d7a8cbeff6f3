//! The driver: one task owns the core and feeds it every input, commits each group of steps
//! before acting on them, and executes effects in order per lane.
//!
//! ```text
//!  AS listener ──txn──┐
//!  stream readers ────┤            ┌── commit (redb, blocking pool) ── ack txns / answer pages
//!  login pages ───────┼─> driver ──┤
//!  effect results ────┤  (core)    └── effects ─> lanes ─> Matrix / Gitter / stream tasks
//!  timer ─────────────┘
//! ```
//!
//! Inputs that are ready together are handled one by one and committed in one store
//! transaction (group commit); only then are AS transactions answered 200, pages answered and
//! effects started. A crash before the commit loses nothing the homeserver or Gitter was told
//! about; a crash after it leaves the effects in the outbox, and [`Input::Startup`] re-issues
//! them on the next start (Gitter sends reconciled first).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gitter_bridge_core::{
    Action, Bridge, ChangeSet, Effect, EffectId, EffectOutput, EffectResult, Failure, FailureKind,
    GitterRoomId, Input, Lane, RequestId, StoreCall, StreamCall, Timestamp, WebReply,
};
use gitter_bridge_gitter::{
    FayeConfig, FayeManager, GitterClient, GitterConfig, OAuthConfig, RateLimitConfig, StreamEvent,
    StreamManager, Transport,
};
use gitter_bridge_matrix::{
    AsServer, AsServerConfig, AsTransaction, ClientConfig, MatrixClient, MatrixError, PingError,
    TransactionSource, transaction_channel, user_namespace_regexes,
};
use gitter_bridge_store::{RedbStore, Store, StoreError};
use rand::TryRngCore;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use url::Url;

use crate::config::{Config, ConfigError};
use crate::lanes::Lanes;
use crate::listen;
use crate::metrics::{Direction, Metrics};
use crate::ready::{Peer, Reachability};
use crate::web::{self, MetricsState, WebKind, WebRequest, WebState};

/// Longest time the download of one image of a Gitter message may take.
const MEDIA_DOWNLOAD_TIME_LIMIT: Duration = Duration::from_secs(30);
/// Largest picture downloaded from the web (or `web.media_max_bytes`, when smaller).
const MEDIA_DOWNLOAD_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Inputs handled together and committed in one store transaction, at most.
const MAX_BATCH: usize = 256;
/// Effects waiting in lanes at most before the driver stops taking new inputs (AS
/// transactions, stream messages, pages): the homeserver then waits for its answer and
/// retries, a stream stops being read (TCP backpressure, and the catch-up from the cursor
/// after a reconnect covers anything Gitter drops), so memory stays bounded however long
/// the other side is down. Effect results and timers are still taken: they drain the lanes.
const MAX_QUEUED_EFFECTS: usize = 10_000;
/// How long a graceful stop waits for running effects before leaving them in the outbox.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the change sets of quiet batches (nothing to acknowledge, answer, hold or start:
/// the completions of sends, a stream's echo of our own message) may wait for the next
/// commit. They are committed with the next batch that acts, or when this has passed: a
/// crash before then replays the effects they completed, which is safe (Matrix sends carry
/// their transaction id, Gitter sends are reconciled before they post again; see
/// `docs/behaviour.md`). Each such batch no longer costs a commit of its own (a commit with
/// its fsync was about half of the bridge's CPU time under load).
const DEFER_QUIET: Duration = Duration::from_millis(100);
/// Quiet change sets waiting at most before they are committed anyway.
const MAX_DEFERRED: usize = 1024;

/// Why the bridge could not start. Each message says what the operator should fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or read.
    #[error(
        "store unreadable: {0} (check store.path, its permissions, and that no other bridge uses it)"
    )]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {key} = {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The config key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A URL or template in the configuration cannot be used.
    #[error("config key `{key}`: {problem}")]
    Config {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The homeserver could not be reached or refused the bridge.
    #[error("homeserver check failed: {0}")]
    Homeserver(String),
    /// The homeserver cannot reach the bridge's AS listener.
    #[error("the homeserver cannot reach the bridge: {0}")]
    Ping(#[from] PingError),
    /// A bug or a crash inside the bridge while starting.
    #[error("the bridge failed while starting: {0}")]
    Internal(String),
}

/// Why a running bridge stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A commit failed: the bridge stops rather than act on state it could not save.
    #[error("the store failed: {0}; stopped so that nothing unsaved is acted on")]
    Store(String),
    /// The homeserver rejected the as_token (or the namespace) in the middle of the run.
    #[error(
        "the homeserver refused the bridge's credentials: {0}; check appservice.as_token \
         against the registration file"
    )]
    Credentials(String),
    /// The driver task itself died.
    #[error("the bridge's driver failed: {0}")]
    Driver(String),
}

/// The listeners to serve on (bound by the caller, so tests and the simulator can use port 0).
#[derive(Debug)]
pub struct Listeners {
    /// The AS API listener (`appservice.bind`).
    pub appservice: TcpListener,
    /// The public pages listener (`web.bind`).
    pub web: TcpListener,
}

impl Listeners {
    /// Binds the addresses of the configuration.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let bind = |key, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { key, addr, source })
        };
        Ok(Listeners {
            appservice: bind("appservice.bind", config.as_bind).await?,
            web: bind("web.bind", config.web_bind).await?,
        })
    }
}

/// A running bridge.
#[derive(Debug)]
pub struct Running {
    /// Where the AS API listens.
    pub as_addr: SocketAddr,
    /// Where the public pages listen.
    pub web_addr: SocketAddr,
    stop: watch::Sender<bool>,
    driver: JoinHandle<Result<(), RunError>>,
    servers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks the bridge to stop gracefully (what SIGTERM does).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops gracefully: stop accepting requests, let running effects finish for a while,
    /// commit their results, close the streams. Whatever is left stays in the outbox.
    pub async fn stop(self) -> Result<(), RunError> {
        self.request_stop();
        self.join().await
    }

    /// Waits until the bridge stops (after [`Running::request_stop`] or a fatal error).
    pub async fn join(self) -> Result<(), RunError> {
        let result = match self.driver.await {
            Ok(r) => r,
            Err(e) => Err(RunError::Driver(e.to_string())),
        };
        // The driver is gone: stop the listeners whatever the reason.
        self.stop.send_replace(true);
        for server in self.servers {
            let _ = server.await;
        }
        result
    }

    /// Whether the driver has ended (a fatal error, or a stop).
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// Kills the bridge as a crash would: nothing more is committed, nothing is finished. The
    /// listeners close their connections so the next instance can take the ports.
    pub async fn kill(self) {
        self.driver.abort();
        let _ = self.driver.await;
        self.stop.send_replace(true);
        for server in self.servers {
            let _ = server.await;
        }
    }
}

/// Binds the configured addresses and starts the bridge.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let listeners = Listeners::bind(&config).await?;
    start_on(config, listeners).await
}

fn parse_url(key: &'static str, value: &str) -> Result<Url, StartError> {
    Url::parse(value).map_err(|e| StartError::Config {
        key,
        problem: format!("`{value}` is not a URL: {e}"),
    })
}

/// Starts the bridge on listeners the caller bound: opens the store, checks the homeserver,
/// serves the AS API and the pages, checks that the homeserver reaches us, then replays the
/// outbox and reopens the streams.
pub async fn start_on(config: Config, listeners: Listeners) -> Result<Running, StartError> {
    if let Err(ConfigError::Invalid { key, problem }) = config.check_tls() {
        return Err(StartError::Config { key, problem });
    }
    let as_addr = listeners
        .appservice
        .local_addr()
        .map_err(|source| StartError::Bind {
            key: "appservice.bind",
            addr: config.as_bind,
            source,
        })?;
    let web_addr = listeners
        .web
        .local_addr()
        .map_err(|source| StartError::Bind {
            key: "web.bind",
            addr: config.web_bind,
            source,
        })?;

    // The store first: nothing else matters if the state cannot be read.
    let (path, key) = (config.store_path.clone(), config.token_key.clone());
    let newest = config.core.hot_mappings_per_portal_at_start;
    let (store, snapshot) = tokio::task::spawn_blocking(move || {
        let store = RedbStore::open_with_key(&path, key.as_ref())?;
        // The hot set of the mappings only: a start costs the same however long the
        // history (issue 14); the rest stay on disk.
        let snapshot = store.load_hot(newest)?;
        Ok::<_, StoreError>((store, snapshot))
    })
    .await
    .map_err(|e| StartError::Internal(format!("the store task failed: {e}")))??;
    tracing::info!(
        path = %config.store_path.display(),
        users = snapshot.users.len(),
        portals = snapshot.portals.len(),
        outbox = snapshot.outbox.len(),
        mappings_loaded = snapshot.messages.len(),
        tokens_encrypted = store.tokens_encrypted(),
        rows_encrypted_now = store.sealed_on_open(),
        "store opened"
    );

    let mut client_config = ClientConfig::new(
        parse_url("homeserver.url", &config.homeserver_url)?,
        config.as_token.clone(),
        config.core.bot.clone(),
        config.appservice_id.clone(),
    );
    // The images of Gitter messages, downloaded as a stranger would (adapters/matrix fetch).
    client_config.fetch = Some(gitter_bridge_matrix::fetch::FetchConfig {
        max_bytes: config.core.media_max_bytes.min(MEDIA_DOWNLOAD_MAX_BYTES),
        time_limit: MEDIA_DOWNLOAD_TIME_LIMIT,
        allow_private: config.media_allow_private_addresses,
    });
    let matrix =
        MatrixClient::new(client_config).map_err(|e| StartError::Homeserver(e.to_string()))?;
    let versions = wait_for_homeserver(&matrix, config.startup_wait)
        .await
        .map_err(|e| {
        StartError::Homeserver(match e {
            MatrixError::BadAsToken { .. } => format!(
                "{e}: the homeserver does not know appservice.as_token; make it equal as_token in \
                 the registration file and make sure the homeserver loads that file"
            ),
            e => format!(
                "{e}: check that homeserver.url ({}) is right and the homeserver is running",
                config.homeserver_url
            ),
        })
    })?;
    tracing::info!(
        versions = %versions.versions.join(" "),
        "homeserver reachable, as_token accepted"
    );
    apply_bot_profile(&matrix, &config).await;

    let gitter = GitterClient::new(gitter_config(&config)?)
        .map_err(|e| StartError::Homeserver(format!("Gitter client: {e}")))?;

    let metrics = config.metrics.then(|| Arc::new(Metrics::new()));
    let (stop, stop_rx) = watch::channel(false);

    // The AS API.
    let [bot_regex, ghost_regex] = user_namespace_regexes(
        &config.domain,
        &config.bot_localpart,
        &config.core.ghost_template,
    )
    .map_err(|e| StartError::Config {
        key: "appservice.ghost_template",
        problem: e.to_string(),
    })?;
    let user_namespace = [bot_regex, ghost_regex]
        .iter()
        .map(|r| regex::Regex::new(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Config {
            key: "appservice.ghost_template",
            problem: e.to_string(),
        })?;
    let (txn_sink, txn_source) = transaction_channel(4);
    let as_router = AsServer::new(
        AsServerConfig {
            hs_token: config.hs_token.clone(),
            bot: config.core.bot.clone(),
            user_namespace,
            body_limit: config.max_body_bytes,
        },
        txn_sink,
    )
    .with_client(matrix.clone())
    .router();
    // Metrics are operational data: served on the private AS listener, not the public one.
    let as_router = match &metrics {
        Some(m) => {
            let limiter_client = gitter.clone();
            as_router.merge(web::metrics_router(MetricsState {
                metrics: m.clone(),
                rate_limit_waits: Arc::new(move || limiter_client.limiter().waits()),
            }))
        }
        None => as_router,
    };

    // The public pages.
    let (web_tx, web_rx) = mpsc::channel(64);
    let reach = Arc::new(Reachability::default());
    let web_router = web::router(WebState {
        requests: web_tx,
        bot: config.core.bot.to_string(),
        answer_timeout: Duration::from_secs(60),
        secure_cookies: config.core.public_url.starts_with("https://"),
        cookie_max_age: Duration::from_millis(config.core.login_link_lifetime_ms),
        reach: reach.clone(),
    });
    // Matrix files linked from Gitter (the core signs the links with the same key).
    let web_router = match &config.core.media_key {
        Some(key) => web_router.merge(crate::media::router(crate::media::MediaPage {
            key: key.clone(),
            max_bytes: config.core.media_max_bytes,
            matrix: matrix.clone(),
            downloads: Arc::new(tokio::sync::Semaphore::new(crate::media::MAX_DOWNLOADS)),
        })),
        None => web_router,
    };

    // Capped, timed listeners: idle strangers on the public port once starved the AS one.
    let servers = vec![
        listen::spawn(
            "appservice",
            listeners.appservice,
            as_router,
            listen::Limits::appservice(config.as_max_connections),
            stop_rx.clone(),
        ),
        listen::spawn(
            "web",
            listeners.web,
            web_router,
            listen::Limits::web(config.web_max_connections),
            stop_rx.clone(),
        ),
    ];
    tracing::info!(%as_addr, %web_addr, "listening");

    // Now that we listen, the homeserver must be able to reach us.
    match matrix.ping("gitter-bridge-startup").await {
        Ok(rtt) => tracing::info!(
            rtt_ms = rtt.as_millis() as u64,
            "the homeserver reaches the AS listener"
        ),
        Err(PingError::Unsupported) => {
            tracing::warn!("the homeserver has no appservice ping (Matrix < v1.7); not checked")
        }
        Err(e) => {
            stop.send_replace(true);
            for s in servers {
                let _ = s.await;
            }
            return Err(StartError::Ping(e));
        }
    }

    let (stream_tx, stream_rx) = mpsc::channel(1024);
    let streams = match &config.gitter_faye_url {
        Some(url) => Transport::Faye(FayeManager::new(
            &gitter,
            FayeConfig::new(parse_url("gitter.faye_url", url)?),
            stream_tx,
        )),
        None => Transport::Http(StreamManager::new(gitter.clone(), stream_tx)),
    };
    // 256 bits from the OS for the core's generator: login links and OAuth states are only
    // as unguessable as its seed (a u64 seed once gave every link of a run 64 bits).
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| StartError::Internal(format!("no randomness from the OS: {e}")))?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(Box::new(store)));
    let driver = Driver {
        bridge: Bridge::restore(config.core.clone(), seed, snapshot),
        store: store.clone(),
        exec: Executor {
            matrix,
            gitter,
            streams: Arc::new(Mutex::new(streams)),
            store,
        },
        lanes: Lanes::default(),
        tasks: JoinSet::new(),
        in_flight: HashMap::new(),
        web_pending: HashMap::new(),
        // Request ids start at this boot's clock (ms << 16): an effect that names a browser
        // request of an earlier run can never answer a browser of this one.
        next_request: now().0 << 16,
        timer: None,
        connected: BTreeSet::new(),
        saturated: false,
        batch_received: Instant::now(),
        metrics,
        reach,
        deferred: Vec::new(),
        deferred_since: None,
        population_counted: None,
    };
    let driver = tokio::spawn(
        driver
            .run(txn_source, stream_rx, web_rx, stop_rx)
            .instrument(tracing::info_span!("driver")),
    );
    Ok(Running {
        as_addr,
        web_addr,
        stop,
        driver,
        servers,
    })
}

/// Checks the homeserver, retrying for up to `wait` while it is unreachable or failing: a
/// bridge started together with its homeserver (one systemd target, one compose file) must not
/// lose the race. A refusal (a bad as_token, a wrong sender) is final at once.
/// The info line of a turn in one user's use of the bridge, with the ids that let an operator
/// follow that user (grep for the Matrix id).
fn log_happening(h: &gitter_bridge_core::Happening) {
    use gitter_bridge_core::Happening as H;
    match h {
        H::LoggedIn {
            user,
            gitter_user,
            username,
        } => tracing::info!(%user, %gitter_user, %username, "logged in to Gitter"),
        H::LoggedOut { user } => tracing::info!(%user, "logged out of Gitter"),
        H::LoginRevoked { user } => {
            tracing::info!(%user, "Gitter refused the token: login no longer used")
        }
        H::PortalCreated {
            owner,
            gitter_room,
            room,
        } => tracing::info!(%owner, %gitter_room, %room, "portal created"),
        H::PortalClosed { owner, gitter_room } => {
            tracing::info!(%owner, %gitter_room, "portal closed")
        }
    }
}

/// Gives the bot the display name and avatar of the config (`appservice.bot_displayname`,
/// `appservice.bot_avatar`), only where the homeserver has something else: a change is a
/// membership event in every room the bot is in. A failure is only logged: the bot works
/// without its profile, and the next start tries again.
async fn apply_bot_profile(matrix: &MatrixClient, config: &Config) {
    if config.bot_displayname.is_none() && config.bot_avatar.is_none() {
        return;
    }
    let bot = &config.core.bot;
    let (name, avatar) = match matrix.profile(bot).await {
        Ok(profile) => profile,
        // A bot that never had a profile is 404 on some homeservers: set both.
        Err(MatrixError::Refused { status: 404, .. }) => (None, None),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the bot's profile; left as it is");
            return;
        }
    };
    if let Some(want) = &config.bot_displayname
        && name.as_ref() != Some(want)
    {
        match matrix.set_display_name(bot, want).await {
            Ok(()) => tracing::info!(bot = %bot, name = %want, "bot display name set"),
            Err(e) => tracing::warn!(error = %e, "could not set the bot's display name"),
        }
    }
    if let Some(want) = &config.bot_avatar
        && avatar.as_ref() != Some(want)
    {
        match matrix.set_avatar_url(bot, want).await {
            Ok(()) => tracing::info!(bot = %bot, avatar = %want, "bot avatar set"),
            Err(e) => tracing::warn!(error = %e, "could not set the bot's avatar"),
        }
    }
}

async fn wait_for_homeserver(
    matrix: &MatrixClient,
    wait: Duration,
) -> Result<gitter_bridge_matrix::Versions, MatrixError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match matrix.check_homeserver().await {
            Err(e @ (MatrixError::Network { .. } | MatrixError::Server { .. }))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "the homeserver is not ready yet; trying again");
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            }
            other => return other,
        }
    }
}

fn gitter_config(config: &Config) -> Result<GitterConfig, StartError> {
    let redirect = format!("{}/oauth/callback", config.core.public_url);
    let mut g = GitterConfig::new(
        parse_url("gitter.api_url", &config.gitter_api_url)?,
        parse_url("gitter.stream_url", &config.gitter_stream_url)?,
        OAuthConfig {
            authorize_url: parse_url(
                "gitter.oauth_authorize_url",
                &config.core.oauth_authorize_url,
            )?,
            token_url: parse_url("gitter.oauth_token_url", &config.oauth_token_url)?,
            client_id: config.core.oauth_client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: parse_url("web.public_url", &redirect)?,
        },
    );
    g.rate_limit = RateLimitConfig {
        requests: config.requests_per_minute,
        window: Duration::from_secs(60),
    };
    g.stream.idle_timeout = Duration::from_secs(config.stream_timeout_secs);
    g.connect_timeout = Some(config.gitter_connect_timeout);
    g.request_timeout = Some(config.gitter_request_timeout);
    Ok(g)
}

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp(ms)
}

/// How an effect ended.
// Nearly every outcome is `Done`: boxing it would add an allocation per effect to save
// space in the rare `Fatal`.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// A result for the core.
    Done(EffectResult),
    /// The bridge cannot go on (the homeserver refuses our credentials).
    Fatal(String),
}

/// Runs effects against the adapters. Cheap to clone into each effect task.
#[derive(Clone)]
struct Executor {
    matrix: MatrixClient,
    gitter: GitterClient,
    streams: Arc<Mutex<Transport>>,
    store: SharedStore,
}

impl Executor {
    async fn run(self, effect: Effect) -> Outcome {
        let action = &effect.action;
        match action {
            Action::Stream(call) => {
                let mut streams = self.streams.lock().await;
                Outcome::Done(streams.execute(call).await)
            }
            Action::OAuth { .. } | Action::Gitter { .. } => {
                Outcome::Done(self.gitter.execute(action).await)
            }
            Action::Store(StoreCall::PruneMappings {
                older_than,
                resume,
                batch,
            }) => {
                let (store, older_than, resume, batch) =
                    (self.store.clone(), *older_than, resume.clone(), *batch);
                let done = tokio::task::spawn_blocking(move || match store.lock() {
                    Ok(mut store) => store
                        .prune_mappings(older_than, resume, batch)
                        .map_err(|e| e.to_string()),
                    Err(_) => Err("the store is gone after an earlier failure".to_owned()),
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
                Outcome::Done(match done {
                    Ok(p) => {
                        tracing::info!(
                            removed = p.removed,
                            more = p.resume.is_some(),
                            "pruned old mappings"
                        );
                        Ok(EffectOutput::Pruned {
                            removed: p.removed,
                            resume: p.resume,
                        })
                    }
                    Err(e) => Err(gitter_bridge_core::Failure::new(
                        gitter_bridge_core::FailureKind::Rejected,
                        e,
                    )),
                })
            }
            Action::Store(call) => Outcome::Done(self.look_up(call.clone()).await),
            Action::Matrix(_) => match self.matrix.try_execute(effect.id, action).await {
                Ok(output) => Outcome::Done(Ok(output)),
                Err(e) if e.is_fatal() => Outcome::Fatal(e.to_string()),
                Err(e) => {
                    tracing::warn!(error = %e, "Matrix effect failed");
                    Outcome::Done(Err(e.to_failure()))
                }
            },
        }
    }
}

impl Executor {
    /// A store lookup, off the async threads (redb reads block).
    async fn look_up(&self, call: StoreCall) -> EffectResult {
        let store = self.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let store = store
                .lock()
                .map_err(|_| "the store is gone after an earlier failure".to_owned())?;
            match &call {
                StoreCall::MappingByGitterId {
                    owner,
                    room,
                    gitter_id,
                } => store.mapping_by_gitter_id(owner, room, gitter_id),
                StoreCall::MappingByEvent {
                    owner,
                    room,
                    event_id,
                } => store.mapping_by_event(owner, room, event_id),
                StoreCall::PruneMappings { .. } => {
                    return Err("pruning is not a lookup".to_owned());
                }
            }
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match found {
            Ok(mapping) => Ok(EffectOutput::Mapping(mapping)),
            // The store failing a read is the bridge's own fault and will not pass by trying
            // again at once; the asker decides what to do without the mapping.
            Err(e) => Err(Failure::new(FailureKind::Rejected, e)),
        }
    }
}

/// What the driver knows of a running effect.
struct InFlight {
    id: EffectId,
    lane: Lane,
    action: &'static str,
    direction: Option<Direction>,
    /// Who it talks to, for `/ready`.
    peer: Option<Peer>,
    /// The room whose stream a `StreamCall::Close` closes: an aborted reader sends no
    /// `Disconnected`, so the open-streams gauge learns it here.
    closes: Option<GitterRoomId>,
    queued_at: Instant,
}

/// One input waiting for the core, with what to do once its step is committed.
enum Item {
    /// The quiet change sets have waited long enough ([`DEFER_QUIET`]).
    Flush,
    Txn(AsTransaction),
    Stream(StreamEvent),
    Web(WebRequest),
    Done(tokio::task::Id, Result<Outcome, String>),
    Timer,
}

/// The store, shared by the driver's commits and the store's own effects (pruning), which
/// take turns on the blocking pool (redb has one writer at a time anyway).
type SharedStore = Arc<std::sync::Mutex<Box<dyn Store + Send>>>;

struct Driver {
    bridge: Bridge,
    store: SharedStore,
    exec: Executor,
    lanes: Lanes,
    tasks: JoinSet<Outcome>,
    in_flight: HashMap<tokio::task::Id, InFlight>,
    web_pending: HashMap<RequestId, oneshot::Sender<WebReply>>,
    next_request: u64,
    timer: Option<Timestamp>,
    connected: BTreeSet<GitterRoomId>,
    /// New inputs are not taken while too many effects wait ([`MAX_QUEUED_EFFECTS`]).
    saturated: bool,
    /// When the first input of the batch being handled arrived: the bridging latency of the
    /// effects it leads to counts from here (commit and lane waits included).
    batch_received: Instant,
    metrics: Option<Arc<Metrics>>,
    /// What `/ready` reports.
    reach: Arc<Reachability>,
    /// Change sets of quiet batches not committed yet, oldest first, and when the first of
    /// them came ([`DEFER_QUIET`]).
    deferred: Vec<ChangeSet>,
    deferred_since: Option<tokio::time::Instant>,
    /// When the population gauges were last counted (at most once a second: counting the
    /// logged-in users walks every user).
    population_counted: Option<Instant>,
}

/// What a committed batch must still do.
#[derive(Default)]
struct Pending {
    /// Effects whose results this batch carries: their lanes are freed (or held, for those
    /// the core will try again) after the steps, before the new effects are queued.
    finished: Vec<(EffectId, Lane)>,
    holds: BTreeSet<EffectId>,
    acks: Vec<(String, oneshot::Sender<Result<(), String>>)>,
    replies: Vec<(RequestId, WebReply)>,
    effects: Vec<Effect>,
    fatal: Option<String>,
}

impl Driver {
    async fn run(
        mut self,
        mut txns: TransactionSource,
        mut stream_events: mpsc::Receiver<StreamEvent>,
        mut web: mpsc::Receiver<WebRequest>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        // The startup step changes state too (stale stream and catch-up rows leave the
        // outbox, readers are chosen, new effects enter it): commit it like any other.
        self.handle_inputs(vec![Input::Startup], true).await?;
        tracing::info!("bridge running");

        loop {
            let open = self.lanes.queued() < MAX_QUEUED_EFFECTS;
            if open == self.saturated {
                self.saturated = !open;
                if open {
                    tracing::info!("effects drained: taking new inputs again");
                } else {
                    tracing::warn!(
                        queued = self.lanes.queued(),
                        "too many effects waiting: new inputs wait until they drain"
                    );
                }
            }
            let first = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    done_item(done)
                }
                Some(txn) = txns.recv(), if open => Item::Txn(txn),
                Some(event) = stream_events.recv(), if open => Item::Stream(event),
                Some(request) = web.recv(), if open => Item::Web(request),
                _ = sleep_until(self.timer), if self.timer.is_some() => Item::Timer,
                _ = tokio::time::sleep_until(
                    self.deferred_since.unwrap_or_else(tokio::time::Instant::now) + DEFER_QUIET
                ), if self.deferred_since.is_some() => Item::Flush,
            };
            if let Item::Flush = first {
                self.flush_deferred().await?;
                continue;
            }
            self.batch_received = Instant::now();
            let mut items = vec![first];
            while items.len() < MAX_BATCH {
                if let Some(done) = self.tasks.try_join_next_with_id() {
                    items.push(done_item(done));
                } else if !open {
                    break;
                } else if let Ok(txn) = txns.try_recv() {
                    items.push(Item::Txn(txn));
                } else if let Ok(event) = stream_events.try_recv() {
                    items.push(Item::Stream(event));
                } else if let Ok(request) = web.try_recv() {
                    items.push(Item::Web(request));
                } else {
                    break;
                }
            }
            self.handle_batch(items).await?;
        }

        self.flush_deferred().await?;
        // Graceful stop: no new input from the listeners; running effects may finish.
        tracing::info!(
            running = self.tasks.len(),
            "stopping: waiting for running effects"
        );
        txns.close();
        web.close();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => {
                    let mut items = vec![done_item(done)];
                    while let Some(done) = self.tasks.try_join_next_with_id() {
                        items.push(done_item(done));
                    }
                    self.handle_batch_stopping(items).await?;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = self.tasks.len(),
                        "effects still running at the stop deadline; they stay in the outbox"
                    );
                    break;
                }
            }
        }
        self.flush_deferred().await?;
        self.tasks.shutdown().await;
        self.exec.streams.lock().await.close_all().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// One core step; collects what to do after the commit.
    fn step(&mut self, input: Input, pending: &mut Pending) -> ChangeSet {
        let out = self.bridge.handle(now(), input);
        for w in &out.warnings {
            tracing::warn!(problem = %w, "bridge warning");
        }
        out.happenings.iter().for_each(log_happening);
        pending.holds.extend(out.holds);
        pending.effects.extend(out.effects);
        pending.replies.extend(out.replies);
        self.timer = out.next_timer;
        out.changes
    }

    /// Turns an item into a core input, recording what the commit must be followed by.
    fn input_of(&mut self, item: Item, pending: &mut Pending) -> Option<Input> {
        match item {
            Item::Txn(txn) => {
                let span_txn = txn.txn_id.to_string();
                tracing::debug!(txn = %span_txn, events = txn.events.len(), "AS transaction");
                if let Some(m) = &self.metrics {
                    m.transaction(txn.events.len());
                }
                let (input, ack) = txn.into_input();
                pending.acks.push((span_txn, ack));
                Some(input)
            }
            Item::Stream(event) => {
                match &event {
                    StreamEvent::Connected { room } => {
                        self.connected.insert(room.clone());
                        self.reach.record(Peer::Gitter, None, now().0);
                    }
                    StreamEvent::Disconnected {
                        room,
                        reason,
                        detail,
                        reconnecting,
                    } => {
                        tracing::info!(%room, %reason, %detail, reconnecting, "Gitter stream ended");
                        self.connected.remove(room);
                        self.reach.record(Peer::Gitter, Some(*reason), now().0);
                    }
                    StreamEvent::Message { .. } | StreamEvent::Realtime(_) => {
                        self.reach.record(Peer::Gitter, None, now().0);
                    }
                }
                if let Some(m) = &self.metrics {
                    m.open_streams(self.connected.len());
                }
                Some(event.into())
            }
            Item::Web(request) => {
                // Pages whose visitor gave up (the page timed out) wait for no answer.
                self.web_pending.retain(|_, reply| !reply.is_closed());
                self.next_request += 1;
                let id = RequestId(self.next_request);
                self.web_pending.insert(id, request.reply);
                Some(match request.kind {
                    WebKind::LoginLink { token } => Input::LoginLinkOpened { request: id, token },
                    WebKind::LoginConfirm { token } => {
                        Input::LoginLinkConfirmed { request: id, token }
                    }
                    WebKind::OAuthCallback {
                        code,
                        state,
                        error,
                        browser,
                    } => Input::OAuthCallback {
                        request: id,
                        code,
                        state,
                        error,
                        browser,
                    },
                })
            }
            Item::Timer => Some(Input::Timer),
            Item::Flush => None,
            Item::Done(task, outcome) => {
                let flight = self.in_flight.remove(&task)?;
                pending.finished.push((flight.id, flight.lane.clone()));
                if let Some(room) = &flight.closes
                    && self.connected.remove(room)
                    && let Some(m) = &self.metrics
                {
                    m.open_streams(self.connected.len());
                }
                let result = match outcome {
                    Ok(Outcome::Done(result)) => result,
                    Ok(Outcome::Fatal(message)) => {
                        pending.fatal.get_or_insert(message);
                        // The effect stays in the outbox for the next start.
                        return None;
                    }
                    Err(panic) => Err(Failure::new(
                        FailureKind::Transient,
                        format!("the adapter failed: {panic}"),
                    )),
                };
                if let Some(m) = &self.metrics {
                    match &result {
                        Ok(_) => {
                            if let Some(d) = flight.direction {
                                m.bridged(d, flight.queued_at.elapsed().as_secs_f64());
                            }
                        }
                        Err(f) => m.effect_failed(flight.action, f.kind.as_str()),
                    }
                }
                if let Some(peer) = flight.peer {
                    let failure = result.as_ref().err().map(|f| f.kind);
                    self.reach.record(peer, failure, now().0);
                }
                if let Err(f) = &result {
                    tracing::info!(effect = %flight.id, action = flight.action, kind = %f.kind, message = %f.message, "effect failed");
                }
                Some(Input::EffectDone {
                    id: flight.id,
                    result,
                })
            }
        }
    }

    async fn handle_batch(&mut self, items: Vec<Item>) -> Result<(), RunError> {
        self.handle_items(items, true).await
    }

    /// While stopping: record results; effects the core emits now are not started (they are
    /// in the committed outbox; the next start runs them).
    async fn handle_batch_stopping(&mut self, items: Vec<Item>) -> Result<(), RunError> {
        self.handle_items(items, false).await
    }

    async fn handle_items(&mut self, items: Vec<Item>, act: bool) -> Result<(), RunError> {
        let mut pending = Pending::default();
        let inputs: Vec<Input> = items
            .into_iter()
            .filter_map(|item| self.input_of(item, &mut pending))
            .collect();
        self.steps(inputs, pending, act).await
    }

    async fn handle_inputs(&mut self, inputs: Vec<Input>, act: bool) -> Result<(), RunError> {
        self.steps(inputs, Pending::default(), act).await
    }

    /// Runs the inputs through the core one by one and finishes them as one batch.
    async fn steps(
        &mut self,
        inputs: Vec<Input>,
        mut pending: Pending,
        act: bool,
    ) -> Result<(), RunError> {
        let mut sets = Vec::new();
        for input in inputs {
            let changes = self.step(input, &mut pending);
            if !changes.is_empty() {
                sets.push(changes);
            }
        }
        self.finish_batch(sets, pending, act).await
    }

    /// Commit, then acknowledge, answer and (unless stopping) act.
    async fn finish_batch(
        &mut self,
        sets: Vec<ChangeSet>,
        pending: Pending,
        act: bool,
    ) -> Result<(), RunError> {
        let quiet = act
            && pending.acks.is_empty()
            && pending.replies.is_empty()
            && pending.effects.is_empty()
            && pending.holds.is_empty()
            && pending.fatal.is_none();
        let sets = if quiet && self.deferred.len() + sets.len() <= MAX_DEFERRED {
            if !sets.is_empty() {
                self.deferred.extend(sets);
                self.deferred_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
            Vec::new()
        } else {
            // In order: what waited first, then this batch.
            self.deferred_since = None;
            let mut all = std::mem::take(&mut self.deferred);
            all.extend(sets);
            all
        };
        if !sets.is_empty()
            && let Err(e) = self.commit(sets).await
        {
            for (_, ack) in pending.acks {
                let _ = ack.send(Err("the bridge could not save the transaction".to_owned()));
            }
            return Err(RunError::Store(e));
        }
        for (txn, ack) in pending.acks {
            if ack.send(Ok(())).is_err() {
                tracing::debug!(%txn, "the homeserver went away before the answer");
            }
        }
        for (request, reply) in pending.replies {
            if let Some(tx) = self.web_pending.remove(&request) {
                let _ = tx.send(reply);
            }
        }
        if let Some(fatal) = pending.fatal {
            return Err(RunError::Credentials(fatal));
        }
        // Lanes first: a held effect may come back in this very batch (a reconcile that
        // found nothing posts at once), and must find its lane held.
        for (id, lane) in pending.finished {
            if pending.holds.contains(&id) {
                self.lanes.hold(&lane, id);
            } else {
                self.lanes.finish(&lane);
            }
        }
        // While stopping, effects the core emits now stay in the committed outbox for the
        // next start; those already queued behind a running one keep starting until the stop
        // deadline, so a stop leaves as little as possible to replay.
        if act {
            let emitted = self.batch_received;
            for effect in pending.effects {
                self.lanes.push(effect, emitted);
            }
        }
        for (effect, queued_at) in self.lanes.take_ready() {
            self.spawn(effect, queued_at);
        }
        if let Some(m) = &self.metrics {
            m.effects(self.lanes.running(), self.lanes.queued());
            let oldest = self
                .bridge
                .oldest_retry_since()
                .map_or(0, |since| now().0.saturating_sub(since.0) / 1000);
            m.retrying(self.bridge.retrying(), oldest);
            if self
                .population_counted
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
            {
                self.population_counted = Some(Instant::now());
                let s = self.bridge.snapshot();
                m.population(crate::metrics::Population {
                    users: s.users.len(),
                    logged_in: s
                        .users
                        .values()
                        .filter(|u| u.login.as_ref().is_some_and(|l| l.valid))
                        .count(),
                    portals: s.portals.len(),
                    ghosts: s.ghosts.len(),
                    gitter_rooms: s.gitter_rooms.len(),
                });
            }
        }
        Ok(())
    }

    /// Commits the quiet change sets that wait ([`DEFER_QUIET`]).
    async fn flush_deferred(&mut self) -> Result<(), RunError> {
        self.deferred_since = None;
        let sets = std::mem::take(&mut self.deferred);
        if sets.is_empty() {
            return Ok(());
        }
        self.commit(sets).await.map_err(RunError::Store)
    }

    async fn commit(&mut self, sets: Vec<ChangeSet>) -> Result<(), String> {
        let store = self.store.clone();
        let started = Instant::now();
        let steps = sets.len();
        let result = tokio::task::spawn_blocking(move || match store.lock() {
            Ok(mut store) => store.apply(&sets).map_err(|e| e.to_string()),
            // A panic while the store was held: its state in this process is unknown.
            Err(_) => Err("the store is gone after an earlier failure".to_owned()),
        })
        .await
        .map_err(|e| format!("the commit task failed: {e}"))?;
        if let Some(m) = &self.metrics {
            m.commit(started.elapsed().as_secs_f64());
        }
        tracing::trace!(steps, elapsed = ?started.elapsed(), "committed");
        result
    }

    fn spawn(&mut self, effect: Effect, queued_at: Instant) {
        let direction = effect.carries();
        let flight = InFlight {
            id: effect.id,
            lane: effect.lane.clone(),
            action: effect.action.name(),
            direction,
            peer: Peer::of(&effect.action),
            closes: match &effect.action {
                Action::Stream(StreamCall::Close { room }) => Some(room.clone()),
                _ => None,
            },
            queued_at,
        };
        let span = tracing::info_span!("effect", id = %effect.id, action = flight.action);
        let task = self
            .tasks
            .spawn(self.exec.clone().run(effect).instrument(span));
        self.in_flight.insert(task.id(), flight);
    }
}

fn done_item(done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) -> Item {
    match done {
        Ok((id, outcome)) => Item::Done(id, Ok(outcome)),
        Err(e) => Item::Done(e.id(), Err(e.to_string())),
    }
}

async fn sleep_until(deadline: Option<Timestamp>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    let wait = deadline.0.saturating_sub(now().0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
