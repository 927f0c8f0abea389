//! Withdrawal payouts: one Bitcoin transaction pays many requests from the vault.
//!
//! ```text
//! inputs:  vault outputs (key-path spends: a 64-byte FROST signature each)
//! outputs: the requests' scripts, in the order the id lists name them (amount − fee share)
//!          OP_RETURN OP_PUSHDATA1 <len> "HEMW" ‖ id₁ ‖ id₂ ‖ … (u32 big-endian, ≤ 30 per list)
//!          … more lists for larger batches …
//!          change to the vault
//! ```
//!
//! The lists always use `OP_PUSHDATA1` so that they never read as a deposit's `6a 14` / `6a 28`
//! recipient, and stay within the 128 script bytes the hVM returns per output.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use rand_chacha::rand_core::{CryptoRng, RngCore};

use crate::custody::{Custody, CustodyError};
use crate::vault::Vault;

/// The tag after `OP_RETURN OP_PUSHDATA1 <len>`.
pub const PAYOUT_TAG: [u8; 4] = *b"HEMW";
/// Ids per list (4 + 30 × 4 = 124 bytes of data, a 127-byte script).
pub const IDS_PER_LIST: usize = 30;

/// One request to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its id in the tunnel contract.
    pub id: u32,
    /// Where to pay.
    pub script: ScriptBuf,
    /// hemiBTC burnt (satoshis).
    pub amount: u64,
    /// The most Bitcoin fee it pays.
    pub max_fee: u64,
}

/// Why a payout cannot be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// Nothing to pay.
    #[error("no requests to pay")]
    NoRequests,
    /// Too many requests for one transaction the contract can read (128 outputs).
    #[error("{0} requests: at most 120 per payout")]
    TooMany(usize),
    /// The vault outputs do not cover the payments and the fee.
    #[error("the vault outputs hold {have} sat; paying needs {need}")]
    InsufficientFunds {
        /// Available.
        have: u64,
        /// Needed.
        need: u64,
    },
    /// A request's fee share is above its maximum.
    #[error("request {id}'s fee share {share} sat is above its maximum {max_fee}")]
    FeeTooHigh {
        /// The request.
        id: u32,
        /// Its share.
        share: u64,
        /// Its maximum.
        max_fee: u64,
    },
    /// Signing failed.
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// The sighash could not be computed.
    #[error("sighash: {0}")]
    Sighash(String),
}

/// An `OP_RETURN` id list.
pub fn id_list_script(ids: &[u32]) -> ScriptBuf {
    let mut data = PAYOUT_TAG.to_vec();
    for id in ids {
        data.extend_from_slice(&id.to_be_bytes());
    }
    // 6a 4c <len> <data>: OP_PUSHDATA1 even for short data (see the module docs).
    let mut s = vec![0x6a, 0x4c, data.len() as u8];
    s.extend_from_slice(&data);
    ScriptBuf::from_bytes(s)
}

/// The ids an `OP_RETURN` id list names; `None` if `script` is not one.
pub fn parse_id_list(script: &bitcoin::Script) -> Option<Vec<u32>> {
    let b = script.as_bytes();
    match b {
        [0x6a, 0x4c, len, rest @ ..]
            if usize::from(*len) == rest.len()
                && b.len() <= 128
                && rest.len() >= 8
                && rest.len() % 4 == 0
                && rest[..4] == PAYOUT_TAG =>
        {
            Some(
                rest[4..]
                    .chunks(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Whether `tx` is a payout (has at least one id list).
pub fn is_payout(tx: &Transaction) -> bool {
    tx.output
        .iter()
        .any(|o| parse_id_list(&o.script_pubkey).is_some())
}

/// Virtual size of a payout with `inputs` key-path inputs, the requests' scripts and `lists`
/// id lists of `ids` ids in total, plus the vault change output.
fn vsize(inputs: usize, requests: &[Request], change: bool) -> u64 {
    let lists = requests.len().div_ceil(IDS_PER_LIST);
    // Version, locktime, counts, segwit marker/flag (in weight units below).
    let mut base = 4 + 4 + 1 + 1;
    base += inputs * (32 + 4 + 1 + 4);
    for r in requests {
        base += 8 + 1 + r.script.len();
    }
    for l in 0..lists {
        let n = (requests.len() - l * IDS_PER_LIST).min(IDS_PER_LIST);
        base += 8 + 1 + 3 + 4 + 4 * n;
    }
    if change {
        base += 8 + 1 + 34;
    }
    // A key-path witness: 1 item of 64 bytes, with counts: 66 weight units per input + 2 marker.
    let weight = base * 4 + 2 + inputs * 66;
    (weight as u64).div_ceil(4)
}

/// An unsigned payout of `requests` from `utxos` (vault outputs) at `feerate` sat/vB: each
/// request is paid its amount less an equal share of the fee; the change goes back to the
/// vault.
///
/// # Errors
/// [`PayoutError`] for no or too many requests, too little in `utxos`, a fee share above a
/// request's maximum.
pub fn build_payout(
    vault: &Vault,
    utxos: &[(OutPoint, TxOut)],
    requests: &[Request],
    feerate: u64,
) -> Result<Transaction, PayoutError> {
    if requests.is_empty() {
        return Err(PayoutError::NoRequests);
    }
    if requests.len() > 120 {
        return Err(PayoutError::TooMany(requests.len()));
    }
    let fee = vsize(utxos.len(), requests, true) * feerate.max(1);
    let share = fee.div_ceil(requests.len() as u64);
    if let Some(r) = requests.iter().find(|r| share > r.max_fee) {
        return Err(PayoutError::FeeTooHigh {
            id: r.id,
            share,
            max_fee: r.max_fee,
        });
    }
    let have: u64 = utxos.iter().map(|(_, o)| o.value.to_sat()).sum();
    let paid: u64 = requests.iter().map(|r| r.amount - share).sum();
    let need = paid + fee;
    if have < need {
        return Err(PayoutError::InsufficientFunds { have, need });
    }
    let mut output: Vec<TxOut> = requests
        .iter()
        .map(|r| TxOut {
            value: Amount::from_sat(r.amount - share),
            script_pubkey: r.script.clone(),
        })
        .collect();
    for chunk in requests.chunks(IDS_PER_LIST) {
        let ids: Vec<u32> = chunk.iter().map(|r| r.id).collect();
        output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: id_list_script(&ids),
        });
    }
    // Change: what the requests' fee shares paid beyond the fee stays in the vault too.
    let change = have - paid - fee;
    if change > 0 {
        output.push(TxOut {
            value: Amount::from_sat(change),
            script_pubkey: vault.script_pubkey(),
        });
    }
    Ok(Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: utxos
            .iter()
            .map(|(op, _)| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output,
    })
}

/// Signs every input of `tx` (vault outputs `prevouts`) through the key path, with FROST
/// rounds among `signers`.
///
/// # Errors
/// [`PayoutError::Sighash`]; the custody's errors (too few signers, a bad share).
pub fn sign_payout<R: RngCore + CryptoRng>(
    custody: &Custody,
    vault: &Vault,
    tx: &mut Transaction,
    prevouts: &[TxOut],
    signers: &[u16],
    rng: &mut R,
) -> Result<(), PayoutError> {
    let merkle_root = vault.merkle_root();
    let mut sigs = Vec::with_capacity(tx.input.len());
    {
        let mut cache = SighashCache::new(&*tx);
        for i in 0..prevouts.len() {
            let sighash = cache
                .taproot_key_spend_signature_hash(
                    i,
                    &Prevouts::All(prevouts),
                    TapSighashType::Default,
                )
                .map_err(|e| PayoutError::Sighash(e.to_string()))?;
            sigs.push(custody.sign_key_path(sighash.to_byte_array(), merkle_root, signers, rng)?);
        }
    }
    for (input, sig) in tx.input.iter_mut().zip(sigs) {
        let sig = bitcoin::taproot::Signature {
            signature: sig,
            sighash_type: TapSighashType::Default,
        };
        input.witness = Witness::p2tr_key_spend(&sig);
    }
    Ok(())
}
