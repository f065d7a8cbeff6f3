//! The operator's configuration file: parsing, validation with errors that name the key, and
//! secrets from the file, an environment variable or a file of their own.

use std::path::{Path, PathBuf};

use gitter_bridge_core as core;
use serde::Deserialize;

/// A configuration problem, naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A key has a bad value.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The key, dotted (`appservice.as_token`).
        key: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// A secret given inline, through an environment variable, or in a file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSources {
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
}

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    homeserver: RawHomeserver,
    appservice: RawAppservice,
    gitter: RawGitter,
    web: RawWeb,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    bridge: RawBridge,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHomeserver {
    url: String,
    domain: String,
    #[serde(default = "default_startup_wait")]
    startup_wait_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppservice {
    #[serde(default = "default_id")]
    id: String,
    bind: String,
    url: String,
    as_token: Option<String>,
    as_token_env: Option<String>,
    as_token_file: Option<PathBuf>,
    hs_token: Option<String>,
    hs_token_env: Option<String>,
    hs_token_file: Option<PathBuf>,
    #[serde(default = "default_bot")]
    bot_localpart: String,
    #[serde(default = "default_bot_displayname")]
    bot_displayname: String,
    #[serde(default)]
    bot_avatar: String,
    #[serde(default = "default_ghost_template")]
    ghost_template: String,
    #[serde(default = "default_ghost_name")]
    ghost_displayname_template: String,
    #[serde(default = "default_body")]
    max_body_bytes: usize,
    #[serde(default = "default_as_connections")]
    max_connections: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitter {
    api_url: String,
    stream_url: String,
    #[serde(default)]
    faye_url: Option<String>,
    oauth_authorize_url: String,
    oauth_token_url: String,
    #[serde(default = "default_web_url")]
    web_url: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(default = "default_rpm")]
    requests_per_minute: u32,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
    // `stream_timeout_secs` was its name before the other time limits came; still accepted.
    #[serde(default = "default_stream_timeout", alias = "stream_timeout_secs")]
    stream_idle_timeout_secs: u64,
    #[serde(default)]
    media_allow_private_addresses: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    bind: String,
    public_url: String,
    #[serde(default = "default_web_connections")]
    max_connections: usize,
    media_key: Option<String>,
    media_key_env: Option<String>,
    media_key_file: Option<PathBuf>,
    #[serde(default = "default_media_max_bytes")]
    media_max_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store")]
    path: PathBuf,
    token_key_file: Option<PathBuf>,
    token_key_env: Option<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store(),
            token_key_file: None,
            token_key_env: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    #[serde(default)]
    allow_domains: Vec<String>,
    #[serde(default)]
    allow_users: Vec<String>,
    #[serde(default)]
    allow_all: bool,
    #[serde(default = "yes")]
    open_portals_on_login: bool,
    #[serde(default = "default_eager")]
    eager_join_threshold: u64,
    #[serde(default = "default_lifetime")]
    login_link_lifetime_secs: u64,
    #[serde(default = "default_retry_max")]
    retry_max_secs: u64,
    #[serde(default = "default_catch_up_retry")]
    catch_up_retry_secs: u64,
    #[serde(default = "default_retention_days")]
    mapping_retention_days: u64,
    #[serde(default = "default_hot_mappings")]
    hot_mappings: usize,
    #[serde(default = "default_hot_mappings_per_portal")]
    hot_mappings_per_portal: usize,
    #[serde(default = "default_backfill")]
    backfill_messages: u32,
}

impl Default for RawBridge {
    fn default() -> Self {
        Self {
            allow_domains: Vec::new(),
            allow_users: Vec::new(),
            allow_all: false,
            open_portals_on_login: true,
            eager_join_threshold: default_eager(),
            login_link_lifetime_secs: default_lifetime(),
            retry_max_secs: default_retry_max(),
            catch_up_retry_secs: default_catch_up_retry(),
            mapping_retention_days: default_retention_days(),
            hot_mappings: default_hot_mappings(),
            hot_mappings_per_portal: default_hot_mappings_per_portal(),
            backfill_messages: default_backfill(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default = "default_level")]
    level: String,
    #[serde(default = "default_format")]
    format: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: default_format(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default = "yes")]
    enabled: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_backfill() -> u32 {
    50
}
fn default_media_max_bytes() -> u64 {
    50 * 1024 * 1024
}
fn default_id() -> String {
    "gitter".into()
}
fn default_bot() -> String {
    "gitterbot".into()
}
/// Empty: a config without the key leaves the bot's name as the homeserver has it (an
/// upgrade does not rename the bot).
fn default_bot_displayname() -> String {
    String::new()
}
fn default_web_url() -> String {
    "https://gitter.im".into()
}
fn default_ghost_template() -> String {
    "gitter_{username}".into()
}
fn default_ghost_name() -> String {
    "{displayName} (Gitter)".into()
}
fn default_body() -> usize {
    32 * 1024 * 1024
}
/// `appservice.max_connections`: a homeserver needs few connections (Synapse sends one
/// transaction at a time per application service, plus a few queries and pings; its HTTP
/// pool keeps at most `100 * caches.global_factor` idle ones per host, 50 by default), and
/// monitoring adds one. 512 leaves room for
/// several homeserver workers while keeping, with the public pages' 256 and 256 descriptors
/// for everything else, the whole budget within the traditional 1024 descriptor limit.
fn default_as_connections() -> usize {
    512
}
/// `web.max_connections`: the public pages are a few requests per login (a link, a redirect,
/// a callback), so 256 concurrent visitors is far beyond real use; it is smaller than the
/// AS side's because strangers can open these (issue 13: about 1100 idle connections to the
/// public port exhausted the process's descriptors and the AS listener stopped answering).
fn default_web_connections() -> usize {
    256
}
fn default_startup_wait() -> u64 {
    60
}
fn default_rpm() -> u32 {
    100
}
fn default_stream_timeout() -> u64 {
    90
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_store() -> PathBuf {
    PathBuf::from("gitter-bridge.redb")
}
fn yes() -> bool {
    true
}
fn default_eager() -> u64 {
    50
}
fn default_lifetime() -> u64 {
    900
}
fn default_retry_max() -> u64 {
    60
}
fn default_catch_up_retry() -> u64 {
    30
}
fn default_retention_days() -> u64 {
    365
}
fn default_hot_mappings() -> usize {
    100_000
}
fn default_hot_mappings_per_portal() -> usize {
    1_000
}
fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "pretty".into()
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Smallest `appservice.max_body_bytes` accepted: a transaction holds up to 100 events of up
/// to 64 KiB each in the worst case, but 1 MiB covers any real traffic of text messages.
const MIN_BODY_BYTES: usize = 1024 * 1024;
/// Smallest `gitter.stream_idle_timeout_secs` accepted.
const MIN_STREAM_TIMEOUT_SECS: u64 = 5;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Homeserver Client-Server base URL.
    pub homeserver_url: String,
    /// Homeserver server name.
    pub domain: String,
    /// How long startup waits for an unreachable or failing homeserver (it may be starting
    /// too) before giving up.
    pub startup_wait: std::time::Duration,
    /// Registration id.
    pub appservice_id: String,
    /// AS listener address.
    pub as_bind: std::net::SocketAddr,
    /// URL the homeserver uses to reach the AS listener.
    pub as_url: String,
    /// AS -> HS token.
    pub as_token: core::Secret,
    /// HS -> AS token.
    pub hs_token: core::Secret,
    /// Bot localpart.
    pub bot_localpart: String,
    /// The bot's display name, set at start (None: left as the homeserver has it).
    pub bot_displayname: Option<String>,
    /// The bot's avatar (`mxc://`), set at start (None: left as the homeserver has it).
    pub bot_avatar: Option<String>,
    /// Largest accepted AS transaction body.
    pub max_body_bytes: usize,
    /// Gitter REST base URL.
    pub gitter_api_url: String,
    /// Gitter stream base URL.
    pub gitter_stream_url: String,
    /// Gitter's realtime (Faye/Bayeux) endpoint (`gitter.faye_url`); unset: per-room HTTP
    /// streams, which carry new messages only.
    pub gitter_faye_url: Option<String>,
    /// Gitter OAuth token URL.
    pub oauth_token_url: String,
    /// OAuth client secret.
    pub client_secret: core::Secret,
    /// Client-side requests per minute per token.
    pub requests_per_minute: u32,
    /// Stream silence timeout, seconds (`gitter.stream_idle_timeout_secs`).
    pub stream_timeout_secs: u64,
    /// Time limit of connecting to Gitter, REST and streams (`gitter.connect_timeout_secs`).
    pub gitter_connect_timeout: std::time::Duration,
    /// Time limit of one Gitter REST request or OAuth code exchange, from connecting to the
    /// answer's last byte (`gitter.request_timeout_secs`).
    pub gitter_request_timeout: std::time::Duration,
    /// Images of Gitter messages may be downloaded from private and loopback addresses
    /// (`gitter.media_allow_private_addresses`; tests).
    pub media_allow_private_addresses: bool,
    /// Public pages listener.
    pub web_bind: std::net::SocketAddr,
    /// The redb file.
    pub store_path: PathBuf,
    /// The key that encrypts the store's Gitter tokens (`store.token_key_file` or
    /// `store.token_key_env`); `None`: they are stored in clear.
    pub token_key: Option<gitter_bridge_store::TokenKey>,
    /// The file the key came from (`store.token_key_file`), for the permission check.
    pub token_key_file: Option<PathBuf>,
    /// Most connections the AS listener serves at once (`appservice.max_connections`).
    pub as_max_connections: usize,
    /// Most connections the public pages serve at once (`web.max_connections`).
    pub web_max_connections: usize,
    /// Log level / filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether /metrics is served.
    pub metrics: bool,
    /// The core's configuration.
    pub core: core::Config,
}

/// `mxc://<server name>/<media id>` (spec: "Matrix Content (mxc://) URIs"), by ruma's
/// validation, which lets an empty media id through.
fn is_mxc(uri: &str) -> bool {
    <&ruma::MxcUri>::from(uri)
        .parts()
        .is_ok_and(|(_, id)| !id.is_empty())
}

/// Values that mean "not configured yet".
fn is_placeholder(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v.eq_ignore_ascii_case("change_me") || v == "..."
}

fn secret(
    key: &'static str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    hint: &str,
) -> Result<core::Secret, ConfigError> {
    let sources = SecretSources {
        value: inline,
        env,
        file,
    };
    let given = [
        sources.value.is_some(),
        sources.env.is_some(),
        sources.file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given > 1 {
        return Err(invalid(
            key,
            "give the value, the `_env` or the `_file` form, not several",
        ));
    }
    let value = if let Some(name) = sources.env {
        std::env::var(&name)
            .map_err(|_| invalid(key, format!("environment variable {name} is not set")))?
    } else if let Some(file) = sources.file {
        let path = base.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?
            .trim()
            .to_owned()
    } else {
        sources.value.unwrap_or_default()
    };
    if is_placeholder(&value) {
        return Err(invalid(key, format!("not set: {hint}")));
    }
    Ok(core::Secret::new(value))
}

fn url(key: &'static str, value: &str) -> Result<String, ConfigError> {
    if is_placeholder(value) {
        return Err(invalid(key, "not set"));
    }
    let parsed = url::Url::parse(value.trim())
        .map_err(|e| invalid(key, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            key,
            format!("`{value}` is not an http:// or https:// URL with a host"),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            key,
            format!("`{value}`: give a base URL without `?` or `#`"),
        ));
    }
    Ok(value.trim().trim_end_matches('/').to_owned())
}

/// `logging.level`: a level, or an EnvFilter list of `target=level` directives with at most
/// one bare level. EnvFilter reads a bare unknown word (`debgu`) as a target name and then
/// drops every other line, so a typo would silence the bridge: refuse it instead.
fn log_level(value: &str) -> Result<String, ConfigError> {
    const KEY: &str = "logging.level";
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let value = value.trim();
    for directive in value.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                KEY,
                format!(
                    "`{directive}` is not a level: use trace, debug, info, warn, error or off, \
                     or `target=level` directives"
                ),
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(value)
        .map_err(|e| invalid(KEY, format!("`{value}`: {e}")))?;
    Ok(value.to_owned())
}

/// `appservice.ghost_template`: one `{username}` inside a fixed, lowercase localpart prefix
/// and suffix. The core lowercases and escapes the whole localpart, so upper-case or other
/// characters here would put ghosts outside the registered namespace (every registration
/// then fails with M_EXCLUSIVE).
fn ghost_template(template: &str, bot_localpart: &str) -> Result<(), ConfigError> {
    const KEY: &str = "appservice.ghost_template";
    let Some((prefix, suffix)) = template.split_once("{username}") else {
        return Err(invalid(KEY, "must contain {username}"));
    };
    if suffix.contains("{username}") {
        return Err(invalid(KEY, "must contain {username} once"));
    }
    let allowed = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/' | '+');
    if !prefix.chars().chain(suffix.chars()).all(allowed) {
        return Err(invalid(
            KEY,
            format!(
                "`{template}`: outside {{username}} use only a-z, 0-9 and . _ - / + \
                 (Matrix localparts are lowercase)"
            ),
        ));
    }
    if prefix.is_empty() || bot_localpart.starts_with(prefix) && bot_localpart.len() > prefix.len()
    {
        return Err(invalid(
            KEY,
            "needs a fixed prefix (like `gitter_`) that the bot's localpart does not share",
        ));
    }
    Ok(())
}

/// Shortest `web.media_key` accepted: 128 bits of base64 or hex, as a signing key needs.
const MIN_MEDIA_KEY_LEN: usize = 22;

/// `web.media_key` (or `_env`, `_file`): the key of the signed media links. Unset, it is
/// derived from `appservice.hs_token`, which only the bridge and its homeserver know, so a
/// bridge shares files with no setup; a key of its own lets the operator change one without
/// the other (changing the key ends every link sent before).
fn media_key(
    web: &RawWeb,
    hs_token: &core::Secret,
    base: &Path,
) -> Result<core::MediaKey, ConfigError> {
    const KEY: &str = "web.media_key";
    if web.media_key.is_none() && web.media_key_env.is_none() && web.media_key_file.is_none() {
        return Ok(core::MediaKey::derive(hs_token.expose().as_bytes()));
    }
    let key = secret(
        KEY,
        web.media_key.clone(),
        web.media_key_env.clone(),
        web.media_key_file.clone(),
        base,
        "give a random string, or leave all three forms out to derive it from hs_token",
    )?;
    if key.expose().len() < MIN_MEDIA_KEY_LEN {
        return Err(invalid(
            KEY,
            format!(
                "too short: use at least {MIN_MEDIA_KEY_LEN} random characters \
                 (`openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(core::MediaKey::derive(key.expose().as_bytes()))
}

/// `store.token_key_file` / `store.token_key_env`: the store's key, 64 hex digits (32
/// bytes). The error names the key and never shows the value.
fn token_key(
    store: &RawStore,
    base: &Path,
) -> Result<(Option<gitter_bridge_store::TokenKey>, Option<PathBuf>), ConfigError> {
    let (key, text, file) = match (&store.token_key_file, &store.token_key_env) {
        (None, None) => return Ok((None, None)),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "store.token_key_file",
                "give store.token_key_file or store.token_key_env, not both",
            ));
        }
        (Some(file), None) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "store.token_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            ("store.token_key_file", text, Some(path))
        }
        (None, Some(name)) => {
            let text = std::env::var(name).map_err(|_| {
                invalid(
                    "store.token_key_env",
                    format!("environment variable {name} is not set"),
                )
            })?;
            ("store.token_key_env", text, None)
        }
    };
    match gitter_bridge_store::TokenKey::from_hex(&text) {
        Ok(k) => Ok((Some(k), file)),
        Err(e) => Err(invalid(key, e.to_string())),
    }
}

/// A file holding secrets that its group or others may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoosePermissions {
    /// What the file is ("config file", "store", ...).
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl std::fmt::Display for LoosePermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} {} is readable by {} (mode {:04o}) and holds secrets: `chmod 600 {}`",
            self.what,
            self.path.display(),
            if self.mode & 0o004 != 0 {
                "everyone"
            } else {
                "its group"
            },
            self.mode,
            self.path.display()
        )
    }
}

/// Whether `path` (a file that holds secrets) may be read by its group or others. A missing
/// file (a store not created yet) is fine; so is every file where modes do not exist.
/// Observed (issue 13): the store was created 0644 and config.toml stayed 0644 after
/// `--write-tokens`, with nothing saying so.
pub fn loose_permissions(what: &'static str, path: &Path) -> Option<LoosePermissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o044 != 0).then(|| LoosePermissions {
            what,
            path: path.to_owned(),
            mode,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (what, path);
        None
    }
}

impl Config {
    /// The files of this configuration that hold secrets and may be read by others: the
    /// config file itself (`config_path`), the store, the store's key file.
    pub fn loose_permissions(&self, config_path: &Path) -> Vec<LoosePermissions> {
        let mut files = vec![("config file", config_path), ("store", &self.store_path)];
        if let Some(key) = &self.token_key_file {
            files.push(("store key file (store.token_key_file)", key));
        }
        files
            .into_iter()
            .filter_map(|(what, path)| loose_permissions(what, path))
            .collect()
    }
}

/// A listening address: an IP address or a host name (resolved once, now: `localhost`, or a
/// container's own name) with a port.
fn addr(key: &'static str, value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = value.parse() {
        return Ok(a);
    }
    let bad = |why: String| {
        invalid(
            key,
            format!("`{value}` is not an address like 127.0.0.1:29321 or localhost:29321{why}"),
        )
    };
    match value.to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| bad(": the name has no address".to_owned())),
        Err(e)
            if value
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
        {
            Err(bad(format!(" ({e})")))
        }
        Err(_) => Err(bad(String::new())),
    }
}

/// Domains reserved for examples (RFC 2606): a homeserver never has one, so the example
/// config's `example.org` left in place is a mistake, not a choice.
fn is_example_domain(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    ["example.org", "example.com", "example.net"]
        .iter()
        .any(|e| d == *e || d.ends_with(&format!(".{e}")))
}

impl Config {
    /// Settings that are valid but probably not what the operator meant.
    pub fn warnings(&self) -> Vec<String> {
        let p = &self.core.permissions;
        let mut out = Vec::new();
        if !p.allow_all && p.domains.is_empty() && p.users.is_empty() {
            out.push(
                "nobody may use the bridge: bridge.allow_domains and bridge.allow_users are \
                 empty and bridge.allow_all is false"
                    .to_owned(),
            );
        }
        if p.allow_all {
            out.push(
                "bridge.allow_all = true: any Matrix user of any server that can reach the \
                 bot may use the bridge"
                    .to_owned(),
            );
        }
        out
    }

    /// Whether this binary can reach the configured servers: one built without the `rustls`
    /// feature speaks plain HTTP only (enough for loopback and tests), so an `https://`
    /// homeserver or Gitter URL cannot work with it.
    /// The error is always [`ConfigError::Invalid`].
    pub fn check_tls(&self) -> Result<(), ConfigError> {
        if cfg!(feature = "rustls") {
            return Ok(());
        }
        let faye = self.gitter_faye_url.clone().unwrap_or_default();
        let outgoing = [
            ("homeserver.url", &self.homeserver_url),
            ("gitter.api_url", &self.gitter_api_url),
            ("gitter.stream_url", &self.gitter_stream_url),
            ("gitter.faye_url", &faye),
            ("gitter.oauth_token_url", &self.oauth_token_url),
        ];
        match outgoing.iter().find(|(_, u)| u.starts_with("https://")) {
            Some((key, _)) => Err(invalid(
                key,
                "is https://, but this binary was built without TLS (`--no-default-features`): \
                 build it with the default features (`cargo build --release`), which \
                 include `rustls`",
            )),
            None => Ok(()),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.override_binds(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// The listeners' addresses from the environment, over the file's: a container image
    /// sets `GITTER_BRIDGE_APPSERVICE_BIND` and `GITTER_BRIDGE_WEB_BIND` to `0.0.0.0:…`
    /// (inside a container the loopback address is unreachable from outside), whatever the
    /// mounted config says.
    pub fn override_binds(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = env("GITTER_BRIDGE_APPSERVICE_BIND") {
            self.as_bind = addr("GITTER_BRIDGE_APPSERVICE_BIND (over appservice.bind)", &v)?;
        }
        if let Some(v) = env("GITTER_BRIDGE_WEB_BIND") {
            self.web_bind = addr("GITTER_BRIDGE_WEB_BIND (over web.bind)", &v)?;
        }
        Ok(())
    }

    /// Parses and validates config text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let domain = raw.homeserver.domain.trim().to_owned();
        if is_placeholder(&domain) || domain.contains(['/', ' ', '@']) {
            return Err(invalid(
                "homeserver.domain",
                "must be the server name, like example.org",
            ));
        }
        if is_example_domain(&domain) {
            return Err(invalid(
                "homeserver.domain",
                format!(
                    "is still the example's `{domain}`: set it to your homeserver's server \
                     name (the part after the colon in your Matrix id)"
                ),
            ));
        }
        let a = raw.appservice;
        let hint = "did you run `gitter-bridge generate-registration`?";
        let as_token = secret(
            "appservice.as_token",
            a.as_token,
            a.as_token_env,
            a.as_token_file,
            base,
            hint,
        )?;
        let hs_token = secret(
            "appservice.hs_token",
            a.hs_token,
            a.hs_token_env,
            a.hs_token_file,
            base,
            hint,
        )?;
        if as_token == hs_token {
            return Err(invalid("appservice.hs_token", "must differ from as_token"));
        }
        let bot = format!("@{}:{domain}", a.bot_localpart);
        let bot: core::OwnedUserId = bot.as_str().try_into().map_err(|_| {
            invalid(
                "appservice.bot_localpart",
                format!("`{bot}` is not a valid Matrix user id"),
            )
        })?;
        ghost_template(&a.ghost_template, &a.bot_localpart)?;
        let bot_avatar = a.bot_avatar.trim();
        if !bot_avatar.is_empty() && !is_mxc(bot_avatar) {
            return Err(invalid(
                "appservice.bot_avatar",
                format!(
                    "`{bot_avatar}` is not an mxc:// URI: upload the picture to the homeserver \
                     and give its mxc://<server>/<id>, or leave it empty"
                ),
            ));
        }
        if a.max_body_bytes < MIN_BODY_BYTES {
            return Err(invalid(
                "appservice.max_body_bytes",
                format!(
                    "{} is too small for a transaction of 100 events: use at least {MIN_BODY_BYTES}",
                    a.max_body_bytes
                ),
            ));
        }
        let g = raw.gitter;
        if is_placeholder(&g.client_id) {
            return Err(invalid(
                "gitter.client_id",
                "not set: register an OAuth application with the Gitter server",
            ));
        }
        let client_secret = secret(
            "gitter.client_secret",
            g.client_secret,
            g.client_secret_env,
            g.client_secret_file,
            base,
            "the OAuth application's secret",
        )?;
        if g.requests_per_minute == 0 {
            return Err(invalid("gitter.requests_per_minute", "must be at least 1"));
        }
        // Zero would mean "no limit" to a reader of the number, and a call without a deadline
        // is how a silent token endpoint once held a user's lane for minutes (issue 12).
        for (key, secs) in [
            ("gitter.connect_timeout_secs", g.connect_timeout_secs),
            ("gitter.request_timeout_secs", g.request_timeout_secs),
        ] {
            if secs == 0 {
                return Err(invalid(
                    key,
                    "must be at least 1: every call to Gitter needs a time limit",
                ));
            }
        }
        if g.stream_idle_timeout_secs < MIN_STREAM_TIMEOUT_SECS {
            return Err(invalid(
                "gitter.stream_idle_timeout_secs",
                format!(
                    "must be at least {MIN_STREAM_TIMEOUT_SECS}: a shorter silence is normal \
                     between heartbeats"
                ),
            ));
        }
        let public_url = url("web.public_url", &raw.web.public_url)?;
        let b = raw.bridge;
        let mut users = Vec::new();
        for u in &b.allow_users {
            users.push(core::OwnedUserId::try_from(u.as_str()).map_err(|_| {
                invalid(
                    "bridge.allow_users",
                    format!("`{u}` is not a Matrix user id"),
                )
            })?);
        }
        let mut domains = Vec::new();
        for d in &b.allow_domains {
            let d = d.trim();
            if d.is_empty() || d.contains(['@', '/', ' ']) {
                return Err(invalid(
                    "bridge.allow_domains",
                    format!("`{d}` is not a server name like example.org"),
                ));
            }
            domains.push(d.to_owned());
        }
        if b.login_link_lifetime_secs == 0 {
            return Err(invalid(
                "bridge.login_link_lifetime_secs",
                "must be at least 1",
            ));
        }
        for (key, n) in [
            ("appservice.max_connections", a.max_connections),
            ("web.max_connections", raw.web.max_connections),
        ] {
            if n == 0 {
                return Err(invalid(
                    key,
                    "must be at least 1: it is how many connections the listener serves at once",
                ));
            }
        }
        let (token_key, token_key_file) = token_key(&raw.store, base)?;
        let media_key = media_key(&raw.web, &hs_token, base)?;
        if raw.web.media_max_bytes == 0 {
            return Err(invalid(
                "web.media_max_bytes",
                "must be at least 1: it is the largest Matrix file linked from Gitter",
            ));
        }
        let log_format = match raw.logging.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "logging.format",
                    format!("`{other}`: use \"pretty\" or \"json\""),
                ));
            }
        };
        let mut core_config = core::Config::with_defaults(&domain);
        core_config.bot = bot;
        core_config.ghost_template = a.ghost_template;
        core_config.ghost_displayname_template = a.ghost_displayname_template;
        core_config.public_url = public_url;
        core_config.oauth_authorize_url =
            url("gitter.oauth_authorize_url", &g.oauth_authorize_url)?;
        core_config.oauth_client_id = g.client_id;
        core_config.gitter_web_url = url("gitter.web_url", &g.web_url)?;
        core_config.permissions = core::Permissions {
            allow_all: b.allow_all,
            domains,
            users,
        };
        core_config.open_portals_on_login = b.open_portals_on_login;
        // Users' own channels exist only on the realtime transport.
        core_config.watch_users = g.faye_url.as_deref().is_some_and(|u| !u.trim().is_empty());
        core_config.eager_join_threshold = b.eager_join_threshold;
        core_config.login_link_lifetime_ms = b.login_link_lifetime_secs * 1000;
        if b.retry_max_secs == 0 {
            return Err(invalid(
                "bridge.retry_max_secs",
                "must be at least 1: a failed message is tried again at least this often"
                    .to_owned(),
            ));
        }
        if b.catch_up_retry_secs == 0 {
            return Err(invalid(
                "bridge.catch_up_retry_secs",
                "must be at least 1".to_owned(),
            ));
        }
        core_config.retry_max_ms = b.retry_max_secs.saturating_mul(1000);
        core_config.retry_min_ms = core_config.retry_min_ms.min(core_config.retry_max_ms);
        core_config.catch_up_retry_ms = b.catch_up_retry_secs.saturating_mul(1000);
        core_config.mapping_retention_ms =
            b.mapping_retention_days.saturating_mul(24 * 60 * 60 * 1000);
        if b.hot_mappings == 0 {
            return Err(invalid(
                "bridge.hot_mappings",
                "must be at least 1 (the mappings kept in memory; the store keeps them all)"
                    .to_owned(),
            ));
        }
        core_config.hot_mappings = b.hot_mappings;
        if b.hot_mappings_per_portal == 0 {
            return Err(invalid(
                "bridge.hot_mappings_per_portal",
                "must be at least 1 (the mappings of one portal kept in memory; the store keeps \
                 them all)"
                    .to_owned(),
            ));
        }
        core_config.hot_mappings_per_portal = b.hot_mappings_per_portal;
        if b.backfill_messages > 100 {
            return Err(invalid(
                "bridge.backfill_messages",
                format!(
                    "{} is more than Gitter gives in one read: use 0 to 100",
                    b.backfill_messages
                ),
            ));
        }
        core_config.backfill_messages = b.backfill_messages;
        core_config.media_key = Some(media_key);
        core_config.media_max_bytes = raw.web.media_max_bytes;
        Ok(Config {
            homeserver_url: url("homeserver.url", &raw.homeserver.url)?,
            domain,
            startup_wait: std::time::Duration::from_secs(raw.homeserver.startup_wait_secs),
            appservice_id: a.id,
            as_bind: addr("appservice.bind", &a.bind)?,
            as_url: url("appservice.url", &a.url)?,
            as_token,
            hs_token,
            bot_localpart: a.bot_localpart,
            bot_displayname: Some(a.bot_displayname.trim().to_owned()).filter(|n| !n.is_empty()),
            bot_avatar: Some(bot_avatar.to_owned()).filter(|a| !a.is_empty()),
            max_body_bytes: a.max_body_bytes,
            gitter_api_url: url("gitter.api_url", &g.api_url)?,
            gitter_stream_url: url("gitter.stream_url", &g.stream_url)?,
            gitter_faye_url: g
                .faye_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .map(|u| url("gitter.faye_url", u))
                .transpose()?,
            oauth_token_url: url("gitter.oauth_token_url", &g.oauth_token_url)?,
            client_secret,
            requests_per_minute: g.requests_per_minute,
            stream_timeout_secs: g.stream_idle_timeout_secs,
            gitter_connect_timeout: std::time::Duration::from_secs(g.connect_timeout_secs),
            gitter_request_timeout: std::time::Duration::from_secs(g.request_timeout_secs),
            media_allow_private_addresses: g.media_allow_private_addresses,
            web_bind: addr("web.bind", &raw.web.bind)?,
            store_path: base.join(&raw.store.path),
            token_key,
            token_key_file,
            as_max_connections: a.max_connections,
            web_max_connections: raw.web.max_connections,
            log_level: log_level(&raw.logging.level)?,
            log_format,
            metrics: raw.metrics.enabled,
            core: core_config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config.example.toml");

    fn filled() -> String {
        EXAMPLE
            .replacen(
                "domain = \"example.org\"",
                "domain = \"chat.example.test\"",
                1,
            )
            .replacen("as_token = \"CHANGE_ME\"", "as_token = \"as-secret\"", 1)
            .replacen("hs_token = \"CHANGE_ME\"", "hs_token = \"hs-secret\"", 1)
            .replacen("client_id = \"CHANGE_ME\"", "client_id = \"cid\"", 1)
            .replacen(
                "client_secret = \"CHANGE_ME\"",
                "client_secret = \"csecret\"",
                1,
            )
    }

    fn error_of(text: &str) -> String {
        Config::parse(text, Path::new("/etc/gb"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_example_with_tokens_filled_in_is_valid() {
        let c = Config::parse(&filled(), Path::new("/etc/gb")).unwrap();
        assert_eq!(c.core.bot.as_str(), "@gitterbot:chat.example.test");
        assert_eq!(c.store_path, PathBuf::from("/etc/gb/gitter-bridge.redb"));
        assert_eq!(c.core.login_link_lifetime_ms, 900_000);
        assert_eq!(c.as_token.expose(), "as-secret");
    }

    #[test]
    fn the_example_domain_left_in_place_is_refused() {
        let text = filled().replace("domain = \"chat.example.test\"", "domain = \"example.org\"");
        let e = error_of(&text);
        assert!(
            e.starts_with("config key `homeserver.domain`: is still the example's"),
            "{e}"
        );
        let text = filled().replace(
            "domain = \"chat.example.test\"",
            "domain = \"matrix.example.com\"",
        );
        assert!(error_of(&text).contains("homeserver.domain"));
    }

    #[test]
    fn the_environment_may_set_the_listeners() {
        let mut c = Config::parse(&filled(), Path::new("/etc/gb")).unwrap();
        c.override_binds(|name| match name {
            "GITTER_BRIDGE_WEB_BIND" => Some("0.0.0.0:8080".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.web_bind.to_string(), "0.0.0.0:8080");
        assert_eq!(c.as_bind.to_string(), "127.0.0.1:29321");
        let e = c
            .override_binds(|name| (name == "GITTER_BRIDGE_APPSERVICE_BIND").then(|| "x".into()))
            .unwrap_err();
        assert!(
            e.to_string().contains("GITTER_BRIDGE_APPSERVICE_BIND"),
            "{e}"
        );
    }

    #[test]
    fn a_listener_may_be_given_by_host_name() {
        let text = filled().replace("bind = \"127.0.0.1:29320\"", "bind = \"localhost:29320\"");
        let c = Config::parse(&text, Path::new("/etc/gb")).unwrap();
        assert!(c.web_bind.ip().is_loopback(), "{}", c.web_bind);
        assert_eq!(c.web_bind.port(), 29320);
        let text = filled().replace("bind = \"127.0.0.1:29320\"", "bind = \"localhost\"");
        assert!(error_of(&text).starts_with("config key `web.bind`"));
    }

    #[test]
    fn the_example_as_shipped_points_to_generate_registration() {
        let shipped = EXAMPLE.replacen(
            "domain = \"example.org\"",
            "domain = \"chat.example.test\"",
            1,
        );
        assert_eq!(
            error_of(&shipped),
            "config key `appservice.as_token`: not set: did you run `gitter-bridge generate-registration`?"
        );
    }

    #[test]
    fn retry_spacing_comes_from_the_bridge_section_and_zero_is_refused() {
        let c = Config::parse(&filled(), Path::new("/etc/gb")).unwrap();
        assert_eq!(c.core.retry_max_ms, 60_000);
        assert_eq!(c.core.catch_up_retry_ms, 30_000);
        let text = filled().replace("retry_max_secs = 60", "retry_max_secs = 0");
        assert!(error_of(&text).starts_with("config key `bridge.retry_max_secs`"));
    }

    #[test]
    fn mapping_retention_and_the_hot_set_come_from_the_bridge_section() {
        let c = Config::parse(&filled(), Path::new("/etc/gb")).unwrap();
        assert_eq!(c.core.mapping_retention_ms, 365 * 24 * 60 * 60 * 1000);
        assert_eq!(c.core.hot_mappings, 100_000);
        assert_eq!(c.core.hot_mappings_per_portal, 1_000);
        let text = filled().replace("mapping_retention_days = 365", "mapping_retention_days = 0");
        let c = Config::parse(&text, Path::new("/etc/gb")).unwrap();
        assert_eq!(c.core.mapping_retention_ms, 0, "0 keeps every mapping");
        let text = filled().replace("hot_mappings = 100000", "hot_mappings = 0");
        assert!(error_of(&text).starts_with("config key `bridge.hot_mappings`"));
        let text = filled().replace(
            "hot_mappings_per_portal = 1000",
            "hot_mappings_per_portal = 0",
        );
        assert!(error_of(&text).starts_with("config key `bridge.hot_mappings_per_portal`"));
    }

    #[test]
    fn a_bad_address_names_the_key() {
        let text = filled().replace("bind = \"127.0.0.1:29320\"", "bind = \"nowhere\"");
        assert!(error_of(&text).starts_with("config key `web.bind`"));
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let text = filled().replace("[web]", "[web]\ncolour = \"blue\"");
        let e = error_of(&text);
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn secrets_can_come_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hs"), "hs-from-file\n").unwrap();
        // SAFETY: the variable is unique to this test.
        unsafe { std::env::set_var("GB_TEST_AS_TOKEN", "as-from-env") };
        let text = filled()
            .replace(
                "as_token = \"as-secret\"",
                "as_token_env = \"GB_TEST_AS_TOKEN\"",
            )
            .replace("hs_token = \"hs-secret\"", "hs_token_file = \"hs\"");
        let c = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(c.as_token.expose(), "as-from-env");
        assert_eq!(c.hs_token.expose(), "hs-from-file");
    }

    #[test]
    fn a_missing_secret_file_names_the_key() {
        let text = filled().replace(
            "hs_token = \"hs-secret\"",
            "hs_token_file = \"/nonexistent/hs\"",
        );
        assert!(error_of(&text).starts_with("config key `appservice.hs_token`: cannot read"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Config::parse(&filled(), Path::new("/")).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("as-secret") && !dump.contains("csecret"));
    }

    #[test]
    fn a_misspelt_log_level_is_refused_instead_of_silencing_the_bridge() {
        let e = error_of(&filled().replace("level = \"info\"", "level = \"debgu\""));
        assert!(
            e.starts_with("config key `logging.level`: `debgu` is not a level"),
            "{e}"
        );
        let ok = filled().replace("level = \"info\"", "level = \"warn,gitter_bridge=debug\"");
        let c = Config::parse(&ok, Path::new("/")).unwrap();
        assert_eq!(c.log_level, "warn,gitter_bridge=debug");
    }

    #[test]
    fn the_bot_profile_and_gitter_web_address_come_from_config() {
        let c = Config::parse(&filled(), Path::new("/")).unwrap();
        assert_eq!(c.bot_displayname.as_deref(), Some("Gitter bridge"));
        assert_eq!(c.bot_avatar, None);
        assert_eq!(c.core.gitter_web_url, "https://gitter.im");
        let set = filled()
            .replace(
                "bot_avatar = \"\"",
                "bot_avatar = \"mxc://example.test/AbC_1-2\"",
            )
            .replace(
                "bot_displayname = \"Gitter bridge\"",
                "bot_displayname = \"\"",
            );
        let c = Config::parse(&set, Path::new("/")).unwrap();
        assert_eq!(c.bot_avatar.as_deref(), Some("mxc://example.test/AbC_1-2"));
        assert_eq!(c.bot_displayname, None, "empty leaves the homeserver's");
        let unset = filled().replace("bot_displayname = \"Gitter bridge\"\n", "");
        let c = Config::parse(&unset, Path::new("/")).unwrap();
        assert_eq!(
            c.bot_displayname, None,
            "an upgrade without the key renames nothing"
        );
        for bad in [
            "https://example.test/bot.png",
            "mxc://example.test/",
            "mxc://x/a/b",
        ] {
            let e = error_of(
                &filled().replace("bot_avatar = \"\"", &format!("bot_avatar = \"{bad}\"")),
            );
            assert!(
                e.starts_with(&format!(
                    "config key `appservice.bot_avatar`: `{bad}` is not an mxc://"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn a_ghost_template_outside_the_namespace_rules_is_refused() {
        for (template, why) in [
            ("Gitter_{username}", "use only a-z"),
            ("gitter {username}", "use only a-z"),
            ("gitter_{username}_{username}", "once"),
            ("{username}", "fixed prefix"),
            ("gitter_", "must contain {username}"),
        ] {
            let text = filled().replace(
                "ghost_template = \"gitter_{username}\"",
                &format!("ghost_template = \"{template}\""),
            );
            let e = error_of(&text);
            assert!(
                e.starts_with("config key `appservice.ghost_template`") && e.contains(why),
                "{template}: {e}"
            );
        }
    }

    #[test]
    fn urls_are_parsed_not_just_prefix_checked() {
        for bad in [
            "http://",
            "https://exa mple.org",
            "http://x.org/?a=b",
            "ftp://x.org",
        ] {
            let text = filled().replace(
                "url = \"http://127.0.0.1:8008\"",
                &format!("url = \"{bad}\""),
            );
            let e = error_of(&text);
            assert!(e.starts_with("config key `homeserver.url`"), "{bad}: {e}");
        }
        let c = Config::parse(
            &filled().replace(
                "public_url = \"http://127.0.0.1:29320\"",
                "public_url = \"https://bridge.example.org/gitter/\"",
            ),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.core.public_url, "https://bridge.example.org/gitter");
    }

    #[test]
    fn gitter_time_limits_have_documented_defaults_and_the_old_key_still_works() {
        let c = Config::parse(&filled(), Path::new("/etc/gb")).unwrap();
        assert_eq!(c.gitter_connect_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.gitter_request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.stream_timeout_secs, 90);

        // Left out, they take the same defaults.
        let bare: String = filled()
            .lines()
            .filter(|l| {
                ![
                    "connect_timeout_secs",
                    "request_timeout_secs",
                    "stream_idle_timeout_secs",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&bare, Path::new("/etc/gb")).unwrap();
        assert_eq!(c.gitter_connect_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.gitter_request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.stream_timeout_secs, 90);

        let old = filled().replace("stream_idle_timeout_secs = 90", "stream_timeout_secs = 45");
        let c = Config::parse(&old, Path::new("/etc/gb")).unwrap();
        assert_eq!(c.stream_timeout_secs, 45);
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let e = error_of(&filled().replace(
            "stream_idle_timeout_secs = 90",
            "stream_idle_timeout_secs = 0",
        ));
        assert!(
            e.starts_with("config key `gitter.stream_idle_timeout_secs`"),
            "{e}"
        );
        for key in ["connect_timeout_secs", "request_timeout_secs"] {
            let e = error_of(&filled().replace(&format!("{key} = "), &format!("{key} = 0 #")));
            assert!(e.starts_with(&format!("config key `gitter.{key}`")), "{e}");
        }
        let e = error_of(&filled().replace("max_body_bytes = 33554432", "max_body_bytes = 0"));
        assert!(
            e.starts_with("config key `appservice.max_body_bytes`"),
            "{e}"
        );
        let e = error_of(&filled().replace(
            "allow_domains = [\"example.org\"]",
            "allow_domains = [\"@alice:example.org\"]",
        ));
        assert!(e.starts_with("config key `bridge.allow_domains`"), "{e}");
    }

    #[test]
    fn connection_caps_have_defaults_the_public_one_smaller_and_zero_is_refused() {
        let c = Config::parse(&filled(), Path::new("/")).unwrap();
        assert_eq!((c.web_max_connections, c.as_max_connections), (256, 512));
        let bare = filled().replace("max_connections = ", "# max_connections = ");
        let c = Config::parse(&bare, Path::new("/")).unwrap();
        assert_eq!((c.web_max_connections, c.as_max_connections), (256, 512));
        let text = filled().replace("max_connections = 256", "max_connections = 20");
        assert_eq!(
            Config::parse(&text, Path::new("/"))
                .unwrap()
                .web_max_connections,
            20
        );
        let e = error_of(&filled().replace("max_connections = 256", "max_connections = 0"));
        assert!(e.starts_with("config key `web.max_connections`"), "{e}");
        let e = error_of(&filled().replace("max_connections = 512", "max_connections = 0"));
        assert!(
            e.starts_with("config key `appservice.max_connections`"),
            "{e}"
        );
    }

    #[test]
    fn the_media_key_is_derived_from_hs_token_unless_one_of_its_own_is_given() {
        let parse = |text: &str| Config::parse(text, Path::new("/etc/gb")).unwrap();
        let derived = parse(&filled()).core.media_key.unwrap();
        assert_eq!(derived, core::MediaKey::derive(b"hs-secret"));
        let own = filled().replace(
            "media_max_bytes = 52428800",
            "media_max_bytes = 1000\nmedia_key = \"0123456789abcdef0123456789\"",
        );
        let c = parse(&own);
        assert_eq!(
            c.core.media_key.unwrap(),
            core::MediaKey::derive(b"0123456789abcdef0123456789")
        );
        assert_eq!(c.core.media_max_bytes, 1000);
        let short = filled().replace("media_max_bytes = 52428800", "media_key = \"short\"");
        let e = error_of(&short);
        assert!(
            e.starts_with("config key `web.media_key`: too short"),
            "{e}"
        );
        assert!(!e.contains("short\""), "the key is never shown: {e}");
        let zero = filled().replace("media_max_bytes = 52428800", "media_max_bytes = 0");
        assert!(error_of(&zero).starts_with("config key `web.media_max_bytes`"));
    }

    fn with_store_key(lines: &str) -> String {
        filled().replace(
            "path = \"gitter-bridge.redb\"",
            &format!("path = \"gitter-bridge.redb\"\n{lines}"),
        )
    }

    #[test]
    fn the_store_key_comes_from_a_file_or_the_environment_as_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "0123456789abcdef".repeat(4);
        std::fs::write(dir.path().join("token.key"), format!("{hex}\n")).unwrap();
        let c = Config::parse(
            &with_store_key("token_key_file = \"token.key\""),
            dir.path(),
        )
        .unwrap();
        assert!(c.token_key.is_some());
        assert_eq!(c.token_key_file, Some(dir.path().join("token.key")));
        assert!(!format!("{c:?}").contains(&hex), "the key shows in Debug");

        // SAFETY: the variable is unique to this test.
        unsafe { std::env::set_var("GB_TEST_TOKEN_KEY", &hex) };
        let c = Config::parse(
            &with_store_key("token_key_env = \"GB_TEST_TOKEN_KEY\""),
            dir.path(),
        )
        .unwrap();
        assert!(c.token_key.is_some() && c.token_key_file.is_none());

        // None of them: tokens in clear, as before.
        assert!(
            Config::parse(&filled(), dir.path())
                .unwrap()
                .token_key
                .is_none()
        );
    }

    #[test]
    fn a_store_key_of_the_wrong_length_or_source_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        // 32 bytes in base64 is not accepted: the format is hex, and says so.
        std::fs::write(
            dir.path().join("b64.key"),
            "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=",
        )
        .unwrap();
        let e = Config::parse(&with_store_key("token_key_file = \"b64.key\""), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "config key `store.token_key_file`: must be 32 bytes written as 64 hex digits"
            ) && e.contains("found 44 characters")
                && !e.contains("ABEiM0"),
            "{e}"
        );
        let e = Config::parse(
            &with_store_key("token_key_file = \"missing.key\""),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config key `store.token_key_file`: cannot read"),
            "{e}"
        );
        unsafe { std::env::set_var("GB_TEST_SHORT_KEY", "abcd") };
        let e = Config::parse(
            &with_store_key("token_key_env = \"GB_TEST_SHORT_KEY\""),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config key `store.token_key_env`: must be 32 bytes"),
            "{e}"
        );
        let e = Config::parse(
            &with_store_key("token_key_file = \"a\"\ntoken_key_env = \"B\""),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_others_is_warned_about_with_its_path_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, filled()).unwrap();
        // Observed in issue 13: a 0644 config after --write-tokens, and nothing said so.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = loose_permissions("config file", &config).expect("0644 is loose");
        assert_eq!(loose.mode, 0o644);
        assert_eq!(
            loose.to_string(),
            format!(
                "the config file {p} is readable by everyone (mode 0644) and holds secrets: \
                 `chmod 600 {p}`",
                p = config.display()
            )
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        let loose = loose_permissions("config file", &config).unwrap();
        assert!(
            loose.to_string().contains("by its group (mode 0640)"),
            "{loose}"
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_permissions("config file", &config), None);
        assert_eq!(
            loose_permissions("store", &dir.path().join("absent.redb")),
            None
        );

        // The config's list: the config, the store, the key file.
        let c = Config::parse(&filled(), dir.path()).unwrap();
        std::fs::write(&c.store_path, "").unwrap();
        std::fs::set_permissions(&c.store_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found: Vec<_> = c
            .loose_permissions(&config)
            .into_iter()
            .map(|l| l.what)
            .collect();
        assert_eq!(found, ["store"]);
    }

    #[test]
    fn allowed_domains_are_kept_trimmed_so_they_match() {
        let text = filled().replace(
            "allow_domains = [\"example.org\"]",
            "allow_domains = [\" example.org \"]",
        );
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(c.core.permissions.domains, ["example.org"]);
    }

    #[test]
    fn a_bridge_nobody_may_use_is_valid_but_warned_about() {
        let text = filled().replace("allow_domains = [\"example.org\"]", "allow_domains = []");
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.starts_with("nobody may use the bridge")),
            "{:?}",
            c.warnings()
        );
        let c = Config::parse(&filled(), Path::new("/")).unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}
