//! The state: recent blocks' changes in memory, persisted to the state database in batches.
//!
//! A block's commit makes the block itself durable — header, body, receipts and its
//! [`ChangeSet`] (the new value of every account and slot it changed) in the blocks database.
//! Its state changes, trie nodes and history go into an in-memory [`Overlay`] over the state
//! database, and a background thread persists the overlay in batches: one write transaction for
//! many blocks, so a page of a large table is written once per batch instead of once per block
//! (reth's engine/persistence split). A restart replays the changesets above the state
//! database's persisted block, so a kill -9 loses nothing that was committed.
//!
//! Readers take a [`Snapshot`]: an immutable overlay (persistent maps, cheap to clone) and a read
//! transaction of the state database whose persisted block lies within the overlay's range.
//!
//! The jobs, one file each: [`layers`] (in-memory layers), [`snapshot`] (reads), [`root`] (root
//! computation), [`write`] (the state database's writes), [`store`] (the persister), [`view`]
//! (the [`StateView`] execution and RPC read).

use std::time::Duration;

/// Blocks in the overlay that start a background persist: larger batches write each page of a
/// large table fewer times per block.
const PERSIST_BLOCKS: usize = 256;
/// Entries (accounts, slots, trie nodes) in the newest layer that start a persist earlier,
/// bounding the overlay's memory (a few hundred MB).
const PERSIST_ENTRIES: usize = 1_000_000;
/// Persist whatever is in the overlay after this long without a new block.
const PERSIST_IDLE: Duration = Duration::from_secs(2);
/// Blocks in the overlay at which a commit waits for a persist (back-pressure).
const MAX_OVERLAY_BLOCKS: usize = 1024;

mod layers;
mod root;
mod snapshot;
mod store;
mod view;
mod write;

pub(crate) use layers::BlockDiff;
pub(crate) use root::compute_diff;
pub(crate) use snapshot::Snapshot;
pub(crate) use store::StateStore;
pub use view::StateView;
