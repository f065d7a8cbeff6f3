//! Log output: pretty lines for people or JSON for collectors, filtered by `logging.level`.
//!
//! Secrets cannot reach a line by accident: tokens and codes are `Secret`s whose `Debug` and
//! `Display` hide the value, and no HTTP request line (which may carry a login token or an
//! OAuth code) is logged.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a file or the journal they are
        // noise around every field.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (a test, or the simulator embedding the bridge): keep that one.
    drop(installed);
}
