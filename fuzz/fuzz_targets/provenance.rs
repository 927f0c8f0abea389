//! Provenance documents: `Provenance::from_json` on any bytes and `verify` on any document
//! never panic. The bytes are also cut into the document's binary fields (transactions,
//! merkleblocks, headers, L2 header, seal or certificate, receipt, trie proof, keystone), so every decoder the
//! verifier runs meets arbitrary input, not only JSON the parser refuses.
#![no_main]

use alloy_primitives::{Address, Bytes};
use hemi_provenance::{
    verify, Anchor, BitcoinInclusion, Deposit, Mint, Provenance, VerifyOptions, VERSION,
    VERSION_SET,
};
use libfuzzer_sys::fuzz_target;

fn cut(data: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let step = (data.len() / parts).max(1);
    (0..parts)
        .map(|i| data.iter().skip(i * step).take(step).copied().collect())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = Provenance::from_json(text) {
            let _ = verify(&doc, &VerifyOptions::default());
        }
    }
    let p = cut(data, 12);
    // An odd first byte makes it a set's document (v2), the seal's bytes its certificate.
    let set = data.first().is_some_and(|b| b % 2 == 1);
    let doc = Provenance {
        version: if set { VERSION_SET } else { VERSION }.into(),
        validators: if set { vec![Address::ZERO] } else { vec![] },
        network: "regtest".into(),
        chain_id: 31337,
        sequencer: Address::ZERO,
        tunnel_manager: Address::ZERO,
        deposit: Deposit {
            txid: "00".repeat(32),
            vout: 0,
            vault_script: p[0].clone(),
            inclusion: BitcoinInclusion {
                tx: p[1].clone(),
                merkle_block: p[2].clone(),
                headers: vec![p[3].clone()],
            },
        },
        mint: Mint {
            header: Bytes::from(p[4].clone()),
            seal: Bytes::from(p[5].clone()),
            certificate: set.then(|| Bytes::from(p[5].clone())),
            receipt_index: 0,
            receipt: Bytes::from(p[6].clone()),
            receipt_proof: vec![Bytes::from(p[7].clone())],
            log_index: 0,
            headers: vec![Bytes::from(p[8].clone())],
        },
        anchor: Anchor {
            keystone: p[9].clone(),
            pop_txid: "00".repeat(32),
            inclusion: BitcoinInclusion {
                tx: p[10].clone(),
                merkle_block: p[11].clone(),
                headers: vec![],
            },
        },
    };
    let _ = verify(&doc, &VerifyOptions::default());
    // A document survives its own JSON.
    assert_eq!(Provenance::from_json(&doc.to_json()).ok().as_ref(), Some(&doc));
});
