//! Bitcoin P2P framing: `decode_frame` on arbitrary bytes must never panic, and whatever it
//! accepts must survive an encode/decode round trip unchanged. (Not byte-exact: a bool encoded as
//! 2 decodes as `true` and re-encodes as 1.)
#![no_main]

use bitcoin::hashes::{sha256d, Hash};
use hemi_btc_p2p::{decode_frame, encode_frame, Magic, HEADER_SIZE};
use libfuzzer_sys::fuzz_target;

/// Every command rust-bitcoin decodes, plus one it does not.
const COMMANDS: &[&str] = &[
    "version",
    "verack",
    "addr",
    "inv",
    "getdata",
    "notfound",
    "getblocks",
    "getheaders",
    "mempool",
    "tx",
    "block",
    "headers",
    "sendheaders",
    "getaddr",
    "ping",
    "pong",
    "merkleblock",
    "filterload",
    "filteradd",
    "filterclear",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "alert",
    "reject",
    "feefilter",
    "wtxidrelay",
    "addrv2",
    "sendaddrv2",
    "sendtxrcncl",
];

/// A well-formed frame (right magic, length and checksum) around `payload`, so that the fuzzer
/// reaches each command's payload decoder without having to guess a checksum.
fn checked_frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = Magic::REGTEST.to_bytes().to_vec();
    let mut cmd = [0u8; 12];
    for (dst, src) in cmd.iter_mut().zip(command.as_bytes()) {
        *dst = *src;
    }
    frame.extend_from_slice(&cmd);
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    frame.extend_from_slice(&sha256d::Hash::hash(payload)[..4]);
    frame.extend_from_slice(payload);
    debug_assert_eq!(frame.len(), HEADER_SIZE + payload.len());
    frame
}

fn check(buf: &[u8]) {
    let Ok(Some((msg, consumed))) = decode_frame(buf, Magic::REGTEST) else {
        return;
    };
    assert!(consumed <= buf.len());
    let Ok(frame) = encode_frame(Magic::REGTEST, &msg) else {
        return;
    };
    match decode_frame(&frame, Magic::REGTEST) {
        Ok(Some((again, n))) => {
            assert_eq!(n, frame.len());
            assert_eq!(again, msg, "{} does not round-trip", msg.cmd());
        }
        other => panic!("{} re-encoding does not decode: {other:?}", msg.cmd()),
    }
}

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a stream (mostly exercises the header checks) ...
    check(data);
    // ... and the tail as the payload of a valid frame whose command the first byte picks.
    if let Some((&selector, payload)) = data.split_first() {
        let command = COMMANDS[usize::from(selector) % COMMANDS.len()];
        check(&checked_frame(command, payload));
    }
});
