//! (in progress)
/// A bot command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {}
