//! What custodians read from each other and from the coordinator: a peers file
//! (`Peers::parse`), a signed envelope (`Envelope::open`), a sealed round-2 box
//! (`identity::open`) and a signing request (`SignRequest::from_wire`) never panic on any
//! bytes; an accepted peers file reads back the same from `to_toml`, and an accepted request
//! round-trips through its wire form and gives one sighash per input or a clear error.
#![no_main]

use hemi_custodian::identity::{open, Sealed};
use hemi_custodian::request::WireSignRequest;
use hemi_custodian::{Envelope, Peers, SignRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(peers) = Peers::parse(text) {
            let again = Peers::parse(&peers.to_toml()).expect("to_toml reads back");
            assert_eq!(again.to_toml(), peers.to_toml());
        }
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(data) {
        if let Ok(key) = bitcoin::XOnlyPublicKey::from_slice(&hemi_tunnel::NUMS_KEY) {
            let _ = envelope.open::<serde_json::Value>("custodian_sign", &key);
        }
    }
    if let Ok(sealed) = serde_json::from_slice::<Sealed>(data) {
        let _ = open(&[7u8; 32], b"aad", &sealed, "fuzz");
    }
    if let Ok(wire) = serde_json::from_slice::<WireSignRequest>(data) {
        if let Ok(request) = SignRequest::from_wire(&wire) {
            let back = SignRequest::from_wire(&request.to_wire()).expect("round trip");
            assert_eq!(back.to_wire(), request.to_wire());
            if let Ok(hashes) = request.sighashes() {
                assert_eq!(hashes.len(), request.to_wire().leaves.len());
            }
        }
    }
});
