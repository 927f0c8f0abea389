//! The sequencer service: mempool in, sealed blocks out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};
use hemi_btc_view::BitcoinView;
use hemi_chain::{Built, Chain, ChainError, L2Block, L2Tx, Sealer, SignedTx, StateView};
use hemi_hvm::BitcoinPin;
use hemi_txpool::{AccountState, PoolConfig, PoolError, TxPool};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use hemi_chain::pin::next_attributes;

/// Sequencer settings.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// What seals blocks (a [`crate::KeySealer`] for a lone sequencer).
    pub sealer: Arc<dyn Sealer>,
    /// Bitcoin network (for the precompiles' address parsing).
    pub network: bitcoin::Network,
    /// Where the pool journal is kept across clean restarts (none: in memory only).
    pub journal: Option<PathBuf>,
    /// Pool limits `(per sender, total)`; `None` keeps geth-like defaults (64, 10,000).
    pub pool_limits: Option<(usize, usize)>,
    /// Test-only: senders whose transactions this sequencer refuses (a censoring sequencer,
    /// for forced inclusion through Bitcoin).
    pub censor: Vec<Address>,
}

/// Reads nonces and balances for the pool from one state snapshot.
struct Snapshot(StateView);

impl Snapshot {
    /// The account, or the empty account (also when the read fails: the pool then refuses
    /// the transaction for lack of funds rather than accepting it blindly).
    fn get(&self, address: Address) -> hemi_chain::StoredAccount {
        self.0.account(&address).ok().flatten().unwrap_or_default()
    }
}

impl AccountState for Snapshot {
    fn nonce(&self, address: Address) -> u64 {
        self.get(address).nonce
    }
    fn balance(&self, address: Address) -> U256 {
        self.get(address).balance
    }
}

/// The sequencer: owns the mempool and produces blocks on the [`Chain`].
pub struct Sequencer {
    chain: Arc<Chain>,
    bitcoin: Arc<dyn BitcoinView>,
    config: SequencerConfig,
    address: Address,
    pool: Mutex<TxPool>,
    pool_config: PoolConfig,
    produce: Mutex<()>,
    /// anvil's clock: seconds added to the wall clock (`evm_increaseTime`), and the next
    /// block's timestamp if one was set (`evm_setNextBlockTimestamp`).
    clock: Mutex<Clock>,
    /// anvil's state snapshots (`evm_snapshot`): id → the head block then, and the next id.
    snapshots: Mutex<(std::collections::BTreeMap<u64, u64>, u64)>,
    /// anvil's direct state changes waiting for the next block.
    dev_changes: Mutex<Vec<hemi_chain::dev::DevChange>>,
    /// anvil's impersonated accounts, and whether every account is (`anvil_autoImpersonateAccount`).
    impersonating: Mutex<(std::collections::HashSet<Address>, bool)>,
    /// Impersonated transactions for the block being made now.
    impersonated: Mutex<Vec<SignedTx>>,
    /// Hashes of proposed blocks found valid on the current head (a sequencer set).
    validated: Mutex<std::collections::HashSet<B256>>,
    blocks: broadcast::Sender<u64>,
    pending: broadcast::Sender<B256>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("address", &self.address)
            .finish()
    }
}

/// The sequencer's clock adjustments (devnet tools, as anvil's).
#[derive(Debug, Default)]
struct Clock {
    offset: u64,
    next: Option<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Sequencer {
    /// A sequencer over `chain`, reading Bitcoin from `bitcoin`. Restores the pool journal if
    /// one exists.
    ///
    /// # Errors
    /// Reading the head state (to restore the pool journal) failed.
    pub fn new(
        chain: Arc<Chain>,
        bitcoin: Arc<dyn BitcoinView>,
        config: SequencerConfig,
    ) -> Result<Arc<Self>, ChainError> {
        let address = config.sealer.address();
        let spec = chain.spec().clone();
        let mut pool_config = PoolConfig::new(spec.chain_id, spec.gas_limit);
        if let Some((per_sender, total)) = config.pool_limits {
            pool_config.max_per_sender = per_sender;
            pool_config.max_total = total;
        }
        let mut pool = TxPool::new(pool_config);
        if let Some(path) = &config.journal {
            if let Ok(bytes) = std::fs::read(path) {
                let snap = Snapshot(chain.state_at(chain.head().0)?);
                match TxPool::from_journal(pool.config().clone(), &bytes, &snap) {
                    Ok((p, dropped)) => {
                        tracing::info!(
                            transactions = p.len(),
                            dropped,
                            "restored the pool journal"
                        );
                        pool = p;
                    }
                    Err(e) => tracing::warn!(error = %e, "pool journal not restored"),
                }
            }
        }
        Ok(Arc::new(Sequencer {
            chain,
            bitcoin,
            address,
            pool_config: pool.config().clone(),
            pool: Mutex::new(pool),
            produce: Mutex::new(()),
            snapshots: Mutex::new((std::collections::BTreeMap::new(), 0)),
            dev_changes: Mutex::new(Vec::new()),
            impersonating: Mutex::new((std::collections::HashSet::new(), false)),
            impersonated: Mutex::new(Vec::new()),
            validated: Mutex::new(std::collections::HashSet::new()),
            clock: Mutex::new(Clock::default()),
            blocks: broadcast::channel(1024).0,
            pending: broadcast::channel(8192).0,
            config,
        }))
    }

    /// The address that seals blocks.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Numbers of new blocks as they are committed.
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<u64> {
        self.blocks.subscribe()
    }

    /// Hashes of transactions as the pool accepts them.
    pub fn subscribe_pending(&self) -> broadcast::Receiver<B256> {
        self.pending.subscribe()
    }

    /// Adds a raw signed transaction to the pool.
    ///
    /// # Errors
    /// The pool's refusal, with geth's message.
    pub fn submit(&self, raw: &[u8]) -> Result<B256, SubmitError> {
        self.submit_recovered(raw, None)
    }

    /// [`Sequencer::submit`] given the sender this process already recovered from `raw`
    /// (its hash and sender; recovered again if the hash differs).
    ///
    /// # Errors
    /// As [`Sequencer::submit`].
    pub fn submit_recovered(
        &self,
        raw: &[u8],
        recovered: Option<(B256, alloy_primitives::Address)>,
    ) -> Result<B256, SubmitError> {
        // Decoding and signature recovery run outside the pool lock, so batched submissions
        // use every core.
        let checked = TxPool::check_recovered(raw, &self.pool_config, recovered)?;
        if self.config.censor.contains(&checked.sender()) {
            return Err(SubmitError::Censored(checked.sender()));
        }
        let snap = Snapshot(self.chain.state_at(self.chain.head().0)?);
        let hash = self.pool.lock().add_checked(checked, &snap)?;
        let _ = self.pending.send(hash);
        Ok(hash)
    }

    /// Runs `f` on the pool.
    pub fn with_pool<R>(&self, f: impl FnOnce(&TxPool) -> R) -> R {
        f(&self.pool.lock())
    }

    /// The Bitcoin view the precompiles of calls on block `number` answer from.
    ///
    /// # Errors
    /// Unknown block or Bitcoin view failure.
    pub fn pin_for(&self, number: u64) -> Result<BitcoinPin, ChainError> {
        hemi_chain::pin::pin_for(&self.chain, &self.bitcoin, self.config.network, number)
    }

    /// anvil's `evm_increaseTime`: later blocks' timestamps run `seconds` ahead of the wall
    /// clock (on top of earlier increases); returns the total.
    pub fn increase_time(&self, seconds: u64) -> u64 {
        let mut clock = self.clock.lock();
        clock.offset = clock.offset.saturating_add(seconds);
        clock.offset
    }

    /// anvil's `evm_setNextBlockTimestamp`: the next block's timestamp; later blocks go on
    /// from it (the offset becomes `timestamp − now`).
    ///
    /// # Errors
    /// [`ChainError::Call`] if it is before the head's timestamp (anvil's rule and words).
    pub fn set_next_timestamp(&self, timestamp: u64) -> Result<(), ChainError> {
        let head = self.chain.head().0;
        let parent = self
            .chain
            .header(head)?
            .ok_or(ChainError::UnknownBlock(head))?;
        if timestamp < parent.timestamp {
            return Err(ChainError::Call(format!(
                "Timestamp error: {timestamp} is lower than previous block's timestamp"
            )));
        }
        let mut clock = self.clock.lock();
        clock.next = Some(timestamp);
        clock.offset = timestamp.saturating_sub(now_secs());
        Ok(())
    }

    /// anvil's `evm_snapshot`: remembers the head; returns the snapshot's id (0, 1, …).
    pub fn snapshot(&self) -> u64 {
        let _one = self.produce.lock();
        let head = self.chain.head().0;
        let mut s = self.snapshots.lock();
        let id = s.1;
        s.0.insert(id, head);
        s.1 += 1;
        id
    }

    /// anvil's `evm_revert`: the chain goes back to the head snapshot `id` remembered (the
    /// blocks after it are removed with their state, the pool's nonces follow); that snapshot
    /// and later ones are forgotten. `false` for an unknown id, as anvil answers.
    ///
    /// # Errors
    /// The unwind failed (see [`Chain::unwind_to`]).
    pub fn revert(&self, id: u64) -> Result<bool, ChainError> {
        let _one = self.produce.lock();
        let target = {
            let mut s = self.snapshots.lock();
            let Some(&target) = s.0.get(&id) else {
                return Ok(false);
            };
            s.0.retain(|k, _| *k < id);
            target
        };
        self.chain.unwind_to(target)?;
        let snap = Snapshot(self.chain.state_at(target)?);
        self.pool.lock().on_rewind(&snap);
        self.clock.lock().next = None;
        Ok(true)
    }

    /// anvil's `anvil_setBalance` / `setNonce` / `setCode` / `setStorageAt`: the changes go in
    /// a block made now (a `0x7A` transaction followers re-execute), so they hold once this
    /// returns. Returns the block's number.
    ///
    /// # Errors
    /// A malformed change; the chain takes none (not a regtest devnet); block production.
    pub fn set_state(&self, changes: Vec<hemi_chain::dev::DevChange>) -> Result<u64, ChainError> {
        for c in &changes {
            c.op()?;
        }
        self.dev_changes.lock().extend(changes);
        Ok(self.produce()?.block.header.number)
    }

    /// anvil's `anvil_impersonateAccount` (`on`) / `anvil_stopImpersonatingAccount`.
    pub fn impersonate(&self, address: Address, on: bool) {
        let mut i = self.impersonating.lock();
        if on {
            i.0.insert(address);
        } else {
            i.0.remove(&address);
        }
    }

    /// anvil's `anvil_autoImpersonateAccount`: every account may send unsigned.
    pub fn auto_impersonate(&self, on: bool) {
        self.impersonating.lock().1 = on;
    }

    /// Whether `address` may send without a signature.
    pub fn is_impersonated(&self, address: &Address) -> bool {
        let i = self.impersonating.lock();
        i.1 || i.0.contains(address)
    }

    /// Sends `tx` from its impersonated account in a block made now (a `0x79` transaction
    /// followers re-execute; only a regtest devnet takes it). Returns its hash.
    ///
    /// # Errors
    /// The account is not impersonated; the transaction is invalid (nonce, funds, gas: why
    /// it was left out); the chain takes none; block production.
    pub fn send_impersonated(&self, tx: hemi_chain::ImpersonatedTx) -> Result<B256, ChainError> {
        if !self.is_impersonated(&tx.from) {
            return Err(ChainError::Call(format!(
                "{} is not impersonated (anvil_impersonateAccount)",
                tx.from
            )));
        }
        let stx = SignedTx::recover(L2Tx::Impersonated(tx))?;
        let hash = stx.hash;
        self.impersonated.lock().push(stx);
        let built = self.produce();
        // Never carried over to a later block.
        self.impersonated.lock().retain(|t| t.hash != hash);
        let built = built?;
        // In this block, or in one the block timer made meanwhile.
        if self.chain.tx_location(&hash)?.is_some() {
            return Ok(hash);
        }
        match built.rejected.iter().find(|(h, _)| *h == hash) {
            Some((_, why)) => Err(ChainError::Call(why.clone())),
            None => Err(ChainError::Call(
                "left out of the block (a nonce ahead of the account's, or over the block's gas limit)"
                    .into(),
            )),
        }
    }

    /// Builds, seals and commits the next block now.
    ///
    /// # Errors
    /// Database or Bitcoin view failures.
    pub fn produce(&self) -> Result<Built, ChainError> {
        if !self.chain.spec().validators.is_empty() {
            return Err(ChainError::Call(
                "blocks of this chain are decided by its sequencer set, not made on request".into(),
            ));
        }
        let _one = self.produce.lock();
        let (pin, attrs, pooled, timestamp) = self.next_inputs()?;
        // Impersonated transactions sent now go first.
        let mut candidates = self.impersonated.lock().clone();
        candidates.extend(pooled);
        let dev = std::mem::take(&mut *self.dev_changes.lock());
        let nonce_changed = dev.iter().any(|c| c.kind == 1);
        let built = match self.chain.build_block_with_dev(
            &pin,
            &attrs,
            candidates,
            timestamp,
            self.config.sealer.as_ref(),
            dev.clone(),
        ) {
            Ok(b) => b,
            Err(e) => {
                // Not lost: they go in the next block that builds.
                let mut pending = self.dev_changes.lock();
                let later = std::mem::take(&mut *pending);
                *pending = dev;
                pending.extend(later);
                return Err(e);
            }
        };
        {
            let mut pool = self.pool.lock();
            let mut mined: Vec<(Address, u64)> = Vec::new();
            for tx in &built.block.txs {
                if let L2Tx::Eth(env) = &tx.tx {
                    mined.push((tx.sender, alloy_consensus_nonce(env).saturating_add(1)));
                }
            }
            for (hash, why) in &built.rejected {
                tracing::debug!(%hash, %why, "left out of the block");
                pool.remove(hash);
            }
            let snap = Snapshot(self.chain.state_at(built.block.header.number)?);
            pool.on_block(&mined, &snap);
            if nonce_changed {
                // anvil_setNonce may lower a nonce: the pool takes the state's exactly.
                pool.on_rewind(&snap);
            }
        }
        let _ = self.blocks.send(built.block.header.number);
        Ok(built)
    }

    /// The next block's inputs: its Bitcoin pin and attributes, pool candidates, timestamp.
    fn next_inputs(
        &self,
    ) -> Result<(BitcoinPin, hemi_hvm::BtcAttributes, Vec<SignedTx>, u64), ChainError> {
        let (head, _) = self.chain.head();
        let parent = self
            .chain
            .header(head)?
            .ok_or(ChainError::UnknownBlock(head))?;
        let parent_pin = self.chain.pin(head)?.filter(|_| head > 0);
        let (attrs, pinned) = next_attributes(self.bitcoin.as_ref(), parent_pin)?;
        let base_fee = Chain::next_base_fee(&parent);
        let candidates: Vec<SignedTx> = self
            .pool
            .lock()
            // Transactions rarely use their whole gas limit: offer more than one block's worth
            // by limit and let execution pack by gas used.
            .best(base_fee, self.chain.spec().gas_limit.saturating_mul(4))
            .into_iter()
            .map(|p| SignedTx {
                hash: p.hash(),
                sender: p.sender(),
                tx: L2Tx::Eth(p.envelope().clone()),
            })
            .collect();
        let pin = BitcoinPin {
            view: self.bitcoin.clone(),
            pinned,
            network: self.config.network,
        };
        let timestamp = {
            let mut clock = self.clock.lock();
            clock
                .next
                .take()
                .unwrap_or_else(|| now_secs().saturating_add(clock.offset))
        };
        Ok((pin, attrs, candidates, timestamp))
    }

    /// Builds the block at `height` for the sequencer set to decide on (see
    /// [`Chain::propose_block`]), with `beneficiary` (the proposing validator) as its sequencer.
    /// Pool transactions that cannot apply leave the pool.
    ///
    /// # Errors
    /// `height` is not the next block; database or Bitcoin view failures.
    pub fn propose(&self, height: u64, beneficiary: Address) -> Result<L2Block, ChainError> {
        let _one = self.produce.lock();
        let head = self.chain.head().0;
        if height != head + 1 {
            return Err(ChainError::Call(format!(
                "asked to propose block {height}, the head is {head}"
            )));
        }
        let (pin, attrs, candidates, timestamp) = self.next_inputs()?;
        let (block, rejected) =
            self.chain
                .propose_block(&pin, &attrs, candidates, timestamp, beneficiary)?;
        let mut pool = self.pool.lock();
        for (hash, why) in &rejected {
            tracing::debug!(%hash, %why, "left out of the proposal");
            pool.remove(hash);
        }
        Ok(block)
    }

    /// Re-executes a block proposed to the set on the head, without committing it. A block
    /// already found valid on this head is not executed again (validators that share this
    /// chain in one process ask once each).
    ///
    /// # Errors
    /// Why the block is invalid; [`ChainError::BitcoinNotReady`] while our Bitcoin view lacks
    /// its pin.
    pub fn validate(&self, block: &L2Block) -> Result<(), ChainError> {
        let hash = block.hash();
        // Found valid before, or assembled by this chain (validators of one process share it).
        if self.validated.lock().contains(&hash) || self.chain.executed_on_head(hash) {
            return Ok(());
        }
        let view = self.bitcoin.clone();
        let network = self.config.network;
        self.chain.validate_block(block, &|attrs| {
            hemi_chain::pin::resolve_pin(view.clone(), network, attrs)
        })?;
        let mut v = self.validated.lock();
        if v.len() > 64 {
            v.clear();
        }
        v.insert(hash);
        Ok(())
    }

    /// Commits a block the set decided, its certificate attached: checks the certificate
    /// against the chain spec's validators, re-executes, commits, and updates the pool.
    /// Returns whether the block was new (validators that share this chain commit it once).
    ///
    /// # Errors
    /// The block does not import (certificate, execution, Bitcoin not ready).
    pub fn commit(&self, block: &L2Block) -> Result<bool, ChainError> {
        let _one = self.produce.lock();
        let number = block.header.number;
        if number <= self.chain.head().0 {
            return match self.chain.header(number)?.map(|h| h.hash_slow()) {
                Some(h) if h == block.hash() => Ok(false),
                other => Err(ChainError::Call(format!(
                    "block {number} is already {other:?}, not {}",
                    block.hash()
                ))),
            };
        }
        let verifier = hemi_chain::ValidatorSet(self.chain.spec().validators.clone());
        let view = self.bitcoin.clone();
        let network = self.config.network;
        self.chain.import_block(block, &verifier, &|attrs| {
            hemi_chain::pin::resolve_pin(view.clone(), network, attrs)
        })?;
        self.validated.lock().clear();
        let stored = self
            .chain
            .block(number)?
            .ok_or(ChainError::UnknownBlock(number))?;
        {
            let mut pool = self.pool.lock();
            let mined: Vec<(Address, u64)> = stored
                .txs
                .iter()
                .filter_map(|tx| match &tx.tx {
                    L2Tx::Eth(env) => {
                        Some((tx.sender, alloy_consensus_nonce(env).saturating_add(1)))
                    }
                    _ => None,
                })
                .collect();
            let snap = Snapshot(self.chain.state_at(number)?);
            pool.on_block(&mined, &snap);
        }
        let _ = self.blocks.send(number);
        Ok(true)
    }

    /// Produces a block every `block_time` until the returned handle is aborted.
    pub fn spawn(self: &Arc<Self>, block_time: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(block_time);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = me.clone();
                match tokio::task::spawn_blocking(move || s.produce()).await {
                    Ok(Ok(b)) => tracing::debug!(
                        number = b.block.header.number,
                        txs = b.block.txs.len(),
                        "block"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "block production failed"),
                    Err(e) => tracing::error!(error = %e, "block production panicked"),
                }
            }
        })
    }

    /// Writes the pool journal (on clean shutdown).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_journal(&self) -> std::io::Result<()> {
        if let Some(path) = &self.config.journal {
            let bytes = self.pool.lock().to_journal();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(tmp, path)?;
        }
        Ok(())
    }
}

fn alloy_consensus_nonce(env: &alloy_consensus::TxEnvelope) -> u64 {
    use alloy_consensus::Transaction;
    env.nonce()
}

/// Why a transaction was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The pool refused it (geth's message).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Reading state failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The sender is censored (test-only `--censor`).
    #[error("this sequencer censors {0} (test flag --censor): publish it with hemi force-tx")]
    Censored(Address),
}
