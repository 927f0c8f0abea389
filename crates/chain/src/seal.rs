//! Who may make a block: the seal seam.
//!
//! Block building takes a [`Sealer`] (it signs a block hash) and import takes a
//! [`SealVerifier`] (it checks the seal next to a header). Today both are one sequencer key: the
//! sequencer crate's `KeySealer` signs and [`SequencerAddress`] verifies. A sequencer set swaps in
//! a commit certificate behind the same two traits; the chain itself never holds a private key.

use alloy_primitives::{Address, B256};

use crate::block::{signer, Seal};
use crate::certificate::Certificate;
use crate::SealError;

/// Seals blocks: signs a block hash of a chain.
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// The address a block sealed by this sealer names as its beneficiary (the sequencer's).
    fn address(&self) -> Address;

    /// The seal of block `block_hash` of chain `chain_id` (see [`crate::block::seal_digest`]).
    ///
    /// # Errors
    /// The signer failed (a bad key, a signing service that refused).
    fn seal(&self, chain_id: u64, block_hash: B256) -> Result<Seal, SealError>;
}

/// Checks the seal of an imported block.
pub trait SealVerifier: Send + Sync + std::fmt::Debug {
    /// Checks that `seal` (or, for a chain certified by a validator set, `certificate`)
    /// authorises block `number` (hash `block_hash`) of chain `chain_id`.
    ///
    /// # Errors
    /// [`SealError`] naming what is wrong: a seal that does not recover, the wrong signer, a
    /// short or foreign certificate.
    fn verify(
        &self,
        chain_id: u64,
        number: u64,
        block_hash: B256,
        seal: &Seal,
        certificate: Option<&Certificate>,
    ) -> Result<(), SealError>;
}

/// Verifies blocks sealed by one sequencer key, known by its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencerAddress(pub Address);

impl SealVerifier for SequencerAddress {
    fn verify(
        &self,
        chain_id: u64,
        number: u64,
        block_hash: B256,
        seal: &Seal,
        certificate: Option<&Certificate>,
    ) -> Result<(), SealError> {
        if certificate.is_some() {
            return Err(SealError::UnexpectedCertificate(number));
        }
        let signed_by = signer(chain_id, block_hash, seal)?;
        if signed_by != self.0 {
            return Err(SealError::WrongSigner {
                number,
                signer: signed_by,
                expected: self.0,
            });
        }
        Ok(())
    }
}
