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
use hemi_finality::{FinalityParams, FinalityTracker};
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

pub(crate) async fn shutdown_signal() {
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
    /// The built-in PoP miner (devnet): its key and the Bitcoin RPC it broadcasts through.
    popm: Option<(Key, String)>,
}

/// The keystone/finality RPC's view of the node.
struct PopNode {
    chain: Arc<Chain>,
    tracker: Arc<FinalityTracker>,
    follower: Option<Arc<Follower>>,
}

impl hemi_rpc::pop::PopBackend for PopNode {
    fn tracker(&self) -> &FinalityTracker {
        &self.tracker
    }
    fn head(&self) -> u64 {
        self.chain.head().0
    }
    fn number_of(&self, hash: &alloy_primitives::B256) -> Option<u64> {
        self.chain.number_of(hash).ok().flatten()
    }
    fn fork_choice(&self) -> serde_json::Value {
        let tips = match &self.follower {
            Some(f) => f.fork_tips(),
            None => {
                let (number, hash) = self.chain.head();
                vec![hemi_sequencer::follower::ForkTip::active(number, hash)]
            }
        };
        crate::fork::fork_choice_json(&tips, self.tracker.finalized())
    }
}

/// Keeps the finality tracker current: on every new L2 block, every Bitcoin tip change, and
/// once a second; new keystones go out to `keystones` as JSON.
fn spawn_finality(
    tracker: Arc<FinalityTracker>,
    mut blocks: tokio::sync::broadcast::Receiver<u64>,
    mut btc_tip: tokio::sync::watch::Receiver<u32>,
    keystones: tokio::sync::broadcast::Sender<serde_json::Value>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let t = tracker.clone();
            match tokio::task::spawn_blocking(move || t.refresh()).await {
                Ok(Ok(added)) => {
                    for k in &added {
                        tracing::debug!(number = k.number, hash = %k.id, "keystone");
                        let _ = keystones.send(hemi_rpc::pop::keystone_json(k));
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "finality refresh failed"),
                Err(_) => return,
            }
            tokio::select! {
                r = blocks.recv() => {
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                r = btc_tip.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

fn open_chain(cfg: &Config) -> anyhow::Result<Arc<Chain>> {
    let mut spec = ChainSpec::devnet()?;
    spec.gas_limit = cfg.gas_limit;
    spec.keystone_interval = cfg.keystone_interval;
    spec.pop_payout_delay = cfg.pop_payout_delay;
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
    let tracker = Arc::new(FinalityTracker::new(
        l2.chain.clone() as Arc<dyn hemi_finality::L2Headers>,
        client_store.clone() as Arc<dyn BitcoinView>,
        FinalityParams {
            keystone_interval: cfg.keystone_interval,
            superfinality_depth: cfg.superfinality_depth,
        },
    )?);
    let miner_status: Arc<std::sync::OnceLock<Arc<parking_lot::Mutex<hemi_pop::MinerStatus>>>> =
        Default::default();
    let ms = miner_status.clone();
    let tr = tracker.clone();
    let pop_payout_delay = l2.chain.spec().pop_payout_delay;
    let ctx = hemi_rpc::RpcContext {
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sync_status: Arc::new(move || serde_json::to_value(c1.status()).unwrap_or_default()),
        node_status: Arc::new(move || {
            let mut v = extra_status.clone();
            v["bitcoin"] = serde_json::to_value(c2.status()).unwrap_or_default();
            v["network"] = json!(network.to_core_arg());
            v["version"] = json!(env!("CARGO_PKG_VERSION"));
            v["finality"] = json!({
                "keystoneInterval": tr.params().keystone_interval,
                "popPayoutDelay": pop_payout_delay,
                "superfinalityDepth": tr.params().superfinality_depth,
                "keystones": tr.keystone_count(),
                "safe": tr.safe(),
                "finalized": tr.finalized(),
            });
            if let Some(m) = ms.get() {
                v["popm"] = serde_json::to_value(&*m.lock()).unwrap_or_default();
            }
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
        f.set_fork_rule(Arc::new(crate::fork::PopForkRule {
            chain: l2.chain.clone(),
            bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
            tracker: tracker.clone(),
        }));
    }
    let (keystones, _) = tokio::sync::broadcast::channel(256);
    let finality_task = spawn_finality(
        tracker.clone(),
        blocks.subscribe(),
        client.subscribe_tip(),
        keystones.clone(),
    );
    let backend = crate::eth::NodeBackend {
        chain: l2.chain.clone(),
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sequencer: l2.sequencer.clone(),
        blocks,
        pending,
        accounts: l2.accounts.clone(),
        finality: tracker.clone(),
        keystones,
        follower: l2.follower.clone(),
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
    module.merge(
        hemi_rpc::pop::pop_module(Arc::new(PopNode {
            chain: l2.chain.clone(),
            tracker: tracker.clone(),
            follower: l2.follower.clone(),
        }))?
        .remove_context(),
    )?;
    let tf = tracker.clone();
    let finality_route: hemi_rpc::http_routes::GetHandler =
        Arc::new(move |hash: &str| hemi_rpc::pop::keystone_finality_http(&tf, hash));
    let (rpc_addr, handle) = hemi_rpc::start_with_routes(
        &rpc_cfg,
        module,
        vec![("/v2/keystonefinality/".to_string(), finality_route)],
    )
    .await
    .with_context(|| format!("binding JSON-RPC on {}", cfg.rpc_addr))?;
    println!("JSON-RPC (HTTP and WebSocket): http://{rpc_addr}  ws://{rpc_addr}");
    println!(
        "Bitcoin finality (Hemi BFG API): http://{rpc_addr}/v2/keystonefinality/{{keystone hash}}"
    );
    println!(
        "Keystones every {} L2 blocks; superfinal at {} Bitcoin confirmations",
        cfg.keystone_interval, cfg.superfinality_depth
    );
    let miner_task = match &l2.popm {
        Some((key, bitcoin_rpc)) => {
            let record = cfg.persist.then(|| cfg.dir.join("popm.json"));
            let miner = crate::popm::devnet_miner(
                key.clone(),
                format!("http://{rpc_addr}"),
                bitcoin_rpc,
                record,
            )?;
            println!(
                "PoP miner (built in): {} (rewards to {})",
                miner.address(),
                miner.reward_address()
            );
            let _ = miner_status.set(miner.status());
            let (wake_tx, wake_rx) = tokio::sync::broadcast::channel(16);
            let mut keystones_rx = tracker.subscribe();
            let waker = tokio::spawn(async move {
                while let Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) =
                    keystones_rx.recv().await
                {
                    let _ = wake_tx.send(());
                }
            });
            Some((tokio::spawn(miner.run(Some(wake_rx))), waker))
        }
        None => None,
    };
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
    if let Some((m, w)) = miner_task {
        m.abort();
        w.abort();
    }
    finality_task.abort();
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
    let mut popm_rpc = cfg.bitcoin_rpc.clone();
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
        popm_rpc = Some(format!("http://{rpc}"));
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
    if cfg.popm && popm_rpc.is_none() {
        println!("PoP miner: off (an external Bitcoin node needs --bitcoin-rpc to broadcast)");
    }
    let l2 = L2 {
        chain,
        sequencer: Some(sequencer),
        follower: None,
        accounts: accounts.iter().map(|a| a.address).collect(),
        popm: popm_rpc.filter(|_| cfg.popm).map(|url| (key.clone(), url)),
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
pub async fn node(mut cfg: Config) -> anyhow::Result<()> {
    if let (Some(url), false) = (cfg.follow.first(), cfg.consensus_params_set) {
        // Keystones and PoP payouts are part of consensus: take the followed node's.
        let status = follower::node_status(url)
            .await
            .with_context(|| format!("asking {url} for its keystone interval"))?;
        let fin = &status["finality"];
        if let (Some(i), Some(d)) = (
            fin["keystoneInterval"].as_u64(),
            fin["popPayoutDelay"].as_u64(),
        ) {
            tracing::info!(keystone_interval = i, pop_payout_delay = d, "using the followed node's PoP parameters; pass --keystone-interval/--pop-payout-delay to pin them");
            cfg.keystone_interval = i;
            cfg.pop_payout_delay = d;
        }
    }
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
    let follower = match cfg.follow.first() {
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
            println!(
                "Following {} (blocks sealed by {sequencer})",
                cfg.follow.join(", ")
            );
            status["following"] = if cfg.follow.len() == 1 {
                json!(url)
            } else {
                json!(cfg.follow)
            };
            status["sequencer"] = json!(sequencer);
            Some(Arc::new(Follower::new(
                chain.clone(),
                store.clone() as Arc<dyn BitcoinView>,
                cfg.network,
                cfg.follow.clone(),
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
        popm: None,
    };
    serve(&cfg, store, client, status, l2).await
}
