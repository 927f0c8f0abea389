//! One validator: Malachite's engine (consensus, its libp2p network, value sync, write-ahead
//! log) and the application loop that answers it from a [`Host`] (the node's chain).
//!
//! The proposer builds a block ([`Host::propose`]) and streams it in parts; the others
//! reassemble it, re-execute it ([`Host::validate`]) and vote; a decided block commits with
//! its certificate ([`Host::commit`]). A validator whose Bitcoin view lacks a block's pinned
//! Bitcoin block waits for it (up to the propose timeout) instead of voting the block invalid.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use bytes::Bytes;
use hemi_chain::{Certificate, L2Block, Seal};
use malachitebft_app_channel::app::config::{
    ConsensusConfig, DiscoveryConfig, NodeConfig, ValueSyncConfig,
};
use malachitebft_app_channel::app::net::Multiaddr;
use malachitebft_app_channel::app::streaming::{StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, HeightParams, LinearTimeouts, Round,
    Validity,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{Keypair, LocallyProposedValue, ProposedValue};
use malachitebft_app_channel::{
    AppMsg, ByzantineContext, Channels, ConsensusContext, EngineBuilder, NetworkContext,
    NetworkIdentity, NetworkMsg, RequestContext, SyncContext, WalContext,
};
use malachitebft_engine::host::{Next, SyncedValueOutcome};
use malachitebft_engine::util::streaming::StreamContent;
use malachitebft_engine_byzantine::{ByzantineConfig, ConflictingVoteValueFn, Trigger};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::codec::HemiCodec;
use crate::ctx::{
    proposer_of, BlockId, BlockValue, Height, HemiContext, ProposalPart, PubKey, Sig,
    ValidatorAddress, ValidatorSet,
};
use crate::signing::{HemiSigner, HemiVerifier};

/// Largest chunk of a block in one proposal part.
const PART_SIZE: usize = 1024 * 1024;
/// Largest block a proposal stream may carry.
const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;
/// Most proposal streams being reassembled at once.
const MAX_STREAMS: usize = 64;
/// Most decided blocks served in one sync answer.
const MAX_SYNC_BATCH: u64 = 32;

/// What a validator's re-execution of a proposed block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The block is valid on our head.
    Valid,
    /// The block is invalid, and why.
    Invalid(String),
    /// We cannot tell yet (our Bitcoin view lacks its pinned block).
    NotReady(String),
}

/// The chain a validator orders: what the application loop asks of the node. Calls may block
/// (they execute blocks); the loop runs them on the blocking pool.
pub trait Host: Send + Sync + 'static {
    /// The last committed block number.
    fn head(&self) -> u64;
    /// Builds the block at `height` on the head, with `beneficiary` as its sequencer.
    ///
    /// # Errors
    /// Building failed (why).
    fn propose(&self, height: u64, beneficiary: Address) -> Result<L2Block, String>;
    /// Re-executes a proposed block on the head.
    fn validate(&self, block: &L2Block) -> Verdict;
    /// Commits a decided block, its certificate attached. Committing a block the chain
    /// already has is not an error.
    ///
    /// # Errors
    /// The block does not import (why).
    fn commit(&self, block: &L2Block) -> Result<(), String>;
    /// The committed block `number`, with its certificate.
    fn block(&self, number: u64) -> Option<L2Block>;
}

/// One validator's settings.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// Chain id (signatures are for it).
    pub chain_id: u64,
    /// This validator's secp256k1 secret.
    pub secret: B256,
    /// The set.
    pub set: ValidatorSet,
    /// Where the consensus network listens (`/ip4/127.0.0.1/tcp/PORT`).
    pub listen: Multiaddr,
    /// The other validators' consensus addresses.
    pub peers: Vec<Multiaddr>,
    /// The write-ahead log file.
    pub wal: PathBuf,
    /// Target time between blocks.
    pub block_time: Duration,
    /// Round timeouts.
    pub timeouts: LinearTimeouts,
    /// A name for logs.
    pub moniker: String,
    /// Test-only: this validator equivocates (signs a second, conflicting prevote and
    /// precommit in every round, through Malachite's Byzantine network proxy).
    pub equivocate: bool,
}

/// Timeouts for a set on one machine or a LAN: a round is over in about a second when its
/// proposer is down.
pub fn lan_timeouts() -> LinearTimeouts {
    LinearTimeouts {
        propose: Duration::from_millis(1500),
        propose_delta: Duration::from_millis(250),
        prevote: Duration::from_millis(500),
        prevote_delta: Duration::from_millis(250),
        precommit: Duration::from_millis(500),
        precommit_delta: Duration::from_millis(250),
        rebroadcast: Duration::from_millis(2500),
        max_timeout: Duration::from_secs(30),
    }
}

/// What the set looks like from one validator (`hemi_getSequencerSet`).
#[derive(Debug, Default)]
pub struct SetStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    validators: Vec<Address>,
    me: Vec<Address>,
    height: u64,
    round: i64,
    proposer: Option<Address>,
    last_signed: BTreeMap<Address, u64>,
    evidence: Vec<Value>,
    decided: u64,
}

impl SetStatus {
    /// The status as JSON: validators (with their last signed height), the current height,
    /// round and proposer, and misbehaviour evidence seen.
    pub fn to_json(&self) -> Value {
        let s = self.inner.lock();
        let validators: Vec<Value> = s
            .validators
            .iter()
            .map(|a| {
                json!({
                    "address": a,
                    "votingPower": 1,
                    "lastSignedHeight": s.last_signed.get(a),
                    "local": s.me.contains(a),
                })
            })
            .collect();
        json!({
            "validators": validators,
            "quorum": hemi_chain::certificate::quorum(s.validators.len()),
            "height": s.height,
            "round": s.round,
            "proposer": s.proposer,
            "lastDecided": s.decided,
            "evidence": s.evidence,
        })
    }
}

/// A validator's engine and application loop, running until [`Running::stop`].
pub struct Running {
    /// The application loop.
    pub task: tokio::task::JoinHandle<()>,
    /// The libp2p peer id of its consensus network.
    pub peer_id: String,
    engine: malachitebft_app_channel::EngineHandle,
}

impl Running {
    /// Stops the engine (consensus, network, sync, log) and the application loop, as a crash
    /// would: nothing is flushed beyond what the write-ahead log already holds.
    pub fn stop(self) {
        self.engine
            .actor
            .get_cell()
            .stop_children(Some("stopped".into()));
        self.engine.actor.kill();
        self.engine.handle.abort();
        self.task.abort();
    }
}

#[derive(Debug, Clone)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }
    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

/// Starts one validator's engine and its application loop.
///
/// # Errors
/// The key is not a valid secp256k1 secret, the key is not in the set, or the engine failed
/// to start (its listen address is taken).
pub async fn start(
    cfg: ValidatorConfig,
    host: Arc<dyn Host>,
    status: Arc<SetStatus>,
) -> eyre::Result<Running> {
    if cfg.set.validators.is_empty() {
        eyre::bail!("the validator set is empty");
    }
    let public_key = PubKey::of_secret(cfg.secret).map_err(|e| eyre::eyre!("key: {e}"))?;
    let address: ValidatorAddress = public_key
        .address()
        .map_err(|e| eyre::eyre!("key: {e}"))?
        .into();
    if cfg.set.validators.iter().all(|v| v.address != address) {
        eyre::bail!("{address} is not in the validator set");
    }
    let ctx = HemiContext {
        chain_id: cfg.chain_id,
    };
    let mut consensus = ConsensusConfig::default();
    consensus.p2p.listen_addr = cfg.listen.clone();
    consensus.p2p.persistent_peers = cfg.peers.clone();
    consensus.p2p.discovery = DiscoveryConfig {
        enabled: false,
        ..Default::default()
    };
    let engine_cfg = EngineConfig {
        moniker: cfg.moniker.clone(),
        consensus,
        value_sync: ValueSyncConfig::default(),
    };
    // The network identity is derived from the validator key (a stable peer id).
    let mut seed = alloy_primitives::keccak256(
        [b"hemi-rs consensus p2p".as_slice(), cfg.secret.as_slice()].concat(),
    )
    .0;
    let keypair =
        Keypair::ed25519_from_bytes(&mut seed).map_err(|e| eyre::eyre!("network key: {e}"))?;
    let peer_id = keypair.public().to_peer_id().to_string();
    let identity = NetworkIdentity::new(cfg.moniker.clone(), keypair, Some(address.to_string()));
    let verifier = HemiVerifier {
        chain_id: cfg.chain_id,
    };
    let signer = HemiSigner::new(cfg.chain_id, cfg.secret);
    if let Some(dir) = cfg.wal.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let (channels, engine) = if cfg.equivocate {
        tracing::warn!(validator = %address, "test flag: this validator equivocates in every round");
        let flip: ConflictingVoteValueFn<HemiContext> = Box::new(|id: Option<&BlockId>| {
            let mut b = id.map_or([0xee; 32], |i| i.0);
            b[31] ^= 0xff;
            BlockId(b)
        });
        EngineBuilder::new(ctx, engine_cfg)
            .with_default_wal(WalContext::new(cfg.wal.clone(), HemiCodec))
            .with_byzantine_network(ByzantineContext {
                identity,
                codec: HemiCodec,
                config: ByzantineConfig::default().with_equivocate_votes(Trigger::Always),
                signer: Box::new(signer.clone()),
                address,
                conflicting_value_fn: None,
                conflicting_vote_value_fn: Some(flip),
            })
            .await?
            .with_default_sync(SyncContext::new(HemiCodec))
            .with_default_consensus(ConsensusContext::new_validator(
                address,
                Box::new(verifier),
                Box::new(signer),
            ))
            .with_default_request(RequestContext::new(128))
            .build()
            .await?
    } else {
        malachitebft_app_channel::start_engine(
            ctx,
            engine_cfg,
            WalContext::new(cfg.wal.clone(), HemiCodec),
            NetworkContext::new(identity, HemiCodec),
            ConsensusContext::new_validator(address, Box::new(verifier), Box::new(signer)),
            SyncContext::new(HemiCodec),
            RequestContext::new(128),
        )
        .await?
    };
    {
        let mut s = status.inner.lock();
        s.validators = cfg.set.addresses();
        s.me.push(address.address());
    }
    let app = App {
        cfg,
        address,
        host,
        status,
        blocks: HashMap::new(),
        undecided: Vec::new(),
        streams: HashMap::new(),
        pending: Vec::new(),
        built: HashMap::new(),
    };
    let task = tokio::spawn(async move {
        if let Err(e) = app.run(channels).await {
            tracing::error!(error = %e, "consensus application stopped");
        }
    });
    Ok(Running {
        task,
        peer_id,
        engine,
    })
}

/// A proposal stream being reassembled.
#[derive(Default)]
struct Stream {
    parts: BTreeMap<u64, ProposalPart>,
    end: Option<u64>,
    bytes: usize,
    height: u64,
}

struct App {
    cfg: ValidatorConfig,
    address: ValidatorAddress,
    host: Arc<dyn Host>,
    status: Arc<SetStatus>,
    /// Blocks seen (proposed, received or synced), by hash.
    blocks: HashMap<BlockId, L2Block>,
    /// Proposed values seen, for replay at a round's start.
    undecided: Vec<ProposedValue<HemiContext>>,
    streams: HashMap<(Vec<u8>, Bytes), Stream>,
    /// Reassembled blocks of a later height, waiting for their height to start.
    pending: Vec<(Height, Round, Round, ValidatorAddress, BlockId)>,
    /// What we proposed, by (height, round).
    built: HashMap<(u64, i64), BlockId>,
}

impl App {
    fn params(&self) -> HeightParams<HemiContext> {
        HeightParams::new(
            self.cfg.set.clone(),
            self.cfg.timeouts,
            Some(self.cfg.block_time),
        )
    }

    async fn run(mut self, mut channels: Channels<HemiContext>) -> eyre::Result<()> {
        while let Some(msg) = channels.consensus.recv().await {
            match msg {
                AppMsg::ConsensusReady { reply } => {
                    let start = Height(self.host.head() + 1);
                    tracing::info!(height = %start, validator = %self.address, "consensus ready");
                    let _ = reply.send((start, self.params()));
                }
                AppMsg::StartedRound {
                    height,
                    round,
                    proposer,
                    reply_value,
                    ..
                } => {
                    {
                        let mut s = self.status.inner.lock();
                        s.height = height.0;
                        s.round = round.as_i64();
                        s.proposer = Some(proposer.address());
                    }
                    self.prune(height.0);
                    self.validate_pending(height).await;
                    let seen: Vec<_> = self
                        .undecided
                        .iter()
                        .filter(|v| v.height == height && v.round == round)
                        .cloned()
                        .collect();
                    let _ = reply_value.send(seen);
                }
                AppMsg::GetValue {
                    height,
                    round,
                    reply,
                    ..
                } => {
                    let key = (height.0, round.as_i64());
                    let id = match self.built.get(&key) {
                        Some(id) if self.blocks.contains_key(id) => Some(*id),
                        _ => self.build(height).await,
                    };
                    let Some(id) = id else { continue };
                    self.built.insert(key, id);
                    let _ = reply.send(LocallyProposedValue::new(height, round, BlockValue(id)));
                    let value = ProposedValue {
                        height,
                        round,
                        valid_round: Round::Nil,
                        proposer: self.address,
                        value: BlockValue(id),
                        validity: Validity::Valid,
                    };
                    self.undecided.push(value);
                    self.stream(&channels, height, round, Round::Nil, self.address, id)
                        .await;
                }
                AppMsg::RestreamProposal {
                    height,
                    round,
                    valid_round,
                    address,
                    value_id,
                } => {
                    if self.blocks.contains_key(&value_id) {
                        self.stream(&channels, height, round, valid_round, address, value_id)
                            .await;
                    }
                }
                AppMsg::ReceivedProposalPart {
                    from,
                    published_by,
                    part,
                    reply,
                } => {
                    let publisher = published_by.unwrap_or(from).to_bytes();
                    let value = self.received_part(publisher, part).await;
                    let _ = reply.send(value);
                }
                AppMsg::ExtendVote { reply, .. } => {
                    let _ = reply.send(None);
                }
                AppMsg::VerifyVoteExtensions {
                    extensions, reply, ..
                } => {
                    let _ = reply.send(extensions.iter().map(|(a, _)| (*a, Ok(()))).collect());
                }
                AppMsg::GetHistoryMinHeight { reply } => {
                    let _ = reply.send(Height(1));
                }
                AppMsg::Decided {
                    certificate, reply, ..
                } => {
                    let height = certificate.height.0;
                    let signers: Vec<Address> = certificate
                        .commit_signatures
                        .iter()
                        .map(|s| s.address.address())
                        .collect();
                    let sigs: Vec<Sig> = certificate
                        .commit_signatures
                        .iter()
                        .map(|s| s.signature)
                        .collect();
                    let round = certificate.round.as_u32().unwrap_or(0);
                    match self.blocks.get(&certificate.value_id).cloned() {
                        Some(mut block) => {
                            block.certificate = Some(Certificate {
                                round,
                                signatures: sigs.iter().map(|s| Seal::from(s.0)).collect(),
                            });
                            let host = self.host.clone();
                            let r = tokio::task::spawn_blocking(move || host.commit(&block))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r);
                            match r {
                                Ok(()) => {
                                    let mut s = self.status.inner.lock();
                                    s.decided = s.decided.max(height);
                                    for a in signers {
                                        s.last_signed.insert(a, height);
                                    }
                                }
                                Err(e) => {
                                    tracing::error!(height, error = %e, "the decided block does not commit")
                                }
                            }
                        }
                        None => tracing::error!(
                            height,
                            block = %certificate.value_id,
                            "decided on a block this validator never saw"
                        ),
                    }
                    let _ = reply.send(());
                }
                AppMsg::Finalized {
                    certificate,
                    evidence,
                    reply,
                    ..
                } => {
                    let height = certificate.height;
                    if !evidence.is_empty() {
                        let mut s = self.status.inner.lock();
                        for (address, doubles) in evidence.votes.iter() {
                            for (a, b) in doubles {
                                tracing::warn!(height = %height, validator = %address, "equivocation: two votes in one round");
                                s.evidence.push(json!({
                                    "kind": "duplicateVote",
                                    "validator": address.address(),
                                    "height": a.message.height.0,
                                    "round": a.message.round.as_i64(),
                                    "votes": [a.message.value.as_ref().map(|v| v.to_string()).value_or_default(), b.message.value.as_ref().map(|v| v.to_string()).value_or_default()],
                                }));
                            }
                        }
                        for (address, doubles) in evidence.proposals.iter() {
                            for (a, b) in doubles {
                                tracing::warn!(height = %height, validator = %address, "equivocation: two proposals in one round");
                                s.evidence.push(json!({
                                    "kind": "duplicateProposal",
                                    "validator": address.address(),
                                    "height": a.message.height.0,
                                    "round": a.message.round.as_i64(),
                                    "proposals": [a.message.value.0.to_string(), b.message.value.0.to_string()],
                                }));
                            }
                        }
                        let n = s.evidence.len();
                        if n > 256 {
                            s.evidence.drain(..n - 256);
                        }
                    }
                    let next = if self.host.head() >= height.0 {
                        Next::Start(Height(height.0 + 1), self.params())
                    } else {
                        tracing::warn!(height = %height, "restarting the height: the decided block is not committed");
                        Next::Restart(height, self.params())
                    };
                    let _ = reply.send(next);
                }
                AppMsg::GetDecidedValues { range, reply } => {
                    let (lo, hi) = (range.start().0, range.end().0);
                    let hi = hi.min(lo.saturating_add(MAX_SYNC_BATCH - 1));
                    let mut out = Vec::new();
                    for n in lo..=hi {
                        match self.decided_value(n) {
                            Some(v) => out.push(v),
                            None => break,
                        }
                    }
                    let _ = reply.send(out);
                }
                AppMsg::ProcessSyncedValue {
                    height,
                    round,
                    proposer,
                    value_bytes,
                    reply,
                } => {
                    let outcome = match L2Block::decode(&value_bytes) {
                        Ok(block) if block.header.number == height.0 => {
                            let id = BlockId(block.hash().0);
                            self.blocks.insert(id, block);
                            SyncedValueOutcome::Verdict(ProposedValue {
                                height,
                                round,
                                valid_round: Round::Nil,
                                proposer,
                                value: BlockValue(id),
                                validity: Validity::Valid,
                            })
                        }
                        _ => SyncedValueOutcome::PeerFault,
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
        eyre::bail!("the consensus engine stopped")
    }

    /// Drops what belongs to heights below `height`.
    fn prune(&mut self, height: u64) {
        self.blocks.retain(|_, b| b.header.number >= height);
        self.undecided.retain(|v| v.height.0 >= height);
        self.built.retain(|(h, _), _| *h >= height);
        self.streams
            .retain(|_, s| s.height == 0 || s.height >= height);
        self.pending.retain(|p| p.0 .0 >= height);
    }

    async fn build(&mut self, height: Height) -> Option<BlockId> {
        let host = self.host.clone();
        let beneficiary = self.address.address();
        let h = height.0;
        match tokio::task::spawn_blocking(move || host.propose(h, beneficiary)).await {
            Ok(Ok(block)) => {
                let id = BlockId(block.hash().0);
                tracing::debug!(height = h, txs = block.txs.len(), "proposing");
                self.blocks.insert(id, block);
                Some(id)
            }
            Ok(Err(e)) => {
                tracing::warn!(height = h, error = %e, "could not build a block to propose");
                None
            }
            Err(e) => {
                tracing::error!(height = h, error = %e, "building panicked");
                None
            }
        }
    }

    async fn stream(
        &self,
        channels: &Channels<HemiContext>,
        height: Height,
        round: Round,
        pol_round: Round,
        proposer: ValidatorAddress,
        id: BlockId,
    ) {
        let Some(block) = self.blocks.get(&id) else {
            return;
        };
        let mut bytes = block.clone();
        bytes.certificate = None;
        let encoded = bytes.encode();
        let mut sid = Vec::with_capacity(16);
        sid.extend_from_slice(&height.0.to_be_bytes());
        sid.extend_from_slice(&round.as_i64().to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(sid));
        let mut parts = vec![ProposalPart::Init {
            height,
            round,
            pol_round,
            proposer,
        }];
        parts.extend(
            encoded
                .chunks(PART_SIZE)
                .map(|c| ProposalPart::Data(c.to_vec())),
        );
        parts.push(ProposalPart::Fin(id));
        let n = parts.len() as u64;
        let msgs = parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| StreamMessage::new(stream_id.clone(), i as u64, StreamContent::Data(p)))
            .chain(std::iter::once(StreamMessage::new(
                stream_id.clone(),
                n,
                StreamContent::Fin,
            )));
        for m in msgs {
            if channels
                .network
                .send(NetworkMsg::PublishProposalPart(m))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Adds a part to its stream; a completed stream gives the block and, for our height, the
    /// verdict on it.
    async fn received_part(
        &mut self,
        publisher: Vec<u8>,
        part: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<HemiContext>> {
        let key = (publisher, part.stream_id.to_bytes());
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            tracing::debug!("too many proposal streams at once; part dropped");
            return None;
        }
        let s = self.streams.entry(key.clone()).or_default();
        match part.content {
            StreamContent::Fin => s.end = Some(part.sequence),
            StreamContent::Data(p) => {
                if let ProposalPart::Data(d) = &p {
                    s.bytes += d.len();
                }
                if let ProposalPart::Init { height, .. } = &p {
                    s.height = height.0;
                }
                if s.bytes > MAX_STREAM_BYTES || s.parts.len() > MAX_STREAM_BYTES / PART_SIZE + 2 {
                    tracing::debug!("a proposal stream over its size limit; dropped");
                    self.streams.remove(&key);
                    return None;
                }
                s.parts.insert(part.sequence, p);
            }
        }
        let complete = s.end.is_some_and(|e| {
            e > 0 && s.parts.len() as u64 == e && s.parts.keys().next_back() == Some(&(e - 1))
        });
        if !complete {
            return None;
        }
        let s = self.streams.remove(&key)?;
        let mut parts = s.parts.into_values();
        let Some(ProposalPart::Init {
            height,
            round,
            pol_round,
            proposer,
        }) = parts.next()
        else {
            return None;
        };
        let mut bytes = Vec::new();
        let mut fin = None;
        for p in parts {
            match p {
                ProposalPart::Data(d) if fin.is_none() => bytes.extend_from_slice(&d),
                ProposalPart::Fin(id) if fin.is_none() => fin = Some(id),
                _ => return None,
            }
        }
        let id = fin?;
        let block = match L2Block::decode(&bytes) {
            Ok(b) if b.hash().0 == id.0 && b.header.number == height.0 => b,
            Ok(_) => {
                tracing::warn!(height = %height, "a proposal whose block is not the one it names");
                return None;
            }
            Err(e) => {
                tracing::warn!(height = %height, error = %e, "a proposal whose block does not decode");
                return None;
            }
        };
        self.blocks.insert(id, block);
        let current = self.host.head() + 1;
        if height.0 > current {
            self.pending.push((height, round, pol_round, proposer, id));
            return None;
        }
        if height.0 < current {
            return None;
        }
        Some(self.verdict(height, round, pol_round, proposer, id).await)
    }

    /// Validates the reassembled blocks of `height` that arrived early.
    async fn validate_pending(&mut self, height: Height) {
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|p| p.0 == height)
            .cloned()
            .collect();
        self.pending.retain(|p| p.0 != height);
        for (h, round, pol, proposer, id) in due {
            if self
                .undecided
                .iter()
                .any(|v| v.value.0 == id && v.round == round)
            {
                continue;
            }
            self.verdict(h, round, pol, proposer, id).await;
        }
    }

    async fn verdict(
        &mut self,
        height: Height,
        round: Round,
        pol_round: Round,
        proposer: ValidatorAddress,
        id: BlockId,
    ) -> ProposedValue<HemiContext> {
        let block = self.blocks.get(&id).cloned();
        let host = self.host.clone();
        let expected = proposer_of(&self.cfg.set, height, round).address;
        let deadline = Instant::now() + self.cfg.timeouts.propose;
        let validity = loop {
            let Some(block) = block.clone() else {
                break Validity::Invalid;
            };
            if proposer != expected && pol_round.is_nil() {
                tracing::warn!(height = %height, %proposer, %expected, "a proposal by a validator whose turn it is not");
                break Validity::Invalid;
            }
            if block.header.beneficiary != proposer.address() {
                tracing::warn!(height = %height, "a proposal naming another sequencer than its proposer");
                break Validity::Invalid;
            }
            let h = host.clone();
            let v = tokio::task::spawn_blocking(move || h.validate(&block))
                .await
                .unwrap_or_else(|e| Verdict::Invalid(e.to_string()));
            match v {
                Verdict::Valid => break Validity::Valid,
                Verdict::Invalid(why) => {
                    tracing::warn!(height = %height, %why, "voting against an invalid block");
                    break Validity::Invalid;
                }
                Verdict::NotReady(why) if Instant::now() < deadline => {
                    tracing::debug!(height = %height, %why, "waiting for Bitcoin before voting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Verdict::NotReady(why) => {
                    tracing::warn!(height = %height, %why, "Bitcoin still lacks the block's pin; not voting for it this round");
                    break Validity::Invalid;
                }
            }
        };
        let value = ProposedValue {
            height,
            round,
            valid_round: pol_round,
            proposer,
            value: BlockValue(id),
            validity,
        };
        self.undecided.push(value.clone());
        value
    }

    fn decided_value(&self, number: u64) -> Option<RawDecidedValue<HemiContext>> {
        let mut block = self.host.block(number)?;
        let cert = block.certificate.take()?;
        let hash = block.hash();
        let signers = cert.signers(self.cfg.chain_id, number, hash).ok()?;
        let signatures = signers
            .into_iter()
            .zip(&cert.signatures)
            .map(|(a, s)| ExtendedCommitSignature::new(a.into(), Sig(s.0), None))
            .collect();
        let certificate = ExtendedCommitCertificate {
            height: Height(number),
            round: Round::new(cert.round),
            value_id: BlockId(hash.0),
            commit_signatures: signatures,
        };
        Some(RawDecidedValue::new(
            Bytes::from(block.encode()),
            certificate,
        ))
    }
}
