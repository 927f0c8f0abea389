//! The in-memory layers: each recent block's [`BlockDiff`] and the [`Overlay`] of persistent maps
//! holding every key's newest value and the block that wrote it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use hemi_trie::{Nibbles, StoredNode, TrieUpdate};

use super::{PERSIST_BLOCKS, PERSIST_ENTRIES};
use crate::db::*;

/// What a block did to one account and its storage: the stored values before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockDiff {
    /// Block number.
    pub number: u64,
    /// Block hash (set when the block is committed).
    pub hash: B256,
    /// State root after the block.
    pub root: B256,
    /// Accounts changed: `(address, before, after)`, sorted by address.
    pub accounts: Vec<(Address, Option<StoredAccount>, Option<StoredAccount>)>,
    /// Slots changed: `(address, slot, before, after)`, sorted.
    pub slots: Vec<(Address, B256, U256, U256)>,
    /// Accounts whose storage the block wiped before writing `slots`.
    pub wiped: Vec<Address>,
    /// Account trie node changes.
    pub account_nodes: NodeChanges,
    /// Storage trie node changes per account (for a wiped account: from the empty trie).
    pub storage_nodes: Vec<(Address, NodeChanges)>,
    pub(super) account_index: HashMap<Address, usize>,
    pub(super) slot_index: HashMap<(Address, B256), usize>,
}

impl BlockDiff {
    /// The changeset that replays this diff onto the state before it.
    pub(crate) fn changeset(&self) -> ChangeSet {
        let mut by_address: BTreeMap<Address, AccountChange> = BTreeMap::new();
        let entry = |m: &mut BTreeMap<Address, AccountChange>, a: Address| {
            m.entry(a).or_insert_with(|| AccountChange {
                address: a,
                changed: false,
                wiped: false,
                info: None,
                slots: Vec::new(),
            });
        };
        for (a, _, after) in &self.accounts {
            entry(&mut by_address, *a);
            let c = by_address.get_mut(a).expect("just inserted");
            c.changed = true;
            c.info = after.map(|s| Info {
                nonce: s.nonce,
                balance: s.balance,
                code_hash: s.code_hash,
            });
        }
        for a in &self.wiped {
            entry(&mut by_address, *a);
            by_address.get_mut(a).expect("just inserted").wiped = true;
        }
        for (a, slot, _, after) in &self.slots {
            entry(&mut by_address, *a);
            by_address
                .get_mut(a)
                .expect("just inserted")
                .slots
                .push((*slot, *after));
        }
        ChangeSet {
            accounts: by_address.into_values().collect(),
        }
    }

    pub(super) fn account_before(&self, address: &Address) -> Option<Option<StoredAccount>> {
        self.account_index.get(address).map(|&i| self.accounts[i].1)
    }

    pub(super) fn slot_before(&self, address: &Address, slot: &B256) -> Option<U256> {
        self.slot_index
            .get(&(*address, *slot))
            .map(|&i| self.slots[i].2)
    }
}

/// A trie update's node writes, shared with the overlay's layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeChanges {
    /// Nodes to store, by path.
    pub puts: Vec<(Nibbles, Arc<StoredNode>)>,
    /// Paths whose node is removed.
    pub deletes: Vec<Nibbles>,
}

impl From<TrieUpdate> for NodeChanges {
    fn from(u: TrieUpdate) -> Self {
        NodeChanges {
            puts: u.puts.into_iter().map(|(p, n)| (p, Arc::new(n))).collect(),
            deletes: u.deletes,
        }
    }
}

/// A trie node as a layer keeps it: the block that wrote it, and the node (`None`: deleted).
type NodeEntry = (u64, Option<Arc<StoredNode>>);

/// The newest values some consecutive blocks wrote, and the block that wrote each.
#[derive(Clone, Debug, Default)]
pub(super) struct Layer {
    /// The newest block in the layer.
    pub(super) upto: u64,
    /// Entries written into the layer (counting rewrites).
    pub(super) entries: usize,
    pub(super) accounts: imbl::HashMap<Address, (u64, Option<StoredAccount>)>,
    pub(super) storage: imbl::OrdMap<(Address, B256), (u64, U256)>,
    pub(super) wiped: imbl::HashMap<Address, u64>,
    pub(super) account_nodes: imbl::HashMap<Nibbles, NodeEntry>,
    pub(super) storage_nodes: imbl::HashMap<(Address, Nibbles), NodeEntry>,
}

/// The state of blocks `base + 1 ..= head` that the state database does not hold yet.
///
/// Layers of blocks, oldest first: a persist freezes the layers it writes (new blocks go into a
/// fresh one) and drops them whole once the state database holds them. Cloning is cheap
/// (persistent maps), so readers keep an immutable copy.
#[derive(Clone, Debug)]
pub(crate) struct Overlay {
    /// The block the state database holds (when this overlay was made).
    pub base: u64,
    /// Its hash.
    pub base_hash: B256,
    /// The newest block in the overlay (`base` when empty).
    pub head: u64,
    /// The blocks' diffs, oldest first.
    pub blocks: Vec<Arc<BlockDiff>>,
    pub(super) layers: Vec<Layer>,
}

impl Overlay {
    /// An empty overlay over a state database at block `base` (hash `base_hash`).
    pub(crate) fn new(base: u64, base_hash: B256) -> Self {
        Overlay {
            base,
            base_hash,
            head: base,
            blocks: Vec::new(),
            layers: vec![Layer {
                upto: base,
                ..Layer::default()
            }],
        }
    }

    /// Adds the next block's diff to the newest layer.
    pub(crate) fn push(&mut self, diff: Arc<BlockDiff>) {
        let n = diff.number;
        debug_assert_eq!(n, self.head + 1);
        if self.layers.is_empty() {
            self.layers.push(Layer::default());
        }
        let l = self.layers.last_mut().expect("a layer");
        for a in &diff.wiped {
            l.wiped.insert(*a, n);
        }
        for (a, slot, _, after) in &diff.slots {
            l.storage.insert((*a, *slot), (n, *after));
        }
        for (a, upd) in &diff.storage_nodes {
            for p in &upd.deletes {
                l.storage_nodes.insert((*a, *p), (n, None));
            }
            for (p, node) in &upd.puts {
                l.storage_nodes.insert((*a, *p), (n, Some(node.clone())));
            }
        }
        for (a, _, after) in &diff.accounts {
            l.accounts.insert(*a, (n, *after));
        }
        for p in &diff.account_nodes.deletes {
            l.account_nodes.insert(*p, (n, None));
        }
        for (p, node) in &diff.account_nodes.puts {
            l.account_nodes.insert(*p, (n, Some(node.clone())));
        }
        l.upto = n;
        l.entries += diff.wiped.len()
            + diff.slots.len()
            + diff.accounts.len()
            + diff.account_nodes.puts.len()
            + diff.account_nodes.deletes.len()
            + diff
                .storage_nodes
                .iter()
                .map(|(_, u)| u.puts.len() + u.deletes.len())
                .sum::<usize>();
        self.head = n;
        self.blocks.push(diff);
    }

    /// Starts a new layer for the blocks to come; returns the newest block of the older
    /// (now frozen) layers, `None` when they hold no block.
    pub(super) fn freeze(&mut self) -> Option<u64> {
        if self.head == self.base {
            return None;
        }
        if self
            .layers
            .last()
            .is_some_and(|l| l.upto > self.frozen_upto())
        {
            self.layers.push(Layer {
                upto: self.head,
                ..Layer::default()
            });
        }
        Some(self.frozen_upto()).filter(|&u| u > self.base)
    }

    /// Whether the overlay holds enough to persist.
    pub(super) fn due(&self) -> bool {
        self.blocks.len() >= PERSIST_BLOCKS
            || self
                .layers
                .last()
                .is_some_and(|l| l.entries >= PERSIST_ENTRIES)
    }

    /// The newest block of all layers but the newest (the base if there is only one).
    pub(super) fn frozen_upto(&self) -> u64 {
        match self.layers.len() {
            0 | 1 => self.base,
            n => self.layers[n - 2].upto,
        }
    }

    /// Drops the blocks up to `upto` (the state database now holds them) with their layers,
    /// which it returns (to be freed outside any lock: they can be large).
    pub(super) fn drop_persisted(&mut self, upto: u64) -> Vec<Layer> {
        let (keep, dropped): (Vec<Layer>, Vec<Layer>) = std::mem::take(&mut self.layers)
            .into_iter()
            .partition(|l| l.upto > upto);
        self.layers = keep;
        if self.layers.is_empty() {
            self.layers.push(Layer {
                upto,
                ..Layer::default()
            });
        }
        if let Some(d) = self.blocks.iter().find(|d| d.number == upto) {
            self.base_hash = d.hash;
        }
        self.blocks.retain(|d| d.number > upto);
        self.base = upto;
        dropped
    }

    /// The hash of block `n` if the overlay knows it (its base or one of its blocks).
    pub(super) fn hash_of(&self, n: u64) -> Option<B256> {
        if n == self.base {
            return Some(self.base_hash);
        }
        self.blocks.iter().find(|d| d.number == n).map(|d| d.hash)
    }

    /// The overlay without the blocks above `target` (rebuilt from the remaining diffs).
    pub(super) fn truncated(&self, target: u64) -> Overlay {
        let mut o = Overlay::new(self.base, self.base_hash);
        for d in self.blocks.iter().filter(|d| d.number <= target) {
            o.push(d.clone());
        }
        o
    }

    pub(super) fn account(&self, a: &Address) -> Option<Option<StoredAccount>> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.accounts.get(a).map(|e| e.1))
    }

    /// The block of the newest storage wipe of `a`.
    pub(super) fn wiped(&self, a: &Address) -> Option<u64> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.wiped.get(a).copied())
    }

    pub(super) fn slot(&self, a: &Address, slot: &B256) -> Option<(u64, U256)> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.storage.get(&(*a, *slot)).copied())
    }

    pub(super) fn account_node(&self, p: &Nibbles) -> Option<Option<Arc<StoredNode>>> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.account_nodes.get(p).map(|e| e.1.clone()))
    }

    pub(super) fn storage_node(&self, a: &Address, p: &Nibbles) -> Option<NodeEntry> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.storage_nodes.get(&(*a, *p)).cloned())
    }
}
