//! # gitter-bridge-core: the pure state machine of the Matrix <-> Gitter puppeting bridge
//!
//! This crate holds every decision the bridge makes and does no I/O: no sockets, no files, no
//! clock, no OS randomness, no threads, no async. It is driven like quinn-proto or str0m:
//!
//! ```text
//!   driver                                   core
//!   ------                                   ----
//!   Bridge::new(config, seed)            or  Bridge::restore(config, seed, snapshot)
//!   handle(now, Input::Startup)          ->  Outputs
//!   loop {
//!       input = next of { AS transaction, Gitter stream event, web request,
//!                         effect result, timer }
//!       out = handle(now, input)
//!       store.commit(out.changes)            <- FIRST: one durable write transaction
//!       acknowledge(input)                   <- then HTTP 200 / stream cursor
//!       hold(out.holds)                      <- lanes of effects that will be tried again
//!       execute(out.effects)                 <- in order per Lane, concurrently across lanes
//!       answer(out.replies)
//!       arm_timer(out.next_timer)
//!   }
//! ```
//!
//! ## The contract
//!
//! * [`Bridge::new`]`(config, seed)` builds an empty bridge; [`Bridge::restore`]`(config,
//!   seed, snapshot)` rebuilds it from what the store loaded. `seed` ([`Seed`]: 32 bytes, or a
//!   number in tests) feeds the core's own ChaCha RNG, from which login-link tokens, OAuth
//!   states, CSRF tokens and retry jitter are drawn; the driver takes 32 bytes from the OS.
//!   The same seed and inputs give the same outputs.
//! * [`Bridge::handle`]`(now, input)` takes one [`Input`] and returns the step's
//!   [`Outputs`]: one [`ChangeSet`] (what to persist, including the outbox rows of the new
//!   effects and the removal of completed ones), the [`Effect`]s to execute, each with a stable
//!   [`EffectId`] and an ordering [`Lane`], the [`WebReply`]s to pending web requests, and the
//!   next timer deadline.
//! * **Commit before act.** The driver commits a step's change set *before* it acknowledges
//!   the input (the 200 to the homeserver) and *before* it executes the step's effects or
//!   answers its web requests. Steps that arrive together may be committed in one store
//!   transaction (group commit). After a crash, [`Input::Startup`] re-issues every effect still
//!   in the outbox (Gitter sends as reconciling reads first), so nothing acknowledged is lost;
//!   only the steps of a login are dropped, because their browser is gone: the user gets a
//!   fresh link.
//! * Every effect's result comes back as [`Input::EffectDone`] with its id. Adapters retry
//!   transient faults briefly themselves (never a request whose outcome is unknown and that
//!   is not idempotent) and report the outcome, classified by [`FailureKind`]. A durable
//!   effect ([`Action::is_durable`]) that failed for a reason that can pass stays in the
//!   outbox: the step lists it in [`Outputs::holds`], the driver keeps its lane busy, and the
//!   core re-emits it (same id) on its timer after a capped, jittered backoff, as often as it
//!   takes; the driver runs a re-emitted effect at the head of the lane it held.
//! * Time comes in as `now` ([`Timestamp`], ms since the Unix epoch) on every call.
//! * The persistent state is a [`Snapshot`]; a store that applies every committed change set
//!   with [`Snapshot::apply`]'s semantics reproduces it exactly.
//!
//! Problems never panic and never fail a step: a bad event is skipped and reported in
//! [`Outputs::warnings`], because the homeserver stalls every later event behind a non-200.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod avatars;
mod bridge;
mod commands;
mod config;
mod dedupe;
mod edit;
mod effect;
mod error;
mod format;
mod ghost;
mod history;
mod ids;
mod images;
mod input;
mod invite;
mod login;
mod markdown;
mod media;
mod notice;
mod output;
mod portal;
mod prune;
mod realtime;
mod relay;
mod retry;
mod state;
mod step;
mod stream;
mod timers;

pub use bridge::{Bridge, Seed};
pub use commands::Command;
pub use config::{Config, Permissions};
pub use effect::{
    Action, BridgeInfo, CommandThen, Correction, CorrectionKind, Direction, EditThen, Effect,
    GhostThen, GitterCall, ImageMessage, InviteThen, Lane, LoginThen, MatrixCall, MatrixContent,
    Mentions, NewPortal, OutMsgType, PendingImage, PendingRelay, PendingSend, PortalThen,
    PruneThen, RealtimeThen, RelayRef, RelayThen, ResolvePurpose, RoomState, SendOrigin, StoreCall,
    StreamCall, StreamThen, Then, ThreadRef, Uploaded,
};
pub use error::CoreError;
pub use format::{escape_html, sanitize_html};
pub use ghost::ghost_localpart;
pub use ids::{
    AsTxnId, EffectId, GitterMessageId, GitterRoomId, GitterUserId, OwnedEventId, OwnedRoomId,
    OwnedUserId, RequestId, Secret, Timestamp,
};
pub use input::{
    EffectOutput, EffectResult, Failure, FailureKind, GitterMention, GitterMessage, GitterRoom,
    GitterUser, Input, MatrixEvent, MatrixEventKind, Membership, MsgType, RealtimeEvent, Relation,
};
pub use media::{MediaKey, MediaKind, MediaMessage, human_size, media_path};
pub use output::{Happening, Outputs, WebReply};
pub use portal::PORTAL_ALIAS_PREFIX;
pub use state::{
    Change, ChangeSet, GhostRecord, GitterRoomRecord, Login, Mappings, MessageRecord, Origin,
    PortalRecord, PortalState, QueuedKey, Removal, Snapshot, Ticket, UserRecord,
};
