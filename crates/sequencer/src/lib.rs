//! The Bitcoin-Secure Sequencer (Hemi's BSS) and the follower.
//!
//! Place in the chain of trust: Bitcoin → hVM → **sequencer** → chain → PoP → finality.
//!
//! - [`Sequencer`] keeps the mempool and, every block time, builds the next L2 block: the
//!   Bitcoin-attributes transaction pinning the Bitcoin tip our client follows (with the headers
//!   added since the parent's pin, at most six), then pool transactions by fee, sealed with the
//!   sequencer's key.
//! - [`follower`] fetches a sequencer's blocks over JSON-RPC, checks the seal, re-executes
//!   them against its own Bitcoin client and refuses any whose roots differ.

pub mod follower;
mod pin;
mod sequencer;

pub use pin::{next_attributes, resolve_pin};
pub use sequencer::{pin_for, Sequencer, SequencerConfig, SubmitError};
