//! Incremental updates give exactly the trie a from-scratch build gives: same root as alloy-trie's
//! `HashBuilder`, same stored nodes, nothing stale.

#![allow(clippy::unwrap_used)]

mod common;

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::{root::storage_root_unhashed, HashBuilder, TrieAccount};
use common::{build, check_reachable, hash_builder_root, key, value};
use hemi_trie::{root, update, update_parallel, MemNodes, Nibbles, TrieError, EMPTY_ROOT_HASH};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Insert(B256, Vec<u8>),
    Overwrite(Index, Vec<u8>),
    Delete(Index),
    DeleteAbsent(B256),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (any::<Index>(), value()).prop_map(|(i, v)| Op::Overwrite(i, v)),
        3 => any::<Index>().prop_map(Op::Delete),
        1 => key().prop_map(Op::DeleteAbsent),
    ]
}

/// A batch of ops, or (`None`) "delete every key".
fn batch() -> impl Strategy<Value = Option<Vec<Op>>> {
    prop_oneof![
        9 => proptest::collection::vec(op(), 0..48).prop_map(Some),
        1 => Just(None),
    ]
}

/// Resolves a batch against the current keys into the changes for `update`.
fn changes_for(
    model: &BTreeMap<B256, Vec<u8>>,
    batch: &Option<Vec<Op>>,
) -> BTreeMap<B256, Option<Vec<u8>>> {
    let Some(ops) = batch else {
        return model.keys().map(|k| (*k, None)).collect();
    };
    let keys: Vec<B256> = model.keys().copied().collect();
    let mut changes = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                changes.insert(*k, Some(v.clone()));
            }
            Op::Overwrite(i, v) if !keys.is_empty() => {
                changes.insert(keys[i.index(keys.len())], Some(v.clone()));
            }
            Op::Delete(i) if !keys.is_empty() => {
                changes.insert(keys[i.index(keys.len())], None);
            }
            Op::DeleteAbsent(k) if !model.contains_key(k) => {
                changes.insert(*k, None);
            }
            _ => {}
        }
    }
    changes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn successive_updates_match_a_from_scratch_build(
        initial in proptest::collection::btree_map(key(), value(), 0..64),
        batches in proptest::collection::vec(batch(), 1..6),
    ) {
        let mut nodes = build(&initial);
        let mut model = initial;
        prop_assert_eq!(root(&nodes).unwrap(), hash_builder_root(&model));
        for batch in &batches {
            let changes = changes_for(&model, batch);
            let up = update(&nodes, &changes).unwrap();
            // Spread over threads, the same root and the very same writes.
            for threads in [2, 3, 16] {
                prop_assert_eq!(&update_parallel(&nodes, &changes, threads).unwrap(), &up);
            }
            for (k, v) in changes {
                match v {
                    Some(v) => model.insert(k, v),
                    None => model.remove(&k),
                };
            }
            // The update's writes are minimal: no put of a node already there, no delete of an
            // absent one.
            for (path, node) in &up.puts {
                prop_assert_ne!(nodes.get(path), Some(node));
            }
            for path in &up.deletes {
                prop_assert!(nodes.get(path).is_some());
            }
            nodes.apply(&up);
            let expected = hash_builder_root(&model);
            prop_assert_eq!(up.root, expected);
            prop_assert_eq!(root(&nodes).unwrap(), expected);
            check_reachable(&nodes);
            // Canonical: the very nodes a one-batch build of the same keys stores.
            prop_assert_eq!(&nodes, &build(&model));
        }
        if model.is_empty() {
            prop_assert!(nodes.is_empty());
            prop_assert_eq!(root(&nodes).unwrap(), EMPTY_ROOT_HASH);
        }
    }
}

#[test]
fn deleting_everything_leaves_the_empty_trie() {
    let model: BTreeMap<B256, Vec<u8>> = (0u8..50).map(|i| (keccak256([i]), vec![i + 1])).collect();
    let mut nodes = build(&model);
    assert_eq!(root(&nodes).unwrap(), hash_builder_root(&model));
    let up = update(&nodes, &model.keys().map(|k| (*k, None)).collect()).unwrap();
    assert_eq!(up.root, EMPTY_ROOT_HASH);
    assert!(up.puts.is_empty());
    nodes.apply(&up);
    assert!(nodes.is_empty());
}

#[test]
fn deep_keys_with_tiny_values_inline_their_nodes() {
    // Keys equal but for the last byte: a storage trie's worst case for inlining.
    let model: BTreeMap<B256, Vec<u8>> = (0u8..20)
        .map(|i| {
            let mut k = [0x42; 32];
            k[31] = i.wrapping_mul(37);
            (B256::from(k), vec![i + 1])
        })
        .collect();
    let nodes = build(&model);
    assert_eq!(root(&nodes).unwrap(), hash_builder_root(&model));
    assert!(
        check_reachable(&nodes) > 0,
        "expected inline child references"
    );
}

#[test]
fn empty_trie_root_is_the_empty_root_hash() {
    let nodes = MemNodes::new();
    assert_eq!(root(&nodes).unwrap(), EMPTY_ROOT_HASH);
    let up = update(&nodes, &BTreeMap::new()).unwrap();
    assert_eq!(up.root, EMPTY_ROOT_HASH);
    assert!(up.puts.is_empty() && up.deletes.is_empty());
    // Deleting an absent key from the empty trie changes nothing.
    let up = update(&nodes, &BTreeMap::from([(B256::ZERO, None)])).unwrap();
    assert_eq!(
        up,
        hemi_trie::TrieUpdate {
            root: EMPTY_ROOT_HASH,
            ..Default::default()
        }
    );
}

#[test]
fn single_leaf_roots_match_hash_builder() {
    for (k, v) in [(B256::ZERO, vec![1u8]), (keccak256(b"k"), vec![0xaa; 80])] {
        let model = BTreeMap::from([(k, v)]);
        let mut hb = HashBuilder::default();
        hb.add_leaf(Nibbles::unpack(k), &model[&k]);
        assert_eq!(root(&build(&model)).unwrap(), hb.root());
    }
}

#[test]
fn account_and_storage_tries_match_alloy_state_and_storage_roots() {
    let accounts: Vec<(Address, TrieAccount)> = (1u64..=5)
        .map(|i| {
            let account = TrieAccount {
                nonce: i,
                balance: U256::from(i) * U256::from(10u64).pow(U256::from(18)),
                ..Default::default()
            };
            (Address::with_last_byte(i as u8), account)
        })
        .collect();
    let model: BTreeMap<B256, Vec<u8>> = accounts
        .iter()
        .map(|(a, acc)| (keccak256(a), alloy_rlp::encode(acc)))
        .collect();
    let expected = alloy_trie::root::state_root_unhashed(accounts.iter().cloned());
    assert_eq!(root(&build(&model)).unwrap(), expected);

    let slots: Vec<(B256, U256)> = (0u64..40)
        .map(|i| (B256::from(U256::from(i)), U256::from(i + 1)))
        .collect();
    let model: BTreeMap<B256, Vec<u8>> = slots
        .iter()
        .map(|(s, v)| (keccak256(s), alloy_rlp::encode(v)))
        .collect();
    assert_eq!(root(&build(&model)).unwrap(), storage_root_unhashed(slots));
}

#[test]
fn empty_value_is_rejected() {
    let err = update(
        &MemNodes::new(),
        &BTreeMap::from([(B256::ZERO, Some(vec![]))]),
    );
    assert!(matches!(err, Err(TrieError::EmptyValue { .. })));
}

#[test]
fn missing_child_is_an_error_not_a_panic() {
    let model: BTreeMap<B256, Vec<u8>> = (0u8..30).map(|i| (keccak256([i]), vec![i + 1])).collect();
    let mut nodes = build(&model);
    let victim = *nodes.iter().map(|(p, _)| p).find(|p| p.len() == 1).unwrap();
    nodes.remove(&victim);
    let changes = model.keys().map(|k| (*k, None)).collect();
    assert!(matches!(
        update(&nodes, &changes),
        Err(TrieError::MissingNode { .. })
    ));
}
