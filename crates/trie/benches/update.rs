//! One block's worth of state-root work: `update` with 1,000 random changes (half new accounts,
//! half existing ones) plus applying the result, on tries of 10k and 1M accounts. The cost should
//! barely grow with the trie's size.
//!
//! Each measured update is reverted (untimed) afterwards so every iteration sees the same trie.

use alloy_primitives::B256;
use criterion::{criterion_group, criterion_main, Criterion};
use hemi_trie::{update, MemNodes, Nibbles, NodeReader, StoredNode, TrieUpdate};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::BTreeMap,
    hint::black_box,
    time::{Duration, Instant},
};

const CHANGES: usize = 1_000;
const VALUE_LEN: usize = 100;

fn value(rng: &mut StdRng) -> Vec<u8> {
    // An RLP list header and ~100 bytes, like an RLP-encoded account.
    let mut v = vec![0xf8, (VALUE_LEN - 2) as u8];
    v.extend((2..VALUE_LEN).map(|_| rng.gen::<u8>()));
    v
}

/// A trie of `n` random accounts, built with one update.
fn setup(n: usize, rng: &mut StdRng) -> (MemNodes, Vec<B256>) {
    let changes: BTreeMap<B256, Option<Vec<u8>>> = (0..n)
        .map(|_| (B256::from(rng.gen::<[u8; 32]>()), Some(value(rng))))
        .collect();
    let keys: Vec<B256> = changes.keys().copied().collect();
    let mut nodes = MemNodes::new();
    let up = update(&nodes, &changes).expect("build trie");
    nodes.apply(&up);
    (nodes, keys)
}

fn changes(keys: &[B256], rng: &mut StdRng) -> BTreeMap<B256, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    while out.len() < CHANGES / 2 {
        out.insert(keys[rng.gen_range(0..keys.len())], Some(value(rng)));
    }
    while out.len() < CHANGES {
        out.insert(B256::from(rng.gen::<[u8; 32]>()), Some(value(rng)));
    }
    out
}

/// The inverse of applying `up` to `nodes`.
fn undo(nodes: &MemNodes, up: &TrieUpdate) -> Vec<(Nibbles, Option<StoredNode>)> {
    let paths = up.puts.iter().map(|(p, _)| p).chain(&up.deletes);
    paths.map(|p| (*p, nodes.node(p).expect("read"))).collect()
}

fn bench_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_update_1000_changes");
    for n in [10_000usize, 1_000_000] {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let start = Instant::now();
        let (mut nodes, keys) = setup(n, &mut rng);
        eprintln!(
            "setup {n} accounts: {} nodes in {:?}",
            nodes.len(),
            start.elapsed()
        );
        group.bench_function(format!("{n}_accounts"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let changes = changes(&keys, &mut rng);
                    let start = Instant::now();
                    let up = update(&nodes, &changes).expect("update");
                    total += start.elapsed();
                    let inverse = undo(&nodes, &up);
                    let start = Instant::now();
                    nodes.apply(black_box(&up));
                    total += start.elapsed();
                    for (path, node) in inverse {
                        match node {
                            Some(node) => nodes.insert(path, node),
                            None => nodes.remove(&path),
                        };
                    }
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = bench_update
}
criterion_main!(benches);
