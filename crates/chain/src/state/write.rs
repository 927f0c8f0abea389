//! Writing the state database: a layer's newest values, trie nodes and history in key order, and
//! unwinding blocks it holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use hemi_trie::{MemNodes, Nibbles, NodeReader, StoredNode, TrieError, TrieUpdate};
use redb::{ReadableTable, Table};

use super::layers::{BlockDiff, Layer};
use super::snapshot::{node_key, table_node};
use crate::db::*;
use crate::ChainError;

pub(super) fn apply_nodes(
    table: &mut Table<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    update: &TrieUpdate,
) -> Result<(), ChainError> {
    for path in &update.deletes {
        table.remove(node_key(prefix, path).as_slice())?;
    }
    for (path, node) in &update.puts {
        table.insert(node_key(prefix, path).as_slice(), node.encode().as_slice())?;
    }
    Ok(())
}

/// Stores (or, for `None`, removes) nodes by table key.
pub(super) fn put_nodes(
    table: &mut Table<&'static [u8], &'static [u8]>,
    nodes: Vec<(Vec<u8>, &Option<Arc<StoredNode>>)>,
) -> Result<(), ChainError> {
    for (key, node) in nodes {
        match node {
            Some(n) => {
                table.insert(key.as_slice(), n.encode().as_slice())?;
            }
            None => {
                table.remove(key.as_slice())?;
            }
        }
    }
    Ok(())
}

/// Removes every node of `address`'s storage trie.
pub(super) fn wipe_storage_trie(
    storage_trie: &mut Table<&'static [u8], &'static [u8]>,
    address: &Address,
) -> Result<(), ChainError> {
    let mut prefix_end = address.to_vec();
    prefix_end.extend_from_slice(&[0xff; 70]);
    let nodes: Vec<Vec<u8>> = storage_trie
        .range(address.as_slice()..prefix_end.as_slice())?
        .map(|e| e.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    for k in nodes {
        storage_trie.remove(k.as_slice())?;
    }
    Ok(())
}

/// The state database's write tables.
pub(super) struct WriteTables<'t> {
    pub(super) accounts: Table<'t, &'static [u8; 20], &'static [u8]>,
    pub(super) storage: Table<'t, &'static [u8; 52], &'static [u8; 32]>,
    pub(super) account_trie: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) storage_trie: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) account_history: Table<'t, &'static [u8; 28], &'static [u8]>,
    pub(super) storage_history: Table<'t, &'static [u8; 60], &'static [u8; 32]>,
}

impl<'t> WriteTables<'t> {
    pub(super) fn open(w: &'t redb::WriteTransaction) -> Result<Self, ChainError> {
        Ok(WriteTables {
            accounts: w.open_table(ACCOUNTS)?,
            storage: w.open_table(STORAGE)?,
            account_trie: w.open_table(ACCOUNT_TRIE)?,
            storage_trie: w.open_table(STORAGE_TRIE)?,
            account_history: w.open_table(ACCOUNT_HISTORY)?,
            storage_history: w.open_table(STORAGE_HISTORY)?,
        })
    }

    /// Writes one block's history: the values before it changed them.
    pub(super) fn write_history(&mut self, d: &BlockDiff) -> Result<(), ChainError> {
        let n = d.number;
        for (a, slot, before, _) in &d.slots {
            self.storage_history
                .insert(&storage_history_key(a, slot, n), &u256_word(*before).0)?;
        }
        for (a, before, _) in &d.accounts {
            let b = before
                .map(|a| encode_account(&a).to_vec())
                .unwrap_or_default();
            self.account_history
                .insert(&account_history_key(a, n), b.as_slice())?;
        }
        Ok(())
    }

    /// Writes a layer's newest values and trie nodes (each key once, however many of its
    /// blocks wrote it), in key order; a storage wiped in the layer is wiped first.
    pub(super) fn write_layer(&mut self, l: &Layer) -> Result<(), ChainError> {
        let mut wiped: Vec<(&Address, &u64)> = l.wiped.iter().collect();
        wiped.sort();
        for (a, _) in &wiped {
            let from = storage_key(a, &B256::ZERO);
            let to = storage_key(a, &B256::repeat_byte(0xff));
            let keys: Vec<[u8; 52]> = self
                .storage
                .range::<&[u8; 52]>(&from..=&to)?
                .map(|e| e.map(|(k, _)| *k.value()))
                .collect::<Result<_, _>>()?;
            for k in keys {
                self.storage.remove(&k)?;
            }
            wipe_storage_trie(&mut self.storage_trie, a)?;
        }
        // Written before the account's last wipe in this layer: gone with it.
        let stale = |a: &Address, b: u64| l.wiped.get(a).is_some_and(|w| b < *w);
        for ((a, slot), (b, v)) in l.storage.iter() {
            if stale(a, *b) {
                continue;
            }
            let k = storage_key(a, slot);
            if v.is_zero() {
                self.storage.remove(&k)?;
            } else {
                self.storage.insert(&k, &u256_word(*v).0)?;
            }
        }
        let mut nodes: Vec<(Vec<u8>, &Option<Arc<StoredNode>>)> = l
            .storage_nodes
            .iter()
            .filter(|((a, _), (b, _))| !stale(a, *b))
            .map(|((a, p), (_, n))| (node_key(a.as_slice(), p), n))
            .collect();
        nodes.sort_by(|x, y| x.0.cmp(&y.0));
        put_nodes(&mut self.storage_trie, nodes)?;
        let mut accounts: Vec<(&Address, &Option<StoredAccount>)> =
            l.accounts.iter().map(|(a, (_, v))| (a, v)).collect();
        accounts.sort_by_key(|(a, _)| **a);
        for (a, v) in accounts {
            match v {
                Some(acc) => {
                    self.accounts
                        .insert(&a.0 .0, encode_account(acc).as_slice())?;
                }
                None => {
                    self.accounts.remove(&a.0 .0)?;
                }
            }
        }
        let mut nodes: Vec<(Vec<u8>, &Option<Arc<StoredNode>>)> = l
            .account_nodes
            .iter()
            .map(|(p, (_, n))| (node_key(&[], p), n))
            .collect();
        nodes.sort_by(|x, y| x.0.cmp(&y.0));
        put_nodes(&mut self.account_trie, nodes)
    }

    /// Undoes block `number`'s changes (`changes`, its changeset) with the history tables and
    /// returns the restored state root.
    pub(super) fn unwind(&mut self, number: u64, changes: &ChangeSet) -> Result<B256, ChainError> {
        let missing =
            |what: String| ChainError::Corrupt(format!("block {number}: no history of {what}"));
        let mut slot_changes: BTreeMap<Address, BTreeMap<B256, Option<Vec<u8>>>> = BTreeMap::new();
        for c in &changes.accounts {
            for (slot, _) in &c.slots {
                let before = *self
                    .storage_history
                    .remove(&storage_history_key(&c.address, slot, number))?
                    .ok_or_else(|| missing(format!("slot {slot} of {}", c.address)))?
                    .value();
                let sk = storage_key(&c.address, slot);
                let value = U256::from_be_bytes(before);
                let leaf = if value.is_zero() {
                    self.storage.remove(&sk)?;
                    None
                } else {
                    self.storage.insert(&sk, &before)?;
                    Some(alloy_rlp::encode(value))
                };
                slot_changes
                    .entry(c.address)
                    .or_default()
                    .insert(keccak256(slot), leaf);
            }
        }
        let mut storage_roots = BTreeMap::new();
        for c in changes.accounts.iter().filter(|c| c.wiped) {
            // The block rebuilt this storage from nothing: rebuild the restored slots' trie.
            wipe_storage_trie(&mut self.storage_trie, &c.address)?;
            let from = storage_key(&c.address, &B256::ZERO);
            let to = storage_key(&c.address, &B256::repeat_byte(0xff));
            let all: BTreeMap<B256, Option<Vec<u8>>> = self
                .storage
                .range::<&[u8; 52]>(&from..=&to)?
                .map(|e| {
                    e.map(|(k, v)| {
                        (
                            keccak256(&k.value()[20..]),
                            Some(alloy_rlp::encode(U256::from_be_bytes(*v.value()))),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            let update = hemi_trie::update(&MemNodes::new(), &all)?;
            apply_nodes(&mut self.storage_trie, c.address.as_slice(), &update)?;
            storage_roots.insert(c.address, update.root);
            slot_changes.remove(&c.address);
        }
        for (address, slots) in &slot_changes {
            let update = hemi_trie::update(
                &TableReader {
                    table: &self.storage_trie,
                    prefix: address.as_slice(),
                },
                slots,
            )?;
            apply_nodes(&mut self.storage_trie, address.as_slice(), &update)?;
            storage_roots.insert(*address, update.root);
        }
        let mut account_changes: BTreeMap<B256, Option<Vec<u8>>> = BTreeMap::new();
        for c in changes.accounts.iter().filter(|c| c.changed) {
            let address = &c.address;
            let before = self
                .account_history
                .remove(&account_history_key(address, number))?
                .ok_or_else(|| missing(format!("account {address}")))?
                .value()
                .to_vec();
            let before = decode_account(&before)?;
            let storage_root = before.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
            if let Some(root) = storage_roots.get(address) {
                if *root != storage_root {
                    return Err(ChainError::Corrupt(format!(
                        "unwinding block {number}: storage of {address} restored to root {root}, \
                         its account says {storage_root}"
                    )));
                }
            }
            match before {
                Some(a) => {
                    self.accounts
                        .insert(&address.0 .0, encode_account(&a).as_slice())?;
                }
                None => {
                    self.accounts.remove(&address.0 .0)?;
                }
            }
            account_changes.insert(keccak256(address), before.map(|a| a.trie_value()));
        }
        let reader = TableReader {
            table: &self.account_trie,
            prefix: &[],
        };
        if account_changes.is_empty() {
            return Ok(hemi_trie::root(&reader)?);
        }
        let update = hemi_trie::update(&reader, &account_changes)?;
        apply_nodes(&mut self.account_trie, &[], &update)?;
        Ok(update.root)
    }
}

/// Reads trie nodes from a redb table under a key prefix.
pub(super) struct TableReader<'a, T> {
    pub(super) table: &'a T,
    pub(super) prefix: &'a [u8],
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> NodeReader for TableReader<'_, T> {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        table_node(self.table, self.prefix, path)
    }
}

pub(super) fn u256_word(v: U256) -> B256 {
    B256::from(v.to_be_bytes::<32>())
}

/// The state database's record of the block it holds: number ‖ hash.
pub(super) fn read_persisted<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<(u64, B256), ChainError> {
    let v = meta
        .get("persisted")?
        .ok_or_else(|| ChainError::Corrupt("state database: no persisted block".into()))?;
    let v = v.value();
    if v.len() != 40 {
        return Err(ChainError::Corrupt(
            "state database: persisted block record".into(),
        ));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&v[..8]);
    Ok((u64::from_be_bytes(n), B256::from_slice(&v[8..])))
}

pub(super) fn persisted_record(number: u64, hash: B256) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&number.to_be_bytes());
    v[8..].copy_from_slice(hash.as_slice());
    v
}
