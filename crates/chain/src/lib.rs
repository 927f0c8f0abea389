//! The Hemi L2 chain: Ethereum-shaped blocks sealed by the sequencer, executed by the hVM,
//! with state and Merkle-Patricia roots in redb.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → **chain** → PoP → finality.
//!
//! Main items: [`Chain`] (genesis, [`Chain::build_block`], [`Chain::import_block`], reads),
//! [`L2Block`], [`L2Tx`] (Ethereum envelopes plus Hemi's `0x7C` Bitcoin-attributes
//! transaction, the `0x7D` PoP payout ([`pop_rewards`]) and the tunnel's `0x7E`/`0x7F` ([`tunnel`])), [`ChainSpec`] and the devnet's standard accounts.

pub mod block;
pub mod certificate;
mod chain;
pub mod db;
pub mod dev;
mod error;
pub mod exec;
pub mod forced;
mod genesis;
pub mod pin;
pub mod pop_rewards;
pub mod seal;
mod state;
pub mod system;
pub mod tunnel;
pub mod tx;

pub use block::{L2Block, L2Receipt, Seal};
pub use certificate::{Certificate, ValidatorSet};
pub use chain::{
    created_address, gas_used_by, AccountProof, BlockWithReceipts, Built, Chain, LocatedLog,
    StoredBlock,
};
pub use db::{StoredAccount, SCHEMA_VERSION};
pub use exec::{BlockContext, CallOutcome};
pub use genesis::{dev_accounts, eth_address, ChainSpec, DevAccount, GenesisError, DEV_MNEMONIC};
pub use pop_rewards::{PopPayout, PopPayoutTx};
pub use state::StateView;
pub use tunnel::{DepositTx, TunnelActivationTx, TunnelSpec};
pub use tx::{BtcAttributesTx, ImpersonatedTx, L2Tx, SignedTx, IMPERSONATED_TX_TYPE};

pub use error::{BlockError, ChainError, PayoutSummary, SealError, TxDecodeError};
pub use seal::{SealVerifier, Sealer, SequencerAddress};
