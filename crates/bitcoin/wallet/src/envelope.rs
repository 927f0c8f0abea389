//! Data in a taproot script-path envelope: a commit output whose script tree is one tapscript
//! leaf, and the reveal transaction that spends it by that leaf, putting the leaf (and the data
//! in it) in the witness, where it pays a quarter of the fee rate of output bytes.
//!
//! [`Envelope::commit_output`] is paid by an ordinary payment ([`crate::build_payment`]);
//! [`Envelope::reveal`] then spends it. The leaf must be spendable by the key's signature
//! alone followed by data the script never runs, e.g. `<key> OP_CHECKSIG OP_0 OP_IF … OP_ENDIF`.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Keypair, Message};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{self, LeafVersion, TapLeafHash, TaprootBuilder, TaprootSpendInfo};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, Script, ScriptBuf, Transaction, TxIn, TxOut, Txid, Witness};

use crate::sign::fee_for;
use crate::{dust_threshold, secp, verify_transaction, Key, KeyKind, WalletError, RBF_SEQUENCE};

/// A tapscript leaf committed to under `key`'s x-only key (the internal key; `key` can also
/// spend the output by the key path).
#[derive(Debug, Clone)]
pub struct Envelope {
    leaf: ScriptBuf,
    info: TaprootSpendInfo,
}

impl Envelope {
    /// The envelope of `leaf` under `key`.
    ///
    /// # Errors
    /// [`WalletError::Sighash`] (input 0) if the tree cannot be built (it always can for one
    /// leaf).
    pub fn new(key: &Key, leaf: ScriptBuf) -> Result<Envelope, WalletError> {
        let tree_error = |e: &dyn std::fmt::Display| WalletError::Sighash {
            input: 0,
            reason: format!("taproot tree: {e}"),
        };
        let info = TaprootBuilder::new()
            .add_leaf(0, leaf.clone())
            .map_err(|e| tree_error(&e))?
            .finalize(secp(), key.x_only())
            .map_err(|_| tree_error(&"incomplete"))?;
        Ok(Envelope { leaf, info })
    }

    /// The leaf.
    pub fn leaf(&self) -> &Script {
        &self.leaf
    }

    /// The P2TR output script that commits to the leaf.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.info.output_key())
    }

    fn control_block(&self) -> Result<taproot::ControlBlock, WalletError> {
        self.info
            .control_block(&(self.leaf.clone(), LeafVersion::TapScript))
            .ok_or_else(|| WalletError::Sighash {
                input: 0,
                reason: "the leaf is not in its own tree".into(),
            })
    }

    /// The script-path witness: `signature`, the leaf, its control block.
    fn witness(&self, signature: &[u8]) -> Result<Witness, WalletError> {
        Ok(Witness::from_slice(&[
            signature,
            self.leaf.as_bytes(),
            &self.control_block()?.serialize(),
        ]))
    }

    /// A reveal spending `outpoint` by the leaf with `signature` (64 bytes), paying `pay` to
    /// `key`'s `kind` address.
    fn reveal_tx(
        &self,
        key: &Key,
        kind: KeyKind,
        outpoint: OutPoint,
        pay: Amount,
        signature: &[u8],
    ) -> Result<Transaction, WalletError> {
        Ok(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint,
                script_sig: ScriptBuf::new(),
                sequence: RBF_SEQUENCE,
                witness: self.witness(signature)?,
            }],
            output: vec![TxOut {
                value: pay,
                script_pubkey: key.script_pubkey(kind),
            }],
        })
    }

    /// The reveal spending `commit` (this envelope's output) by the leaf, paying `pay` to
    /// `key`'s `kind` address; signed (BIP-341 `SIGHASH_DEFAULT`, script path) and checked.
    fn build_reveal(
        &self,
        key: &Key,
        kind: KeyKind,
        commit: (OutPoint, TxOut),
        pay: Amount,
    ) -> Result<Transaction, WalletError> {
        // The signature commits to no witness: sign the reveal with a placeholder in place.
        let mut tx = self.reveal_tx(key, kind, commit.0, pay, &[0u8; 64])?;
        let prevouts = [commit.1];
        let sighash = SighashCache::new(&tx)
            .taproot_script_spend_signature_hash(
                0,
                &Prevouts::All(&prevouts),
                TapLeafHash::from_script(&self.leaf, LeafVersion::TapScript),
                TapSighashType::Default,
            )
            .map_err(|e| WalletError::Sighash {
                input: 0,
                reason: e.to_string(),
            })?;
        let keypair = Keypair::from_secret_key(secp(), key.secret_key());
        let signature =
            secp().sign_schnorr(&Message::from_digest(sighash.to_byte_array()), &keypair);
        let signature = taproot::Signature {
            signature,
            sighash_type: TapSighashType::Default,
        };
        tx.input[0].witness = self.witness(&signature.to_vec())?;
        verify_transaction(&tx, &prevouts)?;
        Ok(tx)
    }

    /// The commit output: enough for the reveal's fee at `feerate_sat_vb` plus a non-dust
    /// output back to `key`'s `kind` address.
    ///
    /// # Errors
    /// [`WalletError::InvalidFeeRate`].
    pub fn commit_output(
        &self,
        key: &Key,
        kind: KeyKind,
        feerate_sat_vb: f64,
    ) -> Result<TxOut, WalletError> {
        let fee = self.reveal_fee(key, kind, feerate_sat_vb)?;
        let back = dust_threshold(&key.script_pubkey(kind));
        Ok(TxOut {
            value: fee.checked_add(back).ok_or(WalletError::AmountOverflow)?,
            script_pubkey: self.script_pubkey(),
        })
    }

    /// The reveal's fee at `feerate_sat_vb`.
    ///
    /// # Errors
    /// [`WalletError::InvalidFeeRate`].
    pub fn reveal_fee(
        &self,
        key: &Key,
        kind: KeyKind,
        feerate_sat_vb: f64,
    ) -> Result<Amount, WalletError> {
        if !feerate_sat_vb.is_finite() || feerate_sat_vb < 0.0 {
            return Err(WalletError::InvalidFeeRate(feerate_sat_vb));
        }
        // A trial reveal: its real signature is 64 bytes too, so the size holds.
        let trial = self.reveal_tx(key, kind, OutPoint::null(), Amount::ZERO, &[0u8; 64])?;
        fee_for(&trial, feerate_sat_vb)
    }

    /// The signed reveal of output `vout` of `commit` (which must pay this envelope's script):
    /// one input, by the leaf; one output to `key`'s `kind` address with the commit's value less
    /// the fee at `feerate_sat_vb`. Checked by [`verify_transaction`] before it is returned.
    ///
    /// # Errors
    /// [`WalletError::InputOutOfRange`] for a `vout` past the commit's outputs,
    /// [`WalletError::KeyMismatch`] if that output is not this envelope's,
    /// [`WalletError::InsufficientFunds`] if it does not cover the fee and a non-dust output,
    /// [`WalletError::InvalidFeeRate`], and [`WalletError::SelfCheck`] (a bug).
    pub fn reveal(
        &self,
        key: &Key,
        kind: KeyKind,
        commit: &Transaction,
        vout: u32,
        feerate_sat_vb: f64,
    ) -> Result<Transaction, WalletError> {
        let out = commit
            .output
            .get(vout as usize)
            .ok_or(WalletError::InputOutOfRange {
                index: vout as usize,
                inputs: commit.output.len(),
            })?;
        if out.script_pubkey != self.script_pubkey() {
            return Err(WalletError::KeyMismatch {
                input: 0,
                script: out.script_pubkey.to_hex_string(),
            });
        }
        let fee = self.reveal_fee(key, kind, feerate_sat_vb)?;
        let back = dust_threshold(&key.script_pubkey(kind));
        let needed = fee.checked_add(back).ok_or(WalletError::AmountOverflow)?;
        let pay = out.value.checked_sub(fee).filter(|p| *p >= back).ok_or(
            WalletError::InsufficientFunds {
                needed,
                available: out.value,
            },
        )?;
        let txid: Txid = commit.compute_txid();
        self.build_reveal(key, kind, (OutPoint { txid, vout }, out.clone()), pay)
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::blockdata::opcodes::all::{OP_CHECKSIG, OP_ENDIF, OP_IF, OP_PUSHBYTES_0};
    use bitcoin::script::{Builder, PushBytesBuf};

    use super::*;
    use crate::{build_payment, ScriptFailure};

    fn envelope_leaf(key: &Key, data: &[u8]) -> ScriptBuf {
        let mut b = Builder::new()
            .push_x_only_key(&key.x_only())
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_IF);
        for chunk in data.chunks(520) {
            let mut p = PushBytesBuf::new();
            p.extend_from_slice(chunk).expect("520 bytes");
            b = b.push_slice(p);
        }
        b.push_opcode(OP_ENDIF).into_script()
    }

    fn funding(key: &Key, kind: KeyKind) -> Vec<(OutPoint, TxOut)> {
        vec![(
            OutPoint {
                txid: Txid::all_zeros(),
                vout: 3,
            },
            TxOut {
                value: Amount::from_sat(100_000),
                script_pubkey: key.script_pubkey(kind),
            },
        )]
    }

    #[test]
    fn commit_and_reveal_carry_the_data_and_pass_the_script_check() {
        for kind in [KeyKind::P2wpkh, KeyKind::P2tr] {
            let key = Key::from_seed("envelope");
            for len in [1usize, 520, 521, 40_000] {
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let env = Envelope::new(&key, envelope_leaf(&key, &data)).expect("envelope");
                let commit_out = env.commit_output(&key, kind, 2.0).expect("output");
                let commit = build_payment(&key, kind, &funding(&key, kind), vec![commit_out], 2.0)
                    .expect("commit");
                let reveal = env.reveal(&key, kind, &commit, 0, 2.0).expect("reveal");
                assert_eq!(
                    reveal.input[0]
                        .witness
                        .taproot_leaf_script()
                        .map(|l| l.script),
                    Some(env.leaf())
                );
                // The fee is what the rate asks, and the rest comes back, not dust.
                let fee = commit.output[0].value - reveal.output[0].value;
                assert_eq!(fee, Amount::from_sat(2 * reveal.vsize() as u64));
                assert_eq!(
                    reveal.output[0].value,
                    dust_threshold(&key.script_pubkey(kind))
                );
                // Witness bytes are discounted: the reveal is far below the data's size.
                if len == 40_000 {
                    assert!(reveal.vsize() < 10_300, "{}", reveal.vsize());
                }
            }
        }
    }

    #[test]
    fn a_reveal_of_another_output_or_underfunded_is_refused() {
        let key = Key::from_seed("envelope");
        let kind = KeyKind::P2wpkh;
        let env = Envelope::new(&key, envelope_leaf(&key, b"data")).expect("envelope");
        let other = Envelope::new(&key, envelope_leaf(&key, b"other")).expect("envelope");
        let commit_out = env.commit_output(&key, kind, 2.0).expect("output");
        let commit = build_payment(
            &key,
            kind,
            &funding(&key, kind),
            vec![commit_out.clone()],
            2.0,
        )
        .expect("commit");
        assert!(matches!(
            other.reveal(&key, kind, &commit, 0, 2.0),
            Err(WalletError::KeyMismatch { .. })
        ));
        assert!(matches!(
            env.reveal(&key, kind, &commit, 7, 2.0),
            Err(WalletError::InputOutOfRange { .. })
        ));
        assert!(matches!(
            env.reveal(&key, kind, &commit, 0, 50.0),
            Err(WalletError::InsufficientFunds { .. })
        ));
    }

    #[test]
    fn conditionals_in_tapscript_follow_core() {
        let key = Key::from_seed("envelope");
        let kind = KeyKind::P2wpkh;
        // The signature check runs; the envelope's branch does not (so its pushes need not be
        // minimal and it may hold opcodes that would fail if run, e.g. OP_VERIFY on nothing).
        let run = |leaf: ScriptBuf| {
            let env = Envelope::new(&key, leaf).expect("envelope");
            let commit_out = env.commit_output(&key, kind, 1.0).expect("output");
            let commit = build_payment(&key, kind, &funding(&key, kind), vec![commit_out], 1.0)
                .expect("commit");
            env.reveal(&key, kind, &commit, 0, 1.0).map(|_| ())
        };
        let base = || {
            Builder::new()
                .push_x_only_key(&key.x_only())
                .push_opcode(OP_CHECKSIG)
        };
        let skipped_verify = base()
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_IF)
            .push_opcode(bitcoin::opcodes::all::OP_VERIFY)
            .push_opcode(OP_ENDIF)
            .into_script();
        assert!(run(skipped_verify).is_ok());
        // OP_ELSE runs the other branch: here an OP_VERIFY of the signature's 1, then 1 again.
        let else_branch = base()
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_IF)
            .push_opcode(bitcoin::opcodes::all::OP_DROP)
            .push_opcode(bitcoin::opcodes::all::OP_ELSE)
            .push_opcode(bitcoin::opcodes::all::OP_VERIFY)
            .push_int(1)
            .push_opcode(OP_ENDIF)
            .into_script();
        assert!(run(else_branch).is_ok());
        // An opcode this checker does not run, even in a skipped branch: refused, never guessed.
        let unknown = base()
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_IF)
            .push_opcode(bitcoin::opcodes::all::OP_RETURN)
            .push_opcode(OP_ENDIF)
            .into_script();
        assert!(matches!(
            run(unknown),
            Err(WalletError::SelfCheck(crate::ScriptError::Unsupported(_)))
        ));
        let fails = |leaf: ScriptBuf| match run(leaf) {
            Err(WalletError::SelfCheck(e)) => e.failure(),
            other => panic!("{other:?}"),
        };
        // Unclosed and unopened conditionals; a non-minimal OP_IF argument.
        let unclosed = base()
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_IF)
            .into_script();
        assert_eq!(fails(unclosed), Some(ScriptFailure::UnbalancedConditional));
        let unopened = base().push_opcode(OP_ENDIF).into_script();
        assert_eq!(fails(unopened), Some(ScriptFailure::UnbalancedConditional));
        let non_minimal = base()
            .push_int(2)
            .push_opcode(OP_IF)
            .push_opcode(OP_ENDIF)
            .into_script();
        assert_eq!(fails(non_minimal), Some(ScriptFailure::TapscriptMinimalIf));
        // OP_IF with nothing to read: Core's UNBALANCED_CONDITIONAL, not a stack error.
        let nothing = base()
            .push_opcode(bitcoin::opcodes::all::OP_VERIFY)
            .push_opcode(OP_IF)
            .push_opcode(OP_ENDIF)
            .push_int(1)
            .into_script();
        assert_eq!(fails(nothing), Some(ScriptFailure::UnbalancedConditional));
        // More than 1,000 stack items (a push in a loop-free leaf): Core's STACK_SIZE.
        let mut deep = base();
        for _ in 0..1_000 {
            deep = deep.push_int(1);
        }
        assert_eq!(fails(deep.into_script()), Some(ScriptFailure::StackSize));
    }
}
