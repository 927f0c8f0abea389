//! Signing: [`sign_transaction`], [`sign_multisig_input`] and [`build_payment`].

use bitcoin::absolute::LockTime;
use bitcoin::blockdata::script::Builder;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    ecdsa, taproot, Amount, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Witness,
};

use crate::{secp, verify_transaction, Key, KeyKind, Multisig, WalletError};

/// `nSequence` of inputs built here: signals BIP125 replaceability (fee bumping), no relative
/// lock time.
pub const RBF_SEQUENCE: Sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;

/// What an input spends: needed for segwit (BIP143 commits to the amount) and taproot (BIP341
/// commits to every input's amount and script) sighashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prevout {
    /// The output spent.
    pub outpoint: OutPoint,
    /// Its value and script.
    pub txout: TxOut,
}

impl From<(OutPoint, TxOut)> for Prevout {
    fn from((outpoint, txout): (OutPoint, TxOut)) -> Self {
        Prevout { outpoint, txout }
    }
}

/// How to sign one input.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A single key; the prevout's script says how: the key's P2WPKH (BIP143 `SIGHASH_ALL`), its
    /// P2TR key path (BIP341 `SIGHASH_DEFAULT`), or its compressed P2PKH (legacy `SIGHASH_ALL`).
    Key(&'a Key),
    /// The P2WSH multisig `script`, signed by the first `threshold` of `keys` in script key
    /// order (BIP143 `SIGHASH_ALL`).
    Multisig {
        /// The multisig the prevout pays to.
        script: &'a Multisig,
        /// Keys of the multisig; at least `threshold` of them.
        keys: &'a [&'a Key],
    },
}

fn sighash_error(input: usize) -> impl Fn(&dyn std::fmt::Display) -> WalletError {
    move |e| WalletError::Sighash {
        input,
        reason: e.to_string(),
    }
}

fn ecdsa_sign(key: &Key, digest: [u8; 32]) -> ecdsa::Signature {
    // Low-R grinding keeps every DER signature at most 71 bytes with the hash type, like Core's
    // wallet, so size estimates from a trial signature hold; the first try is plain RFC6979.
    let signature = secp().sign_ecdsa_low_r(&Message::from_digest(digest), key.secret_key());
    ecdsa::Signature {
        signature,
        sighash_type: EcdsaSighashType::All,
    }
}

/// A BIP341 key-path signature by `key`'s BIP86-tweaked key. `aux_rand` is BIP340's auxiliary
/// randomness: fresh from the OS when `None` (the BIP's recommendation), fixed for test vectors.
pub(crate) fn taproot_key_spend_signature(
    cache: &mut SighashCache<&Transaction>,
    index: usize,
    prevouts: &[TxOut],
    key: &Key,
    sighash_type: TapSighashType,
    aux_rand: Option<&[u8; 32]>,
) -> Result<taproot::Signature, WalletError> {
    let sighash = cache
        .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), sighash_type)
        .map_err(|e| sighash_error(index)(&e))?;
    let msg = Message::from_digest(sighash.to_byte_array());
    let keypair = key.tweaked_keypair().to_keypair();
    let signature = match aux_rand {
        Some(aux) => secp().sign_schnorr_with_aux_rand(&msg, &keypair, aux),
        None => secp().sign_schnorr(&msg, &keypair),
    };
    Ok(taproot::Signature {
        signature,
        sighash_type,
    })
}

fn key_mismatch(input: usize, script: &Script) -> WalletError {
    WalletError::KeyMismatch {
        input,
        script: script.to_hex_string(),
    }
}

/// Signs input `index` of `tx`, which spends the P2WSH `multisig`, with `key` (BIP143
/// `SIGHASH_ALL`): one custodian's share. Put `threshold` of them together with
/// [`Multisig::witness`].
///
/// # Errors
/// [`WalletError::PrevoutCount`], [`WalletError::InputOutOfRange`],
/// [`WalletError::KeyMismatch`] if the prevout is not `multisig`'s P2WSH output,
/// [`WalletError::KeyNotInMultisig`] if `key` is not one of its keys.
pub fn sign_multisig_input(
    tx: &Transaction,
    index: usize,
    prevouts: &[TxOut],
    multisig: &Multisig,
    key: &Key,
) -> Result<ecdsa::Signature, WalletError> {
    check_counts(tx, prevouts)?;
    let prevout = prevouts.get(index).ok_or(WalletError::InputOutOfRange {
        index,
        inputs: tx.input.len(),
    })?;
    multisig_signature(&mut SighashCache::new(tx), index, prevout, multisig, key)
}

fn multisig_signature(
    cache: &mut SighashCache<&Transaction>,
    index: usize,
    prevout: &TxOut,
    multisig: &Multisig,
    key: &Key,
) -> Result<ecdsa::Signature, WalletError> {
    if prevout.script_pubkey != multisig.script_pubkey() {
        return Err(key_mismatch(index, &prevout.script_pubkey));
    }
    if !multisig.keys.contains(&key.public_key()) {
        return Err(WalletError::KeyNotInMultisig {
            input: index,
            key: key.public_key(),
        });
    }
    let sighash = cache
        .p2wsh_signature_hash(
            index,
            &multisig.witness_script(),
            prevout.value,
            EcdsaSighashType::All,
        )
        .map_err(|e| sighash_error(index)(&e))?;
    Ok(ecdsa_sign(key, sighash.to_byte_array()))
}

fn check_counts(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), WalletError> {
    if prevouts.len() != tx.input.len() {
        return Err(WalletError::PrevoutCount {
            prevouts: prevouts.len(),
            inputs: tx.input.len(),
        });
    }
    Ok(())
}

/// Signs every input of `tx` — `signers[i]` signs input `i`, which spends `prevouts[i]` — and
/// fills its witness (or, for P2PKH, its scriptSig). Then checks the result with
/// [`verify_transaction`], so a transaction that leaves here is one Core accepts script-wise.
///
/// Witnesses: P2WPKH `[sig||0x01, pubkey]`; P2TR key path `[64-byte sig]` (`SIGHASH_DEFAULT`);
/// P2WSH multisig `[<empty>, sig_1 .. sig_m, witness_script]`.
///
/// # Errors
/// [`WalletError::PrevoutCount`] / [`WalletError::SignerCount`] on length mismatches,
/// [`WalletError::KeyMismatch`] when a signer cannot spend its prevout's script,
/// [`WalletError::KeyNotInMultisig`] / [`WalletError::NotEnoughSigners`] for multisig signers,
/// [`WalletError::Sighash`], and [`WalletError::SelfCheck`] if the signed transaction fails our
/// own check (a bug).
pub fn sign_transaction(
    tx: &mut Transaction,
    prevouts: &[TxOut],
    signers: &[Signer<'_>],
) -> Result<(), WalletError> {
    check_counts(tx, prevouts)?;
    if signers.len() != tx.input.len() {
        return Err(WalletError::SignerCount {
            signers: signers.len(),
            inputs: tx.input.len(),
        });
    }
    let signed = {
        let mut cache = SighashCache::new(&*tx);
        prevouts
            .iter()
            .zip(signers)
            .enumerate()
            .map(|(index, (prevout, signer))| {
                sign_input(&mut cache, index, prevouts, prevout, signer)
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    for (input, (script_sig, witness)) in tx.input.iter_mut().zip(signed) {
        input.script_sig = script_sig;
        input.witness = witness;
    }
    verify_transaction(tx, prevouts)?;
    Ok(())
}

pub(crate) fn sign_input(
    cache: &mut SighashCache<&Transaction>,
    index: usize,
    prevouts: &[TxOut],
    prevout: &TxOut,
    signer: &Signer<'_>,
) -> Result<(ScriptBuf, Witness), WalletError> {
    let script = &prevout.script_pubkey;
    match signer {
        Signer::Key(key) => match key.kind_of(script) {
            Some(KeyKind::P2wpkh) => {
                let sighash = cache
                    .p2wpkh_signature_hash(index, script, prevout.value, EcdsaSighashType::All)
                    .map_err(|e| sighash_error(index)(&e))?;
                let sig = ecdsa_sign(key, sighash.to_byte_array());
                Ok((
                    ScriptBuf::new(),
                    Witness::p2wpkh(&sig, &key.public_key().inner),
                ))
            }
            Some(KeyKind::P2tr) => {
                let sig = taproot_key_spend_signature(
                    cache,
                    index,
                    prevouts,
                    key,
                    TapSighashType::Default,
                    None,
                )?;
                Ok((ScriptBuf::new(), Witness::p2tr_key_spend(&sig)))
            }
            None if *script == key.p2pkh_script_pubkey() => {
                let sighash = cache
                    .legacy_signature_hash(index, script, EcdsaSighashType::All.to_u32())
                    .map_err(|e| sighash_error(index)(&e))?;
                let sig = ecdsa_sign(key, sighash.to_byte_array());
                let script_sig = Builder::new()
                    .push_slice(sig.serialize())
                    .push_key(&key.public_key());
                Ok((script_sig.into_script(), Witness::new()))
            }
            None => Err(key_mismatch(index, script)),
        },
        Signer::Multisig {
            script: multisig,
            keys,
        } => {
            let mut sigs = Vec::with_capacity(multisig.threshold);
            for key in keys.iter() {
                let pk = key.public_key();
                if sigs.iter().any(|(k, _)| *k == pk) {
                    continue;
                }
                sigs.push((
                    pk,
                    multisig_signature(cache, index, prevout, multisig, key)?,
                ));
            }
            if sigs.is_empty() && *script != multisig.script_pubkey() {
                return Err(key_mismatch(index, script));
            }
            let witness = multisig.witness(&sigs).map_err(|e| match e {
                WalletError::NotEnoughSigners { needed, got, .. } => {
                    WalletError::NotEnoughSigners {
                        input: index,
                        needed,
                        got,
                    }
                }
                other => other,
            })?;
            Ok((ScriptBuf::new(), witness))
        }
    }
}

/// Bitcoin Core's dust threshold for an output paying to `script` at the default dust relay fee
/// (3 sat/vB): 294 sat for P2WPKH, 330 for P2TR and P2WSH, 546 for P2PKH, 0 for `OP_RETURN`.
/// Outputs below it do not relay.
pub fn dust_threshold(script: &Script) -> Amount {
    script.minimal_non_dust()
}

/// Largest-first coin selection for [`build_payment`]: the fewest of `utxos` (biggest value
/// first, ties by outpoint) whose sum reaches `target`, or all of them if none does.
pub fn select_largest_first(
    mut utxos: Vec<(OutPoint, TxOut)>,
    target: Amount,
) -> Vec<(OutPoint, TxOut)> {
    utxos.sort_by(|a, b| b.1.value.cmp(&a.1.value).then(a.0.cmp(&b.0)));
    let mut sum = Amount::ZERO;
    let mut take = 0;
    for (_, out) in &utxos {
        if sum >= target {
            break;
        }
        sum += out.value;
        take += 1;
    }
    utxos.truncate(take);
    utxos
}

/// Builds and signs a payment from `key`'s `kind` outputs: spends all of `utxos`, pays
/// `outputs` (in order), and sends the rest less the fee back to `key`'s `kind` address as a last
/// output when that change is not dust (else it goes to the fee). The fee is
/// `ceil(feerate_sat_vb * vsize)`, vsize measured on a signed trial transaction. Version 2,
/// lock time 0, every input's sequence [`RBF_SEQUENCE`] (replaceable).
///
/// # Errors
/// [`WalletError::InvalidFeeRate`] (negative, NaN, infinite, or a fee above 21M BTC),
/// [`WalletError::NoInputs`], [`WalletError::NoOutputs`], [`WalletError::KeyMismatch`] when a
/// UTXO is not `key`'s `kind` output, [`WalletError::DustOutput`],
/// [`WalletError::AmountOverflow`], [`WalletError::InsufficientFunds`] (with the amount the
/// transaction without change needs), and signing errors from [`sign_transaction`].
pub fn build_payment(
    key: &Key,
    kind: KeyKind,
    utxos: &[(OutPoint, TxOut)],
    outputs: Vec<TxOut>,
    feerate_sat_vb: f64,
) -> Result<Transaction, WalletError> {
    if !feerate_sat_vb.is_finite() || feerate_sat_vb < 0.0 {
        return Err(WalletError::InvalidFeeRate(feerate_sat_vb));
    }
    if utxos.is_empty() {
        return Err(WalletError::NoInputs);
    }
    if outputs.is_empty() {
        return Err(WalletError::NoOutputs);
    }
    let own_script = key.script_pubkey(kind);
    if let Some((index, (_, txout))) = utxos
        .iter()
        .enumerate()
        .find(|(_, (_, txout))| txout.script_pubkey != own_script)
    {
        return Err(key_mismatch(index, &txout.script_pubkey));
    }
    for (index, out) in outputs.iter().enumerate() {
        let threshold = dust_threshold(&out.script_pubkey);
        if out.value < threshold {
            return Err(WalletError::DustOutput {
                index,
                value: out.value,
                threshold,
            });
        }
    }
    let available = sum(utxos.iter().map(|(_, txout)| txout.value))?;
    let paying = sum(outputs.iter().map(|out| out.value))?;
    let prevouts: Vec<TxOut> = utxos.iter().map(|(_, txout)| txout.clone()).collect();
    let signers = vec![Signer::Key(key); utxos.len()];
    let unsigned = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: utxos
            .iter()
            .map(|(outpoint, _)| TxIn {
                previous_output: *outpoint,
                script_sig: ScriptBuf::new(),
                sequence: RBF_SEQUENCE,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    };
    let signed = |mut tx: Transaction| -> Result<Transaction, WalletError> {
        sign_transaction(&mut tx, &prevouts, &signers)?;
        Ok(tx)
    };

    // With change: the trial's change value is a placeholder; sizes do not depend on values.
    let mut with_change = unsigned.clone();
    with_change.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: own_script.clone(),
    });
    let fee = fee_for(&signed(with_change.clone())?, feerate_sat_vb)?;
    let needed = paying.checked_add(fee).ok_or(WalletError::AmountOverflow)?;
    if let Some(change) = available.checked_sub(needed) {
        if change >= dust_threshold(&own_script) {
            if let Some(out) = with_change.output.last_mut() {
                out.value = change;
            }
            return signed(with_change);
        }
    }

    // Without change: the trial is the final transaction; any excess goes to the fee.
    let tx = signed(unsigned)?;
    let needed = paying
        .checked_add(fee_for(&tx, feerate_sat_vb)?)
        .ok_or(WalletError::AmountOverflow)?;
    if available < needed {
        return Err(WalletError::InsufficientFunds { needed, available });
    }
    Ok(tx)
}

fn sum(mut amounts: impl Iterator<Item = Amount>) -> Result<Amount, WalletError> {
    amounts
        .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
        .filter(|total| *total <= Amount::MAX_MONEY)
        .ok_or(WalletError::AmountOverflow)
}

pub(crate) fn fee_for(tx: &Transaction, feerate_sat_vb: f64) -> Result<Amount, WalletError> {
    let fee = (feerate_sat_vb * tx.vsize() as f64).ceil();
    if !fee.is_finite() || fee > Amount::MAX_MONEY.to_sat() as f64 {
        return Err(WalletError::InvalidFeeRate(feerate_sat_vb));
    }
    // In range: finite, non-negative (feerate >= 0) and at most 21M BTC.
    Ok(Amount::from_sat(fee as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify_input;
    use bitcoin::hashes::sha256d;
    use bitcoin::Txid;

    fn outpoint(n: u32) -> OutPoint {
        OutPoint {
            txid: Txid::from_raw_hash(sha256d::Hash::hash(&n.to_le_bytes())),
            vout: n,
        }
    }

    fn utxo(key: &Key, kind: KeyKind, n: u32, sat: u64) -> (OutPoint, TxOut) {
        (
            outpoint(n),
            TxOut {
                value: Amount::from_sat(sat),
                script_pubkey: key.script_pubkey(kind),
            },
        )
    }

    fn pay(sat: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: Key::from_seed("payee").script_pubkey(KeyKind::P2wpkh),
        }
    }

    fn prevouts(utxos: &[(OutPoint, TxOut)]) -> Vec<TxOut> {
        utxos.iter().map(|(_, t)| t.clone()).collect()
    }

    fn fee_of(tx: &Transaction, utxos: &[(OutPoint, TxOut)]) -> u64 {
        let inputs: u64 = utxos.iter().map(|(_, t)| t.value.to_sat()).sum();
        let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        inputs - outputs
    }

    #[test]
    fn payment_with_change_pays_the_fee_rate_and_verifies() {
        for kind in [KeyKind::P2wpkh, KeyKind::P2tr] {
            let key = Key::from_seed("payer");
            let utxos = vec![utxo(&key, kind, 0, 100_000), utxo(&key, kind, 1, 50_000)];
            let tx = build_payment(&key, kind, &utxos, vec![pay(60_000)], 2.0).expect("funded");
            assert_eq!(tx.version, Version::TWO);
            assert_eq!(tx.lock_time, LockTime::ZERO);
            assert!(tx
                .input
                .iter()
                .all(|i| i.sequence.to_consensus_u32() == 0xffff_fffd));
            assert_eq!(tx.output.len(), 2);
            assert_eq!(tx.output[0], pay(60_000));
            assert_eq!(tx.output[1].script_pubkey, key.script_pubkey(kind));
            let fee = fee_of(&tx, &utxos);
            let vsize = tx.vsize() as u64;
            assert!(fee >= 2 * vsize, "{kind:?}: fee {fee} for vsize {vsize}");
            assert!(
                fee <= 2 * vsize + 2,
                "{kind:?}: fee {fee} for vsize {vsize}"
            );
            verify_transaction(&tx, &prevouts(&utxos)).expect("valid");
        }
    }

    #[test]
    fn change_below_dust_goes_to_the_fee() {
        let key = Key::from_seed("payer");
        let utxos = vec![utxo(&key, KeyKind::P2wpkh, 0, 10_000)];
        // One P2WPKH input, two outputs at 1 sat/vB is ~141 vB; leave less than 294 sat change.
        let tx = build_payment(&key, KeyKind::P2wpkh, &utxos, vec![pay(9_600)], 1.0).expect("ok");
        assert_eq!(tx.output.len(), 1);
        assert_eq!(fee_of(&tx, &utxos), 400);
        verify_transaction(&tx, &prevouts(&utxos)).expect("valid");
    }

    #[test]
    fn insufficient_funds_reports_need_and_have() {
        let key = Key::from_seed("payer");
        let utxos = vec![utxo(&key, KeyKind::P2tr, 0, 10_000)];
        let err = build_payment(&key, KeyKind::P2tr, &utxos, vec![pay(9_990)], 1.0)
            .expect_err("fee does not fit");
        match err {
            WalletError::InsufficientFunds { needed, available } => {
                assert_eq!(available, Amount::from_sat(10_000));
                assert!(needed > Amount::from_sat(10_000));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_payment_requests_are_rejected() {
        let key = Key::from_seed("payer");
        let utxos = vec![utxo(&key, KeyKind::P2wpkh, 0, 10_000)];
        let build = |utxos: &[(OutPoint, TxOut)], outs: Vec<TxOut>, rate: f64| {
            build_payment(&key, KeyKind::P2wpkh, utxos, outs, rate)
        };
        assert!(matches!(
            build(&utxos, vec![pay(1000)], f64::NAN),
            Err(WalletError::InvalidFeeRate(_))
        ));
        assert!(matches!(
            build(&utxos, vec![pay(1000)], -1.0),
            Err(WalletError::InvalidFeeRate(_))
        ));
        assert!(matches!(
            build(&utxos, vec![pay(1000)], 1e30),
            Err(WalletError::InvalidFeeRate(_))
        ));
        assert!(matches!(
            build(&[], vec![pay(1000)], 1.0),
            Err(WalletError::NoInputs)
        ));
        assert!(matches!(
            build(&utxos, vec![], 1.0),
            Err(WalletError::NoOutputs)
        ));
        assert!(matches!(
            build(&utxos, vec![pay(293)], 1.0),
            Err(WalletError::DustOutput { .. })
        ));
        let stranger = vec![utxo(&Key::from_seed("other"), KeyKind::P2wpkh, 0, 10_000)];
        assert!(matches!(
            build(&stranger, vec![pay(1000)], 1.0),
            Err(WalletError::KeyMismatch { .. })
        ));
        let p2tr = vec![utxo(&key, KeyKind::P2tr, 0, 10_000)];
        assert!(matches!(
            build(&p2tr, vec![pay(1000)], 1.0),
            Err(WalletError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn op_return_outputs_of_zero_value_are_allowed() {
        let key = Key::from_seed("popm");
        let utxos = vec![utxo(&key, KeyKind::P2tr, 0, 50_000)];
        let op_return = TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return([0x48, 0x45, 0x4d, 0x49]),
        };
        let tx = build_payment(&key, KeyKind::P2tr, &utxos, vec![op_return], 1.5).expect("ok");
        assert_eq!(tx.output.len(), 2);
        verify_transaction(&tx, &prevouts(&utxos)).expect("valid");
    }

    #[test]
    fn dust_thresholds_match_core() {
        let key = Key::from_seed("dust");
        assert_eq!(
            dust_threshold(&key.script_pubkey(KeyKind::P2wpkh)).to_sat(),
            294
        );
        assert_eq!(
            dust_threshold(&key.script_pubkey(KeyKind::P2tr)).to_sat(),
            330
        );
        assert_eq!(dust_threshold(&key.p2pkh_script_pubkey()).to_sat(), 546);
        let ms = Multisig::new(1, vec![key.public_key()]).expect("valid");
        assert_eq!(dust_threshold(&ms.script_pubkey()).to_sat(), 330);
    }

    #[test]
    fn multisig_shares_signed_apart_combine_into_a_valid_witness() {
        let keys: Vec<Key> = (0..3)
            .map(|i| Key::from_seed(&format!("custodian-{i}")))
            .collect();
        let ms = Multisig::new(2, keys.iter().map(Key::public_key).collect()).expect("valid");
        let prevouts = vec![TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: ms.script_pubkey(),
        }];
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint(7),
                sequence: RBF_SEQUENCE,
                ..TxIn::default()
            }],
            output: vec![pay(90_000)],
        };
        // Custodians 2 and 0 sign on their own machines, in any order.
        let shares: Vec<_> = [2, 0]
            .iter()
            .map(|&i| {
                let sig = sign_multisig_input(&tx, 0, &prevouts, &ms, &keys[i]).expect("share");
                (keys[i].public_key(), sig)
            })
            .collect();
        tx.input[0].witness = ms.witness(&shares).expect("two shares");
        verify_input(&tx, 0, &prevouts).expect("valid");
        assert!(matches!(
            ms.witness(&shares[..1]),
            Err(WalletError::NotEnoughSigners {
                needed: 2,
                got: 1,
                ..
            })
        ));
        let stranger = Key::from_seed("stranger");
        assert!(matches!(
            sign_multisig_input(&tx, 0, &prevouts, &ms, &stranger),
            Err(WalletError::KeyNotInMultisig { .. })
        ));
        assert!(matches!(
            sign_multisig_input(&tx, 1, &prevouts, &ms, &keys[0]),
            Err(WalletError::PrevoutCount { .. } | WalletError::InputOutOfRange { .. })
        ));
    }

    #[test]
    fn sign_transaction_checks_lengths_and_keys() {
        let key = Key::from_seed("k");
        let prevouts = vec![TxOut {
            value: Amount::from_sat(1000),
            script_pubkey: key.script_pubkey(KeyKind::P2wpkh),
        }];
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint(1),
                ..TxIn::default()
            }],
            output: vec![pay(500)],
        };
        assert!(matches!(
            sign_transaction(&mut tx, &[], &[Signer::Key(&key)]),
            Err(WalletError::PrevoutCount { .. })
        ));
        assert!(matches!(
            sign_transaction(&mut tx, &prevouts, &[]),
            Err(WalletError::SignerCount { .. })
        ));
        let other = Key::from_seed("other");
        assert!(matches!(
            sign_transaction(&mut tx, &prevouts, &[Signer::Key(&other)]),
            Err(WalletError::KeyMismatch { input: 0, .. })
        ));
        let ms = Multisig::new(2, vec![key.public_key(), other.public_key()]).expect("valid");
        let ms_prevouts = vec![TxOut {
            value: Amount::from_sat(1000),
            script_pubkey: ms.script_pubkey(),
        }];
        assert!(matches!(
            sign_transaction(
                &mut tx,
                &ms_prevouts,
                &[Signer::Multisig {
                    script: &ms,
                    keys: &[&key]
                }]
            ),
            Err(WalletError::NotEnoughSigners {
                input: 0,
                needed: 2,
                got: 1
            })
        ));
        // Signing with the same key twice does not count twice.
        assert!(matches!(
            sign_transaction(
                &mut tx,
                &ms_prevouts,
                &[Signer::Multisig {
                    script: &ms,
                    keys: &[&key, &key]
                }]
            ),
            Err(WalletError::NotEnoughSigners {
                input: 0,
                needed: 2,
                got: 1
            })
        ));
        sign_transaction(&mut tx, &prevouts, &[Signer::Key(&key)]).expect("signs");
        assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()));
    }
}
