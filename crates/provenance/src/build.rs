//! The two proofs a node makes for the document.

use alloy_primitives::Bytes;
use alloy_trie::proof::ProofRetainer;
use alloy_trie::{HashBuilder, Nibbles};
use bitcoin::{Block, MerkleBlock, Txid};

/// The receipt trie's nodes from the root to item `index`, for items already EIP-2718 encoded
/// (the block's receipts in order). Empty if `index` is out of range.
pub fn receipt_proof(encoded: &[Vec<u8>], index: usize) -> Vec<Bytes> {
    if index >= encoded.len() {
        return Vec::new();
    }
    let target = Nibbles::unpack(alloy_rlp::encode_fixed_size(&index));
    let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(vec![target]));
    // Leaves in key order: rlp(i) sorts 1..=127, then 0, then 128.. (alloy's adjust_index_for_rlp).
    let mut keys: Vec<(Vec<u8>, usize)> = (0..encoded.len())
        .map(|i| (alloy_rlp::encode_fixed_size(&i).to_vec(), i))
        .collect();
    keys.sort();
    for (key, i) in keys {
        hb.add_leaf(Nibbles::unpack(&key), &encoded[i]);
    }
    let _ = hb.root();
    hb.take_proof_nodes()
        .matching_nodes_sorted(&target)
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// Bitcoin Core's `gettxoutproof` bytes for `txid` in `block` (a `CMerkleBlock`).
pub fn merkle_block(block: &Block, txid: Txid) -> Vec<u8> {
    bitcoin::consensus::serialize(&MerkleBlock::from_block_with_predicate(block, |t| {
        *t == txid
    }))
}
