//! The hVM: the EVM (revm) plus Hemi's Bitcoin precompiles at 0x40–0x49.
//!
//! Each L2 block pins the Bitcoin block it executes against (its Bitcoin-attributes system
//! transaction names the canonical Bitcoin tip); every precompile answers from a
//! [`BitcoinView`](hemi_btc_view::BitcoinView) as of that pinned block, so a node that
//! re-executes the block gets byte-identical results however far Bitcoin has moved since.
//!
//! Place in the chain of trust: Bitcoin → **hVM** → sequencer → chain → PoP → finality.
//!
//! Main items: [`precompiles`] (the ten precompile bodies and their gas), [`HvmPrecompiles`]
//! (revm's precompile provider: Ethereum's precompiles plus these), [`BitcoinPin`].

pub mod attributes;
pub mod evm;
pub mod precompiles;

pub use attributes::{AttributesError, BtcAttributes};
pub use evm::{hvm_address, BitcoinPin, HvmPrecompiles};
pub use precompiles::{BitcoinContext, PrecompileCall};
