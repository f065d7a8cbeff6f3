//! `bridge-sim`: run the simulator's fakes as standalone servers.
//!
//! ```text
//! bridge-sim fake-gitter --bind 127.0.0.1:8090 --seed fixtures/sim/gitter-seed.toml
//! bridge-sim fake-homeserver --bind 127.0.0.1:8008 --registration registration.yaml --server-name localhost
//! ```
//!
//! Each prints the bound address (`listening on http://...`) on stdout and runs
//! until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gitter_bridge_sim::fake_gitter::{FakeGitter, GitterConfig, GitterSeed, GitterState};
use gitter_bridge_sim::fake_hs::{FakeHomeserver, HsConfig, HsState, Registration};
use gitter_bridge_sim::world::WorldOptions;

#[derive(Debug, Parser)]
#[command(
    name = "bridge-sim",
    about = "Test partners for the Matrix <-> Gitter bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario files (one file, or every `*.toml` of a directory) against fresh worlds;
    /// print a transcript per scenario. Exit status 0 when every scenario passed.
    Run {
        /// A scenario file or a directory of them (e.g. fixtures/scenarios).
        path: PathBuf,
    },
    /// Traffic both ways through the real bridge and the fakes; checks exactly-once delivery
    /// and reports throughput, latency and memory, ending with one JSON line.
    Load {
        /// Matrix users, each logged in as their own Gitter user.
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Gitter rooms; every user is in every room.
        #[arg(long, default_value_t = 5)]
        rooms: usize,
        /// Messages per second, both directions together.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Seconds to wait for the last deliveries.
        #[arg(long, default_value_t = 60)]
        settle: u64,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The `gitter-bridge` binary, run as its own process (default: the one beside
        /// `bridge-sim`).
        #[arg(long)]
        bridge_bin: Option<PathBuf>,
        /// Run the bridge inside this process instead (its figures then include the fakes').
        #[arg(long)]
        in_process: bool,
        /// Ramp the offered load from `--rate` (x1.5 per step of `--duration` seconds) to find
        /// the highest rate with a p99 under `--p99-limit-ms`, for the bridge and for direct
        /// PUTs to the fake homeserver; prints one JSON line.
        #[arg(long)]
        saturate: bool,
        /// The p99 latency a sustained rate must keep, with `--saturate`.
        #[arg(long, default_value_t = 100.0)]
        p99_limit_ms: f64,
        /// The bridge reads Gitter over the fake's realtime endpoint (Faye) instead of one
        /// HTTP stream per room.
        #[arg(long)]
        faye: bool,
    },
    /// Builds a store with a long history (`--portals` portals, `--mappings` message
    /// mappings) and measures a start from it in a fresh process: open, hot-set load and
    /// restore. Prints one JSON line (`open_restore_s`, `rss_mib`, `file_bytes_per_mapping`).
    RestoreBench {
        /// Portals (10 per user, 100 per room).
        #[arg(long, default_value_t = 100_000)]
        portals: usize,
        /// Message mappings (each message of a room is mapped in each of its portals).
        #[arg(long, default_value_t = 1_000_000)]
        mappings: u64,
        /// Where to build the store (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Internal: measure a start from this store (the child process).
        #[arg(long, hide = true)]
        measure: Option<PathBuf>,
    },
    /// A fault campaign against the real `gitter-bridge` binary as its own process: steady
    /// traffic both ways through outages, lost answers, flapping and silent streams, hostile
    /// answers, SIGKILLs, SIGTERMs and a full disk. Prints a table per fault and one JSON line;
    /// exit status 0 only when nothing was lost, doubled or reordered.
    Chaos {
        /// The short campaign (outages of seconds, about 10 kills, a few minutes).
        #[arg(long)]
        quick: bool,
        /// The `gitter-bridge` binary (default: the one beside `bridge-sim`).
        #[arg(long)]
        bridge_bin: Option<PathBuf>,
        /// Matrix users, each logged in as their own Gitter user.
        #[arg(long, default_value_t = 2)]
        users: usize,
        /// Gitter rooms; every user is in every room.
        #[arg(long, default_value_t = 2)]
        rooms: usize,
        /// Messages per second, both directions together.
        #[arg(long, default_value_t = 4.0)]
        rate: f64,
        /// Seed of the random choices (directions, rooms, kill moments).
        #[arg(long, default_value_t = 12)]
        seed: u64,
    },
    /// Run the user journey end to end (fakes and the real bridge, in this process) and print
    /// a transcript. Exit status 0 when every step happened.
    Demo {
        /// Keep the bridge's files (config, registration, redb) in this directory instead of
        /// a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the fake Gitter: the API host (REST under /v1, OAuth under /login/oauth) and the
    /// stream host (/v1/rooms/{id}/chatMessages) on two listeners.
    FakeGitter {
        /// Address of the API host (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Address of the stream host (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        stream_bind: SocketAddr,
        /// A pre-approved test user: the OAuth authorize page signs them in and redirects at
        /// once instead of showing the sign-in form.
        #[arg(long)]
        auto_approve: Option<String>,
        /// TOML seed with users, rooms and one-to-one rooms.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// Interval between `" \n"` stream heartbeats, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        stream_heartbeat_ms: u64,
        /// Requests per 60 s per (user, OAuth client).
        #[arg(long, default_value_t = 100)]
        rate_limit: u32,
        /// OAuth client id of the one registered app.
        #[arg(long, default_value = "sim-client-id")]
        client_id: String,
        /// OAuth client secret.
        #[arg(long, default_value = "sim-client-secret")]
        client_secret: String,
        /// The app's registered redirect URI (matched exactly).
        #[arg(long, default_value = "http://127.0.0.1:29322/oauth/callback")]
        redirect_uri: String,
        /// Also publish every realtime event to this Faye server's Bayeux endpoint (the e2e
        /// test runs the protocol's reference server there, tests/faye).
        #[arg(long, requires = "faye_secret")]
        faye_publish: Option<String>,
        /// The secret that Faye server requires of server-side publishes.
        #[arg(long)]
        faye_secret: Option<String>,
    },
    /// Run the fake homeserver for one application service.
    FakeHomeserver {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// The AS registration YAML (id, url, as_token, hs_token, sender_localpart, namespaces).
        #[arg(long)]
        registration: PathBuf,
        /// The homeserver's server name (the part after `:` in user ids).
        #[arg(long, default_value = "localhost")]
        server_name: String,
        /// First retry delay of a failed AS transaction (Synapse: 2000), doubling up to 512 s.
        #[arg(long, default_value_t = 2000)]
        push_backoff_ms: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own transcript on stdout; keep the log to problems.
    let default_level = match cli.command {
        Command::Demo { .. }
        | Command::Load { .. }
        | Command::Run { .. }
        | Command::Chaos { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run { path } => gitter_bridge_sim::scenario::run_cli(&path).await,
        Command::Load {
            users,
            rooms,
            rate,
            duration,
            settle,
            seed,
            bridge_bin,
            in_process,
            saturate,
            p99_limit_ms,
            faye,
        } => {
            if users < 2 || rooms < 1 || rate <= 0.0 {
                return Err(
                    "--users must be at least 2, --rooms at least 1, --rate above 0".into(),
                );
            }
            let bridge_bin = match (in_process, bridge_bin) {
                (true, _) => None,
                (false, Some(bin)) => Some(bin),
                (false, None) => {
                    let bin = gitter_bridge_sim::chaos::default_bridge_bin();
                    if !bin.exists() {
                        return Err(format!(
                            "no bridge binary at {} (cargo build --release --bin \
                             gitter-bridge, or --bridge-bin PATH, or --in-process)",
                            bin.display()
                        ));
                    }
                    Some(bin)
                }
            };
            if saturate {
                let report = gitter_bridge_sim::saturate::run(
                    gitter_bridge_sim::saturate::SaturateOptions {
                        users,
                        rooms,
                        start_rate: rate,
                        growth: 1.5,
                        step: Duration::from_secs(duration),
                        max_steps: 20,
                        p99_limit_ms,
                        bridge_bin,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
                println!("{}", report.json());
                return Ok(());
            }
            let report = gitter_bridge_sim::load::run(gitter_bridge_sim::load::LoadOptions {
                users,
                rooms,
                rate,
                duration: Duration::from_secs(duration),
                settle: Duration::from_secs(settle),
                seed,
                bridge_bin,
                faye,
            })
            .await
            .map_err(|e| e.to_string())?;
            gitter_bridge_sim::load::print(&report);
            if report.exactly_once() {
                Ok(())
            } else {
                Err("some messages were lost or doubled".into())
            }
        }
        Command::Chaos {
            quick,
            bridge_bin,
            users,
            rooms,
            rate,
            seed,
        } => {
            if users < 2 || rooms < 1 || rate <= 0.0 {
                return Err(
                    "--users must be at least 2, --rooms at least 1, --rate above 0".into(),
                );
            }
            let mut options = gitter_bridge_sim::chaos::ChaosOptions::new(quick);
            if let Some(bin) = bridge_bin {
                options.bridge_bin = bin;
            }
            options.users = users;
            options.rooms = rooms;
            options.rate = rate;
            options.seed = seed;
            let report = gitter_bridge_sim::chaos::run(options)
                .await
                .map_err(|e| e.to_string())?;
            print!("{}", report.table());
            for p in &report.problems {
                eprintln!("chaos problem: {p}");
            }
            println!("{}", report.json());
            if report.clean() {
                Ok(())
            } else {
                Err("messages were lost, doubled or reordered".into())
            }
        }
        Command::RestoreBench {
            portals,
            mappings,
            dir,
            measure,
        } => {
            use gitter_bridge_sim::restore_bench;
            if let Some(path) = measure {
                return restore_bench::measure(&path);
            }
            if portals == 0 {
                return Err("--portals must be at least 1".into());
            }
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let temp;
            let dir = match dir {
                Some(d) => d,
                None => {
                    temp = tempfile::tempdir().map_err(|e| e.to_string())?;
                    temp.path().to_path_buf()
                }
            };
            tokio::task::spawn_blocking(move || restore_bench::run(&exe, &dir, portals, mappings))
                .await
                .map_err(|e| e.to_string())?
        }
        Command::Demo { dir } => {
            let options = WorldOptions {
                dir,
                ..WorldOptions::default()
            };
            gitter_bridge_sim::demo::run(options)
                .await
                .map_err(|e| e.to_string())
        }
        Command::FakeGitter {
            bind,
            stream_bind,
            auto_approve,
            seed,
            stream_heartbeat_ms,
            rate_limit,
            client_id,
            client_secret,
            redirect_uri,
            faye_publish,
            faye_secret,
        } => {
            let config = GitterConfig {
                client_id,
                client_secret,
                redirect_uri,
                rate_limit,
                heartbeat: Duration::from_millis(stream_heartbeat_ms.max(1)),
                auto_approve,
                ..GitterConfig::default()
            };
            let state = match seed {
                Some(path) => FakeGitter::seeded_state(config, &GitterSeed::load(&path)?)?,
                None => GitterState::new(config),
            };
            let mut server = FakeGitter::spawn_with_stream(bind, stream_bind, state)
                .await
                .map_err(|e| format!("cannot bind {bind} and {stream_bind}: {e}"))?;
            if let (Some(url), Some(secret)) = (faye_publish, faye_secret) {
                server.forward_faye(url, secret);
            }
            println!("fake-gitter listening on {}", server.base_url);
            println!("realtime (Bayeux) url: {}", server.faye_url());
            println!("stream base url: {}", server.stream_base_url());
            wait_for_ctrl_c().await;
            server.shutdown().await;
            Ok(())
        }
        Command::FakeHomeserver {
            bind,
            registration,
            server_name,
            push_backoff_ms,
        } => {
            let reg = Registration::load(&registration)?;
            let mut config = HsConfig::new(&server_name, reg);
            config.push_backoff_base = Duration::from_millis(push_backoff_ms.max(1));
            let state = HsState::new(config)?;
            let server = FakeHomeserver::spawn(bind, state)
                .await
                .map_err(|e| format!("cannot bind {bind}: {e}"))?;
            println!("fake-homeserver listening on {}", server.base_url);
            wait_for_ctrl_c().await;
            server.shutdown().await;
            Ok(())
        }
    }
}

async fn wait_for_ctrl_c() {
    // Ctrl-C, or SIGTERM from a script stopping the fake by PID.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                r = tokio::signal::ctrl_c() => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
                    }
                    return;
                }
            }
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
    }
}
