//! Reads: headers, blocks, receipts, pins, the transaction index and state at a block.

use std::sync::Arc;

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256};
use bitcoin::hashes::Hash;
use hemi_btc_view::BlockRef;
use redb::ReadableDatabase;

use super::{BlockWithReceipts, Chain, StoredBlock, CACHED_BLOCKS};
use crate::block::{L2Receipt, Seal};
use crate::db::*;
use crate::state::StateView;
use crate::tx::SignedTx;
use crate::ChainError;

impl Chain {
    /// The header of canonical block `number`.
    ///
    /// # Errors
    /// Database errors or a corrupt record.
    pub fn header(&self, number: u64) -> Result<Option<Header>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HEADERS)?;
        match t.get(number)? {
            Some(v) => {
                let mut b = v.value();
                Ok(Some(alloy_rlp::Decodable::decode(&mut b).map_err(|e| {
                    ChainError::Corrupt(format!("header {number}: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// The number of the canonical block with `hash`.
    ///
    /// # Errors
    /// Database errors.
    pub fn number_of(&self, hash: &B256) -> Result<Option<u64>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HASHES)?;
        Ok(t.get(&hash.0)?.map(|v| v.value()))
    }

    /// The Bitcoin block block `number` was executed against.
    ///
    /// # Errors
    /// Database errors.
    pub fn pin(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PINS)?;
        Ok(t.get(number)?.map(|v| {
            let b = v.value();
            let mut h = [0u8; 4];
            h.copy_from_slice(&b[32..]);
            BlockRef {
                hash: bitcoin::BlockHash::from_byte_array(b[..32].try_into().unwrap_or([0; 32])),
                height: u32::from_be_bytes(h),
            }
        }))
    }

    /// Canonical block `number` with its transactions.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn block(&self, number: u64) -> Result<Option<StoredBlock>, ChainError> {
        let Some(header) = self.header(number)? else {
            return Ok(None);
        };
        let r = self.db.begin_read()?;
        let bodies = r.open_table(BODIES)?;
        let senders = r.open_table(SENDERS)?;
        let seal = match r.open_table(SEALS)?.get(number)? {
            Some(v) => Seal::from(*v.value()),
            None if number == 0 => Seal::ZERO,
            None => {
                return Err(ChainError::Corrupt(format!(
                    "seal of block {number} missing"
                )))
            }
        };
        let certificate = match r.open_table(CERTIFICATES) {
            Ok(t) => match t.get(number)? {
                Some(v) => Some(crate::Certificate::decode(v.value()).map_err(|e| {
                    ChainError::Corrupt(format!("certificate of block {number}: {e}"))
                })?),
                None => None,
            },
            // A database written before certificates existed has no such table.
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let body = bodies
            .get(number)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let senders = senders
            .get(number)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let txs = crate::block::decode_txs(&mut body.as_slice())
            .map_err(|e| ChainError::Corrupt(format!("body {number}: {e}")))?;
        if senders.len() != txs.len() * 20 {
            return Err(ChainError::Corrupt(format!("senders of block {number}")));
        }
        let txs = txs
            .into_iter()
            .zip(senders.chunks(20))
            .map(|(tx, s)| SignedTx {
                hash: tx.hash(),
                sender: Address::from_slice(s),
                tx,
            })
            .collect();
        Ok(Some(StoredBlock {
            hash: header.hash_slow(),
            header,
            txs,
            seal,
            certificate,
        }))
    }

    pub(super) fn remember(&self, b: BlockWithReceipts) {
        let mut cache = self.cache.lock();
        cache.insert(b.block.header.number, Arc::new(b));
        while cache.len() > CACHED_BLOCKS {
            cache.pop_first();
        }
    }

    /// Canonical block `number` with its receipts, from the cache of recent blocks when there.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn block_with_receipts(
        &self,
        number: u64,
    ) -> Result<Option<Arc<BlockWithReceipts>>, ChainError> {
        if let Some(b) = self.cache.lock().get(&number) {
            return Ok(Some(b.clone()));
        }
        let Some(block) = self.block(number)? else {
            return Ok(None);
        };
        let receipts = self.receipts(number)?.unwrap_or_default();
        let b = Arc::new(BlockWithReceipts { block, receipts });
        let mut cache = self.cache.lock();
        if number > self.head.read().number {
            return Ok(Some(b)); // read just before an unwind removed it: do not keep it
        }
        cache.insert(number, b.clone());
        while cache.len() > CACHED_BLOCKS {
            cache.pop_first();
        }
        Ok(Some(b))
    }

    /// The raw encoding of block `number` ([`L2Block::encode`]: `rlp([header, txs, seal])`).
    ///
    /// # Errors
    /// Database errors.
    pub fn raw_block(&self, number: u64) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.block(number)?.map(|b| b.to_l2_block().encode()))
    }

    /// Receipts of block `number`.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn receipts(&self, number: u64) -> Result<Option<Vec<L2Receipt>>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RECEIPTS)?;
        let Some(v) = t.get(number)? else {
            return Ok(None);
        };
        let mut b = v.value();
        let list: Vec<Bytes> = alloy_rlp::Decodable::decode(&mut b)
            .map_err(|e| ChainError::Corrupt(format!("receipts {number}: {e}")))?;
        list.iter()
            .map(|r| L2Receipt::decode_2718(r))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Where a mined transaction is: block number and index.
    ///
    /// # Errors
    /// Database errors.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<(u64, u64)>, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TX_INDEX)?;
        Ok(t.get(&hash.0)?.map(|v| {
            let b = v.value();
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[..8]);
            let mut i = [0u8; 4];
            i.copy_from_slice(&b[8..]);
            (u64::from_be_bytes(n), u64::from(u32::from_be_bytes(i)))
        }))
    }

    /// State after block `number` (the newest state when `number` is the head).
    ///
    /// # Errors
    /// [`ChainError::UnknownBlock`] above the head; database errors.
    pub fn state_at(&self, number: u64) -> Result<StateView, ChainError> {
        let head = self.head.read().number;
        if number > head {
            return Err(ChainError::UnknownBlock(number));
        }
        // The head may have moved since; history answers for any block before the snapshot's.
        let snap = self.state.snapshot()?;
        if number > snap.head() {
            return Err(ChainError::UnknownBlock(number));
        }
        StateView::new(Arc::new(snap), &self.db.begin_read()?, Some(number))
    }
}
