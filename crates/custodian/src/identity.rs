//! Who is speaking: each custodian, and the coordinator that asks them for signatures, has an
//! identity key (secp256k1). Every message between them travels in an [`Envelope`]: the
//! sender's index (0 = the coordinator, 1..=n = a custodian), the body, and a BIP-340 signature
//! over
//!
//! ```text
//! sha256("hemi-rs/custodian/v1" ‖ 0x00 ‖ method ‖ 0x00 ‖ canonical JSON of the body)
//! ```
//!
//! (canonical JSON: object keys sorted, no whitespace). Answers are signed under
//! `method ‖ "/reply"`, so a request can never pass for an answer.
//!
//! Secrets between two identities (DKG round-2 packages) are sealed with [`seal`]: an ECDH
//! shared secret of the two identity keys, hashed with a domain tag into a ChaCha20-Poly1305
//! key, a random 96-bit nonce, and associated data that names what the box is for.

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::key::Parity;
use bitcoin::secp256k1::{ecdh, schnorr, Keypair, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::XOnlyPublicKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CustodianError;

/// The domain tag of every signed message.
pub const MESSAGE_TAG: &[u8] = b"hemi-rs/custodian/v1";
/// The domain tag of the ECDH-derived box key.
const BOX_KEY_TAG: &[u8] = b"hemi-rs/custodian/v1/box-key";

/// An identity key pair. Its Debug impl prints only the public key.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh identity from the operating system's randomness.
    pub fn generate() -> Self {
        let secp = Secp256k1::signing_only();
        let (secret, _) = secp.generate_keypair(&mut rand::rngs::OsRng);
        Self::from_secret(secret)
    }

    /// The identity of a secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        Identity {
            keypair: Keypair::from_secret_key(&Secp256k1::signing_only(), &secret),
        }
    }

    /// The identity of a secret key given as 64 hex digits (surrounding whitespace and a `0x`
    /// prefix are ignored).
    ///
    /// # Errors
    /// [`CustodianError::Key`] if it is not a valid secp256k1 secret key.
    pub fn from_secret_hex(what: &'static str, s: &str) -> Result<Self, CustodianError> {
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        let bytes = hex::decode(s).map_err(|_| CustodianError::Key {
            what,
            reason: "not hex".into(),
        })?;
        let secret = SecretKey::from_slice(&bytes).map_err(|_| CustodianError::Key {
            what,
            reason: format!(
                "not a secp256k1 secret key ({} bytes; expected 32, non-zero, below the order)",
                bytes.len()
            ),
        })?;
        Ok(Self::from_secret(secret))
    }

    /// The identity in a key file (64 hex digits, as `hemi custodian coordinator-key` writes).
    ///
    /// # Errors
    /// [`CustodianError::Io`]; [`CustodianError::Key`].
    pub fn from_file(path: &std::path::Path) -> Result<Self, CustodianError> {
        let s = std::fs::read_to_string(path).map_err(|source| CustodianError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_secret_hex("identity key file", &s)
    }

    /// The secret key as 64 hex digits (for the encrypted key store and the coordinator's key
    /// file only).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.keypair.secret_bytes())
    }

    /// The key pair (in-crate only).
    pub(crate) fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The x-only public key peers know this identity by.
    pub fn public(&self) -> XOnlyPublicKey {
        self.keypair.x_only_public_key().0
    }

    /// Signs `body` as a message of `method` from sender `from`.
    ///
    /// # Errors
    /// [`CustodianError::Encoding`] if `body` does not serialise to JSON.
    pub fn seal_envelope<T: Serialize>(
        &self,
        from: u16,
        method: &str,
        body: &T,
    ) -> Result<Envelope, CustodianError> {
        let body = serde_json::to_value(body).map_err(|e| CustodianError::Encoding {
            what: "message body",
            reason: e.to_string(),
        })?;
        let digest = message_digest(method, &body);
        let sig = Secp256k1::signing_only().sign_schnorr_with_rng(
            &Message::from_digest(digest),
            &self.keypair,
            &mut rand::rngs::OsRng,
        );
        Ok(Envelope {
            from,
            sig: hex::encode(sig.serialize()),
            body,
        })
    }

    /// The ChaCha20-Poly1305 key this identity shares with `peer`: sha256 of a domain tag and
    /// the x coordinate of the ECDH point. Both sides get the same key whichever parity their
    /// x-only keys had (x(P) = x(−P)).
    fn box_key(&self, peer: &XOnlyPublicKey) -> [u8; 32] {
        let point = PublicKey::from_x_only_public_key(*peer, Parity::Even);
        let shared = ecdh::shared_secret_point(&point, &self.keypair.secret_key());
        let mut engine = sha256::Hash::engine();
        engine.input(BOX_KEY_TAG);
        engine.input(&shared[..32]);
        sha256::Hash::from_engine(engine).to_byte_array()
    }

    /// Encrypts `plaintext` to `peer`, bound to `aad`.
    ///
    /// # Errors
    /// [`CustodianError::Crypto`] if encryption fails (it does not for inputs below 256 GiB).
    pub fn seal_to(
        &self,
        peer: &XOnlyPublicKey,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Sealed, CustodianError> {
        seal(&self.box_key(peer), aad, plaintext)
    }

    /// Decrypts a box `peer` sealed to this identity with `aad`.
    ///
    /// # Errors
    /// [`CustodianError::Crypto`] if the box was altered, was sealed to another identity or
    /// with other associated data.
    pub fn open_from(
        &self,
        peer: &XOnlyPublicKey,
        aad: &[u8],
        sealed: &Sealed,
        what: &'static str,
    ) -> Result<Vec<u8>, CustodianError> {
        open(&self.box_key(peer), aad, sealed, what)
    }
}

/// A signed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The sender: 0 for the coordinator, 1..=n for a custodian.
    pub from: u16,
    /// BIP-340 signature, 128 hex digits.
    pub sig: String,
    /// The message.
    pub body: Value,
}

impl Envelope {
    /// Checks the signature against `key` for `method`, then decodes the body.
    ///
    /// # Errors
    /// [`CustodianError::BadSignature`] if the signature is malformed or does not verify;
    /// [`CustodianError::Encoding`] if the body is not a `T`.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        key: &XOnlyPublicKey,
    ) -> Result<T, CustodianError> {
        let bad = || CustodianError::BadSignature {
            from: self.from,
            method: method.to_string(),
        };
        let bytes = hex::decode(&self.sig).map_err(|_| bad())?;
        let sig = schnorr::Signature::from_slice(&bytes).map_err(|_| bad())?;
        let digest = message_digest(method, &self.body);
        Secp256k1::verification_only()
            .verify_schnorr(&sig, &Message::from_digest(digest), key)
            .map_err(|_| bad())?;
        serde_json::from_value(self.body.clone()).map_err(|e| CustodianError::Encoding {
            what: "message body",
            reason: format!("{method} from {}: {e}", self.from),
        })
    }
}

/// The digest an envelope's signature covers (see the module docs).
pub fn message_digest(method: &str, body: &Value) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    engine.input(MESSAGE_TAG);
    engine.input(&[0]);
    engine.input(method.as_bytes());
    engine.input(&[0]);
    engine.input(&canonical_json(body));
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// `value` as JSON with every object's keys sorted and no whitespace, whatever order the map
/// type kept them in (serde_json's `preserve_order` may be on elsewhere in the build).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(&Value::String((*k).clone()), out);
                    out.push(b':');
                    if let Some(x) = map.get(*k) {
                        write(x, out);
                    }
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            // Scalars have one serialisation in serde_json.
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// An identity public key from hex: 64 digits (x-only) or 66 (compressed, its parity dropped).
///
/// # Errors
/// [`CustodianError::Key`] naming `what`.
pub fn parse_public_key(what: &'static str, s: &str) -> Result<XOnlyPublicKey, CustodianError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let err = |reason: &str| CustodianError::Key {
        what,
        reason: format!("{s:?}: {reason}"),
    };
    let bytes = hex::decode(s).map_err(|_| err("not hex"))?;
    match bytes.len() {
        32 => XOnlyPublicKey::from_slice(&bytes).map_err(|_| err("not a point on secp256k1")),
        33 => PublicKey::from_slice(&bytes)
            .map(|k| k.x_only_public_key().0)
            .map_err(|_| err("not a compressed secp256k1 point")),
        n => Err(err(&format!(
            "{n} bytes; expected 32 (x-only) or 33 (compressed)"
        ))),
    }
}

/// A ChaCha20-Poly1305 box: nonce and ciphertext (with its tag), hex.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// 12 bytes, random.
    pub nonce: String,
    /// The ciphertext and its 16-byte tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("bytes", &(self.ciphertext.len() / 2))
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` under `key` with a random nonce, bound to `aad`.
///
/// # Errors
/// [`CustodianError::Crypto`] if the AEAD refuses (inputs above its limit).
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CustodianError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CustodianError::Crypto { what: "encryption" })?;
    Ok(Sealed {
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

/// Decrypts a box sealed by [`seal`].
///
/// # Errors
/// [`CustodianError::Crypto`] naming `what` if the box is malformed, was altered, or was
/// sealed under another key or associated data.
pub fn open(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &Sealed,
    what: &'static str,
) -> Result<Vec<u8>, CustodianError> {
    let err = || CustodianError::Crypto { what };
    let nonce: [u8; 12] = hex::decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(err)?;
    let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| err())?;
    ChaCha20Poly1305::new(key.into())
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad,
            },
        )
        .map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_verifies_only_for_its_key_method_and_body() {
        let a = Identity::generate();
        let b = Identity::generate();
        let env = a
            .seal_envelope(
                1,
                "custodian_x",
                &serde_json::json!({"b": 2, "a": [1, {"z": 0, "y": 1}]}),
            )
            .expect("seal");
        let ok: Value = env.open("custodian_x", &a.public()).expect("verifies");
        assert_eq!(ok["b"], 2);
        assert!(matches!(
            env.open::<Value>("custodian_y", &a.public()),
            Err(CustodianError::BadSignature { .. })
        ));
        assert!(matches!(
            env.open::<Value>("custodian_x", &b.public()),
            Err(CustodianError::BadSignature { .. })
        ));
        let mut tampered = env.clone();
        tampered.body["b"] = serde_json::json!(3);
        assert!(tampered.open::<Value>("custodian_x", &a.public()).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"f":1,"e":"x"}],"c":null}}"#).expect("json");
        assert_eq!(
            String::from_utf8(canonical_json(&v)).expect("utf8"),
            r#"{"a":{"c":null,"d":[{"e":"x","f":1}]},"b":1}"#
        );
    }

    #[test]
    fn both_sides_derive_the_same_box_key_and_a_third_cannot_open() {
        for _ in 0..8 {
            let a = Identity::generate();
            let b = Identity::generate();
            let c = Identity::generate();
            let sealed = a.seal_to(&b.public(), b"aad", b"secret").expect("seal");
            assert_eq!(
                b.open_from(&a.public(), b"aad", &sealed, "test")
                    .expect("open"),
                b"secret"
            );
            assert!(b.open_from(&a.public(), b"other", &sealed, "test").is_err());
            assert!(c.open_from(&a.public(), b"aad", &sealed, "test").is_err());
            assert!(!format!("{sealed:?}{a:?}").contains(&a.secret_hex()));
        }
    }

    #[test]
    fn public_keys_parse_from_x_only_and_compressed_hex() {
        let a = Identity::generate();
        let x = a.public();
        assert_eq!(parse_public_key("k", &x.to_string()).expect("x-only"), x);
        let full = a.keypair.public_key().serialize();
        assert_eq!(
            parse_public_key("k", &hex::encode(full)).expect("compressed"),
            x
        );
        assert!(parse_public_key("k", "abcd").is_err());
        assert!(parse_public_key("k", "zz").is_err());
    }
}
