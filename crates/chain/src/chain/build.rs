//! Making blocks and taking them in: [`Chain::build_block`] and [`Chain::import_block`], phase by
//! phase (pin Bitcoin → system transactions → user transactions → roots → seal → commit).

use alloy_consensus::{Header, EMPTY_OMMER_ROOT_HASH};
use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{Address, Bytes, B256, U256};
use bitcoin::hashes::Hash;
use hemi_btc_view::BlockRef;
use hemi_hvm::{BitcoinPin, BtcAttributes};
use redb::{Durability, ReadableTable};
use revm::database::BundleState;

use super::{u256_word, BlockWithReceipts, Built, Chain, Head, StoredBlock};
use crate::block::{
    logs_bloom, receipts_root, transactions_root, L2Block, L2Receipt, Seal, SEAL_LEN,
};
use crate::db::*;
use crate::exec::{self, BlockContext, Executed, Mode};
use crate::pop_rewards::PopPayoutTx;
use crate::seal::{SealVerifier, Sealer};
use crate::state::{compute_diff, BlockDiff};
use crate::system::{self, SystemInputs};
use crate::tunnel::TunnelActivationTx;
use crate::tx::{L2Tx, SignedTx};
use crate::{BlockError, ChainError};

impl Chain {
    /// The base fee of the block after `parent`.
    pub fn next_base_fee(parent: &Header) -> u64 {
        BaseFeeParams::ethereum().next_block_base_fee(
            parent.gas_used,
            parent.gas_limit,
            parent.base_fee_per_gas.unwrap_or_default(),
        )
    }

    pub(super) fn block_context(
        &self,
        parent: &Header,
        timestamp: u64,
        beneficiary: Address,
    ) -> BlockContext {
        BlockContext {
            chain_id: self.spec.chain_id,
            number: parent.number + 1,
            timestamp,
            gas_limit: self.spec.gas_limit,
            base_fee: Self::next_base_fee(parent),
            beneficiary,
            prevrandao: parent.hash_slow(),
            dev_state: self.spec.dev_state,
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
    /// attributes `attrs` (which resolve to `bitcoin`), the PoP payout due in it, the tunnel's
    /// activation and the deposits it confirms (on top of the head's state: `number` is the
    /// block after the head).
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
        let (tunnel_activation, deposits, payouts) = match &self.spec.tunnel {
            Some(t) if number >= t.activation => {
                let (parent, _) = self.latest_view()?;
                let (view, pinned) = (bitcoin.view.as_ref(), bitcoin.pinned);
                let deposits = crate::tunnel::eligible_deposits(
                    self.spec.chain_id,
                    &t.params,
                    view,
                    pinned,
                    &parent,
                )?;
                let payouts = crate::tunnel::eligible_payouts(&t.params, view, pinned, &parent)?;
                let activation =
                    (number == t.activation).then(|| TunnelActivationTx::new(&t.params));
                (activation, deposits, payouts)
            }
            _ => (None, Vec::new(), Vec::new()),
        };
        Ok(SystemInputs {
            attrs: attrs.clone(),
            payout: self.payout_for(number, bitcoin)?,
            tunnel_activation,
            deposits,
            payouts,
        })
    }

    /// Test-only: from now on, build blocks without the forced transactions due in them, and
    /// take such blocks when validating a set's proposal (what a censoring sequencer, or a set
    /// more than a third faulty, does; followers refuse such blocks).
    pub fn set_skip_forced(&self, skip: bool) {
        self.skip_forced
            .store(skip, std::sync::atomic::Ordering::Relaxed);
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
        self.build_block_with_dev(bitcoin, attrs, candidates, timestamp, sealer, Vec::new())
    }

    /// [`Chain::build_block`] with the devnet's direct state changes (`dev`, see
    /// [`crate::dev`]) applied after the protocol's system transactions.
    ///
    /// # Errors
    /// As [`Chain::build_block`]; [`BlockError::DevState`] when the spec takes none or a change
    /// is malformed.
    pub fn build_block_with_dev(
        &self,
        bitcoin: &BitcoinPin,
        attrs: &BtcAttributes,
        candidates: Vec<SignedTx>,
        timestamp: u64,
        sealer: &dyn Sealer,
        dev: Vec<crate::dev::DevChange>,
    ) -> Result<Built, ChainError> {
        let _guard = self.write.lock();
        let (header, executed, diff) =
            self.assemble(bitcoin, attrs, candidates, timestamp, sealer.address(), dev)?;
        let number = header.number;
        let hash = header.hash_slow();
        let w = self.begin_write()?;
        write_state_records(&w, number, &executed.bundle, &diff)?;
        let seal = sealer.seal(self.spec.chain_id, hash)?;
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        let body: Vec<L2Tx> = executed.txs.iter().map(|t| t.tx.clone()).collect();
        Self::write_block(
            &w,
            &header,
            hash,
            &seal,
            None,
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
                certificate: None,
            },
            receipts: executed.receipts.clone(),
        });
        Ok(Built {
            block: StoredBlock {
                header,
                hash,
                txs: executed.txs,
                seal,
                certificate: None,
            },
            receipts: executed.receipts,
            rejected: executed.rejected,
        })
    }

    /// Assembles the next block on the head (with the write lock held): the header, what
    /// execution produced and the state diff; nothing is written.
    fn assemble(
        &self,
        bitcoin: &BitcoinPin,
        attrs: &BtcAttributes,
        candidates: Vec<SignedTx>,
        timestamp: u64,
        beneficiary: Address,
        dev: Vec<crate::dev::DevChange>,
    ) -> Result<(Header, Executed, BlockDiff), ChainError> {
        let head = *self.head.read();
        let parent = self
            .header(head.number)?
            .ok_or_else(|| ChainError::Corrupt("head header missing".into()))?;
        let ctx = self.block_context(&parent, timestamp.max(parent.timestamp), beneficiary);
        let system = self.system_inputs(ctx.number, attrs, bitcoin)?.txs();
        let mut txs = Vec::with_capacity(candidates.len() + system.len());
        for tx in system {
            txs.push(SignedTx::recover(tx)?);
        }
        if !dev.is_empty() {
            if !self.spec.dev_state {
                return Err(BlockError::DevState(
                    "this chain takes none (only a regtest devnet does)".into(),
                )
                .into());
            }
            for c in &dev {
                c.op()?;
            }
            txs.push(SignedTx::recover(L2Tx::DevState(crate::dev::DevStateTx {
                number: ctx.number,
                changes: dev,
            }))?);
        }
        // Forced transactions due in this block first (see `crate::forced`).
        let due = if self.skip_forced.load(std::sync::atomic::Ordering::Relaxed) {
            Vec::new()
        } else {
            self.forced_due(ctx.number, bitcoin)?
        };
        txs.extend(crate::forced::forced_signed(&due));
        txs.extend(
            candidates
                .into_iter()
                .filter(|c| !due.iter().any(|d| d.hash == c.hash)),
        );
        let (view, snap) = self.latest_view()?;
        let executed = exec::execute(view, &ctx, bitcoin.clone(), txs, self.build_mode())?;
        let diff = compute_diff(&snap, ctx.number, &changes_of(&executed.bundle))?;
        // Let go of the overlay before adding to it (a held copy would make the push copy).
        drop(snap);
        let header = self.header_for(&parent, &ctx, diff.root, &executed);
        Ok((header, executed, diff))
    }

    /// Assembles the next block on the head for a validator set to decide on, without sealing
    /// or committing it: what a proposer offers. It commits later, with its certificate,
    /// through [`Chain::import_block`]. Returns the block and the candidates left out (with
    /// why).
    ///
    /// # Errors
    /// As [`Chain::build_block`].
    pub fn propose_block(
        &self,
        bitcoin: &BitcoinPin,
        attrs: &BtcAttributes,
        candidates: Vec<SignedTx>,
        timestamp: u64,
        beneficiary: Address,
    ) -> Result<(L2Block, Vec<(B256, String)>), ChainError> {
        let _guard = self.write.lock();
        let (header, mut executed, diff) = self.assemble(
            bitcoin,
            attrs,
            candidates,
            timestamp,
            beneficiary,
            Vec::new(),
        )?;
        let rejected = std::mem::take(&mut executed.rejected);
        let block = L2Block {
            txs: executed.txs.iter().map(|t| t.tx.clone()).collect(),
            seal: Seal::ZERO,
            certificate: None,
            header,
        };
        *self.executed.lock() = Some(ExecutedBlock {
            hash: block.hash(),
            parent: block.header.parent_hash,
            executed,
            diff,
            pinned: bitcoin.pinned,
        });
        Ok((block, rejected))
    }

    /// Whether block `hash` was assembled ([`Chain::propose_block`]) or validated
    /// ([`Chain::validate_block`]) on the current head and waits to commit.
    pub fn executed_on_head(&self, hash: B256) -> bool {
        let head = self.head.read().hash;
        self.executed
            .lock()
            .as_ref()
            .is_some_and(|c| c.hash == hash && c.parent == head)
    }

    /// Checks and re-executes `block` on the head as [`Chain::import_block`] does, except for
    /// its seal, and commits nothing: a validator's vote on a proposal.
    ///
    /// # Errors
    /// As [`Chain::import_block`].
    pub fn validate_block(
        &self,
        block: &L2Block,
        bitcoin: &dyn Fn(&BtcAttributes) -> Result<BitcoinPin, ChainError>,
    ) -> Result<B256, ChainError> {
        let _guard = self.write.lock();
        let (hash, executed, diff, pin) = self.check_and_execute(block, bitcoin)?;
        *self.executed.lock() = Some(ExecutedBlock {
            hash,
            parent: block.header.parent_hash,
            executed,
            diff,
            pinned: pin.pinned,
        });
        Ok(hash)
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
        let h = &block.header;
        verifier.verify(
            self.spec.chain_id,
            h.number,
            h.hash_slow(),
            &block.seal,
            block.certificate.as_ref(),
        )?;
        // A block this chain already executed on this head (proposed or validated) commits
        // that result: its hash fixes its header and transactions, so the result is the same.
        let hash = h.hash_slow();
        let head = self.head.read().hash;
        let cached = self
            .executed
            .lock()
            .take()
            .filter(|c| c.hash == hash && c.parent == head && h.parent_hash == head)
            // The header fixes the transactions only through their root: check that these
            // are the ones it names (a copy of the header with other transactions is not it).
            .filter(|_| transactions_root(&block.txs) == h.transactions_root);
        let (hash, executed, diff, pinned) = match cached {
            Some(c) => (c.hash, c.executed, c.diff, c.pinned),
            None => {
                let (hash, executed, diff, pin) = self.check_and_execute(block, bitcoin)?;
                (hash, executed, diff, pin.pinned)
            }
        };
        let senders: Vec<Address> = executed.txs.iter().map(|t| t.sender).collect();
        let w = self.begin_write()?;
        write_state_records(&w, h.number, &executed.bundle, &diff)?;
        Self::write_block(
            &w,
            h,
            hash,
            &block.seal,
            block.certificate.as_ref(),
            &block.txs,
            &senders,
            &executed.receipts,
            pinned,
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
                certificate: block.certificate.clone(),
            },
            receipts: executed.receipts,
        });
        Ok(hash)
    }

    /// Import's checks and re-execution of `block` on the head (the write lock held), except
    /// for its seal: the block hash, what execution produced, the state diff and the pin.
    fn check_and_execute(
        &self,
        block: &L2Block,
        bitcoin: &dyn Fn(&BtcAttributes) -> Result<BitcoinPin, ChainError>,
    ) -> Result<(B256, Executed, BlockDiff, BitcoinPin), ChainError> {
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
        self.check_forced(&ctx, &pin, &system, &block.txs)?;
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
        Ok((hash, executed, diff, pin))
    }

    pub(super) fn header_for(
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

    pub(super) fn begin_write(&self) -> Result<redb::WriteTransaction, ChainError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.set_quick_repair(true);
        Ok(w)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_block(
        w: &redb::WriteTransaction,
        header: &Header,
        hash: B256,
        seal: &Seal,
        certificate: Option<&crate::Certificate>,
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
        if let Some(c) = certificate {
            w.open_table(CERTIFICATES)?
                .insert(n, c.encode().as_slice())?;
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
}

/// A block executed on the head but not committed yet (see `Chain::executed`).
pub(super) struct ExecutedBlock {
    hash: B256,
    parent: B256,
    executed: Executed,
    diff: BlockDiff,
    pinned: BlockRef,
}

/// What a block's execution changed, per account, as a changeset.
pub(super) fn changes_of(bundle: &BundleState) -> ChangeSet {
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
pub(super) fn write_state_records(
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
