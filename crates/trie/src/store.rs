//! The in-memory node store [`MemNodes`].

use crate::{NodeReader, StoredNode, TrieError, TrieUpdate};
use alloy_trie::Nibbles;
use std::collections::BTreeMap;

/// An in-memory node store: for tests, benchmarks, and as a write overlay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemNodes {
    nodes: BTreeMap<Nibbles, StoredNode>,
}

impl MemNodes {
    /// An empty store (the empty trie).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an update's deletes and puts (they never name the same path).
    pub fn apply(&mut self, update: &TrieUpdate) {
        for path in &update.deletes {
            self.nodes.remove(path);
        }
        for (path, node) in &update.puts {
            self.nodes.insert(*path, node.clone());
        }
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &Nibbles) -> Option<&StoredNode> {
        self.nodes.get(path)
    }

    /// Stores `node` at `path` directly (for building fixtures; normal writes go through
    /// [`MemNodes::apply`]).
    pub fn insert(&mut self, path: Nibbles, node: StoredNode) -> Option<StoredNode> {
        self.nodes.insert(path, node)
    }

    /// Removes the node at `path`.
    pub fn remove(&mut self, path: &Nibbles) -> Option<StoredNode> {
        self.nodes.remove(path)
    }

    /// The number of stored nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the store holds no node (the empty trie).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All nodes in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&Nibbles, &StoredNode)> {
        self.nodes.iter()
    }
}

impl NodeReader for MemNodes {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        Ok(self.nodes.get(path).cloned())
    }
}
