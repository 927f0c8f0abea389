//! The sequencer set's consensus messages (`hemi_consensus::codec`, borsh) arrive from any
//! peer of the consensus network and are read back from the write-ahead log: decoding never
//! panics, and what decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hemi_consensus::codec::check_round_trips(data);
});
