//! `hemi bench set`: the sequencer set beside the lone sequencer, in one run. For one key
//! (`hemi devnet`), four validators in one process (`hemi devnet --sequencers 4`) and four
//! validator processes (`hemi node --sequencer-key … --validators …` on one p2p network, Bitcoin
//! from a devnet's embedded node): the interval between blocks and the time from `eth_sendRawTransaction` to
//! its receipt. Then kill -9 of a validator process just before its turn to propose: the time
//! to the next block, and the longest interval while its turns come round.

use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use anyhow::{bail, Context};
use clap::Args;
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::devnet::Devnet;

/// `hemi bench set` options.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Block intervals measured per configuration.
    #[arg(long, default_value_t = 60)]
    pub blocks: u64,
    /// Transactions timed per configuration (one at a time).
    #[arg(long, default_value_t = 30)]
    pub txs: u64,
    /// L2 block time (the set's target time per height), seconds.
    #[arg(long, default_value_t = 0.5)]
    pub block_time: f64,
    /// Also run `tests/js/bench-erc20.mjs` with this many transfers against one key and four
    /// validator processes (0: not).
    #[arg(long, default_value_t = 0)]
    pub erc20: u64,
    /// The ERC-20 runs' block gas limit.
    #[arg(long, default_value_t = 300_000_000)]
    pub erc20_gas_limit: u64,
    /// Where `bench-erc20.mjs` and its npm packages are.
    #[arg(long, default_value = "tests/js")]
    pub js_dir: std::path::PathBuf,
    /// Only the ERC-20 runs (skip the latency and kill -9 measurements).
    #[arg(long)]
    pub erc20_only: bool,
}

/// Heads as `newHeads` delivers them: (number, when seen).
async fn heads(
    url: &str,
) -> anyhow::Result<(
    mpsc::UnboundedReceiver<(u64, Instant)>,
    tokio::task::JoinHandle<()>,
)> {
    let client = WsClientBuilder::default()
        .build(url.replacen("http://", "ws://", 1))
        .await?;
    let mut sub = client
        .subscribe::<Value, _>("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe")
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let _client = client;
        while let Some(Ok(h)) = sub.next().await {
            let at = Instant::now();
            if let Some(n) = h["number"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            {
                if tx.send((n, at)).is_err() {
                    return;
                }
            }
        }
    });
    Ok((rx, task))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn transfer(secret: B256, nonce: u64) -> anyhow::Result<String> {
    let tx = TxEip1559 {
        chain_id: hemi_chain::ChainSpec::devnet()?.chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::repeat_byte(0xbe)),
        value: U256::from(1u64),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, tx.signature_hash())?;
    let env = TxEnvelope::from(tx.into_signed(sig));
    Ok(format!("0x{}", hex::encode(env.encoded_2718())))
}

/// What one configuration measured.
struct Measured {
    intervals: Vec<f64>,
    latencies: Vec<f64>,
}

/// Block intervals (ms) over `blocks` heads, then `txs` transfers one at a time, each timed
/// from sending to its receipt (polled every 2 ms).
async fn measure(node: &Devnet, args: &SetArgs, secret: B256) -> anyhow::Result<Measured> {
    let (mut rx, task) = heads(&node.url).await?;
    let mut last: Option<Instant> = None;
    let mut intervals = Vec::new();
    let limit =
        Instant::now() + Duration::from_secs_f64(args.block_time * args.blocks as f64 * 4.0 + 60.0);
    while (intervals.len() as u64) < args.blocks {
        let left = limit.saturating_duration_since(Instant::now());
        let Ok(Some((_, at))) = tokio::time::timeout(left, rx.recv()).await else {
            bail!("no new blocks from {}", node.url);
        };
        if let Some(prev) = last {
            intervals.push(at.duration_since(prev).as_secs_f64() * 1e3);
        }
        last = Some(at);
    }
    task.abort();
    let from = hemi_chain::eth_address(&bitcoin::secp256k1::SecretKey::from_slice(
        secret.as_slice(),
    )?);
    let nonce = node
        .call("eth_getTransactionCount", json!([from, "pending"]))
        .await?;
    let first = u64::from_str_radix(
        nonce.as_str().context("nonce")?.trim_start_matches("0x"),
        16,
    )?;
    let mut latencies = Vec::new();
    for nonce in first..first + args.txs {
        let raw = transfer(secret, nonce)?;
        let t0 = Instant::now();
        let hash = node.call("eth_sendRawTransaction", json!([raw])).await?;
        loop {
            if !node
                .call("eth_getTransactionReceipt", json!([hash]))
                .await?
                .is_null()
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("no receipt for {hash} in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    intervals.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        intervals,
        latencies,
    })
}

fn row(name: &str, m: &Measured) {
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        percentile(&m.intervals, 0.5),
        percentile(&m.intervals, 0.95),
        m.intervals.last().copied().unwrap_or(f64::NAN),
        percentile(&m.latencies, 0.5),
        percentile(&m.latencies, 0.95),
        m.latencies.last().copied().unwrap_or(f64::NAN),
    );
}

/// Runs the benchmark.
///
/// # Errors
/// A process does not start, or blocks stop coming.
/// Four validator processes (`hemi node --sequencer-key … --validators …`, plus `extra`) on
/// one p2p network, Bitcoin from `bitcoin_p2p`: the processes (validator 0 the bootnode), their
/// addresses, and the directory holding the validators file.
async fn validator_processes(
    bitcoin_p2p: &str,
    bt: &str,
    extra: &[&str],
) -> anyhow::Result<(Vec<Option<Devnet>>, Vec<Address>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let secrets: Vec<B256> = (0..4u8)
        .map(|i| alloy_primitives::keccak256([b'b', b'e', b'n', b'c', b'h', i]))
        .collect();
    let mut entries = Vec::new();
    let mut addresses = Vec::new();
    for s in &secrets {
        let k = hemi_consensus::PubKey::of_secret(*s).map_err(anyhow::Error::msg)?;
        addresses.push(k.address().map_err(anyhow::Error::msg)?);
        entries.push(json!({
            "publicKey": format!("0x{}", hex::encode(k.0)),
            "consensusAddr": format!("/ip4/127.0.0.1/tcp/{}", hemi_testkit::free_port()),
        }));
    }
    let file = dir.path().join("validators.json");
    std::fs::write(&file, json!({ "validators": entries }).to_string())?;
    let file = file.to_string_lossy().into_owned();
    // The validators also join the p2p network (validator 0 the bootnode), so a transaction
    // sent to one reaches every proposer's pool.
    let mut procs: Vec<Option<Devnet>> = Vec::new();
    let mut boot: Option<String> = None;
    for s in &secrets {
        let key = hex::encode(s);
        let p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
        let mut a = vec![
            "node",
            "--bitcoin-peer",
            bitcoin_p2p,
            "--sequencer-key",
            &key,
            "--validators",
            &file,
            "--block-time",
            bt,
            "--p2p-addr",
            &p2p,
        ];
        a.extend_from_slice(extra);
        if let Some(b) = &boot {
            a.extend(["--bootnode", b]);
        }
        let node = Devnet::spawn(&a).await?;
        if boot.is_none() {
            let status = node.call("hemi_nodeStatus", json!([])).await?;
            boot = Some(
                status["p2p"]["listen"][0]
                    .as_str()
                    .context("validator 0's p2p address")?
                    .to_string(),
            );
        }
        procs.push(Some(node));
    }
    Ok((procs, addresses, dir))
}

/// User + system CPU seconds `d`'s process has used (Linux `/proc`, 100 ticks a second).
fn cpu_seconds(d: &Devnet) -> f64 {
    std::fs::read_to_string(format!("/proc/{}/stat", d.child.id()))
        .ok()
        .and_then(|s| {
            // Fields after the command's closing parenthesis: utime and stime are 12th and 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// `d`'s resident set, kB (Linux `/proc`).
fn rss_kb(d: &Devnet) -> String {
    std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default()
}

/// `tests/js/bench-erc20.mjs` against `url`: its JSON summary.
async fn erc20_load(url: &str, args: &SetArgs, client: &str) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new("node")
        .current_dir(&args.js_dir)
        .args(["bench-erc20.mjs", "--rpc", url, "--client", client])
        .args(["--count", &args.erc20.to_string(), "--batch", "100"])
        .args([
            "--senders",
            "20",
            "--gas-limit",
            &args.erc20_gas_limit.to_string(),
        ])
        .output()
        .await
        .with_context(|| format!("running node bench-erc20.mjs in {}", args.js_dir.display()))?;
    if !out.status.success() {
        bail!(
            "bench-erc20.mjs against {client}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .last()
        .context("bench-erc20.mjs printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("bench-erc20.mjs printed {last:?}"))
}

/// ERC-20 transfers end to end, four validator processes beside one key, alternated (one key,
/// the set, one key, the set), each on a chain of its own with 1 s blocks.
async fn erc20(args: &SetArgs) -> anyhow::Result<()> {
    let gas = args.erc20_gas_limit.to_string();
    let common = ["--block-time", "1", "--gas-limit", gas.as_str()];
    let mut rows = Vec::new();
    for round in 1..=2 {
        let single = Devnet::start(&[&common[..], &["--no-popm"]].concat()).await?;
        let cpu0 = cpu_seconds(&single);
        let one = erc20_load(&single.url, args, "1 key").await?;
        let cpu_one = cpu_seconds(&single) - cpu0;
        let (procs, _, _dir) = validator_processes(
            &single.bitcoin_p2p,
            "1",
            // As the devnet's pool: the load is 1,000 transfers per sender.
            &[
                "--gas-limit",
                &gas,
                "--txpool-max-per-sender",
                "10000",
                "--txpool-max-total",
                "200000",
            ],
        )
        .await?;
        let up: Vec<&Devnet> = procs.iter().flatten().collect();
        let v0 = up[0];
        let cpu_set = |ps: &[&Devnet]| ps.iter().map(|d| cpu_seconds(d)).sum::<f64>();
        let before = cpu_set(&up);
        let set = erc20_load(&v0.url, args, "4 validator processes").await?;
        let cpu_four = cpu_set(&up) - before;
        rows.push((
            round,
            one,
            set,
            cpu_one,
            cpu_four,
            rss_kb(&single),
            rss_kb(v0),
        ));
        drop(procs);
    }
    println!();
    println!(
        "ERC-20 transfers end to end ({} transfers in batches of 100 from 20 senders, gas limit {}, 1 s blocks; all sent to one node; {} cores):",
        args.erc20,
        args.erc20_gas_limit,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| round | 1 key tx/s | 4 validator processes tx/s | ratio | CPU s during the load (1 key / 4 processes summed) | blocks (1 key / set) | RSS kB after (1 key / validator 0) |");
    println!("|---:|---:|---:|---:|---|---|---|");
    for (round, one, set, cpu_one, cpu_four, rss_one, rss_set) in rows {
        let t1 = one["tps"].as_f64().unwrap_or(0.0);
        let t4 = set["tps"].as_f64().unwrap_or(0.0);
        println!(
            "| {round} | {t1:.1} | {t4:.1} | {:.2}× | {cpu_one:.1} / {cpu_four:.1} | {} / {} | {rss_one} / {rss_set} |",
            if t1 > 0.0 { t4 / t1 } else { 0.0 },
            one["blocks"],
            set["blocks"],
        );
    }
    Ok(())
}

pub(crate) async fn run(args: SetArgs) -> anyhow::Result<()> {
    if !(2..=10_000).contains(&args.blocks) || !(1..=10_000).contains(&args.txs) {
        bail!("--blocks must be 2..=10000 and --txs 1..=10000");
    }
    if !(0.05..=10.0).contains(&args.block_time) {
        bail!("--block-time must be 0.05..=10 seconds");
    }
    if args.erc20_only {
        if args.erc20 == 0 {
            bail!("--erc20-only needs --erc20 N");
        }
        return erc20(&args).await;
    }
    let bt = args.block_time.to_string();
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 3)?;
    let secret = |i: usize| B256::from(accounts[i].secret);
    println!(
        "block time {} s; {} block intervals and {} transfers (one at a time, send → receipt) per configuration",
        args.block_time, args.blocks, args.txs
    );

    // One key; four validators in one process.
    let single = Devnet::start(&["--block-time", &bt, "--no-popm"]).await?;
    let one = measure(&single, &args, secret(0)).await?;
    let in_process = {
        let d = Devnet::start(&["--block-time", &bt, "--no-popm", "--sequencers", "4"]).await?;
        measure(&d, &args, secret(1)).await?
    };

    // Four processes, Bitcoin from the first devnet's embedded node.
    let (mut procs, addresses, _dir) = validator_processes(&single.bitcoin_p2p, &bt, &[]).await?;
    let v0 = procs[0].as_ref().context("up")?;
    let processes = measure(v0, &args, secret(2)).await?;

    println!();
    println!("| sequencers | block interval p50 | p95 | max | send → receipt p50 | p95 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    row("1 key (`hemi devnet`)", &one);
    row("4 validators, one process (`--sequencers 4`)", &in_process);
    row(
        "4 validator processes (`hemi node --sequencer-key`)",
        &processes,
    );
    println!("(milliseconds)");

    // kill -9 of the validator whose turn is two heights on (round robin over the sorted set),
    // as soon as a head arrives.
    let mut sorted = addresses.clone();
    sorted.sort();
    let watch = procs[1].as_ref().context("up")?;
    let (mut rx, task) = heads(&watch.url).await?;
    let (h, victim) = loop {
        let Some((mut h, _)) = rx.recv().await else {
            bail!("no heads");
        };
        while let Ok((n, _)) = rx.try_recv() {
            h = n;
        }
        let proposer = sorted[((h + 2) % 4) as usize];
        let v = addresses
            .iter()
            .position(|a| *a == proposer)
            .context("the proposer is one of ours")?;
        // Keep the watched process.
        if v != 1 {
            break (h, v);
        }
    };
    let victim_addr = addresses[victim];
    let killed_at = Instant::now();
    drop(procs[victim].take());
    let mut seen = Vec::new();
    while seen.len() < 9 {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some((n, at))) if n > h => seen.push(at),
            Ok(Some(_)) => {}
            _ => bail!("no blocks after the kill -9"),
        }
    }
    task.abort();
    let next = seen[0].duration_since(killed_at).as_secs_f64() * 1e3;
    let longest = seen
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
        .fold(0.0, f64::max);
    println!();
    println!(
        "kill -9 of validator {victim_addr} (proposer of height {}): next block {next:.0} ms later; the longest interval over the next 8 blocks (its turn included) {longest:.0} ms",
        h + 2
    );
    if args.erc20 > 0 {
        erc20(&args).await?;
    }
    Ok(())
}
