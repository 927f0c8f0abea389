//! The regtest header tree fed headers from the wire: `HeaderTree::insert` must never panic, and
//! after any sequence of inserts (and `invalidate`/`reconsider`) the tree must be consistent:
//! the best tip is valid, has the most work, and is the top of a linked best chain indexed by
//! height.
//!
//! Input: 4 bytes for the clock, then 81-byte chunks, each a control byte and an 80-byte header.
//! The control byte's top two bits say what to do with the header:
//! - 0: insert it as it is (unknown parent, bad proof of work, ... almost always);
//! - 1: make it a child of a header already in the tree (the first byte of its
//!   `prev_blockhash` picks which), grind the nonce for its own `bits`, insert;
//! - 2: as 1, and also give it the required `bits` and a time near its parent's (the low 16 bits
//!   of its time, signed, are the offset), so that it is usually valid: this grows and forks
//!   the tree;
//! - 3: `invalidate` (low bit set) or `reconsider` a header of the tree picked as in 1.
#![no_main]

use bitcoin::block::Header;
use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network};
use hemi_btc_headers::{check_proof_of_work, ChainParams, HeaderTree, InsertOutcome};
use libfuzzer_sys::fuzz_target;

const CHUNK: usize = 81;
/// Nonces tried per header; regtest's target needs two on average.
const GRIND: u32 = 64;

fn grind(tree: &HeaderTree, header: &mut Header) {
    for _ in 0..GRIND {
        if check_proof_of_work(header.block_hash(), header.bits, tree.params()).is_ok() {
            return;
        }
        header.nonce = header.nonce.wrapping_add(1);
    }
}

fn check_invariants(tree: &HeaderTree, known: &[BlockHash]) {
    let genesis = tree.params().genesis().block_hash();
    let best = tree.best_tip();
    let (best_hash, best_height) = (tree.best_hash(), tree.best_height());
    assert_eq!(best.hash, best_hash);
    assert_eq!(best.height, best_height);
    assert!(!best.invalid, "best tip {best_hash} is marked invalid");
    assert!(tree.contains(&best_hash));
    assert_eq!(tree.hash_at_height(best_height), Some(best_hash));
    assert_eq!(tree.hash_at_height(best_height + 1), None);
    assert_eq!(tree.len(), known.len());
    // `tips()` documents that the best tip is among them, but after `invalidate` the best tip can
    // be the parent of invalid headers, hence not a leaf: check that it is a leaf of the valid
    // tree instead.
    for hash in known {
        let node = tree.get(hash).expect("inserted header is in the tree");
        if node.height > 0 && node.header.prev_blockhash == best_hash {
            assert!(node.invalid, "best tip has a valid child {hash}");
        }
    }
    let _ = tree.tips();

    // The best chain: genesis to tip, linked, one header per height.
    let mut prev: Option<BlockHash> = None;
    let mut count = 0u32;
    for (h, node) in tree.best_chain().enumerate() {
        assert_eq!(node.height as usize, h);
        match prev {
            None => assert_eq!(node.hash, genesis),
            Some(p) => assert_eq!(node.header.prev_blockhash, p, "best chain broken at {h}"),
        }
        assert!(
            !node.invalid,
            "invalid header on the best chain at height {h}"
        );
        assert!(tree.is_on_best_chain(&node.hash));
        prev = Some(node.hash);
        count += 1;
    }
    assert_eq!(count, best_height + 1);

    for hash in known {
        let node = tree.get(hash).expect("inserted header is in the tree");
        if !node.invalid {
            assert!(
                node.chainwork <= best.chainwork,
                "{hash} has more work than the best tip"
            );
        }
        assert_eq!(
            tree.is_on_best_chain(hash),
            tree.hash_at_height(node.height) == Some(*hash)
        );
        assert_eq!(tree.ancestor(hash, 0).map(|n| n.hash), Some(genesis));
        assert_eq!(
            tree.ancestor(hash, node.height).map(|n| n.hash),
            Some(*hash)
        );
        if node.height > 0 {
            let parent = tree.ancestor(hash, node.height - 1).expect("parent");
            assert_eq!(parent.hash, node.header.prev_blockhash);
        }
        let fork = tree.fork_point(hash, &best_hash).expect("common ancestor");
        assert!(tree.is_on_best_chain(&fork));
        assert!(tree.median_time_past(hash).is_some());
    }

    let locator = tree.locator();
    assert_eq!(locator.first(), Some(&best_hash));
    assert_eq!(locator.last(), Some(&genesis));
    assert_eq!(tree.find_fork_in_best(&locator), best_hash);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (clock, chunks) = data.split_at(4);
    let mut tree = HeaderTree::new(ChainParams::new(Network::Regtest));
    let genesis = tree.params().genesis();
    // Anywhere from the genesis time to ~136 years after it.
    let now = genesis
        .time
        .saturating_add(u32::from_le_bytes([clock[0], clock[1], clock[2], clock[3]]));
    let mut known = vec![genesis.block_hash()];

    for chunk in chunks.chunks_exact(CHUNK) {
        let control = chunk[0];
        let Ok(mut header) = deserialize::<Header>(&chunk[1..]) else {
            continue;
        };
        let pick = known[usize::from(header.prev_blockhash.as_byte_array()[0]) % known.len()];
        match control >> 6 {
            0 => {}
            3 => {
                let before = tree.len();
                if control & 1 == 1 {
                    let changed = tree.invalidate(&pick);
                    assert_eq!(
                        changed,
                        pick != known[0],
                        "invalidate({pick}) returned {changed}"
                    );
                    assert!(tree.get(&pick).is_some_and(|n| n.invalid) || pick == known[0]);
                } else {
                    assert!(tree.reconsider(&pick));
                    assert!(tree.get(&pick).is_some_and(|n| !n.invalid));
                }
                assert_eq!(tree.len(), before);
                check_invariants(&tree, &known);
                continue;
            }
            op => {
                let parent = tree.get(&pick).expect("known header").header.time;
                header.prev_blockhash = pick;
                if op == 2 {
                    let offset = i32::from(header.time as u16 as i16);
                    header.time = parent.saturating_add_signed(offset);
                    header.bits = tree
                        .required_bits(&pick, header.time)
                        .expect("known parent");
                }
                grind(&tree, &mut header);
            }
        }

        let hash = header.block_hash();
        let before = tree.len();
        let validated = tree.validate(&header, now);
        match tree.insert(header, now) {
            Ok(InsertOutcome::AlreadyKnown) => {
                assert_eq!(tree.len(), before);
                assert!(validated.is_ok());
            }
            Ok(InsertOutcome::Inserted { height, new_best }) => {
                assert_eq!(validated.ok(), Some(height), "validate and insert disagree");
                assert_eq!(tree.len(), before + 1);
                let node = tree.get(&hash).expect("inserted");
                assert_eq!(node.height, height);
                let parent = tree.get(&header.prev_blockhash).expect("parent");
                assert_eq!(parent.height + 1, height);
                assert!(node.chainwork > parent.chainwork);
                assert_eq!(tree.validate(&header, now), Ok(height));
                if new_best {
                    assert_eq!(tree.best_hash(), hash);
                    assert_eq!(tree.best_height(), height);
                }
                known.push(hash);
            }
            Err(e) => {
                assert_eq!(
                    validated.err(),
                    Some(e.clone()),
                    "validate and insert disagree"
                );
                assert_eq!(tree.len(), before, "a rejected header changed the tree");
                let _ = e.to_string();
            }
        }
    }
    check_invariants(&tree, &known);
});
