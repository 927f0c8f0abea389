//! The crate's one error type.

use bitcoin::p2p::Magic;

/// Everything that can go wrong reading, writing or handshaking with a Bitcoin peer.
///
/// [`PeerError::is_misbehaviour`] splits the variants into protocol violations (the peer sent
/// something no honest node sends: score or ban it) and plain transport trouble (drop the
/// connection, maybe retry).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame's network magic is not ours (wrong network, or a desynchronised stream).
    #[error("bad network magic: expected {expected}, got {got}")]
    BadMagic {
        /// Our network's magic.
        expected: Magic,
        /// The magic in the frame.
        got: Magic,
    },
    /// The frame header announces a payload larger than we accept.
    #[error("{command} message of {size} bytes exceeds the maximum of {max}")]
    Oversized {
        /// The frame's command.
        command: String,
        /// The announced payload length.
        size: u32,
        /// [`crate::MAX_MESSAGE_SIZE`].
        max: usize,
    },
    /// A message we were asked to send is larger than a peer accepts (our bug, not the peer's).
    #[error("refusing to send {command} message of {size} bytes: maximum is {max}")]
    OutgoingTooLarge {
        /// The message's command.
        command: String,
        /// Its encoded payload length.
        size: usize,
        /// [`crate::MAX_MESSAGE_SIZE`].
        max: usize,
    },
    /// The payload does not hash to the checksum in the frame header.
    #[error("bad checksum on {command} message")]
    BadChecksum {
        /// The frame's command.
        command: String,
    },
    /// The command is malformed, or the payload does not decode as that command's message.
    #[error("cannot decode {command} message: {reason}")]
    Decode {
        /// The frame's command (escaped if not printable).
        command: String,
        /// What the decoder said.
        reason: String,
    },
    /// The peer sent a message that is not allowed at this point (e.g. anything but `version`
    /// as its first message).
    #[error("unexpected {got} message, expected {expected}")]
    UnexpectedMessage {
        /// What the protocol allows here.
        expected: &'static str,
        /// The command the peer sent.
        got: String,
    },
    /// The peer speaks a protocol version older than we support.
    #[error("peer protocol version {version} is older than the minimum {min}")]
    ObsoleteVersion {
        /// The version the peer announced.
        version: u32,
        /// [`crate::MIN_PEER_PROTOCOL_VERSION`].
        min: u32,
    },
    /// An operation (connect, handshake) did not finish in time.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// Any other protocol violation.
    #[error("peer misbehaving: {reason}")]
    Misbehaving {
        /// What the peer did.
        reason: String,
    },
    /// The peer closed the connection (possibly in the middle of a message).
    #[error("peer disconnected")]
    Disconnected,
}

impl PeerError {
    /// Whether this error is a protocol violation by the peer (ban-worthy), as opposed to plain
    /// I/O trouble, a timeout, a disconnect or an old-but-honest peer.
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            PeerError::BadMagic { .. }
            | PeerError::Oversized { .. }
            | PeerError::BadChecksum { .. }
            | PeerError::Decode { .. }
            | PeerError::UnexpectedMessage { .. }
            | PeerError::Misbehaving { .. } => true,
            PeerError::Io(_)
            | PeerError::OutgoingTooLarge { .. }
            | PeerError::ObsoleteVersion { .. }
            | PeerError::Timeout(_)
            | PeerError::Disconnected => false,
        }
    }
}

/// Maps the I/O errors that just mean "the other side went away" to [`PeerError::Disconnected`].
pub(crate) fn from_io(e: std::io::Error) -> PeerError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => PeerError::Disconnected,
        _ => PeerError::Io(e),
    }
}
