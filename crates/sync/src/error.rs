//! The follower's error.

use hemi_chain::ChainError;
use hemi_finality::FinalityError;

/// Why following stopped or a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// A block source failed or answered nonsense.
    #[error("sequencer RPC: {0}")]
    Rpc(String),
    /// The fork rule could not read the chain or Bitcoin.
    #[error("fork choice: {0}")]
    ForkRule(FinalityError),
    /// A block was refused.
    #[error("block {number} refused: {error}")]
    Refused {
        /// Its number.
        number: u64,
        /// Why.
        error: ChainError,
    },
}
