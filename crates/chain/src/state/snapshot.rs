//! Reading the state: a [`Snapshot`] is an immutable overlay over one read transaction of the
//! state database, and the trie node readers over it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use hemi_trie::{Nibbles, NodeReader, StoredNode, TrieError};
use parking_lot::Mutex;
use redb::{ReadOnlyTable, ReadableTable};

use super::layers::Overlay;
use crate::db::*;
use crate::ChainError;

/// The state database's tables as of one read transaction.
pub(crate) struct StateTables {
    pub(super) accounts: ReadOnlyTable<&'static [u8; 20], &'static [u8]>,
    pub(super) storage: ReadOnlyTable<&'static [u8; 52], &'static [u8; 32]>,
    pub(super) account_trie: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) storage_trie: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) account_history: ReadOnlyTable<&'static [u8; 28], &'static [u8]>,
    pub(super) storage_history: ReadOnlyTable<&'static [u8; 60], &'static [u8; 32]>,
}

/// A consistent view of the newest state: an overlay and the state database under it.
pub(crate) struct Snapshot {
    pub(super) overlay: Arc<Overlay>,
    pub(super) tables: StateTables,
    /// The block the state database's transaction holds (`overlay.base ..= overlay.head`).
    pub(super) persisted: u64,
    /// Newest-state reads so far (the snapshot never changes, so they stay true).
    pub(super) read_accounts: Mutex<HashMap<Address, Option<StoredAccount>>>,
    pub(super) read_slots: Mutex<HashMap<(Address, B256), U256>>,
}

impl Snapshot {
    /// The newest block this snapshot shows.
    pub(crate) fn head(&self) -> u64 {
        self.overlay.head
    }

    /// The account after the newest block.
    pub(crate) fn account(&self, address: &Address) -> Result<Option<StoredAccount>, ChainError> {
        if let Some(a) = self.overlay.account(address) {
            return Ok(a);
        }
        if let Some(a) = self.read_accounts.lock().get(address) {
            return Ok(*a);
        }
        let a = match self.tables.accounts.get(&address.0 .0)? {
            Some(v) => decode_account(v.value())?,
            None => None,
        };
        self.read_accounts.lock().insert(*address, a);
        Ok(a)
    }

    /// A slot after the newest block (zero if unset).
    pub(crate) fn storage(&self, address: &Address, slot: &B256) -> Result<U256, ChainError> {
        let wiped = self.overlay.wiped(address);
        if let Some((b, v)) = self.overlay.slot(address, slot) {
            if wiped.is_none_or(|w| b >= w) {
                return Ok(v);
            }
            return Ok(U256::ZERO);
        }
        if wiped.is_some() {
            return Ok(U256::ZERO);
        }
        if let Some(v) = self.read_slots.lock().get(&(*address, *slot)) {
            return Ok(*v);
        }
        let v = self
            .tables
            .storage
            .get(&storage_key(address, slot))?
            .map(|v| U256::from_be_bytes(*v.value()))
            .unwrap_or_default();
        self.read_slots.lock().insert((*address, *slot), v);
        Ok(v)
    }

    /// Every non-zero slot of `address` after the newest block.
    pub(super) fn slots_of(&self, address: &Address) -> Result<BTreeMap<B256, U256>, ChainError> {
        let wiped = self.overlay.wiped(address);
        let mut out = BTreeMap::new();
        if wiped.is_none() {
            let from = storage_key(address, &B256::ZERO);
            let to = storage_key(address, &B256::repeat_byte(0xff));
            for e in self.tables.storage.range::<&[u8; 52]>(&from..=&to)? {
                let (k, v) = e?;
                out.insert(
                    B256::from_slice(&k.value()[20..]),
                    U256::from_be_bytes(*v.value()),
                );
            }
        }
        for l in &self.overlay.layers {
            let range = (*address, B256::ZERO)..=(*address, B256::repeat_byte(0xff));
            for ((_, slot), (b, v)) in l.storage.range(range) {
                if wiped.is_none_or(|w| *b >= w) {
                    out.insert(*slot, *v);
                } else {
                    out.remove(slot);
                }
            }
        }
        out.retain(|_, v| !v.is_zero());
        Ok(out)
    }

    /// The account after block `at` (at most the snapshot's head).
    pub(crate) fn account_at(
        &self,
        address: &Address,
        at: u64,
    ) -> Result<Option<StoredAccount>, ChainError> {
        if at < self.persisted {
            let from = account_history_key(address, at.saturating_add(1));
            let to = account_history_key(address, self.persisted);
            if let Some(e) = self
                .tables
                .account_history
                .range::<&[u8; 28]>(&from..=&to)?
                .next()
            {
                return decode_account(e?.1.value());
            }
        }
        for d in self.overlay.blocks.iter().filter(|d| d.number > at) {
            if let Some(before) = d.account_before(address) {
                return Ok(before);
            }
        }
        self.account(address)
    }

    /// A slot after block `at` (at most the snapshot's head).
    pub(crate) fn storage_at(
        &self,
        address: &Address,
        slot: &B256,
        at: u64,
    ) -> Result<U256, ChainError> {
        if at < self.persisted {
            let from = storage_history_key(address, slot, at.saturating_add(1));
            let to = storage_history_key(address, slot, self.persisted);
            if let Some(e) = self
                .tables
                .storage_history
                .range::<&[u8; 60]>(&from..=&to)?
                .next()
            {
                return Ok(U256::from_be_bytes(*e?.1.value()));
            }
        }
        for d in self.overlay.blocks.iter().filter(|d| d.number > at) {
            if let Some(before) = d.slot_before(address, slot) {
                return Ok(before);
            }
        }
        self.storage(address, slot)
    }

    /// The account trie.
    pub(crate) fn account_nodes(&self) -> AccountNodes<'_> {
        AccountNodes(self)
    }

    /// `address`'s storage trie.
    pub(crate) fn storage_nodes(&self, address: Address) -> StorageNodes<'_> {
        StorageNodes {
            snap: self,
            address,
        }
    }
}

pub(super) fn table_node<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    path: &Nibbles,
) -> Result<Option<StoredNode>, TrieError> {
    let key = node_key(prefix, path);
    match table.get(key.as_slice()) {
        Ok(Some(v)) => StoredNode::decode(v.value()).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(TrieError::Store {
            path: *path,
            reason: e.to_string(),
        }),
    }
}

/// The account trie of a [`Snapshot`].
pub(crate) struct AccountNodes<'a>(&'a Snapshot);

impl NodeReader for AccountNodes<'_> {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        if let Some(n) = self.0.overlay.account_node(path) {
            return Ok(n.as_deref().cloned());
        }
        table_node(&self.0.tables.account_trie, &[], path)
    }
}

/// One account's storage trie in a [`Snapshot`].
pub(crate) struct StorageNodes<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) address: Address,
}

impl NodeReader for StorageNodes<'_> {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        let o = &self.snap.overlay;
        let wiped = o.wiped(&self.address);
        if let Some((b, n)) = o.storage_node(&self.address, path) {
            if wiped.is_none_or(|w| b >= w) {
                return Ok(n.as_deref().cloned());
            }
            return Ok(None);
        }
        if wiped.is_some() {
            return Ok(None);
        }
        table_node(
            &self.snap.tables.storage_trie,
            self.address.as_slice(),
            path,
        )
    }
}

/// `prefix ‖ path`, one nibble a byte: a trie table's key.
pub(crate) fn node_key(prefix: &[u8], path: &Nibbles) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&path.to_vec());
    k
}
