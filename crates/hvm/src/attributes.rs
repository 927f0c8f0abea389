//! The Bitcoin-attributes system transaction: how an L2 block pins the Bitcoin it executes
//! against (docs/HVM_PRECOMPILES.md §11, Hemi's type `0x7C` from `0x8888…8888`).
//!
//! Its calldata is an ABI call `updateHvmState(bytes32 canonicalTip, bytes[] headers)`: the new
//! Bitcoin headers since the parent L2 block's pin (at most six per block) and the canonical
//! Bitcoin tip after adding them. A node re-executing the block adds the headers to its view and
//! refuses the block unless the most-work tip then equals `canonicalTip`. Decoding is strict,
//! like Hemi's: every word, offset, length and pad byte must be exactly as encoded.

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;

/// EIP-2718 type byte of the Bitcoin-attributes transaction.
pub const BTC_ATTRIBUTES_TX_TYPE: u8 = 0x7C;
/// Sender (and recipient) of the Bitcoin-attributes transaction.
pub const BTC_ATTRIBUTES_SENDER: [u8; 20] = [0x88; 20];
/// Gas limit Hemi gives the transaction.
pub const BTC_ATTRIBUTES_GAS: u64 = 1_000_000;
/// `keccak256("updateHvmState(bytes32,bytes[])")[..4]`.
pub const UPDATE_HVM_STATE_SELECTOR: [u8; 4] = [0xc9, 0x4f, 0x1c, 0xca];
/// Most Bitcoin headers one L2 block may carry.
pub const MAX_HEADERS_PER_BLOCK: usize = 6;

/// What one L2 block says about Bitcoin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcAttributes {
    /// The most-work Bitcoin tip after adding `headers`.
    pub canonical_tip: BlockHash,
    /// New Bitcoin headers, parents first.
    pub headers: Vec<Header>,
}

/// Why calldata is not a valid `updateHvmState` call.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    /// Wrong selector.
    #[error("selector {got:02x?} is not updateHvmState (c94f1cca)")]
    Selector {
        /// The first four bytes.
        got: Vec<u8>,
    },
    /// More headers than a block may carry.
    #[error("{count} headers; at most {MAX_HEADERS_PER_BLOCK} per block")]
    TooManyHeaders {
        /// Headers claimed.
        count: u64,
    },
    /// The bytes are not exactly the canonical ABI encoding.
    #[error("calldata is not canonical at byte {offset}: {what}")]
    NotCanonical {
        /// Byte offset in the calldata.
        offset: usize,
        /// What was expected there.
        what: &'static str,
    },
    /// A header did not decode.
    #[error("header {index} does not decode")]
    BadHeader {
        /// Its position.
        index: usize,
    },
}

fn word(n: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&n.to_be_bytes());
    w
}

impl BtcAttributes {
    /// ABI calldata for `updateHvmState(bytes32, bytes[])`.
    ///
    /// The tip is in Bitcoin's internal byte order (as Hemi stores it).
    pub fn encode(&self) -> Vec<u8> {
        let n = self.headers.len();
        let mut out = Vec::with_capacity(4 + 96 + n * 160);
        out.extend_from_slice(&UPDATE_HVM_STATE_SELECTOR);
        out.extend_from_slice(self.canonical_tip.as_byte_array());
        out.extend_from_slice(&word(0x40));
        out.extend_from_slice(&word(n as u64));
        for i in 0..n {
            out.extend_from_slice(&word(32 * n as u64 + 128 * i as u64));
        }
        for h in &self.headers {
            out.extend_from_slice(&word(80));
            out.extend_from_slice(&serialize(h));
            out.extend_from_slice(&[0u8; 16]);
        }
        out
    }

    /// Parses calldata, accepting only the exact canonical encoding.
    ///
    /// # Errors
    /// [`AttributesError`] naming the first byte that differs from the canonical form.
    pub fn decode(data: &[u8]) -> Result<Self, AttributesError> {
        let sel = data.get(..4).ok_or(AttributesError::NotCanonical {
            offset: 0,
            what: "selector",
        })?;
        if sel != UPDATE_HVM_STATE_SELECTOR {
            return Err(AttributesError::Selector { got: sel.to_vec() });
        }
        let tip: [u8; 32] = data.get(4..36).and_then(|b| b.try_into().ok()).ok_or(
            AttributesError::NotCanonical {
                offset: 4,
                what: "canonical tip",
            },
        )?;
        let read_word = |offset: usize, what: &'static str| -> Result<u64, AttributesError> {
            let w = data
                .get(offset..offset + 32)
                .ok_or(AttributesError::NotCanonical { offset, what })?;
            if w[..24].iter().any(|b| *b != 0) {
                return Err(AttributesError::NotCanonical { offset, what });
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&w[24..]);
            Ok(u64::from_be_bytes(n))
        };
        if read_word(36, "offset of headers (0x40)")? != 0x40 {
            return Err(AttributesError::NotCanonical {
                offset: 36,
                what: "offset of headers (0x40)",
            });
        }
        let n = read_word(68, "header count")?;
        if n > MAX_HEADERS_PER_BLOCK as u64 {
            return Err(AttributesError::TooManyHeaders { count: n });
        }
        let n = n as usize;
        let head = 100;
        for i in 0..n {
            let at = head + 32 * i;
            if read_word(at, "header offset")? != (32 * n + 128 * i) as u64 {
                return Err(AttributesError::NotCanonical {
                    offset: at,
                    what: "header offset",
                });
            }
        }
        let mut headers = Vec::with_capacity(n);
        let body = head + 32 * n;
        for i in 0..n {
            let at = body + 128 * i;
            if read_word(at, "header length (80)")? != 80 {
                return Err(AttributesError::NotCanonical {
                    offset: at,
                    what: "header length (80)",
                });
            }
            let raw = data
                .get(at + 32..at + 112)
                .ok_or(AttributesError::NotCanonical {
                    offset: at + 32,
                    what: "header",
                })?;
            let pad = data
                .get(at + 112..at + 128)
                .ok_or(AttributesError::NotCanonical {
                    offset: at + 112,
                    what: "padding",
                })?;
            if pad.iter().any(|b| *b != 0) {
                return Err(AttributesError::NotCanonical {
                    offset: at + 112,
                    what: "zero padding",
                });
            }
            headers.push(
                deserialize::<Header>(raw).map_err(|_| AttributesError::BadHeader { index: i })?,
            );
        }
        let end = body + 128 * n;
        if data.len() != end {
            return Err(AttributesError::NotCanonical {
                offset: end,
                what: "end of calldata",
            });
        }
        Ok(BtcAttributes {
            canonical_tip: BlockHash::from_byte_array(tip),
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(i: u32) -> Header {
        let mut h = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        h.nonce = i;
        h
    }

    #[test]
    fn the_selector_is_keccak_of_the_signature() {
        let h = revm::primitives::keccak256(b"updateHvmState(bytes32,bytes[])");
        assert_eq!(h[..4], UPDATE_HVM_STATE_SELECTOR);
    }

    #[test]
    fn round_trips_zero_to_six_headers() {
        for n in 0..=6u32 {
            let a = BtcAttributes {
                canonical_tip: header(n).block_hash(),
                headers: (0..n).map(header).collect(),
            };
            let data = a.encode();
            assert_eq!(data.len(), 4 + 96 + 160 * n as usize);
            assert_eq!(BtcAttributes::decode(&data), Ok(a));
        }
    }

    #[test]
    fn the_abi_layout_matches_solidity() {
        // updateHvmState(tip, [h]) as solc would encode it.
        let a = BtcAttributes {
            canonical_tip: header(7).block_hash(),
            headers: vec![header(1)],
        };
        let d = a.encode();
        assert_eq!(&d[..4], &[0xc9, 0x4f, 0x1c, 0xca]);
        assert_eq!(&d[4..36], header(7).block_hash().as_byte_array());
        assert_eq!(d[36 + 31], 0x40); // offset of the bytes[]
        assert_eq!(d[68 + 31], 1); // length of the bytes[]
        assert_eq!(d[100 + 31], 0x20); // offset of element 0, relative to the array's data
        assert_eq!(d[132 + 31], 80); // element length
        assert_eq!(&d[164..244], serialize(&header(1)).as_slice());
        assert!(d[244..260].iter().all(|b| *b == 0));
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let a = BtcAttributes {
            canonical_tip: header(2).block_hash(),
            headers: vec![header(1), header(2)],
        };
        let good = a.encode();
        let mut bad_selector = good.clone();
        bad_selector[0] ^= 1;
        assert!(matches!(
            BtcAttributes::decode(&bad_selector),
            Err(AttributesError::Selector { .. })
        ));
        let mut high_bits = good.clone();
        high_bits[68] = 1; // a count word with a non-zero high byte
        assert!(matches!(
            BtcAttributes::decode(&high_bits),
            Err(AttributesError::NotCanonical { offset: 68, .. })
        ));
        let mut pad = good.clone();
        let last = pad.len() - 1;
        pad[last] = 1;
        assert!(matches!(
            BtcAttributes::decode(&pad),
            Err(AttributesError::NotCanonical { .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(BtcAttributes::decode(&trailing).is_err());
        assert!(BtcAttributes::decode(&good[..good.len() - 1]).is_err());
        let seven = BtcAttributes {
            canonical_tip: header(0).block_hash(),
            headers: (0..7).map(header).collect(),
        };
        assert_eq!(
            BtcAttributes::decode(&seven.encode()),
            Err(AttributesError::TooManyHeaders { count: 7 })
        );
    }

    proptest! {
        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = BtcAttributes::decode(&data);
        }

        #[test]
        fn decoding_with_the_right_selector_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let mut d = UPDATE_HVM_STATE_SELECTOR.to_vec();
            d.extend(data);
            let _ = BtcAttributes::decode(&d);
        }
    }
}
