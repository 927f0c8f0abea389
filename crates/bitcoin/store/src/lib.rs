//! The Bitcoin chain store: headers, blocks, and the indexes hemi-rs answers Bitcoin questions
//! from, in one crash-safe redb database.
//!
//! Blocks may come from anywhere (Bitcoin Core over P2P, the embedded regtest node, a file): the
//! store is told facts — [`ChainStore::add_headers`], [`ChainStore::put_block`] — and
//! [`ChainStore::advance`] moves the indexed chain toward the most-work valid header chain,
//! disconnecting and connecting blocks. Each connect or disconnect is one redb write transaction
//! that updates every index and the tip together, so a `kill -9` at any moment leaves the last
//! committed block's state, never a half-applied one.
//!
//! Indexes: UTXOs by outpoint and by script (balances and UTXO lists of an address), transactions
//! by txid (block, height, position, byte range), spent-by, and PoP keystone publications
//! (earliest publication first). Undo data per block disconnects blocks in a reorg; a
//! script-delta index (what each block created and spent, per script) answers [`BitcoinView`]
//! queries as of a recent block ([`AsOf::Block`]) with one short range read per block back.
//!
//! Place in the chain of trust: **Bitcoin** → hVM → sequencer → chain → PoP → finality.
//!
//! Main types: [`ChainStore`], [`Advance`], [`StoreError`].

mod codec;
mod view;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize, Encodable};
use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash, Network, Transaction, Txid};
use hemi_btc_headers::{ChainParams, HeaderError, HeaderTree};
use hemi_btc_view::BlockRef;
use hemi_keystone::AbbreviatedKeystone;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use codec::*;

pub use hemi_btc_view::{AsOf, BitcoinView, ViewError};

/// Version of the on-disk schema. Bumped on any incompatible change; an older or newer database
/// is refused with [`StoreError::SchemaVersion`] rather than misread.
/// Version 2 added the script-delta index (what each block did to each script's outputs), so
/// queries as of an older block no longer walk blocks; a version-1 database is upgraded in place
/// on open (the index rebuilt from the stored blocks and undo data, in one transaction).
/// Version 3 added the same deltas keyed script first for the last [`MAX_ASOF_DEPTH`] blocks, so
/// a query as of any block within reach is one range read; versions 1 and 2 are upgraded on open.
pub const SCHEMA_VERSION: u32 = 3;

/// How many blocks below the tip [`AsOf::Block`] queries may reach.
pub const MAX_ASOF_DEPTH: u32 = 2_000;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// height (BE) ‖ hash → 80-byte header. Height order lets the tree be rebuilt parents first.
const HEADERS: TableDefinition<&[u8; 36], &[u8; 80]> = TableDefinition::new("headers");
/// Blocks that were invalidated (by the user or because they failed to connect).
const INVALID: TableDefinition<&[u8; 32], ()> = TableDefinition::new("invalid");
const BLOCKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blocks");
const UNDO: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("undo");
/// The indexed (connected) chain: height → hash.
const CHAIN: TableDefinition<u32, &[u8; 32]> = TableDefinition::new("chain");
const UTXOS: TableDefinition<&[u8; 36], &[u8]> = TableDefinition::new("utxos");
const SCRIPT_UTXOS: TableDefinition<&[u8; 68], &[u8; 13]> = TableDefinition::new("script_utxos");
/// [`delta_key`] → the output's script entry (value, creation height, coinbase).
const SCRIPT_DELTAS: TableDefinition<&DeltaKey, &[u8; 13]> = TableDefinition::new("script_deltas");
/// [`recent_key`] → the same entry, for the connected blocks at heights from `META`'s
/// `recent_from` to the tip (when set: a complete run, never more than [`MAX_ASOF_DEPTH`] + 1
/// blocks).
const RECENT_DELTAS: TableDefinition<&DeltaKey, &[u8; 13]> =
    TableDefinition::new("script_deltas_recent");
/// `META` key: the lowest height whose deltas are in [`RECENT_DELTAS`] (u32 LE), every block
/// above it to the tip included; absent when the tip's are not.
const RECENT_FROM: &str = "recent_from";
const TXS: TableDefinition<&[u8; 32], &[u8; 48]> = TableDefinition::new("txs");
const SPENT_BY: TableDefinition<&[u8; 36], &[u8; 40]> = TableDefinition::new("spent_by");
const KEYSTONES: TableDefinition<&[u8; 40], &[u8; 64]> = TableDefinition::new("keystones");
const KEYSTONE_DATA: TableDefinition<&[u8; 32], &[u8; 76]> = TableDefinition::new("keystone_data");

/// Errors of the chain store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, lock, corruption detected by redb).
    #[error("database: {0}")]
    Db(String),
    /// The database was written by another schema version.
    #[error("database schema version {found}, this build reads {expected}: use a new --dir")]
    SchemaVersion {
        /// Version on disk.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The database belongs to another network.
    #[error("database is for network {found}, not {expected}")]
    NetworkMismatch {
        /// Network on disk.
        found: String,
        /// Network asked for.
        expected: String,
    },
    /// A header failed validation.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A block whose header is not known (and whose parent is not known either).
    #[error("block {0}: header not known")]
    UnknownHeader(BlockHash),
    /// A block failed to connect; it has been marked invalid.
    #[error("block {hash} at height {height} is invalid: {reason}")]
    BadBlock {
        /// The block.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error("corrupt database: {0}")]
    Corrupt(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StoreError> for ViewError {
    fn from(e: StoreError) -> Self {
        ViewError::Storage(e.to_string())
    }
}

/// What one [`ChainStore::advance`] call did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Advance {
    /// Blocks connected, in order.
    pub connected: Vec<BlockRef>,
    /// Blocks disconnected, tip first.
    pub disconnected: Vec<BlockRef>,
    /// Blocks of the best header chain whose data we lack, in chain order (download these).
    pub missing: Vec<BlockHash>,
    /// Blocks that failed to connect and were marked invalid.
    pub invalid: Vec<(BlockHash, String)>,
}

/// Outcome of [`ChainStore::add_headers`].
#[derive(Debug, Default)]
pub struct HeadersAdded {
    /// Headers that were new and valid.
    pub inserted: usize,
    /// The first header that failed validation, if any (later headers were not looked at).
    pub error: Option<HeaderError>,
}

/// The redb-backed chain store. Cheap to share behind an `Arc`; reads never block writes.
pub struct ChainStore {
    db: Database,
    tree: RwLock<HeaderTree>,
    network: Network,
    /// Serialises writers so the header tree and the database change together.
    write: Mutex<()>,
    tip_height: AtomicU32,
    tip_hash: RwLock<BlockHash>,
    /// When set, commits skip fsync (bulk sync); [`ChainStore::flush`] makes them durable.
    fast_commits: AtomicBool,
    /// When the last durable commit began; fast mode still makes one durable every
    /// [`MAX_UNDURABLE`].
    last_durable: Mutex<std::time::Instant>,
}

/// Longest stretch of fast (unsynced) commits: a crash during bulk sync loses at most this much.
pub const MAX_UNDURABLE: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStore")
            .field("network", &self.network)
            .field("tip", &self.indexed_tip())
            .finish()
    }
}

impl ChainStore {
    /// Opens (or creates) the store at `path` for the network of `params`.
    ///
    /// # Errors
    /// Database errors, a schema or network mismatch, or corrupt records.
    pub fn open(path: impl AsRef<Path>, params: ChainParams) -> Result<Self, StoreError> {
        let mut builder = Database::builder();
        builder.set_cache_size(256 * 1024 * 1024);
        let db = builder.create(path)?;
        Self::init(db, params)
    }

    /// A store that lives in memory only (the devnet without `--persist`).
    ///
    /// # Errors
    /// Database errors.
    pub fn in_memory(params: ChainParams) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, params)
    }

    fn init(db: Database, params: ChainParams) -> Result<Self, StoreError> {
        let network = params.network;
        let genesis = params.genesis();
        let mut tree = HeaderTree::new(params);
        let genesis_hash = genesis.block_hash();
        {
            let mut w = db.begin_write()?;
            w.set_quick_repair(true);
            {
                let mut meta = w.open_table(META)?;
                let version = meta.get("schema_version")?.map(|v| v.value().to_vec());
                match version {
                    None => {
                        meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                        meta.insert("network", network.to_core_arg().as_bytes())?;
                    }
                    Some(v) => {
                        let found = u32::from_le_bytes(
                            v.as_slice()
                                .try_into()
                                .map_err(|_| corrupt("schema_version"))?,
                        );
                        if found == 1 || found == 2 {
                            if found == 1 {
                                rebuild_script_deltas(&w)?;
                            }
                            rebuild_recent_deltas(&w, &mut meta)?;
                            meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                            tracing::info!(
                                from = found,
                                "Bitcoin store upgraded to schema 3 (script deltas, recent ones script first)"
                            );
                        } else if found != SCHEMA_VERSION {
                            return Err(StoreError::SchemaVersion {
                                found,
                                expected: SCHEMA_VERSION,
                            });
                        }
                        let net = meta
                            .get("network")?
                            .map(|v| v.value().to_vec())
                            .unwrap_or_default();
                        if net != network.to_core_arg().as_bytes() {
                            return Err(StoreError::NetworkMismatch {
                                found: String::from_utf8_lossy(&net).into_owned(),
                                expected: network.to_core_arg().to_string(),
                            });
                        }
                    }
                }
                // Create every table so readers never meet a missing one.
                w.open_table(HEADERS)?;
                w.open_table(INVALID)?;
                w.open_table(BLOCKS)?;
                w.open_table(UNDO)?;
                w.open_table(UTXOS)?;
                w.open_table(SCRIPT_UTXOS)?;
                w.open_table(SCRIPT_DELTAS)?;
                w.open_table(RECENT_DELTAS)?;
                w.open_table(TXS)?;
                w.open_table(SPENT_BY)?;
                w.open_table(KEYSTONES)?;
                w.open_table(KEYSTONE_DATA)?;
                let mut chain = w.open_table(CHAIN)?;
                if chain.get(0)?.is_none() {
                    chain.insert(0, genesis_hash.as_byte_array())?;
                }
            }
            w.commit()?;
        }
        // Rebuild the header tree, parents first.
        let r = db.begin_read()?;
        for row in r.open_table(HEADERS)?.iter()? {
            let (_, v) = row?;
            let header: Header = deserialize(v.value().as_slice())
                .map_err(|e| StoreError::Corrupt(format!("header: {e}")))?;
            tree.insert_trusted(header)?;
        }
        for row in r.open_table(INVALID)?.iter()? {
            let (k, _) = row?;
            tree.invalidate(&BlockHash::from_byte_array(*k.value()));
        }
        let (height, hash) = match r.open_table(CHAIN)?.last()? {
            Some((h, v)) => (h.value(), BlockHash::from_byte_array(*v.value())),
            None => (0, genesis_hash),
        };
        drop(r);
        let store = ChainStore {
            db,
            tree: RwLock::new(tree),
            network,
            write: Mutex::new(()),
            tip_height: AtomicU32::new(height),
            tip_hash: RwLock::new(hash),
            fast_commits: AtomicBool::new(false),
            last_durable: Mutex::new(std::time::Instant::now()),
        };
        tracing::debug!(height, %hash, "chain store opened");
        Ok(store)
    }

    /// The network this store is for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Read access to the header tree (all known headers, best header chain).
    pub fn headers(&self) -> RwLockReadGuard<'_, HeaderTree> {
        self.tree.read()
    }

    /// The last connected (indexed) block.
    pub fn indexed_tip(&self) -> BlockRef {
        let hash = *self.tip_hash.read();
        BlockRef {
            height: self.tip_height.load(Ordering::Acquire),
            hash,
        }
    }

    /// Skip fsync on most commits (bulk sync): one commit every [`MAX_UNDURABLE`] is still
    /// durable, so a crash loses at most that much work and always leaves a consistent database
    /// at an earlier committed block. Call [`ChainStore::flush`] when done.
    pub fn set_fast_commits(&self, on: bool) {
        self.fast_commits.store(on, Ordering::Relaxed);
    }

    /// Makes every earlier commit durable.
    ///
    /// # Errors
    /// Database errors.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _g = self.write.lock();
        let w = self.db.begin_write()?;
        w.commit()?;
        Ok(())
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut w = self.db.begin_write()?;
        w.set_quick_repair(true);
        if self.fast_commits.load(Ordering::Relaxed) {
            let mut last = self.last_durable.lock();
            if last.elapsed() < MAX_UNDURABLE {
                w.set_durability(Durability::None)?;
            } else {
                *last = std::time::Instant::now();
            }
        }
        Ok(w)
    }

    /// Validates and stores headers in order, stopping at the first invalid one.
    ///
    /// # Errors
    /// Database errors only; a header that fails validation is reported in
    /// [`HeadersAdded::error`].
    pub fn add_headers(&self, headers: &[Header], now: u32) -> Result<HeadersAdded, StoreError> {
        let _g = self.write.lock();
        let mut out = HeadersAdded::default();
        let mut new = Vec::new();
        {
            let mut tree = self.tree.write();
            for h in headers {
                match tree.insert(*h, now) {
                    Ok(hemi_btc_headers::InsertOutcome::AlreadyKnown) => {}
                    Ok(hemi_btc_headers::InsertOutcome::Inserted { height, .. }) => {
                        new.push((height, *h));
                        out.inserted += 1;
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
            }
        }
        if !new.is_empty() {
            let w = self.begin_write()?;
            {
                let mut t = w.open_table(HEADERS)?;
                for (height, h) in &new {
                    let mut raw = [0u8; 80];
                    let mut cur = &mut raw[..];
                    h.consensus_encode(&mut cur)
                        .map_err(|e| StoreError::Db(e.to_string()))?;
                    t.insert(&header_key(*height, &h.block_hash()), &raw)?;
                }
            }
            w.commit()?;
        }
        Ok(out)
    }

    /// Whether the block's data is stored.
    ///
    /// # Errors
    /// Database errors.
    pub fn has_block(&self, hash: &BlockHash) -> Result<bool, StoreError> {
        let r = self.db.begin_read()?;
        let has = r.open_table(BLOCKS)?.get(hash.as_byte_array())?.is_some();
        Ok(has)
    }

    /// The raw (consensus-serialized) block.
    ///
    /// # Errors
    /// Database errors.
    pub fn raw_block(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read()?;
        let v = r
            .open_table(BLOCKS)?
            .get(hash.as_byte_array())?
            .map(|v| v.value().to_vec());
        Ok(v)
    }

    /// A stored block.
    ///
    /// # Errors
    /// Database errors or a corrupt record.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.raw_block(hash)?
            .map(|b| deserialize(&b).map_err(|e| StoreError::Corrupt(format!("block {hash}: {e}"))))
            .transpose()
    }

    /// Stores a block's data. Its header is validated and added first if it is new. The
    /// block's transactions are checked against its Merkle root (and witness commitment) here,
    /// so junk is never stored under a valid header's hash.
    ///
    /// # Errors
    /// [`StoreError::Header`] for an invalid or unconnected header, [`StoreError::BadBlock`]
    /// for a Merkle/witness mismatch, database errors.
    pub fn put_block(&self, block: &Block, now: u32) -> Result<(), StoreError> {
        let hash = block.block_hash();
        if !self.tree.read().contains(&hash) {
            let added = self.add_headers(&[block.header], now)?;
            if let Some(e) = added.error {
                return Err(StoreError::Header(e));
            }
        }
        let height = self.tree.read().get(&hash).map(|n| n.height).unwrap_or(0);
        check_block_commitments(block).map_err(|reason| StoreError::BadBlock {
            hash,
            height,
            reason,
        })?;
        let _g = self.write.lock();
        let w = self.begin_write()?;
        w.open_table(BLOCKS)?
            .insert(hash.as_byte_array(), serialize(block).as_slice())?;
        w.commit()?;
        Ok(())
    }

    /// Hashes of best-header-chain blocks after the indexed fork point whose data is missing, in
    /// chain order, at most `max`.
    ///
    /// # Errors
    /// Database errors.
    pub fn blocks_to_fetch(&self, max: usize) -> Result<Vec<BlockHash>, StoreError> {
        let tree = self.tree.read();
        let tip = self.indexed_tip();
        let best = tree.best_hash();
        let fork = tree.fork_point(&tip.hash, &best).unwrap_or(tip.hash);
        let fork_height = tree.get(&fork).map(|n| n.height).unwrap_or(0);
        let r = self.db.begin_read()?;
        let blocks = r.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for h in fork_height + 1..=tree.best_height() {
            if out.len() >= max {
                break;
            }
            let Some(hash) = tree.hash_at_height(h) else {
                break;
            };
            if blocks.get(hash.as_byte_array())?.is_none() {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Moves the indexed chain toward the best valid header chain using stored blocks: first
    /// disconnects to the fork point (only once every block of the new branch up to its tip is
    /// stored, so the chain never shrinks waiting for downloads), then connects forward. A block
    /// that fails to connect is marked invalid and the next best chain is tried. At most `budget`
    /// blocks are connected or disconnected per call.
    ///
    /// # Errors
    /// Database errors (a bad block is reported in [`Advance::invalid`], not as an error).
    pub fn advance(&self, budget: usize) -> Result<Advance, StoreError> {
        let _g = self.write.lock();
        let mut out = Advance::default();
        let mut steps = 0;
        while steps < budget {
            let tip = self.indexed_tip();
            let (best, fork, next) = {
                let tree = self.tree.read();
                let best = tree.best_hash();
                if best == tip.hash {
                    break;
                }
                let fork = tree.fork_point(&tip.hash, &best).unwrap_or(tip.hash);
                let next = tree
                    .ancestor(&best, tip.height + 1)
                    .map(|n| n.header.block_hash());
                (best, fork, next)
            };
            if fork != tip.hash {
                // Reorg: only when the new branch is fully stored.
                let missing = self.missing_between(&fork, &best)?;
                if !missing.is_empty() {
                    out.missing = missing;
                    break;
                }
                let b = self.disconnect_tip_locked()?;
                out.disconnected.push(b);
                steps += 1;
                continue;
            }
            let Some(next) = next else { break };
            let Some(block) = self.block(&next)? else {
                out.missing = self.missing_between(&tip.hash, &best)?;
                break;
            };
            match self.connect_locked(&block, tip) {
                Ok(b) => out.connected.push(b),
                Err(StoreError::BadBlock { hash, reason, .. }) => {
                    tracing::warn!(%hash, %reason, "block failed to connect; marking invalid");
                    self.mark_invalid(&hash)?;
                    out.invalid.push((hash, reason));
                }
                Err(e) => return Err(e),
            }
            steps += 1;
        }
        Ok(out)
    }

    fn missing_between(
        &self,
        from: &BlockHash,
        to: &BlockHash,
    ) -> Result<Vec<BlockHash>, StoreError> {
        let tree = self.tree.read();
        let (Some(a), Some(b)) = (tree.get(from), tree.get(to)) else {
            return Ok(vec![]);
        };
        let (lo, hi) = (a.height, b.height);
        let r = self.db.begin_read()?;
        let blocks = r.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for h in lo + 1..=hi {
            let Some(n) = tree.ancestor(to, h) else { break };
            let hash = n.header.block_hash();
            if blocks.get(hash.as_byte_array())?.is_none() {
                out.push(hash);
                if out.len() >= 1024 {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn mark_invalid(&self, hash: &BlockHash) -> Result<(), StoreError> {
        self.tree.write().invalidate(hash);
        let w = self.begin_write()?;
        w.open_table(INVALID)?.insert(hash.as_byte_array(), ())?;
        w.commit()?;
        Ok(())
    }

    /// Marks a block (and its descendants) invalid, like Bitcoin Core's `invalidateblock`, and
    /// reorganises to the best remaining chain.
    ///
    /// # Errors
    /// [`StoreError::UnknownHeader`] for an unknown block; database errors.
    pub fn invalidate_block(&self, hash: &BlockHash) -> Result<Advance, StoreError> {
        if !self.tree.read().contains(hash) {
            return Err(StoreError::UnknownHeader(*hash));
        }
        {
            let _g = self.write.lock();
            self.mark_invalid(hash)?;
        }
        self.advance(usize::MAX)
    }

    /// Clears the invalid mark set by [`ChainStore::invalidate_block`] (Bitcoin Core's
    /// `reconsiderblock`) and reorganises to the best chain.
    ///
    /// # Errors
    /// [`StoreError::UnknownHeader`] for an unknown block; database errors.
    pub fn reconsider_block(&self, hash: &BlockHash) -> Result<Advance, StoreError> {
        {
            let _g = self.write.lock();
            let mut tree = self.tree.write();
            if !tree.contains(hash) {
                return Err(StoreError::UnknownHeader(*hash));
            }
            tree.reconsider(hash);
            let w = self.begin_write()?;
            {
                let mut t = w.open_table(INVALID)?;
                let marked: Vec<[u8; 32]> = t
                    .iter()?
                    .filter_map(|r| r.ok().map(|(k, _)| *k.value()))
                    .collect();
                for k in marked {
                    let h = BlockHash::from_byte_array(k);
                    if tree.get(&h).is_some_and(|n| !n.invalid) {
                        t.remove(&k)?;
                    }
                }
            }
            w.commit()?;
        }
        self.advance(usize::MAX)
    }

    /// Connects `block` on top of the indexed tip (which must be its parent), updating every
    /// index in one transaction.
    fn connect_locked(&self, block: &Block, tip: BlockRef) -> Result<BlockRef, StoreError> {
        let hash = block.block_hash();
        let height = tip.height + 1;
        let bad = |reason: String| StoreError::BadBlock {
            hash,
            height,
            reason,
        };
        if block.header.prev_blockhash != tip.hash {
            return Err(bad(format!("does not extend the indexed tip {}", tip.hash)));
        }
        // Commitments (Merkle root, witness commitment, duplicates, MAX_MONEY) were checked by
        // `put_block`, the only way block data enters the store; not repeated per connect.
        // Script-first deltas only for blocks queries can reach: within MAX_ASOF_DEPTH of the
        // best header (an initial sync far below it skips those random writes).
        let recent = u64::from(height) + u64::from(MAX_ASOF_DEPTH)
            >= u64::from(self.tree.read().best_height());
        let w = self.begin_write()?;
        {
            let mut utxos = w.open_table(UTXOS)?;
            let mut by_script = w.open_table(SCRIPT_UTXOS)?;
            let mut deltas = w.open_table(SCRIPT_DELTAS)?;
            let mut recents = w.open_table(RECENT_DELTAS)?;
            let mut txs = w.open_table(TXS)?;
            let mut spent_by = w.open_table(SPENT_BY)?;
            let mut kss = w.open_table(KEYSTONES)?;
            let mut ks_data = w.open_table(KEYSTONE_DATA)?;
            let mut undo = Vec::new();
            let mut offset = 80 + bitcoin::VarInt(block.txdata.len() as u64).size() as u32;
            for (index, tx) in block.txdata.iter().enumerate() {
                let txid = tx.compute_txid();
                let coinbase = index == 0;
                if coinbase != tx.is_coinbase() {
                    return Err(bad(format!(
                        "transaction {index} coinbase position is wrong"
                    )));
                }
                let mut value_in: u64 = 0;
                if !coinbase {
                    for (vin, input) in tx.input.iter().enumerate() {
                        let key = outpoint_key(&input.previous_output);
                        let coin = utxos
                            .remove(&key)?
                            .ok_or_else(|| {
                                bad(format!(
                                    "transaction {txid} input {vin} spends missing or spent output {}",
                                    input.previous_output
                                ))
                            })?
                            .value()
                            .to_vec();
                        let (value, cheight, ccb, script) = decode_coin(&coin)?;
                        if ccb && height.saturating_sub(cheight) < 100 {
                            return Err(bad(format!(
                                "transaction {txid} spends immature coinbase {}",
                                input.previous_output
                            )));
                        }
                        let script = bitcoin::ScriptBuf::from_bytes(script.to_vec());
                        let sh = script_hash(&script);
                        by_script.remove(&script_key(&sh, &input.previous_output))?;
                        let entry = encode_script_entry(value, cheight, ccb);
                        deltas.insert(
                            &delta_key(&sh, height, DELTA_SPENT, &input.previous_output),
                            &entry,
                        )?;
                        if recent {
                            recents.insert(
                                &recent_key(&sh, height, DELTA_SPENT, &input.previous_output),
                                &entry,
                            )?;
                        }
                        spent_by.insert(&key, &encode_spent_by(&txid, vin as u32, height))?;
                        value_in = value_in.saturating_add(value);
                        undo.push(SpentCoin {
                            txout: bitcoin::TxOut {
                                value: bitcoin::Amount::from_sat(value),
                                script_pubkey: script,
                            },
                            height: cheight,
                            coinbase: ccb,
                        });
                    }
                    // Bounded by MAX_MONEY in check_block_commitments, so this cannot overflow.
                    let value_out: u64 = tx
                        .output
                        .iter()
                        .fold(0u64, |a, o| a.saturating_add(o.value.to_sat()));
                    if value_out > value_in {
                        return Err(bad(format!(
                            "transaction {txid} spends {value_out} sat but has {value_in} sat in"
                        )));
                    }
                }
                for (vout, out) in tx.output.iter().enumerate() {
                    if let Ok(k) = AbbreviatedKeystone::from_pop_script(&out.script_pubkey) {
                        let id = k.id().0;
                        kss.insert(
                            &keystone_key(&id, height, index as u32),
                            &pub_value(&txid, &hash),
                        )?;
                        if ks_data.get(&id)?.is_none() {
                            ks_data.insert(&id, &k.to_bytes())?;
                        }
                    }
                    if out.script_pubkey.is_op_return() {
                        continue; // provably unspendable: not a UTXO
                    }
                    let op = bitcoin::OutPoint::new(txid, vout as u32);
                    utxos.insert(
                        &outpoint_key(&op),
                        encode_coin(out.value.to_sat(), height, coinbase, &out.script_pubkey)
                            .as_slice(),
                    )?;
                    let sh = script_hash(&out.script_pubkey);
                    let entry = encode_script_entry(out.value.to_sat(), height, coinbase);
                    by_script.insert(&script_key(&sh, &op), &entry)?;
                    deltas.insert(&delta_key(&sh, height, DELTA_CREATED, &op), &entry)?;
                    if recent {
                        recents.insert(&recent_key(&sh, height, DELTA_CREATED, &op), &entry)?;
                    }
                }
                let len = tx.total_size() as u32;
                txs.insert(
                    txid.as_byte_array(),
                    &TxRecord {
                        block: hash,
                        height,
                        index: index as u32,
                        offset,
                        len,
                    }
                    .encode(),
                )?;
                offset += len;
            }
            w.open_table(UNDO)?
                .insert(hash.as_byte_array(), encode_undo(&undo).as_slice())?;
            w.open_table(CHAIN)?.insert(height, hash.as_byte_array())?;
            let mut meta = w.open_table(META)?;
            let from = read_recent_from(&meta)?;
            match (recent, from) {
                (false, None) => {}
                (false, Some(from)) => {
                    // The run ends: its rows would never be read again (a new run starts
                    // above this block), so they go now.
                    for h in from..height {
                        prune_recent_height(&deltas, &mut recents, h)?;
                    }
                    meta.remove(RECENT_FROM)?;
                }
                (true, None) => {
                    meta.insert(RECENT_FROM, height.to_le_bytes().as_slice())?;
                }
                // One height out of reach pruned per block, so the table stays at the window.
                (true, Some(from)) if from + MAX_ASOF_DEPTH < height => {
                    prune_recent_height(&deltas, &mut recents, from)?;
                    meta.insert(RECENT_FROM, (from + 1).to_le_bytes().as_slice())?;
                }
                (true, Some(_)) => {}
            }
        }
        w.commit()?;
        self.set_tip(height, hash);
        tracing::trace!(height, %hash, "connected block");
        Ok(BlockRef { height, hash })
    }

    /// Disconnects the indexed tip using its undo data. The caller holds the write lock.
    fn disconnect_tip_locked(&self) -> Result<BlockRef, StoreError> {
        let tip = self.indexed_tip();
        if tip.height == 0 {
            return Err(StoreError::Corrupt("cannot disconnect genesis".into()));
        }
        let block = self.block(&tip.hash)?.ok_or_else(|| {
            StoreError::Corrupt(format!("indexed block {} has no data", tip.hash))
        })?;
        let w = self.begin_write()?;
        {
            let undo_raw = w
                .open_table(UNDO)?
                .remove(tip.hash.as_byte_array())?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| StoreError::Corrupt(format!("no undo data for {}", tip.hash)))?;
            let undo = decode_undo(&undo_raw)?;
            let mut undo_iter = undo.into_iter().rev();
            let mut utxos = w.open_table(UTXOS)?;
            let mut by_script = w.open_table(SCRIPT_UTXOS)?;
            let mut deltas = w.open_table(SCRIPT_DELTAS)?;
            let mut recents = w.open_table(RECENT_DELTAS)?;
            let mut txs = w.open_table(TXS)?;
            let mut spent_by = w.open_table(SPENT_BY)?;
            let mut kss = w.open_table(KEYSTONES)?;
            for (index, tx) in block.txdata.iter().enumerate().rev() {
                let txid = tx.compute_txid();
                for (vout, out) in tx.output.iter().enumerate() {
                    if let Ok(k) = AbbreviatedKeystone::from_pop_script(&out.script_pubkey) {
                        kss.remove(&keystone_key(&k.id().0, tip.height, index as u32))?;
                    }
                    if out.script_pubkey.is_op_return() {
                        continue;
                    }
                    let op = bitcoin::OutPoint::new(txid, vout as u32);
                    utxos.remove(&outpoint_key(&op))?;
                    let sh = script_hash(&out.script_pubkey);
                    by_script.remove(&script_key(&sh, &op))?;
                    deltas.remove(&delta_key(&sh, tip.height, DELTA_CREATED, &op))?;
                    recents.remove(&recent_key(&sh, tip.height, DELTA_CREATED, &op))?;
                }
                txs.remove(txid.as_byte_array())?;
                if index == 0 {
                    continue;
                }
                for input in tx.input.iter().rev() {
                    let coin = undo_iter.next().ok_or_else(|| {
                        StoreError::Corrupt(format!("undo data of {} too short", tip.hash))
                    })?;
                    let op = input.previous_output;
                    let key = outpoint_key(&op);
                    let value = coin.txout.value.to_sat();
                    utxos.insert(
                        &key,
                        encode_coin(value, coin.height, coin.coinbase, &coin.txout.script_pubkey)
                            .as_slice(),
                    )?;
                    let sh = script_hash(&coin.txout.script_pubkey);
                    by_script.insert(
                        &script_key(&sh, &op),
                        &encode_script_entry(value, coin.height, coin.coinbase),
                    )?;
                    deltas.remove(&delta_key(&sh, tip.height, DELTA_SPENT, &op))?;
                    recents.remove(&recent_key(&sh, tip.height, DELTA_SPENT, &op))?;
                    spent_by.remove(&key)?;
                }
            }
            w.open_table(CHAIN)?.remove(tip.height)?;
            // The run of recent blocks ends one lower; when it was this block alone, none is left.
            let mut meta = w.open_table(META)?;
            if read_recent_from(&meta)?.is_some_and(|from| from >= tip.height) {
                meta.remove(RECENT_FROM)?;
            }
        }
        w.commit()?;
        let parent = block.header.prev_blockhash;
        self.set_tip(tip.height - 1, parent);
        tracing::debug!(height = tip.height, hash = %tip.hash, "disconnected block");
        Ok(tip)
    }

    fn set_tip(&self, height: u32, hash: BlockHash) {
        let mut h = self.tip_hash.write();
        *h = hash;
        self.tip_height.store(height, Ordering::Release);
    }

    /// The lowest height of the recent run (blocks whose script deltas are also kept script
    /// first, up to the tip), if there is one.
    ///
    /// # Errors
    /// Database errors or a corrupt record.
    pub fn recent_from(&self) -> Result<Option<u32>, StoreError> {
        let r = self.db.begin_read()?;
        read_recent_from(&r.open_table(META)?)
    }

    /// The 76-byte abbreviated keystone stored for an id (seen in any connected block).
    ///
    /// # Errors
    /// Database errors.
    pub fn keystone(&self, id: &[u8; 32]) -> Result<Option<AbbreviatedKeystone>, StoreError> {
        let r = self.db.begin_read()?;
        let v = r.open_table(KEYSTONE_DATA)?.get(id)?.map(|v| *v.value());
        Ok(v.and_then(|b| AbbreviatedKeystone::from_bytes(&b).ok()))
    }

    /// Raw transaction bytes of a confirmed transaction, sliced out of its stored block.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn raw_transaction(
        &self,
        txid: &Txid,
    ) -> Result<Option<(Vec<u8>, BlockRef, u32)>, StoreError> {
        let r = self.db.begin_read()?;
        let Some(rec) = r
            .open_table(TXS)?
            .get(txid.as_byte_array())?
            .map(|v| *v.value())
        else {
            return Ok(None);
        };
        let rec = TxRecord::decode(&rec)?;
        let blocks = r.open_table(BLOCKS)?;
        let raw = blocks
            .get(rec.block.as_byte_array())?
            .ok_or_else(|| StoreError::Corrupt(format!("tx {txid} points at missing block")))?;
        let raw = raw.value();
        let (a, b) = (rec.offset as usize, rec.offset as usize + rec.len as usize);
        let bytes = raw
            .get(a..b)
            .ok_or_else(|| corrupt("tx byte range"))?
            .to_vec();
        Ok(Some((
            bytes,
            BlockRef {
                height: rec.height,
                hash: rec.block,
            },
            rec.index,
        )))
    }

    /// An unspent output by outpoint (best indexed chain).
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn utxo(
        &self,
        outpoint: &bitcoin::OutPoint,
    ) -> Result<Option<hemi_btc_view::Utxo>, StoreError> {
        let r = self.db.begin_read()?;
        let Some(v) = r
            .open_table(UTXOS)?
            .get(&outpoint_key(outpoint))?
            .map(|v| v.value().to_vec())
        else {
            return Ok(None);
        };
        let (value, height, coinbase, script) = decode_coin(&v)?;
        Ok(Some(hemi_btc_view::Utxo {
            outpoint: *outpoint,
            value,
            script_pubkey: bitcoin::ScriptBuf::from_bytes(script.to_vec()),
            height,
            coinbase,
        }))
    }

    /// Number of unspent outputs indexed (for status and benchmarks).
    ///
    /// # Errors
    /// Database errors.
    pub fn utxo_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let r = self.db.begin_read()?;
        let n = r.open_table(UTXOS)?.len()?;
        Ok(n)
    }
}

fn header_key(height: u32, hash: &BlockHash) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..4].copy_from_slice(&height.to_be_bytes());
    k[4..].copy_from_slice(hash.as_byte_array());
    k
}

fn pub_value(txid: &Txid, block: &BlockHash) -> [u8; 64] {
    let mut v = [0u8; 64];
    v[..32].copy_from_slice(txid.as_byte_array());
    v[32..].copy_from_slice(block.as_byte_array());
    v
}

/// Checks what a block commits to in its header: Merkle root, witness commitment, a coinbase
/// first and only first.
fn check_block_commitments(block: &Block) -> Result<(), String> {
    if block.txdata.is_empty() {
        return Err("block has no transactions".into());
    }
    if !block.check_merkle_root() {
        return Err("merkle root does not match the transactions".into());
    }
    if !block.check_witness_commitment() {
        return Err("witness commitment does not match".into());
    }
    if !block.txdata[0].is_coinbase() {
        return Err("first transaction is not a coinbase".into());
    }
    if block.txdata.iter().skip(1).any(Transaction::is_coinbase) {
        return Err("more than one coinbase".into());
    }
    // CVE-2012-2459: a copy with a duplicated last transaction has the same Merkle root; it must
    // never be stored under (and then poison) the genuine block's hash.
    let mut seen = std::collections::HashSet::with_capacity(block.txdata.len());
    if !block.txdata.iter().all(|t| seen.insert(t.compute_txid())) {
        return Err("duplicate transaction (mutated block, CVE-2012-2459)".into());
    }
    // rust-bitcoin's check passes a block without any witness; Core refuses a block whose
    // coinbase commits to witnesses that were stripped.
    const COMMITMENT: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    let has_commitment = block.txdata[0].output.iter().any(|o| {
        let b = o.script_pubkey.as_bytes();
        b.len() >= 38 && b[..6] == COMMITMENT
    });
    let any_witness = block
        .txdata
        .iter()
        .any(|t| t.input.iter().any(|i| !i.witness.is_empty()));
    if has_commitment && !any_witness {
        return Err(
            "witness commitment present but the block carries no witness data (stripped)".into(),
        );
    }
    for tx in &block.txdata {
        let total = tx
            .output
            .iter()
            .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
            .filter(|v| *v <= bitcoin::Amount::MAX_MONEY.to_sat());
        if total.is_none() {
            return Err(format!(
                "transaction {} output values exceed MAX_MONEY",
                tx.compute_txid()
            ));
        }
    }
    Ok(())
}

/// `META`'s `recent_from`.
fn read_recent_from(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<u32>, StoreError> {
    match meta.get(RECENT_FROM)? {
        None => Ok(None),
        Some(v) => Ok(Some(u32::from_le_bytes(
            v.value().try_into().map_err(|_| corrupt(RECENT_FROM))?,
        ))),
    }
}

/// The height-first delta keys of block `height`, with their entries.
fn deltas_at(
    deltas: &impl ReadableTable<&'static DeltaKey, &'static [u8; 13]>,
    height: u32,
) -> Result<Vec<(DeltaKey, [u8; 13])>, StoreError> {
    let mut lo = [0u8; 73];
    lo[..4].copy_from_slice(&height.to_be_bytes());
    let mut hi = [0xffu8; 73];
    hi[..4].copy_from_slice(&height.to_be_bytes());
    let mut out = Vec::new();
    for row in deltas.range::<&DeltaKey>(&lo..=&hi)? {
        let (k, v) = row?;
        out.push((*k.value(), *v.value()));
    }
    Ok(out)
}

/// Removes block `height`'s script-first deltas (found through its height-first ones).
fn prune_recent_height(
    deltas: &impl ReadableTable<&'static DeltaKey, &'static [u8; 13]>,
    recents: &mut redb::Table<&'static DeltaKey, &'static [u8; 13]>,
    height: u32,
) -> Result<(), StoreError> {
    for (k, _) in deltas_at(deltas, height)? {
        recents.remove(&recent_of(&k))?;
    }
    Ok(())
}

/// Fills the script-first deltas of the last [`MAX_ASOF_DEPTH`] + 1 connected blocks from the
/// height-first ones and sets `recent_from` (a schema 1 or 2 database, upgraded on open).
fn rebuild_recent_deltas(
    w: &redb::WriteTransaction,
    meta: &mut redb::Table<&'static str, &'static [u8]>,
) -> Result<(), StoreError> {
    let chain = w.open_table(CHAIN)?;
    let Some(tip) = chain.last()?.map(|(h, _)| h.value()) else {
        return Ok(());
    };
    if tip == 0 {
        return Ok(());
    }
    let from = tip.saturating_sub(MAX_ASOF_DEPTH).max(1);
    let deltas = w.open_table(SCRIPT_DELTAS)?;
    let mut recents = w.open_table(RECENT_DELTAS)?;
    for height in from..=tip {
        for (k, v) in deltas_at(&deltas, height)? {
            recents.insert(&recent_of(&k), &v)?;
        }
    }
    meta.insert(RECENT_FROM, from.to_le_bytes().as_slice())?;
    Ok(())
}

/// Builds the script-delta index of a schema-1 database from its connected blocks and their undo
/// data (inside the caller's write transaction, so an interrupted upgrade leaves schema 1).
fn rebuild_script_deltas(w: &redb::WriteTransaction) -> Result<(), StoreError> {
    let chain = w.open_table(CHAIN)?;
    let blocks = w.open_table(BLOCKS)?;
    let undos = w.open_table(UNDO)?;
    let mut deltas = w.open_table(SCRIPT_DELTAS)?;
    for row in chain.range(1u32..)? {
        let (height, hash) = row?;
        let (height, hash) = (height.value(), *hash.value());
        let raw = blocks
            .get(&hash)?
            .ok_or_else(|| StoreError::Corrupt(format!("chain block at {height} has no data")))?;
        let block: Block = deserialize(raw.value())
            .map_err(|e| StoreError::Corrupt(format!("block at {height}: {e}")))?;
        let undo = match undos.get(&hash)? {
            Some(u) => decode_undo(u.value())?,
            None => return Err(StoreError::Corrupt(format!("no undo data at {height}"))),
        };
        let mut spent = undo.into_iter();
        for (index, tx) in block.txdata.iter().enumerate() {
            if index > 0 {
                for input in &tx.input {
                    let coin = spent.next().ok_or_else(|| {
                        StoreError::Corrupt(format!("undo data at {height} too short"))
                    })?;
                    deltas.insert(
                        &delta_key(
                            &script_hash(&coin.txout.script_pubkey),
                            height,
                            DELTA_SPENT,
                            &input.previous_output,
                        ),
                        &encode_script_entry(coin.txout.value.to_sat(), coin.height, coin.coinbase),
                    )?;
                }
            }
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                deltas.insert(
                    &delta_key(
                        &script_hash(&out.script_pubkey),
                        height,
                        DELTA_CREATED,
                        &bitcoin::OutPoint::new(txid, vout as u32),
                    ),
                    &encode_script_entry(out.value.to_sat(), height, index == 0),
                )?;
            }
        }
    }
    Ok(())
}
