//! Scenario tests of the Matrix adapter: the CS client against a wiremock homeserver, the AS
//! router driven with `tower::ServiceExt::oneshot`, transaction fixtures in Synapse's shape,
//! and the registration file. Shared helpers live in `helpers.rs`.

mod helpers;

mod client;
mod fetch;
mod parse;
mod registration;
mod retry;
mod server;
