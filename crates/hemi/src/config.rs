//! Configuration: every flag also reads from the TOML config (`--config FILE`, or `hemi.toml` in
//! `--dir`) and from `HEMI_<FLAG_IN_CAPS>`. Precedence: flag > environment > file > default.
//! The defaults are written once, here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use bitcoin::Network;
use clap::Args;
use hemi_node::Config;
use serde::Deserialize;

/// Default JSON-RPC address.
pub(crate) const DEFAULT_RPC_ADDR: &str = "127.0.0.1:8545";
/// Default embedded-regtest Bitcoin block time, seconds.
pub(crate) const DEFAULT_BITCOIN_BLOCK_TIME: u64 = 10;

/// Flags shared by `devnet` and `node`.
#[derive(Debug, Args, Default)]
pub(crate) struct CommonArgs {
    /// Data directory (default: ~/.hemi/<command>).
    #[arg(long, env = "HEMI_DIR")]
    pub dir: Option<PathBuf>,
    /// TOML config file (default: <dir>/hemi.toml if present).
    #[arg(long, env = "HEMI_CONFIG")]
    pub config: Option<PathBuf>,
    /// JSON-RPC listen address, HTTP and WebSocket (default 127.0.0.1:8545).
    #[arg(long, env = "HEMI_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,
    /// Bitcoin P2P peer HOST:PORT to follow (repeatable); uses an external Bitcoin Core.
    #[arg(
        long = "bitcoin-peer",
        env = "HEMI_BITCOIN_PEER",
        value_delimiter = ','
    )]
    pub bitcoin_peer: Vec<String>,
    /// Bitcoin Core JSON-RPC URL, may carry user:password@.
    #[arg(long, env = "HEMI_BITCOIN_RPC")]
    pub bitcoin_rpc: Option<String>,
    /// L2 block time in seconds (fractions allowed; devnet default 1).
    #[arg(long, env = "HEMI_BLOCK_TIME")]
    pub block_time: Option<f64>,
    /// L2 block gas limit.
    #[arg(long, env = "HEMI_GAS_LIMIT")]
    pub gas_limit: Option<u64>,
    /// Every block whose number is a multiple of this is a keystone (devnet default 5, node 25
    /// as Hemi).
    #[arg(long, env = "HEMI_KEYSTONE_INTERVAL")]
    pub keystone_interval: Option<u64>,
    /// Effective Bitcoin confirmations of a keystone's publication that make a block superfinal
    /// (default 10, as Hemi).
    #[arg(long, env = "HEMI_SUPERFINALITY_DEPTH")]
    pub superfinality_depth: Option<u32>,
    /// L2 blocks between a keystone and the block that pays its PoP miners (default 200; 0
    /// turns PoP rewards off). Part of consensus: followers must use the sequencer's value.
    #[arg(long, env = "HEMI_POP_PAYOUT_DELAY")]
    pub pop_payout_delay: Option<u64>,
    /// Bitcoin confirmations a tunnel deposit needs before hemiBTC is minted (devnet default 3,
    /// node 6). Part of consensus: followers must use the sequencer's value.
    #[arg(long, env = "HEMI_DEPOSIT_CONFIRMATIONS")]
    pub deposit_confirmations: Option<u32>,
    /// L2 blocks after which an unpaid withdrawal request can be challenged (its hemiBTC minted
    /// back; default 600). Part of consensus.
    #[arg(long, env = "HEMI_WITHDRAWAL_DEADLINE")]
    pub withdrawal_deadline: Option<u64>,
    /// The tunnel vault: the vault.json `hemi custodian keygen` wrote (default: the devnet's
    /// deterministic 2-of-3 vault; a follower takes the followed node's). Part of consensus.
    #[arg(long, env = "HEMI_VAULT")]
    pub vault: Option<PathBuf>,
    /// Bitcoin confirmations a forced transaction (`hemi force-tx`) needs in an L2 block's
    /// pinned view before its inclusion window opens (devnet default 3, node 6). Consensus.
    #[arg(long, env = "HEMI_FORCED_INCLUSION_CONFIRMATIONS")]
    pub forced_inclusion_confirmations: Option<u32>,
    /// L2 blocks within which a confirmed forced transaction must be included (default 10);
    /// followers refuse a block that lets the window pass without it. Consensus.
    #[arg(long, env = "HEMI_FORCED_INCLUSION_WINDOW")]
    pub forced_inclusion_window: Option<u64>,
    /// Join the L2's p2p network (libp2p: blocks and transactions gossiped, missed blocks
    /// fetched from peers), listening on HOST:PORT.
    #[arg(long, env = "HEMI_P2P_ADDR")]
    pub p2p_addr: Option<SocketAddr>,
    /// A p2p peer to dial, `/ip4/HOST/tcp/PORT/p2p/PEER_ID` as another node prints it
    /// (repeatable).
    #[arg(long = "bootnode", env = "HEMI_BOOTNODE", value_delimiter = ',')]
    pub bootnode: Vec<String>,
}

/// `hemi devnet` flags.
#[derive(Debug, Args, Default)]
pub(crate) struct DevnetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Keep state in --dir across restarts (default: in memory, gone at exit).
    #[arg(long, env = "HEMI_PERSIST")]
    pub persist: bool,
    /// Embedded regtest miner: seconds between Bitcoin blocks (0 = only on request).
    #[arg(long, env = "HEMI_BITCOIN_BLOCK_TIME")]
    pub bitcoin_block_time: Option<u64>,
    /// Embedded regtest node's bitcoind-compatible RPC address (default 127.0.0.1:18443).
    #[arg(long, env = "HEMI_BITCOIN_RPC_ADDR")]
    pub bitcoin_rpc_addr: Option<SocketAddr>,
    /// Embedded regtest node's P2P address (default 127.0.0.1:18444).
    #[arg(long, env = "HEMI_BITCOIN_P2P_ADDR")]
    pub bitcoin_p2p_addr: Option<SocketAddr>,
    /// Do not run the built-in PoP miner (keystones then wait for an outside `hemi popm`).
    #[arg(long, env = "HEMI_NO_POPM")]
    pub no_popm: bool,
    /// The peers file of `hemi custodian` processes that sign the vault's payouts and sweeps
    /// (with --vault and --coordinator-key; default: the built-in set).
    #[arg(long, env = "HEMI_CUSTODIANS")]
    pub custodians: Option<PathBuf>,
    /// The coordinator identity key file (`hemi custodian coordinator-key`) the custodians
    /// accept requests from.
    #[arg(long, env = "HEMI_COORDINATOR_KEY")]
    pub coordinator_key: Option<PathBuf>,
    /// Run a set of N sequencers in this process, ordering blocks by Tendermint BFT
    /// (Malachite); blocks then carry commit certificates (default 1: one key seals).
    #[arg(long, env = "HEMI_SEQUENCERS")]
    pub sequencers: Option<usize>,
    /// Test-only: refuse transactions from this sender (a censoring sequencer; repeatable).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub censor: Vec<alloy_primitives::Address>,
    /// Test-only: leave due forced transactions out of blocks (followers refuse them).
    #[arg(long, hide = true)]
    pub skip_forced_txs: bool,
}

/// `hemi node` flags.
#[derive(Debug, Args, Default)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Bitcoin network: mainnet, testnet, testnet4, signet, regtest (default regtest).
    #[arg(long, env = "HEMI_NETWORK")]
    pub network: Option<String>,
    /// Follow the sequencer through the node serving JSON-RPC at this URL: fetch, check and
    /// re-execute its blocks. Repeatable: blocks of one source that compete with another's
    /// (an equivocating sequencer) are settled by PoP fork choice.
    #[arg(long, env = "HEMI_FOLLOW", value_delimiter = ',')]
    pub follow: Vec<String>,
    /// The address whose seal followed blocks must carry (default: what the sequencer reports).
    #[arg(long, env = "HEMI_SEQUENCER_ADDRESS")]
    pub sequencer_address: Option<String>,
    /// Run as a validator of the sequencer set in --validators with this secp256k1 key: 64 hex
    /// digits, or a file holding them (`hemi sequencer-key` makes one).
    #[arg(long, env = "HEMI_SEQUENCER_KEY")]
    pub sequencer_key: Option<String>,
    /// The sequencer set: a JSON file `{"validators": [{"publicKey": "0x02…", "consensusAddr":
    /// "/ip4/HOST/tcp/PORT"}, …]}`. A follower given it pins the set its blocks' certificates
    /// are checked against.
    #[arg(long, env = "HEMI_VALIDATORS")]
    pub validators: Option<PathBuf>,
    /// As a validator, dial the validator ADDRESS at MULTIADDR instead of at the consensusAddr
    /// the validators file gives (NAT, a relay or proxy); `ADDRESS=MULTIADDR`, repeatable.
    #[arg(
        long = "consensus-peer",
        env = "HEMI_CONSENSUS_PEER",
        value_delimiter = ','
    )]
    pub consensus_peer: Vec<String>,
    /// Test-only: as a validator, sign a second, conflicting vote in every round.
    #[arg(long, hide = true)]
    pub equivocate: bool,
    /// Most transactions one sender may have in this node's pool (pending and queued; default
    /// 64, as geth's account queue).
    #[arg(long, env = "HEMI_TXPOOL_MAX_PER_SENDER")]
    pub txpool_max_per_sender: Option<usize>,
    /// Most transactions in this node's pool (default 100,000).
    #[arg(long, env = "HEMI_TXPOOL_MAX_TOTAL")]
    pub txpool_max_total: Option<usize>,
    /// Test-only: as a validator, propose blocks without due forced transactions and vote for
    /// such blocks (a faulty validator; the others vote its proposals down).
    #[arg(long = "skip-forced-txs", hide = true)]
    pub skip_forced_txs: bool,
}

/// The TOML file: the same names as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    rpc_addr: Option<SocketAddr>,
    bitcoin_peer: Option<Vec<String>>,
    bitcoin_rpc: Option<String>,
    persist: Option<bool>,
    bitcoin_block_time: Option<u64>,
    bitcoin_rpc_addr: Option<SocketAddr>,
    bitcoin_p2p_addr: Option<SocketAddr>,
    network: Option<String>,
    block_time: Option<f64>,
    gas_limit: Option<u64>,
    follow: Option<FollowUrls>,
    sequencer_address: Option<String>,
    keystone_interval: Option<u64>,
    superfinality_depth: Option<u32>,
    no_popm: Option<bool>,
    pop_payout_delay: Option<u64>,
    deposit_confirmations: Option<u32>,
    withdrawal_deadline: Option<u64>,
    vault: Option<PathBuf>,
    custodians: Option<PathBuf>,
    coordinator_key: Option<PathBuf>,
    p2p_addr: Option<SocketAddr>,
    bootnode: Option<Vec<String>>,
    forced_inclusion_confirmations: Option<u32>,
    forced_inclusion_window: Option<u64>,
    sequencers: Option<usize>,
    sequencer_key: Option<String>,
    validators: Option<PathBuf>,
}

/// `follow` in the TOML file: one URL or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FollowUrls {
    One(String),
    Many(Vec<String>),
}

/// Hemi's PoP payout delay as the issue sets it.
pub(crate) const DEFAULT_POP_PAYOUT_DELAY: u64 = 200;

/// Devnet keystone interval (Hemi's is 25; a devnet wants keystones often).
pub(crate) const DEVNET_KEYSTONE_INTERVAL: u64 = 5;
/// Hemi's keystone interval.
pub(crate) const HEMI_KEYSTONE_INTERVAL: u64 = 25;
/// Devnet deposit confirmations (small: a devnet wants mints soon).
pub(crate) const DEVNET_DEPOSIT_CONFIRMATIONS: u32 = 3;
/// A node's deposit confirmations (Bitcoin's customary six).
pub(crate) const NODE_DEPOSIT_CONFIRMATIONS: u32 = 6;
/// Hemi's superfinality depth.
pub(crate) const DEFAULT_SUPERFINALITY_DEPTH: u32 = 10;

/// The withdrawal deadline, L2 blocks (10 minutes at a 1 s block time).
pub(crate) const DEFAULT_WITHDRAWAL_DEADLINE: u64 = 600;

/// `--withdrawal-deadline`, checked.
fn withdrawal_deadline(common: &CommonArgs, f: &FileConfig) -> anyhow::Result<u64> {
    let n = common
        .withdrawal_deadline
        .or(f.withdrawal_deadline)
        .unwrap_or(DEFAULT_WITHDRAWAL_DEADLINE);
    if !(1..=10_000_000).contains(&n) {
        bail!("--withdrawal-deadline {n} is outside 1..=10000000");
    }
    Ok(n)
}

/// `--deposit-confirmations`, checked.
fn deposit_confirmations(common: &CommonArgs, f: &FileConfig, default: u32) -> anyhow::Result<u32> {
    let n = common
        .deposit_confirmations
        .or(f.deposit_confirmations)
        .unwrap_or(default);
    if !(1..=10_000).contains(&n) {
        bail!("--deposit-confirmations {n} is outside 1..=10000");
    }
    Ok(n)
}

/// `--keystone-interval` and `--superfinality-depth`, checked.
fn finality_params(
    common: &CommonArgs,
    f: &FileConfig,
    default_interval: u64,
) -> anyhow::Result<(u64, u32)> {
    let interval = common
        .keystone_interval
        .or(f.keystone_interval)
        .unwrap_or(default_interval);
    if !(1..=100_000).contains(&interval) {
        bail!("--keystone-interval {interval} is outside 1..=100000");
    }
    let depth = common
        .superfinality_depth
        .or(f.superfinality_depth)
        .unwrap_or(DEFAULT_SUPERFINALITY_DEPTH);
    if !(1..=10_000).contains(&depth) {
        bail!("--superfinality-depth {depth} is outside 1..=10000");
    }
    Ok((interval, depth))
}

pub(crate) const DEFAULT_BLOCK_TIME: f64 = 1.0;
pub(crate) const DEFAULT_GAS_LIMIT: u64 = 30_000_000;

/// `--block-time` from flag, environment, file or default, checked.
fn l2_block_time(common: &CommonArgs, f: &FileConfig) -> anyhow::Result<std::time::Duration> {
    let v = common
        .block_time
        .or(f.block_time)
        .unwrap_or(DEFAULT_BLOCK_TIME);
    if !(0.01..=3600.0).contains(&v) {
        bail!("--block-time {v} is outside 0.01..=3600 seconds");
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

fn home_dir(sub: &str) -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".hemi")
        .join(sub)
}

fn load_file(common: &CommonArgs, dir: &std::path::Path) -> anyhow::Result<FileConfig> {
    let path = match &common.config {
        Some(p) => p.clone(),
        None => {
            let p = dir.join("hemi.toml");
            if !p.exists() {
                return Ok(FileConfig::default());
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {} is not valid", path.display()))
}

/// Resolves `HOST:PORT` (names allowed).
fn resolve_peers(list: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for p in list {
        let addr = p
            .to_socket_addrs()
            .with_context(|| format!("--bitcoin-peer {p:?} is not HOST:PORT"))?
            .next()
            .with_context(|| format!("--bitcoin-peer {p:?} resolves to no address"))?;
        out.push(addr);
    }
    Ok(out)
}

/// Parses a network name the way Bitcoin Core's `-chain` does.
/// A secp256k1 secret key given as 64 hex digits (optionally `0x`-prefixed) in `flag`.
pub(crate) fn parse_secret_key(flag: &str, s: &str) -> anyhow::Result<hemi_btc_wallet::Key> {
    let secret: [u8; 32] = hex::decode(s.trim_start_matches("0x"))
        .ok()
        .and_then(|v| v.try_into().ok())
        .with_context(|| format!("{flag} must be 64 hex digits"))?;
    hemi_btc_wallet::Key::from_secret_bytes(secret).with_context(|| flag.to_string())
}

/// One JSON-RPC 2.0 call to a hemi node: its `result`, or its `error` message.
pub(crate) async fn l2_call(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?
        .json()
        .await
        .with_context(|| format!("reading {method}'s answer"))?;
    if let Some(e) = resp.get("error") {
        bail!(
            "{method}: {}",
            e["message"].as_str().unwrap_or(&e.to_string())
        );
    }
    Ok(resp["result"].clone())
}

pub(crate) fn parse_network(s: &str) -> anyhow::Result<Network> {
    Ok(match s {
        "main" | "mainnet" | "bitcoin" => Network::Bitcoin,
        "test" | "testnet" | "testnet3" => Network::Testnet,
        "testnet4" => Network::Testnet4,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => {
            bail!("unknown network {other:?}: use mainnet, testnet, testnet4, signet or regtest")
        }
    })
}

impl DevnetArgs {
    /// Merges flags, environment, file and defaults.
    ///
    /// # Errors
    /// Unreadable or invalid config file, bad addresses.
    pub(crate) fn resolve(self) -> anyhow::Result<Config> {
        let dir = self
            .common
            .dir
            .clone()
            .unwrap_or_else(|| home_dir("devnet"));
        let f = load_file(&self.common, &dir)?;
        let block_time = l2_block_time(&self.common, &f)?;
        let (keystone_interval, superfinality_depth) =
            finality_params(&self.common, &f, DEVNET_KEYSTONE_INTERVAL)?;
        let deposit_confirmations =
            deposit_confirmations(&self.common, &f, DEVNET_DEPOSIT_CONFIRMATIONS)?;
        let withdrawal_deadline = withdrawal_deadline(&self.common, &f)?;
        let forced_inclusion = forced_inclusion(&self.common, &f, DEVNET_FORCED_CONFIRMATIONS)?;
        let popm = !(self.no_popm || f.no_popm.unwrap_or(false));
        let peers = if self.common.bitcoin_peer.is_empty() {
            f.bitcoin_peer.clone().unwrap_or_default()
        } else {
            self.common.bitcoin_peer
        };
        let pop_payout_delay = self
            .common
            .pop_payout_delay
            .or(f.pop_payout_delay)
            .unwrap_or(DEFAULT_POP_PAYOUT_DELAY);
        let custodians = match (
            self.custodians.or(f.custodians.clone()),
            self.coordinator_key.or(f.coordinator_key.clone()),
        ) {
            (Some(p), Some(k)) => Some((p, k)),
            (None, None) => None,
            _ => bail!("--custodians and --coordinator-key go together"),
        };
        let cfg = Config {
            forced_inclusion,
            censor: self.censor.clone(),
            skip_forced: self.skip_forced_txs,
            vault: self.common.vault.clone().or(f.vault.clone()),
            custodians,
            keystone_interval,
            superfinality_depth,
            popm,
            pop_payout_delay,
            deposit_confirmations,
            withdrawal_deadline,
            consensus_params_set: true,
            forced_inclusion_set: true,
            persist: self.persist || f.persist.unwrap_or(false),
            rpc_addr: self
                .common
                .rpc_addr
                .or(f.rpc_addr)
                .unwrap_or_else(|| parse_default(DEFAULT_RPC_ADDR)),
            bitcoin_peers: resolve_peers(&peers)?,
            bitcoin_rpc: self.common.bitcoin_rpc.or(f.bitcoin_rpc),
            bitcoin_block_time: self
                .bitcoin_block_time
                .or(f.bitcoin_block_time)
                .unwrap_or(DEFAULT_BITCOIN_BLOCK_TIME),
            bitcoin_rpc_addr: self
                .bitcoin_rpc_addr
                .or(f.bitcoin_rpc_addr)
                .unwrap_or_else(|| parse_default(hemi_btc_regtest::DEFAULT_RPC_ADDR)),
            bitcoin_p2p_addr: self
                .bitcoin_p2p_addr
                .or(f.bitcoin_p2p_addr)
                .unwrap_or_else(|| parse_default(hemi_btc_regtest::DEFAULT_P2P_ADDR)),
            network: Network::Regtest,
            block_time,
            gas_limit: self
                .common
                .gas_limit
                .or(f.gas_limit)
                .unwrap_or(DEFAULT_GAS_LIMIT),
            follow: Vec::new(),
            sequencer_address: None,
            sequencers: {
                let n = self.sequencers.or(f.sequencers).unwrap_or(1);
                if !(1..=hemi_node::MAX_DEVNET_SEQUENCERS).contains(&n) {
                    bail!(
                        "--sequencers {n} is outside 1..={}",
                        hemi_node::MAX_DEVNET_SEQUENCERS
                    );
                }
                n
            },
            sequencer_key: None,
            validators: None,
            consensus_peers: Vec::new(),
            equivocate: false,
            pool_limits: None,
            spec_validators: Vec::new(),
            p2p_addr: self.common.p2p_addr.or(f.p2p_addr),
            bootnodes: bootnodes(self.common.bootnode, f.bootnode.clone()),
            dir,
        };
        if cfg.bitcoin_rpc.is_some() && cfg.bitcoin_peers.is_empty() {
            bail!("--bitcoin-rpc needs --bitcoin-peer too (the client follows Bitcoin over P2P)");
        }
        Ok(cfg)
    }
}

impl NodeArgs {
    /// Merges flags, environment, file and defaults.
    ///
    /// # Errors
    /// Unreadable or invalid config file, bad addresses, no peer.
    pub(crate) fn resolve(self) -> anyhow::Result<Config> {
        let dir = self.common.dir.clone().unwrap_or_else(|| home_dir("node"));
        let f = load_file(&self.common, &dir)?;
        let block_time = l2_block_time(&self.common, &f)?;
        let (keystone_interval, superfinality_depth) =
            finality_params(&self.common, &f, HEMI_KEYSTONE_INTERVAL)?;
        let deposit_confirmations =
            deposit_confirmations(&self.common, &f, NODE_DEPOSIT_CONFIRMATIONS)?;
        let withdrawal_deadline = withdrawal_deadline(&self.common, &f)?;
        let forced_inclusion = forced_inclusion(&self.common, &f, NODE_FORCED_CONFIRMATIONS)?;
        let peers = if self.common.bitcoin_peer.is_empty() {
            f.bitcoin_peer.clone().unwrap_or_default()
        } else {
            self.common.bitcoin_peer
        };
        let network = parse_network(
            self.network
                .as_deref()
                .or(f.network.as_deref())
                .unwrap_or("regtest"),
        )?;
        let consensus_params_set = self.common.keystone_interval.is_some()
            || f.keystone_interval.is_some()
            || self.common.pop_payout_delay.is_some()
            || f.pop_payout_delay.is_some()
            || self.common.deposit_confirmations.is_some()
            || f.deposit_confirmations.is_some()
            || self.common.withdrawal_deadline.is_some()
            || f.withdrawal_deadline.is_some();
        let forced_inclusion_set = self.common.forced_inclusion_confirmations.is_some()
            || f.forced_inclusion_confirmations.is_some()
            || self.common.forced_inclusion_window.is_some()
            || f.forced_inclusion_window.is_some();

        let pop_payout_delay = self
            .common
            .pop_payout_delay
            .or(f.pop_payout_delay)
            .unwrap_or(DEFAULT_POP_PAYOUT_DELAY);
        let cfg = Config {
            forced_inclusion,
            censor: Vec::new(),
            skip_forced: self.skip_forced_txs,
            vault: self.common.vault.clone().or(f.vault.clone()),
            custodians: None,
            keystone_interval,
            superfinality_depth,
            popm: false,
            pop_payout_delay,
            deposit_confirmations,
            withdrawal_deadline,
            consensus_params_set,
            forced_inclusion_set,
            persist: true,
            rpc_addr: self
                .common
                .rpc_addr
                .or(f.rpc_addr)
                .unwrap_or_else(|| parse_default(DEFAULT_RPC_ADDR)),
            bitcoin_peers: resolve_peers(&peers)?,
            bitcoin_rpc: self.common.bitcoin_rpc.or(f.bitcoin_rpc),
            bitcoin_block_time: 0,
            bitcoin_rpc_addr: parse_default(hemi_btc_regtest::DEFAULT_RPC_ADDR),
            bitcoin_p2p_addr: parse_default(hemi_btc_regtest::DEFAULT_P2P_ADDR),
            network,
            block_time,
            gas_limit: self
                .common
                .gas_limit
                .or(f.gas_limit)
                .unwrap_or(DEFAULT_GAS_LIMIT),
            follow: if self.follow.is_empty() {
                match f.follow {
                    Some(FollowUrls::One(u)) => vec![u],
                    Some(FollowUrls::Many(v)) => v,
                    None => Vec::new(),
                }
            } else {
                self.follow
            },
            sequencer_address: self.sequencer_address.or(f.sequencer_address),
            sequencers: 1,
            sequencer_key: match self.sequencer_key.or(f.sequencer_key) {
                Some(k) => Some(sequencer_key(&k)?),
                None => None,
            },
            validators: self.validators.or(f.validators),
            equivocate: self.equivocate,
            pool_limits: pool_limits(self.txpool_max_per_sender, self.txpool_max_total)?,
            consensus_peers: self
                .consensus_peer
                .iter()
                .map(|s| {
                    let (a, m) = s.split_once('=').with_context(|| {
                        format!("--consensus-peer {s:?} is not ADDRESS=MULTIADDR")
                    })?;
                    let a: alloy_primitives::Address = a.parse().with_context(|| {
                        format!("--consensus-peer {s:?}: {a:?} is not an address")
                    })?;
                    Ok((a, m.to_string()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            spec_validators: Vec::new(),
            p2p_addr: self.common.p2p_addr.or(f.p2p_addr),
            bootnodes: bootnodes(self.common.bootnode, f.bootnode.clone()),
            dir,
        };
        if cfg.bitcoin_peers.is_empty() {
            bail!("hemi node needs --bitcoin-peer HOST:PORT (a Bitcoin Core to follow)");
        }
        if cfg.sequencer_key.is_some() && cfg.validators.is_none() {
            bail!("--sequencer-key needs --validators FILE (the set it belongs to)");
        }
        if !cfg.bootnodes.is_empty() && cfg.p2p_addr.is_none() {
            bail!("--bootnode needs --p2p-addr HOST:PORT (where this node listens for peers)");
        }
        Ok(cfg)
    }
}

/// `--sequencer-key`: 64 hex digits, or a file that holds them.
pub(crate) fn sequencer_key(s: &str) -> anyhow::Result<alloy_primitives::B256> {
    let text = if s.trim_start_matches("0x").len() == 64
        && s.trim_start_matches("0x")
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        s.to_string()
    } else {
        std::fs::read_to_string(s).with_context(|| {
            format!("--sequencer-key {s:?} is neither 64 hex digits nor a readable file")
        })?
    };
    let key = parse_secret_key("--sequencer-key", text.trim())?;
    Ok(alloy_primitives::B256::from(key.secret_bytes()))
}

/// Devnet forced-inclusion confirmations.
pub(crate) const DEVNET_FORCED_CONFIRMATIONS: u32 = 3;
/// A node's forced-inclusion confirmations.
pub(crate) const NODE_FORCED_CONFIRMATIONS: u32 = 6;
/// The forced-inclusion window, L2 blocks.
pub(crate) const DEFAULT_FORCED_WINDOW: u64 = 10;

/// `--forced-inclusion-confirmations` and `--forced-inclusion-window`, checked.
fn forced_inclusion(
    common: &CommonArgs,
    f: &FileConfig,
    default_confirmations: u32,
) -> anyhow::Result<hemi_chain::forced::ForcedInclusionParams> {
    let confirmations = common
        .forced_inclusion_confirmations
        .or(f.forced_inclusion_confirmations)
        .unwrap_or(default_confirmations);
    if !(1..=1_000).contains(&confirmations) {
        bail!("--forced-inclusion-confirmations {confirmations} is outside 1..=1000");
    }
    let window = common
        .forced_inclusion_window
        .or(f.forced_inclusion_window)
        .unwrap_or(DEFAULT_FORCED_WINDOW);
    if !(1..=100_000).contains(&window) {
        bail!("--forced-inclusion-window {window} is outside 1..=100000");
    }
    Ok(hemi_chain::forced::ForcedInclusionParams {
        confirmations,
        window,
        // Every chain made from now on reads taproot envelopes too, and judges each due
        // forced transaction on its own.
        taproot_envelopes: true,
        rule: 2,
    })
}

/// `--txpool-max-per-sender` / `--txpool-max-total`, checked; `None` when neither is given.
fn pool_limits(
    per_sender: Option<usize>,
    total: Option<usize>,
) -> anyhow::Result<Option<(usize, usize)>> {
    if per_sender.is_none() && total.is_none() {
        return Ok(None);
    }
    let defaults = hemi_txpool::PoolConfig::new(0, 0);
    let per = per_sender.unwrap_or(defaults.max_per_sender);
    let all = total.unwrap_or(defaults.max_total);
    if !(1..=1_000_000).contains(&per) || !(1..=10_000_000).contains(&all) || per > all {
        bail!("--txpool-max-per-sender {per} must be 1..=1000000 and at most --txpool-max-total {all} (1..=10000000)");
    }
    Ok(Some((per, all)))
}

/// `--bootnode`s: the flags', else the file's.
fn bootnodes(flags: Vec<String>, file: Option<Vec<String>>) -> Vec<String> {
    if flags.is_empty() {
        file.unwrap_or_default()
    } else {
        flags
    }
}

fn parse_default(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
