//! `hemi bench tunnel`:
//!
//! 1. Payout vsize per withdrawal, batches of 1 (one payout per transaction, as Hemi's tunnel
//!    pays), 10 and 100: real payouts, FROST-signed by two custodians and script-checked.
//! 2. Deposit → mint latency on a devnet (embedded Bitcoin node mining on request): from the
//!    Bitcoin block that gives a deposit its confirmations to `hemi_getDeposit` saying
//!    minted, and whether the mint was in the first L2 block pinned at that height (the bound).
//! 3. The provenance document of one deposit, once superfinal: its size, and
//!    `hemi_provenance::verify` time beside Bitcoin Core-compatible `verifytxoutproof` of its two
//!    merkleblocks on the embedded node (the part of the check a Bitcoin node does).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bitcoin::{Amount, Network, OutPoint, ScriptBuf, TxOut};
use clap::Args;
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use serde_json::{json, Value};

use crate::devnet::Devnet;

/// `hemi bench tunnel` options.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// Deposits whose latency is measured.
    #[arg(long, default_value_t = 5)]
    pub samples: u32,
    /// Deposit confirmations.
    #[arg(long, default_value_t = 3)]
    pub deposit_confirmations: u64,
    /// L2 block time, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub block_time: f64,
    /// Verifications timed.
    #[arg(long, default_value_t = 500)]
    pub verifications: u32,
}

/// Runs the benchmark.
///
/// # Errors
/// A payout that does not build or verify; the devnet failing.
pub(crate) async fn run(args: TunnelArgs) -> anyhow::Result<()> {
    payout_sizes()?;
    devnet_part(&args).await
}

fn payout_sizes() -> anyhow::Result<()> {
    use hemi_tunnel::payout::{build_payout, sign_payout, Request};
    let custody = hemi_tunnel::Custody::devnet()?;
    let vault = custody.vault(Key::from_seed("bench recovery").x_only(), 144)?;
    println!("payout vsize (2-of-3 FROST key path, P2WPKH payees, 2 sat/vB):");
    println!("| requests | inputs | vsize | vB per withdrawal | vs one per transaction |");
    println!("|---|---|---|---|---|");
    let mut single = 0.0;
    for n in [1usize, 10, 100] {
        let requests: Vec<Request> = (0..n)
            .map(|i| Request {
                id: i as u32 + 1,
                script: Key::from_seed(&format!("payee {i}")).script_pubkey(KeyKind::P2wpkh),
                amount: 1_000_000,
                max_fee: 10_000,
            })
            .collect();
        let prev = TxOut {
            value: Amount::from_sat(n as u64 * 1_000_000 + 1_000_000),
            script_pubkey: vault.script_pubkey(),
        };
        let txid = <bitcoin::Txid as bitcoin::hashes::Hash>::from_byte_array([7; 32]);
        let utxo = (OutPoint::new(txid, 0), prev.clone());
        let mut tx = build_payout(&vault, std::slice::from_ref(&utxo), &requests, 2)?;
        let mut rng =
            <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([3; 32]);
        sign_payout(
            &custody,
            &vault,
            &mut tx,
            std::slice::from_ref(&prev),
            &[1, 2],
            &mut rng,
        )?;
        hemi_btc_wallet::verify_transaction(&tx, std::slice::from_ref(&prev))
            .context("the payout does not verify")?;
        let per = tx.vsize() as f64 / n as f64;
        if n == 1 {
            single = per;
        }
        println!(
            "| {n} | 1 | {} | {per:.1} | {:.2}× |",
            tx.vsize(),
            single / per
        );
    }
    println!();
    Ok(())
}

async fn pinned_height(d: &Devnet, n: u64) -> anyhow::Result<u64> {
    if n == 0 {
        return Ok(0);
    }
    let b = d
        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), true]))
        .await?;
    let input = b["transactions"][0]["input"]
        .as_str()
        .context("attributes")?;
    let attrs = hemi_hvm::BtcAttributes::decode(&hex::decode(input.trim_start_matches("0x"))?)?;
    let h = d
        .call("hemi_btcHeader", json!([attrs.canonical_tip.to_string()]))
        .await?;
    h["height"].as_u64().context("height")
}

async fn wait_minted(d: &Devnet, txid: &bitcoin::Txid) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = d.call("hemi_getDeposit", json!([txid.to_string()])).await?;
        if s["status"] == "minted" {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("deposit {txid} not minted: {s}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn devnet_part(args: &TunnelArgs) -> anyhow::Result<()> {
    let confs = args.deposit_confirmations.to_string();
    let d = Devnet::start(&[
        "--block-time",
        &args.block_time.to_string(),
        "--bitcoin-block-time",
        "0",
        "--deposit-confirmations",
        &confs,
        "--keystone-interval",
        "5",
    ])
    .await?;
    let btc = BitcoinRpc::new(&d.bitcoin_rpc)?;
    let depositor = Key::from_seed("bench depositor");
    let addr = depositor.address(KeyKind::P2wpkh, Network::Regtest);
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x61; 32])?;
    let coinbases = btc
        .generate_to_address(u64::from(args.samples) + 1, &addr)
        .await?;
    btc.generate_to_address(100, &sink).await?;
    let tunnel = d.call("hemi_getTunnel", json!([])).await?;
    let vault = regtest_script(tunnel["vaultAddress"].as_str().context("vault")?)?;
    let recipient = hex::decode("70997970C51812dc3A010C7d01b50e0d17dc79C8")?;
    let mut op_return = vec![0x6a, 0x14];
    op_return.extend_from_slice(&recipient);
    let mut first_txid = None;
    let mut latencies = Vec::new();
    let mut at_bound = 0;
    println!(
        "deposit → mint ({} confirmations, L2 block time {} s, Bitcoin blocks on request):",
        args.deposit_confirmations, args.block_time
    );
    for (i, hash) in coinbases.iter().take(args.samples as usize).enumerate() {
        let block = btc.get_block(hash).await?;
        let cb = &block.txdata[0];
        let utxo = (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone());
        let tx = build_payment(
            &depositor,
            KeyKind::P2wpkh,
            &[utxo],
            vec![
                TxOut {
                    value: Amount::from_sat(100_000_000),
                    script_pubkey: vault.clone(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::from_bytes(op_return.clone()),
                },
            ],
            2.0,
        )?;
        let txid = btc.send_raw_transaction(&tx).await?;
        first_txid.get_or_insert(txid);
        btc.generate_to_address(args.deposit_confirmations - 1, &sink)
            .await?;
        let confirming = btc.generate_to_address(1, &sink).await?;
        let t0 = Instant::now();
        let s = wait_minted(&d, &txid).await?;
        let latency = t0.elapsed();
        let needed = block_height(&btc, &confirming[0]).await?;
        let n = s["mintedIn"]["block"].as_u64().context("block")?;
        let first =
            pinned_height(&d, n).await? >= needed && pinned_height(&d, n - 1).await? < needed;
        if first {
            at_bound += 1;
        }
        latencies.push(latency.as_secs_f64());
        println!(
            "  sample {i}: minted {:.0} ms after its confirming block, in L2 block {n} ({})",
            latency.as_secs_f64() * 1000.0,
            if first {
                "the first pinned at that height: the bound"
            } else {
                "after the bound"
            }
        );
    }
    latencies.sort_by(f64::total_cmp);
    if let Some(median) = latencies.get(latencies.len() / 2) {
        println!(
            "  median {:.0} ms ({} of {} at the bound; one L2 block is {:.0} ms)",
            median * 1000.0,
            at_bound,
            latencies.len(),
            args.block_time * 1000.0
        );
    }
    println!();

    // Provenance once anchored and superfinal.
    let txid = first_txid.context("no deposit")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let doc = loop {
        match d
            .call("hemi_getProvenance", json!([txid.to_string()]))
            .await
        {
            Ok(doc) => break doc,
            Err(e) if Instant::now() < deadline => {
                if !e.to_string().contains("not anchored") {
                    eprintln!("waiting for provenance: {e}");
                }
                btc.generate_to_address(1, &sink).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    };
    btc.generate_to_address(10, &sink).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let doc = d
        .call("hemi_getProvenance", json!([txid.to_string()]))
        .await
        .unwrap_or(doc);
    let text = serde_json::to_string_pretty(&doc)?;
    let parsed = hemi_provenance::Provenance::from_json(&text)?;
    let opts = hemi_provenance::VerifyOptions::default();
    let report = hemi_provenance::verify(&parsed, &opts)?;
    let mut times = Vec::with_capacity(args.verifications as usize);
    for _ in 0..args.verifications {
        let t = Instant::now();
        let p = hemi_provenance::Provenance::from_json(&text)?;
        hemi_provenance::verify(&p, &opts)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let ours = times[times.len() / 2];
    let mut core_times = Vec::new();
    for _ in 0..args.verifications.min(200) {
        let t = Instant::now();
        for part in ["deposit", "anchor"] {
            let _: Vec<String> = btc
                .call("verifytxoutproof", json!([doc[part]["merkleBlock"]]))
                .await?;
        }
        core_times.push(t.elapsed().as_secs_f64());
    }
    core_times.sort_by(f64::total_cmp);
    let core = core_times[core_times.len() / 2];
    println!("provenance document of {txid}:");
    println!(
        "  {} bytes of JSON ({} Bitcoin headers, {} L2 headers, {} trie nodes); superfinal: {}",
        text.len(),
        parsed.deposit.inclusion.headers.len() + parsed.anchor.inclusion.headers.len(),
        parsed.mint.headers.len(),
        parsed.mint.receipt_proof.len(),
        report.superfinal
    );
    println!(
        "  parse + verify: median {:.1} µs over {} runs; two verifytxoutproof RPCs to the embedded node: median {:.1} µs ({:.2}× ours)",
        ours * 1e6,
        times.len(),
        core * 1e6,
        core / ours
    );
    Ok(())
}

/// The scriptPubKey of a regtest address.
fn regtest_script(s: &str) -> anyhow::Result<ScriptBuf> {
    use std::str::FromStr;
    Ok(bitcoin::Address::from_str(s)?
        .require_network(Network::Regtest)?
        .script_pubkey())
}

/// The height of Bitcoin block `hash` (`getblockheader`).
async fn block_height(rpc: &BitcoinRpc, hash: &bitcoin::BlockHash) -> anyhow::Result<u64> {
    let h: Value = rpc
        .call("getblockheader", json!([hash.to_string(), true]))
        .await?;
    h["height"].as_u64().context("height")
}
