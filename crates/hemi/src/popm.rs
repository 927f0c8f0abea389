//! `hemi popm`: the PoP miner on its own, against a hemi node and a Bitcoin node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_wallet::KeyKind;
use hemi_pop::{MinerConfig, PopMiner};

/// `hemi popm` flags.
#[derive(Debug, Args)]
pub(crate) struct PopmArgs {
    /// The hemi node's JSON-RPC (keystones, its Bitcoin index).
    #[arg(long, env = "HEMI_L2_RPC", default_value = "http://127.0.0.1:8545")]
    pub l2_rpc: String,
    /// The Bitcoin node's RPC URL (Bitcoin Core, or a devnet's embedded node); may carry
    /// user:password@.
    #[arg(long, env = "HEMI_BITCOIN_RPC")]
    pub bitcoin_rpc: String,
    /// Bitcoin Core cookie file for RPC authentication (instead of user:password in the URL).
    #[arg(long, env = "HEMI_BITCOIN_RPC_COOKIE")]
    pub bitcoin_rpc_cookie: Option<PathBuf>,
    /// The miner's secp256k1 secret key, 64 hex digits. Its Ethereum address receives the PoP
    /// rewards.
    #[arg(long, env = "HEMI_POPM_KEY", hide_env_values = true)]
    pub key: String,
    /// Which of the key's outputs to spend: p2wpkh (202 vB transactions) or p2tr (203 vB).
    #[arg(long, env = "HEMI_POPM_KEY_TYPE", default_value = "p2wpkh")]
    pub key_type: String,
    /// Bitcoin network: mainnet, testnet, testnet4, signet, regtest.
    #[arg(long, env = "HEMI_NETWORK", default_value = "regtest")]
    pub network: String,
    /// Directory of the miner's record (popm-<address>.json), which makes restarts safe.
    #[arg(long, env = "HEMI_DIR")]
    pub dir: Option<PathBuf>,
    /// Fee-rate cap, sat/vB.
    #[arg(long, env = "HEMI_POPM_MAX_FEE_RATE", default_value_t = 100.0)]
    pub max_fee_rate: f64,
    /// Fee rate when the Bitcoin node has no estimate (and the floor), sat/vB.
    #[arg(long, env = "HEMI_POPM_MIN_FEE_RATE", default_value_t = 1.0)]
    pub min_fee_rate: f64,
    /// Bitcoin blocks before an unconfirmed publication is fee-bumped (RBF).
    #[arg(long, env = "HEMI_POPM_BUMP_AFTER", default_value_t = 3)]
    pub bump_after: u32,
    /// Newest keystones considered.
    #[arg(long, env = "HEMI_POPM_LOOKBACK", default_value_t = 12)]
    pub lookback: usize,
    /// Seconds between polls (a WebSocket subscription to the node's new keystones wakes the
    /// miner sooner).
    #[arg(long, env = "HEMI_POPM_POLL", default_value_t = 2.0)]
    pub poll: f64,
}

/// Parses `--key-type`.
pub(crate) fn key_kind(s: &str) -> anyhow::Result<KeyKind> {
    match s {
        "p2wpkh" => Ok(KeyKind::P2wpkh),
        "p2tr" => Ok(KeyKind::P2tr),
        other => bail!("--key-type {other:?}: use p2wpkh or p2tr"),
    }
}

/// Runs the miner until a signal.
///
/// # Errors
/// Bad flags, an unreadable record.
pub(crate) async fn run(args: PopmArgs) -> anyhow::Result<()> {
    let network = crate::config::parse_network(&args.network)?;
    let key = crate::config::parse_secret_key("--key", &args.key)?;
    let kind = key_kind(&args.key_type)?;
    let bitcoin = match &args.bitcoin_rpc_cookie {
        Some(c) => BitcoinRpc::with_cookie_file(&args.bitcoin_rpc, c),
        None => BitcoinRpc::new(&args.bitcoin_rpc),
    }
    .context("--bitcoin-rpc")?;
    if !(0.05..=3600.0).contains(&args.poll) {
        bail!("--poll {} is outside 0.05..=3600 seconds", args.poll);
    }
    let address = key.address(kind, network);
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".hemi/popm")
    });
    let mut cfg = MinerConfig::new(key, network, args.l2_rpc.clone(), bitcoin);
    cfg.kind = kind;
    cfg.record_path = Some(dir.join(format!("popm-{address}.json")));
    cfg.max_fee_rate = args.max_fee_rate;
    cfg.min_fee_rate = args.min_fee_rate;
    cfg.bump_after = args.bump_after;
    cfg.lookback = args.lookback.clamp(1, hemi_rpc::pop::MAX_KEYSTONES);
    cfg.poll = Duration::from_secs_f64(args.poll);
    let miner = PopMiner::new(cfg)?;
    println!("hemi-rs PoP miner {}", env!("CARGO_PKG_VERSION"));
    println!("  Bitcoin address: {}", miner.address());
    println!("  reward address:  {}", miner.reward_address());
    println!("  hemi node:       {}", args.l2_rpc);
    println!("  Bitcoin node:    {}", args.bitcoin_rpc_redacted());
    println!("  record:          {}", dir.display());
    hemi_node::run_popm(miner, args.l2_rpc.clone()).await;
    Ok(())
}

impl PopmArgs {
    fn bitcoin_rpc_redacted(&self) -> String {
        match self.bitcoin_rpc.split_once('@') {
            Some((creds, rest)) => {
                let scheme = creds.split_once("://").map(|(s, _)| s).unwrap_or("http");
                format!("{scheme}://***@{rest}")
            }
            None => self.bitcoin_rpc.clone(),
        }
    }
}
