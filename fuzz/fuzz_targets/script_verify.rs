//! The script checker the mempool runs on every input: `verify_input` and `verify_transaction`
//! on an arbitrary transaction and arbitrary spent outputs must never panic, and must agree
//! (the transaction passes exactly when each of its inputs does).
//!
//! Input: one control byte, a consensus-encoded transaction, then for each input a prevout
//! description: a kind byte (the script type), eight value bytes and whatever bytes the kind
//! needs (missing bytes read as zero). Some kinds commit to the input's own witness or
//! scriptSig (the P2WPKH/P2PKH hash of its last element, the P2WSH hash of its witness script),
//! so the checker gets past the hash match and into signature and multisig evaluation. The
//! control byte sometimes gives one prevout too few or too many.
#![no_main]

use bitcoin::consensus::Decodable;
use bitcoin::hashes::{hash160, sha256, Hash};
use bitcoin::script::Instruction;
use bitcoin::{Amount, ScriptBuf, Transaction, TxIn, TxOut};
use hemi_btc_wallet::{verify_input, verify_transaction, ScriptError};
use libfuzzer_sys::fuzz_target;

/// x coordinate of the secp256k1 generator: a valid x-only key for P2TR outputs.
const G_X: [u8; 32] = [
    0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b, 0x07,
    0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17, 0x98,
];

/// Reads bytes off the front, zero-padded when the input runs out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn byte(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn vec(&mut self, len: usize) -> Vec<u8> {
        let n = len.min(self.0.len());
        let out = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        out
    }
}

fn last_script_sig_push(input: &TxIn) -> Vec<u8> {
    match input.script_sig.instructions().last() {
        Some(Ok(Instruction::PushBytes(b))) => b.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn prevout(r: &mut Reader<'_>, input: Option<&TxIn>) -> TxOut {
    let kind = r.byte();
    let value = Amount::from_sat(u64::from_le_bytes(r.take::<8>()));
    let last_witness = input
        .and_then(|i| i.witness.last())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let mut s = Vec::with_capacity(40);
    match kind % 12 {
        0 => {
            s.extend_from_slice(&[0x00, 0x14]);
            s.extend_from_slice(&r.take::<20>());
        }
        1 => {
            s.extend_from_slice(&[0x51, 0x20]);
            s.extend_from_slice(&r.take::<32>());
        }
        2 => {
            s.extend_from_slice(&[0x00, 0x20]);
            s.extend_from_slice(&r.take::<32>());
        }
        // P2WSH of the input's witness script.
        3 => {
            s.extend_from_slice(&[0x00, 0x20]);
            s.extend_from_slice(sha256::Hash::hash(&last_witness).as_byte_array());
        }
        // P2WPKH of the input's witness pubkey.
        4 => {
            s.extend_from_slice(&[0x00, 0x14]);
            s.extend_from_slice(hash160::Hash::hash(&last_witness).as_byte_array());
        }
        // P2PKH of the input's scriptSig pubkey.
        5 => {
            let push = input.map(last_script_sig_push).unwrap_or_default();
            s.extend_from_slice(&[0x76, 0xa9, 0x14]);
            s.extend_from_slice(hash160::Hash::hash(&push).as_byte_array());
            s.extend_from_slice(&[0x88, 0xac]);
        }
        // Pay-to-anchor.
        6 => s.extend_from_slice(&[0x51, 0x02, 0x4e, 0x73]),
        // Witness v1..v16 program of any length 2..=40 (upgradable / non-standard).
        7 => {
            let version = r.byte() % 16;
            let len = 2 + usize::from(r.byte() % 39);
            s.push(0x51 + version);
            s.push(len as u8);
            s.extend_from_slice(&r.vec(len));
        }
        // P2SH.
        8 => {
            s.extend_from_slice(&[0xa9, 0x14]);
            s.extend_from_slice(&r.take::<20>());
            s.push(0x87);
        }
        // P2TR with a valid key (the generator), to reach Schnorr verification.
        9 => {
            s.extend_from_slice(&[0x51, 0x20]);
            s.extend_from_slice(&G_X);
        }
        // P2PKH of arbitrary bytes.
        10 => {
            s.extend_from_slice(&[0x76, 0xa9, 0x14]);
            s.extend_from_slice(&r.take::<20>());
            s.extend_from_slice(&[0x88, 0xac]);
        }
        // Raw script bytes.
        _ => {
            let len = usize::from(r.byte());
            s.extend_from_slice(&r.vec(len));
        }
    }
    TxOut {
        value,
        script_pubkey: ScriptBuf::from_bytes(s),
    }
}

fn exercise(e: &ScriptError) {
    let _ = e.to_string();
    let _ = e.input();
    let _ = e.failure().map(|f| f.to_string());
    let _ = e.is_consensus_failure();
    let _ = e.block_reason();
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let Ok(tx) = Transaction::consensus_decode(&mut rest) else {
        return;
    };
    let n = tx.input.len();
    let count = match control % 8 {
        6 => n.saturating_sub(1),
        7 => n + 1,
        _ => n,
    };
    let mut r = Reader(rest);
    let prevouts: Vec<TxOut> = (0..count)
        .map(|i| prevout(&mut r, tx.input.get(i)))
        .collect();

    let whole = verify_transaction(&tx, &prevouts);
    if let Err(e) = &whole {
        exercise(e);
    }
    // One call past the last input too.
    let each: Vec<_> = (0..=n).map(|i| verify_input(&tx, i, &prevouts)).collect();
    for (index, one) in each.iter().enumerate() {
        if let Err(e) = one {
            exercise(e);
        }
        if count != n {
            assert!(
                matches!(one, Err(ScriptError::PrevoutCount { .. })),
                "wrong prevout count not reported: {one:?}"
            );
        } else if index == n {
            assert!(
                matches!(one, Err(ScriptError::InputOutOfRange { .. })),
                "out-of-range index not reported: {one:?}"
            );
        } else if let Err(e) = &whole {
            if e.input() == Some(index) {
                assert!(
                    one.is_err(),
                    "verify_transaction fails input {index} ({e}) but verify_input passes it"
                );
            }
        }
    }
    if count == n {
        let each_ok = each[..n].iter().all(Result::is_ok);
        assert_eq!(
            whole.is_ok(),
            each_ok,
            "verify_transaction says {whole:?} but verify_input on each input says {each_ok}"
        );
    }
});
