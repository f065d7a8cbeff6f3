//! `bridge-sim`: test partners for the Matrix <-> Gitter bridge.
//!
//! * [`fake_gitter`] — a fake Gitter server (REST v1, streaming, OAuth) that
//!   follows `docs/gitter-api.md`.
//! * [`fake_hs`] — a fake Matrix homeserver with Synapse's behaviour where a
//!   bridge can tell the difference (`docs/matrix.md`).
//!
//! Each fake is a plain state struct holding every rule (unit tested without
//! HTTP) under a thin axum layer, and a handle type that binds a socket and
//! gives tests a Rust API to act as users and inject faults.

pub mod chaos;
pub mod demo;
pub mod fake_gitter;
pub mod fake_hs;
pub mod faults;
pub mod load;
pub mod restore_bench;
pub mod saturate;
pub mod scenario;
pub mod util;
pub mod world;
