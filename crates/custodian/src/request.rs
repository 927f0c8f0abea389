//! What the coordinator asks the custodians to sign, and the messages they sign.
//!
//! A [`SignRequest`] is an unsigned vault transaction, the outputs its inputs spend and, per
//! input, the tapleaf it is spent through: `None` for the vault's key path (payouts), the
//! deposit leaf for a sweep input. Every custodian computes each input's BIP-341 sighash
//! (`SIGHASH_DEFAULT`) from that itself ([`SignRequest::sighashes`]) and signs only those
//! messages.

use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_DROP};
use bitcoin::script::Instruction;
use bitcoin::secp256k1::schnorr;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::{Amount, Script, ScriptBuf, Transaction, TxOut, Witness, XOnlyPublicKey};
use hemi_tunnel::TaprootDeposit;
use serde::{Deserialize, Serialize};

/// Why a request is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `tx` is not a consensus-encoded transaction, or a script is not hex.
    #[error("{field}: {reason}")]
    Decode {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Inputs, prevouts and leaves differ in number.
    #[error("{inputs} inputs, {prevouts} prevouts, {leaves} leaves: they must be equal")]
    Counts {
        /// Inputs of the transaction.
        inputs: usize,
        /// Prevouts given.
        prevouts: usize,
        /// Leaves given.
        leaves: usize,
    },
    /// No inputs.
    #[error("the transaction has no inputs")]
    Empty,
    /// The transaction already carries witness data (a request is for an unsigned one).
    #[error("input {0} already has a witness")]
    Witness(usize),
    /// BIP-341's sighash cannot be computed.
    #[error("input {input}: sighash: {reason}")]
    Sighash {
        /// The input.
        input: usize,
        /// Why.
        reason: String,
    },
}

/// A vault transaction to sign (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// The unsigned transaction.
    pub tx: Transaction,
    /// The outputs its inputs spend, in input order.
    pub prevouts: Vec<TxOut>,
    /// Per input: `None` = the vault's key path; `Some(leaf)` = a deposit leaf.
    pub leaves: Vec<Option<ScriptBuf>>,
}

/// A [`TxOut`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WireTxOut {
    /// Satoshis.
    pub value: u64,
    /// The output script, hex.
    pub script_pubkey: String,
}

/// A [`SignRequest`] on the wire: hex transaction and scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSignRequest {
    /// The unsigned transaction, consensus-encoded hex.
    pub tx: String,
    /// The outputs spent.
    pub prevouts: Vec<WireTxOut>,
    /// Per input, the deposit leaf's script hex, or null for the key path.
    pub leaves: Vec<Option<String>>,
}

fn script_hex(field: &'static str, s: &str) -> Result<ScriptBuf, RequestError> {
    hex::decode(s)
        .map(ScriptBuf::from_bytes)
        .map_err(|_| RequestError::Decode {
            field,
            reason: "not hex".into(),
        })
}

impl SignRequest {
    /// A request, its shape checked.
    ///
    /// # Errors
    /// [`RequestError`] for differing counts, no inputs, an input with a witness.
    pub fn new(
        tx: Transaction,
        prevouts: Vec<TxOut>,
        leaves: Vec<Option<ScriptBuf>>,
    ) -> Result<Self, RequestError> {
        if tx.input.len() != prevouts.len() || tx.input.len() != leaves.len() {
            return Err(RequestError::Counts {
                inputs: tx.input.len(),
                prevouts: prevouts.len(),
                leaves: leaves.len(),
            });
        }
        if tx.input.is_empty() {
            return Err(RequestError::Empty);
        }
        if let Some(i) = tx.input.iter().position(|i| !i.witness.is_empty()) {
            return Err(RequestError::Witness(i));
        }
        Ok(SignRequest {
            tx,
            prevouts,
            leaves,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> WireSignRequest {
        WireSignRequest {
            tx: encode::serialize_hex(&self.tx),
            prevouts: self
                .prevouts
                .iter()
                .map(|o| WireTxOut {
                    value: o.value.to_sat(),
                    script_pubkey: hex::encode(o.script_pubkey.as_bytes()),
                })
                .collect(),
            leaves: self
                .leaves
                .iter()
                .map(|l| l.as_ref().map(|s| hex::encode(s.as_bytes())))
                .collect(),
        }
    }

    /// From the wire form.
    ///
    /// # Errors
    /// [`RequestError`] for bad hex, a transaction that does not decode, a bad shape.
    pub fn from_wire(wire: &WireSignRequest) -> Result<Self, RequestError> {
        let tx: Transaction =
            encode::deserialize_hex(&wire.tx).map_err(|e| RequestError::Decode {
                field: "tx",
                reason: e.to_string(),
            })?;
        let prevouts = wire
            .prevouts
            .iter()
            .map(|o| {
                Ok(TxOut {
                    value: Amount::from_sat(o.value),
                    script_pubkey: script_hex("prevouts.scriptPubkey", &o.script_pubkey)?,
                })
            })
            .collect::<Result<Vec<_>, RequestError>>()?;
        let leaves = wire
            .leaves
            .iter()
            .map(|l| l.as_deref().map(|s| script_hex("leaves", s)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(tx, prevouts, leaves)
    }

    /// Each input's BIP-341 signature message hash (`SIGHASH_DEFAULT`): key path for `None`,
    /// script path of the leaf (tapscript) for `Some`.
    ///
    /// # Errors
    /// [`RequestError::Sighash`].
    pub fn sighashes(&self) -> Result<Vec<[u8; 32]>, RequestError> {
        let mut cache = SighashCache::new(&self.tx);
        let prevouts = Prevouts::All(&self.prevouts);
        self.leaves
            .iter()
            .enumerate()
            .map(|(input, leaf)| {
                let h = match leaf {
                    None => cache.taproot_key_spend_signature_hash(
                        input,
                        &prevouts,
                        TapSighashType::Default,
                    ),
                    Some(script) => cache.taproot_script_spend_signature_hash(
                        input,
                        &prevouts,
                        TapLeafHash::from_script(script, LeafVersion::TapScript),
                        TapSighashType::Default,
                    ),
                };
                h.map(|h| h.to_byte_array())
                    .map_err(|e| RequestError::Sighash {
                        input,
                        reason: e.to_string(),
                    })
            })
            .collect()
    }
}

/// The key a deposit leaf (`<37 bytes> OP_DROP <key> OP_CHECKSIG`) names, if `leaf` has that
/// shape.
pub fn deposit_leaf_key(leaf: &Script) -> Option<XOnlyPublicKey> {
    let ins: Vec<Instruction<'_>> = leaf.instructions().collect::<Result<_, _>>().ok()?;
    match ins.as_slice() {
        [Instruction::PushBytes(data), Instruction::Op(drop), Instruction::PushBytes(key), Instruction::Op(check)]
            if *drop == OP_DROP && *check == OP_CHECKSIG && data.len() == 37 =>
        {
            XOnlyPublicKey::from_slice(key.as_bytes()).ok()
        }
        _ => None,
    }
}

/// The witness of a vault key-path input signed with `sig` (`SIGHASH_DEFAULT`: 64 bytes).
pub fn key_path_witness(sig: schnorr::Signature) -> Witness {
    Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
        signature: sig,
        sighash_type: TapSighashType::Default,
    })
}

/// The witness of a sweep input: `sig` ‖ the deposit leaf ‖ its control block.
pub fn deposit_leaf_witness(sig: schnorr::Signature, deposit: &TaprootDeposit) -> Option<Witness> {
    hemi_tunnel::sweep::deposit_leaf_witness(deposit, sig.as_ref())
}
