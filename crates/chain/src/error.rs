//! The chain's errors: [`ChainError`], and the typed reasons a block or a seal is refused
//! ([`BlockError`], [`SealError`]), each naming the check that failed with expected and got.

use alloy_primitives::{Address, B256, U256};

/// Errors of the L2 chain.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// A stored record does not decode.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// The database was written by another format version.
    #[error("database schema version {found}, this build reads {expected}")]
    SchemaVersion {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The database holds another chain.
    #[error("database genesis {stored} differs from the chain spec's {spec}")]
    GenesisMismatch {
        /// Stored genesis hash.
        stored: B256,
        /// The spec's genesis hash.
        spec: B256,
    },
    /// The chain spec names a rule this build does not know.
    #[error("chain spec: {0}")]
    UnknownRule(String),
    /// No such block.
    #[error("header not found")]
    UnknownBlock(u64),
    /// A block breaks a rule.
    #[error("invalid block: {0}")]
    InvalidBlock(#[from] BlockError),
    /// A block's seal is missing or not the sequencer's.
    #[error("invalid seal: {0}")]
    InvalidSeal(#[from] SealError),
    /// Our Bitcoin client does not know the block's pinned Bitcoin block yet.
    #[error("Bitcoin not ready: {0}")]
    BitcoinNotReady(String),
    /// A call could not run (geth's message).
    #[error("{0}")]
    Call(String),
    /// Too many logs matched.
    #[error("query returned more than {0} results")]
    TooManyLogs(usize),
}

/// Why a block is refused: the check that failed, with what it expected and what it got.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A commit certificate's bytes are not `round ‖ 65-byte signatures`.
    #[error(
        "commit certificate of {0} bytes is not a 4-byte round and 1..=256 65-byte signatures"
    )]
    CertificateEncoding(usize),
    /// The raw block is not RLP.
    #[error("block RLP: {0}")]
    Rlp(alloy_rlp::Error),
    /// The raw block is not exactly one RLP list.
    #[error("block RLP: not one RLP list")]
    NotOneList,
    /// The seal item is not a 65-byte string.
    #[error("block RLP: the seal must be an RLP string of {expected} bytes")]
    SealEncoding {
        /// The seal length this format has.
        expected: usize,
    },
    /// Bytes follow the block's RLP list.
    #[error("block RLP: trailing bytes")]
    TrailingBytes,
    /// The block is in raw block format 1 (no seal item; the seal in `extraData`).
    #[error(
        "block {number} is in raw block format 1 (rlp([header, txs]), the seal in a \
         {extra_data_len}-byte extraData); this node reads format {expected}: rlp([header, txs, \
         seal]) (upgrade the sequencer)"
    )]
    OldFormat {
        /// The block's number.
        number: u64,
        /// Its `extraData` length.
        extra_data_len: usize,
        /// The format this node reads.
        expected: u8,
    },
    /// The transaction list is not RLP.
    #[error("transaction list RLP: {0}")]
    TxListRlp(alloy_rlp::Error),
    /// A transaction does not decode.
    #[error("transaction does not decode: {0}")]
    TxDecode(#[from] TxDecodeError),
    /// A transaction's signature does not recover.
    #[error("invalid signature: {0}")]
    Signature(String),
    /// The Bitcoin-attributes calldata is not a canonical `updateHvmState` call.
    #[error("{0}")]
    Attributes(#[from] hemi_hvm::attributes::AttributesError),
    /// The carried Bitcoin headers do not end at the pinned tip.
    #[error("Bitcoin attributes: last header {last} is not the canonical tip {tip}")]
    AttributesTip {
        /// The last carried header's hash.
        last: bitcoin::BlockHash,
        /// The pinned (canonical) tip.
        tip: bitcoin::BlockHash,
    },
    /// The carried Bitcoin headers are not one chain.
    #[error("Bitcoin attributes: headers do not chain")]
    AttributesUnchained,
    /// The block is not the next one after our head.
    #[error("block {number} does not follow our head {head}")]
    NotNext {
        /// The block's number.
        number: u64,
        /// Our head's number.
        head: u64,
    },
    /// The block's parent is not our head.
    #[error("block {number} has parent {parent}, our block {head} is {head_hash}")]
    WrongParent {
        /// The block's number.
        number: u64,
        /// Its parent hash.
        parent: B256,
        /// Our head's number.
        head: u64,
        /// Our head's hash.
        head_hash: B256,
    },
    /// The block's parent is known, at another height.
    #[error("block {number}'s parent is block {parent_number}")]
    ParentHeight {
        /// The block's number.
        number: u64,
        /// The number of its parent.
        parent_number: u64,
    },
    /// `extraData` is not empty.
    #[error(
        "block {number}: extraData is {len} bytes, must be empty (the seal travels next to the \
         header)"
    )]
    ExtraData {
        /// The block's number.
        number: u64,
        /// Its `extraData` length.
        len: usize,
    },
    /// The timestamp is before the parent's.
    #[error("block {number} timestamp {timestamp} is before its parent's {parent}")]
    Timestamp {
        /// The block's number.
        number: u64,
        /// Its timestamp.
        timestamp: u64,
        /// The parent's.
        parent: u64,
    },
    /// Gas limit or base fee differ from the chain's rule.
    #[error(
        "block {number}: gas limit {gas_limit} / base fee {base_fee:?}, expected \
         {expected_gas_limit} / {expected_base_fee}"
    )]
    GasParams {
        /// The block's number.
        number: u64,
        /// Its gas limit.
        gas_limit: u64,
        /// Its base fee.
        base_fee: Option<u64>,
        /// The chain's gas limit.
        expected_gas_limit: u64,
        /// The base fee after the parent.
        expected_base_fee: u64,
    },
    /// The transactions root differs from the transactions'.
    #[error("block {number}: transactions root {expected} != header's {got}")]
    TransactionsRoot {
        /// The block's number.
        number: u64,
        /// The header's root.
        got: B256,
        /// The root of the block's transactions.
        expected: B256,
    },
    /// The block does not begin with the Bitcoin-attributes transaction.
    #[error("block {number} does not begin with a Bitcoin-attributes transaction")]
    MissingAttributes {
        /// The block's number.
        number: u64,
    },
    /// A system transaction stands where the block's system transactions do not allow it.
    #[error("{kind} transaction at index {index}; {rule}")]
    SystemTxPosition {
        /// Which system transaction.
        kind: &'static str,
        /// Where it stands.
        index: usize,
        /// Where it must stand.
        rule: &'static str,
    },
    /// A system transaction differs from the one the rule gives for its place.
    #[error("block {number}: its {kind} transaction (index {index}) differs from the rule's")]
    SystemTxMismatch {
        /// The block's number.
        number: u64,
        /// Which system transaction.
        kind: &'static str,
        /// Where it stands.
        index: usize,
    },
    /// The deposits a block confirms differ from the ones Bitcoin as of its pin and the parent's
    /// state give (a mint that should not be, or one left out).
    #[error(
        "block {number} confirms deposits [{}], but Bitcoin as of its pin and the parent's state \
         give [{}]",
        crate::tunnel::show_deposits(got),
        crate::tunnel::show_deposits(expected)
    )]
    Deposits {
        /// The block's number.
        number: u64,
        /// What it carries.
        got: Vec<crate::tunnel::DepositTx>,
        /// What the rule gives.
        expected: Vec<crate::tunnel::DepositTx>,
    },
    /// The PoP payout carried differs from the one Bitcoin up to the pin gives.
    #[error(
        "block {number}: its PoP payout pays {}, but Bitcoin up to the pinned block says {}",
        PayoutSummary::show(got),
        PayoutSummary::show(expected)
    )]
    PopPayout {
        /// The block's number.
        number: u64,
        /// What the block carries.
        got: Option<PayoutSummary>,
        /// What the rule gives.
        expected: Option<PayoutSummary>,
    },
    /// A PoP payout amount does not fit a balance.
    #[error("PoP payout {0} too large")]
    PayoutTooLarge(U256),
    /// A transaction's gas limit exceeds what is left of the block's.
    #[error("transaction {0} exceeds the block's gas limit")]
    TxOverGasLimit(B256),
    /// A transaction is invalid in its place (nonce, balance, fee: the EVM's reason).
    #[error("transaction {tx}: {reason}")]
    InvalidTx {
        /// Its hash.
        tx: B256,
        /// The EVM's reason.
        reason: String,
    },
    /// A root in the header differs from re-execution's.
    #[error("block {number}: {root} {got} differs from re-execution's {expected}")]
    Root {
        /// The block's number.
        number: u64,
        /// Which root: `state root` or `receipts root`.
        root: &'static str,
        /// The header's.
        got: B256,
        /// Re-execution's.
        expected: B256,
    },
    /// Gas used or the logs bloom differ from re-execution's.
    #[error("block {number}: gas used {got} (re-execution: {expected}) or logs bloom differ")]
    GasUsed {
        /// The block's number.
        number: u64,
        /// The header's gas used.
        got: u64,
        /// Re-execution's.
        expected: u64,
    },
    /// The block is, or descends from, a block whose re-execution failed.
    #[error("block {number} ({hash}) is, or descends from, a block that failed re-execution")]
    DescendsFromInvalid {
        /// The block's number.
        number: u64,
        /// Its hash.
        hash: B256,
    },
    /// A devnet state change (`0x7A`) that is malformed or where the chain takes none.
    #[error("devnet state change: {0}")]
    DevState(String),
    /// A forced transaction whose deadline is this block, valid here, is not in it.
    #[error(
        "block {number} leaves out forced transaction {tx} (published in Bitcoin transaction \
         {btc_txid}), valid and due by this block"
    )]
    ForcedTxMissing {
        /// The block's number.
        number: u64,
        /// The L2 transaction hash.
        tx: B256,
        /// The Bitcoin transaction that published it.
        btc_txid: String,
    },
}

/// A PoP payout as a refusal names it: the keystone it pays and to how many publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutSummary {
    /// The keystone's L2 block number.
    pub keystone: u64,
    /// How many publications it pays.
    pub publications: usize,
}

impl PayoutSummary {
    fn show(p: &Option<PayoutSummary>) -> String {
        match p {
            Some(p) => format!(
                "keystone {} to {} publication(s)",
                p.keystone, p.publications
            ),
            None => "nothing".to_string(),
        }
    }
}

/// Why a seal is refused or cannot be made.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealing key is not a valid secp256k1 secret.
    #[error("sequencer key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(String),
    /// The recovery byte is not 0 or 1.
    #[error("seal parity byte is {0}, not 0 or 1")]
    Parity(u8),
    /// The signature does not recover to a key.
    #[error("seal does not recover: {0}")]
    Recover(String),
    /// The seal is valid but made by someone else.
    #[error("block {number} is signed by {signer}, not by the sequencer {expected}")]
    WrongSigner {
        /// The block's number.
        number: u64,
        /// Who signed it.
        signer: Address,
        /// Who must have.
        expected: Address,
    },
    /// The block carries a commit certificate, but this chain is sealed by one key.
    #[error(
        "block {0} carries a commit certificate, but this chain is sealed by one sequencer key"
    )]
    UnexpectedCertificate(u64),
    /// The chain is sealed by a validator set and the block has no commit certificate.
    #[error("block {0} has no commit certificate; this chain's blocks are certified by its validator set")]
    MissingCertificate(u64),
    /// A certificate signature is by a key outside the validator set.
    #[error("block {number}'s certificate is signed by {signer}, who is not in the validator set")]
    NotAValidator {
        /// The block's number.
        number: u64,
        /// Who signed.
        signer: Address,
    },
    /// A validator signed the certificate twice.
    #[error("block {number}'s certificate holds two signatures of {signer}")]
    DuplicateSigner {
        /// The block's number.
        number: u64,
        /// Who signed twice.
        signer: Address,
    },
    /// Fewer than 2f+1 validators signed.
    #[error("block {number}'s certificate has {have} of {total} validators' signatures; it needs {need}")]
    ShortCertificate {
        /// The block's number.
        number: u64,
        /// Distinct validators that signed.
        have: usize,
        /// Needed (more than two thirds).
        need: usize,
        /// Size of the set.
        total: usize,
    },
}

/// Why a transaction's EIP-2718 bytes do not decode.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxDecodeError {
    /// A system transaction's body is not RLP.
    #[error("{0}")]
    Rlp(alloy_rlp::Error),
    /// An Ethereum envelope does not decode (alloy's reason).
    #[error("{0}")]
    Envelope(String),
    /// Bytes follow the transaction.
    #[error("trailing bytes")]
    TrailingBytes,
    /// An Ethereum transaction type this chain does not take (blobs, set-code).
    #[error("transaction type {0} is not supported")]
    UnsupportedType(u8),
}
