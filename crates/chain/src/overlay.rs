//! The state: recent blocks' changes in memory, persisted to the state database in batches.
//!
//! A block's commit makes the block itself durable — header, body, receipts and its
//! [`ChangeSet`] (the new value of every account and slot it changed) in the blocks database.
//! Its state changes, trie nodes and history go into an in-memory [`Overlay`] over the state
//! database, and a background thread persists the overlay in batches: one write transaction for
//! many blocks, so a page of a large table is written once per batch instead of once per block
//! (reth's engine/persistence split). A restart replays the changesets above the state
//! database's persisted block, so a kill -9 loses nothing that was committed.
//!
//! Readers take a [`Snapshot`]: an immutable overlay (persistent maps, cheap to clone) and a read
//! transaction of the state database whose persisted block lies within the overlay's range.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use hemi_trie::{MemNodes, Nibbles, NodeReader, StoredNode, TrieError, TrieUpdate};
use parking_lot::{Condvar, Mutex, RwLock};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table};

use crate::db::*;
use crate::ChainError;

/// Blocks in the overlay that start a background persist: larger batches write each page of a
/// large table fewer times per block.
const PERSIST_BLOCKS: usize = 256;
/// Entries (accounts, slots, trie nodes) in the newest layer that start a persist earlier,
/// bounding the overlay's memory (a few hundred MB).
const PERSIST_ENTRIES: usize = 1_000_000;
/// Persist whatever is in the overlay after this long without a new block.
const PERSIST_IDLE: Duration = Duration::from_secs(2);
/// Blocks in the overlay at which a commit waits for a persist (back-pressure).
const MAX_OVERLAY_BLOCKS: usize = 1024;

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
    account_index: HashMap<Address, usize>,
    slot_index: HashMap<(Address, B256), usize>,
}

impl BlockDiff {
    /// The changeset that replays this diff onto the state before it.
    pub fn changeset(&self) -> ChangeSet {
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

    fn account_before(&self, address: &Address) -> Option<Option<StoredAccount>> {
        self.account_index.get(address).map(|&i| self.accounts[i].1)
    }

    fn slot_before(&self, address: &Address, slot: &B256) -> Option<U256> {
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
struct Layer {
    /// The newest block in the layer.
    upto: u64,
    /// Entries written into the layer (counting rewrites).
    entries: usize,
    accounts: imbl::HashMap<Address, (u64, Option<StoredAccount>)>,
    storage: imbl::OrdMap<(Address, B256), (u64, U256)>,
    wiped: imbl::HashMap<Address, u64>,
    account_nodes: imbl::HashMap<Nibbles, NodeEntry>,
    storage_nodes: imbl::HashMap<(Address, Nibbles), NodeEntry>,
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
    layers: Vec<Layer>,
}

impl Overlay {
    /// An empty overlay over a state database at block `base` (hash `base_hash`).
    pub fn new(base: u64, base_hash: B256) -> Self {
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
    pub fn push(&mut self, diff: Arc<BlockDiff>) {
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
    fn freeze(&mut self) -> Option<u64> {
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
    fn due(&self) -> bool {
        self.blocks.len() >= PERSIST_BLOCKS
            || self
                .layers
                .last()
                .is_some_and(|l| l.entries >= PERSIST_ENTRIES)
    }

    /// The newest block of all layers but the newest (the base if there is only one).
    fn frozen_upto(&self) -> u64 {
        match self.layers.len() {
            0 | 1 => self.base,
            n => self.layers[n - 2].upto,
        }
    }

    /// Drops the blocks up to `upto` (the state database now holds them) with their layers,
    /// which it returns (to be freed outside any lock: they can be large).
    fn drop_persisted(&mut self, upto: u64) -> Vec<Layer> {
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
    fn hash_of(&self, n: u64) -> Option<B256> {
        if n == self.base {
            return Some(self.base_hash);
        }
        self.blocks.iter().find(|d| d.number == n).map(|d| d.hash)
    }

    /// The overlay without the blocks above `target` (rebuilt from the remaining diffs).
    fn truncated(&self, target: u64) -> Overlay {
        let mut o = Overlay::new(self.base, self.base_hash);
        for d in self.blocks.iter().filter(|d| d.number <= target) {
            o.push(d.clone());
        }
        o
    }

    fn account(&self, a: &Address) -> Option<Option<StoredAccount>> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.accounts.get(a).map(|e| e.1))
    }

    /// The block of the newest storage wipe of `a`.
    fn wiped(&self, a: &Address) -> Option<u64> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.wiped.get(a).copied())
    }

    fn slot(&self, a: &Address, slot: &B256) -> Option<(u64, U256)> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.storage.get(&(*a, *slot)).copied())
    }

    fn account_node(&self, p: &Nibbles) -> Option<Option<Arc<StoredNode>>> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.account_nodes.get(p).map(|e| e.1.clone()))
    }

    fn storage_node(&self, a: &Address, p: &Nibbles) -> Option<NodeEntry> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.storage_nodes.get(&(*a, *p)).cloned())
    }
}

/// The state database's tables as of one read transaction.
pub(crate) struct StateTables {
    accounts: ReadOnlyTable<&'static [u8; 20], &'static [u8]>,
    storage: ReadOnlyTable<&'static [u8; 52], &'static [u8; 32]>,
    account_trie: ReadOnlyTable<&'static [u8], &'static [u8]>,
    storage_trie: ReadOnlyTable<&'static [u8], &'static [u8]>,
    account_history: ReadOnlyTable<&'static [u8; 28], &'static [u8]>,
    storage_history: ReadOnlyTable<&'static [u8; 60], &'static [u8; 32]>,
}

/// A consistent view of the newest state: an overlay and the state database under it.
pub(crate) struct Snapshot {
    overlay: Arc<Overlay>,
    tables: StateTables,
    /// The block the state database's transaction holds (`overlay.base ..= overlay.head`).
    persisted: u64,
    /// Newest-state reads so far (the snapshot never changes, so they stay true).
    read_accounts: Mutex<HashMap<Address, Option<StoredAccount>>>,
    read_slots: Mutex<HashMap<(Address, B256), U256>>,
}

impl Snapshot {
    /// The newest block this snapshot shows.
    pub fn head(&self) -> u64 {
        self.overlay.head
    }

    /// The account after the newest block.
    pub fn account(&self, address: &Address) -> Result<Option<StoredAccount>, ChainError> {
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
    pub fn storage(&self, address: &Address, slot: &B256) -> Result<U256, ChainError> {
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
    fn slots_of(&self, address: &Address) -> Result<BTreeMap<B256, U256>, ChainError> {
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
    pub fn account_at(
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
    pub fn storage_at(&self, address: &Address, slot: &B256, at: u64) -> Result<U256, ChainError> {
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
    pub fn account_nodes(&self) -> AccountNodes<'_> {
        AccountNodes(self)
    }

    /// `address`'s storage trie.
    pub fn storage_nodes(&self, address: Address) -> StorageNodes<'_> {
        StorageNodes {
            snap: self,
            address,
        }
    }
}

fn table_node<T: ReadableTable<&'static [u8], &'static [u8]>>(
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
    snap: &'a Snapshot,
    address: Address,
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

/// Gives the calling thread (the persister) a lower CPU priority (nice 10), as databases do for
/// their background writers: the block path, whose latency users see, gets the cores first, and
/// the persister takes what is left (back-pressure bounds how far it may fall behind).
fn lower_thread_priority() {
    // Failing (a sandbox forbidding it) only leaves the persister at normal priority.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// Account changes from which a block's account trie is updated on several threads (below it,
/// spawning threads costs more than it saves).
const PARALLEL_ROOT_CHANGES: usize = 64;

/// Threads for the account trie update: the machine's cores (at most 16, one per subtree of
/// the root).
fn root_threads() -> usize {
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

fn apply_nodes(
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
fn put_nodes(
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
fn wipe_storage_trie(
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
struct WriteTables<'t> {
    accounts: Table<'t, &'static [u8; 20], &'static [u8]>,
    storage: Table<'t, &'static [u8; 52], &'static [u8; 32]>,
    account_trie: Table<'t, &'static [u8], &'static [u8]>,
    storage_trie: Table<'t, &'static [u8], &'static [u8]>,
    account_history: Table<'t, &'static [u8; 28], &'static [u8]>,
    storage_history: Table<'t, &'static [u8; 60], &'static [u8; 32]>,
}

impl<'t> WriteTables<'t> {
    fn open(w: &'t redb::WriteTransaction) -> Result<Self, ChainError> {
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
    fn write_history(&mut self, d: &BlockDiff) -> Result<(), ChainError> {
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
    fn write_layer(&mut self, l: &Layer) -> Result<(), ChainError> {
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
    fn unwind(&mut self, number: u64, changes: &ChangeSet) -> Result<B256, ChainError> {
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
struct TableReader<'a, T> {
    table: &'a T,
    prefix: &'a [u8],
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> NodeReader for TableReader<'_, T> {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        table_node(self.table, self.prefix, path)
    }
}

fn u256_word(v: U256) -> B256 {
    B256::from(v.to_be_bytes::<32>())
}

/// The state database's record of the block it holds: number ‖ hash.
fn read_persisted<T: ReadableTable<&'static str, &'static [u8]>>(
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

fn persisted_record(number: u64, hash: B256) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&number.to_be_bytes());
    v[8..].copy_from_slice(hash.as_slice());
    v
}

/// When the persister runs.
#[derive(Debug)]
struct PersistCtl {
    stop: bool,
    /// Stop without persisting (a simulated crash).
    abandon: bool,
    last_push: Instant,
}

/// The state database, the overlay over it, and the persister's controls.
pub(crate) struct StateStore {
    db: Database,
    overlay: RwLock<Arc<Overlay>>,
    /// Held while persisting or unwinding the state database.
    persist: Mutex<()>,
    ctl: Mutex<PersistCtl>,
    wake: Condvar,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.overlay.read();
        f.debug_struct("StateStore")
            .field("base", &o.base)
            .field("head", &o.head)
            .finish()
    }
}

impl StateStore {
    /// Opens the state database; a new one gets `genesis` (its accounts and trie nodes) as the
    /// state after block 0 (hash `genesis_hash`). Returns the store and the block it holds.
    ///
    /// # Errors
    /// Database errors, another schema version, corrupt records.
    pub fn open(
        db: Database,
        genesis: &[(Address, StoredAccount)],
        genesis_nodes: &TrieUpdate,
        genesis_hash: B256,
    ) -> Result<(Self, (u64, B256)), ChainError> {
        let mut w = db.begin_write()?;
        w.set_quick_repair(true);
        let existing = {
            let meta = w.open_table(STATE_META)?;
            let v = meta.get("schema_version")?.map(|v| v.value().to_vec());
            v
        };
        match existing {
            None => {
                {
                    let mut meta = w.open_table(STATE_META)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert("persisted", persisted_record(0, genesis_hash).as_slice())?;
                    let mut t = WriteTables::open(&w)?;
                    for (addr, a) in genesis {
                        t.accounts
                            .insert(&addr.0 .0, encode_account(a).as_slice())?;
                    }
                    apply_nodes(&mut t.account_trie, &[], genesis_nodes)?;
                }
                w.commit()?;
            }
            Some(v) => {
                w.abort()?;
                let found =
                    u32::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                        ChainError::Corrupt("state database: schema_version".into())
                    })?);
                if found != SCHEMA_VERSION {
                    return Err(ChainError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        let persisted = read_persisted(&db.begin_read()?.open_table(STATE_META)?)?;
        let store = StateStore {
            db,
            overlay: RwLock::new(Arc::new(Overlay::new(persisted.0, persisted.1))),
            persist: Mutex::new(()),
            ctl: Mutex::new(PersistCtl {
                stop: false,
                abandon: false,
                last_push: Instant::now(),
            }),
            wake: Condvar::new(),
        };
        Ok((store, persisted))
    }

    /// A consistent view of the newest state.
    ///
    /// # Errors
    /// Database errors.
    pub fn snapshot(&self) -> Result<Snapshot, ChainError> {
        loop {
            let overlay = self.overlay.read().clone();
            let r = self.db.begin_read()?;
            let (persisted, hash) = read_persisted(&r.open_table(STATE_META)?)?;
            // A persist (or an unwind) may have finished between the two reads: the state
            // database must hold a block of the overlay's branch.
            if persisted < overlay.base
                || persisted > overlay.head
                || overlay.hash_of(persisted) != Some(hash)
            {
                std::thread::yield_now();
                continue;
            }
            return Ok(Snapshot {
                tables: StateTables {
                    accounts: r.open_table(ACCOUNTS)?,
                    storage: r.open_table(STORAGE)?,
                    account_trie: r.open_table(ACCOUNT_TRIE)?,
                    storage_trie: r.open_table(STORAGE_TRIE)?,
                    account_history: r.open_table(ACCOUNT_HISTORY)?,
                    storage_history: r.open_table(STORAGE_HISTORY)?,
                },
                overlay,
                persisted,
                read_accounts: Mutex::new(HashMap::new()),
                read_slots: Mutex::new(HashMap::new()),
            });
        }
    }

    /// Adds a committed block's diff (`hash`: the block's hash). Persists first when the
    /// overlay is full (a failed persist is retried later; the overlay keeps the blocks).
    pub fn push(&self, mut diff: BlockDiff, hash: B256) {
        diff.hash = hash;
        let (len, due) = {
            let mut o = self.overlay.write();
            // In place unless a reader still holds this overlay (then its maps share structure).
            let next = Arc::make_mut(&mut o);
            next.push(Arc::new(diff));
            (next.blocks.len(), next.due())
        };
        self.ctl.lock().last_push = Instant::now();
        if len >= MAX_OVERLAY_BLOCKS {
            let _ = self.persist_all();
        } else if due {
            self.wake.notify_all();
        }
    }

    /// Writes every block in the overlay to the state database (one transaction) and drops
    /// them from the overlay; blocks committed meanwhile wait for the next persist.
    ///
    /// # Errors
    /// Database errors (the overlay keeps the blocks then).
    pub fn persist_all(&self) -> Result<(), ChainError> {
        let _p = self.persist.lock();
        let (snap, upto) = {
            let mut o = self.overlay.write();
            let Some(upto) = Arc::make_mut(&mut o).freeze() else {
                return Ok(());
            };
            (o.clone(), upto)
        };
        let hash = snap
            .hash_of(upto)
            .ok_or_else(|| ChainError::Corrupt(format!("overlay block {upto} missing")))?;
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.set_quick_repair(true);
        {
            let mut t = WriteTables::open(&w)?;
            for d in snap.blocks.iter().filter(|d| d.number <= upto) {
                t.write_history(d)?;
            }
            // The frozen layers (all but the newest), oldest first.
            for l in &snap.layers[..snap.layers.len() - 1] {
                t.write_layer(l)?;
            }
            w.open_table(STATE_META)?
                .insert("persisted", persisted_record(upto, hash).as_slice())?;
        }
        w.commit()?;
        drop(snap);
        let dropped = Arc::make_mut(&mut self.overlay.write()).drop_persisted(upto);
        drop(dropped);
        Ok(())
    }

    /// Unwinds the state to block `target`: the overlay drops the blocks above it, and if the
    /// state database holds a later block it is unwound with its history tables (`changeset`
    /// gives block n's changeset, `root` the state root block n must be left with).
    ///
    /// The state database is committed before the caller removes the blocks: a crash between
    /// the two replays the blocks on restart (the unwind did not happen).
    ///
    /// # Errors
    /// Database errors, missing history, a restored root that differs (nothing is changed).
    pub fn unwind_to(
        &self,
        target: u64,
        target_hash: B256,
        changeset: &dyn Fn(u64) -> Result<ChangeSet, ChainError>,
        root: &dyn Fn(u64) -> Result<B256, ChainError>,
    ) -> Result<Arc<Overlay>, ChainError> {
        let _p = self.persist.lock();
        let before = self.overlay.read().clone();
        if target >= before.base {
            *self.overlay.write() = Arc::new(before.truncated(target));
        } else {
            let mut w = self.db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            w.set_quick_repair(true);
            {
                let mut t = WriteTables::open(&w)?;
                for n in (target + 1..=before.base).rev() {
                    let restored = t.unwind(n, &changeset(n)?)?;
                    let want = root(n - 1)?;
                    if restored != want {
                        drop(t);
                        w.abort()?;
                        return Err(ChainError::Corrupt(format!(
                            "unwinding block {n} restored state root {restored}, block {} has \
                             {want}",
                            n - 1
                        )));
                    }
                }
                w.open_table(STATE_META)?.insert(
                    "persisted",
                    persisted_record(target, target_hash).as_slice(),
                )?;
            }
            w.commit()?;
            *self.overlay.write() = Arc::new(Overlay::new(target, target_hash));
        }
        Ok(before)
    }

    /// Puts back an overlay [`StateStore::unwind_to`] replaced (when the caller's own commit
    /// failed and the state database was not touched).
    pub fn restore(&self, overlay: Arc<Overlay>) {
        *self.overlay.write() = overlay;
    }

    /// The overlay's base (the state database's block) and head.
    pub fn range(&self) -> (u64, u64) {
        let o = self.overlay.read();
        (o.base, o.head)
    }

    /// The persister: persists the overlay when it holds [`PERSIST_BLOCKS`] blocks or
    /// [`PERSIST_ENTRIES`] new entries, or no block came for [`PERSIST_IDLE`]; on stop, persists
    /// what is left and returns.
    pub fn run_persister(self: Arc<Self>) {
        lower_thread_priority();
        let mut ctl = self.ctl.lock();
        loop {
            if ctl.stop {
                let abandon = ctl.abandon;
                drop(ctl);
                if !abandon {
                    let _ = self.persist_all();
                }
                return;
            }
            let (len, due) = {
                let o = self.overlay.read();
                (o.blocks.len(), o.due())
            };
            let idle = ctl.last_push.elapsed() >= PERSIST_IDLE;
            if due || (len > 0 && idle) {
                drop(ctl);
                let failed = self.persist_all().is_err();
                ctl = self.ctl.lock();
                if !failed {
                    continue;
                }
            }
            self.wake.wait_for(&mut ctl, Duration::from_millis(500));
        }
    }

    /// Asks the persister to persist what is left and stop (`abandon`: without persisting).
    pub fn stop(&self, abandon: bool) {
        let mut ctl = self.ctl.lock();
        ctl.stop = true;
        ctl.abandon |= abandon;
        drop(ctl);
        self.wake.notify_all();
    }
}
