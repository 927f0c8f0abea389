//! The finality tracker: keystones, their publications, and the finality of every block.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_consensus::Header;
use alloy_primitives::B256;
use bitcoin::{BlockHash, Txid};
use hemi_btc_view::{BitcoinView, BlockRef, ViewError};
use hemi_chain::{Chain, ChainError};
use hemi_keystone::{Keystone, KeystoneId};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

/// The two numbers that define finality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalityParams {
    /// Every block whose number is a multiple of this is a keystone (Hemi: 25).
    pub keystone_interval: u64,
    /// Effective confirmations at which a block is superfinal (Hemi: 10).
    pub superfinality_depth: u32,
}

/// Why the tracker could not answer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FinalityError {
    /// The L2 chain could not be read.
    #[error("L2 chain: {0}")]
    L2(#[from] ChainError),
    /// The Bitcoin index could not be read.
    #[error("Bitcoin index: {0}")]
    Bitcoin(#[from] ViewError),
    /// A canonical block below the head has no header (a corrupt chain).
    #[error("L2 block {0} is below the head but has no header")]
    MissingBlock(u64),
    /// `keystone_interval` is zero.
    #[error("keystone interval must be at least 1")]
    ZeroInterval,
}

/// What the tracker reads of the L2 chain (the [`Chain`] in a node; anything in tests).
pub trait L2Headers: Send + Sync {
    /// Number and hash of the newest block.
    fn head(&self) -> (u64, B256);
    /// Header of canonical block `number`.
    ///
    /// # Errors
    /// The chain cannot be read.
    fn header(&self, number: u64) -> Result<Option<Header>, ChainError>;
    /// The Bitcoin block that L2 block `number` pinned.
    ///
    /// # Errors
    /// The chain cannot be read.
    fn pin(&self, number: u64) -> Result<Option<BlockRef>, ChainError>;
    /// How many times the chain has been unwound in all, and the lowest block it was unwound to
    /// after the first `seen` of those (see [`Chain::unwinds_since`]). A chain that never
    /// unwinds answers `(0, None)`.
    fn unwinds_since(&self, seen: usize) -> (usize, Option<u64>) {
        let _ = seen;
        (0, None)
    }
}

impl L2Headers for Chain {
    fn head(&self) -> (u64, B256) {
        Chain::head(self)
    }
    fn header(&self, number: u64) -> Result<Option<Header>, ChainError> {
        Chain::header(self, number)
    }
    fn pin(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
        Chain::pin(self, number)
    }
    fn unwinds_since(&self, seen: usize) -> (usize, Option<u64>) {
        Chain::unwinds_since(self, seen)
    }
}

/// One Bitcoin publication of a keystone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// The PoP transaction.
    pub txid: Txid,
    /// The Bitcoin block that confirmed it.
    pub block_hash: BlockHash,
    /// That block's height.
    pub height: u32,
    /// L2 number of the keystone it published.
    pub keystone_number: u64,
}

/// A keystone of the canonical L2 chain and its first best-chain publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneInfo {
    /// The full keystone.
    pub keystone: Keystone,
    /// Its id: double SHA-256 of the abbreviated form.
    pub id: KeystoneId,
    /// L2 block number (a multiple of the keystone interval).
    pub number: u64,
    /// L2 block hash.
    pub block_hash: B256,
    /// Earliest best-chain Bitcoin publication of this keystone.
    pub publication: Option<Publication>,
}

/// The Bitcoin finality of one L2 block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finality {
    /// The block.
    pub number: u64,
    /// Its hash.
    pub block_hash: B256,
    /// The keystone that covers it (the first at or after it); `None` while that keystone is
    /// not produced yet, and for genesis.
    pub keystone: Option<KeystoneInfo>,
    /// The earliest best-chain publication of the covering keystone or any later one.
    pub effective_publication: Option<Publication>,
    /// The Bitcoin tip the answer was computed at.
    pub bitcoin_tip: BlockRef,
    /// Bitcoin tip height − the effective publication's height (Hemi's definition).
    pub effective_confirmations: Option<u32>,
    /// `effective_confirmations >= superfinality_depth`; genesis is always final.
    pub super_finality: bool,
}

#[derive(Default)]
struct State {
    /// `entries[i]` is the keystone at L2 number `(i + 1) * interval`.
    entries: Vec<KeystoneInfo>,
    by_id: HashMap<[u8; 32], usize>,
    /// For each entry, the index of the entry at or after it with the earliest publication.
    effective: Vec<Option<usize>>,
    /// The Bitcoin tip publications were last read at; `None` forces a full re-read.
    btc_tip: Option<BlockRef>,
    /// Unwinds of the L2 chain already accounted for.
    unwinds_seen: usize,
    safe: u64,
    finalized: u64,
}

/// Keeps the keystones of the canonical L2 chain and their Bitcoin publications.
pub struct FinalityTracker {
    l2: Arc<dyn L2Headers>,
    bitcoin: Arc<dyn BitcoinView>,
    params: FinalityParams,
    state: RwLock<State>,
    refreshing: Mutex<()>,
    new_keystones: broadcast::Sender<KeystoneInfo>,
}

/// The keystone at L2 block `number` (which should be a multiple of `interval`, at least
/// `interval`): version 1, the pinned Bitcoin height as "L1 number", the block's parent hash,
/// the previous keystone's block hash (zero for the first keystone, as Hemi), state root and
/// block hash.
///
/// # Errors
/// [`FinalityError::L2`] when the chain cannot be read.
pub fn keystone_of(
    l2: &dyn L2Headers,
    number: u64,
    interval: u64,
) -> Result<Option<Keystone>, FinalityError> {
    let Some(header) = l2.header(number).map_err(FinalityError::L2)? else {
        return Ok(None);
    };
    // Hemi leaves the first keystone's previous-keystone hash empty (genesis is no keystone).
    let prev_number = number.saturating_sub(interval);
    let prev_hash = if prev_number == 0 {
        B256::ZERO
    } else {
        l2.header(prev_number)
            .map_err(FinalityError::L2)?
            .ok_or(FinalityError::MissingBlock(prev_number))?
            .hash_slow()
    };
    let pin = l2.pin(number).map_err(FinalityError::L2)?;
    Ok(Some(hemi_chain::pop_rewards::keystone_from(
        &header,
        prev_hash,
        pin.map_or(0, |p| p.height),
    )))
}

fn publication_of(
    bitcoin: &dyn BitcoinView,
    id: &KeystoneId,
    keystone_number: u64,
) -> Result<Option<Publication>, ViewError> {
    Ok(bitcoin.first_publication(&id.0)?.map(|p| Publication {
        txid: p.txid,
        block_hash: p.location.block.hash,
        height: p.location.block.height,
        keystone_number,
    }))
}

impl FinalityTracker {
    /// A tracker over `l2` and `bitcoin`; call [`FinalityTracker::refresh`] to load it.
    ///
    /// # Errors
    /// [`FinalityError::ZeroInterval`].
    pub fn new(
        l2: Arc<dyn L2Headers>,
        bitcoin: Arc<dyn BitcoinView>,
        params: FinalityParams,
    ) -> Result<Self, FinalityError> {
        if params.keystone_interval == 0 {
            return Err(FinalityError::ZeroInterval);
        }
        Ok(FinalityTracker {
            l2,
            bitcoin,
            params,
            state: RwLock::new(State::default()),
            refreshing: Mutex::new(()),
            new_keystones: broadcast::channel(256).0,
        })
    }

    /// The parameters.
    pub fn params(&self) -> FinalityParams {
        self.params
    }

    /// New keystones as [`FinalityTracker::refresh`] finds them.
    pub fn subscribe(&self) -> broadcast::Receiver<KeystoneInfo> {
        self.new_keystones.subscribe()
    }

    /// Catches up with the L2 head and the Bitcoin tip: adds new keystones, drops keystones an
    /// L2 reorganisation replaced, re-reads publications (all of them after a Bitcoin reorg,
    /// else only the unpublished ones), recomputes `safe` and `finalized`. Returns the keystones
    /// it added.
    ///
    /// # Errors
    /// The chain or the Bitcoin index cannot be read; the state is left as it was.
    pub fn refresh(&self) -> Result<Vec<KeystoneInfo>, FinalityError> {
        let _one = self.refreshing.lock();
        let interval = self.params.keystone_interval;
        // Unwinds first, then the head: a keystone above an unwind target is gone even if a
        // block of the same number is canonical again by the time it is checked below.
        let (unwinds, unwound_to) = {
            let seen = self.state.read().unwinds_seen;
            self.l2.unwinds_since(seen)
        };
        let (head, _) = self.l2.head();
        // 1. Keystones that are no longer canonical (an L2 reorganisation) go.
        let (mut keep, old_tip) = {
            let st = self.state.read();
            (st.entries.len(), st.btc_tip)
        };
        if let Some(target) = unwound_to {
            keep = keep.min((target / interval) as usize);
        }
        while keep > 0 {
            let (number, hash) = {
                let st = self.state.read();
                (st.entries[keep - 1].number, st.entries[keep - 1].block_hash)
            };
            let canonical = number <= head
                && self
                    .l2
                    .header(number)
                    .map_err(FinalityError::L2)?
                    .is_some_and(|h| h.hash_slow() == hash);
            if canonical {
                break;
            }
            keep -= 1;
        }
        // 2. New keystones.
        let mut added = Vec::new();
        let mut number = (keep as u64 + 1) * interval;
        while number <= head {
            let Some(keystone) = keystone_of(self.l2.as_ref(), number, interval)? else {
                return Err(FinalityError::MissingBlock(number));
            };
            added.push(KeystoneInfo {
                id: keystone.abbreviate().id(),
                block_hash: B256::from(keystone.ep_hash),
                keystone,
                number,
                publication: None,
            });
            number += interval;
        }
        // 3. Publications.
        let tip = self.bitcoin.tip()?;
        let same_branch = match old_tip {
            Some(old) if old == tip => Some(true),
            Some(old) => Some(self.bitcoin.header_by_hash(&old.hash)?.is_some()),
            None => None,
        };
        let to_check: Vec<(usize, KeystoneId, u64)> = {
            let st = self.state.read();
            st.entries[..keep]
                .iter()
                .enumerate()
                .filter(|(_, e)| same_branch != Some(true) || e.publication.is_none())
                .map(|(i, e)| (i, e.id, e.number))
                .collect()
        };
        let mut found = Vec::with_capacity(to_check.len());
        let mut beyond_tip = false;
        for (i, id, number) in to_check {
            let p = publication_of(self.bitcoin.as_ref(), &id, number)?;
            beyond_tip |= p.is_some_and(|p| p.height > tip.height);
            found.push((i, p));
        }
        for e in &mut added {
            e.publication = publication_of(self.bitcoin.as_ref(), &e.id, e.number)?;
            beyond_tip |= e.publication.is_some_and(|p| p.height > tip.height);
        }
        // 4. Apply.
        {
            let mut st = self.state.write();
            for e in st.entries.drain(keep..) {
                tracing::info!(number = e.number, "keystone left the canonical L2 chain");
            }
            st.by_id.retain(|_, i| *i < keep);
            for (i, p) in found {
                if st.entries[i].publication != p {
                    if p.is_none() {
                        tracing::info!(
                            number = st.entries[i].number,
                            "keystone publication left Bitcoin's best chain"
                        );
                    }
                    st.entries[i].publication = p;
                }
            }
            for e in &added {
                let i = st.entries.len();
                st.by_id.insert(e.id.0, i);
                st.entries.push(e.clone());
            }
            // A publication found above the tip read belongs to a block this refresh did not
            // see as the tip; re-read everything next time rather than trust it.
            st.btc_tip = (!beyond_tip).then_some(tip);
            st.unwinds_seen = unwinds;
            self.recompute(&mut st, tip.height);
        }
        for e in &added {
            let _ = self.new_keystones.send(e.clone());
        }
        Ok(added)
    }

    fn recompute(&self, st: &mut State, tip: u32) {
        let n = st.entries.len();
        st.effective = vec![None; n];
        let mut best: Option<usize> = None;
        for i in (0..n).rev() {
            if let Some(p) = st.entries[i].publication {
                // `<=`: on equal heights the covering keystone's own publication is reported.
                if best.is_none_or(|b| {
                    st.entries[b]
                        .publication
                        .is_none_or(|bp| p.height <= bp.height)
                }) {
                    best = Some(i);
                }
            }
            st.effective[i] = best;
        }
        st.safe = (0..n)
            .rev()
            .find(|&i| st.entries[i].publication.is_some())
            .map_or(0, |i| st.entries[i].number);
        let depth = self.params.superfinality_depth;
        st.finalized = (0..n)
            .rev()
            .find(|&i| {
                st.effective[i]
                    .and_then(|j| st.entries[j].publication)
                    .is_some_and(|p| tip.saturating_sub(p.height) >= depth)
            })
            .map_or(0, |i| st.entries[i].number);
    }

    /// The newest block covered by a keystone published in Bitcoin's best chain (0 if none).
    pub fn safe(&self) -> u64 {
        self.state.read().safe
    }

    /// The newest superfinal block (0, genesis, if none).
    pub fn finalized(&self) -> u64 {
        self.state.read().finalized
    }

    /// The Bitcoin tip of the last refresh.
    pub fn bitcoin_tip(&self) -> Option<BlockRef> {
        self.state.read().btc_tip
    }

    /// The Bitcoin finality of L2 block `number`; `None` if there is no such block.
    ///
    /// # Errors
    /// The chain or the Bitcoin index cannot be read.
    pub fn finality(&self, number: u64) -> Result<Option<Finality>, FinalityError> {
        let Some(header) = self.l2.header(number).map_err(FinalityError::L2)? else {
            return Ok(None);
        };
        let block_hash = header.hash_slow();
        let st = self.state.read();
        // The tip the publications were read at, so the answer agrees with `safe`/`finalized`.
        let tip = match st.btc_tip {
            Some(t) => t,
            None => self.bitcoin.tip()?,
        };
        let interval = self.params.keystone_interval;
        if number == 0 {
            return Ok(Some(Finality {
                number,
                block_hash,
                keystone: None,
                effective_publication: None,
                bitcoin_tip: tip,
                effective_confirmations: None,
                super_finality: true,
            }));
        }
        let index = (number.div_ceil(interval) - 1) as usize;
        let keystone = st.entries.get(index).cloned();
        let effective_publication = st
            .effective
            .get(index)
            .copied()
            .flatten()
            .and_then(|j| st.entries[j].publication);
        let effective_confirmations =
            effective_publication.map(|p| tip.height.saturating_sub(p.height));
        Ok(Some(Finality {
            number,
            block_hash,
            keystone,
            effective_publication,
            bitcoin_tip: tip,
            effective_confirmations,
            super_finality: effective_confirmations
                .is_some_and(|c| c >= self.params.superfinality_depth),
        }))
    }

    /// The newest `count` keystones, newest first.
    pub fn latest_keystones(&self, count: usize) -> Vec<KeystoneInfo> {
        let st = self.state.read();
        st.entries.iter().rev().take(count).cloned().collect()
    }

    /// The keystone with abbreviated hash `id` followed by up to `count - 1` of its
    /// descendants, oldest first; empty if the id is not a canonical keystone.
    pub fn keystone_and_descendants(&self, id: &[u8; 32], count: usize) -> Vec<KeystoneInfo> {
        let st = self.state.read();
        match st.by_id.get(id) {
            Some(&i) => st.entries[i..].iter().take(count).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// The keystone at L2 block `number`, if that block is one.
    pub fn keystone_at(&self, number: u64) -> Option<KeystoneInfo> {
        let interval = self.params.keystone_interval;
        if number == 0 || !number.is_multiple_of(interval) {
            return None;
        }
        let st = self.state.read();
        st.entries.get((number / interval - 1) as usize).cloned()
    }

    /// Number of keystones tracked.
    pub fn keystone_count(&self) -> usize {
        self.state.read().entries.len()
    }

    /// Number of keystones tracked that have a publication in the best Bitcoin chain.
    pub fn published_count(&self) -> usize {
        self.state
            .read()
            .entries
            .iter()
            .filter(|k| k.publication.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests;
