//! The consensus types Malachite is generic over ([`HemiContext`]): heights are L2 block
//! numbers, the decided value is a block hash, the block itself travels in proposal parts,
//! validators are secp256k1 keys known by their Ethereum addresses.

use std::fmt;

use alloy_primitives::{keccak256, Address, B256};
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{
    self as mc, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType,
};

/// An L2 block number.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's Ethereum address.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct ValidatorAddress(pub [u8; 20]);

impl ValidatorAddress {
    /// As an alloy address.
    pub fn address(&self) -> Address {
        Address::from(self.0)
    }
}

impl From<Address> for ValidatorAddress {
    fn from(a: Address) -> Self {
        ValidatorAddress(a.0 .0)
    }
}

impl fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.address().fmt(f)
    }
}

impl mc::Address for ValidatorAddress {}

/// A block hash: what the set decides on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    /// As a B256.
    pub fn hash(&self) -> B256 {
        B256::from(self.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.hash().fmt(f)
    }
}

/// The value consensus decides on: a block, named by its hash (its bytes travel in the
/// proposal's parts).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct BlockValue(pub BlockId);

impl mc::Value for BlockValue {
    type Id = BlockId;

    fn id(&self) -> BlockId {
        self.0
    }
}

/// A 65-byte recoverable secp256k1 signature `r ‖ s ‖ v` (v = 0 or 1).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Sig(pub [u8; 65]);

/// A compressed secp256k1 public key (33 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PubKey(pub [u8; 33]);

impl PubKey {
    /// The Ethereum address of this key.
    ///
    /// # Errors
    /// The bytes are not a point on the curve.
    pub fn address(&self) -> Result<Address, String> {
        let pk = bitcoin::secp256k1::PublicKey::from_slice(&self.0).map_err(|e| e.to_string())?;
        Ok(Address::from_slice(
            &keccak256(&pk.serialize_uncompressed()[1..])[12..],
        ))
    }

    /// The public key of a secret.
    ///
    /// # Errors
    /// The secret is not a valid secp256k1 key.
    pub fn of_secret(secret: B256) -> Result<Self, String> {
        let sk = bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice())
            .map_err(|e| e.to_string())?;
        let pk = sk.public_key(&bitcoin::secp256k1::Secp256k1::signing_only());
        Ok(PubKey(pk.serialize()))
    }
}

/// The signing scheme: secp256k1 ECDSA with recoverable signatures, as Ethereum signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secp256k1Scheme;

impl mc::SigningScheme for Secp256k1Scheme {
    type DecodingError = String;
    type Signature = Sig;
    type PublicKey = PubKey;
    type PrivateKey = B256;

    fn decode_signature(bytes: &[u8]) -> Result<Sig, String> {
        <[u8; 65]>::try_from(bytes)
            .map(Sig)
            .map_err(|_| format!("a signature is 65 bytes, not {}", bytes.len()))
    }

    fn encode_signature(signature: &Sig) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PubKey, String> {
        let k = <[u8; 33]>::try_from(bytes)
            .map(PubKey)
            .map_err(|_| format!("a public key is 33 bytes, not {}", bytes.len()))?;
        k.address()?;
        Ok(k)
    }

    fn encode_public_key(public_key: &PubKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

/// A validator: its key, address and voting power (equal for all, 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Its address (from its key).
    pub address: ValidatorAddress,
    /// Its key.
    pub public_key: PubKey,
    /// Its voting power.
    pub power: u64,
}

impl mc::Validator<HemiContext> for Validator {
    fn address(&self) -> &ValidatorAddress {
        &self.address
    }

    fn public_key(&self) -> &PubKey {
        &self.public_key
    }

    fn voting_power(&self) -> mc::VotingPower {
        self.power
    }
}

/// The validator set, sorted by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    /// The validators.
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// A set of equal power from public keys (sorted by address, duplicates dropped).
    ///
    /// # Errors
    /// A key that is not a point on the curve.
    pub fn new(keys: &[PubKey]) -> Result<Self, String> {
        let mut validators = keys
            .iter()
            .map(|k| {
                Ok(Validator {
                    address: k.address()?.into(),
                    public_key: *k,
                    power: 1,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        validators.sort_by_key(|v| v.address);
        validators.dedup_by_key(|v| v.address);
        Ok(ValidatorSet { validators })
    }

    /// The validators' addresses, in order.
    pub fn addresses(&self) -> Vec<Address> {
        self.validators
            .iter()
            .map(|v| v.address.address())
            .collect()
    }
}

impl mc::ValidatorSet<HemiContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> mc::VotingPower {
        self.validators.iter().map(|v| v.power).sum()
    }

    fn get_by_address(&self, address: &ValidatorAddress) -> Option<&Validator> {
        self.validators.iter().find(|v| &v.address == address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// A proposal: this block for this height and round, by its proposer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block.
    pub value: BlockValue,
    /// The proof-of-lock round (nil for a new value).
    pub pol_round: Round,
    /// Who proposes.
    pub proposer: ValidatorAddress,
}

impl mc::Proposal<HemiContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockValue {
        &self.value
    }
    fn take_value(self) -> BlockValue {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &ValidatorAddress {
        &self.proposer
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Prevote or precommit.
    pub typ: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockId>,
    /// Who votes.
    pub validator: ValidatorAddress,
    /// A vote extension (unused).
    pub extension: Option<SignedExtension<HemiContext>>,
}

impl mc::Vote<HemiContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<BlockId> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BlockId> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.typ
    }
    fn validator_address(&self) -> &ValidatorAddress {
        &self.validator
    }
    fn extension(&self) -> Option<&SignedExtension<HemiContext>> {
        self.extension.as_ref()
    }
    fn take_extension(&mut self) -> Option<SignedExtension<HemiContext>> {
        self.extension.take()
    }
    fn extend(self, extension: SignedExtension<HemiContext>) -> Self {
        Vote {
            extension: Some(extension),
            ..self
        }
    }
}

/// A part of a proposal's stream: who proposes what, the block's bytes in chunks, the end.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    /// The first part.
    Init {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The proof-of-lock round.
        pol_round: Round,
        /// Who proposes.
        proposer: ValidatorAddress,
    },
    /// A chunk of the block's encoding ([`hemi_chain::L2Block::encode`]).
    Data(Vec<u8>),
    /// The last part: the hash of the block the chunks make, and the proposer's signature of
    /// the proposal (height, round, that hash, proof-of-lock round, proposer; see
    /// [`crate::signing::proposal_signing_digest`]), so a stream not made by the round's
    /// proposer is dropped before its block is decoded or executed.
    Fin(BlockId, Sig),
}

impl mc::ProposalPart<HemiContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init { .. })
    }
    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin(..))
    }
}

/// hemi-rs's Malachite context: the chain id its votes are signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HemiContext {
    /// The L2 chain id.
    pub chain_id: u64,
}

impl mc::Context for HemiContext {
    type Address = ValidatorAddress;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockValue;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Secp256k1Scheme;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        proposer_of(validator_set, height, round)
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockValue,
        pol_round: Round,
        address: ValidatorAddress,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            typ: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            typ: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }
}

/// Round robin: the proposer of `height`/`round` is validator `(height + round) mod n`.
///
/// # Panics
/// Never for a non-empty set (the set is checked non-empty when made).
pub fn proposer_of(set: &ValidatorSet, height: Height, round: Round) -> &Validator {
    let n = set.validators.len().max(1) as u64;
    let r = u64::from(round.as_u32().unwrap_or(0));
    let i = (height.0.wrapping_add(r) % n) as usize;
    &set.validators[i.min(set.validators.len().saturating_sub(1))]
}
