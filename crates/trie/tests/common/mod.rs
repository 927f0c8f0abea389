//! Shared test helpers: the outside truth (alloy-trie's `HashBuilder`) and store invariants.

#![allow(dead_code, clippy::unwrap_used)]

use alloy_primitives::B256;
use alloy_trie::HashBuilder;
use hemi_trie::{update, MemNodes, Nibbles, StoredNode};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// The root computed from scratch by alloy-trie over `model`'s (sorted) entries.
pub(crate) fn hash_builder_root(model: &BTreeMap<B256, Vec<u8>>) -> B256 {
    let mut hb = HashBuilder::default();
    for (key, value) in model {
        hb.add_leaf(Nibbles::unpack(key), value);
    }
    hb.root()
}

/// A store built by one `update` from an empty trie.
pub(crate) fn build(model: &BTreeMap<B256, Vec<u8>>) -> MemNodes {
    let mut nodes = MemNodes::new();
    let changes = model.iter().map(|(k, v)| (*k, Some(v.clone()))).collect();
    let up = update(&nodes, &changes).unwrap();
    nodes.apply(&up);
    nodes
}

/// Walks the trie from the root: every reference must match the referenced node's RLP, and every
/// stored node must be reached. Returns how many child references were inline.
pub(crate) fn check_reachable(nodes: &MemNodes) -> usize {
    let mut reached = BTreeSet::new();
    let mut inline = 0;
    let mut stack = Vec::new();
    if nodes.get(&Nibbles::new()).is_some() {
        stack.push(Nibbles::new());
    }
    while let Some(path) = stack.pop() {
        let node = nodes
            .get(&path)
            .unwrap_or_else(|| panic!("missing node at {path:?}"));
        assert!(reached.insert(path));
        let mut check = |child_path: Nibbles, reference: &alloy_trie::nodes::RlpNode| {
            let child = nodes
                .get(&child_path)
                .unwrap_or_else(|| panic!("missing {child_path:?}"));
            assert_eq!(&child.rlp(), reference, "stale reference to {child_path:?}");
            inline += usize::from(!reference.is_hash());
            stack.push(child_path);
        };
        match node {
            StoredNode::Branch { children } => {
                assert!(
                    children.iter().flatten().count() >= 2,
                    "non-canonical branch {path:?}"
                );
                for (i, child) in (0u8..).zip(children.iter()) {
                    if let Some(child) = child {
                        let mut child_path = path;
                        child_path.push(i);
                        check(child_path, child);
                    }
                }
            }
            StoredNode::Extension { key, child } => {
                assert!(!key.is_empty());
                let child_path = path.join(key);
                assert!(
                    matches!(nodes.get(&child_path), Some(StoredNode::Branch { .. })),
                    "extension at {path:?} not followed by a branch"
                );
                check(child_path, child);
            }
            StoredNode::Leaf { key, .. } => assert_eq!(path.len() + key.len(), 64),
        }
    }
    let stored: BTreeSet<Nibbles> = nodes.iter().map(|(p, _)| *p).collect();
    assert_eq!(reached, stored, "unreachable (stale) nodes in the store");
    inline
}

/// Keys that are fully random, or share long prefixes so that nodes sit deep in the trie and
/// small ones get inlined in their parents (as in storage tries).
pub(crate) fn key() -> impl Strategy<Value = B256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(B256::from),
        (0u8..3, any::<u16>()).prop_map(|(cluster, tail)| {
            let mut k = [cluster * 0x11; 32];
            k[30..].copy_from_slice(&tail.to_be_bytes());
            B256::from(k)
        }),
        (0u8..2, 0u8..4, 0u8..16).prop_map(|(cluster, a, b)| {
            let mut k = [0xa0 | cluster; 32];
            k[31] = (a << 4) | b;
            B256::from(k)
        }),
    ]
}

/// Leaf values: mostly 1-byte RLP values (small storage words), some long ones.
pub(crate) fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (1u8..0x80).prop_map(|b| vec![b]),
        1 => proptest::collection::vec(any::<u8>(), 1..120),
    ]
}
