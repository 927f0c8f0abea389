//! The node itself: a chain store, a mempool, and a miner that makes consensus-valid regtest
//! blocks (BIP34 height in the coinbase, witness commitment, Merkle root, proof of work).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};
use hemi_btc_store::{Advance, ChainStore, StoreError};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::mempool::{Accepted, Coin, Mempool, Reject, ScriptFailure};

/// Most weight a mined block may carry (consensus limit 4M, less the coinbase's room).
const MAX_BLOCK_WEIGHT: u64 = 3_996_000;

/// Something that happened on the node that peers and clients may want to hear about.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// The best chain has a new tip.
    Tip {
        /// New tip hash.
        hash: BlockHash,
        /// New tip height.
        height: u32,
    },
    /// A transaction entered the mempool.
    Tx(Txid),
}

/// Errors of node operations.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mempool refused a transaction.
    #[error(transparent)]
    Rejected(#[from] Reject),
}

/// The embedded regtest node.
pub struct RegtestNode {
    store: Arc<ChainStore>,
    mempool: Mutex<Mempool>,
    events: broadcast::Sender<NodeEvent>,
    /// Serialises block production so two miners never build on the same parent at once.
    mining: Mutex<u64>,
}

impl std::fmt::Debug for RegtestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegtestNode")
            .field("tip", &self.store.indexed_tip())
            .finish()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Block subsidy at `height` on regtest (halving every 150 blocks).
pub fn regtest_subsidy(height: u32) -> Amount {
    let halvings = height / 150;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000u64) >> halvings)
}

impl RegtestNode {
    /// A node over `store` (which must be a regtest store).
    pub fn new(store: Arc<ChainStore>) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(RegtestNode {
            store,
            mempool: Mutex::new(Mempool::default()),
            events,
            mining: Mutex::new(0),
        })
    }

    /// The chain store.
    pub fn store(&self) -> &Arc<ChainStore> {
        &self.store
    }

    /// Subscribe to new tips and transactions.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Runs a closure with the mempool locked.
    pub fn with_mempool<R>(&self, f: impl FnOnce(&Mempool) -> R) -> R {
        f(&self.mempool.lock())
    }

    fn chain_coin(&self) -> impl Fn(&OutPoint) -> Option<Coin> + '_ {
        |op| {
            self.store.utxo(op).ok().flatten().map(|u| Coin {
                txout: TxOut {
                    value: Amount::from_sat(u.value),
                    script_pubkey: u.script_pubkey,
                },
                height: Some(u.height),
                coinbase: u.coinbase,
            })
        }
    }

    fn verify(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), ScriptFailure> {
        hemi_btc_wallet::verify_transaction(tx, prevouts).map_err(|e| ScriptFailure {
            reason: e.to_string(),
            input: e.input(),
        })
    }

    /// Adds a transaction to the mempool (`sendrawtransaction`). `max_feerate_kvb` is Core's
    /// `maxfeerate` in sat/kvB (0 or `None` = no limit).
    ///
    /// # Errors
    /// [`Reject`] with Core's reason and code; `-27` if it is already confirmed.
    pub fn submit_transaction(
        &self,
        tx: Transaction,
        max_feerate_kvb: Option<u64>,
    ) -> Result<Accepted, Reject> {
        let txid = tx.compute_txid();
        {
            let pool = self.mempool.lock();
            if let Some(e) = pool.get(&txid) {
                // Core answers the txid for a transaction it already has.
                return Ok(Accepted {
                    txid,
                    wtxid: e.wtxid,
                    fee: e.fee,
                    vsize: e.vsize,
                    replaced: vec![],
                });
            }
        }
        if self.confirmed_outputs_exist(&tx) {
            return Err(Reject::other(
                "Transaction outputs already in utxo set",
                crate::mempool::codes::RPC_VERIFY_ALREADY_IN_CHAIN,
            ));
        }
        let tip = self.store.indexed_tip().height;
        let acc = self.mempool.lock().accept(
            tx,
            &self.chain_coin(),
            tip,
            &Self::verify,
            max_feerate_kvb,
            now_secs(),
        )?;
        tracing::debug!(txid = %acc.txid, fee = acc.fee, vsize = acc.vsize, "mempool accepted");
        let _ = self.events.send(NodeEvent::Tx(acc.txid));
        Ok(acc)
    }

    fn confirmed_outputs_exist(&self, tx: &Transaction) -> bool {
        let txid = tx.compute_txid();
        (0..tx.output.len() as u32).any(|v| {
            self.store
                .utxo(&OutPoint::new(txid, v))
                .ok()
                .flatten()
                .is_some()
        })
    }

    /// Checks a transaction without adding it (`testmempoolaccept`).
    ///
    /// # Errors
    /// [`Reject`] with Core's reason.
    pub fn test_transaction(
        &self,
        tx: &Transaction,
        max_feerate_kvb: Option<u64>,
    ) -> Result<Accepted, Reject> {
        if self.confirmed_outputs_exist(tx) {
            return Err(Reject::other(
                "txn-already-known",
                crate::mempool::codes::RPC_VERIFY_ALREADY_IN_CHAIN,
            ));
        }
        let tip = self.store.indexed_tip().height;
        let pool = self.mempool.lock();
        pool.check(tx, &self.chain_coin(), tip, &Self::verify, max_feerate_kvb)
            .map(|(a, _)| a)
    }

    /// Mines `n` blocks paying to `script` (`generatetoaddress`), taking mempool transactions.
    ///
    /// # Errors
    /// Store errors.
    pub fn mine(&self, n: u32, script: &ScriptBuf) -> Result<Vec<BlockHash>, NodeError> {
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let txs = self.mempool.lock().select(MAX_BLOCK_WEIGHT);
            out.push(self.mine_block_with(script, txs)?);
        }
        Ok(out)
    }

    /// Mines one block with exactly `txs` after the coinbase (`generateblock`).
    ///
    /// # Errors
    /// Store errors, or [`StoreError::BadBlock`] if the transactions do not connect.
    pub fn mine_block_with(
        &self,
        script: &ScriptBuf,
        txs: Vec<Transaction>,
    ) -> Result<BlockHash, NodeError> {
        let mut extra = self.mining.lock();
        *extra += 1;
        let tip = self.store.indexed_tip();
        let height = tip.height + 1;
        let (mtp, parent_bits) = {
            let tree = self.store.headers();
            let mtp = tree.median_time_past(&tip.hash).unwrap_or(0);
            let bits = tree
                .get(&tip.hash)
                .map(|n| n.header.bits)
                .unwrap_or(CompactTarget::from_consensus(0x207f_ffff));
            (mtp, bits)
        };
        // Fees of the chosen transactions.
        let mut fees = 0u64;
        {
            let pool = self.mempool.lock();
            for tx in &txs {
                if let Some(e) = pool.get(&tx.compute_txid()) {
                    fees += e.fee;
                }
            }
        }
        let mut block = build_block(
            tip.hash,
            height,
            parent_bits,
            mtp,
            script,
            txs,
            fees,
            *extra,
        );
        grind(&mut block.header);
        let hash = block.block_hash();
        let now = now_secs() as u32;
        self.store.put_block(&block, now)?;
        let adv = self.store.advance(usize::MAX)?;
        if let Some((bad, reason)) = adv.invalid.first() {
            return Err(NodeError::Store(StoreError::BadBlock {
                hash: *bad,
                height,
                reason: reason.clone(),
            }));
        }
        self.after_advance(&adv);
        Ok(hash)
    }

    /// Accepts a block from a peer or `submitblock`.
    ///
    /// # Errors
    /// Header or block errors from the store.
    pub fn submit_block(&self, block: &Block) -> Result<Advance, NodeError> {
        self.store.put_block(block, now_secs() as u32)?;
        let adv = self.store.advance(usize::MAX)?;
        self.after_advance(&adv);
        Ok(adv)
    }

    /// `invalidateblock`.
    ///
    /// # Errors
    /// Unknown block or store errors.
    pub fn invalidate_block(&self, hash: &BlockHash) -> Result<(), NodeError> {
        let adv = self.store.invalidate_block(hash)?;
        self.after_advance(&adv);
        Ok(())
    }

    /// `reconsiderblock`.
    ///
    /// # Errors
    /// Unknown block or store errors.
    pub fn reconsider_block(&self, hash: &BlockHash) -> Result<(), NodeError> {
        let adv = self.store.reconsider_block(hash)?;
        self.after_advance(&adv);
        Ok(())
    }

    /// Keeps the mempool in step with the chain: disconnected blocks' transactions go back in,
    /// connected blocks' transactions (and their conflicts) leave.
    fn after_advance(&self, adv: &Advance) {
        if adv.connected.is_empty() && adv.disconnected.is_empty() {
            return;
        }
        let mut back = Vec::new();
        for b in &adv.disconnected {
            if let Ok(Some(block)) = self.store.block(&b.hash) {
                back.extend(block.txdata.into_iter().skip(1));
            }
        }
        for b in &adv.connected {
            if let Ok(Some(block)) = self.store.block(&b.hash) {
                self.mempool.lock().block_connected(&block);
            }
        }
        let tip = self.store.indexed_tip();
        for tx in back {
            let _ = self.mempool.lock().accept(
                tx,
                &self.chain_coin(),
                tip.height,
                &Self::verify,
                None,
                now_secs(),
            );
        }
        let _ = self.events.send(NodeEvent::Tip {
            hash: tip.hash,
            height: tip.height,
        });
    }

    /// Fee rate estimate in sat/kvB for confirmation within `target` blocks: the mempool's fee
    /// rate at the position that `target` blocks would clear, never below the relay minimum.
    pub fn estimate_fee_kvb(&self, target: u32) -> u64 {
        let mut rates = self.mempool.lock().feerates();
        rates.sort_unstable_by(|a, b| b.cmp(a));
        // One regtest block takes everything; with a backlog, the rate at the cut-off.
        let per_block = 2_000usize;
        let idx = per_block.saturating_mul(target.max(1) as usize);
        let rate = rates.get(idx).copied().unwrap_or(0);
        rate.max(1_000) // 1 sat/vB floor, like Core's fallback on a quiet chain
    }
}

/// Builds a block template: coinbase (BIP34 height, extranonce, subsidy + fees, witness
/// commitment), the transactions, Merkle root; time just after the median time past.
#[allow(clippy::too_many_arguments)]
pub fn build_block(
    parent: BlockHash,
    height: u32,
    bits: CompactTarget,
    mtp: u32,
    script: &ScriptBuf,
    txs: Vec<Transaction>,
    fees: u64,
    extranonce: u64,
) -> Block {
    let coinbase = coinbase(
        height,
        &extranonce.to_le_bytes(),
        vec![TxOut {
            value: regtest_subsidy(height) + Amount::from_sat(fees),
            script_pubkey: script.clone(),
        }],
    );
    let time = (now_secs() as u32).max(mtp + 1);
    let mut txdata = Vec::with_capacity(txs.len() + 1);
    txdata.push(coinbase);
    txdata.extend(txs);
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: parent,
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits,
            nonce: 0,
        },
        txdata,
    };
    seal(&mut block);
    block
}

/// A coinbase: the BIP34 height push, then `extra` (an extranonce, at most 75 bytes), the
/// witness reserved value (32 zero bytes), and `outputs`.
pub fn coinbase(height: u32, extra: &[u8], outputs: Vec<TxOut>) -> Transaction {
    let mut push = PushBytesBuf::new();
    let _ = push.extend_from_slice(&extra[..extra.len().min(75)]);
    let script_sig = Builder::new()
        .push_int(i64::from(height))
        .push_slice(push)
        .into_script();
    let mut witness = Witness::new();
    witness.push([0u8; 32]);
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness,
        }],
        output: outputs,
    }
}

/// Finishes a block's commitments: appends the BIP141 witness commitment to the coinbase
/// (always, as Bitcoin Core's miner does) and sets the Merkle root. Call before grinding.
pub fn seal(block: &mut Block) {
    if let Some(witness_root) = block.witness_root() {
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut payload = vec![0xaa, 0x21, 0xa9, 0xed];
        payload.extend_from_slice(commitment.as_byte_array());
        let mut pb = PushBytesBuf::new();
        let _ = pb.extend_from_slice(&payload);
        let commit_script = Builder::new()
            .push_opcode(bitcoin::opcodes::all::OP_RETURN)
            .push_slice(pb)
            .into_script();
        if let Some(cb) = block.txdata.first_mut() {
            cb.output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commit_script,
            });
        }
    }
    if let Some(root) = block.compute_merkle_root() {
        block.header.merkle_root = root;
    }
}

/// Finds a nonce that meets the header's target (regtest: about two tries).
pub fn grind(header: &mut Header) {
    let target = header.target();
    loop {
        if target.is_met_by(header.block_hash()) {
            return;
        }
        header.nonce = header.nonce.wrapping_add(1);
        if header.nonce == 0 {
            header.time += 1;
        }
    }
}
