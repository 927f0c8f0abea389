//! Keystones and the Proof-of-Proof payload.
//!
//! A *keystone* is an L2 block whose number is a multiple of `keystone_interval`. Its digest, the
//! 76-byte [`AbbreviatedKeystone`], is what PoP miners publish in Bitcoin inside one `OP_RETURN`
//! output (`OP_RETURN OP_PUSHDATA1 0x50 "HEMI" ‖ abbreviated keystone`, 83 bytes of script).
//! Once that Bitcoin transaction is buried deep enough, the L2 block is superfinal.
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → chain → **PoP** → finality. This crate
//! is pure (no I/O) so both the Bitcoin indexer and the L2 side can depend on it.
//!
//! Main types: [`Keystone`] (full form), [`AbbreviatedKeystone`] (wire form), [`KeystoneId`].
//! The formats are byte-compatible with Hemi's `L2KeystoneAbrev`.

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::opcodes::all::{OP_PUSHDATA1, OP_RETURN};
use bitcoin::script::{Script, ScriptBuf};

/// Length of the abbreviated keystone in bytes.
pub const ABBREVIATED_LEN: usize = 76;
/// The 4-byte tag that precedes the abbreviated keystone in a PoP output.
pub const POP_TAG: [u8; 4] = *b"HEMI";
/// Length of the PoP payload (tag ‖ abbreviated keystone).
pub const POP_PAYLOAD_LEN: usize = POP_TAG.len() + ABBREVIATED_LEN;
/// Length of the whole PoP output script.
pub const POP_SCRIPT_LEN: usize = 3 + POP_PAYLOAD_LEN;

/// A 32-byte hash as used by the L2 (Ethereum-style, big-endian as printed).
pub type H256 = [u8; 32];

/// The full keystone: the fields of an L2 block header that PoP anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Keystone {
    /// Format version (1).
    pub version: u8,
    /// "L1" block number; hemi-rs has no Ethereum L1 and carries the pinned Bitcoin height here.
    pub l1_block_number: u32,
    /// L2 block number of the keystone block.
    pub l2_block_number: u32,
    /// Parent hash of the keystone block.
    pub parent_ep_hash: H256,
    /// Block hash of the previous keystone.
    pub prev_keystone_ep_hash: H256,
    /// State root of the keystone block.
    pub state_root: H256,
    /// Block hash of the keystone block.
    pub ep_hash: H256,
}

impl Keystone {
    /// The abbreviated (76-byte) form that PoP miners publish.
    pub fn abbreviate(&self) -> AbbreviatedKeystone {
        let mut parent = [0u8; 11];
        parent.copy_from_slice(&self.parent_ep_hash[..11]);
        let mut prev = [0u8; 12];
        prev.copy_from_slice(&self.prev_keystone_ep_hash[..12]);
        let mut ep = [0u8; 12];
        ep.copy_from_slice(&self.ep_hash[..12]);
        AbbreviatedKeystone {
            version: self.version,
            l1_block_number: self.l1_block_number,
            l2_block_number: self.l2_block_number,
            parent_ep_hash: parent,
            prev_keystone_ep_hash: prev,
            state_root: self.state_root,
            ep_hash: ep,
        }
    }
}

/// The identifier of a keystone: double SHA-256 of its 76-byte abbreviated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeystoneId(pub [u8; 32]);

impl KeystoneId {
    /// Hex as Hemi prints it (btcd `chainhash` order: byte-reversed, like Bitcoin hashes, no
    /// `0x`). `kss_getKeystone` and `GET /v2/keystonefinality/{hash}` take this form.
    pub fn to_hex(&self) -> String {
        let mut b = self.0;
        b.reverse();
        hex::encode(b)
    }

    /// Parses [`KeystoneId::to_hex`]'s form (64 hex digits, an optional `0x`).
    ///
    /// # Errors
    /// [`KeystoneDecodeError::BadHash`] for anything else.
    pub fn from_hex(s: &str) -> Result<Self, KeystoneDecodeError> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let mut b: [u8; 32] = hex::decode(digits)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| KeystoneDecodeError::BadHash(s.chars().take(80).collect()))?;
        b.reverse();
        Ok(KeystoneId(b))
    }
}

impl std::fmt::Display for KeystoneId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The 76-byte abbreviated keystone (big-endian integers), byte-compatible with Hemi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbbreviatedKeystone {
    /// Format version.
    pub version: u8,
    /// L1 (here: pinned Bitcoin) block number.
    pub l1_block_number: u32,
    /// L2 block number.
    pub l2_block_number: u32,
    /// First 11 bytes of the parent hash.
    pub parent_ep_hash: [u8; 11],
    /// First 12 bytes of the previous keystone's hash.
    pub prev_keystone_ep_hash: [u8; 12],
    /// The full state root.
    pub state_root: [u8; 32],
    /// First 12 bytes of the keystone block's hash.
    pub ep_hash: [u8; 12],
}

/// Why bytes are not a keystone or a PoP script.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoneDecodeError {
    /// The abbreviated keystone must be exactly 76 bytes.
    #[error("abbreviated keystone is {got} bytes, expected 76")]
    Length {
        /// Bytes given.
        got: usize,
    },
    /// The script is not `OP_RETURN OP_PUSHDATA1 0x50 "HEMI" ‖ 76 bytes`.
    #[error("not a HEMI PoP script: {0}")]
    NotPopScript(&'static str),
    /// A keystone hash must be 64 hex digits.
    #[error("invalid keystone hash {0:?}: expected 64 hex digits")]
    BadHash(String),
}

impl AbbreviatedKeystone {
    /// Serializes to the 76-byte wire form.
    pub fn to_bytes(&self) -> [u8; ABBREVIATED_LEN] {
        let mut b = [0u8; ABBREVIATED_LEN];
        b[0] = self.version;
        b[1..5].copy_from_slice(&self.l1_block_number.to_be_bytes());
        b[5..9].copy_from_slice(&self.l2_block_number.to_be_bytes());
        b[9..20].copy_from_slice(&self.parent_ep_hash);
        b[20..32].copy_from_slice(&self.prev_keystone_ep_hash);
        b[32..64].copy_from_slice(&self.state_root);
        b[64..76].copy_from_slice(&self.ep_hash);
        b
    }

    /// Parses the 76-byte wire form.
    ///
    /// # Errors
    /// [`KeystoneDecodeError::Length`] unless `bytes` is exactly 76 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeystoneDecodeError> {
        let b: &[u8; ABBREVIATED_LEN] = bytes
            .try_into()
            .map_err(|_| KeystoneDecodeError::Length { got: bytes.len() })?;
        let mut k = AbbreviatedKeystone {
            version: b[0],
            l1_block_number: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
            l2_block_number: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            parent_ep_hash: [0; 11],
            prev_keystone_ep_hash: [0; 12],
            state_root: [0; 32],
            ep_hash: [0; 12],
        };
        k.parent_ep_hash.copy_from_slice(&b[9..20]);
        k.prev_keystone_ep_hash.copy_from_slice(&b[20..32]);
        k.state_root.copy_from_slice(&b[32..64]);
        k.ep_hash.copy_from_slice(&b[64..76]);
        Ok(k)
    }

    /// The keystone id: double SHA-256 of the 76 bytes.
    pub fn id(&self) -> KeystoneId {
        KeystoneId(sha256d::Hash::hash(&self.to_bytes()).to_byte_array())
    }

    /// The PoP output script `OP_RETURN OP_PUSHDATA1 0x50 "HEMI" ‖ self` (83 bytes).
    pub fn pop_script(&self) -> ScriptBuf {
        let mut s = Vec::with_capacity(POP_SCRIPT_LEN);
        s.push(OP_RETURN.to_u8());
        s.push(OP_PUSHDATA1.to_u8());
        s.push(POP_PAYLOAD_LEN as u8);
        s.extend_from_slice(&POP_TAG);
        s.extend_from_slice(&self.to_bytes());
        ScriptBuf::from_bytes(s)
    }

    /// Parses a PoP output script. Only the canonical 83-byte form is accepted.
    ///
    /// # Errors
    /// [`KeystoneDecodeError::NotPopScript`] saying which part did not match.
    pub fn from_pop_script(script: &Script) -> Result<Self, KeystoneDecodeError> {
        let b = script.as_bytes();
        if b.len() != POP_SCRIPT_LEN {
            return Err(KeystoneDecodeError::NotPopScript("length is not 83"));
        }
        if b[0] != OP_RETURN.to_u8() {
            return Err(KeystoneDecodeError::NotPopScript("no OP_RETURN"));
        }
        if b[1] != OP_PUSHDATA1.to_u8() || b[2] as usize != POP_PAYLOAD_LEN {
            return Err(KeystoneDecodeError::NotPopScript(
                "push is not OP_PUSHDATA1 0x50",
            ));
        }
        if b[3..7] != POP_TAG {
            return Err(KeystoneDecodeError::NotPopScript("tag is not HEMI"));
        }
        Self::from_bytes(&b[7..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Keystone {
        Keystone {
            version: 1,
            l1_block_number: 0x0102_0304,
            l2_block_number: 25,
            parent_ep_hash: [0x11; 32],
            prev_keystone_ep_hash: [0x22; 32],
            state_root: [0x33; 32],
            ep_hash: [0x44; 32],
        }
    }

    #[test]
    fn layout_is_hemis_big_endian_76_bytes() {
        let b = sample().abbreviate().to_bytes();
        assert_eq!(b.len(), 76);
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..5], &[1, 2, 3, 4]);
        assert_eq!(&b[5..9], &[0, 0, 0, 25]);
        assert_eq!(&b[9..20], &[0x11; 11]);
        assert_eq!(&b[20..32], &[0x22; 12]);
        assert_eq!(&b[32..64], &[0x33; 32]);
        assert_eq!(&b[64..76], &[0x44; 12]);
    }

    #[test]
    fn ids_print_byte_reversed_like_hemis_chainhash() {
        let id = sample().abbreviate().id();
        let text = id.to_hex();
        assert_eq!(&text[..2], &hex::encode([id.0[31]]));
        assert_eq!(KeystoneId::from_hex(&text), Ok(id));
        assert_eq!(KeystoneId::from_hex(&format!("0x{text}")), Ok(id));
        assert!(KeystoneId::from_hex(&text[1..]).is_err());
        assert!(KeystoneId::from_hex("zz").is_err());
    }

    #[test]
    fn pop_script_is_83_bytes_and_parses_back() {
        let a = sample().abbreviate();
        let s = a.pop_script();
        assert_eq!(s.len(), 83);
        assert!(s.is_op_return());
        assert_eq!(AbbreviatedKeystone::from_pop_script(&s), Ok(a));
        // Bitcoin Core's default datacarrier limit was 83 bytes of script: we fit exactly.
        assert!(s.len() <= 83);
    }

    #[test]
    fn other_scripts_are_rejected_with_a_reason() {
        let mut s = sample().abbreviate().pop_script().into_bytes();
        s[3] = b'X';
        assert_eq!(
            AbbreviatedKeystone::from_pop_script(Script::from_bytes(&s)),
            Err(KeystoneDecodeError::NotPopScript("tag is not HEMI"))
        );
        assert!(AbbreviatedKeystone::from_pop_script(Script::from_bytes(&[0x6a])).is_err());
        assert_eq!(
            AbbreviatedKeystone::from_bytes(&[0; 75]),
            Err(KeystoneDecodeError::Length { got: 75 })
        );
    }

    proptest! {
        #[test]
        fn abbreviated_round_trips(bytes in proptest::collection::vec(any::<u8>(), 76)) {
            let k = AbbreviatedKeystone::from_bytes(&bytes).expect("76 bytes");
            prop_assert_eq!(k.to_bytes().to_vec(), bytes);
            prop_assert_eq!(AbbreviatedKeystone::from_pop_script(&k.pop_script()), Ok(k));
        }

        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = AbbreviatedKeystone::from_pop_script(Script::from_bytes(&bytes));
            let _ = AbbreviatedKeystone::from_bytes(&bytes);
        }
    }
}
