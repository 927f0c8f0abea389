//! The Hemi sequencer's mempool (Hemi's BSS): where user transactions wait to be sequenced.
//!
//! Place in the chain of trust: Bitcoin → hVM → **sequencer** → chain → PoP → finality. The
//! sequencer orders user transactions into L2 blocks; this crate decides which transactions it
//! may choose from and in what order, with go-ethereum's semantics so that wallets see the
//! behaviour (and the error strings) they already know from Ethereum.
//!
//! - [`TxPool::add_raw`] decodes an EIP-2718 transaction (legacy with EIP-155, EIP-2930,
//!   EIP-1559; blob and set-code transactions are refused), recovers the sender, validates it
//!   statelessly and against an [`AccountState`], and inserts it. Refusals are [`PoolError`]s
//!   whose messages are geth's.
//! - Per sender, transactions are kept by nonce: *pending* ones are contiguous from the account
//!   nonce, *queued* ones wait behind a gap. Same sender and nonce replaces only with a
//!   [`PoolConfig::price_bump_percent`] bump on both fees.
//! - [`TxPool::best`] picks the next block's transactions; [`TxPool::on_block`] drops what a
//!   block included or made invalid and promotes queued transactions.
//! - [`TxPool::to_journal`] / [`TxPool::from_journal`] carry the pool across a clean restart.
//!
//! The pool is a plain `&mut self` structure: the sequencer service owns it (or wraps it in a
//! lock) and does bulk signature recovery off the async runtime.

mod config;
mod error;
mod journal;
mod pool;
mod validate;

pub use alloy_primitives::TxHash;
pub use config::PoolConfig;
pub use error::{JournalError, PoolError};
pub use journal::JOURNAL_VERSION;
pub use pool::{AccountState, PoolContent, PooledTx, TxPool};
pub use validate::{intrinsic_gas, Checked, MAX_INITCODE_SIZE, MAX_TX_SIZE};

#[cfg(test)]
mod tests;
