//! EIP-1186 proofs verify against the root with alloy-trie's verifier, for present and absent
//! keys, and tampering is caught.

#![allow(clippy::unwrap_used)]

mod common;

use alloy_primitives::{Bytes, B256};
use alloy_trie::proof::verify_proof;
use common::{build, key, value};
use hemi_trie::{proof, root, MemNodes, Nibbles, EMPTY_ROOT_HASH};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn proofs_of_present_and_absent_keys_verify(
        model in proptest::collection::btree_map(key(), value(), 1..80),
        absent in proptest::collection::vec(key(), 1..16),
    ) {
        let nodes = build(&model);
        let root = root(&nodes).unwrap();
        for (k, v) in &model {
            let p = proof(&nodes, *k).unwrap();
            prop_assert!(verify_proof(root, Nibbles::unpack(k), Some(v.clone()), &p).is_ok());
            // The same proof does not prove a different value, or absence.
            let mut other = v.clone();
            other.push(0);
            prop_assert!(verify_proof(root, Nibbles::unpack(k), Some(other), &p).is_err());
            prop_assert!(verify_proof(root, Nibbles::unpack(k), None, &p).is_err());
        }
        for k in absent.iter().filter(|k| !model.contains_key(*k)) {
            let p = proof(&nodes, *k).unwrap();
            prop_assert!(verify_proof(root, Nibbles::unpack(k), None, &p).is_ok());
            prop_assert!(verify_proof(root, Nibbles::unpack(k), Some(vec![1]), &p).is_err());
        }
    }

    #[test]
    fn tampered_proofs_fail(
        model in proptest::collection::btree_map(key(), value(), 1..80),
        pick in any::<Index>(),
        node in any::<Index>(),
        byte in any::<Index>(),
        flip in 1u8..=255,
    ) {
        let nodes = build(&model);
        let root = root(&nodes).unwrap();
        let (k, v) = model.iter().nth(pick.index(model.len())).unwrap();
        let mut p = proof(&nodes, *k).unwrap();
        let i = node.index(p.len());
        let mut tampered = p[i].to_vec();
        let j = byte.index(tampered.len());
        tampered[j] ^= flip;
        p[i] = Bytes::from(tampered);
        prop_assert!(verify_proof(root, Nibbles::unpack(k), Some(v.clone()), &p).is_err());
        // Dropping the last node makes the proof incomplete.
        let mut truncated = proof(&nodes, *k).unwrap();
        truncated.pop();
        prop_assert!(verify_proof(root, Nibbles::unpack(k), Some(v.clone()), &truncated).is_err());
    }
}

#[test]
fn empty_trie_proves_absence_with_an_empty_proof() {
    let nodes = MemNodes::new();
    let p = proof(&nodes, B256::ZERO).unwrap();
    assert!(p.is_empty());
    assert!(verify_proof(EMPTY_ROOT_HASH, Nibbles::unpack(B256::ZERO), None, &p).is_ok());
}

#[test]
fn proof_into_inlined_leaves_verifies() {
    let model: BTreeMap<B256, Vec<u8>> = (0u8..16)
        .map(|i| {
            let mut k = [0x77; 32];
            k[31] = i;
            (B256::from(k), vec![i + 1])
        })
        .collect();
    let nodes = build(&model);
    let root = root(&nodes).unwrap();
    for (k, v) in &model {
        let p = proof(&nodes, *k).unwrap();
        assert!(verify_proof(root, Nibbles::unpack(k), Some(v.clone()), &p).is_ok());
    }
}
