//! [`BitcoinView`] over the store. Every call reads one redb snapshot, so its answer is the
//! state after one particular committed block even while blocks are being connected.

use std::collections::BTreeMap;

use bitcoin::block::Header;
use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, Script, Transaction, Txid};
use hemi_btc_view::{
    AsOf, BitcoinView, BlockRef, IndexedTx, KeystonePublication, SpentBy, TxLocation, Utxo,
    ViewError,
};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::codec::*;
use crate::{
    ChainStore, StoreError, BLOCKS, CHAIN, KEYSTONES, MAX_ASOF_DEPTH, META, RECENT_DELTAS,
    SCRIPT_DELTAS, SCRIPT_UTXOS, SPENT_BY, TXS,
};

impl ChainStore {
    fn snapshot(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Indexed tip as of the snapshot.
    fn snap_tip(r: &ReadTransaction) -> Result<BlockRef, StoreError> {
        let chain = r.open_table(CHAIN)?;
        let (h, v) = chain
            .last()?
            .ok_or_else(|| StoreError::Corrupt("empty chain table".into()))?;
        Ok(BlockRef {
            height: h.value(),
            hash: BlockHash::from_byte_array(*v.value()),
        })
    }

    fn snap_hash_at(r: &ReadTransaction, height: u32) -> Result<Option<BlockHash>, StoreError> {
        Ok(r.open_table(CHAIN)?
            .get(height)?
            .map(|v| BlockHash::from_byte_array(*v.value())))
    }

    /// Resolves `at` to a block on the snapshot's indexed chain.
    fn resolve(&self, r: &ReadTransaction, at: AsOf) -> Result<(BlockRef, BlockRef), ViewError> {
        let tip = Self::snap_tip(r)?;
        let target = match at {
            AsOf::Tip => tip,
            AsOf::Block(hash) => {
                let height = self
                    .tree
                    .read()
                    .get(&hash)
                    .map(|n| n.height)
                    .ok_or(ViewError::NotOnBestChain(hash))?;
                if Self::snap_hash_at(r, height)? != Some(hash) {
                    return Err(ViewError::NotOnBestChain(hash));
                }
                let depth = tip.height - height;
                if depth > MAX_ASOF_DEPTH {
                    return Err(ViewError::TooDeep {
                        hash,
                        depth,
                        max: MAX_ASOF_DEPTH,
                    });
                }
                BlockRef { height, hash }
            }
        };
        Ok((tip, target))
    }
}

impl BitcoinView for ChainStore {
    fn tip(&self) -> Result<BlockRef, ViewError> {
        Ok(self.indexed_tip())
    }

    fn header_at(&self, height: u32) -> Result<Option<(BlockRef, Header)>, ViewError> {
        let r = self.snapshot()?;
        let Some(hash) = Self::snap_hash_at(&r, height)? else {
            return Ok(None);
        };
        Ok(self
            .tree
            .read()
            .get(&hash)
            .map(|n| (BlockRef { height, hash }, n.header)))
    }

    fn header_by_hash(&self, hash: &BlockHash) -> Result<Option<(BlockRef, Header)>, ViewError> {
        let Some((height, header)) = self.tree.read().get(hash).map(|n| (n.height, n.header))
        else {
            return Ok(None);
        };
        let r = self.snapshot()?;
        if Self::snap_hash_at(&r, height)? != Some(*hash) {
            return Ok(None);
        }
        Ok(Some((
            BlockRef {
                height,
                hash: *hash,
            },
            header,
        )))
    }

    fn utxos_by_script(&self, script: &Script, at: AsOf) -> Result<Vec<Utxo>, ViewError> {
        let r = self.snapshot()?;
        let (tip, target) = self.resolve(&r, at)?;
        let sh = script_hash(script);
        let mut lo = [0u8; 68];
        lo[..32].copy_from_slice(&sh);
        let mut hi = [0xffu8; 68];
        hi[..32].copy_from_slice(&sh);
        let table = r.open_table(SCRIPT_UTXOS).map_err(StoreError::from)?;
        let mut set = BTreeMap::new();
        let utxo = |op: OutPoint, entry: &[u8; 13]| -> Result<Utxo, StoreError> {
            let (value, height, coinbase) = decode_script_entry(entry)?;
            Ok(Utxo {
                outpoint: op,
                value,
                script_pubkey: script.to_owned(),
                height,
                coinbase,
            })
        };
        for row in table
            .range::<&[u8; 68]>(&lo..=&hi)
            .map_err(StoreError::from)?
        {
            let (k, v) = row.map_err(StoreError::from)?;
            let op = outpoint_from_key(&k.value()[32..]);
            set.insert(op, utxo(op, v.value())?);
        }
        // Undo what the blocks above `target` did to this script: an output they created was
        // not there yet; one they spent that existed at `target` (created at or below it) was.
        // Order does not matter, so an output created and spent above `target` stays gone.
        // Within the recent run (script-first deltas) one range read covers every block above
        // `target`; below it, one short range read per block back.
        let mut undo = |k: &DeltaKey, v: &[u8; 13]| -> Result<(), ViewError> {
            let op = outpoint_from_key(&k[37..]);
            let u = utxo(op, v)?;
            match k[36] {
                DELTA_CREATED => {
                    set.remove(&op);
                }
                _ if u.height <= target.height => {
                    set.insert(op, u);
                }
                _ => {}
            }
            Ok(())
        };
        if target.height == tip.height {
            return Ok(set.into_values().collect());
        }
        let meta = r.open_table(META).map_err(StoreError::from)?;
        let from = crate::read_recent_from(&meta)?;
        if from.is_some_and(|from| from <= target.height + 1) {
            let recents = r.open_table(RECENT_DELTAS).map_err(StoreError::from)?;
            let lo = recent_key(&sh, target.height + 1, 0, &OutPoint::null());
            let mut hi = recent_key(&sh, tip.height, 0xff, &OutPoint::null());
            hi[37..].fill(0xff);
            for row in recents
                .range::<&DeltaKey>(&lo..=&hi)
                .map_err(StoreError::from)?
            {
                let (k, v) = row.map_err(StoreError::from)?;
                undo(k.value(), v.value())?;
            }
        } else {
            let deltas = r.open_table(SCRIPT_DELTAS).map_err(StoreError::from)?;
            for h in target.height + 1..=tip.height {
                let lo = delta_key(&sh, h, 0, &OutPoint::null());
                let mut hi = delta_key(&sh, h, 0xff, &OutPoint::null());
                hi[37..].fill(0xff);
                for row in deltas
                    .range::<&DeltaKey>(&lo..=&hi)
                    .map_err(StoreError::from)?
                {
                    let (k, v) = row.map_err(StoreError::from)?;
                    undo(k.value(), v.value())?;
                }
            }
        }
        Ok(set.into_values().collect())
    }

    fn transaction(&self, txid: &Txid, at: AsOf) -> Result<Option<IndexedTx>, ViewError> {
        let r = self.snapshot()?;
        let (_, target) = self.resolve(&r, at)?;
        let Some(rec) = r
            .open_table(TXS)
            .map_err(StoreError::from)?
            .get(txid.as_byte_array())
            .map_err(StoreError::from)?
            .map(|v| *v.value())
        else {
            return Ok(None);
        };
        let rec = TxRecord::decode(&rec)?;
        if rec.height > target.height {
            return Ok(None);
        }
        let blocks = r.open_table(BLOCKS).map_err(StoreError::from)?;
        let raw = blocks
            .get(rec.block.as_byte_array())
            .map_err(StoreError::from)?
            .ok_or_else(|| StoreError::Corrupt(format!("tx {txid} points at a missing block")))?;
        let raw = raw.value();
        let bytes = raw
            .get(rec.offset as usize..rec.offset as usize + rec.len as usize)
            .ok_or_else(|| corrupt("tx byte range"))?;
        let tx = deserialize(bytes).map_err(|e| StoreError::Corrupt(format!("tx {txid}: {e}")))?;
        Ok(Some(IndexedTx {
            tx,
            location: TxLocation {
                block: BlockRef {
                    height: rec.height,
                    hash: rec.block,
                },
                index: rec.index,
            },
        }))
    }

    fn spent_by(&self, outpoint: &OutPoint) -> Result<Option<SpentBy>, ViewError> {
        let r = self.snapshot()?;
        let v = r
            .open_table(SPENT_BY)
            .map_err(StoreError::from)?
            .get(&outpoint_key(outpoint))
            .map_err(StoreError::from)?
            .map(|v| *v.value());
        Ok(v.map(|b| {
            let mut t = [0u8; 32];
            t.copy_from_slice(&b[..32]);
            SpentBy {
                txid: Txid::from_byte_array(t),
                vin: u32::from_le_bytes([b[32], b[33], b[34], b[35]]),
                height: u32::from_le_bytes([b[36], b[37], b[38], b[39]]),
            }
        }))
    }

    fn block_transactions(&self, hash: &BlockHash) -> Result<Option<Vec<Transaction>>, ViewError> {
        if self.header_by_hash(hash)?.is_none() {
            return Ok(None);
        }
        Ok(self.block(hash)?.map(|b| b.txdata))
    }

    fn keystone_publications(
        &self,
        keystone_id: &[u8; 32],
    ) -> Result<Vec<KeystonePublication>, ViewError> {
        let r = self.snapshot()?;
        let lo = keystone_key(keystone_id, 0, 0);
        let hi = keystone_key(keystone_id, u32::MAX, u32::MAX);
        let t = r.open_table(KEYSTONES).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for row in t.range::<&[u8; 40]>(&lo..=&hi).map_err(StoreError::from)? {
            let (k, v) = row.map_err(StoreError::from)?;
            let (k, v) = (k.value(), v.value());
            let height = u32::from_be_bytes([k[32], k[33], k[34], k[35]]);
            let index = u32::from_be_bytes([k[36], k[37], k[38], k[39]]);
            let mut t = [0u8; 32];
            t.copy_from_slice(&v[..32]);
            let mut b = [0u8; 32];
            b.copy_from_slice(&v[32..]);
            out.push(KeystonePublication {
                keystone_id: *keystone_id,
                txid: Txid::from_byte_array(t),
                location: TxLocation {
                    block: BlockRef {
                        height,
                        hash: BlockHash::from_byte_array(b),
                    },
                    index,
                },
            });
        }
        Ok(out)
    }
}
