//! Provenance anyone can check offline: one versioned JSON document
//! (`"version": "hemi-rs/provenance/v1"`, [`Provenance`]) that carries, for one tunnel deposit,
//!
//! 1. **the BTC lock**: the deposit transaction, its inclusion proof in Bitcoin Core's own
//!    `gettxoutproof` merkleblock format, and the Bitcoin headers from its block to the tip seen;
//! 2. **the L2 ordering**: the header of the L2 block that minted hemiBTC for it, the mint's
//!    receipt with a Merkle-Patricia proof against the header's receipts root, the
//!    sequencer's seal (under a sequencer set, `hemi-rs/provenance/v2`: also the set and the
//!    block's commit certificate, more than two thirds of it), and the L2 headers from that block to the keystone that anchors it;
//! 3. **the PoP anchoring**: that keystone's 76-byte abbreviated form, the PoP transaction that
//!    carries it, its merkleblock and the Bitcoin headers to the same tip.
//!
//! [`verify`] checks every hash, Merkle branch (refusing 64-byte transactions, which a Merkle
//! branch cannot tell from inner nodes), trie proof, seal, certificate, header link and proof of work with
//! no database and no EVM, and says which link broke ([`VerifyError`]).
//!
//! Place in the chain of trust: it reads the end of it — Bitcoin → tunnel → chain → PoP →
//! finality — and needs none of those parts' state, only their formats.

mod build;
mod doc;
mod verify;

pub use build::{merkle_block, receipt_proof};
pub use doc::{Anchor, BitcoinInclusion, Deposit, Mint, Provenance, VERSION, VERSION_SET};
pub use verify::{verify, Link, Report, VerifyError, VerifyOptions};
