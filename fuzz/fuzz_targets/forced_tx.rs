//! Forced-inclusion outputs (`hemi_chain::forced`): any script decodes or is refused without
//! panicking, and what decodes re-encodes to a script that decodes the same.
#![no_main]

use bitcoin::Script;
use hemi_chain::forced::{decode_forced_script, forced_script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((chain_id, raw)) = decode_forced_script(Script::from_bytes(data)) {
        let again = forced_script(chain_id, &raw);
        assert_eq!(decode_forced_script(&again), Some((chain_id, raw.clone())));
        // The carried bytes go to the L2 transaction decoder, which must not panic either.
        let _ = hemi_chain::L2Tx::decode_2718(&raw);
    }
});
