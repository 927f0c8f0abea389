//! The Bitcoin-attributes calldata (`updateHvmState(bytes32,bytes[])`) every follower decodes
//! from blocks it did not make: never panics, and whatever it accepts re-encodes to the same
//! bytes (the decoder accepts only the canonical encoding).
#![no_main]

use hemi_hvm::attributes::{BtcAttributes, UPDATE_HVM_STATE_SELECTOR};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for input in [data.to_vec(), [UPDATE_HVM_STATE_SELECTOR.as_slice(), data].concat()] {
        if let Ok(a) = BtcAttributes::decode(&input) {
            assert_eq!(a.encode(), input, "accepted a non-canonical encoding");
        }
    }
});
