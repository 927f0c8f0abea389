//! The single-key [`Sealer`]: the sequencer's secp256k1 key signs every block.

use alloy_primitives::{Address, B256};
use hemi_chain::block::{seal, Seal};
use hemi_chain::{SealError, Sealer};

/// Seals blocks with one secp256k1 secret key (the devnet's and a lone sequencer's).
pub struct KeySealer {
    secret: B256,
    address: Address,
}

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("KeySealer")
            .field("address", &self.address)
            .finish()
    }
}

impl KeySealer {
    /// A sealer for the key `secret`.
    ///
    /// # Errors
    /// [`SealError::Key`] when `secret` is not a valid secp256k1 secret key.
    pub fn new(secret: B256) -> Result<Self, SealError> {
        let key = bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice())
            .map_err(|e| SealError::Key(e.to_string()))?;
        Ok(KeySealer {
            secret,
            address: hemi_chain::eth_address(&key),
        })
    }
}

impl Sealer for KeySealer {
    fn address(&self) -> Address {
        self.address
    }

    fn seal(&self, chain_id: u64, block_hash: B256) -> Result<Seal, SealError> {
        seal(chain_id, block_hash, self.secret)
    }
}
