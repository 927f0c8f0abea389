//! Test helpers: deterministic regtest block building, a chain generator with an in-memory model
//! of the UTXO set (the outside truth the store is compared against), and index snapshots.
//!
//! Coinbase construction and block sealing are the embedded miner's own (`hemi_btc_regtest`,
//! a dev-dependency only); times here are deterministic (parent + 1) so chains can be rebuilt.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::serialize;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    absolute, Amount, Block, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, WPubkeyHash, Witness,
};
use hemi_btc_headers::ChainParams;
pub(crate) use hemi_btc_regtest::{coinbase, seal};
use hemi_btc_store::{AsOf, BitcoinView, ChainStore};
use hemi_btc_view::{BlockRef, IndexedTx, KeystonePublication, SpentBy, Utxo};

/// "Now" passed to the store: far enough ahead that no generated header is too new.
pub(crate) const NOW: u32 = 2_000_000_000;
/// Regtest's proof-of-work limit, which regtest blocks always use.
pub(crate) const REGTEST_BITS: u32 = 0x207f_ffff;
/// Fee every generated spend pays.
pub(crate) const FEE: u64 = 500;

pub(crate) fn params() -> ChainParams {
    ChainParams::new(Network::Regtest)
}

pub(crate) fn mem_store() -> ChainStore {
    ChainStore::in_memory(params()).expect("in-memory store")
}

/// A P2WPKH script whose 20-byte hash is the first 20 bytes of sha256(label): no EC needed.
pub(crate) fn script(label: &[u8]) -> ScriptBuf {
    let h = sha256::Hash::hash(label).to_byte_array();
    let mut w = [0u8; 20];
    w.copy_from_slice(&h[..20]);
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(w))
}

/// `n` distinct scripts labelled `tag-0 … tag-(n-1)`.
pub(crate) fn scripts(tag: &str, n: usize) -> Vec<ScriptBuf> {
    (0..n)
        .map(|i| script(format!("{tag}-{i}").as_bytes()))
        .collect()
}

/// Regtest block subsidy (halving every 150 blocks).
pub(crate) fn subsidy(height: u32) -> u64 {
    let halvings = height / 150;
    if halvings >= 64 {
        0
    } else {
        (50 * 100_000_000u64) >> halvings
    }
}

/// A spend of `inputs` with a dummy (signature-sized) witness: the store does not check scripts,
/// but the witness makes the transaction's serialization the segwit one, so byte offsets and
/// witness commitments are exercised.
pub(crate) fn spend(inputs: &[OutPoint], outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .iter()
            .map(|op| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0x30u8; 72], vec![0x02u8; 33]]),
            })
            .collect(),
        output: outputs,
    }
}

pub(crate) fn out(script: &ScriptBuf, value: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script.clone(),
    }
}

/// Finds a nonce that meets the header's own target (regtest: about two tries).
pub(crate) fn grind(header: &mut Header) {
    let target = header.target();
    while !target.is_met_by(header.block_hash()) {
        header.nonce = header.nonce.wrapping_add(1);
    }
}

/// A complete, mined regtest block on `parent` (time = parent time + 1); the coinbase carries
/// the height.
pub(crate) fn build_block(
    parent: &Header,
    coinbase_tx: Transaction,
    txs: Vec<Transaction>,
) -> Block {
    let mut txdata = Vec::with_capacity(txs.len() + 1);
    txdata.push(coinbase_tx);
    txdata.extend(txs);
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: parent.block_hash(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: parent.time + 1,
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            nonce: 0,
        },
        txdata,
    };
    seal(&mut block);
    grind(&mut block.header);
    block
}

/// Puts every block and advances as far as possible.
pub(crate) fn connect_all(store: &ChainStore, blocks: &[Block]) {
    for b in blocks {
        store.put_block(b, NOW).expect("put_block");
    }
    let adv = store.advance(usize::MAX).expect("advance");
    assert!(
        adv.invalid.is_empty(),
        "unexpected invalid blocks: {:?}",
        adv.invalid
    );
}

/// A coin of the model UTXO set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coin {
    pub txout: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// An in-memory model of what the indexes should say after a sequence of blocks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    pub utxos: BTreeMap<OutPoint, Coin>,
    pub spent_by: BTreeMap<OutPoint, SpentBy>,
    /// txid → (height, index in block).
    pub txs: BTreeMap<Txid, (u32, u32)>,
}

impl Model {
    /// Applies a block the store would accept (no validation here).
    pub(crate) fn apply(&mut self, block: &Block, height: u32) {
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if index > 0 {
                for (vin, input) in tx.input.iter().enumerate() {
                    self.utxos.remove(&input.previous_output);
                    self.spent_by.insert(
                        input.previous_output,
                        SpentBy {
                            txid,
                            vin: vin as u32,
                            height,
                        },
                    );
                }
            }
            for (vout, o) in tx.output.iter().enumerate() {
                if !o.script_pubkey.is_op_return() {
                    self.utxos.insert(
                        OutPoint::new(txid, vout as u32),
                        Coin {
                            txout: o.clone(),
                            height,
                            coinbase: index == 0,
                        },
                    );
                }
            }
            self.txs.insert(txid, (height, index as u32));
        }
    }

    pub(crate) fn utxos_of(&self, script: &ScriptBuf) -> Vec<Utxo> {
        self.utxos
            .iter()
            .filter(|(_, c)| &c.txout.script_pubkey == script)
            .map(|(op, c)| Utxo {
                outpoint: *op,
                value: c.txout.value.to_sat(),
                script_pubkey: script.clone(),
                height: c.height,
                coinbase: c.coinbase,
            })
            .collect()
    }

    pub(crate) fn balance(&self, script: &ScriptBuf) -> u64 {
        self.utxos
            .values()
            .filter(|c| &c.txout.script_pubkey == script)
            .map(|c| c.txout.value.to_sat())
            .sum()
    }

    /// Coins a block at `height` may spend (coinbases need 100 confirmations).
    pub(crate) fn spendable(&self, height: u32) -> Vec<(OutPoint, Coin)> {
        self.utxos
            .iter()
            .filter(|(_, c)| !c.coinbase || height - c.height >= 100)
            .map(|(op, c)| (*op, c.clone()))
            .collect()
    }
}

/// A deterministic chain generator: fixed scripts, fixed times, a seeded xorshift for choices.
#[derive(Debug, Clone)]
pub(crate) struct ChainGen {
    /// Distinguishes branches: goes into every coinbase, so sibling blocks differ.
    pub tag: Vec<u8>,
    /// `headers[h]` is the header at height `h` (genesis at 0).
    pub headers: Vec<Header>,
    /// `blocks[h - 1]` is the block at height `h`.
    pub blocks: Vec<Block>,
    pub model: Model,
    pub scripts: Vec<ScriptBuf>,
    /// Spending transactions per block, at most.
    pub max_spends: usize,
    /// Whether a block may also spend an output created earlier in the same block.
    pub chained_spends: bool,
    rng: u64,
}

impl ChainGen {
    pub(crate) fn new(tag: &str, scripts: Vec<ScriptBuf>) -> Self {
        let mut g = ChainGen {
            tag: Vec::new(),
            headers: vec![params().genesis()],
            blocks: Vec::new(),
            model: Model::default(),
            scripts,
            max_spends: 3,
            chained_spends: true,
            rng: 0,
        };
        g.retag(tag);
        g
    }

    /// A copy that continues from the same tip but makes different choices and blocks.
    pub(crate) fn branch(&self, tag: &str) -> Self {
        let mut g = self.clone();
        g.retag(tag);
        g
    }

    fn retag(&mut self, tag: &str) {
        self.tag = tag.as_bytes().to_vec();
        let h = sha256::Hash::hash(tag.as_bytes()).to_byte_array();
        self.rng = u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) | 1;
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next_rand() % n as u64) as usize
    }

    fn rand_script(&mut self) -> ScriptBuf {
        let i = self.pick(self.scripts.len());
        self.scripts[i].clone()
    }

    pub(crate) fn height(&self) -> u32 {
        self.blocks.len() as u32
    }

    pub(crate) fn tip(&self) -> Header {
        *self.headers.last().expect("genesis is always there")
    }

    pub(crate) fn hash_at(&self, height: u32) -> BlockHash {
        self.headers[height as usize].block_hash()
    }

    pub(crate) fn block_at(&self, height: u32) -> &Block {
        &self.blocks[height as usize - 1]
    }

    /// Blocks above `height`, in order.
    pub(crate) fn blocks_after(&self, height: u32) -> &[Block] {
        &self.blocks[height as usize..]
    }

    /// Appends a block someone else built (it must extend the tip).
    pub(crate) fn push(&mut self, block: Block) {
        assert_eq!(
            block.header.prev_blockhash,
            self.tip().block_hash(),
            "block must extend the tip"
        );
        let height = self.height() + 1;
        self.model.apply(&block, height);
        self.headers.push(block.header);
        self.blocks.push(block);
    }

    /// Spending transactions for a block at `height`, and the fees they pay.
    pub(crate) fn make_spends(&mut self, height: u32) -> (Vec<Transaction>, u64) {
        let mut candidates = self.model.spendable(height);
        let mut txs = Vec::new();
        let mut fees = 0;
        for _ in 0..self.max_spends {
            if candidates.is_empty() {
                break;
            }
            let n_in = 1 + self.pick(2).min(candidates.len() - 1);
            let mut inputs = Vec::new();
            let mut value_in = 0u64;
            for _ in 0..n_in {
                let i = self.pick(candidates.len());
                let (op, c) = candidates.swap_remove(i);
                inputs.push(op);
                value_in += c.txout.value.to_sat();
            }
            if value_in <= 2 * FEE {
                continue; // dust: leave it
            }
            let avail = value_in - FEE;
            let first = avail / (2 + self.pick(3) as u64);
            let (a, b) = (self.rand_script(), self.rand_script());
            let tx = spend(&inputs, vec![out(&a, first), out(&b, avail - first)]);
            fees += FEE;
            // Sometimes spend the new transaction's first output again in the same block.
            if self.chained_spends && first > 2 * FEE && self.pick(2) == 0 {
                let c = self.rand_script();
                let child = spend(
                    &[OutPoint::new(tx.compute_txid(), 0)],
                    vec![out(&c, first - FEE)],
                );
                txs.push(tx);
                txs.push(child);
                fees += FEE;
            } else {
                txs.push(tx);
            }
        }
        (txs, fees)
    }

    /// Builds, records and returns the next block: coinbase to a chosen script, some spends.
    pub(crate) fn next_block(&mut self) -> Block {
        let height = self.height() + 1;
        let (txs, fees) = self.make_spends(height);
        let block = self.next_block_with(txs, fees);
        debug_assert_eq!(self.height(), height);
        block
    }

    /// Builds, records and returns the next block with the given spends.
    pub(crate) fn next_block_with(&mut self, txs: Vec<Transaction>, fees: u64) -> Block {
        let height = self.height() + 1;
        let cb_script = self.rand_script();
        let cb = coinbase(
            height,
            &self.tag,
            vec![out(&cb_script, subsidy(height) + fees)],
        );
        let block = build_block(&self.tip(), cb, txs);
        self.push(block.clone());
        block
    }

    /// Generates `n` more blocks and returns them.
    pub(crate) fn extend(&mut self, n: usize) -> Vec<Block> {
        (0..n).map(|_| self.next_block()).collect()
    }

    pub(crate) fn all_txids(&self) -> Vec<Txid> {
        self.blocks
            .iter()
            .flat_map(|b| b.txdata.iter().map(Transaction::compute_txid))
            .collect()
    }

    /// Every outpoint any block created or spent.
    pub(crate) fn all_outpoints(&self) -> Vec<OutPoint> {
        let mut v = Vec::new();
        for b in &self.blocks {
            for tx in &b.txdata {
                let txid = tx.compute_txid();
                v.extend((0..tx.output.len() as u32).map(|i| OutPoint::new(txid, i)));
                if !tx.is_coinbase() {
                    v.extend(tx.input.iter().map(|i| i.previous_output));
                }
            }
        }
        v
    }
}

/// What `raw_transaction` returns: bytes, block, index in block.
pub(crate) type RawTx = (Vec<u8>, BlockRef, u32);

/// What a store says about a fixed set of questions; two stores with the same state give equal
/// snapshots.
#[derive(Debug, PartialEq)]
pub(crate) struct IndexState {
    pub tip: BlockRef,
    pub utxo_count: u64,
    pub headers: Vec<Option<(BlockRef, Header)>>,
    pub by_script: Vec<(ScriptBuf, Vec<Utxo>, u64)>,
    pub txs: Vec<(Txid, Option<IndexedTx>, Option<RawTx>)>,
    pub coins: Vec<(OutPoint, Option<Utxo>, Option<SpentBy>)>,
    pub keystones: Vec<([u8; 32], Vec<KeystonePublication>)>,
}

pub(crate) struct Questions<'a> {
    pub scripts: &'a [ScriptBuf],
    pub txids: &'a [Txid],
    pub outpoints: &'a [OutPoint],
    pub keystones: &'a [[u8; 32]],
    pub max_height: u32,
}

pub(crate) fn index_state(store: &ChainStore, q: &Questions<'_>) -> IndexState {
    IndexState {
        tip: store.indexed_tip(),
        utxo_count: store.utxo_count().expect("utxo_count"),
        headers: (0..=q.max_height)
            .map(|h| store.header_at(h).expect("header_at"))
            .collect(),
        by_script: q
            .scripts
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    store
                        .utxos_by_script(s, AsOf::Tip)
                        .expect("utxos_by_script"),
                    store
                        .balance_by_script(s, AsOf::Tip)
                        .expect("balance_by_script"),
                )
            })
            .collect(),
        txs: q
            .txids
            .iter()
            .map(|t| {
                (
                    *t,
                    store.transaction(t, AsOf::Tip).expect("transaction"),
                    store.raw_transaction(t).expect("raw_transaction"),
                )
            })
            .collect(),
        coins: q
            .outpoints
            .iter()
            .map(|op| {
                (
                    *op,
                    store.utxo(op).expect("utxo"),
                    store.spent_by(op).expect("spent_by"),
                )
            })
            .collect(),
        keystones: q
            .keystones
            .iter()
            .map(|k| {
                (
                    *k,
                    store
                        .keystone_publications(k)
                        .expect("keystone_publications"),
                )
            })
            .collect(),
    }
}

/// Field-by-field comparison, so a failure names the index that differs.
pub(crate) fn assert_same_state(got: &IndexState, want: &IndexState, what: &str) {
    assert_eq!(got.tip, want.tip, "{what}: tip");
    assert_eq!(got.utxo_count, want.utxo_count, "{what}: utxo_count");
    assert_eq!(got.headers, want.headers, "{what}: header_at");
    for (g, w) in got.by_script.iter().zip(&want.by_script) {
        assert_eq!(g, w, "{what}: utxos/balance of script {}", w.0);
    }
    for (g, w) in got.txs.iter().zip(&want.txs) {
        assert_eq!(g, w, "{what}: transaction {}", w.0);
    }
    for (g, w) in got.coins.iter().zip(&want.coins) {
        assert_eq!(g, w, "{what}: utxo/spent_by of {}", w.0);
    }
    assert_eq!(
        got.keystones, want.keystones,
        "{what}: keystone publications"
    );
    assert_eq!(got, want, "{what}");
}

/// Checks the store's tip indexes against the generator's model (the outside truth).
pub(crate) fn assert_matches_model(store: &ChainStore, gen: &ChainGen) {
    let tip = store.indexed_tip();
    assert_eq!(
        tip,
        BlockRef {
            height: gen.height(),
            hash: gen.tip().block_hash()
        },
        "tip vs model"
    );
    assert_eq!(
        store.utxo_count().expect("utxo_count"),
        gen.model.utxos.len() as u64,
        "UTXO count vs model"
    );
    for s in &gen.scripts {
        assert_eq!(
            store.utxos_by_script(s, AsOf::Tip).expect("utxos"),
            gen.model.utxos_of(s),
            "utxos of {s}"
        );
        assert_eq!(
            store.balance_by_script(s, AsOf::Tip).expect("balance"),
            gen.model.balance(s),
            "balance of {s}"
        );
    }
    for (op, coin) in &gen.model.utxos {
        let u = store
            .utxo(op)
            .expect("utxo")
            .unwrap_or_else(|| panic!("model UTXO {op} missing in store"));
        assert_eq!(
            (u.value, u.height, u.coinbase),
            (coin.txout.value.to_sat(), coin.height, coin.coinbase)
        );
    }
    for (op, sb) in &gen.model.spent_by {
        assert_eq!(
            store.spent_by(op).expect("spent_by").as_ref(),
            Some(sb),
            "spent_by of {op}"
        );
        assert_eq!(
            store.utxo(op).expect("utxo"),
            None,
            "spent output {op} still a UTXO"
        );
    }
    for b in &gen.blocks {
        for tx in &b.txdata {
            let txid = tx.compute_txid();
            let (raw, at, index) = store
                .raw_transaction(&txid)
                .expect("raw_transaction")
                .unwrap_or_else(|| panic!("tx {txid} missing"));
            assert_eq!(raw, serialize(tx), "raw bytes of {txid}");
            let (h, i) = gen.model.txs[&txid];
            assert_eq!((at.height, index), (h, i), "location of {txid}");
        }
    }
}
