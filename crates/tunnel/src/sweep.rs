//! Sweeps: the custodians move minted taproot deposits into the vault through their deposit
//! leaf, before the depositor's reclaim leaf opens.
//!
//! ```text
//! inputs:  taproot deposit outputs, each spent through its deposit leaf
//!          (witness: FROST signature by the vault's output key ‖ deposit leaf ‖ control block)
//! outputs: the vault (the deposits' sum less the fee)
//!          OP_RETURN OP_PUSHDATA1 4 "HEMS" (a sweep: its vault output is the custodians' to spend)
//! ```
//!
//! The deposit leaf's key is the vault's output key, so the same FROST rounds that sign
//! key-path payouts ([`Custody::sign_key_path`] with the vault's Merkle root) sign here; only
//! the message differs (BIP-341's script-path sighash of the deposit leaf).

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use rand_chacha::rand_core::{CryptoRng, RngCore};

use crate::custody::{Custody, CustodyError};
use crate::vault::Vault;
use crate::TaprootDeposit;

/// The tag after `OP_RETURN OP_PUSHDATA1 4`.
pub const SWEEP_TAG: [u8; 4] = *b"HEMS";
/// The most deposits one sweep spends.
pub const MAX_SWEEP_INPUTS: usize = 50;

/// One minted taproot deposit to sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepInput {
    /// The deposit output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// Its parameters (they rebuild its leaves).
    pub deposit: TaprootDeposit,
}

/// Why a sweep cannot be built or signed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepError {
    /// Nothing to sweep, or more than [`MAX_SWEEP_INPUTS`].
    #[error("{0} deposits: a sweep spends 1..={MAX_SWEEP_INPUTS}")]
    Count(usize),
    /// A deposit's leaf names another key than the vault's output key.
    #[error("deposit {0}'s leaf names another vault key")]
    OtherVault(OutPoint),
    /// The deposits do not cover the fee and a non-dust vault output.
    #[error("the deposits hold {have}; the fee is {fee}")]
    TooSmall {
        /// Their sum.
        have: Amount,
        /// The fee at the rate asked.
        fee: Amount,
    },
    /// The fee rate is 0 or absurd (over 10,000 sat/vB).
    #[error("fee rate {0} sat/vB is outside 1..=10000")]
    FeeRate(u64),
    /// Signing failed.
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// The sighash could not be computed, or the signature does not verify.
    #[error("sighash: {0}")]
    Sighash(String),
}

impl SweepInput {
    /// The output it spends (what a sighash commits to).
    pub fn prevout(&self) -> TxOut {
        TxOut {
            value: self.value,
            script_pubkey: self.deposit.script_pubkey(),
        }
    }
}

/// `OP_RETURN OP_PUSHDATA1 4 "HEMS"`.
pub fn sweep_tag_script() -> ScriptBuf {
    let mut s = vec![0x6a, 0x4c, 4];
    s.extend_from_slice(&SWEEP_TAG);
    ScriptBuf::from_bytes(s)
}

/// Whether `tx` is a sweep (has the tag output).
pub fn is_sweep(tx: &Transaction) -> bool {
    let tag = sweep_tag_script();
    tx.output.iter().any(|o| o.script_pubkey == tag)
}

/// The witness that spends deposit `d` through its deposit leaf with signature `sig`:
/// `sig ‖ leaf ‖ control block` (`None` only if the leaf were not in the deposit's tree).
pub fn deposit_leaf_witness(d: &TaprootDeposit, sig: &[u8]) -> Option<Witness> {
    let leaf = d.deposit_leaf();
    let control = d
        .spend_info()
        .control_block(&(leaf.clone(), LeafVersion::TapScript))?;
    let mut w = Witness::new();
    w.push(sig);
    w.push(leaf.as_bytes());
    w.push(control.serialize());
    Some(w)
}

fn witness(d: &TaprootDeposit, sig: &[u8]) -> Result<Witness, SweepError> {
    deposit_leaf_witness(d, sig)
        .ok_or_else(|| SweepError::Sighash("the deposit leaf is not in the tree".into()))
}

/// An unsigned sweep of `inputs` into `vault` at `fee_rate` sat/vB (its size is final: a
/// BIP-340 signature with `SIGHASH_DEFAULT` is always 64 bytes).
///
/// # Errors
/// [`SweepError`]: no or too many inputs, a deposit for another vault, too little for the fee,
/// a bad fee rate.
pub fn build_sweep(
    vault: &Vault,
    inputs: &[SweepInput],
    fee_rate: u64,
) -> Result<Transaction, SweepError> {
    if inputs.is_empty() || inputs.len() > MAX_SWEEP_INPUTS {
        return Err(SweepError::Count(inputs.len()));
    }
    if !(1..=10_000).contains(&fee_rate) {
        return Err(SweepError::FeeRate(fee_rate));
    }
    let mut input = Vec::with_capacity(inputs.len());
    for i in inputs {
        if i.deposit.vault_key != vault.output_key() {
            return Err(SweepError::OtherVault(i.outpoint));
        }
        input.push(TxIn {
            previous_output: i.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: witness(&i.deposit, &[0u8; 64])?,
        });
    }
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input,
        output: vec![
            TxOut {
                value: Amount::ZERO,
                script_pubkey: vault.script_pubkey(),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: sweep_tag_script(),
            },
        ],
    };
    let have: Amount = inputs.iter().map(|i| i.value).sum();
    let fee = Amount::from_sat(tx.vsize() as u64 * fee_rate);
    let dust = vault.script_pubkey().minimal_non_dust();
    tx.output[0].value = have
        .checked_sub(fee)
        .filter(|v| *v >= dust)
        .ok_or(SweepError::TooSmall { have, fee })?;
    for i in &mut tx.input {
        i.witness = Witness::new();
    }
    Ok(tx)
}

/// Signs every input of `tx` (built by [`build_sweep`] from `inputs`) through its deposit
/// leaf, with FROST rounds among `signers`, and checks each signature against the vault key.
///
/// # Errors
/// [`SweepError::Sighash`]; the custody's errors (too few signers, a bad share).
pub fn sign_sweep<R: RngCore + CryptoRng>(
    custody: &Custody,
    vault: &Vault,
    tx: &mut Transaction,
    inputs: &[SweepInput],
    signers: &[u16],
    rng: &mut R,
) -> Result<(), SweepError> {
    if inputs.len() != tx.input.len() {
        return Err(SweepError::Count(inputs.len()));
    }
    let prevouts: Vec<TxOut> = inputs.iter().map(SweepInput::prevout).collect();
    let secp = Secp256k1::verification_only();
    let mut sigs = Vec::with_capacity(inputs.len());
    {
        let mut cache = SighashCache::new(&*tx);
        for (n, i) in inputs.iter().enumerate() {
            let leaf = TapLeafHash::from_script(&i.deposit.deposit_leaf(), LeafVersion::TapScript);
            let sighash = cache
                .taproot_script_spend_signature_hash(
                    n,
                    &Prevouts::All(&prevouts),
                    leaf,
                    TapSighashType::Default,
                )
                .map_err(|e| SweepError::Sighash(e.to_string()))?;
            let msg = sighash.to_byte_array();
            let sig = custody.sign_key_path(msg, vault.merkle_root(), signers, rng)?;
            secp.verify_schnorr(&sig, &Message::from_digest(msg), &vault.output_key())
                .map_err(|e| SweepError::Sighash(e.to_string()))?;
            sigs.push(sig);
        }
    }
    for ((txin, i), sig) in tx.input.iter_mut().zip(inputs).zip(sigs) {
        txin.witness = witness(&i.deposit, sig.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bitcoin::secp256k1::{Keypair, SecretKey};
    use rand_chacha::rand_core::SeedableRng;

    use super::*;

    fn key(byte: u8) -> bitcoin::XOnlyPublicKey {
        let secret = SecretKey::from_slice(&[byte; 32]).expect("key");
        Keypair::from_secret_key(&Secp256k1::signing_only(), &secret)
            .x_only_public_key()
            .0
    }

    #[test]
    fn a_sweep_spends_deposit_leaves_into_the_vault_with_signatures_by_the_vault_key() {
        let custody = Custody::devnet().expect("devnet custody");
        let vault = custody.vault(key(9), 144).expect("vault");
        let inputs: Vec<SweepInput> = (0..3u8)
            .map(|n| SweepInput {
                outpoint: OutPoint::new(bitcoin::Txid::from_byte_array([n + 1; 32]), u32::from(n)),
                value: Amount::from_sat(100_000 * (u64::from(n) + 1)),
                deposit: TaprootDeposit {
                    chain_id: 31337,
                    recipient: alloy_primitives::Address::repeat_byte(n + 1),
                    max_fee: Amount::from_sat(1_000),
                    vault_key: vault.output_key(),
                    depositor_key: key(20 + n),
                    reclaim_after: 144,
                },
            })
            .collect();
        let mut tx = build_sweep(&vault, &inputs, 2).expect("build");
        let unsigned_vsize = {
            let mut t = tx.clone();
            for (txin, i) in t.input.iter_mut().zip(&inputs) {
                txin.witness = witness(&i.deposit, &[0u8; 64]).expect("witness");
            }
            t.vsize()
        };
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        sign_sweep(&custody, &vault, &mut tx, &inputs, &[2, 3], &mut rng).expect("sign");
        assert_eq!(
            tx.vsize(),
            unsigned_vsize,
            "the fee was paid for the final size"
        );
        assert!(is_sweep(&tx));
        assert_eq!(tx.output[0].script_pubkey, vault.script_pubkey());
        let fee = 600_000 - tx.output[0].value.to_sat();
        assert_eq!(fee, tx.vsize() as u64 * 2);
        // Each input's leaf is committed to by its deposit output's key (BIP-341); its
        // signature was checked against the vault key by sign_sweep.
        for (n, i) in inputs.iter().enumerate() {
            let w = &tx.input[n].witness;
            assert_eq!(w.len(), 3);
            let control =
                bitcoin::taproot::ControlBlock::decode(w.nth(2).expect("control")).expect("cb");
            let leaf = ScriptBuf::from_bytes(w.nth(1).expect("leaf").to_vec());
            let out_key = i.deposit.spend_info().output_key().to_x_only_public_key();
            assert!(control.verify_taproot_commitment(
                &Secp256k1::verification_only(),
                out_key,
                &leaf
            ));
        }
        // One custodian alone cannot sign.
        let mut again = build_sweep(&vault, &inputs, 2).expect("build");
        assert!(sign_sweep(&custody, &vault, &mut again, &inputs, &[1], &mut rng).is_err());
        // A deposit made out to another vault key is not swept.
        let mut other = inputs.clone();
        other[1].deposit.vault_key = key(30);
        assert!(matches!(
            build_sweep(&vault, &other, 2),
            Err(SweepError::OtherVault(_))
        ));
    }
}
