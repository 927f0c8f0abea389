//! The tunnel's system transactions: the chain installs the tunnel's contracts at its
//! activation block (`0x7E`), calls `TunnelManager.confirmDeposit` for every deposit that
//! reached its confirmations (`0x7F`) and `finalizeWithdrawal` for every custodian payout that
//! did (`0x7B`), at the start of a block, through [`crate::system`].
//!
//! Which deposits a block confirms is a rule every node recomputes from its own Bitcoin view as
//! of the block's pin and the parent block's state ([`eligible_deposits`]): the vault's unspent
//! outputs with at least `deposit_confirmations`, that are well-formed deposits
//! ([`hemi_tunnel::parse_op_return_deposit`]) of at least `min_deposit`, not yet minted, oldest
//! first, at most [`MAX_DEPOSITS_PER_BLOCK`]; and the taproot deposits whose `HEMT` hint sits
//! in one of the [`contracts::SWEEP_BLOCKS`] Bitcoin blocks that just reached those
//! confirmations, passing the contract's taproot rules. The contract checks each again through
//! the hVM precompiles; the rule only saves the sequencer from sending calls it would refuse.

use alloy_primitives::{Address, B256, U256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use hemi_btc_view::{AsOf, BitcoinView, BlockRef};
use hemi_tunnel::contracts::{self, TUNNEL_MANAGER_ADDRESS};
use hemi_tunnel::TunnelParams;

use crate::{ChainError, StateView, TxDecodeError};

/// EIP-2718 type of the activation transaction.
pub const TUNNEL_ACTIVATION_TX_TYPE: u8 = 0x7E;
/// EIP-2718 type of a deposit confirmation.
pub const DEPOSIT_TX_TYPE: u8 = 0x7F;
/// EIP-2718 type of a payout finalization.
pub const PAYOUT_TX_TYPE: u8 = 0x7B;
/// The most deposits one block confirms (the rest wait for the next).
pub const MAX_DEPOSITS_PER_BLOCK: usize = 16;
/// The most payouts one block finalizes.
pub const MAX_PAYOUTS_PER_BLOCK: usize = 4;

/// When and how the tunnel starts (the chain spec's `tunnel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSpec {
    /// The L2 block that installs the contracts (at least 1).
    pub activation: u64,
    /// Its parameters.
    #[serde(flatten)]
    pub params: TunnelParams,
}

/// `0x7E ‖ rlp([vault output key, deposit fee, min deposit, confirmations, withdrawal
/// deadline])`: installs the tunnel's contracts with these parameters.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct TunnelActivationTx {
    /// The vault's taproot output key.
    pub vault_output_key: B256,
    /// Satoshis kept from each deposit.
    pub deposit_fee: u64,
    /// Smallest deposit minted, satoshis.
    pub min_deposit: u64,
    /// Confirmations a deposit needs.
    pub deposit_confirmations: u32,
    /// L2 blocks before an unpaid withdrawal can be challenged.
    pub withdrawal_deadline: u64,
}

impl TunnelActivationTx {
    /// The activation carrying `params`.
    pub fn new(params: &TunnelParams) -> Self {
        TunnelActivationTx {
            vault_output_key: params.vault_output_key,
            deposit_fee: params.deposit_fee,
            min_deposit: params.min_deposit,
            deposit_confirmations: params.deposit_confirmations,
            withdrawal_deadline: params.withdrawal_deadline,
        }
    }

    /// Its parameters.
    pub fn params(&self) -> TunnelParams {
        TunnelParams {
            vault_output_key: self.vault_output_key,
            deposit_fee: self.deposit_fee,
            min_deposit: self.min_deposit,
            deposit_confirmations: self.deposit_confirmations,
            withdrawal_deadline: self.withdrawal_deadline,
        }
    }
}

/// `0x7F ‖ rlp([txid, vout])`: `confirmDeposit(txid, vout)` called by the chain. The txid is in
/// display order (as Bitcoin Core prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct DepositTx {
    /// The deposit transaction's id, display order.
    pub txid: B256,
    /// The vault output.
    pub vout: u32,
}

/// `0x7B ‖ rlp([txid])`: `finalizeWithdrawal(txid)` called by the chain for a custodian payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PayoutTx {
    /// The payout transaction's id, display order.
    pub txid: B256,
}

/// Decodes an RLP body (after the type byte), the whole slice.
///
/// # Errors
/// Malformed RLP or trailing bytes.
pub(crate) fn decode_body<T: Decodable>(mut bytes: &[u8]) -> Result<T, TxDecodeError> {
    let tx = T::decode(&mut bytes).map_err(TxDecodeError::Rlp)?;
    if !bytes.is_empty() {
        return Err(TxDecodeError::TrailingBytes);
    }
    Ok(tx)
}

/// Encodes an RLP body after its type byte.
pub(crate) fn encode_with_type<T: Encodable>(ty: u8, tx: &T) -> Vec<u8> {
    let mut out = vec![ty];
    tx.encode(&mut out);
    out
}

/// The L2 block that minted `(txid, vout)` as of `state`, if any (the manager's `mintedIn`).
///
/// # Errors
/// Database errors.
pub fn minted_in(state: &StateView, txid: B256, vout: u32) -> Result<Option<u64>, ChainError> {
    let slot = contracts::minted_slot(txid, vout);
    let v = state.storage(
        &TUNNEL_MANAGER_ADDRESS,
        &B256::from(slot.to_be_bytes::<32>()),
    )?;
    Ok((v != U256::ZERO).then(|| u64::try_from(v).unwrap_or(u64::MAX)))
}

/// Whether the manager has processed payout `txid` (display order): `finalizeWithdrawal` ran.
///
/// # Errors
/// Database errors.
pub fn payout_processed(state: &StateView, txid: B256) -> Result<bool, ChainError> {
    let slot = contracts::payout_processed_slot(txid);
    Ok(state.storage(
        &TUNNEL_MANAGER_ADDRESS,
        &B256::from(slot.to_be_bytes::<32>()),
    )? != U256::ZERO)
}

/// The L2 block whose `reportInvalidSpend` froze new deposits, if one did.
///
/// # Errors
/// Database errors.
pub fn frozen_at(state: &StateView) -> Result<Option<u64>, ChainError> {
    let v = state.storage(
        &TUNNEL_MANAGER_ADDRESS,
        &B256::from(U256::from(contracts::SLOT_FROZEN_AT).to_be_bytes::<32>()),
    )?;
    Ok((v != U256::ZERO).then(|| u64::try_from(v).unwrap_or(u64::MAX)))
}

/// The deposits the block pinned to `pinned` confirms, on top of `parent` state (see the module
/// docs), oldest first; none once the vault is frozen ([`frozen_at`]).
///
/// # Errors
/// Bitcoin view or database errors.
pub fn eligible_deposits(
    chain_id: u64,
    params: &TunnelParams,
    view: &dyn BitcoinView,
    pinned: BlockRef,
    parent: &StateView,
) -> Result<Vec<DepositTx>, ChainError> {
    if frozen_at(parent)?.is_some() {
        return Ok(Vec::new());
    }
    let btc = |e: hemi_btc_view::ViewError| ChainError::BitcoinNotReady(e.to_string());
    let vault = params.vault_script();
    let at = AsOf::Block(pinned.hash);
    let needed = params.deposit_confirmations.max(1);
    let mut found = Vec::new();
    for utxo in view.utxos_by_script(&vault, at).map_err(btc)? {
        if utxo.height > pinned.height || pinned.height - utxo.height + 1 < needed {
            continue;
        }
        if utxo.value < params.min_deposit {
            continue;
        }
        let Some(indexed) = view.transaction(&utxo.outpoint.txid, at).map_err(btc)? else {
            continue;
        };
        match hemi_tunnel::parse_op_return_deposit(&indexed.tx, &vault) {
            Ok(Some(d)) if d.outpoint == utxo.outpoint => {}
            _ => continue,
        }
        let txid = contracts::txid_display(&utxo.outpoint.txid);
        if minted_in(parent, txid, utxo.outpoint.vout)?.is_some() {
            continue;
        }
        found.push((
            (utxo.height, indexed.location.index, utxo.outpoint.vout),
            DepositTx {
                txid,
                vout: utxo.outpoint.vout,
            },
        ));
    }
    for (order, d) in taproot_deposits(chain_id, params, view, pinned)? {
        if minted_in(parent, d.txid, d.vout)?.is_none() {
            found.push((order, d));
        }
    }
    found.sort_by_key(|(order, _)| *order);
    Ok(found
        .into_iter()
        .take(MAX_DEPOSITS_PER_BLOCK)
        .map(|(_, d)| d)
        .collect())
}

/// Where a deposit is in Bitcoin: (height, transaction index, vout) — the order deposits are
/// minted in.
pub type DepositOrder = (u32, u32, u32);

/// A taproot deposit found through its `HEMT` hint in a Bitcoin block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTaproot {
    /// Where it is: (height, transaction index, vout) — the rule's order.
    pub order: DepositOrder,
    /// Its parameters.
    pub deposit: hemi_tunnel::TaprootDeposit,
    /// The deposit output.
    pub outpoint: bitcoin::OutPoint,
    /// Its value, satoshis.
    pub value: u64,
}

/// The well-formed taproot deposits (with a `HEMT` hint, for the vault key `vault_key`) in
/// best-chain Bitcoin block `hash` at `height`, in block order. Blocks are immutable by hash,
/// so the answer is cached (the rule scans the same few blocks for many L2 blocks in a row).
///
/// # Errors
/// [`ChainError::BitcoinNotReady`] if the block's data is not in the view.
pub fn taproot_deposits_in(
    view: &dyn BitcoinView,
    height: u32,
    hash: bitcoin::BlockHash,
    vault_key: bitcoin::XOnlyPublicKey,
) -> Result<std::sync::Arc<Vec<FoundTaproot>>, ChainError> {
    use std::sync::{Arc, Mutex};
    type Cache = std::collections::VecDeque<(
        bitcoin::BlockHash,
        bitcoin::XOnlyPublicKey,
        Arc<Vec<FoundTaproot>>,
    )>;
    static CACHE: Mutex<Cache> = Mutex::new(Cache::new());
    const KEEP: usize = 64;
    if let Ok(c) = CACHE.lock() {
        if let Some((_, _, found)) = c.iter().find(|(h, k, _)| *h == hash && *k == vault_key) {
            return Ok(found.clone());
        }
    }
    let txs = view
        .block_transactions(&hash)
        .map_err(|e| ChainError::BitcoinNotReady(e.to_string()))?
        .ok_or_else(|| {
            ChainError::BitcoinNotReady(format!("block {hash} at height {height} is not indexed"))
        })?;
    let mut found = Vec::new();
    for (index, tx) in txs.iter().enumerate() {
        if tx.output.len() > contracts::MAX_DEPOSIT_OUTPUTS {
            continue;
        }
        // The contract reads the one OP_RETURN as the hint.
        if tx
            .output
            .iter()
            .filter(|o| o.script_pubkey.is_op_return())
            .count()
            != 1
        {
            continue;
        }
        if let Ok(Some((deposit, dep))) = hemi_tunnel::find_taproot_deposit(tx, vault_key) {
            found.push(FoundTaproot {
                order: (height, index as u32, dep.outpoint.vout),
                deposit,
                outpoint: dep.outpoint,
                value: dep.amount.to_sat(),
            });
        }
    }
    let found = Arc::new(found);
    if let Ok(mut c) = CACHE.lock() {
        if c.len() >= KEEP {
            c.pop_front();
        }
        c.push_back((hash, vault_key, found.clone()));
    }
    Ok(found)
}

/// Taproot deposits the block pinned to `pinned` may confirm: found through their `HEMT` hint
/// in the [`contracts::SWEEP_BLOCKS`] Bitcoin blocks that have from `deposit_confirmations`
/// to `deposit_confirmations + SWEEP_BLOCKS - 1` confirmations, of at least `min_deposit`,
/// passing the contract's taproot rules ([`hemi_tunnel::TaprootDeposit::mint_refusal`]) at
/// their confirmations. (Older ones can still be minted by anyone calling `confirmDeposit`.)
///
/// # Errors
/// Bitcoin view errors.
fn taproot_deposits(
    chain_id: u64,
    params: &TunnelParams,
    view: &dyn BitcoinView,
    pinned: BlockRef,
) -> Result<Vec<(DepositOrder, DepositTx)>, ChainError> {
    let btc = |e: hemi_btc_view::ViewError| ChainError::BitcoinNotReady(e.to_string());
    let Ok(vault_key) = bitcoin::XOnlyPublicKey::from_slice(params.vault_output_key.as_slice())
    else {
        return Ok(Vec::new());
    };
    let needed = params.deposit_confirmations.max(1);
    let mut out = Vec::new();
    for back in 0..contracts::SWEEP_BLOCKS {
        let confirmations = needed + back;
        let Some(height) = (pinned.height + 1).checked_sub(confirmations) else {
            break;
        };
        let Some((block, _)) = view.header_at(height).map_err(btc)? else {
            continue;
        };
        for f in taproot_deposits_in(view, height, block.hash, vault_key)?.iter() {
            if f.value < params.min_deposit
                || f.deposit
                    .mint_refusal(chain_id, params.deposit_fee, confirmations)
                    .is_some()
            {
                continue;
            }
            out.push((
                f.order,
                DepositTx {
                    txid: contracts::txid_display(&f.outpoint.txid),
                    vout: f.outpoint.vout,
                },
            ));
        }
    }
    Ok(out)
}

/// The custodian payouts the block pinned to `pinned` finalizes on top of `parent` state: vault
/// outputs (the payouts' change) of transactions with an id list ([`hemi_tunnel::payout`]),
/// at least `deposit_confirmations` deep, of at most 128 outputs, not processed yet; oldest
/// first, at most [`MAX_PAYOUTS_PER_BLOCK`].
///
/// # Errors
/// Bitcoin view or database errors.
pub fn eligible_payouts(
    params: &TunnelParams,
    view: &dyn BitcoinView,
    pinned: BlockRef,
    parent: &StateView,
) -> Result<Vec<PayoutTx>, ChainError> {
    let btc = |e: hemi_btc_view::ViewError| ChainError::BitcoinNotReady(e.to_string());
    let vault = params.vault_script();
    let at = AsOf::Block(pinned.hash);
    let needed = params.deposit_confirmations.max(1);
    let mut found = Vec::new();
    for utxo in view.utxos_by_script(&vault, at).map_err(btc)? {
        if utxo.height > pinned.height || pinned.height - utxo.height + 1 < needed {
            continue;
        }
        let Some(indexed) = view.transaction(&utxo.outpoint.txid, at).map_err(btc)? else {
            continue;
        };
        if indexed.tx.output.len() > contracts::MAX_DEPOSIT_OUTPUTS
            || !hemi_tunnel::payout::is_payout(&indexed.tx)
        {
            continue;
        }
        let txid = contracts::txid_display(&utxo.outpoint.txid);
        if payout_processed(parent, txid)? {
            continue;
        }
        let order = (utxo.height, indexed.location.index);
        if !found.iter().any(|(_, p): &(_, PayoutTx)| p.txid == txid) {
            found.push((order, PayoutTx { txid }));
        }
    }
    found.sort_by_key(|(order, _)| *order);
    Ok(found
        .into_iter()
        .take(MAX_PAYOUTS_PER_BLOCK)
        .map(|(_, p)| p)
        .collect())
}

/// The sender the chain's system transactions show (Hemi's `0x8888…8888`).
pub fn system_sender() -> Address {
    Address::from(hemi_hvm::attributes::BTC_ATTRIBUTES_SENDER)
}

/// `txid:vout, …` for messages.
pub(crate) fn show_deposits(d: &[DepositTx]) -> String {
    d.iter()
        .map(|d| format!("{}:{}", alloy_primitives::hex::encode(d.txid), d.vout))
        .collect::<Vec<_>>()
        .join(", ")
}
