//! Wiring the parts together for `hemi devnet` and `hemi node`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bitcoin::Network;
use hemi_btc_client::{BitcoinClient, ClientConfig};
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::{RegtestNode, RpcAuth};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::{Key, KeyKind};
use hemi_chain::{Chain, ChainSpec};
use hemi_sequencer::follower::{self, Follower};
use hemi_sequencer::{Sequencer, SequencerConfig};
use serde_json::json;

use crate::config::Config;

/// Seed label of the devnet's built-in Bitcoin key (miner of the embedded chain; later the PoP
/// miner's key). Deterministic so scripts can rely on it, like anvil's accounts.
pub const DEVNET_BTC_KEY_SEED: &str = "hemi-devnet-bitcoin-key-0";

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn open_store(cfg: &Config, name: &str, network: Network) -> anyhow::Result<Arc<ChainStore>> {
    let params = ChainParams::new(network);
    let store = if cfg.persist {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let path = cfg.dir.join(format!("{name}.redb"));
        ChainStore::open(&path, params).with_context(|| format!("opening {}", path.display()))?
    } else {
        ChainStore::in_memory(params)?
    };
    Ok(Arc::new(store))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Seed label of the devnet sequencer's sealing key (deterministic, like the dev accounts).
pub const DEVNET_SEQUENCER_KEY_SEED: &str = "hemi-devnet-sequencer-key-0";

/// Devnet pool limits (a node keeps geth-like ones).
const DEVNET_POOL_PER_SENDER: usize = 10_000;
const DEVNET_POOL_TOTAL: usize = 200_000;

/// What runs the L2: the chain and either a sequencer (devnet) or a follower (node --follow).
struct L2 {
    chain: Arc<Chain>,
    sequencer: Option<Arc<Sequencer>>,
    follower: Option<Arc<Follower>>,
    accounts: Vec<alloy_primitives::Address>,
}

fn open_chain(cfg: &Config) -> anyhow::Result<Arc<Chain>> {
    let mut spec = ChainSpec::devnet()?;
    spec.gas_limit = cfg.gas_limit;
    let chain = if cfg.persist {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let path = cfg.dir.join("l2.redb");
        Chain::open(Some(&path), spec).with_context(|| format!("opening {}", path.display()))?
    } else {
        Chain::open(None, spec)?
    };
    Ok(Arc::new(chain))
}

/// The RPC methods that expose L2 internals for followers: `debug_getRawBlock` (geth's name).
fn l2_module(chain: Arc<Chain>) -> anyhow::Result<jsonrpsee::RpcModule<Arc<Chain>>> {
    use jsonrpsee::types::ErrorObjectOwned;
    let mut m = jsonrpsee::RpcModule::new(chain);
    m.register_blocking_method(
        "debug_getRawBlock",
        |params, chain, _| -> Result<serde_json::Value, ErrorObjectOwned> {
            let bad = |m: String| ErrorObjectOwned::owned(-32602, m, None::<()>);
            let v: Vec<serde_json::Value> = params
                .parse()
                .map_err(|_| bad("expected [blockNumber]".into()))?;
            let s = v
                .first()
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("expected [blockNumber]".into()))?;
            let n = match s {
                "latest" | "pending" | "safe" | "finalized" => chain.head().0,
                "earliest" => 0,
                hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                    .map_err(|_| bad(format!("invalid block number {hex:?}")))?,
            };
            match chain.raw_block(n) {
                Ok(Some(b)) => Ok(json!(format!("0x{}", hex::encode(b)))),
                Ok(None) => Err(ErrorObjectOwned::owned(
                    -32000,
                    "header not found",
                    None::<()>,
                )),
                Err(e) => Err(ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>)),
            }
        },
    )?;
    Ok(m)
}

/// Runs the Bitcoin client and the JSON-RPC server until a signal; shared by devnet and node.
async fn serve(
    cfg: &Config,
    client_store: Arc<ChainStore>,
    client: BitcoinClient,
    extra_status: serde_json::Value,
    l2: L2,
) -> anyhow::Result<()> {
    let c1 = client.clone();
    let c2 = client.clone();
    let network = cfg.network;
    let ctx = hemi_rpc::RpcContext {
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sync_status: Arc::new(move || serde_json::to_value(c1.status()).unwrap_or_default()),
        node_status: Arc::new(move || {
            let mut v = extra_status.clone();
            v["bitcoin"] = serde_json::to_value(c2.status()).unwrap_or_default();
            v["network"] = json!(network.to_core_arg());
            v["version"] = json!(env!("CARGO_PKG_VERSION"));
            v
        }),
    };
    let rpc_cfg = hemi_rpc::RpcConfig {
        addr: cfg.rpc_addr,
        ..Default::default()
    };
    let (blocks, _) = tokio::sync::broadcast::channel(1024);
    let (pending, _) = tokio::sync::broadcast::channel(8192);
    let mut forwards = Vec::new();
    if let Some(seq) = &l2.sequencer {
        forwards.push(forward(seq.subscribe_blocks(), blocks.clone()));
        forwards.push(forward(seq.subscribe_pending(), pending.clone()));
    }
    if let Some(f) = &l2.follower {
        forwards.push(forward(f.subscribe_blocks(), blocks.clone()));
    }
    let backend = crate::eth::NodeBackend {
        chain: l2.chain.clone(),
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sequencer: l2.sequencer.clone(),
        blocks,
        pending,
        accounts: l2.accounts.clone(),
    };
    let mut module = hemi_rpc::hemi_module(ctx)?.remove_context();
    module.merge(
        hemi_rpc::eth::eth_module(
            Arc::new(backend),
            format!("hemi-rs/v{}", env!("CARGO_PKG_VERSION")),
        )?
        .remove_context(),
    )?;
    module.merge(l2_module(l2.chain.clone())?.remove_context())?;
    let (rpc_addr, handle) = hemi_rpc::start(&rpc_cfg, module)
        .await
        .with_context(|| format!("binding JSON-RPC on {}", cfg.rpc_addr))?;
    println!("JSON-RPC (HTTP and WebSocket): http://{rpc_addr}  ws://{rpc_addr}");
    println!();
    let producer = l2.sequencer.as_ref().map(|s| s.spawn(cfg.block_time));
    let follower = l2
        .follower
        .clone()
        .map(|f| tokio::spawn(f.run(cfg.block_time.min(Duration::from_secs(1)))));
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(p) = producer {
        p.abort();
    }
    if let Some(f) = follower {
        f.abort();
    }
    for f in forwards {
        f.abort();
    }
    if let Some(seq) = &l2.sequencer {
        if let Err(e) = seq.save_journal() {
            tracing::warn!(error = %e, "pool journal not saved");
        }
    }
    client.shutdown();
    let _ = handle.stop();
    client_store.flush()?;
    Ok(())
}

fn forward<T: Clone + Send + 'static>(
    mut rx: tokio::sync::broadcast::Receiver<T>,
    tx: tokio::sync::broadcast::Sender<T>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let _ = tx.send(v);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// `hemi devnet`.
pub async fn devnet(cfg: Config) -> anyhow::Result<()> {
    let key = Key::from_seed(DEVNET_BTC_KEY_SEED);
    let btc_addr = key.address(KeyKind::P2wpkh, Network::Regtest);
    let client_store = open_store(&cfg, "bitcoin", Network::Regtest)?;
    println!("hemi-rs devnet {}", env!("CARGO_PKG_VERSION"));
    println!();
    let mut status = json!({"mode": "devnet", "bitcoinAddress": btc_addr.to_string()});
    let peers = if cfg.bitcoin_peers.is_empty() {
        let node_store = open_store(&cfg, "regtest-node", Network::Regtest)?;
        let node = RegtestNode::new(node_store);
        let script = btc_addr.script_pubkey();
        if node.store().indexed_tip().height < 101 {
            let need = 101 - node.store().indexed_tip().height;
            let n = node.clone();
            let s = script.clone();
            tokio::task::spawn_blocking(move || n.mine(need, &s)).await??;
        }
        let (p2p, _p2p_task) =
            hemi_btc_regtest::serve_p2p(node.clone(), cfg.bitcoin_p2p_addr, Default::default())
                .await
                .with_context(|| format!("binding regtest P2P on {}", cfg.bitcoin_p2p_addr))?;
        let (rpc, _rpc_task) =
            hemi_btc_regtest::serve_rpc(node.clone(), cfg.bitcoin_rpc_addr, RpcAuth::default())
                .await
                .with_context(|| format!("binding regtest RPC on {}", cfg.bitcoin_rpc_addr))?;
        if cfg.bitcoin_block_time > 0 {
            hemi_btc_regtest::spawn_miner(
                node.clone(),
                Duration::from_secs(cfg.bitcoin_block_time),
                script,
            );
        }
        println!("Embedded Bitcoin regtest node");
        println!("  P2P:  {p2p}   (bitcoind -regtest -addnode={p2p})");
        println!(
            "  RPC:  http://{rpc}   (bitcoin-cli -regtest -rpcport={} ...)",
            rpc.port()
        );
        println!(
            "  blocks every {}",
            if cfg.bitcoin_block_time == 0 {
                "request (generatetoaddress)".to_string()
            } else {
                format!("{} s", cfg.bitcoin_block_time)
            }
        );
        status["embeddedBitcoin"] = json!({"p2p": p2p.to_string(), "rpc": format!("http://{rpc}")});
        vec![p2p]
    } else {
        if let Some(url) = &cfg.bitcoin_rpc {
            fund_on_external_regtest(url, &btc_addr).await?;
        }
        println!("External Bitcoin: {:?}", cfg.bitcoin_peers);
        cfg.bitcoin_peers.clone()
    };
    println!();
    println!("Devnet Bitcoin key (regtest, P2WPKH)");
    println!("  address: {btc_addr}");
    println!("  secret:  {}", hex::encode(key.secret_bytes()));
    println!();
    if cfg.persist {
        println!("State: {} (persisted)", cfg.dir.display());
    } else {
        println!("State: in memory (use --persist to keep it)");
    }
    let client = BitcoinClient::spawn(client_store.clone(), ClientConfig::new(cfg.network, peers));
    let chain = open_chain(&cfg)?;
    let sequencer = Sequencer::new(
        chain.clone(),
        client_store.clone() as Arc<dyn BitcoinView>,
        SequencerConfig {
            secret: alloy_primitives::keccak256(DEVNET_SEQUENCER_KEY_SEED),
            network: Network::Regtest,
            journal: cfg.persist.then(|| cfg.dir.join("txpool.journal")),
            // A development chain takes what a script throws at it, as anvil does.
            pool_limits: Some((DEVNET_POOL_PER_SENDER, DEVNET_POOL_TOTAL)),
        },
    )?;
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 10)?;
    println!(
        "L2 (chain id {}, block time {:?}, gas limit {})",
        chain.spec().chain_id,
        cfg.block_time,
        cfg.gas_limit
    );
    println!("  sequencer: {}", sequencer.address());
    println!("  head:      block {}", chain.head().0);
    println!();
    println!(
        "Available accounts (10,000 ETH each; mnemonic \"{}\")",
        hemi_chain::DEV_MNEMONIC
    );
    for (i, a) in accounts.iter().enumerate() {
        println!("  ({i}) {}  0x{}", a.address, hex::encode(a.secret));
    }
    println!();
    status["sequencer"] = json!(sequencer.address());
    status["chainId"] = json!(chain.spec().chain_id);
    let l2 = L2 {
        chain,
        sequencer: Some(sequencer),
        follower: None,
        accounts: accounts.iter().map(|a| a.address).collect(),
    };
    serve(&cfg, client_store, client, status, l2).await
}

/// On an external regtest Bitcoin Core, makes sure the devnet key has mature coins.
async fn fund_on_external_regtest(url: &str, addr: &bitcoin::Address) -> anyhow::Result<()> {
    let rpc = BitcoinRpc::new(url).context("--bitcoin-rpc")?;
    let info: serde_json::Value = rpc
        .call("getblockchaininfo", json!([]))
        .await
        .context("calling Bitcoin Core")?;
    if info["chain"] != "regtest" {
        return Ok(());
    }
    let hashes = rpc
        .generate_to_address(101, addr)
        .await
        .context("generatetoaddress on Bitcoin Core")?;
    tracing::info!(blocks = hashes.len(), address = %addr, "funded the devnet key on Bitcoin Core regtest");
    Ok(())
}

/// `hemi node`.
pub async fn node(cfg: Config) -> anyhow::Result<()> {
    let store = open_store(&cfg, "bitcoin", cfg.network)?;
    println!(
        "hemi-rs node {} ({})",
        env!("CARGO_PKG_VERSION"),
        cfg.network.to_core_arg()
    );
    println!("Bitcoin peers: {:?}", cfg.bitcoin_peers);
    println!("State: {}", cfg.dir.display());
    let mut status = json!({"mode": "node"});
    let client = BitcoinClient::spawn(
        store.clone(),
        ClientConfig::new(cfg.network, cfg.bitcoin_peers.clone()),
    );
    let chain = open_chain(&cfg)?;
    let follower = match &cfg.follow {
        Some(url) => {
            let sequencer = match &cfg.sequencer_address {
                Some(a) => a
                    .parse()
                    .with_context(|| format!("--sequencer-address {a:?} is not an address"))?,
                None => {
                    let a = follower::sequencer_address(url)
                        .await
                        .with_context(|| format!("asking {url} for its sequencer address"))?;
                    tracing::warn!(sequencer = %a, "trusting the followed node for the sequencer address; pass --sequencer-address to pin it");
                    a
                }
            };
            println!("Following {url} (blocks sealed by {sequencer})");
            status["following"] = json!(url);
            status["sequencer"] = json!(sequencer);
            Some(Arc::new(Follower::new(
                chain.clone(),
                store.clone() as Arc<dyn BitcoinView>,
                cfg.network,
                url.clone(),
                sequencer,
            )))
        }
        None => None,
    };
    let l2 = L2 {
        chain,
        sequencer: None,
        follower,
        accounts: Vec::new(),
    };
    serve(&cfg, store, client, status, l2).await
}
