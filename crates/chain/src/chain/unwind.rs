//! Unwinding the canonical chain to an earlier block (PoP fork choice switches branches).

use redb::ReadableTable;

use super::{Chain, Head, StoredBlock};
use crate::block::L2Block;
use crate::db::*;
use crate::ChainError;

impl Chain {
    /// Unwinds the canonical chain to block `target`: every block above it is removed with what
    /// it changed (state restored from the history tables, tries updated, the restored state
    /// root checked against block `target`'s header), in one database transaction. Returns the
    /// removed blocks, oldest first, so they can be imported again.
    ///
    /// # Errors
    /// [`ChainError::UnknownBlock`] when `target` is above the head; [`ChainError::Corrupt`]
    /// when a block has no changeset (written before schema version 3) or the restored root
    /// differs (nothing is changed then); database errors.
    pub fn unwind_to(&self, target: u64) -> Result<Vec<L2Block>, ChainError> {
        let _guard = self.write.lock();
        let head = *self.head.read();
        if target > head.number {
            return Err(ChainError::UnknownBlock(target));
        }
        let mut removed = Vec::new();
        for n in (target + 1..=head.number).rev() {
            let block = self
                .block(n)?
                .ok_or_else(|| ChainError::Corrupt(format!("canonical block {n} missing")))?;
            removed.push(block);
        }
        if removed.is_empty() {
            return Ok(Vec::new());
        }
        let target_block = self
            .block(target)?
            .ok_or_else(|| ChainError::Corrupt(format!("canonical block {target} missing")))?;
        // The state first (its database, if it holds a block above the target, commits on its
        // own: a crash before the blocks below are removed replays them on restart).
        let overlay =
            self.state
                .unwind_to(target, target_block.hash, &|n| self.changeset(n), &|n| {
                    self.header(n)?
                        .map(|h| h.state_root)
                        .ok_or_else(|| ChainError::Corrupt(format!("header {n} missing")))
                })?;
        let state_touched = self.state.range().0 < overlay.base;
        let removed_blocks = || -> Result<(), ChainError> {
            let w = self.begin_write()?;
            for block in &removed {
                delete_block(&w, block)?;
            }
            // A system transaction repeated in consecutive blocks (the same Bitcoin attributes)
            // has one index entry, pointing at the newest copy: point it back at the new head's.
            {
                let mut idx = w.open_table(TX_INDEX)?;
                for (i, tx) in target_block.txs.iter().enumerate() {
                    if idx.get(&tx.hash.0)?.is_none() {
                        let mut v = [0u8; 12];
                        v[..8].copy_from_slice(&target.to_be_bytes());
                        v[8..].copy_from_slice(&(i as u32).to_be_bytes());
                        idx.insert(&tx.hash.0, &v)?;
                    }
                }
            }
            // Readers stop at the new head before the blocks above it disappear.
            *self.head.write() = Head {
                number: target,
                hash: target_block.hash,
            };
            w.commit()?;
            Ok(())
        };
        if let Err(e) = removed_blocks() {
            *self.head.write() = head;
            if !state_touched {
                self.state.restore(overlay);
            } else if let Err(again) = self.replay(target + 1, head.number) {
                // The state database is at the target, the blocks are not: the next open
                // replays them.
                return Err(ChainError::Corrupt(format!(
                    "unwinding to {target} failed ({e}), and putting the state back failed too                      ({again}): reopen the chain"
                )));
            }
            return Err(e);
        }
        self.cache.lock().retain(|n, _| *n <= target);
        self.unwinds.lock().push(target);
        Ok(removed.iter().rev().map(StoredBlock::to_l2_block).collect())
    }

    /// Unwinds since the first `seen` (as counted by the returned number): how many there have
    /// been in all, and the lowest block they unwound to, if any happened after `seen`.
    pub fn unwinds_since(&self, seen: usize) -> (usize, Option<u64>) {
        let u = self.unwinds.lock();
        (u.len(), u.get(seen..).and_then(|s| s.iter().min().copied()))
    }
}

/// Removes a block's records (not its state: see [`unwind_state`]).
pub(super) fn delete_block(
    w: &redb::WriteTransaction,
    block: &StoredBlock,
) -> Result<(), ChainError> {
    let n = block.header.number;
    w.open_table(HEADERS)?.remove(n)?;
    w.open_table(CANONICAL)?.remove(n)?;
    w.open_table(HASHES)?.remove(&block.hash.0)?;
    w.open_table(SEALS)?.remove(n)?;
    w.open_table(CERTIFICATES)?.remove(n)?;
    w.open_table(BODIES)?.remove(n)?;
    w.open_table(SENDERS)?.remove(n)?;
    w.open_table(RECEIPTS)?.remove(n)?;
    w.open_table(PINS)?.remove(n)?;
    w.open_table(CHANGESETS)?.remove(n)?;
    let mut idx = w.open_table(TX_INDEX)?;
    for tx in &block.txs {
        let here = idx
            .get(&tx.hash.0)?
            .is_some_and(|v| v.value()[..8] == n.to_be_bytes());
        if here {
            idx.remove(&tx.hash.0)?;
        }
    }
    Ok(())
}
