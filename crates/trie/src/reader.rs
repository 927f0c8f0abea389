//! Where nodes live: the [`NodeReader`] boundary.

use alloy_trie::Nibbles;

use crate::{StoredNode, TrieError};

/// Read access to a trie's nodes, keyed by nibble path (the root at the empty path).
///
/// Implemented by the chain's redb tables, by [`MemNodes`], and by write overlays.
pub trait NodeReader {
    /// The node stored at `path`, `None` if there is none.
    ///
    /// # Errors
    ///
    /// When the store fails or holds undecodable bytes (a store should return
    /// [`TrieError::Store`] or [`TrieError::Decode`]).
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError>;
}

impl<R: NodeReader + ?Sized> NodeReader for &R {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        (**self).node(path)
    }
}
