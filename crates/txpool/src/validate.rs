//! Stateless checks: decoding, type, size, chain id, fees, intrinsic gas, signature.

use alloy_consensus::{transaction::SignerRecoverable, Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, U256};

use crate::{PoolConfig, PoolError};

/// Largest encoded transaction the pool accepts (geth's `txMaxSize`, 4 slots of 32 KiB).
pub const MAX_TX_SIZE: usize = 128 * 1024;

/// Largest init code of a contract creation (EIP-3860: twice the EIP-170 code size limit).
pub const MAX_INITCODE_SIZE: usize = 2 * 24_576;

/// Base cost of every transaction.
const TX_GAS: u64 = 21_000;
/// Extra base cost of a contract creation.
const TX_CREATE_GAS: u64 = 32_000;
/// Per zero byte of calldata.
const TX_DATA_ZERO_GAS: u64 = 4;
/// Per non-zero byte of calldata (EIP-2028).
const TX_DATA_NON_ZERO_GAS: u64 = 16;
/// Per address in the access list (EIP-2930).
const ACCESS_LIST_ADDRESS_GAS: u64 = 2_400;
/// Per storage key in the access list (EIP-2930).
const ACCESS_LIST_STORAGE_KEY_GAS: u64 = 1_900;
/// Per 32-byte word of init code (EIP-3860).
const INITCODE_WORD_GAS: u64 = 2;

/// EIP-2718 type bytes the sequencer accepts besides legacy.
const EIP2930_TYPE: u8 = 1;
const EIP1559_TYPE: u8 = 2;

/// Gas a transaction consumes before executing any code: 21 000 (+32 000 for a creation),
/// 16 per non-zero and 4 per zero calldata byte, 2 400 per access-list address and 1 900 per
/// storage key, and for creations 2 per 32-byte word of init code (EIP-3860).
///
/// Saturates instead of overflowing (the pool's size limit keeps real values far below).
#[must_use]
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let input = tx.input();
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    let non_zeros = input.len() as u64 - zeros;
    let mut gas = TX_GAS
        .saturating_add(zeros.saturating_mul(TX_DATA_ZERO_GAS))
        .saturating_add(non_zeros.saturating_mul(TX_DATA_NON_ZERO_GAS));
    if tx.is_create() {
        let words = (input.len() as u64).div_ceil(32);
        gas = gas
            .saturating_add(TX_CREATE_GAS)
            .saturating_add(words.saturating_mul(INITCODE_WORD_GAS));
    }
    if let Some(list) = tx.access_list() {
        for item in list.iter() {
            gas = gas.saturating_add(ACCESS_LIST_ADDRESS_GAS).saturating_add(
                (item.storage_keys.len() as u64).saturating_mul(ACCESS_LIST_STORAGE_KEY_GAS),
            );
        }
    }
    gas
}

/// A transaction that passed every check needing no account state (decoded, sender
/// recovered), with the numbers the pool orders by; insert it with
/// [`crate::TxPool::add_checked`].
#[derive(Debug, Clone)]
pub struct Checked {
    pub(crate) raw: alloy_primitives::Bytes,
    pub(crate) envelope: TxEnvelope,
    pub(crate) sender: Address,
    pub(crate) max_fee: u128,
    pub(crate) tip: u128,
    /// `gas_limit * max_fee + value`: what the sender must be able to pay.
    pub(crate) cost: U256,
}

impl Checked {
    /// The transaction hash.
    pub fn hash(&self) -> alloy_primitives::B256 {
        *self.envelope.tx_hash()
    }

    /// The recovered sender.
    pub fn sender(&self) -> Address {
        self.sender
    }
}

/// Runs every check that needs no account state, in geth's order (cheap ones first, signature
/// recovery last).
pub(crate) fn check_stateless(
    bytes: &[u8],
    config: &PoolConfig,
    recovered: Option<(alloy_primitives::B256, Address)>,
) -> Result<Checked, PoolError> {
    let mut checked = check_stateless_inner(bytes, config, recovered)?;
    checked.raw = alloy_primitives::Bytes::copy_from_slice(bytes);
    Ok(checked)
}

fn check_stateless_inner(
    bytes: &[u8],
    config: &PoolConfig,
    recovered: Option<(alloy_primitives::B256, Address)>,
) -> Result<Checked, PoolError> {
    let first = *bytes
        .first()
        .ok_or_else(|| PoolError::Decode("empty transaction".to_owned()))?;
    // 0x00..=0x7f is an EIP-2718 type byte; a legacy transaction is an RLP list (0xc0..).
    if first <= 0x7f && first != EIP2930_TYPE && first != EIP1559_TYPE {
        return Err(PoolError::TxTypeNotSupported(first));
    }
    if bytes.len() > MAX_TX_SIZE {
        return Err(PoolError::OversizedData {
            size: bytes.len(),
            limit: MAX_TX_SIZE,
        });
    }
    let envelope =
        TxEnvelope::decode_2718_exact(bytes).map_err(|e| PoolError::Decode(e.to_string()))?;
    if !matches!(
        envelope,
        TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_)
    ) {
        // Unreachable after the type-byte check; kept so a decoder change cannot widen the pool.
        return Err(PoolError::TxTypeNotSupported(envelope.tx_type() as u8));
    }
    match envelope.chain_id() {
        None => return Err(PoolError::Unprotected),
        Some(got) if got != config.chain_id => {
            return Err(PoolError::InvalidChainId {
                expected: config.chain_id,
                got,
            });
        }
        Some(_) => {}
    }
    if envelope.is_create() && envelope.input().len() > MAX_INITCODE_SIZE {
        return Err(PoolError::MaxInitCodeSizeExceeded {
            size: envelope.input().len(),
            limit: MAX_INITCODE_SIZE,
        });
    }
    if envelope.gas_limit() > config.block_gas_limit {
        return Err(PoolError::ExceedsBlockGasLimit);
    }
    let max_fee = envelope.max_fee_per_gas();
    // For legacy and EIP-2930 transactions both are the gas price.
    let tip = envelope.priority_fee_or_price();
    // Recover before the fee checks that name the sender; EIP-2 (low s) is enforced. A sender
    // this process already recovered from the same bytes (same hash) is taken as it is.
    let sender = match recovered {
        Some((hash, sender)) if hash == *envelope.tx_hash() => sender,
        _ => envelope
            .recover_signer()
            .map_err(|_| PoolError::InvalidSender)?,
    };
    if tip > max_fee {
        return Err(PoolError::TipAboveFeeCap {
            sender,
            tip,
            fee_cap: max_fee,
        });
    }
    let needed = intrinsic_gas(&envelope);
    if envelope.gas_limit() < needed {
        return Err(PoolError::IntrinsicGasTooLow {
            gas: envelope.gas_limit(),
            needed,
        });
    }
    if tip < config.min_priority_fee {
        return Err(PoolError::Underpriced {
            tip,
            min: config.min_priority_fee,
        });
    }
    let cost = U256::from(envelope.gas_limit())
        .saturating_mul(U256::from(max_fee))
        .saturating_add(envelope.value());
    Ok(Checked {
        raw: alloy_primitives::Bytes::new(),
        envelope,
        sender,
        max_fee,
        tip,
        cost,
    })
}
