//! The L2 chain: genesis, building and importing blocks, and reading blocks, receipts and state.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_consensus::{Header, Transaction};
use alloy_primitives::{Address, Bytes, Log, B256, U256};
use hemi_trie::TrieError;
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase};

use crate::block::{L2Block, L2Receipt, Seal};
use crate::db::*;
use crate::state::{Snapshot, StateStore, StateView};
use crate::tx::SignedTx;
use crate::{ChainError, ChainSpec};

mod build;
mod open;
mod query;
mod read;
mod unwind;

/// A block as read back: header, hash, transactions with senders, seal.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// Header.
    pub header: Header,
    /// Hash.
    pub hash: B256,
    /// Transactions with hashes and senders.
    pub txs: Vec<SignedTx>,
    /// The sequencer's seal (all zero for genesis and for certified blocks).
    pub seal: Seal,
    /// The validator set's commit certificate (a chain ordered by a set).
    pub certificate: Option<crate::Certificate>,
}

impl StoredBlock {
    /// The block as it travels ([`L2Block::encode`]).
    pub fn to_l2_block(&self) -> L2Block {
        L2Block {
            header: self.header.clone(),
            txs: self.txs.iter().map(|t| t.tx.clone()).collect(),
            seal: self.seal,
            certificate: self.certificate.clone(),
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
    /// Test-only: build blocks without their due forced transactions (a censoring sequencer).
    pub(crate) skip_forced: std::sync::atomic::AtomicBool,
    /// The last block executed but not committed (proposed or validated for a sequencer set):
    /// its import commits this result instead of executing the block again.
    executed: Mutex<Option<build::ExecutedBlock>>,
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
    /// A view of the newest state, and its snapshot (which remembers what the view read, so
    /// the block's diff does not read it again).
    pub(crate) fn latest_view(&self) -> Result<(StateView, Arc<Snapshot>), ChainError> {
        let snap = Arc::new(self.state.snapshot()?);
        Ok((
            StateView::new(snap.clone(), &self.db.begin_read()?, None)?,
            snap,
        ))
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
    let env = tx.tx.user_envelope()?;
    env.kind()
        .is_create()
        .then(|| tx.sender.create(env.nonce()))
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
