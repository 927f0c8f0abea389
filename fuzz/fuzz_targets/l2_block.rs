//! Followers decode blocks fetched from a sequencer or gossiped (`debug_getRawBlock`, format 3:
//! `rlp([header, [tx, …], seal, certificate?])`) and read trie nodes back from disk: block, transaction,
//! receipt and trie node decoding never panic, what decodes re-encodes to the same block, and
//! recovering a decoded block's seal and its certificate's signers never panics.
#![no_main]

use hemi_chain::{L2Block, L2Receipt, L2Tx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = L2Block::decode(data) {
        let encoded = block.encode();
        let again = L2Block::decode(&encoded).expect("re-decodes");
        assert_eq!(again, block);
        assert_eq!(again.encode(), encoded, "encoding is stable");
        let _ = block.signer(31337);
        if let Some(cert) = &block.certificate {
            let _ = cert.signers(31337, block.header.number, block.hash());
        }
    }
    if let Ok(tx) = L2Tx::decode_2718(data) {
        let _ = tx.recover_sender();
        assert_eq!(
            L2Tx::decode_2718(&tx.encoded_2718()).expect("re-decodes"),
            tx
        );
    }
    let _ = L2Receipt::decode_2718(data);
    let _ = hemi_trie::StoredNode::decode(data);
});
