//! What `hemi devnet` and `hemi node` share once the L2 is assembled: the finality tracker, the
//! JSON-RPC server with every namespace, the built-in PoP miner, and an orderly shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hemi_btc_client::BitcoinClient;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::Key;
use hemi_chain::Chain;
use hemi_finality::{FinalityParams, FinalityTracker};
use hemi_sequencer::Sequencer;
use hemi_sync::Follower;
use serde_json::json;

use crate::Config;

/// What runs the L2: the chain and either a sequencer (devnet) or a follower (node --follow).
pub(crate) struct L2 {
    pub(crate) chain: Arc<Chain>,
    pub(crate) sequencer: Option<Arc<Sequencer>>,
    pub(crate) follower: Option<Arc<Follower>>,
    /// Wakes the follower when gossip brings a block.
    pub(crate) wake: Option<Arc<tokio::sync::Notify>>,
    /// The p2p network (`--p2p-addr`) and what it serves.
    pub(crate) net: Option<(Arc<hemi_net::Network>, Arc<crate::p2p::NodeNet>)>,
    /// The devnet's unlocked accounts (`eth_accounts`, `eth_sendTransaction`); none on a node.
    pub(crate) accounts: Vec<hemi_chain::DevAccount>,
    /// The built-in PoP miner (devnet): its key and the Bitcoin RPC it broadcasts through.
    pub(crate) popm: Option<(Key, String)>,
    /// The BTC tunnel.
    pub(crate) tunnel: crate::tunnel::Tunnel,
    /// The custodians' signer (the devnet's built-in set, or `hemi custodian` processes), a
    /// line that says which, and the Bitcoin RPC payouts go through.
    pub(crate) custodians: Option<(Arc<dyn hemi_custodian::VaultSigner>, String, String)>,
    /// The devnet's Bitcoin key and RPC for `hemi_mineBitcoin` / `hemi_sendBitcoin`.
    pub(crate) dev_bitcoin: Option<(Key, String)>,
    /// The validators of the sequencer set this process runs (they make the blocks instead of
    /// the sequencer's timer).
    pub(crate) set: Option<Arc<crate::set::SequencerSet>>,
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
                vec![hemi_sync::ForkTip::active(number, hash)]
            }
        };
        hemi_sync::fork_choice_json(&tips, self.tracker.finalized())
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
        let (mut safe, mut finalized) = (tracker.safe(), tracker.finalized());
        loop {
            let t = tracker.clone();
            match tokio::task::spawn_blocking(move || t.refresh()).await {
                Ok(Ok(added)) => {
                    for k in &added {
                        tracing::info!(number = k.number, id = %k.id, "keystone");
                        let _ = keystones.send(hemi_rpc::pop::keystone_json(k));
                    }
                    let (s, f) = (tracker.safe(), tracker.finalized());
                    if (s, f) != (safe, finalized) {
                        tracing::info!(
                            safe = s,
                            finalized = f,
                            "finality: keystones published in Bitcoin"
                        );
                        (safe, finalized) = (s, f);
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

/// Runs the Bitcoin client and the JSON-RPC server until a signal; shared by devnet and node.
pub(crate) async fn serve(
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
    let tunnel_status = json!({
        "vaultAddress": l2.tunnel.address().to_string(),
        "vault": l2.tunnel.vault_json(),
        "depositConfirmations": l2.tunnel.spec.params.deposit_confirmations,
        "withdrawalDeadline": l2.tunnel.spec.params.withdrawal_deadline,
        "tokenAddress": hemi_tunnel::contracts::HEMI_BTC_ADDRESS,
        "tunnelAddress": hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS,
    });
    let p2p = l2.net.as_ref().map(|(n, _)| n.clone());
    let forced = l2.chain.spec().forced_inclusion;
    let node_status: Arc<dyn Fn() -> serde_json::Value + Send + Sync> = Arc::new(move || {
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
        v["tunnel"] = tunnel_status.clone();
        v["forcedInclusion"] = json!(forced);
        if let Some(m) = ms.get() {
            v["popm"] = serde_json::to_value(&*m.lock()).unwrap_or_default();
        }
        if let Some(net) = &p2p {
            v["p2p"] = crate::p2p::status_json(net);
        }
        v
    });
    let mut forwards = Vec::new();
    if let Some((net, app)) = &l2.net {
        let _ = app.status.set(node_status.clone());
        if let Some(seq) = &l2.sequencer {
            forwards.push(crate::p2p::spawn_block_publisher(
                net.clone(),
                l2.chain.clone(),
                seq.subscribe_blocks(),
            ));
        }
    }
    let ctx = hemi_rpc::RpcContext {
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sync_status: Arc::new(move || serde_json::to_value(c1.status()).unwrap_or_default()),
        node_status,
    };
    let rpc_cfg = hemi_rpc::RpcConfig {
        addr: cfg.rpc_addr,
        ..Default::default()
    };
    let (blocks, _) = tokio::sync::broadcast::channel(1024);
    let (pending, _) = tokio::sync::broadcast::channel(8192);
    if let Some(seq) = &l2.sequencer {
        forwards.push(forward(seq.subscribe_blocks(), blocks.clone()));
        forwards.push(forward(seq.subscribe_pending(), pending.clone()));
    }
    if let Some(f) = &l2.follower {
        forwards.push(forward(f.subscribe_blocks(), blocks.clone()));
        f.set_fork_rule(Arc::new(hemi_sync::PopForkRule {
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
    let blocks_for_metrics = blocks.subscribe();
    let backend = crate::eth::NodeBackend {
        chain: l2.chain.clone(),
        bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        network,
        sequencer: l2.sequencer.clone(),
        blocks,
        pending,
        accounts: l2.accounts.iter().map(|a| a.address).collect(),
        dev_keys: l2
            .accounts
            .iter()
            .map(|a| (a.address, alloy_primitives::B256::from(a.secret)))
            .collect(),
        finality: tracker.clone(),
        keystones,
        follower: l2.follower.clone(),
        net: l2.net.as_ref().map(|(n, _)| n.clone()),
    };
    let mut module = hemi_rpc::hemi_module(ctx)?.remove_context();
    module.merge(
        hemi_rpc::eth::eth_module(
            Arc::new(backend),
            format!("hemi-rs/v{}", env!("CARGO_PKG_VERSION")),
        )?
        .remove_context(),
    )?;
    module.merge(
        crate::debug::debug_module(crate::debug::DebugContext {
            chain: l2.chain.clone(),
            finality: tracker.clone(),
            bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
            network,
        })?
        .remove_context(),
    )?;
    module.merge(
        hemi_rpc::pop::pop_module(Arc::new(PopNode {
            chain: l2.chain.clone(),
            tracker: tracker.clone(),
            follower: l2.follower.clone(),
        }))?
        .remove_context(),
    )?;
    if let Some((key, url)) = &l2.dev_bitcoin {
        module.merge(
            crate::devbitcoin::dev_bitcoin_module(crate::devbitcoin::DevBitcoin {
                key: key.clone(),
                rpc: hemi_btc_rpc_client::BitcoinRpc::new(url)
                    .context("the devnet's Bitcoin RPC")?,
                network,
                view: client_store.clone() as Arc<dyn BitcoinView>,
            })?
            .remove_context(),
        )?;
    }
    module.merge(
        crate::tunnel::tunnel_module(crate::tunnel::TunnelContext {
            tunnel: l2.tunnel.clone(),
            chain: l2.chain.clone(),
            bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        })?
        .remove_context(),
    )?;
    module.merge(
        crate::forced::forced_module(crate::forced::ForcedContext {
            chain: l2.chain.clone(),
            bitcoin: client_store.clone() as Arc<dyn BitcoinView>,
        })?
        .remove_context(),
    )?;
    module.merge(
        crate::set::set_module(crate::set::SetContext {
            chain: l2.chain.clone(),
            set: l2.set.clone(),
        })?
        .remove_context(),
    )?;
    module.merge(
        crate::provenance::provenance_module(crate::provenance::ProvenanceContext {
            tunnel: l2.tunnel.clone(),
            chain: l2.chain.clone(),
            store: client_store.clone(),
            finality: tracker.clone(),
        })?
        .remove_context(),
    )?;
    // Otterscan's namespace calls the node's own methods: give it the whole set once merged.
    let ots_methods: Arc<std::sync::OnceLock<jsonrpsee::Methods>> = Default::default();
    module.merge(
        crate::ots::ots_module(crate::ots::OtsContext {
            chain: l2.chain.clone(),
            methods: ots_methods.clone(),
        })?
        .remove_context(),
    )?;
    let _ = ots_methods.set(module.clone().into());
    let role = if !l2.accounts.is_empty() {
        "devnet"
    } else if cfg.sequencer_key.is_some() {
        "validator"
    } else {
        "follower"
    };
    let metrics = crate::metrics::Metrics::new(
        crate::metrics::Sources {
            chain: l2.chain.clone(),
            tracker: tracker.clone(),
            sequencer: l2.sequencer.clone(),
            client: client.clone(),
        },
        role,
    );
    let counter_task = crate::metrics::spawn_block_counter(metrics.clone(), blocks_for_metrics);
    let m = metrics.clone();
    let metrics_route: hemi_rpc::http_routes::GetHandler = Arc::new(move |rest: &str| {
        if rest.is_empty() {
            hemi_rpc::http_routes::GetResponse::text(200, crate::metrics::CONTENT_TYPE, m.encode())
        } else {
            hemi_rpc::http_routes::GetResponse::json(404, &json!({"error": "not found"}))
        }
    });
    let tf = tracker.clone();
    let finality_route: hemi_rpc::http_routes::GetHandler = Arc::new(move |hash: &str| {
        let (status, body) = hemi_rpc::pop::keystone_finality_http(&tf, hash);
        hemi_rpc::http_routes::GetResponse::json(status, &body)
    });
    let (rpc_addr, handle) = hemi_rpc::start_with_routes(
        &rpc_cfg,
        module,
        vec![
            ("/v2/keystonefinality/".to_string(), finality_route),
            ("/metrics".to_string(), metrics_route),
            ("/explorer".to_string(), crate::explorer::route()),
        ],
        Some(metrics.clone() as Arc<dyn hemi_rpc::eth::RpcObserver>),
    )
    .await
    .with_context(|| format!("binding JSON-RPC on {}", cfg.rpc_addr))?;
    println!("JSON-RPC (HTTP and WebSocket): http://{rpc_addr}  ws://{rpc_addr}");
    println!(
        "Bitcoin finality (Hemi BFG API): http://{rpc_addr}/v2/keystonefinality/{{keystone hash}}"
    );
    println!("Explorer: http://{rpc_addr}/explorer");
    println!("Prometheus metrics: http://{rpc_addr}/metrics");
    println!(
        "Keystones every {} L2 blocks; superfinal at {} Bitcoin confirmations",
        cfg.keystone_interval, cfg.superfinality_depth
    );
    let t = &l2.tunnel;
    println!(
        "BTC tunnel: vault {} ({}-of-{} FROST key), hemiBTC {}, minted after {} confirmations",
        t.address(),
        t.vault.threshold,
        t.vault.custodian_keys.len(),
        hemi_tunnel::contracts::HEMI_BTC_ADDRESS,
        t.spec.params.deposit_confirmations
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
    let custodian_task = match &l2.custodians {
        Some((signer, which, url)) => {
            let rpc =
                hemi_btc_rpc_client::BitcoinRpc::new(url).context("custodians' Bitcoin RPC")?;
            println!(
                "Custodians ({which}): {}-of-{} FROST set, paying withdrawals through {url}",
                l2.tunnel.vault.threshold,
                l2.tunnel.vault.custodian_keys.len()
            );
            Some(tokio::spawn(
                crate::custodian::Custodians {
                    signer: signer.clone(),
                    tunnel: l2.tunnel.clone(),
                    chain: l2.chain.clone(),
                    store: client_store.clone(),
                    rpc,
                }
                .run(),
            ))
        }
        None => None,
    };
    println!();
    let producer = match &l2.set {
        Some(_) => None,
        None => l2.sequencer.as_ref().map(|s| s.spawn(cfg.block_time)),
    };
    let follower = l2.follower.clone().map(|f| {
        tokio::spawn(f.run_with_wake(cfg.block_time.min(Duration::from_secs(1)), l2.wake.clone()))
    });
    crate::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(p) = producer {
        p.abort();
    }
    if let Some(s) = &l2.set {
        s.stop();
    }
    if let Some(f) = follower {
        f.abort();
    }
    if let Some((m, w)) = miner_task {
        m.abort();
        w.abort();
    }
    if let Some(c) = custodian_task {
        c.abort();
    }
    finality_task.abort();
    counter_task.abort();
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
