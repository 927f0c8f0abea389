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
use hemi_trie::{Nibbles, NodeReader, StoredNode, TrieError, TrieUpdate};
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table};
use revm::context::TxEnv;
use revm::context_interface::result::{EVMError, ExecutionResult};
use revm::database::{BundleState, CacheDB};
use revm::database_interface::WrapDatabaseRef;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

use crate::block::{
    logs_bloom, receipts_root, seal, transactions_root, L2Block, L2Receipt, Seal, SEAL_LEN,
};
use crate::db::*;
use crate::exec::{self, BlockContext, CallOutcome, Executed, Mode, SPEC};
use crate::pop_rewards::PopPayoutTx;
use crate::tx::{BtcAttributesTx, L2Tx, SignedTx};
use crate::{ChainError, ChainSpec};

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

/// The L2 chain over one redb database. Share behind an `Arc`; reads never block writes.
pub struct Chain {
    db: Database,
    spec: ChainSpec,
    head: RwLock<Head>,
    write: Mutex<()>,
    cache: Mutex<BTreeMap<u64, Arc<BlockWithReceipts>>>,
    /// The target of every unwind since the chain was opened, in order.
    unwinds: Mutex<Vec<u64>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.spec.chain_id)
            .field("head", &self.head.read().number)
            .finish()
    }
}

/// Reads trie nodes from a redb table under a key prefix (empty for the account trie, the
/// address for a storage trie).
struct TableNodes<'a, T> {
    table: &'a T,
    prefix: &'a [u8],
}

fn node_key(prefix: &[u8], path: &Nibbles) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&path.to_vec());
    k
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> NodeReader for TableNodes<'_, T> {
    fn node(&self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        let key = node_key(self.prefix, path);
        match self.table.get(key.as_slice()) {
            Ok(Some(v)) => StoredNode::decode(v.value()).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(TrieError::Store {
                path: *path,
                reason: e.to_string(),
            }),
        }
    }
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
        let db = match path {
            Some(p) => {
                let mut b = Database::builder();
                b.set_cache_size(256 * 1024 * 1024);
                b.create(p)?
            }
            None => {
                Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?
            }
        };
        let chain = Chain {
            db,
            spec,
            head: RwLock::new(Head {
                number: 0,
                hash: B256::ZERO,
            }),
            write: Mutex::new(()),
            cache: Mutex::new(BTreeMap::new()),
            unwinds: Mutex::new(Vec::new()),
        };
        chain.init()?;
        Ok(chain)
    }

    fn init(&self) -> Result<(), ChainError> {
        let (genesis, alloc, nodes) = self.genesis()?;
        let mut w = self.db.begin_write()?;
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
                    meta.insert("chain_id", self.spec.chain_id.to_be_bytes().as_slice())?;
                    let mut accounts = w.open_table(ACCOUNTS)?;
                    for (addr, a) in &alloc {
                        accounts.insert(&addr.0 .0, encode_account(a).as_slice())?;
                    }
                    let mut trie = w.open_table(ACCOUNT_TRIE)?;
                    apply_nodes(&mut trie, &[], &nodes)?;
                }
                let hash = genesis.hash_slow();
                self.write_block(
                    &w,
                    &genesis,
                    hash,
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
                let stored = self
                    .header(0)?
                    .ok_or_else(|| ChainError::Corrupt("no genesis".into()))?;
                if stored.hash_slow() != genesis.hash_slow() {
                    return Err(ChainError::GenesisMismatch {
                        stored: stored.hash_slow(),
                        spec: genesis.hash_slow(),
                    });
                }
            }
        }
        let r = self.db.begin_read()?;
        let canonical = r.open_table(CANONICAL)?;
        let last = canonical
            .last()?
            .ok_or_else(|| ChainError::Corrupt("empty chain".into()))?;
        *self.head.write() = Head {
            number: last.0.value(),
            hash: B256::from(*last.1.value()),
        };
        Ok(())
    }

    /// The genesis header, its accounts and the account trie nodes of its state root.
    #[allow(clippy::type_complexity)]
    fn genesis(&self) -> Result<(Header, Vec<(Address, StoredAccount)>, TrieUpdate), ChainError> {
        let mut changes = BTreeMap::new();
        let mut alloc = Vec::new();
        for (addr, balance) in &self.spec.alloc {
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
            gas_limit: self.spec.gas_limit,
            gas_used: 0,
            timestamp: self.spec.timestamp,
            extra_data: Bytes::new(),
            mix_hash: B256::ZERO,
            nonce: Default::default(),
            base_fee_per_gas: Some(self.spec.base_fee_per_gas),
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
        let r = self.db.begin_read()?;
        // The head may have moved between reading it and opening the transaction; history
        // answers for any block before the transaction's own head.
        StateView::new(&r, Some(number))
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

    /// Builds, seals and commits the next block: the Bitcoin-attributes transaction for
    /// `attrs` (pinning `pin`), then as many of `candidates` as apply, in order.
    ///
    /// # Errors
    /// Database errors; a bad key.
    pub fn build_block(
        &self,
        bitcoin: &BitcoinPin,
        attrs: &BtcAttributes,
        candidates: Vec<SignedTx>,
        timestamp: u64,
        secret: B256,
    ) -> Result<Built, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        let parent = self
            .header(head.number)?
            .ok_or_else(|| ChainError::Corrupt("head header missing".into()))?;
        let sequencer = crate::eth_address(
            &bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice())
                .map_err(|e| ChainError::InvalidSeal(format!("sequencer key: {e}")))?,
        );
        let ctx = self.block_context(&parent, timestamp.max(parent.timestamp), sequencer);
        let mut txs = Vec::with_capacity(candidates.len() + 1);
        txs.push(SignedTx::recover(L2Tx::BtcAttributes(
            BtcAttributesTx::new(attrs),
        ))?);
        if let Some(payout) = self.payout_for(ctx.number, bitcoin)? {
            txs.push(SignedTx::recover(L2Tx::PopPayout(payout))?);
        }
        txs.extend(candidates);
        let view = StateView::new(&self.db.begin_read()?, None)?;
        let executed = exec::execute(view, &ctx, bitcoin.clone(), txs, Mode::Build)?;
        let w = self.begin_write()?;
        let state_root = apply_state(&w, ctx.number, &executed.bundle)?;
        let header = self.header_for(&parent, &ctx, state_root, &executed);
        let hash = header.hash_slow();
        let seal = seal(self.spec.chain_id, hash, secret)?;
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        let body: Vec<L2Tx> = executed.txs.iter().map(|t| t.tx.clone()).collect();
        self.write_block(
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

    /// Checks, re-executes and commits a block made by the sequencer `sequencer`.
    /// `bitcoin` resolves the block's pinned Bitcoin tip (it must be known to our own client).
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] / [`ChainError::InvalidSeal`] naming what differs;
    /// [`ChainError::BitcoinNotReady`] when our Bitcoin client lacks the pinned block yet.
    pub fn import_block(
        &self,
        block: &L2Block,
        sequencer: Address,
        bitcoin: &dyn Fn(&BtcAttributes) -> Result<BitcoinPin, ChainError>,
    ) -> Result<B256, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        let h = &block.header;
        if h.number != head.number + 1 {
            return Err(ChainError::InvalidBlock(format!(
                "block {} does not follow our head {}",
                h.number, head.number
            )));
        }
        if h.parent_hash != head.hash {
            return Err(ChainError::InvalidBlock(format!(
                "block {} has parent {}, our block {} is {}",
                h.number, h.parent_hash, head.number, head.hash
            )));
        }
        if !h.extra_data.is_empty() {
            return Err(ChainError::InvalidBlock(format!(
                "block {}: extraData is {} bytes, must be empty (the seal travels next to the \
                 header)",
                h.number,
                h.extra_data.len()
            )));
        }
        let hash = h.hash_slow();
        let signed_by = crate::block::signer(self.spec.chain_id, hash, &block.seal)?;
        if signed_by != sequencer {
            return Err(ChainError::InvalidSeal(format!(
                "block {} is signed by {signed_by}, not by the sequencer {sequencer}",
                h.number
            )));
        }
        let parent = self
            .header(head.number)?
            .ok_or_else(|| ChainError::Corrupt("head header missing".into()))?;
        if h.timestamp < parent.timestamp {
            return Err(ChainError::InvalidBlock(format!(
                "block {} timestamp {} is before its parent's {}",
                h.number, h.timestamp, parent.timestamp
            )));
        }
        let ctx = self.block_context(&parent, h.timestamp, h.beneficiary);
        if h.gas_limit != ctx.gas_limit || h.base_fee_per_gas != Some(ctx.base_fee) {
            return Err(ChainError::InvalidBlock(format!(
                "block {}: gas limit {} / base fee {:?}, expected {} / {}",
                h.number, h.gas_limit, h.base_fee_per_gas, ctx.gas_limit, ctx.base_fee
            )));
        }
        let tx_root = transactions_root(&block.txs);
        if tx_root != h.transactions_root {
            return Err(ChainError::InvalidBlock(format!(
                "block {}: transactions root {tx_root} != header's {}",
                h.number, h.transactions_root
            )));
        }
        let attrs = match block.txs.first() {
            Some(L2Tx::BtcAttributes(a)) => a.attributes()?,
            _ => {
                return Err(ChainError::InvalidBlock(format!(
                    "block {} does not begin with a Bitcoin-attributes transaction",
                    h.number
                )))
            }
        };
        let pin = bitcoin(&attrs)?;
        let payout = self.payout_for(h.number, &pin)?;
        let carried = match block.txs.get(1) {
            Some(L2Tx::PopPayout(p)) => Some(p),
            _ => None,
        };
        if payout.as_ref() != carried {
            let show = |p: Option<&PopPayoutTx>| match p {
                Some(p) => format!(
                    "keystone {} to {} publication(s)",
                    p.keystone,
                    p.payouts.len()
                ),
                None => "nothing".to_string(),
            };
            return Err(ChainError::InvalidBlock(format!(
                "block {}: its PoP payout pays {}, but Bitcoin up to the pinned block says {}",
                h.number,
                show(carried),
                show(payout.as_ref())
            )));
        }
        let txs = block
            .txs
            .iter()
            .cloned()
            .map(SignedTx::recover)
            .collect::<Result<Vec<_>, _>>()?;
        let view = StateView::new(&self.db.begin_read()?, None)?;
        let executed = exec::execute(view, &ctx, pin.clone(), txs, Mode::Import)?;
        let w = self.begin_write()?;
        let state_root = apply_state(&w, ctx.number, &executed.bundle)?;
        let expected = self.header_for(&parent, &ctx, state_root, &executed);
        let checks = [
            ("state root", expected.state_root, h.state_root),
            ("receipts root", expected.receipts_root, h.receipts_root),
        ];
        for (what, ours, theirs) in checks {
            if ours != theirs {
                w.abort()?;
                return Err(ChainError::InvalidBlock(format!(
                    "block {}: {what} {theirs} differs from re-execution's {ours}",
                    h.number
                )));
            }
        }
        if expected.gas_used != h.gas_used || expected.logs_bloom != h.logs_bloom {
            w.abort()?;
            return Err(ChainError::InvalidBlock(format!(
                "block {}: gas used {} (re-execution: {}) or logs bloom differ",
                h.number, h.gas_used, expected.gas_used
            )));
        }
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        self.write_block(
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
        let w = self.begin_write()?;
        for block in &removed {
            let n = block.header.number;
            let parent = if n == target + 1 {
                self.header(target)?
            } else {
                removed
                    .iter()
                    .find(|b| b.header.number == n - 1)
                    .map(|b| b.header.clone())
            }
            .ok_or_else(|| ChainError::Corrupt(format!("header {} missing", n - 1)))?;
            let root = unwind_state(&w, n)?;
            if root != parent.state_root {
                w.abort()?;
                return Err(ChainError::Corrupt(format!(
                    "unwinding block {n} restored state root {root}, block {} has {}",
                    n - 1,
                    parent.state_root
                )));
            }
            delete_block(&w, block)?;
        }
        // A system transaction repeated in consecutive blocks (the same Bitcoin attributes) has
        // one index entry, pointing at the newest copy: point it back at the new head's.
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
        if let Err(e) = w.commit() {
            *self.head.write() = head;
            return Err(e.into());
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
        &self,
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
        let _guard = self.write.lock();
        let number = self.head.read().number;
        let r = self.db.begin_read()?;
        let accounts = r.open_table(ACCOUNTS)?;
        let account = match accounts.get(&address.0 .0)? {
            Some(v) => decode_account(v.value())?.unwrap_or_default(),
            None => StoredAccount {
                code_hash: alloy_primitives::KECCAK256_EMPTY,
                storage_root: EMPTY_ROOT_HASH,
                ..Default::default()
            },
        };
        let account_trie = r.open_table(ACCOUNT_TRIE)?;
        let account_proof = hemi_trie::proof(
            &TableNodes {
                table: &account_trie,
                prefix: &[],
            },
            keccak256(address),
        )?;
        let storage_trie = r.open_table(STORAGE_TRIE)?;
        let storage = r.open_table(STORAGE)?;
        let mut out = Vec::new();
        for slot in slots {
            let value = storage
                .get(&storage_key(&address, slot))?
                .map(|v| U256::from_be_bytes(*v.value()))
                .unwrap_or_default();
            let nodes = hemi_trie::proof(
                &TableNodes {
                    table: &storage_trie,
                    prefix: address.as_slice(),
                },
                keccak256(slot),
            )?;
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

/// Writes a block's state changes (and their history) into `w` and returns the new state root.
fn apply_state(
    w: &redb::WriteTransaction,
    number: u64,
    bundle: &BundleState,
) -> Result<B256, ChainError> {
    let mut accounts = w.open_table(ACCOUNTS)?;
    let mut storage = w.open_table(STORAGE)?;
    let mut code = w.open_table(CODE)?;
    let mut account_trie = w.open_table(ACCOUNT_TRIE)?;
    let mut storage_trie = w.open_table(STORAGE_TRIE)?;
    let mut account_history = w.open_table(ACCOUNT_HISTORY)?;
    let mut storage_history = w.open_table(STORAGE_HISTORY)?;
    let mut changes = ChangeSet::default();
    let mut changed_slots = std::collections::BTreeSet::new();
    for (hash, bytecode) in &bundle.contracts {
        if code.get(&hash.0)?.is_none() {
            code.insert(&hash.0, bytecode.original_byte_slice())?;
        }
    }
    let mut addresses: Vec<&Address> = bundle.state.keys().collect();
    addresses.sort();
    let mut account_changes: BTreeMap<B256, Option<Vec<u8>>> = BTreeMap::new();
    for address in addresses {
        let acc = &bundle.state[address];
        let old = match accounts.get(&address.0 .0)? {
            Some(v) => decode_account(v.value())?,
            None => None,
        };
        let mut storage_root = old.map(|a| a.storage_root).unwrap_or(EMPTY_ROOT_HASH);
        let mut slot_changes: BTreeMap<B256, Option<Vec<u8>>> = BTreeMap::new();
        if acc.was_destroyed() {
            changes.wiped.push(*address);
            // Wipe every stored slot (recording history) and the storage trie.
            let from = storage_key(address, &B256::ZERO);
            let to = storage_key(address, &B256::repeat_byte(0xff));
            let wiped: Vec<([u8; 52], [u8; 32])> = storage
                .range::<&[u8; 52]>(&from..=&to)?
                .map(|e| e.map(|(k, v)| (*k.value(), *v.value())))
                .collect::<Result<_, _>>()?;
            for (k, v) in wiped {
                let slot = B256::from_slice(&k[20..]);
                let hk = storage_history_key(address, &slot, number);
                if storage_history.get(&hk)?.is_none() {
                    storage_history.insert(&hk, &v)?;
                    changed_slots.insert((*address, slot));
                }
                storage.remove(&k)?;
            }
            wipe_storage_trie(&mut storage_trie, address)?;
            storage_root = EMPTY_ROOT_HASH;
        }
        let mut slots: Vec<_> = acc.storage.iter().collect();
        slots.sort_by_key(|(k, _)| **k);
        for (slot, s) in slots {
            if !acc.was_destroyed() && s.present_value == s.previous_or_original_value {
                continue;
            }
            let key = u256_word(*slot);
            let sk = storage_key(address, &key);
            let hk = storage_history_key(address, &key, number);
            if storage_history.get(&hk)?.is_none() {
                let before = u256_word(s.previous_or_original_value);
                storage_history.insert(&hk, &before.0)?;
                changed_slots.insert((*address, key));
            }
            if s.present_value.is_zero() {
                storage.remove(&sk)?;
                slot_changes.insert(keccak256(key), None);
            } else {
                storage.insert(&sk, &u256_word(s.present_value).0)?;
                slot_changes.insert(keccak256(key), Some(alloy_rlp::encode(s.present_value)));
            }
        }
        if !slot_changes.is_empty() {
            let update = hemi_trie::update(
                &TableNodes {
                    table: &storage_trie,
                    prefix: address.as_slice(),
                },
                &slot_changes,
            )?;
            apply_nodes(&mut storage_trie, address.as_slice(), &update)?;
            storage_root = update.root;
        }
        let new = acc.info.as_ref().and_then(|info| {
            let a = StoredAccount {
                nonce: info.nonce,
                balance: info.balance,
                code_hash: info.code_hash,
                storage_root,
            };
            // EIP-161: an empty account does not exist.
            let empty = a.nonce == 0
                && a.balance.is_zero()
                && (a.code_hash == alloy_primitives::KECCAK256_EMPTY || a.code_hash == B256::ZERO)
                && a.storage_root == EMPTY_ROOT_HASH;
            (!empty).then_some(a)
        });
        if new == old {
            continue;
        }
        let hk = account_history_key(address, number);
        if account_history.get(&hk)?.is_none() {
            let before = old.map(|a| encode_account(&a).to_vec()).unwrap_or_default();
            account_history.insert(&hk, before.as_slice())?;
            changes.accounts.push(*address);
        }
        put_account(&mut accounts, &mut account_changes, address, new)?;
    }
    changes.slots = changed_slots.into_iter().collect();
    w.open_table(CHANGESETS)?
        .insert(number, changes.encode().as_slice())?;
    update_account_trie(&mut account_trie, &account_changes)
}

/// Stores `account` for `address` (removes it when `None`) and notes the account-trie change.
fn put_account(
    accounts: &mut Table<&'static [u8; 20], &'static [u8]>,
    trie_changes: &mut BTreeMap<B256, Option<Vec<u8>>>,
    address: &Address,
    account: Option<StoredAccount>,
) -> Result<(), ChainError> {
    match &account {
        Some(a) => {
            accounts.insert(&address.0 .0, encode_account(a).as_slice())?;
        }
        None => {
            accounts.remove(&address.0 .0)?;
        }
    }
    trie_changes.insert(keccak256(address), account.map(|a| a.trie_value()));
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

/// Applies `changes` (hashed address → new leaf, `None` to delete) to the account trie and
/// returns its root.
fn update_account_trie(
    account_trie: &mut Table<&'static [u8], &'static [u8]>,
    changes: &BTreeMap<B256, Option<Vec<u8>>>,
) -> Result<B256, ChainError> {
    let reader = TableNodes {
        table: &*account_trie,
        prefix: &[],
    };
    if changes.is_empty() {
        return Ok(hemi_trie::root(&reader)?);
    }
    let update = hemi_trie::update(&reader, changes)?;
    apply_nodes(account_trie, &[], &update)?;
    Ok(update.root)
}

/// Undoes block `number`'s state changes (it must be the newest block in `w`) and returns the
/// restored state root.
fn unwind_state(w: &redb::WriteTransaction, number: u64) -> Result<B256, ChainError> {
    let changes = match w.open_table(CHANGESETS)?.remove(number)? {
        Some(v) => ChangeSet::decode(v.value())?,
        None => {
            return Err(ChainError::Corrupt(format!(
                "block {number} has no changeset (written before schema version 3): it cannot be \
                 unwound"
            )))
        }
    };
    let mut accounts = w.open_table(ACCOUNTS)?;
    let mut storage = w.open_table(STORAGE)?;
    let mut account_trie = w.open_table(ACCOUNT_TRIE)?;
    let mut storage_trie = w.open_table(STORAGE_TRIE)?;
    let mut account_history = w.open_table(ACCOUNT_HISTORY)?;
    let mut storage_history = w.open_table(STORAGE_HISTORY)?;
    let missing =
        |what: String| ChainError::Corrupt(format!("block {number}: no history of {what}"));
    // Slots, grouped by account.
    let mut slot_changes: BTreeMap<Address, BTreeMap<B256, Option<Vec<u8>>>> = BTreeMap::new();
    for (address, slot) in &changes.slots {
        let before = *storage_history
            .remove(&storage_history_key(address, slot, number))?
            .ok_or_else(|| missing(format!("slot {slot} of {address}")))?
            .value();
        let sk = storage_key(address, slot);
        let value = U256::from_be_bytes(before);
        let leaf = if value.is_zero() {
            storage.remove(&sk)?;
            None
        } else {
            storage.insert(&sk, &before)?;
            Some(alloy_rlp::encode(value))
        };
        slot_changes
            .entry(*address)
            .or_default()
            .insert(keccak256(slot), leaf);
    }
    for address in &changes.wiped {
        // The block rebuilt this storage from nothing: rebuild the restored slots' trie whole.
        wipe_storage_trie(&mut storage_trie, address)?;
        let from = storage_key(address, &B256::ZERO);
        let to = storage_key(address, &B256::repeat_byte(0xff));
        let all: BTreeMap<B256, Option<Vec<u8>>> = storage
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
        slot_changes.insert(*address, all);
    }
    let mut storage_roots = BTreeMap::new();
    for (address, slots) in &slot_changes {
        let update = if changes.wiped.contains(address) {
            hemi_trie::update(&hemi_trie::MemNodes::new(), slots)?
        } else {
            hemi_trie::update(
                &TableNodes {
                    table: &storage_trie,
                    prefix: address.as_slice(),
                },
                slots,
            )?
        };
        apply_nodes(&mut storage_trie, address.as_slice(), &update)?;
        storage_roots.insert(*address, update.root);
    }
    let mut account_changes: BTreeMap<B256, Option<Vec<u8>>> = BTreeMap::new();
    for address in &changes.accounts {
        let before = account_history
            .remove(&account_history_key(address, number))?
            .ok_or_else(|| missing(format!("account {address}")))?
            .value()
            .to_vec();
        let before = decode_account(&before)?;
        let storage_root = before.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
        if storage_roots
            .get(address)
            .is_some_and(|root| *root != storage_root)
        {
            return Err(ChainError::Corrupt(format!(
                "unwinding block {number}: storage of {address} restored to root {}, its account \
                 says {storage_root}",
                storage_roots[address]
            )));
        }
        put_account(&mut accounts, &mut account_changes, address, before)?;
    }
    update_account_trie(&mut account_trie, &account_changes)
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
    w.open_table(STORAGE)?;
    w.open_table(STORAGE_TRIE)?;
    w.open_table(STORAGE_HISTORY)?;
    w.open_table(ACCOUNT_HISTORY)?;
    w.open_table(ACCOUNTS)?;
    w.open_table(ACCOUNT_TRIE)?;
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
