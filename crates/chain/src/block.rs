//! L2 blocks: Ethereum headers (alloy) with an empty `extraData`, the sequencer's seal carried
//! next to the header (as OP-stack chains sign blocks outside the header), and receipts.
//!
//! # The seal
//!
//! The block hash is `keccak256(rlp(header))`; nothing of the seal is inside the header, so
//! `extraData` stays empty (Ethereum clients such as web3.py refuse more than 32 bytes).
//! The sequencer signs [`seal_digest`]:
//!
//! ```text
//! keccak256("hemi-rs block seal v1" ‖ chain_id ‖ block_hash)
//! ```
//!
//! with the 21 ASCII bytes of [`SEAL_DOMAIN`], the chain id as a 32-byte big-endian integer and
//! the 32-byte block hash (85 bytes hashed). The seal is the 65-byte recoverable secp256k1
//! signature `r ‖ s ‖ v`, `v` = 0 or 1 (the recovery id). Genesis is not sealed: its seal is
//! 65 zero bytes.
//!
//! # Wire format (format 2)
//!
//! What `debug_getRawBlock` serves and followers decode ([`L2Block::encode`]):
//!
//! ```text
//! rlp([header, [tx_2718, …], seal])
//! ```
//!
//! `header` is the RLP header, each transaction an RLP string of its EIP-2718 bytes, `seal` an
//! RLP string of exactly 65 bytes (`b8 41 ‖ r ‖ s ‖ v`). Format 1 (`rlp([header, [tx, …]])`
//! with the Clique seal in a 97-byte `extraData`) has two list items and is refused by name.
//!
//! # Format 3: certified blocks
//!
//! A chain ordered by a validator set carries the block's commit certificate as a fourth item,
//! `rlp([header, [tx_2718, …], seal, certificate])`, `seal` then 65 zero bytes and
//! `certificate` an RLP string of [`crate::Certificate::encode`]'s bytes.

use alloy_consensus::{Header, Receipt, ReceiptWithBloom};
use alloy_primitives::{keccak256, Address, Bloom, Bytes, FixedBytes, Log, B256, U256};
use alloy_rlp::{BufMut, Decodable, Encodable, Header as RlpHeader};

use crate::certificate::Certificate;
use crate::tx::L2Tx;
use crate::{BlockError, ChainError, SealError};

/// Length of a seal: r ‖ s ‖ v (v = 0 or 1).
pub const SEAL_LEN: usize = 65;

/// Domain separator at the start of the signed digest (see [`seal_digest`]).
pub const SEAL_DOMAIN: &[u8] = b"hemi-rs block seal v1";

/// The version of the raw block encoding ([`L2Block::encode`]): 2 = seal next to the header,
/// 3 = a commit certificate may follow it.
pub const BLOCK_FORMAT: u8 = 3;

/// A block seal: the sequencer's recoverable secp256k1 signature `r ‖ s ‖ v` (v = 0 or 1) over
/// [`seal_digest`]. All zero for genesis.
pub type Seal = FixedBytes<SEAL_LEN>;

/// An L2 block: header, transactions (the Bitcoin-attributes transaction first) and seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Block {
    /// The header (empty `extraData`; the seal is not inside it).
    pub header: Header,
    /// Transactions in order.
    pub txs: Vec<L2Tx>,
    /// The sequencer's signature over [`seal_digest`] of the block hash (zero when certified).
    pub seal: Seal,
    /// The validator set's commit certificate (a chain ordered by a set; see
    /// [`crate::certificate`]).
    pub certificate: Option<Certificate>,
}

impl L2Block {
    /// Block hash: keccak256 of the RLP header (the seal is not part of it).
    pub fn hash(&self) -> B256 {
        self.header.hash_slow()
    }

    /// `rlp([header, [tx_2718, …], seal])`, every transaction as an RLP string of its EIP-2718
    /// bytes and the seal as a 65-byte string. What `debug_getRawBlock` returns and followers
    /// decode.
    pub fn encode(&self) -> Vec<u8> {
        let txs = encode_txs(&self.txs);
        let seal = self.seal.as_slice();
        let cert = self.certificate.as_ref().map(Certificate::encode);
        let payload = self.header.length()
            + txs.len()
            + seal.length()
            + cert.as_ref().map_or(0, |c| c.as_slice().length());
        let mut out = Vec::with_capacity(payload + 8);
        RlpHeader {
            list: true,
            payload_length: payload,
        }
        .encode(&mut out);
        self.header.encode(&mut out);
        out.extend_from_slice(&txs);
        seal.encode(&mut out);
        if let Some(c) = &cert {
            c.as_slice().encode(&mut out);
        }
        out
    }

    /// Decodes [`L2Block::encode`]'s bytes (the whole slice).
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] for malformed bytes, naming format 1 (no seal item) when
    /// the block is in the old encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChainError> {
        let mut buf = bytes;
        let h = RlpHeader::decode(&mut buf).map_err(BlockError::Rlp)?;
        if !h.list || h.payload_length != buf.len() {
            return Err(BlockError::NotOneList.into());
        }
        let header = Header::decode(&mut buf).map_err(BlockError::Rlp)?;
        let txs = decode_txs(&mut buf)?;
        if buf.is_empty() {
            return Err(BlockError::OldFormat {
                number: header.number,
                extra_data_len: header.extra_data.len(),
                expected: BLOCK_FORMAT,
            }
            .into());
        }
        let seal_header = RlpHeader::decode(&mut buf).map_err(BlockError::Rlp)?;
        if seal_header.list || seal_header.payload_length != SEAL_LEN || buf.len() < SEAL_LEN {
            return Err(BlockError::SealEncoding { expected: SEAL_LEN }.into());
        }
        let seal = Seal::from_slice(&buf[..SEAL_LEN]);
        buf = &buf[SEAL_LEN..];
        let certificate = if buf.is_empty() {
            None
        } else {
            let h = RlpHeader::decode(&mut buf).map_err(BlockError::Rlp)?;
            if h.list || buf.len() < h.payload_length {
                return Err(BlockError::CertificateEncoding(h.payload_length).into());
            }
            let c = Certificate::decode(&buf[..h.payload_length])?;
            buf = &buf[h.payload_length..];
            Some(c)
        };
        if !buf.is_empty() {
            return Err(BlockError::TrailingBytes.into());
        }
        Ok(L2Block {
            header,
            txs,
            seal,
            certificate,
        })
    }

    /// Recovers the address that sealed this block on chain `chain_id`.
    ///
    /// # Errors
    /// [`ChainError::InvalidSeal`] when the seal does not recover.
    pub fn signer(&self, chain_id: u64) -> Result<Address, ChainError> {
        Ok(signer(chain_id, self.hash(), &self.seal)?)
    }
}

/// `rlp([tx_2718 as string, …])`.
pub fn encode_txs(txs: &[L2Tx]) -> Vec<u8> {
    let encoded: Vec<Bytes> = txs.iter().map(|t| Bytes::from(t.encoded_2718())).collect();
    alloy_rlp::encode(&encoded)
}

/// Inverse of [`encode_txs`], advancing `buf`.
///
/// # Errors
/// [`ChainError::InvalidBlock`] for malformed bytes.
pub fn decode_txs(buf: &mut &[u8]) -> Result<Vec<L2Tx>, ChainError> {
    let list = Vec::<Bytes>::decode(buf).map_err(BlockError::TxListRlp)?;
    list.iter().map(|b| L2Tx::decode_2718(b)).collect()
}

/// The transactions root: the ordered trie of EIP-2718 encodings.
pub fn transactions_root(txs: &[L2Tx]) -> B256 {
    alloy_trie::root::ordered_trie_root_with_encoder(txs, |tx, buf| {
        buf.put_slice(&tx.encoded_2718());
    })
}

/// The digest the sequencer signs for the block `block_hash` of chain `chain_id`:
/// `keccak256(SEAL_DOMAIN ‖ chain_id as 32 bytes big-endian ‖ block_hash)`.
pub fn seal_digest(chain_id: u64, block_hash: B256) -> B256 {
    let mut preimage = Vec::with_capacity(SEAL_DOMAIN.len() + 64);
    preimage.extend_from_slice(SEAL_DOMAIN);
    preimage.extend_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    preimage.extend_from_slice(block_hash.as_slice());
    keccak256(preimage)
}

/// Seals the block `block_hash` of chain `chain_id` with `secret`.
///
/// # Errors
/// The key is not a valid secp256k1 secret.
pub fn seal(chain_id: u64, block_hash: B256, secret: B256) -> Result<Seal, SealError> {
    let sig =
        alloy_consensus::crypto::secp256k1::sign_message(secret, seal_digest(chain_id, block_hash))
            .map_err(|e| SealError::Signing(e.to_string()))?;
    // alloy's 65 bytes are r ‖ s ‖ (27 + parity); the seal stores the parity as 0/1.
    let mut out = [0u8; SEAL_LEN];
    out[..64].copy_from_slice(&sig.as_bytes()[..64]);
    out[64] = u8::from(sig.v());
    Ok(Seal::from(out))
}

/// Recovers the address that sealed the block `block_hash` of chain `chain_id`.
///
/// # Errors
/// [`ChainError::InvalidSeal`] when the seal does not recover.
pub fn signer(chain_id: u64, block_hash: B256, seal: &Seal) -> Result<Address, SealError> {
    if seal[64] > 1 {
        return Err(SealError::Parity(seal[64]));
    }
    let sig = alloy_primitives::Signature::from_bytes_and_parity(&seal[..64], seal[64] == 1);
    alloy_consensus::crypto::secp256k1::recover_signer(&sig, seal_digest(chain_id, block_hash))
        .map_err(|e| SealError::Recover(e.to_string()))
}

/// A receipt as stored and hashed into the receipts root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Receipt {
    /// EIP-2718 type of its transaction.
    pub tx_type: u8,
    /// Status, cumulative gas and logs.
    pub receipt: Receipt<Log>,
}

impl L2Receipt {
    /// The logs bloom.
    pub fn bloom(&self) -> Bloom {
        self.receipt.bloom_slow()
    }

    /// EIP-2718 encoding: `type ‖ rlp([status, cumulativeGas, bloom, logs])` (no type byte for
    /// legacy).
    pub fn encoded_2718(&self) -> Vec<u8> {
        let with_bloom = ReceiptWithBloom::new(self.receipt.clone(), self.bloom());
        let mut out = Vec::new();
        if self.tx_type != 0 {
            out.push(self.tx_type);
        }
        with_bloom.encode(&mut out);
        out
    }

    /// Inverse of [`L2Receipt::encoded_2718`].
    ///
    /// # Errors
    /// Malformed bytes.
    pub fn decode_2718(bytes: &[u8]) -> Result<Self, ChainError> {
        let (tx_type, mut body) = match bytes.first() {
            Some(t) if *t < 0x80 => (*t, &bytes[1..]),
            _ => (0, bytes),
        };
        let r = ReceiptWithBloom::<Receipt<Log>>::decode(&mut body)
            .map_err(|e| ChainError::Corrupt(format!("receipt: {e}")))?;
        Ok(L2Receipt {
            tx_type,
            receipt: r.receipt,
        })
    }
}

/// The receipts root: the ordered trie of EIP-2718 receipt encodings.
pub fn receipts_root(receipts: &[L2Receipt]) -> B256 {
    alloy_trie::root::ordered_trie_root_with_encoder(receipts, |r, buf| {
        buf.put_slice(&r.encoded_2718());
    })
}

/// The block's bloom: the union of its receipts' blooms.
pub fn logs_bloom(receipts: &[L2Receipt]) -> Bloom {
    let mut b = Bloom::default();
    for r in receipts {
        b.accrue_bloom(&r.bloom());
    }
    b
}

/// keccak256 of an empty RLP list (an empty ommers list).
pub fn empty_ommers_hash() -> B256 {
    keccak256([0xc0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_address(secret: B256) -> Address {
        let key = bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice()).expect("key");
        crate::eth_address(&key)
    }

    fn sealed_block(secret: B256) -> L2Block {
        let header = Header {
            number: 7,
            gas_limit: 30_000_000,
            ..Default::default()
        };
        let seal = seal(31337, header.hash_slow(), secret).expect("seal");
        L2Block {
            header,
            txs: vec![],
            seal,
            certificate: None,
        }
    }

    #[test]
    fn the_digest_is_the_documented_preimage() {
        let hash = B256::repeat_byte(0xab);
        let mut preimage = b"hemi-rs block seal v1".to_vec();
        preimage.extend_from_slice(&[0u8; 24]);
        preimage.extend_from_slice(&31337u64.to_be_bytes());
        preimage.extend_from_slice(&[0xab; 32]);
        assert_eq!(preimage.len(), 85);
        assert_eq!(seal_digest(31337, hash), keccak256(&preimage));
        assert_ne!(seal_digest(1, hash), seal_digest(31337, hash));
    }

    #[test]
    fn a_sealed_block_recovers_its_signer_and_a_changed_one_does_not() {
        let secret = B256::repeat_byte(0x42);
        let expected = key_address(secret);
        let block = sealed_block(secret);
        assert!(block.header.extra_data.is_empty());
        assert_eq!(block.signer(31337).expect("signer"), expected);
        // Another chain id, a changed header, a changed seal: another (or no) signer.
        assert_ne!(block.signer(1).ok(), Some(expected));
        let mut tampered = block.clone();
        tampered.header.number = 8;
        assert_ne!(tampered.signer(31337).ok(), Some(expected));
        let mut bad_seal = block.clone();
        bad_seal.seal.0[10] ^= 1;
        assert_ne!(bad_seal.signer(31337).ok(), Some(expected));
        let mut bad_parity = block;
        bad_parity.seal.0[64] = 27;
        assert!(matches!(
            bad_parity.signer(31337),
            Err(ChainError::InvalidSeal(_))
        ));
        let unsealed = L2Block {
            seal: Seal::ZERO,
            ..sealed_block(secret)
        };
        assert!(matches!(
            unsealed.signer(31337),
            Err(ChainError::InvalidSeal(_))
        ));
    }

    #[test]
    fn the_wire_format_is_header_txs_seal_and_format_1_is_refused_by_name() {
        let block = sealed_block(B256::repeat_byte(0x42));
        let bytes = block.encode();
        assert_eq!(L2Block::decode(&bytes).expect("decode"), block);
        // The last 67 bytes: an RLP string of 65 bytes holding the seal.
        let tail = &bytes[bytes.len() - 67..];
        assert_eq!(&tail[..2], &[0xb8, 0x41]);
        assert_eq!(&tail[2..], block.seal.as_slice());
        let mut expected = Vec::new();
        let payload = alloy_rlp::encode(&block.header).len() + 1 + 67;
        RlpHeader {
            list: true,
            payload_length: payload,
        }
        .encode(&mut expected);
        block.header.encode(&mut expected);
        expected.push(0xc0);
        expected.extend_from_slice(tail);
        assert_eq!(bytes, expected);

        // Format 1: rlp([header with vanity ‖ seal in extraData, txs]).
        let mut old_header = block.header.clone();
        old_header.extra_data = Bytes::from(vec![0u8; 97]);
        let mut old = Vec::new();
        RlpHeader {
            list: true,
            payload_length: old_header.length() + 1,
        }
        .encode(&mut old);
        old_header.encode(&mut old);
        old.push(0xc0);
        let err = L2Block::decode(&old).expect_err("format 1");
        assert!(err.to_string().contains("format 1"), "{err}");
        assert!(err.to_string().contains("97-byte extraData"), "{err}");

        // A seal of another length, or anything after it, is refused.
        for (cut, what) in [(1usize, "64-byte seal"), (0, "trailing")] {
            let mut b = block.header.clone();
            b.number = 9;
            let mut out = Vec::new();
            let seal: &[u8] = &block.seal[..SEAL_LEN - cut];
            let extra: &[u8] = if cut == 0 { &[0x01] } else { &[] };
            RlpHeader {
                list: true,
                payload_length: b.length() + 1 + seal.length() + extra.len(),
            }
            .encode(&mut out);
            b.encode(&mut out);
            out.push(0xc0);
            seal.encode(&mut out);
            out.extend_from_slice(extra);
            assert!(
                matches!(L2Block::decode(&out), Err(ChainError::InvalidBlock(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn format_3_carries_a_certificate_after_the_seal() {
        let mut block = sealed_block(B256::repeat_byte(0x42));
        block.seal = Seal::ZERO;
        block.certificate = Some(Certificate {
            round: 3,
            signatures: vec![Seal::repeat_byte(1), Seal::repeat_byte(2)],
        });
        let bytes = block.encode();
        assert_eq!(L2Block::decode(&bytes).expect("decode"), block);
        // The certificate is the last item: b8 84 ‖ round ‖ 2 × 65 bytes.
        let tail = &bytes[bytes.len() - 136..];
        assert_eq!(&tail[..6], &[0xb8, 134, 0, 0, 0, 3]);
        // A truncated certificate is refused.
        let mut cut = block.clone();
        cut.certificate = None;
        let mut short = cut.encode();
        short.extend_from_slice(&[0x83, 0, 0, 0]);
        assert!(L2Block::decode(&short).is_err());
    }
}
