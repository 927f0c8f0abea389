//! Proof-of-work and difficulty rules, as Bitcoin Core's `pow.cpp`.
//!
//! The functions here are context-free: they take the values Core reads from `CBlockIndex`
//! rather than a tree, so they can be checked against Core's own test vectors. The tree
//! ([`HeaderTree::required_bits`](crate::HeaderTree::required_bits)) supplies the context.

use bitcoin::block::Header;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::BlockHash;

use crate::u256::U256;
use crate::{ChainParams, HeaderError};

/// Hash of a header (SHA-256d of its 80-byte serialization).
///
/// Same value as [`Header::block_hash`], computed from a stack buffer in one call, which is
/// measurably faster than streaming the fields into the hash engine.
pub fn header_hash(header: &Header) -> BlockHash {
    let mut buf = [0u8; 80];
    buf[0..4].copy_from_slice(&header.version.to_consensus().to_le_bytes());
    buf[4..36].copy_from_slice(header.prev_blockhash.as_byte_array());
    buf[36..68].copy_from_slice(header.merkle_root.as_byte_array());
    buf[68..72].copy_from_slice(&header.time.to_le_bytes());
    buf[72..76].copy_from_slice(&header.bits.to_consensus().to_le_bytes());
    buf[76..80].copy_from_slice(&header.nonce.to_le_bytes());
    BlockHash::from_raw_hash(sha256d::Hash::hash(&buf))
}

pub(crate) fn target_to_u256(t: Target) -> U256 {
    U256::from_be_bytes(t.to_be_bytes())
}

pub(crate) fn u256_to_target(v: U256) -> Target {
    Target::from_be_bytes(v.to_be_bytes())
}

pub(crate) fn work_to_u256(w: Work) -> U256 {
    U256::from_be_bytes(w.to_be_bytes())
}

pub(crate) fn u256_to_work(v: U256) -> Work {
    Work::from_be_bytes(v.to_be_bytes())
}

/// Core's `DeriveTarget` on internal integers.
pub(crate) fn derive_target_u256(bits: u32, pow_limit: &U256) -> Option<U256> {
    let c = U256::from_compact(bits);
    if c.negative || c.overflow || c.value.is_zero() || c.value > *pow_limit {
        None
    } else {
        Some(c.value)
    }
}

/// Decodes `bits` into a target, rejecting negative, zero, overflowing targets and targets
/// easier than `pow_limit` (Core's `DeriveTarget`).
pub fn derive_target(bits: CompactTarget, pow_limit: Target) -> Option<Target> {
    derive_target_u256(bits.to_consensus(), &target_to_u256(pow_limit)).map(u256_to_target)
}

/// Context-free proof-of-work check of a header whose hash is `hash` (Core's
/// `CheckProofOfWork`).
///
/// # Errors
///
/// [`HeaderError::BadTarget`] if `bits` is not a valid target under `params.pow_limit`,
/// [`HeaderError::BadProofOfWork`] if `hash` is above the target.
pub fn check_proof_of_work(
    hash: BlockHash,
    bits: CompactTarget,
    params: &ChainParams,
) -> Result<(), HeaderError> {
    let limit = target_to_u256(params.pow_limit);
    check_pow_u256(hash, bits, &limit)
}

pub(crate) fn check_pow_u256(
    hash: BlockHash,
    bits: CompactTarget,
    limit: &U256,
) -> Result<(), HeaderError> {
    let Some(target) = derive_target_u256(bits.to_consensus(), limit) else {
        return Err(HeaderError::BadTarget {
            hash,
            bits,
            pow_limit: CompactTarget::from_consensus(limit.to_compact()),
        });
    };
    if U256::from_le_bytes(hash.as_byte_array()) > target {
        return Err(HeaderError::BadProofOfWork {
            hash,
            target: u256_to_target(target),
        });
    }
    Ok(())
}

/// Work a header with these `bits` contributes to chainwork (Core's `GetBlockProof`):
/// `2^256 / (target + 1)`, zero for an invalid target.
pub fn block_work(bits: CompactTarget) -> Work {
    u256_to_work(block_work_u256(bits.to_consensus()))
}

pub(crate) fn block_work_u256(bits: u32) -> U256 {
    let c = U256::from_compact(bits);
    if c.negative || c.overflow || c.value.is_zero() {
        return U256::ZERO;
    }
    c.value.work_from_target()
}

/// Retarget at the end of a difficulty period (Core's `CalculateNextWorkRequired`).
///
/// `last_time`/`last_bits` are the time and bits of the period's last block (the new block's
/// parent); `first_time`/`first_bits` are those of the period's first block. `first_bits` is used
/// only under BIP94 (testnet4), where it replaces `last_bits` as the base of the adjustment.
/// With `no_pow_retargeting` (regtest) `last_bits` is returned unchanged.
pub fn next_work_required(
    params: &ChainParams,
    last_bits: CompactTarget,
    last_time: u32,
    first_time: u32,
    first_bits: CompactTarget,
) -> CompactTarget {
    if params.no_pow_retargeting {
        return last_bits;
    }
    let timespan = i64::from(params.pow_target_timespan);
    let actual = (i64::from(last_time) - i64::from(first_time)).clamp(timespan / 4, timespan * 4);
    let base = if params.enforce_bip94 {
        first_bits
    } else {
        last_bits
    };
    let limit = target_to_u256(params.pow_limit);
    // `actual` is clamped to [timespan/4, timespan*4], so it is non-negative.
    let new = U256::from_compact(base.to_consensus())
        .value
        .wrapping_mul_u64(actual.unsigned_abs())
        .div_u64(u64::from(params.pow_target_timespan));
    let new = if new > limit { limit } else { new };
    CompactTarget::from_consensus(new.to_compact())
}

/// Whether a change of bits from `old_bits` to `new_bits` at `height` is within the consensus
/// bounds (Core's `PermittedDifficultyTransition`): always true on min-difficulty networks;
/// within the 4× clamp at retarget heights; unchanged otherwise.
pub fn permitted_difficulty_transition(
    params: &ChainParams,
    height: u32,
    old_bits: CompactTarget,
    new_bits: CompactTarget,
) -> bool {
    if params.allow_min_difficulty_blocks {
        return true;
    }
    if height.is_multiple_of(params.difficulty_adjustment_interval()) {
        let timespan = u64::from(params.pow_target_timespan);
        let limit = target_to_u256(params.pow_limit);
        let old = U256::from_compact(old_bits.to_consensus()).value;
        let observed = U256::from_compact(new_bits.to_consensus()).value;
        let bound = |span: u64| {
            let t = old.wrapping_mul_u64(span).div_u64(timespan);
            let t = if t > limit { limit } else { t };
            // Round through the compact form, as Core does.
            U256::from_compact(t.to_compact()).value
        };
        if bound(timespan * 4) < observed || bound(timespan / 4) > observed {
            return false;
        }
        true
    } else {
        old_bits == new_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;

    fn bits(v: u32) -> CompactTarget {
        CompactTarget::from_consensus(v)
    }

    /// Real mainnet retargets, from Bitcoin Core `src/test/pow_tests.cpp`.
    #[test]
    fn next_work_required_matches_core_pow_tests() {
        let p = ChainParams::new(Network::Bitcoin);
        // get_next_work: block 30240 time 1261130161, block 32255 time 1262152739.
        let got = next_work_required(&p, bits(0x1d00ffff), 1262152739, 1261130161, bits(0));
        assert_eq!(got, bits(0x1d00d86a));
        assert!(permitted_difficulty_transition(
            &p,
            32256,
            bits(0x1d00ffff),
            got
        ));
        // get_next_work_pow_limit: block 0 -> 2015, clamped at the pow limit.
        let got = next_work_required(&p, bits(0x1d00ffff), 1233061996, 1231006505, bits(0));
        assert_eq!(got, bits(0x1d00ffff));
        assert!(permitted_difficulty_transition(
            &p,
            2016,
            bits(0x1d00ffff),
            got
        ));
        // get_next_work_lower_limit_actual: blocks 66528 -> 68543, 4x harder clamp.
        let got = next_work_required(&p, bits(0x1c05a3f4), 1279297671, 1279008237, bits(0));
        assert_eq!(got, bits(0x1c0168fd));
        assert!(permitted_difficulty_transition(
            &p,
            68544,
            bits(0x1c05a3f4),
            got
        ));
        assert!(!permitted_difficulty_transition(
            &p,
            68544,
            bits(0x1c05a3f4),
            bits(0x1c0168fc)
        ));
        // get_next_work_upper_limit_actual: 4x easier clamp.
        let got = next_work_required(&p, bits(0x1c387f6f), 1269211443, 1263163443, bits(0));
        assert_eq!(got, bits(0x1d00e1fd));
        assert!(permitted_difficulty_transition(
            &p,
            46368,
            bits(0x1c387f6f),
            got
        ));
        assert!(!permitted_difficulty_transition(
            &p,
            46368,
            bits(0x1c387f6f),
            bits(0x1d00e1fe)
        ));
        // Off a retarget height bits must not change.
        assert!(!permitted_difficulty_transition(
            &p,
            46369,
            bits(0x1c387f6f),
            got
        ));
    }

    /// Core `pow_tests.cpp` `CheckProofOfWork_test_*`: bad targets are rejected, never panic.
    #[test]
    fn derive_target_rejects_what_core_rejects() {
        let p = ChainParams::new(Network::Bitcoin);
        let limit = p.pow_limit;
        // Negative: GetCompact(true) of the pow limit.
        assert_eq!(derive_target(bits(0x1d80ffff), limit), None);
        // Overflow.
        assert_eq!(derive_target(bits(!0x0080_0000), limit), None);
        // Too easy: 2 * powLimit.
        assert_eq!(derive_target(bits(0x1d01fffe), limit), None);
        // Zero.
        assert_eq!(derive_target(bits(0), limit), None);
        assert!(derive_target(bits(0x1d00ffff), limit).is_some());
        // Every exponent, both sign states: no panic.
        for e in 0..=255u32 {
            let _ = derive_target(bits(e << 24 | 0x7f_ffff), limit);
            let _ = derive_target(bits(e << 24 | 0xff_ffff), limit);
            let _ = block_work(bits(e << 24 | 0x12_3456));
        }
    }

    #[test]
    fn header_hash_equals_rust_bitcoin_block_hash() {
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Signet,
            Network::Regtest,
        ] {
            let g = ChainParams::new(n).genesis();
            assert_eq!(header_hash(&g), g.block_hash());
        }
    }

    /// Genesis headers of every network meet their own pow limit (Core `sanity_check_chainparams`).
    #[test]
    fn genesis_headers_pass_proof_of_work() {
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Signet,
            Network::Regtest,
        ] {
            let p = ChainParams::new(n);
            let g = p.genesis();
            check_proof_of_work(g.block_hash(), g.bits, &p).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn pow_limit_compact_matches_core() {
        let cases = [
            (Network::Bitcoin, 0x1d00ffff),
            (Network::Testnet, 0x1d00ffff),
            (Network::Testnet4, 0x1d00ffff),
            (Network::Signet, 0x1e0377ae),
            (Network::Regtest, 0x207fffff),
        ];
        for (n, c) in cases {
            assert_eq!(
                target_to_u256(ChainParams::new(n).pow_limit).to_compact(),
                c,
                "{n}"
            );
        }
    }
}
