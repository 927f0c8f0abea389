//! Bitcoin P2P wire protocol over tokio: framing, the version handshake, message sanity checks and
//! misbehaviour bans.
//!
//! Everything Hemi knows about Bitcoin enters through this crate. In the chain of trust
//! (**Bitcoin** → hVM → sequencer → chain → PoP → finality) it is the first link: the Bitcoin client
//! uses it to talk to Bitcoin Core (outbound), and the embedded regtest node uses it to serve
//! peers, Bitcoin Core among them (inbound, e.g. via `addnode`). It treats every byte from the
//! network as hostile: frames are size-checked before their payload is allocated, decoding never
//! panics, and protocol violations are told apart from plain I/O trouble
//! ([`PeerError::is_misbehaviour`]) so a service can score and ban ([`BanList`]).
//!
//! Message types are rust-bitcoin's ([`bitcoin::p2p`]); this crate adds:
//! - framing: [`read_message`], [`write_message`], and the pure [`decode_frame`] /
//!   [`encode_frame`] (fuzzed in `fuzz/fuzz_targets/p2p_frame.rs`);
//! - [`Peer`]: a handshaken connection ([`Peer::connect`] outbound, [`Peer::accept`] inbound),
//!   splittable into [`PeerReader`] and [`PeerWriter`];
//! - [`check_message`]: stateless checks (empty or oversized `inv`, unconnected `headers`, ...);
//! - [`BanList`]: Bitcoin Core-style misbehaviour scores, 100 points ban an IP for 24 hours.

mod ban;
mod check;
mod error;
mod frame;
mod peer;

pub use ban::{BanList, BAN_THRESHOLD, DEFAULT_BAN_DURATION};
pub use check::{
    check_message, MAX_ADDR_ENTRIES, MAX_HEADERS_ENTRIES, MAX_INV_ENTRIES, MAX_LOCATOR_ENTRIES,
};
pub use error::PeerError;
pub use frame::{
    decode_frame, encode_frame, read_message, write_message, HEADER_SIZE, MAX_MESSAGE_SIZE,
};
pub use peer::{
    Peer, PeerConfig, PeerReader, PeerWriter, HANDSHAKE_TIMEOUT, MIN_PEER_PROTOCOL_VERSION,
    PROTOCOL_VERSION, USER_AGENT,
};

// The rust-bitcoin types of this crate's API, so users need not spell the module paths.
pub use bitcoin::p2p::message::NetworkMessage;
pub use bitcoin::p2p::message_network::VersionMessage;
pub use bitcoin::p2p::{Magic, ServiceFlags};

#[cfg(test)]
mod tests;
