//! The node on the L2's p2p network (`--p2p-addr`, `--bootnode`): what it answers peers, which
//! gossiped blocks and transactions it takes and forwards, and its status over p2p.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy_primitives::B256;
use anyhow::Context;
use hemi_chain::Chain;
use hemi_net::{Multiaddr, NetApp, NetConfig, Network, PeerId, Request, Response, Verdict};
use hemi_sequencer::{Sequencer, SubmitError};
use hemi_sync::P2pSource;
use hemi_txpool::{PoolConfig, PoolError, TxPool};
use serde_json::{json, Value};

use crate::Config;

/// How long `hemi node` waits for a bootnode before giving up on asking it for the chain's
/// parameters.
const STATUS_WAIT: Duration = Duration::from_secs(30);

/// The node as the network sees it. Parts are set as the node assembles itself; until then
/// the network answers `NotFound` and ignores gossip.
#[derive(Default)]
pub(crate) struct NodeNet {
    pub(crate) chain: OnceLock<Arc<Chain>>,
    pub(crate) sequencer: OnceLock<Arc<Sequencer>>,
    pub(crate) source: OnceLock<Arc<P2pSource>>,
    pub(crate) status: OnceLock<Arc<dyn Fn() -> Value + Send + Sync>>,
}

impl NetApp for NodeNet {
    fn check_block(&self, _from: &PeerId, bytes: &[u8]) -> Verdict {
        match self.source.get() {
            Some(s) => s.check_gossip(bytes),
            // A sequencer makes its own blocks.
            None => Verdict::Ignore,
        }
    }

    fn check_tx(&self, _from: &PeerId, bytes: &[u8]) -> Verdict {
        if let Some(seq) = self.sequencer.get() {
            return match seq.submit(bytes) {
                Ok(_) => Verdict::Accept,
                Err(SubmitError::Pool(e)) if stateless(&e) => Verdict::Reject(e.to_string()),
                // Known, nonce too low, underpriced, pool full: not the sender's fault.
                Err(_) => Verdict::Ignore,
            };
        }
        let Some(chain) = self.chain.get() else {
            return Verdict::Ignore;
        };
        let spec = chain.spec();
        match TxPool::check(bytes, &PoolConfig::new(spec.chain_id, spec.gas_limit)) {
            Ok(_) => Verdict::Accept,
            Err(e) => Verdict::Reject(e.to_string()),
        }
    }

    fn serve(&self, request: &Request) -> Response {
        let Some(chain) = self.chain.get() else {
            return Response::NotFound;
        };
        let raw = |n: u64| match chain.raw_block(n) {
            Ok(Some(b)) => Response::Block(b),
            Ok(None) => Response::NotFound,
            Err(e) => Response::Error(e.to_string()),
        };
        match request {
            Request::Head => {
                let (number, hash) = chain.head();
                Response::Head {
                    number,
                    hash: hash.to_vec(),
                }
            }
            Request::BlockByNumber(n) => raw(*n),
            Request::BlockByHash(h) if h.len() == 32 => match chain.number_of(&B256::from_slice(h))
            {
                Ok(Some(n)) => raw(n),
                Ok(None) => Response::NotFound,
                Err(e) => Response::Error(e.to_string()),
            },
            Request::BlockByHash(_) => Response::Error("a block hash is 32 bytes".into()),
            Request::Status => match self.status.get() {
                Some(f) => Response::Status(f().to_string()),
                None => Response::NotFound,
            },
        }
    }
}

/// Pool errors that no state can fix: the transaction itself is bad.
fn stateless(e: &PoolError) -> bool {
    matches!(
        e,
        PoolError::Decode(_)
            | PoolError::TxTypeNotSupported(_)
            | PoolError::OversizedData { .. }
            | PoolError::Unprotected
            | PoolError::InvalidChainId { .. }
            | PoolError::InvalidSender
    )
}

/// Starts the network if `--p2p-addr` is set.
///
/// # Errors
/// A bad `--bootnode`, an unreadable node key, an address that cannot be bound.
pub(crate) async fn start(cfg: &Config) -> anyhow::Result<Option<(Arc<Network>, Arc<NodeNet>)>> {
    let Some(listen) = cfg.p2p_addr else {
        return Ok(None);
    };
    let bootnodes = cfg
        .bootnodes
        .iter()
        .map(|b| {
            b.parse::<Multiaddr>().with_context(|| {
                format!("--bootnode {b:?} is not a multiaddr (/ip4/HOST/tcp/PORT/p2p/PEER_ID)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let key_path = cfg.persist.then(|| cfg.dir.join("p2p.key"));
    if key_path.is_some() {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
    }
    let key = hemi_net::load_or_create_key(key_path.as_deref())?;
    let app = Arc::new(NodeNet::default());
    let net = Network::start(
        NetConfig {
            chain_id: hemi_chain::ChainSpec::devnet()?.chain_id,
            listen,
            bootnodes,
            limits: Default::default(),
        },
        key,
        app.clone(),
    )
    .await
    .with_context(|| format!("--p2p-addr {listen}"))?;
    for a in net.listen_addrs() {
        println!("P2P: {a}");
    }
    Ok(Some((net, app)))
}

/// A peer's status (what `hemi_nodeStatus` reports), asked over p2p: where a follower without
/// `--follow` takes the chain's parameters from.
///
/// # Errors
/// No peer within 30 s, or no peer answered.
pub(crate) async fn peer_status(net: &Network) -> anyhow::Result<(String, Value)> {
    net.wait_for_peer(STATUS_WAIT)
        .await
        .context("no --bootnode answered within 30 s")?;
    let mut last = anyhow::anyhow!("no peer answered");
    // Peers connect one by one; give a moment for more than the first.
    for _ in 0..20 {
        // Only a peer the operator named answers for the chain (any peer, if no --bootnode
        // carries a /p2p/ id).
        let named = net.bootnode_peers();
        if named.is_empty() {
            tracing::warn!("no --bootnode names a peer id (/p2p/…): taking the chain's parameters from any peer");
        }
        for (peer, _) in net.peer_heads() {
            if !named.is_empty() && !named.contains(&peer) {
                continue;
            }
            match net.request(peer, Request::Status).await {
                Ok(Response::Status(s)) => {
                    let v: Value = serde_json::from_str(&s)
                        .with_context(|| format!("p2p peer {peer}'s status"))?;
                    return Ok((format!("p2p peer {peer}"), v));
                }
                Ok(other) => last = anyhow::anyhow!("p2p peer {peer} answered {other:?}"),
                Err(e) => last = e.into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// What `hemi_nodeStatus` shows under `p2p`.
pub(crate) fn status_json(net: &Network) -> Value {
    json!({
        "peerId": net.peer_id().to_string(),
        "listen": net.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "peers": net.peers(),
        "banned": net.banned().iter().map(|(p, why)| json!({"peerId": p.to_string(), "reason": why})).collect::<Vec<_>>(),
    })
}

/// Gossips every block the sequencer seals.
pub(crate) fn spawn_block_publisher(
    net: Arc<Network>,
    chain: Arc<Chain>,
    mut blocks: tokio::sync::broadcast::Receiver<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match blocks.recv().await {
                Ok(n) => {
                    if let Ok(Some(raw)) = chain.raw_block(n) {
                        net.publish_block(raw);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}
