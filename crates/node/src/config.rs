//! The resolved configuration of `hemi devnet` and `hemi node`. The CLI parses flags, the
//! environment and the TOML file into it (precedence and defaults are the CLI's, written once
//! there).

use std::net::SocketAddr;
use std::path::PathBuf;

use bitcoin::Network;

/// Resolved configuration for a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub dir: PathBuf,
    /// Keep state on disk.
    pub persist: bool,
    /// JSON-RPC address.
    pub rpc_addr: SocketAddr,
    /// External Bitcoin peers (empty = embedded node).
    pub bitcoin_peers: Vec<SocketAddr>,
    /// External Bitcoin Core RPC.
    pub bitcoin_rpc: Option<String>,
    /// Embedded miner interval (0 = on request).
    pub bitcoin_block_time: u64,
    /// Embedded node RPC address.
    pub bitcoin_rpc_addr: SocketAddr,
    /// Embedded node P2P address.
    pub bitcoin_p2p_addr: SocketAddr,
    /// Bitcoin network.
    pub network: Network,
    /// L2 block time.
    pub block_time: std::time::Duration,
    /// L2 block gas limit.
    pub gas_limit: u64,
    /// `--follow URL`s (node only; empty: not following).
    pub follow: Vec<String>,
    /// `--p2p-addr`: join the L2's p2p network, listening here.
    pub p2p_addr: Option<SocketAddr>,
    /// `--bootnode` multiaddrs to dial.
    pub bootnodes: Vec<String>,
    /// `--sequencer-address` (node only).
    pub sequencer_address: Option<String>,
    /// Keystone interval, L2 blocks.
    pub keystone_interval: u64,
    /// Superfinality depth, Bitcoin blocks.
    pub superfinality_depth: u32,
    /// Run the built-in PoP miner (devnet).
    pub popm: bool,
    /// PoP payout delay, L2 blocks.
    pub pop_payout_delay: u64,
    /// `--deposit-confirmations`: Bitcoin confirmations before a deposit is minted.
    pub deposit_confirmations: u32,
    /// `--withdrawal-deadline`: L2 blocks before an unpaid withdrawal can be challenged.
    pub withdrawal_deadline: u64,
    /// `--vault FILE`: the tunnel vault (`vault.json` from `hemi custodian keygen`); `None` is
    /// the devnet's deterministic 2-of-3 vault (a follower: the followed node's vault).
    pub vault: Option<PathBuf>,
    /// `--custodians FILE` and `--coordinator-key FILE` (devnet): `hemi custodian` processes
    /// sign payouts and sweeps instead of the built-in set.
    pub custodians: Option<(PathBuf, PathBuf)>,
    /// `--forced-inclusion-confirmations` and `--forced-inclusion-window` (consensus).
    pub forced_inclusion: hemi_chain::forced::ForcedInclusionParams,
    /// Test-only (devnet): senders the sequencer refuses (`--censor`).
    pub censor: Vec<alloy_primitives::Address>,
    /// Test-only (devnet): build blocks without their due forced transactions.
    pub skip_forced: bool,
    /// Whether `--keystone-interval` / `--pop-payout-delay` were given (a follower otherwise
    /// takes the sequencer's).
    pub consensus_params_set: bool,
    /// `--sequencers N` (devnet): validators run in this process (1: one sequencer key seals).
    pub sequencers: usize,
    /// `--sequencer-key` (node): this node's validator key, with `--validators`.
    pub sequencer_key: Option<alloy_primitives::B256>,
    /// `--validators FILE`: the sequencer set (a validator's, or a follower's pin of it).
    pub validators: Option<PathBuf>,
    /// `--consensus-peer ADDRESS=MULTIADDR`: dial that validator there instead of at its
    /// `consensusAddr` (NAT, a relay or proxy).
    pub consensus_peers: Vec<(alloy_primitives::Address, String)>,
    /// Test-only (`--equivocate`, a validator): sign conflicting votes in every round.
    pub equivocate: bool,
    /// `--txpool-max-per-sender` and `--txpool-max-total` (a node's own pool; `None`: the
    /// pool's defaults, 64 per sender as geth's, 100,000 in all).
    pub pool_limits: Option<(usize, usize)>,
    /// The chain spec's validator set, as resolved at start (empty: one sequencer key).
    pub spec_validators: Vec<alloy_primitives::Address>,
    /// Whether the forced-inclusion flags were given (a follower otherwise takes the
    /// sequencer's, whatever else was pinned).
    pub forced_inclusion_set: bool,
}
