//! Blocks from the p2p network: [`P2pSource`], a [`BlockSource`] fed by gossip and, for what
//! gossip missed, by requests to the peer with the highest head; and the gossip rules a block
//! must pass before it is forwarded ([`P2pSource::check_gossip`]), the OP Stack's unsafe-block
//! rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::B256;
use hemi_chain::{Chain, ChainError, L2Block, SealVerifier};
use hemi_net::{Network, PeerId, Request, Response, Verdict};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{BlockSource, FollowError};

/// A gossiped block whose timestamp is further ahead of our clock is not forwarded (OP: 5 s).
pub const GOSSIP_MAX_FUTURE: Duration = Duration::from_secs(5);
/// A gossiped block older than this is not forwarded (OP: 60 s); followers fetch old blocks by
/// request instead.
pub const GOSSIP_MAX_AGE: Duration = Duration::from_secs(60);
/// Distinct blocks per height one sequencer may gossip (OP: 5); more is equivocation spam.
pub const GOSSIP_MAX_PER_HEIGHT: usize = 5;
/// Heights of gossiped blocks kept until the follower takes them.
const CACHE_HEIGHTS: usize = 512;
/// Peers asked for one block before giving up this round.
const PEERS_PER_BLOCK: usize = 3;

/// A gossiped block: its hash, the peer that forwarded it, the block.
type Gossiped = (B256, PeerId, L2Block);

/// A follower's source of blocks from the p2p network.
pub struct P2pSource {
    net: Arc<Network>,
    chain: Arc<Chain>,
    verifier: Arc<dyn SealVerifier>,
    /// Gossiped blocks by height: hash, forwarding peer, block.
    cache: Mutex<BTreeMap<u64, Vec<Gossiped>>>,
    /// Who served each block we handed out, to blame for a refusal.
    served: Mutex<HashMap<u64, PeerId>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for P2pSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pSource")
            .field("peer_id", &self.net.peer_id())
            .finish()
    }
}

impl P2pSource {
    /// A source over `net` for `chain`, checking seals with `verifier`; starts taking the
    /// blocks gossip accepts.
    pub fn new(net: Arc<Network>, chain: Arc<Chain>, verifier: Arc<dyn SealVerifier>) -> Arc<Self> {
        let source = Arc::new(P2pSource {
            net: net.clone(),
            chain,
            verifier,
            cache: Mutex::new(BTreeMap::new()),
            served: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&source);
        let mut rx = net.subscribe_blocks();
        tokio::spawn(async move {
            loop {
                let g = match rx.recv().await {
                    Ok(g) => g,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(source) = weak.upgrade() else { return };
                if let Ok(block) = L2Block::decode(&g.bytes) {
                    source.keep(g.from, block);
                    source.wake.notify_one();
                }
            }
        });
        source
    }

    /// Notified whenever gossip brings a block (the follower syncs at once instead of at its
    /// next poll).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The network.
    pub fn network(&self) -> &Arc<Network> {
        &self.net
    }

    fn remember_server(&self, number: u64, peer: PeerId) {
        let mut served = self.served.lock();
        served.insert(number, peer);
        if served.len() > CACHE_HEIGHTS * 2 {
            served.retain(|n, _| *n + CACHE_HEIGHTS as u64 >= number);
        }
    }

    fn keep(&self, from: PeerId, block: L2Block) {
        let number = block.header.number;
        let hash = block.hash();
        let mut cache = self.cache.lock();
        let at = cache.entry(number).or_default();
        if !at.iter().any(|(h, _, _)| *h == hash) {
            at.push((hash, from, block));
        }
        while cache.len() > CACHE_HEIGHTS {
            cache.pop_first();
        }
    }

    /// The gossip rules for a block (raw bytes) a peer forwarded: it decodes, its seal verifies
    /// (a `Reject`, which costs the peer), it is not too far from our clock, not long below our
    /// head, not known, and its height has not seen [`GOSSIP_MAX_PER_HEIGHT`] blocks (the rest
    /// are `Ignore`d: not forwarded, nobody blamed).
    pub fn check_gossip(&self, bytes: &[u8]) -> Verdict {
        let block = match L2Block::decode(bytes) {
            Ok(b) => b,
            Err(e) => return Verdict::Reject(format!("gossiped block: {e}")),
        };
        let number = block.header.number;
        let hash = block.hash();
        if let Err(e) = self.verifier.verify(
            self.chain.spec().chain_id,
            number,
            hash,
            &block.seal,
            block.certificate.as_ref(),
        ) {
            return Verdict::Reject(format!("gossiped block {number}: {e}"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let ts = block.header.timestamp;
        if ts > now + GOSSIP_MAX_FUTURE.as_secs() || ts + GOSSIP_MAX_AGE.as_secs() < now {
            // Not forwarded; a follower still fetches it by number (time-travelled devnet
            // blocks go that way).
            return Verdict::Ignore;
        }
        if number + 64 < self.chain.head().0 || matches!(self.chain.number_of(&hash), Ok(Some(_))) {
            return Verdict::Ignore;
        }
        let cache = self.cache.lock();
        if let Some(at) = cache.get(&number) {
            if at.iter().any(|(h, _, _)| *h == hash) {
                return Verdict::Ignore;
            }
            if at.len() >= GOSSIP_MAX_PER_HEIGHT {
                // Not forwarded; no strike for the forwarding peer (the sequencer made them).
                return Verdict::Ignore;
            }
        }
        Verdict::Accept
    }

    async fn fetch(&self, number: u64) -> Result<L2Block, FollowError> {
        let mut asked = 0;
        let mut last = FollowError::Rpc(format!("p2p: no peer has block {number}"));
        for (peer, head) in self.net.peer_heads() {
            if head.is_some_and(|h| h < number) || asked == PEERS_PER_BLOCK {
                continue;
            }
            asked += 1;
            match self.net.request(peer, Request::BlockByNumber(number)).await {
                Ok(Response::Block(bytes)) => match L2Block::decode(&bytes) {
                    Ok(b) if b.header.number == number => {
                        self.remember_server(number, peer);
                        return Ok(b);
                    }
                    Ok(b) => self.net.penalize(
                        peer,
                        format!("served block {} for {number}", b.header.number),
                    ),
                    Err(e) => {
                        self.net
                            .penalize(peer, format!("served block {number}: {e}"));
                        last = FollowError::Refused { number, error: e };
                    }
                },
                // It unwound since its last head, claims more than it has, or is busy: not
                // asked for this height again until it reports anew.
                Ok(Response::NotFound | Response::Error(_)) => self.net.lower_head(peer, number),
                Ok(other) => {
                    self.net.lower_head(peer, number);
                    self.net
                        .penalize(peer, format!("answered {other:?} for block {number}"));
                }
                Err(e) => {
                    self.net.lower_head(peer, number);
                    if matches!(e, hemi_net::NetError::Request { .. }) {
                        self.net
                            .penalize(peer, format!("no answer for block {number}: {e}"));
                    }
                    last = FollowError::Rpc(e.to_string());
                }
            }
        }
        Err(last)
    }
}

#[async_trait::async_trait]
impl BlockSource for P2pSource {
    fn name(&self) -> &str {
        "p2p"
    }

    async fn head(&self) -> Result<u64, FollowError> {
        let peers = self.net.peer_heads().into_iter().filter_map(|p| p.1).max();
        let gossip = self.cache.lock().keys().next_back().copied();
        peers
            .max(gossip)
            .ok_or_else(|| FollowError::Rpc("p2p: no peer has reported a head yet".into()))
    }

    async fn block(&self, number: u64) -> Result<L2Block, FollowError> {
        // A gossiped block that extends ours first, then any gossiped one, then a request.
        let ours = self.chain.head().1;
        let cached = {
            let cache = self.cache.lock();
            cache.get(&number).and_then(|at| {
                at.iter()
                    .find(|(_, _, b)| b.header.parent_hash == ours)
                    .or_else(|| at.first())
                    .map(|(_, from, b)| (*from, b.clone()))
            })
        };
        if let Some((from, b)) = cached {
            self.remember_server(number, from);
            return Ok(b);
        }
        self.fetch(number).await
    }

    fn refused(&self, number: u64, error: &FollowError) {
        // Blame the peer only for what it could have checked itself, the seal (bytes that do
        // not decode are blamed in `fetch`); peers forward blocks before executing them, as
        // OP nodes do.
        let bad_data = matches!(
            error,
            FollowError::Refused {
                error: ChainError::InvalidSeal(_),
                ..
            }
        );
        self.cache.lock().remove(&number);
        if let (true, Some(peer)) = (bad_data, self.served.lock().remove(&number)) {
            self.net.penalize(peer, error.to_string());
        }
    }
}
