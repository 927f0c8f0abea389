//! `hemi node`: follows external Bitcoin Core peers and, with `--follow`, a sequencer's blocks.

use std::sync::Arc;

use alloy_primitives::Address;
use anyhow::Context;
use hemi_btc_client::{BitcoinClient, ClientConfig};
use hemi_btc_view::BitcoinView;
use hemi_chain::{SealVerifier, SequencerAddress};
use hemi_sync::{Follower, P2pSource, RpcSource};
use serde_json::{json, Value};

use crate::serve::{serve, L2};
use crate::storage::{open_chain, open_store};
use crate::Config;

/// `hemi node`.
pub async fn node(mut cfg: Config) -> anyhow::Result<()> {
    let net = crate::p2p::start(&cfg).await?;
    // The node we learn the chain's parameters from: the first `--follow` URL, else a p2p
    // bootnode; asked only for what is not pinned by flags.
    let validators_file = match &cfg.validators {
        Some(p) => Some(crate::set::ValidatorsFile::load(p)?),
        None => None,
    };
    let needs_status = !cfg.consensus_params_set
        || !cfg.forced_inclusion_set
        || (cfg.sequencer_address.is_none() && validators_file.is_none())
        || cfg.vault.is_none();
    let remote: Option<(String, Value)> = match (cfg.follow.first(), &net) {
        _ if !needs_status => None,
        (Some(url), _) => Some((
            url.clone(),
            hemi_sync::node_status(url)
                .await
                .with_context(|| format!("asking {url} for the chain's parameters"))?,
        )),
        (None, Some((net, _))) if !cfg.bootnodes.is_empty() => {
            Some(crate::p2p::peer_status(net).await?)
        }
        _ => None,
    };
    if let (Some((from, status)), false) = (&remote, cfg.consensus_params_set) {
        // Keystones, PoP payouts and deposit confirmations are part of consensus: take the
        // followed node's.
        let fin = &status["finality"];
        if let (Some(i), Some(d)) = (
            fin["keystoneInterval"].as_u64(),
            fin["popPayoutDelay"].as_u64(),
        ) {
            tracing::info!(keystone_interval = i, pop_payout_delay = d, %from, "using the followed node's PoP parameters; pass --keystone-interval/--pop-payout-delay to pin them");
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
    if let (Some((from, status)), false) = (&remote, cfg.forced_inclusion_set) {
        if let Ok(p) = serde_json::from_value(status["forcedInclusion"].clone()) {
            tracing::info!(?p, %from, "using the followed node's forced-inclusion rule; pass --forced-inclusion-confirmations/--forced-inclusion-window to pin it");
            cfg.forced_inclusion = p;
        }
    }
    // The sequencer set: pinned by --validators, else the followed node's.
    if let Some(f) = &validators_file {
        cfg.spec_validators = f.addresses();
    } else if let Some((from, status)) = &remote {
        if let Some(list) = status["validators"].as_array() {
            let mut v = list
                .iter()
                .map(|a| a.as_str().and_then(|s| s.parse::<Address>().ok()))
                .collect::<Option<Vec<Address>>>()
                .with_context(|| format!("{from} reports a malformed validator set"))?;
            v.sort();
            tracing::warn!(validators = v.len(), %from, "trusting the followed node for the sequencer set; pass --validators to pin it");
            cfg.spec_validators = v;
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
    let tunnel = node_tunnel(&cfg, remote.as_ref()).await?;
    let chain = open_chain(&cfg, &tunnel)?;
    if let Some(key) = cfg.sequencer_key {
        return run_validator(
            cfg,
            key,
            validators_file,
            store,
            client,
            tunnel,
            chain,
            net,
            status,
        )
        .await;
    }
    let follows_p2p = net.is_some()
        && (remote.is_some() || cfg.sequencer_address.is_some() || validators_file.is_some());
    let follower = if cfg.follow.is_empty() && !follows_p2p {
        None
    } else if !cfg.spec_validators.is_empty() {
        let verifier: Arc<dyn SealVerifier> =
            Arc::new(hemi_chain::ValidatorSet(cfg.spec_validators.clone()));
        println!(
            "Following blocks certified by {} of {} sequencers",
            hemi_chain::certificate::quorum(cfg.spec_validators.len()),
            cfg.spec_validators.len()
        );
        status["validators"] = json!(cfg.spec_validators);
        Some(follower_of(
            &cfg,
            &net,
            &chain,
            &store,
            verifier,
            &mut status,
        ))
    } else {
        let sequencer: Address = match (&cfg.sequencer_address, &remote) {
            (Some(a), _) => a
                .parse()
                .with_context(|| format!("--sequencer-address {a:?} is not an address"))?,
            (None, Some((from, status))) => {
                let a = status["sequencer"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("{from} reports no sequencer address"))?;
                tracing::warn!(sequencer = %a, %from, "trusting the followed node for the sequencer address; pass --sequencer-address to pin it");
                a
            }
            (None, None) => anyhow::bail!("following needs --sequencer-address or a node to ask"),
        };
        let verifier: Arc<dyn SealVerifier> = Arc::new(SequencerAddress(sequencer));
        println!("Blocks sealed by {sequencer}");
        status["sequencer"] = json!(sequencer);
        Some(follower_of(
            &cfg,
            &net,
            &chain,
            &store,
            verifier,
            &mut status,
        ))
    };
    if let Some((_, app)) = &net {
        let _ = app.chain.set(chain.clone());
    }
    let (follower, wake) = match follower {
        Some((f, w)) => (Some(f), w),
        None => (None, None),
    };
    let l2 = L2 {
        chain,
        sequencer: None,
        follower,
        wake,
        net,
        accounts: Vec::new(),
        popm: None,
        tunnel,
        custodians: None,
        dev_bitcoin: None,
        set: None,
    };
    serve(&cfg, store, client, status, l2).await
}

type NetPair = Option<(Arc<hemi_net::Network>, Arc<crate::p2p::NodeNet>)>;

/// A follower of `--follow` URLs and (with `--p2p-addr`) the p2p network, checking seals with
/// `verifier`.
fn follower_of(
    cfg: &Config,
    net: &NetPair,
    chain: &Arc<hemi_chain::Chain>,
    store: &Arc<hemi_btc_store::ChainStore>,
    verifier: Arc<dyn SealVerifier>,
    status: &mut Value,
) -> (Arc<Follower>, Option<Arc<tokio::sync::Notify>>) {
    let mut sources: Vec<Arc<dyn hemi_sync::BlockSource>> = cfg
        .follow
        .iter()
        .map(|url| Arc::new(RpcSource::new(url.clone())) as Arc<dyn hemi_sync::BlockSource>)
        .collect();
    let mut wake = None;
    if let Some((net, app)) = net {
        let source = P2pSource::new(net.clone(), chain.clone(), verifier.clone());
        wake = Some(source.wake());
        let _ = app.source.set(source.clone());
        sources.push(source);
    }
    let mut where_ = cfg.follow.clone();
    if net.is_some() {
        where_.push("the p2p network".into());
    }
    println!("Following {}", where_.join(", "));
    status["following"] = if cfg.follow.len() == 1 && net.is_none() {
        json!(cfg.follow[0])
    } else {
        json!(where_)
    };
    (
        Arc::new(Follower::new(
            chain.clone(),
            store.clone() as Arc<dyn BitcoinView>,
            cfg.network,
            sources,
            verifier,
        )),
        wake,
    )
}

/// `hemi node --sequencer-key KEY --validators FILE`: one validator of the sequencer set. It
/// keeps a pool (transactions sent to it or gossiped), proposes in its turn, re-executes and
/// votes on the others' proposals, commits decided blocks with their certificates, and
/// gossips them to followers.
#[allow(clippy::too_many_arguments)]
async fn run_validator(
    cfg: Config,
    key: alloy_primitives::B256,
    file: Option<crate::set::ValidatorsFile>,
    store: Arc<hemi_btc_store::ChainStore>,
    client: BitcoinClient,
    tunnel: crate::tunnel::Tunnel,
    chain: Arc<hemi_chain::Chain>,
    net: NetPair,
    mut status: Value,
) -> anyhow::Result<()> {
    let file = file.context("--sequencer-key needs --validators FILE")?;
    if cfg.skip_forced {
        tracing::warn!("test flag --skip-forced-txs: this validator proposes and votes for blocks without due forced transactions");
        chain.set_skip_forced(true);
    }
    if chain.spec().validators != file.addresses() {
        anyhow::bail!(
            "the chain in {} was made for another sequencer set than --validators",
            cfg.dir.display()
        );
    }
    let sequencer = hemi_sequencer::Sequencer::new(
        chain.clone(),
        store.clone() as Arc<dyn BitcoinView>,
        hemi_sequencer::SequencerConfig {
            sealer: Arc::new(
                hemi_sequencer::KeySealer::new(key).map_err(hemi_chain::ChainError::from)?,
            ),
            network: cfg.network,
            journal: Some(cfg.dir.join("txpool.journal")),
            pool_limits: cfg.pool_limits,
            censor: Vec::new(),
        },
    )?;
    if let Some((_, app)) = &net {
        let _ = app.chain.set(chain.clone());
        let _ = app.sequencer.set(sequencer.clone());
    }
    let set = crate::set::start_validator(
        sequencer.clone(),
        key,
        &file,
        cfg.block_time,
        &cfg.dir,
        cfg.equivocate,
        &cfg.consensus_peers,
    )
    .await?;
    println!(
        "Sequencer set: validator {} of {} (Tendermint BFT, Malachite); blocks need {} signatures",
        sequencer.address(),
        file.addrs.len(),
        hemi_chain::certificate::quorum(file.addrs.len())
    );
    status["mode"] = json!("validator");
    status["sequencer"] = json!(sequencer.address());
    status["validators"] = json!(chain.spec().validators);
    status["chainId"] = json!(chain.spec().chain_id);
    let l2 = L2 {
        chain,
        sequencer: Some(sequencer),
        follower: None,
        wake: None,
        net,
        accounts: Vec::new(),
        popm: None,
        tunnel,
        custodians: None,
        dev_bitcoin: None,
        set: Some(set),
    };
    serve(&cfg, store, client, status, l2).await
}

/// The vault a node runs with: `--vault FILE`, else the followed node's (the vault is part of
/// consensus: a different one gives different state roots), else the devnet's.
async fn node_tunnel(
    cfg: &Config,
    remote: Option<&(String, Value)>,
) -> anyhow::Result<crate::tunnel::Tunnel> {
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
    if let Some((url, status)) = remote {
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
