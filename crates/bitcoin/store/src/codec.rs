//! Byte layouts of the store's keys and values. Every persisted value that can change shape
//! starts with a version byte; the schema as a whole carries [`crate::SCHEMA_VERSION`].

use bitcoin::consensus::{deserialize_partial, serialize};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::{BlockHash, OutPoint, Script, TxOut, Txid};

use crate::StoreError;

/// Version byte of undo records.
pub(crate) const UNDO_VERSION: u8 = 1;

pub(crate) type OutPointKey = [u8; 36];
pub(crate) type ScriptKey = [u8; 68];

/// txid (internal byte order) ‖ vout big-endian, so a txid's outputs sort together by index.
pub(crate) fn outpoint_key(op: &OutPoint) -> OutPointKey {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(op.txid.as_byte_array());
    k[32..].copy_from_slice(&op.vout.to_be_bytes());
    k
}

pub(crate) fn outpoint_from_key(k: &[u8]) -> OutPoint {
    let mut t = [0u8; 32];
    t.copy_from_slice(&k[..32]);
    let vout = u32::from_be_bytes([k[32], k[33], k[34], k[35]]);
    OutPoint::new(Txid::from_byte_array(t), vout)
}

/// SHA-256 of a locking script (as Electrum servers key their indexes).
pub(crate) fn script_hash(script: &Script) -> [u8; 32] {
    sha256::Hash::hash(script.as_bytes()).to_byte_array()
}

pub(crate) fn script_key(sh: &[u8; 32], op: &OutPoint) -> ScriptKey {
    let mut k = [0u8; 68];
    k[..32].copy_from_slice(sh);
    k[32..].copy_from_slice(&outpoint_key(op));
    k
}

/// A script-delta key: block height (big-endian) ‖ script hash ‖ kind ‖ outpoint: what block
/// `height` did to `op`, an output paying the script. Kinds: [`DELTA_CREATED`], [`DELTA_SPENT`].
/// Height first, so a block's deltas are appended together (sync stays as fast as without the
/// index) and a query reads one short range per block back.
pub(crate) fn delta_key(sh: &[u8; 32], height: u32, kind: u8, op: &OutPoint) -> DeltaKey {
    let mut k = [0u8; 73];
    k[..4].copy_from_slice(&height.to_be_bytes());
    k[4..36].copy_from_slice(sh);
    k[36] = kind;
    k[37..].copy_from_slice(&outpoint_key(op));
    k
}

/// A script-delta key's bytes.
pub(crate) type DeltaKey = [u8; 73];

/// The same delta keyed script first — script hash ‖ height (big-endian) ‖ kind ‖ outpoint — so
/// one range read finds what every block above a height did to a script. Kept for the recent
/// blocks only (`MAX_ASOF_DEPTH`), where queries reach, because script-first inserts are random
/// B-tree writes that would slow an initial sync.
pub(crate) fn recent_key(sh: &[u8; 32], height: u32, kind: u8, op: &OutPoint) -> DeltaKey {
    let mut k = [0u8; 73];
    k[..32].copy_from_slice(sh);
    k[32..36].copy_from_slice(&height.to_be_bytes());
    k[36] = kind;
    k[37..].copy_from_slice(&outpoint_key(op));
    k
}

/// A height-first [`delta_key`] reordered as a [`recent_key`].
pub(crate) fn recent_of(delta: &DeltaKey) -> DeltaKey {
    let mut k = *delta;
    k[..32].copy_from_slice(&delta[4..36]);
    k[32..36].copy_from_slice(&delta[..4]);
    k
}
/// The block created the output.
pub(crate) const DELTA_CREATED: u8 = 0;
/// The block spent the output.
pub(crate) const DELTA_SPENT: u8 = 1;

/// A stored coin: value ‖ height ‖ coinbase flag ‖ script.
pub(crate) fn encode_coin(value: u64, height: u32, coinbase: bool, script: &Script) -> Vec<u8> {
    let mut v = Vec::with_capacity(13 + script.len());
    v.extend_from_slice(&value.to_le_bytes());
    v.extend_from_slice(&height.to_le_bytes());
    v.push(coinbase as u8);
    v.extend_from_slice(script.as_bytes());
    v
}

/// Decoded coin: (value, height, coinbase, script bytes).
pub(crate) fn decode_coin(b: &[u8]) -> Result<(u64, u32, bool, &[u8]), StoreError> {
    if b.len() < 13 {
        return Err(StoreError::Corrupt(
            "coin record shorter than 13 bytes".into(),
        ));
    }
    let value = u64::from_le_bytes(b[..8].try_into().map_err(|_| corrupt("coin"))?);
    let height = u32::from_le_bytes(b[8..12].try_into().map_err(|_| corrupt("coin"))?);
    Ok((value, height, b[12] != 0, &b[13..]))
}

/// Value in the by-script index: value ‖ height ‖ coinbase.
pub(crate) fn encode_script_entry(value: u64, height: u32, coinbase: bool) -> [u8; 13] {
    let mut v = [0u8; 13];
    v[..8].copy_from_slice(&value.to_le_bytes());
    v[8..12].copy_from_slice(&height.to_le_bytes());
    v[12] = coinbase as u8;
    v
}

pub(crate) fn decode_script_entry(b: &[u8]) -> Result<(u64, u32, bool), StoreError> {
    let (v, h, c, _) = decode_coin(b)?;
    Ok((v, h, c))
}

/// Where a transaction is: block hash ‖ height ‖ index ‖ byte offset in block ‖ length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxRecord {
    pub block: BlockHash,
    pub height: u32,
    pub index: u32,
    pub offset: u32,
    pub len: u32,
}

impl TxRecord {
    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..32].copy_from_slice(self.block.as_byte_array());
        v[32..36].copy_from_slice(&self.height.to_le_bytes());
        v[36..40].copy_from_slice(&self.index.to_le_bytes());
        v[40..44].copy_from_slice(&self.offset.to_le_bytes());
        v[44..48].copy_from_slice(&self.len.to_le_bytes());
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        if b.len() != 48 {
            return Err(corrupt("tx record"));
        }
        let u = |r: std::ops::Range<usize>| -> Result<u32, StoreError> {
            Ok(u32::from_le_bytes(
                b[r].try_into().map_err(|_| corrupt("tx record"))?,
            ))
        };
        Ok(TxRecord {
            block: BlockHash::from_byte_array(b[..32].try_into().map_err(|_| corrupt("tx"))?),
            height: u(32..36)?,
            index: u(36..40)?,
            offset: u(40..44)?,
            len: u(44..48)?,
        })
    }
}

/// One spent output, as kept in undo data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpentCoin {
    pub txout: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// Undo record: version ‖ count ‖ (txout ‖ height ‖ coinbase)*, in block input order.
pub(crate) fn encode_undo(spent: &[SpentCoin]) -> Vec<u8> {
    let mut v = vec![UNDO_VERSION];
    v.extend_from_slice(&(spent.len() as u32).to_le_bytes());
    for s in spent {
        v.extend_from_slice(&serialize(&s.txout));
        v.extend_from_slice(&s.height.to_le_bytes());
        v.push(s.coinbase as u8);
    }
    v
}

pub(crate) fn decode_undo(b: &[u8]) -> Result<Vec<SpentCoin>, StoreError> {
    if b.first() != Some(&UNDO_VERSION) || b.len() < 5 {
        return Err(corrupt("undo record version"));
    }
    let n = u32::from_le_bytes(b[1..5].try_into().map_err(|_| corrupt("undo"))?) as usize;
    let mut out = Vec::with_capacity(n.min(100_000));
    let mut rest = &b[5..];
    for _ in 0..n {
        let (txout, used): (TxOut, usize) = deserialize_partial(rest)
            .map_err(|e| StoreError::Corrupt(format!("undo txout: {e}")))?;
        rest = &rest[used..];
        if rest.len() < 5 {
            return Err(corrupt("undo record truncated"));
        }
        let height = u32::from_le_bytes(rest[..4].try_into().map_err(|_| corrupt("undo"))?);
        let coinbase = rest[4] != 0;
        rest = &rest[5..];
        out.push(SpentCoin {
            txout,
            height,
            coinbase,
        });
    }
    Ok(out)
}

/// Spent-by value: spending txid ‖ input index ‖ height.
pub(crate) fn encode_spent_by(txid: &Txid, vin: u32, height: u32) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..32].copy_from_slice(txid.as_byte_array());
    v[32..36].copy_from_slice(&vin.to_le_bytes());
    v[36..40].copy_from_slice(&height.to_le_bytes());
    v
}

/// Keystone publication key: keystone id ‖ height (BE) ‖ tx index (BE): earliest sorts first.
pub(crate) fn keystone_key(id: &[u8; 32], height: u32, index: u32) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(id);
    k[32..36].copy_from_slice(&height.to_be_bytes());
    k[36..40].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: malformed record"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{Amount, ScriptBuf};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn undo_round_trips(vals in proptest::collection::vec((any::<u64>(), any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let spent: Vec<SpentCoin> = vals.into_iter().map(|(v, h, c, s)| SpentCoin {
                txout: TxOut { value: Amount::from_sat(v), script_pubkey: ScriptBuf::from_bytes(s) },
                height: h, coinbase: c }).collect();
            prop_assert_eq!(decode_undo(&encode_undo(&spent)).expect("decodes"), spent);
        }

        #[test]
        fn undo_decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_undo(&b);
        }

        #[test]
        fn outpoint_key_round_trips(t in any::<[u8; 32]>(), vout in any::<u32>()) {
            let op = OutPoint::new(Txid::from_byte_array(t), vout);
            prop_assert_eq!(outpoint_from_key(&outpoint_key(&op)), op);
        }
    }
}
