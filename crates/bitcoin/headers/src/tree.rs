//! The in-memory header tree: every validated branch, and the most-work valid chain.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bitcoin::block::Header;
use bitcoin::pow::{CompactTarget, Work};
use bitcoin::BlockHash;

use crate::params::{MAX_FUTURE_BLOCK_TIME, MAX_TIMEWARP, MEDIAN_TIME_SPAN};
use crate::pow::{
    block_work_u256, check_pow_u256, header_hash, next_work_required, target_to_u256, u256_to_work,
    work_to_u256,
};
use crate::u256::U256;
use crate::{ChainParams, HeaderError};

/// A header in the tree with what validation derived for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNode {
    /// The header.
    pub header: Header,
    /// Its hash (kept so listings such as [`HeaderTree::tips`] need not rehash).
    pub hash: BlockHash,
    /// Height above genesis (genesis is 0).
    pub height: u32,
    /// Total work of the chain ending at this header, genesis included.
    pub chainwork: Work,
    /// Marked invalid by [`HeaderTree::invalidate`] (or built on such a header).
    pub invalid: bool,
}

/// What [`HeaderTree::insert`] did with a valid header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The header was already in the tree; nothing changed.
    AlreadyKnown,
    /// The header was added.
    Inserted {
        /// Its height.
        height: u32,
        /// Whether it became the best tip (the best chain now ends with it).
        new_best: bool,
    },
}

/// `HashMap` hasher for block hashes: their low bytes are already uniformly distributed
/// (grinding a collision costs proof of work), so the first eight bytes are the hash.
#[derive(Default)]
struct BlockHashHasher(u64);

impl Hasher for BlockHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as one 32-byte write; fold anything else too so the hasher is total.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
            if bytes.len() == 32 {
                // Block hash: first word is enough.
                break;
            }
        }
    }
}

type Index = HashMap<BlockHash, u32, BuildHasherDefault<BlockHashHasher>>;

/// Arena index meaning "no node" (the genesis' parent and skip).
const NONE: u32 = u32::MAX;

/// Arena slot: the public node plus the links the tree walks.
#[derive(Clone, Debug)]
struct Entry {
    node: HeaderNode,
    parent: u32,
    /// Core's `pskip`: an ancestor at `skip_height(height)`, for O(log n) ancestor lookup.
    skip: u32,
    has_children: bool,
}

/// Core's `GetSkipHeight`.
fn skip_height(height: u32) -> u32 {
    fn invert_lowest_one(n: u32) -> u32 {
        n & n.wrapping_sub(1)
    }
    if height < 2 {
        return 0;
    }
    if height & 1 == 1 {
        invert_lowest_one(invert_lowest_one(height - 1)) + 1
    } else {
        invert_lowest_one(height)
    }
}

/// In-memory tree of validated headers: all branches, the most-work valid tip, and the best
/// chain as a height-indexed vector.
///
/// Nodes live in an arena in insertion order, so a parent always precedes its children; the
/// hash index maps to arena slots. Mutating operations are O(1) amortized per header except
/// reorgs (O(reorg depth)) and [`invalidate`](Self::invalidate)/[`reconsider`](Self::reconsider)
/// (O(n), administrative).
#[derive(Clone, Debug)]
pub struct HeaderTree {
    params: ChainParams,
    entries: Vec<Entry>,
    index: Index,
    /// Arena index of the best-chain node at each height.
    best_chain: Vec<u32>,
    /// Highest checkpoint height whose hash is in the tree (Core's `GetLastCheckpoint`).
    last_checkpoint: Option<u32>,
    pow_limit: U256,
    pow_limit_bits: u32,
    /// Work of the last `bits` seen: bits change once per period, division is not free.
    work_cache: (u32, U256),
}

/// Internal outcome of contextual validation.
struct Checked {
    parent: u32,
    height: u32,
}

impl HeaderTree {
    /// A tree holding only `params`' genesis header. Checkpoints are sorted by height.
    pub fn new(mut params: ChainParams) -> Self {
        params.checkpoints.sort_by_key(|&(h, _)| h);
        params.checkpoints.dedup_by_key(|&mut (h, _)| h);
        let genesis = params.genesis_header;
        let hash = header_hash(&genesis);
        let pow_limit = target_to_u256(params.pow_limit);
        let work = block_work_u256(genesis.bits.to_consensus());
        let node = HeaderNode {
            header: genesis,
            hash,
            height: 0,
            chainwork: u256_to_work(work),
            invalid: false,
        };
        let mut index = Index::default();
        index.insert(hash, 0);
        let last_checkpoint = (params.checkpoint_at(0) == Some(hash)).then_some(0);
        HeaderTree {
            entries: vec![Entry {
                node,
                parent: NONE,
                skip: NONE,
                has_children: false,
            }],
            index,
            best_chain: vec![0],
            last_checkpoint,
            pow_limit,
            pow_limit_bits: pow_limit.to_compact(),
            work_cache: (genesis.bits.to_consensus(), work),
            params,
        }
    }

    /// Pre-allocates room for `additional` more headers.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        self.index.reserve(additional);
        self.best_chain.reserve(additional);
    }

    /// The parameters this tree validates with.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    // ----- validation -------------------------------------------------------------------

    /// Runs every check [`insert`](Self::insert) runs, without inserting, and returns the
    /// height the header has (or would have). `now` is the caller's clock in Unix seconds.
    ///
    /// A header already in the tree validates to its height; genesis to 0.
    ///
    /// # Errors
    ///
    /// The [`HeaderError`] for the first rule broken, in Bitcoin Core's order: proof of work,
    /// parent known, parent valid, difficulty bits, checkpoints, median time past, BIP94
    /// timewarp, future time, version. [`HeaderError::KnownInvalid`] for a known header
    /// marked invalid.
    pub fn validate(&self, header: &Header, now: u32) -> Result<u32, HeaderError> {
        let hash = header_hash(header);
        if let Some(&i) = self.index.get(&hash) {
            let node = &self.entry(i).node;
            if node.invalid {
                return Err(HeaderError::KnownInvalid { hash });
            }
            return Ok(node.height);
        }
        self.check_new(header, hash, now).map(|c| c.height)
    }

    /// Validates `header` like [`validate`](Self::validate) and adds it, moving the best tip
    /// if it now has the most work (ties keep the current tip).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate); the tree is unchanged on error. A known header is
    /// `Ok(InsertOutcome::AlreadyKnown)` unless it is marked invalid
    /// ([`HeaderError::KnownInvalid`]).
    pub fn insert(&mut self, header: Header, now: u32) -> Result<InsertOutcome, HeaderError> {
        let hash = header_hash(&header);
        if let Some(&i) = self.index.get(&hash) {
            if self.entry(i).node.invalid {
                return Err(HeaderError::KnownInvalid { hash });
            }
            return Ok(InsertOutcome::AlreadyKnown);
        }
        let checked = self.check_new(&header, hash, now)?;
        let new_best = self.attach(header, hash, checked.parent, checked.height, false);
        Ok(InsertOutcome::Inserted {
            height: checked.height,
            new_best,
        })
    }

    /// Adds a header without proof-of-work or contextual checks, for reloading headers this
    /// node validated before (e.g. from its own database). A child of an invalid header is
    /// marked invalid. Known headers are ignored.
    ///
    /// # Errors
    ///
    /// [`HeaderError::UnknownParent`] if the parent is not in the tree: reload in height order.
    pub fn insert_trusted(&mut self, header: Header) -> Result<(), HeaderError> {
        let hash = header_hash(&header);
        if self.index.contains_key(&hash) {
            return Ok(());
        }
        let prev = header.prev_blockhash;
        let Some(&parent) = self.index.get(&prev) else {
            return Err(HeaderError::UnknownParent { hash, prev });
        };
        let p = &self.entry(parent).node;
        let (height, invalid) = (p.height.saturating_add(1), p.invalid);
        self.attach(header, hash, parent, height, invalid);
        Ok(())
    }

    /// Checks a header not yet in the tree; Core's `AcceptBlockHeader` minus the insert.
    fn check_new(
        &self,
        header: &Header,
        hash: BlockHash,
        now: u32,
    ) -> Result<Checked, HeaderError> {
        // CheckBlockHeader: proof of work against the header's own bits.
        check_pow_u256(hash, header.bits, &self.pow_limit)?;

        let prev = header.prev_blockhash;
        let Some(&parent) = self.index.get(&prev) else {
            return Err(HeaderError::UnknownParent { hash, prev });
        };
        let p = &self.entry(parent).node;
        if p.invalid {
            return Err(HeaderError::InvalidAncestor { hash, prev });
        }
        let height = p.height.saturating_add(1);

        // ContextualCheckBlockHeader.
        let expected = self.required_bits_idx(parent, header.time);
        if header.bits != expected {
            return Err(HeaderError::BadDifficultyBits {
                hash,
                height,
                expected,
                got: header.bits,
            });
        }

        if let Some(cp) = self.params.checkpoint_at(height) {
            if cp != hash {
                return Err(HeaderError::CheckpointMismatch {
                    height,
                    expected: cp,
                    got: hash,
                });
            }
        }
        if let Some(checkpoint_height) = self.last_checkpoint {
            if height < checkpoint_height {
                return Err(HeaderError::ForkBeforeCheckpoint {
                    hash,
                    height,
                    checkpoint_height,
                });
            }
        }

        let mtp = self.mtp_idx(parent);
        if header.time <= mtp {
            return Err(HeaderError::TimeTooOld {
                hash,
                time: header.time,
                median_time_past: mtp,
            });
        }

        if self.params.enforce_bip94
            && height.is_multiple_of(self.params.difficulty_adjustment_interval())
        {
            let min = i64::from(p.header.time) - MAX_TIMEWARP;
            if i64::from(header.time) < min {
                return Err(HeaderError::TimewarpAttack {
                    hash,
                    height,
                    time: header.time,
                    min,
                });
            }
        }

        let max = u64::from(now) + u64::from(MAX_FUTURE_BLOCK_TIME);
        if u64::from(header.time) > max {
            return Err(HeaderError::TimeTooNew {
                hash,
                time: header.time,
                max,
            });
        }

        let version = header.version.to_consensus();
        let min = if height >= self.params.bip65_height {
            4
        } else if height >= self.params.bip66_height {
            3
        } else if height >= self.params.bip34_height {
            2
        } else {
            i32::MIN
        };
        if version < min {
            return Err(HeaderError::ObsoleteVersion {
                hash,
                height,
                version,
                min,
            });
        }

        Ok(Checked { parent, height })
    }

    /// The `nBits` a child of `parent` with timestamp `time` must carry (Core's
    /// `GetNextWorkRequired`), or `None` if `parent` is unknown. Useful to miners and tests.
    pub fn required_bits(&self, parent: &BlockHash, time: u32) -> Option<CompactTarget> {
        self.index
            .get(parent)
            .map(|&i| self.required_bits_idx(i, time))
    }

    fn required_bits_idx(&self, last: u32, time: u32) -> CompactTarget {
        let params = &self.params;
        let interval = params.difficulty_adjustment_interval();
        let last_node = &self.entry(last).node;
        let next_height = last_node.height.saturating_add(1);
        if !next_height.is_multiple_of(interval) {
            if params.allow_min_difficulty_blocks {
                // Testnet: a block more than 2 × spacing after its parent may be min-difficulty.
                let gap = i64::from(params.pow_target_spacing) * 2;
                if i64::from(time) > i64::from(last_node.header.time) + gap {
                    return CompactTarget::from_consensus(self.pow_limit_bits);
                }
                // Otherwise: the bits of the last block not mined under that exception.
                let mut i = last;
                loop {
                    let e = self.entry(i);
                    if e.parent == NONE
                        || e.node.height.is_multiple_of(interval)
                        || e.node.header.bits.to_consensus() != self.pow_limit_bits
                    {
                        return e.node.header.bits;
                    }
                    i = e.parent;
                }
            }
            return last_node.header.bits;
        }
        // Retarget: first block of the period is `interval - 1` blocks back.
        let first_height = last_node.height.saturating_sub(interval - 1);
        let first = self
            .ancestor_idx(last, first_height)
            .map_or(last_node, |i| &self.entry(i).node);
        next_work_required(
            params,
            last_node.header.bits,
            last_node.header.time,
            first.header.time,
            first.header.bits,
        )
    }

    /// Median of the timestamps of `idx` and up to 10 ancestors, without allocating.
    fn mtp_idx(&self, idx: u32) -> u32 {
        let mut times = [0u32; MEDIAN_TIME_SPAN];
        let mut n = 0;
        let mut i = idx;
        while n < MEDIAN_TIME_SPAN && i != NONE {
            let e = self.entry(i);
            times[n] = e.node.header.time;
            n += 1;
            i = e.parent;
        }
        let times = &mut times[..n];
        times.sort_unstable();
        times[n / 2]
    }

    // ----- mutation ---------------------------------------------------------------------

    fn work_of(&mut self, bits: u32) -> U256 {
        if self.work_cache.0 != bits {
            self.work_cache = (bits, block_work_u256(bits));
        }
        self.work_cache.1
    }

    /// Appends a node and updates the best chain; returns whether it became the best tip.
    fn attach(
        &mut self,
        header: Header,
        hash: BlockHash,
        parent: u32,
        height: u32,
        invalid: bool,
    ) -> bool {
        let Ok(idx) = u32::try_from(self.entries.len()) else {
            // 4 billion headers do not fit in memory; refuse rather than wrap.
            return false;
        };
        if idx == NONE {
            return false;
        }
        let work = self.work_of(header.bits.to_consensus());
        let parent_work = work_to_u256(self.entry(parent).node.chainwork);
        let chainwork = u256_to_work(parent_work.saturating_add(work));
        let skip = if height < 2 {
            parent
        } else {
            self.ancestor_idx(parent, skip_height(height))
                .unwrap_or(parent)
        };
        self.entries[parent as usize].has_children = true;
        self.entries.push(Entry {
            node: HeaderNode {
                header,
                hash,
                height,
                chainwork,
                invalid,
            },
            parent,
            skip,
            has_children: false,
        });
        self.index.insert(hash, idx);
        if self.params.checkpoint_at(height) == Some(hash) {
            self.last_checkpoint = Some(self.last_checkpoint.map_or(height, |h| h.max(height)));
        }
        let best = self.best_idx();
        if !invalid && chainwork > self.entry(best).node.chainwork {
            self.set_best(idx);
            true
        } else {
            false
        }
    }

    /// Makes `new` the best tip, rewriting only the part of `best_chain` above the fork.
    fn set_best(&mut self, new: u32) {
        let mut fork = new;
        while !self.on_best_chain_idx(fork) {
            let p = self.entry(fork).parent;
            if p == NONE {
                break;
            }
            fork = p;
        }
        let fork_height = self.entry(fork).node.height as usize;
        let new_height = self.entry(new).node.height as usize;
        self.best_chain.truncate(fork_height + 1);
        self.best_chain.resize(new_height + 1, NONE);
        let mut i = new;
        while i != fork && i != NONE {
            let (h, parent) = {
                let e = self.entry(i);
                (e.node.height as usize, e.parent)
            };
            if let Some(slot) = self.best_chain.get_mut(h) {
                *slot = i;
            }
            i = parent;
        }
    }

    /// Recomputes the best tip from scratch: most work among valid nodes, earliest inserted
    /// on ties (Core's `CBlockIndexWorkComparator` order).
    fn recompute_best(&mut self) {
        let mut best = 0u32;
        for (i, e) in self.entries.iter().enumerate() {
            if !e.node.invalid && e.node.chainwork > self.entries[best as usize].node.chainwork {
                best = i as u32;
            }
        }
        self.set_best(best);
    }

    /// Marks `hash` and all its descendants invalid and moves the best tip to the most-work
    /// valid node. Returns `false` (and changes nothing) if `hash` is unknown or genesis.
    pub fn invalidate(&mut self, hash: &BlockHash) -> bool {
        let Some(&root) = self.index.get(hash) else {
            return false;
        };
        if root == 0 {
            return false;
        }
        let root = root as usize;
        // Arena order is topological: one forward pass finds every descendant.
        let mut in_subtree = vec![false; self.entries.len() - root];
        in_subtree[0] = true;
        self.entries[root].node.invalid = true;
        for j in root + 1..self.entries.len() {
            let p = self.entries[j].parent as usize;
            if p >= root && in_subtree[p - root] {
                in_subtree[j - root] = true;
                self.entries[j].node.invalid = true;
            }
        }
        self.recompute_best();
        true
    }

    /// Clears the invalid mark on `hash`, its ancestors and its descendants (Core's
    /// `reconsiderblock`) and moves the best tip to the most-work valid node. Returns `false`
    /// if `hash` is unknown.
    pub fn reconsider(&mut self, hash: &BlockHash) -> bool {
        let Some(&root) = self.index.get(hash) else {
            return false;
        };
        let mut i = root;
        while i != NONE {
            let e = &mut self.entries[i as usize];
            e.node.invalid = false;
            i = e.parent;
        }
        let root = root as usize;
        let mut in_subtree = vec![false; self.entries.len() - root];
        in_subtree[0] = true;
        for j in root + 1..self.entries.len() {
            let p = self.entries[j].parent as usize;
            if p >= root && in_subtree[p - root] {
                in_subtree[j - root] = true;
                self.entries[j].node.invalid = false;
            }
        }
        self.recompute_best();
        true
    }

    // ----- queries ----------------------------------------------------------------------

    fn entry(&self, i: u32) -> &Entry {
        // Indices come from the index map, parent/skip links or best_chain, all of which only
        // ever hold positions of pushed entries; entries are never removed.
        &self.entries[i as usize]
    }

    fn best_idx(&self) -> u32 {
        self.best_chain.last().copied().unwrap_or(0)
    }

    fn on_best_chain_idx(&self, i: u32) -> bool {
        let h = self.entry(i).node.height as usize;
        self.best_chain.get(h) == Some(&i)
    }

    /// Core's `CBlockIndex::GetAncestor`, short-circuiting through `best_chain` as soon as the
    /// walk reaches the best chain.
    fn ancestor_idx(&self, from: u32, height: u32) -> Option<u32> {
        let mut walk = from;
        let mut h = self.entry(walk).node.height;
        if height > h {
            return None;
        }
        loop {
            if self.on_best_chain_idx(walk) {
                return self.best_chain.get(height as usize).copied();
            }
            if h == height {
                return Some(walk);
            }
            let e = self.entry(walk);
            let hs = skip_height(h);
            let hs_prev = skip_height(h - 1);
            if e.skip != NONE
                && (hs == height || (hs > height && !(hs_prev + 2 < hs && hs_prev >= height)))
            {
                walk = e.skip;
                h = hs;
            } else {
                walk = e.parent;
                h -= 1;
            }
            if walk == NONE {
                return None;
            }
        }
    }

    /// The node for `hash`, if known.
    pub fn get(&self, hash: &BlockHash) -> Option<&HeaderNode> {
        self.index.get(hash).map(|&i| &self.entry(i).node)
    }

    /// Whether `hash` is in the tree (valid or not).
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.index.contains_key(hash)
    }

    /// The tip of the most-work valid chain.
    pub fn best_tip(&self) -> &HeaderNode {
        &self.entry(self.best_idx()).node
    }

    /// Hash of [`best_tip`](Self::best_tip).
    pub fn best_hash(&self) -> BlockHash {
        self.best_tip().hash
    }

    /// Height of [`best_tip`](Self::best_tip).
    pub fn best_height(&self) -> u32 {
        self.best_tip().height
    }

    /// Hash of the best-chain header at `height`, O(1).
    pub fn hash_at_height(&self, height: u32) -> Option<BlockHash> {
        self.best_chain
            .get(height as usize)
            .map(|&i| self.entry(i).node.hash)
    }

    /// Whether `hash` is on the best chain.
    pub fn is_on_best_chain(&self, hash: &BlockHash) -> bool {
        self.index
            .get(hash)
            .is_some_and(|&i| self.on_best_chain_idx(i))
    }

    /// The ancestor of `hash` at `height` (itself at its own height), on any branch.
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Option<&HeaderNode> {
        let &i = self.index.get(hash)?;
        self.ancestor_idx(i, height).map(|a| &self.entry(a).node)
    }

    /// Last common ancestor of `a` and `b` (`None` if either is unknown).
    pub fn fork_point(&self, a: &BlockHash, b: &BlockHash) -> Option<BlockHash> {
        let &ia = self.index.get(a)?;
        let &ib = self.index.get(b)?;
        let h = self.entry(ia).node.height.min(self.entry(ib).node.height);
        let mut x = self.ancestor_idx(ia, h)?;
        let mut y = self.ancestor_idx(ib, h)?;
        while x != y {
            x = self.entry(x).parent;
            y = self.entry(y).parent;
            if x == NONE || y == NONE {
                return None;
            }
        }
        Some(self.entry(x).node.hash)
    }

    /// Block locator of the best chain: the tip and 9 parents, then exponentially sparser,
    /// ending with genesis (Core's `LocatorEntries`).
    pub fn locator(&self) -> Vec<BlockHash> {
        let mut out = Vec::with_capacity(32);
        let mut height = self.best_height();
        let mut step = 1u32;
        loop {
            if let Some(h) = self.hash_at_height(height) {
                out.push(h);
            }
            if height == 0 {
                break;
            }
            height = height.saturating_sub(step);
            if out.len() > 10 {
                step = step.saturating_mul(2);
            }
        }
        out
    }

    /// The fork point of a peer's locator with our best chain, for answering `getheaders`
    /// (Core's `FindForkInGlobalIndex`): the first locator hash on our best chain, our tip if
    /// a locator hash descends from it, else genesis.
    pub fn find_fork_in_best(&self, locator: &[BlockHash]) -> BlockHash {
        let tip = self.best_idx();
        let tip_height = self.entry(tip).node.height;
        for hash in locator {
            if let Some(&i) = self.index.get(hash) {
                if self.on_best_chain_idx(i) {
                    return *hash;
                }
                if self.ancestor_idx(i, tip_height) == Some(tip) {
                    return self.entry(tip).node.hash;
                }
            }
        }
        self.entry(0).node.hash
    }

    /// Median time past of `hash`: the median timestamp of it and its 10 ancestors.
    pub fn median_time_past(&self, hash: &BlockHash) -> Option<u32> {
        self.index.get(hash).map(|&i| self.mtp_idx(i))
    }

    /// Number of headers in the tree, genesis and invalid ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always `false`: the tree holds at least genesis.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Leaf nodes (headers without children), valid or not, in insertion order. The best tip is
    /// among them unless it has only invalid children (after [`HeaderTree::invalidate`]).
    pub fn tips(&self) -> Vec<&HeaderNode> {
        self.entries
            .iter()
            .filter(|e| !e.has_children)
            .map(|e| &e.node)
            .collect()
    }

    /// Iterates the best chain from genesis to tip.
    pub fn best_chain(&self) -> impl Iterator<Item = &HeaderNode> + '_ {
        self.best_chain.iter().map(|&i| &self.entry(i).node)
    }
}
