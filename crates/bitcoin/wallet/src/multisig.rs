//! m-of-n P2WSH multisig ([`Multisig`]): the tunnel vault's script.

use bitcoin::blockdata::opcodes::all::OP_CHECKMULTISIG;
use bitcoin::blockdata::script::Builder;
use bitcoin::{ecdsa, Address, Network, PublicKey, ScriptBuf, Witness};

use crate::WalletError;

/// Most keys a [`Multisig`] takes: `OP_16`, the largest count with a one-byte opcode.
pub const MAX_MULTISIG_KEYS: usize = 16;

/// `threshold`-of-`keys.len()` bare multisig in P2WSH:
/// `OP_m <pk_1> .. <pk_n> OP_n OP_CHECKMULTISIG`, keys sorted by their compressed encoding
/// (BIP67), so the same set of keys always gives the same address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Multisig {
    /// Signatures needed (m).
    pub threshold: usize,
    /// Compressed keys, sorted (BIP67).
    pub keys: Vec<PublicKey>,
}

impl Multisig {
    /// A `threshold`-of-`keys.len()` multisig; sorts the keys.
    ///
    /// # Errors
    /// [`WalletError::InvalidThreshold`] unless `1 <= threshold <= keys.len()`,
    /// [`WalletError::TooManyKeys`] above [`MAX_MULTISIG_KEYS`], [`WalletError::UncompressedKey`]
    /// (segwit policy needs compressed keys), [`WalletError::DuplicateKey`].
    pub fn new(threshold: usize, mut keys: Vec<PublicKey>) -> Result<Self, WalletError> {
        if keys.len() > MAX_MULTISIG_KEYS {
            return Err(WalletError::TooManyKeys {
                keys: keys.len(),
                max: MAX_MULTISIG_KEYS,
            });
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(WalletError::InvalidThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        if let Some(key) = keys.iter().find(|k| !k.compressed) {
            return Err(WalletError::UncompressedKey(*key));
        }
        keys.sort_by_key(|k| k.inner.serialize());
        if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(WalletError::DuplicateKey(pair[0]));
        }
        Ok(Multisig { threshold, keys })
    }

    /// `OP_m <pk_1> .. <pk_n> OP_n OP_CHECKMULTISIG`.
    pub fn witness_script(&self) -> ScriptBuf {
        // Counts fit: `new` bounds both by MAX_MULTISIG_KEYS (16); push_int picks OP_1..OP_16.
        let mut builder = Builder::new().push_int(self.threshold as i64);
        for key in &self.keys {
            builder = builder.push_key(key);
        }
        builder
            .push_int(self.keys.len() as i64)
            .push_opcode(OP_CHECKMULTISIG)
            .into_script()
    }

    /// The P2WSH output script: `OP_0 <sha256(witness_script)>`.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&self.witness_script().wscript_hash())
    }

    /// The P2WSH address on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::p2wsh(&self.witness_script(), network)
    }

    /// The spending witness `[<empty>, sig_1 .. sig_m, witness_script]` from signatures by any
    /// `threshold` of the keys (extra signatures are dropped), put in key order as
    /// `OP_CHECKMULTISIG` requires. The empty first element is the NULLDUMMY argument.
    ///
    /// # Errors
    /// [`WalletError::KeyNotInMultisig`] for a signature by a stranger (`input` 0),
    /// [`WalletError::NotEnoughSigners`] with fewer than `threshold` distinct keys.
    pub fn witness(&self, sigs: &[(PublicKey, ecdsa::Signature)]) -> Result<Witness, WalletError> {
        if let Some((key, _)) = sigs.iter().find(|(k, _)| !self.keys.contains(k)) {
            return Err(WalletError::KeyNotInMultisig {
                input: 0,
                key: *key,
            });
        }
        let ordered: Vec<&ecdsa::Signature> = self
            .keys
            .iter()
            .filter_map(|key| sigs.iter().find(|(k, _)| k == key).map(|(_, sig)| sig))
            .take(self.threshold)
            .collect();
        if ordered.len() < self.threshold {
            return Err(WalletError::NotEnoughSigners {
                input: 0,
                needed: self.threshold,
                got: ordered.len(),
            });
        }
        let mut witness = Witness::new();
        witness.push([]);
        for sig in ordered {
            witness.push(sig.to_vec());
        }
        witness.push(self.witness_script().as_bytes());
        Ok(witness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n)
            .map(|i| Key::from_seed(&format!("multisig-{i}")).public_key())
            .collect()
    }

    #[test]
    fn keys_are_sorted_so_order_does_not_change_the_address() {
        let mut ks = keys(3);
        let a = Multisig::new(2, ks.clone()).expect("valid");
        ks.reverse();
        let b = Multisig::new(2, ks).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.address(Network::Regtest), b.address(Network::Regtest));
        assert!(a
            .keys
            .windows(2)
            .all(|w| w[0].inner.serialize() < w[1].inner.serialize()));
    }

    #[test]
    fn witness_script_is_m_keys_n_checkmultisig() {
        let ms = Multisig::new(2, keys(3)).expect("valid");
        let script = ms.witness_script();
        let bytes = script.as_bytes();
        assert_eq!(bytes.len(), 1 + 3 * 34 + 2);
        assert_eq!(bytes[0], 0x52); // OP_2
        assert_eq!(bytes[bytes.len() - 2], 0x53); // OP_3
        assert_eq!(bytes[bytes.len() - 1], 0xae); // OP_CHECKMULTISIG
        assert!(ms.script_pubkey().is_p2wsh());
        assert!(ms
            .address(Network::Regtest)
            .to_string()
            .starts_with("bcrt1q"));
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(matches!(
            Multisig::new(0, keys(2)),
            Err(WalletError::InvalidThreshold { .. })
        ));
        assert!(matches!(
            Multisig::new(3, keys(2)),
            Err(WalletError::InvalidThreshold { .. })
        ));
        assert!(matches!(
            Multisig::new(1, keys(17)),
            Err(WalletError::TooManyKeys { .. })
        ));
        let k = keys(1)[0];
        assert!(matches!(
            Multisig::new(1, vec![k, k]),
            Err(WalletError::DuplicateKey(_))
        ));
        let uncompressed = PublicKey::new_uncompressed(k.inner);
        assert!(matches!(
            Multisig::new(1, vec![uncompressed]),
            Err(WalletError::UncompressedKey(_))
        ));
        assert!(Multisig::new(16, keys(16)).is_ok());
    }
}
