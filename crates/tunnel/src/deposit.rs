//! Deposits: a Bitcoin transaction that locks BTC for an L2 recipient.
//!
//! Two formats:
//!
//! - **Hemi-compatible** ([`parse_op_return_deposit`]): one output pays the vault's script, one
//!   `OP_RETURN` output names the recipient, either as its 20 bytes (`6a 14 <address>`, 22
//!   bytes) or as 40 ASCII hex digits (`6a 28 <hex>`, 42 bytes). Hemi's contract reads the
//!   recipient at a fixed offset without looking at the push opcode; here the push must say the
//!   length it carries, so one script has one meaning.
//! - **Taproot with a refund path** ([`TaprootDeposit`]): the deposit output itself is a taproot
//!   output whose internal key is the BIP-341 NUMS point (no key path), with two leaves:
//!
//!   ```text
//!   deposit: <version ‖ chain id ‖ recipient ‖ max fee> OP_DROP <vault key> OP_CHECKSIG
//!   reclaim: <N> OP_CHECKSEQUENCEVERIFY OP_DROP <depositor key> OP_CHECKSIG
//!   ```
//!
//!   The custodians sweep it into the vault through the deposit leaf when they mint; if it is
//!   never minted, the depositor takes it back through the reclaim leaf after N blocks. The
//!   deposit leaf's 37-byte push is `version (1) ‖ chain id (8, big-endian) ‖ recipient (20) ‖
//!   max fee in satoshis (8, big-endian)`. Both leaves are parsed strictly: a leaf is accepted
//!   only if it is byte for byte the one its parameters build.

use std::sync::OnceLock;

use alloy_primitives::{hex, Address};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP};
use bitcoin::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::taproot::{TaprootBuilder, TaprootSpendInfo};
use bitcoin::{Amount, OutPoint, Script, ScriptBuf, Transaction, XOnlyPublicKey};

/// BIP-341's NUMS point `H` (x-only): a key nobody knows the secret of, so a taproot output
/// with it as internal key can be spent only through its script tree.
pub const NUMS_KEY: [u8; 32] =
    hex!("50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0");

/// The deposit leaf's format version (its first byte).
pub const DEPOSIT_LEAF_VERSION: u8 = 1;

/// Length of the deposit leaf's data push: version ‖ chain id ‖ recipient ‖ max fee.
const DEPOSIT_DATA_LEN: usize = 1 + 8 + 20 + 8;

/// Why a transaction or a leaf is not a deposit. Each names the rule it breaks.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    /// More outputs than the hVM's transaction lookup returns, so the contract cannot check it.
    #[error("{count} outputs; a deposit has at most {max}", max = crate::contracts::MAX_DEPOSIT_OUTPUTS)]
    TooManyOutputs {
        /// How many.
        count: usize,
    },
    /// More than one output pays the vault: which one is the deposit is ambiguous.
    #[error("{count} outputs pay the vault; a deposit pays it once")]
    MultipleVaultOutputs {
        /// How many.
        count: usize,
    },
    /// The vault is paid but no `OP_RETURN` names the recipient.
    #[error("the transaction pays the vault but has no OP_RETURN naming the L2 recipient")]
    NoRecipient,
    /// More than one `OP_RETURN` output: which one names the recipient is ambiguous.
    #[error("{count} OP_RETURN outputs; a deposit names its recipient in one")]
    MultipleOpReturns {
        /// How many.
        count: usize,
    },
    /// The push opcode does not say the length the `OP_RETURN` carries.
    #[error("OP_RETURN pushes with opcode 0x{push:02x} but carries {data_len} bytes")]
    PushMismatch {
        /// The push opcode (second byte of the script).
        push: u8,
        /// The bytes after it.
        data_len: usize,
    },
    /// The `OP_RETURN` has neither deposit shape.
    #[error(
        "OP_RETURN of {len} bytes is neither `6a 14 <20-byte address>` nor `6a 28 <40 hex digits>`"
    )]
    MalformedOpReturn {
        /// The script's length.
        len: usize,
    },
    /// The 40 characters are not hex digits.
    #[error("OP_RETURN recipient {0:?} is not 40 hex digits")]
    BadHex(String),
    /// The recipient is the zero address (a mint to it would be burnt).
    #[error("the recipient is the zero address")]
    ZeroRecipient,
    /// The deposit leaf is not `<data> OP_DROP <vault key> OP_CHECKSIG` as built here.
    #[error("deposit leaf: {0}")]
    DepositLeaf(&'static str),
    /// The reclaim leaf is not `<N> OP_CSV OP_DROP <depositor key> OP_CHECKSIG` as built here.
    #[error("reclaim leaf: {0}")]
    ReclaimLeaf(&'static str),
    /// An `OP_RETURN` tagged `HEMT` that is not a taproot deposit's hint as built here.
    #[error("taproot deposit hint: {0}")]
    BadHint(&'static str),
    /// The hint names a taproot deposit no output of the transaction pays.
    #[error("the HEMT hint names a taproot deposit output {script} that no output pays")]
    TaprootOutputMissing {
        /// The output script the hint's leaves build.
        script: ScriptBuf,
    },
}

/// The tag that starts a taproot deposit's hint (`OP_RETURN`).
pub const TAPROOT_HINT_TAG: [u8; 4] = *b"HEMT";

/// Length of the hint's push: tag ‖ version ‖ chain id ‖ recipient ‖ max fee ‖ depositor key ‖
/// reclaim blocks.
const HINT_LEN: usize = 4 + 1 + 8 + 20 + 8 + 32 + 2;

/// How a deposit names its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositFormat {
    /// `OP_RETURN` with the 20-byte address (`6a 14 …`).
    OpReturnAddress,
    /// `OP_RETURN` with 40 ASCII hex digits (`6a 28 …`).
    OpReturnHex,
    /// A [`TaprootDeposit`] output.
    Taproot,
}

/// A deposit found in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    /// The output that locks the BTC (the vault output, or the taproot deposit output).
    pub outpoint: OutPoint,
    /// Its value.
    pub amount: Amount,
    /// Who gets hemiBTC on L2.
    pub recipient: Address,
    /// Which format named the recipient.
    pub format: DepositFormat,
}

/// The recipient an `OP_RETURN` script names, and in which form.
///
/// # Errors
/// [`DepositError`] naming the rule the script breaks.
pub fn op_return_recipient(script: &Script) -> Result<(Address, DepositFormat), DepositError> {
    let b = script.as_bytes();
    let (push, data) = match b {
        [0x6a, push, data @ ..] if data.len() == 20 || data.len() == 40 => (*push, data),
        _ => return Err(DepositError::MalformedOpReturn { len: b.len() }),
    };
    if usize::from(push) != data.len() {
        return Err(DepositError::PushMismatch {
            push,
            data_len: data.len(),
        });
    }
    let (recipient, format) = if data.len() == 20 {
        (Address::from_slice(data), DepositFormat::OpReturnAddress)
    } else {
        let text = String::from_utf8_lossy(data).into_owned();
        if !data.iter().all(u8::is_ascii_hexdigit) {
            return Err(DepositError::BadHex(text));
        }
        let bytes = hex::decode(data).map_err(|_| DepositError::BadHex(text))?;
        (Address::from_slice(&bytes), DepositFormat::OpReturnHex)
    };
    if recipient == Address::ZERO {
        return Err(DepositError::ZeroRecipient);
    }
    Ok((recipient, format))
}

/// Finds a Hemi-compatible deposit in `tx`: the one output paying `vault` and the one
/// `OP_RETURN` naming the recipient, in a transaction of at most 128 outputs (what the
/// contract can read through the hVM). `Ok(None)` when `tx` does not pay the vault at all.
///
/// # Errors
/// [`DepositError`] when `tx` pays the vault but is not a well-formed deposit: several vault
/// outputs, no or several `OP_RETURN`s, or one of another shape.
pub fn parse_op_return_deposit(
    tx: &Transaction,
    vault: &Script,
) -> Result<Option<Deposit>, DepositError> {
    let Some(vout) = single_output_paying(tx, vault)? else {
        return Ok(None);
    };
    if tx.output.len() > crate::contracts::MAX_DEPOSIT_OUTPUTS {
        return Err(DepositError::TooManyOutputs {
            count: tx.output.len(),
        });
    }
    let returns: Vec<&Script> = tx
        .output
        .iter()
        .map(|o| o.script_pubkey.as_script())
        .filter(|s| s.is_op_return())
        .collect();
    let script = match returns.as_slice() {
        [] => return Err(DepositError::NoRecipient),
        [one] => *one,
        many => return Err(DepositError::MultipleOpReturns { count: many.len() }),
    };
    let (recipient, format) = op_return_recipient(script)?;
    Ok(Some(Deposit {
        outpoint: OutPoint::new(tx.compute_txid(), vout as u32),
        amount: tx.output[vout].value,
        recipient,
        format,
    }))
}

/// The one output of `tx` paying `script`, `None` if none does.
///
/// # Errors
/// [`DepositError::MultipleVaultOutputs`] when several do (which one is the deposit is
/// ambiguous).
fn single_output_paying(tx: &Transaction, script: &Script) -> Result<Option<usize>, DepositError> {
    let mut paying = tx
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| o.script_pubkey.as_script() == script)
        .map(|(i, _)| i);
    let first = paying.next();
    match paying.count() {
        0 => Ok(first),
        more => Err(DepositError::MultipleVaultOutputs { count: more + 1 }),
    }
}

fn secp() -> &'static Secp256k1<VerifyOnly> {
    static SECP: OnceLock<Secp256k1<VerifyOnly>> = OnceLock::new();
    SECP.get_or_init(Secp256k1::verification_only)
}

/// The NUMS point as a key.
///
/// # Panics
/// Never: [`NUMS_KEY`] is a valid x-only key (checked by a unit test).
#[allow(clippy::expect_used)] // a constant, checked by a test
fn nums_key() -> XOnlyPublicKey {
    XOnlyPublicKey::from_slice(&NUMS_KEY).expect("the BIP-341 NUMS point is a valid key")
}

/// A taproot deposit output with a reclaim path (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaprootDeposit {
    /// The L2 chain id the deposit is for (a deposit for another chain is not minted here).
    pub chain_id: u64,
    /// Who gets hemiBTC on L2.
    pub recipient: Address,
    /// The most the tunnel may keep as its fee, in satoshis.
    pub max_fee: Amount,
    /// The vault's output key (the taproot key its address pays): the custodians spend the
    /// deposit leaf with it, signing with the FROST key tweaked as for key-path payouts.
    pub vault_key: XOnlyPublicKey,
    /// The depositor's key: it spends the reclaim leaf after `reclaim_after` blocks.
    pub depositor_key: XOnlyPublicKey,
    /// Blocks (a BIP-68 relative height, 1..=65535) before the depositor may reclaim.
    pub reclaim_after: u16,
}

impl TaprootDeposit {
    /// `<version ‖ chain id ‖ recipient ‖ max fee> OP_DROP <vault key> OP_CHECKSIG`.
    pub fn deposit_leaf(&self) -> ScriptBuf {
        let mut data = [0u8; DEPOSIT_DATA_LEN];
        data[0] = DEPOSIT_LEAF_VERSION;
        data[1..9].copy_from_slice(&self.chain_id.to_be_bytes());
        data[9..29].copy_from_slice(self.recipient.as_slice());
        data[29..37].copy_from_slice(&self.max_fee.to_sat().to_be_bytes());
        Builder::new()
            .push_slice(data)
            .push_opcode(OP_DROP)
            .push_x_only_key(&self.vault_key)
            .push_opcode(OP_CHECKSIG)
            .into_script()
    }

    /// `<N> OP_CHECKSEQUENCEVERIFY OP_DROP <depositor key> OP_CHECKSIG`.
    pub fn reclaim_leaf(&self) -> ScriptBuf {
        Builder::new()
            .push_int(i64::from(self.reclaim_after))
            .push_opcode(OP_CSV)
            .push_opcode(OP_DROP)
            .push_x_only_key(&self.depositor_key)
            .push_opcode(OP_CHECKSIG)
            .into_script()
    }

    /// The script tree (both leaves at depth 1) over the NUMS internal key.
    #[allow(clippy::expect_used)] // two leaves at depth 1 always make a complete tree
    pub fn spend_info(&self) -> TaprootSpendInfo {
        let built = TaprootBuilder::new()
            .add_leaf(1, self.deposit_leaf())
            .and_then(|b| b.add_leaf(1, self.reclaim_leaf()));
        built
            .ok()
            .and_then(|b| b.finalize(secp(), nums_key()).ok())
            .expect("two leaves at depth 1 form a complete tree")
    }

    /// The output script that locks the deposit (P2TR of the tweaked output key).
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.spend_info().output_key())
    }

    /// The deposit's parameters from its two leaves, as a depositor reveals them.
    ///
    /// # Errors
    /// [`DepositError::DepositLeaf`] / [`DepositError::ReclaimLeaf`] naming what is wrong: not
    /// the shape, another version, a zero recipient or timelock, or any byte that differs from
    /// the leaf these parameters build (a non-minimal push, say).
    pub fn from_leaves(deposit_leaf: &Script, reclaim_leaf: &Script) -> Result<Self, DepositError> {
        let d = DepositError::DepositLeaf;
        let ins: Vec<Instruction<'_>> = deposit_leaf
            .instructions()
            .collect::<Result<_, _>>()
            .map_err(|_| d("does not parse as a script"))?;
        let (data, vault) = match ins.as_slice() {
            [Instruction::PushBytes(data), Instruction::Op(drop), Instruction::PushBytes(key), Instruction::Op(check)]
                if *drop == OP_DROP && *check == OP_CHECKSIG =>
            {
                (data.as_bytes(), key.as_bytes())
            }
            _ => return Err(d("not <data> OP_DROP <vault key> OP_CHECKSIG")),
        };
        if data.len() != DEPOSIT_DATA_LEN {
            return Err(d("the data push is not 37 bytes"));
        }
        if data[0] != DEPOSIT_LEAF_VERSION {
            return Err(d("unknown version"));
        }
        let vault_key = XOnlyPublicKey::from_slice(vault).map_err(|_| d("bad vault key"))?;
        let mut chain_id = [0u8; 8];
        chain_id.copy_from_slice(&data[1..9]);
        let recipient = Address::from_slice(&data[9..29]);
        if recipient == Address::ZERO {
            return Err(DepositError::ZeroRecipient);
        }
        let mut fee = [0u8; 8];
        fee.copy_from_slice(&data[29..37]);

        let r = DepositError::ReclaimLeaf;
        let ins: Vec<Instruction<'_>> = reclaim_leaf
            .instructions()
            .collect::<Result<_, _>>()
            .map_err(|_| r("does not parse as a script"))?;
        let (n, depositor) = match ins.as_slice() {
            [n, Instruction::Op(csv), Instruction::Op(drop), Instruction::PushBytes(key), Instruction::Op(check)]
                if *csv == OP_CSV && *drop == OP_DROP && *check == OP_CHECKSIG =>
            {
                (n, key.as_bytes())
            }
            _ => return Err(r("not <N> OP_CSV OP_DROP <depositor key> OP_CHECKSIG")),
        };
        let n = match n {
            // OP_PUSHNUM_1 ..= OP_PUSHNUM_16.
            Instruction::Op(op) if (0x51..=0x60).contains(&op.to_u8()) => {
                i64::from(op.to_u8() - 0x50)
            }
            Instruction::Op(_) => return Err(r("the timelock is not a number")),
            Instruction::PushBytes(b) => bitcoin::script::read_scriptint(b.as_bytes())
                .map_err(|_| r("the timelock is not a number"))?,
        };
        let reclaim_after = u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(r("the timelock is not 1..=65535 blocks"))?;
        let depositor_key =
            XOnlyPublicKey::from_slice(depositor).map_err(|_| r("bad depositor key"))?;
        let parsed = TaprootDeposit {
            chain_id: u64::from_be_bytes(chain_id),
            recipient,
            max_fee: Amount::from_sat(u64::from_be_bytes(fee)),
            vault_key,
            depositor_key,
            reclaim_after,
        };
        if parsed.deposit_leaf().as_script() != deposit_leaf {
            return Err(d("not in its canonical encoding"));
        }
        if parsed.reclaim_leaf().as_script() != reclaim_leaf {
            return Err(r("not in its canonical encoding"));
        }
        Ok(parsed)
    }

    /// The hint a depositor adds beside the deposit output so that anyone can rebuild the
    /// leaves (a taproot output hides them): `OP_RETURN <"HEMT" ‖ version ‖ chain id ‖ recipient
    /// ‖ max fee ‖ depositor key ‖ reclaim blocks>`, 75 bytes pushed (77 in all, under the
    /// 83-byte standard `OP_RETURN` limit). The vault key is not repeated: it is the tunnel's.
    pub fn hint_script(&self) -> ScriptBuf {
        let mut data = Vec::with_capacity(HINT_LEN);
        data.extend_from_slice(&TAPROOT_HINT_TAG);
        data.push(DEPOSIT_LEAF_VERSION);
        data.extend_from_slice(&self.chain_id.to_be_bytes());
        data.extend_from_slice(self.recipient.as_slice());
        data.extend_from_slice(&self.max_fee.to_sat().to_be_bytes());
        data.extend_from_slice(&self.depositor_key.serialize());
        data.extend_from_slice(&self.reclaim_after.to_be_bytes());
        op_return_script(&data)
    }

    /// The deposit a hint describes for the vault `vault_key`; `None` if `script` is not an
    /// `OP_RETURN` tagged `HEMT`.
    ///
    /// # Errors
    /// [`DepositError::BadHint`] for a tagged `OP_RETURN` of another length, push opcode or
    /// version, or with a bad key, zero recipient or zero timelock.
    pub fn from_hint(
        script: &Script,
        vault_key: XOnlyPublicKey,
    ) -> Result<Option<Self>, DepositError> {
        let b = script.as_bytes();
        let h = DepositError::BadHint;
        match b {
            [0x6a, _, tag @ ..] if tag.starts_with(&TAPROOT_HINT_TAG) => {}
            [0x6a, 0x4c, _, tag @ ..] if tag.starts_with(&TAPROOT_HINT_TAG) => {}
            _ => return Ok(None),
        }
        let data = match b {
            [0x6a, push, data @ ..] if usize::from(*push) == HINT_LEN && data.len() == HINT_LEN => {
                data
            }
            _ => return Err(h("not OP_RETURN with one 75-byte push")),
        };
        if data[4] != DEPOSIT_LEAF_VERSION {
            return Err(h("unknown version"));
        }
        let mut chain_id = [0u8; 8];
        chain_id.copy_from_slice(&data[5..13]);
        let recipient = Address::from_slice(&data[13..33]);
        if recipient == Address::ZERO {
            return Err(DepositError::ZeroRecipient);
        }
        let mut fee = [0u8; 8];
        fee.copy_from_slice(&data[33..41]);
        let depositor_key =
            XOnlyPublicKey::from_slice(&data[41..73]).map_err(|_| h("bad depositor key"))?;
        let reclaim_after = u16::from_be_bytes([data[73], data[74]]);
        if reclaim_after == 0 {
            return Err(h("the timelock is zero blocks"));
        }
        Ok(Some(TaprootDeposit {
            chain_id: u64::from_be_bytes(chain_id),
            recipient,
            max_fee: Amount::from_sat(u64::from_be_bytes(fee)),
            vault_key,
            depositor_key,
            reclaim_after,
        }))
    }

    /// Why `TunnelManager.confirmDeposit` would refuse this deposit at `confirmations` on L2
    /// chain `chain_id` with the tunnel's `deposit_fee` (satoshis), as a sentence; `None` if
    /// these rules pass (the amount, the minimum and "minted once" are checked as for every
    /// deposit). The contract's rules, in its order.
    pub fn mint_refusal(
        &self,
        chain_id: u64,
        deposit_fee: u64,
        confirmations: u32,
    ) -> Option<String> {
        if self.chain_id != chain_id {
            return Some(format!(
                "a taproot deposit for chain id {}, not this chain's {chain_id}",
                self.chain_id
            ));
        }
        if deposit_fee > self.max_fee.to_sat() {
            return Some(format!(
                "the tunnel's fee of {deposit_fee} sat is above the deposit's max fee of {} sat",
                self.max_fee.to_sat()
            ));
        }
        let needed = u64::from(confirmations) + u64::from(crate::contracts::SWEEP_BLOCKS);
        if needed > u64::from(self.reclaim_after) {
            return Some(format!(
                "its reclaim path opens after {} blocks; minting at {confirmations} \
                 confirmations needs at least {needed} (the custodians' {} blocks to sweep it)",
                self.reclaim_after,
                crate::contracts::SWEEP_BLOCKS
            ));
        }
        None
    }

    /// The output of `tx` this deposit locks, as a [`Deposit`]; `None` if no output pays it.
    ///
    /// # Errors
    /// [`DepositError::MultipleVaultOutputs`] when several outputs pay it.
    pub fn find_in(&self, tx: &Transaction) -> Result<Option<Deposit>, DepositError> {
        Ok(
            single_output_paying(tx, &self.script_pubkey())?.map(|vout| Deposit {
                outpoint: OutPoint::new(tx.compute_txid(), vout as u32),
                amount: tx.output[vout].value,
                recipient: self.recipient,
                format: DepositFormat::Taproot,
            }),
        )
    }
}

/// The taproot deposit `tx` makes to the vault key `vault_key`, found through its `HEMT` hint;
/// `None` when no output is a hint.
///
/// # Errors
/// [`DepositError::MultipleOpReturns`] for several hints, [`DepositError::BadHint`] and the
/// like for a malformed one, [`DepositError::TaprootOutputMissing`] when no output pays what
/// the hint describes, [`DepositError::MultipleVaultOutputs`] when several do.
pub fn find_taproot_deposit(
    tx: &Transaction,
    vault_key: XOnlyPublicKey,
) -> Result<Option<(TaprootDeposit, Deposit)>, DepositError> {
    let mut hints = Vec::new();
    for out in &tx.output {
        if let Some(d) = TaprootDeposit::from_hint(&out.script_pubkey, vault_key)? {
            hints.push(d);
        }
    }
    let deposit = match hints.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        more => return Err(DepositError::MultipleOpReturns { count: more.len() }),
    };
    match deposit.find_in(tx)? {
        Some(found) => Ok(Some((deposit, found))),
        None => Err(DepositError::TaprootOutputMissing {
            script: deposit.script_pubkey(),
        }),
    }
}

/// An `OP_RETURN` script with `data` pushed after it (for building deposits and tests).
pub fn op_return_script(data: &[u8]) -> ScriptBuf {
    let mut b = vec![0x6a];
    match PushBytesBuf::try_from(data.to_vec()) {
        Ok(push) => b.extend_from_slice(Builder::new().push_slice(push).into_script().as_bytes()),
        Err(_) => b.extend_from_slice(data),
    }
    ScriptBuf::from_bytes(b)
}

#[cfg(test)]
mod tests;
