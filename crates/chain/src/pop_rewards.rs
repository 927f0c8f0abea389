//! PoP rewards: L2 pays the Bitcoin publications of each keystone, scored by how soon they
//! landed after the first one (Hemi's `PoPPayoutsV2` table), `pop_payout_delay` blocks after
//! the keystone.
//!
//! Block `n` pays keystone `k = n − pop_payout_delay` (when `k` is a keystone): every
//! publication of `k` in the Bitcoin best chain up to the block's pinned Bitcoin block is scored
//! `SCORE_TABLE[h − h₀]` (`h₀` the first publication's height; none from relative height 9), and
//! `pop_reward` wei is split pro rata among the publications' miners. A miner is the Ethereum
//! address of the public key that signed the publication's first input (P2WPKH witness or
//! P2PKH scriptSig — Hemi's rule "same secp256k1 key"; a taproot key-path spend reveals only a
//! tweaked key, so such publications count for `h₀` but earn nothing). The payout is a system
//! transaction (type `0x7D`, from `0x8888…8888`) right after the Bitcoin-attributes one: it
//! credits the balances and logs one `PopReward` event per publication from
//! [`POP_REWARDS_ADDRESS`]. Every node recomputes it from its own Bitcoin view and refuses a
//! block whose payout differs.

use alloy_primitives::{address, keccak256, Address, Log, LogData, B256, U256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use bitcoin::hashes::Hash;
use hemi_btc_view::{AsOf, BitcoinView, BlockRef};
use hemi_keystone::Keystone;

use crate::ChainError;

/// EIP-2718 type of the payout transaction.
pub const POP_PAYOUT_TX_TYPE: u8 = 0x7D;
/// Where `PopReward` events come from.
pub const POP_REWARDS_ADDRESS: Address = address!("0x4200000000000000000000000000000000000042");
/// Hemi's v2 score by relative publication height (`100000 / max(rel, 1)²`); 0 from 9 on.
pub const SCORE_TABLE: [u64; 9] = [100000, 100000, 25000, 11111, 6250, 4000, 2778, 2041, 1563];

/// `PopReward(uint64 indexed keystone, address indexed miner, uint256 amount,
/// uint32 relativeHeight, bytes32 bitcoinTxid)`.
pub fn pop_reward_topic() -> B256 {
    keccak256("PopReward(uint64,address,uint256,uint32,bytes32)")
}

/// One publication's reward.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PopPayout {
    /// The miner's L2 address.
    pub miner: Address,
    /// Wei credited.
    pub amount: U256,
    /// Bitcoin height of the publication − height of the first one.
    pub relative_height: u32,
    /// The publication's Bitcoin txid (internal byte order).
    pub bitcoin_txid: B256,
}

/// The payout system transaction: `0x7D ‖ rlp([keystone, [[miner, amount, rel, txid], …]])`.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PopPayoutTx {
    /// L2 number of the keystone paid.
    pub keystone: u64,
    /// One entry per scored publication, in Bitcoin order.
    pub payouts: Vec<PopPayout>,
}

impl PopPayoutTx {
    /// RLP of the body (after the type byte).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }

    /// Decodes the body (after the type byte), the whole slice.
    ///
    /// # Errors
    /// Malformed RLP or trailing bytes.
    pub fn decode_body(mut bytes: &[u8]) -> Result<Self, crate::TxDecodeError> {
        let tx = Self::decode(&mut bytes).map_err(crate::TxDecodeError::Rlp)?;
        if !bytes.is_empty() {
            return Err(crate::TxDecodeError::TrailingBytes);
        }
        Ok(tx)
    }

    /// The `PopReward` logs this payout emits.
    pub fn logs(&self) -> Vec<Log> {
        self.payouts
            .iter()
            .map(|p| {
                let mut data = Vec::with_capacity(96);
                data.extend_from_slice(&p.amount.to_be_bytes::<32>());
                data.extend_from_slice(&U256::from(p.relative_height).to_be_bytes::<32>());
                data.extend_from_slice(p.bitcoin_txid.as_slice());
                Log {
                    address: POP_REWARDS_ADDRESS,
                    data: LogData::new_unchecked(
                        vec![
                            pop_reward_topic(),
                            B256::from(U256::from(self.keystone)),
                            p.miner.into_word(),
                        ],
                        data.into(),
                    ),
                }
            })
            .collect()
    }
}

/// The keystone at block `number` from its header, the previous keystone's block hash (zero
/// for the first keystone, as Hemi) and the Bitcoin height the block pinned.
pub fn keystone_from(
    header: &alloy_consensus::Header,
    prev_keystone_hash: B256,
    pinned_height: u32,
) -> Keystone {
    Keystone {
        version: 1,
        l1_block_number: pinned_height,
        l2_block_number: u32::try_from(header.number).unwrap_or(u32::MAX),
        parent_ep_hash: header.parent_hash.0,
        prev_keystone_ep_hash: prev_keystone_hash.0,
        state_root: header.state_root.0,
        ep_hash: header.hash_slow().0,
    }
}

/// The Ethereum address of the key that signed `tx`'s first input, if it shows one.
fn miner_of(tx: &bitcoin::Transaction) -> Option<Address> {
    let input = tx.input.first()?;
    let key_bytes: Vec<u8> = if input.witness.len() == 2 {
        input.witness.nth(1)?.to_vec()
    } else if input.witness.is_empty() {
        // P2PKH: <sig> <pubkey>.
        let pushes: Vec<Vec<u8>> = input
            .script_sig
            .instructions()
            .filter_map(|i| i.ok()?.push_bytes().map(|b| b.as_bytes().to_vec()))
            .collect();
        pushes.get(1)?.clone()
    } else {
        return None;
    };
    let pk = bitcoin::secp256k1::PublicKey::from_slice(&key_bytes).ok()?;
    let uncompressed = pk.serialize_uncompressed();
    Some(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

/// Splits `reward` over the publications of `keystone` (abbreviated id `id`) visible in
/// Bitcoin's best chain up to `pin`.
///
/// # Errors
/// [`ChainError::BitcoinNotReady`] if `pin` is not on the view's best chain; view errors.
pub fn compute_payout(
    view: &dyn BitcoinView,
    pin: BlockRef,
    keystone: u64,
    id: &[u8; 32],
    reward: U256,
) -> Result<Option<PopPayoutTx>, ChainError> {
    let not_ready = |e: String| ChainError::BitcoinNotReady(e);
    if view
        .header_by_hash(&pin.hash)
        .map_err(|e| not_ready(e.to_string()))?
        .is_none_or(|(b, _)| b.height != pin.height)
    {
        return Err(not_ready(format!(
            "pinned Bitcoin block {} is not on our best chain",
            pin.hash
        )));
    }
    let pubs: Vec<_> = view
        .keystone_publications(id)
        .map_err(|e| not_ready(e.to_string()))?
        .into_iter()
        .filter(|p| p.location.block.height <= pin.height)
        .collect();
    let Some(first) = pubs.iter().map(|p| p.location.block.height).min() else {
        return Ok(None);
    };
    let mut scored = Vec::new();
    for p in &pubs {
        let rel = p.location.block.height - first;
        let score = SCORE_TABLE.get(rel as usize).copied().unwrap_or(0);
        if score == 0 {
            continue;
        }
        // As of the tip, not of the pin: the publication is in a best-chain block at or below
        // the pin (checked above), so the tip sees it too, and a follower replaying old blocks
        // must not depend on how far back the view keeps undo data.
        let tx = view
            .transaction(&p.txid, AsOf::Tip)
            .map_err(|e| not_ready(e.to_string()))?;
        let Some(miner) = tx.as_ref().and_then(|t| miner_of(&t.tx)) else {
            continue;
        };
        scored.push((miner, score, rel, B256::from(p.txid.to_byte_array())));
    }
    let total: u64 = scored.iter().map(|s| s.1).sum();
    if total == 0 {
        return Ok(None);
    }
    let payouts = scored
        .into_iter()
        .map(|(miner, score, rel, txid)| PopPayout {
            miner,
            amount: reward * U256::from(score) / U256::from(total),
            relative_height: rel,
            bitcoin_txid: txid,
        })
        .collect();
    Ok(Some(PopPayoutTx { keystone, payouts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payout_tx_round_trips_and_logs_one_event_per_publication() {
        let tx = PopPayoutTx {
            keystone: 25,
            payouts: vec![
                PopPayout {
                    miner: Address::repeat_byte(1),
                    amount: U256::from(800u64),
                    relative_height: 0,
                    bitcoin_txid: B256::repeat_byte(7),
                },
                PopPayout {
                    miner: Address::repeat_byte(2),
                    amount: U256::from(200u64),
                    relative_height: 2,
                    bitcoin_txid: B256::repeat_byte(8),
                },
            ],
        };
        let mut b = Vec::new();
        tx.encode_body(&mut b);
        assert_eq!(PopPayoutTx::decode_body(&b), Ok(tx.clone()));
        b.push(0);
        assert!(PopPayoutTx::decode_body(&b).is_err());
        let logs = tx.logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[1].topics()[0], pop_reward_topic());
        assert_eq!(logs[1].topics()[2], Address::repeat_byte(2).into_word());
        assert_eq!(
            &logs[1].data.data[..32],
            &U256::from(200u64).to_be_bytes::<32>()
        );
    }

    #[test]
    fn the_score_table_is_hemis() {
        for (rel, s) in SCORE_TABLE.iter().enumerate() {
            let expect = 100_000f64 / (rel.max(1) as f64).powi(2);
            assert!(
                (*s as f64 - expect).abs() < 1.0,
                "rel {rel}: {s} vs {expect}"
            );
        }
    }
}
