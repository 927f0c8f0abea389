//! The sequencer set: L2 blocks decided by Tendermint BFT, run by Malachite (its channel API),
//! and sealed by commit certificates.
//!
//! Each validator runs Malachite's engine (consensus, its own libp2p network, value sync and
//! a write-ahead log so a restarted validator never signs two blocks at one height) and an
//! application loop ([`app`]) that answers it from the node's chain through [`Host`]. The
//! types Malachite is generic over are in [`ctx`]; votes sign
//! [`hemi_chain::certificate::vote_digest`], so a decided block's precommits are its
//! [`hemi_chain::Certificate`], checked by every follower against the chain spec's set
//! ([`hemi_chain::ValidatorSet`]).

pub mod app;
pub mod codec;
pub mod ctx;
pub mod signing;

pub use app::{lan_timeouts, start, Host, Running, SetStatus, ValidatorConfig, Verdict};
pub use ctx::{HemiContext, PubKey, ValidatorSet};
