//! The L2 chain: genesis, building and importing blocks, and reading blocks, receipts and state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use alloy_consensus::{Header, Transaction, EMPTY_OMMER_ROOT_HASH};
use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{keccak256, Address, Bloom, Bytes, Log, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_trie::EMPTY_ROOT_HASH;
use bitcoin::hashes::Hash;
use hemi_btc_view::BlockRef;
use hemi_hvm::{BitcoinPin, BtcAttributes};
use hemi_trie::{TrieError, TrieUpdate};
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use revm::context::TxEnv;
use revm::context_interface::result::{EVMError, ExecutionResult};
use revm::database::{BundleState, CacheDB};
use revm::database_interface::WrapDatabaseRef;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

use crate::block::{
    logs_bloom, receipts_root, transactions_root, L2Block, L2Receipt, Seal, SEAL_LEN,
};
use crate::db::*;
use crate::exec::{self, BlockContext, CallOutcome, Executed, Mode, SPEC};
use crate::pop_rewards::PopPayoutTx;
use crate::seal::{SealVerifier, Sealer};
use crate::state::{compute_diff, BlockDiff, Snapshot, StateStore, StateView};
use crate::system::{self, SystemInputs};
use crate::tx::{L2Tx, SignedTx};
use crate::{BlockError, ChainError, ChainSpec};

/// A block as read back: header, hash, transactions with senders, seal.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// Header.
    pub header: Header,
    /// Hash.
    pub hash: B256,
    /// Transactions with hashes and senders.
    pub txs: Vec<SignedTx>,
    /// The sequencer's seal (all zero for genesis).
    pub seal: Seal,
}

impl StoredBlock {
    /// The block as it travels ([`L2Block::encode`]).
    pub fn to_l2_block(&self) -> L2Block {
        L2Block {
            header: self.header.clone(),
            txs: self.txs.iter().map(|t| t.tx.clone()).collect(),
            seal: self.seal,
        }
    }

    /// Size of the block's encoding (header, transactions and seal), bytes (`size` in RPC).
    pub fn size(&self) -> usize {
        self.to_l2_block().encode().len()
    }
}

/// A log with where it was emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedLog {
    /// The log.
    pub log: Log,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp.
    pub block_timestamp: u64,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Log index in the block.
    pub log_index: u64,
}

/// What the sequencer built.
#[derive(Debug)]
pub struct Built {
    /// The sealed block.
    pub block: StoredBlock,
    /// Its receipts.
    pub receipts: Vec<L2Receipt>,
    /// Pool transactions left out, with why.
    pub rejected: Vec<(B256, String)>,
}

/// An EIP-1186 proof.
#[derive(Debug, Clone)]
pub struct AccountProof {
    /// The account (default if absent).
    pub account: StoredAccount,
    /// Account trie nodes, root first.
    pub account_proof: Vec<Bytes>,
    /// `(slot, value, nodes)` for each requested slot.
    pub storage: Vec<(B256, U256, Vec<Bytes>)>,
}

/// A block with its receipts, as the read cache keeps it.
#[derive(Debug, Clone)]
pub struct BlockWithReceipts {
    /// The block.
    pub block: StoredBlock,
    /// Its receipts.
    pub receipts: Vec<L2Receipt>,
}

/// How many recent blocks the read cache keeps (receipt polling hits the newest ones).
const CACHED_BLOCKS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Head {
    number: u64,
    hash: B256,
}

/// The L2 chain over two redb databases (blocks; state, see [`crate::state`]). Share behind
/// an `Arc`; reads never block writes.
pub struct Chain {
    db: Database,
    state: Arc<StateStore>,
    persister: Mutex<Option<std::thread::JoinHandle<()>>>,
    spec: ChainSpec,
    head: RwLock<Head>,
    write: Mutex<()>,
    cache: Mutex<BTreeMap<u64, Arc<BlockWithReceipts>>>,
    /// The target of every unwind since the chain was opened, in order.
    unwinds: Mutex<Vec<u64>>,
}

impl Drop for Chain {
    /// Persists the state still in memory and stops the persister (a crash instead replays the
    /// blocks on the next open).
    fn drop(&mut self) {
        self.state.stop(false);
        if let Some(handle) = self.persister.lock().take() {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.spec.chain_id)
            .field("head", &self.head.read().number)
            .finish()
    }
}

impl From<TrieError> for ChainError {
    fn from(e: TrieError) -> Self {
        ChainError::Corrupt(format!("state trie: {e}"))
    }
}

fn u256_word(v: U256) -> B256 {
    B256::from(v.to_be_bytes::<32>())
}

impl Chain {
    /// Opens the chain at `path` (or in memory when `None`), writing genesis from `spec` if the
    /// database is new.
    ///
    /// # Errors
    /// Database errors, a schema version or genesis mismatch, corrupt records.
    pub fn open(path: Option<&Path>, spec: ChainSpec) -> Result<Self, ChainError> {
        let open = |p: Option<&Path>, cache: usize| -> Result<Database, ChainError> {
            Ok(match p {
                Some(p) => {
                    let mut b = Database::builder();
                    b.set_cache_size(cache);
                    b.create(p)?
                }
                None => Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())?,
            })
        };
        let db = open(path, 64 * 1024 * 1024)?;
        let state_path = path.map(state_path);
        let state_db = open(state_path.as_deref(), 1024 * 1024 * 1024)?;
        let (genesis, alloc, nodes) = Self::genesis(&spec)?;
        let genesis_hash = genesis.hash_slow();
        Self::init_blocks(&db, &spec, &genesis)?;
        let (state, persisted) = StateStore::open(state_db, &alloc, &nodes, genesis_hash)?;
        let chain = Chain {
            db,
            state: Arc::new(state),
            persister: Mutex::new(None),
            spec,
            head: RwLock::new(Head {
                number: 0,
                hash: B256::ZERO,
            }),
            write: Mutex::new(()),
            cache: Mutex::new(BTreeMap::new()),
            unwinds: Mutex::new(Vec::new()),
        };
        let (head, at_persisted) = {
            let r = chain.db.begin_read()?;
            let canonical = r.open_table(CANONICAL)?;
            let last = canonical
                .last()?
                .ok_or_else(|| ChainError::Corrupt("empty chain".into()))?;
            let head = Head {
                number: last.0.value(),
                hash: B256::from(*last.1.value()),
            };
            let at = canonical.get(persisted.0)?.map(|v| B256::from(*v.value()));
            (head, at)
        };
        if persisted.0 > head.number || at_persisted != Some(persisted.1) {
            return Err(ChainError::Corrupt(format!(
                "the state database holds block {} ({}), the chain's block {} is {:?}",
                persisted.0, persisted.1, persisted.0, at_persisted
            )));
        }
        // Replay the committed blocks the state database does not hold yet.
        chain.replay(persisted.0 + 1, head.number)?;
        *chain.head.write() = head;
        let store = chain.state.clone();
        let handle = std::thread::Builder::new()
            .name("hemi-state-persist".into())
            .spawn(move || store.run_persister())
            .map_err(|e| ChainError::Db(format!("starting the state persister: {e}")))?;
        *chain.persister.lock() = Some(handle);
        Ok(chain)
    }

    /// Writes genesis into a new blocks database, or checks an existing one's schema version
    /// and genesis.
    fn init_blocks(db: &Database, spec: &ChainSpec, genesis: &Header) -> Result<(), ChainError> {
        let mut w = db.begin_write()?;
        w.set_quick_repair(true);
        let existing = {
            let meta = w.open_table(META)?;
            let v = meta.get("schema_version")?.map(|v| v.value().to_vec());
            v
        };
        match existing {
            None => {
                create_tables(&w)?;
                {
                    let mut meta = w.open_table(META)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert("chain_id", spec.chain_id.to_be_bytes().as_slice())?;
                }
                Self::write_block(
                    &w,
                    genesis,
                    genesis.hash_slow(),
                    &Seal::ZERO,
                    &[],
                    &[],
                    &[],
                    BlockRef {
                        height: 0,
                        hash: bitcoin::BlockHash::all_zeros(),
                    },
                )?;
                w.commit()?;
            }
            Some(v) => {
                w.abort()?;
                let found = u32::from_le_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| ChainError::Corrupt("schema_version".into()))?,
                );
                if found != SCHEMA_VERSION {
                    return Err(ChainError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                let r = db.begin_read()?;
                let stored = r
                    .open_table(HEADERS)?
                    .get(0)?
                    .map(|v| alloy_rlp::decode_exact::<Header>(v.value()))
                    .transpose()
                    .map_err(|e| ChainError::Corrupt(format!("genesis header: {e}")))?
                    .ok_or_else(|| ChainError::Corrupt("no genesis".into()))?;
                if stored.hash_slow() != genesis.hash_slow() {
                    return Err(ChainError::GenesisMismatch {
                        stored: stored.hash_slow(),
                        spec: genesis.hash_slow(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Recomputes the state of blocks `from..=to` from their changesets into the overlay
    /// (which must end at block `from - 1`), checking each state root against the header.
    fn replay(&self, from: u64, to: u64) -> Result<(), ChainError> {
        for n in from..=to {
            let changes = self.changeset(n)?;
            let header = self
                .header(n)?
                .ok_or_else(|| ChainError::Corrupt(format!("header {n} missing")))?;
            let diff = compute_diff(&self.state.snapshot()?, n, &changes)?;
            if diff.root != header.state_root {
                return Err(ChainError::Corrupt(format!(
                    "replaying block {n}'s changeset gives state root {}, its header has {}",
                    diff.root, header.state_root
                )));
            }
            self.state.push(diff, header.hash_slow());
        }
        Ok(())
    }

    /// Block `n`'s changeset.
    fn changeset(&self, n: u64) -> Result<ChangeSet, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CHANGESETS)?;
        let v = t
            .get(n)?
            .ok_or_else(|| ChainError::Corrupt(format!("block {n} has no changeset")))?;
        ChangeSet::decode(v.value())
    }

    /// Persists the state of every committed block to the state database now (it is otherwise
    /// persisted in the background, in batches).
    ///
    /// # Errors
    /// Database errors.
    pub fn persist(&self) -> Result<(), ChainError> {
        self.state.persist_all()
    }

    /// Closes the chain as a crash would: the state still in memory is not persisted, so the
    /// next open replays the blocks above the state database's. For crash-recovery tests.
    #[doc(hidden)]
    pub fn close_without_persisting(self) {
        self.state.stop(true);
    }

    /// A view of the newest state, and its snapshot (which remembers what the view read, so
    /// the block's diff does not read it again).
    fn latest_view(&self) -> Result<(StateView, Arc<Snapshot>), ChainError> {
        let snap = Arc::new(self.state.snapshot()?);
        Ok((
            StateView::new(snap.clone(), &self.db.begin_read()?, None)?,
            snap,
        ))
    }

    /// The genesis header, its accounts and the account trie nodes of its state root.
    #[allow(clippy::type_complexity)]
    fn genesis(
        spec: &ChainSpec,
    ) -> Result<(Header, Vec<(Address, StoredAccount)>, TrieUpdate), ChainError> {
        let mut changes = BTreeMap::new();
        let mut alloc = Vec::new();
        for (addr, balance) in &spec.alloc {
            let a = StoredAccount {
                nonce: 0,
                balance: *balance,
                code_hash: alloy_primitives::KECCAK256_EMPTY,
                storage_root: EMPTY_ROOT_HASH,
            };
            changes.insert(keccak256(addr), Some(a.trie_value()));
            alloc.push((*addr, a));
        }
        let update = hemi_trie::update(&hemi_trie::MemNodes::new(), &changes)?;
        let header = Header {
            parent_hash: B256::ZERO,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: Address::ZERO,
            state_root: update.root,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            logs_bloom: Bloom::default(),
            difficulty: U256::ZERO,
            number: 0,
            gas_limit: spec.gas_limit,
            gas_used: 0,
            timestamp: spec.timestamp,
            extra_data: Bytes::new(),
            mix_hash: B256::ZERO,
            nonce: Default::default(),
            base_fee_per_gas: Some(spec.base_fee_per_gas),
            ..Default::default()
        };
        Ok((header, alloc, update))
    }

    /// The chain spec.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// Number and hash of the newest block.
    pub fn head(&self) -> (u64, B256) {
        let h = *self.head.read();
        (h.number, h.hash)
    }

    /// The header of canonical block `number`.
    ///
    /// # Errors
    /// Database errors or a corrupt record.
    pub fn header(&self, number: u64) -> Result<Option<Header>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HEADERS)?;
        match t.get(number)? {
            Some(v) => {
                let mut b = v.value();
                Ok(Some(alloy_rlp::Decodable::decode(&mut b).map_err(|e| {
                    ChainError::Corrupt(format!("header {number}: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// The number of the canonical block with `hash`.
    ///
    /// # Errors
    /// Database errors.
    pub fn number_of(&self, hash: &B256) -> Result<Option<u64>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HASHES)?;
        Ok(t.get(&hash.0)?.map(|v| v.value()))
    }

    /// The Bitcoin block block `number` was executed against.
    ///
    /// # Errors
    /// Database errors.
    pub fn pin(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PINS)?;
        Ok(t.get(number)?.map(|v| {
            let b = v.value();
            let mut h = [0u8; 4];
            h.copy_from_slice(&b[32..]);
            BlockRef {
                hash: bitcoin::BlockHash::from_byte_array(b[..32].try_into().unwrap_or([0; 32])),
                height: u32::from_be_bytes(h),
            }
        }))
    }

    /// Canonical block `number` with its transactions.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn block(&self, number: u64) -> Result<Option<StoredBlock>, ChainError> {
        let Some(header) = self.header(number)? else {
            return Ok(None);
        };
        let r = self.db.begin_read()?;
        let bodies = r.open_table(BODIES)?;
        let senders = r.open_table(SENDERS)?;
        let seal = match r.open_table(SEALS)?.get(number)? {
            Some(v) => Seal::from(*v.value()),
            None if number == 0 => Seal::ZERO,
            None => {
                return Err(ChainError::Corrupt(format!(
                    "seal of block {number} missing"
                )))
            }
        };
        let body = bodies
            .get(number)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let senders = senders
            .get(number)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let txs = crate::block::decode_txs(&mut body.as_slice())
            .map_err(|e| ChainError::Corrupt(format!("body {number}: {e}")))?;
        if senders.len() != txs.len() * 20 {
            return Err(ChainError::Corrupt(format!("senders of block {number}")));
        }
        let txs = txs
            .into_iter()
            .zip(senders.chunks(20))
            .map(|(tx, s)| SignedTx {
                hash: tx.hash(),
                sender: Address::from_slice(s),
                tx,
            })
            .collect();
        Ok(Some(StoredBlock {
            hash: header.hash_slow(),
            header,
            txs,
            seal,
        }))
    }

    fn remember(&self, b: BlockWithReceipts) {
        let mut cache = self.cache.lock();
        cache.insert(b.block.header.number, Arc::new(b));
        while cache.len() > CACHED_BLOCKS {
            cache.pop_first();
        }
    }

    /// Canonical block `number` with its receipts, from the cache of recent blocks when there.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn block_with_receipts(
        &self,
        number: u64,
    ) -> Result<Option<Arc<BlockWithReceipts>>, ChainError> {
        if let Some(b) = self.cache.lock().get(&number) {
            return Ok(Some(b.clone()));
        }
        let Some(block) = self.block(number)? else {
            return Ok(None);
        };
        let receipts = self.receipts(number)?.unwrap_or_default();
        let b = Arc::new(BlockWithReceipts { block, receipts });
        let mut cache = self.cache.lock();
        if number > self.head.read().number {
            return Ok(Some(b)); // read just before an unwind removed it: do not keep it
        }
        cache.insert(number, b.clone());
        while cache.len() > CACHED_BLOCKS {
            cache.pop_first();
        }
        Ok(Some(b))
    }

    /// The raw encoding of block `number` ([`L2Block::encode`]: `rlp([header, txs, seal])`).
    ///
    /// # Errors
    /// Database errors.
    pub fn raw_block(&self, number: u64) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.block(number)?.map(|b| b.to_l2_block().encode()))
    }

    /// Receipts of block `number`.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn receipts(&self, number: u64) -> Result<Option<Vec<L2Receipt>>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RECEIPTS)?;
        let Some(v) = t.get(number)? else {
            return Ok(None);
        };
        let mut b = v.value();
        let list: Vec<Bytes> = alloy_rlp::Decodable::decode(&mut b)
            .map_err(|e| ChainError::Corrupt(format!("receipts {number}: {e}")))?;
        list.iter()
            .map(|r| L2Receipt::decode_2718(r))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Where a mined transaction is: block number and index.
    ///
    /// # Errors
    /// Database errors.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<(u64, u64)>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TX_INDEX)?;
        Ok(t.get(&hash.0)?.map(|v| {
            let b = v.value();
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[..8]);
            let mut i = [0u8; 4];
            i.copy_from_slice(&b[8..]);
            (u64::from_be_bytes(n), u64::from(u32::from_be_bytes(i)))
        }))
    }

    /// State after block `number` (the newest state when `number` is the head).
    ///
    /// # Errors
    /// [`ChainError::UnknownBlock`] above the head; database errors.
    pub fn state_at(&self, number: u64) -> Result<StateView, ChainError> {
        let head = self.head.read().number;
        if number > head {
            return Err(ChainError::UnknownBlock(number));
        }
        // The head may have moved since; history answers for any block before the snapshot's.
        let snap = self.state.snapshot()?;
        if number > snap.head() {
            return Err(ChainError::UnknownBlock(number));
        }
        StateView::new(Arc::new(snap), &self.db.begin_read()?, Some(number))
    }

    /// The base fee of the block after `parent`.
    pub fn next_base_fee(parent: &Header) -> u64 {
        BaseFeeParams::ethereum().next_block_base_fee(
            parent.gas_used,
            parent.gas_limit,
            parent.base_fee_per_gas.unwrap_or_default(),
        )
    }

    fn block_context(&self, parent: &Header, timestamp: u64, beneficiary: Address) -> BlockContext {
        BlockContext {
            chain_id: self.spec.chain_id,
            number: parent.number + 1,
            timestamp,
            gas_limit: self.spec.gas_limit,
            base_fee: Self::next_base_fee(parent),
            beneficiary,
            prevrandao: parent.hash_slow(),
        }
    }

    /// The PoP payout block `number` carries (see [`crate::pop_rewards`]): for keystone
    /// `number − pop_payout_delay`, from `bitcoin`'s view up to its pinned block.
    ///
    /// # Errors
    /// Database errors; [`ChainError::BitcoinNotReady`] if the pinned block is not on the
    /// view's best chain.
    pub fn payout_for(
        &self,
        number: u64,
        bitcoin: &BitcoinPin,
    ) -> Result<Option<PopPayoutTx>, ChainError> {
        let (interval, delay) = (self.spec.keystone_interval, self.spec.pop_payout_delay);
        if interval == 0 || delay == 0 || number <= delay {
            return Ok(None);
        }
        let k = number - delay;
        if !k.is_multiple_of(interval) {
            return Ok(None);
        }
        let missing = |n: u64| ChainError::Corrupt(format!("header {n} missing"));
        let header = self.header(k)?.ok_or_else(|| missing(k))?;
        let prev = if k == interval {
            B256::ZERO
        } else {
            self.header(k - interval)?
                .ok_or_else(|| missing(k - interval))?
                .hash_slow()
        };
        let pinned = self.pin(k)?.map_or(0, |p| p.height);
        let id = crate::pop_rewards::keystone_from(&header, prev, pinned)
            .abbreviate()
            .id();
        crate::pop_rewards::compute_payout(
            bitcoin.view.as_ref(),
            bitcoin.pinned,
            k,
            &id.0,
            self.spec.pop_reward,
        )
    }

    /// The inputs of block `number`'s system transactions ([`crate::system`]): its Bitcoin
    /// attributes `attrs` (which resolve to `bitcoin`) and the PoP payout due in it.
    ///
    /// # Errors
    /// Database errors; [`ChainError::BitcoinNotReady`] if the pin is not on the view's best
    /// chain.
    pub fn system_inputs(
        &self,
        number: u64,
        attrs: &BtcAttributes,
        bitcoin: &BitcoinPin,
    ) -> Result<SystemInputs, ChainError> {
        Ok(SystemInputs {
            attrs: attrs.clone(),
            payout: self.payout_for(number, bitcoin)?,
        })
    }

    /// Builds, seals and commits the next block, in phases: the Bitcoin pin (`attrs`, resolving
    /// to `bitcoin`) → the system transactions ([`crate::system`]) → as many of `candidates` as
    /// apply, in order → roots → the seal by `sealer` → commit.
    ///
    /// # Errors
    /// Database errors; the sealer's.
    pub fn build_block(
        &self,
        bitcoin: &BitcoinPin,
        attrs: &BtcAttributes,
        candidates: Vec<SignedTx>,
        timestamp: u64,
        sealer: &dyn Sealer,
    ) -> Result<Built, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        let parent = self
            .header(head.number)?
            .ok_or_else(|| ChainError::Corrupt("head header missing".into()))?;
        let ctx = self.block_context(&parent, timestamp.max(parent.timestamp), sealer.address());
        let system = self.system_inputs(ctx.number, attrs, bitcoin)?.txs();
        let mut txs = Vec::with_capacity(candidates.len() + system.len());
        for tx in system {
            txs.push(SignedTx::recover(tx)?);
        }
        txs.extend(candidates);
        let (view, snap) = self.latest_view()?;
        let executed = exec::execute(view, &ctx, bitcoin.clone(), txs, Mode::Build)?;
        let diff = compute_diff(&snap, ctx.number, &changes_of(&executed.bundle))?;
        // Let go of the overlay before adding to it (a held copy would make the push copy).
        drop(snap);
        let w = self.begin_write()?;
        write_state_records(&w, ctx.number, &executed.bundle, &diff)?;
        let header = self.header_for(&parent, &ctx, diff.root, &executed);
        let hash = header.hash_slow();
        let seal = sealer.seal(self.spec.chain_id, hash)?;
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        let body: Vec<L2Tx> = executed.txs.iter().map(|t| t.tx.clone()).collect();
        Self::write_block(
            &w,
            &header,
            hash,
            &seal,
            &body,
            &senders,
            &executed.receipts,
            bitcoin.pinned,
        )?;
        w.commit()?;
        self.state.push(diff, hash);
        *self.head.write() = Head {
            number: header.number,
            hash,
        };
        self.remember(BlockWithReceipts {
            block: StoredBlock {
                header: header.clone(),
                hash,
                txs: executed.txs.clone(),
                seal,
            },
            receipts: executed.receipts.clone(),
        });
        Ok(Built {
            block: StoredBlock {
                header,
                hash,
                txs: executed.txs,
                seal,
            },
            receipts: executed.receipts,
            rejected: executed.rejected,
        })
    }

    /// Checks, re-executes and commits a block, in phases: header rules → the seal
    /// (`verifier`) → the Bitcoin pin (`bitcoin` resolves the block's pinned tip; it must be
    /// known to our own client) → the system transactions recomputed and compared
    /// ([`crate::system::check`]) → execution → roots → commit.
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] / [`ChainError::InvalidSeal`] naming what differs;
    /// [`ChainError::BitcoinNotReady`] when our Bitcoin client lacks the pinned block yet.
    pub fn import_block(
        &self,
        block: &L2Block,
        verifier: &dyn SealVerifier,
        bitcoin: &dyn Fn(&BtcAttributes) -> Result<BitcoinPin, ChainError>,
    ) -> Result<B256, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        let h = &block.header;
        if h.number != head.number + 1 {
            return Err(BlockError::NotNext {
                number: h.number,
                head: head.number,
            }
            .into());
        }
        if h.parent_hash != head.hash {
            return Err(BlockError::WrongParent {
                number: h.number,
                parent: h.parent_hash,
                head: head.number,
                head_hash: head.hash,
            }
            .into());
        }
        if !h.extra_data.is_empty() {
            return Err(BlockError::ExtraData {
                number: h.number,
                len: h.extra_data.len(),
            }
            .into());
        }
        let hash = h.hash_slow();
        verifier.verify(self.spec.chain_id, h.number, hash, &block.seal)?;
        let parent = self
            .header(head.number)?
            .ok_or_else(|| ChainError::Corrupt("head header missing".into()))?;
        if h.timestamp < parent.timestamp {
            return Err(BlockError::Timestamp {
                number: h.number,
                timestamp: h.timestamp,
                parent: parent.timestamp,
            }
            .into());
        }
        let ctx = self.block_context(&parent, h.timestamp, h.beneficiary);
        if h.gas_limit != ctx.gas_limit || h.base_fee_per_gas != Some(ctx.base_fee) {
            return Err(BlockError::GasParams {
                number: h.number,
                gas_limit: h.gas_limit,
                base_fee: h.base_fee_per_gas,
                expected_gas_limit: ctx.gas_limit,
                expected_base_fee: ctx.base_fee,
            }
            .into());
        }
        let tx_root = transactions_root(&block.txs);
        if tx_root != h.transactions_root {
            return Err(BlockError::TransactionsRoot {
                number: h.number,
                got: h.transactions_root,
                expected: tx_root,
            }
            .into());
        }
        let attrs = system::attributes_of(h.number, &block.txs)?;
        let pin = bitcoin(&attrs)?;
        let system = self.system_inputs(h.number, &attrs, &pin)?.txs();
        system::check(h.number, &block.txs, &system)?;
        let txs = block
            .txs
            .iter()
            .cloned()
            .map(SignedTx::recover)
            .collect::<Result<Vec<_>, _>>()?;
        let (view, snap) = self.latest_view()?;
        let executed = exec::execute(view, &ctx, pin.clone(), txs, Mode::Import)?;
        let diff = compute_diff(&snap, ctx.number, &changes_of(&executed.bundle))?;
        // Let go of the overlay before adding to it (a held copy would make the push copy).
        drop(snap);
        let expected = self.header_for(&parent, &ctx, diff.root, &executed);
        let checks = [
            ("state root", expected.state_root, h.state_root),
            ("receipts root", expected.receipts_root, h.receipts_root),
        ];
        for (root, ours, theirs) in checks {
            if ours != theirs {
                return Err(BlockError::Root {
                    number: h.number,
                    root,
                    got: theirs,
                    expected: ours,
                }
                .into());
            }
        }
        if expected.gas_used != h.gas_used || expected.logs_bloom != h.logs_bloom {
            return Err(BlockError::GasUsed {
                number: h.number,
                got: h.gas_used,
                expected: expected.gas_used,
            }
            .into());
        }
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        let w = self.begin_write()?;
        write_state_records(&w, h.number, &executed.bundle, &diff)?;
        Self::write_block(
            &w,
            h,
            hash,
            &block.seal,
            &block.txs,
            &senders,
            &executed.receipts,
            pin.pinned,
        )?;
        w.commit()?;
        self.state.push(diff, hash);
        *self.head.write() = Head {
            number: h.number,
            hash,
        };
        self.remember(BlockWithReceipts {
            block: StoredBlock {
                header: h.clone(),
                hash,
                txs: executed.txs,
                seal: block.seal,
            },
            receipts: executed.receipts,
        });
        Ok(hash)
    }

    /// Unwinds the canonical chain to block `target`: every block above it is removed with what
    /// it changed (state restored from the history tables, tries updated, the restored state
    /// root checked against block `target`'s header), in one database transaction. Returns the
    /// removed blocks, oldest first, so they can be imported again.
    ///
    /// # Errors
    /// [`ChainError::UnknownBlock`] when `target` is above the head; [`ChainError::Corrupt`]
    /// when a block has no changeset (written before schema version 3) or the restored root
    /// differs (nothing is changed then); database errors.
    pub fn unwind_to(&self, target: u64) -> Result<Vec<L2Block>, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        if target > head.number {
            return Err(ChainError::UnknownBlock(target));
        }
        let mut removed = Vec::new();
        for n in (target + 1..=head.number).rev() {
            let block = self
                .block(n)?
                .ok_or_else(|| ChainError::Corrupt(format!("canonical block {n} missing")))?;
            removed.push(block);
        }
        if removed.is_empty() {
            return Ok(Vec::new());
        }
        let target_block = self
            .block(target)?
            .ok_or_else(|| ChainError::Corrupt(format!("canonical block {target} missing")))?;
        // The state first (its database, if it holds a block above the target, commits on its
        // own: a crash before the blocks below are removed replays them on restart).
        let overlay =
            self.state
                .unwind_to(target, target_block.hash, &|n| self.changeset(n), &|n| {
                    self.header(n)?
                        .map(|h| h.state_root)
                        .ok_or_else(|| ChainError::Corrupt(format!("header {n} missing")))
                })?;
        let state_touched = self.state.range().0 < overlay.base;
        let removed_blocks = || -> Result<(), ChainError> {
            let w = self.begin_write()?;
            for block in &removed {
                delete_block(&w, block)?;
            }
            // A system transaction repeated in consecutive blocks (the same Bitcoin attributes)
            // has one index entry, pointing at the newest copy: point it back at the new head's.
            {
                let mut idx = w.open_table(TX_INDEX)?;
                for (i, tx) in target_block.txs.iter().enumerate() {
                    if idx.get(&tx.hash.0)?.is_none() {
                        let mut v = [0u8; 12];
                        v[..8].copy_from_slice(&target.to_be_bytes());
                        v[8..].copy_from_slice(&(i as u32).to_be_bytes());
                        idx.insert(&tx.hash.0, &v)?;
                    }
                }
            }
            // Readers stop at the new head before the blocks above it disappear.
            *self.head.write() = Head {
                number: target,
                hash: target_block.hash,
            };
            w.commit()?;
            Ok(())
        };
        if let Err(e) = removed_blocks() {
            *self.head.write() = head;
            if !state_touched {
                self.state.restore(overlay);
            } else if let Err(again) = self.replay(target + 1, head.number) {
                // The state database is at the target, the blocks are not: the next open
                // replays them.
                return Err(ChainError::Corrupt(format!(
                    "unwinding to {target} failed ({e}), and putting the state back failed too                      ({again}): reopen the chain"
                )));
            }
            return Err(e);
        }
        self.cache.lock().retain(|n, _| *n <= target);
        self.unwinds.lock().push(target);
        Ok(removed.iter().rev().map(StoredBlock::to_l2_block).collect())
    }

    /// Unwinds since the first `seen` (as counted by the returned number): how many there have
    /// been in all, and the lowest block they unwound to, if any happened after `seen`.
    pub fn unwinds_since(&self, seen: usize) -> (usize, Option<u64>) {
        let u = self.unwinds.lock();
        (u.len(), u.get(seen..).and_then(|s| s.iter().min().copied()))
    }

    fn header_for(
        &self,
        parent: &Header,
        ctx: &BlockContext,
        state_root: B256,
        executed: &Executed,
    ) -> Header {
        let body: Vec<L2Tx> = executed.txs.iter().map(|t| t.tx.clone()).collect();
        Header {
            parent_hash: parent.hash_slow(),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: ctx.beneficiary,
            state_root,
            transactions_root: transactions_root(&body),
            receipts_root: receipts_root(&executed.receipts),
            logs_bloom: logs_bloom(&executed.receipts),
            difficulty: U256::ZERO,
            number: ctx.number,
            gas_limit: ctx.gas_limit,
            gas_used: executed.gas_used,
            timestamp: ctx.timestamp,
            extra_data: Bytes::new(),
            mix_hash: ctx.prevrandao,
            nonce: Default::default(),
            base_fee_per_gas: Some(ctx.base_fee),
            ..Default::default()
        }
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, ChainError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.set_quick_repair(true);
        Ok(w)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_block(
        w: &redb::WriteTransaction,
        header: &Header,
        hash: B256,
        seal: &Seal,
        txs: &[L2Tx],
        senders: &[Address],
        receipts: &[L2Receipt],
        pin: BlockRef,
    ) -> Result<(), ChainError> {
        let n = header.number;
        w.open_table(HEADERS)?
            .insert(n, alloy_rlp::encode(header).as_slice())?;
        w.open_table(CANONICAL)?.insert(n, &hash.0)?;
        w.open_table(HASHES)?.insert(&hash.0, n)?;
        if n != 0 {
            let s: &[u8; SEAL_LEN] = &seal.0;
            w.open_table(SEALS)?.insert(n, s)?;
        }
        w.open_table(BODIES)?
            .insert(n, crate::block::encode_txs(txs).as_slice())?;
        let s: Vec<u8> = senders.iter().flat_map(|a| a.0 .0).collect();
        w.open_table(SENDERS)?.insert(n, s.as_slice())?;
        let encoded: Vec<Bytes> = receipts
            .iter()
            .map(|r| Bytes::from(r.encoded_2718()))
            .collect();
        w.open_table(RECEIPTS)?
            .insert(n, alloy_rlp::encode(&encoded).as_slice())?;
        let mut p = [0u8; 36];
        p[..32].copy_from_slice(pin.hash.as_byte_array());
        p[32..].copy_from_slice(&pin.height.to_be_bytes());
        w.open_table(PINS)?.insert(n, &p)?;
        let mut idx = w.open_table(TX_INDEX)?;
        for (i, tx) in txs.iter().enumerate() {
            let mut v = [0u8; 12];
            v[..8].copy_from_slice(&n.to_be_bytes());
            v[8..].copy_from_slice(&(i as u32).to_be_bytes());
            idx.insert(&tx.hash().0, &v)?;
        }
        Ok(())
    }

    /// Runs a call on the state after block `number` without committing it.
    ///
    /// # Errors
    /// [`ChainError::Call`] when the transaction is invalid (e.g. insufficient funds);
    /// database errors.
    pub fn call(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        bitcoin: BitcoinPin,
        timestamp: Option<u64>,
    ) -> Result<CallOutcome, ChainError> {
        let header = self
            .header(number)?
            .ok_or(ChainError::UnknownBlock(number))?;
        let view = self.state_at(number)?;
        let mut db = CacheDB::new(WrapDatabaseRef(view));
        if let Some(o) = overrides {
            apply_overrides(&mut db, o)?;
        }
        let mut ctx = self.block_context(
            &header,
            timestamp.unwrap_or(header.timestamp),
            header.beneficiary,
        );
        // A call sees the block after `number` (like geth's pending-block semantics for call).
        ctx.number = header.number + 1;
        let zero_price = tx.gas_price == 0 && tx.gas_priority_fee.unwrap_or(0) == 0;
        let chain_id = self.spec.chain_id;
        let mut evm = Context::mainnet()
            .with_db(db)
            .modify_cfg_chained(|c| {
                c.spec = SPEC;
                c.chain_id = chain_id;
                c.disable_nonce_check = true;
                c.disable_base_fee = true;
                c.disable_balance_check = zero_price;
                c.disable_block_gas_limit = true;
                c.disable_eip3607 = true;
            })
            .with_block(ctx.block_env())
            .build_mainnet()
            .with_precompiles(hemi_hvm::HvmPrecompiles::new(SPEC, bitcoin));
        match evm.transact(tx) {
            Ok(r) => Ok(match r.result {
                ExecutionResult::Success { output, gas, .. } => CallOutcome::Success {
                    output: output.into_data(),
                    gas_used: gas.tx_gas_used(),
                },
                ExecutionResult::Revert { output, gas, .. } => CallOutcome::Revert {
                    output,
                    gas_used: gas.tx_gas_used(),
                },
                ExecutionResult::Halt { reason, gas, .. } => CallOutcome::Halt {
                    reason: halt_message(&reason),
                    gas_used: gas.tx_gas_used(),
                },
            }),
            Err(EVMError::Transaction(e)) => Err(ChainError::Call(exec::invalid_tx_message(&e))),
            Err(EVMError::Database(e)) => Err(e),
            Err(e) => Err(ChainError::Call(e.to_string())),
        }
    }

    /// Logs of blocks `from..=to` whose block bloom passes `bloom` and that `matches` accepts;
    /// at most `limit`.
    ///
    /// # Errors
    /// [`ChainError::TooManyLogs`] past `limit`; database errors.
    pub fn logs(
        &self,
        from: u64,
        to: u64,
        bloom: &dyn Fn(&Bloom) -> bool,
        matches: &dyn Fn(&Log) -> bool,
        limit: usize,
    ) -> Result<Vec<LocatedLog>, ChainError> {
        let mut out = Vec::new();
        for n in from..=to {
            let Some(header) = self.header(n)? else {
                break;
            };
            if !bloom(&header.logs_bloom) {
                continue;
            }
            let Some(cached) = self.block_with_receipts(n)? else {
                break;
            };
            let (block, receipts) = (&cached.block, &cached.receipts);
            let mut log_index = 0u64;
            for (i, (r, tx)) in receipts.iter().zip(&block.txs).enumerate() {
                for log in &r.receipt.logs {
                    if matches(log) {
                        if out.len() >= limit {
                            return Err(ChainError::TooManyLogs(limit));
                        }
                        out.push(LocatedLog {
                            log: log.clone(),
                            block_number: n,
                            block_hash: block.hash,
                            block_timestamp: header.timestamp,
                            tx_hash: tx.hash,
                            tx_index: i as u64,
                            log_index,
                        });
                    }
                    log_index += 1;
                }
            }
        }
        Ok(out)
    }

    /// An EIP-1186 proof of `address` and `slots` against the newest state root.
    ///
    /// # Errors
    /// Database errors.
    pub fn proof(
        &self,
        address: Address,
        slots: &[B256],
    ) -> Result<(u64, AccountProof), ChainError> {
        let snap = self.state.snapshot()?;
        let number = snap.head();
        let account = snap.account(&address)?.unwrap_or(StoredAccount {
            code_hash: alloy_primitives::KECCAK256_EMPTY,
            storage_root: EMPTY_ROOT_HASH,
            ..Default::default()
        });
        let account_proof = hemi_trie::proof(&snap.account_nodes(), keccak256(address))?;
        let mut out = Vec::new();
        for slot in slots {
            let value = snap.storage(&address, slot)?;
            let nodes = hemi_trie::proof(&snap.storage_nodes(address), keccak256(slot))?;
            out.push((*slot, value, nodes));
        }
        Ok((
            number,
            AccountProof {
                account,
                account_proof,
                storage: out,
            },
        ))
    }
}

fn halt_message(reason: &revm::context_interface::result::HaltReason) -> String {
    use revm::context_interface::result::{HaltReason, OutOfGasError};
    match reason {
        HaltReason::OutOfGas(OutOfGasError::Basic)
        | HaltReason::OutOfGas(OutOfGasError::Memory)
        | HaltReason::OutOfGas(OutOfGasError::MemoryLimit)
        | HaltReason::OutOfGas(_) => "out of gas".into(),
        HaltReason::OpcodeNotFound | HaltReason::InvalidFEOpcode => "invalid opcode".into(),
        HaltReason::StackUnderflow => "stack underflow".into(),
        HaltReason::StackOverflow => "stack overflow".into(),
        HaltReason::InvalidJump => "invalid jump destination".into(),
        HaltReason::PrecompileError | HaltReason::PrecompileErrorWithContext(_) => {
            "precompile failed".into()
        }
        other => format!("{other:?}"),
    }
}

fn apply_overrides(
    db: &mut CacheDB<WrapDatabaseRef<StateView>>,
    overrides: &StateOverride,
) -> Result<(), ChainError> {
    use revm::database_interface::DatabaseRef;
    for (address, o) in overrides {
        let mut info: AccountInfo = db.basic_ref(*address)?.unwrap_or_default();
        if let Some(b) = o.balance {
            info.balance = b;
        }
        if let Some(n) = o.nonce {
            info.nonce = n;
        }
        if let Some(code) = &o.code {
            let c = Bytecode::new_raw(code.clone());
            info.code_hash = c.hash_slow();
            info.code = Some(c);
        }
        db.insert_account_info(*address, info);
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(ChainError::Call(format!(
                "account {address} has both 'state' and 'stateDiff'"
            )));
        }
        if let Some(state) = &o.state {
            let slots = state
                .iter()
                .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                .collect();
            db.replace_account_storage(*address, slots)?;
        }
        if let Some(diff) = &o.state_diff {
            for (k, v) in diff {
                db.insert_account_storage(
                    *address,
                    U256::from_be_bytes(k.0),
                    U256::from_be_bytes(v.0),
                )?;
            }
        }
    }
    Ok(())
}

/// What a block's execution changed, per account, as a changeset.
fn changes_of(bundle: &BundleState) -> ChangeSet {
    let mut addresses: Vec<&Address> = bundle.state.keys().collect();
    addresses.sort();
    let accounts = addresses
        .into_iter()
        .map(|address| {
            let acc = &bundle.state[address];
            let wiped = acc.was_destroyed();
            let mut slots: Vec<(B256, U256)> = acc
                .storage
                .iter()
                .filter(|(_, s)| wiped || s.present_value != s.previous_or_original_value)
                .map(|(k, s)| (u256_word(*k), s.present_value))
                .collect();
            slots.sort();
            AccountChange {
                address: *address,
                changed: true,
                wiped,
                info: acc.info.as_ref().map(|i| Info {
                    nonce: i.nonce,
                    balance: i.balance,
                    code_hash: i.code_hash,
                }),
                slots,
            }
        })
        .collect();
    ChangeSet { accounts }
}

/// Writes what a block adds to the blocks database besides the block: new code and its
/// changeset.
fn write_state_records(
    w: &redb::WriteTransaction,
    number: u64,
    bundle: &BundleState,
    diff: &BlockDiff,
) -> Result<(), ChainError> {
    let mut code = w.open_table(CODE)?;
    for (hash, bytecode) in &bundle.contracts {
        if code.get(&hash.0)?.is_none() {
            code.insert(&hash.0, bytecode.original_byte_slice())?;
        }
    }
    w.open_table(CHANGESETS)?
        .insert(number, diff.changeset().encode().as_slice())?;
    Ok(())
}

/// `<stem>-state.<ext>` next to the blocks database: the state database.
fn state_path(blocks: &Path) -> std::path::PathBuf {
    let stem = blocks
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "l2".into());
    let name = match blocks.extension() {
        Some(ext) => format!("{stem}-state.{}", ext.to_string_lossy()),
        None => format!("{stem}-state"),
    };
    blocks.with_file_name(name)
}

/// Removes a block's records (not its state: see [`unwind_state`]).
fn delete_block(w: &redb::WriteTransaction, block: &StoredBlock) -> Result<(), ChainError> {
    let n = block.header.number;
    w.open_table(HEADERS)?.remove(n)?;
    w.open_table(CANONICAL)?.remove(n)?;
    w.open_table(HASHES)?.remove(&block.hash.0)?;
    w.open_table(SEALS)?.remove(n)?;
    w.open_table(BODIES)?.remove(n)?;
    w.open_table(SENDERS)?.remove(n)?;
    w.open_table(RECEIPTS)?.remove(n)?;
    w.open_table(PINS)?.remove(n)?;
    w.open_table(CHANGESETS)?.remove(n)?;
    let mut idx = w.open_table(TX_INDEX)?;
    for tx in &block.txs {
        let here = idx
            .get(&tx.hash.0)?
            .is_some_and(|v| v.value()[..8] == n.to_be_bytes());
        if here {
            idx.remove(&tx.hash.0)?;
        }
    }
    Ok(())
}

/// Gas used by transaction `index`: the difference of consecutive cumulative gas values
/// (receipts store only the cumulative figure).
pub fn gas_used_by(receipts: &[L2Receipt], index: usize) -> u64 {
    let cum = receipts
        .get(index)
        .map(|r| r.receipt.cumulative_gas_used)
        .unwrap_or_default();
    let prev = index
        .checked_sub(1)
        .and_then(|i| receipts.get(i))
        .map(|r| r.receipt.cumulative_gas_used)
        .unwrap_or_default();
    cum - prev
}

/// The address a contract-creating transaction made.
pub fn created_address(tx: &SignedTx) -> Option<Address> {
    match &tx.tx {
        L2Tx::Eth(env) if env.kind().is_create() => Some(tx.sender.create(env.nonce())),
        _ => None,
    }
}

/// Creates every table so readers never meet a missing one.
fn create_tables(w: &redb::WriteTransaction) -> Result<(), ChainError> {
    for t in [HEADERS, BODIES, SENDERS, RECEIPTS] {
        w.open_table(t)?;
    }
    w.open_table(CANONICAL)?;
    w.open_table(HASHES)?;
    w.open_table(PINS)?;
    w.open_table(SEALS)?;
    w.open_table(TX_INDEX)?;
    w.open_table(CODE)?;
    w.open_table(CHANGESETS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_another_schema_version_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("l2.redb");
        let chain = Chain::open(Some(&path), ChainSpec::devnet().expect("spec")).expect("open");
        let genesis = chain.block(0).expect("read").expect("genesis");
        assert_eq!(genesis.seal, Seal::ZERO, "genesis is unsealed");
        assert!(genesis.header.extra_data.is_empty());
        // What a version-1 database (seal inside extraData) says about itself.
        let w = chain.db.begin_write().expect("write");
        w.open_table(META)
            .expect("meta")
            .insert("schema_version", 1u32.to_le_bytes().as_slice())
            .expect("insert");
        w.commit().expect("commit");
        drop(chain);
        let err = Chain::open(Some(&path), ChainSpec::devnet().expect("spec")).expect_err("v1");
        assert_eq!(
            err,
            ChainError::SchemaVersion {
                found: 1,
                expected: SCHEMA_VERSION
            }
        );
        assert_eq!(
            err.to_string(),
            format!("database schema version 1, this build reads {SCHEMA_VERSION}")
        );
    }
}
