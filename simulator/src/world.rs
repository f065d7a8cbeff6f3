//! A whole world on loopback: the fake homeserver, the fake Gitter and the real bridge
//! runtime (`gitter_bridge::start_on`) with a redb file in a temporary directory.
//!
//! The bridge is configured exactly as an operator would: a config file written to disk, a
//! registration produced by `gitter_bridge::registration::generate` from it, and the fake
//! homeserver loading that registration. Tests, scenarios, the demo and the load generator all
//! build on this one harness.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gitter_bridge::{Config, Listeners, Running};
use regex::Regex;

use crate::fake_gitter::{FakeGitter, GitterConfig, GitterSeed};
use crate::fake_hs::{FakeHomeserver, HsConfig, HsState, Human, Registration, SeenEvent};

/// How to build a world.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// The fake Gitter's seed (users, rooms, messages), TOML.
    pub gitter_seed: String,
    /// The homeserver's server name.
    pub server_name: String,
    /// First retry delay of a failed AS push (Synapse: 2 s).
    pub push_backoff: Duration,
    /// Stream heartbeat interval of the fake Gitter.
    pub heartbeat: Duration,
    /// Extra TOML appended to the bridge's `[bridge]` section.
    pub bridge_extra: String,
    /// Extra TOML appended to the bridge's `[gitter]` section (deadlines).
    pub gitter_extra: String,
    /// Where the store goes (`gitter-bridge.redb` in the world's directory when `None`).
    pub store_path: Option<PathBuf>,
    /// Requests per minute allowed by the fake Gitter, per user.
    pub gitter_rate_limit: u32,
    /// The bridge's own client-side limit.
    pub bridge_requests_per_minute: u32,
    /// Where the bridge's files go (a fresh temporary directory when `None`).
    pub dir: Option<PathBuf>,
    /// `homeserver.startup_wait_secs` (whole seconds): the fake homeserver is up before the
    /// bridge starts, so the default gives up at once.
    pub homeserver_startup_wait: Duration,
    /// The bridge reads Gitter over the fake's realtime endpoint (`gitter.faye_url`).
    pub faye: bool,
    /// Extra TOML appended to the bridge's `[web]` section.
    pub web_extra: String,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            gitter_seed: include_str!("../../fixtures/sim/gitter-seed.toml").to_owned(),
            server_name: "sim.localhost".to_owned(),
            push_backoff: Duration::from_millis(50),
            heartbeat: Duration::from_secs(2),
            bridge_extra: String::new(),
            // The fake Gitter's files (images in messages) are on loopback.
            gitter_extra: "stream_idle_timeout_secs = 30\nmedia_allow_private_addresses = true\n"
                .to_owned(),
            store_path: None,
            gitter_rate_limit: 100,
            bridge_requests_per_minute: 100,
            dir: None,
            homeserver_startup_wait: Duration::ZERO,
            faye: false,
            web_extra: String::new(),
        }
    }
}

/// What went wrong while building or driving a world.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Setting up failed (a port, a file, a seed).
    #[error("setup: {0}")]
    Setup(String),
    /// The bridge refused to start.
    #[error("the bridge did not start: {0}")]
    Start(#[from] gitter_bridge::StartError),
    /// Something expected did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A step failed.
    #[error("{0}")]
    Step(String),
}

fn setup(e: impl std::fmt::Display) -> WorldError {
    WorldError::Setup(e.to_string())
}

/// The fakes and the bridge.
pub struct World {
    /// The fake homeserver.
    pub hs: FakeHomeserver,
    /// The fake Gitter.
    pub gitter: FakeGitter,
    bridge: Option<Running>,
    /// The bridge as its own process (`gitter-bridge run`), for load and chaos runs.
    process: Option<tokio::process::Child>,
    _tmp: Option<tempfile::TempDir>,
    /// The bridge's directory (config, registration, redb file).
    pub dir: PathBuf,
    /// The bridge's config file.
    pub config_path: PathBuf,
    /// Where the bridge's AS API listens (fixed across restarts).
    pub as_addr: SocketAddr,
    /// Where the bridge's pages listen (fixed across restarts).
    pub web_addr: SocketAddr,
    /// An HTTP client that does not follow redirects (a browser, step by step).
    pub http: reqwest::Client,
    /// The bridge's two ports, held from the world's creation to the bridge's first start:
    /// released earlier, another server of the world (binding port 0) could be given one.
    reserved: Option<(std::net::TcpListener, std::net::TcpListener)>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("dir", &self.dir)
            .field("as_addr", &self.as_addr)
            .field("web_addr", &self.web_addr)
            .finish_non_exhaustive()
    }
}

/// How long the waits of the helpers below last by default.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a wait polls what it cannot be told about.
const POLL: Duration = Duration::from_millis(20);

impl World {
    /// Starts the fakes and the bridge.
    pub async fn start(options: WorldOptions) -> Result<World, WorldError> {
        let mut world = World::without_bridge(options).await?;
        world.start_bridge().await?;
        Ok(world)
    }

    /// Starts the fakes and writes the bridge's files, without starting the bridge.
    pub async fn without_bridge(options: WorldOptions) -> Result<World, WorldError> {
        let (tmp, dir) = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(setup)?;
                (None, d.clone())
            }
            None => {
                let tmp = tempfile::tempdir().map_err(setup)?;
                let dir = tmp.path().to_owned();
                (Some(tmp), dir)
            }
        };
        // Reserve the bridge's two ports now: the registration and the OAuth app need them.
        let (as_listener, as_addr) = reserve_port()?;
        let (web_listener, web_addr) = reserve_port()?;
        let public_url = format!("http://{web_addr}");

        let seed = GitterSeed::from_toml(&options.gitter_seed).map_err(setup)?;
        let gitter_config = GitterConfig {
            redirect_uri: format!("{public_url}/oauth/callback"),
            heartbeat: options.heartbeat,
            rate_limit: options.gitter_rate_limit,
            ..GitterConfig::default()
        };
        let state = FakeGitter::seeded_state(gitter_config.clone(), &seed).map_err(setup)?;
        let gitter = FakeGitter::spawn(loopback(), state).await.map_err(setup)?;

        // The homeserver's URL is needed in the bridge config before the registration exists;
        // bind its port first too.
        let hs_addr = free_port()?;
        let config_path = dir.join("config.toml");
        let config_text = format!(
            r#"[homeserver]
url = "http://{hs_addr}"
domain = "{server}"
startup_wait_secs = {startup_wait}

[appservice]
id = "gitter"
bind = "{as_addr}"
url = "http://{as_addr}"
as_token = "CHANGE_ME"
hs_token = "CHANGE_ME"
bot_displayname = "Gitter bridge"

[gitter]
api_url = "{api}"
stream_url = "{stream}"
oauth_authorize_url = "{authorize}"
oauth_token_url = "{token}"
client_id = "{client_id}"
client_secret = "{client_secret}"
requests_per_minute = {rpm}
{faye}{gitter_extra}

[web]
bind = "{web_addr}"
public_url = "{public_url}"
{web_extra}

[store]
path = "{store}"

[bridge]
allow_all = true
{extra}

[logging]
level = "warn"
"#,
            server = options.server_name,
            api = gitter.api_base_url(),
            stream = gitter.stream_base_url(),
            authorize = gitter.authorize_url(),
            token = gitter.token_url(),
            client_id = gitter_config.client_id,
            client_secret = gitter_config.client_secret,
            rpm = options.bridge_requests_per_minute,
            extra = options.bridge_extra,
            web_extra = options.web_extra,
            gitter_extra = options.gitter_extra,
            faye = if options.faye {
                format!("faye_url = \"{}\"\n", gitter.faye_url())
            } else {
                String::new()
            },
            store = options.store_path.as_ref().map_or_else(
                || "gitter-bridge.redb".to_owned(),
                |p| p.display().to_string()
            ),
            startup_wait = options.homeserver_startup_wait.as_secs(),
        );
        std::fs::write(&config_path, config_text).map_err(setup)?;
        let registration_path = dir.join("registration.yaml");
        gitter_bridge::registration::generate(&config_path, &registration_path, true)
            .map_err(setup)?;
        let registration =
            Registration::from_yaml(&std::fs::read_to_string(&registration_path).map_err(setup)?)
                .map_err(setup)?;

        let mut hs_config = HsConfig::new(&options.server_name, registration);
        hs_config.push_backoff_base = options.push_backoff;
        hs_config.push_backoff_max = Duration::from_secs(2);
        let hs = FakeHomeserver::spawn(hs_addr, HsState::new(hs_config).map_err(setup)?)
            .await
            .map_err(setup)?;

        Ok(World {
            hs,
            gitter,
            bridge: None,
            process: None,
            _tmp: tmp,
            dir,
            config_path,
            as_addr,
            web_addr,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(setup)?,
            reserved: Some((as_listener, web_listener)),
        })
    }

    /// The bridge's validated configuration.
    pub fn config(&self) -> Result<Config, WorldError> {
        Config::load(&self.config_path).map_err(setup)
    }

    /// Starts the bridge (again) on the world's fixed ports. A killed bridge may still hold
    /// its redb file or ports for a moment, so this retries briefly.
    pub async fn start_bridge(&mut self) -> Result<(), WorldError> {
        if self.bridge.is_some() {
            return Err(WorldError::Step("the bridge is already running".into()));
        }
        let config = self.config()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut reserved = self.reserved.take();
        loop {
            let reserved = reserved.take();
            let attempt = async {
                let listeners = match reserved {
                    Some((appservice, web)) => Listeners {
                        appservice: into_tokio(appservice)?,
                        web: into_tokio(web)?,
                    },
                    None => Listeners::bind(&config).await?,
                };
                gitter_bridge::start_on(config.clone(), listeners).await
            };
            match attempt.await {
                Ok(running) => {
                    self.bridge = Some(running);
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() < deadline && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stops the bridge gracefully (SIGTERM).
    pub async fn stop_bridge(&mut self) -> Result<(), WorldError> {
        if let Some(b) = self.bridge.take() {
            b.stop()
                .await
                .map_err(|e| WorldError::Step(e.to_string()))?;
        }
        Ok(())
    }

    /// Kills the bridge as a crash would.
    pub async fn kill_bridge(&mut self) {
        if let Some(b) = self.bridge.take() {
            b.kill().await;
        }
    }

    /// Whether the bridge is running.
    pub fn bridge_running(&self) -> bool {
        self.bridge.as_ref().is_some_and(|b| !b.is_finished())
    }

    /// Starts the real `gitter-bridge` binary at `bin` as a child process on this world's
    /// config (`gitter-bridge run -c <config>`), its log appended to `bridge.log` in the
    /// world's directory, and waits until its AS listener accepts connections (the bridge
    /// listens only after opening its store and checking the homeserver). A killed
    /// predecessor may still hold the ports or the redb file for a moment: a child that exits
    /// at once is started again, for up to `patience`.
    pub async fn start_bridge_process(
        &mut self,
        bin: &std::path::Path,
        patience: Duration,
    ) -> Result<(), WorldError> {
        if self.process.is_some() || self.bridge.is_some() {
            return Err(WorldError::Step("the bridge is already running".into()));
        }
        // The process binds the ports itself.
        self.reserved = None;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("bridge.log"))
                .map_err(setup)?;
            let mut child = tokio::process::Command::new(bin)
                .arg("run")
                .arg("-c")
                .arg(&self.config_path)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().map_err(setup)?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| WorldError::Setup(format!("cannot run {}: {e}", bin.display())))?;
            loop {
                if let Some(status) = child.try_wait().map_err(setup)? {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(WorldError::Start(gitter_bridge::StartError::Internal(
                            format!(
                                "the bridge process exited with {status}; see {}",
                                self.dir.join("bridge.log").display()
                            ),
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
                if tokio::net::TcpStream::connect(self.as_addr).await.is_ok() {
                    self.process = Some(child);
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    let _ = child.start_kill();
                    return Err(WorldError::Timeout(
                        "the bridge process never listened".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The bridge process's id, while it runs.
    pub fn bridge_pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|c| c.id())
    }

    /// SIGKILLs the bridge process (a crash: nothing more is committed) and reaps it.
    pub async fn kill_bridge_process(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERMs the bridge process (a graceful stop) and waits for it to exit, at most
    /// `grace`; then SIGKILLs it. Returns whether it exited by itself.
    pub async fn term_bridge_process(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.process.take() else {
            return true;
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                false
            }
        }
    }

    /// Whether the bridge process has exited on its own (reaping it if so).
    pub fn bridge_process_exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.process.as_mut()?.try_wait().ok().flatten()?;
        self.process = None;
        Some(status)
    }

    /// The bridge process's resident memory now, MiB (Linux; `None` elsewhere or when it
    /// is not running).
    pub fn bridge_rss_mib(&self) -> Option<f64> {
        let pid = self.bridge_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        let _ = self.term_bridge_process(Duration::from_secs(10)).await;
        let _ = self.stop_bridge().await;
        self.hs.shutdown().await;
        self.gitter.shutdown().await;
    }

    /// The bot's user id.
    pub fn bot(&self) -> String {
        self.hs.bot_user_id()
    }

    /// The public pages' base URL.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.web_addr)
    }

    /// Registers a Matrix user.
    pub fn human(&self, localpart: &str) -> Result<Human, WorldError> {
        self.hs
            .register_human(localpart)
            .map_err(|e| WorldError::Step(format!("register {localpart}: {e:?}")))
    }

    /// Waits for `pred` on the homeserver.
    pub async fn wait_hs(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&FakeHomeserver) -> bool,
    ) -> Result<(), WorldError> {
        if self.hs.wait_until(timeout, pred).await {
            Ok(())
        } else {
            Err(WorldError::Timeout(what.to_owned()))
        }
    }

    /// Waits for `pred` on the fake Gitter.
    pub async fn wait_gitter(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&FakeGitter) -> bool,
    ) -> Result<(), WorldError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !pred(&self.gitter) {
            if tokio::time::Instant::now() >= deadline {
                return Err(WorldError::Timeout(what.to_owned()));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Waits until the bridge's `/ready` answers what `pred` wants (its status and JSON
    /// body); returns that body. The bridge's readiness changes inside its process, so it is
    /// polled, as the fake Gitter is.
    pub async fn wait_ready(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, WorldError> {
        let url = format!("{}/ready", self.public_url());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no answer");
        loop {
            if let Ok(resp) = self.http.get(&url).send().await {
                let status = resp.status().as_u16();
                if let Ok(body) = resp.json::<serde_json::Value>().await {
                    if pred(status, &body) {
                        return Ok(body);
                    }
                    last = format!("{status} {body}");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WorldError::Timeout(format!(
                    "{what} (/ready last said {last})"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The user's DM with the bot: the one it creates, inviting the bot. Waits for the bot's
    /// welcome.
    pub async fn open_dm(&self, human: &Human) -> Result<String, WorldError> {
        let room = self
            .hs
            .create_dm(&human.user_id, &self.bot())
            .map_err(|e| WorldError::Step(format!("create DM: {e:?}")))?;
        let bot = self.bot();
        self.wait_hs("the bot's welcome in the DM", WAIT, |hs| {
            hs.messages_seen(&human.user_id, &room)
                .iter()
                .any(|m| m.sender == bot)
        })
        .await?;
        Ok(room)
    }

    /// Sends `text` to the bot in `dm`.
    pub fn say(&self, human: &Human, room: &str, text: &str) -> Result<String, WorldError> {
        self.hs
            .send_text(&human.user_id, room, text)
            .map_err(|e| WorldError::Step(format!("send: {e:?}")))
    }

    /// The bot's notices in `room`, as `human` sees them.
    pub fn bot_notices(&self, human: &Human, room: &str) -> Vec<String> {
        let bot = self.bot();
        self.hs
            .messages_seen(&human.user_id, room)
            .into_iter()
            .filter(|m| m.sender == bot)
            .filter_map(|m| m.body)
            .collect()
    }

    /// Waits for a bot notice in `room` containing `needle`, after the first `skip` notices.
    pub async fn wait_notice(
        &self,
        human: &Human,
        room: &str,
        needle: &str,
        skip: usize,
    ) -> Result<String, WorldError> {
        let mut found = None;
        let what = format!("a bot notice containing {needle:?}");
        self.wait_hs(&what, WAIT, |_| {
            found = self
                .bot_notices(human, room)
                .into_iter()
                .skip(skip)
                .find(|n| n.contains(needle));
            found.is_some()
        })
        .await?;
        found.ok_or(WorldError::Timeout(what))
    }

    /// The login flow as a person does it: ask the bot, open the link, sign in to Gitter as
    /// `gitter_user`, land on the bridge's page, and wait for the "logged in" notice.
    pub async fn login(
        &self,
        human: &Human,
        dm: &str,
        gitter_user: &str,
    ) -> Result<(), WorldError> {
        let skip = self.bot_notices(human, dm).len();
        self.say(human, dm, "login")?;
        let notice = self.wait_notice(human, dm, "/login/", skip).await?;
        let link = login_link(&notice)
            .ok_or_else(|| WorldError::Step(format!("no login link in {notice:?}")))?;
        let page = self.follow_login_link(&link, gitter_user).await?;
        if !page.contains("is now linked to the Matrix account") {
            return Err(WorldError::Step(format!("login page says: {page}")));
        }
        self.wait_notice(human, dm, "You are now logged in", skip)
            .await?;
        Ok(())
    }

    /// Opens a login link and signs in to the fake Gitter as `gitter_user`; returns the text
    /// of the bridge's final page.
    pub async fn follow_login_link(
        &self,
        link: &str,
        gitter_user: &str,
    ) -> Result<String, WorldError> {
        let (status, page) = self.browse_login_link(link, gitter_user).await?;
        if status != 200 {
            return Err(WorldError::Step(format!(
                "the login ended with {status}: {page}"
            )));
        }
        Ok(page)
    }

    /// Opens a login link and reads its page without pressing anything (what a link preview
    /// does; it spends nothing): the HTTP status and text.
    pub async fn peek_login_link(&self, link: &str) -> Result<(u16, String), WorldError> {
        let step = |e: reqwest::Error| WorldError::Step(e.to_string());
        let r = self.http.get(link).send().await.map_err(step)?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(step)?))
    }

    /// Does with a login link what a person in a browser does: opens it, reads the page
    /// (which names the Matrix account) and presses its button, then signs in to the fake
    /// Gitter as `gitter_user` and comes back, keeping the bridge's cookies on the way.
    /// A refusal anywhere (an expired or spent link, a failed sign-in) is an answer, not an
    /// error: returns the HTTP status and text of the last page.
    pub async fn browse_login_link(
        &self,
        link: &str,
        gitter_user: &str,
    ) -> Result<(u16, String), WorldError> {
        let step = |e: reqwest::Error| WorldError::Step(e.to_string());
        let r = self.http.get(link).send().await.map_err(step)?;
        let status = r.status().as_u16();
        let csrf_cookie = set_cookie(&r, "gb_csrf");
        let page = r.text().await.map_err(step)?;
        if status != 200 {
            return Ok((status, page));
        }
        let Some(csrf) = hidden_field(&page, "csrf") else {
            return Err(WorldError::Step(format!(
                "no confirm button on the page: {page}"
            )));
        };
        let mut post = self.http.post(link).form(&[("csrf", csrf.as_str())]);
        if let Some(cookie) = csrf_cookie {
            post = post.header(reqwest::header::COOKIE, format!("gb_csrf={cookie}"));
        }
        let r = post.send().await.map_err(step)?;
        if !r.status().is_redirection() {
            let status = r.status().as_u16();
            return Ok((status, r.text().await.map_err(step)?));
        }
        let state_cookie = set_cookie(&r, "gb_oauth");
        let authorize = location(&r)?;
        let r = self
            .http
            .get(format!("{authorize}&login_as={gitter_user}"))
            .send()
            .await
            .map_err(step)?;
        if !r.status().is_redirection() {
            let status = r.status().as_u16();
            return Ok((status, r.text().await.map_err(step)?));
        }
        let callback = location(&r)?;
        let mut get = self.http.get(callback);
        if let Some(cookie) = state_cookie {
            get = get.header(reqwest::header::COOKIE, format!("gb_oauth={cookie}"));
        }
        let r = get.send().await.map_err(step)?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(step)?))
    }

    /// Portals `human` is invited to or in, other than `except`.
    pub fn rooms_of(&self, human: &Human) -> Vec<(String, String)> {
        self.hs.rooms_of(&human.user_id)
    }

    /// Accepts every pending invite of `human`; returns the rooms joined.
    pub fn accept_invites(&self, human: &Human) -> Result<Vec<String>, WorldError> {
        let mut joined = Vec::new();
        for room in self.hs.invites_of(&human.user_id) {
            self.hs
                .join(&human.user_id, &room)
                .map_err(|e| WorldError::Step(format!("join {room}: {e:?}")))?;
            joined.push(room);
        }
        Ok(joined)
    }

    /// The portal of `human` for the Gitter room named `name` (its Matrix room name).
    pub fn portal_named(&self, human: &Human, name: &str) -> Option<String> {
        self.hs
            .with_state(|s| s.room_named_for(&human.user_id, name))
    }

    /// Messages `human` sees in `room` from anyone but themselves.
    pub fn messages_from_others(&self, human: &Human, room: &str) -> Vec<SeenEvent> {
        self.hs
            .messages_seen(&human.user_id, room)
            .into_iter()
            .filter(|m| m.sender != human.user_id)
            .collect()
    }

    /// Texts of the messages of a Gitter room sent by `username`.
    pub fn gitter_texts_from(&self, room: &str, username: &str) -> Vec<String> {
        self.gitter
            .messages(room)
            .unwrap_or_default()
            .iter()
            .filter(|m| m["fromUser"]["username"] == username)
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }
}

fn retryable(e: &gitter_bridge::StartError) -> bool {
    use gitter_bridge::StartError;
    match e {
        StartError::Bind { .. } => true,
        // redb refuses a file another (dying) instance still holds.
        StartError::Store(e) => e.to_string().contains("already open"),
        _ => false,
    }
}

/// The value a `Set-Cookie` of the answer gives cookie `name`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The value of the hidden form field `name` in a page.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_owned())
}

fn location(r: &reqwest::Response) -> Result<String, WorldError> {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| WorldError::Step(format!("expected a redirect, got HTTP {}", r.status())))
}

/// The first `http(s)://.../login/<token>` in a text.
pub fn login_link(text: &str) -> Option<String> {
    let re = Regex::new(r"https?://[^\s)>\]]+/login/[A-Za-z0-9_\-]+").ok()?;
    re.find(text).map(|m| m.as_str().to_owned())
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback port, held by the listener until it is handed over.
fn reserve_port() -> Result<(std::net::TcpListener, SocketAddr), WorldError> {
    let listener = std::net::TcpListener::bind(loopback()).map_err(setup)?;
    let addr = listener.local_addr().map_err(setup)?;
    Ok((listener, addr))
}

/// A reserved listener for the bridge's runtime.
fn into_tokio(
    listener: std::net::TcpListener,
) -> Result<tokio::net::TcpListener, gitter_bridge::StartError> {
    let bind =
        |e: std::io::Error| gitter_bridge::StartError::Internal(format!("a reserved port: {e}"));
    listener.set_nonblocking(true).map_err(bind)?;
    tokio::net::TcpListener::from_std(listener).map_err(bind)
}

/// A port that was free a moment ago.
fn free_port() -> Result<SocketAddr, WorldError> {
    let listener = std::net::TcpListener::bind(loopback()).map_err(setup)?;
    listener.local_addr().map_err(setup)
}
