//! The persisted node format: round trips, and outside bytes never panic the decoder.

#![allow(clippy::unwrap_used)]

mod common;

use alloy_trie::nodes::RlpNode;
use common::{build, key, value};
use hemi_trie::{Nibbles, StoredNode, NODE_FORMAT_VERSION};
use proptest::prelude::*;

fn nibbles(max: usize) -> impl Strategy<Value = Nibbles> {
    proptest::collection::vec(0u8..16, 0..=max).prop_map(Nibbles::from_nibbles)
}

fn rlp_node() -> impl Strategy<Value = RlpNode> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|h| RlpNode::word_rlp(&h.into())),
        (nibbles(10), value()).prop_map(|(key, value)| StoredNode::Leaf { key, value }.rlp()),
    ]
}

fn stored_node() -> impl Strategy<Value = StoredNode> {
    prop_oneof![
        proptest::collection::vec(proptest::option::of(rlp_node()), 16).prop_map(|v| {
            let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
            for (slot, child) in children.iter_mut().zip(v) {
                *slot = child;
            }
            StoredNode::Branch { children }
        }),
        (
            nibbles(63).prop_filter("non-empty", |k| !k.is_empty()),
            rlp_node()
        )
            .prop_map(|(key, child)| StoredNode::Extension { key, child }),
        (nibbles(64), value()).prop_map(|(key, value)| StoredNode::Leaf { key, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn encode_decode_round_trips(node in stored_node()) {
        let bytes = node.encode();
        prop_assert_eq!(bytes[0], NODE_FORMAT_VERSION);
        prop_assert_eq!(StoredNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = StoredNode::decode(&bytes);
        let mut versioned = vec![NODE_FORMAT_VERSION];
        versioned.extend(&bytes);
        if let Ok(node) = StoredNode::decode(&versioned) {
            // Whatever decodes re-encodes to the same bytes (no second reading of them).
            prop_assert_eq!(node.encode(), versioned);
        }
    }

    #[test]
    fn truncated_and_corrupted_nodes_are_errors(
        node in stored_node(),
        cut in any::<proptest::sample::Index>(),
        at in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let bytes = node.encode();
        let cut = cut.index(bytes.len());
        prop_assert!(StoredNode::decode(&bytes[..cut]).is_err());
        let mut corrupted = bytes.clone();
        corrupted[at.index(bytes.len())] ^= flip;
        // A flipped byte may still decode (e.g. inside a value), but never panics.
        let _ = StoredNode::decode(&corrupted);
    }

    #[test]
    fn every_node_of_a_real_trie_round_trips(
        model in proptest::collection::btree_map(key(), value(), 1..40),
    ) {
        for (_, node) in build(&model).iter() {
            prop_assert_eq!(&StoredNode::decode(&node.encode()).unwrap(), node);
        }
    }
}
