//! The embedded node's mempool: Bitcoin Core's acceptance rules for the script types hemi-rs
//! uses, with Core's reject reasons and RPC error codes, full replace-by-fee, and a block
//! template that takes parents before children and higher fee rates first.

use std::collections::{BTreeSet, HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid, Weight, Wtxid};

/// Minimum relay fee rate, sat per 1000 vbytes (Bitcoin Core v29+ default: 100).
pub const MIN_RELAY_FEE_SAT_KVB: u64 = 100;
/// Incremental relay fee for replacements, sat per 1000 vbytes (Core v29+ default: 100).
pub const INCREMENTAL_RELAY_FEE_SAT_KVB: u64 = 100;
/// Dust relay fee, sat per 1000 vbytes (Core default: 3000).
pub const DUST_RELAY_FEE_SAT_KVB: u64 = 3000;
/// Largest standard transaction weight.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Coinbase outputs can be spent after this many blocks.
pub const COINBASE_MATURITY: u32 = 100;
/// Most transactions a mempool chain may have (Core's ancestor/descendant limit).
pub const MAX_CHAIN: usize = 25;

/// Bitcoin Core RPC error codes used by the mempool.
pub mod codes {
    /// General verification error (missing inputs, max fee exceeded).
    pub const RPC_VERIFY_ERROR: i64 = -25;
    /// Rejected by policy or consensus.
    pub const RPC_VERIFY_REJECTED: i64 = -26;
    /// Already in the chain.
    pub const RPC_VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    /// Deserialization failed.
    pub const RPC_DESERIALIZATION_ERROR: i64 = -22;
}

/// A transaction the mempool refused, with Core's reject reason, details and RPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Core's reject reason, e.g. `min relay fee not met` (`testmempoolaccept`'s
    /// `reject-reason`).
    pub reason: String,
    /// Core's debug details, e.g. `100 < 141`.
    pub details: Option<String>,
    /// Core's RPC error code for sendrawtransaction.
    pub code: i64,
}

impl std::fmt::Display for Reject {
    /// Core's `TxValidationState::ToString`: `reason[, details]` (sendrawtransaction's message
    /// and testmempoolaccept's `reject-details`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.details {
            Some(d) => write!(f, "{}, {d}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for Reject {}

impl Reject {
    fn policy(reason: impl Into<String>) -> Self {
        Reject {
            reason: reason.into(),
            details: None,
            code: codes::RPC_VERIFY_REJECTED,
        }
    }

    fn detailed(reason: &str, details: String) -> Self {
        Reject {
            reason: reason.into(),
            details: Some(details),
            code: codes::RPC_VERIFY_REJECTED,
        }
    }

    fn missing_inputs() -> Self {
        Reject {
            reason: "bad-txns-inputs-missingorspent".into(),
            details: None,
            code: codes::RPC_VERIFY_ERROR,
        }
    }

    /// An error that is not a mempool policy verdict (e.g. already confirmed).
    pub fn other(reason: impl Into<String>, code: i64) -> Self {
        Reject {
            reason: reason.into(),
            details: None,
            code,
        }
    }

    /// The reason `testmempoolaccept` reports (Core says `missing-inputs` there).
    pub fn test_accept_reason(&self) -> &str {
        if self.reason == "bad-txns-inputs-missingorspent" {
            "missing-inputs"
        } else {
            &self.reason
        }
    }

    /// `reject-details` as `testmempoolaccept` reports it (absent for missing inputs).
    pub fn test_accept_details(&self) -> Option<String> {
        (self.reason != "bad-txns-inputs-missingorspent").then(|| self.to_string())
    }
}

/// A failed script check: Core's reason and the failing input, if one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    /// Core's reason, e.g. `mempool-script-verify-flag-failed (Invalid Schnorr signature)`.
    pub reason: String,
    /// The input that failed.
    pub input: Option<usize>,
}

/// Fee rate in sat/kvB, without overflow for any fee.
fn feerate_kvb(fee: u64, vsize: u64) -> u64 {
    (fee as u128 * 1000 / vsize.max(1) as u128).min(u64::MAX as u128) as u64
}

/// Checks the scripts of a transaction given the outputs it spends.
pub type ScriptCheck = dyn Fn(&Transaction, &[TxOut]) -> Result<(), ScriptFailure>;

/// A coin a transaction spends, from the chain or from another mempool transaction.
#[derive(Debug, Clone)]
pub struct Coin {
    /// The output.
    pub txout: TxOut,
    /// Height of its block (`None` if in the mempool).
    pub height: Option<u32>,
    /// Created by a coinbase.
    pub coinbase: bool,
}

/// A mempool transaction.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Transaction,
    /// Its witness txid.
    pub wtxid: Wtxid,
    /// Fee in satoshis.
    pub fee: u64,
    /// Virtual size.
    pub vsize: u64,
    /// Weight units.
    pub weight: u64,
    /// Unix time it entered.
    pub time: u64,
    /// Chain height when it entered.
    pub height: u32,
    /// Mempool parents.
    pub parents: BTreeSet<Txid>,
}

impl Entry {
    /// Fee rate in sat/kvB.
    pub fn feerate_kvb(&self) -> u64 {
        feerate_kvb(self.fee, self.vsize)
    }
}

/// What the mempool did with an accepted transaction.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Fee in satoshis.
    pub fee: u64,
    /// Virtual size.
    pub vsize: u64,
    /// Transactions it replaced (with their descendants).
    pub replaced: Vec<Txid>,
}

/// The mempool.
#[derive(Debug, Default)]
pub struct Mempool {
    entries: HashMap<Txid, Entry>,
    /// outpoint → mempool transaction that spends it.
    spends: HashMap<OutPoint, Txid>,
}

fn dust_threshold(out: &TxOut) -> u64 {
    // Core's GetDustThreshold: cost of the output plus of spending it, at the dust relay fee.
    let script = &out.script_pubkey;
    if script.is_op_return() {
        return 0;
    }
    let out_size = bitcoin::consensus::serialize(out).len() as u64;
    let spend = if script.is_witness_program() {
        32 + 4 + 1 + (107 / 4) + 4
    } else {
        32 + 4 + 1 + 107 + 4
    };
    (out_size + spend) * DUST_RELAY_FEE_SAT_KVB / 1000
}

fn is_standard_script(script: &bitcoin::Script) -> bool {
    script.is_p2pkh()
        || script.is_p2sh()
        || script.is_p2wpkh()
        || script.is_p2wsh()
        || script.is_p2tr()
        || script.is_op_return()
        || script.is_p2pk()
        || script.is_multisig()
}

impl Mempool {
    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A transaction by id.
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    /// All txids.
    pub fn txids(&self) -> Vec<Txid> {
        let mut v: Vec<Txid> = self.entries.keys().copied().collect();
        v.sort();
        v
    }

    /// Which mempool transaction spends `op`.
    pub fn spender(&self, op: &OutPoint) -> Option<Txid> {
        self.spends.get(op).copied()
    }

    /// Mempool children of a transaction.
    pub fn children(&self, txid: &Txid) -> Vec<Txid> {
        self.entries
            .values()
            .filter(|e| e.parents.contains(txid))
            .map(|e| e.tx.compute_txid())
            .collect()
    }

    /// A transaction and all its mempool descendants.
    pub fn with_descendants(&self, txid: &Txid) -> Vec<Txid> {
        let mut out = vec![*txid];
        let mut i = 0;
        while i < out.len() {
            for c in self.children(&out[i]) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            i += 1;
        }
        out
    }

    /// Every in-mempool ancestor of transactions with these mempool parents (parents included).
    pub fn ancestors_of(&self, parents: &BTreeSet<Txid>) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Txid> = parents.iter().copied().collect();
        while let Some(t) = stack.pop() {
            if seen.insert(t) {
                if let Some(e) = self.entries.get(&t) {
                    stack.extend(e.parents.iter().copied());
                }
            }
        }
        seen
    }

    /// Number of in-mempool ancestors, the transaction itself included.
    pub fn ancestor_count(&self, txid: &Txid) -> usize {
        let mut seen = HashSet::new();
        let mut stack = vec![*txid];
        while let Some(t) = stack.pop() {
            if seen.insert(t) {
                if let Some(e) = self.entries.get(&t) {
                    stack.extend(e.parents.iter().copied());
                }
            }
        }
        seen.len()
    }

    /// Checks a transaction against the mempool and chain without adding it
    /// (`testmempoolaccept`). `chain_coin` looks up confirmed unspent outputs; `verify` checks
    /// scripts given the spent outputs.
    ///
    /// # Errors
    /// A [`Reject`] with Core's reason and code.
    pub fn check(
        &self,
        tx: &Transaction,
        chain_coin: &dyn Fn(&OutPoint) -> Option<Coin>,
        tip_height: u32,
        verify: &ScriptCheck,
        max_feerate_kvb: Option<u64>,
    ) -> Result<(Accepted, Vec<Txid>), Reject> {
        let txid = tx.compute_txid();
        if self.entries.contains_key(&txid) {
            return Err(Reject::other(
                "txn-already-in-mempool",
                codes::RPC_VERIFY_ALREADY_IN_CHAIN,
            ));
        }
        if tx.is_coinbase() {
            return Err(Reject::policy("coinbase"));
        }
        if tx.input.is_empty() {
            return Err(Reject::policy("bad-txns-vin-empty"));
        }
        if tx.output.is_empty() {
            return Err(Reject::policy("bad-txns-vout-empty"));
        }
        let mut seen = HashSet::new();
        for i in &tx.input {
            if !seen.insert(i.previous_output) {
                return Err(Reject::policy("bad-txns-inputs-duplicate"));
            }
        }
        let mut value_out: u64 = 0;
        for o in &tx.output {
            if o.value > Amount::MAX_MONEY {
                return Err(Reject::policy("bad-txns-vout-toolarge"));
            }
            value_out = value_out.saturating_add(o.value.to_sat());
        }
        if value_out > Amount::MAX_MONEY.to_sat() {
            return Err(Reject::policy("bad-txns-txouttotal-toolarge"));
        }
        // Policy (IsStandardTx).
        if !(1..=3).contains(&tx.version.0) {
            return Err(Reject::policy("version"));
        }
        let weight = tx.weight().to_wu();
        if weight > MAX_STANDARD_TX_WEIGHT {
            return Err(Reject::policy("tx-size"));
        }
        if tx.base_size() < 65 {
            return Err(Reject::policy("tx-size-small"));
        }
        for o in &tx.output {
            if !is_standard_script(&o.script_pubkey) {
                return Err(Reject::policy("scriptpubkey"));
            }
            if o.value.to_sat() < dust_threshold(o) {
                return Err(Reject::policy("dust"));
            }
        }
        // Inputs: confirmed coins or mempool outputs; conflicts are replacement candidates.
        let mut prevouts = Vec::with_capacity(tx.input.len());
        let mut parents = BTreeSet::new();
        let mut conflicts = BTreeSet::new();
        let mut value_in: u64 = 0;
        for input in &tx.input {
            let op = input.previous_output;
            if let Some(c) = self.spends.get(&op) {
                conflicts.insert(*c);
            }
            let coin = if let Some(parent) = self.entries.get(&op.txid) {
                let Some(out) = parent.tx.output.get(op.vout as usize) else {
                    return Err(Reject::missing_inputs());
                };
                parents.insert(op.txid);
                Coin {
                    txout: out.clone(),
                    height: None,
                    coinbase: false,
                }
            } else {
                match chain_coin(&op) {
                    Some(c) => c,
                    None => return Err(Reject::missing_inputs()),
                }
            };
            if coin.coinbase {
                let h = coin.height.unwrap_or(tip_height);
                // Spendable in the next block (tip + 1) once 100 blocks deep.
                if tip_height + 1 - h < COINBASE_MATURITY {
                    return Err(Reject::detailed(
                        "bad-txns-premature-spend-of-coinbase",
                        format!("tried to spend coinbase at depth {}", tip_height + 1 - h),
                    ));
                }
            }
            // BIP-68 relative height locks of version-2 transactions, as Core's
            // CheckSequenceLocks for the next block (an in-mempool parent counts as tip + 1).
            // Time-based relative locks are not checked here.
            let seq = input.sequence.0;
            if tx.version.0 >= 2 && seq & (1 << 31) == 0 && seq & (1 << 22) == 0 {
                let from = coin.height.unwrap_or(tip_height + 1);
                if u64::from(from) + u64::from(seq & 0xffff) > u64::from(tip_height) + 1 {
                    return Err(Reject::policy("non-BIP68-final"));
                }
            }
            value_in = value_in.saturating_add(coin.txout.value.to_sat());
            prevouts.push(coin.txout);
        }
        // A replacement may not descend from anything it would evict (Core compares the
        // conflicts with all in-mempool ancestors, not only the parents).
        let ancestors = self.ancestors_of(&parents);
        for c in &conflicts {
            for d in self.with_descendants(c) {
                if ancestors.contains(&d) {
                    return Err(Reject::detailed(
                        "bad-txns-spends-conflicting-tx",
                        format!("{txid} spends conflicting transaction {d}"),
                    ));
                }
            }
        }
        if value_in < value_out {
            return Err(Reject::detailed(
                "bad-txns-in-belowout",
                format!(
                    "value in ({}) < value out ({})",
                    Amount::from_sat(value_in).to_btc(),
                    Amount::from_sat(value_out).to_btc()
                ),
            ));
        }
        let fee = value_in - value_out;
        let vsize = Weight::from_wu(weight).to_vbytes_ceil();
        let min_fee = MIN_RELAY_FEE_SAT_KVB * vsize / 1000;
        if fee < min_fee {
            return Err(Reject::detailed(
                "min relay fee not met",
                format!("{fee} < {min_fee}"),
            ));
        }
        if let Some(max) = max_feerate_kvb {
            if max > 0 && feerate_kvb(fee, vsize) > max {
                // testmempoolaccept says "max-fee-exceeded"; sendrawtransaction, Core's message.
                return Err(Reject {
                    reason: "max-fee-exceeded".into(),
                    details: Some(format!(
                        "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate), {} > {}",
                        Amount::from_sat(fee).to_btc(),
                        Amount::from_sat(max * vsize / 1000).to_btc()
                    )),
                    code: codes::RPC_VERIFY_ERROR,
                });
            }
        }
        let mut ancestors = 1;
        for p in &parents {
            ancestors += self.ancestor_count(p);
        }
        if ancestors > MAX_CHAIN {
            return Err(Reject::detailed(
                "too-long-mempool-chain",
                format!("too many unconfirmed ancestors [limit: {MAX_CHAIN}]"),
            ));
        }
        // `verify` returns Core's reason, e.g. "mempool-script-verify-flag-failed (…)"; the
        // details name the input as Core does.
        verify(tx, &prevouts).map_err(|f| match f.input {
            Some(i) => Reject::detailed(
                &f.reason,
                format!(
                    "input {i} of {txid} (wtxid {}), spending {}",
                    tx.compute_wtxid(),
                    tx.input
                        .get(i)
                        .map(|x| x.previous_output.to_string())
                        .unwrap_or_default()
                ),
            ),
            None => Reject::policy(f.reason),
        })?;
        // Replace-by-fee (Core's full RBF, BIP125 rules 3 and 4).
        let mut replaced = Vec::new();
        for c in &conflicts {
            for d in self.with_descendants(c) {
                if !replaced.contains(&d) {
                    replaced.push(d);
                }
            }
        }
        if replaced.len() > 100 {
            return Err(Reject::detailed(
                "too many potential replacements",
                format!("rejecting replacement {txid}"),
            ));
        }
        if !replaced.is_empty() {
            let old_fee: u64 = replaced
                .iter()
                .filter_map(|t| self.entries.get(t))
                .map(|e| e.fee)
                .sum();
            let new_rate = feerate_kvb(fee, vsize);
            for c in &conflicts {
                if let Some(e) = self.entries.get(c) {
                    if new_rate <= e.feerate_kvb() {
                        return Err(Reject::detailed("insufficient fee", format!(
                            "rejecting replacement {txid}; new feerate {:.8} BTC/kvB <= old feerate {:.8} BTC/kvB",
                            new_rate as f64 / 1e8,
                            e.feerate_kvb() as f64 / 1e8
                        )));
                    }
                }
            }
            let needed = old_fee + INCREMENTAL_RELAY_FEE_SAT_KVB * vsize / 1000;
            if fee < needed {
                return Err(Reject::detailed("insufficient fee", format!(
                    "rejecting replacement {txid}, not enough additional fees to relay; {:.8} < {:.8}",
                    (fee.saturating_sub(old_fee)) as f64 / 1e8,
                    (needed - old_fee) as f64 / 1e8
                )));
            }
        }
        Ok((
            Accepted {
                txid,
                wtxid: tx.compute_wtxid(),
                fee,
                vsize,
                replaced: replaced.clone(),
            },
            parents.into_iter().collect(),
        ))
    }

    /// Checks and adds a transaction, evicting what it replaces.
    ///
    /// # Errors
    /// As [`Mempool::check`].
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain_coin: &dyn Fn(&OutPoint) -> Option<Coin>,
        tip_height: u32,
        verify: &ScriptCheck,
        max_feerate_kvb: Option<u64>,
        now: u64,
    ) -> Result<Accepted, Reject> {
        let (acc, parents) = self.check(&tx, chain_coin, tip_height, verify, max_feerate_kvb)?;
        for r in &acc.replaced {
            self.remove(r);
        }
        for i in &tx.input {
            self.spends.insert(i.previous_output, acc.txid);
        }
        self.entries.insert(
            acc.txid,
            Entry {
                wtxid: acc.wtxid,
                fee: acc.fee,
                vsize: acc.vsize,
                weight: tx.weight().to_wu(),
                time: now,
                height: tip_height,
                parents: parents.into_iter().collect(),
                tx,
            },
        );
        Ok(acc)
    }

    /// Removes one transaction (not its descendants).
    pub fn remove(&mut self, txid: &Txid) -> Option<Entry> {
        let e = self.entries.remove(txid)?;
        for i in &e.tx.input {
            if self.spends.get(&i.previous_output) == Some(txid) {
                self.spends.remove(&i.previous_output);
            }
        }
        for other in self.entries.values_mut() {
            other.parents.remove(txid);
        }
        Some(e)
    }

    /// Removes a transaction with all its descendants.
    pub fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<Txid> {
        let all = self.with_descendants(txid);
        for t in &all {
            self.remove(t);
        }
        all
    }

    /// A block was connected: drop its transactions, and everything that conflicts with them.
    pub fn block_connected(&mut self, block: &bitcoin::Block) {
        for tx in block.txdata.iter().skip(1) {
            let txid = tx.compute_txid();
            if self.entries.contains_key(&txid) {
                self.remove(&txid);
            }
            for i in &tx.input {
                if let Some(c) = self.spends.get(&i.previous_output).copied() {
                    if c != txid {
                        self.remove_with_descendants(&c);
                    }
                }
            }
        }
    }

    /// Picks transactions for a block: parents first, higher fee rate first, up to `max_weight`.
    pub fn select(&self, max_weight: u64) -> Vec<Transaction> {
        let mut order: Vec<&Entry> = self.entries.values().collect();
        order.sort_by(|a, b| {
            b.feerate_kvb()
                .cmp(&a.feerate_kvb())
                .then(a.time.cmp(&b.time))
        });
        let mut chosen: Vec<Transaction> = Vec::new();
        let mut in_block: HashSet<Txid> = HashSet::new();
        let mut weight = 0;
        let mut progress = true;
        while progress {
            progress = false;
            for e in &order {
                let txid = e.tx.compute_txid();
                if in_block.contains(&txid) || !e.parents.iter().all(|p| in_block.contains(p)) {
                    continue;
                }
                if weight + e.weight > max_weight {
                    continue;
                }
                weight += e.weight;
                in_block.insert(txid);
                chosen.push(e.tx.clone());
                progress = true;
            }
        }
        chosen
    }

    /// Fee rates (sat/kvB) of mempool transactions, for fee estimation.
    pub fn feerates(&self) -> Vec<u64> {
        self.entries.values().map(Entry::feerate_kvb).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, ScriptBuf, Sequence, TxIn, Witness};

    fn p2wpkh(b: u8) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([b; 20]))
    }

    fn tx(inputs: &[OutPoint], value: u64, to: u8) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|op| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence(0xffff_fffd),
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: p2wpkh(to),
            }],
        }
    }

    /// The fuzzer's case: A spends C, B spends A, N spends C and B. N conflicts with A and
    /// descends from it; accepting N would leave it spending B's evicted output.
    #[test]
    fn replacement_descending_from_what_it_evicts_is_refused() {
        let c = OutPoint::new(Txid::from_byte_array([9; 32]), 0);
        let chain = |op: &OutPoint| {
            (*op == c).then(|| Coin {
                txout: TxOut {
                    value: Amount::from_sat(100_000),
                    script_pubkey: p2wpkh(0),
                },
                height: Some(1),
                coinbase: false,
            })
        };
        let ok = |_: &Transaction, _: &[TxOut]| Ok(());
        let mut pool = Mempool::default();
        let a = tx(&[c], 90_000, 1);
        pool.accept(a.clone(), &chain, 200, &ok, None, 0)
            .expect("A");
        let b = tx(&[OutPoint::new(a.compute_txid(), 0)], 80_000, 2);
        pool.accept(b.clone(), &chain, 200, &ok, None, 0)
            .expect("B");
        let n = tx(&[c, OutPoint::new(b.compute_txid(), 0)], 10_000, 3);
        let err = pool
            .accept(n, &chain, 200, &ok, None, 0)
            .expect_err("N must be refused");
        assert_eq!(err.reason, "bad-txns-spends-conflicting-tx");
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn huge_fees_do_not_overflow_the_fee_rate() {
        assert_eq!(feerate_kvb(u64::MAX, 1), u64::MAX);
        assert_eq!(feerate_kvb(1_000, 100), 10_000);
    }
}
