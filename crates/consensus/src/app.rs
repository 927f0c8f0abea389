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
    proposer_of, BlockId, BlockValue, Height, HemiContext, Proposal, ProposalPart, PubKey, Sig,
    ValidatorAddress, ValidatorSet,
};
use crate::signing::{proposal_signing_digest, HemiSigner, HemiVerifier};

/// Largest chunk of a block in one proposal part.
const PART_SIZE: usize = 1024 * 1024;
/// Largest block a proposal stream may carry.
const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;
/// Most proposal streams being reassembled at once.
const MAX_STREAMS: usize = 64;
/// Most proposal streams being reassembled from one publisher.
const MAX_STREAMS_PER_PEER: usize = 8;
/// How long an unfinished stream is kept.
const STREAM_TTL: Duration = Duration::from_secs(30);
/// Most reassembled proposals for the next height kept until it starts.
const MAX_PENDING: usize = 16;
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
    // A lagging validator syncs decided blocks of any size a proposal may carry.
    consensus.p2p.rpc_max_size = bytesize::ByteSize::mib(80);
    // Peers' heights every 2 s (10 s by default): a validator back from a crash catches up
    // sooner.
    let value_sync = ValueSyncConfig {
        max_response_size: bytesize::ByteSize::mib(80),
        status_update_interval: Duration::from_secs(2),
        ..Default::default()
    };
    let engine_cfg = EngineConfig {
        moniker: cfg.moniker.clone(),
        consensus,
        value_sync,
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
    let store = BlockStore {
        dir: cfg
            .wal
            .parent()
            .map_or_else(|| PathBuf::from("."), |d| d.join("blocks")),
    };
    std::fs::create_dir_all(&store.dir)?;
    let blocks: HashMap<BlockId, L2Block> = store.load(host.head()).into_iter().collect();
    let app = App {
        cfg,
        address,
        host,
        status,
        store,
        blocks,
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
struct Stream {
    started: Instant,
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
    /// `blocks` on disk.
    store: BlockStore,
}

/// The blocks a validator proposed or received and has not committed, one file each next to
/// its write-ahead log: after a crash the log may name a block (our own proposal, a value we
/// locked on) that must still be at hand.
struct BlockStore {
    dir: PathBuf,
}

impl BlockStore {
    fn path(&self, id: &BlockId) -> PathBuf {
        self.dir
            .join(format!("{}.blk", alloy_primitives::hex::encode(id.0)))
    }

    fn save(&self, id: &BlockId, block: &L2Block) {
        let path = self.path(id);
        let tmp = path.with_extension("tmp");
        let r = std::fs::write(&tmp, block.encode()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "a proposed block not kept on disk");
        }
    }

    fn remove(&self, id: &BlockId) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// The kept blocks above `head`; the others are deleted.
    fn load(&self, head: u64) -> Vec<(BlockId, L2Block)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            let kept = std::fs::read(&path)
                .ok()
                .and_then(|b| L2Block::decode(&b).ok())
                .filter(|b| b.header.number > head);
            match kept {
                Some(b) => out.push((BlockId(b.hash().0), b)),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out
    }
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
                    self.stream(&channels, height, round, Round::Nil, id).await;
                }
                AppMsg::RestreamProposal {
                    height,
                    round,
                    valid_round,
                    value_id,
                    ..
                } => {
                    // Asked of this round's proposer (us): re-propose a value locked earlier.
                    if self.blocks.contains_key(&value_id) {
                        self.stream(&channels, height, round, valid_round, value_id)
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
                    let head = self.host.head();
                    let next = if head >= height.0 {
                        // Validators that share one chain may find it already further on.
                        Next::Start(Height(head.max(height.0) + 1), self.params())
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
                        Ok(block)
                            if block.header.number == height.0
                                && hemi_chain::block::transactions_root(&block.txs)
                                    == block.header.transactions_root =>
                        {
                            let id = BlockId(block.hash().0);
                            self.keep(id, block);
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

    /// Drops what belongs to heights below `height`, and streams left unfinished for a while.
    fn prune(&mut self, height: u64) {
        let gone: Vec<BlockId> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.header.number < height)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.blocks.remove(&id);
            self.store.remove(&id);
        }
        self.undecided.retain(|v| v.height.0 >= height);
        self.built.retain(|(h, _), _| *h >= height);
        let stale = Instant::now() - STREAM_TTL;
        self.streams
            .retain(|_, s| s.started > stale && (s.height == 0 || s.height >= height));
        self.pending.retain(|p| p.0 .0 >= height);
    }

    /// Keeps `block` (in memory and on disk, so a restarted validator still has the blocks
    /// its log refers to); an existing entry is never replaced.
    fn keep(&mut self, id: BlockId, block: L2Block) {
        if self.blocks.contains_key(&id) {
            return;
        }
        self.store.save(&id, &block);
        self.blocks.insert(id, block);
    }

    async fn build(&mut self, height: Height) -> Option<BlockId> {
        let host = self.host.clone();
        let beneficiary = self.address.address();
        let h = height.0;
        match tokio::task::spawn_blocking(move || host.propose(h, beneficiary)).await {
            Ok(Ok(block)) => {
                let id = BlockId(block.hash().0);
                tracing::debug!(height = h, txs = block.txs.len(), "proposing");
                self.keep(id, block);
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
        id: BlockId,
    ) {
        let Some(block) = self.blocks.get(&id) else {
            return;
        };
        // The stream is signed by us, the proposer of this round (a re-proposal of a locked
        // value included).
        let proposal = Proposal {
            height,
            round,
            value: BlockValue(id),
            pol_round,
            proposer: self.address,
        };
        let digest = proposal_signing_digest(self.cfg.chain_id, &proposal);
        let Ok(sig) = hemi_chain::certificate::sign_digest(self.cfg.secret, digest) else {
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
            proposer: self.address,
        }];
        parts.extend(
            encoded
                .chunks(PART_SIZE)
                .map(|c| ProposalPart::Data(c.to_vec())),
        );
        parts.push(ProposalPart::Fin(id, Sig(sig.0)));
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

    /// Adds a part to its stream. A complete stream signed by its round's proposer, for this
    /// height or the next, gives the block and (for this height) the verdict on it; anything
    /// else is dropped without a verdict.
    async fn received_part(
        &mut self,
        publisher: Vec<u8>,
        part: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<HemiContext>> {
        let current = self.host.head() + 1;
        let key = (publisher, part.stream_id.to_bytes());
        if !self.streams.contains_key(&key) {
            let mine = self.streams.keys().filter(|(p, _)| *p == key.0).count();
            if mine >= MAX_STREAMS_PER_PEER {
                tracing::debug!("too many proposal streams from one peer; part dropped");
                return None;
            }
            if self.streams.len() >= MAX_STREAMS {
                // Make room: the oldest unfinished stream goes.
                if let Some(oldest) = self
                    .streams
                    .iter()
                    .min_by_key(|(_, s)| s.started)
                    .map(|(k, _)| k.clone())
                {
                    self.streams.remove(&oldest);
                }
            }
        }
        let s = self.streams.entry(key.clone()).or_insert_with(|| Stream {
            started: Instant::now(),
            parts: BTreeMap::new(),
            end: None,
            bytes: 0,
            height: 0,
        });
        match part.content {
            StreamContent::Fin => s.end = Some(part.sequence),
            StreamContent::Data(p) => {
                if let ProposalPart::Data(d) = &p {
                    s.bytes += d.len();
                }
                if let ProposalPart::Init { height, .. } = &p {
                    s.height = height.0;
                    if height.0 < current || height.0 > current + 1 {
                        self.streams.remove(&key);
                        return None;
                    }
                }
                if s.bytes > MAX_STREAM_BYTES
                    || s.parts.len() > MAX_STREAM_BYTES / PART_SIZE + 2
                    || part.sequence > (MAX_STREAM_BYTES / PART_SIZE + 2) as u64
                {
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
                ProposalPart::Fin(id, sig) if fin.is_none() => fin = Some((id, sig)),
                _ => return None,
            }
        }
        let (id, sig) = fin?;
        // Only the round's proposer streams its proposal.
        let expected = proposer_of(&self.cfg.set, height, round).address;
        let proposal = Proposal {
            height,
            round,
            value: BlockValue(id),
            pol_round,
            proposer,
        };
        let digest = proposal_signing_digest(self.cfg.chain_id, &proposal);
        let signer = hemi_chain::certificate::recover_digest(digest, &Seal::from(sig.0)).ok();
        if proposer != expected || signer != Some(expected.address()) {
            tracing::debug!(height = %height, round = %round, "a proposal stream not signed by the round's proposer; dropped");
            return None;
        }
        let block = match L2Block::decode(&bytes) {
            Ok(b)
                if b.hash().0 == id.0
                    && b.header.number == height.0
                    && hemi_chain::block::transactions_root(&b.txs)
                        == b.header.transactions_root =>
            {
                b
            }
            Ok(_) => {
                tracing::warn!(height = %height, "a proposal whose block is not the one it names");
                return None;
            }
            Err(e) => {
                tracing::warn!(height = %height, error = %e, "a proposal whose block does not decode");
                return None;
            }
        };
        self.keep(id, block);
        if height.0 > current {
            if self.pending.len() < MAX_PENDING {
                self.pending.push((height, round, pol_round, proposer, id));
            }
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

    /// Re-executes a proposed block (signed by its round's proposer) and records the verdict.
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
        let deadline = Instant::now() + self.cfg.timeouts.propose;
        let in_set = |a: Address| {
            self.cfg
                .set
                .validators
                .iter()
                .any(|v| v.address.address() == a)
        };
        let validity = loop {
            let Some(block) = block.clone() else {
                break Validity::Invalid;
            };
            // A new block names its proposer as sequencer; a re-proposed locked value keeps
            // the sequencer that built it, one of the set.
            let beneficiary = block.header.beneficiary;
            let named_right = if pol_round.is_nil() {
                beneficiary == proposer.address()
            } else {
                in_set(beneficiary)
            };
            if !named_right {
                tracing::warn!(height = %height, %beneficiary, "a proposal naming a sequencer it may not");
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;

    /// A chain at height 0 that finds every block valid.
    struct Yes;

    impl Host for Yes {
        fn head(&self) -> u64 {
            0
        }
        fn propose(&self, _: u64, _: Address) -> Result<L2Block, String> {
            Err("not in this test".into())
        }
        fn validate(&self, _: &L2Block) -> Verdict {
            Verdict::Valid
        }
        fn commit(&self, _: &L2Block) -> Result<(), String> {
            Ok(())
        }
        fn block(&self, _: u64) -> Option<L2Block> {
            None
        }
    }

    fn app(dir: &std::path::Path) -> (App, Vec<B256>) {
        let secrets: Vec<B256> = (1..=4u8).map(B256::repeat_byte).collect();
        let keys: Vec<PubKey> = secrets
            .iter()
            .map(|s| PubKey::of_secret(*s).expect("key"))
            .collect();
        let set = ValidatorSet::new(&keys).expect("set");
        let me = PubKey::of_secret(secrets[0])
            .expect("key")
            .address()
            .expect("address");
        let cfg = ValidatorConfig {
            chain_id: 7,
            secret: secrets[0],
            set,
            listen: "/ip4/127.0.0.1/tcp/1".parse().expect("multiaddr"),
            peers: vec![],
            wal: dir.join("wal"),
            block_time: Duration::from_millis(100),
            timeouts: lan_timeouts(),
            moniker: "t".into(),
            equivocate: false,
        };
        let app = App {
            cfg,
            address: me.into(),
            host: Arc::new(Yes),
            status: Arc::new(SetStatus::default()),
            blocks: HashMap::new(),
            undecided: Vec::new(),
            streams: HashMap::new(),
            pending: Vec::new(),
            built: HashMap::new(),
            store: BlockStore {
                dir: dir.to_path_buf(),
            },
        };
        (app, secrets)
    }

    /// The parts of a one-chunk proposal stream for height 1, round 0, Fin signed by `signer`.
    fn stream_of(
        proposer: ValidatorAddress,
        signer: B256,
        height: u64,
    ) -> (BlockId, Vec<StreamMessage<ProposalPart>>) {
        let block = L2Block {
            header: Header {
                number: height,
                beneficiary: proposer.address(),
                transactions_root: hemi_chain::block::transactions_root(&[]),
                ..Default::default()
            },
            txs: vec![],
            seal: Seal::ZERO,
            certificate: None,
        };
        let id = BlockId(block.hash().0);
        let (h, r) = (Height(height), Round::new(0));
        let digest = proposal_signing_digest(
            7,
            &Proposal {
                height: h,
                round: r,
                value: BlockValue(id),
                pol_round: Round::Nil,
                proposer,
            },
        );
        let sig = hemi_chain::certificate::sign_digest(signer, digest).expect("sign");
        let sid = StreamId::new(Bytes::from_static(b"stream"));
        let parts = vec![
            ProposalPart::Init {
                height: h,
                round: r,
                pol_round: Round::Nil,
                proposer,
            },
            ProposalPart::Data(block.encode()),
            ProposalPart::Fin(id, Sig(sig.0)),
        ];
        let mut msgs: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| StreamMessage::new(sid.clone(), i as u64, StreamContent::Data(p)))
            .collect();
        msgs.push(StreamMessage::new(sid, 3, StreamContent::Fin));
        (id, msgs)
    }

    #[tokio::test]
    async fn only_streams_signed_by_the_rounds_proposer_get_a_verdict() {
        let dir = std::env::temp_dir().join(format!("hemi-app-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (mut app, secrets) = app(&dir);
        let proposer = proposer_of(&app.cfg.set, Height(1), Round::new(0)).address;
        let secret_of = |a: ValidatorAddress| {
            *secrets
                .iter()
                .find(|s| {
                    PubKey::of_secret(**s).and_then(|k| k.address()).ok() == Some(a.address())
                })
                .expect("one of ours")
        };
        let other = app
            .cfg
            .set
            .validators
            .iter()
            .map(|v| v.address)
            .find(|a| *a != proposer)
            .expect("another");

        // Signed by another validator: no verdict, nothing kept.
        let (_, msgs) = stream_of(proposer, secret_of(other), 1);
        for m in msgs {
            assert!(app.received_part(b"peer".to_vec(), m).await.is_none());
        }
        assert!(app.blocks.is_empty());

        // Out of order, signed by the proposer: a valid proposed value, its block kept on disk.
        let (id, mut msgs) = stream_of(proposer, secret_of(proposer), 1);
        msgs.reverse();
        let mut got = None;
        for m in msgs {
            got = app.received_part(b"peer".to_vec(), m).await.or(got);
        }
        let v = got.expect("a verdict");
        assert_eq!(v.value.0, id);
        assert_eq!(v.validity, Validity::Valid);
        assert_eq!(app.store.load(0).len(), 1);

        // A stream for a far height is dropped at its first part.
        let (_, msgs) = stream_of(proposer, secret_of(proposer), 9);
        for m in msgs {
            assert!(app.received_part(b"peer".to_vec(), m).await.is_none());
        }
        assert_eq!(app.blocks.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
