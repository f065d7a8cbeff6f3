//! The `gitter-bridge` binary: what an operator runs next to their homeserver.
//!
//! Built so far: the command line and the configuration (`check-config`). The runtime (`run`:
//! driver loop, AS listener, login pages) and `generate-registration` are wired in as the
//! adapters land; until then they exit with an error that says so.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Matrix <-> Gitter puppeting bridge (a Matrix application service).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (see config.example.toml).
    #[arg(short, long, global = true, default_value = "config.toml")]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the bridge (the default).
    Run,
    /// Check the configuration file and say what is wrong with it.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match config::Config::load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: OK (bot {}, AS listener {}, login pages {}, store {})",
                    cli.config.display(),
                    c.core.bot,
                    c.as_bind,
                    c.web_bind,
                    c.store_path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run => {
            if let Err(e) = config::Config::load(&cli.config) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            eprintln!(
                "gitter-bridge: the runtime is not part of this build yet; only check-config works"
            );
            ExitCode::from(2)
        }
    }
}
