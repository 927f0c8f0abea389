//! `hemi bench hvm-pin`: an L2 block full of hVM balance calls (precompile 0x40), re-executed by
//! a follower while its Bitcoin pin is the tip, and again once the Bitcoin tip has moved 100
//! and 1,000 blocks past the pin — what a follower replaying old blocks (or `eth_call` at an old
//! block) pays for answering Bitcoin questions as of an older block.
//!
//! Bitcoin: an in-memory regtest store; `ADDRESSES` scripts each get `COINS_EACH` coinbase
//! outputs before the pin. L2: `--blocks` blocks of `--calls` transactions, each a call of 0x40
//! with one of the addresses, built by one chain at the pin, then imported (re-executed,
//! roots checked) by a fresh chain at each distance; the import times are compared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use anyhow::{bail, Context};
use bitcoin::Network;
use clap::Args;
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::{Key, KeyKind};
use hemi_chain::{Chain, ChainSpec, L2Block, L2Tx, Sealer, SequencerAddress, SignedTx};
use hemi_hvm::{BitcoinPin, BtcAttributes};

/// Bitcoin addresses the calls ask about.
const ADDRESSES: usize = 50;
/// Coinbase outputs each address holds at the pin.
const COINS_EACH: usize = 4;
/// The sequencer's sealing key.
const SEQUENCER: B256 = B256::repeat_byte(0x22);

/// `hemi bench hvm-pin` options.
#[derive(Debug, Args)]
pub struct HvmPinArgs {
    /// L2 blocks built and re-executed at each distance.
    #[arg(long, default_value_t = 5)]
    pub blocks: u64,
    /// 0x40 balance calls per block.
    #[arg(long, default_value_t = 1000)]
    pub calls: u64,
}

fn call_tx(secret: B256, nonce: u64, input: Bytes) -> anyhow::Result<SignedTx> {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 1_000_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::with_last_byte(0x40)),
        value: U256::ZERO,
        access_list: Default::default(),
        input,
    };
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, tx.signature_hash())?;
    Ok(SignedTx::recover(L2Tx::Eth(TxEnvelope::from(
        tx.into_signed(sig),
    )))?)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// Any part failing (a block not built or not re-executed).
pub(crate) fn run(args: HvmPinArgs) -> anyhow::Result<()> {
    if args.blocks == 0 || args.calls == 0 {
        bail!("--blocks and --calls must be at least 1");
    }
    let store = Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest))?);
    let node = RegtestNode::new(store.clone());
    let miner = Key::from_seed("bench-hvm-pin-miner").script_pubkey(KeyKind::P2wpkh);
    let keys: Vec<Key> = (0..ADDRESSES)
        .map(|i| Key::from_seed(&format!("bench-hvm-pin-{i}")))
        .collect();
    for _ in 0..COINS_EACH {
        for k in &keys {
            node.mine(1, &k.script_pubkey(KeyKind::P2wpkh))?;
        }
    }
    node.mine(1, &miner)?;
    let pinned = store.tip()?;
    let pin = BitcoinPin {
        view: store.clone(),
        pinned,
        network: Network::Regtest,
    };
    let addresses: Vec<Bytes> = keys
        .iter()
        .map(|k| {
            Bytes::from(
                k.address(KeyKind::P2wpkh, Network::Regtest)
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect();

    let ether = U256::from(10u64).pow(U256::from(18u64));
    let secret = keccak256(b"bench-hvm-pin-sender");
    let sender = hemi_chain::eth_address(&bitcoin::secp256k1::SecretKey::from_slice(
        secret.as_slice(),
    )?);
    let mut spec = ChainSpec::devnet()?;
    spec.alloc.insert(sender, U256::from(1_000_000u64) * ether);
    // Room for every call (each ~70k gas with the precompile's price).
    spec.gas_limit = spec.gas_limit.max(args.calls * 100_000);
    let builder = Chain::open(None, spec.clone()).context("builder chain")?;
    let sealer = hemi_sequencer::KeySealer::new(SEQUENCER)?;
    let attrs = BtcAttributes {
        canonical_tip: pinned.hash,
        headers: vec![],
    };
    let mut nonce = 0u64;
    let mut build_times = Vec::new();
    let mut blocks = Vec::new();
    for b in 0..args.blocks {
        let mut txs = Vec::with_capacity(args.calls as usize);
        for j in 0..args.calls {
            txs.push(call_tx(
                secret,
                nonce,
                addresses[j as usize % ADDRESSES].clone(),
            )?);
            nonce += 1;
        }
        let start = Instant::now();
        let built = builder.build_block(&pin, &attrs, txs, 1_000 + b, &sealer)?;
        build_times.push(start.elapsed());
        let users = built
            .block
            .txs
            .iter()
            .filter(|t| matches!(t.tx, L2Tx::Eth(_)))
            .count();
        if !built.rejected.is_empty() || users != args.calls as usize {
            bail!(
                "block {b}: {users} of {} calls included, rejected {:?}",
                args.calls,
                built.rejected.first()
            );
        }
        if !built.receipts[1..]
            .iter()
            .all(|r| r.receipt.status.coerce_status())
        {
            bail!("block {b}: a balance call failed");
        }
        let raw = builder
            .raw_block(built.block.header.number)?
            .context("built block")?;
        blocks.push(L2Block::decode(&raw)?);
    }
    println!(
        "hVM balance calls (0x40): {} blocks of {} calls, {ADDRESSES} addresses with {COINS_EACH} UTXOs each, pin at Bitcoin height {}",
        args.blocks, args.calls, pinned.height
    );
    let verifier = SequencerAddress(sealer.address());
    let mut rows = Vec::new();
    for (distance, mine) in [(0u32, 0u32), (100, 100), (1_000, 900)] {
        if mine > 0 {
            node.mine(mine, &miner)?;
        }
        let tip = store.tip()?;
        if tip.height - pinned.height != distance {
            bail!(
                "the tip is {} blocks past the pin, not {distance}",
                tip.height - pinned.height
            );
        }
        let follower = Chain::open(None, spec.clone()).context("follower chain")?;
        let mut times = Vec::new();
        for block in &blocks {
            let start = Instant::now();
            follower.import_block(block, &verifier, &|_: &BtcAttributes| Ok(pin.clone()))?;
            times.push(start.elapsed());
        }
        rows.push((distance, median(&mut times)));
    }
    let base = rows[0].1.as_secs_f64();
    println!(
        "| Bitcoin tip past the pin | re-execute one block (median) | per call | vs at the tip |"
    );
    println!("|---|---|---|---|");
    for (distance, t) in &rows {
        println!(
            "| {distance} | {:.2} ms | {:.2} µs | {:.2}× |",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e6 / args.calls as f64,
            t.as_secs_f64() / base
        );
    }
    println!(
        "(building each block at the pin: median {:.2} ms)",
        median(&mut build_times).as_secs_f64() * 1e3
    );
    Ok(())
}
