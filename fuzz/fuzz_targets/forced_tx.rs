//! Forced-inclusion carriers (`hemi_chain::forced`): any script decodes or is refused without
//! panicking, as an OP_RETURN output and as a tapscript leaf, and what decodes re-encodes to a
//! script that decodes the same.
#![no_main]

use bitcoin::secp256k1::XOnlyPublicKey;
use bitcoin::Script;
use hemi_chain::forced::{decode_envelopes, decode_forced_script, envelope_leaf, forced_script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let script = Script::from_bytes(data);
    if let Some((chain_id, raw)) = decode_forced_script(script) {
        let again = forced_script(chain_id, &raw);
        assert_eq!(decode_forced_script(&again), Some((chain_id, raw.clone())));
        // The carried bytes go to the L2 transaction decoder, which must not panic either.
        let _ = hemi_chain::L2Tx::decode_2718(&raw);
    }
    // The generator point's x coordinate: a valid x-only key.
    let key = XOnlyPublicKey::from_slice(&[
        0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
        0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8,
        0x17, 0x98,
    ])
    .expect("G.x");
    for (chain_id, raw) in decode_envelopes(script) {
        let again = envelope_leaf(&key, chain_id, &raw);
        assert_eq!(decode_envelopes(&again), vec![(chain_id, raw.clone())]);
        let _ = hemi_chain::L2Tx::decode_2718(&raw);
    }
});
