//! The Bitcoin client (Hemi's TBC): follows Bitcoin over the P2P protocol and keeps the chain
//! store's indexes in step with the most-work valid chain.
//!
//! One task per configured peer (Bitcoin Core, or the embedded regtest node — the client cannot
//! tell them apart and does not need to): version handshake, `sendheaders`, headers-first sync
//! (`getheaders`/`headers`, 2000 at a time), block download (`getdata`/`block`, a window in
//! flight), `inv` announcements, `ping`/`pong`. Every header is validated (proof of work,
//! retarget, median-time-past, future limit) by the store's header tree; reorgs of any depth the
//! undo data covers are applied by [`ChainStore::advance`]. A peer that breaks the protocol —
//! malformed, oversized or unconnecting messages, invalid proof of work, an empty `inv` — is
//! disconnected and banned; the client keeps running.
//!
//! Place in the chain of trust: **Bitcoin** → hVM → sequencer → chain → PoP → finality.
//!
//! Main types: [`BitcoinClient`], [`ClientConfig`], [`SyncStatus`].

use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::{BlockHash, Network};
use hemi_btc_p2p::{check_message, BanList, Peer, PeerConfig, PeerError, PeerWriter};
use hemi_btc_store::{ChainStore, StoreError};
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};

/// Blocks requested from one peer at a time.
const BLOCK_WINDOW: usize = 32;
/// A peer that sends nothing for this long while we wait is dropped.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Unconnecting `headers` messages tolerated in a row before the peer counts as misbehaving
/// (Bitcoin Core's `MAX_NUM_UNCONNECTING_HEADERS_MSGS`).
const MAX_UNCONNECTING_HEADERS: u32 = 10;
/// How often we ping.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// What the client is configured to do.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Network (fixes magic and header rules).
    pub network: Network,
    /// Peers to follow (each gets its own task).
    pub peers: Vec<SocketAddr>,
    /// Wait before reconnecting after a disconnect.
    pub reconnect_delay: Duration,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

impl ClientConfig {
    /// One peer, regtest defaults.
    pub fn new(network: Network, peers: Vec<SocketAddr>) -> Self {
        ClientConfig {
            network,
            peers,
            reconnect_delay: Duration::from_secs(2),
            progress: true,
        }
    }
}

/// Sync status, as `hemi_btcSyncStatus` reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Peers with a completed handshake.
    pub connected_peers: Vec<String>,
    /// Best height a peer announced.
    pub peer_height: u32,
    /// Height of the best valid header.
    pub header_height: u32,
    /// Height of the best indexed block.
    pub indexed_height: u32,
    /// Hash of the best indexed block.
    pub indexed_hash: String,
    /// Headers and blocks are caught up with the peers.
    pub synced: bool,
    /// Banned peers and why.
    pub banned: Vec<(String, String)>,
    /// The last error a peer task hit.
    pub last_error: Option<String>,
}

/// The running client. Dropping it does not stop the tasks; call [`BitcoinClient::shutdown`].
#[derive(Clone)]
pub struct BitcoinClient {
    store: Arc<ChainStore>,
    bans: BanList,
    status: Arc<RwLock<SyncStatus>>,
    tip_tx: Arc<watch::Sender<u32>>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for BitcoinClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinClient")
            .field("status", &*self.status.read())
            .finish()
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl BitcoinClient {
    /// Starts one sync task per configured peer.
    pub fn spawn(store: Arc<ChainStore>, config: ClientConfig) -> Self {
        let (shutdown, _) = watch::channel(false);
        let (tip_tx, _) = watch::channel(store.indexed_tip().height);
        let client = BitcoinClient {
            store,
            bans: BanList::default(),
            status: Arc::new(RwLock::new(SyncStatus::default())),
            tip_tx: Arc::new(tip_tx),
            shutdown: Arc::new(shutdown),
        };
        client.refresh_status();
        let bar = Progress::new(config.progress);
        for addr in config.peers.clone() {
            let c = client.clone();
            let cfg = config.clone();
            let bar = bar.clone();
            tokio::spawn(async move { c.peer_loop(addr, cfg, bar).await });
        }
        client
    }

    /// The store the client fills.
    pub fn store(&self) -> &Arc<ChainStore> {
        &self.store
    }

    /// The ban list.
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// Current sync status.
    pub fn status(&self) -> SyncStatus {
        self.refresh_status();
        self.status.read().clone()
    }

    /// A receiver that changes whenever the indexed tip height changes.
    pub fn subscribe_tip(&self) -> watch::Receiver<u32> {
        self.tip_tx.subscribe()
    }

    /// Stops every peer task.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    fn refresh_status(&self) {
        let tip = self.store.indexed_tip();
        let header_height = self.store.headers().best_height();
        let mut s = self.status.write();
        s.indexed_height = tip.height;
        s.indexed_hash = tip.hash.to_string();
        s.header_height = header_height;
        s.synced = !s.connected_peers.is_empty()
            && header_height >= s.peer_height
            && tip.height == header_height;
        s.banned = self
            .bans
            .banned()
            .into_iter()
            .map(|(ip, r)| (ip.to_string(), r))
            .collect();
    }

    async fn peer_loop(self, addr: SocketAddr, cfg: ClientConfig, bar: Progress) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.bans.is_banned(addr.ip()) {
                tracing::debug!(%addr, "peer is banned; not reconnecting");
            } else {
                let result = self.run_peer(addr, &cfg, &bar, &mut shutdown).await;
                {
                    let mut s = self.status.write();
                    s.connected_peers.retain(|p| p != &addr.to_string());
                }
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        if e.is_misbehaviour() {
                            self.bans.misbehaving(addr.ip(), 100, &e.to_string());
                            tracing::warn!(%addr, error = %e, "peer misbehaved; disconnected and banned");
                        } else {
                            tracing::info!(%addr, error = %e, "peer disconnected");
                        }
                        self.status.write().last_error = Some(format!("{addr}: {e}"));
                    }
                }
            }
            let _ = self.store.flush();
            tokio::select! {
                _ = tokio::time::sleep(cfg.reconnect_delay) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn run_peer(
        &self,
        addr: SocketAddr,
        cfg: &ClientConfig,
        bar: &Progress,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PeerError> {
        let config = PeerConfig::new(cfg.network, self.store.indexed_tip().height as i32);
        let peer = Peer::connect_with(addr, &config).await?;
        let peer_height = u32::try_from(peer.version().start_height).unwrap_or(0);
        tracing::info!(%addr, agent = %peer.version().user_agent, peer_height, "connected to Bitcoin peer");
        {
            let mut s = self.status.write();
            s.connected_peers.push(addr.to_string());
            s.peer_height = s.peer_height.max(peer_height);
        }
        let (mut reader, mut w) = peer.into_split();
        let (tx, mut rx) = mpsc::channel::<Result<NetworkMessage, PeerError>>(256);
        let reader_task = tokio::spawn(async move {
            loop {
                let m = reader.recv().await;
                let stop = m.is_err();
                if tx.send(m).await.is_err() || stop {
                    break;
                }
            }
        });
        let mut sync = PeerSync {
            in_flight: HashSet::new(),
            last_seen: Instant::now(),
            unconnecting: 0,
        };
        let result = async {
            w.send(NetworkMessage::SendHeaders).await?;
            self.send_getheaders(&mut w).await?;
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                tokio::select! {
                    m = rx.recv() => {
                        let msg = match m { Some(Ok(m)) => m, Some(Err(e)) => return Err(e), None => return Err(PeerError::Disconnected) };
                        sync.last_seen = Instant::now();
                        check_message(&msg).map_err(|reason| PeerError::Misbehaving { reason })?;
                        self.handle(&mut w, &mut sync, msg, bar).await?;
                    }
                    _ = ping.tick() => {
                        if sync.last_seen.elapsed() > STALL_TIMEOUT {
                            return Err(PeerError::Timeout("peer stalled"));
                        }
                        w.send(NetworkMessage::Ping(rand::random())).await?;
                    }
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
        .await;
        reader_task.abort();
        result
    }

    async fn send_getheaders(&self, w: &mut PeerWriter) -> Result<(), PeerError> {
        let locator = self.store.headers().locator();
        w.send(NetworkMessage::GetHeaders(GetHeadersMessage::new(
            locator,
            BlockHash::all_zeros(),
        )))
        .await
    }

    async fn request_blocks(
        &self,
        w: &mut PeerWriter,
        sync: &mut PeerSync,
    ) -> Result<(), PeerError> {
        if sync.in_flight.len() >= BLOCK_WINDOW / 2 {
            return Ok(());
        }
        let wanted = self
            .store
            .blocks_to_fetch(BLOCK_WINDOW * 4)
            .map_err(store_err)?;
        let mut ask = Vec::new();
        for h in wanted {
            if sync.in_flight.len() + ask.len() >= BLOCK_WINDOW {
                break;
            }
            if !sync.in_flight.contains(&h) {
                ask.push(h);
            }
        }
        if !ask.is_empty() {
            sync.in_flight.extend(ask.iter().copied());
            w.send(NetworkMessage::GetData(
                ask.into_iter().map(Inventory::WitnessBlock).collect(),
            ))
            .await?;
        }
        Ok(())
    }

    fn apply(&self, bar: &Progress) -> Result<(), PeerError> {
        let behind = self
            .store
            .headers()
            .best_height()
            .saturating_sub(self.store.indexed_tip().height);
        self.store.set_fast_commits(behind > 16);
        let adv = self.store.advance(usize::MAX).map_err(store_err)?;
        if !adv.connected.is_empty() || !adv.disconnected.is_empty() {
            let tip = self.store.indexed_tip();
            if !adv.disconnected.is_empty() {
                tracing::info!(disconnected = adv.disconnected.len(), connected = adv.connected.len(), height = tip.height, hash = %tip.hash, "Bitcoin reorg");
            }
            if behind <= 16 {
                self.store.flush().map_err(store_err)?;
            }
            let _ = self.tip_tx.send(tip.height);
            bar.blocks(tip.height, self.store.headers().best_height());
        }
        if let Some((hash, reason)) = adv.invalid.first() {
            return Err(PeerError::Misbehaving {
                reason: format!("block {hash} is invalid: {reason}"),
            });
        }
        self.refresh_status();
        Ok(())
    }

    async fn handle(
        &self,
        w: &mut PeerWriter,
        sync: &mut PeerSync,
        msg: NetworkMessage,
        bar: &Progress,
    ) -> Result<(), PeerError> {
        match msg {
            NetworkMessage::Ping(n) => w.send(NetworkMessage::Pong(n)).await?,
            NetworkMessage::Headers(headers) => {
                let full = headers.len() == 2000;
                if !headers.is_empty() {
                    let first_known = self.store.headers().contains(&headers[0].prev_blockhash);
                    if !first_known {
                        // Unconnecting announcement: ask for the path (Core does the same), but
                        // a peer that keeps sending headers we cannot connect is wasting us.
                        sync.unconnecting += 1;
                        if sync.unconnecting > MAX_UNCONNECTING_HEADERS {
                            return Err(PeerError::Misbehaving {
                                reason: format!(
                                    "{} unconnecting headers messages",
                                    sync.unconnecting
                                ),
                            });
                        }
                        return self.send_getheaders(w).await;
                    }
                    sync.unconnecting = 0;
                    let added = self.store.add_headers(&headers, now()).map_err(store_err)?;
                    if let Some(e) = added.error {
                        return Err(PeerError::Misbehaving {
                            reason: format!("invalid header: {e}"),
                        });
                    }
                    let best = self.store.headers().best_height();
                    {
                        let mut s = self.status.write();
                        s.peer_height = s.peer_height.max(best);
                    }
                    bar.headers(best);
                }
                if full {
                    self.send_getheaders(w).await?;
                }
                self.apply(bar)?;
                self.request_blocks(w, sync).await?;
            }
            NetworkMessage::Block(block) => {
                let hash = block.block_hash();
                if !sync.in_flight.remove(&hash)
                    && !self.store.headers().contains(&block.header.prev_blockhash)
                {
                    return Err(PeerError::Misbehaving {
                        reason: format!("unrequested, unconnecting block {hash}"),
                    });
                }
                match self.store.put_block(&block, now()) {
                    Ok(()) => {}
                    Err(StoreError::Header(e)) => {
                        return Err(PeerError::Misbehaving {
                            reason: format!("block {hash} has an invalid header: {e}"),
                        })
                    }
                    Err(StoreError::BadBlock { reason, .. }) => {
                        return Err(PeerError::Misbehaving {
                            reason: format!("block {hash}: {reason}"),
                        })
                    }
                    Err(e) => return Err(store_err(e)),
                }
                self.apply(bar)?;
                self.request_blocks(w, sync).await?;
            }
            NetworkMessage::Inv(items) => {
                let new_block = items.iter().any(|i| match i {
                    Inventory::Block(h) | Inventory::WitnessBlock(h) => {
                        !self.store.headers().contains(h)
                    }
                    _ => false,
                });
                if new_block {
                    self.send_getheaders(w).await?;
                }
            }
            NetworkMessage::NotFound(items) => {
                for i in items {
                    if let Inventory::Block(h) | Inventory::WitnessBlock(h) = i {
                        sync.in_flight.remove(&h);
                    }
                }
            }
            // Legal messages with nothing for us to do (addr, feefilter, tx, pong, …).
            _ => {}
        }
        Ok(())
    }
}

struct PeerSync {
    in_flight: HashSet<BlockHash>,
    last_seen: Instant,
    unconnecting: u32,
}

fn store_err(e: StoreError) -> PeerError {
    PeerError::Io(std::io::Error::other(e.to_string()))
}

/// A progress bar on a terminal (indicatif), tracing logs otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Arc<parking_lot::Mutex<Instant>>,
}

impl Progress {
    fn new(want: bool) -> Self {
        let bar = (want && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} bitcoin {msg} [{bar:40}] {pos}/{len} blocks",
            ) {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            last_log: Arc::new(parking_lot::Mutex::new(Instant::now())),
        }
    }

    fn headers(&self, best: u32) {
        if let Some(b) = &self.bar {
            b.set_length(best as u64);
            b.set_message(format!("headers {best}"));
        }
    }

    fn blocks(&self, height: u32, best: u32) {
        match &self.bar {
            Some(b) => {
                b.set_length(best as u64);
                b.set_position(height as u64);
            }
            None => {
                let mut last = self.last_log.lock();
                if last.elapsed() > Duration::from_secs(5) || height == best {
                    *last = Instant::now();
                    tracing::info!(height, best, "bitcoin sync");
                }
            }
        }
    }
}
