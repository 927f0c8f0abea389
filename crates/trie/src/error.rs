//! The crate's one error type.

use alloy_primitives::B256;
use alloy_trie::Nibbles;

/// Why a trie operation failed.
///
/// Paths are nibble paths from the root (the root node lives at the empty path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrieError {
    /// A node referenced by its parent is not in the store: the store is incomplete or corrupt.
    #[error("trie node missing at path {path:?} (referenced by its parent)")]
    MissingNode {
        /// Where the node should be.
        path: Nibbles,
    },
    /// Stored node bytes do not decode.
    #[error("cannot decode trie node: {reason}")]
    Decode {
        /// What was wrong with the bytes.
        reason: String,
    },
    /// A stored node is well-formed on its own but impossible at its path (for example a key that
    /// runs past 64 nibbles): the store is corrupt.
    #[error("trie node at path {path:?} is inconsistent: {reason}")]
    CorruptNode {
        /// Where the node is stored.
        path: Nibbles,
        /// What is impossible about it.
        reason: &'static str,
    },
    /// An update tried to store an empty value; delete the key (`None`) instead.
    #[error("empty value for key {key}: Ethereum tries hold no empty values, pass None to delete")]
    EmptyValue {
        /// The hashed key.
        key: B256,
    },
    /// The node store failed to read a node.
    #[error("node store read failed at path {path:?}: {reason}")]
    Store {
        /// The path being read.
        path: Nibbles,
        /// The store's own description of the failure.
        reason: String,
    },
}

impl TrieError {
    pub(crate) fn decode(reason: impl std::fmt::Display) -> Self {
        Self::Decode {
            reason: reason.to_string(),
        }
    }
}
