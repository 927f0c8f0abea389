//! Keys, addresses, signing and signature checking for the Bitcoin script types hemi-rs uses.
//!
//! # Where it sits
//!
//! The chain of trust runs Bitcoin → hVM → sequencer → chain → PoP → finality. This crate is at
//! its Bitcoin end: our Bitcoin Core builds carry no wallet, so every Bitcoin key and signature
//! in hemi-rs comes from here — the PoP miner's publications, the devnet's funding, the tunnel
//! custodians' vault payouts — and the embedded regtest node's mempool checks every input it
//! accepts with [`verify_transaction`], answering with Bitcoin Core's own reject reasons.
//!
//! # Main types
//!
//! - [`Key`]: a secp256k1 key with its [`KeyKind::P2wpkh`] and [`KeyKind::P2tr`] (BIP86 key
//!   path) addresses.
//! - [`Multisig`]: an m-of-n P2WSH `OP_CHECKMULTISIG` script over sorted (BIP67) keys: the
//!   tunnel vault.
//! - [`sign_transaction`] with one [`Signer`] per input (BIP143 `SIGHASH_ALL` for segwit v0,
//!   BIP341 `SIGHASH_DEFAULT` for taproot), and [`build_payment`] for a funded, signed payment
//!   with change and a fee from a fee rate.
//! - [`Envelope`]: data in a taproot script-path envelope, a commit output and the reveal that
//!   spends it by its leaf (the forced-inclusion carrier for large L2 transactions).
//! - [`verify_input`] / [`verify_transaction`]: a script check that follows Bitcoin Core's
//!   interpreter for P2WPKH, P2TR key path, P2WSH multisig and P2PKH, and fails with a
//!   [`ScriptError`] that displays as Core's reject reason. It never panics on malformed data.
//!
//! One global secp256k1 context ([`secp`]) serves all of it: creating one is slow.

mod envelope;
mod error;
mod key;
mod multisig;
mod sign;
mod verify;

use std::sync::OnceLock;

use bitcoin::secp256k1::{All, Secp256k1};

pub use envelope::Envelope;
pub use error::{ScriptError, ScriptFailure, WalletError};
pub use key::{Key, KeyKind};
pub use multisig::{Multisig, MAX_MULTISIG_KEYS};
pub use sign::{
    build_payment, dust_threshold, select_largest_first, sign_multisig_input, sign_transaction,
    Prevout, Signer, RBF_SEQUENCE,
};
pub use verify::{verify_input, verify_transaction};

/// The process-wide secp256k1 context (signing and verification), created on first use.
pub fn secp() -> &'static Secp256k1<All> {
    static SECP: OnceLock<Secp256k1<All>> = OnceLock::new();
    SECP.get_or_init(Secp256k1::new)
}
