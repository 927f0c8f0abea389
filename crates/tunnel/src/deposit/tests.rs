use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::taproot::LeafVersion;
use bitcoin::transaction::Version;
use bitcoin::{TxOut, Txid};
use hemi_btc_wallet::{Key, KeyKind};
use proptest::prelude::*;

use super::*;

const RECIPIENT: Address = Address::new([0x42; 20]);

fn vault() -> ScriptBuf {
    Key::from_seed("tunnel-test-vault").script_pubkey(KeyKind::P2tr)
}

fn tx(outputs: Vec<(u64, ScriptBuf)>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([7; 32]), 0),
            ..Default::default()
        }],
        output: outputs
            .into_iter()
            .map(|(sat, script_pubkey)| TxOut {
                value: Amount::from_sat(sat),
                script_pubkey,
            })
            .collect(),
    }
}

#[test]
fn both_hemi_op_return_forms_name_the_recipient_of_the_vault_output() {
    let change = Key::from_seed("tunnel-test-change").script_pubkey(KeyKind::P2wpkh);
    let by_bytes = tx(vec![
        (50_000, change.clone()),
        (10_000_000_000, vault()),
        (0, op_return_script(RECIPIENT.as_slice())),
    ]);
    let d = parse_op_return_deposit(&by_bytes, &vault())
        .expect("valid")
        .expect("a deposit");
    assert_eq!(d.recipient, RECIPIENT);
    assert_eq!(d.amount, Amount::from_sat(10_000_000_000));
    assert_eq!(d.outpoint, OutPoint::new(by_bytes.compute_txid(), 1));
    assert_eq!(d.format, DepositFormat::OpReturnAddress);
    assert_eq!(
        op_return_script(RECIPIENT.as_slice()).as_bytes()[..2],
        [0x6a, 0x14]
    );

    // 40 hex digits, upper or lower case.
    for text in [hex::encode(RECIPIENT), hex::encode_upper(RECIPIENT)] {
        let by_hex = tx(vec![
            (0, op_return_script(text.as_bytes())),
            (1_000, vault()),
        ]);
        let d = parse_op_return_deposit(&by_hex, &vault())
            .expect("valid")
            .expect("a deposit");
        assert_eq!(
            (d.recipient, d.format),
            (RECIPIENT, DepositFormat::OpReturnHex)
        );
        assert_eq!(d.outpoint.vout, 1);
    }

    // Not paying the vault: not a deposit at all.
    let other = tx(vec![
        (1_000, change),
        (0, op_return_script(RECIPIENT.as_slice())),
    ]);
    assert_eq!(parse_op_return_deposit(&other, &vault()), Ok(None));
}

#[test]
fn a_malformed_or_ambiguous_op_return_is_refused_by_name() {
    let refused = |outputs: Vec<(u64, ScriptBuf)>| {
        parse_op_return_deposit(&tx(outputs), &vault()).expect_err("refused")
    };
    assert_eq!(refused(vec![(1_000, vault())]), DepositError::NoRecipient);
    assert_eq!(
        refused(vec![
            (1_000, vault()),
            (1_000, vault()),
            (0, op_return_script(RECIPIENT.as_slice()))
        ]),
        DepositError::MultipleVaultOutputs { count: 2 }
    );
    assert_eq!(
        refused(vec![
            (1_000, vault()),
            (0, op_return_script(RECIPIENT.as_slice())),
            (0, op_return_script(RECIPIENT.as_slice())),
        ]),
        DepositError::MultipleOpReturns { count: 2 }
    );
    // 20 bytes after a push opcode that says 40 (Hemi's contract would read it anyway).
    let mut wrong_push = vec![0x6a, 0x28];
    wrong_push.extend_from_slice(RECIPIENT.as_slice());
    assert_eq!(
        refused(vec![
            (1_000, vault()),
            (0, ScriptBuf::from_bytes(wrong_push))
        ]),
        DepositError::PushMismatch {
            push: 0x28,
            data_len: 20
        }
    );
    // PUSHDATA1 for 20 bytes, 19 bytes, 21 bytes: none of the two shapes.
    let mut pushdata1 = vec![0x6a, 0x4c, 0x14];
    pushdata1.extend_from_slice(RECIPIENT.as_slice());
    for script in [
        ScriptBuf::from_bytes(pushdata1),
        op_return_script(&[1; 19]),
        op_return_script(&[1; 21]),
    ] {
        let len = script.len();
        assert_eq!(
            refused(vec![(1_000, vault()), (0, script)]),
            DepositError::MalformedOpReturn { len }
        );
    }
    let mut not_hex = hex::encode(RECIPIENT).into_bytes();
    not_hex[3] = b'g';
    assert!(matches!(
        refused(vec![(1_000, vault()), (0, op_return_script(&not_hex))]),
        DepositError::BadHex(_)
    ));
    assert_eq!(
        refused(vec![(1_000, vault()), (0, op_return_script(&[0; 20]))]),
        DepositError::ZeroRecipient
    );
    assert_eq!(
        DepositError::PushMismatch {
            push: 0x28,
            data_len: 20
        }
        .to_string(),
        "OP_RETURN pushes with opcode 0x28 but carries 20 bytes"
    );
}

fn taproot(reclaim_after: u16) -> TaprootDeposit {
    TaprootDeposit {
        chain_id: 31337,
        recipient: RECIPIENT,
        max_fee: Amount::from_sat(2_000),
        vault_key: Key::from_seed("tunnel-test-vault").x_only(),
        depositor_key: Key::from_seed("tunnel-test-depositor").x_only(),
        reclaim_after,
    }
}

#[test]
fn a_taproot_deposit_commits_to_both_leaves_under_the_nums_key() {
    assert!(XOnlyPublicKey::from_slice(&NUMS_KEY).is_ok());
    let d = taproot(144);
    let info = d.spend_info();
    assert_eq!(info.internal_key(), nums_key());
    assert!(d.script_pubkey().is_p2tr());
    for leaf in [d.deposit_leaf(), d.reclaim_leaf()] {
        let cb = info
            .control_block(&(leaf.clone(), LeafVersion::TapScript))
            .expect("the leaf is in the tree");
        assert!(cb.verify_taproot_commitment(
            secp(),
            info.output_key().to_x_only_public_key(),
            &leaf
        ));
    }
    // Another recipient, chain or timelock is another output.
    let other = TaprootDeposit {
        recipient: Address::new([0x43; 20]),
        ..d
    };
    assert_ne!(other.script_pubkey(), d.script_pubkey());
    assert_ne!(taproot(145).script_pubkey(), d.script_pubkey());

    let pays = tx(vec![(100_000_000, d.script_pubkey())]);
    let found = d.find_in(&pays).expect("one output").expect("found");
    assert_eq!(
        (found.recipient, found.amount, found.format),
        (
            RECIPIENT,
            Amount::from_sat(100_000_000),
            DepositFormat::Taproot
        )
    );
    assert_eq!(other.find_in(&pays), Ok(None));
}

#[test]
fn taproot_leaves_parse_back_strictly() {
    for n in [1u16, 16, 17, 127, 128, 144, 32_767, 32_768, 65_535] {
        let d = taproot(n);
        assert_eq!(
            TaprootDeposit::from_leaves(&d.deposit_leaf(), &d.reclaim_leaf()),
            Ok(d)
        );
    }
    let d = taproot(144);
    // A zero timelock, another version, a non-minimal push of the timelock.
    let zero = Builder::new()
        .push_int(0)
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_x_only_key(&d.depositor_key)
        .push_opcode(OP_CHECKSIG)
        .into_script();
    assert_eq!(
        TaprootDeposit::from_leaves(&d.deposit_leaf(), &zero),
        Err(DepositError::ReclaimLeaf(
            "the timelock is not 1..=65535 blocks"
        ))
    );
    let mut v2 = d.deposit_leaf().to_bytes();
    v2[1] = 2;
    assert_eq!(
        TaprootDeposit::from_leaves(Script::from_bytes(&v2), &d.reclaim_leaf()),
        Err(DepositError::DepositLeaf("unknown version"))
    );
    // 144 is pushed as `02 90 00`; `03 90 00 00` is the same number, not minimal.
    let non_minimal = {
        let mut b = vec![0x03, 0x90, 0x00, 0x00];
        b.extend_from_slice(&d.reclaim_leaf().as_bytes()[3..]);
        b
    };
    assert!(
        TaprootDeposit::from_leaves(&d.deposit_leaf(), Script::from_bytes(&non_minimal)).is_err()
    );
    assert!(TaprootDeposit::from_leaves(&d.reclaim_leaf(), &d.deposit_leaf()).is_err());
    assert!(TaprootDeposit::from_leaves(Script::from_bytes(&[]), &d.reclaim_leaf()).is_err());
}

proptest! {
    #[test]
    fn any_taproot_deposit_round_trips(
        chain_id: u64,
        recipient: [u8; 20],
        fee in 0u64..21_000_000 * 100_000_000,
        n in 1u16..,
    ) {
        prop_assume!(recipient != [0; 20]);
        let d = TaprootDeposit {
            chain_id,
            recipient: Address::new(recipient),
            max_fee: Amount::from_sat(fee),
            reclaim_after: n,
            ..taproot(1)
        };
        prop_assert_eq!(TaprootDeposit::from_leaves(&d.deposit_leaf(), &d.reclaim_leaf()), Ok(d));
    }

    #[test]
    fn no_op_return_script_panics_and_an_accepted_one_re_encodes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok((recipient, format)) = op_return_recipient(Script::from_bytes(&data)) {
            let again = match format {
                DepositFormat::OpReturnAddress => op_return_script(recipient.as_slice()),
                _ => op_return_script(hex::encode(recipient).as_bytes()),
            };
            prop_assert_eq!(again.as_bytes().len(), data.len());
        }
    }
}

#[test]
fn taproot_hint_round_trips_and_finds_its_output() {
    let d = taproot(144);
    let hint = d.hint_script();
    assert_eq!(hint.len(), 77);
    assert_eq!(TaprootDeposit::from_hint(&hint, d.vault_key), Ok(Some(d)));
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![
            bitcoin::TxOut {
                value: Amount::from_sat(50_000),
                script_pubkey: d.script_pubkey(),
            },
            bitcoin::TxOut {
                value: Amount::ZERO,
                script_pubkey: hint.clone(),
            },
        ],
    };
    let (found, deposit) = crate::find_taproot_deposit(&tx, d.vault_key)
        .expect("a well-formed hint")
        .expect("the hint is found");
    assert_eq!(found, d);
    assert_eq!(deposit.outpoint.vout, 0);
    assert_eq!(deposit.format, DepositFormat::Taproot);
    // Another vault: the hint builds another output, which the transaction does not pay.
    let other_vault = taproot(7).depositor_key;
    assert!(matches!(
        crate::find_taproot_deposit(&tx, other_vault),
        Err(DepositError::TaprootOutputMissing { .. })
    ));
    // A truncated hint, or one with a zero timelock, is refused, not ignored.
    let mut short = hint.as_bytes()[..60].to_vec();
    short[1] = 58;
    assert!(matches!(
        TaprootDeposit::from_hint(&ScriptBuf::from_bytes(short), d.vault_key),
        Err(DepositError::BadHint(_))
    ));
    let mut zero = hint.as_bytes().to_vec();
    let n = zero.len();
    zero[n - 2..].copy_from_slice(&[0, 0]);
    assert!(matches!(
        TaprootDeposit::from_hint(&ScriptBuf::from_bytes(zero), d.vault_key),
        Err(DepositError::BadHint(_))
    ));
    // An OP_RETURN that is not tagged is not a hint.
    assert_eq!(
        TaprootDeposit::from_hint(&crate::deposit::op_return_script(&[1; 20]), d.vault_key),
        Ok(None)
    );
}
