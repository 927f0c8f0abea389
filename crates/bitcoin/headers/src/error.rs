//! The crate's error type.

use bitcoin::pow::{CompactTarget, Target};
use bitcoin::BlockHash;

/// Why a header was rejected.
///
/// Each variant names the header and carries expected vs. got where there is one, so the message
/// alone tells an operator which header broke which rule. The Bitcoin Core reject reason for the
/// same condition is given in each variant's doc.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The header's parent is not in the tree (`prev-blk-not-found`).
    #[error("header {hash}: parent {prev} is unknown; fetch the headers leading to it first")]
    UnknownParent {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Its `prev_blockhash`.
        prev: BlockHash,
    },
    /// `nBits` decodes to a negative, zero or overflowing target, or one easier than the
    /// network's proof-of-work limit (`high-hash`).
    #[error(
        "header {hash}: bits {:#010x} are not a valid target for this network (negative, zero, overflowing or above the pow limit {:#010x})",
        .bits.to_consensus(), .pow_limit.to_consensus()
    )]
    BadTarget {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// The header's `nBits`.
        bits: CompactTarget,
        /// The network's proof-of-work limit in compact form.
        pow_limit: CompactTarget,
    },
    /// The header hash is above the target its own `nBits` encode (`high-hash`).
    #[error("header {hash}: hash is above its target {target:x}; the header is corrupt or forged")]
    BadProofOfWork {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Target decoded from the header's `nBits`.
        target: Target,
    },
    /// `nBits` differ from what the difficulty rules require at this height (`bad-diffbits`).
    #[error(
        "header {hash}: bits {:#010x}, expected {:#010x} at height {height}",
        .got.to_consensus(), .expected.to_consensus()
    )]
    BadDifficultyBits {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Height the header would have.
        height: u32,
        /// Bits required by `GetNextWorkRequired`.
        expected: CompactTarget,
        /// Bits in the header.
        got: CompactTarget,
    },
    /// Timestamp not after the median of the previous 11 blocks (`time-too-old`).
    #[error("header {hash}: time {time} is not after the median time past {median_time_past}")]
    TimeTooOld {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// The header's timestamp.
        time: u32,
        /// Median time past of its parent.
        median_time_past: u32,
    },
    /// Timestamp more than two hours after the caller's clock (`time-too-new`). Not permanent:
    /// the header may be accepted later, or the local clock is wrong.
    #[error("header {hash}: time {time} is more than 2h in the future (max {max}); check the local clock or retry later")]
    TimeTooNew {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// The header's timestamp.
        time: u32,
        /// Latest acceptable timestamp (`now + 7200`).
        max: u64,
    },
    /// BIP94: the first block of a difficulty period is more than 600 s before its parent
    /// (`time-timewarp-attack`).
    #[error("header {hash}: time {time} at retarget height {height} is earlier than the minimum {min} (BIP94 timewarp rule)")]
    TimewarpAttack {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Height the header would have.
        height: u32,
        /// The header's timestamp.
        time: u32,
        /// Parent time minus 600 s.
        min: i64,
    },
    /// Version below what BIP34/66/65 require at this height (`bad-version`).
    #[error("header {hash}: version {version:#010x} is obsolete at height {height}, need at least {min}")]
    ObsoleteVersion {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Height the header would have.
        height: u32,
        /// The header's version.
        version: i32,
        /// Minimum version at this height.
        min: i32,
    },
    /// A header at a checkpoint height has a different hash (`checkpoint mismatch`).
    #[error("header at checkpoint height {height} is {got}, expected {expected}")]
    CheckpointMismatch {
        /// Checkpoint height.
        height: u32,
        /// Checkpointed hash.
        expected: BlockHash,
        /// Hash of the rejected header.
        got: BlockHash,
    },
    /// The header would fork the chain below the last checkpoint we have
    /// (`bad-fork-prior-to-checkpoint`).
    #[error("header {hash}: forks at height {height}, below the last known checkpoint at height {checkpoint_height}")]
    ForkBeforeCheckpoint {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// Height the header would have.
        height: u32,
        /// Height of the last checkpoint present in the tree.
        checkpoint_height: u32,
    },
    /// The header's parent (and so the header) is marked invalid (`bad-prevblk`).
    #[error("header {hash}: builds on invalid header {prev}; reconsider the ancestor if it was invalidated by mistake")]
    InvalidAncestor {
        /// Hash of the rejected header.
        hash: BlockHash,
        /// The invalid parent.
        prev: BlockHash,
    },
    /// The header is already in the tree and marked invalid (`duplicate-invalid`).
    #[error("header {hash} is known and marked invalid")]
    KnownInvalid {
        /// Hash of the header.
        hash: BlockHash,
    },
}

impl HeaderError {
    /// Whether the rejection may go away on its own (clock skew, missing parent), as opposed
    /// to the header being invalid for good. Peers sending only transient failures should not
    /// be penalised.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HeaderError::TimeTooNew { .. } | HeaderError::UnknownParent { .. }
        )
    }
}
