//! The application-service registration file: generate it, read it, and check that it agrees
//! with the bridge's configuration.
//!
//! The homeserver loads this YAML file (Synapse: `app_service_config_files`) and the bridge
//! must use the same tokens, id and namespace, or nothing works and the symptoms (401s, 403s,
//! silent missing transactions) do not say why. [`Registration::check`] names the key that
//! disagrees instead.
//!
//! Schema: spec `data/api/application-service/definitions/registration.yaml`. The YAML is
//! written and read with `serde-saphyr`.

use std::fmt;

use gitter_bridge_core::Secret;
use serde::{Deserialize, Serialize};

use crate::server::ct_eq;

/// A registration file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Registration {
    /// The appservice id (used in `/appservice/{id}/ping`).
    pub id: String,
    /// Where the homeserver reaches the bridge; `null` means no pushes.
    pub url: Option<String>,
    /// The bridge's token for the Client-Server API.
    pub as_token: Secret,
    /// The homeserver's token for the bridge's AS API.
    pub hs_token: Secret,
    /// The bot's localpart.
    pub sender_localpart: String,
    /// The namespaces the bridge claims.
    pub namespaces: Namespaces,
    /// Whether masqueraded users are rate-limited (Synapse's default when absent: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<bool>,
    /// Whether the homeserver pushes ephemeral events (spec v1.13). The bridge uses none
    /// (typing, receipts and presence are not bridged), so it asks for none.
    #[serde(default, alias = "de.sorunome.msc2409.push_ephemeral")]
    pub receive_ephemeral: bool,
    /// Third-party protocol ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
}

/// The `namespaces` of a registration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Namespaces {
    /// User ids the bridge manages.
    #[serde(default)]
    pub users: Vec<Namespace>,
    /// Room aliases the bridge manages.
    #[serde(default)]
    pub aliases: Vec<Namespace>,
    /// Room ids the bridge manages.
    #[serde(default)]
    pub rooms: Vec<Namespace>,
}

/// One namespace entry (Synapse requires both keys).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Namespace {
    /// Whether only the bridge may use ids matching `regex`.
    pub exclusive: bool,
    /// The regex (matched from the start, like Python's `re.match` in Synapse).
    pub regex: String,
}

/// What the bridge's configuration says; the input of [`Registration::generate`] and
/// [`Registration::check`].
#[derive(Clone, Debug)]
pub struct RegistrationParams {
    /// The appservice id.
    pub id: String,
    /// The URL the homeserver must use to reach the bridge's AS listener.
    pub url: String,
    /// The homeserver's server name.
    pub server_name: String,
    /// The bot's localpart.
    pub bot_localpart: String,
    /// The ghost localpart template, with one `{username}`.
    pub ghost_template: String,
    /// The bridge's as_token.
    pub as_token: Secret,
    /// The homeserver's hs_token.
    pub hs_token: Secret,
}

/// A problem with the registration file.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The YAML could not be read.
    #[error("the registration file is not valid: {0}")]
    Parse(String),
    /// The ghost template cannot produce a safe namespace.
    #[error("configuration error: ghost template {template:?} {why}")]
    BadTemplate {
        /// The template.
        template: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The OS random source failed.
    #[error("could not read random bytes from the OS: {0}")]
    Random(String),
    /// The file and the configuration disagree.
    #[error("the registration file and the bridge config disagree: {}", list(.0))]
    Disagrees(Vec<Mismatch>),
}

/// One disagreement between the registration file and the config. Never shows a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The registration key, e.g. `hs_token` or `namespaces.users`.
    pub key: String,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.detail)
    }
}

fn list(m: &[Mismatch]) -> String {
    m.iter()
        .map(Mismatch::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The exclusive user-namespace regexes for the bot and the ghosts: one anchored regex each,
/// covering `@<bot>:<server>` and `@<template with any localpart text>:<server>` and nothing
/// else. The server name is regex-escaped (its dots are literal).
pub fn user_namespace_regexes(
    server_name: &str,
    bot_localpart: &str,
    ghost_template: &str,
) -> Result<[String; 2], RegistrationError> {
    let bad = |why| RegistrationError::BadTemplate {
        template: ghost_template.to_owned(),
        why,
    };
    let (prefix, suffix) = ghost_template
        .split_once("{username}")
        .ok_or_else(|| bad("has no `{username}`"))?;
    if suffix.contains("{username}") {
        return Err(bad("has more than one `{username}`"));
    }
    if prefix.is_empty() && suffix.is_empty() {
        // The namespace would claim every user of the homeserver.
        return Err(bad("is only `{username}`: ghosts need a prefix or suffix"));
    }
    let server = regex::escape(server_name);
    // `[^:]+`: a localpart never contains `:`, so the match cannot run into the server part.
    let ghosts = format!(
        "^@{}[^:]+{}:{server}$",
        regex::escape(prefix),
        regex::escape(suffix)
    );
    let bot = format!("^@{}:{server}$", regex::escape(bot_localpart));
    if regex::Regex::new(&ghosts)
        .is_ok_and(|r| r.is_match(&format!("@{bot_localpart}:{server_name}")))
    {
        tracing::warn!(
            bot_localpart,
            ghost_template,
            "the bot's localpart has the shape of a ghost: a Gitter user with the matching name \
             would collide with the bot"
        );
    }
    Ok([bot, ghosts])
}

/// A new random token (256 bits from the OS, hex).
pub fn generate_token() -> Result<Secret, RegistrationError> {
    use rand_core::TryRngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| RegistrationError::Random(e.to_string()))?;
    Ok(token_from_bytes(&bytes))
}

/// The alias namespace of portal rooms: each is created with a random alias that makes its
/// creation idempotent (see the core's `PORTAL_ALIAS_PREFIX`). Synapse refuses an
/// application service aliases outside its own namespaces ("This application service has not
/// reserved this kind of alias", `M_EXCLUSIVE`), so the registration claims them.
pub fn portal_alias_regex(server_name: &str) -> String {
    format!(
        "^#{}[0-9a-f]+:{}$",
        regex::escape(gitter_bridge_core::PORTAL_ALIAS_PREFIX),
        regex::escape(server_name)
    )
}

/// A token from caller-supplied random bytes (hex); give it at least 16 bytes.
pub fn token_from_bytes(bytes: &[u8]) -> Secret {
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl Registration {
    /// The registration for this configuration: exclusive user namespace for the bot and the
    /// ghosts, `rate_limited: false` (ghosts relay whole Gitter rooms), no ephemeral events (the
    /// bridge uses none), protocol `gitter`.
    pub fn generate(params: &RegistrationParams) -> Result<Registration, RegistrationError> {
        let regexes = user_namespace_regexes(
            &params.server_name,
            &params.bot_localpart,
            &params.ghost_template,
        )?;
        Ok(Registration {
            id: params.id.clone(),
            url: Some(params.url.clone()),
            as_token: params.as_token.clone(),
            hs_token: params.hs_token.clone(),
            sender_localpart: params.bot_localpart.clone(),
            namespaces: Namespaces {
                users: regexes
                    .into_iter()
                    .map(|regex| Namespace {
                        exclusive: true,
                        regex,
                    })
                    .collect(),
                aliases: vec![Namespace {
                    exclusive: true,
                    regex: portal_alias_regex(&params.server_name),
                }],
                rooms: Vec::new(),
            },
            rate_limited: Some(false),
            receive_ephemeral: false,
            protocols: vec!["gitter".to_owned()],
        })
    }

    /// The registration as YAML, ready for the homeserver. It contains both tokens: write it
    /// with restrictive permissions.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from("# Application-service registration for gitter-bridge.\n");
        out += "# Give this file to the homeserver (Synapse: app_service_config_files). It holds secrets.\n";
        // Strings, numbers, bools and lists of them: nothing that can fail to serialise.
        out += &serde_saphyr::to_string(self).expect("a registration serialises");
        out
    }

    /// Reads a registration file's text.
    pub fn from_yaml(text: &str) -> Result<Registration, RegistrationError> {
        // The parser's message may quote the offending line, which could hold a token: keep
        // only its first line.
        serde_saphyr::from_str(text).map_err(|e| RegistrationError::Parse(redact_parse_error(&e)))
    }

    /// The compiled user-namespace regexes, anchored at the start like Synapse's `re.match`.
    pub fn user_regexes(&self) -> Result<Vec<(bool, regex::Regex)>, RegistrationError> {
        self.namespaces
            .users
            .iter()
            .enumerate()
            .map(|(i, n)| {
                regex::Regex::new(&format!("^(?:{})", n.regex))
                    .map(|r| (n.exclusive, r))
                    .map_err(|e| {
                        RegistrationError::Disagrees(vec![Mismatch {
                            key: format!("namespaces.users[{i}].regex"),
                            detail: format!("not a valid regex: {e}"),
                        }])
                    })
            })
            .collect()
    }

    /// Checks that this registration (as the homeserver loaded it) agrees with the bridge's
    /// configuration: id, url, both tokens (compared in constant time, never printed),
    /// sender_localpart, and an exclusive user namespace covering the bot and the ghosts.
    /// Every disagreement is reported, each naming its key.
    pub fn check(&self, params: &RegistrationParams) -> Result<(), RegistrationError> {
        let mut bad = Vec::new();
        let mut mismatch = |key: &str, detail: String| {
            bad.push(Mismatch {
                key: key.to_owned(),
                detail,
            })
        };
        if self.id != params.id {
            mismatch(
                "id",
                format!("is {:?}, the config says {:?}", self.id, params.id),
            );
        }
        match &self.url {
            None => mismatch(
                "url",
                "is null: the homeserver will push nothing to the bridge".to_owned(),
            ),
            Some(url) if url.trim_end_matches('/') != params.url.trim_end_matches('/') => mismatch(
                "url",
                format!("is {url:?}, the config says {:?}", params.url),
            ),
            Some(_) => {}
        }
        if !ct_eq(
            self.as_token.expose().as_bytes(),
            params.as_token.expose().as_bytes(),
        ) {
            mismatch("as_token", "differs from the config's as_token".to_owned());
        }
        if !ct_eq(
            self.hs_token.expose().as_bytes(),
            params.hs_token.expose().as_bytes(),
        ) {
            mismatch("hs_token", "differs from the config's hs_token".to_owned());
        }
        if self.sender_localpart != params.bot_localpart {
            mismatch(
                "sender_localpart",
                format!(
                    "is {:?}, the config's bot localpart is {:?}",
                    self.sender_localpart, params.bot_localpart
                ),
            );
        }
        let sample_alias = format!(
            "#{}{}:{}",
            gitter_bridge_core::PORTAL_ALIAS_PREFIX,
            "0123456789abcdef0123456789abcdef",
            params.server_name
        );
        let alias_covered = self.namespaces.aliases.iter().any(|n| {
            n.exclusive
                && regex::Regex::new(&format!("^(?:{})", n.regex))
                    .is_ok_and(|r| r.is_match(&sample_alias))
        });
        if !alias_covered {
            bad.push(Mismatch {
                key: "namespaces.aliases".to_owned(),
                detail: format!(
                    "no exclusive entry covers portal aliases such as {sample_alias}; \
                     add `- exclusive: true` with `regex: {:?}` (or generate the file again)",
                    portal_alias_regex(&params.server_name)
                ),
            });
        }
        match self.user_regexes() {
            Err(RegistrationError::Disagrees(list)) => bad.extend(list),
            Err(other) => return Err(other),
            Ok(regexes) => {
                let covered = |user: &str| regexes.iter().any(|(ex, r)| *ex && r.is_match(user));
                let bot = format!("@{}:{}", params.bot_localpart, params.server_name);
                if !covered(&bot) {
                    bad.push(Mismatch {
                        key: "namespaces.users".to_owned(),
                        detail: format!("no exclusive entry covers the bot {bot}"),
                    });
                }
                for sample in ["alice", "bob-42", "x"] {
                    let ghost = format!(
                        "@{}:{}",
                        params.ghost_template.replace("{username}", sample),
                        params.server_name
                    );
                    if !covered(&ghost) {
                        bad.push(Mismatch {
                            key: "namespaces.users".to_owned(),
                            detail: format!(
                                "no exclusive entry covers ghosts such as {ghost} (template {:?})",
                                params.ghost_template
                            ),
                        });
                        break;
                    }
                }
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(RegistrationError::Disagrees(bad))
        }
    }
}

/// The parse error's text without any quoted source line (a token could be on it).
fn redact_parse_error(e: &impl fmt::Display) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or("unreadable YAML")
        .chars()
        .take(200)
        .collect()
}
