//! Hemi's Bitcoin precompiles, byte-compatible with Hemi's op-geth (docs/HVM_PRECOMPILES.md).
//!
//! Ten precompiles at `0x40..=0x49` read Bitcoin from the L2 contract side: balances, UTXO
//! lists, transaction fields, confirmations, headers and address scripts. Inputs and outputs are
//! raw packed bytes (no ABI), integers big-endian, hashes in display (RPC) order. Each call ends
//! in one of the outcomes of spec §1.4, modelled by [`PrecompileCall`]: bytes (success), empty
//! bytes (Hemi's "empty success", also used for every malformed input and every lookup miss), or
//! [`PrecompileCall::Fail`] (Hemi's "raw error": the CALL fails and burns all its gas).
//!
//! # Data source and pinning (differs from Hemi by design)
//!
//! Every query is answered from a [`BitcoinView`] as of the Bitcoin block the L2 block pinned
//! ([`BitcoinContext::pinned`], queried as `AsOf::Block(pinned.hash)`), so results depend on
//! the pin and never on how far Bitcoin has moved since. Hemi's op-geth instead moves an embedded
//! full node's indexes to the consensus tip walked back `hVMIndexerTipLag = 2` blocks (spec
//! §11.2), and measures 0x43 confirmations against the un-lagged tip. Our pin is exact: there is
//! no lag of 2, the indexes *are* the pinned block, and 0x43 counts confirmations as
//! `pinned.height - tx height + 1` (so the minimum is 1, not 3). Whoever chooses the pin (the
//! sequencer / block builder) owns any safety margin against Bitcoin reorgs.
//!
//! # Deliberate divergences from Hemi's C-NEW revision
//!
//! * **0x45** returns the 116-byte record of the best-chain header at the requested height when
//!   that height is at or below the pin (else empty success). Hemi's reference binary always
//!   returns empty success for well-formed input because of a tx-index key-length bug in its
//!   pinned heminetwork library (spec §7); we do not copy the bug.
//! * **Address decoding** uses rust-bitcoin (`Address::from_str` + `require_network`) plus
//!   btcutil's 66/130-hex-character public key form (P2PK script). btcutil's `DecodeAddress`
//!   does *not* check the network of base58 (P2PKH/P2SH) addresses, so Hemi accepts e.g. a
//!   mainnet `1...` address on testnet; we reject it (0x40/0x41 empty success, 0x46 `Fail`).
//! * **Storage errors** of the view (including a pin the view can no longer resolve) map to
//!   empty success with a `warn!`, as Hemi's recover guard maps an internal fault; Hemi would
//!   return a raw error for a few of them (0x43/0x44 header lookups). A panic anywhere under
//!   [`call`] is caught and also mapped to empty success (Hemi's `runPrecompileGuarded`).
//!
//! Kept on purpose (consensus parity): 0x48 on a spent output is empty success (spec §9), 0x43 on
//! an unknown txid is `Fail`, 0x41 truncates vout to u16, 0x42 bf1 bit 6 doubles as the per-input
//! witness-count flag, and 0x42 with inputs on a coinbase transaction is empty success.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::hex::FromHex;
use bitcoin::opcodes::all::OP_CHECKSIG;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{Address, Network, OutPoint, Script, ScriptBuf, Transaction, Txid};
use hemi_btc_view::{AsOf, BitcoinView, BlockRef, ViewError};

/// The ten hVM precompile addresses (the last byte of a 20-byte address `0x00..00XX`).
pub const HVM_PRECOMPILE_ADDRESSES: [u8; 10] =
    [0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49];

/// Hemi's `MIN_BTC_ADDRESS_LENGTH`: shorter address inputs are empty success.
const MIN_BTC_ADDRESS_LENGTH: usize = 24;
/// Hemi's `BTC_TXID_LENGTH_BYTES`.
const TXID_LEN: usize = 32;
/// btcd's `txscript.MaxScriptSize`: longer scripts are unspendable.
const MAX_SCRIPT_SIZE: usize = 10_000;
/// Length of the 0x44 / 0x45 header record.
pub const HEADER_RECORD_LEN: usize = 116;

/// What a precompile needs: the Bitcoin view, the Bitcoin block the L2 block pinned, and the
/// network for addresses.
pub struct BitcoinContext<'a> {
    /// Where Bitcoin data comes from; queried as of `pinned`.
    pub view: &'a dyn BitcoinView,
    /// The Bitcoin block the executing L2 block pinned.
    pub pinned: BlockRef,
    /// Network whose addresses the address-taking precompiles accept.
    pub network: Network,
}

/// Outcome of one call (spec §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrecompileCall {
    /// Success; the bytes may be empty (Hemi's "empty success").
    Output(Vec<u8>),
    /// The CALL fails and burns all gas it was given (Hemi's "raw error").
    Fail(String),
}

impl PrecompileCall {
    fn empty() -> Self {
        PrecompileCall::Output(Vec::new())
    }
}

/// Flat gas per precompile (spec §1.3), `None` if `address` is not an hVM precompile.
pub fn gas_cost(address: u8) -> Option<u64> {
    Some(match address {
        0x40 => 50_000,
        0x41 => 100_000,
        0x42 => 25_000,
        0x43 => 5_000,
        0x44 => 5_000,
        0x45 => 6_000,
        0x46 => 25_000,
        0x47 => 15_000,
        0x48 => 15_000,
        0x49 => 15_000,
        _ => return None,
    })
}

/// Runs precompile `address` on `input` against `ctx`.
///
/// Never panics: malformed input and lookup misses are empty success, view errors are logged
/// and mapped to empty success, and a panic below is caught and mapped likewise (Hemi's recover
/// guard). An `address` that is not an hVM precompile is `Fail`.
pub fn call(address: u8, input: &[u8], ctx: &BitcoinContext<'_>) -> PrecompileCall {
    let run = || -> Result<PrecompileCall, ViewError> {
        match address {
            0x40 => balance(input, ctx),
            0x41 => utxos(input, ctx),
            0x42 => tx_by_txid(input, ctx),
            0x43 => confirmations(input, ctx),
            0x44 => last_header(ctx),
            0x45 => header_n(input, ctx),
            0x46 => addr_to_script(input, ctx),
            0x47 => input_by_txid(input, ctx),
            0x48 => output_by_txid(input, ctx),
            0x49 => input_witness(input, ctx),
            _ => Ok(PrecompileCall::Fail(format!(
                "0x{address:02x} is not an hVM precompile"
            ))),
        }
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            tracing::warn!(
                precompile = address,
                pinned = %ctx.pinned.hash,
                error = %e,
                "hVM precompile: Bitcoin view error, returning empty success"
            );
            PrecompileCall::empty()
        }
        Err(_) => {
            tracing::error!(
                precompile = address,
                pinned = %ctx.pinned.hash,
                "hVM precompile panicked, returning empty success"
            );
            PrecompileCall::empty()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

impl BitcoinContext<'_> {
    fn at(&self) -> AsOf {
        AsOf::Block(self.pinned.hash)
    }

    /// Whether `op` is unspent as of the pin. `spent_by` answers for the best-chain tip, so a
    /// spend confirmed after the pin does not count.
    fn unspent_at_pin(&self, op: &OutPoint) -> Result<bool, ViewError> {
        Ok(match self.view.spent_by(op)? {
            Some(s) => s.height > self.pinned.height,
            None => true,
        })
    }

    fn tx(&self, txid: &Txid) -> Result<Option<hemi_btc_view::IndexedTx>, ViewError> {
        self.view.transaction(txid, self.at())
    }
}

/// A txid given in display order (reversed internal bytes).
fn txid_from_display(bytes: &[u8]) -> Option<Txid> {
    let mut b: [u8; 32] = bytes.get(..TXID_LEN)?.try_into().ok()?;
    b.reverse();
    Some(Txid::from_byte_array(b))
}

/// A 32-byte hash in display order.
fn display(mut internal: [u8; 32]) -> [u8; 32] {
    internal.reverse();
    internal
}

/// Input that is exactly `txid (display order) ‖ N × u16 BE` (0x47, 0x48, 0x49).
fn txid_and_u16s<const N: usize>(input: &[u8]) -> Option<(Txid, [u16; N])> {
    if input.len() != TXID_LEN + 2 * N {
        return None;
    }
    let mut fields = [0u16; N];
    for (i, f) in fields.iter_mut().enumerate() {
        *f = be_u16(input, TXID_LEN + 2 * i)?;
    }
    Some((txid_from_display(input)?, fields))
}

fn be_u16(input: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(input.get(at..at + 2)?.try_into().ok()?))
}

fn clamp_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// `bytes[..min(len, max)]`.
fn chop(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

/// btcd's `txscript.IsUnspendable`: starts with `OP_RETURN`, is larger than the maximum script
/// size, or does not parse (a push runs past the end).
fn is_unspendable(script: &Script) -> bool {
    let bytes = script.as_bytes();
    bytes.first() == Some(&0x6a)
        || bytes.len() > MAX_SCRIPT_SIZE
        || script.instructions().any(|i| i.is_err())
}

/// Why an address string did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not UTF-8.
    #[error("address is not UTF-8")]
    NotUtf8,
    /// 66/130 characters of hex that are not a valid public key.
    #[error("invalid serialized public key: {0}")]
    PubKey(String),
    /// 66/130 characters that are not hex (btcutil does not fall back to other forms).
    #[error("invalid hex public key: {0}")]
    Hex(String),
    /// Not an address, or not one of this network.
    #[error("invalid address: {0}")]
    Address(String),
}

/// The output script an address string pays to, decoded like btcutil's `DecodeAddress` +
/// `PayToAddrScript`, except that base58 addresses must belong to `network` (see module docs).
///
/// # Errors
/// [`AddressError`] when the bytes are not an address of `network` nor a serialized public key.
pub fn address_script(bytes: &[u8], network: Network) -> Result<ScriptBuf, AddressError> {
    let s = std::str::from_utf8(bytes).map_err(|_| AddressError::NotUtf8)?;
    if s.len() == 66 || s.len() == 130 {
        // btcutil: a serialized public key (compressed, uncompressed or hybrid) → P2PK of the
        // bytes as given.
        let key = Vec::<u8>::from_hex(s).map_err(|e| AddressError::Hex(e.to_string()))?;
        bitcoin::secp256k1::PublicKey::from_slice(&key)
            .map_err(|e| AddressError::PubKey(e.to_string()))?;
        let push = PushBytesBuf::try_from(key).map_err(|e| AddressError::PubKey(e.to_string()))?;
        return Ok(Builder::new()
            .push_slice(push)
            .push_opcode(OP_CHECKSIG)
            .into_script());
    }
    let address = Address::from_str(s)
        .map_err(|e| AddressError::Address(e.to_string()))?
        .require_network(network)
        .map_err(|e| AddressError::Address(e.to_string()))?;
    Ok(address.script_pubkey())
}

/// The 116-byte header record of 0x44 / 0x45 (spec §7).
pub fn header_record(height: u32, header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_RECORD_LEN);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&display(header.block_hash().to_byte_array()));
    out.extend_from_slice(&(header.version.to_consensus() as u32).to_be_bytes());
    out.extend_from_slice(&display(header.prev_blockhash.to_byte_array()));
    out.extend_from_slice(&display(header.merkle_root.to_byte_array()));
    out.extend_from_slice(&header.time.to_be_bytes());
    out.extend_from_slice(&header.bits.to_consensus().to_be_bytes());
    out.extend_from_slice(&header.nonce.to_be_bytes());
    out
}

/// Value of output `vout` of `txid` as of the pin; `None` if the transaction is unknown (e.g.
/// a coinbase's null prevout) or the index is out of range — both empty success in Hemi.
fn prevout_value(ctx: &BitcoinContext<'_>, op: &OutPoint) -> Result<Option<u64>, ViewError> {
    Ok(ctx.tx(&op.txid)?.and_then(|t| {
        usize::try_from(op.vout)
            .ok()
            .and_then(|i| t.tx.output.get(i))
            .map(|o| o.value.to_sat())
    }))
}

// ---------------------------------------------------------------------------------------------
// The ten precompiles
// ---------------------------------------------------------------------------------------------

/// 0x40: `u64 BE` balance of an address (sum of its UTXOs as of the pin).
fn balance(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    if input.len() < MIN_BTC_ADDRESS_LENGTH {
        return Ok(PrecompileCall::empty());
    }
    let Ok(script) = address_script(input, ctx.network) else {
        return Ok(PrecompileCall::empty());
    };
    let total = ctx
        .view
        .utxos_by_script(&script, ctx.at())?
        .iter()
        .fold(0u64, |acc, u| acc.wrapping_add(u.value));
    Ok(PrecompileCall::Output(total.to_be_bytes().to_vec()))
}

/// 0x41: `n ‖ n × (txid display ‖ u16 vout ‖ u64 value)`, skipping `start` UTXOs.
fn utxos(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    if input.len() < MIN_BTC_ADDRESS_LENGTH + 4 {
        return Ok(PrecompileCall::empty());
    }
    let (addr, page) = input.split_at(input.len() - 4);
    let [a, b, c, count] = <[u8; 4]>::try_from(page).unwrap_or_default();
    let start = u32::from_be_bytes([0, a, b, c]) as usize;
    let count = if count == 0 { 10 } else { count as usize };
    let Ok(script) = address_script(addr, ctx.network) else {
        return Ok(PrecompileCall::empty());
    };
    let mut utxos = ctx.view.utxos_by_script(&script, ctx.at())?;
    // TBC's key order: internal-order txid bytes, then vout.
    utxos.sort_by_key(|u| (u.outpoint.txid.to_byte_array(), u.outpoint.vout));
    let page: Vec<_> = utxos.iter().skip(start).take(count).collect();
    let mut out = Vec::with_capacity(1 + page.len() * 42);
    out.push((page.len() & 0xff) as u8);
    for u in page {
        out.extend_from_slice(&display(u.outpoint.txid.to_byte_array()));
        // Truncates (wraps), as Hemi's `uint16(utxo.OutputIndex())`.
        out.extend_from_slice(&(u.outpoint.vout as u16).to_be_bytes());
        out.extend_from_slice(&u.value.to_be_bytes());
    }
    Ok(PrecompileCall::Output(out))
}

/// 0x42: flag-selected fields of a transaction (spec §5).
fn tx_by_txid(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    let (Some(txid), Ok([bf1, bf2, bf3, bf4])) = (
        txid_from_display(input),
        <[u8; 4]>::try_from(input.get(TXID_LEN..).unwrap_or_default()),
    ) else {
        return Ok(PrecompileCall::empty());
    };
    let bit = |b: u8, n: u8| b & (1 << n) != 0;
    let containing_block = bit(bf1, 6);
    let version = bit(bf1, 5);
    let sizes = bit(bf1, 4);
    let lock_time = bit(bf1, 3);
    let inputs = bit(bf1, 2);
    let input_source = bit(bf1, 1);
    let input_script_sig = bit(bf1, 0);
    let input_seq = bit(bf2, 7);
    // Hemi reads bitflag1 bit 6 here (an alias of containing_block), frozen for parity.
    let witness_count = bit(bf1, 6);
    let outputs = bit(bf2, 5);
    let output_script = bit(bf2, 4);
    let unspendable_outputs = bit(bf2, 3);
    let output_available = bit(bf2, 2);
    let max_inputs = 1usize << ((bf3 >> 3) & 0x07);
    let max_outputs = 1usize << (bf3 & 0x07);
    let max_sig = 1usize << (4 + ((bf4 >> 2) & 0x03));
    let max_script = 1usize << (4 + (bf4 & 0x03));

    let Some(indexed) = ctx.tx(&txid)? else {
        return Ok(PrecompileCall::empty());
    };
    let tx: &Transaction = &indexed.tx;
    let mut out = Vec::new();
    if containing_block {
        out.extend_from_slice(&display(indexed.location.block.hash.to_byte_array()));
    }
    if version {
        out.extend_from_slice(&(tx.version.0 as u32).to_be_bytes());
    }
    if sizes {
        out.extend_from_slice(&(tx.total_size() as u32).to_be_bytes());
        out.extend_from_slice(&(tx.base_size() as u32).to_be_bytes());
    }
    if lock_time {
        out.extend_from_slice(&tx.lock_time.to_consensus_u32().to_be_bytes());
    }
    if inputs {
        out.extend_from_slice(&clamp_u16(tx.input.len()).to_be_bytes());
        for txin in tx.input.iter().take(max_inputs) {
            if witness_count {
                out.extend_from_slice(&clamp_u16(txin.witness.len()).to_be_bytes());
            }
            // Always the spent prevout's value; a failed lookup (coinbase) empties the answer.
            let Some(value) = prevout_value(ctx, &txin.previous_output)? else {
                return Ok(PrecompileCall::empty());
            };
            out.extend_from_slice(&value.to_be_bytes());
            if input_source {
                out.extend_from_slice(&display(txin.previous_output.txid.to_byte_array()));
                out.extend_from_slice(&txin.previous_output.vout.to_be_bytes());
            }
            if input_script_sig {
                let sig = txin.script_sig.as_bytes();
                out.extend_from_slice(&clamp_u16(sig.len()).to_be_bytes());
                out.extend_from_slice(chop(sig, max_sig));
            }
            if input_seq {
                out.extend_from_slice(&txin.sequence.0.to_be_bytes());
            }
        }
    }
    if outputs {
        let unspendable = tx
            .output
            .iter()
            .filter(|o| is_unspendable(&o.script_pubkey))
            .count();
        let listed = if unspendable_outputs {
            tx.output.len()
        } else {
            tx.output.len() - unspendable
        };
        out.extend_from_slice(&clamp_u16(listed).to_be_bytes());
        let txid = tx.compute_txid();
        let mut emitted = 0usize;
        for (vout, o) in tx.output.iter().enumerate() {
            if emitted >= max_outputs {
                break;
            }
            if !unspendable_outputs && is_unspendable(&o.script_pubkey) {
                continue;
            }
            out.extend_from_slice(&o.value.to_sat().to_be_bytes());
            if output_script {
                let script = o.script_pubkey.as_bytes();
                out.extend_from_slice(&clamp_u16(script.len()).to_be_bytes());
                out.extend_from_slice(chop(script, max_script));
            }
            if output_available {
                let op = OutPoint::new(txid, vout as u32);
                out.push(u8::from(ctx.unspent_at_pin(&op)?));
            }
            emitted += 1;
        }
    }
    Ok(PrecompileCall::Output(out))
}

/// 0x43: `u32 BE` confirmations as of the pin (`pinned.height - tx height + 1`).
fn confirmations(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    if input.len() != TXID_LEN {
        return Ok(PrecompileCall::empty());
    }
    let Some(txid) = txid_from_display(input) else {
        return Ok(PrecompileCall::empty());
    };
    let Some(indexed) = ctx.tx(&txid)? else {
        // Hemi's "unindexed txid" raw error, frozen for consensus compatibility.
        return Ok(PrecompileCall::Fail(format!(
            "transaction {txid} is not confirmed as of Bitcoin block {}",
            ctx.pinned.hash
        )));
    };
    // Wraps like Hemi's uint64 subtraction truncated to uint32 (unreachable for a visible tx).
    let conf = ctx
        .pinned
        .height
        .wrapping_sub(indexed.location.block.height)
        .wrapping_add(1);
    Ok(PrecompileCall::Output(conf.to_be_bytes().to_vec()))
}

/// 0x44: header record of the pinned block; the input is ignored.
fn last_header(ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    match ctx.view.header_by_hash(&ctx.pinned.hash)? {
        Some((r, header)) => Ok(PrecompileCall::Output(header_record(r.height, &header))),
        // Hemi: a failing header lookup after a good index hash is a raw error.
        None => Ok(PrecompileCall::Fail(format!(
            "pinned Bitcoin block {} is not on the best chain",
            ctx.pinned.hash
        ))),
    }
}

/// 0x45: header record of the best-chain block at a height at or below the pin.
fn header_n(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    let Ok(bytes) = <[u8; 4]>::try_from(input) else {
        return Ok(PrecompileCall::empty());
    };
    let height = u32::from_be_bytes(bytes);
    if height > ctx.pinned.height {
        return Ok(PrecompileCall::empty());
    }
    // `header_at` answers for the current best chain; it is the pin's ancestor only while the
    // pin is on it.
    match ctx.view.header_by_hash(&ctx.pinned.hash)? {
        Some((r, _)) if r.height == ctx.pinned.height => {}
        _ => return Err(ViewError::NotOnBestChain(ctx.pinned.hash)),
    }
    Ok(match ctx.view.header_at(height)? {
        Some((_, header)) => PrecompileCall::Output(header_record(height, &header)),
        None => PrecompileCall::empty(),
    })
}

/// 0x46: the scriptPubKey an address pays to; an undecodable address is a raw error.
fn addr_to_script(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    if input.len() < MIN_BTC_ADDRESS_LENGTH {
        return Ok(PrecompileCall::empty());
    }
    Ok(match address_script(input, ctx.network) {
        Ok(script) => PrecompileCall::Output(script.into_bytes()),
        Err(e) => PrecompileCall::Fail(e.to_string()),
    })
}

/// 0x47: one input: `u16 witness items ‖ u64 prevout value ‖ prev txid ‖ u16 prev index
/// (clamped) ‖ u16 scriptSig len ‖ scriptSig[..max] ‖ u32 sequence`.
fn input_by_txid(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    let Some((txid, [vin, max_sig])) = txid_and_u16s(input) else {
        return Ok(PrecompileCall::empty());
    };
    let Some(indexed) = ctx.tx(&txid)? else {
        return Ok(PrecompileCall::empty());
    };
    let Some(txin) = indexed.tx.input.get(vin as usize) else {
        return Ok(PrecompileCall::empty());
    };
    let Some(value) = prevout_value(ctx, &txin.previous_output)? else {
        return Ok(PrecompileCall::empty());
    };
    let prev = txin.previous_output;
    let sig = txin.script_sig.as_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&clamp_u16(txin.witness.len()).to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
    out.extend_from_slice(&display(prev.txid.to_byte_array()));
    out.extend_from_slice(&u16::try_from(prev.vout).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&clamp_u16(sig.len()).to_be_bytes());
    out.extend_from_slice(chop(sig, max_sig as usize));
    out.extend_from_slice(&txin.sequence.0.to_be_bytes());
    Ok(PrecompileCall::Output(out))
}

/// 0x48: one output: `u64 value ‖ u16 script len ‖ script[..max] ‖ u8 available (1)`; a spent
/// output is empty success (Hemi's known limitation, kept for parity).
fn output_by_txid(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    let Some((txid, [vout, max_script])) = txid_and_u16s(input) else {
        return Ok(PrecompileCall::empty());
    };
    let Some(indexed) = ctx.tx(&txid)? else {
        return Ok(PrecompileCall::empty());
    };
    let Some(txout) = indexed.tx.output.get(vout as usize) else {
        return Ok(PrecompileCall::empty());
    };
    if !ctx.unspent_at_pin(&OutPoint::new(txid, u32::from(vout)))? {
        return Ok(PrecompileCall::empty());
    }
    let script = txout.script_pubkey.as_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&txout.value.to_sat().to_be_bytes());
    out.extend_from_slice(&clamp_u16(script.len()).to_be_bytes());
    out.extend_from_slice(chop(script, max_script as usize));
    out.push(1);
    Ok(PrecompileCall::Output(out))
}

/// 0x49: one witness item of one input: `u16 len (clamped) ‖ item[..max]`.
fn input_witness(input: &[u8], ctx: &BitcoinContext<'_>) -> Result<PrecompileCall, ViewError> {
    let Some((txid, [vin, index, max_len])) = txid_and_u16s(input) else {
        return Ok(PrecompileCall::empty());
    };
    let Some(indexed) = ctx.tx(&txid)? else {
        return Ok(PrecompileCall::empty());
    };
    let Some(item) = indexed
        .tx
        .input
        .get(vin as usize)
        .and_then(|txin| txin.witness.nth(index as usize))
    else {
        return Ok(PrecompileCall::empty());
    };
    let mut out = Vec::with_capacity(2 + item.len().min(max_len as usize));
    out.extend_from_slice(&clamp_u16(item.len()).to_be_bytes());
    out.extend_from_slice(chop(item, max_len as usize));
    Ok(PrecompileCall::Output(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_is_defined_exactly_for_the_ten_addresses() {
        for a in 0..=u8::MAX {
            assert_eq!(gas_cost(a).is_some(), HVM_PRECOMPILE_ADDRESSES.contains(&a));
        }
        assert_eq!(gas_cost(0x41), Some(100_000));
    }

    #[test]
    fn unspendable_matches_btcd_rules() {
        assert!(is_unspendable(Script::from_bytes(&[0x6a, 0x01, 0xaa])));
        // OP_PUSHBYTES_5 with only two bytes left: does not parse.
        assert!(is_unspendable(Script::from_bytes(&[0x05, 0x01, 0x02])));
        assert!(is_unspendable(&ScriptBuf::from_bytes(vec![
            0x51;
            MAX_SCRIPT_SIZE
                + 1
        ])));
        assert!(!is_unspendable(Script::from_bytes(&[])));
        assert!(!is_unspendable(Script::from_bytes(&[0x00, 0x01, 0x02])));
    }

    #[test]
    fn hex_pubkey_address_is_p2pk_of_the_given_bytes() {
        let g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        let script = address_script(g.as_bytes(), Network::Regtest).expect("pubkey");
        let key = Vec::<u8>::from_hex(g).expect("hex");
        let mut want = vec![0x21];
        want.extend_from_slice(&key);
        want.push(0xac);
        assert_eq!(script.as_bytes(), want.as_slice());
        // 66 characters that are not hex do not fall back to other address forms.
        assert!(address_script(&[b'z'; 66], Network::Regtest).is_err());
    }
}
