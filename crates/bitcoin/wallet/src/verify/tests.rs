//! Tests of the script checker: round trips through the signer, tampering, malformed input,
//! Core's policy-versus-consensus split, and the BIP143 / BIP341 vectors.

use super::*;
use crate::sign::taproot_key_spend_signature;
use crate::{sign_transaction, Key, KeyKind, Multisig, Signer, WalletError, RBF_SEQUENCE};
use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::sha256d;
use bitcoin::hex::FromHex;
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, TxIn, Txid};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    Vec::from_hex(s).expect("test hex")
}

fn outpoint(n: u32) -> OutPoint {
    OutPoint {
        txid: Txid::from_raw_hash(sha256d::Hash::hash(&n.to_be_bytes())),
        vout: n,
    }
}

fn txout(sat: u64, script: ScriptBuf) -> TxOut {
    TxOut {
        value: Amount::from_sat(sat),
        script_pubkey: script,
    }
}

/// An unsigned transaction spending one dummy outpoint per prevout, paying two outputs.
fn spending(prevouts: &[TxOut]) -> Transaction {
    let payee = Key::from_seed("payee");
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: (0..prevouts.len())
            .map(|i| TxIn {
                previous_output: outpoint(i as u32),
                sequence: RBF_SEQUENCE,
                ..TxIn::default()
            })
            .collect(),
        output: vec![
            txout(40_000, payee.script_pubkey(KeyKind::P2wpkh)),
            txout(30_000, payee.script_pubkey(KeyKind::P2tr)),
        ],
    }
}

fn signed(prevouts: &[TxOut], signers: &[Signer<'_>]) -> Transaction {
    let mut tx = spending(prevouts);
    sign_transaction(&mut tx, prevouts, signers).expect("signs");
    tx
}

fn custodians() -> Vec<Key> {
    (0..3)
        .map(|i| Key::from_seed(&format!("custodian-{i}")))
        .collect()
}

fn multisig(threshold: usize, keys: &[Key]) -> Multisig {
    Multisig::new(threshold, keys.iter().map(Key::public_key).collect()).expect("valid multisig")
}

fn consensus(input: usize, reason: ScriptFailure) -> Result<(), ScriptError> {
    Err(ScriptError::Consensus { input, reason })
}

fn policy(input: usize, reason: ScriptFailure) -> Result<(), ScriptError> {
    Err(ScriptError::Policy { input, reason })
}

fn nonstandard(input: usize, reason: &'static str) -> Result<(), ScriptError> {
    Err(ScriptError::NonStandard { input, reason })
}

fn with_witness(tx: &Transaction, input: usize, items: &[&[u8]]) -> Transaction {
    let mut tx = tx.clone();
    tx.input[input].witness = Witness::from_slice(items);
    tx
}

fn witness_items(tx: &Transaction, input: usize) -> Vec<Vec<u8>> {
    tx.input[input].witness.iter().map(<[u8]>::to_vec).collect()
}

/// An ECDSA signature over `digest` with an arbitrary hash type byte appended.
fn ecdsa_sig(key: &Key, digest: [u8; 32], hash_type: u8) -> Vec<u8> {
    let sig = secp().sign_ecdsa(&Message::from_digest(digest), key.secret_key());
    let mut bytes = sig.serialize_der().to_vec();
    bytes.push(hash_type);
    bytes
}

// ---------------------------------------------------------------- round trips

#[test]
fn p2wpkh_spend_round_trips() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2wpkh))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let items = witness_items(&tx, 0);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].last(), Some(&0x01), "SIGHASH_ALL");
    assert_eq!(items[1], key.public_key().to_bytes());
    assert!(tx.input[0].script_sig.is_empty());
    assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()));
}

#[test]
fn p2tr_key_path_spend_round_trips() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2tr))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let items = witness_items(&tx, 0);
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].len(),
        64,
        "SIGHASH_DEFAULT signatures carry no hash type byte"
    );
    assert_eq!(verify_transaction(&tx, &prevouts), Ok(()));
}

#[test]
fn p2pkh_spend_round_trips() {
    let key = Key::from_seed("legacy");
    let prevouts = vec![txout(100_000, key.p2pkh_script_pubkey())];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    assert!(tx.input[0].witness.is_empty());
    assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()));
}

#[test]
fn one_of_one_multisig_round_trips() {
    let keys = custodians();
    let ms = multisig(1, &keys[..1]);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &[&keys[0]],
        }],
    );
    let items = witness_items(&tx, 0);
    assert_eq!(items.len(), 3);
    assert!(items[0].is_empty(), "NULLDUMMY");
    assert_eq!(items[2], ms.witness_script().to_bytes());
    assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()));
}

#[test]
fn two_of_three_multisig_round_trips_with_any_two_keys() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    for pair in [[0, 1], [0, 2], [1, 2], [2, 0]] {
        let signers = [&keys[pair[0]], &keys[pair[1]]];
        let tx = signed(
            &prevouts,
            &[Signer::Multisig {
                script: &ms,
                keys: &signers,
            }],
        );
        assert_eq!(witness_items(&tx, 0).len(), 4);
        assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()), "keys {pair:?}");
    }
    // All three offered: the first two in key order sign.
    let all: Vec<&Key> = keys.iter().collect();
    let tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &all,
        }],
    );
    assert_eq!(witness_items(&tx, 0).len(), 4);
    assert_eq!(verify_input(&tx, 0, &prevouts), Ok(()));
}

#[test]
fn mixed_inputs_round_trip() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let (a, b) = (Key::from_seed("a"), Key::from_seed("b"));
    let prevouts = vec![
        txout(10_000, a.script_pubkey(KeyKind::P2wpkh)),
        txout(20_000, b.script_pubkey(KeyKind::P2tr)),
        txout(30_000, ms.script_pubkey()),
        txout(40_000, a.p2pkh_script_pubkey()),
        txout(50_000, a.script_pubkey(KeyKind::P2tr)),
    ];
    let signers = [&keys[1], &keys[2]];
    let tx = signed(
        &prevouts,
        &[
            Signer::Key(&a),
            Signer::Key(&b),
            Signer::Multisig {
                script: &ms,
                keys: &signers,
            },
            Signer::Key(&a),
            Signer::Key(&a),
        ],
    );
    assert_eq!(verify_transaction(&tx, &prevouts), Ok(()));
    for index in 0..prevouts.len() {
        assert_eq!(verify_input(&tx, index, &prevouts), Ok(()));
    }
    // Taproot commits to every input's amount: changing another input's amount breaks it.
    let mut other_amount = prevouts.clone();
    other_amount[0].value = Amount::from_sat(10_001);
    assert_eq!(
        verify_input(&tx, 1, &other_amount),
        consensus(1, ScriptFailure::SchnorrSig)
    );
    assert_eq!(
        verify_input(&tx, 2, &other_amount),
        Ok(()),
        "BIP143 commits to its own amount only"
    );
}

// ---------------------------------------------------------------- tampering

#[test]
fn tampered_output_value_fails_every_type() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let key = Key::from_seed("alice");
    let signers = [&keys[0], &keys[1]];
    let cases: Vec<(TxOut, Signer<'_>, ScriptFailure)> = vec![
        (
            txout(100_000, key.script_pubkey(KeyKind::P2wpkh)),
            Signer::Key(&key),
            ScriptFailure::SigNullFail,
        ),
        (
            txout(100_000, key.script_pubkey(KeyKind::P2tr)),
            Signer::Key(&key),
            ScriptFailure::SchnorrSig,
        ),
        (
            txout(100_000, key.p2pkh_script_pubkey()),
            Signer::Key(&key),
            ScriptFailure::SigNullFail,
        ),
        (
            txout(100_000, ms.script_pubkey()),
            Signer::Multisig {
                script: &ms,
                keys: &signers,
            },
            ScriptFailure::SigNullFail,
        ),
    ];
    for (prevout, signer, failure) in cases {
        let prevouts = vec![prevout];
        let mut tx = signed(&prevouts, &[signer]);
        tx.output[0].value = Amount::from_sat(40_001);
        let err = verify_input(&tx, 0, &prevouts);
        assert_eq!(err, consensus(0, failure));
        assert_eq!(verify_transaction(&tx, &prevouts), err);
    }
}

#[test]
fn failed_multisig_reads_like_core() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let signers = [&keys[0], &keys[1]];
    let mut tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &signers,
        }],
    );
    tx.output[1].value = Amount::from_sat(1);
    let err = verify_transaction(&tx, &prevouts).expect_err("tampered");
    assert_eq!(
        err.to_string(),
        "mempool-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)"
    );
    assert_eq!(err.input(), Some(0));
    assert_eq!(err.is_consensus_failure(), Some(true));
    assert_eq!(
        err.block_reason().as_deref(),
        Some("block-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)")
    );
}

#[test]
fn tampered_prevout_amount_fails_segwit() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2wpkh))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let lied = vec![txout(100_001, key.script_pubkey(KeyKind::P2wpkh))];
    assert_eq!(
        verify_input(&tx, 0, &lied),
        consensus(0, ScriptFailure::SigNullFail)
    );
}

#[test]
fn wrong_key_fails() {
    let (alice, mallory) = (Key::from_seed("alice"), Key::from_seed("mallory"));

    // P2WPKH: Mallory's signature with Alice's key fails the signature, with her own key the hash.
    let prevouts = vec![txout(100_000, alice.script_pubkey(KeyKind::P2wpkh))];
    let mallory_prevouts = vec![txout(100_000, mallory.script_pubkey(KeyKind::P2wpkh))];
    let forged = signed(&mallory_prevouts, &[Signer::Key(&mallory)]);
    let mut items = witness_items(&forged, 0);
    assert_eq!(
        verify_input(&forged, 0, &prevouts),
        consensus(0, ScriptFailure::EqualVerify)
    );
    items[1] = alice.public_key().to_bytes();
    let tx = with_witness(&forged, 0, &[&items[0], &items[1]]);
    assert_eq!(
        verify_input(&tx, 0, &prevouts),
        consensus(0, ScriptFailure::SigNullFail)
    );

    // P2TR: Mallory's key-path signature on Alice's output.
    let prevouts = vec![txout(100_000, alice.script_pubkey(KeyKind::P2tr))];
    let mut cache = SighashCache::new(&forged);
    let sig = taproot_key_spend_signature(
        &mut cache,
        0,
        &prevouts,
        &mallory,
        TapSighashType::Default,
        None,
    )
    .expect("signs");
    let tx = with_witness(&forged, 0, &[&sig.to_vec()]);
    assert_eq!(
        verify_input(&tx, 0, &prevouts),
        consensus(0, ScriptFailure::SchnorrSig)
    );

    // Multisig: a stranger's signature in a custodian's place.
    let keys = custodians();
    let ms = multisig(2, &keys);
    let stranger_ms = multisig(2, &[keys[0].clone(), mallory.clone(), keys[2].clone()]);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let signers = [&keys[0], &mallory];
    let tx = signed(
        &[txout(100_000, stranger_ms.script_pubkey())],
        &[Signer::Multisig {
            script: &stranger_ms,
            keys: &signers,
        }],
    );
    let mut items = witness_items(&tx, 0);
    items[3] = ms.witness_script().to_bytes();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    let tx = with_witness(&tx, 0, &refs);
    assert_eq!(
        verify_input(&tx, 0, &prevouts),
        consensus(0, ScriptFailure::SigNullFail)
    );
}

#[test]
fn swapped_multisig_signature_order_fails() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let signers = [&keys[0], &keys[2]];
    let tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &signers,
        }],
    );
    let items = witness_items(&tx, 0);
    let swapped = with_witness(&tx, 0, &[&items[0], &items[2], &items[1], &items[3]]);
    assert_eq!(
        verify_input(&swapped, 0, &prevouts),
        consensus(0, ScriptFailure::SigNullFail)
    );
}

#[test]
fn non_null_dummy_fails() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let signers = [&keys[0], &keys[1]];
    let tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &signers,
        }],
    );
    let items = witness_items(&tx, 0);
    let bad = with_witness(&tx, 0, &[&[0x01], &items[1], &items[2], &items[3]]);
    let err = verify_input(&bad, 0, &prevouts);
    assert_eq!(err, consensus(0, ScriptFailure::SigNullDummy));
    assert_eq!(
        err.expect_err("fails").to_string(),
        "mempool-script-verify-flag-failed (Dummy CHECKMULTISIG argument must be zero)"
    );
}

// ---------------------------------------------------------------- malformed input

#[test]
fn malformed_p2wpkh_witnesses_fail_cleanly() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2wpkh))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let items = witness_items(&tx, 0);
    let pk = &items[1];
    let check = |stack: &[&[u8]]| verify_input(&with_witness(&tx, 0, stack), 0, &prevouts);
    use ScriptFailure::*;
    assert_eq!(check(&[]), consensus(0, WitnessProgramMismatch));
    assert_eq!(check(&[&items[0]]), consensus(0, WitnessProgramMismatch));
    assert_eq!(
        check(&[&items[0], pk, &[]]),
        consensus(0, WitnessProgramMismatch)
    );
    assert_eq!(check(&[&[0x30, 0x01, 0x02], pk]), consensus(0, SigDer));
    assert_eq!(
        check(&[&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 1], pk]),
        consensus(0, SigDer)
    );
    assert_eq!(check(&[&[], pk]), consensus(0, EvalFalse));
    assert_eq!(check(&[&items[0], &[]]), consensus(0, EqualVerify));
    assert_eq!(check(&[&[0u8; 521], pk]), consensus(0, PushSize));
    // A DER-valid signature of zeros: passes encoding, fails verification.
    let zero_sig = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01];
    assert_eq!(check(&[&zero_sig, pk]), consensus(0, SigNullFail));
    // A scriptSig is not allowed on a witness spend.
    let mut malleated = tx.clone();
    malleated.input[0].script_sig = ScriptBuf::from_bytes(vec![0x01, 0x42]);
    assert_eq!(
        verify_input(&malleated, 0, &prevouts),
        consensus(0, WitnessMalleated)
    );
    // Core runs the scriptSig first: a non-minimal push is the first failure it meets.
    malleated.input[0].script_sig = ScriptBuf::from_bytes(vec![0x01, 0x05]);
    assert_eq!(
        verify_input(&malleated, 0, &prevouts),
        consensus(0, MinimalData)
    );
}

#[test]
fn malformed_taproot_witnesses_fail_cleanly() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2tr))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let sig = witness_items(&tx, 0).remove(0);
    let check = |stack: &[&[u8]]| verify_input(&with_witness(&tx, 0, stack), 0, &prevouts);
    use ScriptFailure::*;
    assert_eq!(check(&[]), consensus(0, WitnessProgramWitnessEmpty));
    assert_eq!(check(&[&sig[..63]]), consensus(0, SchnorrSigSize));
    assert_eq!(check(&[&[]]), consensus(0, SchnorrSigSize));
    assert_eq!(check(&[&[0u8; 66]]), consensus(0, SchnorrSigSize));
    for bad_type in [0x00, 0x04, 0x80, 0x84, 0xff] {
        let mut sig65 = sig.clone();
        sig65.push(bad_type);
        assert_eq!(
            check(&[&sig65]),
            consensus(0, SchnorrSigHashtype),
            "hash type {bad_type:#x}"
        );
    }
    // A valid SIGHASH_DEFAULT signature relabelled SIGHASH_ALL signs a different message.
    let mut relabelled = sig.clone();
    relabelled.push(0x01);
    assert_eq!(check(&[&relabelled]), consensus(0, SchnorrSig));
    let mut flipped = sig.clone();
    flipped[10] ^= 1;
    assert_eq!(check(&[&flipped]), consensus(0, SchnorrSig));
    assert_eq!(check(&[&[0u8; 64]]), consensus(0, SchnorrSig));
    // A script path whose control block commits to nothing in the output key (Core:
    // SCRIPT_ERR_WITNESS_PROGRAM_MISMATCH).
    assert_eq!(
        check(&[&sig, &[0xc0; 33]]),
        consensus(0, WitnessProgramMismatch)
    );
    assert_eq!(
        check(&[&sig, &[ANNEX_TAG, 1]]),
        nonstandard(0, "bad-witness-nonstandard")
    );
    assert_eq!(
        check(&[&sig, &[0xc0; 33], &[]]),
        nonstandard(0, "bad-witness-nonstandard")
    );
}

#[test]
fn explicit_taproot_hash_types_verify() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2tr))];
    let tx = spending(&prevouts);
    for hash_type in [
        TapSighashType::All,
        TapSighashType::None,
        TapSighashType::Single,
        TapSighashType::AllPlusAnyoneCanPay,
        TapSighashType::NonePlusAnyoneCanPay,
        TapSighashType::SinglePlusAnyoneCanPay,
    ] {
        let mut cache = SighashCache::new(&tx);
        let sig = taproot_key_spend_signature(&mut cache, 0, &prevouts, &key, hash_type, None)
            .expect("signs");
        let bytes = sig.to_vec();
        assert_eq!(bytes.len(), 65);
        assert_eq!(
            verify_input(&with_witness(&tx, 0, &[&bytes]), 0, &prevouts),
            Ok(()),
            "{hash_type}"
        );
    }
    // SIGHASH_SINGLE without an output at the input's index: Core's SignatureHashSchnorr fails.
    let mut no_outputs = tx.clone();
    no_outputs.output.clear();
    let mut sig = vec![0u8; 64];
    sig.push(0x03);
    assert_eq!(
        verify_input(&with_witness(&no_outputs, 0, &[&sig]), 0, &prevouts),
        consensus(0, ScriptFailure::SchnorrSigHashtype)
    );
}

#[test]
fn malformed_multisig_witnesses_fail_cleanly() {
    let keys = custodians();
    let ms = multisig(2, &keys);
    let prevouts = vec![txout(100_000, ms.script_pubkey())];
    let signers = [&keys[0], &keys[1]];
    let tx = signed(
        &prevouts,
        &[Signer::Multisig {
            script: &ms,
            keys: &signers,
        }],
    );
    let items = witness_items(&tx, 0);
    let (dummy, s1, s2, script) = (&items[0], &items[1], &items[2], &items[3]);
    let check = |stack: &[&[u8]]| verify_input(&with_witness(&tx, 0, stack), 0, &prevouts);
    use ScriptFailure::*;
    assert_eq!(check(&[]), consensus(0, WitnessProgramWitnessEmpty));
    assert_eq!(
        check(&[
            dummy,
            s1,
            s2,
            &multisig(2, &keys[..2]).witness_script().to_bytes()
        ]),
        consensus(0, WitnessProgramMismatch)
    );
    assert_eq!(
        check(&[dummy, s1, s2]),
        consensus(0, WitnessProgramMismatch)
    );
    assert_eq!(
        check(&[&[], dummy, s1, s2, script]),
        consensus(0, CleanStack)
    );
    assert_eq!(
        check(&[s1, s2, script]),
        consensus(0, InvalidStackOperation)
    );
    assert_eq!(check(&[s2, script]), consensus(0, InvalidStackOperation));
    assert_eq!(check(&[script]), consensus(0, InvalidStackOperation));
    assert_eq!(
        check(&[dummy, &[0x30, 0x00], s2, script]),
        consensus(0, SigDer)
    );
    // A failed CHECKMULTISIG must have all signatures empty (NULLFAIL), else it is NULLFAIL.
    assert_eq!(check(&[dummy, &[], s2, script]), consensus(0, SigNullFail));
    assert_eq!(check(&[dummy, &[], &[], script]), consensus(0, EvalFalse));
    assert_eq!(check(&[dummy, s1, s1, script]), consensus(0, SigNullFail));
    // Core's P2WSH standardness: at most 80 bytes per stack item.
    assert_eq!(
        check(&[dummy, s1, &[0u8; 81], script]),
        nonstandard(0, "bad-witness-nonstandard")
    );
}

#[test]
fn witness_and_script_sig_standardness_comes_first() {
    let key = Key::from_seed("legacy");
    let prevouts = vec![txout(100_000, key.p2pkh_script_pubkey())];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let with_stray_witness = with_witness(&tx, 0, &[&[1]]);
    assert_eq!(
        verify_input(&with_stray_witness, 0, &prevouts),
        nonstandard(0, "bad-witness-nonstandard")
    );
    let mut not_push_only = tx.clone();
    let mut script_sig = tx.input[0].script_sig.to_bytes();
    script_sig.push(OP_DUP.to_u8());
    not_push_only.input[0].script_sig = ScriptBuf::from_bytes(script_sig);
    assert_eq!(
        verify_transaction(&not_push_only, &prevouts),
        nonstandard(0, "scriptsig-not-pushonly")
    );
    let mut truncated = tx.clone();
    truncated.input[0].script_sig = ScriptBuf::from_bytes(vec![0x4c]);
    assert_eq!(
        verify_input(&truncated, 0, &prevouts),
        nonstandard(0, "scriptsig-not-pushonly")
    );
    let mut huge = tx.clone();
    huge.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51; 1651]);
    assert_eq!(
        verify_input(&huge, 0, &prevouts),
        nonstandard(0, "scriptsig-size")
    );
}

#[test]
fn malformed_p2pkh_script_sigs_fail_cleanly() {
    let key = Key::from_seed("legacy");
    let prevouts = vec![txout(100_000, key.p2pkh_script_pubkey())];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let check = |script_sig: Vec<u8>| {
        let mut tx = tx.clone();
        tx.input[0].script_sig = ScriptBuf::from_bytes(script_sig);
        verify_input(&tx, 0, &prevouts)
    };
    let good = tx.input[0].script_sig.to_bytes();
    let pk = key.public_key().to_bytes();
    let mut pk_push = vec![33];
    pk_push.extend_from_slice(&pk);
    use ScriptFailure::*;
    assert_eq!(check(vec![]), consensus(0, InvalidStackOperation));
    assert_eq!(check(pk_push.clone()), consensus(0, InvalidStackOperation));
    assert_eq!(check(vec![0x51]), consensus(0, EqualVerify));
    assert_eq!(check(vec![0x50]), consensus(0, BadOpcode));
    let mut empty_sig = vec![0x00];
    empty_sig.extend_from_slice(&pk_push);
    assert_eq!(check(empty_sig), consensus(0, EvalFalse));
    // An extra element below: valid by consensus, not clean-stack.
    let mut extra = vec![0x51];
    extra.extend_from_slice(&good);
    assert_eq!(check(extra), policy(0, CleanStack));
    // The public key pushed with OP_PUSHDATA1: valid by consensus, not minimal.
    let sig_len = usize::from(good[0]);
    let mut non_minimal = good[..=sig_len].to_vec();
    non_minimal.extend_from_slice(&[0x4c, 33]);
    non_minimal.extend_from_slice(&pk);
    assert_eq!(check(non_minimal), policy(0, MinimalData));
}

// ---------------------------------------------------------------- policy versus consensus

/// `n - s` for the secp256k1 order `n`: the high-S twin of a low-S signature.
fn negate_s(compact: [u8; 64]) -> [u8; 64] {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let mut out = compact;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(compact[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[32 + i] = d as u8;
    }
    out
}

#[test]
fn high_s_signature_is_a_policy_failure_only() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2wpkh))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    let items = witness_items(&tx, 0);
    let (der, hash_type) = items[0].split_at(items[0].len() - 1);
    let low = ecdsa::Signature::from_der(der).expect("our DER");
    let high = ecdsa::Signature::from_compact(&negate_s(low.serialize_compact())).expect("s < n");
    let mut high_bytes = high.serialize_der().to_vec();
    high_bytes.extend_from_slice(hash_type);
    let tx = with_witness(&tx, 0, &[&high_bytes, &items[1]]);
    let err = verify_input(&tx, 0, &prevouts);
    assert_eq!(err, policy(0, ScriptFailure::SigHighS));
    assert_eq!(err.expect_err("fails").is_consensus_failure(), Some(false));
}

#[test]
fn undefined_ecdsa_hash_type_is_a_policy_failure_only() {
    let key = Key::from_seed("alice");
    let script = key.script_pubkey(KeyKind::P2wpkh);
    let prevouts = vec![txout(100_000, script.clone())];
    let tx = spending(&prevouts);
    let code = pkh_script(&script.as_bytes()[2..]);
    for hash_type in [0x00, 0x04, 0x21, 0x42, 0xa3] {
        let digest = segwit_v0_sighash(
            &mut SighashCache::new(&tx),
            0,
            &code,
            prevouts[0].value,
            hash_type,
        )
        .expect("digest");
        let sig = ecdsa_sig(&key, digest, hash_type);
        let signed = with_witness(&tx, 0, &[&sig, &key.public_key().to_bytes()]);
        assert_eq!(
            verify_input(&signed, 0, &prevouts),
            policy(0, ScriptFailure::SigHashtype),
            "{hash_type:#x}"
        );
    }
}

#[test]
fn uncompressed_key_in_p2wpkh_is_a_policy_failure_only() {
    let key = Key::from_seed("alice");
    let uncompressed = bitcoin::PublicKey::new_uncompressed(key.public_key().inner).to_bytes();
    let hash = hash160::Hash::hash(&uncompressed);
    let mut spk = vec![0x00, 20];
    spk.extend_from_slice(hash.as_byte_array());
    let prevouts = vec![txout(100_000, ScriptBuf::from_bytes(spk))];
    let tx = spending(&prevouts);
    let code = pkh_script(hash.as_byte_array());
    let digest = segwit_v0_sighash(
        &mut SighashCache::new(&tx),
        0,
        &code,
        prevouts[0].value,
        0x01,
    )
    .expect("digest");
    let sig = ecdsa_sig(&key, digest, 0x01);
    let signed = with_witness(&tx, 0, &[&sig, &uncompressed]);
    assert_eq!(
        verify_input(&signed, 0, &prevouts),
        policy(0, ScriptFailure::WitnessPubkeyType)
    );
}

#[test]
fn witness_program_versions_and_lengths() {
    let key = Key::from_seed("alice");
    let tx = spending(&[txout(1, ScriptBuf::new())]);
    let check = |spk: Vec<u8>, stack: &[&[u8]]| {
        verify_input(
            &with_witness(&tx, 0, stack),
            0,
            &[txout(100_000, ScriptBuf::from_bytes(spk))],
        )
    };
    let mut v2 = vec![0x52, 32];
    v2.extend_from_slice(&[7; 32]);
    assert_eq!(
        check(v2, &[&[1]]),
        policy(0, ScriptFailure::DiscourageUpgradableWitnessProgram)
    );
    let mut v1_short = vec![0x51, 20];
    v1_short.extend_from_slice(&[7; 20]);
    assert_eq!(
        check(v1_short, &[]),
        policy(0, ScriptFailure::DiscourageUpgradableWitnessProgram)
    );
    // The output script leaves its program on the stack: an all-zero program is false.
    let mut negative_zero = vec![0x00, 20];
    negative_zero.extend_from_slice(&[0; 19]);
    negative_zero.push(0x80);
    assert_eq!(
        check(negative_zero, &[]),
        consensus(0, ScriptFailure::EvalFalse)
    );
    let mut v0_odd = vec![0x00, 25];
    v0_odd.extend_from_slice(&[7; 25]);
    assert_eq!(
        check(v0_odd, &[&[1]]),
        consensus(0, ScriptFailure::WitnessProgramWrongLength)
    );
    assert_eq!(check(P2A.to_vec(), &[]), Ok(()));
    assert_eq!(
        check(P2A.to_vec(), &[&[1]]),
        nonstandard(0, "bad-witness-nonstandard")
    );
    // An x-only key that is not on the curve can sign nothing.
    // BIP340 test vector 5's "public key not on the curve".
    let mut off_curve = vec![0x51, 32];
    off_curve.extend_from_slice(&hex(
        "eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34",
    ));
    assert_eq!(
        check(off_curve, &[&[1; 64]]),
        consensus(0, ScriptFailure::SchnorrSig)
    );

    let unsupported = |spk: ScriptBuf, stack: &[&[u8]]| {
        matches!(
            check(spk.to_bytes(), stack),
            Err(ScriptError::Unsupported(_))
        )
    };
    let redeem = key.script_pubkey(KeyKind::P2wpkh);
    assert!(unsupported(ScriptBuf::new_p2sh(&redeem.script_hash()), &[]));
    assert!(unsupported(ScriptBuf::new_p2pk(&key.public_key()), &[]));
    assert!(unsupported(ScriptBuf::new_op_return([1, 2, 3]), &[]));
    assert!(unsupported(ScriptBuf::new(), &[]));
    let op_true = ScriptBuf::from_bytes(vec![0x51]);
    assert!(unsupported(
        ScriptBuf::new_p2wsh(&op_true.wscript_hash()),
        &[op_true.as_bytes()]
    ));
}

#[test]
fn bad_calls_are_errors() {
    let key = Key::from_seed("alice");
    let prevouts = vec![txout(100_000, key.script_pubkey(KeyKind::P2wpkh))];
    let tx = signed(&prevouts, &[Signer::Key(&key)]);
    assert_eq!(
        verify_input(&tx, 1, &prevouts),
        Err(ScriptError::InputOutOfRange {
            index: 1,
            inputs: 1
        })
    );
    assert_eq!(
        verify_input(&tx, 0, &[]),
        Err(ScriptError::PrevoutCount {
            prevouts: 0,
            inputs: 1
        })
    );
    assert_eq!(
        verify_transaction(&tx, &[prevouts[0].clone(), prevouts[0].clone()]),
        Err(ScriptError::PrevoutCount {
            prevouts: 2,
            inputs: 1
        })
    );
}

#[test]
fn der_encoding_rules_follow_bip66() {
    let ok = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01];
    assert!(is_valid_signature_encoding(&ok));
    let mut negative_r = ok;
    negative_r[4] = 0x81;
    assert!(!is_valid_signature_encoding(&negative_r));
    let padded_r = [0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01, 0x01];
    assert!(!is_valid_signature_encoding(&padded_r));
    let needed_pad = [0x30, 0x07, 0x02, 0x02, 0x00, 0x81, 0x02, 0x01, 0x01, 0x01];
    assert!(is_valid_signature_encoding(&needed_pad));
    let mut wrong_total = ok;
    wrong_total[1] = 0x07;
    assert!(!is_valid_signature_encoding(&wrong_total));
    assert!(!is_valid_signature_encoding(&ok[..8]));
    assert!(!is_valid_signature_encoding(&[0x30; 74]));
}

#[test]
fn segwit_v0_sighash_matches_rust_bitcoin_for_standard_types() {
    let key = Key::from_seed("alice");
    let script = key.script_pubkey(KeyKind::P2wpkh);
    let prevouts = vec![txout(100_000, script.clone()), txout(5_000, script.clone())];
    let tx = spending(&prevouts);
    let code = pkh_script(&script.as_bytes()[2..]);
    for (index, prevout) in prevouts.iter().enumerate() {
        for hash_type in [
            EcdsaSighashType::All,
            EcdsaSighashType::None,
            EcdsaSighashType::Single,
            EcdsaSighashType::AllPlusAnyoneCanPay,
            EcdsaSighashType::NonePlusAnyoneCanPay,
            EcdsaSighashType::SinglePlusAnyoneCanPay,
        ] {
            let mut cache = SighashCache::new(&tx);
            let expected = cache
                .p2wpkh_signature_hash(index, &script, prevout.value, hash_type)
                .expect("sighash");
            let ours = segwit_v0_sighash(
                &mut cache,
                index,
                &code,
                prevout.value,
                hash_type.to_u32() as u8,
            );
            assert_eq!(ours, Some(expected.to_byte_array()), "{hash_type}");
        }
    }
}

// ---------------------------------------------------------------- vectors

/// BIP143's "Native P2WPKH" example: input 1 spends P2WPKH.
#[test]
fn bip143_native_p2wpkh_vector() {
    let unsigned: Transaction = deserialize_hex(concat!(
        "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff",
        "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206",
        "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db",
        "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000",
    ))
    .expect("BIP143 unsigned tx");
    let signed: Transaction = deserialize_hex(concat!(
        "01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f000000004948",
        "30450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3",
        "f9281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3a",
        "a89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df3",
        "78db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f016",
        "7faa815988ac000247304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a",
        "0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee0121025476c2e83188368d",
        "a1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee635711000000",
    ))
    .expect("BIP143 signed tx");
    let key = Key::from_secret_bytes(
        hex("619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9")
            .try_into()
            .expect("32"),
    )
    .expect("BIP143 key");
    assert_eq!(
        key.public_key().to_string(),
        "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357"
    );
    let prevouts = vec![
        txout(
            625_000_000,
            ScriptBuf::from_bytes(hex(
                "2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac",
            )),
        ),
        txout(
            600_000_000,
            ScriptBuf::from_bytes(hex("00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1")),
        ),
    ];
    assert_eq!(
        key.script_pubkey(KeyKind::P2wpkh),
        prevouts[1].script_pubkey
    );

    // The sighash, through the path the checker uses.
    let digest = segwit_v0_sighash(
        &mut SighashCache::new(&unsigned),
        1,
        &pkh_script(&prevouts[1].script_pubkey.as_bytes()[2..]),
        prevouts[1].value,
        0x01,
    )
    .expect("digest");
    let expected = hex("c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670");
    assert_eq!(digest.to_vec(), expected);

    // Our signer reproduces the BIP's (RFC6979) witness byte for byte.
    let mut cache = SighashCache::new(&unsigned);
    let ours = crate::sign::sign_input(&mut cache, 1, &prevouts, &prevouts[1], &Signer::Key(&key))
        .expect("signs");
    assert_eq!(ours.1, signed.input[1].witness);

    assert_eq!(verify_input(&signed, 1, &prevouts), Ok(()));
    assert!(matches!(
        verify_input(&signed, 0, &prevouts),
        Err(ScriptError::Unsupported(_))
    ));
    let mut tampered = signed.clone();
    tampered.lock_time = LockTime::from_consensus(18);
    assert_eq!(
        verify_input(&tampered, 1, &prevouts),
        consensus(1, ScriptFailure::SigNullFail)
    );
}

/// BIP143's "P2SH-P2WSH 6-of-6 multisig signed with 6 different SIGHASH types" (from Bitcoin
/// Core's `tx_valid.json`).
const BIP143_P2SH_P2WSH_TX: &str = concat!(
    "0100000000010136641869ca081e70f394c6948e8af409e18b619df2ed74aa106c1ca29787b96e0100000023220020a1",
    "6b5755f7f6f96dbd65f5f0d6ab9418b89af4b1f14a1bb8a09062c35f0dcb54ffffffff0200e9a435000000001976a914",
    "389ffce9cd9ae88dcc0631e88a821ffdbe9bfe2688acc0832f05000000001976a9147480a33f950689af511e6e84c138",
    "dbbd3c3ee41588ac080047304402206ac44d672dac41f9b00e28f4df20c52eeb087207e8d758d76d92c6fab3b73e2b02",
    "20367750dbbe19290069cba53d096f44530e4f98acaa594810388cf7409a1870ce01473044022068c7946a43232757cb",
    "df9176f009a928e1cd9a1a8c212f15c1e11ac9f2925d9002205b75f937ff2f9f3c1246e547e54f62e027f64eefa26955",
    "78cc6432cdabce271502473044022059ebf56d98010a932cf8ecfec54c48e6139ed6adb0728c09cbe1e4fa0915302e02",
    "2007cd986c8fa870ff5d2b3a89139c9fe7e499259875357e20fcbb15571c76795403483045022100fbefd94bd0a488d5",
    "0b79102b5dad4ab6ced30c4069f1eaa69a4b5a763414067e02203156c6a5c9cf88f91265f5a942e96213afae16d83321",
    "c8b31bb342142a14d16381483045022100a5263ea0553ba89221984bd7f0b13613db16e7a70c549a86de0cc0444141a4",
    "07022005c360ef0ae5a5d4f9f2f87a56c1546cc8268cab08c73501d6b3be2e1e1a8a08824730440220525406a1482936",
    "d5a21888260dc165497a90a15669636d8edca6b9fe490d309c022032af0c646a34a44d1f4576bf6a4a74b67940f8faa8",
    "4c7df9abe12a01a11e2b4783cf56210307b8ae49ac90a048e9b53357a2354b3334e9c8bee813ecb98e99a7e07e8c3ba3",
    "2103b28f0c28bfab54554ae8c658ac5c3e0ce6e79ad336331f78c428dd43eea8449b21034b8113d703413d57761b8b97",
    "81957b8c0ac1dfe69f492580ca4195f50376ba4a21033400f6afecb833092a9a21cfdf1ed1376e58c5d1f47de7468312",
    "3987e967a8f42103a6d48b1131e94ba04d9737d61acdaa1322008af9602b3b14862c07a1789aac162102d8b661b0b330",
    "2ee2f162b09e07a55ad5dfbe673a9f01d9f0c19617681024306b56ae00000000",
);

/// The BIP143 6-of-6 vector unwrapped to native P2WSH: a BIP143 sighash does not depend on the
/// P2SH wrapping, so the vector's witness spends the native output as well. Covers multisig
/// with every ECDSA hash type against signatures made by other software.
#[test]
fn bip143_six_of_six_multisig_vector_verifies_as_native_p2wsh() {
    let mut tx: Transaction = deserialize_hex(BIP143_P2SH_P2WSH_TX).expect("BIP143 tx");
    let witness_script =
        ScriptBuf::from_bytes(tx.input[0].witness.last().expect("script").to_vec());
    let value = 987_654_321;
    let p2sh = vec![txout(
        value,
        ScriptBuf::from_bytes(hex("a9149993a429037b5d912407a71c252019287b8d27a587")),
    )];
    assert!(matches!(
        verify_input(&tx, 0, &p2sh),
        Err(ScriptError::Unsupported(_))
    ));

    tx.input[0].script_sig = ScriptBuf::new();
    let prevouts = vec![txout(
        value,
        ScriptBuf::new_p2wsh(&witness_script.wscript_hash()),
    )];
    assert_eq!(verify_transaction(&tx, &prevouts), Ok(()));
    let hash_types: Vec<u8> = tx.input[0]
        .witness
        .iter()
        .skip(1)
        .take(6)
        .filter_map(|sig| sig.last().copied())
        .collect();
    assert_eq!(hash_types, [0x01, 0x02, 0x03, 0x81, 0x82, 0x83]);

    let mut tampered = tx.clone();
    tampered.output[1].value = Amount::from_sat(1);
    assert_eq!(
        verify_input(&tampered, 0, &prevouts),
        consensus(0, ScriptFailure::SigNullFail)
    );
    let lied = vec![txout(value + 1, prevouts[0].script_pubkey.clone())];
    assert_eq!(
        verify_input(&tx, 0, &lied),
        consensus(0, ScriptFailure::SigNullFail)
    );
}

include!("bip341_vector.rs");

fn bip341_prevouts() -> Vec<TxOut> {
    BIP341_UTXOS
        .iter()
        .map(|(spk, sat)| txout(*sat, ScriptBuf::from_bytes(hex(spk))))
        .collect()
}

/// BIP341's wallet vector `keyPathSpending[0]`: seven taproot key-path inputs with every hash
/// type, a P2PKH and a P2WPKH input, fully signed.
#[test]
fn bip341_key_path_vector_verifies() {
    let signed: Transaction = deserialize_hex(BIP341_SIGNED_TX).expect("BIP341 signed tx");
    let prevouts = bip341_prevouts();
    assert_eq!(verify_transaction(&signed, &prevouts), Ok(()));
    for index in 0..signed.input.len() {
        assert_eq!(
            verify_input(&signed, index, &prevouts),
            Ok(()),
            "input {index}"
        );
    }
    // Every input fails once its prevout's amount is a satoshi off, except the legacy P2PKH one
    // (index 2), which commits to no amounts, and P2WPKH (index 5), which commits to its own only.
    // Each input commits to its own amount (the P2PKH input 2 to none) ...
    for index in [0, 1, 3, 4, 5, 6, 7, 8] {
        let mut lied = prevouts.clone();
        lied[index].value += Amount::from_sat(1);
        assert!(
            verify_input(&signed, index, &lied).is_err(),
            "input {index}"
        );
    }
    // ... and taproot inputs without ANYONECANPAY to every other input's amount too.
    let mut lied = prevouts.clone();
    lied[2].value += Amount::from_sat(1);
    for index in [0, 3, 4, 6] {
        assert!(
            verify_input(&signed, index, &lied).is_err(),
            "input {index}"
        );
    }
    for index in [1, 2, 5, 7, 8] {
        assert_eq!(verify_input(&signed, index, &lied), Ok(()), "input {index}");
    }
    let mut tampered = signed.clone();
    tampered.lock_time = LockTime::ZERO;
    assert!(verify_transaction(&tampered, &prevouts).is_err());
}

/// Input 0 of the BIP341 vector has no script tree, so it is a BIP86 output of our `Key`; with
/// BIP340 aux randomness zero (as in the vector) our signature is the vector's, byte for byte.
#[test]
fn bip341_key_path_vector_signature_is_reproduced() {
    let unsigned: Transaction = deserialize_hex(BIP341_UNSIGNED_TX).expect("BIP341 unsigned tx");
    let prevouts = bip341_prevouts();
    let key = Key::from_secret_bytes(
        hex("6b973d88838f27366ed61c9ad6367663045cb456e28335c109e30717ae0c6baa")
            .try_into()
            .expect("32"),
    )
    .expect("vector key");
    assert_eq!(
        key.x_only().to_string(),
        "d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d"
    );
    assert_eq!(key.script_pubkey(KeyKind::P2tr), prevouts[0].script_pubkey);
    let mut cache = SighashCache::new(&unsigned);
    let sig = taproot_key_spend_signature(
        &mut cache,
        0,
        &prevouts,
        &key,
        TapSighashType::Single,
        Some(&[0; 32]),
    )
    .expect("signs");
    assert_eq!(
        sig.to_vec(),
        hex(concat!(
            "ed7c1647cb97379e76892be0cacff57ec4a7102aa24296ca39af7541246d8ff1",
            "4d38958d4cc1e2e478e4d4a764bbfd835b16d4e314b72937b29833060b87276c03"
        ))
    );
}

// ---------------------------------------------------------------- properties

/// A signed transaction with one input of each supported type.
fn fixture() -> &'static (Transaction, Vec<TxOut>) {
    static FIXTURE: std::sync::OnceLock<(Transaction, Vec<TxOut>)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = custodians();
        let ms = multisig(2, &keys);
        let key = Key::from_seed("fixture");
        let prevouts = vec![
            txout(10_000, key.script_pubkey(KeyKind::P2wpkh)),
            txout(20_000, key.script_pubkey(KeyKind::P2tr)),
            txout(30_000, ms.script_pubkey()),
            txout(40_000, key.p2pkh_script_pubkey()),
        ];
        let signers = [&keys[0], &keys[2]];
        let tx = signed(
            &prevouts,
            &[
                Signer::Key(&key),
                Signer::Key(&key),
                Signer::Multisig {
                    script: &ms,
                    keys: &signers,
                },
                Signer::Key(&key),
            ],
        );
        (tx, prevouts)
    })
}

proptest! {
    /// Random witnesses and scriptSigs against every prevout type never panic.
    #[test]
    fn random_witnesses_never_panic(
        index in 0usize..4,
        witness in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..6),
        script_sig in proptest::collection::vec(any::<u8>(), 0..80),
        keep_script_sig in any::<bool>(),
    ) {
        let (tx, prevouts) = fixture();
        let mut tx = tx.clone();
        tx.input[index].witness = Witness::from_slice(&witness);
        if !keep_script_sig {
            tx.input[index].script_sig = ScriptBuf::from_bytes(script_sig);
        }
        let _ = verify_input(&tx, index, prevouts);
        let _ = verify_transaction(&tx, prevouts);
    }

    /// Random prevout scripts (with random witnesses) never panic.
    #[test]
    fn random_prevout_scripts_never_panic(
        script in proptest::collection::vec(any::<u8>(), 0..60),
        witness in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
    ) {
        let (tx, prevouts) = fixture();
        let mut tx = tx.clone();
        let mut prevouts = prevouts.clone();
        prevouts[0].script_pubkey = ScriptBuf::from_bytes(script);
        tx.input[0].witness = Witness::from_slice(&witness);
        let _ = verify_input(&tx, 0, &prevouts);
    }

    /// Flipping any one bit of a valid witness or scriptSig makes the input fail.
    #[test]
    fn any_bit_flip_breaks_a_valid_spend(index in 0usize..4, pick in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let (tx, prevouts) = fixture();
        let mut tx = tx.clone();
        if index == 3 {
            let mut bytes = tx.input[3].script_sig.to_bytes();
            let at = pick.index(bytes.len());
            bytes[at] ^= 1 << bit;
            tx.input[3].script_sig = ScriptBuf::from_bytes(bytes);
        } else {
            let mut items = witness_items(&tx, index);
            let flat: Vec<(usize, usize)> = items
                .iter()
                .enumerate()
                .flat_map(|(i, item)| (0..item.len()).map(move |j| (i, j)))
                .collect();
            let (i, j) = flat[pick.index(flat.len())];
            items[i][j] ^= 1 << bit;
            tx.input[index].witness = Witness::from_slice(&items);
        }
        prop_assert!(verify_input(&tx, index, prevouts).is_err());
    }
}

#[test]
fn wallet_error_wraps_script_errors() {
    let err: WalletError = ScriptError::Unsupported("x".to_owned()).into();
    assert!(err.to_string().contains("unsupported script: x"));
}

// ---------------------------------------------------------------- taproot script paths

/// A taproot output over `internal` with leaves `a` and `b` (both at depth 1).
fn two_leaf_tree(
    internal: &Key,
    a: &ScriptBuf,
    b: &ScriptBuf,
) -> bitcoin::taproot::TaprootSpendInfo {
    bitcoin::taproot::TaprootBuilder::new()
        .add_leaf(1, a.clone())
        .and_then(|t| t.add_leaf(1, b.clone()))
        .expect("tree")
        .finalize(secp(), internal.x_only())
        .expect("finalize")
}

/// `tx` with input 0 spending leaf `leaf` of `info`, signed by `key` (or `sig` as given).
fn leaf_spend(
    tx: &Transaction,
    prevouts: &[TxOut],
    info: &bitcoin::taproot::TaprootSpendInfo,
    leaf: &ScriptBuf,
    key: &Key,
) -> Transaction {
    use bitcoin::taproot::{LeafVersion, TapLeafHash};
    let hash = TapLeafHash::from_script(leaf, LeafVersion::TapScript);
    let sighash = SighashCache::new(tx)
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(prevouts),
            hash,
            TapSighashType::Default,
        )
        .expect("sighash");
    let keypair = bitcoin::key::Keypair::from_secret_key(secp(), key.secret_key());
    let sig =
        secp().sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &keypair);
    let control = info
        .control_block(&(leaf.clone(), LeafVersion::TapScript))
        .expect("leaf in tree")
        .serialize();
    with_witness(tx, 0, &[sig.as_ref(), leaf.as_bytes(), &control])
}

#[test]
fn tapscript_leaves_of_the_tunnels_shapes_run_with_core_s_rules() {
    use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP, OP_SHA256};
    let (depositor, vault, internal) = (
        Key::from_seed("depositor"),
        Key::from_seed("vault"),
        Key::from_seed("internal"),
    );
    let reclaim = bitcoin::script::Builder::new()
        .push_int(144)
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_x_only_key(&depositor.x_only())
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let deposit = bitcoin::script::Builder::new()
        .push_slice([7u8; 37])
        .push_opcode(OP_DROP)
        .push_x_only_key(&vault.x_only())
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let info = two_leaf_tree(&internal, &deposit, &reclaim);
    let prevouts = [txout(
        100_000,
        ScriptBuf::new_p2tr_tweaked(info.output_key()),
    )];
    let tx = spending(&prevouts);

    // The deposit leaf, signed by the vault key.
    let ok = leaf_spend(&tx, &prevouts, &info, &deposit, &vault);
    assert_eq!(verify_transaction(&ok, &prevouts), Ok(()));
    // Signed by another key: the signature fails (a consensus failure in tapscript).
    let wrong = leaf_spend(&tx, &prevouts, &info, &deposit, &depositor);
    assert_eq!(
        verify_transaction(&wrong, &prevouts),
        consensus(0, ScriptFailure::SchnorrSig)
    );
    // An empty signature makes OP_CHECKSIG false.
    let mut items = witness_items(&ok, 0);
    items[0].clear();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    assert_eq!(
        verify_transaction(&with_witness(&tx, 0, &refs), &prevouts),
        consensus(0, ScriptFailure::EvalFalse)
    );
    // The leaf swapped for one the output does not commit to.
    let mut items = witness_items(&ok, 0);
    items[1] = reclaim.to_bytes();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    assert_eq!(
        verify_transaction(&with_witness(&tx, 0, &refs), &prevouts),
        consensus(0, ScriptFailure::WitnessProgramMismatch)
    );
    // A control block of a wrong size.
    let mut items = witness_items(&ok, 0);
    items[2].push(0);
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    assert_eq!(
        verify_transaction(&with_witness(&tx, 0, &refs), &prevouts),
        consensus(0, ScriptFailure::TaprootWrongControlSize)
    );

    // The reclaim leaf: only with nSequence >= 144 blocks in a version-2 transaction.
    let mut early = tx.clone();
    early.input[0].sequence = bitcoin::Sequence::from_height(143);
    let early = leaf_spend(&early, &prevouts, &info, &reclaim, &depositor);
    assert_eq!(
        verify_transaction(&early, &prevouts),
        consensus(0, ScriptFailure::UnsatisfiedLocktime)
    );
    let mut due = tx.clone();
    due.input[0].sequence = bitcoin::Sequence::from_height(144);
    let due_signed = leaf_spend(&due, &prevouts, &info, &reclaim, &depositor);
    assert_eq!(verify_transaction(&due_signed, &prevouts), Ok(()));
    let mut v1 = due.clone();
    v1.version = Version::ONE;
    let v1 = leaf_spend(&v1, &prevouts, &info, &reclaim, &depositor);
    assert_eq!(
        verify_transaction(&v1, &prevouts),
        consensus(0, ScriptFailure::UnsatisfiedLocktime)
    );
    // The RBF sequence has BIP-68's disable bit: OP_CSV fails.
    let rbf = leaf_spend(&tx, &prevouts, &info, &reclaim, &depositor);
    assert_eq!(
        verify_transaction(&rbf, &prevouts),
        consensus(0, ScriptFailure::UnsatisfiedLocktime)
    );

    // Other opcodes are not guessed at.
    let hashing = bitcoin::script::Builder::new()
        .push_opcode(OP_SHA256)
        .push_x_only_key(&vault.x_only())
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let info = two_leaf_tree(&internal, &hashing, &reclaim);
    let prevouts = [txout(
        100_000,
        ScriptBuf::new_p2tr_tweaked(info.output_key()),
    )];
    let tx = spending(&prevouts);
    let spend = leaf_spend(&tx, &prevouts, &info, &hashing, &vault);
    assert!(matches!(
        verify_transaction(&spend, &prevouts),
        Err(ScriptError::Unsupported(_))
    ));
}
