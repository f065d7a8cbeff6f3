//! Errors the core reports, each saying whose fault it is.

use crate::ids::EffectId;
use crate::input::Failure;

/// A problem found while handling an input. None of these stop the bridge: they are reported
/// in [`crate::Outputs::warnings`] for the driver to log.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The driver reported a result for an effect that is not pending (misuse by the caller,
    /// or a result delivered twice).
    #[error("result for unknown effect {0}")]
    UnknownEffect(EffectId),
    /// The result's data does not fit the effect (misuse by the caller).
    #[error("effect {id} ({action}) got an unexpected result: {got}")]
    UnexpectedResult {
        /// The effect.
        id: EffectId,
        /// The effect's action name.
        action: &'static str,
        /// What came back.
        got: String,
    },
    /// An effect failed for good (the remote side refused or kept failing).
    #[error("effect {id} ({action}) failed: {failure}")]
    EffectFailed {
        /// The effect.
        id: EffectId,
        /// The effect's action name.
        action: &'static str,
        /// The failure.
        failure: Failure,
    },
    /// An effect failed for a reason that can pass; it stays in the outbox and is tried
    /// again.
    #[error("effect {id} ({action}) failed, try {attempt}, again in {retry_in_ms} ms: {failure}")]
    EffectRetrying {
        /// The effect.
        id: EffectId,
        /// The effect's action name.
        action: &'static str,
        /// The failure.
        failure: Failure,
        /// How many tries have failed so far (since the last start).
        attempt: u32,
        /// When it is tried again.
        retry_in_ms: u64,
    },
    /// An input referred to something the core does not know (a remote sent something odd).
    #[error("ignored input: {0}")]
    Ignored(String),
}
