//! The Hemi L2 chain: its chain spec and genesis (blocks, state and Merkle-Patricia roots build
//! on this).
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → **chain** → PoP → finality.
//!
//! Main items: [`ChainSpec`] (genesis allocation, chain id, gas limit), [`dev_accounts`] (the ten
//! accounts of the standard test mnemonic that anvil and hardhat print, so every Ethereum tool's
//! defaults work against the devnet).

mod genesis;

pub use genesis::{dev_accounts, ChainSpec, DevAccount, GenesisError, DEV_MNEMONIC};
