//! Unit tests: framing against hand-built frames, handshakes over loopback, checks, bans.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::CommandString;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::{BlockHash, Network, Txid};
use proptest::prelude::*;
use tokio::net::{TcpListener, TcpStream};

use crate::*;

const REGTEST: Magic = Magic::REGTEST;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A frame assembled by hand, with the checksum of `payload` unless `checksum` is given.
fn raw_frame(
    magic: Magic,
    command: &[u8],
    len: u32,
    payload: &[u8],
    checksum: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut frame = magic.to_bytes().to_vec();
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command);
    frame.extend_from_slice(&cmd);
    frame.extend_from_slice(&len.to_le_bytes());
    let sum = sha256d::Hash::hash(payload);
    frame.extend_from_slice(&checksum.unwrap_or([sum[0], sum[1], sum[2], sum[3]]));
    frame.extend_from_slice(payload);
    frame
}

fn good_frame(command: &[u8], payload: &[u8]) -> Vec<u8> {
    raw_frame(REGTEST, command, payload.len() as u32, payload, None)
}

async fn read_all(bytes: &[u8]) -> Result<NetworkMessage, PeerError> {
    let mut r = bytes;
    read_message(&mut r, REGTEST).await
}

/// `n` regtest headers, each building on the one before.
fn chained_headers(n: usize) -> Vec<Header> {
    let mut headers = vec![genesis_block(Network::Regtest).header];
    while headers.len() < n {
        let prev = headers[headers.len() - 1];
        headers.push(Header {
            prev_blockhash: prev.block_hash(),
            time: prev.time + 1,
            ..prev
        });
    }
    headers
}

/// One of every message type our client and regtest node send.
fn sample_messages() -> Vec<NetworkMessage> {
    let block = genesis_block(Network::Regtest);
    let tx = block.txdata[0].clone();
    let hash = BlockHash::from_byte_array([7; 32]);
    let txid = Txid::from_byte_array([9; 32]);
    let version = PeerConfig::new(Network::Regtest, 7).version_message(
        SocketAddr::from(([127, 0, 0, 1], 18444)),
        ServiceFlags::NONE,
    );
    vec![
        NetworkMessage::Version(version),
        NetworkMessage::Verack,
        NetworkMessage::Ping(u64::MAX),
        NetworkMessage::Pong(0),
        NetworkMessage::Inv(vec![Inventory::Block(hash), Inventory::Transaction(txid)]),
        NetworkMessage::GetData(vec![
            Inventory::WitnessBlock(hash),
            Inventory::WitnessTransaction(txid),
        ]),
        NetworkMessage::NotFound(vec![Inventory::Transaction(txid)]),
        NetworkMessage::GetHeaders(GetHeadersMessage::new(
            vec![hash, block.block_hash()],
            BlockHash::all_zeros(),
        )),
        NetworkMessage::GetBlocks(GetBlocksMessage::new(vec![hash], BlockHash::all_zeros())),
        NetworkMessage::Headers(chained_headers(3)),
        NetworkMessage::Headers(vec![]),
        NetworkMessage::Block(block),
        NetworkMessage::Tx(tx),
        NetworkMessage::SendHeaders,
        NetworkMessage::SendCmpct(SendCmpct {
            send_compact: false,
            version: 2,
        }),
        NetworkMessage::FeeFilter(1_000),
        NetworkMessage::WtxidRelay,
        NetworkMessage::SendAddrV2,
        NetworkMessage::GetAddr,
        NetworkMessage::MemPool,
        NetworkMessage::Addr(vec![(
            1_700_000_000,
            Address::new(
                &SocketAddr::from(([10, 0, 0, 1], 8333)),
                ServiceFlags::NETWORK,
            ),
        )]),
        NetworkMessage::AddrV2(vec![AddrV2Message {
            time: 1_700_000_000,
            services: ServiceFlags::WITNESS,
            addr: AddrV2::Ipv4(Ipv4Addr::new(10, 0, 0, 2)),
            port: 18444,
        }]),
        NetworkMessage::Unknown {
            command: command("sendtxrcncl"),
            payload: vec![1, 2, 3],
        },
    ]
}

fn command(name: &'static str) -> CommandString {
    CommandString::try_from_static(name).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- framing

#[test]
fn decode_frame_round_trips_every_message_we_send() -> TestResult {
    for msg in sample_messages() {
        let frame = encode_frame(REGTEST, &msg)?;
        let decoded = decode_frame(&frame, REGTEST)?;
        assert_eq!(decoded, Some((msg.clone(), frame.len())), "{}", msg.cmd());
        // Every strict prefix is "incomplete", never an error.
        for cut in 0..frame.len() {
            assert!(
                decode_frame(&frame[..cut], REGTEST)?.is_none(),
                "{} cut at {cut}",
                msg.cmd()
            );
        }
        // Trailing bytes (the next frame) are left alone.
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(
            decode_frame(&two, REGTEST)?.map(|(_, n)| n),
            Some(frame.len())
        );
    }
    Ok(())
}

#[tokio::test]
async fn read_message_reads_consecutive_frames() -> TestResult {
    let msgs = sample_messages();
    let mut bytes = Vec::new();
    for msg in &msgs {
        bytes.extend(encode_frame(REGTEST, msg)?);
    }
    let mut r = bytes.as_slice();
    for msg in &msgs {
        assert_eq!(&read_message(&mut r, REGTEST).await?, msg);
    }
    assert!(matches!(
        read_message(&mut r, REGTEST).await,
        Err(PeerError::Disconnected)
    ));
    Ok(())
}

#[test]
fn encoding_matches_rust_bitcoin_raw_network_message() -> TestResult {
    // An outside truth for our hand-built header: rust-bitcoin's own serialisation.
    for msg in sample_messages() {
        let theirs = bitcoin::consensus::serialize(&bitcoin::p2p::message::RawNetworkMessage::new(
            REGTEST,
            msg.clone(),
        ));
        assert_eq!(encode_frame(REGTEST, &msg)?, theirs, "{}", msg.cmd());
    }
    // And a known vector: regtest verack is magic, "verack", len 0, checksum of "" (5df6e0e2).
    assert_eq!(
        encode_frame(REGTEST, &NetworkMessage::Verack)?,
        hex::decode("fabfb5da76657261636b000000000000000000005df6e0e2")?
    );
    Ok(())
}

#[tokio::test]
async fn read_message_rejects_bad_magic() -> TestResult {
    let frame = encode_frame(Magic::BITCOIN, &NetworkMessage::Verack)?;
    let err = read_all(&frame).await.err();
    assert!(
        matches!(err, Some(PeerError::BadMagic { expected, got }) if expected == REGTEST && got == Magic::BITCOIN),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| e.is_misbehaviour()));
    assert!(matches!(
        decode_frame(&frame[..4], REGTEST),
        Err(PeerError::BadMagic { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn read_message_rejects_oversized_length_before_reading_payload() {
    // No payload follows: had the reader tried to allocate and read 4 GiB it would report a
    // disconnect (or run out of memory) instead of Oversized.
    for len in [u32::MAX, MAX_MESSAGE_SIZE as u32 + 1] {
        let frame = raw_frame(REGTEST, b"block", len, &[], None);
        let err = read_all(&frame).await.err();
        assert!(
            matches!(&err, Some(PeerError::Oversized { command, size, max }) if command == "block" && *size == len && *max == MAX_MESSAGE_SIZE),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.is_misbehaviour()));
        assert!(matches!(
            decode_frame(&frame, REGTEST),
            Err(PeerError::Oversized { .. })
        ));
    }
}

#[tokio::test]
async fn read_message_rejects_bad_checksum() {
    let payload = 42u64.to_le_bytes();
    let frame = raw_frame(REGTEST, b"ping", 8, &payload, Some([1, 2, 3, 4]));
    let err = read_all(&frame).await.err();
    assert!(
        matches!(&err, Some(PeerError::BadChecksum { command }) if command == "ping"),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| e.is_misbehaviour()));
    assert!(matches!(
        decode_frame(&frame, REGTEST),
        Err(PeerError::BadChecksum { .. })
    ));
}

#[tokio::test]
async fn read_message_rejects_garbage_payload_for_known_command() {
    let cases: [(&[u8], &[u8]); 6] = [
        (&b"ping"[..], &[1u8, 2, 3][..]), // too short
        (b"ping", &[0u8; 9]),             // trailing byte
        (b"version", &[0xff; 40]),        // truncated version
        (
            b"inv",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ), // absurd count
        (b"headers", &[0x01]),            // count without header
        (b"feefilter", &(-1i64).to_le_bytes()), // out of range
    ];
    for (command, payload) in cases {
        let frame = good_frame(command, payload);
        let err = read_all(&frame).await.err();
        let name = String::from_utf8_lossy(command).into_owned();
        assert!(
            matches!(&err, Some(PeerError::Decode { command, .. }) if *command == name),
            "{name}: {err:?}"
        );
        assert!(err.is_some_and(|e| e.is_misbehaviour()));
    }
}

#[tokio::test]
async fn read_message_rejects_malformed_command() {
    let commands: [&[u8]; 3] = [b"pi\x01g", b"ping\0x", "p\u{ef}ng".as_bytes()];
    for command in commands {
        let frame = good_frame(command, &[]);
        let err = read_all(&frame).await.err();
        assert!(
            matches!(err, Some(PeerError::Decode { .. })),
            "{command:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn read_message_reports_truncated_stream_as_disconnect() -> TestResult {
    let frame = encode_frame(REGTEST, &NetworkMessage::Ping(7))?;
    for cut in [0, 3, HEADER_SIZE - 1, HEADER_SIZE, frame.len() - 1] {
        let err = read_all(&frame[..cut]).await.err();
        assert!(
            matches!(err, Some(PeerError::Disconnected)),
            "cut at {cut}: {err:?}"
        );
        assert!(err.is_some_and(|e| !e.is_misbehaviour()));
    }
    Ok(())
}

#[tokio::test]
async fn read_message_accepts_a_maximum_size_payload_arriving_in_pieces() -> TestResult {
    let payload: Vec<u8> = (0..MAX_MESSAGE_SIZE).map(|i| i as u8).collect();
    let frame = good_frame(b"bigunknown", &payload);
    let (mut tx, mut rx) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in frame.chunks(100_003) {
            tx.write_all(chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let msg = read_message(&mut rx, REGTEST).await?;
    writer.await??;
    match msg {
        NetworkMessage::Unknown {
            command,
            payload: got,
        } => {
            assert_eq!(command.as_ref(), "bigunknown");
            assert!(got == payload);
        }
        other => panic!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn write_message_refuses_oversized_message() {
    let msg = NetworkMessage::Unknown {
        command: command("big"),
        payload: vec![0; MAX_MESSAGE_SIZE + 1],
    };
    let mut sink = Vec::new();
    let err = write_message(&mut sink, REGTEST, msg).await.err();
    assert!(
        matches!(err, Some(PeerError::OutgoingTooLarge { .. })),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| !e.is_misbehaviour()));
    assert!(sink.is_empty());
}

proptest! {
    #[test]
    fn decode_frame_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes, REGTEST);
        // The same bytes behind a valid magic get past the first check.
        let mut framed = REGTEST.to_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let _ = decode_frame(&framed, REGTEST);
    }

    #[test]
    fn decode_frame_never_panics_on_random_payloads_of_known_commands(
        command in prop::sample::select(vec![
            "version", "verack", "addr", "inv", "getdata", "notfound", "getblocks", "getheaders",
            "mempool", "tx", "block", "headers", "sendheaders", "getaddr", "ping", "pong",
            "merkleblock", "filterload", "filteradd", "filterclear", "getcfilters", "cfilter",
            "getcfheaders", "cfheaders", "getcfcheckpt", "cfcheckpt", "sendcmpct", "cmpctblock",
            "getblocktxn", "blocktxn", "alert", "reject", "feefilter", "wtxidrelay", "addrv2",
            "sendaddrv2",
        ]),
        // Fixed-size payloads (ping, feefilter, sendcmpct) only decode at their exact size.
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..1024),
        ],
    ) {
        let frame = good_frame(command.as_bytes(), &payload);
        match decode_frame(&frame, REGTEST) {
            Ok(Some((msg, n))) => {
                prop_assert_eq!(n, frame.len());
                // Whatever we accept re-encodes to something that decodes to the same message.
                let again = encode_frame(REGTEST, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let decoded = decode_frame(&again, REGTEST).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(decoded, Some((msg, again.len())));
            }
            Ok(None) => prop_assert!(false, "complete frame reported incomplete"),
            Err(e) => {
                let is_decode = matches!(e, PeerError::Decode { .. });
                prop_assert!(is_decode, "unexpected error {:?}", e);
            }
        }
    }

    #[test]
    fn inv_and_ping_round_trip(nonce in any::<u64>(), hashes in proptest::collection::vec(any::<[u8; 32]>(), 1..20)) {
        for msg in [
            NetworkMessage::Ping(nonce),
            NetworkMessage::Inv(hashes.iter().map(|h| Inventory::Block(BlockHash::from_byte_array(*h))).collect()),
        ] {
            let frame = encode_frame(REGTEST, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = decode_frame(&frame, REGTEST).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded, Some((msg, frame.len())));
        }
    }
}

// ---------------------------------------------------------------- handshake

async fn listener() -> Result<(TcpListener, SocketAddr), std::io::Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// An outbound and an inbound `Peer` connected to each other.
async fn peer_pair() -> Result<(Peer, Peer), Box<dyn std::error::Error>> {
    let (listener, addr) = listener().await?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        Peer::accept(stream, Network::Regtest, 200).await
    });
    let outbound = Peer::connect(addr, Network::Regtest, 100).await?;
    let inbound = server.await??;
    Ok((outbound, inbound))
}

#[tokio::test]
async fn handshake_between_outbound_and_inbound_peers() -> TestResult {
    let (outbound, inbound) = peer_pair().await?;
    for (peer, their_height) in [(&outbound, 200), (&inbound, 100)] {
        let v = peer.version();
        assert_eq!(v.version, PROTOCOL_VERSION);
        assert_eq!(v.user_agent, USER_AGENT);
        assert_eq!(v.start_height, their_height);
        assert!(v.relay);
        assert!(v
            .services
            .has(ServiceFlags::NETWORK | ServiceFlags::WITNESS));
    }
    // The outbound side told the inbound side which address it dialled.
    assert_eq!(outbound.addr().port(), inbound.version().receiver.port);
    assert_eq!(inbound.addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    Ok(())
}

#[tokio::test]
async fn ping_pong_round_trip_over_split_peers() -> TestResult {
    let (mut outbound, inbound) = peer_pair().await?;
    let (mut reader, mut writer) = inbound.into_split();
    let echo = tokio::spawn(async move {
        while let Ok(msg) = reader.recv().await {
            if let NetworkMessage::Ping(n) = msg {
                writer.send(NetworkMessage::Pong(n)).await?;
            }
        }
        Ok::<_, PeerError>(())
    });
    for nonce in [0, 1, u64::MAX] {
        outbound.send(NetworkMessage::Ping(nonce)).await?;
        assert_eq!(outbound.recv().await?, NetworkMessage::Pong(nonce));
    }
    drop(outbound);
    echo.await??;
    Ok(())
}

/// A hand-driven peer speaking raw frames, to play Bitcoin Core's part in a handshake.
struct RawPeer(TcpStream);

impl RawPeer {
    async fn send(&mut self, msg: NetworkMessage) -> Result<(), PeerError> {
        write_message(&mut self.0, REGTEST, msg).await
    }
    async fn recv(&mut self) -> Result<NetworkMessage, PeerError> {
        read_message(&mut self.0, REGTEST).await
    }
    fn version(height: i32) -> NetworkMessage {
        let mut v = PeerConfig::new(Network::Regtest, height).version_message(
            SocketAddr::from(([127, 0, 0, 1], 18444)),
            ServiceFlags::NONE,
        );
        v.user_agent = "/Satoshi:28.0.0/".to_owned();
        NetworkMessage::Version(v)
    }
}

#[tokio::test]
async fn outbound_handshake_tolerates_core_style_messages_before_verack() -> TestResult {
    let (listener, addr) = listener().await?;
    let core = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut core = RawPeer(stream);
        assert!(matches!(core.recv().await?, NetworkMessage::Version(_)));
        // What Bitcoin Core 28 sends to an outbound peer that connected to it.
        core.send(RawPeer::version(500)).await?;
        core.send(NetworkMessage::WtxidRelay).await?;
        core.send(NetworkMessage::SendAddrV2).await?;
        core.send(NetworkMessage::Ping(9)).await?;
        core.send(NetworkMessage::SendHeaders).await?;
        core.send(NetworkMessage::Verack).await?;
        core.send(NetworkMessage::FeeFilter(1000)).await?;
        assert_eq!(core.recv().await?, NetworkMessage::Verack);
        assert_eq!(core.recv().await?, NetworkMessage::Pong(9));
        Ok::<_, PeerError>(core)
    });
    let mut peer = Peer::connect(addr, Network::Regtest, 0).await?;
    assert_eq!(peer.version().start_height, 500);
    assert_eq!(peer.version().user_agent, "/Satoshi:28.0.0/");
    // Early service messages are delivered in order, then the stream continues.
    assert_eq!(peer.recv().await?, NetworkMessage::SendHeaders);
    assert_eq!(peer.recv().await?, NetworkMessage::FeeFilter(1000));
    core.await??;
    Ok(())
}

#[tokio::test]
async fn inbound_handshake_answers_core_style_addnode_connection() -> TestResult {
    let (listener, addr) = listener().await?;
    let core = tokio::spawn(async move {
        let mut core = RawPeer(TcpStream::connect(addr).await?);
        core.send(RawPeer::version(300)).await?;
        let NetworkMessage::Version(ours) = core.recv().await? else {
            return Err(PeerError::Misbehaving {
                reason: "no version".into(),
            });
        };
        assert_eq!(core.recv().await?, NetworkMessage::Verack);
        core.send(NetworkMessage::WtxidRelay).await?;
        core.send(NetworkMessage::SendAddrV2).await?;
        core.send(NetworkMessage::Verack).await?;
        core.send(NetworkMessage::SendCmpct(SendCmpct {
            send_compact: false,
            version: 2,
        }))
        .await?;
        Ok(ours)
    });
    let (stream, _) = listener.accept().await?;
    let mut peer = Peer::accept(stream, Network::Regtest, 42).await?;
    let ours = core.await??;
    assert_eq!(ours.start_height, 42);
    assert_eq!(ours.version, PROTOCOL_VERSION);
    assert_eq!(peer.version().start_height, 300);
    assert_eq!(
        peer.recv().await?,
        NetworkMessage::SendCmpct(SendCmpct {
            send_compact: false,
            version: 2
        })
    );
    Ok(())
}

#[tokio::test]
async fn handshake_rejects_a_first_message_other_than_version() -> TestResult {
    let (listener, addr) = listener().await?;
    let client = tokio::spawn(async move {
        let mut raw = RawPeer(TcpStream::connect(addr).await?);
        raw.send(NetworkMessage::Ping(1)).await
    });
    let (stream, _) = listener.accept().await?;
    let err = Peer::accept(stream, Network::Regtest, 0).await.err();
    assert!(
        matches!(&err, Some(PeerError::UnexpectedMessage { expected: "version", got }) if got == "ping"),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| e.is_misbehaviour()));
    client.await??;
    Ok(())
}

#[tokio::test]
async fn handshake_rejects_obsolete_and_wrong_network_peers() -> TestResult {
    let (listener, addr) = listener().await?;
    let client = tokio::spawn(async move {
        let mut raw = RawPeer(TcpStream::connect(addr).await?);
        let mut v = PeerConfig::new(Network::Regtest, 0).version_message(addr, ServiceFlags::NONE);
        v.version = 209;
        raw.send(NetworkMessage::Version(v)).await?;
        let mut mainnet = TcpStream::connect(addr).await?;
        write_message(&mut mainnet, Magic::BITCOIN, RawPeer::version(0)).await
    });
    let (stream, _) = listener.accept().await?;
    let err = Peer::accept(stream, Network::Regtest, 0).await.err();
    assert!(
        matches!(err, Some(PeerError::ObsoleteVersion { version: 209, .. })),
        "{err:?}"
    );
    let (stream, _) = listener.accept().await?;
    let err = Peer::accept(stream, Network::Regtest, 0).await.err();
    assert!(matches!(err, Some(PeerError::BadMagic { .. })), "{err:?}");
    client.await??;
    Ok(())
}

#[tokio::test]
async fn handshake_times_out_on_a_silent_peer() -> TestResult {
    let (listener, addr) = listener().await?;
    // The accepted stream is the task's output, kept open until the task is joined.
    let silent = tokio::spawn(async move { listener.accept().await });
    let config = PeerConfig {
        handshake_timeout: Duration::from_millis(200),
        ..PeerConfig::new(Network::Regtest, 0)
    };
    let err = Peer::connect_with(addr, &config).await.err();
    assert!(
        matches!(err, Some(PeerError::Timeout("handshake"))),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| !e.is_misbehaviour()));
    drop(silent.await??);
    Ok(())
}

// ---------------------------------------------------------------- checks

#[test]
fn check_message_flags_empty_inv_and_getdata() {
    assert!(check_message(&NetworkMessage::Inv(vec![])).is_err());
    assert!(check_message(&NetworkMessage::GetData(vec![])).is_err());
    let one = vec![Inventory::Block(BlockHash::all_zeros())];
    assert_eq!(check_message(&NetworkMessage::Inv(one.clone())), Ok(()));
    assert_eq!(check_message(&NetworkMessage::GetData(one)), Ok(()));
}

#[test]
fn check_message_flags_oversized_inventories_and_headers() {
    let inv = vec![Inventory::Block(BlockHash::all_zeros()); MAX_INV_ENTRIES + 1];
    assert!(check_message(&NetworkMessage::Inv(inv.clone())).is_err());
    assert!(check_message(&NetworkMessage::GetData(inv.clone())).is_err());
    assert!(check_message(&NetworkMessage::NotFound(inv)).is_err());
    assert_eq!(
        check_message(&NetworkMessage::Headers(chained_headers(
            MAX_HEADERS_ENTRIES
        ))),
        Ok(())
    );
    assert!(check_message(&NetworkMessage::Headers(chained_headers(
        MAX_HEADERS_ENTRIES + 1
    )))
    .is_err());
    let locator = GetHeadersMessage::new(
        vec![BlockHash::all_zeros(); MAX_LOCATOR_ENTRIES + 1],
        BlockHash::all_zeros(),
    );
    assert!(check_message(&NetworkMessage::GetHeaders(locator)).is_err());
}

#[test]
fn check_message_flags_unconnecting_headers() {
    assert_eq!(check_message(&NetworkMessage::Headers(vec![])), Ok(()));
    assert_eq!(
        check_message(&NetworkMessage::Headers(chained_headers(5))),
        Ok(())
    );
    let mut headers = chained_headers(5);
    headers.swap(2, 3);
    let reason = check_message(&NetworkMessage::Headers(headers)).err();
    assert!(reason.is_some_and(|r| r.contains("not connected")));
    assert_eq!(check_message(&NetworkMessage::Ping(1)), Ok(()));
}

// ---------------------------------------------------------------- bans

#[test]
fn ban_list_bans_at_score_100() {
    let bans = BanList::default();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    assert!(!bans.misbehaving(ip, 50, "a"));
    assert!(!bans.misbehaving(ip, 49, "b"));
    assert!(!bans.is_banned(ip));
    let clone = bans.clone();
    assert!(clone.misbehaving(ip, 1, "empty inv"));
    assert!(bans.is_banned(ip));
    // IPv4-mapped IPv6 is the same peer.
    assert!(bans.is_banned(IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped())));
    assert_eq!(bans.banned(), vec![(ip, "empty inv".to_owned())]);
    assert!(!bans.is_banned(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4))));
    bans.clear();
    assert!(!bans.is_banned(ip));
    assert!(bans.banned().is_empty());
}

#[test]
fn ban_list_direct_ban_and_expiry() {
    let bans = BanList::default();
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    bans.ban(ip, "manual");
    assert!(bans.is_banned(ip));
    assert!(bans.misbehaving(ip, 0, "already banned"));

    let expired = BanList::with_duration(Duration::ZERO);
    expired.ban(ip, "gone at once");
    assert!(!expired.is_banned(ip));
    assert!(expired.banned().is_empty());
    expired.misbehaving(ip, u32::MAX, "saturates");
    assert!(!expired.is_banned(ip));
}
