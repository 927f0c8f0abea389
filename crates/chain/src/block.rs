//! L2 blocks: Ethereum headers (alloy) sealed Clique-style by the sequencer, and receipts.

use alloy_consensus::{Header, Receipt, ReceiptWithBloom};
use alloy_primitives::{keccak256, Address, Bloom, Bytes, Log, B256};
use alloy_rlp::{BufMut, Decodable, Encodable, Header as RlpHeader};

use crate::tx::L2Tx;
use crate::ChainError;

/// Bytes of free "vanity" data at the start of `extraData` (Clique, EIP-225).
pub const EXTRA_VANITY: usize = 32;
/// Bytes of the sequencer's signature at the end of `extraData`: r ‖ s ‖ v (v = 0 or 1).
pub const EXTRA_SEAL: usize = 65;

/// An L2 block: header and transactions (the Bitcoin-attributes transaction first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Block {
    /// The sealed header.
    pub header: Header,
    /// Transactions in order.
    pub txs: Vec<L2Tx>,
}

impl L2Block {
    /// Block hash: keccak256 of the RLP header (seal included).
    pub fn hash(&self) -> B256 {
        self.header.hash_slow()
    }

    /// `rlp([header, [tx_2718, …]])`, every transaction as an RLP string of its EIP-2718
    /// bytes. What `debug_getRawBlock` returns and followers decode.
    pub fn encode(&self) -> Vec<u8> {
        let txs = encode_txs(&self.txs);
        let payload = self.header.length() + txs.len();
        let mut out = Vec::with_capacity(payload + 8);
        RlpHeader {
            list: true,
            payload_length: payload,
        }
        .encode(&mut out);
        self.header.encode(&mut out);
        out.extend_from_slice(&txs);
        out
    }

    /// Decodes [`L2Block::encode`]'s bytes (the whole slice).
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChainError> {
        let bad = |e: &dyn std::fmt::Display| ChainError::InvalidBlock(format!("block RLP: {e}"));
        let mut buf = bytes;
        let h = RlpHeader::decode(&mut buf).map_err(|e| bad(&e))?;
        if !h.list || h.payload_length != buf.len() {
            return Err(bad(&"not one RLP list"));
        }
        let header = Header::decode(&mut buf).map_err(|e| bad(&e))?;
        let txs = decode_txs(&mut buf)?;
        if !buf.is_empty() {
            return Err(bad(&"trailing bytes"));
        }
        Ok(L2Block { header, txs })
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
    let list = Vec::<Bytes>::decode(buf)
        .map_err(|e| ChainError::InvalidBlock(format!("transaction list RLP: {e}")))?;
    list.iter().map(|b| L2Tx::decode_2718(b)).collect()
}

/// The transactions root: the ordered trie of EIP-2718 encodings.
pub fn transactions_root(txs: &[L2Tx]) -> B256 {
    alloy_trie::root::ordered_trie_root_with_encoder(txs, |tx, buf| {
        buf.put_slice(&tx.encoded_2718());
    })
}

/// The hash the sequencer signs: the header with the 65 seal bytes cut from `extraData`.
///
/// # Errors
/// `extraData` is shorter than vanity + seal.
pub fn seal_hash(header: &Header) -> Result<B256, ChainError> {
    let extra = &header.extra_data;
    if extra.len() < EXTRA_VANITY + EXTRA_SEAL {
        return Err(ChainError::InvalidSeal(format!(
            "extraData is {} bytes; a sealed header has at least {}",
            extra.len(),
            EXTRA_VANITY + EXTRA_SEAL
        )));
    }
    let mut unsealed = header.clone();
    unsealed.extra_data = Bytes::copy_from_slice(&extra[..extra.len() - EXTRA_SEAL]);
    Ok(unsealed.hash_slow())
}

/// Seals `header` with `secret`: sets `extraData` to its vanity bytes followed by the signature.
///
/// # Errors
/// The key is not a valid secp256k1 secret.
pub fn seal(header: &mut Header, secret: B256) -> Result<(), ChainError> {
    let mut extra = header.extra_data.to_vec();
    extra.resize(EXTRA_VANITY, 0);
    extra.extend_from_slice(&[0u8; EXTRA_SEAL]);
    header.extra_data = Bytes::from(extra.clone());
    let hash = seal_hash(header)?;
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, hash)
        .map_err(|e| ChainError::InvalidSeal(format!("signing: {e}")))?;
    let bytes = sig.as_bytes();
    // alloy's 65 bytes are r ‖ s ‖ (27 + parity); Clique stores parity as 0/1.
    extra[EXTRA_VANITY..EXTRA_VANITY + 64].copy_from_slice(&bytes[..64]);
    extra[EXTRA_VANITY + 64] = u8::from(sig.v());
    header.extra_data = Bytes::from(extra);
    Ok(())
}

/// Recovers the address that sealed `header`.
///
/// # Errors
/// [`ChainError::InvalidSeal`] when the seal is missing or does not recover.
pub fn signer(header: &Header) -> Result<Address, ChainError> {
    let hash = seal_hash(header)?;
    let extra = &header.extra_data;
    let seal = &extra[extra.len() - EXTRA_SEAL..];
    if seal[64] > 1 {
        return Err(ChainError::InvalidSeal(format!(
            "seal parity byte is {}, not 0 or 1",
            seal[64]
        )));
    }
    let sig = alloy_primitives::Signature::from_bytes_and_parity(&seal[..64], seal[64] == 1);
    alloy_consensus::crypto::secp256k1::recover_signer(&sig, hash)
        .map_err(|e| ChainError::InvalidSeal(format!("seal does not recover: {e}")))
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

    #[test]
    fn a_sealed_header_recovers_its_signer_and_a_changed_one_does_not() {
        let secret = B256::repeat_byte(0x42);
        let secp_key = bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice()).expect("key");
        let expected = crate::eth_address(&secp_key);
        let mut header = Header {
            number: 7,
            gas_limit: 30_000_000,
            ..Default::default()
        };
        seal(&mut header, secret).expect("seal");
        assert_eq!(header.extra_data.len(), EXTRA_VANITY + EXTRA_SEAL);
        assert_eq!(signer(&header).expect("signer"), expected);
        let mut tampered = header.clone();
        tampered.number = 8;
        assert_ne!(signer(&tampered).ok(), Some(expected));
        let mut unsealed = header;
        unsealed.extra_data = Bytes::new();
        assert!(matches!(signer(&unsealed), Err(ChainError::InvalidSeal(_))));
    }
}
