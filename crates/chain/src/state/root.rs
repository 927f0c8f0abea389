//! Root computation: what a block's changes do to the state and its tries ([`compute_diff`]).

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use hemi_trie::{MemNodes, TrieUpdate};

use super::layers::{BlockDiff, NodeChanges};
use super::snapshot::Snapshot;
use crate::db::*;
use crate::ChainError;

/// Account changes from which a block's account trie is updated on several threads (below it,
/// spawning threads costs more than it saves).
pub(super) const PARALLEL_ROOT_CHANGES: usize = 64;

/// Threads for the account trie update: the machine's cores (at most 16, one per subtree of
/// the root).
pub(super) fn root_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(16)))
}

/// Computes what `changes` do to the state of `snap` as block `number`: values before and
/// after, and the trie node changes of the new roots.
///
/// # Errors
/// Database errors, or an inconsistent stored trie.
pub(crate) fn compute_diff(
    snap: &Snapshot,
    number: u64,
    changes: &ChangeSet,
) -> Result<BlockDiff, ChainError> {
    let mut accounts = Vec::new();
    let mut slots = Vec::new();
    let mut wiped = Vec::new();
    let mut storage_nodes = Vec::new();
    let mut account_changes: BTreeMap<B256, Option<Vec<u8>>> = BTreeMap::new();
    for c in &changes.accounts {
        let address = c.address;
        let old = snap.account(&address)?;
        let mut storage_root = old.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
        // slot → (before, after)
        let mut slot_diffs: BTreeMap<B256, (U256, U256)> = BTreeMap::new();
        if c.wiped {
            for (slot, v) in snap.slots_of(&address)? {
                slot_diffs.insert(slot, (v, U256::ZERO));
            }
        }
        for (slot, after) in &c.slots {
            match slot_diffs.get_mut(slot) {
                Some(d) => d.1 = *after,
                None => {
                    let before = if c.wiped {
                        U256::ZERO
                    } else {
                        snap.storage(&address, slot)?
                    };
                    slot_diffs.insert(*slot, (before, *after));
                }
            }
        }
        // A wiped account keeps every slot the block leaves non-zero, even one written back to
        // its old value (the wipe removed it).
        slot_diffs.retain(|_, (before, after)| before != after || (c.wiped && !after.is_zero()));
        if c.wiped {
            // Rebuilt from nothing: the slots left after the block.
            let leaves: BTreeMap<B256, Option<Vec<u8>>> = slot_diffs
                .iter()
                .filter(|(_, (_, after))| !after.is_zero())
                .map(|(slot, (_, after))| (keccak256(slot), Some(alloy_rlp::encode(after))))
                .collect();
            let update = hemi_trie::update(&MemNodes::new(), &leaves)?;
            storage_root = update.root;
            storage_nodes.push((address, NodeChanges::from(update)));
            wiped.push(address);
        } else if !slot_diffs.is_empty() {
            let leaves: BTreeMap<B256, Option<Vec<u8>>> = slot_diffs
                .iter()
                .map(|(slot, (_, after))| {
                    let leaf = (!after.is_zero()).then(|| alloy_rlp::encode(after));
                    (keccak256(slot), leaf)
                })
                .collect();
            let update = hemi_trie::update(&snap.storage_nodes(address), &leaves)?;
            storage_root = update.root;
            storage_nodes.push((address, NodeChanges::from(update)));
        }
        for (slot, (before, after)) in slot_diffs {
            slots.push((address, slot, before, after));
        }
        // A changeset entry that leaves the record alone (only storage written, root unchanged).
        let info = if c.changed {
            c.info
        } else {
            old.map(|a| Info {
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code_hash,
            })
        };
        let new = info.and_then(|i| {
            let a = StoredAccount {
                nonce: i.nonce,
                balance: i.balance,
                code_hash: i.code_hash,
                storage_root,
            };
            // EIP-161: an empty account does not exist.
            let empty = a.nonce == 0
                && a.balance.is_zero()
                && (a.code_hash == alloy_primitives::KECCAK256_EMPTY || a.code_hash == B256::ZERO)
                && a.storage_root == EMPTY_ROOT_HASH;
            (!empty).then_some(a)
        });
        if new != old {
            accounts.push((address, old, new));
            account_changes.insert(keccak256(address), new.map(|a| a.trie_value()));
        }
    }
    let reader = snap.account_nodes();
    let account_nodes = if account_changes.is_empty() {
        TrieUpdate {
            root: hemi_trie::root(&reader)?,
            ..TrieUpdate::default()
        }
    } else if account_changes.len() >= PARALLEL_ROOT_CHANGES {
        hemi_trie::update_parallel(&reader, &account_changes, root_threads())?
    } else {
        hemi_trie::update(&reader, &account_changes)?
    };
    let account_index = accounts
        .iter()
        .enumerate()
        .map(|(i, (a, _, _))| (*a, i))
        .collect();
    let slot_index = slots
        .iter()
        .enumerate()
        .map(|(i, (a, s, _, _))| ((*a, *s), i))
        .collect();
    let root = account_nodes.root;
    Ok(BlockDiff {
        number,
        hash: B256::ZERO,
        root,
        accounts,
        slots,
        wiped,
        account_nodes: account_nodes.into(),
        storage_nodes,
        account_index,
        slot_index,
    })
}
