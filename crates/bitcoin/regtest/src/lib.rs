//! The embedded Bitcoin regtest node: the devnet's zero-set-up Bitcoin.
//!
//! A real regtest chain in-process: it mines real blocks (coinbase with the BIP34 height, witness
//! commitment, Merkle root, proof of work at regtest difficulty) on a timer and on request, keeps
//! a mempool with Bitcoin Core's policy (standardness, fees, dust, signatures of P2WPKH, P2TR key
//! path and P2WSH multisig, replace-by-fee), serves the Bitcoin P2P protocol so Bitcoin Core and
//! our own Bitcoin client sync from it, and answers a bitcoind-compatible JSON-RPC subset.
//!
//! Place in the chain of trust: **Bitcoin** → hVM → sequencer → chain → PoP → finality. Users who
//! outgrow it point hemi-rs at a real Bitcoin Core instead; nothing else changes.
//!
//! Main types: [`RegtestNode`], [`Mempool`](mempool::Mempool); servers [`serve_p2p`],
//! [`serve_rpc`]; [`spawn_miner`] for timed blocks.

pub mod mempool;
mod node;
mod p2p;
mod rpc;

use std::sync::Arc;
use std::time::Duration;

pub use node::{
    build_block, coinbase, grind, regtest_subsidy, seal, NodeError, NodeEvent, RegtestNode,
};
pub use p2p::{headers_for, serve_p2p};
pub use rpc::{serve_rpc, tx_json, RpcAuth};

/// Default JSON-RPC address (Bitcoin Core regtest's).
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:18443";
/// Default P2P address (Bitcoin Core regtest's).
pub const DEFAULT_P2P_ADDR: &str = "127.0.0.1:18444";

/// Mines one block every `interval` paying to `script`, until the task is aborted.
pub fn spawn_miner(
    node: Arc<RegtestNode>,
    interval: Duration,
    script: bitcoin::ScriptBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = node.clone();
            let s = script.clone();
            match tokio::task::spawn_blocking(move || n.mine(1, &s)).await {
                Ok(Ok(h)) => tracing::debug!(hash = %h[0], "mined block"),
                Ok(Err(e)) => tracing::warn!(error = %e, "mining failed"),
                Err(_) => break,
            }
        }
    })
}
