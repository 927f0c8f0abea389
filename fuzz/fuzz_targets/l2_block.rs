//! Followers decode blocks fetched from a sequencer (`debug_getRawBlock`) and read trie nodes
//! back from disk: block, transaction, receipt and trie node decoding never panic, and what
//! decodes re-encodes to the same bytes.
#![no_main]

use hemi_chain::{L2Block, L2Receipt, L2Tx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = L2Block::decode(data) {
        let again = L2Block::decode(&block.encode()).expect("re-decodes");
        assert_eq!(again, block);
        let _ = hemi_chain::block::signer(&block.header);
    }
    if let Ok(tx) = L2Tx::decode_2718(data) {
        let _ = tx.recover_sender();
        assert_eq!(L2Tx::decode_2718(&tx.encoded_2718()).expect("re-decodes"), tx);
    }
    let _ = L2Receipt::decode_2718(data);
    let _ = hemi_trie::StoredNode::decode(data);
});
