//! The crate's two error types: [`WalletError`] (building and signing) and [`ScriptError`]
//! (checking a spend), with [`ScriptFailure`] naming Bitcoin Core's script error.

use bitcoin::{Amount, PublicKey};

/// Why building or signing a transaction failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// 32 bytes that are not a valid secp256k1 secret key (zero or not below the curve order).
    #[error("invalid secret key (zero or not below the secp256k1 curve order)")]
    InvalidSecretKey,
    /// A multisig threshold outside `1..=keys`.
    #[error(
        "invalid multisig threshold {threshold} for {keys} keys (need 1 <= threshold <= keys)"
    )]
    InvalidThreshold {
        /// The threshold asked for.
        threshold: usize,
        /// The number of keys.
        keys: usize,
    },
    /// More multisig keys than `OP_16` can count.
    #[error("{keys} multisig keys, at most {max} are supported")]
    TooManyKeys {
        /// The number of keys given.
        keys: usize,
        /// The limit.
        max: usize,
    },
    /// The same key twice in a multisig.
    #[error("duplicate multisig key {0}")]
    DuplicateKey(PublicKey),
    /// An uncompressed key where segwit policy needs a compressed one.
    #[error("uncompressed key {0}: segwit scripts need compressed keys")]
    UncompressedKey(PublicKey),
    /// The number of prevouts differs from the number of inputs.
    #[error("{prevouts} prevouts given for {inputs} inputs")]
    PrevoutCount {
        /// Prevouts given.
        prevouts: usize,
        /// Inputs in the transaction.
        inputs: usize,
    },
    /// The number of signers differs from the number of inputs.
    #[error("{signers} signers given for {inputs} inputs")]
    SignerCount {
        /// Signers given.
        signers: usize,
        /// Inputs in the transaction.
        inputs: usize,
    },
    /// An input index past the end of the transaction's inputs.
    #[error("input index {index} out of range (transaction has {inputs} inputs)")]
    InputOutOfRange {
        /// The index asked for.
        index: usize,
        /// Inputs in the transaction.
        inputs: usize,
    },
    /// The signer cannot spend the script of the output this input spends.
    #[error("signer for input {input} does not match its prevout script {script}")]
    KeyMismatch {
        /// The input.
        input: usize,
        /// The prevout's script, hex.
        script: String,
    },
    /// A signing key that is not one of the multisig's keys.
    #[error("key {key} for input {input} is not one of the multisig's keys")]
    KeyNotInMultisig {
        /// The input.
        input: usize,
        /// The stray key.
        key: PublicKey,
    },
    /// Fewer distinct multisig keys (or signatures) than the threshold.
    #[error("input {input} needs {needed} multisig signatures, {got} available")]
    NotEnoughSigners {
        /// The input (0 when assembling a witness outside a transaction).
        input: usize,
        /// The threshold.
        needed: usize,
        /// Distinct usable keys or signatures given.
        got: usize,
    },
    /// The inputs do not cover the outputs plus the fee.
    #[error("insufficient funds: need {needed}, have {available}")]
    InsufficientFunds {
        /// Outputs plus the fee of the smallest transaction that pays them.
        needed: Amount,
        /// Sum of the inputs.
        available: Amount,
    },
    /// A fee rate that is negative, not finite, or yields a fee above 21M BTC.
    #[error("invalid fee rate {0} sat/vB")]
    InvalidFeeRate(f64),
    /// No inputs to spend.
    #[error("no inputs to spend")]
    NoInputs,
    /// No outputs to pay.
    #[error("no outputs to pay")]
    NoOutputs,
    /// An output below Bitcoin Core's dust threshold for its script.
    #[error("output {index} of {value} is dust (threshold {threshold})")]
    DustOutput {
        /// The output's index in the `outputs` given.
        index: usize,
        /// Its value.
        value: Amount,
        /// The dust threshold for its script (Core's `GetDustThreshold`, 3 sat/vB).
        threshold: Amount,
    },
    /// Amounts that overflow 21M BTC.
    #[error("amount overflow")]
    AmountOverflow,
    /// The sighash could not be computed (rust-bitcoin's reason).
    #[error("sighash for input {input}: {reason}")]
    Sighash {
        /// The input.
        input: usize,
        /// rust-bitcoin's error, as text.
        reason: String,
    },
    /// A freshly signed input failed our own script check: a bug, never sent out.
    #[error("signed transaction failed its own check: {0}")]
    SelfCheck(#[from] ScriptError),
}

/// Why a spend fails [`crate::verify_input`] / [`crate::verify_transaction`].
///
/// `Display` gives the reason Bitcoin Core's mempool (v30+, as built by `scripts/bitcoind.sh`)
/// rejects the transaction with, e.g.
/// `mempool-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)`.
/// Core before v30 said `mandatory-script-verify-flag-failed (..)` for [`ScriptError::Consensus`]
/// and `non-mandatory-script-verify-flag (..)` for [`ScriptError::Policy`]; the variant keeps that
/// distinction, and [`ScriptError::block_reason`] gives the text for a block.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScriptError {
    /// An input index past the end of the transaction's inputs.
    #[error("input index {index} out of range (transaction has {inputs} inputs)")]
    InputOutOfRange {
        /// The index asked for.
        index: usize,
        /// Inputs in the transaction.
        inputs: usize,
    },
    /// The number of prevouts differs from the number of inputs.
    #[error("{prevouts} prevouts given for {inputs} inputs")]
    PrevoutCount {
        /// Prevouts given.
        prevouts: usize,
        /// Inputs in the transaction.
        inputs: usize,
    },
    /// Rejected by Core's standardness rules before any script runs; `reason` is Core's reject
    /// reason (`scriptsig-size`, `scriptsig-not-pushonly`, `bad-witness-nonstandard`).
    #[error("{reason}")]
    NonStandard {
        /// The offending input.
        input: usize,
        /// Core's reject reason.
        reason: &'static str,
    },
    /// The input's script fails under consensus rules too: invalid in a block as well.
    /// `reason` is the first failure with Core's standard flags (what Core reports).
    #[error("mempool-script-verify-flag-failed ({reason})")]
    Consensus {
        /// The failing input.
        input: usize,
        /// Core's script error.
        reason: ScriptFailure,
    },
    /// The input's script is consensus-valid but breaks a policy (standardness) flag, so it does
    /// not relay, yet would be valid in a block.
    #[error("mempool-script-verify-flag-failed ({reason})")]
    Policy {
        /// The failing input.
        input: usize,
        /// Core's script error.
        reason: ScriptFailure,
    },
    /// A script type this checker does not evaluate (P2SH, P2PK, bare multisig, taproot script
    /// path, P2WSH scripts other than `OP_m <keys> OP_n OP_CHECKMULTISIG`, ...).
    #[error("unsupported script: {0}")]
    Unsupported(String),
}

impl ScriptError {
    /// The failing input, where the error names one.
    pub fn input(&self) -> Option<usize> {
        match self {
            Self::NonStandard { input, .. }
            | Self::Consensus { input, .. }
            | Self::Policy { input, .. } => Some(*input),
            Self::InputOutOfRange { index, .. } => Some(*index),
            Self::PrevoutCount { .. } | Self::Unsupported(_) => None,
        }
    }

    /// Core's script error, for [`ScriptError::Consensus`] and [`ScriptError::Policy`].
    pub fn failure(&self) -> Option<ScriptFailure> {
        match self {
            Self::Consensus { reason, .. } | Self::Policy { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// Whether the spend is invalid under consensus rules (so also in a block). `false` for
    /// policy-only failures; `None` where this checker cannot tell (unsupported scripts) or the
    /// call itself was wrong (bad index, prevout count).
    pub fn is_consensus_failure(&self) -> Option<bool> {
        match self {
            Self::Consensus { .. } => Some(true),
            Self::Policy { .. } | Self::NonStandard { .. } => Some(false),
            _ => None,
        }
    }

    /// Core's reason when this failure is found in a block
    /// (`block-script-verify-flag-failed (..)`), for consensus failures only.
    pub fn block_reason(&self) -> Option<String> {
        match self {
            Self::Consensus { reason, .. } => {
                Some(format!("block-script-verify-flag-failed ({reason})"))
            }
            _ => None,
        }
    }
}

/// Bitcoin Core's `ScriptError`, for the failures the script types of this crate can hit.
/// `Display` is Core's `ScriptErrorString`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptFailure {
    /// `SCRIPT_ERR_EVAL_FALSE`
    EvalFalse,
    /// `SCRIPT_ERR_EQUALVERIFY`
    EqualVerify,
    /// `SCRIPT_ERR_PUSH_SIZE`
    PushSize,
    /// `SCRIPT_ERR_STACK_SIZE`
    StackSize,
    /// `SCRIPT_ERR_SIG_COUNT`
    SigCount,
    /// `SCRIPT_ERR_BAD_OPCODE`
    BadOpcode,
    /// `SCRIPT_ERR_INVALID_STACK_OPERATION`
    InvalidStackOperation,
    /// `SCRIPT_ERR_SIG_HASHTYPE`
    SigHashtype,
    /// `SCRIPT_ERR_SIG_DER`
    SigDer,
    /// `SCRIPT_ERR_MINIMALDATA`
    MinimalData,
    /// `SCRIPT_ERR_SIG_HIGH_S`
    SigHighS,
    /// `SCRIPT_ERR_SIG_NULLDUMMY`
    SigNullDummy,
    /// `SCRIPT_ERR_SIG_NULLFAIL`
    SigNullFail,
    /// `SCRIPT_ERR_DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM`
    DiscourageUpgradableWitnessProgram,
    /// `SCRIPT_ERR_PUBKEYTYPE`
    PubkeyType,
    /// `SCRIPT_ERR_CLEANSTACK`
    CleanStack,
    /// `SCRIPT_ERR_WITNESS_PROGRAM_WRONG_LENGTH`
    WitnessProgramWrongLength,
    /// `SCRIPT_ERR_WITNESS_PROGRAM_WITNESS_EMPTY`
    WitnessProgramWitnessEmpty,
    /// `SCRIPT_ERR_WITNESS_PROGRAM_MISMATCH`
    WitnessProgramMismatch,
    /// `SCRIPT_ERR_WITNESS_MALLEATED`
    WitnessMalleated,
    /// `SCRIPT_ERR_WITNESS_UNEXPECTED`
    WitnessUnexpected,
    /// `SCRIPT_ERR_WITNESS_PUBKEYTYPE`
    WitnessPubkeyType,
    /// `SCRIPT_ERR_SCHNORR_SIG_SIZE`
    SchnorrSigSize,
    /// `SCRIPT_ERR_SCHNORR_SIG_HASHTYPE`
    SchnorrSigHashtype,
    /// `SCRIPT_ERR_SCHNORR_SIG`
    SchnorrSig,
    /// `SCRIPT_ERR_SIG_FINDANDDELETE`
    SigFindAndDelete,
    /// `SCRIPT_ERR_VERIFY`
    Verify,
    /// `SCRIPT_ERR_CHECKSIGVERIFY`
    CheckSigVerify,
    /// `SCRIPT_ERR_NUMEQUALVERIFY`
    NumEqualVerify,
    /// `SCRIPT_ERR_NEGATIVE_LOCKTIME`
    NegativeLocktime,
    /// `SCRIPT_ERR_UNSATISFIED_LOCKTIME`
    UnsatisfiedLocktime,
    /// `SCRIPT_ERR_UNKNOWN_ERROR` (Core's answer to a script number too long, say)
    UnknownError,
    /// `SCRIPT_ERR_TAPROOT_WRONG_CONTROL_SIZE`
    TaprootWrongControlSize,
    /// `SCRIPT_ERR_TAPSCRIPT_VALIDATION_WEIGHT`
    TapscriptValidationWeight,
    /// `SCRIPT_ERR_TAPSCRIPT_CHECKMULTISIG`
    TapscriptCheckMultisig,
    /// `SCRIPT_ERR_UNBALANCED_CONDITIONAL`
    UnbalancedConditional,
    /// `SCRIPT_ERR_TAPSCRIPT_MINIMALIF`
    TapscriptMinimalIf,
}

impl ScriptFailure {
    /// Core's `ScriptErrorString` for this error.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EvalFalse => {
                "Script evaluated without error but finished with a false/empty top stack element"
            }
            Self::EqualVerify => "Script failed an OP_EQUALVERIFY operation",
            Self::PushSize => "Push value size limit exceeded",
            Self::StackSize => "Stack size limit exceeded",
            Self::SigCount => "Signature count negative or greater than pubkey count",
            Self::BadOpcode => "Opcode missing or not understood",
            Self::InvalidStackOperation => "Operation not valid with the current stack size",
            Self::SigHashtype => "Signature hash type missing or not understood",
            Self::SigDer => "Non-canonical DER signature",
            Self::MinimalData => "Data push larger than necessary",
            Self::SigHighS => "Non-canonical signature: S value is unnecessarily high",
            Self::SigNullDummy => "Dummy CHECKMULTISIG argument must be zero",
            Self::SigNullFail => "Signature must be zero for failed CHECK(MULTI)SIG operation",
            Self::DiscourageUpgradableWitnessProgram => {
                "Witness version reserved for soft-fork upgrades"
            }
            Self::PubkeyType => "Public key is neither compressed or uncompressed",
            Self::CleanStack => "Stack size must be exactly one after execution",
            Self::WitnessProgramWrongLength => "Witness program has incorrect length",
            Self::WitnessProgramWitnessEmpty => "Witness program was passed an empty witness",
            Self::WitnessProgramMismatch => "Witness program hash mismatch",
            Self::WitnessMalleated => "Witness requires empty scriptSig",
            Self::WitnessUnexpected => "Witness provided for non-witness script",
            Self::WitnessPubkeyType => "Using non-compressed keys in segwit",
            Self::SchnorrSigSize => "Invalid Schnorr signature size",
            Self::SchnorrSigHashtype => "Invalid Schnorr signature hash type",
            Self::SchnorrSig => "Invalid Schnorr signature",
            Self::SigFindAndDelete => "Signature is found in scriptCode",
            Self::Verify => "Script failed an OP_VERIFY operation",
            Self::CheckSigVerify => "Script failed an OP_CHECKSIGVERIFY operation",
            Self::NumEqualVerify => "Script failed an OP_NUMEQUALVERIFY operation",
            Self::NegativeLocktime => "Negative locktime",
            Self::UnsatisfiedLocktime => "Locktime requirement not satisfied",
            Self::UnknownError => "unknown error",
            Self::TaprootWrongControlSize => "Invalid Taproot control block size",
            Self::TapscriptValidationWeight => {
                "Too much signature validation relative to witness weight"
            }
            Self::TapscriptCheckMultisig => {
                "OP_CHECKMULTISIG(VERIFY) is not available in tapscript"
            }
            Self::UnbalancedConditional => "Invalid OP_IF construction",
            Self::TapscriptMinimalIf => "OP_IF/NOTIF argument must be minimal in tapscript",
        }
    }
}

impl core::fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
