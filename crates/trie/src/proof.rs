//! Reading a stored trie: its root and EIP-1186 proofs.

use crate::{update::root_hash, NodeReader, StoredNode, TrieError};
use alloy_primitives::{Bytes, B256};
use alloy_trie::Nibbles;

/// The root hash of the trie stored in `reader`: keccak of the root node's RLP, or
/// [`alloy_trie::EMPTY_ROOT_HASH`] when there is no root node.
///
/// # Errors
///
/// Whatever the reader returns for the root path.
pub fn root(reader: &dyn NodeReader) -> Result<B256, TrieError> {
    Ok(root_hash(reader.node(&Nibbles::new())?.as_ref()))
}

/// The EIP-1186 proof for `key`: the RLP of every node from the root down the key's path, as
/// `eth_getProof` returns it and [`alloy_trie::proof::verify_proof`] checks it.
///
/// For an absent key this is the proof of exclusion (the path down to where the key would
/// diverge). Nodes inlined in their parent (RLP under 32 bytes) are not listed separately, since
/// the parent's RLP already carries them; the empty trie has the empty proof.
///
/// # Errors
///
/// Whatever the reader returns, [`TrieError::MissingNode`] when a referenced node is not
/// stored, or [`TrieError::CorruptNode`] when a key runs past 64 nibbles.
pub fn proof(reader: &dyn NodeReader, key: B256) -> Result<Vec<Bytes>, TrieError> {
    let key = Nibbles::unpack(key);
    let mut path = Nibbles::new();
    let mut proof = Vec::new();
    let Some(mut node) = reader.node(&path)? else {
        return Ok(proof);
    };
    loop {
        proof.push(Bytes::from(node.rlp_encoded()));
        let (next, child) = match node {
            StoredNode::Leaf { .. } => break,
            StoredNode::Extension {
                key: ext_key,
                child,
            } => {
                if path.len() + ext_key.len() > key.len() {
                    return Err(TrieError::CorruptNode {
                        path,
                        reason: "extension key longer than 64 nibbles",
                    });
                }
                let next = path.join(&ext_key);
                if !key.starts_with(&next) {
                    break;
                }
                (next, child)
            }
            StoredNode::Branch { mut children } => {
                let Some(index) = key.get(path.len()) else {
                    return Err(TrieError::CorruptNode {
                        path,
                        reason: "branch at full key depth",
                    });
                };
                let Some(child) = children[usize::from(index)].take() else {
                    break;
                };
                let mut next = path;
                next.push_unchecked(index);
                (next, child)
            }
        };
        // An inlined child, and everything below it, is already in its parent's RLP.
        if !child.is_hash() {
            break;
        }
        path = next;
        node = reader.node(&path)?.ok_or(TrieError::MissingNode { path })?;
    }
    Ok(proof)
}
