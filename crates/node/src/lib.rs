//! The hemi node, assembled: what `hemi devnet` and `hemi node` run.
//!
//! Place in the chain of trust: this crate wires every part — Bitcoin client and (devnet) the
//! embedded regtest node → hVM → sequencer or follower → chain → PoP miner → finality — and serves
//! them over one JSON-RPC endpoint. The `hemi` binary only parses arguments into a [`Config`]
//! and calls [`devnet`], [`node`] or [`run_popm`].
//!
//! Main items: [`Config`]; [`devnet`] (every part in one process, like anvil); [`node`] (a
//! node following external Bitcoin Core peers and, with `--follow`, a sequencer's blocks);
//! [`NodeBackend`], the `eth_` namespace answered from the chain, the pool and the follower;
//! the tunnel's `hemi_getTunnel`, `hemi_getDeposit` and `hemi_getProvenance`.

mod config;
mod custodian;
mod debug;
mod devbitcoin;
mod devnet;
mod eth;
mod explorer;
mod follow;
mod forced;
mod metrics;
mod ots;
mod p2p;
mod popm;
mod provenance;
mod serve;
mod set;
mod signal;
mod storage;
mod tunnel;

pub use config::Config;
pub use devnet::{devnet, DEVNET_BTC_KEY_SEED, DEVNET_SEQUENCER_KEY_SEED};
pub use eth::NodeBackend;
pub use follow::node;
pub use popm::run_popm;
pub use set::{validator_addresses, MAX_DEVNET_SEQUENCERS};
pub use signal::shutdown_signal;
pub use tunnel::{
    DEVNET_DEPOSIT_FEE, DEVNET_MIN_DEPOSIT, DEVNET_RECOVERY_AFTER, DEVNET_RECOVERY_KEY_SEED,
};
