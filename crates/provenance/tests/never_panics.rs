//! The verifier on arbitrary bytes in every binary field, and the parser on arbitrary text:
//! an error naming a link, never a panic (the fuzz target `provenance` does the same, longer).

use alloy_primitives::{Address, Bytes};
use hemi_provenance::{
    verify, Anchor, BitcoinInclusion, Deposit, Mint, Provenance, VerifyOptions, VERSION,
    VERSION_SET,
};
use proptest::prelude::*;

/// A single key's document, or (when part 12 has an odd length) a set's with part 12 as its
/// certificate.
fn doc(p: &[Vec<u8>]) -> Provenance {
    let set = p[12].len() % 2 == 1;
    Provenance {
        version: if set { VERSION_SET } else { VERSION }.into(),
        validators: if set {
            vec![Address::ZERO, Address::repeat_byte(1)]
        } else {
            vec![]
        },
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
            certificate: set.then(|| Bytes::from(p[12].clone())),
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
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_fields_are_refused_not_panicked_on(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 13)) {
        let d = doc(&parts);
        prop_assert!(verify(&d, &VerifyOptions::default()).is_err());
        prop_assert_eq!(Provenance::from_json(&d.to_json()).ok(), Some(d));
    }

    #[test]
    fn arbitrary_text_is_a_document_error(text in ".{0,300}") {
        prop_assert!(Provenance::from_json(&text).is_err());
    }
}
