//! Tree-level tests: real mainnet and Core regtest headers, negative cases, forks and reorgs,
//! difficulty rules through the tree, and a no-panic property test.

use bitcoin::block::{Header, Version};
use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::pow::{CompactTarget, Target};
use bitcoin::{BlockHash, Network, TxMerkleNode};
use proptest::prelude::*;

use crate::{
    check_proof_of_work, header_hash, ChainParams, HeaderError, HeaderTree, InsertOutcome,
};

// ----- real data --------------------------------------------------------------------------

/// Mainnet block 1, from Bitcoin Core `src/test/kernel/test_kernel.cpp` (`btck_block_header_tests`).
const MAINNET_BLOCK_1: &str = "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299";
const MAINNET_BLOCK_1_HASH: &str =
    "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048";

/// Real mainnet headers (not consecutive) with their hashes, for context-free PoW checks.
const MAINNET_STANDALONE: &[(&str, &str)] = &[
    // Bitcoin Core src/test/kernel/test_kernel.cpp, header_0 (2025, bits 0x1701ddb4).
    ("00e07a26beaaeee2e71d7eb19279545edbaf15de0999983626ec00000000000000000000579cf78b65229bfb93f4a11463af2eaa5ad91780f27f5d147a423bea5f7e4cdf2a47e268b4dd01173a9662ee",
     "00000000000000000000325c7e14a4ee3b4fcb2343089a839287308a0ddbee4f"),
    // Bitcoin Core src/test/kernel/test_kernel.cpp, header_1 (2025).
    ("00c00020e7cb7b4de21d26d55bd384017b8bb9333ac3b2b55bed00000000000000000000d91b4484f801b99f03d36b9d26cfa83420b67f81da12d7e6c1e7f364e743c5ba9946e268b4dd011799c8533d", ""),
    // rust-bitcoin 0.32 src/blockdata/block.rs `block_test` (Jan 2009).
    ("010000004ddccd549d28f385ab457e98d1b11ce80bfea2c5ab93015ade4973e400000000bf4473e53794beae34e64fccc471dace6ae544180816f89591894e0f417a914cd74d6e49ffff001d323b3a7b",
     "00000000b0c5a240b2a61d2e75692224efd4cbecdf6eaf4cc2cf477ca7c270e7"),
    // Bitcoin Core src/test/bloom_tests.cpp merkle blocks (2009 and Dec 2010, bits 0x1b04864c).
    ("0100000075616236cc2126035fadb38deb65b9102cc2c41c09cdf29fc051906800000000fe7d5e12ef0ff901f6050211249919b1c0653771832b3a80c66cea42847f0ae1d4d26e49ffff001d00f0a441", ""),
    ("0100000082bb869cf3a793432a66e826e05a6fc37469f8efb7421dc880670100000000007f16c5962e8bd963659c793ce370d95f093bc7e367117b3c30c1f8fdd0d9728776381b4d4c86041b554b8529", ""),
];

/// The 206 regtest headers Bitcoin Core's kernel tests mine on the regtest genesis.
const CORE_REGTEST_HEADERS: &str = include_str!("../testdata/core_regtest_headers.txt");

fn header_from_hex(s: &str) -> Header {
    let bytes = hex::decode(s).expect("test vector is hex");
    deserialize(&bytes).expect("test vector is an 80-byte header")
}

fn hash_from_hex(s: &str) -> BlockHash {
    s.parse().expect("test vector is a block hash")
}

fn core_regtest_headers() -> Vec<Header> {
    CORE_REGTEST_HEADERS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(header_from_hex)
        .collect()
}

/// Flips bit `bit` of the header's 80-byte serialization.
fn flip_bit(h: &Header, bit: usize) -> Header {
    let mut bytes = bitcoin::consensus::serialize(h);
    bytes[bit / 8] ^= 1 << (bit % 8);
    deserialize(&bytes).expect("80 bytes")
}

// ----- regtest mining helpers -------------------------------------------------------------

const REGTEST_BITS: u32 = 0x207f_ffff;

/// Grinds the nonce until `header` meets `params`' PoW for its own bits.
fn grind(mut h: Header, params: &ChainParams) -> Header {
    while check_proof_of_work(header_hash(&h), h.bits, params).is_err() {
        h.nonce = h.nonce.wrapping_add(1);
    }
    h
}

/// A child of `parent` with time `time` and bits `bits`, ground for `params`; `tag` goes in the
/// merkle root so sibling branches differ.
fn mine(parent: &Header, time: u32, bits: u32, tag: u32, params: &ChainParams) -> Header {
    let mut root = [0u8; 32];
    root[..4].copy_from_slice(&tag.to_le_bytes());
    grind(
        Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: header_hash(parent),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        },
        params,
    )
}

/// `n` regtest headers on `parent`, 600 s apart.
fn mine_chain(parent: &Header, n: usize, tag: u32, params: &ChainParams) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::with_capacity(n);
    let mut prev = *parent;
    for _ in 0..n {
        let h = mine(&prev, prev.time + 600, REGTEST_BITS, tag, params);
        out.push(h);
        prev = h;
    }
    out
}

const FAR_FUTURE: u32 = u32::MAX - 7200;

fn insert_all(tree: &mut HeaderTree, headers: &[Header]) {
    for h in headers {
        tree.insert(*h, FAR_FUTURE).expect("valid header");
    }
}

// ----- mainnet: real headers --------------------------------------------------------------

#[test]
fn mainnet_block_1_extends_real_genesis() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    let genesis = tree.best_hash();
    assert_eq!(
        genesis,
        hash_from_hex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f")
    );
    let b1 = header_from_hex(MAINNET_BLOCK_1);
    assert_eq!(header_hash(&b1), hash_from_hex(MAINNET_BLOCK_1_HASH));
    assert_eq!(tree.validate(&b1, b1.time), Ok(1));
    assert_eq!(
        tree.insert(b1, b1.time),
        Ok(InsertOutcome::Inserted {
            height: 1,
            new_best: true
        })
    );
    assert_eq!(tree.insert(b1, b1.time), Ok(InsertOutcome::AlreadyKnown));
    assert_eq!(tree.best_height(), 1);
    assert_eq!(tree.best_hash(), header_hash(&b1));
    // Core `getblockheader` chainwork of block 1.
    let node = tree.get(&header_hash(&b1)).expect("inserted");
    assert_eq!(
        format!("{:x}", node.chainwork).trim_start_matches('0'),
        "200020002"
    );
    // MTP of block 1 is the upper median of {genesis, block 1}.
    assert_eq!(tree.median_time_past(&header_hash(&b1)), Some(1231469665));
    assert_eq!(tree.median_time_past(&genesis), Some(1231006505));
}

#[test]
fn real_mainnet_headers_pass_pow_and_any_single_bit_flip_fails_it() {
    let params = ChainParams::new(Network::Bitcoin);
    for (hex, hash) in MAINNET_STANDALONE
        .iter()
        .chain([(MAINNET_BLOCK_1, MAINNET_BLOCK_1_HASH)].iter())
    {
        let h = header_from_hex(hex);
        if !hash.is_empty() {
            assert_eq!(header_hash(&h), hash_from_hex(hash));
        }
        check_proof_of_work(header_hash(&h), h.bits, &params)
            .expect("real header meets its target");
        for bit in 0..640 {
            let flipped = flip_bit(&h, bit);
            let err = check_proof_of_work(header_hash(&flipped), flipped.bits, &params)
                .expect_err("a flipped bit breaks proof of work");
            // Bits 576..608 are nBits: some flips make the target invalid rather than missed.
            assert!(
                matches!(err, HeaderError::BadProofOfWork { .. })
                    || (576..608).contains(&bit) && matches!(err, HeaderError::BadTarget { .. }),
                "bit {bit}: {err}"
            );
        }
    }
}

#[test]
fn flipped_mainnet_block_1_is_rejected_by_the_tree_with_pow_error() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    let b1 = header_from_hex(MAINNET_BLOCK_1);
    // Nonce bit, time bit, merkle bit, prev-hash bit: Core checks PoW before the parent.
    for bit in [608, 544, 300, 40] {
        let bad = flip_bit(&b1, bit);
        assert!(
            matches!(
                tree.insert(bad, b1.time),
                Err(HeaderError::BadProofOfWork { .. })
            ),
            "bit {bit}"
        );
    }
    assert_eq!(tree.len(), 1);
}

#[test]
fn real_header_with_unknown_parent_is_rejected() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    let h = header_from_hex(MAINNET_STANDALONE[0].0);
    let err = tree.insert(h, h.time).expect_err("parent unknown");
    assert_eq!(
        err,
        HeaderError::UnknownParent {
            hash: header_hash(&h),
            prev: h.prev_blockhash
        }
    );
    assert!(err.is_transient());
    assert_eq!(tree.insert_trusted(h), Err(err));
}

#[test]
fn real_block_1_too_far_in_the_future_is_rejected() {
    let tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    let b1 = header_from_hex(MAINNET_BLOCK_1);
    // Exactly now + 2h is allowed, one second more is not.
    assert_eq!(tree.validate(&b1, b1.time - 7200), Ok(1));
    assert_eq!(
        tree.validate(&b1, b1.time - 7201),
        Err(HeaderError::TimeTooNew {
            hash: header_hash(&b1),
            time: b1.time,
            max: u64::from(b1.time) - 1
        })
    );
}

#[test]
fn checkpoint_mismatch_rejects_real_block_1() {
    let wrong = hash_from_hex(MAINNET_STANDALONE[2].1);
    let b1 = header_from_hex(MAINNET_BLOCK_1);
    let params = ChainParams::new(Network::Bitcoin).with_checkpoints(vec![(1, wrong)]);
    let mut tree = HeaderTree::new(params);
    assert_eq!(
        tree.insert(b1, b1.time),
        Err(HeaderError::CheckpointMismatch {
            height: 1,
            expected: wrong,
            got: header_hash(&b1)
        })
    );
    let params = ChainParams::new(Network::Bitcoin).with_checkpoints(vec![(1, header_hash(&b1))]);
    let mut tree = HeaderTree::new(params);
    assert!(tree.insert(b1, b1.time).is_ok());
}

/// Core `pow_tests.cpp` `get_next_work` vector (blocks 30240 and 32255, real times and bits),
/// evaluated through the tree: the period is filled with trusted headers carrying those values.
#[test]
fn mainnet_retarget_at_32256_through_the_tree() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    let mut prev = tree.params().genesis();
    let (t_30240, t_32255) = (1_261_130_161u32, 1_262_152_739u32);
    for height in 1..=32255u32 {
        let time = match height {
            30240 => t_30240,
            32255 => t_32255,
            h if h > 30240 => t_30240 + (h - 30240) * 500,
            h => 1_231_006_505 + h * 600,
        };
        let h = Header {
            version: Version::ONE,
            prev_blockhash: header_hash(&prev),
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(0x1d00ffff),
            nonce: height,
        };
        tree.insert_trusted(h).expect("parent known");
        prev = h;
    }
    assert_eq!(tree.best_height(), 32255);
    let last = header_hash(&prev);
    assert_eq!(
        tree.required_bits(&last, t_32255 + 600),
        Some(CompactTarget::from_consensus(0x1d00d86a))
    );
    // Off the boundary the parent's bits carry over.
    let p = tree.hash_at_height(32254).expect("best chain");
    assert_eq!(
        tree.required_bits(&p, t_32255),
        Some(CompactTarget::from_consensus(0x1d00ffff))
    );
    // The message names the header, both bits and the height.
    let e = HeaderError::BadDifficultyBits {
        hash: last,
        height: 32256,
        expected: CompactTarget::from_consensus(0x1d00d86a),
        got: CompactTarget::from_consensus(0x1d00ffff),
    };
    assert_eq!(
        e.to_string(),
        format!("header {last}: bits 0x1d00ffff, expected 0x1d00d86a at height 32256")
    );
}

// ----- testnet3 / testnet4 difficulty rules through the tree -----------------------------

/// Builds `n` trusted headers on the tip with `bits_at(height)` and 600 s spacing.
fn extend_trusted(tree: &mut HeaderTree, n: u32, bits_at: impl Fn(u32) -> u32) -> Header {
    let mut prev = tree.best_tip().header;
    for _ in 0..n {
        let height = tree.best_height() + 1;
        let h = Header {
            version: Version::from_consensus(4),
            prev_blockhash: header_hash(&prev),
            merkle_root: TxMerkleNode::all_zeros(),
            time: prev.time + 600,
            bits: CompactTarget::from_consensus(bits_at(height)),
            nonce: height,
        };
        tree.insert_trusted(h).expect("parent known");
        prev = h;
    }
    prev
}

const TESTNET_BITS: u32 = 0x1c00f127; // real testnet3 difficulty (block 100000)
const MIN_DIFF: u32 = 0x1d00ffff;

#[test]
fn testnet3_min_difficulty_and_walk_back_rules() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Testnet));
    // Heights 1..=3 at real difficulty, 4..=5 min-difficulty.
    let tip = extend_trusted(
        &mut tree,
        5,
        |h| if h <= 3 { TESTNET_BITS } else { MIN_DIFF },
    );
    let tip_hash = header_hash(&tip);
    // More than 20 minutes after the parent: min difficulty.
    assert_eq!(
        tree.required_bits(&tip_hash, tip.time + 1201),
        Some(CompactTarget::from_consensus(MIN_DIFF))
    );
    // Within 20 minutes: walk back past min-difficulty blocks to height 3.
    assert_eq!(
        tree.required_bits(&tip_hash, tip.time + 1200),
        Some(CompactTarget::from_consensus(TESTNET_BITS))
    );
}

/// Testnet3 retargets from the last block's bits; testnet4 (BIP94) from the period's first
/// block, so a min-difficulty last block cannot drag the difficulty down.
#[test]
fn retarget_base_differs_between_testnet3_and_bip94_testnet4() {
    for (network, expected) in [
        (Network::Testnet, 0x1d00ffde),
        (Network::Testnet4, 0x1c00f108),
    ] {
        let mut tree = HeaderTree::new(ChainParams::new(network));
        // Period 2016..=4031: real difficulty, except the last block is min-difficulty.
        let tip = extend_trusted(&mut tree, 4031, |h| {
            if h == 4031 {
                MIN_DIFF
            } else {
                TESTNET_BITS
            }
        });
        assert_eq!(tree.best_height(), 4031);
        // Timespan 2015 * 600 s: (expected values computed with Core's integer formula).
        assert_eq!(
            tree.required_bits(&header_hash(&tip), tip.time + 600),
            Some(CompactTarget::from_consensus(expected)),
            "{network}"
        );
    }
}

#[test]
fn signet_keeps_parent_bits_off_retarget() {
    let mut tree = HeaderTree::new(ChainParams::new(Network::Signet));
    let tip = extend_trusted(&mut tree, 3, |_| 0x1e0377ae);
    assert_eq!(
        tree.required_bits(&header_hash(&tip), tip.time + 100_000),
        Some(CompactTarget::from_consensus(0x1e0377ae))
    );
}

// ----- regtest: Core's real regtest chain -------------------------------------------------

#[test]
fn accepts_bitcoin_core_regtest_chain() {
    let headers = core_regtest_headers();
    assert_eq!(headers.len(), 206);
    let mut tree = HeaderTree::new(ChainParams::new(Network::Regtest));
    let now = headers.iter().map(|h| h.time).max().expect("non-empty");
    for (i, h) in headers.iter().enumerate() {
        let height = i as u32 + 1;
        assert_eq!(
            tree.insert(*h, now),
            Ok(InsertOutcome::Inserted {
                height,
                new_best: true
            }),
            "height {height}"
        );
    }
    assert_eq!(tree.best_height(), 206);
    assert_eq!(
        tree.best_hash(),
        hash_from_hex("26eb826bf82873f8233128080033dc0e115ad4756d71542494a4c0833d4c974e")
    );
    // Each regtest block has work 2; genesis included: 207 * 2.
    assert_eq!(
        format!("{:x}", tree.best_tip().chainwork).trim_start_matches('0'),
        format!("{:x}", 207 * 2)
    );
    // Reloading as trusted into a fresh tree gives the same tip.
    let mut reloaded = HeaderTree::new(ChainParams::new(Network::Regtest));
    for h in &headers {
        reloaded.insert_trusted(*h).expect("in order");
    }
    assert_eq!(reloaded.best_hash(), tree.best_hash());
}

// ----- regtest: ground chains, negative cases ---------------------------------------------

fn regtest() -> (HeaderTree, ChainParams) {
    let p = ChainParams::new(Network::Regtest);
    (HeaderTree::new(p.clone()), p)
}

#[test]
fn wrong_bits_are_rejected_with_expected_and_got() {
    let (mut tree, p) = regtest();
    let g = p.genesis();
    // Harder than required still fails: regtest bits must equal the parent's.
    let bad = mine(&g, g.time + 600, 0x2000ffff, 1, &p);
    assert_eq!(
        tree.insert(bad, FAR_FUTURE),
        Err(HeaderError::BadDifficultyBits {
            hash: header_hash(&bad),
            height: 1,
            expected: CompactTarget::from_consensus(REGTEST_BITS),
            got: CompactTarget::from_consensus(0x2000ffff),
        })
    );
    // Easier than the pow limit: not a valid target at all.
    let mut easy = mine(&g, g.time + 600, REGTEST_BITS, 1, &p);
    easy.bits = CompactTarget::from_consensus(0x2100ffff);
    assert!(matches!(
        tree.insert(easy, FAR_FUTURE),
        Err(HeaderError::BadTarget { .. })
    ));
    assert_eq!(tree.len(), 1);
}

#[test]
fn timestamp_at_or_below_median_time_past_is_rejected() {
    let (mut tree, p) = regtest();
    let chain = mine_chain(&p.genesis(), 11, 1, &p);
    insert_all(&mut tree, &chain);
    let tip = chain[10];
    let mtp = tree.median_time_past(&header_hash(&tip)).expect("known");
    // 11 blocks 600 s apart: the median is the 6th newest.
    assert_eq!(mtp, chain[5].time);
    let at_mtp = mine(&tip, mtp, REGTEST_BITS, 2, &p);
    assert_eq!(
        tree.insert(at_mtp, FAR_FUTURE),
        Err(HeaderError::TimeTooOld {
            hash: header_hash(&at_mtp),
            time: mtp,
            median_time_past: mtp
        })
    );
    let after = mine(&tip, mtp + 1, REGTEST_BITS, 2, &p);
    assert!(tree.insert(after, FAR_FUTURE).is_ok());
}

#[test]
fn timestamp_more_than_two_hours_ahead_is_rejected() {
    let (tree, p) = regtest();
    let g = p.genesis();
    let now = g.time + 1000;
    let h = mine(&g, now + 7201, REGTEST_BITS, 1, &p);
    assert_eq!(
        tree.validate(&h, now),
        Err(HeaderError::TimeTooNew {
            hash: header_hash(&h),
            time: now + 7201,
            max: u64::from(now) + 7200
        })
    );
    assert_eq!(tree.validate(&h, now + 1), Ok(1));
    // `now` near u32::MAX must not overflow.
    assert_eq!(tree.validate(&h, u32::MAX), Ok(1));
}

#[test]
fn obsolete_version_is_rejected() {
    let (tree, p) = regtest();
    let g = p.genesis();
    let mut h = mine(&g, g.time + 600, REGTEST_BITS, 1, &p);
    h.version = Version::from_consensus(3);
    let h = grind(h, &p);
    assert_eq!(
        tree.validate(&h, FAR_FUTURE),
        Err(HeaderError::ObsoleteVersion {
            hash: header_hash(&h),
            height: 1,
            version: 3,
            min: 4
        })
    );
}

#[test]
fn fork_below_last_checkpoint_is_rejected() {
    let p = ChainParams::new(Network::Regtest);
    let chain = mine_chain(&p.genesis(), 5, 1, &p);
    let params = p
        .clone()
        .with_checkpoints(vec![(3, header_hash(&chain[2]))]);
    let mut tree = HeaderTree::new(params);
    insert_all(&mut tree, &chain);
    // A sibling of block 2 forks below the checkpoint at 3.
    let fork = mine(&chain[0], chain[0].time + 601, REGTEST_BITS, 9, &p);
    assert_eq!(
        tree.insert(fork, FAR_FUTURE),
        Err(HeaderError::ForkBeforeCheckpoint {
            hash: header_hash(&fork),
            height: 2,
            checkpoint_height: 3
        })
    );
    // A fork above it is fine.
    let fork = mine(&chain[3], chain[3].time + 601, REGTEST_BITS, 9, &p);
    assert!(tree.insert(fork, FAR_FUTURE).is_ok());
}

#[test]
fn bip94_timewarp_rule_on_regtest() {
    let mut p = ChainParams::new(Network::Regtest);
    p.enforce_bip94 = true; // Core: -test=bip94
    let mut tree = HeaderTree::new(p.clone());
    let chain = mine_chain(&p.genesis(), 143, 1, &p); // interval is 144 on regtest
    insert_all(&mut tree, &chain);
    let last = chain[142];
    let early = mine(&last, last.time - 601, REGTEST_BITS, 2, &p);
    assert_eq!(
        tree.validate(&early, FAR_FUTURE),
        Err(HeaderError::TimewarpAttack {
            hash: header_hash(&early),
            height: 144,
            time: last.time - 601,
            min: i64::from(last.time) - 600,
        })
    );
    let ok = mine(&last, last.time - 600, REGTEST_BITS, 2, &p);
    assert_eq!(tree.validate(&ok, FAR_FUTURE), Ok(144));
}

/// Full validation through a retarget: a toy network (1 s spacing, 10-block period, easy pow
/// limit that satisfies Core's `pow_limit * 4 * timespan < 2^256` sanity rule) whose first
/// period took 9 s instead of 10 must retarget to 9/10 of the target.
#[test]
fn retarget_is_enforced_on_full_validation() {
    const LIMIT_BITS: u32 = 0x2003ffff;
    let mut p = ChainParams::new(Network::Regtest);
    p.no_pow_retargeting = false;
    p.allow_min_difficulty_blocks = false;
    p.pow_target_spacing = 1;
    p.pow_target_timespan = 10;
    p.pow_limit = Target::from_compact(CompactTarget::from_consensus(LIMIT_BITS));
    p.genesis_header.bits = CompactTarget::from_consensus(LIMIT_BITS);
    p.genesis_header = grind(p.genesis_header, &p);
    let mut tree = HeaderTree::new(p.clone());
    let mut prev = p.genesis();
    for _ in 1..10 {
        prev = mine(&prev, prev.time + 1, LIMIT_BITS, 1, &p);
        tree.insert(prev, FAR_FUTURE).expect("valid");
    }
    // Expected value from Core's formula in Python: (0x3ffff << 232) * 9 // 10 -> 0x20039998.
    let stale = mine(&prev, prev.time + 1, LIMIT_BITS, 1, &p);
    assert_eq!(
        tree.insert(stale, FAR_FUTURE),
        Err(HeaderError::BadDifficultyBits {
            hash: header_hash(&stale),
            height: 10,
            expected: CompactTarget::from_consensus(0x20039998),
            got: CompactTarget::from_consensus(LIMIT_BITS),
        })
    );
    let good = mine(&prev, prev.time + 1, 0x20039998, 1, &p);
    assert_eq!(
        tree.insert(good, FAR_FUTURE),
        Ok(InsertOutcome::Inserted {
            height: 10,
            new_best: true
        })
    );
    // Block 11 keeps the new bits; the old ones are now wrong.
    let next = mine(&good, good.time + 1, 0x20039998, 1, &p);
    assert!(tree.insert(next, FAR_FUTURE).is_ok());
    let old = mine(&good, good.time + 1, LIMIT_BITS, 2, &p);
    assert!(matches!(
        tree.insert(old, FAR_FUTURE),
        Err(HeaderError::BadDifficultyBits { height: 11, .. })
    ));
}

// ----- regtest: forks, reorgs, invalidate/reconsider, locators ----------------------------

/// genesis - a1 .. a10 (first seen), and b6 .. b12 forking after a5.
struct Forked {
    tree: HeaderTree,
    a: Vec<Header>,
    b: Vec<Header>,
}

fn forked() -> Forked {
    let (mut tree, p) = regtest();
    let a = mine_chain(&p.genesis(), 10, 1, &p);
    let b = mine_chain(&a[4], 7, 2, &p);
    insert_all(&mut tree, &a);
    for (i, h) in b.iter().enumerate() {
        let height = 6 + i as u32;
        // b10 ties a10 (first seen wins); b11 has more work.
        let new_best = height > 10;
        assert_eq!(
            tree.insert(*h, FAR_FUTURE),
            Ok(InsertOutcome::Inserted { height, new_best }),
            "b{height}"
        );
        if height == 10 {
            assert_eq!(tree.best_hash(), header_hash(&a[9]));
        }
    }
    Forked { tree, a, b }
}

fn hashes(hs: &[Header]) -> Vec<BlockHash> {
    hs.iter().map(header_hash).collect()
}

#[test]
fn tree_follows_most_work_branch() {
    let Forked { tree, a, b } = forked();
    let (a, b) = (hashes(&a), hashes(&b));
    assert_eq!(tree.len(), 1 + 10 + 7);
    assert_eq!(tree.best_hash(), b[6]);
    assert_eq!(tree.best_height(), 12);
    for h in 1..=5 {
        assert_eq!(tree.hash_at_height(h), Some(a[h as usize - 1]));
    }
    for h in 6..=12 {
        assert_eq!(tree.hash_at_height(h), Some(b[h as usize - 6]));
    }
    assert_eq!(tree.hash_at_height(13), None);
    assert!(tree.is_on_best_chain(&a[4]) && !tree.is_on_best_chain(&a[5]));
    assert_eq!(tree.fork_point(&a[9], &b[6]), Some(a[4]));
    assert_eq!(tree.fork_point(&a[2], &b[6]), Some(a[2]));
    assert_eq!(tree.ancestor(&a[9], 7).map(|n| n.hash), Some(a[6]));
    assert_eq!(tree.ancestor(&b[6], 3).map(|n| n.hash), Some(a[2]));
    assert_eq!(tree.ancestor(&b[6], 13), None);
    let mut tips: Vec<BlockHash> = tree.tips().iter().map(|n| n.hash).collect();
    tips.sort();
    let mut expected = vec![a[9], b[6]];
    expected.sort();
    assert_eq!(tips, expected);
    // Validating a known header returns its height without inserting.
    assert_eq!(
        tree.validate(&tree.get(&a[9]).expect("known").header, FAR_FUTURE),
        Ok(10)
    );
    assert_eq!(tree.best_chain().count(), 13);
}

#[test]
fn invalidate_and_reconsider_switch_branches() {
    let Forked { mut tree, a, b } = forked();
    let (a_h, b_h) = (hashes(&a), hashes(&b));
    assert!(tree.invalidate(&b_h[1])); // b7: b7..b12 invalid, b6 (work = a6) stays valid
    assert_eq!(tree.best_hash(), a_h[9]);
    assert!(
        tree.get(&b_h[6]).expect("known").invalid && !tree.get(&b_h[0]).expect("known").invalid
    );
    assert_eq!(tree.hash_at_height(6), Some(a_h[5]));
    assert_eq!(tree.hash_at_height(11), None);
    // Building on, or re-sending, an invalid header.
    let p = tree.params().clone();
    let child = mine(&b[6], b[6].time + 600, REGTEST_BITS, 3, &p);
    assert_eq!(
        tree.insert(child, FAR_FUTURE),
        Err(HeaderError::InvalidAncestor {
            hash: header_hash(&child),
            prev: b_h[6]
        })
    );
    assert_eq!(
        tree.insert(b[3], FAR_FUTURE),
        Err(HeaderError::KnownInvalid { hash: b_h[3] })
    );
    // Trusted reload under an invalid parent inherits the mark and does not become best.
    tree.insert_trusted(child).expect("parent known");
    assert!(tree.get(&header_hash(&child)).expect("known").invalid);
    assert_eq!(tree.best_hash(), a_h[9]);

    // Reconsidering a descendant clears its ancestors too.
    assert!(tree.reconsider(&b_h[3]));
    assert_eq!(tree.best_hash(), header_hash(&child));
    assert_eq!(tree.best_height(), 13);
    assert!(tree.is_on_best_chain(&b_h[1]));

    // Invalidating on the other side; genesis and unknown hashes are refused.
    assert!(tree.invalidate(&a_h[4]));
    assert_eq!(tree.best_hash(), a_h[3]);
    assert!(!tree.invalidate(&tree.hash_at_height(0).expect("genesis")));
    assert!(!tree.invalidate(&BlockHash::all_zeros()));
    assert!(!tree.reconsider(&BlockHash::all_zeros()));
    assert!(tree.reconsider(&a_h[4]));
    assert_eq!(tree.best_hash(), header_hash(&child));
}

#[test]
fn invalidate_tie_prefers_first_seen() {
    let Forked { mut tree, a, b } = forked();
    let (a_h, b_h) = (hashes(&a), hashes(&b));
    // b11: best falls back to a10 and b10 (equal work); a10 was seen first.
    assert!(tree.invalidate(&b_h[5]));
    assert_eq!(tree.best_hash(), a_h[9]);
    assert!(tree.invalidate(&a_h[9]));
    assert_eq!(tree.best_hash(), b_h[4]);
}

#[test]
fn locator_is_dense_then_doubling_then_genesis() {
    let Forked { tree, .. } = forked();
    let loc = tree.locator();
    let heights: Vec<u32> = loc
        .iter()
        .map(|h| tree.get(h).expect("known").height)
        .collect();
    assert_eq!(heights, vec![12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);

    let (mut long, p) = regtest();
    insert_all(&mut long, &mine_chain(&p.genesis(), 100, 1, &p));
    let heights: Vec<u32> = long
        .locator()
        .iter()
        .map(|h| long.get(h).expect("known").height)
        .collect();
    assert_eq!(
        heights,
        vec![100, 99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 87, 83, 75, 59, 27, 0]
    );
}

#[test]
fn find_fork_in_best_serves_getheaders() {
    let Forked { mut tree, a, b } = forked();
    let (a_h, b_h) = (hashes(&a), hashes(&b));
    // A peer on branch a: a10, a9, ... finds a5.
    let peer: Vec<BlockHash> = a_h.iter().rev().copied().collect();
    assert_eq!(tree.find_fork_in_best(&peer), a_h[4]);
    // Unknown hashes only: genesis.
    let genesis = tree.hash_at_height(0).expect("genesis");
    assert_eq!(tree.find_fork_in_best(&[BlockHash::all_zeros()]), genesis);
    assert_eq!(tree.find_fork_in_best(&[]), genesis);
    // Our own locator: our tip.
    assert_eq!(tree.find_fork_in_best(&tree.locator()), b_h[6]);
    // A peer ahead of us on a branch we know (b12 invalidated): our tip.
    assert!(tree.invalidate(&b_h[6]));
    assert_eq!(tree.best_hash(), b_h[5]);
    assert_eq!(tree.find_fork_in_best(&[b_h[6]]), b_h[5]);
}

#[test]
fn deep_ancestor_lookups_off_the_best_chain_use_skip_pointers() {
    let (mut tree, p) = regtest();
    let main = mine_chain(&p.genesis(), 1200, 1, &p);
    insert_all(&mut tree, &main);
    // A side branch of 1000 headers trusted in (no grinding needed), with less work.
    let mut prev = main[9];
    let mut side = Vec::new();
    for i in 0..1000u32 {
        let h = Header {
            nonce: i,
            merkle_root: TxMerkleNode::from_byte_array([7; 32]),
            prev_blockhash: header_hash(&prev),
            ..prev
        };
        tree.insert_trusted(h).expect("parent known");
        side.push(header_hash(&h));
        prev = h;
    }
    let tip = side[999];
    assert_eq!(tree.best_hash(), header_hash(&main[1199]));
    for height in [0u32, 1, 10, 11, 12, 500, 777, 1009, 1010] {
        let expect = if height <= 10 {
            tree.hash_at_height(height)
        } else {
            Some(side[(height - 11) as usize])
        };
        assert_eq!(
            tree.ancestor(&tip, height).map(|n| n.hash),
            expect,
            "height {height}"
        );
    }
    assert_eq!(
        tree.fork_point(&tip, &header_hash(&main[1199])),
        Some(header_hash(&main[9]))
    );
}

// ----- property: no panics ----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary 80-byte headers, some re-parented onto known headers or given regtest bits,
    /// never panic any entry point, and the tree's invariants hold afterwards.
    #[test]
    fn tree_never_panics_on_random_headers(
        raw in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 80), 0u8..4, any::<u32>()), 1..40),
        network in prop_oneof![Just(Network::Bitcoin), Just(Network::Testnet), Just(Network::Testnet4), Just(Network::Signet), Just(Network::Regtest)],
    ) {
        let mut tree = HeaderTree::new(ChainParams::new(network));
        for (bytes, mode, now) in raw {
            let mut h: Header = deserialize(&bytes).expect("any 80 bytes decode");
            if mode >= 1 {
                // Re-parent onto a known header so the contextual checks run.
                let tips = tree.tips();
                h.prev_blockhash = tips[(now as usize) % tips.len()].hash;
            }
            if mode >= 2 {
                h.bits = CompactTarget::from_consensus(REGTEST_BITS);
            }
            let _ = tree.validate(&h, now);
            let _ = tree.insert(h, now);
            if mode == 3 {
                let _ = tree.insert_trusted(h);
                let hash = header_hash(&h);
                let _ = tree.invalidate(&hash);
                let _ = tree.reconsider(&hash);
            }
            let _ = tree.required_bits(&h.prev_blockhash, h.time);
            let _ = tree.find_fork_in_best(&[h.prev_blockhash, header_hash(&h)]);
        }
        let best = tree.best_tip().clone();
        prop_assert!(!best.invalid);
        prop_assert_eq!(tree.hash_at_height(best.height), Some(best.hash));
        prop_assert!(tree.tips().iter().any(|n| n.hash == best.hash));
        prop_assert!(tree.tips().iter().all(|n| n.invalid || n.chainwork <= best.chainwork));
        prop_assert_eq!(tree.locator().last().copied(), tree.hash_at_height(0));
    }
}
