//! The vault's fallback path: if FROST signing is unavailable (a bug, lost coordination), k
//! custodians still spend vault outputs through the vault's `sortedmulti_a` leaf with their own
//! script keys, passing a PSBT (BIP-174, taproot fields of BIP-371) from one to the next.
//!
//! ```text
//! fallback_psbt     vault outputs → PSBT (witness_utxo, tap_internal_key, tap_merkle_root,
//!                   tap_scripts = the multisig leaf and its control block); change to the vault
//! sign_fallback     one custodian adds its tap_script_sig (BIP-342 script-path sighash,
//!                   SIGHASH_DEFAULT) to every input that spends the vault's multisig leaf
//! finalize_fallback k signatures → witness: sig or empty per key (last key first), leaf,
//!                   control block; the network transaction
//! ```

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, XOnlyPublicKey,
};
use hemi_tunnel::Vault;

/// Why a fallback PSBT cannot be made, signed or finalized.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FallbackError {
    /// No inputs or no payments.
    #[error("a fallback spend needs at least one vault output and one payment")]
    Empty,
    /// An input is not a vault output.
    #[error("input {0} does not spend the vault")]
    NotVault(usize),
    /// The inputs do not cover the payments and the fee.
    #[error("the vault outputs hold {have}; the payments and fee need {need}")]
    Insufficient {
        /// The inputs' sum.
        have: Amount,
        /// Payments plus fee.
        need: Amount,
    },
    /// The fee rate is 0 or over 10,000 sat/vB.
    #[error("fee rate {0} sat/vB is outside 1..=10000")]
    FeeRate(u64),
    /// The PSBT lacks what a fallback spend needs (witness_utxo, the leaf, …).
    #[error("input {input}: {what}")]
    Malformed {
        /// The input.
        input: usize,
        /// What is missing or wrong.
        what: String,
    },
    /// This key is not one of the vault's custodian keys.
    #[error("key {0} is not one of the vault's custodian keys")]
    NotACustodian(XOnlyPublicKey),
    /// Too few custodians signed an input.
    #[error("input {input} has {have} valid signatures; the vault needs {need}")]
    TooFewSignatures {
        /// The input.
        input: usize,
        /// Valid signatures by custodian keys.
        have: usize,
        /// The threshold.
        need: usize,
    },
}

fn malformed(input: usize, what: impl Into<String>) -> FallbackError {
    FallbackError::Malformed {
        input,
        what: what.into(),
    }
}

/// The multisig leaf's control block in `vault`'s tree.
fn control_block(vault: &Vault) -> Result<ControlBlock, FallbackError> {
    vault
        .spend_info()
        .control_block(&(vault.multisig_leaf(), LeafVersion::TapScript))
        .ok_or_else(|| malformed(0, "the multisig leaf is not in the vault's tree"))
}

/// The witness of a multisig-leaf spend: per key, last key first, its signature or nothing.
fn witness(
    vault: &Vault,
    sigs: &BTreeMap<XOnlyPublicKey, bitcoin::taproot::Signature>,
    control: &ControlBlock,
) -> Witness {
    let mut w = Witness::new();
    for key in vault.custodian_keys.iter().rev() {
        match sigs.get(key) {
            Some(sig) => w.push(sig.to_vec()),
            None => w.push([]),
        }
    }
    w.push(vault.multisig_leaf().as_bytes());
    w.push(control.serialize());
    w
}

/// An unsigned PSBT spending `utxos` (vault outputs) through the multisig leaf to `payments`,
/// the rest less the fee at `fee_rate` sat/vB back to the vault (if above dust).
///
/// # Errors
/// [`FallbackError`]: nothing to spend or pay, a non-vault input, too little, a bad fee rate.
pub fn fallback_psbt(
    vault: &Vault,
    utxos: &[(OutPoint, TxOut)],
    payments: &[TxOut],
    fee_rate: u64,
) -> Result<Psbt, FallbackError> {
    if utxos.is_empty() || payments.is_empty() {
        return Err(FallbackError::Empty);
    }
    if !(1..=10_000).contains(&fee_rate) {
        return Err(FallbackError::FeeRate(fee_rate));
    }
    let script = vault.script_pubkey();
    if let Some(i) = utxos.iter().position(|(_, o)| o.script_pubkey != script) {
        return Err(FallbackError::NotVault(i));
    }
    let control = control_block(vault)?;
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: utxos
            .iter()
            .map(|(outpoint, _)| TxIn {
                previous_output: *outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: payments.to_vec(),
    };
    tx.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: script.clone(),
    });
    // The final size: k 64-byte signatures, n − k empty pushes.
    let dummy = bitcoin::taproot::Signature {
        signature: bitcoin::secp256k1::schnorr::Signature::from_slice(&[1u8; 64])
            .map_err(|e| malformed(0, e.to_string()))?,
        sighash_type: TapSighashType::Default,
    };
    let sigs: BTreeMap<_, _> = vault
        .custodian_keys
        .iter()
        .take(vault.threshold)
        .map(|k| (*k, dummy))
        .collect();
    let mut sized = tx.clone();
    for i in &mut sized.input {
        i.witness = witness(vault, &sigs, &control);
    }
    let have: Amount = utxos.iter().map(|(_, o)| o.value).sum();
    let paid: Amount = payments.iter().map(|o| o.value).sum();
    let with_change = Amount::from_sat(sized.vsize() as u64 * fee_rate);
    let change = have
        .checked_sub(paid)
        .and_then(|r| r.checked_sub(with_change));
    match change {
        Some(c) if c >= script.minimal_non_dust() => {
            if let Some(last) = tx.output.last_mut() {
                last.value = c;
            }
        }
        _ => {
            tx.output.pop();
            sized.output.pop();
            let fee = Amount::from_sat(sized.vsize() as u64 * fee_rate);
            if have < paid + fee {
                return Err(FallbackError::Insufficient {
                    have,
                    need: paid + fee,
                });
            }
        }
    }
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(|e| malformed(0, e.to_string()))?;
    let leaf = vault.multisig_leaf();
    for (input, (_, prevout)) in psbt.inputs.iter_mut().zip(utxos) {
        input.witness_utxo = Some(prevout.clone());
        input.tap_internal_key = Some(vault.group_key);
        input.tap_merkle_root = vault.merkle_root();
        input
            .tap_scripts
            .insert(control.clone(), (leaf.clone(), LeafVersion::TapScript));
    }
    Ok(psbt)
}

/// The prevouts of every input (their `witness_utxo`).
fn prevouts(psbt: &Psbt) -> Result<Vec<TxOut>, FallbackError> {
    psbt.inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            input
                .witness_utxo
                .clone()
                .ok_or_else(|| malformed(i, "no witness_utxo"))
        })
        .collect()
}

/// The inputs of `psbt` that spend `vault`'s multisig leaf, with their script-path sighash.
fn leaf_sighashes(psbt: &Psbt, vault: &Vault) -> Result<Vec<(usize, [u8; 32])>, FallbackError> {
    let prevouts = prevouts(psbt)?;
    let script = vault.script_pubkey();
    let leaf = vault.multisig_leaf();
    let leaf_hash = TapLeafHash::from_script(&leaf, LeafVersion::TapScript);
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    let mut out = Vec::new();
    for (i, input) in psbt.inputs.iter().enumerate() {
        let spends_leaf = input.tap_scripts.values().any(|(s, _)| *s == leaf);
        if prevouts[i].script_pubkey != script || !spends_leaf {
            continue;
        }
        let sighash = cache
            .taproot_script_spend_signature_hash(
                i,
                &Prevouts::All(&prevouts),
                leaf_hash,
                TapSighashType::Default,
            )
            .map_err(|e| malformed(i, e.to_string()))?;
        out.push((i, sighash.to_byte_array()));
    }
    if out.is_empty() {
        return Err(malformed(0, "no input spends the vault's multisig leaf"));
    }
    Ok(out)
}

/// Adds `key`'s signature (a custodian's script key) to every input of `psbt` that spends
/// `vault`'s multisig leaf; returns how many it signed.
///
/// # Errors
/// [`FallbackError::NotACustodian`] for a key not in the leaf; [`FallbackError::Malformed`]
/// for a PSBT without witness_utxo or without a multisig-leaf input.
pub fn sign_fallback(
    psbt: &mut Psbt,
    vault: &Vault,
    key: &Keypair,
) -> Result<usize, FallbackError> {
    let xonly = key.x_only_public_key().0;
    if !vault.custodian_keys.contains(&xonly) {
        return Err(FallbackError::NotACustodian(xonly));
    }
    let secp = Secp256k1::new();
    let leaf_hash = TapLeafHash::from_script(&vault.multisig_leaf(), LeafVersion::TapScript);
    let hashes = leaf_sighashes(psbt, vault)?;
    for (i, h) in &hashes {
        let signature = secp.sign_schnorr(&Message::from_digest(*h), key);
        psbt.inputs[*i].tap_script_sigs.insert(
            (xonly, leaf_hash),
            bitcoin::taproot::Signature {
                signature,
                sighash_type: TapSighashType::Default,
            },
        );
    }
    Ok(hashes.len())
}

/// The network transaction of a fallback PSBT with at least the threshold of valid custodian
/// signatures on every multisig-leaf input (exactly the threshold are used: the leaf counts
/// them with `OP_NUMEQUAL`).
///
/// # Errors
/// [`FallbackError::TooFewSignatures`] naming the input; [`FallbackError::Malformed`].
pub fn finalize_fallback(psbt: &Psbt, vault: &Vault) -> Result<Transaction, FallbackError> {
    let secp = Secp256k1::verification_only();
    let leaf_hash = TapLeafHash::from_script(&vault.multisig_leaf(), LeafVersion::TapScript);
    let control = control_block(vault)?;
    let mut tx = psbt.unsigned_tx.clone();
    for (i, h) in leaf_sighashes(psbt, vault)? {
        let msg = Message::from_digest(h);
        let valid: BTreeMap<XOnlyPublicKey, bitcoin::taproot::Signature> = psbt.inputs[i]
            .tap_script_sigs
            .iter()
            .filter(|((key, leaf), sig)| {
                *leaf == leaf_hash
                    && vault.custodian_keys.contains(key)
                    && sig.sighash_type == TapSighashType::Default
                    && secp.verify_schnorr(&sig.signature, &msg, key).is_ok()
            })
            .map(|((key, _), sig)| (*key, *sig))
            .take(vault.threshold)
            .collect();
        if valid.len() < vault.threshold {
            return Err(FallbackError::TooFewSignatures {
                input: i,
                have: valid.len(),
                need: vault.threshold,
            });
        }
        tx.input[i].witness = witness(vault, &valid, &control);
    }
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use bitcoin::secp256k1::SecretKey;

    use super::*;

    fn keypair(byte: u8) -> Keypair {
        let secret = SecretKey::from_slice(&[byte; 32]).expect("key");
        Keypair::from_secret_key(&Secp256k1::signing_only(), &secret)
    }

    #[test]
    fn two_of_three_script_keys_spend_the_vault_through_its_multisig_leaf() {
        let keys: Vec<Keypair> = (1..=3).map(keypair).collect();
        let vault = Vault::new(
            keypair(9).x_only_public_key().0,
            2,
            keys.iter().map(|k| k.x_only_public_key().0).collect(),
            keypair(8).x_only_public_key().0,
            144,
        )
        .expect("vault");
        let utxo = (
            OutPoint::new(bitcoin::Txid::from_byte_array([5; 32]), 1),
            TxOut {
                value: Amount::from_sat(1_000_000),
                script_pubkey: vault.script_pubkey(),
            },
        );
        let pay = TxOut {
            value: Amount::from_sat(400_000),
            script_pubkey: ScriptBuf::new_p2tr(
                &Secp256k1::verification_only(),
                keypair(7).x_only_public_key().0,
                None,
            ),
        };
        let mut psbt = fallback_psbt(
            &vault,
            std::slice::from_ref(&utxo),
            std::slice::from_ref(&pay),
            2,
        )
        .expect("psbt");
        // Through BIP-174's serialization, as custodians pass it on.
        psbt = Psbt::deserialize(&psbt.serialize()).expect("round trip");
        assert!(matches!(
            finalize_fallback(&psbt, &vault),
            Err(FallbackError::TooFewSignatures {
                have: 0,
                need: 2,
                ..
            })
        ));
        assert_eq!(sign_fallback(&mut psbt, &vault, &keys[2]).expect("sign"), 1);
        assert!(matches!(
            finalize_fallback(&psbt, &vault),
            Err(FallbackError::TooFewSignatures { have: 1, .. })
        ));
        assert!(matches!(
            sign_fallback(&mut psbt, &vault, &keypair(6)),
            Err(FallbackError::NotACustodian(_))
        ));
        sign_fallback(&mut psbt, &vault, &keys[0]).expect("sign");
        let tx = finalize_fallback(&psbt, &vault).expect("finalize");
        assert_eq!(tx.output[0], pay);
        assert_eq!(tx.output[1].script_pubkey, vault.script_pubkey(), "change");
        let fee = 1_000_000 - 400_000 - tx.output[1].value.to_sat();
        assert_eq!(
            fee,
            tx.vsize() as u64 * 2,
            "the fee was paid for the final size"
        );
        // The script interpreter the embedded regtest node uses runs the leaf to true.
        hemi_btc_wallet::verify_transaction(&tx, std::slice::from_ref(&utxo.1))
            .expect("the multisig leaf spend verifies");
        // A signature by one key under another's slot fails.
        let mut swapped = tx.clone();
        let mut items: Vec<Vec<u8>> = swapped.input[0]
            .witness
            .iter()
            .map(<[u8]>::to_vec)
            .collect();
        items.swap(0, 2);
        swapped.input[0].witness = Witness::from_slice(&items);
        assert!(
            hemi_btc_wallet::verify_transaction(&swapped, std::slice::from_ref(&utxo.1)).is_err()
        );
        // The leaf's witness: 3 key slots, the leaf, the control block.
        assert_eq!(tx.input[0].witness.len(), 5);
        let control = ControlBlock::decode(tx.input[0].witness.nth(4).expect("cb")).expect("cb");
        assert!(control.verify_taproot_commitment(
            &Secp256k1::verification_only(),
            vault.output_key(),
            &vault.multisig_leaf()
        ));
    }
}
