//! Errors of the pool.
//!
//! [`PoolError`]'s messages reach users verbatim through `eth_sendRawTransaction`, so each one
//! starts with go-ethereum's exact error string (wallets and libraries match on these), followed,
//! where geth adds them, by the same `: detail` geth appends.

use alloy_primitives::{Address, U256};

/// Why a transaction was refused by [`TxPool::add_raw`](crate::TxPool::add_raw).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The bytes are not a valid EIP-2718 envelope (geth returns the RLP decoder's error).
    #[error("rlp: {0}")]
    Decode(String),
    /// A typed transaction other than EIP-2930 (1) or EIP-1559 (2): blob and set-code
    /// transactions are not accepted by the sequencer.
    #[error("transaction type not supported: tx type {0} not supported by this pool")]
    TxTypeNotSupported(u8),
    /// The encoded transaction is larger than the pool accepts.
    #[error("oversized data: transaction size {size}, limit {limit}")]
    OversizedData {
        /// Encoded size.
        size: usize,
        /// [`MAX_TX_SIZE`](crate::MAX_TX_SIZE).
        limit: usize,
    },
    /// A legacy transaction without EIP-155 replay protection.
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    Unprotected,
    /// The transaction is signed for another chain (geth's `types.ErrInvalidChainId`).
    #[error("invalid sender: invalid chain id for signer: have {got} want {expected}")]
    InvalidChainId {
        /// The pool's chain id.
        expected: u64,
        /// The transaction's chain id.
        got: u64,
    },
    /// The signature does not recover to an address (bad `r`/`s`/`v`, or high `s`, EIP-2).
    #[error("invalid sender")]
    InvalidSender,
    /// A transaction with this hash is already in the pool.
    #[error("already known")]
    AlreadyKnown,
    /// The transaction's gas limit exceeds the block gas limit, so it could never be included.
    #[error("exceeds block gas limit")]
    ExceedsBlockGasLimit,
    /// A contract creation with more than 49 152 bytes of init code (EIP-3860).
    #[error("max initcode size exceeded: code size {size}, limit {limit}")]
    MaxInitCodeSizeExceeded {
        /// Init code length.
        size: usize,
        /// 49 152.
        limit: usize,
    },
    /// `max_priority_fee_per_gas > max_fee_per_gas`.
    #[error(
        "max priority fee per gas higher than max fee per gas: address {sender}, maxPriorityFeePerGas: {tip}, maxFeePerGas: {fee_cap}"
    )]
    TipAboveFeeCap {
        /// The sender.
        sender: Address,
        /// Max priority fee per gas.
        tip: u128,
        /// Max fee per gas.
        fee_cap: u128,
    },
    /// The gas limit does not cover the intrinsic gas.
    #[error("intrinsic gas too low: gas {gas}, minimum needed {needed}")]
    IntrinsicGasTooLow {
        /// The transaction's gas limit.
        gas: u64,
        /// Its intrinsic gas.
        needed: u64,
    },
    /// The priority fee is below the pool's minimum.
    #[error("transaction underpriced: gas tip cap {tip}, minimum needed {min}")]
    Underpriced {
        /// The transaction's priority fee (gas price for legacy).
        tip: u128,
        /// [`PoolConfig::min_priority_fee`](crate::PoolConfig::min_priority_fee).
        min: u128,
    },
    /// The nonce is below the sender's account nonce.
    #[error("nonce too low: address {sender}, tx: {tx} state: {state}")]
    NonceTooLow {
        /// The sender.
        sender: Address,
        /// The transaction's nonce.
        tx: u64,
        /// The account nonce.
        state: u64,
    },
    /// The balance does not cover `gas_limit * max_fee + value`, alone or together with the
    /// sender's other pooled transactions.
    #[error(
        "insufficient funds for gas * price + value: balance {balance}, queued cost {queued}, tx cost {cost}"
    )]
    InsufficientFunds {
        /// The sender's balance.
        balance: U256,
        /// Cost of the sender's other pooled transactions (excluding a replaced one).
        queued: U256,
        /// This transaction's cost.
        cost: U256,
    },
    /// Same sender and nonce as a pooled transaction, without paying the price bump on both
    /// the max fee and the priority fee.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// The sender already has [`PoolConfig::max_per_sender`](crate::PoolConfig::max_per_sender)
    /// transactions pooled.
    #[error("account limit exceeded: {limit}")]
    AccountLimitExceeded {
        /// The per-sender limit.
        limit: usize,
    },
    /// The pool holds [`PoolConfig::max_total`](crate::PoolConfig::max_total) transactions and
    /// this one does not pay more than the cheapest evictable one.
    #[error("txpool is full")]
    PoolFull,
}

/// Why a journal could not be read by [`TxPool::from_journal`](crate::TxPool::from_journal).
///
/// Individual transactions that are no longer valid are not errors: they are skipped and
/// counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal is empty (not even a version byte).
    #[error("txpool journal is empty")]
    Empty,
    /// The version byte is not one this build reads.
    #[error("unsupported txpool journal version {got} (expected {expected})")]
    UnsupportedVersion {
        /// The version byte found.
        got: u8,
        /// [`JOURNAL_VERSION`](crate::JOURNAL_VERSION).
        expected: u8,
    },
    /// The journal ends inside a length prefix or a transaction.
    #[error("txpool journal truncated at byte {offset}")]
    Truncated {
        /// Offset of the incomplete record.
        offset: usize,
    },
}
