//! `hemi bench finality`: a real devnet (embedded Bitcoin miner, built-in PoP miner) measured
//! from outside over JSON-RPC:
//!
//! 1. Time from an L2 block's production to its superfinality, beside the bound Bitcoin sets:
//!    the first Bitcoin block after the covering keystone exists, plus `superfinality_depth`
//!    more blocks (both timed by the same poller, so the ratio is what PoP adds).
//! 2. `hemi_getFinality` throughput and latency under concurrent clients.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::devnet::Devnet;

/// `hemi bench finality` options.
#[derive(Debug, Args)]
pub struct FinalityArgs {
    /// Blocks whose time to finality is measured (one after the other).
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// The embedded Bitcoin miner's block time, seconds.
    #[arg(long, default_value_t = 3)]
    pub bitcoin_block_time: u64,
    /// L2 block time, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub block_time: f64,
    /// Keystone interval.
    #[arg(long, default_value_t = 5)]
    pub keystone_interval: u64,
    /// Superfinality depth.
    #[arg(long, default_value_t = 10)]
    pub superfinality_depth: u32,
    /// `hemi_getFinality` requests in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent clients in the throughput run.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

async fn start(args: &FinalityArgs) -> anyhow::Result<Devnet> {
    Devnet::start(&[
        "--block-time",
        &args.block_time.to_string(),
        "--bitcoin-block-time",
        &args.bitcoin_block_time.to_string(),
        "--keystone-interval",
        &args.keystone_interval.to_string(),
        "--superfinality-depth",
        &args.superfinality_depth.to_string(),
    ])
    .await
}

/// Runs the benchmark.
///
/// # Errors
/// The devnet does not start or stops answering.
pub(crate) async fn run(args: FinalityArgs) -> anyhow::Result<()> {
    let d = start(&args).await?;
    println!(
        "devnet: L2 block {} s, keystone every {} blocks, Bitcoin block {} s, superfinal at {} confirmations",
        args.block_time, args.keystone_interval, args.bitcoin_block_time, args.superfinality_depth
    );
    let interval = args.keystone_interval;
    let mut ratios = Vec::new();
    for sample in 0..args.samples {
        // A block that has just been produced.
        let n0 = d.head().await?;
        let n = loop {
            let h = d.head().await?;
            if h > n0 {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let t0 = Instant::now();
        let keystone = n.div_ceil(interval) * interval;
        let mut keystone_at: Option<Instant> = None;
        // First time each Bitcoin height is seen.
        let mut btc_seen: Vec<(u64, Instant)> = vec![(d.btc_height().await?, t0)];
        let finalized_at = loop {
            let now = Instant::now();
            let h = d.btc_height().await?;
            if h > btc_seen.last().map_or(0, |x| x.0) {
                btc_seen.push((h, now));
            }
            if keystone_at.is_none() && d.head().await? >= keystone {
                keystone_at = Some(now);
            }
            let f = d.call("hemi_getFinality", json!([n])).await?;
            if f["superFinality"] == true {
                break now;
            }
            if now - t0 > Duration::from_secs(600) {
                bail!("block {n} not superfinal after 600 s: {f}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let kt = keystone_at.context("keystone time")?;
        // Bitcoin's bound: the first block seen after the keystone existed, plus depth blocks.
        let first = btc_seen
            .iter()
            .find(|(_, t)| *t > kt)
            .map(|x| x.0)
            .context("no Bitcoin block after the keystone")?;
        let target = first + u64::from(args.superfinality_depth);
        let bound_at = btc_seen
            .iter()
            .find(|(h, _)| *h >= target)
            .map(|x| x.1)
            .context("Bitcoin did not reach the bound height")?;
        let measured = (finalized_at - t0).as_secs_f64();
        let bound = (bound_at - t0).as_secs_f64();
        ratios.push(measured / bound);
        println!(
            "sample {sample}: block {n} (keystone {keystone} after {:.2} s): superfinal after {measured:.2} s; Bitcoin's bound {bound:.2} s (block {first} + {}); ratio {:.3}",
            (kt - t0).as_secs_f64(),
            args.superfinality_depth,
            measured / bound
        );
    }
    if !ratios.is_empty() {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        println!(
            "time to finality / Bitcoin's bound: mean {mean:.3}, max {:.3}",
            ratios.iter().cloned().fold(0.0, f64::max)
        );
    }

    // Throughput.
    let head = d.head().await?;
    let per = args.requests / args.concurrency.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let http = reqwest::Client::new();
        let url = d.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let n = 1 + ((c * 7919 + i * 104_729) as u64) % head.max(1);
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .json(&json!({"jsonrpc": "2.0", "id": i, "method": "hemi_getFinality", "params": [n]}))
                    .send()
                    .await?
                    .json::<Value>()
                    .await?;
                if r.get("result").is_none_or(Value::is_null) {
                    bail!("hemi_getFinality({n}): {r}");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "hemi_getFinality: {} requests, {} clients, {:.0} req/s, latency p50 {:.2} ms, p99 {:.2} ms (head {head})",
        all.len(),
        args.concurrency,
        all.len() as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
