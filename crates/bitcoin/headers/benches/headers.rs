//! Header validation + insertion throughput on a regtest-difficulty chain.
//!
//! Setup grinds 100,000 regtest headers (≈2 hashes each); each iteration validates and inserts
//! all of them into a fresh tree, so the number includes SHA-256d, the PoW check, the
//! contextual checks (bits, MTP over 11 parents, time, version), the hash-index insert and the
//! best-chain update.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::pow::CompactTarget;
use bitcoin::{Network, TxMerkleNode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hemi_btc_headers::{check_proof_of_work, header_hash, ChainParams, HeaderTree};

const N: usize = 100_000;

fn regtest_chain(params: &ChainParams, n: usize) -> Vec<Header> {
    let mut out = Vec::with_capacity(n);
    let mut prev = params.genesis();
    for i in 0..n {
        let mut h = Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: header_hash(&prev),
            merkle_root: TxMerkleNode::from_byte_array([(i % 251) as u8; 32]),
            time: prev.time + 600,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while check_proof_of_work(header_hash(&h), h.bits, params).is_err() {
            h.nonce += 1;
        }
        out.push(h);
        prev = h;
    }
    out
}

fn bench_insert(c: &mut Criterion) {
    let params = ChainParams::new(Network::Regtest);
    let headers = regtest_chain(&params, N);
    let now = headers.last().map_or(0, |h| h.time);

    let mut group = c.benchmark_group("header_tree");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("validate_insert_100k_regtest", |b| {
        b.iter_batched(
            || HeaderTree::new(params.clone()),
            |mut tree| {
                for h in &headers {
                    if tree.insert(*h, now).is_err() {
                        panic!("bench chain is valid");
                    }
                }
                tree
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("header_hash_only_100k", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for h in &headers {
                acc ^= header_hash(h).as_byte_array()[0];
            }
            acc
        })
    });
    group.finish();
}

criterion_group!(benches, bench_insert);
criterion_main!(benches);
