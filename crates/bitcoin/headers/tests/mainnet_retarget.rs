//! Real Bitcoin mainnet headers across two difficulty retargets (heights 32256, the first
//! difficulty increase in 2009, and 967680 in 2026) checked with the consensus functions the
//! header tree uses: proof of work, linkage, the retarget at the boundary, no change inside a
//! period, median-time-past; and the failures a one-bit change or a wrong `bits` must cause.

use bitcoin::block::Header;
use bitcoin::consensus::deserialize;
use bitcoin::{CompactTarget, Network};
use hemi_btc_headers::{
    check_proof_of_work, next_work_required, permitted_difficulty_transition, ChainParams,
};

struct Vectors {
    period_start: (u32, Header),
    headers: Vec<(u32, Header)>,
}

fn load(text: &str) -> Vectors {
    let mut rows = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (h, hex) = l.split_once(' ').expect("height and header");
            let bytes = hex::decode(hex.trim()).expect("hex");
            (
                h.parse::<u32>().expect("height"),
                deserialize::<Header>(&bytes).expect("80-byte header"),
            )
        });
    let period_start = rows.next().expect("period start");
    Vectors {
        period_start,
        headers: rows.collect(),
    }
}

fn median_time_past(prev: &[(u32, Header)]) -> u32 {
    let mut t: Vec<u32> = prev.iter().rev().take(11).map(|(_, h)| h.time).collect();
    t.sort_unstable();
    t[t.len() / 2]
}

fn check_real_chain(v: &Vectors, boundary: u32, boundary_hash: &str, old_bits: u32, new_bits: u32) {
    let params = ChainParams::new(Network::Bitcoin);
    for (i, (height, h)) in v.headers.iter().enumerate() {
        check_proof_of_work(h.block_hash(), h.bits, &params)
            .unwrap_or_else(|e| panic!("{height}: {e}"));
        if i == 0 {
            continue;
        }
        let (_, parent) = &v.headers[i - 1];
        assert_eq!(
            h.prev_blockhash,
            parent.block_hash(),
            "{height} does not link"
        );
        assert!(
            permitted_difficulty_transition(&params, *height, parent.bits, h.bits),
            "{height}"
        );
        if *height == boundary {
            let (_, first) = &v.period_start;
            let required =
                next_work_required(&params, parent.bits, parent.time, first.time, first.bits);
            assert_eq!(required, h.bits, "retarget at {height}");
            assert_eq!(parent.bits.to_consensus(), old_bits);
            assert_eq!(h.bits.to_consensus(), new_bits);
            assert_eq!(h.block_hash().to_string(), boundary_hash);
        } else {
            assert_eq!(
                h.bits, parent.bits,
                "bits change inside a period at {height}"
            );
        }
        if i >= 11 {
            let mtp = median_time_past(&v.headers[..i]);
            assert!(
                h.time > mtp,
                "{height}: time {} not after median time past {mtp}",
                h.time
            );
        }
    }
    // The period start is what the file says it is: 2016 blocks before the boundary.
    assert_eq!(v.period_start.0, boundary - 2016);
}

#[test]
fn real_mainnet_headers_around_the_first_retarget_at_32256_pass() {
    let v = load(include_str!("../testdata/mainnet-retarget-32256.txt"));
    check_real_chain(
        &v,
        32256,
        "000000004f2886a170adb7204cb0c7a824217dd24d11a74423d564c4e0904967",
        0x1d00ffff,
        0x1d00d86a,
    );
}

#[test]
fn real_mainnet_headers_around_the_retarget_at_967680_pass() {
    let v = load(include_str!("../testdata/mainnet-retarget-967680.txt"));
    check_real_chain(
        &v,
        967680,
        "0000000000000000000161354016172f2a377610d52dd46d0f68a919333458cd",
        0x1702355e,
        0x17021ec5,
    );
    // 967679's timestamp is earlier than 967678's: legal, only median-time-past is enforced.
    assert!(v.headers[1].1.time < v.headers[0].1.time);
}

#[test]
fn one_flipped_bit_in_a_real_header_fails_proof_of_work() {
    let params = ChainParams::new(Network::Bitcoin);
    for file in [
        include_str!("../testdata/mainnet-retarget-32256.txt"),
        include_str!("../testdata/mainnet-retarget-967680.txt"),
    ] {
        let v = load(file);
        let (_, h) = v.headers[2]; // the boundary header
        let bytes = bitcoin::consensus::serialize(&h);
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let m: Header = deserialize(&b).expect("80 bytes");
            assert!(
                check_proof_of_work(m.block_hash(), m.bits, &params).is_err(),
                "bit {bit} flipped still passes"
            );
        }
    }
}

#[test]
fn keeping_the_old_difficulty_across_the_boundary_is_a_wrong_bits() {
    let params = ChainParams::new(Network::Bitcoin);
    let v = load(include_str!("../testdata/mainnet-retarget-32256.txt"));
    let (_, parent) = v.headers[1];
    let (_, first) = v.period_start;
    let required = next_work_required(&params, parent.bits, parent.time, first.time, first.bits);
    assert_ne!(required, CompactTarget::from_consensus(0x1d00ffff));
    // A header claiming the old bits at 32256 asks for an easier target than consensus allows.
    assert!(!permitted_difficulty_transition(
        &params,
        32257,
        CompactTarget::from_consensus(0x1d00d86a),
        CompactTarget::from_consensus(0x1d00ffff)
    ));
}
