//! Reclaim: the depositor takes back a taproot deposit that was never swept, through its reclaim
//! leaf, once the deposit output is `reclaim_after` blocks deep (BIP-68 relative height, checked
//! by `OP_CHECKSEQUENCEVERIFY`).

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::TaprootDeposit;

/// Why a reclaim cannot be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReclaimError {
    /// The key is not the deposit's depositor key.
    #[error("the key given is not the deposit's depositor key {expected}")]
    WrongKey {
        /// The deposit's.
        expected: bitcoin::XOnlyPublicKey,
    },
    /// The deposit does not cover the fee and a non-dust output.
    #[error(
        "the deposit of {value} does not cover a fee of {fee} and an output of at least {dust}"
    )]
    TooSmall {
        /// The deposit's value.
        value: Amount,
        /// The fee at the rate asked.
        fee: Amount,
        /// The output's dust threshold.
        dust: Amount,
    },
    /// The fee rate is 0 or absurd (over 10,000 sat/vB).
    #[error("fee rate {0} sat/vB is outside 1..=10000")]
    FeeRate(u64),
    /// Signing failed (a bug: the sighash inputs are built here).
    #[error("sighash: {0}")]
    Sighash(String),
}

/// A signed transaction that spends `deposit`'s output `outpoint` (worth `value`) through the
/// reclaim leaf to `to`, paying `fee_rate` sat/vB. Version 2, input sequence = the deposit's
/// `reclaim_after` blocks (so Core refuses it as `non-BIP68-final` until then), lock time 0.
///
/// # Errors
/// [`ReclaimError`]: the wrong key, a deposit too small for the fee, a bad fee rate.
pub fn reclaim_transaction(
    deposit: &TaprootDeposit,
    outpoint: OutPoint,
    value: Amount,
    to: ScriptBuf,
    fee_rate: u64,
    keypair: &Keypair,
) -> Result<Transaction, ReclaimError> {
    if !(1..=10_000).contains(&fee_rate) {
        return Err(ReclaimError::FeeRate(fee_rate));
    }
    let (given, _) = keypair.x_only_public_key();
    if given != deposit.depositor_key {
        return Err(ReclaimError::WrongKey {
            expected: deposit.depositor_key,
        });
    }
    let leaf = deposit.reclaim_leaf();
    let control = deposit
        .spend_info()
        .control_block(&(leaf.clone(), LeafVersion::TapScript))
        .ok_or_else(|| ReclaimError::Sighash("the reclaim leaf is not in the tree".into()))?;
    let witness = |sig: &[u8]| {
        let mut w = Witness::new();
        w.push(sig);
        w.push(leaf.as_bytes());
        w.push(control.serialize());
        w
    };
    let dust = to.minimal_non_dust();
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::from_height(deposit.reclaim_after),
            witness: witness(&[0u8; 64]),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: to,
        }],
    };
    // A BIP-340 signature with SIGHASH_DEFAULT is always 64 bytes: the trial's size is final.
    let fee = Amount::from_sat(tx.vsize() as u64 * fee_rate);
    let out = value
        .checked_sub(fee)
        .filter(|v| *v >= dust)
        .ok_or(ReclaimError::TooSmall { value, fee, dust })?;
    tx.output[0].value = out;
    let prevout = [TxOut {
        value,
        script_pubkey: deposit.script_pubkey(),
    }];
    let sighash = SighashCache::new(&tx)
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(&prevout),
            TapLeafHash::from_script(&leaf, LeafVersion::TapScript),
            TapSighashType::Default,
        )
        .map_err(|e| ReclaimError::Sighash(e.to_string()))?;
    let msg = Message::from_digest(sighash.to_byte_array());
    let secp = Secp256k1::new();
    let sig = secp.sign_schnorr_no_aux_rand(&msg, keypair);
    secp.verify_schnorr(&sig, &msg, &given)
        .map_err(|e| ReclaimError::Sighash(e.to_string()))?;
    tx.input[0].witness = witness(sig.as_ref());
    Ok(tx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;
    use alloy_primitives::Address;
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::schnorr;
    use bitcoin::Txid;

    fn keypair(b: u8) -> Keypair {
        Keypair::from_seckey_slice(&Secp256k1::new(), &[b; 32]).unwrap()
    }

    fn deposit(depositor: &Keypair) -> TaprootDeposit {
        TaprootDeposit {
            chain_id: 743_111,
            recipient: Address::repeat_byte(0x11),
            max_fee: Amount::from_sat(1_000),
            vault_key: keypair(9).x_only_public_key().0,
            depositor_key: depositor.x_only_public_key().0,
            reclaim_after: 144,
        }
    }

    #[test]
    fn reclaim_signs_the_reclaim_leaf_with_the_csv_sequence() {
        let kp = keypair(3);
        let d = deposit(&kp);
        let op = OutPoint::new(Txid::from_byte_array([5; 32]), 1);
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp.x_only_public_key().0, None);
        let value = Amount::from_sat(100_000);
        let tx = reclaim_transaction(&d, op, value, to.clone(), 2, &kp).unwrap();
        assert_eq!(tx.input[0].sequence, Sequence::from_height(144));
        assert_eq!(tx.input[0].previous_output, op);
        assert_eq!(tx.output[0].script_pubkey, to);
        let fee = value - tx.output[0].value;
        assert_eq!(fee.to_sat(), tx.vsize() as u64 * 2);
        // The witness: signature, the reclaim leaf, a control block that commits the leaf to
        // the deposit's output key; the signature verifies over the script-path sighash.
        let w: Vec<&[u8]> = tx.input[0].witness.iter().collect();
        assert_eq!(w.len(), 3);
        assert_eq!(w[1], d.reclaim_leaf().as_bytes());
        let control = bitcoin::taproot::ControlBlock::decode(w[2]).unwrap();
        let output_key = d.spend_info().output_key().to_x_only_public_key();
        assert!(control.verify_taproot_commitment(
            &Secp256k1::verification_only(),
            output_key,
            &d.reclaim_leaf()
        ));
        let prevout = [TxOut {
            value,
            script_pubkey: d.script_pubkey(),
        }];
        let sighash = SighashCache::new(&tx)
            .taproot_script_spend_signature_hash(
                0,
                &Prevouts::All(&prevout),
                TapLeafHash::from_script(&d.reclaim_leaf(), LeafVersion::TapScript),
                TapSighashType::Default,
            )
            .unwrap();
        let sig = schnorr::Signature::from_slice(w[0]).unwrap();
        Secp256k1::verification_only()
            .verify_schnorr(
                &sig,
                &Message::from_digest(sighash.to_byte_array()),
                &d.depositor_key,
            )
            .unwrap();
    }

    #[test]
    fn reclaim_refuses_another_key_a_tiny_deposit_and_a_zero_fee_rate() {
        let kp = keypair(3);
        let d = deposit(&kp);
        let op = OutPoint::new(Txid::from_byte_array([5; 32]), 0);
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp.x_only_public_key().0, None);
        let other = keypair(4);
        assert!(matches!(
            reclaim_transaction(&d, op, Amount::from_sat(100_000), to.clone(), 2, &other),
            Err(ReclaimError::WrongKey { .. })
        ));
        assert!(matches!(
            reclaim_transaction(&d, op, Amount::from_sat(500), to.clone(), 2, &kp),
            Err(ReclaimError::TooSmall { .. })
        ));
        assert_eq!(
            reclaim_transaction(&d, op, Amount::from_sat(100_000), to, 0, &kp),
            Err(ReclaimError::FeeRate(0))
        );
    }
}
