//! Building the PoP transaction.

use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use hemi_btc_wallet::{build_payment, Key, KeyKind, WalletError};
use hemi_keystone::AbbreviatedKeystone;

/// The PoP output: zero value, `OP_RETURN OP_PUSHDATA1 0x50 "HEMI" ‖ abbreviated keystone`.
pub fn pop_output(keystone: &AbbreviatedKeystone) -> TxOut {
    TxOut {
        value: Amount::ZERO,
        script_pubkey: keystone.pop_script(),
    }
}

/// A signed PoP transaction spending `utxo` (an output of `key`'s `kind` script): the PoP output
/// first, then change back to the same script unless it is dust (then it goes to the fee). The
/// fee is `ceil(fee_rate × vsize)`; every input signals RBF.
///
/// # Errors
/// [`WalletError::InsufficientFunds`] if `utxo` does not cover the fee, key mismatches and
/// signing errors.
pub fn build_pop_transaction(
    key: &Key,
    kind: KeyKind,
    utxo: (OutPoint, TxOut),
    keystone: &AbbreviatedKeystone,
    fee_rate: f64,
) -> Result<Transaction, WalletError> {
    build_payment(key, kind, &[utxo], vec![pop_output(keystone)], fee_rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::Txid;
    use hemi_keystone::Keystone;

    fn keystone() -> AbbreviatedKeystone {
        Keystone {
            version: 1,
            l1_block_number: 812,
            l2_block_number: 25,
            parent_ep_hash: [1; 32],
            prev_keystone_ep_hash: [2; 32],
            state_root: [3; 32],
            ep_hash: [4; 32],
        }
        .abbreviate()
    }

    fn build(kind: KeyKind, value: u64, rate: f64) -> Result<Transaction, WalletError> {
        let key = Key::from_seed("pop-test");
        let utxo = (
            OutPoint::new(Txid::from_byte_array([9; 32]), 1),
            TxOut {
                value: Amount::from_sat(value),
                script_pubkey: key.script_pubkey(kind),
            },
        );
        build_pop_transaction(&key, kind, utxo, &keystone(), rate)
    }

    #[test]
    fn both_input_types_fit_in_203_vbytes_and_carry_the_keystone() {
        for (kind, most) in [(KeyKind::P2wpkh, 202), (KeyKind::P2tr, 203)] {
            let tx = build(kind, 100_000, 2.0).expect("builds");
            let vsize = tx.vsize();
            assert!(vsize <= most, "{kind:?}: {vsize} vB");
            assert_eq!(tx.output.len(), 2, "PoP output and change");
            assert_eq!(
                AbbreviatedKeystone::from_pop_script(&tx.output[0].script_pubkey),
                Ok(keystone())
            );
            let fee = 100_000 - tx.output[1].value.to_sat();
            assert_eq!(fee, (2.0 * vsize as f64).ceil() as u64, "{kind:?}");
        }
    }

    #[test]
    fn dust_change_goes_to_the_fee_and_too_little_is_an_error() {
        let tx = build(KeyKind::P2wpkh, 600, 2.0).expect("builds");
        assert_eq!(tx.output.len(), 1, "change below dust dropped");
        assert!(matches!(
            build(KeyKind::P2wpkh, 100, 2.0),
            Err(WalletError::InsufficientFunds { .. })
        ));
    }
}
