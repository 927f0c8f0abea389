//! The follower (`hemi node --follow URL [--follow URL …]`): fetch the sequencer's blocks from
//! one or more [`BlockSource`]s, check the seal (a [`SealVerifier`]: today the sequencer's
//! signature over the block hash, next to the header), re-execute against our own Bitcoin
//! client, and commit only blocks whose roots match.
//!
//! With several sources a follower can see the sequencer equivocate: two sealed blocks at one
//! height. Blocks that do not extend our head are kept as *side* blocks; a [`ForkRule`] (PoP fork
//! resolution in a node) scores each side branch against ours from the fork point, and when a
//! branch wins the chain is unwound to the fork ([`Chain::unwind_to`]) and the branch imported
//! in its place (re-executed like any block; if one of its blocks fails, our branch is put back).
//! A branch that forks below the rule's finalized block (so would replace it) is refused whatever
//! its score.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::Header;
use alloy_primitives::B256;
use hemi_btc_view::{BitcoinView, BlockRef};
use hemi_chain::pin::resolve_pin;
use hemi_chain::{BlockError, Chain, ChainError, L2Block, SealVerifier};
use hemi_finality::FinalityError;
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};

use crate::{BlockSource, FollowError};

/// One block of a branch, as a [`ForkRule`] sees it.
#[derive(Debug, Clone)]
pub struct BranchBlock {
    /// Its header.
    pub header: Header,
    /// Its hash.
    pub hash: B256,
    /// The Bitcoin block it pinned.
    pub pinned: BlockRef,
}

/// Two branches' scores from their fork point, and what each is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForkScore {
    /// Our branch's score.
    pub current: i64,
    /// The candidate's.
    pub candidate: i64,
    /// Our branch's keystones after the fork: L2 number → Bitcoin height that endorses it.
    pub current_keystones: BTreeMap<u64, Option<u32>>,
    /// The candidate's.
    pub candidate_keystones: BTreeMap<u64, Option<u32>>,
}

/// How a follower chooses between branches.
pub trait ForkRule: Send + Sync {
    /// The newest block that must never be replaced (0: only genesis), as of now (it may read
    /// the chain and Bitcoin: called off the async runtime).
    ///
    /// # Errors
    /// It cannot be known now (fork choice then waits for the next round).
    fn finalized(&self) -> Result<u64, FinalityError>;
    /// Scores our branch and a candidate after block `fork`, which both share (`current` and
    /// `candidate` start at `fork + 1`; either may be empty). The candidate replaces ours only
    /// when it scores strictly higher.
    ///
    /// # Errors
    /// The chain or Bitcoin cannot be read.
    fn score(
        &self,
        fork: u64,
        current: &[BranchBlock],
        candidate: &[BranchBlock],
    ) -> Result<ForkScore, FinalityError>;
}

/// What the follower knows of one competing tip (`hemi_getForkChoice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkTip {
    /// Tip number.
    pub number: u64,
    /// Tip hash.
    pub hash: B256,
    /// The last block it shares with our chain.
    pub fork_point: u64,
    /// Whether it is our chain's head.
    pub active: bool,
    /// `active`, `candidate` (scored, not better), `refused` or `waiting` (Bitcoin not there
    /// yet, or not scored yet).
    pub status: &'static str,
    /// Why refused or waiting.
    pub reason: Option<String>,
    /// The scores against our chain from the fork point (not for the active tip).
    pub score: Option<ForkScore>,
}

impl ForkTip {
    /// Our chain's head.
    pub fn active(number: u64, hash: B256) -> Self {
        ForkTip {
            number,
            hash,
            fork_point: number,
            active: true,
            status: "active",
            reason: None,
            score: None,
        }
    }
}

/// A sealed block we hold but have not applied.
#[derive(Debug, Clone)]
struct SideBlock {
    block: L2Block,
    number: u64,
}

/// At most this many side blocks are kept; more are refused until some are settled.
const MAX_SIDE_BLOCKS: usize = 20_000;
/// At most this many refused branches are listed (the lowest go first).
const MAX_REFUSED_TIPS: usize = 64;
/// Refused blocks remembered (so sources do not hand them over again) before forgetting all.
const MAX_REFUSED_BLOCKS: usize = 200_000;

#[derive(Default)]
struct Forks {
    side: HashMap<B256, SideBlock>,
    /// Blocks whose re-execution failed, and their descendants.
    invalid: HashSet<B256>,
    /// Blocks of branches refused for forking below a superfinal block → their branch's first
    /// block (the key of `refused_tips`). Not kept, but known, so sources move past them.
    refused: HashMap<B256, B256>,
    /// Refused branches by first block: the tip entry, kept current as the branch grows.
    refused_tips: HashMap<B256, ForkTip>,
    /// Per source: the newest block of it we know (number, hash).
    cursors: Vec<Option<(u64, B256)>>,
    /// The last fork choice, for `hemi_getForkChoice`.
    tips: Vec<ForkTip>,
}

impl Forks {
    /// Drops side block `hash` and every side block descending from it.
    fn drop_descendants(&mut self, hash: B256) {
        let mut gone = vec![hash];
        let mut i = 0;
        while i < gone.len() {
            let parent = gone[i];
            let children: Vec<B256> = self
                .side
                .iter()
                .filter(|(_, b)| b.block.header.parent_hash == parent)
                .map(|(h, _)| *h)
                .collect();
            gone.extend(children);
            i += 1;
        }
        for h in gone {
            self.side.remove(&h);
        }
    }
}

/// Follows a sequencer through one or more nodes serving its blocks.
pub struct Follower {
    chain: Arc<Chain>,
    bitcoin: Arc<dyn BitcoinView>,
    network: bitcoin::Network,
    sources: Vec<Arc<dyn BlockSource>>,
    verifier: Arc<dyn SealVerifier>,
    blocks: broadcast::Sender<u64>,
    rule: std::sync::OnceLock<Arc<dyn ForkRule>>,
    forks: Mutex<Forks>,
    /// Where the current catch-up started, and per source the head it reported while on our
    /// chain (`None`: on another branch, or not asked yet).
    progress: Mutex<(u64, Vec<Option<u64>>)>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("sources", &self.sources)
            .field("verifier", &self.verifier)
            .finish()
    }
}

/// What happened to an offered block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    /// Already ours (canonical or side).
    Known,
    /// Imported onto our head.
    Imported,
    /// Kept as a side block.
    Side,
    /// Our Bitcoin client lacks its pinned block: try again later.
    NotReady,
}

impl Follower {
    /// A follower of the blocks `verifier` accepts, from `sources` (the first is followed
    /// first; blocks of the others that do not extend our chain compete through the fork rule,
    /// see [`Follower::set_fork_rule`]).
    pub fn new(
        chain: Arc<Chain>,
        bitcoin: Arc<dyn BitcoinView>,
        network: bitcoin::Network,
        sources: Vec<Arc<dyn BlockSource>>,
        verifier: Arc<dyn SealVerifier>,
    ) -> Self {
        let n = sources.len();
        Follower {
            chain,
            bitcoin,
            network,
            sources,
            verifier,
            blocks: broadcast::channel(1024).0,
            rule: std::sync::OnceLock::new(),
            forks: Mutex::new(Forks {
                cursors: vec![None; n],
                ..Forks::default()
            }),
            progress: Mutex::new((0, vec![None; n])),
        }
    }

    /// Chooses between branches with `rule` from now on (without one, side blocks are kept but
    /// never win). Returns `false` if a rule was already set.
    pub fn set_fork_rule(&self, rule: Arc<dyn ForkRule>) -> bool {
        self.rule.set(rule).is_ok()
    }

    /// The sources followed.
    pub fn sources(&self) -> &[Arc<dyn BlockSource>] {
        &self.sources
    }

    /// `(starting, current, highest)` while more than one block behind the highest block a
    /// source reported (what `eth_syncing` shows, as geth does); `None` when caught up.
    pub fn sync_progress(&self) -> Option<(u64, u64, u64)> {
        let (starting, highest) = {
            let p = self.progress.lock();
            (p.0, p.1.iter().flatten().copied().max().unwrap_or(0))
        };
        let current = self.chain.head().0;
        (highest > current + 1).then_some((starting, current, highest))
    }

    /// Numbers of blocks as they are imported (also the blocks of a branch switched to).
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<u64> {
        self.blocks.subscribe()
    }

    /// The competing tips as of the last fork choice: ours first, then each side branch.
    pub fn fork_tips(&self) -> Vec<ForkTip> {
        let (number, hash) = self.chain.head();
        let mut tips = vec![ForkTip::active(number, hash)];
        tips.extend(self.forks.lock().tips.iter().cloned());
        tips
    }

    /// Imports one raw block (as `debug_getRawBlock` returns it: [`L2Block::encode`]) onto our
    /// head. `Ok(false)` when our Bitcoin client is not ready for it yet.
    ///
    /// # Errors
    /// The block was refused: malformed or in the old format (no seal item), sealed by someone
    /// other than the sequencer (also after any change to the header or the seal), or its
    /// re-execution differs.
    pub async fn import_raw(&self, number: u64, bytes: &[u8]) -> Result<bool, FollowError> {
        let block =
            L2Block::decode(bytes).map_err(|error| FollowError::Refused { number, error })?;
        match self.import(block).await {
            Ok(()) => Ok(true),
            Err(FollowError::Refused {
                error: ChainError::BitcoinNotReady(why),
                ..
            }) => {
                tracing::debug!(number, %why, "waiting for Bitcoin");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Re-executes and commits `block` on our head.
    async fn import(&self, block: L2Block) -> Result<(), FollowError> {
        let number = block.header.number;
        let chain = self.chain.clone();
        let view = self.bitcoin.clone();
        let network = self.network;
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || {
            chain.import_block(&block, verifier.as_ref(), &|attrs| {
                resolve_pin(view.clone(), network, attrs)
            })
        })
        .await
        .map_err(|e| FollowError::Rpc(format!("import task: {e}")))?
        .map_err(|error| FollowError::Refused { number, error })?;
        let _ = self.blocks.send(number);
        Ok(())
    }

    fn known(&self, hash: &B256) -> Result<bool, FollowError> {
        {
            let forks = self.forks.lock();
            if forks.side.contains_key(hash) || forks.refused.contains_key(hash) {
                return Ok(true);
            }
        }
        self.chain
            .number_of(hash)
            .map(|n| n.is_some())
            .map_err(|e| FollowError::Rpc(format!("reading our chain: {e}")))
    }

    /// Takes a block from a source: imports it when it extends our head, keeps it as a side
    /// block when its parent is another block we know.
    async fn offer(&self, block: L2Block) -> Result<Offered, FollowError> {
        let number = block.header.number;
        let hash = block.hash();
        let parent = block.header.parent_hash;
        if self.known(&hash)? {
            return Ok(Offered::Known);
        }
        let refused = |error| FollowError::Refused { number, error };
        {
            let mut forks = self.forks.lock();
            if forks.invalid.contains(&hash) || forks.invalid.contains(&parent) {
                forks.invalid.insert(hash);
                return Err(refused(
                    BlockError::DescendsFromInvalid { number, hash }.into(),
                ));
            }
        }
        self.verifier
            .verify(
                self.chain.spec().chain_id,
                number,
                hash,
                &block.seal,
                block.certificate.as_ref(),
            )
            .map_err(|e| refused(e.into()))?;
        if parent == self.chain.head().1 {
            return match self.import(block).await {
                Ok(()) => Ok(Offered::Imported),
                Err(FollowError::Refused {
                    error: ChainError::BitcoinNotReady(why),
                    ..
                }) => {
                    tracing::debug!(number, %why, "waiting for Bitcoin");
                    Ok(Offered::NotReady)
                }
                // Not marked invalid: on our own chain's next block a refusal is retried every
                // round (what our Bitcoin client says may still change), and the chain does not
                // move past it.
                Err(e) => Err(e),
            };
        }
        {
            let mut forks = self.forks.lock();
            if let Some(&branch) = forks.refused.get(&parent) {
                // A refused branch grows: remember the block, update the listing, keep nothing.
                if forks.refused.len() >= MAX_REFUSED_BLOCKS {
                    forks.refused.clear();
                }
                forks.refused.insert(hash, branch);
                if let Some(t) = forks.refused_tips.get_mut(&branch) {
                    if number > t.number {
                        t.number = number;
                        t.hash = hash;
                    }
                }
                return Ok(Offered::Side);
            }
        }
        let parent_number = self.forks.lock().side.get(&parent).map(|p| p.number);
        let parent_number = match parent_number {
            Some(n) => Some(n),
            None => self
                .chain
                .number_of(&parent)
                .map_err(|e| FollowError::Rpc(format!("reading our chain: {e}")))?,
        };
        match parent_number {
            Some(p) if p + 1 == number => {
                let mut forks = self.forks.lock();
                if forks.side.len() >= MAX_SIDE_BLOCKS {
                    return Err(FollowError::Rpc(format!(
                        "{MAX_SIDE_BLOCKS} blocks of other branches held already; block {number} \
                         waits until fork choice settles some"
                    )));
                }
                if forks.side.contains_key(&parent) {
                    tracing::debug!(number, %hash, "keeping a block of another branch");
                } else {
                    tracing::info!(number, %hash, fork = p, "another branch of the sequencer's");
                }
                forks.side.insert(hash, SideBlock { block, number });
                Ok(Offered::Side)
            }
            Some(p) => Err(refused(
                BlockError::ParentHeight {
                    number,
                    parent_number: p,
                }
                .into(),
            )),
            None => Err(FollowError::Rpc(format!(
                "block {number}'s parent {parent} is unknown"
            ))),
        }
    }

    /// Brings source `i` up to date: walks back to the newest of its blocks we know, then
    /// offers every later one. Returns how many blocks joined our chain.
    async fn sync_source(&self, i: usize) -> Result<u64, FollowError> {
        let source = self.sources[i].clone();
        let url = source.name();
        let remote = source.head().await?;

        let cursor = self.forks.lock().cursors[i];
        let (mut n, mut h) = match cursor {
            Some((n, h)) if n <= remote && self.known(&h)? => (n, h),
            other => {
                // Start at our head (or the source's, if lower) and walk back to a known block.
                let mut n = other.map_or(self.chain.head().0, |c| c.0).min(remote);
                loop {
                    let b = source.block(n).await?;
                    let h = b.hash();
                    if self.known(&h)? {
                        break (n, h);
                    }
                    if n == 0 {
                        return Err(FollowError::Rpc(format!(
                            "{url} serves another chain (genesis {h})"
                        )));
                    }
                    n -= 1;
                }
            }
        };
        {
            // A source that shares our chain up to `n` says how far our chain goes.
            let ours = self
                .chain
                .number_of(&h)
                .map_err(|e| FollowError::Rpc(format!("reading our chain: {e}")))?
                .is_some();
            let head = self.chain.head().0;
            let mut p = self.progress.lock();
            let highest = p.1.iter().flatten().copied().max().unwrap_or(0);
            if ours && remote > head + 1 && highest <= head + 1 {
                p.0 = head; // a catch-up starts here
            }
            p.1[i] = ours.then_some(remote);
        }
        let mut imported = 0;
        while n < remote {
            let b = source.block(n + 1).await?;
            if b.header.parent_hash != h {
                // The source switched branches below `n`: walk back next time.
                self.forks.lock().cursors[i] = Some((n.saturating_sub(1), B256::ZERO));
                return Ok(imported);
            }
            let hash = b.hash();
            let offered = self.offer(b).await;
            if let Err(e @ FollowError::Refused { .. }) = &offered {
                source.refused(n + 1, e);
            }
            match offered? {
                Offered::NotReady => break,
                Offered::Imported => imported += 1,
                Offered::Known | Offered::Side => {}
            }
            n += 1;
            h = hash;
            self.forks.lock().cursors[i] = Some((n, h));
        }
        Ok(imported)
    }

    /// Follows forever: polls every source and imports new blocks, then runs fork choice. A
    /// refused block is logged and retried after a pause (the chain does not move past it).
    pub async fn run(self: Arc<Self>, poll: Duration) {
        self.run_with_wake(poll, None).await;
    }

    /// [`Follower::run`], also syncing as soon as `wake` is notified (a p2p source's gossip).
    pub async fn run_with_wake(self: Arc<Self>, poll: Duration, wake: Option<Arc<Notify>>) {
        loop {
            match self.sync_once().await {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "following"),
            }
            match &wake {
                Some(w) => {
                    let _ = tokio::time::timeout(poll, w.notified()).await;
                }
                None => tokio::time::sleep(poll).await,
            }
        }
    }

    /// One round: every source, then fork choice; returns how many blocks joined our chain.
    ///
    /// # Errors
    /// The first source's error (RPC failure or a refused block), after the others were tried.
    pub async fn sync_once(&self) -> Result<u64, FollowError> {
        let mut imported = 0;
        let mut first_error = None;
        for i in 0..self.sources.len() {
            match self.sync_source(i).await {
                Ok(n) => imported += n,
                Err(e) => {
                    if self.sources.len() > 1 {
                        tracing::warn!(source = %self.sources[i].name(), error = %e, "following");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.choose().await {
            tracing::warn!(error = %e, "fork choice");
        }
        match first_error {
            Some(e) if imported == 0 => Err(e),
            _ => Ok(imported),
        }
    }

    fn branch_block(&self, block: &L2Block) -> Result<Option<BranchBlock>, FollowError> {
        let number = block.header.number;
        let tip = hemi_chain::system::attributes_of(number, &block.txs)
            .map_err(|error| FollowError::Refused { number, error })?
            .canonical_tip;
        let pinned = self
            .bitcoin
            .header_by_hash(&tip)
            .map_err(|e| FollowError::Rpc(format!("Bitcoin index: {e}")))?;
        Ok(pinned.map(|(pinned, _)| BranchBlock {
            hash: block.hash(),
            header: block.header.clone(),
            pinned,
        }))
    }

    /// Scores every side branch against ours and switches to the best one that wins. A branch
    /// that extends our head is simply imported (VeriBlock's `CANDIDATE_IS_TIP_SUCCESSOR`); one
    /// that forks below the finalized block is refused for good.
    async fn choose(&self) -> Result<(), FollowError> {
        let Some(rule) = self.rule.get().cloned() else {
            return Ok(());
        };
        let read = |e: ChainError| FollowError::Rpc(format!("reading our chain: {e}"));
        // Side tips (side blocks no other side block builds on), each with its branch.
        let branches: Vec<(B256, B256, Vec<L2Block>)> = {
            let forks = self.forks.lock();
            let parents: HashSet<B256> = forks
                .side
                .values()
                .map(|b| b.block.header.parent_hash)
                .collect();
            let mut tips: Vec<B256> = forks
                .side
                .keys()
                .filter(|h| !parents.contains(*h))
                .copied()
                .collect();
            tips.sort_by_key(|h| std::cmp::Reverse(forks.side[h].number));
            tips.into_iter()
                .map(|tip| {
                    let mut branch = Vec::new();
                    let mut at = tip;
                    while let Some(b) = forks.side.get(&at) {
                        branch.push(b.block.clone());
                        at = b.block.header.parent_hash;
                    }
                    branch.reverse();
                    (tip, at, branch)
                })
                .collect()
        };
        if branches.is_empty() {
            let mut forks = self.forks.lock();
            forks.tips = forks.refused_tips.values().cloned().collect();
            return Ok(());
        }
        let r = rule.clone();
        let finalized = tokio::task::spawn_blocking(move || r.finalized())
            .await
            .map_err(|e| FollowError::Rpc(format!("fork choice task: {e}")))?
            .map_err(|e| FollowError::Rpc(format!("finality unknown, no fork choice now: {e}")))?;
        let (head, head_hash) = self.chain.head();
        let mut result = Vec::new();
        let mut winner: Option<(u64, Vec<L2Block>, ForkScore)> = None;
        let mut successor = None;
        for (tip, fork_hash, branch) in branches {
            let Some(fork) = self.chain.number_of(&fork_hash).map_err(read)? else {
                // Rooted in a block that left our chain: it stays until a switch re-links it.
                continue;
            };
            let number = fork + branch.len() as u64;
            let mut entry = ForkTip {
                number,
                hash: tip,
                fork_point: fork,
                active: false,
                status: "waiting",
                reason: None,
                score: None,
            };
            if fork_hash == head_hash {
                // It extends our head: nothing to compare (the longest such branch goes first).
                if successor.is_none() {
                    successor = Some((fork, branch));
                }
                continue;
            }
            match self.score_branch(&rule, fork, head, &branch).await {
                Ok(Some(score)) => {
                    entry.status = "candidate";
                    let lead = score.candidate - score.current;
                    if fork >= finalized
                        && lead > 0
                        && winner
                            .as_ref()
                            .is_none_or(|w| lead > w.2.candidate - w.2.current)
                    {
                        winner = Some((fork, branch.clone(), score.clone()));
                    }
                    entry.score = Some(score);
                }
                Ok(None) => {
                    entry.reason = Some("our Bitcoin client lacks a pinned block of it".into());
                }
                Err(FollowError::Refused { number, error }) => {
                    // Sealed, but not a block: it and what builds on it go.
                    tracing::warn!(number, %error, "dropping a branch of malformed blocks");
                    let mut forks = self.forks.lock();
                    if let Some(bad) = branch.iter().find(|b| b.header.number == number) {
                        let bad = bad.hash();
                        forks.invalid.insert(bad);
                        forks.drop_descendants(bad);
                    }
                    continue;
                }
                Err(e) => {
                    entry.reason = Some(e.to_string());
                }
            }
            if fork < finalized {
                // Whatever its score: replacing a superfinal block would rewrite Bitcoin's word.
                entry.status = "refused";
                entry.reason = Some(format!(
                    "forks after block {fork}, below the superfinal block {finalized}"
                ));
                tracing::warn!(
                    fork,
                    finalized,
                    tip = %entry.hash,
                    number = entry.number,
                    "refusing a branch that forks below a superfinal block"
                );
                let mut forks = self.forks.lock();
                let key = branch.first().map(|b| b.hash()).unwrap_or(tip);
                if forks.refused.len() + branch.len() >= MAX_REFUSED_BLOCKS {
                    forks.refused.clear();
                }
                for b in &branch {
                    let h = b.hash();
                    forks.side.remove(&h);
                    forks.refused.insert(h, key);
                }
                if forks.refused_tips.len() >= MAX_REFUSED_TIPS {
                    if let Some(lowest) = forks
                        .refused_tips
                        .iter()
                        .min_by_key(|(_, t)| t.number)
                        .map(|(k, _)| *k)
                    {
                        forks.refused_tips.remove(&lowest);
                    }
                }
                forks.refused_tips.insert(key, entry);
                continue;
            }
            result.push(entry);
        }
        {
            let mut forks = self.forks.lock();
            result.extend(forks.refused_tips.values().cloned());
            forks.tips = result;
        }
        if let Some((fork, branch)) = successor {
            return self.switch(fork, branch, &ForkScore::default()).await;
        }
        let Some((fork, branch, score)) = winner else {
            return Ok(());
        };
        self.switch(fork, branch, &score).await
    }

    /// Our branch against `branch` (which forks after block `fork`); `None` while our Bitcoin
    /// client lacks one of its pinned blocks.
    async fn score_branch(
        &self,
        rule: &Arc<dyn ForkRule>,
        fork: u64,
        head: u64,
        branch: &[L2Block],
    ) -> Result<Option<ForkScore>, FollowError> {
        let read = |e: ChainError| FollowError::Rpc(format!("reading our chain: {e}"));
        let mut candidate = Vec::with_capacity(branch.len());
        for b in branch {
            match self.branch_block(b)? {
                Some(bb) => candidate.push(bb),
                None => return Ok(None),
            }
        }
        let mut current = Vec::new();
        for n in fork + 1..=head {
            let header = self
                .chain
                .header(n)
                .map_err(read)?
                .ok_or_else(|| FollowError::Rpc(format!("our block {n} is missing")))?;
            let pinned = self
                .chain
                .pin(n)
                .map_err(read)?
                .ok_or_else(|| FollowError::Rpc(format!("our block {n} has no pin")))?;
            current.push(BranchBlock {
                hash: header.hash_slow(),
                header,
                pinned,
            });
        }
        let rule = rule.clone();
        tokio::task::spawn_blocking(move || rule.score(fork, &current, &candidate))
            .await
            .map_err(|e| FollowError::Rpc(format!("fork choice task: {e}")))?
            .map(Some)
            .map_err(FollowError::ForkRule)
    }

    /// Unwinds our chain to `fork`; the removed blocks are held as side blocks (and returned).
    async fn unwind_to(&self, fork: u64) -> Result<Vec<L2Block>, FollowError> {
        let chain = self.chain.clone();
        let removed = tokio::task::spawn_blocking(move || chain.unwind_to(fork))
            .await
            .map_err(|e| FollowError::Rpc(format!("unwind task: {e}")))?
            .map_err(|error| FollowError::Refused {
                number: fork,
                error,
            })?;
        let mut forks = self.forks.lock();
        for b in &removed {
            forks.side.insert(
                b.hash(),
                SideBlock {
                    number: b.header.number,
                    block: b.clone(),
                },
            );
        }
        Ok(removed)
    }

    /// Unwinds our chain to `fork` and imports `branch`; puts our branch back if any of its
    /// blocks fails.
    async fn switch(
        &self,
        fork: u64,
        branch: Vec<L2Block>,
        score: &ForkScore,
    ) -> Result<(), FollowError> {
        let (head, head_hash) = self.chain.head();
        let tip = branch.last().map(|b| (b.header.number, b.hash()));
        if fork == head {
            tracing::info!(fork, to = ?tip, "importing held blocks that extend our head");
        } else {
            tracing::warn!(
                fork,
                from = head,
                %head_hash,
                to = ?tip,
                current_score = score.current,
                candidate_score = score.candidate,
                "PoP fork choice: switching to a better-published branch"
            );
        }
        let removed = self.unwind_to(fork).await?;
        for b in branch {
            let hash = b.hash();
            let number = b.header.number;
            match self.import(b).await {
                Ok(()) => {
                    self.forks.lock().side.remove(&hash);
                }
                Err(e) => {
                    tracing::warn!(number, %hash, error = %e, "the branch does not execute; going back");
                    if !matches!(
                        &e,
                        FollowError::Refused {
                            error: ChainError::BitcoinNotReady(_),
                            ..
                        }
                    ) {
                        // Never again: the block and everything built on it.
                        let mut forks = self.forks.lock();
                        forks.invalid.insert(hash);
                        forks.drop_descendants(hash);
                    }
                    self.unwind_to(fork).await?;
                    for r in removed {
                        let rh = r.hash();
                        self.import(r).await?;
                        self.forks.lock().side.remove(&rh);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, B256};
    use alloy_rlp::Encodable;
    use bitcoin::Network;
    use hemi_btc_headers::ChainParams;
    use hemi_btc_regtest::RegtestNode;
    use hemi_btc_store::ChainStore;
    use hemi_chain::ChainSpec;
    use hemi_hvm::BitcoinPin;

    use hemi_chain::pin::next_attributes;
    use hemi_chain::SequencerAddress;
    use hemi_sequencer::KeySealer;

    use crate::RpcSource;

    const SEQUENCER: B256 = B256::repeat_byte(0x11);

    fn address(secret: B256) -> Address {
        hemi_chain::eth_address(
            &bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice()).expect("key"),
        )
    }

    fn sealer(secret: B256) -> KeySealer {
        KeySealer::new(secret).expect("key")
    }

    fn follower(chain: Chain, store: Arc<ChainStore>, sequencer: Address) -> Follower {
        Follower::new(
            Arc::new(chain),
            store,
            Network::Regtest,
            vec![Arc::new(RpcSource::new("http://127.0.0.1:9"))],
            Arc::new(SequencerAddress(sequencer)),
        )
    }

    /// A regtest Bitcoin store with 101 blocks, the attributes pinning its tip, and the pin.
    fn regtest(seed: &str) -> (Arc<ChainStore>, hemi_hvm::BtcAttributes, BitcoinPin) {
        let store =
            Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
        let key = hemi_btc_wallet::Key::from_seed(seed);
        RegtestNode::new(store.clone())
            .mine(101, &key.script_pubkey(hemi_btc_wallet::KeyKind::P2wpkh))
            .expect("mine");
        let (attrs, pinned) = next_attributes(store.as_ref(), None).expect("attributes");
        let pin = BitcoinPin {
            view: store.clone(),
            pinned,
            network: Network::Regtest,
        };
        (store, attrs, pin)
    }

    fn refusal(r: Result<bool, FollowError>) -> String {
        match r {
            Err(FollowError::Refused { number: 1, error }) => error.to_string(),
            other => panic!("expected block 1 to be refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn raw_blocks_carry_the_seal_next_to_the_header_and_the_follower_checks_it() {
        let (store, attrs, pin) = regtest("follower-seal-test");
        let spec = ChainSpec::devnet().expect("spec");
        let sequencer_chain = Chain::open(None, spec.clone()).expect("chain");
        sequencer_chain
            .build_block(&pin, &attrs, vec![], 1_000, &sealer(SEQUENCER))
            .expect("build");
        let raw = sequencer_chain
            .raw_block(1)
            .expect("read")
            .expect("block 1");
        let genuine = L2Block::decode(&raw).expect("decode");
        assert!(genuine.header.extra_data.is_empty());
        assert_eq!(
            genuine.signer(spec.chain_id).expect("signer"),
            address(SEQUENCER)
        );
        let follower_of = |sequencer: Address| {
            follower(
                Chain::open(None, spec.clone()).expect("chain"),
                store.clone(),
                sequencer,
            )
        };
        let follower = follower_of(address(SEQUENCER));

        // The old encoding: rlp([header with vanity ‖ Clique seal in extraData, txs]).
        let mut old_header = genuine.header.clone();
        old_header.extra_data = Bytes::from(vec![0u8; 97]);
        let txs = hemi_chain::block::encode_txs(&genuine.txs);
        let mut old = Vec::new();
        alloy_rlp::Header {
            list: true,
            payload_length: old_header.length() + txs.len(),
        }
        .encode(&mut old);
        old_header.encode(&mut old);
        old.extend_from_slice(&txs);
        let err = refusal(follower.import_raw(1, &old).await);
        assert!(err.contains("raw block format 1"), "{err}");

        // The header changed after sealing.
        let mut changed = genuine.clone();
        changed.header.timestamp += 1;
        let err = refusal(follower.import_raw(1, &changed.encode()).await);
        assert!(
            err.starts_with("invalid seal: block 1 is signed by 0x"),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("not by the sequencer {}", address(SEQUENCER))),
            "{err}"
        );

        // The seal changed.
        let mut bad_seal = raw.clone();
        let last = bad_seal.len() - 10;
        bad_seal[last] ^= 0x80;
        let err = refusal(follower.import_raw(1, &bad_seal).await);
        assert!(err.starts_with("invalid seal: "), "{err}");

        // Genuine, but we follow another sequencer.
        let other = B256::repeat_byte(0x22);
        let err = refusal(follower_of(address(other)).import_raw(1, &raw).await);
        assert_eq!(
            err,
            format!(
                "invalid seal: block 1 is signed by {}, not by the sequencer {}",
                address(SEQUENCER),
                address(other)
            )
        );

        assert_eq!(follower.chain.head().0, 0, "nothing refused was committed");
        assert!(follower.import_raw(1, &raw).await.expect("genuine"));
        assert_eq!(follower.chain.head(), sequencer_chain.head());
        assert_eq!(follower.chain.raw_block(1).expect("read"), Some(raw));
    }

    /// A block source that is not a node's JSON-RPC: blocks 0..=n held in memory, some of them
    /// tampered with, as a p2p peer could hand them over.
    #[derive(Debug)]
    struct MemSource(Vec<L2Block>);

    #[async_trait::async_trait]
    impl BlockSource for MemSource {
        fn name(&self) -> &str {
            "memory"
        }
        async fn head(&self) -> Result<u64, FollowError> {
            Ok(self.0.len() as u64 - 1)
        }
        async fn block(&self, number: u64) -> Result<L2Block, FollowError> {
            self.0
                .get(number as usize)
                .cloned()
                .ok_or_else(|| FollowError::Rpc(format!("memory: no block {number}")))
        }
    }

    #[tokio::test]
    async fn any_block_source_is_followed_and_its_bad_blocks_are_refused() {
        let (store, attrs, pin) = regtest("follower-source-test");
        let spec = ChainSpec::devnet().expect("spec");
        let sequencer_chain = Chain::open(None, spec.clone()).expect("chain");
        for ts in 1_000..1_004 {
            sequencer_chain
                .build_block(&pin, &attrs, vec![], ts, &sealer(SEQUENCER))
                .expect("build");
        }
        let blocks: Vec<L2Block> = (0..=4)
            .map(|n| {
                L2Block::decode(&sequencer_chain.raw_block(n).expect("read").expect("block"))
                    .expect("decode")
            })
            .collect();
        let follower_of = |source: MemSource| {
            Follower::new(
                Arc::new(Chain::open(None, spec.clone()).expect("chain")),
                store.clone(),
                Network::Regtest,
                vec![Arc::new(source) as Arc<dyn BlockSource>],
                Arc::new(SequencerAddress(address(SEQUENCER))),
            )
        };

        let genuine = follower_of(MemSource(blocks.clone()));
        assert_eq!(genuine.sync_once().await.expect("sync"), 4);
        assert_eq!(genuine.chain.head(), sequencer_chain.head());

        // Block 3 re-sealed by another key: blocks 1 and 2 are taken, 3 is refused by the
        // verifier, and the chain does not move past it.
        let mut forged = blocks.clone();
        forged[3].seal =
            hemi_chain::block::seal(spec.chain_id, forged[3].hash(), B256::repeat_byte(0x22))
                .expect("seal");
        let f = follower_of(MemSource(forged));
        let err = f.sync_once().await.expect_err("block 3 refused");
        assert!(
            matches!(
                &err,
                FollowError::Refused {
                    number: 3,
                    error: ChainError::InvalidSeal(hemi_chain::SealError::WrongSigner { .. })
                }
            ),
            "{err}"
        );
        assert_eq!(f.chain.head().0, 2);
    }

    /// Prefers any candidate; `finalized` as set.
    struct AlwaysSwitch {
        finalized: std::sync::atomic::AtomicU64,
    }

    impl ForkRule for AlwaysSwitch {
        fn finalized(&self) -> Result<u64, FinalityError> {
            Ok(self.finalized.load(std::sync::atomic::Ordering::SeqCst))
        }
        fn score(
            &self,
            _fork: u64,
            _current: &[BranchBlock],
            _candidate: &[BranchBlock],
        ) -> Result<ForkScore, FinalityError> {
            Ok(ForkScore {
                current: 0,
                candidate: 1,
                ..ForkScore::default()
            })
        }
    }

    #[tokio::test]
    async fn a_winning_branch_that_fails_is_dropped_for_good_and_a_final_block_stays() {
        let (store, attrs, pin) = regtest("follower-fork-test");
        let spec = ChainSpec::devnet().expect("spec");
        // Branch A: blocks 1..=3; branch B: block 1 shared, then 2'..=3' (other timestamps).
        let a = Chain::open(None, spec.clone()).expect("a");
        let b = Chain::open(None, spec.clone()).expect("b");
        for (n, ts) in [(1u64, 1_000u64), (2, 1_001), (3, 1_002)] {
            a.build_block(&pin, &attrs, vec![], ts, &sealer(SEQUENCER))
                .expect("a");
            if n == 1 {
                b.import_block(
                    &L2Block::decode(&a.raw_block(1).expect("r").expect("1")).expect("d"),
                    &SequencerAddress(address(SEQUENCER)),
                    &|_| Ok(pin.clone()),
                )
                .expect("b1");
            } else {
                b.build_block(&pin, &attrs, vec![], ts + 50, &sealer(SEQUENCER))
                    .expect("b");
            }
        }
        let block = |c: &Chain, n: u64| {
            L2Block::decode(&c.raw_block(n).expect("read").expect("block")).expect("decode")
        };
        let rule = Arc::new(AlwaysSwitch {
            finalized: std::sync::atomic::AtomicU64::new(0),
        });
        let follower = follower(
            Chain::open(None, spec.clone()).expect("chain"),
            store.clone(),
            address(SEQUENCER),
        );
        assert!(follower.set_fork_rule(rule.clone()));
        for n in 1..=3 {
            assert_eq!(
                follower.offer(block(&a, n)).await.expect("a"),
                Offered::Imported
            );
        }
        // B's block 2' is genuine; 3' carries a wrong state root under a valid seal.
        assert_eq!(
            follower.offer(block(&b, 2)).await.expect("b2"),
            Offered::Side
        );
        let mut bad = block(&b, 3);
        bad.header.state_root = B256::repeat_byte(0xee);
        bad.seal = hemi_chain::block::seal(spec.chain_id, bad.hash(), SEQUENCER).expect("seal");
        assert_eq!(
            follower.offer(bad.clone()).await.expect("b3"),
            Offered::Side
        );
        let err = follower.choose().await.expect_err("the switch fails at 3'");
        assert!(err.to_string().contains("state root"), "{err}");
        assert_eq!(follower.chain.head(), a.head(), "A's branch put back");
        assert!(!follower.known(&bad.hash()).expect("known"), "3' dropped");
        // 2' alone still wins (the rule prefers any candidate), and nothing retries 3'.
        follower.choose().await.expect("switch to 2'");
        assert_eq!(follower.chain.head().1, block(&b, 2).hash());
        assert!(follower.offer(bad).await.is_err(), "3' is refused on sight");
        // A's blocks are held again; with block 2' final they can never come back.
        rule.finalized.store(2, std::sync::atomic::Ordering::SeqCst);
        follower.choose().await.expect("choose");
        assert_eq!(follower.chain.head().1, block(&b, 2).hash());
        let tips = follower.fork_tips();
        let refused: Vec<_> = tips.iter().filter(|t| t.status == "refused").collect();
        assert_eq!(refused.len(), 1, "{tips:?}");
        assert_eq!((refused[0].number, refused[0].fork_point), (3, 1));
        assert!(follower.forks.lock().side.is_empty());
        assert!(follower.known(&block(&a, 3).hash()).expect("known"));
    }
}
