//! `hemi node`: follows external Bitcoin Core peers and, with `--follow`, a sequencer's blocks.

use std::sync::Arc;

use anyhow::Context;
use hemi_btc_client::{BitcoinClient, ClientConfig};
use hemi_btc_view::BitcoinView;
use hemi_chain::SequencerAddress;
use hemi_sync::{Follower, RpcSource};
use serde_json::json;

use crate::serve::{serve, L2};
use crate::storage::{open_chain, open_store};
use crate::Config;

/// `hemi node`.
pub async fn node(mut cfg: Config) -> anyhow::Result<()> {
    if let (Some(url), false) = (cfg.follow.first(), cfg.consensus_params_set) {
        // Keystones, PoP payouts and deposit confirmations are part of consensus: take the
        // followed node's.
        let status = hemi_sync::node_status(url)
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
        if let Some(n) = status["tunnel"]["depositConfirmations"].as_u64() {
            cfg.deposit_confirmations = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = status["tunnel"]["withdrawalDeadline"].as_u64() {
            cfg.withdrawal_deadline = n;
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
    let tunnel = node_tunnel(&cfg).await?;
    let chain = open_chain(&cfg, &tunnel)?;
    let follower = match cfg.follow.first() {
        Some(url) => {
            let sequencer = match &cfg.sequencer_address {
                Some(a) => a
                    .parse()
                    .with_context(|| format!("--sequencer-address {a:?} is not an address"))?,
                None => {
                    let a = hemi_sync::sequencer_address(url)
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
                cfg.follow
                    .iter()
                    .map(|url| {
                        Arc::new(RpcSource::new(url.clone())) as Arc<dyn hemi_sync::BlockSource>
                    })
                    .collect(),
                Arc::new(SequencerAddress(sequencer)),
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
        tunnel,
        custodians: None,
        dev_bitcoin: None,
    };
    serve(&cfg, store, client, status, l2).await
}

/// The vault a node runs with: `--vault FILE`, else the followed node's (the vault is part of
/// consensus: a different one gives different state roots), else the devnet's.
async fn node_tunnel(cfg: &Config) -> anyhow::Result<crate::tunnel::Tunnel> {
    let (confirmations, deadline) = (cfg.deposit_confirmations, cfg.withdrawal_deadline);
    if let Some(path) = &cfg.vault {
        let (file, vault) = hemi_custodian::VaultFile::load(path)
            .with_context(|| format!("--vault {}", path.display()))?;
        if file.network != cfg.network {
            anyhow::bail!(
                "--vault {}: a vault for {}, this node is on {}",
                path.display(),
                file.network,
                cfg.network
            );
        }
        return Ok(crate::tunnel::Tunnel::new(
            vault,
            confirmations,
            deadline,
            cfg.network,
        ));
    }
    if let Some(url) = cfg.follow.first() {
        let status = hemi_sync::node_status(url)
            .await
            .with_context(|| format!("asking {url} for its tunnel vault"))?;
        let v = &status["tunnel"]["vault"];
        if !v.is_null() {
            let vault = crate::tunnel::Tunnel::vault_from_json(v)
                .with_context(|| format!("the tunnel vault {url} reports"))?;
            tracing::warn!(vault = %vault.address(cfg.network), "trusting the followed node for the tunnel vault; pass --vault to pin it");
            return Ok(crate::tunnel::Tunnel::new(
                vault,
                confirmations,
                deadline,
                cfg.network,
            ));
        }
    }
    if cfg.network != bitcoin::Network::Regtest {
        anyhow::bail!(
            "no --vault: on {} a node needs the tunnel vault its custodians made (the devnet's \
             vault, whose keys are public, is for regtest only)",
            cfg.network
        );
    }
    Ok(crate::tunnel::Tunnel::devnet(confirmations, deadline, cfg.network)?.0)
}
