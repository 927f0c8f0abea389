//! PoP fork choice for a follower: [`PopForkRule`] scores branches by their keystones' Bitcoin
//! publications ([`hemi_finality::fork_choice`]) and never replaces a superfinal block; and the
//! `hemi_getForkChoice` JSON.

use std::sync::Arc;

use crate::{BranchBlock, ForkRule, ForkScore, ForkTip};
use alloy_primitives::B256;
use hemi_btc_view::BitcoinView;
use hemi_chain::Chain;
use hemi_finality::fork_choice::{compare_pop_score, publication_view, POP_FINALITY_DELAY};
use hemi_finality::{FinalityError, FinalityTracker};
use serde_json::{json, Value};

/// VeriBlock's PoP fork resolution over our Bitcoin index, bounded by Bitcoin finality.
pub struct PopForkRule {
    /// Our chain (for the shared blocks below a fork).
    pub chain: Arc<Chain>,
    /// Our Bitcoin index.
    pub bitcoin: Arc<dyn BitcoinView>,
    /// Finality of our chain: its finalized block may never be replaced.
    pub tracker: Arc<FinalityTracker>,
}

impl PopForkRule {
    fn view(
        &self,
        fork: u64,
        branch: &[BranchBlock],
    ) -> Result<hemi_finality::fork_choice::PublicationView, FinalityError> {
        let interval = self.tracker.params().keystone_interval;
        let tip = fork + branch.len() as u64;
        publication_view(self.bitcoin.as_ref(), fork, tip, interval, |k| {
            let at = |n: u64| &branch[(n - fork - 1) as usize];
            let prev = k - interval;
            let prev_hash = if prev == 0 {
                B256::ZERO
            } else if prev > fork {
                at(prev).hash
            } else {
                self.chain
                    .header(prev)?
                    .ok_or(FinalityError::MissingBlock(prev))?
                    .hash_slow()
            };
            let b = at(k);
            Ok(hemi_chain::pop_rewards::keystone_from(
                &b.header,
                prev_hash,
                b.pinned.height,
            ))
        })
    }
}

impl ForkRule for PopForkRule {
    fn finalized(&self) -> Result<u64, FinalityError> {
        // Up to date with our chain and Bitcoin before anything is compared against it (at
        // start-up the finality task may not have run yet); unknown means no fork choice now.
        self.tracker.refresh()?;
        Ok(self.tracker.finalized())
    }

    fn score(
        &self,
        fork: u64,
        current: &[BranchBlock],
        candidate: &[BranchBlock],
    ) -> Result<ForkScore, FinalityError> {
        let a = self.view(fork, current)?;
        let b = self.view(fork, candidate)?;
        let s = compare_pop_score(
            &a,
            &b,
            self.tracker.params().keystone_interval,
            POP_FINALITY_DELAY,
        );
        Ok(ForkScore {
            current: s.current,
            candidate: s.candidate,
            current_keystones: a.publications,
            candidate_keystones: b.publications,
        })
    }
}

fn keystones_json(k: &std::collections::BTreeMap<u64, Option<u32>>) -> Value {
    k.iter()
        .map(|(n, h)| json!({"number": n, "publicationHeight": h}))
        .collect()
}

/// `hemi_getForkChoice`'s answer: our head and finalized block, and every tip with its fork
/// point, status and (for rivals) both branches' PoP scores from the fork point.
pub fn fork_choice_json(tips: &[ForkTip], finalized: u64) -> Value {
    let tips: Vec<Value> = tips
        .iter()
        .map(|t| {
            json!({
                "number": t.number,
                "hash": t.hash,
                "forkPoint": t.fork_point,
                "active": t.active,
                "status": t.status,
                "reason": t.reason,
                "score": t.score.as_ref().map(|s| s.candidate),
                "activeScore": t.score.as_ref().map(|s| s.current),
                "keystones": t.score.as_ref().map(|s| keystones_json(&s.candidate_keystones)),
                "activeKeystones": t.score.as_ref().map(|s| keystones_json(&s.current_keystones)),
            })
        })
        .collect();
    json!({
        "finalized": finalized,
        "finalityDelay": POP_FINALITY_DELAY,
        "tips": tips,
    })
}
