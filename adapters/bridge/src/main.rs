//! The `gitter-bridge` binary: what an operator runs next to their homeserver.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gitter_bridge::{Config, logging, registration};

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
    /// Check the configuration file and say what is wrong with it.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match Config::load(&cli.config).and_then(|c| {
            c.check_tls()?;
            Ok(c)
        }) {
            Ok(c) => {
                println!(
                    "{}: OK (bot {}, AS listener {}, login pages {}, store {})",
                    cli.config.display(),
                    c.core.bot,
                    c.as_bind,
                    c.web_bind,
                    c.store_path.display()
                );
                for w in c.warnings() {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::GenerateRegistration {
            output,
            write_tokens,
        } => generate_registration(&cli.config, &output, write_tokens),
        Command::Run => run(&cli.config),
    }
}

fn generate_registration(
    config: &std::path::Path,
    output: &std::path::Path,
    write: bool,
) -> ExitCode {
    match registration::generate(config, output, write) {
        Ok(g) => {
            println!("wrote {}", output.display());
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
    for w in config.warnings() {
        tracing::warn!("{w}");
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
