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

/// Runs the Bitcoin client and the JSON-RPC server until a signal; shared by devnet and node.
async fn serve(
    cfg: &Config,
    client_store: Arc<ChainStore>,
    peers: Vec<std::net::SocketAddr>,
    extra_status: serde_json::Value,
) -> anyhow::Result<()> {
    let client = BitcoinClient::spawn(client_store.clone(), ClientConfig::new(cfg.network, peers));
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
    let (rpc_addr, handle) = hemi_rpc::start(&rpc_cfg, hemi_rpc::hemi_module(ctx)?)
        .await
        .with_context(|| format!("binding JSON-RPC on {}", cfg.rpc_addr))?;
    println!("JSON-RPC (HTTP and WebSocket): http://{rpc_addr}  ws://{rpc_addr}");
    println!();
    shutdown_signal().await;
    tracing::info!("shutting down");
    client.shutdown();
    let _ = handle.stop();
    client_store.flush()?;
    Ok(())
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
    serve(&cfg, client_store, peers, status).await
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
    let status = json!({"mode": "node"});
    serve(&cfg, store, cfg.bitcoin_peers.clone(), status).await
}
