//! The embedded node's P2P side (default 127.0.0.1:18444): serves headers, blocks and
//! transactions to any Bitcoin peer — Bitcoin Core after `addnode`, or our own Bitcoin client —
//! takes transactions and blocks from them, announces new tips and transactions, and bans peers
//! that break the protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::{BlockHash, Network};
use hemi_btc_p2p::{check_message, BanList, Peer, PeerConfig, PeerError, PeerWriter};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::node::{NodeEvent, RegtestNode};

/// Most headers in one `headers` reply.
const MAX_HEADERS: usize = 2000;

/// Serves P2P on `addr`; returns the bound address and the accept task.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_p2p(
    node: Arc<RegtestNode>,
    addr: SocketAddr,
    bans: BanList,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                continue;
            };
            if bans.is_banned(remote.ip()) {
                tracing::debug!(%remote, "refusing banned peer");
                continue;
            }
            let node = node.clone();
            let bans = bans.clone();
            tokio::spawn(async move {
                let height = node.store().indexed_tip().height as i32;
                let config = PeerConfig::new(Network::Regtest, height);
                match Peer::accept_with(stream, &config).await {
                    Ok(peer) => {
                        tracing::info!(%remote, agent = %peer.version().user_agent, "peer connected");
                        if let Err(e) = serve_peer(node, peer).await {
                            if e.is_misbehaviour() {
                                bans.misbehaving(remote.ip(), 100, &e.to_string());
                                tracing::warn!(%remote, error = %e, "peer misbehaved; banned");
                            } else {
                                tracing::debug!(%remote, error = %e, "peer gone");
                            }
                        }
                    }
                    // No ban for a failed handshake: Bitcoin Core opens with a BIP324 (v2)
                    // handshake and falls back to v1 when we hang up, as a v1 Core node does.
                    Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
                }
            });
        }
    });
    tracing::info!(%local, "regtest P2P listening");
    Ok((local, handle))
}

/// Headers after the first locator hash on our best chain, up to `stop` or 2000.
pub fn headers_for(node: &RegtestNode, msg: &GetHeadersMessage) -> Vec<bitcoin::block::Header> {
    let tree = node.store().headers();
    let tip = node.store().indexed_tip().height;
    let start = tree.find_fork_in_best(&msg.locator_hashes);
    let from = tree.get(&start).map(|n| n.height + 1).unwrap_or(1);
    let mut out = Vec::new();
    for h in from..=tip {
        let Some(hash) = tree.hash_at_height(h) else {
            break;
        };
        let Some(n) = tree.get(&hash) else { break };
        out.push(n.header);
        if out.len() >= MAX_HEADERS || hash == msg.stop_hash {
            break;
        }
    }
    out
}

async fn serve_peer(node: Arc<RegtestNode>, peer: Peer) -> Result<(), PeerError> {
    let (mut reader, mut writer) = peer.into_split();
    let (tx, mut rx) = mpsc::channel::<Result<NetworkMessage, PeerError>>(64);
    let reader_task = tokio::spawn(async move {
        loop {
            let m = reader.recv().await;
            let stop = m.is_err();
            if tx.send(m).await.is_err() || stop {
                break;
            }
        }
    });
    let mut events = node.subscribe();
    let mut wants_headers = false;
    let result = loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break Err(PeerError::Disconnected) };
                let msg = match m { Ok(msg) => msg, Err(e) => break Err(e) };
                if let Err(reason) = check_message(&msg) {
                    break Err(PeerError::Misbehaving { reason });
                }
                if matches!(msg, NetworkMessage::SendHeaders) {
                    wants_headers = true;
                    continue;
                }
                if let Err(e) = handle(&node, &mut writer, msg).await {
                    break Err(e);
                }
            }
            ev = events.recv() => match ev {
                Ok(NodeEvent::Tip { hash, .. }) => {
                    let announce = if wants_headers {
                        let header = node.store().headers().get(&hash).map(|n| n.header);
                        match header { Some(h) => NetworkMessage::Headers(vec![h]), None => continue }
                    } else {
                        NetworkMessage::Inv(vec![Inventory::Block(hash)])
                    };
                    if let Err(e) = writer.send(announce).await { break Err(e) }
                }
                Ok(NodeEvent::Tx(txid)) => {
                    if let Err(e) = writer.send(NetworkMessage::Inv(vec![Inventory::Transaction(txid)])).await { break Err(e) }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break Ok(()),
            }
        }
    };
    reader_task.abort();
    result
}

async fn handle(
    node: &Arc<RegtestNode>,
    w: &mut PeerWriter,
    msg: NetworkMessage,
) -> Result<(), PeerError> {
    match msg {
        NetworkMessage::Ping(n) => w.send(NetworkMessage::Pong(n)).await?,
        NetworkMessage::GetHeaders(gh) => {
            let headers = headers_for(node, &gh);
            w.send(NetworkMessage::Headers(headers)).await?;
        }
        NetworkMessage::GetData(items) => {
            let mut missing = Vec::new();
            for inv in items {
                match inv {
                    Inventory::Block(h) | Inventory::WitnessBlock(h) => {
                        match node.store().block(&h).ok().flatten() {
                            Some(b) => w.send(NetworkMessage::Block(b)).await?,
                            None => missing.push(inv),
                        }
                    }
                    Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => {
                        match node.with_mempool(|m| m.get(&t).map(|e| e.tx.clone())) {
                            Some(tx) => w.send(NetworkMessage::Tx(tx)).await?,
                            None => missing.push(inv),
                        }
                    }
                    other => missing.push(other),
                }
            }
            if !missing.is_empty() {
                w.send(NetworkMessage::NotFound(missing)).await?;
            }
        }
        NetworkMessage::Inv(items) => {
            let mut want = Vec::new();
            let mut new_block = false;
            for inv in items {
                match inv {
                    Inventory::Transaction(t) if node.with_mempool(|m| m.get(&t).is_none()) => {
                        want.push(Inventory::WitnessTransaction(t));
                    }
                    Inventory::Block(h) | Inventory::WitnessBlock(h)
                        if !node.store().headers().contains(&h) =>
                    {
                        new_block = true;
                    }
                    _ => {}
                }
            }
            if !want.is_empty() {
                w.send(NetworkMessage::GetData(want)).await?;
            }
            if new_block {
                let locator = node.store().headers().locator();
                w.send(NetworkMessage::GetHeaders(GetHeadersMessage::new(
                    locator,
                    BlockHash::all_zeros(),
                )))
                .await?;
            }
        }
        NetworkMessage::Tx(tx) => {
            if let Err(r) = node.submit_transaction(tx, None) {
                tracing::debug!(reason = %r, "peer transaction rejected");
            }
        }
        NetworkMessage::Headers(headers) => {
            if headers.is_empty() {
                return Ok(());
            }
            let now = crate::node::now_secs() as u32;
            let added =
                node.store()
                    .add_headers(&headers, now)
                    .map_err(|e| PeerError::Misbehaving {
                        reason: e.to_string(),
                    })?;
            if let Some(e) = added.error {
                return Err(PeerError::Misbehaving {
                    reason: format!("invalid header: {e}"),
                });
            }
            let want: Vec<Inventory> = node
                .store()
                .blocks_to_fetch(16)
                .unwrap_or_default()
                .into_iter()
                .map(Inventory::WitnessBlock)
                .collect();
            if !want.is_empty() {
                w.send(NetworkMessage::GetData(want)).await?;
            }
        }
        NetworkMessage::Block(block) => {
            if let Err(e) = node.submit_block(&block) {
                return Err(PeerError::Misbehaving {
                    reason: format!("invalid block: {e}"),
                });
            }
        }
        NetworkMessage::MemPool => {
            let ids = node.with_mempool(|m| m.txids());
            if !ids.is_empty() {
                w.send(NetworkMessage::Inv(
                    ids.into_iter().map(Inventory::Transaction).collect(),
                ))
                .await?;
            }
        }
        // Legal messages we have nothing to say to.
        _ => {}
    }
    Ok(())
}
