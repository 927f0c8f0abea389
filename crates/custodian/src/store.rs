//! A custodian's keys at rest: `DIR/custodian.json`, and the public `DIR/vault.json` a node
//! loads.
//!
//! ```text
//! custodian.json (version 1)
//!   identity   the identity public key (x-only hex)            public
//!   public     after keygen: index, network, the vault's        public, but bound to the
//!              parameters, this custodian's script key, the      secrets as associated data
//!              FROST PublicKeyPackage
//!   kdf        scrypt log_n, r, p, a random 16-byte salt
//!   secret     ChaCha20-Poly1305 (key = scrypt(passphrase, salt), random nonce) of
//!              {identity secret, FROST KeyPackage, script secret key}
//! ```
//!
//! Every write goes to a temporary file in the same directory, is fsync'd, renamed over the old
//! file, and the directory fsync'd: a crash leaves the old file or the new one, never half of
//! one. A fresh salt and nonce are drawn for every write.

use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::secp256k1::Keypair;
use bitcoin::{Network, XOnlyPublicKey};
use frost_secp256k1_tr as frost;
use hemi_tunnel::Vault;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::identity::{canonical_json, open, seal, Identity, Sealed};
use crate::CustodianError;

/// The key store's file name in its directory.
pub const STORE_FILE: &str = "custodian.json";
/// The public vault description's file name.
pub const VAULT_FILE: &str = "vault.json";
/// The formats' version.
pub const VERSION: u32 = 1;
/// scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB; RFC 7914's interactive-login figure).
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const STORE_AAD_TAG: &[u8] = b"hemi-rs/custodian/v1/store";

/// A passphrase. Its Debug impl prints nothing of it.
#[derive(Clone)]
pub struct Passphrase(String);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// A passphrase (one trailing newline, as a file written by `echo` has, is dropped).
    ///
    /// # Errors
    /// [`CustodianError::EmptyPassphrase`] if nothing is left.
    pub fn new(s: &str) -> Result<Self, CustodianError> {
        let s = s
            .strip_suffix("\r\n")
            .or_else(|| s.strip_suffix('\n'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(CustodianError::EmptyPassphrase);
        }
        Ok(Passphrase(s.to_string()))
    }

    /// The passphrase in `path`.
    ///
    /// # Errors
    /// [`CustodianError::Io`]; [`CustodianError::EmptyPassphrase`].
    pub fn from_file(path: &Path) -> Result<Self, CustodianError> {
        let s = std::fs::read_to_string(path).map_err(|source| CustodianError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&s)
    }
}

/// A custodian's share of the vault key, after keygen. Its Debug impl prints no secret.
#[derive(Clone)]
pub struct Keys {
    /// Its index (FROST identifier).
    pub index: u16,
    /// The network the vault's address is for.
    pub network: Network,
    key_package: frost::keys::KeyPackage,
    /// Every custodian's public verifying share and the group key.
    pub public_key_package: frost::keys::PublicKeyPackage,
    script_key: Keypair,
    /// The vault these keys hold.
    pub vault: Vault,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("index", &self.index)
            .field("group_key", &self.vault.group_key)
            .field("script_key", &self.script_key())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Assembles a DKG's result.
    pub(crate) fn new(
        index: u16,
        network: Network,
        key_package: frost::keys::KeyPackage,
        public_key_package: frost::keys::PublicKeyPackage,
        script_key: Keypair,
        vault: Vault,
    ) -> Self {
        Keys {
            index,
            network,
            key_package,
            public_key_package,
            script_key,
            vault,
        }
    }

    /// The FROST key share (in-crate only: never logged, stored in clear or sent).
    pub(crate) fn key_package(&self) -> &frost::keys::KeyPackage {
        &self.key_package
    }

    /// Signs every input of `psbt` that spends the vault's `sortedmulti_a` leaf with this
    /// custodian's script key (the fallback when FROST signing is unavailable); returns how
    /// many inputs it signed.
    ///
    /// # Errors
    /// [`crate::fallback::FallbackError`] for a PSBT that spends no multisig leaf of this vault.
    pub fn sign_fallback(
        &self,
        psbt: &mut bitcoin::psbt::Psbt,
    ) -> Result<usize, crate::fallback::FallbackError> {
        crate::fallback::sign_fallback(psbt, &self.vault, &self.script_key)
    }

    /// This custodian's key in the vault's `sortedmulti_a` leaf.
    pub fn script_key(&self) -> XOnlyPublicKey {
        self.script_key.x_only_public_key().0
    }

    /// The public description of the vault.
    pub fn vault_file(&self) -> VaultFile {
        VaultFile::new(&self.vault, self.network, self.public_key_package.clone())
    }
}

/// `DIR/vault.json`: what a node needs to watch and spend-check the vault and to aggregate the
/// custodians' signature shares. Identical at every custodian after a DKG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultFile {
    /// [`VERSION`].
    pub version: u32,
    /// The network of `address`.
    pub network: Network,
    /// The FROST group key (the vault's internal key).
    pub group_key: XOnlyPublicKey,
    /// k.
    pub threshold: usize,
    /// The custodians' script keys, sorted.
    pub custodian_keys: Vec<XOnlyPublicKey>,
    /// The recovery leaf's key.
    pub recovery_key: XOnlyPublicKey,
    /// The recovery leaf's relative timelock, blocks.
    pub recovery_after: u16,
    /// The vault's address.
    pub address: String,
    /// The vault's taproot output key.
    pub output_key: XOnlyPublicKey,
    /// The FROST public key package (verifying shares, group key).
    pub public_key_package: frost::keys::PublicKeyPackage,
}

impl VaultFile {
    /// The description of `vault`.
    pub fn new(
        vault: &Vault,
        network: Network,
        public_key_package: frost::keys::PublicKeyPackage,
    ) -> Self {
        VaultFile {
            version: VERSION,
            network,
            group_key: vault.group_key,
            threshold: vault.threshold,
            custodian_keys: vault.custodian_keys.clone(),
            recovery_key: vault.recovery_key,
            recovery_after: vault.recovery_after,
            address: vault.address(network).to_string(),
            output_key: vault.output_key(),
            public_key_package,
        }
    }

    /// The vault, its every derived field checked.
    ///
    /// # Errors
    /// [`CustodianError::VaultFile`] naming the field that does not match.
    pub fn vault(&self) -> Result<Vault, CustodianError> {
        let bad = |reason: String| CustodianError::VaultFile { reason };
        if self.version != VERSION {
            return Err(bad(format!(
                "version {} (this build reads {VERSION})",
                self.version
            )));
        }
        let vault = Vault::new(
            self.group_key,
            self.threshold,
            self.custodian_keys.clone(),
            self.recovery_key,
            self.recovery_after,
        )?;
        let group = crate::x_only(self.public_key_package.verifying_key())?;
        if group != self.group_key {
            return Err(bad(format!(
                "the public key package's group key is {group}, groupKey says {}",
                self.group_key
            )));
        }
        if vault.output_key() != self.output_key {
            return Err(bad(format!(
                "outputKey {} is not the vault's ({})",
                self.output_key,
                vault.output_key()
            )));
        }
        let address = vault.address(self.network).to_string();
        if address != self.address {
            return Err(bad(format!(
                "address {} is not the vault's ({address})",
                self.address
            )));
        }
        Ok(vault)
    }

    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`CustodianError::Io`], [`CustodianError::VaultFile`].
    pub fn load(path: &Path) -> Result<(Self, Vault), CustodianError> {
        let bytes = std::fs::read(path).map_err(|source| CustodianError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file: VaultFile =
            serde_json::from_slice(&bytes).map_err(|e| CustodianError::VaultFile {
                reason: format!("{}: {e}", path.display()),
            })?;
        let vault = file.vault()?;
        Ok((file, vault))
    }

    /// Writes it to `path`, crash-safe.
    ///
    /// # Errors
    /// [`CustodianError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), CustodianError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| CustodianError::Encoding {
            what: "vault.json",
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        write_atomic(path, &bytes, false)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoreFile {
    version: u32,
    identity: XOnlyPublicKey,
    public: Option<PublicPart>,
    kdf: Kdf,
    secret: Sealed,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kdf {
    name: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PublicPart {
    index: u16,
    script_key: XOnlyPublicKey,
    vault: VaultFile,
}

/// The plaintext of `secret`. No Debug: it is all secret.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretPart {
    identity: String,
    key_package: Option<frost::keys::KeyPackage>,
    script_key: Option<String>,
}

/// A custodian's key store, open (decrypted). Its Debug impl prints no secret.
pub struct KeyStore {
    path: PathBuf,
    identity: Identity,
    keys: Option<Keys>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("identity", &self.identity.public())
            .field("keys", &self.keys)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CustodianError + '_ {
    move |source| CustodianError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl KeyStore {
    /// `DIR/custodian.json`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(STORE_FILE)
    }

    /// Creates `DIR/custodian.json` with a fresh identity (and `DIR` if needed).
    ///
    /// # Errors
    /// [`CustodianError::StoreExists`] if there is one already; [`CustodianError::Io`].
    pub fn create(dir: &Path, passphrase: &Passphrase) -> Result<Self, CustodianError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = Self::file(dir);
        if path.exists() {
            return Err(CustodianError::StoreExists { path });
        }
        let store = KeyStore {
            path,
            identity: Identity::generate(),
            keys: None,
        };
        store.write_to(passphrase, false)?;
        Ok(store)
    }

    /// Opens `DIR/custodian.json` with `passphrase`.
    ///
    /// # Errors
    /// [`CustodianError::WrongPassphrase`] if it does not decrypt (a wrong passphrase, or an
    /// altered file); [`CustodianError::Store`] for a file that is not a key store or of
    /// another version; [`CustodianError::Io`].
    pub fn open(dir: &Path, passphrase: &Passphrase) -> Result<Self, CustodianError> {
        let path = Self::file(dir);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let bad = |reason: String| CustodianError::Store {
            path: path.clone(),
            reason,
        };
        let version: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        match version.get("version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(bad(format!("version {v}; this build reads {VERSION}"))),
            None => return Err(bad("no \"version\"".into())),
        }
        let file: StoreFile = serde_json::from_value(version).map_err(|e| bad(e.to_string()))?;
        if file.kdf.name != "scrypt" {
            return Err(bad(format!("unknown KDF {:?}", file.kdf.name)));
        }
        let key = derive_key(passphrase, &file.kdf).map_err(bad)?;
        let aad = store_aad(&file.identity, file.public.as_ref(), &file.kdf)?;
        let plain = open(&key, &aad, &file.secret, "key store")
            .map_err(|_| CustodianError::WrongPassphrase { path: path.clone() })?;
        let secret: SecretPart =
            serde_json::from_slice(&plain).map_err(|e| bad(format!("secret part: {e}")))?;
        let identity = Identity::from_secret_hex("identity", &secret.identity)?;
        if identity.public() != file.identity {
            return Err(bad("the identity secret does not match the identity".into()));
        }
        let keys = match (file.public, secret.key_package, secret.script_key) {
            (None, None, None) => None,
            (Some(public), Some(key_package), Some(script)) => {
                let vault = public.vault.vault()?;
                let script_key = Identity::from_secret_hex("script key", &script)?;
                if script_key.public() != public.script_key {
                    return Err(bad("the script secret does not match the script key".into()));
                }
                Some(Keys {
                    index: public.index,
                    network: public.vault.network,
                    key_package,
                    public_key_package: public.vault.public_key_package,
                    script_key: *script_key.keypair(),
                    vault,
                })
            }
            _ => return Err(bad("keygen result is incomplete".into())),
        };
        Ok(KeyStore {
            path,
            identity,
            keys,
        })
    }

    /// The identity public key in `DIR/custodian.json`, without the passphrase.
    ///
    /// # Errors
    /// As [`KeyStore::open`], short of decryption.
    pub fn public_identity(dir: &Path) -> Result<XOnlyPublicKey, CustodianError> {
        let path = Self::file(dir);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let file: StoreFile =
            serde_json::from_slice(&bytes).map_err(|e| CustodianError::Store {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(file.identity)
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The keys, after keygen.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a keygen result (replacing any earlier one) and writes the file.
    ///
    /// # Errors
    /// [`CustodianError::Io`].
    pub fn save_keys(&mut self, keys: Keys, passphrase: &Passphrase) -> Result<(), CustodianError> {
        self.keys = Some(keys);
        self.write(passphrase)
    }

    fn write(&self, passphrase: &Passphrase) -> Result<(), CustodianError> {
        self.write_to(passphrase, true)
    }

    /// Writes the store; `replace` false refuses a file that exists (a new store).
    fn write_to(&self, passphrase: &Passphrase, replace: bool) -> Result<(), CustodianError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kdf = Kdf {
            name: "scrypt".into(),
            log_n: SCRYPT_LOG_N,
            r: SCRYPT_R,
            p: SCRYPT_P,
            salt: hex::encode(salt),
        };
        let key = derive_key(passphrase, &kdf).map_err(|reason| CustodianError::Store {
            path: self.path.clone(),
            reason,
        })?;
        let public = self.keys.as_ref().map(|k| PublicPart {
            index: k.index,
            script_key: k.script_key(),
            vault: k.vault_file(),
        });
        let secret = SecretPart {
            identity: self.identity.secret_hex(),
            key_package: self.keys.as_ref().map(|k| k.key_package.clone()),
            script_key: self
                .keys
                .as_ref()
                .map(|k| hex::encode(k.script_key.secret_bytes())),
        };
        let plain = serde_json::to_vec(&secret).map_err(|e| CustodianError::Encoding {
            what: "key store",
            reason: e.to_string(),
        })?;
        let aad = store_aad(&self.identity.public(), public.as_ref(), &kdf)?;
        let file = StoreFile {
            version: VERSION,
            identity: self.identity.public(),
            public,
            kdf,
            secret: seal(&key, &aad, &plain)?,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| CustodianError::Encoding {
            what: "key store",
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        match write_file(&self.path, &bytes, true, replace) {
            Err(CustodianError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(CustodianError::StoreExists {
                    path: self.path.clone(),
                })
            }
            other => other,
        }
    }
}

/// The associated data of the store's secret: everything public in the file.
fn store_aad(
    identity: &XOnlyPublicKey,
    public: Option<&PublicPart>,
    kdf: &Kdf,
) -> Result<Vec<u8>, CustodianError> {
    let header = json!({
        "version": VERSION,
        "identity": identity,
        "public": public,
        "kdf": kdf,
    });
    let mut aad = STORE_AAD_TAG.to_vec();
    aad.extend_from_slice(&canonical_json(&header));
    Ok(aad)
}

fn derive_key(passphrase: &Passphrase, kdf: &Kdf) -> Result<[u8; 32], String> {
    let salt = hex::decode(&kdf.salt).map_err(|_| "kdf salt is not hex".to_string())?;
    // Bounded so that a hostile file cannot make us allocate gigabytes: scrypt's memory is
    // 128 · r · 2^log_n bytes, here at most 256 MiB (this build writes 16 MiB).
    let memory = (128u64 * u64::from(kdf.r)) << u32::from(kdf.log_n.min(40));
    if kdf.log_n > 20 || kdf.r > 32 || kdf.p > 16 || memory > 256 << 20 {
        return Err(format!(
            "scrypt parameters log_n {} r {} p {} are above this build's limits",
            kdf.log_n, kdf.r, kdf.p
        ));
    }
    let params = scrypt::Params::new(kdf.log_n, kdf.r, kdf.p, 32)
        .map_err(|e| format!("scrypt parameters: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(passphrase.0.as_bytes(), &salt, &params, &mut key)
        .map_err(|e| format!("scrypt: {e}"))?;
    Ok(key)
}

/// Writes `bytes` to `path` crash-safe: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. `private`: the file is readable by its owner only (unix).
///
/// # Errors
/// [`CustodianError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), CustodianError> {
    write_file(path, bytes, private, true)
}

/// [`write_atomic`] for a file that must not exist yet: it fails (`AlreadyExists`) rather than
/// replace one, even one that appeared a moment ago (the temp file is hard-linked, not renamed).
///
/// # Errors
/// [`CustodianError::Io`], with `AlreadyExists` if `path` exists.
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CustodianError> {
    write_file(path, bytes, private, false)
}

fn write_file(
    path: &Path,
    bytes: &[u8],
    private: bool,
    replace: bool,
) -> Result<(), CustodianError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut f = options.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        if replace {
            std::fs::rename(&tmp, path).map_err(io_err(path))?;
        } else {
            std::fs::hard_link(&tmp, path).map_err(io_err(path))?;
            std::fs::remove_file(&tmp).map_err(io_err(&tmp))?;
        }
        #[cfg(unix)]
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_reopens_with_its_passphrase_and_refuses_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = Passphrase::new("correct horse\n").expect("pass");
        let store = KeyStore::create(dir.path(), &pass).expect("create");
        let public = store.identity().public();
        let text = std::fs::read_to_string(KeyStore::file(dir.path())).expect("read");
        assert!(!text.contains(&store.identity().secret_hex()), "{text}");
        assert_eq!(
            KeyStore::public_identity(dir.path()).expect("public"),
            public
        );
        let again = KeyStore::open(dir.path(), &pass).expect("open");
        assert_eq!(again.identity().public(), public);
        assert!(again.keys().is_none());
        let wrong = KeyStore::open(dir.path(), &Passphrase::new("wrong").expect("p"));
        assert!(
            matches!(wrong, Err(CustodianError::WrongPassphrase { .. })),
            "{wrong:?}"
        );
        assert!(matches!(
            KeyStore::create(dir.path(), &pass),
            Err(CustodianError::StoreExists { .. })
        ));
        assert!(Passphrase::new("\n").is_err());
        assert!(!format!("{pass:?}{again:?}").contains("horse"));
    }

    #[test]
    fn stored_keys_round_trip_and_no_secret_byte_shows_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = Passphrase::new("p").expect("pass");
        let mut store = KeyStore::create(dir.path(), &pass).expect("create");
        let (shares, public) = frost::keys::generate_with_dealer(
            3,
            2,
            frost::keys::IdentifierList::Default,
            rand::rngs::OsRng,
        )
        .expect("dealer");
        let share = shares.into_values().next().expect("a share");
        let key_package = frost::keys::KeyPackage::try_from(share).expect("key package");
        let group = crate::x_only(public.verifying_key()).expect("group");
        let script = Identity::generate();
        let others: Vec<XOnlyPublicKey> = (0..2).map(|_| Identity::generate().public()).collect();
        let vault = Vault::new(
            group,
            2,
            [vec![script.public()], others].concat(),
            Identity::generate().public(),
            144,
        )
        .expect("vault");
        let keys = Keys::new(
            1,
            Network::Regtest,
            key_package.clone(),
            public,
            *script.keypair(),
            vault.clone(),
        );
        assert!(
            !format!("{keys:?}").contains(&hex::encode(key_package.signing_share().serialize()))
        );
        store.save_keys(keys, &pass).expect("save");
        let text = std::fs::read_to_string(KeyStore::file(dir.path())).expect("read");
        for secret in [
            hex::encode(key_package.signing_share().serialize()),
            script.secret_hex(),
            store.identity().secret_hex(),
        ] {
            assert!(!text.contains(&secret), "a secret shows in the store");
        }
        let back = KeyStore::open(dir.path(), &pass).expect("open");
        let k = back.keys().expect("keys");
        assert_eq!(k.key_package(), &key_package);
        assert_eq!(k.vault, vault);
        assert_eq!(k.script_key(), script.public());
        // Altering the public part breaks the secret's associated data.
        let altered = text.replace("\"index\": 1", "\"index\": 2");
        assert_ne!(altered, text);
        std::fs::write(KeyStore::file(dir.path()), altered).expect("write");
        assert!(matches!(
            KeyStore::open(dir.path(), &pass),
            Err(CustodianError::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn an_altered_or_foreign_store_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = Passphrase::new("p").expect("pass");
        KeyStore::create(dir.path(), &pass).expect("create");
        let path = KeyStore::file(dir.path());
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 7")).expect("write");
        let err = KeyStore::open(dir.path(), &pass)
            .expect_err("version")
            .to_string();
        assert!(err.contains("version 7"), "{err}");
        std::fs::write(&path, "{").expect("write");
        let err = KeyStore::open(dir.path(), &pass)
            .expect_err("json")
            .to_string();
        assert!(err.contains("not JSON"), "{err}");
    }
}
