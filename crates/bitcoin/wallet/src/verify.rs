//! Script checking: [`verify_input`] and [`verify_transaction`].
//!
//! This follows Bitcoin Core's mempool (`AcceptToMemoryPool`) for the script types hemi-rs
//! uses, in Core's order: scriptSig standardness (`IsStandardTx`), witness standardness
//! (`IsWitnessStandard`), then the script interpreter with the standard flags. Core reports the
//! *first* failure with standard flags; a failure is [`ScriptError::Consensus`] when the spend is
//! also invalid with consensus flags only, else [`ScriptError::Policy`]. To know both at once the
//! checker runs the consensus rules to the end and remembers the first policy-only failure on
//! the way (where a standard-flags run would have stopped): see [`Eval`].
//!
//! Taproot script paths run when their leaf uses only the opcodes the tunnel's leaves and the
//! forced-inclusion envelope need (pushes, `OP_IF`/`OP_NOTIF`/`OP_ELSE`/`OP_ENDIF`, `OP_DROP`,
//! `OP_VERIFY`, `OP_CHECKSIG(VERIFY)`, `OP_CHECKSIGADD`, `OP_NUMEQUAL(VERIFY)`,
//! `OP_CHECKSEQUENCEVERIFY`). Anything else — P2SH, P2PK, bare multisig,
//! other tapscripts, P2WSH scripts other than `OP_m <keys> OP_n OP_CHECKMULTISIG` — is
//! [`ScriptError::Unsupported`], never guessed.

use bitcoin::blockdata::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_DUP, OP_EQUALVERIFY, OP_HASH160,
};
use bitcoin::blockdata::script::{Builder, Instruction};
use bitcoin::hashes::{hash160, sha256, Hash};
use bitcoin::secp256k1::{ecdsa, schnorr, Message, PublicKey, XOnlyPublicKey};
use bitcoin::sighash::{Annex, EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    Amount, Script, ScriptBuf, SegwitV0Sighash, Transaction, TxOut, Witness, WitnessVersion,
};

use crate::{secp, ScriptError, ScriptFailure};

/// Core's `MAX_SCRIPT_ELEMENT_SIZE`.
const MAX_SCRIPT_ELEMENT_SIZE: usize = 520;
/// Core's `MAX_STACK_SIZE` (stack plus altstack).
const MAX_STACK_SIZE: usize = 1000;
/// Core's `MAX_STANDARD_SCRIPTSIG_SIZE`.
const MAX_STANDARD_SCRIPTSIG_SIZE: usize = 1650;
/// Core's `MAX_STANDARD_P2WSH_SCRIPT_SIZE`.
const MAX_STANDARD_P2WSH_SCRIPT_SIZE: usize = 3600;
/// Core's `MAX_STANDARD_P2WSH_STACK_ITEMS`.
const MAX_STANDARD_P2WSH_STACK_ITEMS: usize = 100;
/// Core's `MAX_STANDARD_P2WSH_STACK_ITEM_SIZE`, also `MAX_STANDARD_TAPSCRIPT_STACK_ITEM_SIZE`.
const MAX_STANDARD_STACK_ITEM_SIZE: usize = 80;
/// BIP341 annex tag.
const ANNEX_TAG: u8 = 0x50;
/// BIP342 tapscript leaf version.
const TAPSCRIPT_LEAF: u8 = 0xc0;
/// Pay-to-anchor output script (`OP_1 <0x4e73>`).
const P2A: [u8; 4] = [0x51, 0x02, 0x4e, 0x73];
const OP_0: u8 = 0x00;
const OP_PUSHDATA1: u8 = 0x4c;
const OP_PUSHDATA2: u8 = 0x4d;
const OP_1NEGATE: u8 = 0x4f;
const OP_RESERVED: u8 = 0x50;
const OP_1: u8 = 0x51;
const OP_16: u8 = 0x60;

/// Checks the scripts of input `index` of `tx` against the output it spends, `prevouts[index]`
/// (all of `prevouts` are needed: taproot signatures commit to every input's prevout).
///
/// Supported: P2WPKH, P2TR key path (BIP340/341, `SIGHASH_DEFAULT` and explicit hash types),
/// P2WSH `OP_m <keys> OP_n OP_CHECKMULTISIG` (signatures in key order, empty NULLDUMMY
/// element), legacy P2PKH, plus pay-to-anchor and upgradable witness versions (which Core's
/// policy rejects). Never panics on malformed input.
///
/// # Errors
/// [`ScriptError::PrevoutCount`], [`ScriptError::InputOutOfRange`];
/// [`ScriptError::NonStandard`] (`scriptsig-size`, `scriptsig-not-pushonly`,
/// `bad-witness-nonstandard`); [`ScriptError::Consensus`] / [`ScriptError::Policy`] with Core's
/// script error; [`ScriptError::Unsupported`] for script types not listed above.
pub fn verify_input(tx: &Transaction, index: usize, prevouts: &[TxOut]) -> Result<(), ScriptError> {
    check_call(tx, prevouts)?;
    if index >= tx.input.len() {
        return Err(ScriptError::InputOutOfRange {
            index,
            inputs: tx.input.len(),
        });
    }
    let mut checker = Checker::new(tx, prevouts);
    checker.script_sig_standard(index)?;
    checker.witness_standard(index)?;
    checker.verify(index)
}

/// Checks every input of `tx` as [`verify_input`] does, in Core's order: all scriptSigs'
/// standardness, then all witnesses' standardness, then each input's scripts; returns the first
/// failure. Not for coinbase transactions (they spend nothing).
///
/// # Errors
/// As [`verify_input`]; [`ScriptError::input`] names the failing input.
pub fn verify_transaction(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), ScriptError> {
    check_call(tx, prevouts)?;
    let mut checker = Checker::new(tx, prevouts);
    for index in 0..tx.input.len() {
        checker.script_sig_standard(index)?;
    }
    for index in 0..tx.input.len() {
        checker.witness_standard(index)?;
    }
    for index in 0..tx.input.len() {
        checker.verify(index)?;
    }
    Ok(())
}

fn check_call(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), ScriptError> {
    if prevouts.len() != tx.input.len() {
        return Err(ScriptError::PrevoutCount {
            prevouts: prevouts.len(),
            inputs: tx.input.len(),
        });
    }
    Ok(())
}

/// One script evaluation with Core's standard flags, tracked together with the consensus-only
/// outcome: `policy` is the first policy-only failure (where a standard-flags run stops), and
/// evaluation goes on under consensus rules to learn whether the spend is valid at all.
#[derive(Default)]
struct Eval {
    policy: Option<ScriptFailure>,
}

impl Eval {
    fn policy(&mut self, failure: ScriptFailure) {
        self.policy.get_or_insert(failure);
    }

    /// A consensus failure: Core reports the first failure of the standard-flags run.
    fn fail(&self, input: usize, failure: ScriptFailure) -> ScriptError {
        ScriptError::Consensus {
            input,
            reason: self.policy.unwrap_or(failure),
        }
    }

    fn finish(&self, input: usize) -> Result<(), ScriptError> {
        match self.policy {
            Some(reason) => Err(ScriptError::Policy { input, reason }),
            None => Ok(()),
        }
    }
}

/// Why script evaluation stopped.
enum Stop {
    Fail(ScriptFailure),
    Unsupported(String),
}

impl From<ScriptFailure> for Stop {
    fn from(failure: ScriptFailure) -> Self {
        Stop::Fail(failure)
    }
}

/// Core's `SigVersion` for ECDSA checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SigVersion {
    Base,
    WitnessV0,
}

/// A parsed `OP_m <key_1> .. <key_n> OP_n OP_CHECKMULTISIG` witness script.
struct MultisigScript<'s> {
    threshold: usize,
    keys: Vec<&'s [u8]>,
}

struct Checker<'a> {
    tx: &'a Transaction,
    prevouts: &'a [TxOut],
    cache: SighashCache<&'a Transaction>,
}

impl<'a> Checker<'a> {
    fn new(tx: &'a Transaction, prevouts: &'a [TxOut]) -> Self {
        Checker {
            tx,
            prevouts,
            cache: SighashCache::new(tx),
        }
    }

    /// `IsStandardTx`'s per-input rules.
    fn script_sig_standard(&self, index: usize) -> Result<(), ScriptError> {
        let script_sig = &self.tx.input[index].script_sig;
        if script_sig.len() > MAX_STANDARD_SCRIPTSIG_SIZE {
            return Err(ScriptError::NonStandard {
                input: index,
                reason: "scriptsig-size",
            });
        }
        if !is_push_only(script_sig) {
            return Err(ScriptError::NonStandard {
                input: index,
                reason: "scriptsig-not-pushonly",
            });
        }
        Ok(())
    }

    /// `IsWitnessStandard` for one input.
    fn witness_standard(&self, index: usize) -> Result<(), ScriptError> {
        let witness = &self.tx.input[index].witness;
        if witness.is_empty() {
            return Ok(());
        }
        let nonstandard = Err(ScriptError::NonStandard {
            input: index,
            reason: "bad-witness-nonstandard",
        });
        let script = self.prevouts[index].script_pubkey.as_script();
        if script.as_bytes() == P2A {
            return nonstandard; // witness stuffing
        }
        if script.is_p2sh() {
            return Ok(()); // P2SH-wrapped segwit is unsupported; `verify` says so.
        }
        let Some(version) = script.witness_version() else {
            return nonstandard; // a witness on a non-witness output
        };
        let program = &script.as_bytes()[2..];
        let stack: Vec<&[u8]> = witness.iter().collect();
        match (version, program.len()) {
            (WitnessVersion::V0, 32) => {
                let Some((witness_script, items)) = stack.split_last() else {
                    return Ok(());
                };
                if witness_script.len() > MAX_STANDARD_P2WSH_SCRIPT_SIZE
                    || items.len() > MAX_STANDARD_P2WSH_STACK_ITEMS
                    || items
                        .iter()
                        .any(|item| item.len() > MAX_STANDARD_STACK_ITEM_SIZE)
                {
                    return nonstandard;
                }
            }
            (WitnessVersion::V1, 32) => {
                if stack.len() >= 2 && stack.last().and_then(|a| a.first()) == Some(&ANNEX_TAG) {
                    return nonstandard; // annexes have no meaning yet
                }
                if let [items @ .., _script, control_block] = stack.as_slice() {
                    let Some(leaf) = control_block.first() else {
                        return nonstandard;
                    };
                    if leaf & 0xfe == TAPSCRIPT_LEAF
                        && items
                            .iter()
                            .any(|item| item.len() > MAX_STANDARD_STACK_ITEM_SIZE)
                    {
                        return nonstandard;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The script check proper (Core's `VerifyScript` with standard flags).
    fn verify(&mut self, index: usize) -> Result<(), ScriptError> {
        let (tx, prevouts) = (self.tx, self.prevouts);
        let input = &tx.input[index];
        let script = prevouts[index].script_pubkey.as_script();
        let mut eval = Eval::default();
        let outcome = if let Some(version) = script.witness_version() {
            let program = &script.as_bytes()[2..];
            self.witness_spend(
                &mut eval,
                index,
                version,
                program,
                &input.script_sig,
                &input.witness,
            )
        } else if script.is_p2pkh() {
            self.p2pkh(&mut eval, index, script, &input.script_sig, &input.witness)
        } else {
            Err(Stop::Unsupported(describe(script)))
        };
        match outcome {
            Ok(()) => eval.finish(index),
            Err(Stop::Fail(failure)) => Err(eval.fail(index, failure)),
            Err(Stop::Unsupported(what)) => {
                Err(ScriptError::Unsupported(format!("input {index}: {what}")))
            }
        }
    }

    /// A spend of a witness output: Core's `VerifyScript` runs the scriptSig and the output
    /// script (`OP_n <program>`) first, then demands an empty scriptSig.
    fn witness_spend(
        &mut self,
        eval: &mut Eval,
        index: usize,
        version: WitnessVersion,
        program: &[u8],
        script_sig: &Script,
        witness: &Witness,
    ) -> Result<(), Stop> {
        if !script_sig.is_empty() && eval_pushes(eval, script_sig)?.len() + 2 > MAX_STACK_SIZE {
            return Err(ScriptFailure::StackSize.into());
        }
        if !cast_to_bool(program) {
            return Err(ScriptFailure::EvalFalse.into());
        }
        if !script_sig.is_empty() {
            return Err(ScriptFailure::WitnessMalleated.into());
        }
        self.witness_program(eval, index, version, program, witness)
    }

    /// Core's `VerifyWitnessProgram` (not P2SH-wrapped).
    fn witness_program(
        &mut self,
        eval: &mut Eval,
        index: usize,
        version: WitnessVersion,
        program: &[u8],
        witness: &Witness,
    ) -> Result<(), Stop> {
        let stack: Vec<&[u8]> = witness.iter().collect();
        match (version, program.len()) {
            (WitnessVersion::V0, 20) => self.p2wpkh(eval, index, program, &stack),
            (WitnessVersion::V0, 32) => self.p2wsh(eval, index, program, &stack),
            (WitnessVersion::V0, _) => Err(ScriptFailure::WitnessProgramWrongLength.into()),
            (WitnessVersion::V1, 32) => self.taproot(index, program, &stack),
            // Pay-to-anchor: anyone can spend (its witness must be empty by policy, checked before).
            (WitnessVersion::V1, 2) if program == &P2A[2..] => Ok(()),
            // Valid by consensus (reserved for soft forks), rejected by policy.
            _ => {
                eval.policy(ScriptFailure::DiscourageUpgradableWitnessProgram);
                Ok(())
            }
        }
    }

    /// P2WPKH: exactly `[sig, pubkey]`, run as `DUP HASH160 <program> EQUALVERIFY CHECKSIG`.
    fn p2wpkh(
        &mut self,
        eval: &mut Eval,
        index: usize,
        program: &[u8],
        stack: &[&[u8]],
    ) -> Result<(), Stop> {
        let [sig, pubkey] = stack else {
            return Err(ScriptFailure::WitnessProgramMismatch.into());
        };
        if stack
            .iter()
            .any(|item| item.len() > MAX_SCRIPT_ELEMENT_SIZE)
        {
            return Err(ScriptFailure::PushSize.into());
        }
        if hash160::Hash::hash(pubkey).as_byte_array() != program {
            return Err(ScriptFailure::EqualVerify.into());
        }
        let script_code = pkh_script(program);
        let ok = self.checksig(
            eval,
            index,
            sig,
            pubkey,
            &script_code,
            SigVersion::WitnessV0,
        )?;
        if !ok {
            return Err(ScriptFailure::EvalFalse.into());
        }
        Ok(())
    }

    /// P2WSH: `[items.., witness_script]`, the script `OP_m <keys> OP_n OP_CHECKMULTISIG`.
    fn p2wsh(
        &mut self,
        eval: &mut Eval,
        index: usize,
        program: &[u8],
        stack: &[&[u8]],
    ) -> Result<(), Stop> {
        let Some((script_bytes, items)) = stack.split_last() else {
            return Err(ScriptFailure::WitnessProgramWitnessEmpty.into());
        };
        if sha256::Hash::hash(script_bytes).as_byte_array() != program {
            return Err(ScriptFailure::WitnessProgramMismatch.into());
        }
        let script = Script::from_bytes(script_bytes);
        let Some(multisig) = parse_multisig(script) else {
            return Err(Stop::Unsupported(format!(
                "P2WSH witness script {} is not OP_m <pubkeys> OP_n OP_CHECKMULTISIG",
                script.to_hex_string()
            )));
        };
        if items
            .iter()
            .any(|item| item.len() > MAX_SCRIPT_ELEMENT_SIZE)
        {
            return Err(ScriptFailure::PushSize.into());
        }
        // The script pushes m, the keys and n before OP_CHECKMULTISIG pops them.
        if items.len() + multisig.keys.len() + 2 > MAX_STACK_SIZE {
            return Err(ScriptFailure::StackSize.into());
        }
        self.checkmultisig(eval, index, items, &multisig, script)
    }

    /// Core's `OP_CHECKMULTISIG` on `items` (bottom first) followed by the script's pushes,
    /// then the witness script's implicit clean-stack and true-result checks.
    fn checkmultisig(
        &mut self,
        eval: &mut Eval,
        index: usize,
        items: &[&[u8]],
        multisig: &MultisigScript<'_>,
        script_code: &Script,
    ) -> Result<(), Stop> {
        let (threshold, keys) = (multisig.threshold, &multisig.keys);
        if threshold > keys.len() {
            return Err(ScriptFailure::SigCount.into());
        }
        // m signatures and the dummy element below them.
        let Some(dummy_at) = items.len().checked_sub(threshold + 1) else {
            return Err(ScriptFailure::InvalidStackOperation.into());
        };
        let sigs = &items[dummy_at + 1..];
        // Core matches from the top of the stack: last signature against last key, downwards,
        // so signatures must come in key order.
        let (mut sigs_left, mut keys_left) = (threshold, keys.len());
        let mut success = true;
        while success && sigs_left > 0 {
            let sig = sigs[sigs_left - 1];
            let key = keys[keys_left - 1];
            if self.check_ecdsa(eval, index, sig, key, script_code, SigVersion::WitnessV0)? {
                sigs_left -= 1;
            }
            keys_left -= 1;
            if sigs_left > keys_left {
                success = false;
            }
        }
        if !success && sigs.iter().any(|sig| !sig.is_empty()) {
            eval.policy(ScriptFailure::SigNullFail);
        }
        if !items[dummy_at].is_empty() {
            return Err(ScriptFailure::SigNullDummy.into());
        }
        if dummy_at > 0 {
            return Err(ScriptFailure::CleanStack.into());
        }
        if !success {
            return Err(ScriptFailure::EvalFalse.into());
        }
        Ok(())
    }

    /// Taproot: key path (`[sig]`, optionally with an annex). Script paths are unsupported.
    fn taproot(&mut self, index: usize, program: &[u8], stack: &[&[u8]]) -> Result<(), Stop> {
        let (stack, annex) = match stack {
            [] => return Err(ScriptFailure::WitnessProgramWitnessEmpty.into()),
            [rest @ .., last] if !rest.is_empty() && last.first() == Some(&ANNEX_TAG) => {
                (rest, Annex::new(last).ok())
            }
            _ => (stack, None),
        };
        let [sig] = stack else {
            return self.tapscript(index, program, stack, annex);
        };
        let (sig, hash_type) = match sig.len() {
            64 => (*sig, TapSighashType::Default),
            65 => {
                let (bytes, hash_type) = sig.split_at(64);
                // An explicit 0x00 is invalid: SIGHASH_DEFAULT is only ever implied.
                match hash_type.first().copied() {
                    Some(byte) if byte != 0 => match TapSighashType::from_consensus_u8(byte) {
                        Ok(hash_type) => (bytes, hash_type),
                        Err(_) => return Err(ScriptFailure::SchnorrSigHashtype.into()),
                    },
                    _ => return Err(ScriptFailure::SchnorrSigHashtype.into()),
                }
            }
            _ => return Err(ScriptFailure::SchnorrSigSize.into()),
        };
        // Fails for SIGHASH_SINGLE without a matching output, as Core's SignatureHashSchnorr.
        let sighash = self
            .cache
            .taproot_signature_hash(index, &Prevouts::All(self.prevouts), annex, None, hash_type)
            .map_err(|_| ScriptFailure::SchnorrSigHashtype)?;
        let (Ok(key), Ok(sig)) = (
            XOnlyPublicKey::from_slice(program),
            schnorr::Signature::from_slice(sig),
        ) else {
            return Err(ScriptFailure::SchnorrSig.into());
        };
        secp()
            .verify_schnorr(&sig, &Message::from_digest(sighash.to_byte_array()), &key)
            .map_err(|_| ScriptFailure::SchnorrSig.into())
    }

    /// Taproot script path (BIP-341/342): `stack` is the leaf's inputs, the leaf script and the
    /// control block. The commitment is checked in full; the leaf runs if it uses only pushes,
    /// conditionals (BIP-342's minimal `OP_IF`), `OP_DROP`, `OP_VERIFY`, `OP_CHECKSIG(VERIFY)`,
    /// `OP_CHECKSIGADD`, `OP_NUMEQUAL(VERIFY)` and `OP_CHECKSEQUENCEVERIFY` (what the tunnel's
    /// deposit, reclaim, multisig and recovery leaves and the forced-inclusion envelope use);
    /// anything else, executed or not, is [`Stop::Unsupported`], never guessed.
    fn tapscript(
        &mut self,
        index: usize,
        program: &[u8],
        stack: &[&[u8]],
        annex: Option<Annex<'_>>,
    ) -> Result<(), Stop> {
        let [inputs @ .., script, control] = stack else {
            return Err(ScriptFailure::WitnessProgramWitnessEmpty.into());
        };
        if control.len() < 33 || (control.len() - 33) % 32 != 0 || control.len() > 33 + 128 * 32 {
            return Err(ScriptFailure::TaprootWrongControlSize.into());
        }
        let script = Script::from_bytes(script);
        let (Ok(block), Ok(output_key)) = (
            bitcoin::taproot::ControlBlock::decode(control),
            XOnlyPublicKey::from_slice(program),
        ) else {
            return Err(ScriptFailure::WitnessProgramMismatch.into());
        };
        if !block.verify_taproot_commitment(secp(), output_key, script) {
            return Err(ScriptFailure::WitnessProgramMismatch.into());
        }
        if control[0] & 0xfe != TAPSCRIPT_LEAF {
            return Err(Stop::Unsupported(format!(
                "taproot leaf version 0x{:02x}",
                control[0] & 0xfe
            )));
        }
        let leaf = bitcoin::taproot::TapLeafHash::from_script(
            script,
            bitcoin::taproot::LeafVersion::TapScript,
        );
        // BIP-342's budget: the witness's serialized size plus 50, 50 per signature checked.
        let witness = &self.tx.input[index].witness;
        let mut budget = bitcoin::consensus::serialize(witness).len() as i64 + 50;
        // Core's ExecuteWitnessScript: the witness stack's own limits, before the script runs.
        if inputs.iter().any(|i| i.len() > MAX_SCRIPT_ELEMENT_SIZE) {
            return Err(ScriptFailure::PushSize.into());
        }
        if inputs.len() > MAX_STACK_SIZE {
            return Err(ScriptFailure::StackSize.into());
        }
        let mut st: Vec<Vec<u8>> = inputs.iter().map(|i| i.to_vec()).collect();
        let pop = |st: &mut Vec<Vec<u8>>| {
            st.pop()
                .ok_or(Stop::from(ScriptFailure::InvalidStackOperation))
        };
        // Core's vfExec: one entry per open conditional, true where its branch runs.
        let mut branches: Vec<bool> = Vec::new();
        for ins in script.instructions() {
            let ins = ins.map_err(|_| ScriptFailure::BadOpcode)?;
            let executing = branches.iter().all(|b| *b);
            let op = match ins {
                Instruction::PushBytes(b) => {
                    if b.len() > MAX_SCRIPT_ELEMENT_SIZE {
                        return Err(ScriptFailure::PushSize.into());
                    }
                    if executing {
                        st.push(b.as_bytes().to_vec());
                        if st.len() > MAX_STACK_SIZE {
                            return Err(ScriptFailure::StackSize.into());
                        }
                    }
                    continue;
                }
                Instruction::Op(op) => op.to_u8(),
            };
            match op {
                0x63 | 0x64 => {
                    // OP_IF, OP_NOTIF: tapscript demands an empty or 0x01 argument.
                    let mut taken = false;
                    if executing {
                        let top = st.pop().ok_or(ScriptFailure::UnbalancedConditional)?;
                        if top.len() > 1 || (top.len() == 1 && top[0] != 1) {
                            return Err(ScriptFailure::TapscriptMinimalIf.into());
                        }
                        taken = (top.len() == 1) == (op == 0x63);
                    }
                    branches.push(taken);
                    continue;
                }
                0x67 => {
                    // OP_ELSE
                    let last = branches
                        .last_mut()
                        .ok_or(ScriptFailure::UnbalancedConditional)?;
                    *last = !*last;
                    continue;
                }
                0x68 => {
                    // OP_ENDIF
                    branches.pop().ok_or(ScriptFailure::UnbalancedConditional)?;
                    continue;
                }
                OP_1NEGATE
                | OP_1..=OP_16
                | 0x69
                | 0x75
                | 0x9c
                | 0x9d
                | 0xac
                | 0xad
                | 0xae
                | 0xaf
                | 0xb2
                | 0xba
                    if !executing =>
                {
                    continue;
                }
                _ => {}
            }
            match op {
                OP_1NEGATE => st.push(vec![0x81]),
                OP_1..=OP_16 => st.push(vec![op - OP_1 + 1]),
                0x69 => {
                    // OP_VERIFY
                    if !cast_to_bool(&pop(&mut st)?) {
                        return Err(ScriptFailure::Verify.into());
                    }
                }
                0x75 => {
                    // OP_DROP
                    pop(&mut st)?;
                }
                0x9c | 0x9d => {
                    // OP_NUMEQUAL(VERIFY)
                    let b = script_num(&pop(&mut st)?, 4)?;
                    let a = script_num(&pop(&mut st)?, 4)?;
                    if op == 0x9d {
                        if a != b {
                            return Err(ScriptFailure::NumEqualVerify.into());
                        }
                    } else {
                        st.push(if a == b { vec![1] } else { vec![] });
                    }
                }
                0xac | 0xad | 0xba => {
                    // OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CHECKSIGADD
                    let key = pop(&mut st)?;
                    let n = if op == 0xba {
                        Some(script_num(&pop(&mut st)?, 4)?)
                    } else {
                        None
                    };
                    let sig = pop(&mut st)?;
                    let ok = self.check_tapscript_sig(
                        index,
                        &sig,
                        &key,
                        leaf,
                        annex.clone(),
                        &mut budget,
                    )?;
                    match (op, n) {
                        (0xad, _) if !ok => return Err(ScriptFailure::CheckSigVerify.into()),
                        (0xad, _) => {}
                        (_, Some(n)) => st.push(script_num_bytes(n + i64::from(ok))),
                        _ => st.push(if ok { vec![1] } else { vec![] }),
                    }
                }
                0xae | 0xaf => return Err(ScriptFailure::TapscriptCheckMultisig.into()),
                0xb2 => {
                    // OP_CHECKSEQUENCEVERIFY (BIP-112): the stack is left as it is.
                    let top = st.last().ok_or(ScriptFailure::InvalidStackOperation)?;
                    self.check_sequence(index, script_num(top, 5)?)?;
                }
                other => {
                    return Err(Stop::Unsupported(format!(
                        "tapscript opcode 0x{other:02x} (only the tunnel's leaf shapes run here)"
                    )))
                }
            }
            if st.len() > MAX_STACK_SIZE {
                return Err(ScriptFailure::StackSize.into());
            }
        }
        if !branches.is_empty() {
            return Err(ScriptFailure::UnbalancedConditional.into());
        }
        // Tapscript's clean stack is a consensus rule: exactly one true element.
        match st.as_slice() {
            [top] if cast_to_bool(top) => Ok(()),
            [_] => Err(ScriptFailure::EvalFalse.into()),
            _ => Err(ScriptFailure::CleanStack.into()),
        }
    }

    /// BIP-342 signature check: an empty signature is false; a 32-byte key needs a valid
    /// signature (else the script fails); other key sizes are upgradable (unsupported here).
    fn check_tapscript_sig(
        &mut self,
        index: usize,
        sig: &[u8],
        key: &[u8],
        leaf: bitcoin::taproot::TapLeafHash,
        annex: Option<Annex<'_>>,
        budget: &mut i64,
    ) -> Result<bool, Stop> {
        if key.is_empty() {
            return Err(ScriptFailure::PubkeyType.into());
        }
        if sig.is_empty() {
            return Ok(false);
        }
        *budget -= 50;
        if *budget < 0 {
            return Err(ScriptFailure::TapscriptValidationWeight.into());
        }
        if key.len() != 32 {
            return Err(Stop::Unsupported(format!(
                "a {}-byte tapscript key",
                key.len()
            )));
        }
        let (sig, hash_type) = match sig.len() {
            64 => (sig, TapSighashType::Default),
            65 => match sig[64] {
                0 => return Err(ScriptFailure::SchnorrSigHashtype.into()),
                b => (
                    &sig[..64],
                    TapSighashType::from_consensus_u8(b)
                        .map_err(|_| ScriptFailure::SchnorrSigHashtype)?,
                ),
            },
            _ => return Err(ScriptFailure::SchnorrSigSize.into()),
        };
        let sighash = self
            .cache
            .taproot_signature_hash(
                index,
                &Prevouts::All(self.prevouts),
                annex,
                Some((leaf, u32::MAX)),
                hash_type,
            )
            .map_err(|_| ScriptFailure::SchnorrSigHashtype)?;
        let (Ok(key), Ok(sig)) = (
            XOnlyPublicKey::from_slice(key),
            schnorr::Signature::from_slice(sig),
        ) else {
            return Err(ScriptFailure::SchnorrSig.into());
        };
        secp()
            .verify_schnorr(&sig, &Message::from_digest(sighash.to_byte_array()), &key)
            .map(|()| true)
            .map_err(|_| ScriptFailure::SchnorrSig.into())
    }

    /// BIP-112's `CheckSequence` for input `index` against the script's `required` value.
    fn check_sequence(&self, index: usize, required: i64) -> Result<(), Stop> {
        const DISABLE: i64 = 1 << 31;
        const TYPE: i64 = 1 << 22;
        const MASK: i64 = TYPE | 0xffff;
        if required < 0 {
            return Err(ScriptFailure::NegativeLocktime.into());
        }
        if required & DISABLE != 0 {
            return Ok(()); // a NOP
        }
        let seq = i64::from(self.tx.input[index].sequence.0);
        let unsatisfied = self.tx.version.0 < 2
            || seq & DISABLE != 0
            || (required & TYPE) != (seq & TYPE)
            || (required & MASK) > (seq & MASK);
        if unsatisfied {
            return Err(ScriptFailure::UnsatisfiedLocktime.into());
        }
        Ok(())
    }

    /// Legacy P2PKH: the scriptSig's pushes, then `DUP HASH160 <hash> EQUALVERIFY CHECKSIG`.
    fn p2pkh(
        &mut self,
        eval: &mut Eval,
        index: usize,
        script_pubkey: &Script,
        script_sig: &Script,
        witness: &Witness,
    ) -> Result<(), Stop> {
        let program = &script_pubkey.as_bytes()[3..23];
        let mut stack = eval_pushes(eval, script_sig)?;
        let Some(top) = stack.last() else {
            return Err(ScriptFailure::InvalidStackOperation.into());
        };
        if hash160::Hash::hash(top).as_byte_array() != program {
            return Err(ScriptFailure::EqualVerify.into());
        }
        let (Some(pubkey), Some(sig)) = (stack.pop(), stack.pop()) else {
            return Err(ScriptFailure::InvalidStackOperation.into());
        };
        // Pre-segwit CHECKSIG deletes the signature's push from the script code first; in a
        // P2PKH script only a signature equal to the key hash can match.
        let script_code = if sig == program {
            eval.policy(ScriptFailure::SigFindAndDelete);
            Builder::new()
                .push_opcode(OP_DUP)
                .push_opcode(OP_HASH160)
                .push_opcode(OP_EQUALVERIFY)
                .push_opcode(OP_CHECKSIG)
                .into_script()
        } else {
            script_pubkey.to_owned()
        };
        let ok = self.checksig(eval, index, &sig, &pubkey, &script_code, SigVersion::Base)?;
        if !ok {
            return Err(ScriptFailure::EvalFalse.into());
        }
        if !stack.is_empty() {
            eval.policy(ScriptFailure::CleanStack);
        }
        if !witness.is_empty() {
            return Err(ScriptFailure::WitnessUnexpected.into());
        }
        Ok(())
    }

    /// `OP_CHECKSIG` before tapscript: the check plus NULLFAIL.
    fn checksig(
        &mut self,
        eval: &mut Eval,
        index: usize,
        sig: &[u8],
        pubkey: &[u8],
        script_code: &Script,
        version: SigVersion,
    ) -> Result<bool, Stop> {
        let ok = self.check_ecdsa(eval, index, sig, pubkey, script_code, version)?;
        if !ok && !sig.is_empty() {
            eval.policy(ScriptFailure::SigNullFail);
        }
        Ok(ok)
    }

    /// Core's signature and key encoding checks, then `CheckECDSASignature`. `Err` only for
    /// consensus encoding failures (non-DER signatures); policy ones are noted in `eval`.
    fn check_ecdsa(
        &mut self,
        eval: &mut Eval,
        index: usize,
        sig: &[u8],
        pubkey: &[u8],
        script_code: &Script,
        version: SigVersion,
    ) -> Result<bool, Stop> {
        if !sig.is_empty() {
            if !is_valid_signature_encoding(sig) {
                return Err(ScriptFailure::SigDer.into()); // DERSIG is a consensus rule
            }
            if !is_low_s(sig) {
                eval.policy(ScriptFailure::SigHighS);
            }
            if !is_defined_hashtype(sig) {
                eval.policy(ScriptFailure::SigHashtype);
            }
        }
        if !is_compressed_or_uncompressed(pubkey) {
            eval.policy(ScriptFailure::PubkeyType);
        } else if version == SigVersion::WitnessV0 && !is_compressed(pubkey) {
            eval.policy(ScriptFailure::WitnessPubkeyType);
        }

        let Ok(key) = PublicKey::from_slice(pubkey) else {
            return Ok(false);
        };
        let Some((&hash_type, der)) = sig.split_last() else {
            return Ok(false);
        };
        let value = self.prevouts[index].value;
        let Some(digest) = self.ecdsa_sighash(index, script_code, value, hash_type, version) else {
            return Ok(false);
        };
        // Core parses leniently and verifies the low-S form: high S is a policy matter only.
        let Ok(mut signature) = ecdsa::Signature::from_der_lax(der) else {
            return Ok(false);
        };
        signature.normalize_s();
        Ok(secp()
            .verify_ecdsa(&Message::from_digest(digest), &signature, &key)
            .is_ok())
    }

    /// The legacy or BIP143 sighash for any hash type byte, as Core computes it.
    fn ecdsa_sighash(
        &mut self,
        index: usize,
        script_code: &Script,
        value: Amount,
        hash_type: u8,
        version: SigVersion,
    ) -> Option<[u8; 32]> {
        match version {
            SigVersion::Base => self
                .cache
                .legacy_signature_hash(index, script_code, u32::from(hash_type))
                .ok()
                .map(|h| h.to_byte_array()),
            SigVersion::WitnessV0 => {
                segwit_v0_sighash(&mut self.cache, index, script_code, value, hash_type)
            }
        }
    }
}

/// BIP143 sighash for any hash type byte. rust-bitcoin's [`EcdsaSighashType::from_consensus`]
/// picks the same committed parts as Core (by `n & 0x1f` and `n & 0x80`) but normalises the
/// type itself, so the trailing 4-byte `nHashType` is put back to the signature's own byte.
pub(crate) fn segwit_v0_sighash(
    cache: &mut SighashCache<&Transaction>,
    index: usize,
    script_code: &Script,
    value: Amount,
    hash_type: u8,
) -> Option<[u8; 32]> {
    let mut data = Vec::with_capacity(160 + script_code.len());
    let sighash_type = EcdsaSighashType::from_consensus(u32::from(hash_type));
    cache
        .segwit_v0_encode_signing_data_to(&mut data, index, script_code, value, sighash_type)
        .ok()?;
    let split = data.len().checked_sub(4)?;
    data.truncate(split);
    data.extend_from_slice(&u32::from(hash_type).to_le_bytes());
    Some(SegwitV0Sighash::hash(&data).to_byte_array())
}

/// `OP_DUP OP_HASH160 <hash> OP_EQUALVERIFY OP_CHECKSIG` (the P2WPKH script code).
fn pkh_script(hash: &[u8]) -> ScriptBuf {
    let mut bytes = Vec::with_capacity(25);
    bytes.extend_from_slice(&[OP_DUP.to_u8(), OP_HASH160.to_u8(), 20]);
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(&[OP_EQUALVERIFY.to_u8(), OP_CHECKSIG.to_u8()]);
    ScriptBuf::from_bytes(bytes)
}

/// A short name for a script type this checker does not evaluate.
fn describe(script: &Script) -> String {
    let kind = if script.is_p2sh() {
        "P2SH output"
    } else if script.is_p2pk() {
        "P2PK output"
    } else if script.is_multisig() {
        "bare multisig output"
    } else if script.is_op_return() {
        "OP_RETURN output"
    } else {
        "output script"
    };
    format!("{kind} {}", script.to_hex_string())
}

/// Core's `CastToBool`: any non-zero byte, except a lone sign bit at the end (negative zero).
/// Core's `CScriptNum` of at most `max` bytes, minimally encoded (tapscript's rule).
fn script_num(bytes: &[u8], max: usize) -> Result<i64, Stop> {
    if bytes.len() > max {
        return Err(ScriptFailure::UnknownError.into());
    }
    if let Some((last, rest)) = bytes.split_last() {
        if *last & 0x7f == 0 && rest.last().is_none_or(|b| b & 0x80 == 0) {
            return Err(ScriptFailure::MinimalData.into());
        }
    }
    let mut v: i64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= i64::from(*b) << (8 * i);
    }
    match bytes.last() {
        Some(last) if last & 0x80 != 0 => {
            let top = 0x80i64 << (8 * (bytes.len() - 1));
            Ok(-(v & !top))
        }
        _ => Ok(v),
    }
}

/// The minimal encoding of `n`.
fn script_num_bytes(n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let neg = n < 0;
    let mut abs = n.unsigned_abs();
    while abs > 0 {
        out.push((abs & 0xff) as u8);
        abs >>= 8;
    }
    if let Some(last) = out.last_mut() {
        if *last & 0x80 != 0 {
            out.push(if neg { 0x80 } else { 0 });
        } else if neg {
            *last |= 0x80;
        }
    }
    out
}

fn cast_to_bool(bytes: &[u8]) -> bool {
    match bytes.split_last() {
        None => false,
        Some((last, rest)) => rest.iter().any(|b| *b != 0) || (*last != 0 && *last != 0x80),
    }
}

/// Core's `CScript::IsPushOnly`: every opcode is at most `OP_16` (and parses).
fn is_push_only(script: &Script) -> bool {
    script.instructions().all(|instruction| match instruction {
        Ok(Instruction::PushBytes(_)) => true,
        Ok(Instruction::Op(op)) => op.to_u8() <= OP_16,
        Err(_) => false,
    })
}

/// Runs a push-only scriptSig, giving its stack (Core's `EvalScript` on pushes).
fn eval_pushes(eval: &mut Eval, script_sig: &Script) -> Result<Vec<Vec<u8>>, Stop> {
    let bytes = script_sig.as_bytes();
    let mut stack = Vec::new();
    for instruction in script_sig.instruction_indices() {
        let item = match instruction {
            Err(_) => return Err(ScriptFailure::BadOpcode.into()),
            Ok((at, Instruction::PushBytes(data))) => {
                let data = data.as_bytes();
                if data.len() > MAX_SCRIPT_ELEMENT_SIZE {
                    return Err(ScriptFailure::PushSize.into());
                }
                if !is_minimal_push(data, bytes.get(at).copied().unwrap_or(OP_0)) {
                    eval.policy(ScriptFailure::MinimalData);
                }
                data.to_vec()
            }
            Ok((_, Instruction::Op(op))) => match op.to_u8() {
                OP_1NEGATE => vec![0x81],
                n @ OP_1..=OP_16 => vec![n - (OP_1 - 1)],
                OP_RESERVED => return Err(ScriptFailure::BadOpcode.into()),
                _ => {
                    return Err(Stop::Unsupported(
                        "scriptSig with non-push opcodes".to_owned(),
                    ))
                }
            },
        };
        stack.push(item);
        if stack.len() > MAX_STACK_SIZE {
            return Err(ScriptFailure::StackSize.into());
        }
    }
    Ok(stack)
}

/// Core's `CheckMinimalPush`.
fn is_minimal_push(data: &[u8], opcode: u8) -> bool {
    match data {
        [] => opcode == OP_0,
        [b] if (1..=16).contains(b) || *b == 0x81 => false,
        _ if data.len() <= 75 => usize::from(opcode) == data.len(),
        _ if data.len() <= 255 => opcode == OP_PUSHDATA1,
        _ if data.len() <= 65535 => opcode == OP_PUSHDATA2,
        _ => true,
    }
}

/// Parses `OP_m <key_1> .. <key_n> OP_n OP_CHECKMULTISIG` with `n` equal to the number of keys,
/// each key a direct push of 33 or 65 bytes and both counts `OP_1..OP_16`.
fn parse_multisig(script: &Script) -> Option<MultisigScript<'_>> {
    let bytes = script.as_bytes();
    let small_int = |instruction: Instruction<'_>| match instruction {
        Instruction::Op(op) if (OP_1..=OP_16).contains(&op.to_u8()) => {
            Some(usize::from(op.to_u8() - (OP_1 - 1)))
        }
        _ => None,
    };
    let mut instructions = script.instruction_indices();
    let threshold = small_int(instructions.next()?.ok()?.1)?;
    let mut keys = Vec::new();
    let count = loop {
        match instructions.next()?.ok()? {
            (at, Instruction::PushBytes(key))
                if matches!(key.len(), 33 | 65)
                    && bytes.get(at).map(|op| usize::from(*op)) == Some(key.len()) =>
            {
                keys.push(key.as_bytes());
            }
            (_, other) => break small_int(other)?,
        }
    };
    match instructions.next()?.ok()? {
        (_, Instruction::Op(op)) if op == OP_CHECKMULTISIG => {}
        _ => return None,
    }
    (instructions.next().is_none() && count == keys.len())
        .then_some(MultisigScript { threshold, keys })
}

/// Core's `IsValidSignatureEncoding` (BIP66 strict DER plus the hash type byte).
fn is_valid_signature_encoding(sig: &[u8]) -> bool {
    // 0x30 [total-length] 0x02 [R-length] [R] 0x02 [S-length] [S] [sighash]
    let len = sig.len();
    if !(9..=73).contains(&len) {
        return false;
    }
    let at = |i: usize| sig.get(i).copied();
    let (Some(0x30), Some(total), Some(0x02), Some(len_r)) = (at(0), at(1), at(2), at(3)) else {
        return false;
    };
    let (total, len_r) = (usize::from(total), usize::from(len_r));
    if total != len - 3 || 5 + len_r >= len {
        return false;
    }
    let Some(len_s) = at(5 + len_r).map(usize::from) else {
        return false;
    };
    if len_r + len_s + 7 != len {
        return false;
    }
    let r = &sig[4..4 + len_r];
    let s_marker = at(4 + len_r);
    let s = &sig[6 + len_r..6 + len_r + len_s];
    let canonical_int = |n: &[u8]| match n {
        [] => false,
        [first, ..] if first & 0x80 != 0 => false,
        [0x00, second, ..] if second & 0x80 == 0 => false,
        _ => true,
    };
    s_marker == Some(0x02) && canonical_int(r) && canonical_int(s)
}

/// Core's `IsLowDERSignature` for an encoding-valid signature: S at most half the order.
fn is_low_s(sig: &[u8]) -> bool {
    let Some((_, der)) = sig.split_last() else {
        return false;
    };
    let Ok(parsed) = ecdsa::Signature::from_der_lax(der) else {
        return false;
    };
    let mut normalized = parsed;
    normalized.normalize_s();
    normalized.serialize_compact() == parsed.serialize_compact()
}

/// Core's `IsDefinedHashtypeSignature`.
fn is_defined_hashtype(sig: &[u8]) -> bool {
    sig.last().is_some_and(|t| (1..=3).contains(&(t & !0x80)))
}

/// Core's `IsCompressedOrUncompressedPubKey`.
fn is_compressed_or_uncompressed(key: &[u8]) -> bool {
    matches!(
        (key.first(), key.len()),
        (Some(0x04), 65) | (Some(0x02 | 0x03), 33)
    )
}

/// Core's `IsCompressedPubKey`.
fn is_compressed(key: &[u8]) -> bool {
    matches!((key.first(), key.len()), (Some(0x02 | 0x03), 33))
}

#[cfg(test)]
mod tests;
