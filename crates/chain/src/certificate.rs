//! Commit certificates: the seal of a block made by a validator set.
//!
//! When a set of sequencers orders the chain by BFT consensus (Tendermint, run by the
//! `hemi-consensus` crate on Malachite), a block is final for the set once more than two thirds
//! of the validators precommitted its hash in one round. Those precommit signatures are the
//! block's [`Certificate`]; it travels next to the header (block format 3) in place of the lone
//! sequencer's seal, and every follower checks it against the set named in the chain spec
//! ([`ValidatorSet`]) through the same [`SealVerifier`] seam.
//!
//! A precommit (and a prevote) signs [`vote_digest`]:
//!
//! ```text
//! keccak256("hemi-rs vote v1" ‖ chain_id (8, BE) ‖ kind (1: prevote 1, precommit 2)
//!           ‖ height (8, BE) ‖ round (8, BE, two's complement) ‖ 0x00 | 0x01 ‖ value (32))
//! ```
//!
//! with the value all zero and the flag 0 for a vote for nil. Signatures are 65-byte
//! recoverable secp256k1 `r ‖ s ‖ v`, as seals are.
//!
//! A certificate encodes as `round (4, BE) ‖ signature₁ ‖ … ‖ signatureₖ`.

use alloy_primitives::{keccak256, Address, B256};

use crate::block::{Seal, SEAL_LEN};
use crate::seal::SealVerifier;
use crate::{BlockError, SealError};

/// Domain separator of [`vote_digest`].
pub const VOTE_DOMAIN: &[u8] = b"hemi-rs vote v1";

/// Most signatures a certificate may carry (a set is at most this large).
pub const MAX_VALIDATORS: usize = 256;

/// What a vote is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VoteKind {
    /// A prevote.
    Prevote = 1,
    /// A precommit (what certificates hold).
    Precommit = 2,
}

/// The digest a validator signs for a vote (see the module docs).
pub fn vote_digest(
    chain_id: u64,
    kind: VoteKind,
    height: u64,
    round: i64,
    value: Option<B256>,
) -> B256 {
    let mut pre = Vec::with_capacity(VOTE_DOMAIN.len() + 58);
    pre.extend_from_slice(VOTE_DOMAIN);
    pre.extend_from_slice(&chain_id.to_be_bytes());
    pre.push(kind as u8);
    pre.extend_from_slice(&height.to_be_bytes());
    pre.extend_from_slice(&round.to_be_bytes());
    pre.push(u8::from(value.is_some()));
    pre.extend_from_slice(value.unwrap_or_default().as_slice());
    keccak256(pre)
}

/// Signs `digest` with `secret`: a 65-byte recoverable signature `r ‖ s ‖ v` (v = 0 or 1).
///
/// # Errors
/// The key is not a valid secp256k1 secret.
pub fn sign_digest(secret: B256, digest: B256) -> Result<Seal, SealError> {
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, digest)
        .map_err(|e| SealError::Signing(e.to_string()))?;
    let mut out = [0u8; SEAL_LEN];
    out[..64].copy_from_slice(&sig.as_bytes()[..64]);
    out[64] = u8::from(sig.v());
    Ok(Seal::from(out))
}

/// The address that signed `digest` with `signature`.
///
/// # Errors
/// [`SealError::Parity`] or [`SealError::Recover`] when the signature does not recover.
pub fn recover_digest(digest: B256, signature: &Seal) -> Result<Address, SealError> {
    if signature[64] > 1 {
        return Err(SealError::Parity(signature[64]));
    }
    let sig =
        alloy_primitives::Signature::from_bytes_and_parity(&signature[..64], signature[64] == 1);
    alloy_consensus::crypto::secp256k1::recover_signer(&sig, digest)
        .map_err(|e| SealError::Recover(e.to_string()))
}

/// A commit certificate: the round a block was decided in and the validators' precommit
/// signatures for its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The round of the precommits.
    pub round: u32,
    /// The precommit signatures (one per validator).
    pub signatures: Vec<Seal>,
}

impl Certificate {
    /// `round (4, BE) ‖ signatures`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.signatures.len() * SEAL_LEN);
        out.extend_from_slice(&self.round.to_be_bytes());
        for s in &self.signatures {
            out.extend_from_slice(s.as_slice());
        }
        out
    }

    /// Decodes [`Certificate::encode`]'s bytes.
    ///
    /// # Errors
    /// [`BlockError::CertificateEncoding`] when the length is not 4 + 65·k with
    /// 1 ≤ k ≤ [`MAX_VALIDATORS`].
    pub fn decode(bytes: &[u8]) -> Result<Self, BlockError> {
        let k = bytes.len().saturating_sub(4) / SEAL_LEN;
        if bytes.len() < 4 + SEAL_LEN
            || !(bytes.len() - 4).is_multiple_of(SEAL_LEN)
            || k > MAX_VALIDATORS
        {
            return Err(BlockError::CertificateEncoding(bytes.len()));
        }
        let round = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let signatures = bytes[4..].chunks(SEAL_LEN).map(Seal::from_slice).collect();
        Ok(Certificate { round, signatures })
    }

    /// The addresses that signed a precommit for block `block_hash` at height `number`, in
    /// order.
    ///
    /// # Errors
    /// A signature that does not recover.
    pub fn signers(
        &self,
        chain_id: u64,
        number: u64,
        block_hash: B256,
    ) -> Result<Vec<Address>, SealError> {
        let digest = vote_digest(
            chain_id,
            VoteKind::Precommit,
            number,
            i64::from(self.round),
            Some(block_hash),
        );
        self.signatures
            .iter()
            .map(|s| recover_digest(digest, s))
            .collect()
    }
}

/// How many of `n` equally weighted validators make a quorum: more than two thirds.
pub fn quorum(n: usize) -> usize {
    n * 2 / 3 + 1
}

/// Verifies blocks certified by a validator set of equal voting power (the chain spec's
/// `validators`): more than two thirds of them precommitted the block's hash in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet(pub Vec<Address>);

impl SealVerifier for ValidatorSet {
    fn verify(
        &self,
        chain_id: u64,
        number: u64,
        block_hash: B256,
        _seal: &Seal,
        certificate: Option<&Certificate>,
    ) -> Result<(), SealError> {
        let cert = certificate.ok_or(SealError::MissingCertificate(number))?;
        let mut seen: Vec<Address> = Vec::with_capacity(cert.signatures.len());
        for signer in cert.signers(chain_id, number, block_hash)? {
            if !self.0.contains(&signer) {
                return Err(SealError::NotAValidator { number, signer });
            }
            if seen.contains(&signer) {
                return Err(SealError::DuplicateSigner { number, signer });
            }
            seen.push(signer);
        }
        let need = quorum(self.0.len());
        if seen.len() < need {
            return Err(SealError::ShortCertificate {
                number,
                have: seen.len(),
                need,
                total: self.0.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> B256 {
        B256::repeat_byte(i)
    }

    fn addr(i: u8) -> Address {
        alloy_signer_address(key(i))
    }

    fn alloy_signer_address(secret: B256) -> Address {
        let d = vote_digest(1, VoteKind::Prevote, 0, 0, None);
        recover_digest(d, &sign_digest(secret, d).expect("test")).expect("test")
    }

    fn cert(chain_id: u64, number: u64, hash: B256, keys: &[u8]) -> Certificate {
        let d = vote_digest(chain_id, VoteKind::Precommit, number, 2, Some(hash));
        Certificate {
            round: 2,
            signatures: keys
                .iter()
                .map(|&i| sign_digest(key(i), d).expect("test"))
                .collect(),
        }
    }

    #[test]
    fn quorum_is_more_than_two_thirds() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(3), 3);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(7), 5);
    }

    #[test]
    fn a_certificate_of_three_of_four_verifies_and_round_trips() {
        let set = ValidatorSet((1..=4).map(addr).collect());
        let hash = B256::repeat_byte(0xab);
        let c = cert(7, 5, hash, &[1, 3, 4]);
        assert_eq!(Certificate::decode(&c.encode()).expect("test"), c);
        set.verify(7, 5, hash, &Seal::ZERO, Some(&c)).expect("test");
        // Another hash, height or chain does not verify (the signers recover elsewhere).
        assert!(set.verify(7, 5, B256::ZERO, &Seal::ZERO, Some(&c)).is_err());
        assert!(set.verify(7, 6, hash, &Seal::ZERO, Some(&c)).is_err());
        assert!(set.verify(8, 5, hash, &Seal::ZERO, Some(&c)).is_err());
    }

    #[test]
    fn short_duplicate_outsider_and_missing_certificates_are_refused() {
        let set = ValidatorSet((1..=4).map(addr).collect());
        let hash = B256::repeat_byte(1);
        let short = set.verify(1, 9, hash, &Seal::ZERO, Some(&cert(1, 9, hash, &[1, 2])));
        assert_eq!(
            short,
            Err(SealError::ShortCertificate {
                number: 9,
                have: 2,
                need: 3,
                total: 4
            })
        );
        let dup = set.verify(1, 9, hash, &Seal::ZERO, Some(&cert(1, 9, hash, &[1, 2, 2])));
        assert!(matches!(dup, Err(SealError::DuplicateSigner { .. })));
        let outsider = set.verify(1, 9, hash, &Seal::ZERO, Some(&cert(1, 9, hash, &[1, 2, 9])));
        assert!(matches!(outsider, Err(SealError::NotAValidator { .. })));
        assert_eq!(
            set.verify(1, 9, hash, &Seal::ZERO, None),
            Err(SealError::MissingCertificate(9))
        );
    }

    #[test]
    fn malformed_certificates_do_not_decode() {
        for len in [0, 3, 4, 68, 70, 4 + 65 * (MAX_VALIDATORS + 1)] {
            assert!(Certificate::decode(&vec![0u8; len]).is_err(), "{len}");
        }
    }
}
