//! Bitcoin header validation and the most-work header tree.
//!
//! This crate is the first link of Hemi's chain of trust
//! (**Bitcoin** → hVM → sequencer → chain → PoP → finality): everything above it reads Bitcoin
//! through a chain of headers, and this crate decides which headers are valid and which chain
//! has the most work. It applies Bitcoin Core's header rules — proof of work
//! (`CheckProofOfWork`), difficulty (`GetNextWorkRequired`, including testnet3's 20-minute
//! rule, testnet4's BIP94 and regtest's fixed difficulty), median time past, the 2-hour future
//! limit, BIP34/66/65 version floors and optional checkpoints — and nothing about block bodies.
//!
//! Main types:
//! - [`ChainParams`]: per-network consensus constants (Core's `chainparams.cpp`) and genesis.
//! - [`HeaderTree`]: every validated branch in memory, the best (most-work valid) tip, the best
//!   chain by height, locators, ancestors, fork points, `invalidate`/`reconsider`.
//! - [`HeaderNode`]: a header with its height, chainwork and invalid mark.
//! - [`HeaderError`]: why a header was rejected, naming the header and expected vs. got.
//! - Context-free rules in [`pow`]: [`next_work_required`], [`check_proof_of_work`], ….
//!
//! The tree is synchronous and allocation-free per header beyond its own storage; callers
//! (the P2P client, the store) wrap it in their own locking.

#![warn(missing_docs)]

mod error;
mod params;
pub mod pow;
mod tree;
mod u256;

pub use error::HeaderError;
pub use params::{ChainParams, MAX_FUTURE_BLOCK_TIME, MAX_TIMEWARP, MEDIAN_TIME_SPAN};
pub use pow::{
    block_work, check_proof_of_work, derive_target, header_hash, next_work_required,
    permitted_difficulty_transition,
};
pub use tree::{HeaderNode, HeaderTree, InsertOutcome};

#[cfg(test)]
mod tests;
