//! L2 transactions: Ethereum's envelopes plus the system transactions ([`crate::system`]).

use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{keccak256, Address, Bytes, B256};
use alloy_rlp::{Decodable, Encodable, Header as RlpHeader};
use hemi_hvm::attributes::{BTC_ATTRIBUTES_GAS, BTC_ATTRIBUTES_SENDER, BTC_ATTRIBUTES_TX_TYPE};
use hemi_hvm::BtcAttributes;

use crate::dev::{DevStateTx, DEV_STATE_TX_TYPE};
use crate::pop_rewards::{PopPayoutTx, POP_PAYOUT_TX_TYPE};
use crate::tunnel::{
    decode_body, encode_with_type, DepositTx, PayoutTx, TunnelActivationTx, DEPOSIT_TX_TYPE,
    PAYOUT_TX_TYPE, TUNNEL_ACTIVATION_TX_TYPE,
};
use crate::{BlockError, ChainError, TxDecodeError};

/// Hemi's Bitcoin-attributes deposited transaction (type `0x7C`, from `0x8888…8888`):
/// `0x7C ‖ rlp([to, gas, data])`, unsigned. Its calldata is an `updateHvmState` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcAttributesTx {
    /// Recipient (Hemi sets `0x8888…8888`).
    pub to: Option<Address>,
    /// Gas (Hemi: 1,000,000; not charged to the block).
    pub gas: u64,
    /// `updateHvmState(bytes32, bytes[])` calldata.
    pub data: Bytes,
}

impl BtcAttributesTx {
    /// The system transaction carrying `attrs`.
    pub fn new(attrs: &BtcAttributes) -> Self {
        BtcAttributesTx {
            to: Some(Address::from(BTC_ATTRIBUTES_SENDER)),
            gas: BTC_ATTRIBUTES_GAS,
            data: Bytes::from(attrs.encode()),
        }
    }

    /// The decoded attributes.
    ///
    /// # Errors
    /// The calldata is not a canonical `updateHvmState` call.
    pub fn attributes(&self) -> Result<BtcAttributes, ChainError> {
        BtcAttributes::decode(&self.data).map_err(|e| BlockError::Attributes(e).into())
    }

    fn fields_len(&self) -> usize {
        let to_len = match &self.to {
            Some(a) => a.length(),
            None => 1,
        };
        to_len + self.gas.length() + self.data.length()
    }

    fn encode_rlp(&self, out: &mut dyn alloy_rlp::BufMut) {
        RlpHeader {
            list: true,
            payload_length: self.fields_len(),
        }
        .encode(out);
        match &self.to {
            Some(a) => a.encode(out),
            None => out.put_u8(alloy_rlp::EMPTY_STRING_CODE),
        }
        self.gas.encode(out);
        self.data.encode(out);
    }

    fn decode_rlp(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let (payload_length, mut body, rest) = split_list(buf)?;
        let to = if body.first() == Some(&alloy_rlp::EMPTY_STRING_CODE) {
            body = &body[1..];
            None
        } else {
            Some(Address::decode(&mut body)?)
        };
        let gas = u64::decode(&mut body)?;
        let data = Bytes::decode(&mut body)?;
        list_done(payload_length, body)?;
        *buf = rest;
        Ok(BtcAttributesTx { to, gas, data })
    }
}

/// The RLP list at the front of `buf`: its payload length, its payload and what follows it.
fn split_list<'a>(buf: &mut &'a [u8]) -> alloy_rlp::Result<(usize, &'a [u8], &'a [u8])> {
    let h = RlpHeader::decode(buf)?;
    if !h.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    if buf.len() < h.payload_length {
        return Err(alloy_rlp::Error::InputTooShort);
    }
    let (body, rest) = buf.split_at(h.payload_length);
    Ok((h.payload_length, body, rest))
}

/// Fails when a list's payload was not read to its end (`left` is what remains).
fn list_done(payload_length: usize, left: &[u8]) -> alloy_rlp::Result<()> {
    if left.is_empty() {
        Ok(())
    } else {
        Err(alloy_rlp::Error::ListLengthMismatch {
            expected: payload_length,
            got: payload_length - left.len(),
        })
    }
}

/// Type byte of [`ImpersonatedTx`].
pub const IMPERSONATED_TX_TYPE: u8 = 0x79;

/// A devnet transaction from an impersonated account (anvil's `anvil_impersonateAccount`):
/// `0x79 ‖ rlp([from, envelope])`, the envelope an ordinary Ethereum transaction whose signature
/// is a placeholder and `from` its sender. Only a regtest devnet takes it (as `0x7A`), so
/// followers of a devnet re-execute it and no other chain accepts one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonatedTx {
    /// The impersonated sender.
    pub from: Address,
    /// The transaction (legacy, EIP-2930 or EIP-1559), signature not checked.
    pub tx: TxEnvelope,
}

impl ImpersonatedTx {
    fn inner(&self) -> Bytes {
        Bytes::from(self.tx.encoded_2718())
    }
}

impl Encodable for ImpersonatedTx {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        let inner = self.inner();
        RlpHeader {
            list: true,
            payload_length: self.from.length() + inner.length(),
        }
        .encode(out);
        self.from.encode(out);
        inner.encode(out);
    }

    fn length(&self) -> usize {
        let payload = self.from.length() + self.inner().length();
        payload + alloy_rlp::length_of_length(payload)
    }
}

impl Decodable for ImpersonatedTx {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let (payload_length, mut body, rest) = split_list(buf)?;
        let from = Address::decode(&mut body)?;
        let inner = Bytes::decode(&mut body)?;
        list_done(payload_length, body)?;
        let mut b = &inner[..];
        let tx = TxEnvelope::decode_2718(&mut b)
            .map_err(|_| alloy_rlp::Error::Custom("impersonated: not an Ethereum transaction"))?;
        if !b.is_empty() {
            return Err(alloy_rlp::Error::Custom("impersonated: trailing bytes"));
        }
        if !matches!(
            tx,
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_)
        ) {
            return Err(alloy_rlp::Error::Custom("impersonated: unsupported type"));
        }
        *buf = rest;
        Ok(ImpersonatedTx { from, tx })
    }
}

/// A transaction in an L2 block. (User transactions dominate, so the envelope is not boxed.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum L2Tx {
    /// A user transaction: legacy (EIP-155), EIP-2930 or EIP-1559.
    Eth(TxEnvelope),
    /// The block's Bitcoin-attributes system transaction.
    BtcAttributes(BtcAttributesTx),
    /// The PoP payout system transaction (type `0x7D`).
    PopPayout(PopPayoutTx),
    /// The tunnel's activation (type `0x7E`, [`crate::tunnel`]).
    TunnelActivation(TunnelActivationTx),
    /// A deposit confirmation (type `0x7F`, [`crate::tunnel`]).
    Deposit(DepositTx),
    /// A payout finalization (type `0x7B`, [`crate::tunnel`]).
    Payout(PayoutTx),
    /// A devnet state change (type `0x7A`, [`crate::dev`]).
    DevState(DevStateTx),
    /// A devnet transaction from an impersonated account (type `0x79`).
    Impersonated(ImpersonatedTx),
}

impl L2Tx {
    /// The Ethereum transaction a user sent: an ordinary one, or one from an impersonated
    /// account; `None` for system transactions.
    pub fn user_envelope(&self) -> Option<&TxEnvelope> {
        match self {
            L2Tx::Eth(env) | L2Tx::Impersonated(ImpersonatedTx { tx: env, .. }) => Some(env),
            _ => None,
        }
    }

    /// EIP-2718 type byte.
    pub fn tx_type(&self) -> u8 {
        match self {
            L2Tx::Eth(tx) => tx.tx_type() as u8,
            L2Tx::BtcAttributes(_) => BTC_ATTRIBUTES_TX_TYPE,
            L2Tx::PopPayout(_) => POP_PAYOUT_TX_TYPE,
            L2Tx::TunnelActivation(_) => TUNNEL_ACTIVATION_TX_TYPE,
            L2Tx::Deposit(_) => DEPOSIT_TX_TYPE,
            L2Tx::Payout(_) => PAYOUT_TX_TYPE,
            L2Tx::DevState(_) => DEV_STATE_TX_TYPE,
            // Its receipt carries the envelope's type, as anvil's impersonated ones do.
            L2Tx::Impersonated(tx) => tx.tx.tx_type() as u8,
        }
    }

    /// EIP-2718 encoding.
    pub fn encoded_2718(&self) -> Vec<u8> {
        match self {
            L2Tx::Eth(tx) => tx.encoded_2718(),
            L2Tx::BtcAttributes(tx) => {
                let mut out = Vec::with_capacity(tx.fields_len() + 8);
                out.push(BTC_ATTRIBUTES_TX_TYPE);
                tx.encode_rlp(&mut out);
                out
            }
            L2Tx::PopPayout(tx) => {
                let mut out = vec![POP_PAYOUT_TX_TYPE];
                tx.encode_body(&mut out);
                out
            }
            L2Tx::TunnelActivation(tx) => encode_with_type(TUNNEL_ACTIVATION_TX_TYPE, tx),
            L2Tx::Deposit(tx) => encode_with_type(DEPOSIT_TX_TYPE, tx),
            L2Tx::Payout(tx) => encode_with_type(PAYOUT_TX_TYPE, tx),
            L2Tx::DevState(tx) => encode_with_type(DEV_STATE_TX_TYPE, tx),
            L2Tx::Impersonated(tx) => encode_with_type(IMPERSONATED_TX_TYPE, tx),
        }
    }

    /// Decodes an EIP-2718 encoding (the whole slice).
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] for anything malformed, unknown types included.
    pub fn decode_2718(bytes: &[u8]) -> Result<Self, ChainError> {
        let bad = |e: TxDecodeError| ChainError::InvalidBlock(BlockError::TxDecode(e));
        if bytes.first() == Some(&BTC_ATTRIBUTES_TX_TYPE) {
            let mut body = &bytes[1..];
            let tx =
                BtcAttributesTx::decode_rlp(&mut body).map_err(|e| bad(TxDecodeError::Rlp(e)))?;
            if !body.is_empty() {
                return Err(bad(TxDecodeError::TrailingBytes));
            }
            return Ok(L2Tx::BtcAttributes(tx));
        }
        if bytes.first() == Some(&POP_PAYOUT_TX_TYPE) {
            return PopPayoutTx::decode_body(&bytes[1..])
                .map(L2Tx::PopPayout)
                .map_err(bad);
        }
        if bytes.first() == Some(&TUNNEL_ACTIVATION_TX_TYPE) {
            return decode_body(&bytes[1..])
                .map(L2Tx::TunnelActivation)
                .map_err(bad);
        }
        if bytes.first() == Some(&DEPOSIT_TX_TYPE) {
            return decode_body(&bytes[1..]).map(L2Tx::Deposit).map_err(bad);
        }
        if bytes.first() == Some(&PAYOUT_TX_TYPE) {
            return decode_body(&bytes[1..]).map(L2Tx::Payout).map_err(bad);
        }
        if bytes.first() == Some(&DEV_STATE_TX_TYPE) {
            return decode_body(&bytes[1..]).map(L2Tx::DevState).map_err(bad);
        }
        if bytes.first() == Some(&IMPERSONATED_TX_TYPE) {
            return decode_body(&bytes[1..])
                .map(L2Tx::Impersonated)
                .map_err(bad);
        }
        let mut buf = bytes;
        let tx = TxEnvelope::decode_2718(&mut buf)
            .map_err(|e| bad(TxDecodeError::Envelope(e.to_string())))?;
        if !buf.is_empty() {
            return Err(bad(TxDecodeError::TrailingBytes));
        }
        match tx {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {
                Ok(L2Tx::Eth(tx))
            }
            other => Err(bad(TxDecodeError::UnsupportedType(other.tx_type() as u8))),
        }
    }

    /// Transaction hash: keccak256 of the EIP-2718 encoding.
    pub fn hash(&self) -> B256 {
        match self {
            L2Tx::Eth(tx) => *tx.tx_hash(),
            L2Tx::BtcAttributes(_)
            | L2Tx::PopPayout(_)
            | L2Tx::TunnelActivation(_)
            | L2Tx::Deposit(_)
            | L2Tx::Payout(_)
            | L2Tx::DevState(_)
            | L2Tx::Impersonated(_) => keccak256(self.encoded_2718()),
        }
    }

    /// Recovers the sender (the fixed system address for the attributes transaction).
    ///
    /// # Errors
    /// [`ChainError::InvalidBlock`] if the signature does not recover.
    pub fn recover_sender(&self) -> Result<Address, ChainError> {
        match self {
            L2Tx::Eth(tx) => alloy_consensus::transaction::SignerRecoverable::recover_signer(tx)
                .map_err(|e| BlockError::Signature(e.to_string()).into()),
            L2Tx::BtcAttributes(_)
            | L2Tx::PopPayout(_)
            | L2Tx::TunnelActivation(_)
            | L2Tx::Deposit(_)
            | L2Tx::Payout(_)
            | L2Tx::DevState(_) => Ok(Address::from(BTC_ATTRIBUTES_SENDER)),
            L2Tx::Impersonated(tx) => Ok(tx.from),
        }
    }
}

/// A transaction with its hash and recovered sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The transaction.
    pub tx: L2Tx,
    /// Its hash.
    pub hash: B256,
    /// Its sender.
    pub sender: Address,
}

impl SignedTx {
    /// Hashes and recovers `tx`.
    ///
    /// # Errors
    /// The signature does not recover.
    pub fn recover(tx: L2Tx) -> Result<Self, ChainError> {
        let sender = tx.recover_sender()?;
        Ok(SignedTx {
            hash: tx.hash(),
            sender,
            tx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn the_attributes_tx_round_trips_and_rejects_trailing_bytes() {
        let attrs = BtcAttributes {
            canonical_tip: bitcoin::BlockHash::from_byte_array([7; 32]),
            headers: vec![],
        };
        let tx = L2Tx::BtcAttributes(BtcAttributesTx::new(&attrs));
        let enc = tx.encoded_2718();
        assert_eq!(enc[0], 0x7C);
        assert_eq!(L2Tx::decode_2718(&enc).expect("decode"), tx);
        let mut longer = enc.clone();
        longer.push(0);
        assert!(L2Tx::decode_2718(&longer).is_err());
        for cut in 0..enc.len() {
            assert!(L2Tx::decode_2718(&enc[..cut]).is_err(), "prefix {cut}");
        }
        match &tx {
            L2Tx::BtcAttributes(t) => assert_eq!(t.attributes().expect("attrs"), attrs),
            _ => unreachable!(),
        }
    }
}

#[cfg(test)]
mod tunnel_tests {
    use alloy_primitives::B256;

    use super::*;

    #[test]
    fn the_tunnel_transactions_round_trip_and_reject_trailing_bytes() {
        let txs = [
            L2Tx::TunnelActivation(TunnelActivationTx {
                vault_output_key: B256::repeat_byte(3),
                deposit_fee: 1_000,
                min_deposit: 10_000,
                deposit_confirmations: 3,
                withdrawal_deadline: 50,
            }),
            L2Tx::Deposit(DepositTx {
                txid: B256::repeat_byte(9),
                vout: 1,
            }),
            L2Tx::Payout(PayoutTx {
                txid: B256::repeat_byte(8),
            }),
            L2Tx::Impersonated(ImpersonatedTx {
                from: Address::repeat_byte(0xaa),
                tx: TxEnvelope::Eip1559(alloy_consensus::SignableTransaction::into_signed(
                    alloy_consensus::TxEip1559 {
                        chain_id: 31337,
                        nonce: 3,
                        gas_limit: 21_000,
                        max_fee_per_gas: 2,
                        max_priority_fee_per_gas: 1,
                        to: alloy_primitives::TxKind::Call(Address::repeat_byte(0xbb)),
                        value: alloy_primitives::U256::from(5),
                        access_list: Default::default(),
                        input: Bytes::new(),
                    },
                    alloy_primitives::Signature::new(
                        alloy_primitives::U256::ZERO,
                        alloy_primitives::U256::ZERO,
                        false,
                    ),
                )),
            }),
        ];
        for tx in txs {
            let enc = tx.encoded_2718();
            assert_eq!(L2Tx::decode_2718(&enc).expect("decode"), tx);
            let mut longer = enc.clone();
            longer.push(0);
            assert!(L2Tx::decode_2718(&longer).is_err());
            for cut in 0..enc.len() {
                assert!(L2Tx::decode_2718(&enc[..cut]).is_err(), "prefix {cut}");
            }
        }
    }
}
