//! A handshaken connection to one Bitcoin peer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::Network;
use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::PeerError;
use crate::frame::{read_message, write_message};

/// The protocol version we announce (70016: `wtxidrelay`, BIP 339).
pub const PROTOCOL_VERSION: u32 = 70016;
/// Oldest protocol version we talk to (Bitcoin Core's `MIN_PEER_PROTO_VERSION`).
pub const MIN_PEER_PROTOCOL_VERSION: u32 = 31_800;
/// The user agent we announce (BIP 14).
pub const USER_AGENT: &str = "/hemi-rs:0.1.0/";
/// Default limit for the TCP connect and, separately, for the version handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Most non-handshake messages we keep from before `verack` (they are handed to `recv` later).
const MAX_EARLY_MESSAGES: usize = 64;

/// What we announce in our `version` message, and how long we wait for the handshake.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The network; fixes the magic.
    pub network: Network,
    /// Our best block height, announced as `start_height`.
    pub start_height: i32,
    /// Services we announce (default `NETWORK | WITNESS`).
    pub services: ServiceFlags,
    /// User agent we announce (default [`USER_AGENT`]).
    pub user_agent: String,
    /// Whether the peer should announce transactions to us (BIP 37 `relay`, default true).
    pub relay: bool,
    /// Limit for the TCP connect and, separately, for the handshake (default
    /// [`HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

impl PeerConfig {
    /// The defaults for `network`, announcing `start_height`.
    pub fn new(network: Network, start_height: i32) -> Self {
        PeerConfig {
            network,
            start_height,
            services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            user_agent: USER_AGENT.to_owned(),
            relay: true,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    fn magic(&self) -> Magic {
        Magic::from(self.network)
    }

    /// Our `version` message to a peer at `remote` that offers `remote_services`.
    pub(crate) fn version_message(
        &self,
        remote: SocketAddr,
        remote_services: ServiceFlags,
    ) -> VersionMessage {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        VersionMessage {
            version: PROTOCOL_VERSION,
            services: self.services,
            timestamp,
            receiver: Address::new(&remote, remote_services),
            // Like Bitcoin Core: our own address is not announced here (peers ignore it).
            sender: Address {
                services: self.services,
                address: [0; 8],
                port: 0,
            },
            nonce: rand::random(),
            user_agent: self.user_agent.clone(),
            start_height: self.start_height,
            relay: self.relay,
        }
    }
}

/// A connection to one Bitcoin peer that has completed the `version`/`verack` handshake.
///
/// Use [`Peer::send`] / [`Peer::recv`] from one task, or [`Peer::into_split`] to read in one task
/// and write from another. Nothing here answers pings or applies policy after the handshake: that
/// is the service's job (see [`crate::check_message`] and [`crate::BanList`]).
#[derive(Debug)]
pub struct Peer {
    reader: PeerReader,
    writer: PeerWriter,
    version: VersionMessage,
}

/// The reading half of a [`Peer`].
#[derive(Debug)]
pub struct PeerReader {
    stream: BufReader<OwnedReadHalf>,
    magic: Magic,
    addr: SocketAddr,
    /// Messages that arrived during the handshake but belong to the service (e.g. `sendheaders`).
    pending: VecDeque<NetworkMessage>,
}

/// The writing half of a [`Peer`].
#[derive(Debug)]
pub struct PeerWriter {
    stream: OwnedWriteHalf,
    magic: Magic,
    addr: SocketAddr,
}

impl Peer {
    /// Connects to `addr` and performs the outbound handshake with the defaults of
    /// [`PeerConfig::new`]: services `NETWORK | WITNESS`, user agent [`USER_AGENT`], relay on,
    /// 20 s limits.
    ///
    /// # Errors
    ///
    /// See [`Peer::connect_with`].
    pub async fn connect(
        addr: SocketAddr,
        network: Network,
        start_height: i32,
    ) -> Result<Peer, PeerError> {
        Self::connect_with(addr, &PeerConfig::new(network, start_height)).await
    }

    /// Connects to `addr`, sends our `version`, waits for theirs (answering `verack`) and for
    /// their `verack`.
    ///
    /// Messages that legally arrive before `verack` are tolerated: `wtxidrelay` and `sendaddrv2`
    /// are dropped (we do not send them, so per BIPs 339/155 those features are off), `ping` is
    /// answered, anything else (`sendheaders`, `sendcmpct`, `feefilter`, unknown commands) is kept
    /// and returned by the first [`Peer::recv`] calls.
    ///
    /// # Errors
    ///
    /// [`PeerError::Timeout`] if the connect or the handshake exceeds the configured limit;
    /// [`PeerError::Io`] / [`PeerError::Disconnected`] for transport failures;
    /// [`PeerError::ObsoleteVersion`] for a too-old peer; [`PeerError::UnexpectedMessage`] if the
    /// peer's first message is not `version`; [`PeerError::Misbehaving`] for a second `version` or
    /// a flood before `verack`; any frame error of [`crate::read_message`].
    pub async fn connect_with(addr: SocketAddr, config: &PeerConfig) -> Result<Peer, PeerError> {
        let stream = tokio::time::timeout(config.handshake_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PeerError::Timeout("connect"))??;
        Self::handshake(stream, addr, config, true).await
    }

    /// Performs the inbound handshake on an accepted connection with the defaults of
    /// [`PeerConfig::new`].
    ///
    /// # Errors
    ///
    /// See [`Peer::accept_with`].
    pub async fn accept(
        stream: TcpStream,
        network: Network,
        start_height: i32,
    ) -> Result<Peer, PeerError> {
        Self::accept_with(stream, &PeerConfig::new(network, start_height)).await
    }

    /// Waits for the peer's `version`, answers with ours and `verack`, and waits for its
    /// `verack`. Tolerates the same early messages as [`Peer::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`Peer::connect_with`] (the timeout covers the handshake only).
    pub async fn accept_with(stream: TcpStream, config: &PeerConfig) -> Result<Peer, PeerError> {
        let addr = stream.peer_addr()?;
        Self::handshake(stream, addr, config, false).await
    }

    async fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
        config: &PeerConfig,
        outbound: bool,
    ) -> Result<Peer, PeerError> {
        // Small messages (ping, inv, getdata) should go out at once, not wait for Nagle.
        stream.set_nodelay(true)?;
        let magic = config.magic();
        let (read, write) = stream.into_split();
        let mut reader = PeerReader {
            stream: BufReader::new(read),
            magic,
            addr,
            pending: VecDeque::new(),
        };
        let mut writer = PeerWriter {
            stream: write,
            magic,
            addr,
        };
        let exchange = Self::exchange_versions(&mut reader, &mut writer, config, outbound);
        let version = tokio::time::timeout(config.handshake_timeout, exchange)
            .await
            .map_err(|_| PeerError::Timeout("handshake"))??;
        tracing::debug!(
            %addr,
            outbound,
            version = version.version,
            user_agent = %version.user_agent,
            start_height = version.start_height,
            services = %version.services,
            "bitcoin peer handshake complete"
        );
        Ok(Peer {
            reader,
            writer,
            version,
        })
    }

    /// The message exchange of the handshake; returns the peer's `version`.
    async fn exchange_versions(
        reader: &mut PeerReader,
        writer: &mut PeerWriter,
        config: &PeerConfig,
        outbound: bool,
    ) -> Result<VersionMessage, PeerError> {
        if outbound {
            let ours = config.version_message(writer.addr, ServiceFlags::NONE);
            writer.send(NetworkMessage::Version(ours)).await?;
        }
        let mut theirs: Option<VersionMessage> = None;
        loop {
            let msg = read_message(&mut reader.stream, reader.magic).await?;
            match (msg, &theirs) {
                (NetworkMessage::Version(v), None) => {
                    if v.version < MIN_PEER_PROTOCOL_VERSION {
                        return Err(PeerError::ObsoleteVersion {
                            version: v.version,
                            min: MIN_PEER_PROTOCOL_VERSION,
                        });
                    }
                    if !outbound {
                        let ours = config.version_message(writer.addr, v.services);
                        writer.send(NetworkMessage::Version(ours)).await?;
                    }
                    writer.send(NetworkMessage::Verack).await?;
                    theirs = Some(v);
                }
                (NetworkMessage::Version(_), Some(_)) => {
                    return Err(PeerError::Misbehaving {
                        reason: "second version message".to_owned(),
                    });
                }
                (other, None) => {
                    return Err(PeerError::UnexpectedMessage {
                        expected: "version",
                        got: other.command().to_string(),
                    });
                }
                (NetworkMessage::Verack, Some(v)) => return Ok(v.clone()),
                // We never send these, so the features they offer are not negotiated.
                (NetworkMessage::WtxidRelay | NetworkMessage::SendAddrV2, Some(_)) => {}
                (NetworkMessage::Ping(nonce), Some(_)) => {
                    writer.send(NetworkMessage::Pong(nonce)).await?;
                }
                (other, Some(_)) => {
                    if reader.pending.len() >= MAX_EARLY_MESSAGES {
                        return Err(PeerError::Misbehaving {
                            reason: format!(
                                "more than {MAX_EARLY_MESSAGES} messages before verack"
                            ),
                        });
                    }
                    reader.pending.push_back(other);
                }
            }
        }
    }

    /// The peer's `version` message (services, user agent, start height, ...).
    pub fn version(&self) -> &VersionMessage {
        &self.version
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.reader.addr
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// As [`crate::write_message`].
    pub async fn send(&mut self, msg: NetworkMessage) -> Result<(), PeerError> {
        self.writer.send(msg).await
    }

    /// Receives the next message (first any kept from the handshake).
    ///
    /// # Errors
    ///
    /// As [`crate::read_message`]; after an error, drop the peer.
    pub async fn recv(&mut self) -> Result<NetworkMessage, PeerError> {
        self.reader.recv().await
    }

    /// Splits the connection so one task can read while another writes.
    pub fn into_split(self) -> (PeerReader, PeerWriter) {
        (self.reader, self.writer)
    }
}

impl PeerReader {
    /// Receives the next message (first any kept from the handshake).
    ///
    /// Cancel-safety: not cancel-safe (a cancelled read may leave a partial frame consumed); do
    /// not race it in `select!` against anything but the connection's own shutdown.
    ///
    /// # Errors
    ///
    /// As [`crate::read_message`]; after an error, drop the peer.
    pub async fn recv(&mut self) -> Result<NetworkMessage, PeerError> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(msg);
        }
        read_message(&mut self.stream, self.magic).await
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl PeerWriter {
    /// Sends one message.
    ///
    /// # Errors
    ///
    /// As [`crate::write_message`].
    pub async fn send(&mut self, msg: NetworkMessage) -> Result<(), PeerError> {
        write_message(&mut self.stream, self.magic, msg).await
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
