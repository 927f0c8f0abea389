//! Following the L2 chain (`hemi node --follow URL …`): one concept, one crate.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → **chain** (as a follower) → PoP →
//! finality. A follower does not trust the sequencer's node: it fetches sealed blocks from a
//! [`BlockSource`], checks the seal through a [`hemi_chain::SealVerifier`], re-executes each
//! block against its own Bitcoin client and commits only blocks whose roots match.
//!
//! Main items:
//! - [`BlockSource`]: where blocks come from. [`RpcSource`] reads a node's JSON-RPC
//!   (`eth_blockNumber`, `debug_getRawBlock`); p2p gossip is the next source.
//! - [`Follower`]: keeps cursors per source, imports blocks that extend our head, holds the
//!   others as side branches and asks a [`ForkRule`] which branch wins.
//! - [`PopForkRule`]: Proof-of-Proof fork choice — VeriBlock's `comparePopScore` over our
//!   Bitcoin index ([`hemi_finality::fork_choice`] keeps the scoring rule), never replacing a
//!   superfinal block; [`fork_choice_json`] is `hemi_getForkChoice`'s answer.

mod error;
mod follower;
mod fork;
mod p2p;
mod source;

pub use error::FollowError;
pub use follower::{BranchBlock, Follower, ForkRule, ForkScore, ForkTip};
pub use fork::{fork_choice_json, PopForkRule};
pub use p2p::{P2pSource, GOSSIP_MAX_AGE, GOSSIP_MAX_FUTURE, GOSSIP_MAX_PER_HEIGHT};
pub use source::{node_status, sequencer_address, BlockSource, RpcSource};
