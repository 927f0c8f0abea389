//! Single keys: [`Key`] and the output types it can receive on ([`KeyKind`]).

use bitcoin::hashes::{sha256, Hash};
use bitcoin::key::{CompressedPublicKey, Keypair, TapTweak, TweakedKeypair, XOnlyPublicKey};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, Network, PublicKey, ScriptBuf};

use crate::{secp, WalletError};

/// The output type a [`Key`] receives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Native segwit v0 pay-to-witness-pubkey-hash.
    P2wpkh,
    /// Taproot, key path only: the output key is the BIP86 tweak of the key (no script tree).
    P2tr,
}

/// A secp256k1 secret key with its public forms cached.
///
/// `Debug` shows the public key only, so a key never lands in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    secret: SecretKey,
    public: PublicKey,
    x_only: XOnlyPublicKey,
    /// BIP86-tweaked keypair: signs taproot key-path spends of [`KeyKind::P2tr`] outputs.
    tweaked: TweakedKeypair,
    /// Output scripts, cached: the taproot one costs a point tweak to derive.
    p2wpkh_script: ScriptBuf,
    p2tr_script: ScriptBuf,
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Key")
            .field("public", &format_args!("{}", self.public))
            .finish_non_exhaustive()
    }
}

impl Key {
    fn from_secret(secret: SecretKey) -> Key {
        let keypair = Keypair::from_secret_key(secp(), &secret);
        let public = PublicKey::new(keypair.public_key());
        let (x_only, _parity) = keypair.x_only_public_key();
        let tweaked = keypair.tap_tweak(secp(), None);
        let p2wpkh_script =
            ScriptBuf::new_p2wpkh(&CompressedPublicKey(public.inner).wpubkey_hash());
        let p2tr_script = ScriptBuf::new_p2tr(secp(), x_only, None);
        Key {
            secret,
            public,
            x_only,
            tweaked,
            p2wpkh_script,
            p2tr_script,
        }
    }

    /// A fresh key from the operating system's randomness.
    pub fn random() -> Key {
        Key::from_secret(SecretKey::new(&mut rand::thread_rng()))
    }

    /// The key with these 32 secret bytes (big-endian scalar).
    ///
    /// # Errors
    /// [`WalletError::InvalidSecretKey`] if the bytes are zero or not below the curve order.
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Result<Key, WalletError> {
        SecretKey::from_slice(&bytes)
            .map(Key::from_secret)
            .map_err(|_| WalletError::InvalidSecretKey)
    }

    /// A deterministic key for devnets and tests: the secret is `sha256(label)`, hashed again
    /// until it is a valid scalar (a retry is needed with probability ~2^-128).
    ///
    /// Anyone who knows the label knows the key: never use it for real funds.
    pub fn from_seed(label: &str) -> Key {
        let mut digest = sha256::Hash::hash(label.as_bytes());
        loop {
            if let Ok(secret) = SecretKey::from_slice(digest.as_byte_array()) {
                return Key::from_secret(secret);
            }
            digest = sha256::Hash::hash(digest.as_byte_array());
        }
    }

    /// The 32 secret bytes.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// The compressed public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The x-only public key: the taproot *internal* key (untweaked).
    pub fn x_only(&self) -> XOnlyPublicKey {
        self.x_only
    }

    /// The taproot output key for [`KeyKind::P2tr`] (BIP86 tweak, no script tree).
    pub fn taproot_output_key(&self) -> XOnlyPublicKey {
        self.tweaked.to_keypair().x_only_public_key().0
    }

    pub(crate) fn secret_key(&self) -> &SecretKey {
        &self.secret
    }

    pub(crate) fn tweaked_keypair(&self) -> &TweakedKeypair {
        &self.tweaked
    }

    fn compressed(&self) -> CompressedPublicKey {
        CompressedPublicKey(self.public.inner)
    }

    /// The address of `kind` for this key on `network`.
    pub fn address(&self, kind: KeyKind, network: Network) -> Address {
        match kind {
            KeyKind::P2wpkh => Address::p2wpkh(&self.compressed(), network),
            KeyKind::P2tr => Address::p2tr(secp(), self.x_only, None, network),
        }
    }

    /// The output script of `kind` for this key.
    pub fn script_pubkey(&self, kind: KeyKind) -> ScriptBuf {
        match kind {
            KeyKind::P2wpkh => self.p2wpkh_script.clone(),
            KeyKind::P2tr => self.p2tr_script.clone(),
        }
    }

    /// The legacy P2PKH output script of the compressed key (for completeness; hemi-rs pays to
    /// segwit and taproot outputs).
    pub fn p2pkh_script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2pkh(&self.public.pubkey_hash())
    }

    /// Which of this key's output types `script` is, if any.
    pub fn kind_of(&self, script: &bitcoin::Script) -> Option<KeyKind> {
        if *script == *self.p2wpkh_script {
            Some(KeyKind::P2wpkh)
        } else if *script == *self.p2tr_script {
            Some(KeyKind::P2tr)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_seed_is_sha256_of_label() {
        let key = Key::from_seed("hemi");
        assert_eq!(
            key.secret_bytes(),
            sha256::Hash::hash(b"hemi").to_byte_array()
        );
        assert_eq!(Key::from_seed("hemi"), key);
        assert_ne!(Key::from_seed("hemi2"), key);
    }

    #[test]
    fn invalid_secret_bytes_are_rejected() {
        assert!(matches!(
            Key::from_secret_bytes([0; 32]),
            Err(WalletError::InvalidSecretKey)
        ));
        assert!(matches!(
            Key::from_secret_bytes([0xff; 32]),
            Err(WalletError::InvalidSecretKey)
        ));
        let key = Key::random();
        assert_eq!(Key::from_secret_bytes(key.secret_bytes()).ok(), Some(key));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let key = Key::from_seed("debug");
        let shown = format!("{key:?}");
        let secret_hex: String = key
            .secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&secret_hex));
        assert!(shown.contains(&key.public_key().to_string()));
    }

    #[test]
    fn addresses_match_script_pubkeys() {
        let key = Key::from_seed("addr");
        for kind in [KeyKind::P2wpkh, KeyKind::P2tr] {
            assert_eq!(
                key.address(kind, Network::Regtest).script_pubkey(),
                key.script_pubkey(kind)
            );
            assert_eq!(key.kind_of(&key.script_pubkey(kind)), Some(kind));
        }
        assert!(key
            .address(KeyKind::P2wpkh, Network::Regtest)
            .to_string()
            .starts_with("bcrt1q"));
        assert!(key
            .address(KeyKind::P2tr, Network::Bitcoin)
            .to_string()
            .starts_with("bc1p"));
    }

    /// BIP86's first test vector: m/86'/0'/0'/0/0 of the "abandon ... about" mnemonic.
    #[test]
    fn p2tr_address_matches_bip86_vector() {
        let secret = hex_array("41f41d69260df4cf277826a9b65a3717e4eeddbeedf637f212ca096576479361");
        let key = Key::from_secret_bytes(secret).expect("vector key is valid");
        assert_eq!(
            key.x_only().to_string(),
            "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115"
        );
        assert_eq!(
            key.taproot_output_key().to_string(),
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
        );
        assert_eq!(
            key.address(KeyKind::P2tr, Network::Bitcoin).to_string(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
    }

    /// BIP84's first test vector: m/84'/0'/0'/0/0 of the "abandon ... about" mnemonic.
    #[test]
    fn p2wpkh_address_matches_bip84_vector() {
        let secret = hex_array("4604b4b710fe91f584fff084e1a9159fe4f8408fff380596a604948474ce4fa3");
        let key = Key::from_secret_bytes(secret).expect("vector key is valid");
        assert_eq!(
            key.public_key().to_string(),
            "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c"
        );
        assert_eq!(
            key.address(KeyKind::P2wpkh, Network::Bitcoin).to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
    }

    pub(crate) fn hex_array(s: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect();
        bytes.try_into().expect("32 bytes")
    }
}
