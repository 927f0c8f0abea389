//! Bitcoin finality of L2 blocks — what Hemi's BFG computes.
//!
//! Every L2 block whose number is a multiple of `keystone_interval` is a *keystone*; PoP miners
//! publish its 76-byte abbreviated form in Bitcoin. For any L2 block the tracker answers:
//! the keystone that covers it (the first keystone at or after it), the earliest best-chain
//! Bitcoin publication of that keystone *or of any later one* (a later keystone commits to the
//! whole chain before it), `effective_confirmations` = Bitcoin tip height − that publication's
//! height (Hemi's definition), and `super_finality` = effective confirmations ≥
//! `superfinality_depth`. The Ethereum tags follow: `safe` is the newest block covered by a
//! published keystone, `finalized` the newest superfinal block (genesis when none).
//!
//! [`fork_choice`] scores two L2 branches by their keystones' Bitcoin publications (VeriBlock's
//! PoP fork resolution), for a node that sees the sequencer equivocate.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → chain → PoP → **finality**.
//!
//! The tracker keeps one entry per keystone in memory and is refreshed when the L2 head or the
//! Bitcoin tip moves ([`FinalityTracker::refresh`]); queries then cost a lookup.

pub mod fork_choice;
mod tracker;

pub use tracker::{
    keystone_of, Finality, FinalityError, FinalityParams, FinalityTracker, KeystoneInfo, L2Headers,
    Publication,
};
