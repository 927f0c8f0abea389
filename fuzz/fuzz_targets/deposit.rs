//! Deposits: `parse_op_return_deposit` on any transaction and `op_return_recipient` on any
//! script never panic, and an accepted recipient re-encodes to a script of the same shape;
//! `TaprootDeposit::from_leaves` on any two scripts never panics, and whatever it accepts
//! builds exactly those leaves again; `TaprootDeposit::from_hint` on any script never panics,
//! and an accepted hint re-encodes to the same bytes.
#![no_main]

use bitcoin::consensus::deserialize;
use bitcoin::{Script, Transaction};
use hemi_tunnel::deposit::{op_return_recipient, op_return_script};
use hemi_tunnel::{parse_op_return_deposit, DepositFormat, TaprootDeposit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((recipient, format)) = op_return_recipient(Script::from_bytes(data)) {
        let again = match format {
            DepositFormat::OpReturnAddress => op_return_script(recipient.as_slice()),
            _ => op_return_script(alloy_primitives::hex::encode(recipient).as_bytes()),
        };
        assert_eq!(again.len(), data.len());
    }
    if let Ok(tx) = deserialize::<Transaction>(data) {
        for out in &tx.output {
            let _ = parse_op_return_deposit(&tx, &out.script_pubkey);
        }
    }
    let vault = hemi_tunnel::NUMS_KEY;
    if let Ok(key) = bitcoin::XOnlyPublicKey::from_slice(&vault) {
        if let Ok(Some(d)) = TaprootDeposit::from_hint(Script::from_bytes(data), key) {
            assert_eq!(d.hint_script().as_bytes(), data);
        }
        if let Ok(tx) = deserialize::<Transaction>(data) {
            let _ = hemi_tunnel::find_taproot_deposit(&tx, key);
        }
    }
    let (a, b) = data.split_at(data.len() / 2);
    if let Ok(d) = TaprootDeposit::from_leaves(Script::from_bytes(a), Script::from_bytes(b)) {
        assert_eq!(d.deposit_leaf().as_bytes(), a);
        assert_eq!(d.reclaim_leaf().as_bytes(), b);
    }
});
