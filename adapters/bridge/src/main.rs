//! The `gitter-bridge` binary: what an operator runs next to their homeserver.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gitter_bridge::{Config, listen, logging, registration};

/// A Matrix <-> Gitter puppeting bridge (a Matrix application service).
///
/// First run: copy config.example.toml to config.toml and edit it, then run
/// `gitter-bridge generate-registration --write-tokens`, give the registration file to the
/// homeserver (`app_service_config_files` in Synapse), restart it, and run `gitter-bridge`.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (see config.example.toml).
    #[arg(short, long, global = true, default_value = "config.toml")]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the bridge until SIGTERM or Ctrl-C (the default).
    Run,
    /// Write the registration file the homeserver needs, making tokens if the config has none.
    GenerateRegistration {
        /// Where to write the registration (YAML).
        #[arg(short, long, default_value = "registration.yaml")]
        output: PathBuf,
        /// Write newly made tokens into the config file (its comments are kept).
        #[arg(long)]
        write_tokens: bool,
    },
    /// Check the configuration file, and the registration file the homeserver has, and say
    /// everything that is wrong with them.
    CheckConfig {
        /// The registration file to compare with the config (default: registration.yaml
        /// next to the config, when there is one).
        #[arg(short, long)]
        registration: Option<PathBuf>,
    },
    /// Print the example configuration, with a comment on every key: the start of a
    /// config.toml.
    ExampleConfig,
    /// Ask the running bridge whether it is up (its /health page on web.bind): exit 0 when
    /// it is, 1 when not. For container health checks.
    Health,
}

/// The example configuration, the same as config.example.toml in the repository.
const EXAMPLE_CONFIG: &str = include_str!("../../../config.example.toml");

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { registration } => check_config(&cli.config, registration),
        Command::ExampleConfig => {
            print!("{EXAMPLE_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::Health => health(&cli.config),
        Command::GenerateRegistration {
            output,
            write_tokens,
        } => generate_registration(&cli.config, &output, write_tokens),
        Command::Run => run(&cli.config),
    }
}

fn check_config(config_path: &Path, registration: Option<PathBuf>) -> ExitCode {
    let c = match Config::load(config_path).and_then(|c| {
        c.check_tls()?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut problems = Vec::new();
    // The same check as `run`, so a unit's ExecStartPre catches it.
    if let Ok(limit) = listen::raise_descriptor_limit()
        && let Err(e) = listen::check_budget(limit, c.web_max_connections, c.as_max_connections)
    {
        problems.push(e.to_string());
    }
    // The registration the homeserver loaded must agree with the config, or nothing works
    // and the symptoms (401s, 403s, no transactions) do not say why.
    let beside = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("registration.yaml");
    let registration = registration.or_else(|| beside.exists().then_some(beside));
    let mut checked = None;
    if let Some(path) = &registration {
        match registration::check_file(&c, path) {
            Ok(()) => checked = Some(path.display().to_string()),
            Err(list) => problems.extend(list),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        return ExitCode::from(2);
    }
    println!(
        "{}: OK (bot {}, AS listener {}, login pages {}, store {}{})",
        config_path.display(),
        c.core.bot,
        c.as_bind,
        c.web_bind,
        c.store_path.display(),
        checked.map_or_else(
            || ", no registration file checked".to_owned(),
            |r| format!(", registration {r} agrees")
        ),
    );
    for w in c.warnings() {
        println!("warning: {w}");
    }
    for loose in c.loose_permissions(config_path) {
        println!("warning: {loose}");
    }
    ExitCode::SUCCESS
}

/// `health`: GET the running bridge's /health on web.bind (its loopback address when it
/// listens on every address), with a deadline.
fn health(config_path: &Path) -> ExitCode {
    let c = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut addr = c.web_bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/health");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        client.get(&url).send().await
    });
    match answer {
        Ok(r) if r.status().is_success() => {
            println!("{url}: {}", r.status());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("{url}: {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{url}: no answer ({e})");
            ExitCode::FAILURE
        }
    }
}

fn generate_registration(
    config: &std::path::Path,
    output: &std::path::Path,
    write: bool,
) -> ExitCode {
    match registration::generate(config, output, write) {
        Ok(g) => {
            println!(
                "wrote {} (it holds the tokens: readable by its owner only, or by its group \
                 too if it was before; the homeserver's user must be able to read it)",
                output.display()
            );
            if g.config_updated {
                println!(
                    "wrote the new as_token and hs_token into {}",
                    config.display()
                );
            } else if !g.new_tokens.is_empty() {
                println!(
                    "new tokens were made; put them into [appservice] of {} (or run again with \
                     --write-tokens):",
                    config.display()
                );
                for (key, token) in &g.new_tokens {
                    println!("{key} = \"{}\"", token.expose());
                }
            } else {
                println!("used the tokens already in {}", config.display());
            }
            println!(
                "next: add {} to the homeserver's app_service_config_files, restart the \
                 homeserver, then run `gitter-bridge run -c {}`",
                output.display(),
                config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn run(config_path: &std::path::Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config_path.display(),
        "gitter-bridge starting"
    );
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    // Files that hold secrets and that others may read (issue 13: a 0644 store and config).
    for loose in config.loose_permissions(config_path) {
        tracing::warn!(
            path = %loose.path.display(),
            mode = format!("{:04o}", loose.mode),
            "{loose}"
        );
    }
    // One descriptor budget for both listeners and everything else: raise it as far as the
    // hard limit allows, and refuse caps that cannot fit it (issue 13: idle connections to
    // the public port used up the soft limit of 1024 and the AS listener stopped answering).
    match listen::raise_descriptor_limit() {
        Ok(limit) => {
            match listen::check_budget(limit, config.web_max_connections, config.as_max_connections)
            {
                Ok(left) => tracing::info!(
                    limit = limit.soft,
                    raised_from = limit.before,
                    hard_limit = limit.hard,
                    web_max_connections = config.web_max_connections,
                    appservice_max_connections = config.as_max_connections,
                    left_for_store_and_outgoing = left,
                    "file descriptor budget"
                ),
                Err(e) => {
                    fatal(&format!("cannot start: {e}"));
                    return ExitCode::from(2);
                }
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read the open-file limit; the connection caps are not checked against it"
        ),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match gitter_bridge::start(config).await {
            Ok(r) => r,
            Err(e) => {
                fatal(&format!("cannot start: {e}"));
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = shutdown_signal() => {
                tracing::info!("stop requested; a second signal stops at once");
                // What is committed is safe in the store: an impatient operator may cut the
                // graceful stop short, and the next start replays the outbox.
                tokio::spawn(async {
                    shutdown_signal().await;
                    tracing::warn!("second stop signal: exiting without waiting");
                    std::process::exit(130);
                });
            }
            _ = wait_finished(&running) => {}
        }
        match running.stop().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                fatal(&format!("stopped: {e}"));
                ExitCode::FAILURE
            }
        }
    })
}

/// A fatal error goes to the log; and to stderr as a plain line when the log would not show
/// it (`logging.level = "off"` or a filter that hides this binary's errors), so a failed
/// start never exits without a word.
fn fatal(message: &str) {
    if tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!("{message}");
    } else {
        eprintln!("gitter-bridge: {message}");
    }
}

/// Resolves when the driver ends by itself (a fatal error).
async fn wait_finished(running: &gitter_bridge::Running) {
    while !running.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
