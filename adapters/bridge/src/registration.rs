//! `generate-registration`: the registration file the homeserver loads, from the bridge's
//! configuration, with fresh tokens when the configuration has none yet.

use std::path::{Path, PathBuf};

use gitter_bridge_core::Secret;
use gitter_bridge_matrix::{Registration, RegistrationParams, generate_token};

use crate::config::{Config, ConfigError};

/// What went wrong while generating.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The configuration is invalid (apart from the tokens).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registration could not be built.
    #[error("{0}")]
    Registration(String),
}

/// What was generated.
#[derive(Debug)]
pub struct Generated {
    /// The registration written.
    pub registration: Registration,
    /// The tokens made because the config had placeholders: (`as_token` or `hs_token`,
    /// value). Empty when the config's own tokens were used.
    pub new_tokens: Vec<(&'static str, Secret)>,
    /// Whether the new tokens were written into the config file.
    pub config_updated: bool,
}

const TOKEN_KEYS: [&str; 2] = ["as_token", "hs_token"];

fn is_placeholder(value: Option<&toml::Value>) -> bool {
    match value {
        None => true,
        Some(toml::Value::String(s)) => {
            let s = s.trim();
            s.is_empty() || s.eq_ignore_ascii_case("change_me") || s == "..."
        }
        Some(_) => false,
    }
}

/// Reads the config at `config_path`; when its tokens are placeholders, makes new ones (and
/// writes them into the config when `write_tokens`); writes the registration to `output`.
pub fn generate(
    config_path: &Path,
    output: &Path,
    write_tokens: bool,
) -> Result<Generated, GenerateError> {
    let text = std::fs::read_to_string(config_path).map_err(|source| ConfigError::Read {
        path: config_path.to_owned(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: config_path.to_owned(),
        message: e.to_string(),
    })?;
    let appservice = table
        .get_mut("appservice")
        .and_then(toml::Value::as_table_mut)
        .ok_or(ConfigError::Invalid {
            key: "appservice",
            problem: "the [appservice] section is missing".into(),
        })?;
    // Only placeholder tokens are replaced: a real one (inline, or through `_env` or
    // `_file`) is already known to the homeserver and must survive.
    let mut fresh = Vec::new();
    for key in TOKEN_KEYS {
        let indirect = appservice.contains_key(&format!("{key}_env"))
            || appservice.contains_key(&format!("{key}_file"));
        if indirect || !is_placeholder(appservice.get(key)) {
            continue;
        }
        let token = generate_token().map_err(|e| GenerateError::Registration(e.to_string()))?;
        appservice.insert(
            key.to_owned(),
            toml::Value::String(token.expose().to_owned()),
        );
        fresh.push((key, token));
    }
    // The Gitter OAuth app may not be registered yet; the registration does not need it.
    if let Some(gitter) = table.get_mut("gitter").and_then(toml::Value::as_table_mut) {
        for key in ["client_id", "client_secret"] {
            let secret_elsewhere = gitter.contains_key(&format!("{key}_env"))
                || gitter.contains_key(&format!("{key}_file"));
            if !secret_elsewhere && is_placeholder(gitter.get(key)) {
                gitter.insert(key.to_owned(), toml::Value::String("unset".into()));
            }
        }
    }
    let patched =
        toml::to_string(&table).map_err(|e| GenerateError::Registration(e.to_string()))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let config = Config::parse(&patched, base).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: config_path.to_owned(),
            message,
        },
        e => e,
    })?;
    let registration = Registration::generate(&params(&config))
        .map_err(|e| GenerateError::Registration(e.to_string()))?;
    // The new config text first: if the tokens cannot go into it, nothing is written, so no
    // registration ever holds tokens that exist nowhere else.
    let updated = if !fresh.is_empty() && write_tokens {
        let mut updated = text.clone();
        for (key, token) in &fresh {
            updated =
                set_token_line(&updated, key, token.expose()).ok_or(ConfigError::Invalid {
                    key: if *key == "as_token" {
                        "appservice.as_token"
                    } else {
                        "appservice.hs_token"
                    },
                    problem: format!(
                        "--write-tokens needs a `{key} = \"...\"` line in [appservice] to replace"
                    ),
                })?;
        }
        Some(updated)
    } else {
        None
    };
    // The config first: should the registration then fail to be written, a second run keeps
    // the tokens now in the config and writes it; the other order could leave a registration
    // whose tokens the config has lost.
    let config_updated = updated.is_some();
    if let Some(updated) = updated {
        write_private(config_path, &updated, Holder::Config)?;
    }
    write_private(output, &registration.to_yaml(), Holder::Registration)?;
    Ok(Generated {
        registration,
        new_tokens: fresh,
        config_updated,
    })
}

/// Sets `[appservice] key` to `value`, keeping every comment and the rest of the file as the
/// operator wrote it (`toml_edit` keeps the layout, and the value keeps its own decor: a
/// comment after it stays). `None` when the file has no such key to replace (the token comes
/// from `*_env` or `*_file` instead) or is not TOML.
fn set_token_line(text: &str, key: &str, value: &str) -> Option<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().ok()?;
    let item = doc
        .get_mut("appservice")?
        .as_table_like_mut()?
        .get_mut(key)?;
    let old = item.as_value_mut()?;
    let decor = old.decor().clone();
    *old = toml_edit::Value::from(value);
    *old.decor_mut() = decor;
    Some(doc.to_string())
}

/// Which file [`write_private`] writes; both hold the two tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// config.toml, rewritten by `--write-tokens`.
    Config,
    /// The registration file, which the homeserver reads.
    Registration,
}

/// The permission bits of a file written with tokens, given those of the file it replaces.
///
/// Observed (issue 13): config.toml stayed 0644 after `--write-tokens`, its new tokens
/// readable by every local user. A new file is 0600. A config that existed becomes 0600
/// (kept, or tightened). A registration that existed loses every bit for others but keeps
/// its owner's and its group's read bits: the group is how a homeserver running as another
/// user reads it (`chgrp synapse registration.yaml && chmod 640 registration.yaml`).
fn private_mode(holder: Holder, existing: Option<u32>) -> u32 {
    match (holder, existing) {
        (_, None) | (Holder::Config, Some(_)) => 0o600,
        (Holder::Registration, Some(mode)) => mode & 0o640,
    }
}

/// Writes a file atomically: the text goes to a new temporary file beside it (created by
/// `tempfile`, readable by its owner only, never a file or link already there), which then
/// replaces the file, so a crash mid-write never leaves a half-written config or
/// registration. Its mode is [`private_mode`]; a file that exists keeps its owner and group
/// where this process may set them (root rewriting the service user's config leaves it the
/// service user's), and a symlink keeps pointing where it did: its target is replaced.
fn write_private(path: &Path, contents: &str, holder: Holder) -> Result<(), GenerateError> {
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let target = match std::fs::canonicalize(path) {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_owned(),
            Err(e) => return Err(e),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(contents.as_bytes())?;
        let existing = std::fs::metadata(&target).ok();
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mode = private_mode(holder, existing.as_ref().map(|m| m.mode() & 0o7777));
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some(old) = &existing {
                let new = tmp.as_file().metadata()?;
                if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
                    // Only root may give a file away; otherwise the writer keeps it, as before.
                    let _ =
                        std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (holder, existing);
        tmp.as_file().sync_all()?;
        tmp.persist(&target).map_err(|e| e.error)?;
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|source| GenerateError::Write {
        path: path.to_owned(),
        source,
    })
}

/// What the registration must say for this configuration.
fn params(config: &Config) -> RegistrationParams {
    RegistrationParams {
        id: config.appservice_id.clone(),
        url: config.as_url.clone(),
        server_name: config.domain.clone(),
        bot_localpart: config.bot_localpart.clone(),
        ghost_template: config.core.ghost_template.clone(),
        as_token: config.as_token.clone(),
        hs_token: config.hs_token.clone(),
    }
}

/// `check-config`: whether the registration file at `path` agrees with the config. Every
/// disagreement is one line naming the registration key (never a token).
pub fn check_file(config: &Config, path: &Path) -> Result<(), Vec<String>> {
    let at = |p: String| format!("{}: {p}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| vec![at(format!("cannot read: {e}"))])?;
    let registration = Registration::from_yaml(&text).map_err(|e| vec![at(e.to_string())])?;
    match registration.check(&params(config)) {
        Ok(()) => Ok(()),
        Err(gitter_bridge_matrix::RegistrationError::Disagrees(list)) => Err(list
            .iter()
            .map(|m| at(format!("disagrees with the config at {m}")))
            .collect()),
        Err(e) => Err(vec![at(e.to_string())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config with a domain of its own (its `example.org` is refused).
    fn example() -> String {
        include_str!("../../../config.example.toml").replacen(
            "domain = \"example.org\"",
            "domain = \"chat.example.test\"",
            1,
        )
    }

    #[test]
    fn fresh_tokens_go_into_the_registration_and_the_config_keeping_its_comments() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let output = dir.path().join("registration.yaml");
        std::fs::write(&config, example()).unwrap();

        let generated = generate(&config, &output, true).unwrap();
        assert!(!generated.new_tokens.is_empty() && generated.config_updated);
        let written = std::fs::read_to_string(&config).unwrap();
        assert!(!written.contains("as_token = \"CHANGE_ME\""));
        assert!(written.contains("# Tokens shared with the homeserver"));
        let reg = Registration::from_yaml(&std::fs::read_to_string(&output).unwrap()).unwrap();
        assert!(written.contains(&format!("as_token = \"{}\"", reg.as_token.expose())));
        assert!(written.contains(&format!("hs_token = \"{}\"", reg.hs_token.expose())));
        assert_ne!(reg.as_token, reg.hs_token);
        assert_eq!(reg.sender_localpart, "gitterbot");

        // Run again: the tokens now in the config are kept.
        let again = generate(&config, &output, true).unwrap();
        assert!(again.new_tokens.is_empty());
        assert_eq!(again.registration.as_token, reg.as_token);
    }

    #[test]
    fn a_token_is_set_in_place_keeping_the_file_as_written() {
        let text = "# top\n[homeserver]\nas_token = \"not this one\"\n\n[appservice]\n\
                    # the tokens\n  as_token   =   \"CHANGE_ME\"  # from the registration\n\
                    hs_token = \"CHANGE_ME\"\n";
        let out = set_token_line(text, "as_token", "abc\"def").unwrap();
        assert_eq!(
            out,
            "# top\n[homeserver]\nas_token = \"not this one\"\n\n[appservice]\n\
             # the tokens\n  as_token   =   'abc\"def'  # from the registration\n\
             hs_token = \"CHANGE_ME\"\n"
        );
        assert_eq!(
            set_token_line("[appservice]\nas_token_file = \"t\"\n", "as_token", "x"),
            None
        );
        assert_eq!(set_token_line("not = [toml", "as_token", "x"), None);
    }

    #[test]
    fn without_write_tokens_the_config_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, example()).unwrap();
        let generated = generate(&config, &dir.path().join("r.yaml"), false).unwrap();
        assert!(!generated.new_tokens.is_empty() && !generated.config_updated);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), example());
    }

    #[test]
    fn a_bad_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            example().replace("domain = \"chat.example.test\"", "domain = \"\""),
        )
        .unwrap();
        let err = generate(&config, &dir.path().join("r.yaml"), true).unwrap_err();
        assert!(err.to_string().contains("homeserver.domain"), "{err}");
        assert!(!dir.path().join("r.yaml").exists());
    }

    #[test]
    fn a_real_token_is_kept_when_only_the_other_is_a_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let output = dir.path().join("registration.yaml");
        let text = example().replacen(
            "as_token = \"CHANGE_ME\"",
            "as_token = \"the-one-the-homeserver-knows\"",
            1,
        );
        std::fs::write(&config, &text).unwrap();
        let generated = generate(&config, &output, true).unwrap();
        let keys: Vec<_> = generated.new_tokens.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["hs_token"]);
        assert_eq!(
            generated.registration.as_token.expose(),
            "the-one-the-homeserver-knows"
        );
        let written = std::fs::read_to_string(&config).unwrap();
        assert!(written.contains("as_token = \"the-one-the-homeserver-knows\""));
        assert!(!written.contains("hs_token = \"CHANGE_ME\""));
    }

    #[test]
    fn tokens_that_cannot_go_into_the_config_are_not_written_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let output = dir.path().join("registration.yaml");
        // No `hs_token = ...` line to replace.
        let text = example().replacen("hs_token = \"CHANGE_ME\"\n", "", 1);
        std::fs::write(&config, &text).unwrap();
        let err = generate(&config, &output, true).unwrap_err();
        assert!(err.to_string().contains("appservice.hs_token"), "{err}");
        assert!(
            !output.exists(),
            "a registration with unknown tokens was written"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            1,
            "only the config is there: {leftovers:?}"
        );
    }

    #[test]
    fn files_with_tokens_are_never_left_readable_by_others() {
        use Holder::*;
        assert_eq!(private_mode(Config, None), 0o600);
        assert_eq!(private_mode(Registration, None), 0o600);
        for old in [0o644, 0o640, 0o666, 0o600, 0o755] {
            assert_eq!(private_mode(Config, Some(old)), 0o600, "{old:o}");
        }
        assert_eq!(private_mode(Registration, Some(0o644)), 0o640);
        assert_eq!(private_mode(Registration, Some(0o640)), 0o640);
        assert_eq!(private_mode(Registration, Some(0o666)), 0o640);
        assert_eq!(private_mode(Registration, Some(0o600)), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_registration_rewritten_loses_the_others_bits_and_keeps_the_groups() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let output = dir.path().join("registration.yaml");
        std::fs::write(&config, example()).unwrap();
        std::fs::write(&output, "old").unwrap();
        std::fs::set_permissions(&output, std::fs::Permissions::from_mode(0o644)).unwrap();
        generate(&config, &output, true).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&output), 0o640);
        assert_eq!(mode(&config), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn writing_tokens_tightens_a_0644_config_to_0600_and_keeps_its_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("config.toml");
        std::fs::write(&real, example()).unwrap();
        // Observed in issue 13: the config stayed 0644 with the new tokens in it.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let generated = generate(&link, &dir.path().join("r.yaml"), true).unwrap();
        assert!(generated.config_updated);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let written = std::fs::read_to_string(&real).unwrap();
        assert!(!written.contains("as_token = \"CHANGE_ME\""));
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The new registration is the owner's only; no temporary file is left.
        let reg = std::fs::metadata(dir.path().join("r.yaml")).unwrap();
        assert_eq!(reg.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
