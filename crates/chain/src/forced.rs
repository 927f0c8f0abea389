//! Forced inclusion through Bitcoin: an L2 transaction published in a Bitcoin transaction must
//! be in the L2 chain within a window of blocks once Bitcoin has confirmed it, or followers
//! refuse the block that lets the window pass.
//!
//! # Format (version 1)
//!
//! The data, in pushes of at most 520 bytes each, concatenated:
//!
//! ```text
//! "HEMF" ‖ 0x01 ‖ chain_id (8 bytes, big-endian) ‖ EIP-2718 transaction
//! ```
//!
//! It travels in one of two carriers ([`Carrier`]):
//! - **an OP_RETURN output** `OP_RETURN <push>…` ([`forced_script`]). Bitcoin Core relays
//!   OP_RETURN outputs of up to 100,000 bytes since v30; their bytes pay the full fee rate.
//! - **a taproot script-path envelope** (as inscriptions carry data): a tapscript leaf with
//!   `OP_0 OP_IF <push>… OP_ENDIF`, never executed, revealed by spending the output that commits
//!   to the leaf ([`envelope_leaf`]). Witness bytes pay a quarter of the rate, so a large
//!   transaction costs a commit and a reveal transaction but far less fee, and its size is
//!   bounded only by Bitcoin's standard transaction weight (a 128 KiB L2 transaction at the
//!   pool's limit fits). An input counts when its witness is a script-path spend of a tapscript
//!   leaf (BIP-341's layout, leaf version 0xc0) that holds such an envelope.
//!
//! Within a Bitcoin transaction, envelopes in its inputs (input order, then envelope order
//! within a leaf) come before its OP_RETURN outputs (output order). Envelopes count only on a
//! chain whose spec says so ([`ForcedInclusionParams::taproot_envelopes`]: chains made before
//! they existed keep reading OP_RETURN outputs alone). Without the spent outputs, "a
//! script-path spend" means a witness of that shape: the rule is the same on every node.
//!
//! # The rule
//!
//! Let `C` = confirmations and `W` = window ([`ForcedInclusionParams`]). A forced transaction
//! in the Bitcoin block at height `h` is *due* from the first L2 block `a` whose pinned Bitcoin
//! tip has it `C` deep (`pin(a).height ≥ h + C − 1`); block `a + W − 1` is its deadline. The
//! deadline block's due list is every forced transaction of the Bitcoin blocks at heights
//! `(pin(a−1).height − C + 1, pin(a).height − C + 1]` on the chain of block `a + W − 1`'s own
//! pin (so a Bitcoin reorg since block `a` changes which blocks are read, never stops the
//! chain), in Bitcoin order, only user transactions signed for this chain id, not already in the
//! L2 chain, at most [`MAX_FORCED_PER_BLOCK`] ([`Chain::forced_due`]). A reorg that replaces
//! blocks at heights an earlier deadline already scanned is not scanned again: republish. Of that list, those that are valid when
//! executed in order right after the block's system transactions must be in the block
//! ([`Chain::forced_required`]); the others (a bad signature, a spent nonce, no funds) are
//! skipped by rule, the same on every node. Each is judged on its own (rule 2; under rule 1,
//! kept by chains made before it, one that cannot apply also keeps out its sender's later ones). A sequencer puts them first among its user
//! transactions and may include them earlier.

use std::sync::Arc;

use alloy_primitives::B256;
use bitcoin::blockdata::opcodes::all::{OP_CHECKSIG, OP_ENDIF, OP_IF, OP_PUSHBYTES_0, OP_RETURN};
use bitcoin::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::secp256k1::XOnlyPublicKey;
use bitcoin::taproot::LeafVersion;
use bitcoin::{BlockHash, Script, ScriptBuf, Txid};
use hemi_btc_view::BitcoinView;
use hemi_hvm::BitcoinPin;

use crate::exec::{self, Mode};
use crate::tx::{L2Tx, SignedTx};
use crate::{BlockError, Chain, ChainError};

/// The tag at the start of a forced transaction's data.
pub const FORCED_TAG: &[u8; 4] = b"HEMF";
/// The format version after the tag.
pub const FORCED_VERSION: u8 = 1;
/// Largest single push in the OP_RETURN output (Bitcoin's script element limit).
pub const MAX_PUSH: usize = 520;
/// Most forced transactions one block's due list holds; more in the scanned Bitcoin blocks are
/// dropped (so censoring one costs a thousand funded-looking outputs ahead of it, see the module
/// docs).
pub const MAX_FORCED_PER_BLOCK: usize = 1_024;
/// Most Bitcoin blocks one deadline block scans (pins that jump further are scanned in part).
pub const MAX_SCAN_BLOCKS: u32 = 1_008;

/// The forced-inclusion parameters of a chain (part of consensus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForcedInclusionParams {
    /// Bitcoin confirmations (in an L2 block's pinned view) before the window opens.
    pub confirmations: u32,
    /// L2 blocks from the first block that sees the confirmations to the deadline, inclusive.
    pub window: u64,
    /// Whether taproot envelopes carry forced transactions beside OP_RETURN outputs. Chains
    /// made before envelopes existed read OP_RETURN outputs only: absent from a stored or
    /// reported spec, it is false, so no chain's rule changes under it.
    #[serde(default)]
    pub taproot_envelopes: bool,
    /// The rule's version. 1 (absent from a stored or reported spec): a due forced
    /// transaction that cannot apply keeps its sender's later ones out too, as a block builder
    /// holds back a sender. 2 (every chain made from now on): each is judged on its own, in
    /// order, as the rule says (one of a sender's that cannot apply, say a nonce far ahead,
    /// leaves the next one due).
    #[serde(default = "rule_v1", skip_serializing_if = "is_rule_v1")]
    pub rule: u32,
}

fn rule_v1() -> u32 {
    1
}

/// Refuses a forced-inclusion rule this build does not know (1 and 2 it does).
///
/// # Errors
/// [`ChainError::UnknownRule`].
pub fn check_rule(rule: u32) -> Result<(), ChainError> {
    match rule {
        1 | 2 => Ok(()),
        other => Err(ChainError::UnknownRule(format!(
            "forcedInclusion.rule {other}: this build knows rules 1 and 2"
        ))),
    }
}

impl Chain {
    /// How blocks of this chain are assembled, and the due list judged: rule 1 holds a sender
    /// back after one of its transactions is skipped, rule 2 judges each on its own. The
    /// builder and the forced-inclusion check use the same mode, so they agree on which due
    /// transactions fit.
    pub(crate) fn build_mode(&self) -> Mode {
        match self.spec().forced_inclusion.map_or(2, |p| p.rule) {
            1 => Mode::BuildHoldingBack,
            _ => Mode::Build,
        }
    }
}

fn is_rule_v1(v: &u32) -> bool {
    *v == 1
}

/// How a forced transaction is carried in its Bitcoin transaction (see the [module](self) docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// An OP_RETURN output.
    OpReturn,
    /// A taproot script-path envelope in an input's witness.
    Taproot,
}

impl Carrier {
    /// The name RPC answers use: `opReturn` or `taproot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::OpReturn => "opReturn",
            Carrier::Taproot => "taproot",
        }
    }
}

/// A forced transaction found in Bitcoin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedTx {
    /// The Bitcoin transaction that carries it.
    pub btc_txid: Txid,
    /// How it is carried there.
    pub carrier: Carrier,
    /// Its Bitcoin block's height.
    pub height: u32,
    /// Its Bitcoin block's hash.
    pub block: BlockHash,
    /// The L2 transaction.
    pub tx: L2Tx,
    /// The L2 transaction hash.
    pub hash: B256,
}

/// The data both carriers hold: tag, version, chain id, transaction.
fn forced_data(chain_id: u64, raw_tx: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(13 + raw_tx.len());
    data.extend_from_slice(FORCED_TAG);
    data.push(FORCED_VERSION);
    data.extend_from_slice(&chain_id.to_be_bytes());
    data.extend_from_slice(raw_tx);
    data
}

/// Appends `data` to `b` in pushes of at most [`MAX_PUSH`] bytes.
fn push_chunks(mut b: Builder, data: &[u8]) -> Builder {
    for chunk in data.chunks(MAX_PUSH) {
        let mut push = PushBytesBuf::new();
        // A chunk is at most 520 bytes: always a valid push.
        let _ = push.extend_from_slice(chunk);
        b = b.push_slice(push);
    }
    b
}

/// Chain id and transaction bytes of `data`; `None` unless it starts with the tag and version 1.
fn parse_forced_data(data: &[u8]) -> Option<(u64, Vec<u8>)> {
    if data.len() < 13 || &data[..4] != FORCED_TAG || data[4] != FORCED_VERSION {
        return None;
    }
    let chain_id = u64::from_be_bytes(data[5..13].try_into().ok()?);
    Some((chain_id, data[13..].to_vec()))
}

/// The OP_RETURN script that publishes `raw_tx` (EIP-2718 bytes) for chain `chain_id`.
pub fn forced_script(chain_id: u64, raw_tx: &[u8]) -> ScriptBuf {
    let b = Builder::new().push_opcode(OP_RETURN);
    push_chunks(b, &forced_data(chain_id, raw_tx)).into_script()
}

/// Reads a forced transaction's chain id and raw bytes from an output script; `None` unless it
/// is an OP_RETURN of data pushes that starts with the tag and version 1.
pub fn decode_forced_script(script: &Script) -> Option<(u64, Vec<u8>)> {
    let mut ins = script.instructions();
    match ins.next()? {
        Ok(Instruction::Op(op)) if op == OP_RETURN => {}
        _ => return None,
    }
    let mut data = Vec::new();
    for i in ins {
        match i.ok()? {
            Instruction::PushBytes(p) => data.extend_from_slice(p.as_bytes()),
            Instruction::Op(_) => return None,
        }
    }
    parse_forced_data(&data)
}

/// The tapscript leaf that publishes `raw_tx` for chain `chain_id` in a taproot envelope:
/// `<key> OP_CHECKSIG OP_0 OP_IF <push>… OP_ENDIF`, spendable only by `key`'s signature (so no
/// one else can spend the commit output and publish something else in its place).
pub fn envelope_leaf(key: &XOnlyPublicKey, chain_id: u64, raw_tx: &[u8]) -> ScriptBuf {
    let b = Builder::new()
        .push_x_only_key(key)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_PUSHBYTES_0)
        .push_opcode(OP_IF);
    push_chunks(b, &forced_data(chain_id, raw_tx))
        .push_opcode(OP_ENDIF)
        .into_script()
}

/// Every forced transaction's chain id and raw bytes in a tapscript leaf, in order: each
/// `OP_0 OP_IF <push>… OP_ENDIF` whose pushes are the tag and version 1 (a non-push before
/// `OP_ENDIF` voids that envelope). Bytes that do not parse as a script end the scan.
pub fn decode_envelopes(script: &Script) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut prev_empty_push = false;
    let mut ins = script.instructions();
    while let Some(Ok(i)) = ins.next() {
        let opens = prev_empty_push && matches!(i, Instruction::Op(op) if op == OP_IF);
        prev_empty_push = matches!(i, Instruction::PushBytes(p) if p.is_empty());
        if !opens {
            continue;
        }
        let mut data = Vec::new();
        let mut closed = false;
        for i in ins.by_ref() {
            match i {
                Ok(Instruction::PushBytes(p)) => data.extend_from_slice(p.as_bytes()),
                Ok(Instruction::Op(op)) if op == OP_ENDIF => {
                    closed = true;
                    break;
                }
                _ => break,
            }
        }
        if closed {
            out.extend(parse_forced_data(&data));
        }
    }
    out
}

/// The tapscript leaf an input's witness reveals, if it is a script-path spend of leaf version
/// 0xc0 with a control block of BIP-341's shape.
fn revealed_leaf(witness: &bitcoin::Witness) -> Option<&Script> {
    let leaf = witness.taproot_leaf_script()?;
    let control = witness.taproot_control_block()?;
    let shaped = control.len() >= 33 && (control.len() - 33) % 32 == 0;
    (shaped && leaf.version == LeafVersion::TapScript).then_some(leaf.script)
}

/// The forced transactions for chain `chain_id` in Bitcoin block `hash` (height `height`), in
/// block order, from OP_RETURN outputs and, if `taproot`, envelopes too. Only user transaction
/// types count; bytes that do not decode are skipped. Cached by block hash (blocks are
/// immutable).
///
/// # Errors
/// [`ChainError::BitcoinNotReady`] when the block's data is not in the view.
pub fn forced_in(
    view: &dyn BitcoinView,
    height: u32,
    hash: BlockHash,
    chain_id: u64,
    taproot: bool,
) -> Result<Arc<Vec<ForcedTx>>, ChainError> {
    use std::sync::Mutex;
    type Cache = std::collections::VecDeque<((BlockHash, u64, bool), Arc<Vec<ForcedTx>>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Cache::new());
    const KEEP: usize = 256;
    let key = (hash, chain_id, taproot);
    if let Ok(c) = CACHE.lock() {
        if let Some((_, f)) = c.iter().find(|(k, _)| *k == key) {
            return Ok(f.clone());
        }
    }
    let txs = view
        .block_transactions(&hash)
        .map_err(|e| ChainError::BitcoinNotReady(e.to_string()))?
        .ok_or_else(|| {
            ChainError::BitcoinNotReady(format!("block {hash} at height {height} is not indexed"))
        })?;
    let mut found = Vec::new();
    for tx in &txs {
        let revealed = tx
            .input
            .iter()
            .filter(|_| taproot)
            .filter_map(|i| revealed_leaf(&i.witness))
            // Cheap test first: an envelope's `OP_0 OP_IF` are two adjacent bytes of its leaf,
            // so a leaf without them holds none (the tag itself may be split across pushes).
            .filter(|s| s.as_bytes().windows(2).any(|w| w == [0x00, 0x63]))
            .flat_map(|s| decode_envelopes(s).into_iter().map(|d| (Carrier::Taproot, d)));
        let outputs = tx.output.iter().filter_map(|out| {
            decode_forced_script(&out.script_pubkey).map(|d| (Carrier::OpReturn, d))
        });
        for (carrier, (id, raw)) in revealed.chain(outputs) {
            if id != chain_id {
                continue;
            }
            // Only what could ever run here counts: a user transaction signed for this chain.
            let Ok(l2 @ L2Tx::Eth(_)) = L2Tx::decode_2718(&raw) else {
                continue;
            };
            let L2Tx::Eth(env) = &l2 else { continue };
            if alloy_consensus::Transaction::chain_id(env) != Some(chain_id)
                || l2.recover_sender().is_err()
            {
                continue;
            }
            found.push(ForcedTx {
                btc_txid: tx.compute_txid(),
                carrier,
                height,
                block: hash,
                hash: l2.hash(),
                tx: l2,
            });
        }
    }
    let found = Arc::new(found);
    if let Ok(mut c) = CACHE.lock() {
        if c.len() >= KEEP {
            c.pop_front();
        }
        c.push_back((key, found.clone()));
    }
    Ok(found)
}

impl Chain {
    /// The due list of block `number` (see the [module](self) docs): forced transactions whose
    /// deadline is `number`, not already in the chain. `pin` is block `number`'s own pin
    /// (used when the window is one block).
    ///
    /// # Errors
    /// Database errors; [`ChainError::BitcoinNotReady`] when a Bitcoin block to scan is not in
    /// the view.
    pub fn forced_due(&self, number: u64, pin: &BitcoinPin) -> Result<Vec<ForcedTx>, ChainError> {
        let Some(p) = self.spec().forced_inclusion else {
            return Ok(Vec::new());
        };
        let window = p.window.max(1);
        let confirmations = p.confirmations.max(1);
        let Some(a) = (number + 1).checked_sub(window).filter(|a| *a >= 1) else {
            return Ok(Vec::new());
        };
        let pin_a = if a == number {
            pin.pinned
        } else {
            self.pin(a)?
                .ok_or_else(|| ChainError::Corrupt(format!("block {a} has no Bitcoin pin")))?
        };
        let Some(hi) = (pin_a.height + 1).checked_sub(confirmations) else {
            return Ok(Vec::new());
        };
        let lo = self
            .pin(a - 1)?
            .and_then(|p| (p.height + 1).checked_sub(confirmations));
        let start = match lo {
            Some(lo) if lo >= hi => return Ok(Vec::new()),
            Some(lo) => lo + 1,
            None => hi,
        }
        .max(hi.saturating_sub(MAX_SCAN_BLOCKS - 1));
        // The blocks at those heights on the chain of this block's own pin (pin(a) itself may
        // have been reorged out since; this block's pin is on our best chain, so the best
        // chain's block at each height is its ancestor).
        let view = pin.view.as_ref();
        let not_ready = |e: hemi_btc_view::ViewError| ChainError::BitcoinNotReady(e.to_string());
        match view.header_at(pin.pinned.height).map_err(not_ready)? {
            Some((b, _)) if b.hash == pin.pinned.hash => {}
            _ => {
                return Err(ChainError::BitcoinNotReady(format!(
                    "block {number}'s pin {} is not on our best Bitcoin chain",
                    pin.pinned.hash
                )))
            }
        }
        let mut blocks = Vec::new();
        for height in start..=hi.min(pin.pinned.height) {
            let (b, _) = view.header_at(height).map_err(not_ready)?.ok_or_else(|| {
                ChainError::BitcoinNotReady(format!("no Bitcoin block at height {height}"))
            })?;
            blocks.push((height, b.hash));
        }
        let mut due: Vec<ForcedTx> = Vec::new();
        for (h, hash) in blocks {
            for f in forced_in(view, h, hash, self.spec().chain_id, p.taproot_envelopes)?.iter() {
                if due.len() == MAX_FORCED_PER_BLOCK {
                    return Ok(due);
                }
                if due.iter().any(|d| d.hash == f.hash) || self.tx_location(&f.hash)?.is_some() {
                    continue;
                }
                due.push(f.clone());
            }
        }
        Ok(due)
    }

    /// Of `due` (block `number`'s due list), the transactions block `number` must carry: those
    /// valid when executed in order after `system` (the block's system transactions) and `dev`
    /// (its devnet state changes) on the head's state — the prefix a built block starts with.
    /// Their hashes, in order.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn forced_required(
        &self,
        ctx: &exec::BlockContext,
        pin: &BitcoinPin,
        system: &[L2Tx],
        dev: &[L2Tx],
        due: &[ForcedTx],
    ) -> Result<Vec<B256>, ChainError> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut txs = Vec::with_capacity(system.len() + due.len());
        for tx in system {
            txs.push(SignedTx::recover(tx.clone())?);
        }
        // The devnet's state changes come before the due list in a built block.
        for tx in dev {
            txs.push(SignedTx::recover(tx.clone())?);
        }
        txs.extend(forced_signed(due));
        let (view, _) = self.latest_view()?;
        let executed = exec::execute(view, ctx, pin.clone(), txs, self.build_mode())?;
        Ok(executed
            .txs
            .iter()
            .filter(|t| due.iter().any(|d| d.hash == t.hash))
            .map(|t| t.hash)
            .collect())
    }

    /// Checks that block `number` carries every forced transaction it must.
    ///
    /// # Errors
    /// [`BlockError::ForcedTxMissing`] naming the first one left out.
    pub(crate) fn check_forced(
        &self,
        ctx: &exec::BlockContext,
        pin: &BitcoinPin,
        system: &[L2Tx],
        block_txs: &[L2Tx],
    ) -> Result<(), ChainError> {
        // A censoring node (test flag) also votes for its own kind of block: what a set of
        // which more than a third is faulty does. Its followers still check.
        if self.skip_forced.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let due = self.forced_due(ctx.number, pin)?;
        if due.is_empty() {
            return Ok(());
        }
        let dev: Vec<L2Tx> = block_txs
            .iter()
            .filter(|t| matches!(t, L2Tx::DevState(_)))
            .cloned()
            .collect();
        for hash in self.forced_required(ctx, pin, system, &dev, &due)? {
            if !block_txs.iter().any(|t| t.hash() == hash) {
                let f = due.iter().find(|d| d.hash == hash);
                return Err(BlockError::ForcedTxMissing {
                    number: ctx.number,
                    tx: hash,
                    btc_txid: f.map(|f| f.btc_txid.to_string()).unwrap_or_default(),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The due list's transactions with their senders (ones that do not recover are left out:
/// invalid by rule).
pub(crate) fn forced_signed(due: &[ForcedTx]) -> Vec<SignedTx> {
    due.iter()
        .filter_map(|f| SignedTx::recover(f.tx.clone()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_round_trip_and_refusals() {
        for len in [0usize, 1, 100, 507, 508, 1_500, 99_000] {
            let raw: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let s = forced_script(31337, &raw);
            assert!(s.is_op_return());
            assert_eq!(decode_forced_script(&s), Some((31337, raw)));
        }
        // Another tag, another version, a non-push opcode, not OP_RETURN.
        let mut s = forced_script(1, b"x").to_bytes();
        s[3] = b'X';
        assert_eq!(decode_forced_script(Script::from_bytes(&s)), None);
        let mut s = forced_script(1, b"x").to_bytes();
        s[6] = 2;
        assert_eq!(decode_forced_script(Script::from_bytes(&s)), None);
        let mut s = forced_script(1, b"x").to_bytes();
        s.push(0xac);
        assert_eq!(decode_forced_script(Script::from_bytes(&s)), None);
        let s = forced_script(1, b"x").to_bytes();
        assert_eq!(decode_forced_script(Script::from_bytes(&s[1..])), None);
        assert_eq!(
            decode_forced_script(Script::from_bytes(&[0x6a, 0x4d])),
            None
        );
    }

    #[test]
    fn envelope_round_trip_and_refusals() {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[0x22; 32]).expect("key");
        let key = sk.x_only_public_key(&secp).0;
        for len in [0usize, 1, 507, 508, 1_500, 131_072] {
            let raw: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let leaf = envelope_leaf(&key, 43111, &raw);
            assert_eq!(decode_envelopes(&leaf), vec![(43111, raw)]);
        }
        // Two envelopes in one leaf, in order; a non-push inside voids only its own.
        let a = envelope_leaf(&key, 1, b"first").to_bytes();
        let b = envelope_leaf(&key, 1, b"second").to_bytes();
        let two = [a.clone(), b[34..].to_vec()].concat();
        assert_eq!(
            decode_envelopes(Script::from_bytes(&two)),
            vec![(1, b"first".to_vec()), (1, b"second".to_vec())]
        );
        let mut broken = a.clone();
        let endif = broken.len() - 1;
        broken.insert(endif, 0x75); // OP_DROP before OP_ENDIF
        let with_broken = [broken, b[34..].to_vec()].concat();
        assert_eq!(
            decode_envelopes(Script::from_bytes(&with_broken)),
            vec![(1, b"second".to_vec())]
        );
        // Unclosed, not opened by OP_0, another tag: nothing.
        assert!(decode_envelopes(Script::from_bytes(&a[..a.len() - 1])).is_empty());
        let mut opened_by_1 = a.clone();
        opened_by_1[34] = 0x51;
        assert!(decode_envelopes(Script::from_bytes(&opened_by_1)).is_empty());
        let mut tag = a.clone();
        tag[38] = b'X';
        assert!(decode_envelopes(Script::from_bytes(&tag)).is_empty());
        // Truncated mid-push: no panic, nothing.
        assert!(decode_envelopes(Script::from_bytes(&a[..40])).is_empty());
    }

    #[test]
    fn only_a_tapscript_spend_reveals_its_leaf() {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[0x11; 32]).expect("key");
        let key = sk.x_only_public_key(&secp).0;
        let leaf = envelope_leaf(&key, 7, b"tx");
        let info = bitcoin::taproot::TaprootBuilder::new()
            .add_leaf(0, leaf.clone())
            .expect("leaf")
            .finalize(&secp, key)
            .expect("tree");
        let control = info
            .control_block(&(leaf.clone(), LeafVersion::TapScript))
            .expect("control block")
            .serialize();
        let spend =
            bitcoin::Witness::from_slice(&[vec![0u8; 64], leaf.to_bytes(), control.clone()]);
        assert_eq!(revealed_leaf(&spend), Some(leaf.as_script()));
        // With an annex too.
        let annexed = bitcoin::Witness::from_slice(&[
            vec![0u8; 64],
            leaf.to_bytes(),
            control.clone(),
            vec![0x50, 1],
        ]);
        assert_eq!(revealed_leaf(&annexed), Some(leaf.as_script()));
        // Key-path spend, a control block of the wrong shape, another leaf version: none.
        assert_eq!(
            revealed_leaf(&bitcoin::Witness::from_slice(&[vec![0u8; 64]])),
            None
        );
        let mut short = control.clone();
        short.pop();
        let bad = bitcoin::Witness::from_slice(&[vec![0u8; 64], leaf.to_bytes(), short]);
        assert_eq!(revealed_leaf(&bad), None);
        let mut other = control;
        other[0] = (other[0] & 1) | 0xc2;
        let other = bitcoin::Witness::from_slice(&[vec![0u8; 64], leaf.to_bytes(), other]);
        assert_eq!(revealed_leaf(&other), None);
    }

    #[test]
    fn a_spec_from_before_envelopes_keeps_reading_op_return_only() {
        let old: ForcedInclusionParams =
            serde_json::from_str(r#"{"confirmations":6,"window":10}"#).expect("old spec");
        assert!(!old.taproot_envelopes);
        assert_eq!(old.rule, 1, "an old spec keeps its rule");
        let new = ForcedInclusionParams {
            taproot_envelopes: true,
            ..old
        };
        let json = serde_json::to_string(&new).expect("json");
        assert_eq!(
            json,
            r#"{"confirmations":6,"window":10,"taprootEnvelopes":true}"#
        );
        assert_eq!(
            serde_json::from_str::<ForcedInclusionParams>(&json).ok(),
            Some(new)
        );
    }
}
