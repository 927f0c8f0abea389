//! The Hemi L2 chain: Ethereum-shaped blocks sealed by the sequencer, executed by the hVM,
//! with state and Merkle-Patricia roots in redb.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → **chain** → PoP → finality.
//!
//! Main items: [`Chain`] (genesis, [`Chain::build_block`], [`Chain::import_block`], reads),
//! [`L2Block`], [`L2Tx`] (Ethereum envelopes plus Hemi's `0x7C` Bitcoin-attributes
//! transaction and the `0x7D` PoP payout, [`pop_rewards`]), [`ChainSpec`] and the devnet's standard accounts.

pub mod block;
mod chain;
pub mod db;
pub mod exec;
mod genesis;
mod overlay;
pub mod pop_rewards;
pub mod tx;

pub use block::{L2Block, L2Receipt, Seal};
pub use chain::{
    created_address, gas_used_by, AccountProof, BlockWithReceipts, Built, Chain, LocatedLog,
    StoredBlock,
};
pub use db::{StateView, StoredAccount, SCHEMA_VERSION};
pub use exec::{BlockContext, CallOutcome};
pub use genesis::{dev_accounts, eth_address, ChainSpec, DevAccount, GenesisError, DEV_MNEMONIC};
pub use pop_rewards::{PopPayout, PopPayoutTx};
pub use tx::{BtcAttributesTx, L2Tx, SignedTx};

use alloy_primitives::B256;

/// Errors of the L2 chain.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// A stored record does not decode.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// The database was written by another format version.
    #[error("database schema version {found}, this build reads {expected}")]
    SchemaVersion {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The database holds another chain.
    #[error("database genesis {stored} differs from the chain spec's {spec}")]
    GenesisMismatch {
        /// Stored genesis hash.
        stored: B256,
        /// The spec's genesis hash.
        spec: B256,
    },
    /// No such block.
    #[error("header not found")]
    UnknownBlock(u64),
    /// A block breaks a rule.
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    /// A block's seal is missing or not the sequencer's.
    #[error("invalid seal: {0}")]
    InvalidSeal(String),
    /// Our Bitcoin client does not know the block's pinned Bitcoin block yet.
    #[error("Bitcoin not ready: {0}")]
    BitcoinNotReady(String),
    /// A call could not run (geth's message).
    #[error("{0}")]
    Call(String),
    /// Too many logs matched.
    #[error("query returned more than {0} results")]
    TooManyLogs(usize),
}
