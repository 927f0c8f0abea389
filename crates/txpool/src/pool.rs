//! The pool: per-sender nonce-ordered lists, replacement, limits, block selection.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BinaryHeap, HashMap},
    sync::Arc,
};

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxHash, U256};

use crate::validate::{check_stateless, Checked};
use crate::{PoolConfig, PoolError};

/// Account state the pool validates against (the chain's latest state).
pub trait AccountState {
    /// The account's nonce: the next nonce it may use.
    fn nonce(&self, address: Address) -> u64;
    /// The account's balance in wei.
    fn balance(&self, address: Address) -> U256;
}

/// A validated transaction in the pool. Cheap to clone (the envelope is shared). Equality is
/// by hash.
#[derive(Debug, Clone)]
pub struct PooledTx {
    hash: TxHash,
    sender: Address,
    envelope: Arc<TxEnvelope>,
    raw: Bytes,
    max_fee: u128,
    tip: u128,
    cost: U256,
    /// Arrival order; breaks price ties in [`TxPool::best`] (first come, first served).
    seq: u64,
}

impl PooledTx {
    /// Transaction hash.
    #[must_use]
    pub const fn hash(&self) -> TxHash {
        self.hash
    }
    /// Recovered sender.
    #[must_use]
    pub const fn sender(&self) -> Address {
        self.sender
    }
    /// The decoded transaction.
    #[must_use]
    pub fn envelope(&self) -> &TxEnvelope {
        &self.envelope
    }
    /// The EIP-2718 encoding as received.
    #[must_use]
    pub const fn raw(&self) -> &Bytes {
        &self.raw
    }
    /// Nonce.
    #[must_use]
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }
    /// Gas limit.
    #[must_use]
    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }
    /// Max fee per gas (gas price for legacy and EIP-2930).
    #[must_use]
    pub const fn max_fee_per_gas(&self) -> u128 {
        self.max_fee
    }
    /// Max priority fee per gas (gas price for legacy and EIP-2930).
    #[must_use]
    pub const fn max_priority_fee_per_gas(&self) -> u128 {
        self.tip
    }
    /// `gas_limit * max_fee + value`.
    #[must_use]
    pub const fn cost(&self) -> U256 {
        self.cost
    }
    /// What the block producer earns per gas at `base_fee`:
    /// `min(max_priority_fee, max_fee - base_fee)`, or `None` if the max fee is below the base
    /// fee ("max fee per gas less than block base fee").
    #[must_use]
    pub fn effective_tip(&self, base_fee: u64) -> Option<u128> {
        self.max_fee
            .checked_sub(u128::from(base_fee))
            .map(|room| room.min(self.tip))
    }
}

impl PartialEq for PooledTx {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for PooledTx {}

/// One sender's transactions.
#[derive(Debug, Default)]
struct SenderTxs {
    /// The account nonce when the pool last looked.
    nonce: u64,
    txs: BTreeMap<u64, PooledTx>,
}

impl SenderTxs {
    /// The pending run: contiguous nonces starting at the account nonce.
    fn pending(&self) -> impl Iterator<Item = &PooledTx> {
        self.txs
            .range(self.nonce..)
            .zip(self.nonce..)
            .take_while(|((n, _), want)| *n == want)
            .map(|((_, tx), _)| tx)
    }

    fn pending_len(&self) -> usize {
        self.pending().count()
    }
}

/// `txpool_content`: transactions grouped by sender, then nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolContent {
    /// Executable now: contiguous nonces from each sender's account nonce.
    pub pending: BTreeMap<Address, BTreeMap<u64, PooledTx>>,
    /// Waiting behind a nonce gap.
    pub queued: BTreeMap<Address, BTreeMap<u64, PooledTx>>,
}

/// The sequencer's mempool. See the [crate docs](crate).
#[derive(Debug)]
pub struct TxPool {
    config: PoolConfig,
    senders: HashMap<Address, SenderTxs>,
    by_hash: HashMap<TxHash, (Address, u64)>,
    next_seq: u64,
}

impl TxPool {
    /// An empty pool.
    #[must_use]
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            senders: HashMap::new(),
            by_hash: HashMap::new(),
            next_seq: 0,
        }
    }

    /// The pool's configuration.
    #[must_use]
    pub const fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Number of transactions (pending + queued).
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool holds no transaction.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Decodes, validates and inserts a raw EIP-2718 transaction (legacy with EIP-155,
    /// EIP-2930 or EIP-1559), returning its hash.
    ///
    /// Checks run in geth's order: type, size, chain id, init code size, block gas limit,
    /// signature, tip ≤ fee cap, intrinsic gas, minimum tip; then against `state`: nonce,
    /// balance (this transaction alone, then with the sender's other pooled ones), replacement
    /// price bump, per-sender and pool limits.
    ///
    /// When the pool is full the new transaction is accepted only if its priority fee is
    /// strictly higher than that of the cheapest *evictable* transaction — the highest-nonce
    /// transaction of another sender, so eviction never opens a nonce gap — which is then
    /// dropped.
    ///
    /// # Errors
    ///
    /// A [`PoolError`] whose message is geth's for the same refusal.
    pub fn add_raw(&mut self, bytes: &[u8], state: &dyn AccountState) -> Result<TxHash, PoolError> {
        let checked = check_stateless(bytes, &self.config, None)?;
        self.add_checked(checked, state)
    }

    /// The stateless half of [`TxPool::add_raw`] (decoding, limits, signature recovery): needs
    /// no `&mut self`, so callers run it in parallel, outside any lock around the pool.
    ///
    /// # Errors
    /// A [`PoolError`] with geth's message.
    pub fn check(bytes: &[u8], config: &PoolConfig) -> Result<Checked, PoolError> {
        check_stateless(bytes, config, None)
    }

    /// [`TxPool::check`] given the sender this process already recovered from the same bytes
    /// (used when `recovered`'s hash is the transaction's; otherwise it recovers).
    ///
    /// # Errors
    /// As [`TxPool::check`].
    pub fn check_recovered(
        bytes: &[u8],
        config: &PoolConfig,
        recovered: Option<(alloy_primitives::B256, Address)>,
    ) -> Result<Checked, PoolError> {
        check_stateless(bytes, config, recovered)
    }

    /// The stateful half of [`TxPool::add_raw`]: nonce, balance, replacement and limits.
    ///
    /// # Errors
    /// A [`PoolError`] with geth's message.
    pub fn add_checked(
        &mut self,
        checked: Checked,
        state: &dyn AccountState,
    ) -> Result<TxHash, PoolError> {
        let hash = *checked.envelope.tx_hash();
        if self.by_hash.contains_key(&hash) {
            return Err(PoolError::AlreadyKnown);
        }
        let sender = checked.sender;
        let nonce = checked.envelope.nonce();
        let account_nonce = state.nonce(sender);
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow {
                sender,
                tx: nonce,
                state: account_nonce,
            });
        }
        let balance = state.balance(sender);
        if balance < checked.cost {
            return Err(PoolError::InsufficientFunds {
                balance,
                queued: U256::ZERO,
                cost: checked.cost,
            });
        }
        let existing = self.senders.get(&sender);
        let queued = existing.map_or(U256::ZERO, |s| {
            s.txs
                .iter()
                .filter(|(n, _)| **n != nonce && **n >= account_nonce)
                .fold(U256::ZERO, |acc, (_, tx)| acc.saturating_add(tx.cost))
        });
        if balance < queued.saturating_add(checked.cost) {
            return Err(PoolError::InsufficientFunds {
                balance,
                queued,
                cost: checked.cost,
            });
        }
        let replaced = existing.and_then(|s| s.txs.get(&nonce));
        if let Some(old) = replaced {
            if !self.pays_bump(old, checked.max_fee, checked.tip) {
                return Err(PoolError::ReplacementUnderpriced);
            }
        } else {
            let count = existing.map_or(0, |s| s.txs.len());
            if count >= self.config.max_per_sender {
                return Err(PoolError::AccountLimitExceeded {
                    limit: self.config.max_per_sender,
                });
            }
            if self.by_hash.len() >= self.config.max_total {
                self.make_room(sender, checked.tip)?;
            }
        }
        let tx = PooledTx {
            hash,
            sender,
            envelope: Arc::new(checked.envelope),
            raw: checked.raw,
            max_fee: checked.max_fee,
            tip: checked.tip,
            cost: checked.cost,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let entry = self.senders.entry(sender).or_default();
        entry.nonce = account_nonce;
        // Drop anything the account nonce has overtaken since we last looked.
        let stale: Vec<u64> = entry.txs.range(..account_nonce).map(|(n, _)| *n).collect();
        for n in stale {
            if let Some(old) = entry.txs.remove(&n) {
                self.by_hash.remove(&old.hash);
            }
        }
        if let Some(old) = entry.txs.insert(nonce, tx) {
            self.by_hash.remove(&old.hash);
        }
        self.by_hash.insert(hash, (sender, nonce));
        Ok(hash)
    }

    /// geth's rule: both fees strictly above the old ones and at least `old × (100 + bump) / 100`.
    fn pays_bump(&self, old: &PooledTx, max_fee: u128, tip: u128) -> bool {
        let bump = u128::from(self.config.price_bump_percent);
        let threshold = |old: u128| old.saturating_mul(100u128.saturating_add(bump)) / 100;
        max_fee > old.max_fee
            && tip > old.tip
            && max_fee >= threshold(old.max_fee)
            && tip >= threshold(old.tip)
    }

    /// Evicts the cheapest highest-nonce transaction of another sender if `tip` beats it.
    fn make_room(&mut self, sender: Address, tip: u128) -> Result<(), PoolError> {
        let victim = self
            .senders
            .iter()
            .filter(|(addr, _)| **addr != sender)
            .filter_map(|(_, s)| s.txs.values().next_back())
            // Cheapest first; among equals the newest goes.
            .min_by(|a, b| {
                a.tip
                    .cmp(&b.tip)
                    .then(a.max_fee.cmp(&b.max_fee))
                    .then(b.seq.cmp(&a.seq))
            })
            .map(|tx| (tx.hash, tx.tip));
        match victim {
            Some((hash, victim_tip)) if tip > victim_tip => {
                self.remove(&hash);
                Ok(())
            }
            _ => Err(PoolError::PoolFull),
        }
    }

    /// Removes a transaction by hash, returning it. Later nonces of its sender become queued.
    pub fn remove(&mut self, hash: &TxHash) -> Option<PooledTx> {
        let (sender, nonce) = self.by_hash.remove(hash)?;
        let txs = self.senders.get_mut(&sender)?;
        let tx = txs.txs.remove(&nonce);
        if txs.txs.is_empty() {
            self.senders.remove(&sender);
        }
        tx
    }

    /// Transactions for the next block at `base_fee`, up to `gas_limit` (each transaction's
    /// gas limit counted): each sender's pending transactions in nonce order, interleaved
    /// across senders by effective tip, highest first (ties: first received first).
    ///
    /// A sender whose next transaction's max fee is below `base_fee`, or whose next transaction
    /// does not fit in the remaining gas, contributes nothing more (its later nonces could not
    /// execute without it).
    #[must_use]
    pub fn best(&self, base_fee: u64, gas_limit: u64) -> Vec<PooledTx> {
        /// A sender's next candidate, ordered for a max-heap.
        struct Head<'a> {
            tip: u128,
            tx: &'a PooledTx,
            rest: Box<dyn Iterator<Item = &'a PooledTx> + 'a>,
        }
        impl PartialEq for Head<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }
        impl Eq for Head<'_> {}
        impl PartialOrd for Head<'_> {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Head<'_> {
            fn cmp(&self, other: &Self) -> Ordering {
                self.tip
                    .cmp(&other.tip)
                    .then(other.tx.seq.cmp(&self.tx.seq))
            }
        }
        fn head<'a>(
            mut rest: Box<dyn Iterator<Item = &'a PooledTx> + 'a>,
            base_fee: u64,
        ) -> Option<Head<'a>> {
            let tx = rest.next()?;
            let tip = tx.effective_tip(base_fee)?;
            Some(Head { tip, tx, rest })
        }

        let mut heap: BinaryHeap<Head<'_>> = self
            .senders
            .values()
            .filter_map(|s| head(Box::new(s.pending()), base_fee))
            .collect();
        let mut out = Vec::new();
        let mut remaining = gas_limit;
        while let Some(Head { tx, rest, .. }) = heap.pop() {
            let gas = tx.gas_limit();
            if gas > remaining {
                continue;
            }
            remaining -= gas;
            out.push(tx.clone());
            if let Some(next) = head(rest, base_fee) {
                heap.push(next);
            }
        }
        out
    }

    /// After the chain went back (anvil's `evm_revert`, an unwind): every sender's next nonce
    /// is `state`'s again (lower than the pool knew); transactions below it are dropped, the
    /// rest wait for their nonces as usual.
    pub fn on_rewind(&mut self, state: &dyn AccountState) {
        let mut dropped = Vec::new();
        for (addr, s) in &mut self.senders {
            s.nonce = state.nonce(*addr);
            let keep = s.txs.split_off(&s.nonce);
            dropped.extend(s.txs.values().map(|tx| tx.hash));
            s.txs = keep;
        }
        for hash in dropped {
            self.by_hash.remove(&hash);
        }
        self.senders.retain(|_, s| !s.txs.is_empty());
    }

    /// Applies a new block: `mined` lists each sender whose transactions it included with the
    /// sender's new account nonce. Then every pooled sender is re-read from `state` (the truth
    /// after the block): transactions below the account nonce are dropped, as are those the
    /// balance no longer covers (and everything after them, like geth's demotion, becomes
    /// queued). Queued transactions whose gap the block closed become pending.
    pub fn on_block(&mut self, mined: &[(Address, u64)], state: &dyn AccountState) {
        for (addr, nonce) in mined {
            if let Some(s) = self.senders.get_mut(addr) {
                s.nonce = s.nonce.max(*nonce);
            }
        }
        let mut dropped = Vec::new();
        for (addr, s) in &mut self.senders {
            s.nonce = s.nonce.max(state.nonce(*addr));
            let keep = s.txs.split_off(&s.nonce);
            dropped.extend(s.txs.values().map(|tx| tx.hash));
            s.txs = keep;
            let balance = state.balance(*addr);
            let unaffordable: Vec<u64> = s
                .txs
                .iter()
                .filter(|(_, tx)| tx.cost > balance)
                .map(|(n, _)| *n)
                .collect();
            for n in unaffordable {
                if let Some(tx) = s.txs.remove(&n) {
                    dropped.push(tx.hash);
                }
            }
        }
        for hash in dropped {
            self.by_hash.remove(&hash);
        }
        self.senders.retain(|_, s| !s.txs.is_empty());
    }

    /// `(pending, queued)` counts, as `txpool_status`.
    #[must_use]
    pub fn status(&self) -> (usize, usize) {
        let pending: usize = self.senders.values().map(SenderTxs::pending_len).sum();
        (pending, self.by_hash.len() - pending)
    }

    /// All transactions grouped by sender and nonce, as `txpool_content`.
    #[must_use]
    pub fn content(&self) -> PoolContent {
        let mut content = PoolContent::default();
        for (addr, s) in &self.senders {
            let pending_len = s.pending_len();
            for (i, (nonce, tx)) in s.txs.range(s.nonce..).enumerate() {
                let group = if i < pending_len {
                    &mut content.pending
                } else {
                    &mut content.queued
                };
                group.entry(*addr).or_default().insert(*nonce, tx.clone());
            }
        }
        content
    }

    /// The nonce after `address`'s pending run (what `eth_getTransactionCount(.., "pending")`
    /// answers), if the pool holds pending transactions of it.
    #[must_use]
    pub fn pending_nonce(&self, address: &Address) -> Option<u64> {
        let s = self.senders.get(address)?;
        let n = s.pending_len() as u64;
        (n > 0).then_some(s.nonce + n)
    }

    /// A pooled transaction by hash.
    #[must_use]
    pub fn get(&self, hash: &TxHash) -> Option<&PooledTx> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.senders.get(sender)?.txs.get(nonce)
    }

    /// All transactions in (sender, nonce) order; used by the journal.
    pub(crate) fn all_sorted(&self) -> Vec<&PooledTx> {
        let mut senders: Vec<_> = self.senders.iter().collect();
        senders.sort_by_key(|(addr, _)| **addr);
        senders
            .into_iter()
            .flat_map(|(_, s)| s.txs.values())
            .collect()
    }
}
