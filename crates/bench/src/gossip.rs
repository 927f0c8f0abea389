//! `hemi bench gossip`: the time from a block's commit on the sequencer to its import on a
//! follower, over the p2p network (`--p2p-addr` / `--bootnode`, gossip) beside the JSON-RPC
//! path (`--follow`, polling), both followers of one devnet in the same run. Each node's
//! `newHeads` WebSocket subscription timestamps the blocks (the sequencer's fires at commit, a
//! follower's at import).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::devnet::Devnet;

/// `hemi bench gossip` options.
#[derive(Debug, Args)]
pub struct GossipArgs {
    /// Blocks measured.
    #[arg(long, default_value_t = 100)]
    pub blocks: u64,
    /// L2 block time, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub block_time: f64,
}

/// Sends `(node, block number, when seen)` for every `newHeads` of `url`.
async fn watch(
    node: usize,
    url: &str,
    out: mpsc::UnboundedSender<(usize, u64, Instant)>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let ws = url.replacen("http://", "ws://", 1);
    let client = WsClientBuilder::default().build(&ws).await?;
    let mut sub = client
        .subscribe::<Value, _>("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe")
        .await?;
    Ok(tokio::spawn(async move {
        let _client = client;
        while let Some(Ok(head)) = sub.next().await {
            let seen = Instant::now();
            if let Some(n) = head["number"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            {
                if out.send((node, n, seen)).is_err() {
                    return;
                }
            }
        }
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark.
///
/// # Errors
/// A process does not start, or the followers stop following.
pub(crate) async fn run(args: GossipArgs) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.blocks) {
        bail!("--blocks must be 1..=10000");
    }
    let p2p_addr = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let bt = args.block_time.to_string();
    let seq = Devnet::start(&["--block-time", &bt, "--p2p-addr", &p2p_addr, "--no-popm"]).await?;
    let status = seq.call("hemi_nodeStatus", json!([])).await?;
    let boot = status["p2p"]["listen"][0]
        .as_str()
        .context("the devnet's p2p address")?
        .to_string();
    let follower_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let by_p2p = Devnet::spawn(&[
        "node",
        "--bitcoin-peer",
        &seq.bitcoin_p2p,
        "--block-time",
        &bt,
        "--p2p-addr",
        &follower_p2p,
        "--bootnode",
        &boot,
    ])
    .await?;
    let by_rpc = Devnet::spawn(&[
        "node",
        "--bitcoin-peer",
        &seq.bitcoin_p2p,
        "--block-time",
        &bt,
        "--follow",
        &seq.url,
    ])
    .await?;
    // Both caught up before measuring.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = seq.head().await?;
        if by_p2p.head().await? >= h && by_rpc.head().await? >= h {
            break;
        }
        if Instant::now() > deadline {
            bail!("the followers did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tasks = vec![
        watch(0, &seq.url, tx.clone()).await?,
        watch(1, &by_p2p.url, tx.clone()).await?,
        watch(2, &by_rpc.url, tx).await?,
    ];
    let first = seq.head().await? + 2;
    let last = first + args.blocks - 1;
    println!(
        "devnet with L2 block time {} s; follower 1 by p2p gossip, follower 2 by --follow (polls every min(block time, 1 s)); blocks {first}..={last}",
        args.block_time
    );
    let mut seen: HashMap<(usize, u64), Instant> = HashMap::new();
    let limit =
        Instant::now() + Duration::from_secs_f64(args.block_time * args.blocks as f64 * 3.0 + 60.0);
    while !(0..3).all(|i| seen.contains_key(&(i, last))) {
        let left = limit.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((node, n, at))) => {
                seen.entry((node, n)).or_insert(at);
            }
            _ => bail!("timed out waiting for block {last} on every node"),
        }
    }
    for t in tasks {
        t.abort();
    }
    let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for n in first..=last {
        let Some(t0) = seen.get(&(0, n)) else {
            continue;
        };
        for (k, node) in [1usize, 2].into_iter().enumerate() {
            if let Some(t) = seen.get(&(node, n)) {
                lat[k].push(t.saturating_duration_since(*t0).as_secs_f64() * 1e3);
            }
        }
    }
    for l in &mut lat {
        l.sort_by(f64::total_cmp);
    }
    println!(
        "commit → import, ms (n = {}, {}):",
        lat[0].len(),
        lat[1].len()
    );
    println!("| path | p50 | p95 | max |");
    println!("|---|---:|---:|---:|");
    for (name, l) in [("p2p gossip", &lat[0]), ("--follow (RPC polling)", &lat[1])] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(l, 0.5),
            percentile(l, 0.95),
            l.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "p50 ratio, --follow / p2p: {:.1}x",
        percentile(&lat[1], 0.5) / percentile(&lat[0], 0.5)
    );
    Ok(())
}
