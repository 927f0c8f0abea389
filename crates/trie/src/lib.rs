//! An incremental, path-keyed Ethereum Merkle-Patricia trie.
//!
//! The chain keeps its Ethereum state (the account trie and each contract's storage trie) as trie
//! nodes stored by nibble path: the node at path `P` lives under key `P`, the root at the empty
//! path. A block's state root is then computed by [`update`], which reads and rewrites only the
//! nodes on the paths its changes touch, so its cost follows the block, not the size of the state.
//! The roots are Ethereum's (what the hVM's state commits to, what a block header carries) and
//! [`proof`] serves `eth_getProof` proofs that verify against them.
//!
//! Main types: [`StoredNode`] (a node and its versioned persisted format), [`NodeReader`] (the
//! boundary to the node store; the chain implements it over redb), [`TrieUpdate`] (the new root
//! and the node writes for the caller to commit with its block) and [`MemNodes`] (an in-memory
//! store). Node encodings, hashing and proof checking are alloy-trie's.
//!
//! ```
//! use hemi_trie::{proof, update, MemNodes, EMPTY_ROOT_HASH};
//! use alloy_primitives::{keccak256, Address};
//! use std::collections::BTreeMap;
//!
//! let mut nodes = MemNodes::new();
//! let key = keccak256(Address::ZERO);
//! let changes = BTreeMap::from([(key, Some(vec![0x01]))]);
//! let up = update(&nodes, &changes)?;
//! nodes.apply(&up);
//! assert_ne!(up.root, EMPTY_ROOT_HASH);
//! assert_eq!(proof(&nodes, key)?.len(), 1);
//! # Ok::<(), hemi_trie::TrieError>(())
//! ```

#![warn(missing_docs)]

mod error;
mod node;
mod proof;
mod reader;
mod store;
mod update;

pub use alloy_trie::{Nibbles, EMPTY_ROOT_HASH};
pub use error::TrieError;
pub use node::{StoredNode, NODE_FORMAT_VERSION};
pub use proof::{proof, root};
pub use reader::NodeReader;
pub use store::MemNodes;
pub use update::{update, update_parallel, TrieUpdate};
