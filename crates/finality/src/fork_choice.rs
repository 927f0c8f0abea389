//! PoP fork resolution: which of two L2 branches sharing an ancestor Bitcoin prefers.
//!
//! A port of VeriBlock's `comparePopScoreImpl` (alt-integration-cpp,
//! `include/veriblock/pop/blockchain/pop/fork_resolution.hpp`; see docs/HEMI_POP_REFERENCE.md
//! §6). Each branch is seen from the fork point: its keystones strictly after the fork up to
//! the highest keystone at or below its tip, each with the earliest best-chain Bitcoin height
//! at which it — or the next keystone, which commits to it (VeriBlock counts endorsements of
//! the blocks `[k, k + interval + 1]`) — was published. Keystone by keystone, the earlier
//! publication scores `table[0]` and the other `table[Δheight]`; a branch whose publication
//! lags the other's (or its own previous one) by more than the finality delay drops out; a
//! keystone one branch lacks gives the other `table[0]` and ends the missing branch's run.
//! Higher total wins; ties keep the current branch.
//!
//! Not ported: VeriBlock's optional time adjustment (publications pushed forward to the first
//! Bitcoin block later than the keystone's timestamp) — Hemi keystones carry no such rule.

use std::collections::BTreeMap;

use hemi_btc_view::BitcoinView;
use hemi_keystone::Keystone;

use crate::FinalityError;

/// VeriBlock's `mForkResolutionLookUpTable`: score by publication height relative to the
/// earlier branch's.
pub const FORK_RESOLUTION_TABLE: [i64; 9] = [100, 100, 95, 89, 80, 69, 56, 40, 21];

/// VeriBlock's default `mFinalityDelay`, Bitcoin blocks: a publication more than this many
/// blocks after the rival's (or after its own branch's previous one) takes the branch out.
pub const POP_FINALITY_DELAY: u32 = 100;

/// One branch from the fork point, as fork resolution sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicationView {
    /// First keystone strictly after the fork point.
    pub first_keystone: u64,
    /// Highest keystone at or below the branch's tip (below `first_keystone`: no keystone).
    pub last_keystone: u64,
    /// For each keystone in range, the earliest Bitcoin height that endorses it (`None`:
    /// unpublished).
    pub publications: BTreeMap<u64, Option<u32>>,
}

impl PublicationView {
    /// Whether the branch crosses no keystone boundary.
    pub fn is_empty(&self) -> bool {
        self.last_keystone < self.first_keystone
    }

    /// `None` outside the branch's keystones ("missing"); `Some(None)` for an unpublished one.
    fn get(&self, k: u64) -> Option<Option<u32>> {
        (k >= self.first_keystone && k <= self.last_keystone)
            .then(|| self.publications.get(&k).copied().flatten())
    }
}

/// First keystone strictly after block `n`.
pub fn first_keystone_after(n: u64, interval: u64) -> u64 {
    n - n % interval + interval
}

/// The view of a branch forking after block `fork` with tip `tip`. `keystone(k)` is the
/// branch's keystone at L2 number `k`; each keystone's endorsement height is its first
/// best-chain publication, or the next keystone's when that is earlier and at most
/// `interval + 1` blocks after it (and not beyond the tip).
///
/// # Errors
/// `keystone` fails or the Bitcoin index cannot be read.
pub fn publication_view(
    bitcoin: &dyn BitcoinView,
    fork: u64,
    tip: u64,
    interval: u64,
    mut keystone: impl FnMut(u64) -> Result<Keystone, FinalityError>,
) -> Result<PublicationView, FinalityError> {
    let first_keystone = first_keystone_after(fork, interval);
    let last_keystone = tip - tip % interval;
    let mut first_pub = BTreeMap::new();
    let mut k = first_keystone;
    while k <= last_keystone {
        let id = keystone(k)?.abbreviate().id();
        let height = bitcoin
            .first_publication(&id.0)?
            .map(|p| p.location.block.height);
        first_pub.insert(k, height);
        k += interval;
    }
    let publications = first_pub
        .iter()
        .map(|(&k, &own)| {
            let next = (k + interval <= tip.min(k + interval + 1))
                .then(|| first_pub.get(&(k + interval)).copied().flatten())
                .flatten();
            let best = match (own, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (k, best)
        })
        .collect();
    Ok(PublicationView {
        first_keystone,
        last_keystone,
        publications,
    })
}

/// The two branches' PoP scores from the fork point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PopScore {
    /// The current (active) branch's.
    pub current: i64,
    /// The candidate's.
    pub candidate: i64,
}

impl PopScore {
    /// Whether to switch: the candidate scores strictly higher (ties keep the current branch).
    pub fn prefers_candidate(&self) -> bool {
        self.candidate > self.current
    }
}

fn table_score(rel: i64) -> i64 {
    usize::try_from(rel)
        .ok()
        .and_then(|i| FORK_RESOLUTION_TABLE.get(i))
        .copied()
        .unwrap_or(0)
}

/// VeriBlock's `comparePopScoreImpl` over `current` (A) and `candidate` (B), which fork at the
/// same block. An empty branch (no keystone after the fork) against a non-empty one scores 0
/// against `table[0]`.
pub fn compare_pop_score(
    current: &PublicationView,
    candidate: &PublicationView,
    interval: u64,
    finality_delay: u32,
) -> PopScore {
    const NO_ENDORSEMENT: i64 = i32::MAX as i64;
    let top = FORK_RESOLUTION_TABLE[0];
    match (current.is_empty(), candidate.is_empty()) {
        (true, true) => {
            return PopScore {
                current: 0,
                candidate: 0,
            }
        }
        (true, false) => {
            return PopScore {
                current: 0,
                candidate: top,
            }
        }
        (false, true) => {
            return PopScore {
                current: top,
                candidate: 0,
            }
        }
        (false, false) => {}
    }
    let violates = |p: i64, base: i64| p - base > i64::from(finality_delay);
    let (mut a_out, mut b_out) = (false, false);
    let (mut sa, mut sb) = (0i64, 0i64);
    let (mut prev_a, mut prev_b) = (NO_ENDORSEMENT, NO_ENDORSEMENT);
    let latest = current.last_keystone.max(candidate.last_keystone);
    let mut k = current.first_keystone;
    while k <= latest {
        let mut actx = if a_out { None } else { current.get(k) };
        let mut bctx = if b_out { None } else { candidate.get(k) };
        let pa = actx.flatten().map_or(NO_ENDORSEMENT, i64::from);
        let pb = bctx.flatten().map_or(NO_ENDORSEMENT, i64::from);
        if actx.is_some() && violates(pa, prev_a) {
            a_out = true;
            actx = None;
        }
        prev_a = pa;
        if bctx.is_some() && violates(pb, prev_b) {
            b_out = true;
            bctx = None;
        }
        prev_b = pb;
        k += interval;
        match (actx, bctx) {
            (None, None) => {
                if a_out && b_out {
                    break;
                }
            }
            (None, Some(_)) => {
                sb += top;
                a_out = true;
                if sb > sa {
                    break;
                }
            }
            (Some(_), None) => {
                sa += top;
                b_out = true;
                if sa > sb {
                    break;
                }
            }
            (Some(_), Some(_)) => {
                let e = pa.min(pb);
                sa += table_score(pa - e);
                sb += table_score(pb - e);
                if violates(pa, pb) {
                    a_out = true;
                }
                if violates(pb, pa) {
                    b_out = true;
                }
            }
        }
    }
    PopScore {
        current: sa,
        candidate: sb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(first: u64, pubs: &[(u64, Option<u32>)]) -> PublicationView {
        PublicationView {
            first_keystone: first,
            last_keystone: pubs.last().map_or(0, |p| p.0),
            publications: pubs.iter().copied().collect(),
        }
    }

    fn cmp(a: &PublicationView, b: &PublicationView) -> PopScore {
        compare_pop_score(a, b, 5, POP_FINALITY_DELAY)
    }

    #[test]
    fn the_earlier_published_branch_wins_and_ties_keep_the_current_one() {
        let a = view(10, &[(10, Some(103)), (15, Some(104))]);
        let b = view(10, &[(10, Some(100)), (15, Some(104))]);
        // Keystone 10: B at relative 0 (100), A at relative 3 (89); 15 equal (100 each).
        assert_eq!(
            cmp(&a, &b),
            PopScore {
                current: 189,
                candidate: 200
            }
        );
        assert!(cmp(&a, &b).prefers_candidate());
        assert!(!cmp(&b, &a).prefers_candidate());
        // One block apart scores the same (table[0] == table[1]): a tie keeps the current.
        let c = view(10, &[(10, Some(101)), (15, Some(104))]);
        let d = view(10, &[(10, Some(100)), (15, Some(104))]);
        assert_eq!(
            cmp(&c, &d),
            PopScore {
                current: 200,
                candidate: 200
            }
        );
        assert!(!cmp(&c, &d).prefers_candidate());
        assert!(!cmp(&a, &a).prefers_candidate());
    }

    #[test]
    fn published_beats_unpublished_and_a_missing_keystone_ends_the_run() {
        let published = view(10, &[(10, Some(100))]);
        let unpublished = view(10, &[(10, None)]);
        let s = cmp(&unpublished, &published);
        assert_eq!(
            s,
            PopScore {
                current: 0,
                candidate: 100
            }
        );
        // Both unpublished: both score table[0]; the tie keeps the current branch.
        assert_eq!(
            cmp(&unpublished, &unpublished),
            PopScore {
                current: 100,
                candidate: 100
            }
        );
        // A longer candidate: keystone 15 missing on the current branch → the candidate gets
        // table[0] and the comparison stops once it leads.
        let short = view(10, &[(10, Some(100))]);
        let long = view(10, &[(10, Some(100)), (15, Some(101))]);
        assert_eq!(
            cmp(&short, &long),
            PopScore {
                current: 100,
                candidate: 200
            }
        );
        // No keystone after the fork on either side: nothing to compare.
        let none = PublicationView {
            first_keystone: 10,
            last_keystone: 5,
            ..Default::default()
        };
        assert_eq!(
            cmp(&none, &none),
            PopScore {
                current: 0,
                candidate: 0
            }
        );
        assert!(cmp(&none, &short).prefers_candidate());
        assert!(!cmp(&short, &none).prefers_candidate());
    }

    #[test]
    fn a_branch_lagging_beyond_the_finality_delay_drops_out() {
        // A's keystone 10 is published 150 Bitcoin blocks after B's: A scores 0 and is out,
        // so B's later keystones count alone.
        let a = view(10, &[(10, Some(250)), (15, Some(251))]);
        let b = view(10, &[(10, Some(100)), (15, Some(101))]);
        let s = cmp(&a, &b);
        assert_eq!(
            s,
            PopScore {
                current: 0,
                candidate: 200
            }
        );
        // Relative heights beyond the table score nothing but stay in the race.
        let c = view(10, &[(10, Some(120))]);
        let d = view(10, &[(10, Some(100))]);
        assert_eq!(
            cmp(&c, &d),
            PopScore {
                current: 0,
                candidate: 100
            }
        );
    }

    #[test]
    fn keystone_arithmetic_is_veriblocks() {
        assert_eq!(first_keystone_after(0, 5), 5);
        assert_eq!(first_keystone_after(5, 5), 10, "strictly after");
        assert_eq!(first_keystone_after(7, 5), 10);
        assert_eq!(first_keystone_after(9, 25), 25);
    }
}
