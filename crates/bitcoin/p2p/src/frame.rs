//! Message framing: the 24-byte header (magic, command, length, checksum) around a payload.
//!
//! The header is parsed here, by hand, so that the magic, the command and the announced length
//! are checked before a single payload byte is read or allocated; the payload itself is decoded by
//! rust-bitcoin (`RawNetworkMessage`), which also verifies the checksum.

use bitcoin::consensus::encode::{self, Encodable};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::Magic;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{from_io, PeerError};

/// Largest payload we read or send: Bitcoin Core's `MAX_PROTOCOL_MESSAGE_LENGTH`. A block of the
/// maximum 4M weight units serialises to at most 4,000,000 bytes, so every valid block fits.
pub const MAX_MESSAGE_SIZE: usize = 4_000_000;

/// Size of the frame header: magic (4) ‖ command (12) ‖ payload length (4, LE) ‖ checksum (4).
pub const HEADER_SIZE: usize = 24;

/// The first read of a payload allocates at most this much; the buffer then grows (doubling, capped
/// at the announced length) only as bytes actually arrive, so a peer that announces 4 MB and sends
/// nothing costs us 256 KiB, not 4 MB (Bitcoin Core does the same).
const FIRST_CHUNK: usize = 256 * 1024;

/// What the header says, once checked.
struct FrameHeader {
    /// The command, for error messages (printable ASCII, checked).
    command: String,
    /// Payload length, at most [`MAX_MESSAGE_SIZE`].
    len: usize,
}

/// Checks a frame header: magic, command syntax (Bitcoin Core's rule: printable ASCII, then only
/// NUL padding), and the announced length against [`MAX_MESSAGE_SIZE`].
fn parse_header(h: &[u8; HEADER_SIZE], magic: Magic) -> Result<FrameHeader, PeerError> {
    let got = Magic::from_bytes([h[0], h[1], h[2], h[3]]);
    if got != magic {
        return Err(PeerError::BadMagic {
            expected: magic,
            got,
        });
    }
    let raw_command = &h[4..16];
    let name_len = raw_command
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(raw_command.len());
    let (name, padding) = raw_command.split_at(name_len);
    let command = name.escape_ascii().to_string();
    if !name.iter().all(|b| (0x20..=0x7e).contains(b)) || padding.iter().any(|&b| b != 0) {
        return Err(PeerError::Decode {
            command: raw_command.escape_ascii().to_string(),
            reason: "command is not NUL-padded printable ASCII".to_owned(),
        });
    }
    let size = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE_SIZE {
        return Err(PeerError::Oversized {
            command,
            size,
            max: MAX_MESSAGE_SIZE,
        });
    }
    Ok(FrameHeader { command, len })
}

/// Decodes a complete, header-checked frame (header and payload) with rust-bitcoin.
fn decode_checked(frame: &[u8], command: String) -> Result<NetworkMessage, PeerError> {
    match encode::deserialize::<RawNetworkMessage>(frame) {
        Ok(raw) => Ok(raw.into_payload()),
        Err(encode::Error::InvalidChecksum { .. }) => Err(PeerError::BadChecksum { command }),
        Err(e) => Err(PeerError::Decode {
            command,
            reason: e.to_string(),
        }),
    }
}

/// Reads one framed message from `r`.
///
/// Checks, in order: the magic, the command, the announced length (against
/// [`MAX_MESSAGE_SIZE`], before any payload byte is allocated), the checksum, and that the payload
/// decodes completely as that command's message. Commands rust-bitcoin does not know come back as
/// [`NetworkMessage::Unknown`]. Never panics; the payload buffer grows with the bytes received and
/// never beyond the announced length.
///
/// # Errors
///
/// [`PeerError::BadMagic`], [`PeerError::Oversized`], [`PeerError::BadChecksum`],
/// [`PeerError::Decode`] for malformed frames; [`PeerError::Disconnected`] if the stream ends
/// (even mid-frame); [`PeerError::Io`] for other socket errors. After any error the stream may be
/// mid-frame: drop the connection.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    magic: Magic,
) -> Result<NetworkMessage, PeerError> {
    let mut header = [0u8; HEADER_SIZE];
    r.read_exact(&mut header).await.map_err(from_io)?;
    let h = parse_header(&header, magic)?;

    let total = HEADER_SIZE + h.len;
    let mut frame = Vec::with_capacity(total.min(HEADER_SIZE + FIRST_CHUNK));
    frame.extend_from_slice(&header);
    while frame.len() < total {
        if frame.len() == frame.capacity() {
            let target = (frame.capacity() * 2).min(total);
            frame.reserve_exact(target - frame.len());
        }
        let start = frame.len();
        let end = frame.capacity().min(total);
        frame.resize(end, 0);
        r.read_exact(&mut frame[start..end])
            .await
            .map_err(from_io)?;
    }
    decode_checked(&frame, h.command)
}

/// Decodes one frame from the front of `buf` (for fuzzing and for callers that buffer
/// themselves).
///
/// Returns `Ok(None)` if `buf` holds only part of a frame, or `Ok(Some((message, consumed)))`
/// where `consumed` is the frame's length in bytes. Applies the same checks as [`read_message`],
/// and rejects a wrong magic or an oversized length as soon as the header shows it.
///
/// # Errors
///
/// [`PeerError::BadMagic`], [`PeerError::Oversized`], [`PeerError::BadChecksum`],
/// [`PeerError::Decode`].
pub fn decode_frame(
    buf: &[u8],
    magic: Magic,
) -> Result<Option<(NetworkMessage, usize)>, PeerError> {
    if let Some(&[a, b, c, d]) = buf.first_chunk::<4>() {
        let got = Magic::from_bytes([a, b, c, d]);
        if got != magic {
            return Err(PeerError::BadMagic {
                expected: magic,
                got,
            });
        }
    }
    let Some(header) = buf.first_chunk::<HEADER_SIZE>() else {
        return Ok(None);
    };
    let h = parse_header(header, magic)?;
    let total = HEADER_SIZE + h.len;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    decode_checked(frame, h.command).map(|msg| Some((msg, total)))
}

/// Encodes `msg` as one frame for the network with `magic`.
///
/// # Errors
///
/// [`PeerError::OutgoingTooLarge`] if the payload exceeds [`MAX_MESSAGE_SIZE`] (a peer would
/// drop us for it).
pub fn encode_frame(magic: Magic, msg: &NetworkMessage) -> Result<Vec<u8>, PeerError> {
    let mut frame = vec![0u8; HEADER_SIZE];
    msg.consensus_encode(&mut frame)
        .map_err(|e| PeerError::Io(e.into()))?;
    let size = frame.len() - HEADER_SIZE;
    let command = msg.command();
    let len = match u32::try_from(size) {
        Ok(len) if size <= MAX_MESSAGE_SIZE => len,
        _ => {
            return Err(PeerError::OutgoingTooLarge {
                command: command.to_string(),
                size,
                max: MAX_MESSAGE_SIZE,
            })
        }
    };
    let checksum = sha256d::Hash::hash(&frame[HEADER_SIZE..]);

    let mut header = [0u8; HEADER_SIZE];
    header[..4].copy_from_slice(&magic.to_bytes());
    // A `CommandString` is at most 12 bytes; zip() makes that impossible to overrun anyway.
    for (dst, src) in header[4..16].iter_mut().zip(command.as_ref().as_bytes()) {
        *dst = *src;
    }
    header[16..20].copy_from_slice(&len.to_le_bytes());
    header[20..24].copy_from_slice(&checksum.as_byte_array()[..4]);
    frame[..HEADER_SIZE].copy_from_slice(&header);
    Ok(frame)
}

/// Writes `msg` as one frame and flushes.
///
/// # Errors
///
/// [`PeerError::OutgoingTooLarge`] (nothing is written), [`PeerError::Disconnected`] if the peer
/// has gone, [`PeerError::Io`] for other socket errors.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    magic: Magic,
    msg: NetworkMessage,
) -> Result<(), PeerError> {
    let frame = encode_frame(magic, &msg)?;
    w.write_all(&frame).await.map_err(from_io)?;
    w.flush().await.map_err(from_io)
}
