//! # gitter-bridge-matrix: the Matrix side of the Gitter bridge
//!
//! Three parts, each usable on its own:
//!
//! * **AS server** ([`AsServer`], [`server`]): the endpoints the homeserver calls. A
//!   transaction is parsed into the core's [`MatrixEvent`](gitter_bridge_core::MatrixEvent)s
//!   ([`parse`]) and handed to the driver as an [`AsTransaction`] on a [`TransactionSink`].
//!   **Contract:** the homeserver gets `200` only after the driver sends `Ok(())` on the
//!   transaction's `ack`, which it does once the core's step is committed; `Err` or a dropped
//!   `ack` gives `500 M_UNKNOWN`, and the homeserver retries the same transaction. A bad event
//!   never fails a transaction (it becomes `Other` or is skipped), because the homeserver
//!   stalls every later event behind a non-200.
//! * **CS client** ([`MatrixClient`], [`client`]): the Client-Server calls the bridge makes as
//!   the bot or a ghost (identity assertion with `?user_id=`), with bounded retries of 429 /
//!   5xx / network faults, and the executor of the core's Matrix actions
//!   ([`MatrixClient::execute`]). Startup checks: [`MatrixClient::check_homeserver`]
//!   (versions, whoami) before serving, [`MatrixClient::ping`] once the AS listener is up.
//! * **Registration** ([`Registration`], [`registration`]): generate the YAML file for the
//!   homeserver, read it back, and check that it agrees with the config, naming the key that
//!   does not.
//!
//! Errors say whose fault they are ([`MatrixError`], [`PingError`], [`RegistrationError`]).
//! Neither the as_token nor the hs_token is ever logged or put in a URL.
//!
//! TLS to the homeserver needs the `rustls` feature; without it only `http://` works (fine
//! on loopback or a private network).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod client;
pub mod error;
mod exec;
pub mod fetch;
pub mod parse;
pub mod registration;
pub mod server;

pub use client::{
    ClientConfig, MatrixClient, RetryPolicy, Versions, encode_segment, message_content,
};
pub use error::{MatrixError, PingError};
pub use parse::{ParsedTransaction, TransactionParseError, parse_event, parse_transaction};
pub use registration::{
    Mismatch, Namespace, Namespaces, Registration, RegistrationError, RegistrationParams,
    generate_token, portal_alias_regex, token_from_bytes, user_namespace_regexes,
};
pub use server::{
    AsServer, AsServerConfig, AsTransaction, DEFAULT_BODY_LIMIT, TransactionSink,
    TransactionSource, serve, transaction_channel,
};
