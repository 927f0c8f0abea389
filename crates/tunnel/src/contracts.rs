//! The tunnel's L2 contracts: where they live, their runtime code (compiled from `contracts/`
//! by the pinned solc-js and committed here; `node tests/js/compile.mjs --check-tunnel` fails on
//! a difference), their storage layout and their ABI.
//!
//! The chain installs both at the tunnel's activation block without running a constructor: the
//! code below, and the [`TunnelParams`] written into the manager's first slots
//! ([`TunnelParams::storage`]).

use std::sync::OnceLock;

use alloy_primitives::{address, hex, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{sol, SolCall, SolInterface};

/// `TunnelManager`: checks deposits through the hVM and mints hemiBTC.
pub const TUNNEL_MANAGER_ADDRESS: Address = address!("0x4200000000000000000000000000000000000060");
/// `HemiBTC`: the ERC-20 (8 decimals, symbol hemiBTC).
pub const HEMI_BTC_ADDRESS: Address = address!("0x4200000000000000000000000000000000000061");

/// Storage slot of `vaultKey` (x-only output key of the vault's taproot output).
pub const SLOT_VAULT_KEY: u64 = 0;
/// Storage slot of `depositFee` (satoshis).
pub const SLOT_DEPOSIT_FEE: u64 = 1;
/// Storage slot of `minDeposit` (satoshis).
pub const SLOT_MIN_DEPOSIT: u64 = 2;
/// Storage slot of `depositConfirmations`.
pub const SLOT_DEPOSIT_CONFIRMATIONS: u64 = 3;
/// Storage slot of the `mintedIn` mapping (deposit key → the L2 block that minted it).
pub const SLOT_MINTED: u64 = 4;
/// Storage slot of `withdrawalDeadline` (L2 blocks).
pub const SLOT_WITHDRAWAL_DEADLINE: u64 = 5;
/// Storage slot of `withdrawalCount`.
pub const SLOT_WITHDRAWAL_COUNT: u64 = 6;
/// Storage slot of the `payoutProcessed` mapping (txid → true).
pub const SLOT_PAYOUT_PROCESSED: u64 = 8;
/// Storage slot of `faulty` (a request was challenged).
pub const SLOT_FAULTY: u64 = 9;
/// Storage slot of `frozenAt` (the L2 block whose `reportInvalidSpend` froze new deposits).
pub const SLOT_FROZEN_AT: u64 = 10;

/// Most outputs a deposit transaction may have (what one 0x42 call returns).
pub const MAX_DEPOSIT_OUTPUTS: usize = 128;
/// Bitcoin blocks a taproot deposit's reclaim path must stay shut after the block that mints
/// it (`TunnelManager.SWEEP_BLOCKS`): the custodians' time to sweep it into the vault.
pub const SWEEP_BLOCKS: u32 = 6;

sol! {
    /// The manager's ABI (contracts/src/tunnel/TunnelManager.sol).
    #[derive(Debug, PartialEq, Eq)]
    interface ITunnelManager {
        event DepositConfirmed(address indexed recipient, bytes32 indexed txid, uint32 vout, uint64 gross, uint64 net);

        error AlreadyMinted(bytes32 txid, uint32 vout);
        error UnknownTransaction(bytes32 txid);
        error NotConfirmed(bytes32 txid, uint32 confirmations, uint256 required);
        error TooManyOutputs(uint256 count);
        error NotVaultOutput(bytes32 txid, uint32 vout);
        error MultipleVaultOutputs(uint256 count);
        error NoRecipient();
        error MultipleOpReturns(uint256 count);
        error MalformedOpReturn(uint256 length);
        error PushMismatch(uint8 push, uint256 dataLength);
        error BadHex();
        error ZeroRecipient();
        error BelowMinimum(uint64 amount, uint256 minimum);
        error BadTaprootDeposit(string reason);
        error ReclaimOpensTooSoon(uint16 reclaimAfter, uint256 needed);
        error NotDepositOutput(bytes32 txid, uint32 vout);

        event WithdrawalRequested(uint256 indexed id, address indexed requester, bytes script, uint64 amount, uint64 maxFee);
        event WithdrawalPaid(uint256 indexed id, bytes32 indexed txid, uint32 vout, uint64 value);
        event WithdrawalNotPaid(uint256 indexed id, bytes32 indexed txid, string reason);
        event WithdrawalChallenged(uint256 indexed id, address indexed requester, uint64 amount);

        error BadWithdrawal(string reason);
        error AlreadyProcessed(bytes32 txid);
        error NotAPayout(bytes32 txid);
        error NotPending(uint256 id);
        error DeadlineNotReached(uint256 id, uint256 deadline);

        event InvalidSpendReported(bytes32 indexed txid, uint16 vin, address reporter, string reason);
        error VaultFrozen(uint256 since);
        error NotAVaultSpend(bytes32 txid, uint16 vin);
        error NotInvalid(bytes32 txid, string reason);

        /// One withdrawal request (status 1 pending, 2 paid, 3 challenged).
        struct Withdrawal {
            address requester;
            uint64 amount;
            uint64 maxFee;
            uint64 requestedAt;
            uint8 status;
            bytes32 payoutTxid;
            bytes script;
        }

        function confirmDeposit(bytes32 txid, uint32 vout) external returns (uint64 net);
        function isMinted(bytes32 txid, uint32 vout) external view returns (bool);
        function initiateWithdrawal(bytes script, uint64 amount, uint64 maxFee) external returns (uint256 id);
        function getWithdrawal(uint256 id) external view returns (Withdrawal memory);
        function finalizeWithdrawal(bytes32 txid) external;
        function challenge(uint256 id) external;
        function withdrawalCount() external view returns (uint256);
        function reportInvalidSpend(bytes32 txid, uint16 vin) external;
        function frozenAt() external view returns (uint256);
        function faulty() external view returns (bool);
    }

    /// hemiBTC's ABI (the part the node reads).
    #[derive(Debug, PartialEq, Eq)]
    interface IHemiBTC {
        function balanceOf(address owner) external view returns (uint256);
        function totalSupply() external view returns (uint256);
    }
}

fn decode_hex(text: &str) -> Bytes {
    // The files are written by compile.mjs and checked by a test; a bad file is a build bug.
    Bytes::from(hex::decode(text.trim()).unwrap_or_default())
}

/// `TunnelManager`'s runtime code.
pub fn tunnel_manager_code() -> &'static Bytes {
    static CODE: OnceLock<Bytes> = OnceLock::new();
    CODE.get_or_init(|| decode_hex(include_str!("../contracts/TunnelManager.runtime.hex")))
}

/// `HemiBTC`'s runtime code.
pub fn hemi_btc_code() -> &'static Bytes {
    static CODE: OnceLock<Bytes> = OnceLock::new();
    CODE.get_or_init(|| decode_hex(include_str!("../contracts/HemiBTC.runtime.hex")))
}

/// What a tunnel is configured with (what `hemi_getTunnel` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelParams {
    /// The vault's taproot output key (x-only), the key its `OP_1 <key>` script names.
    pub vault_output_key: B256,
    /// Satoshis kept by the tunnel from each deposit.
    pub deposit_fee: u64,
    /// Smallest deposit minted, satoshis (at least the fee).
    pub min_deposit: u64,
    /// Bitcoin confirmations a deposit needs before it is minted (and a payout before it is
    /// finalized).
    pub deposit_confirmations: u32,
    /// L2 blocks after which an unpaid withdrawal request can be challenged.
    pub withdrawal_deadline: u64,
}

impl TunnelParams {
    /// The manager's storage at activation: `(slot, value)` pairs.
    pub fn storage(&self) -> [(U256, U256); 5] {
        [
            (
                U256::from(SLOT_VAULT_KEY),
                U256::from_be_bytes(self.vault_output_key.0),
            ),
            (U256::from(SLOT_DEPOSIT_FEE), U256::from(self.deposit_fee)),
            (U256::from(SLOT_MIN_DEPOSIT), U256::from(self.min_deposit)),
            (
                U256::from(SLOT_DEPOSIT_CONFIRMATIONS),
                U256::from(self.deposit_confirmations),
            ),
            (
                U256::from(SLOT_WITHDRAWAL_DEADLINE),
                U256::from(self.withdrawal_deadline),
            ),
        ]
    }

    /// The vault's scriptPubKey, `OP_1 <output key>`.
    pub fn vault_script(&self) -> bitcoin::ScriptBuf {
        let mut s = Vec::with_capacity(34);
        s.extend_from_slice(&[0x51, 0x20]);
        s.extend_from_slice(self.vault_output_key.as_slice());
        bitcoin::ScriptBuf::from_bytes(s)
    }
}

/// The key of a deposit outpoint in the manager: `keccak256(txid ‖ vout)`, txid in display
/// order (as Bitcoin Core prints it), vout as 4 big-endian bytes.
pub fn deposit_key(txid_display: B256, vout: u32) -> B256 {
    let mut b = [0u8; 36];
    b[..32].copy_from_slice(txid_display.as_slice());
    b[32..].copy_from_slice(&vout.to_be_bytes());
    keccak256(b)
}

/// The storage slot of `mintedIn[deposit_key(txid, vout)]` (Solidity's mapping layout).
pub fn minted_slot(txid_display: B256, vout: u32) -> U256 {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(deposit_key(txid_display, vout).as_slice());
    b[32..].copy_from_slice(&U256::from(SLOT_MINTED).to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(b).0)
}

/// The storage slot of `payoutProcessed[txid]`.
pub fn payout_processed_slot(txid_display: B256) -> U256 {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(txid_display.as_slice());
    b[32..].copy_from_slice(&U256::from(SLOT_PAYOUT_PROCESSED).to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(b).0)
}

/// Calldata of `reportInvalidSpend(txid, vin)`.
pub fn report_invalid_spend_calldata(txid_display: B256, vin: u16) -> Bytes {
    ITunnelManager::reportInvalidSpendCall {
        txid: txid_display,
        vin,
    }
    .abi_encode()
    .into()
}

/// Calldata of `finalizeWithdrawal(txid)`.
pub fn finalize_withdrawal_calldata(txid_display: B256) -> Bytes {
    ITunnelManager::finalizeWithdrawalCall { txid: txid_display }
        .abi_encode()
        .into()
}

/// A Bitcoin txid in display order (Bitcoin Core's hex) as the contracts take it.
pub fn txid_display(txid: &bitcoin::Txid) -> B256 {
    let mut b = bitcoin::hashes::Hash::to_byte_array(*txid);
    b.reverse();
    B256::from(b)
}

/// Calldata of `confirmDeposit(txid, vout)`.
pub fn confirm_deposit_calldata(txid_display: B256, vout: u32) -> Bytes {
    ITunnelManager::confirmDepositCall {
        txid: txid_display,
        vout,
    }
    .abi_encode()
    .into()
}

/// Why the manager refused: its revert data as a sentence, or the raw hex if it is not one of
/// its errors.
pub fn revert_reason(data: &[u8]) -> String {
    use ITunnelManager::ITunnelManagerErrors as E;
    match E::abi_decode(data) {
        Ok(e) => match e {
            E::AlreadyMinted(_) => "already minted".into(),
            E::UnknownTransaction(_) => "the hVM does not know the transaction".into(),
            E::NotConfirmed(c) => format!("{} of {} confirmations", c.confirmations, c.required),
            E::TooManyOutputs(c) => format!("{} outputs (at most {MAX_DEPOSIT_OUTPUTS})", c.count),
            E::NotVaultOutput(c) => format!("output {} does not pay the vault", c.vout),
            E::MultipleVaultOutputs(c) => format!("{} outputs pay the vault", c.count),
            E::NoRecipient(_) => "no OP_RETURN names the recipient".into(),
            E::MultipleOpReturns(c) => format!("{} OP_RETURN outputs", c.count),
            E::MalformedOpReturn(c) => format!("malformed OP_RETURN of {} bytes", c.length),
            E::PushMismatch(c) => format!(
                "OP_RETURN pushes with opcode 0x{:02x} but carries {} bytes",
                c.push, c.dataLength
            ),
            E::BadHex(_) => "OP_RETURN recipient is not hex".into(),
            E::ZeroRecipient(_) => "the recipient is the zero address".into(),
            E::BelowMinimum(c) => format!(
                "{} sat is below the minimum deposit of {} sat",
                c.amount, c.minimum
            ),
            E::BadTaprootDeposit(c) => format!("taproot deposit: {}", c.reason),
            E::ReclaimOpensTooSoon(c) => format!(
                "the deposit's reclaim path opens after {} blocks; minting needs at least {}",
                c.reclaimAfter, c.needed
            ),
            E::NotDepositOutput(c) => format!(
                "output {} is not the taproot deposit its HEMT hint describes",
                c.vout
            ),
            E::BadWithdrawal(c) => format!("bad withdrawal: {}", c.reason),
            E::AlreadyProcessed(_) => "payout already processed".into(),
            E::NotAPayout(_) => "the transaction lists no withdrawal ids".into(),
            E::NotPending(c) => format!("withdrawal {} is not pending", c.id),
            E::DeadlineNotReached(c) => format!(
                "withdrawal {} can be challenged from L2 block {}",
                c.id, c.deadline
            ),
            E::VaultFrozen(c) => format!(
                "the vault is frozen (an invalid spend was reported in L2 block {})",
                c.since
            ),
            E::NotAVaultSpend(c) => format!("input {} does not spend a vault output", c.vin),
            E::NotInvalid(c) => format!("not an invalid spend: {}", c.reason),
        },
        Err(_) => format!("reverted with 0x{}", hex::encode(data)),
    }
}

/// The `DepositConfirmed` event's topic.
pub fn deposit_confirmed_topic() -> B256 {
    <ITunnelManager::DepositConfirmed as alloy_sol_types::SolEvent>::SIGNATURE_HASH
}

#[cfg(test)]
mod tests {
    use alloy_sol_types::SolError;

    use super::*;

    #[test]
    fn the_committed_runtime_code_decodes() {
        assert!(tunnel_manager_code().len() > 1000);
        assert!(hemi_btc_code().len() > 500);
    }

    #[test]
    fn a_revert_reason_is_a_sentence() {
        let data = ITunnelManager::BelowMinimum {
            amount: 5,
            minimum: U256::from(10_000u64),
        }
        .abi_encode();
        assert_eq!(
            revert_reason(&data),
            "5 sat is below the minimum deposit of 10000 sat"
        );
        assert!(revert_reason(&[1, 2]).starts_with("reverted with 0x0102"));
    }
}
