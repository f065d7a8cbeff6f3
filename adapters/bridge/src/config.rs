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
    #[serde(default = "default_ghost_template")]
    ghost_template: String,
    #[serde(default = "default_ghost_name")]
    ghost_displayname_template: String,
    #[serde(default = "default_body")]
    max_body_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitter {
    api_url: String,
    stream_url: String,
    oauth_authorize_url: String,
    oauth_token_url: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(default = "default_rpm")]
    requests_per_minute: u32,
    #[serde(default = "default_stream_timeout")]
    stream_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    bind: String,
    public_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store")]
    path: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store(),
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

fn default_id() -> String {
    "gitter".into()
}
fn default_bot() -> String {
    "gitterbot".into()
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
fn default_rpm() -> u32 {
    100
}
fn default_stream_timeout() -> u64 {
    90
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

/// The validated configuration.
// Most fields are read by the runtime (`run`), which is not part of this build yet.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct Config {
    /// Homeserver Client-Server base URL.
    pub homeserver_url: String,
    /// Homeserver server name.
    pub domain: String,
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
    /// Largest accepted AS transaction body.
    pub max_body_bytes: usize,
    /// Gitter REST base URL.
    pub gitter_api_url: String,
    /// Gitter stream base URL.
    pub gitter_stream_url: String,
    /// Gitter OAuth token URL.
    pub oauth_token_url: String,
    /// OAuth client secret.
    pub client_secret: core::Secret,
    /// Client-side requests per minute per token.
    pub requests_per_minute: u32,
    /// Stream silence timeout, seconds.
    pub stream_timeout_secs: u64,
    /// Public pages listener.
    pub web_bind: std::net::SocketAddr,
    /// The redb file.
    pub store_path: PathBuf,
    /// Log level / filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether /metrics is served.
    pub metrics: bool,
    /// The core's configuration.
    pub core: core::Config,
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
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(invalid(
            key,
            format!("`{value}` is not an http:// or https:// URL"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn addr(key: &'static str, value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("`{value}` is not an address like 127.0.0.1:29321"),
        )
    })
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
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
        if !a.ghost_template.contains("{username}") {
            return Err(invalid(
                "appservice.ghost_template",
                "must contain {username}",
            ));
        }
        let prefix = a.ghost_template.split("{username}").next().unwrap_or("");
        if prefix.is_empty()
            || a.bot_localpart.starts_with(prefix) && a.bot_localpart.len() > prefix.len()
        {
            return Err(invalid(
                "appservice.ghost_template",
                "needs a fixed prefix (like `gitter_`) that the bot's localpart does not share",
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
        if b.login_link_lifetime_secs == 0 {
            return Err(invalid(
                "bridge.login_link_lifetime_secs",
                "must be at least 1",
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
        core_config.permissions = core::Permissions {
            allow_all: b.allow_all,
            domains: b.allow_domains,
            users,
        };
        core_config.open_portals_on_login = b.open_portals_on_login;
        core_config.eager_join_threshold = b.eager_join_threshold;
        core_config.login_link_lifetime_ms = b.login_link_lifetime_secs * 1000;
        Ok(Config {
            homeserver_url: url("homeserver.url", &raw.homeserver.url)?,
            domain,
            appservice_id: a.id,
            as_bind: addr("appservice.bind", &a.bind)?,
            as_url: url("appservice.url", &a.url)?,
            as_token,
            hs_token,
            bot_localpart: a.bot_localpart,
            max_body_bytes: a.max_body_bytes,
            gitter_api_url: url("gitter.api_url", &g.api_url)?,
            gitter_stream_url: url("gitter.stream_url", &g.stream_url)?,
            oauth_token_url: url("gitter.oauth_token_url", &g.oauth_token_url)?,
            client_secret,
            requests_per_minute: g.requests_per_minute,
            stream_timeout_secs: g.stream_timeout_secs,
            web_bind: addr("web.bind", &raw.web.bind)?,
            store_path: base.join(raw.store.path),
            log_level: raw.logging.level,
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
        assert_eq!(c.core.bot.as_str(), "@gitterbot:example.org");
        assert_eq!(c.store_path, PathBuf::from("/etc/gb/gitter-bridge.redb"));
        assert_eq!(c.core.login_link_lifetime_ms, 900_000);
        assert_eq!(c.as_token.expose(), "as-secret");
    }

    #[test]
    fn the_example_as_shipped_points_to_generate_registration() {
        assert_eq!(
            error_of(EXAMPLE),
            "config key `appservice.as_token`: not set: did you run `gitter-bridge generate-registration`?"
        );
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
}
