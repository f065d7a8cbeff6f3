//! # gitter-bridge: the runtime around the core
//!
//! What an operator runs next to their homeserver. This crate wires the pure core
//! (`gitter-bridge-core`) to its adapters: the redb store, the Matrix AS server and
//! Client-Server client, the Gitter REST client and stream readers, plus the public login
//! pages, metrics and logging.
//!
//! * [`Config`]: the operator's file, validated; every problem names its key.
//! * [`start`] / [`start_on`]: open the store, check the homeserver, listen, check that the
//!   homeserver reaches us, replay the outbox, reopen the streams. Returns [`Running`].
//! * The driver (see [`runtime`]) owns the core: every input goes through it, each group of
//!   steps is committed before anything is acknowledged or executed, and effects run in order
//!   within their lane and concurrently across lanes.
//! * [`registration::generate`]: the registration file for the homeserver.
//!
//! Adapters translate and retry; every bridge decision is the core's.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod config;
mod lanes;
pub mod listen;
pub mod logging;
mod media;
mod metrics;
mod ready;
pub mod registration;
pub mod runtime;
mod web;

pub use config::{Config, ConfigError, LogFormat};
pub use runtime::{Listeners, RunError, Running, StartError, start, start_on};
