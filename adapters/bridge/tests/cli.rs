//! The `gitter-bridge` binary as an operator runs it: help and version, `check-config`,
//! `generate-registration`, and a failed start whose output names what to fix and carries
//! no token.

use std::path::Path;
use std::process::{Command, Output};

const EXAMPLE: &str = include_str!("../../../config.example.toml");

fn bridge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitter-bridge"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The example with plain-HTTP Gitter URLs (a test build has no TLS) and an OAuth app.
fn loopback_example() -> String {
    EXAMPLE
        .replacen(
            "domain = \"example.org\"",
            "domain = \"chat.example.test\"",
            1,
        )
        .replace("https://api.gitter.im", "http://127.0.0.1:9")
        .replace("https://stream.gitter.im", "http://127.0.0.1:9")
        .replace("https://ws.gitter.im", "http://127.0.0.1:9")
        .replace("https://gitter.im/login", "http://127.0.0.1:9/login")
        .replacen("client_id = \"CHANGE_ME\"", "client_id = \"app\"", 1)
        .replacen(
            "client_secret = \"CHANGE_ME\"",
            "client_secret = \"app-secret-value\"",
            1,
        )
}

/// Tokens in place of the example's placeholders.
fn with_tokens(text: &str) -> String {
    text.replacen("as_token = \"CHANGE_ME\"", "as_token = \"a-token\"", 1)
        .replacen("hs_token = \"CHANGE_ME\"", "hs_token = \"h-token\"", 1)
}

/// A homeserver nobody listens at, not waited for, and the given log level.
fn unreachable_homeserver(text: &str, level: &str) -> String {
    text.replace(
        "url = \"http://127.0.0.1:8008\"",
        "url = \"http://127.0.0.1:9\"",
    )
    .replace("startup_wait_secs = 60", "startup_wait_secs = 0")
    .replace("level = \"info\"", &format!("level = \"{level}\""))
}

/// Ports the system picks, so runs of tests in parallel do not collide.
fn any_ports(text: &str) -> String {
    text.replace("bind = \"127.0.0.1:29321\"", "bind = \"127.0.0.1:0\"")
        .replace("bind = \"127.0.0.1:29320\"", "bind = \"127.0.0.1:0\"")
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn help_and_version_say_what_the_binary_is() {
    let help = bridge(&["--help"]);
    assert!(help.status.success());
    let help = text(&help);
    for word in [
        "run",
        "generate-registration",
        "check-config",
        "example-config",
        "health",
        "--config",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
    let version = text(&bridge(&["--version"]));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

#[test]
fn first_setup_from_the_example_to_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let registration = dir.path().join("registration.yaml");
    std::fs::write(&config, loopback_example()).unwrap();

    // As shipped: the tokens are missing, and it says how to make them.
    let out = bridge(&["check-config", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("appservice.as_token") && text(&out).contains("generate-registration"),
        "{}",
        text(&out)
    );

    let out = bridge(&[
        "generate-registration",
        "-c",
        path_arg(&config),
        "-o",
        path_arg(&registration),
        "--write-tokens",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let yaml = std::fs::read_to_string(&registration).unwrap();
    assert!(
        yaml.contains("as_token: ") && yaml.contains("sender_localpart: gitterbot"),
        "{yaml}"
    );

    let out = bridge(&["check-config", "-c", path_arg(&config)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK (bot @gitterbot:chat.example.test"));
    assert!(
        text(&out).contains("registration.yaml agrees"),
        "the registration beside the config is checked: {}",
        text(&out)
    );

    // A registration that no longer agrees (the config's tokens and namespace changed
    // after it was given to the homeserver): every disagreement, each naming its key.
    let written = std::fs::read_to_string(&config).unwrap();
    let changed = written
        .lines()
        .map(|l| {
            if l.starts_with("hs_token = ") {
                "hs_token = \"another-token\"".to_owned()
            } else if l.starts_with("bot_localpart = ") {
                "bot_localpart = \"otherbot\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, changed).unwrap();
    let out = bridge(&["check-config", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("`hs_token`"), "{said}");
    assert!(said.contains("`sender_localpart`"), "{said}");
    assert!(!said.contains("another-token"), "never a token: {said}");

    // The tokens it wrote never show in what a failed start prints.
    let written = std::fs::read_to_string(&config).unwrap();
    let token = |key: &str| {
        written
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap()
            .to_owned()
    };
    let (as_token, hs_token) = (token("as_token"), token("hs_token"));
    std::fs::write(&config, unreachable_homeserver(&written, "trace")).unwrap();
    let out = bridge(&["run", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out);
    assert!(all.contains("homeserver.url"), "{all}");
    for secret in [as_token.as_str(), hs_token.as_str(), "app-secret-value"] {
        assert!(!all.contains(secret), "a secret reached the output:\n{all}");
    }
}

#[test]
fn example_config_prints_the_example_and_health_says_when_nobody_answers() {
    let out = bridge(&["example-config"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), EXAMPLE);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // Port 9 (discard): nobody serves /health there.
    let text_ = with_tokens(&loopback_example())
        .replace("bind = \"127.0.0.1:29320\"", "bind = \"127.0.0.1:9\"");
    std::fs::write(&config, text_).unwrap();
    let out = bridge(&["health", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("http://127.0.0.1:9/health"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_failed_start_says_why_even_with_logging_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = unreachable_homeserver(&with_tokens(&loopback_example()), "off");
    std::fs::write(&config, text).unwrap();
    let out = bridge(&["run", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start") && err.contains("homeserver.url"),
        "{err}"
    );
}

#[test]
fn a_config_error_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        loopback_example().replace("level = \"info\"", "level = \"verbose\""),
    )
    .unwrap();
    // Run and check-config agree.
    for cmd in ["check-config", "run"] {
        let out = bridge(&[cmd, "-c", path_arg(&config)]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
    }
    let missing = bridge(&["check-config", "-c", "/nonexistent/config.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/config.toml"));
}

#[cfg(not(feature = "rustls"))]
#[test]
fn an_https_server_with_a_binary_built_without_tls_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text_ = with_tokens(&loopback_example())
        .replace("http://127.0.0.1:9/login", "https://gitter.example/login");
    std::fs::write(&config, text_).unwrap();
    let out = bridge(&["check-config", "-c", path_arg(&config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("gitter.oauth_token_url") && text(&out).contains("rustls"),
        "{}",
        text(&out)
    );
}

#[cfg(unix)]
#[test]
fn files_holding_secrets_are_made_private_and_loose_ones_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let registration = dir.path().join("registration.yaml");
    std::fs::write(&config, any_ports(&loopback_example())).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Observed in issue 13: the config stayed 0644 after --write-tokens.
    let out = bridge(&[
        "generate-registration",
        "-c",
        path_arg(&config),
        "-o",
        path_arg(&registration),
        "--write-tokens",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&registration), 0o600);

    // A config someone made readable again is warned about, by check-config and at start.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = bridge(&["check-config", "-c", path_arg(&config)]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = format!(
        "warning: the config file {} is readable by everyone (mode 0644)",
        config.display()
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));

    let written = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, unreachable_homeserver(&written, "warn")).unwrap();
    let out = bridge(&["run", "-c", path_arg(&config)]);
    let log = text(&out);
    assert!(
        log.contains("WARN") && log.contains(&expected["warning: ".len()..]),
        "{log}"
    );
    // The mode is a field of its own too, for log collectors.
    assert!(log.contains("\"0644\""), "{log}");
}

#[test]
fn connection_caps_that_cannot_fit_the_descriptor_limit_are_refused_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text_ = unreachable_homeserver(&with_tokens(&any_ports(&loopback_example())), "info")
        .replace("max_connections = 256", "max_connections = 100000000");
    std::fs::write(&config, text_).unwrap();
    for cmd in ["check-config", "run"] {
        let out = bridge(&[cmd, "-c", path_arg(&config)]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
        let all = text(&out);
        assert!(
            all.contains("web.max_connections (100000000)")
                && all.contains("appservice.max_connections (512)")
                && all.contains("RLIMIT_NOFILE"),
            "{cmd}: {all}"
        );
    }
}
