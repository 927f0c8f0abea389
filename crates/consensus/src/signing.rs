//! Signing and checking votes, proposals and validator proofs with secp256k1 keys.
//!
//! Precommits sign [`hemi_chain::certificate::vote_digest`], so the precommits that decide a
//! block are, as they are, the block's commit certificate that every follower checks.
//! Proposals sign `keccak256("hemi-rs proposal v1" ‖ chain_id ‖ height ‖ round ‖ pol_round ‖
//! block hash ‖ proposer)`.

use alloy_primitives::{keccak256, Address, B256};
use async_trait::async_trait;
use hemi_chain::certificate::{recover_digest, sign_digest, vote_digest, VoteKind};
use hemi_chain::Seal;
use malachitebft_core_types::{
    NilOrVal, SignedMessage, ValidatorProof, VoteExtensionScope, VoteType,
};
use malachitebft_signing::{Error, Signer, VerificationResult, Verifier};

use crate::ctx::{HemiContext, Proposal, PubKey, Sig, Vote};

/// Domain separator of a proposal's digest.
pub const PROPOSAL_DOMAIN: &[u8] = b"hemi-rs proposal v1";

/// The digest a vote signs.
pub fn vote_signing_digest(chain_id: u64, vote: &Vote) -> B256 {
    let kind = match vote.typ {
        VoteType::Prevote => VoteKind::Prevote,
        VoteType::Precommit => VoteKind::Precommit,
    };
    let value = match &vote.value {
        NilOrVal::Nil => None,
        NilOrVal::Val(id) => Some(id.hash()),
    };
    vote_digest(chain_id, kind, vote.height.0, vote.round.as_i64(), value)
}

/// The digest a proposal signs.
pub fn proposal_signing_digest(chain_id: u64, p: &Proposal) -> B256 {
    let mut pre = Vec::with_capacity(PROPOSAL_DOMAIN.len() + 84);
    pre.extend_from_slice(PROPOSAL_DOMAIN);
    pre.extend_from_slice(&chain_id.to_be_bytes());
    pre.extend_from_slice(&p.height.0.to_be_bytes());
    pre.extend_from_slice(&p.round.as_i64().to_be_bytes());
    pre.extend_from_slice(&p.pol_round.as_i64().to_be_bytes());
    pre.extend_from_slice(&p.value.0 .0);
    pre.extend_from_slice(&p.proposer.0);
    keccak256(pre)
}

fn extension_digest(chain_id: u64, scope: &VoteExtensionScope<HemiContext>) -> B256 {
    let mut pre = b"hemi-rs vote extension v1".to_vec();
    pre.extend_from_slice(&chain_id.to_be_bytes());
    pre.extend_from_slice(&scope.height.0.to_be_bytes());
    pre.extend_from_slice(&scope.round.as_i64().to_be_bytes());
    pre.extend_from_slice(&scope.value_id.0);
    pre.extend_from_slice(&scope.validator_address.0);
    keccak256(pre)
}

fn proof_digest(public_key: &[u8], peer_id: &[u8]) -> B256 {
    keccak256(ValidatorProof::<HemiContext>::signing_bytes(
        public_key, peer_id,
    ))
}

/// Whether `sig` over `digest` is by `key`.
fn signed_by(digest: B256, sig: &Sig, key: &PubKey) -> VerificationResult {
    let by = recover_digest(digest, &Seal::from(sig.0)).ok();
    let expected: Option<Address> = key.address().ok();
    VerificationResult::from_bool(by.is_some() && by == expected)
}

/// Checks signatures (every node, validator or not).
#[derive(Debug, Clone, Copy)]
pub struct HemiVerifier {
    /// The chain id signatures are for.
    pub chain_id: u64,
}

#[async_trait]
impl Verifier<HemiContext> for HemiVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Sig,
        public_key: &PubKey,
    ) -> Result<VerificationResult, Error> {
        Ok(signed_by(
            vote_signing_digest(self.chain_id, vote),
            signature,
            public_key,
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Sig,
        public_key: &PubKey,
    ) -> Result<VerificationResult, Error> {
        Ok(signed_by(
            proposal_signing_digest(self.chain_id, proposal),
            signature,
            public_key,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<HemiContext>,
        _extension: &(),
        signature: &Sig,
        public_key: &PubKey,
    ) -> Result<VerificationResult, Error> {
        Ok(signed_by(
            extension_digest(self.chain_id, scope),
            signature,
            public_key,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<HemiContext>,
    ) -> Result<VerificationResult, Error> {
        let Ok(key) = <[u8; 33]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(signed_by(
            proof_digest(&proof.public_key, &proof.peer_id),
            &proof.signature,
            &PubKey(key),
        ))
    }
}

/// Signs as one validator.
#[derive(Clone)]
pub struct HemiSigner {
    chain_id: u64,
    secret: B256,
}

impl std::fmt::Debug for HemiSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HemiSigner")
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl HemiSigner {
    /// A signer with `secret` for chain `chain_id`.
    pub fn new(chain_id: u64, secret: B256) -> Self {
        HemiSigner { chain_id, secret }
    }

    fn sign(&self, digest: B256) -> Result<Sig, Error> {
        sign_digest(self.secret, digest)
            .map(|s| Sig(s.0))
            .map_err(Error::from_source)
    }
}

#[async_trait]
impl Signer<HemiContext> for HemiSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<HemiContext, Vote>, Error> {
        let sig = self.sign(vote_signing_digest(self.chain_id, &vote))?;
        Ok(SignedMessage::new(vote, sig))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<HemiContext, Proposal>, Error> {
        let sig = self.sign(proposal_signing_digest(self.chain_id, &proposal))?;
        Ok(SignedMessage::new(proposal, sig))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<HemiContext>,
        extension: (),
    ) -> Result<SignedMessage<HemiContext, ()>, Error> {
        let sig = self.sign(extension_digest(self.chain_id, &scope))?;
        Ok(SignedMessage::new(extension, sig))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<HemiContext>, Error> {
        let sig = self.sign(proof_digest(&public_key, &peer_id))?;
        Ok(ValidatorProof::new(public_key, peer_id, sig))
    }
}
