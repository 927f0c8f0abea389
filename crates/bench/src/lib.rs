//! `hemi bench`: measurements that need real processes, run side by side with a peer (the
//! results go in docs/BENCHMARKS.md). A dependency of the `hemi` binary, never of `hemi-node`.
//!
//! `hemi bench bitcoin-sync` builds a regtest chain with transactions on a real bitcoind, then
//! times (a) our Bitcoin client syncing and indexing it over P2P into a fresh file store and
//! (b) a second, fresh bitcoind syncing the same chain from the same source, and prints both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bitcoin::{Amount, Network, OutPoint, TxOut};
use clap::{Args, Subcommand};
use hemi_btc_client::{BitcoinClient, ClientConfig};
use hemi_btc_headers::ChainParams;
use hemi_btc_store::ChainStore;
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use hemi_testkit::BitcoinCore;

mod devnet;
mod gossip;
mod hvm;
mod l2;
mod pop;
mod set;
mod tunnel;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bitcoin P2P sync speed: our client vs bitcoind, same chain, same machine.
    BitcoinSync(SyncArgs),
    /// L2 block execution + state root + commit at 10k..1M existing accounts (Mgas/s).
    L2Exec(crate::l2::L2ExecArgs),
    /// An L2 block of hVM balance calls re-executed at its pin, and 100 / 1,000 Bitcoin blocks
    /// after it.
    HvmPin(crate::hvm::HvmPinArgs),
    /// Devnet time from an L2 block to superfinality vs Bitcoin's bound; hemi_getFinality
    /// requests per second and latency.
    Finality(crate::pop::FinalityArgs),
    /// The tunnel: deposit → mint latency against its bound, provenance document size and
    /// verification time (beside the embedded node's bitcoind-compatible verifytxoutproof),
    /// payout vsize per withdrawal in batches of 1, 10 and 100.
    Tunnel(crate::tunnel::TunnelArgs),
    /// The p2p network: time from a block's commit on the sequencer to its import on a
    /// follower by gossip, beside a follower polling JSON-RPC (`--follow`).
    Gossip(crate::gossip::GossipArgs),
    /// The sequencer set beside one key: block interval and send → receipt with 1 key, 4
    /// validators in one process and 4 validator processes; kill -9 of a proposer.
    Set(crate::set::SetArgs),
}

/// `hemi bench bitcoin-sync` options.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Blocks in the chain.
    #[arg(long, default_value_t = 10_000)]
    pub blocks: u32,
    /// Payments per block on average.
    #[arg(long, default_value_t = 2)]
    pub txs_per_block: u32,
}

/// Runs a benchmark.
///
/// # Errors
/// bitcoind missing or failing, or a sync that does not finish.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::BitcoinSync(a) => bitcoin_sync(a).await,
        BenchCommand::L2Exec(a) => tokio::task::spawn_blocking(|| crate::l2::run(a)).await?,
        BenchCommand::HvmPin(a) => tokio::task::spawn_blocking(|| crate::hvm::run(a)).await?,
        BenchCommand::Finality(a) => crate::pop::run(a).await,
        BenchCommand::Tunnel(a) => crate::tunnel::run(a).await,
        BenchCommand::Gossip(a) => crate::gossip::run(a).await,
        BenchCommand::Set(a) => crate::set::run(a).await,
    }
}

async fn bitcoin_sync(args: SyncArgs) -> anyhow::Result<()> {
    println!("bitcoind: {}", hemi_testkit::bitcoind_path()?.display());
    let source = BitcoinCore::start()
        .await
        .context("starting the source bitcoind")?;
    let (txs, build) = build_chain(&source, args.blocks, args.txs_per_block).await?;
    let best = source.rpc.get_best_block_hash().await?;
    let height = source.rpc.get_block_count().await?;
    println!(
        "chain: {height} blocks, {txs} payments (built in {:.1} s)",
        build.as_secs_f64()
    );

    // (a) hemi: a fresh file-backed store, one P2P peer.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(ChainStore::open(
        dir.path().join("bitcoin.redb"),
        ChainParams::new(Network::Regtest),
    )?);
    let mut cfg = ClientConfig::new(Network::Regtest, vec![source.p2p_addr()]);
    cfg.progress = false;
    let start = Instant::now();
    let client = BitcoinClient::spawn(store.clone(), cfg);
    let mut tip = client.subscribe_tip();
    while store.indexed_tip().hash != best {
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("hemi did not sync within an hour");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), tip.changed()).await;
    }
    let hemi_secs = start.elapsed().as_secs_f64();
    client.shutdown();
    store.flush()?;

    // (b) bitcoind: a fresh node syncing from the same source.
    let peer = source.p2p_addr().to_string();
    let connect = format!("-connect={peer}");
    let follower = BitcoinCore::start_with(&[&connect])
        .await
        .context("starting the follower bitcoind")?;
    let start = Instant::now();
    loop {
        if follower.rpc.get_best_block_hash().await? == best {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("bitcoind did not sync within an hour");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let core_secs = start.elapsed().as_secs_f64();

    let h = height as f64;
    println!();
    println!("| syncer | seconds | blocks/s |");
    println!("|---|---|---|");
    println!(
        "| hemi-rs client (P2P + all indexes, redb) | {hemi_secs:.2} | {:.0} |",
        h / hemi_secs
    );
    println!(
        "| bitcoind (IBD from the same peer) | {core_secs:.2} | {:.0} |",
        h / core_secs
    );
    println!(
        "ratio hemi/bitcoind blocks per second: {:.2}",
        core_secs / hemi_secs
    );
    Ok(())
}

/// Mines `blocks` blocks with about `per_block` P2WPKH payments each; returns (payments, time).
async fn build_chain(
    core: &BitcoinCore,
    blocks: u32,
    per_block: u32,
) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let a = Key::from_seed("bench-sync-a");
    let b = Key::from_seed("bench-sync-b");
    let a_addr = a.address(KeyKind::P2wpkh, Network::Regtest);
    let b_script = b.script_pubkey(KeyKind::P2wpkh);
    let wanted = blocks as u64 * per_block as u64;
    // Enough mature coinbases to fan out into `wanted` coins, 200 per fan-out transaction.
    let fanouts = wanted.div_ceil(200).max(1);
    let first = (fanouts + 100).min(blocks.max(101) as u64);
    core.mine(first, &a_addr).await?;
    let mut coins: Vec<(OutPoint, TxOut)> = Vec::new();
    for h in 1..=fanouts.min(first - 100) {
        let block = core
            .rpc
            .get_block(&core.rpc.get_block_hash(h).await?)
            .await?;
        let cb = &block.txdata[0];
        let value = cb.output[0].value.to_sat();
        let share = (value - 100_000) / 200;
        let outs = (0..200)
            .map(|_| TxOut {
                value: Amount::from_sat(share),
                script_pubkey: a.script_pubkey(KeyKind::P2wpkh),
            })
            .collect();
        let tx = build_payment(
            &a,
            KeyKind::P2wpkh,
            &[(OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone())],
            outs,
            2.0,
        )?;
        core.rpc.send_raw_transaction(&tx).await?;
        let txid = tx.compute_txid();
        coins.extend((0..200u32).map(|v| (OutPoint::new(txid, v), tx.output[v as usize].clone())));
    }
    core.mine(1, &a_addr).await?;
    let bar = indicatif::ProgressBar::new(blocks as u64);
    let mut payments = 0u64;
    let round = 5u32;
    while (core.rpc.get_block_count().await? as u32) < blocks {
        for _ in 0..per_block * round {
            let Some(coin) = coins.pop() else { break };
            let tx = build_payment(
                &a,
                KeyKind::P2wpkh,
                &[coin],
                vec![TxOut {
                    value: Amount::from_sat(50_000),
                    script_pubkey: b_script.clone(),
                }],
                2.0,
            )?;
            core.rpc.send_raw_transaction(&tx).await?;
            payments += 1;
        }
        let left = blocks - core.rpc.get_block_count().await? as u32;
        core.mine(round.min(left) as u64, &a_addr).await?;
        bar.set_position(core.rpc.get_block_count().await?);
    }
    bar.finish_and_clear();
    Ok((payments, start.elapsed()))
}
