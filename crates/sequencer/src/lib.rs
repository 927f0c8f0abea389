//! The Bitcoin-Secure Sequencer (Hemi's BSS): block production and its transaction pool.
//!
//! Place in the chain of trust: Bitcoin → hVM → **sequencer** → chain → PoP → finality.
//!
//! - [`Sequencer`] keeps the mempool and, every block time, builds the next L2 block: the
//!   system transactions ([`hemi_chain::system`]: the Bitcoin-attributes transaction pinning the
//!   Bitcoin tip our client follows, with the headers added since the parent's pin, at most
//!   six; a PoP payout when one is due), then pool transactions by fee, sealed by a
//!   [`hemi_chain::Sealer`] ([`KeySealer`]: the sequencer's secp256k1 key).
//! - Following a sequencer (fetching, checking and re-executing its blocks) is `hemi-sync`'s.

mod sealer;
mod sequencer;

pub use sealer::KeySealer;
pub use sequencer::{Sequencer, SequencerConfig, SubmitError};
