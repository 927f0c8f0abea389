//! Minimal 256-bit unsigned arithmetic with Bitcoin Core's `arith_uint256` semantics.
//!
//! rust-bitcoin's `Target`/`Work` keep their integer private and `debug_assert!` on overflow,
//! while consensus needs Core's exact behaviour (wrapping multiply, dropping shifts, the
//! negative/overflow flags of `SetCompact`). This type is internal; values cross the public API
//! as [`bitcoin::pow::Target`] and [`bitcoin::pow::Work`].

use core::cmp::Ordering;

/// Little-endian limbs: `self.0[0]` holds the least significant 64 bits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct U256(pub(crate) [u64; 4]);

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        for i in (0..4).rev() {
            match self.0[i].cmp(&other.0[i]) {
                Ordering::Equal => {}
                ord => return ord,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Result of decoding an `nBits` value, as `arith_uint256::SetCompact` reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Compact {
    pub(crate) value: U256,
    pub(crate) negative: bool,
    pub(crate) overflow: bool,
}

impl U256 {
    pub(crate) const ZERO: U256 = U256([0; 4]);
    pub(crate) const MAX: U256 = U256([u64::MAX; 4]);

    pub(crate) const fn from_u64(v: u64) -> U256 {
        U256([v, 0, 0, 0])
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Reads a big-endian 32-byte array.
    pub(crate) fn from_be_bytes(b: [u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&b[start..start + 8]);
            *limb = u64::from_be_bytes(chunk);
        }
        U256(limbs)
    }

    /// Reads a little-endian 32-byte array (the internal byte order of a block hash).
    pub(crate) fn from_le_bytes(b: &[u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&b[8 * i..8 * i + 8]);
            *limb = u64::from_le_bytes(chunk);
        }
        U256(limbs)
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            let start = 32 - 8 * (i + 1);
            out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// Number of significant bits (0 for zero).
    pub(crate) fn bits(&self) -> u32 {
        for i in (0..4).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + (64 - self.0[i].leading_zeros());
            }
        }
        0
    }

    /// Left shift; bits shifted past 256 are dropped (like `arith_uint256::operator<<=`).
    pub(crate) fn shl(self, shift: u32) -> U256 {
        if shift >= 256 {
            return U256::ZERO;
        }
        let limbs = (shift / 64) as usize;
        let bits = shift % 64;
        let mut out = [0u64; 4];
        for i in (limbs..4).rev() {
            let src = i - limbs;
            out[i] = self.0[src] << bits;
            if bits != 0 && src > 0 {
                out[i] |= self.0[src - 1] >> (64 - bits);
            }
        }
        U256(out)
    }

    /// Logical right shift.
    pub(crate) fn shr(self, shift: u32) -> U256 {
        if shift >= 256 {
            return U256::ZERO;
        }
        let limbs = (shift / 64) as usize;
        let bits = shift % 64;
        let mut out = [0u64; 4];
        for (i, o) in out.iter_mut().enumerate().take(4 - limbs) {
            let src = i + limbs;
            *o = self.0[src] >> bits;
            if bits != 0 && src + 1 < 4 {
                *o |= self.0[src + 1] << (64 - bits);
            }
        }
        U256(out)
    }

    /// `self * m mod 2^256` (Core's `operator*=` wraps).
    pub(crate) fn wrapping_mul_u64(self, m: u64) -> U256 {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for (i, o) in out.iter_mut().enumerate() {
            let p = u128::from(self.0[i]) * u128::from(m) + carry;
            *o = p as u64;
            carry = p >> 64;
        }
        U256(out)
    }

    /// `self / d`; division by zero yields zero instead of panicking.
    pub(crate) fn div_u64(self, d: u64) -> U256 {
        if d == 0 {
            return U256::ZERO;
        }
        let mut out = [0u64; 4];
        let mut rem: u128 = 0;
        for i in (0..4).rev() {
            let cur = (rem << 64) | u128::from(self.0[i]);
            out[i] = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        U256(out)
    }

    pub(crate) fn overflowing_add(self, o: U256) -> (U256, bool) {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, r) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(o.0[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *r = s2;
            carry = c1 || c2;
        }
        (U256(out), carry)
    }

    pub(crate) fn saturating_add(self, o: U256) -> U256 {
        match self.overflowing_add(o) {
            (_, true) => U256::MAX,
            (v, false) => v,
        }
    }

    fn wrapping_sub(self, o: U256) -> U256 {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (i, r) in out.iter_mut().enumerate() {
            let (d1, b1) = self.0[i].overflowing_sub(o.0[i]);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *r = d2;
            borrow = b1 || b2;
        }
        U256(out)
    }

    fn not(self) -> U256 {
        U256([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }

    /// `self / d` by binary long division; division by zero yields zero.
    pub(crate) fn div(self, d: U256) -> U256 {
        if d.is_zero() {
            return U256::ZERO;
        }
        if self < d {
            return U256::ZERO;
        }
        let shift = self.bits() - d.bits();
        let mut div = d.shl(shift);
        let mut num = self;
        let mut quot = U256::ZERO;
        let mut s = shift as i64;
        while s >= 0 {
            if num >= div {
                num = num.wrapping_sub(div);
                quot.0[(s / 64) as usize] |= 1 << (s % 64);
            }
            div = div.shr(1);
            s -= 1;
        }
        quot
    }

    /// `arith_uint256::SetCompact`: decodes `nBits`, reporting sign and overflow.
    pub(crate) fn from_compact(bits: u32) -> Compact {
        let size = bits >> 24;
        let mut word = bits & 0x007f_ffff;
        let value = if size <= 3 {
            word >>= 8 * (3 - size);
            U256::from_u64(u64::from(word))
        } else {
            U256::from_u64(u64::from(word)).shl(8 * (size - 3))
        };
        let negative = word != 0 && (bits & 0x0080_0000) != 0;
        let overflow =
            word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
        Compact {
            value,
            negative,
            overflow,
        }
    }

    /// `arith_uint256::GetCompact(false)`.
    pub(crate) fn to_compact(self) -> u32 {
        let mut size = self.bits().div_ceil(8);
        let mut compact = if size <= 3 {
            (self.0[0] << (8 * (3 - size))) as u32
        } else {
            self.shr(8 * (size - 3)).0[0] as u32
        };
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        compact | (size << 24)
    }

    /// Work represented by a target: `2^256 / (target + 1)` computed as Core's `GetBlockProof`
    /// does, `~target / (target + 1) + 1`. Zero for a zero target.
    pub(crate) fn work_from_target(self) -> U256 {
        if self.is_zero() {
            return U256::ZERO;
        }
        let (plus_one, overflow) = self.overflowing_add(U256::from_u64(1));
        if overflow {
            // target == 2^256 - 1: 2^256 / 2^256 == 1.
            return U256::from_u64(1);
        }
        self.not().div(plus_one).saturating_add(U256::from_u64(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Bitcoin Core `src/test/arith_uint256_tests.cpp` (`bignum_SetCompact`).
    #[test]
    fn set_compact_matches_core_vectors() {
        let cases: &[(u32, u32, bool, bool)] = &[
            // (nBits, GetCompact() of the result, negative, overflow)
            (0, 0, false, false),
            (0x0012_3456, 0, false, false),
            (0x0100_3456, 0, false, false),
            (0x0200_0056, 0, false, false),
            (0x0300_0000, 0, false, false),
            (0x0400_0000, 0, false, false),
            (0x0092_3456, 0, false, false),
            (0x0180_3456, 0, false, false),
            (0x0280_0056, 0, false, false),
            (0x0380_0000, 0, false, false),
            (0x0480_0000, 0, false, false),
            (0x0112_3456, 0x0112_0000, false, false),
            (0x0212_3456, 0x0212_3400, false, false),
            (0x0312_3456, 0x0312_3456, false, false),
            (0x0412_3456, 0x0412_3456, false, false),
            (0x0500_9234, 0x0500_9234, false, false),
            (0x2012_3456, 0x2012_3456, false, false),
        ];
        for &(bits, back, neg, over) in cases {
            let c = U256::from_compact(bits);
            assert_eq!((c.negative, c.overflow), (neg, over), "bits {bits:#010x}");
            assert_eq!(c.value.to_compact(), back, "bits {bits:#010x}");
        }
        // Negative: 0x04923456 and 0x01fedcba set the sign flag.
        assert!(U256::from_compact(0x0492_3456).negative);
        assert!(U256::from_compact(0x01fe_dcba).negative);
        // Overflow: 0xff123456.
        assert!(U256::from_compact(0xff12_3456).overflow);
    }

    #[test]
    fn arithmetic_round_trips() {
        let a = U256([1, 2, 3, 4]);
        assert_eq!(U256::from_be_bytes(a.to_be_bytes()), a);
        assert_eq!(a.shl(64).shr(64), U256([1, 2, 3, 0]));
        assert_eq!(a.shl(3).shr(3), a);
        assert_eq!(a.wrapping_mul_u64(7).div_u64(7), a);
        assert_eq!(a.wrapping_mul_u64(7).div(U256::from_u64(7)), a);
        assert_eq!(U256::MAX.saturating_add(a), U256::MAX);
        assert_eq!(U256::from_u64(10).div(U256::ZERO), U256::ZERO);
        // Mainnet genesis target 0x1d00ffff has work 0x100010001 (Core: chainwork of block 0).
        let t = U256::from_compact(0x1d00_ffff).value;
        assert_eq!(t.work_from_target(), U256::from_u64(0x1_0001_0001));
        // Regtest 0x207fffff has work 2.
        assert_eq!(
            U256::from_compact(0x207f_ffff).value.work_from_target(),
            U256::from_u64(2)
        );
    }
}
