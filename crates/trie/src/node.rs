//! Trie nodes as stored at their paths, and their persisted format.

use crate::TrieError;
use alloy_rlp::{Decodable, Encodable};
use alloy_trie::{
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode, TrieNode},
    Nibbles, TrieMask,
};

/// Version byte that starts every persisted node.
///
/// Format version 1 is this byte followed by the node's Ethereum RLP (exactly the bytes a proof
/// carries), so a stored node needs no second encoding and a proof is a read plus a slice.
pub const NODE_FORMAT_VERSION: u8 = 1;

/// A trie node as stored at its nibble path.
///
/// Child references are alloy-trie [`RlpNode`]s: `rlp(keccak(rlp(child)))` (a 32-byte hash), or
/// the child's own RLP when that is shorter than 32 bytes (small storage-trie nodes are inlined in
/// their parent). Every node is stored at its own path either way, so an inlined child is also a
/// node of its own in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredNode {
    /// A 16-way branch; child `i` is stored at `path ‖ i`. Keys are all 32-byte hashes, so a
    /// branch never holds a value.
    Branch {
        /// The reference to each child, `None` where the slot is empty.
        ///
        /// Boxed: inline, the 560-byte array would make every node (mostly leaves) that large,
        /// which multiplies the memory and cache traffic of node stores and overlays.
        children: Box<[Option<RlpNode>; 16]>,
    },
    /// A shared key segment; the child is stored at `path ‖ key`.
    Extension {
        /// The shared segment (at least one nibble).
        key: Nibbles,
        /// The reference to the child (always a branch in a canonical trie).
        child: RlpNode,
    },
    /// The end of a key.
    Leaf {
        /// The rest of the key after the node's path.
        key: Nibbles,
        /// The leaf value, already RLP-encoded by the caller (an account, a storage word).
        value: Vec<u8>,
    },
}

impl StoredNode {
    /// The persisted form: [`NODE_FORMAT_VERSION`] followed by [`StoredNode::rlp_encoded`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.rlp_length());
        out.push(NODE_FORMAT_VERSION);
        self.encode_rlp_into(&mut out);
        out
    }

    /// Decodes the persisted form written by [`StoredNode::encode`].
    ///
    /// # Errors
    ///
    /// [`TrieError::Decode`] when the version byte is unknown, the RLP is malformed, not in its
    /// one canonical form, or has trailing bytes, or the node is not a valid branch, extension or
    /// leaf (an empty root, a branch value, an empty extension key).
    pub fn decode(bytes: &[u8]) -> Result<Self, TrieError> {
        let Some((&version, encoded)) = bytes.split_first() else {
            return Err(TrieError::decode("empty input"));
        };
        if version != NODE_FORMAT_VERSION {
            return Err(TrieError::decode(format_args!(
                "unknown node format version {version} (expected {NODE_FORMAT_VERSION})"
            )));
        }
        let mut rlp = encoded;
        let node = TrieNode::decode(&mut rlp).map_err(TrieError::decode)?;
        if !rlp.is_empty() {
            return Err(TrieError::decode(format_args!(
                "{} trailing bytes",
                rlp.len()
            )));
        }
        let node = Self::from_trie_node(node)?;
        // One node, one encoding: bytes the decoder tolerates but the encoder would not write
        // (e.g. junk in the padding nibble of a key) are corruption, and would hash differently.
        if node.rlp_encoded() != encoded {
            return Err(TrieError::decode("node RLP is not in canonical form"));
        }
        Ok(node)
    }

    /// Converts an alloy-trie node (as decoded from Ethereum RLP, e.g. from a proof).
    ///
    /// # Errors
    ///
    /// [`TrieError::Decode`] for an empty root or an extension with an empty key, which have no
    /// place in a stored trie.
    pub fn from_trie_node(node: TrieNode) -> Result<Self, TrieError> {
        match node {
            TrieNode::EmptyRoot => Err(TrieError::decode("empty root is not a stored node")),
            TrieNode::Branch(branch) => {
                let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
                let mut stack = branch.stack.into_iter();
                for (i, slot) in (0u8..).zip(children.iter_mut()) {
                    if branch.state_mask.is_bit_set(i) {
                        let child = stack
                            .next()
                            .ok_or_else(|| TrieError::decode("branch mask and children differ"))?;
                        *slot = Some(child);
                    }
                }
                Ok(Self::Branch { children })
            }
            TrieNode::Extension(ext) => {
                if ext.key.is_empty() {
                    return Err(TrieError::decode("extension with an empty key"));
                }
                Ok(Self::Extension {
                    key: ext.key,
                    child: ext.child,
                })
            }
            TrieNode::Leaf(leaf) => Ok(Self::Leaf {
                key: leaf.key,
                value: leaf.value,
            }),
        }
    }

    /// The node's Ethereum RLP: what its parent hashes and what an EIP-1186 proof carries.
    pub fn rlp_encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.rlp_length());
        self.encode_rlp_into(&mut out);
        out
    }

    /// The node's reference in its parent: its RLP if shorter than 32 bytes, else the RLP of its
    /// keccak-256 hash.
    pub fn rlp(&self) -> RlpNode {
        RlpNode::from_rlp(&self.rlp_encoded())
    }

    fn rlp_length(&self) -> usize {
        match self {
            Self::Branch { children } => {
                let (stack, mask) = branch_stack(children);
                BranchNodeRef::new(&stack, mask).length()
            }
            Self::Extension { key, child } => ExtensionNodeRef::new(key, child).length(),
            Self::Leaf { key, value } => LeafNodeRef::new(key, value).length(),
        }
    }

    fn encode_rlp_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Branch { children } => {
                let (stack, mask) = branch_stack(children);
                BranchNodeRef::new(&stack, mask).encode(out);
            }
            Self::Extension { key, child } => ExtensionNodeRef::new(key, child).encode(out),
            Self::Leaf { key, value } => LeafNodeRef::new(key, value).encode(out),
        }
    }
}

/// The present children in order and their mask, as alloy-trie's branch encoder takes them.
fn branch_stack(children: &[Option<RlpNode>; 16]) -> (Vec<RlpNode>, TrieMask) {
    let mut mask = 0u16;
    let mut stack = Vec::with_capacity(16);
    for (i, child) in children.iter().enumerate() {
        if let Some(child) = child {
            mask |= 1 << i;
            stack.push(child.clone());
        }
    }
    (stack, TrieMask::new(mask))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    fn leaf(nibbles: &[u8], value: &[u8]) -> StoredNode {
        StoredNode::Leaf {
            key: Nibbles::from_nibbles(nibbles),
            value: value.to_vec(),
        }
    }

    #[test]
    fn each_node_kind_round_trips() {
        let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
        children[3] = Some(RlpNode::word_rlp(&B256::repeat_byte(7)));
        children[9] = Some(leaf(&[1, 2], &[5]).rlp());
        let nodes = [
            StoredNode::Branch { children },
            StoredNode::Extension {
                key: Nibbles::from_nibbles([0xa, 0xb, 0xc]),
                child: RlpNode::word_rlp(&B256::repeat_byte(1)),
            },
            leaf(&[1, 2, 3], b"hello"),
            leaf(&[], &[1]),
        ];
        for node in nodes {
            let bytes = node.encode();
            assert_eq!(bytes[0], NODE_FORMAT_VERSION);
            assert_eq!(&bytes[1..], node.rlp_encoded().as_slice());
            assert_eq!(StoredNode::decode(&bytes).unwrap(), node);
        }
    }

    #[test]
    fn small_node_is_referenced_inline_and_large_by_hash() {
        let small = leaf(&[1, 2], &[5]);
        assert!(!small.rlp().is_hash());
        assert_eq!(small.rlp().as_slice(), small.rlp_encoded().as_slice());
        let large = leaf(&[0; 64], &[5; 40]);
        assert!(large.rlp().is_hash());
    }

    #[test]
    fn unknown_version_trailing_bytes_and_empty_input_are_errors() {
        let mut bytes = leaf(&[1], &[2]).encode();
        bytes[0] = 9;
        assert!(StoredNode::decode(&bytes).is_err());
        let mut bytes = leaf(&[1], &[2]).encode();
        bytes.push(0);
        assert!(StoredNode::decode(&bytes).is_err());
        assert!(StoredNode::decode(&[]).is_err());
        assert!(StoredNode::decode(&[NODE_FORMAT_VERSION, 0x80]).is_err());
    }

    #[test]
    fn non_canonical_key_padding_is_an_error() {
        let mut bytes = leaf(&[1, 2], &[5]).encode();
        // [version, list header, key string header (0x82), key flag 0x20, 0x12, value 0x05]
        assert_eq!(bytes[3], 0x20);
        bytes[3] = 0x25;
        assert!(StoredNode::decode(&bytes).is_err());
    }
}
