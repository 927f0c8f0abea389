//! Lookup latency of the by-script index on a file-backed store holding 1,000,000 UTXOs over
//! 100,000 scripts (1,000 blocks × 1,000 outputs; every script has 10 UTXOs).
//!
//! Setup builds the store once (fast commits, then one flush) and prints the connect rate.
//! Criterion then measures `balance_by_script` / `utxos_by_script` for random known scripts, an
//! unknown script, and a historical query 10 blocks back; a plain loop afterwards times 100,000
//! lookups one by one and prints p50/p90/p99/max, which criterion does not report.
//!
//! `cargo bench -p hemi-btc-store --bench lookup -- --warm-up-time 1 --measurement-time 5`
//!
//! Under `cargo test --benches` (no `--bench` flag) the store is 100× smaller so the check stays
//! quick.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, ScriptBuf, TxMerkleNode, TxOut, WPubkeyHash,
};
use criterion::{criterion_group, criterion_main, Criterion};
use hemi_btc_headers::ChainParams;
use hemi_btc_store::{AsOf, BitcoinView, ChainStore};

/// Far enough ahead that no generated header is "too new".
const NOW: u32 = 2_000_000_000;

struct Sizes {
    blocks: u32,
    outputs: u32,
    scripts: u32,
}

/// P2WPKH whose 20-byte hash is the start of sha256(i): distinct scripts without EC work.
fn script(i: u32) -> ScriptBuf {
    let h = sha256::Hash::hash(&i.to_le_bytes()).to_byte_array();
    let mut w = [0u8; 20];
    w.copy_from_slice(&h[..20]);
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(w))
}

/// A coinbase-only regtest block (BIP34 height, witness commitment) paying `outputs`.
fn block(parent: &Header, height: u32, outputs: Vec<TxOut>) -> Block {
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: parent.block_hash(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: parent.time + 1,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata: vec![hemi_btc_regtest::coinbase(height, b"bench", outputs)],
    };
    hemi_btc_regtest::seal(&mut block);
    hemi_btc_regtest::grind(&mut block.header);
    block
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: ChainStore,
    scripts: Vec<ScriptBuf>,
    /// A block 10 below the tip, for historical queries.
    back10: BlockHash,
    back100: BlockHash,
}

fn build(sizes: &Sizes) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ChainStore::open(
        dir.path().join("chain.redb"),
        ChainParams::new(Network::Regtest),
    )
    .expect("open store");
    store.set_fast_commits(true);
    let scripts: Vec<ScriptBuf> = (0..sizes.scripts).map(script).collect();
    let mut parent = ChainParams::new(Network::Regtest).genesis();
    let mut hashes = vec![parent.block_hash()];
    let (mut t_build, mut t_put, mut t_connect) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    for height in 1..=sizes.blocks {
        let t0 = Instant::now();
        let outputs = (0..sizes.outputs)
            .map(|j| {
                let i = ((height - 1) * sizes.outputs + j) % sizes.scripts;
                TxOut {
                    value: Amount::from_sat(1_000 + u64::from(i)),
                    script_pubkey: scripts[i as usize].clone(),
                }
            })
            .collect();
        let b = block(&parent, height, outputs);
        let t1 = Instant::now();
        store.put_block(&b, NOW).expect("put_block");
        let t2 = Instant::now();
        let adv = store.advance(usize::MAX).expect("advance");
        assert_eq!(adv.connected.len(), 1, "block {height} connects");
        let t3 = Instant::now();
        t_build += t1 - t0;
        t_put += t2 - t1;
        t_connect += t3 - t2;
        parent = b.header;
        hashes.push(b.block_hash());
    }
    let t_flush = Instant::now();
    store.flush().expect("flush");
    let flush = t_flush.elapsed();
    let total = started.elapsed();
    let utxos = store.utxo_count().expect("utxo_count");
    let n = f64::from(sizes.blocks);
    let store_secs = (t_put + t_connect + flush).as_secs_f64();
    eprintln!(
        "built store: {} blocks, {utxos} UTXOs, {} scripts in {:.2?} (block building {:.2?}, put_block {:.2?}, \
         advance/connect {:.2?}, flush {:.2?})",
        sizes.blocks, sizes.scripts, total, t_build, t_put, t_connect, flush
    );
    eprintln!(
        "connect rate (put_block + advance + flush): {:.0} blocks/s, {:.0} UTXOs/s; advance alone: {:.0} blocks/s, {:.0} UTXOs/s",
        n / store_secs,
        utxos as f64 / store_secs,
        n / t_connect.as_secs_f64(),
        utxos as f64 / t_connect.as_secs_f64(),
    );
    let back10 = hashes[hashes.len() - 11];
    let back100 = hashes[hashes.len().saturating_sub(101)];
    Fixture {
        _dir: dir,
        store,
        scripts,
        back10,
        back100,
    }
}

/// xorshift64*: deterministic, dependency-free choice of scripts.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    eprintln!(
        "{name:<40} n={} mean={mean:.2?} p50={:.2?} p90={:.2?} p99={:.2?} max={:.2?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1],
    );
}

fn timed_loop(name: &str, n: usize, mut f: impl FnMut(usize)) {
    let samples = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    percentiles(name, samples);
}

fn lookups(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            blocks: 1_000,
            outputs: 1_000,
            scripts: 100_000,
        }
    } else {
        Sizes {
            blocks: 100,
            outputs: 100,
            scripts: 1_000,
        }
    };
    let f = build(&sizes);
    let store = &f.store;
    let unknown = script(u32::MAX);
    let per_script = u64::from(sizes.blocks * sizes.outputs / sizes.scripts);
    // Sanity: every script holds the same number of UTXOs.
    assert_eq!(
        store
            .utxos_by_script(&f.scripts[7], AsOf::Tip)
            .expect("utxos")
            .len() as u64,
        per_script
    );

    let mut g = c.benchmark_group("lookup");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    g.bench_function("balance_by_script/known", |b| {
        b.iter(|| {
            let s = &f.scripts[rng.index(f.scripts.len())];
            black_box(store.balance_by_script(s, AsOf::Tip).expect("balance"))
        })
    });
    g.bench_function("utxos_by_script/known", |b| {
        b.iter(|| {
            let s = &f.scripts[rng.index(f.scripts.len())];
            black_box(store.utxos_by_script(s, AsOf::Tip).expect("utxos"))
        })
    });
    g.bench_function("balance_by_script/unknown", |b| {
        b.iter(|| {
            black_box(
                store
                    .balance_by_script(&unknown, AsOf::Tip)
                    .expect("balance"),
            )
        })
    });
    g.bench_function("utxos_by_script/known/as_of_10_blocks_back", |b| {
        b.iter(|| {
            let s = &f.scripts[rng.index(f.scripts.len())];
            black_box(
                store
                    .utxos_by_script(s, AsOf::Block(f.back10))
                    .expect("utxos as of"),
            )
        })
    });
    g.finish();

    // Per-lookup latency distribution.
    let n = if full { 100_000 } else { 1_000 };
    let picks: Vec<usize> = (0..n).map(|_| rng.index(f.scripts.len())).collect();
    timed_loop("balance_by_script known (per lookup)", n, |i| {
        black_box(
            store
                .balance_by_script(&f.scripts[picks[i]], AsOf::Tip)
                .expect("balance"),
        );
    });
    timed_loop("utxos_by_script known (per lookup)", n, |i| {
        black_box(
            store
                .utxos_by_script(&f.scripts[picks[i]], AsOf::Tip)
                .expect("utxos"),
        );
    });
    timed_loop("balance_by_script unknown (per lookup)", n, |_| {
        black_box(
            store
                .balance_by_script(&unknown, AsOf::Tip)
                .expect("balance"),
        );
    });
    timed_loop("utxos_by_script as of tip-10 (per lookup)", n / 100, |i| {
        black_box(
            store
                .utxos_by_script(&f.scripts[picks[i]], AsOf::Block(f.back10))
                .expect("utxos"),
        );
    });
    timed_loop("utxos_by_script as of tip-100 (per lookup)", n / 100, |i| {
        black_box(
            store
                .utxos_by_script(&f.scripts[picks[i]], AsOf::Block(f.back100))
                .expect("utxos"),
        );
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
