//! Opening the node's databases: the Bitcoin index and the L2 chain, in `--dir` with
//! `--persist` (always for `hemi node`), in memory otherwise.

use std::sync::Arc;

use anyhow::Context;
use bitcoin::Network;
use hemi_btc_headers::ChainParams;
use hemi_btc_store::ChainStore;
use hemi_chain::{Chain, ChainSpec};

use crate::tunnel::Tunnel;
use crate::Config;

pub(crate) fn open_store(
    cfg: &Config,
    name: &str,
    network: Network,
) -> anyhow::Result<Arc<ChainStore>> {
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

pub(crate) fn open_chain(cfg: &Config, tunnel: &Tunnel) -> anyhow::Result<Arc<Chain>> {
    let mut spec = ChainSpec::devnet()?;
    spec.gas_limit = cfg.gas_limit;
    spec.keystone_interval = cfg.keystone_interval;
    spec.pop_payout_delay = cfg.pop_payout_delay;
    spec.tunnel = Some(tunnel.spec);
    spec.forced_inclusion = Some(cfg.forced_inclusion);
    // anvil's state changes (`anvil_setBalance`, …) ride in blocks only on a regtest devnet
    // and its followers.
    spec.dev_state = cfg.network == bitcoin::Network::Regtest;
    spec.validators = cfg.spec_validators.clone();
    let chain = if cfg.persist {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let path = cfg.dir.join("l2.redb");
        Chain::open(Some(&path), spec).with_context(|| format!("opening {}", path.display()))?
    } else {
        Chain::open(None, spec)?
    };
    if chain.spec().forced_inclusion != Some(cfg.forced_inclusion) {
        tracing::warn!(
            kept = ?chain.spec().forced_inclusion,
            flags = ?cfg.forced_inclusion,
            "the chain keeps the forced-inclusion parameters it was made with (they are consensus); the flags' differ"
        );
    }
    Ok(Arc::new(chain))
}
