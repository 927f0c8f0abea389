//! The Proof-of-Proof miner (Hemi's popm).
//!
//! For every keystone of the L2 chain not yet in Bitcoin — published by anyone — the miner
//! builds, signs and broadcasts one Bitcoin transaction: one input of its own key (P2WPKH or
//! P2TR), one `OP_RETURN OP_PUSHDATA1 0x50 "HEMI" ‖ abbreviated keystone` output, and change
//! unless it would be dust. That is at most 202 vB (P2WPKH) or 203 vB (P2TR: a smaller input, a
//! larger change output), against Hemi's 284 vB P2PKH transaction. Fees come from the node's
//! `estimatesmartfee` with a cap; a publication still unconfirmed after `bump_after` Bitcoin
//! blocks is replaced with a higher fee (BIP125 RBF).
//!
//! Restart safety: each transaction is written to the miner's record (a versioned JSON file,
//! replaced atomically) *before* it is broadcast, so after a crash the miner re-broadcasts the
//! very same transaction rather than publishing the keystone twice (Hemi's popm keeps this in
//! memory and re-mines after a restart, Hemi #210), and picks up whatever is unconfirmed.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → chain → **PoP** → finality. The
//! miner talks to a hemi node's JSON-RPC for keystones and its indexed Bitcoin view, and to a
//! Bitcoin node's RPC (Bitcoin Core, or the devnet's embedded node) to broadcast.

mod l2;
mod miner;
mod record;
mod tx;

pub use l2::{L2Client, L2Error, L2Keystone, L2Publication};
pub use miner::{MinerConfig, MinerStatus, PopError, PopMiner, StepReport};
pub use record::{MinerRecord, Publication, RecordError, RECORD_VERSION};
pub use tx::{build_pop_transaction, pop_output};
