//! The L2's p2p network on rust-libp2p: sealed blocks and transactions gossiped, missed blocks
//! fetched by request-response, peers that send invalid data dropped.
//!
//! # Wire
//!
//! - Transport: TCP, Noise XX (ed25519 peer identities), yamux.
//! - Gossipsub (strict signing: every message names its publishing peer), two topics per chain:
//!   `/hemi/<chain id>/blocks/1` carries a sealed block as `debug_getRawBlock` serves it
//!   (`rlp([header, [tx, …], seal])`), `/hemi/<chain id>/txs/1` one EIP-2718 transaction. The
//!   message id is the SHA-256 of the data, so the same block or transaction from two
//!   publishers is one message. Nothing is forwarded before the application ([`NetApp`]) has
//!   accepted it; a rejected message costs its sender gossipsub score and a strike here.
//! - Request-response `/hemi/<chain id>/sync/1` (CBOR, [`Request`] / [`Response`]): a peer's
//!   head, a block by number or hash, and its status (the parameters a follower needs).
//!
//! The application's checks and answers run on tokio's blocking pool, at most
//! [`MAX_APP_TASKS`] at once (more requests are answered `busy`), so a flood of messages never
//! stalls the swarm.
//!
//! Every peer has its own rate limits ([`RateLimits`]: token buckets for requests served,
//! gossiped blocks and gossiped transactions judged). A gossiped transaction over its peer's
//! limit, or arriving while the application is busy, waits in that peer's backlog
//! ([`RateLimits::backlog`]) and is judged in order once allowed: gossipsub remembers a
//! message's id once it has seen it, so a transaction dropped here would never be taken from
//! another peer either. What does not fit the backlog, or waits longer than [`BACKLOG_AGE`],
//! and a block that cannot be judged now, are dropped (ignored, not forwarded; a follower
//! fetches a missed block by request); a request over the limit is answered `rate limited`. A
//! burst's worth of drops in a row (none let through between) is a strike.
//!
//! A peer with [`MAX_STRIKES`] strikes (rejected gossip, a block that did not decode or
//! verify, see [`Network::penalize`], or floods over its limits) is disconnected and blocked
//! for the life of the process.
//! This crate moves bytes and keeps peers; what a valid block is, is the application's.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, connection_limits, identify, identity, ping, StreamProtocol};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use libp2p::{Multiaddr, PeerId};

/// Strikes after which a peer is dropped and blocked.
pub const MAX_STRIKES: u32 = 3;

/// Largest gossip message (a block of a 2e9-gas devnet holds ~2 MB of transfers).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Largest request-response answer.
pub const MAX_RESPONSE: u64 = 32 << 20;

/// How long a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the network asks the node it serves.
pub trait NetApp: Send + Sync + 'static {
    /// Judges a gossiped block (raw bytes). Accepted blocks are forwarded to other peers and
    /// handed to [`Network::subscribe_blocks`].
    fn check_block(&self, from: &PeerId, bytes: &[u8]) -> Verdict;
    /// Judges (and, on a sequencer, takes) a gossiped transaction (EIP-2718 bytes).
    fn check_tx(&self, from: &PeerId, bytes: &[u8]) -> Verdict;
    /// Answers a peer's request.
    fn serve(&self, request: &Request) -> Response;
}

/// What the application makes of a gossiped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward.
    Accept,
    /// Not forwarded, no penalty (a duplicate, too old, not ready).
    Ignore,
    /// Invalid: not forwarded, the sender is penalised; the reason is logged.
    Reject(String),
}

/// A request-response request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The peer's head.
    Head,
    /// A block by number (of the peer's canonical chain).
    BlockByNumber(u64),
    /// A block by hash.
    BlockByHash(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The peer's status (JSON: what `hemi_nodeStatus` reports).
    Status,
}

/// A request-response answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The peer's head: number and hash.
    Head {
        /// Block number.
        number: u64,
        /// Block hash (32 bytes).
        #[serde(with = "serde_bytes")]
        hash: Vec<u8>,
    },
    /// A raw sealed block.
    Block(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The peer's status, JSON text.
    Status(String),
    /// The peer does not have it.
    NotFound,
    /// The peer could not answer.
    Error(String),
}

/// Errors of the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Starting the swarm failed (bad listen address, transport).
    #[error("p2p: {0}")]
    Start(String),
    /// No connected peer to ask or publish to.
    #[error("no p2p peers connected")]
    NoPeers,
    /// A request failed (timeout, connection closed, the peer does not speak the protocol).
    #[error("p2p request to {peer}: {why}")]
    Request {
        /// Who was asked.
        peer: PeerId,
        /// What went wrong.
        why: String,
    },
    /// Publishing failed.
    #[error("p2p publish: {0}")]
    Publish(String),
    /// The network task has stopped.
    #[error("p2p network stopped")]
    Stopped,
    /// The node key file could not be read or written.
    #[error("p2p key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// Configuration of a [`Network`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The chain id: topics and protocol names carry it, so chains never mix.
    pub chain_id: u64,
    /// Where to listen (`--p2p-addr`).
    pub listen: SocketAddr,
    /// Peers to dial at start and redial while disconnected (`--bootnode`).
    pub bootnodes: Vec<Multiaddr>,
    /// What each peer may send.
    pub limits: RateLimits,
}

/// A token bucket's parameters: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Steady rate.
    pub per_second: f64,
    /// Most at once (the bucket's size).
    pub burst: f64,
}

/// Per-peer limits (each peer has its own buckets; they go when it disconnects).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Sync requests it may make (each one a database read). The default lets a follower
    /// that was down fetch 2,000 blocks at once, then 500 a second.
    pub requests: Rate,
    /// Gossiped blocks it may forward (a few per height at the fastest block time).
    pub blocks: Rate,
    /// Gossiped transactions it may forward (above the sequencer's measured throughput).
    pub txs: Rate,
    /// Gossiped transactions of one peer held while over its limit or while the application
    /// is busy, judged in order once allowed; more are dropped.
    pub backlog: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests: Rate {
                per_second: 500.0,
                burst: 2_000.0,
            },
            blocks: Rate {
                per_second: 50.0,
                burst: 200.0,
            },
            txs: Rate {
                per_second: 20_000.0,
                burst: 40_000.0,
            },
            backlog: 4_096,
        }
    }
}

/// What a peer's bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Blocks,
    Txs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Requests => "sync requests",
            Kind::Blocks => "gossiped blocks",
            Kind::Txs => "gossiped transactions",
        }
    }
}

/// One peer's token bucket for one [`Kind`].
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    /// Dropped in a row (since the last strike or the last one let through): a peer that backs
    /// off between bursts is never struck, one that floods is.
    over: u64,
}

impl Bucket {
    fn new(rate: Rate, now: std::time::Instant) -> Self {
        Bucket {
            tokens: rate.burst,
            at: now,
            over: 0,
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self, rate: Rate, now: std::time::Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_second).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            // Back within its limit: earlier drops no longer count toward a strike.
            self.over = 0;
            true
        } else {
            false
        }
    }
}

/// A connected peer as [`Network::peers`] reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer id.
    pub peer_id: String,
    /// The address we are connected on.
    pub address: String,
    /// The head it last reported.
    pub head: Option<u64>,
    /// Strikes so far.
    pub strikes: u32,
    /// Requests and gossip of it dropped over its rate limits.
    pub rate_limited: u64,
}

/// A block accepted from gossip.
#[derive(Debug, Clone)]
pub struct GossipBlock {
    /// The peer that forwarded it.
    pub from: PeerId,
    /// Its raw bytes.
    pub bytes: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Peers {
    connected: HashMap<PeerId, (Multiaddr, Option<u64>)>,
    strikes: HashMap<PeerId, u32>,
    rate_limited: HashMap<PeerId, u64>,
    banned: Vec<(PeerId, String)>,
    listening: Vec<Multiaddr>,
}

enum Command {
    Publish(
        Topic,
        Vec<u8>,
        Option<oneshot::Sender<Result<(), NetError>>>,
    ),
    Request(PeerId, Request, oneshot::Sender<Result<Response, NetError>>),
    Penalize(PeerId, String),
}

#[derive(Debug, Clone, Copy)]
enum Topic {
    Blocks,
    Txs,
}

/// A running p2p network; cheap to share (`Arc`). Dropping every handle stops it.
pub struct Network {
    peer_id: PeerId,
    bootnode_ids: Vec<PeerId>,
    commands: mpsc::Sender<Command>,
    peers: Arc<Mutex<Peers>>,
    blocks: broadcast::Sender<GossipBlock>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    gossip: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<Request, Response>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// Loads the node's p2p identity from `path` (protobuf-encoded ed25519 keypair, as libp2p
/// writes it), creating it on first use; `None`: a new identity for this run.
///
/// # Errors
/// [`NetError::Key`] when the file cannot be read, parsed or written.
pub fn load_or_create_key(path: Option<&Path>) -> Result<identity::Keypair, NetError> {
    let Some(path) = path else {
        return Ok(identity::Keypair::generate_ed25519());
    };
    let err = |why: String| NetError::Key {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            // Written aside and renamed: a crash never leaves half a key.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn topic(chain_id: u64, which: Topic) -> IdentTopic {
    match which {
        Topic::Blocks => IdentTopic::new(format!("/hemi/{chain_id}/blocks/1")),
        Topic::Txs => IdentTopic::new(format!("/hemi/{chain_id}/txs/1")),
    }
}

/// `/ip4/HOST/tcp/PORT` (or ip6) of a socket address.
pub fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    let mut m = Multiaddr::empty();
    m.push(match addr.ip() {
        std::net::IpAddr::V4(ip) => libp2p::multiaddr::Protocol::Ip4(ip),
        std::net::IpAddr::V6(ip) => libp2p::multiaddr::Protocol::Ip6(ip),
    });
    m.push(libp2p::multiaddr::Protocol::Tcp(addr.port()));
    m
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

impl Network {
    /// Starts the network: listens on `config.listen`, dials the bootnodes and serves `app`.
    /// Returns once listening.
    ///
    /// # Errors
    /// [`NetError::Start`] when the swarm cannot be built or the address cannot be bound.
    pub async fn start(
        config: NetConfig,
        key: identity::Keypair,
        app: Arc<dyn NetApp>,
    ) -> Result<Arc<Network>, NetError> {
        let start = |e: String| NetError::Start(e);
        let chain_id = config.chain_id;
        let sync_protocol = StreamProtocol::try_from_owned(format!("/hemi/{chain_id}/sync/1"))
            .map_err(|e| start(e.to_string()))?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| start(e.to_string()))?
            .with_behaviour(|key| {
                let gossip_config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .validate_messages()
                    .max_transmit_size(MAX_MESSAGE)
                    .heartbeat_interval(Duration::from_millis(500))
                    // Unjudged messages stay forwardable for 10 heartbeats (5 s), longer than
                    // a transaction may wait in a backlog.
                    .history_length(10)
                    .message_id_fn(|m: &gossipsub::Message| {
                        use sha2::Digest;
                        gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                    })
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut gossip = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                let mut score = gossipsub::PeerScoreParams::default();
                for which in [Topic::Blocks, Topic::Txs] {
                    score.topics.insert(
                        topic(chain_id, which).hash(),
                        gossipsub::TopicScoreParams {
                            // P4 is the square of the count: -10, -40, -90 — the third
                            // invalid message still reaches us (graylisting starts at -80), so
                            // the peer gets its third strike and is blocked.
                            invalid_message_deliveries_weight: -10.0,
                            invalid_message_deliveries_decay: 0.9,
                            ..Default::default()
                        },
                    );
                }
                gossip.with_peer_score(score, gossipsub::PeerScoreThresholds::default())?;
                let codec = request_response::cbor::codec::Codec::<Request, Response>::default()
                    .set_request_size_maximum(64 << 10)
                    .set_response_size_maximum(MAX_RESPONSE);
                let sync = request_response::Behaviour::with_codec(
                    codec,
                    [(sync_protocol.clone(), ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
                );
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                    blocked: Default::default(),
                    limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_established(Some(128))
                            .with_max_established_per_peer(Some(2)),
                    ),
                    gossip,
                    sync,
                    identify: identify::Behaviour::new(identify::Config::new(
                        format!("/hemi/{chain_id}/1"),
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
                })
            })
            .map_err(|e| start(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        for which in [Topic::Blocks, Topic::Txs] {
            swarm
                .behaviour_mut()
                .gossip
                .subscribe(&topic(chain_id, which))
                .map_err(|e| start(e.to_string()))?;
        }
        swarm
            .listen_on(tcp_multiaddr(config.listen))
            .map_err(|e| start(format!("listening on {}: {e}", config.listen)))?;
        let peers = Arc::new(Mutex::new(Peers::default()));
        // The first listen address, so callers can print it.
        loop {
            match swarm.next().await {
                Some(SwarmEvent::NewListenAddr { address, .. }) => {
                    peers.lock().listening.push(address);
                    break;
                }
                Some(SwarmEvent::ListenerError { error, .. })
                | Some(SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                }) => return Err(start(format!("listening on {}: {error}", config.listen))),
                Some(_) => {}
                None => return Err(start("swarm ended".into())),
            }
        }
        let (commands, rx) = mpsc::channel(4096);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (blocks, _) = broadcast::channel(256);
        let bootnode_ids: Vec<PeerId> = config.bootnodes.iter().filter_map(peer_of).collect();
        let net = Arc::new(Network {
            bootnode_ids: bootnode_ids.clone(),
            peer_id: *swarm.local_peer_id(),
            commands,
            peers: peers.clone(),
            blocks: blocks.clone(),
        });
        let driver = Driver {
            swarm,
            app,
            chain_id,
            bootnodes: config.bootnodes,
            bootnode_ids,
            peers,
            blocks,
            pending: HashMap::new(),
            dialing: HashSet::new(),
            done_tx,
            tasks: Arc::new(tokio::sync::Semaphore::new(MAX_APP_TASKS)),
            limits: config.limits,
            buckets: HashMap::new(),
            backlog: HashMap::new(),
            backlog_bytes: 0,
        };
        tokio::spawn(driver.run(rx, done_rx));
        Ok(net)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Where this node listens, each with `/p2p/<peer id>` (what another node passes as
    /// `--bootnode`).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let me = self.peer_id;
        self.peers
            .lock()
            .listening
            .iter()
            .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(me)))
            .collect()
    }

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let p = self.peers.lock();
        let mut v: Vec<PeerInfo> = p
            .connected
            .iter()
            .map(|(id, (addr, head))| PeerInfo {
                peer_id: id.to_string(),
                address: addr.to_string(),
                head: *head,
                strikes: p.strikes.get(id).copied().unwrap_or(0),
                rate_limited: p.rate_limited.get(id).copied().unwrap_or(0),
            })
            .collect();
        v.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        v
    }

    /// Peers dropped for bad data, with the last reason.
    pub fn banned(&self) -> Vec<(PeerId, String)> {
        self.peers.lock().banned.clone()
    }

    /// Connected peers with the head each last reported, highest first.
    pub fn peer_heads(&self) -> Vec<(PeerId, Option<u64>)> {
        let mut v: Vec<(PeerId, Option<u64>)> = self
            .peers
            .lock()
            .connected
            .iter()
            .map(|(id, (_, h))| (*id, *h))
            .collect();
        v.sort_by_key(|(_, h)| std::cmp::Reverse(*h));
        v
    }

    /// Blocks accepted from gossip, as they arrive.
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<GossipBlock> {
        self.blocks.subscribe()
    }

    /// Gossips a sealed block this node made or imported (raw bytes). A block no peer hears
    /// now is fetched later by request.
    pub fn publish_block(&self, bytes: Vec<u8>) {
        let _ = self
            .commands
            .try_send(Command::Publish(Topic::Blocks, bytes, None));
    }

    /// Gossips a transaction (EIP-2718 bytes).
    ///
    /// # Errors
    /// [`NetError::NoPeers`] when no peer is subscribed, [`NetError::Publish`] otherwise.
    pub async fn publish_tx(&self, bytes: Vec<u8>) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(Topic::Txs, bytes, Some(tx)))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Gossips a transaction without waiting (for callers that cannot await).
    ///
    /// # Errors
    /// [`NetError::NoPeers`] when no peer is connected, [`NetError::Stopped`] when the queue is
    /// full or the network stopped.
    pub fn publish_tx_now(&self, bytes: Vec<u8>) -> Result<(), NetError> {
        if self.peers.lock().connected.is_empty() {
            return Err(NetError::NoPeers);
        }
        self.commands
            .try_send(Command::Publish(Topic::Txs, bytes, None))
            .map_err(|_| NetError::Stopped)
    }

    /// Asks `peer`.
    ///
    /// # Errors
    /// [`NetError::Request`] (timeout, closed, refused), [`NetError::Stopped`].
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request(peer, request, tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// The peers the `--bootnode` addresses name (their `/p2p/` ids).
    pub fn bootnode_peers(&self) -> &[PeerId] {
        &self.bootnode_ids
    }

    /// Notes that `peer` lacks block `number`: its head counts as below it until it reports
    /// again (a peer that unwound, or that claims more than it has).
    pub fn lower_head(&self, peer: PeerId, number: u64) {
        if let Some(e) = self.peers.lock().connected.get_mut(&peer) {
            e.1 = Some(e.1.unwrap_or(0).min(number.saturating_sub(1)));
        }
    }

    /// Gives `peer` a strike for bad data (a block that did not decode, verify or execute);
    /// at [`MAX_STRIKES`] it is disconnected and blocked.
    pub fn penalize(&self, peer: PeerId, why: impl Into<String>) {
        let _ = self.commands.try_send(Command::Penalize(peer, why.into()));
    }

    /// Waits until at least one peer is connected, at most `timeout`.
    ///
    /// # Errors
    /// [`NetError::NoPeers`] after `timeout`.
    pub async fn wait_for_peer(&self, timeout: Duration) -> Result<PeerId, NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(p) = self.peers.lock().connected.keys().next() {
                return Ok(*p);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::NoPeers);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Driver {
    swarm: libp2p::Swarm<Behaviour>,
    app: Arc<dyn NetApp>,
    chain_id: u64,
    bootnodes: Vec<Multiaddr>,
    /// Peers the operator named: struck but never blocked.
    bootnode_ids: Vec<PeerId>,
    peers: Arc<Mutex<Peers>>,
    blocks: broadcast::Sender<GossipBlock>,
    pending: HashMap<request_response::OutboundRequestId, Pending>,
    dialing: HashSet<Multiaddr>,
    done_tx: mpsc::UnboundedSender<Done>,
    tasks: Arc<tokio::sync::Semaphore>,
    limits: RateLimits,
    buckets: HashMap<(PeerId, Kind), Bucket>,
    /// Gossiped transactions waiting to be judged, per forwarding peer.
    backlog: HashMap<PeerId, Backlog>,
    /// Bytes in all backlogs.
    backlog_bytes: usize,
}

/// Work the application finished off the swarm task.
enum Done {
    /// A gossiped message judged.
    Judged {
        message_id: gossipsub::MessageId,
        source: PeerId,
        block: bool,
        data: Vec<u8>,
        verdict: Verdict,
    },
    /// A request answered.
    Answered(request_response::ResponseChannel<Response>, Response),
}

/// Application calls (block and transaction checks, answers read from the database) running
/// at once, off the swarm task; more gossip waits in its peer's backlog, more requests are
/// answered `busy`.
const MAX_APP_TASKS: usize = 64;

/// How long gossip may wait in a backlog before it is dropped: within the 5 s gossipsub keeps
/// an unjudged message to forward.
pub const BACKLOG_AGE: Duration = Duration::from_secs(4);

/// Judging tasks a backlog never takes, kept for blocks and requests (a flood of transactions
/// must not keep a follower from its blocks).
const RESERVED_TASKS: usize = 8;

/// The largest gossiped transaction a backlog holds (the pool's own limit is 128 KiB).
const BACKLOG_MAX_TX: usize = 128 << 10;

/// Bytes all backlogs hold at most together.
const BACKLOG_BYTES: usize = 64 << 20;

/// One peer's waiting transactions, oldest first.
#[derive(Default)]
struct Backlog {
    items: std::collections::VecDeque<Deferred>,
    bytes: usize,
}

/// A gossiped message waiting in its peer's backlog.
struct Deferred {
    message_id: gossipsub::MessageId,
    block: bool,
    data: Vec<u8>,
    since: std::time::Instant,
}

/// Why a gossiped message could not be judged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Its peer is over its limit.
    Limit,
    /// The application is busy.
    Busy,
}

enum Pending {
    /// A caller's request.
    Caller(oneshot::Sender<Result<Response, NetError>>),
    /// Our periodic head poll.
    Head(PeerId),
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        self.dial_bootnodes();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                ev = self.swarm.next() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every handle dropped: stop.
                    None => return,
                },
                Some(d) = done.recv() => self.on_done(d),
                _ = tick.tick() => {
                    ticks += 1;
                    self.expire_backlog();
                    self.drain_backlog();
                    self.poll_heads();
                    if ticks.is_multiple_of(5) {
                        self.dial_bootnodes();
                    }
                }
            }
        }
    }

    fn dial_bootnodes(&mut self) {
        let connected: HashSet<PeerId> = self.peers.lock().connected.keys().copied().collect();
        for addr in self.bootnodes.clone() {
            if peer_of(&addr).is_some_and(|p| connected.contains(&p))
                || self.dialing.contains(&addr)
            {
                continue;
            }
            if peer_of(&addr).is_none() && !connected.is_empty() {
                continue;
            }
            match self.swarm.dial(addr.clone()) {
                Ok(()) => {
                    self.dialing.insert(addr);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "dialing bootnode"),
            }
        }
    }

    fn poll_heads(&mut self) {
        let peers: Vec<PeerId> = self.peers.lock().connected.keys().copied().collect();
        for peer in peers {
            let id = self
                .swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Request::Head);
            self.pending.insert(id, Pending::Head(peer));
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(which, data, reply) => {
                let t = topic(self.chain_id, which);
                let r = match self.swarm.behaviour_mut().gossip.publish(t, data) {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        Err(NetError::NoPeers)
                    }
                    Err(e) => Err(NetError::Publish(e.to_string())),
                };
                if let Err(e) = &r {
                    tracing::debug!(error = %e, "gossip publish");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Request(peer, request, reply) => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, Pending::Caller(reply));
            }
            Command::Penalize(peer, why) => self.strike(peer, why),
        }
    }

    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::Requests => self.limits.requests,
            Kind::Blocks => self.limits.blocks,
            Kind::Txs => self.limits.txs,
        }
    }

    /// Takes one of `peer`'s tokens for `kind`, if it has one.
    fn take_token(&mut self, peer: PeerId, kind: Kind) -> bool {
        let rate = self.rate(kind);
        let now = std::time::Instant::now();
        self.buckets
            .entry((peer, kind))
            .or_insert_with(|| Bucket::new(rate, now))
            .take(rate, now)
    }

    /// Whether `peer` is within its limit for `kind` (taking a token); over it, the drop is
    /// counted (see [`Driver::dropped`]).
    fn within_limit(&mut self, peer: PeerId, kind: Kind) -> bool {
        if self.take_token(peer, kind) {
            return true;
        }
        self.dropped(peer, kind);
        false
    }

    /// Counts a drop of `peer`'s over its limit for `kind`; each burst's worth of drops in a
    /// row is a strike.
    fn dropped(&mut self, peer: PeerId, kind: Kind) {
        let rate = self.rate(kind);
        let now = std::time::Instant::now();
        let bucket = self
            .buckets
            .entry((peer, kind))
            .or_insert_with(|| Bucket::new(rate, now));
        bucket.over += 1;
        let strike = bucket.over as f64 >= rate.burst.max(1.0);
        if strike {
            bucket.over = 0;
        }
        *self.peers.lock().rate_limited.entry(peer).or_insert(0) += 1;
        if strike {
            self.strike(
                peer,
                format!(
                    "{} over its limit of {}/s (burst {}) by a whole burst",
                    kind.name(),
                    rate.per_second,
                    rate.burst
                ),
            );
        }
    }

    /// Starts judging a gossiped message if its peer is within its limit and the application
    /// has room; gives it back otherwise.
    fn try_judge(&mut self, source: PeerId, item: Deferred) -> Result<(), (Wait, Deferred)> {
        let kind = if item.block { Kind::Blocks } else { Kind::Txs };
        // The permit first, so a busy application does not use up the peer's tokens; a
        // transaction leaves the last few to blocks and requests.
        if !item.block && self.tasks.available_permits() <= RESERVED_TASKS {
            return Err((Wait::Busy, item));
        }
        let Ok(permit) = self.tasks.clone().try_acquire_owned() else {
            return Err((Wait::Busy, item));
        };
        if !self.take_token(source, kind) {
            return Err((Wait::Limit, item));
        }
        let (app, done) = (self.app.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let verdict = if item.block {
                app.check_block(&source, &item.data)
            } else {
                app.check_tx(&source, &item.data)
            };
            drop(permit);
            let _ = done.send(Done::Judged {
                message_id: item.message_id,
                source,
                block: item.block,
                data: item.data,
                verdict,
            });
        });
        Ok(())
    }

    /// A gossiped message: judged now if allowed. Otherwise a transaction waits in its peer's
    /// backlog behind the ones already there; a block, or a transaction that does not fit, is
    /// dropped (ignored, and counted if over the peer's limit). Blocks are not held (they can
    /// be large, and a follower fetches a missed one by request) and never wait behind
    /// transactions.
    fn on_gossip(&mut self, source: PeerId, item: Deferred) {
        let ahead = if item.block {
            self.try_judge(source, item)
        } else {
            match self.drain_peer(source, usize::MAX) {
                // Transactions still ahead of it: it waits its turn.
                Some(why) => Err((why, item)),
                None => self.try_judge(source, item),
            }
        };
        let Err((why, item)) = ahead else {
            return;
        };
        let size = item.data.len();
        if !item.block
            && size <= BACKLOG_MAX_TX
            && self.backlog_bytes + size <= BACKLOG_BYTES
            && self
                .backlog
                .get(&source)
                .is_none_or(|q| q.items.len() < self.limits.backlog)
        {
            let queue = self.backlog.entry(source).or_default();
            queue.items.push_back(item);
            queue.bytes += size;
            self.backlog_bytes += size;
            return;
        }
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&item.message_id, &source, MessageAcceptance::Ignore);
        if why == Wait::Limit {
            let kind = if item.block { Kind::Blocks } else { Kind::Txs };
            self.dropped(source, kind);
        }
    }

    /// Takes the oldest of `peer`'s waiting transactions.
    fn pop_backlog(&mut self, peer: PeerId) -> Option<Deferred> {
        let queue = self.backlog.get_mut(&peer)?;
        let item = queue.items.pop_front()?;
        queue.bytes -= item.data.len();
        self.backlog_bytes -= item.data.len();
        Some(item)
    }

    /// Puts back a transaction [`Driver::pop_backlog`] took.
    fn unpop_backlog(&mut self, peer: PeerId, item: Deferred) {
        let size = item.data.len();
        let queue = self.backlog.entry(peer).or_default();
        queue.items.push_front(item);
        queue.bytes += size;
        self.backlog_bytes += size;
    }

    /// Judges up to `most` of `peer`'s waiting transactions that may be judged now, oldest
    /// first; why the rest waits, if some does (`Busy` also when `most` were started and more
    /// are left: they wait their turn after the other peers').
    fn drain_peer(&mut self, peer: PeerId, most: usize) -> Option<Wait> {
        let mut started = 0;
        while started < most {
            let Some(item) = self.pop_backlog(peer) else {
                self.backlog.remove(&peer);
                return None;
            };
            if let Err((why, item)) = self.try_judge(peer, item) {
                self.unpop_backlog(peer, item);
                return Some(why);
            }
            started += 1;
        }
        self.backlog
            .get(&peer)
            .is_some_and(|q| !q.items.is_empty())
            .then_some(Wait::Busy)
    }

    /// Drops a peer's backlog unjudged (it was blocked).
    fn forget_backlog(&mut self, peer: PeerId) {
        if let Some(q) = self.backlog.remove(&peer) {
            self.backlog_bytes -= q.bytes;
        }
    }

    /// Judges what every backlog may now, one transaction of each peer in turn.
    fn drain_backlog(&mut self) {
        let mut peers: Vec<PeerId> = self.backlog.keys().copied().collect();
        while !peers.is_empty() && self.tasks.available_permits() > RESERVED_TASKS {
            // A peer that is over its limit, or has nothing left, is done for this time.
            peers.retain(|p| self.drain_peer(*p, 1).is_none_or(|why| why == Wait::Busy));
            peers.retain(|p| self.backlog.contains_key(p));
        }
    }

    /// Drops gossip that waited longer than [`BACKLOG_AGE`] (not the peer's fault: not
    /// counted).
    fn expire_backlog(&mut self) {
        let mut expired = Vec::new();
        for (peer, q) in self.backlog.iter_mut() {
            while q
                .items
                .front()
                .is_some_and(|d| d.since.elapsed() > BACKLOG_AGE)
            {
                if let Some(d) = q.items.pop_front() {
                    q.bytes -= d.data.len();
                    self.backlog_bytes -= d.data.len();
                    expired.push((*peer, d.message_id));
                }
            }
        }
        self.backlog.retain(|_, q| !q.items.is_empty());
        for (peer, id) in expired {
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &peer, MessageAcceptance::Ignore);
        }
    }

    fn strike(&mut self, peer: PeerId, why: String) {
        let strikes = {
            let mut p = self.peers.lock();
            let s = p.strikes.entry(peer).or_insert(0);
            *s += 1;
            *s
        };
        tracing::warn!(%peer, strikes, %why, "p2p peer sent bad data");
        if strikes >= MAX_STRIKES && self.bootnode_ids.contains(&peer) {
            // The operator chose it: keep it (its data is still checked), say so.
            tracing::warn!(%peer, "a --bootnode keeps sending bad data; not blocked");
        } else if strikes >= MAX_STRIKES {
            tracing::warn!(%peer, "p2p peer dropped and blocked");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.forget_backlog(peer);
            self.swarm.behaviour_mut().gossip.blacklist_peer(&peer);
            let mut p = self.peers.lock();
            p.connected.remove(&peer);
            p.banned.push((peer, why));
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => self.peers.lock().listening.push(address),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                self.dialing.remove(&addr);
                self.dialing.retain(|a| peer_of(a) != Some(peer_id));
                tracing::info!(peer = %peer_id, %addr, "p2p peer connected");
                self.peers
                    .lock()
                    .connected
                    .entry(peer_id)
                    .or_insert((addr, None));
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer_id, Request::Head);
                self.pending.insert(id, Pending::Head(peer_id));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "p2p peer disconnected");
                self.peers.lock().connected.remove(&peer_id);
                self.buckets.retain(|(p, _), _| *p != peer_id);
            }
            SwarmEvent::OutgoingConnectionError { error, peer_id, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "p2p dial failed");
                self.dialing.clear();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let block = message.topic == topic(self.chain_id, Topic::Blocks).hash();
                self.on_gossip(
                    propagation_source,
                    Deferred {
                        message_id,
                        block,
                        data: message.data,
                        since: std::time::Instant::now(),
                    },
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            _ => {}
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Judged {
                message_id,
                source,
                block,
                data,
                verdict,
            } => {
                let acceptance = match &verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                    Verdict::Reject(_) => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &source, acceptance);
                match verdict {
                    Verdict::Accept if block => {
                        let _ = self.blocks.send(GossipBlock {
                            from: source,
                            bytes: Arc::new(data),
                        });
                    }
                    Verdict::Reject(why) => self.strike(source, why),
                    _ => {}
                }
                // A permit is free again.
                self.drain_backlog();
            }
            Done::Answered(channel, answer) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, answer);
                self.drain_backlog();
            }
        }
    }

    fn on_sync(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if !self.within_limit(peer, Kind::Requests) {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, Response::Error("rate limited".into()));
                        return;
                    }
                    let Ok(permit) = self.tasks.clone().try_acquire_owned() else {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, Response::Error("busy".into()));
                        return;
                    };
                    let (app, done) = (self.app.clone(), self.done_tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let answer = app.serve(&request);
                        drop(permit);
                        let _ = done.send(Done::Answered(channel, answer));
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => match self.pending.remove(&request_id) {
                    Some(Pending::Caller(reply)) => {
                        let _ = reply.send(Ok(response));
                    }
                    Some(Pending::Head(p)) => {
                        if let Response::Head { number, .. } = response {
                            if let Some(e) = self.peers.lock().connected.get_mut(&p) {
                                e.1 = Some(number);
                            }
                        }
                    }
                    None => {}
                },
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(Pending::Caller(reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        why: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl NetApp for Echo {
        fn check_block(&self, _: &PeerId, bytes: &[u8]) -> Verdict {
            if bytes.starts_with(b"bad") {
                Verdict::Reject("bad block".into())
            } else {
                Verdict::Accept
            }
        }
        fn check_tx(&self, _: &PeerId, _: &[u8]) -> Verdict {
            Verdict::Accept
        }
        fn serve(&self, request: &Request) -> Response {
            match request {
                Request::Head => Response::Head {
                    number: 7,
                    hash: vec![7; 32],
                },
                Request::BlockByNumber(n) if *n < 8 => Response::Block(vec![*n as u8; 100_000]),
                _ => Response::NotFound,
            }
        }
    }

    fn config(bootnodes: Vec<Multiaddr>) -> NetConfig {
        NetConfig {
            chain_id: 7,
            listen: "127.0.0.1:0".parse().expect("addr"),
            bootnodes,
            limits: RateLimits::default(),
        }
    }

    #[tokio::test]
    async fn gossip_requests_and_strikes() {
        // `a` dials `b`: `b` names no bootnode, so it may block `a`.
        let b = Network::start(
            config(vec![]),
            identity::Keypair::generate_ed25519(),
            Arc::new(Echo),
        )
        .await
        .expect("b");
        let a = Network::start(
            config(b.listen_addrs()),
            identity::Keypair::generate_ed25519(),
            Arc::new(Echo),
        )
        .await
        .expect("a");
        assert_eq!(a.bootnode_peers(), &[b.peer_id()]);
        let peer = b
            .wait_for_peer(Duration::from_secs(10))
            .await
            .expect("peer");
        assert_eq!(peer, a.peer_id());
        // A request answered with a 100 kB block.
        let r = b
            .request(peer, Request::BlockByNumber(3))
            .await
            .expect("block");
        assert_eq!(r, Response::Block(vec![3; 100_000]));
        assert_eq!(
            b.request(peer, Request::BlockByNumber(9))
                .await
                .expect("nf"),
            Response::NotFound
        );
        // The head poll fills the peer's head.
        for _ in 0..50 {
            if b.peer_heads().first().and_then(|p| p.1) == Some(7) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(b.peer_heads(), vec![(a.peer_id(), Some(7))]);
        // Gossip: a block published by a reaches b once the mesh has formed.
        let mut rx = b.subscribe_blocks();
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                a.publish_block(b"good block".to_vec());
                match tokio::time::timeout(Duration::from_millis(600), rx.recv()).await {
                    Ok(Ok(g)) => return g,
                    _ => continue,
                }
            }
        })
        .await
        .expect("gossip");
        assert_eq!(got.from, a.peer_id());
        assert_eq!(&got.bytes[..], b"good block");
        // Three rejected blocks: a is dropped and blocked by b.
        for i in 0..3u8 {
            a.publish_block(vec![b'b', b'a', b'd', i]);
        }
        for _ in 0..50 {
            if !b.banned().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(b.banned().len(), 1, "{:?}", b.peers());
        assert!(b.peers().is_empty());
    }

    /// Counts the transactions (and blocks) it judges.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64);
    impl NetApp for Counting {
        fn check_block(&self, _: &PeerId, _: &[u8]) -> Verdict {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Verdict::Accept
        }
        fn check_tx(&self, _: &PeerId, _: &[u8]) -> Verdict {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Verdict::Accept
        }
        fn serve(&self, request: &Request) -> Response {
            Echo.serve(request)
        }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let rate = Rate {
            per_second: 10.0,
            burst: 5.0,
        };
        let t0 = std::time::Instant::now();
        let mut b = Bucket::new(rate, t0);
        assert_eq!((0..8).filter(|_| b.take(rate, t0)).count(), 5);
        // 0.3 s later: 3 more tokens, never more than the burst.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..8).filter(|_| b.take(rate, t1)).count(), 3);
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| b.take(rate, t2)).count(), 5);
    }

    /// A peer flooding requests gets its burst answered, then `rate limited`, then is dropped
    /// and blocked; a peer flooding transactions has its burst judged at once, its backlog
    /// later at its rate, and the rest dropped.
    #[tokio::test]
    async fn a_peer_over_its_rate_limits_is_refused_then_dropped() {
        let tight = Rate {
            per_second: 2.0,
            burst: 10.0,
        };
        let limits = RateLimits {
            requests: tight,
            blocks: tight,
            txs: tight,
            backlog: 5,
        };
        let judged = Arc::new(Counting::default());
        let server = Network::start(
            NetConfig {
                limits,
                ..config(vec![])
            },
            identity::Keypair::generate_ed25519(),
            judged.clone(),
        )
        .await
        .expect("server");
        let flooder = Network::start(
            config(server.listen_addrs()),
            identity::Keypair::generate_ed25519(),
            Arc::new(Echo),
        )
        .await
        .expect("flooder");
        let peer = flooder
            .wait_for_peer(Duration::from_secs(10))
            .await
            .expect("peer");
        // Transactions: published until the mesh carries one, then 25 more at once.
        let start = std::time::Instant::now();
        let mut i = 0u32;
        while judged.0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "no mesh");
            i += 1;
            let _ = flooder.publish_tx(format!("tx {i}").into_bytes()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let before = judged.0.load(std::sync::atomic::Ordering::SeqCst);
        let count = || judged.0.load(std::sync::atomic::Ordering::SeqCst) - before;
        for j in 0..30 {
            let _ = flooder.publish_tx(format!("flood {j}").into_bytes()).await;
        }
        // What the bucket held is judged at once, 5 wait in the backlog, the rest (≥ 15) is
        // dropped: 10 drops in a row are a strike.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_once = count();
        assert!(at_once <= 11, "{at_once} judged at once, burst 10");
        // A block from the same peer is judged at once, not held behind its transactions.
        let blocks = || judged.1.load(std::sync::atomic::Ordering::SeqCst);
        let before_block = blocks();
        flooder.publish_block(b"a block amid the flood".to_vec());
        let held = std::time::Instant::now();
        while blocks() == before_block {
            assert!(
                held.elapsed() < Duration::from_secs(1),
                "the block waited behind the backlog ({} of the flood judged)",
                count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            count() < at_once + 3,
            "the backlog drained before the block"
        );
        let held = std::time::Instant::now();
        while count() < at_once + 4 {
            assert!(
                held.elapsed() < Duration::from_secs(10),
                "the backlog was not judged: {} after {at_once}",
                count()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let n = count();
        assert!(
            n <= at_once + 5,
            "{n} judged: {at_once} at once + a backlog of 5"
        );
        let allowed = 10.0 + 2.0 * start.elapsed().as_secs_f64() + 1.0;
        let n = judged.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (n as f64) <= allowed,
            "{n} judged, at most {allowed} allowed"
        );
        let seen = server.peers();
        assert!(
            seen.len() == 1 && seen[0].rate_limited >= 10 && seen[0].strikes == 1,
            "{seen:?}"
        );
        // Requests: the bucket's 10 answered, then `rate limited`; each 10 over is a strike,
        // the third drops the flooder (its strike from the transactions counts).
        let mut answered = 0;
        let mut refused = 0;
        for _ in 0..40 {
            match flooder.request(peer, Request::BlockByNumber(1)).await {
                Ok(Response::Block(_)) => answered += 1,
                Ok(Response::Error(e)) => {
                    assert_eq!(e, "rate limited");
                    refused += 1;
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => break,
            }
        }
        // The bucket's 10 (its 2/s refill, less the flooder's own head polls at 1/s).
        assert!((9..=12).contains(&answered), "{answered} answered");
        assert!(refused >= 19, "{refused} refused");
        for _ in 0..50 {
            if !server.banned().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let banned = server.banned();
        assert_eq!(banned.len(), 1, "{:?}", server.peers());
        assert!(banned[0].1.contains("over its limit"), "{banned:?}");
    }
}
