//! `hemi devnet`: every part in one process over one data directory, like anvil.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bitcoin::Network;
use hemi_btc_client::{BitcoinClient, ClientConfig};
use hemi_btc_regtest::{RegtestNode, RpcAuth};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::{Key, KeyKind};
use hemi_sequencer::{KeySealer, Sequencer, SequencerConfig};
use serde_json::json;

use crate::serve::{serve, L2};
use crate::storage::{open_chain, open_store};
use crate::Config;

/// Seed label of the devnet's built-in Bitcoin key (miner of the embedded chain; later the PoP
/// miner's key). Deterministic so scripts can rely on it, like anvil's accounts.
pub const DEVNET_BTC_KEY_SEED: &str = "hemi-devnet-bitcoin-key-0";

/// Seed label of the devnet sequencer's sealing key (deterministic, like the dev accounts).
pub const DEVNET_SEQUENCER_KEY_SEED: &str = "hemi-devnet-sequencer-key-0";

/// Devnet pool limits (a node keeps geth-like ones).
const DEVNET_POOL_PER_SENDER: usize = 10_000;
const DEVNET_POOL_TOTAL: usize = 200_000;

/// `hemi devnet`.
pub async fn devnet(mut cfg: Config) -> anyhow::Result<()> {
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
    let (tunnel, signer) = devnet_tunnel(&cfg)?;
    let set_keys: Vec<alloy_primitives::B256> = if cfg.sequencers > 1 {
        (0..cfg.sequencers).map(crate::set::devnet_key).collect()
    } else {
        Vec::new()
    };
    cfg.spec_validators = set_keys
        .iter()
        .map(|k| {
            hemi_consensus::PubKey::of_secret(*k)
                .and_then(|p| p.address())
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    cfg.spec_validators.sort();
    let chain = open_chain(&cfg, &tunnel)?;
    if chain.spec().validators != cfg.spec_validators {
        anyhow::bail!(
            "the chain in {} was made with {} sequencer(s); start it with the same --sequencers",
            cfg.dir.display(),
            chain.spec().validators.len().max(1)
        );
    }
    let sequencer = Sequencer::new(
        chain.clone(),
        client_store.clone() as Arc<dyn BitcoinView>,
        SequencerConfig {
            // As a refused seal reads ("invalid seal: sequencer key: …").
            sealer: Arc::new(
                KeySealer::new(alloy_primitives::keccak256(DEVNET_SEQUENCER_KEY_SEED))
                    .map_err(hemi_chain::ChainError::from)?,
            ),
            network: Network::Regtest,
            journal: cfg.persist.then(|| cfg.dir.join("txpool.journal")),
            // A development chain takes what a script throws at it, as anvil does.
            pool_limits: Some((DEVNET_POOL_PER_SENDER, DEVNET_POOL_TOTAL)),
            censor: cfg.censor.clone(),
        },
    )?;
    if cfg.skip_forced {
        tracing::warn!("test flag --skip-forced-txs: blocks leave out due forced transactions; followers refuse them");
        chain.set_skip_forced(true);
    }
    let net = crate::p2p::start(&cfg).await?;
    if let Some((_, app)) = &net {
        let _ = app.chain.set(chain.clone());
        let _ = app.sequencer.set(sequencer.clone());
    }
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 10)?;
    println!(
        "L2 (chain id {}, block time {:?}, gas limit {})",
        chain.spec().chain_id,
        cfg.block_time,
        cfg.gas_limit
    );
    let set = if set_keys.is_empty() {
        println!("  sequencer: {}", sequencer.address());
        None
    } else {
        let set = crate::set::start_devnet_set(
            sequencer.clone(),
            &set_keys,
            cfg.block_time,
            &cfg.dir,
            cfg.persist,
        )
        .await?;
        println!(
            "  sequencers: {} validators, Tendermint BFT (Malachite); blocks need {} signatures",
            set_keys.len(),
            hemi_chain::certificate::quorum(set_keys.len())
        );
        for (i, a) in cfg.spec_validators.iter().enumerate() {
            println!("    ({i}) {a}");
        }
        status["validators"] = json!(cfg.spec_validators);
        Some(set)
    };
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
    let custodians = popm_rpc
        .clone()
        .map(|url| (signer.0.clone(), signer.1.clone(), url));
    if custodians.is_none() {
        println!(
            "Custodians: payouts off (an external Bitcoin node needs --bitcoin-rpc to broadcast)"
        );
    }
    let l2 = L2 {
        dev_bitcoin: popm_rpc.clone().map(|url| (key.clone(), url)),
        set,
        custodians,
        chain,
        sequencer: Some(sequencer),
        follower: None,
        wake: None,
        net,
        accounts,
        popm: popm_rpc.filter(|_| cfg.popm).map(|url| (key.clone(), url)),
        tunnel,
    };
    serve(&cfg, client_store, client, status, l2).await
}

/// A custodians' signer and the words that name it in the banner.
type NamedSigner = (Arc<dyn hemi_custodian::VaultSigner>, String);

/// The devnet's tunnel and the signer of its custodians, with a line naming them: the built-in
/// deterministic 2-of-3 set, or, with `--vault` and `--custodians`, the `hemi custodian`
/// processes that made that vault.
fn devnet_tunnel(cfg: &Config) -> anyhow::Result<(crate::tunnel::Tunnel, NamedSigner)> {
    let (confirmations, deadline) = (cfg.deposit_confirmations, cfg.withdrawal_deadline);
    let Some(path) = &cfg.vault else {
        if cfg.custodians.is_some() {
            anyhow::bail!("--custodians needs --vault (the vault.json the custodians made)");
        }
        let (tunnel, custody) =
            crate::tunnel::Tunnel::devnet(confirmations, deadline, Network::Regtest)?;
        let signer = hemi_custodian::LocalSigner::new(Arc::new(custody), tunnel.vault.clone());
        return Ok((tunnel, (Arc::new(signer), "built in".to_string())));
    };
    let (file, vault) = hemi_custodian::VaultFile::load(path)
        .with_context(|| format!("--vault {}", path.display()))?;
    if file.network != Network::Regtest {
        anyhow::bail!(
            "--vault {}: a vault for {}, the devnet is regtest",
            path.display(),
            file.network
        );
    }
    let tunnel = crate::tunnel::Tunnel::new(vault, confirmations, deadline, Network::Regtest);
    let Some((peers_path, key_path)) = &cfg.custodians else {
        anyhow::bail!(
            "--vault needs --custodians and --coordinator-key (the custodian processes that \
             sign for it)"
        );
    };
    let peers = hemi_custodian::Peers::load(peers_path)
        .with_context(|| format!("--custodians {}", peers_path.display()))?;
    let n = peers.len();
    let identity = hemi_custodian::Identity::from_file(key_path)
        .with_context(|| format!("--coordinator-key {}", key_path.display()))?;
    let signer = hemi_custodian::RemoteSigner::new(peers, identity, &file)?;
    Ok((
        tunnel,
        (Arc::new(signer), format!("{n} `hemi custodian` processes")),
    ))
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
