//! The BTC tunnel's rules, starting with what a deposit is.
//!
//! Place in the chain of trust: Bitcoin → **tunnel** (a deposit in a Bitcoin block) → hVM (the
//! mint checks it through the precompiles) → sequencer → chain → PoP → finality.
//!
//! This crate does no I/O. Main items:
//! - [`deposit::parse_op_return_deposit`]: Hemi's deposit forms, a payment to the vault with an
//!   `OP_RETURN` naming the L2 recipient as 20 bytes (`6a 14 <address>`) or 40 ASCII hex digits
//!   (`6a 28 <hex>`), the push opcode checked against its length (Hemi's contract does not).
//! - [`deposit::TaprootDeposit`]: a deposit output with a refund path — a NUMS internal key, a
//!   deposit leaf the vault key spends and a reclaim leaf the depositor spends after a relative
//!   timelock (Stacks sBTC's shape); built from its parameters and recognised from its leaves.

//! - [`vault::Vault`]: the vault's taproot output (FROST key path, `sortedmulti_a` and recovery
//!   leaves); [`custody::Custody`]: the custodians' k-of-n FROST key, its DKG and key-path
//!   signing.
//! - [`payout`]: withdrawal payouts — many requests in one vault transaction, an id list in
//!   `OP_RETURN`, FROST key-path signatures.
//! - [`sweep`]: minted taproot deposits moved into the vault through their deposit leaf.
//! - [`contracts`]: the L2 side — `TunnelManager` and `HemiBTC`'s addresses, runtime code,
//!   storage layout and ABI.

pub mod contracts;
pub mod custody;
pub mod deposit;
pub mod payout;
pub mod reclaim;
pub mod sweep;
pub mod vault;

pub use contracts::TunnelParams;
pub use custody::{Custodian, Custody, CustodyError};
pub use deposit::{
    find_taproot_deposit, parse_op_return_deposit, Deposit, DepositError, DepositFormat,
    TaprootDeposit, NUMS_KEY, TAPROOT_HINT_TAG,
};
pub use reclaim::{reclaim_transaction, ReclaimError};
pub use vault::{Vault, VaultError};
