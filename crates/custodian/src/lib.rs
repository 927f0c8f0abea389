//! The tunnel vault's custodians as separate processes (`hemi custodian`).
//!
//! Place in the chain of trust: Bitcoin → hVM → sequencer → **chain** → PoP → finality, and
//! beside the chain the tunnel's custody: the chain decides which withdrawals are owed
//! (`hemi_getWithdrawal`) and which deposits are minted (`hemi_getDeposit`); the node is the
//! *coordinator* that builds payouts and sweeps ([`hemi_tunnel::payout`],
//! [`hemi_tunnel::sweep`]) and asks k of the n custodians to sign them; each custodian checks the
//! transaction against a node it trusts ([`policy`]) and computes every message itself before
//! it contributes a FROST signature share. The rules of the vault itself (its key, its script
//! tree) are [`hemi_tunnel::vault`]'s.
//!
//! Main items:
//! - [`identity::Identity`], [`identity::Envelope`]: identity keys, BIP-340-signed messages,
//!   ECDH + ChaCha20-Poly1305 boxes between two identities.
//! - [`peers::Peers`]: the peers file (threshold, custodians' URLs and identities, the
//!   coordinator's identity).
//! - [`store::KeyStore`]: `DIR/custodian.json`, the keys at rest, encrypted under a passphrase
//!   (scrypt + ChaCha20-Poly1305), written crash-safe; [`store::VaultFile`]: the public
//!   `DIR/vault.json` a node loads.
//! - [`dkg::run_dkg`]: FROST distributed key generation over JSON-RPC (`hemi custodian keygen`).
//! - [`server::SigningService`]: the signing rounds a custodian serves (`hemi custodian run`).
//! - [`fallback`]: the vault's `sortedmulti_a` leaf spent by k custodians' script keys through
//!   a PSBT, when FROST signing is unavailable.
//! - [`signer::VaultSigner`]: what the coordinator calls, with [`signer::LocalSigner`] (the
//!   devnet's in-process set) and [`signer::RemoteSigner`] (custodian processes).

pub mod client;
pub mod dkg;
pub mod fallback;
pub mod identity;
pub mod peers;
pub mod policy;
pub mod request;
pub mod server;
pub mod signer;
pub mod store;

use std::path::PathBuf;

use bitcoin::XOnlyPublicKey;
use frost_secp256k1_tr as frost;

pub use identity::{Envelope, Identity};
pub use peers::{Peer, Peers, PeersError};
pub use policy::{FixedPolicy, Policy, PolicyError, TunnelPolicy};
pub use request::{RequestError, SignRequest};
pub use server::{BeforeShare, SigningService};
pub use signer::{LocalSigner, RemoteSigner, SignerError, VaultSigner};
pub use store::{KeyStore, Keys, Passphrase, VaultFile};

/// Why a custodian operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CustodianError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peers file is wrong.
    #[error("peers file {}: {source}", path.display())]
    Peers {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: PeersError,
    },
    /// The key store is not one this build reads.
    #[error("key store {}: {reason}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key store did not decrypt.
    #[error(
        "key store {}: cannot decrypt it with this passphrase (wrong passphrase, or the file \
         was altered)",
        path.display()
    )]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// An empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// `init` on a directory that has a key store.
    #[error("{} exists already: refusing to replace an identity", path.display())]
    StoreExists {
        /// The file.
        path: PathBuf,
    },
    /// `run` before `keygen`.
    #[error("{} holds no vault key yet: run `hemi custodian keygen` first", path.display())]
    NoKeys {
        /// The file.
        path: PathBuf,
    },
    /// vault.json does not describe a consistent vault.
    #[error("vault file: {reason}")]
    VaultFile {
        /// Why.
        reason: String,
    },
    /// A key in hex does not parse.
    #[error("{what}: {reason}")]
    Key {
        /// Which key.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// JSON encoding or decoding of a message.
    #[error("{what}: {reason}")]
    Encoding {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A box does not open (altered, or sealed to another identity or purpose).
    #[error("{what}: does not decrypt (altered, or not sealed to this custodian for this use)")]
    Crypto {
        /// What the box held.
        what: &'static str,
    },
    /// A message's signature does not verify against its sender's key.
    #[error("{method} from sender {from}: bad signature")]
    BadSignature {
        /// The sender's index (0 = coordinator).
        from: u16,
        /// The method.
        method: String,
    },
    /// A message from a sender the peers file does not allow for this method.
    #[error("{method}: sender {from} is not allowed (the coordinator is 0, custodians 1..=n)")]
    UnknownSender {
        /// The sender's index.
        from: u16,
        /// The method.
        method: String,
    },
    /// This custodian's identity is not in the peers file, or at another index.
    #[error("identity {identity} is not custodian {index} of the peers file")]
    NotAPeer {
        /// Our identity.
        identity: XOnlyPublicKey,
        /// The index asked for.
        index: u16,
    },
    /// A FROST step failed.
    #[error("FROST {stage}: {source}")]
    Frost {
        /// Which step.
        stage: &'static str,
        /// The error.
        source: frost::Error,
    },
    /// A peer did not give what the protocol needs in time.
    #[error("custodian {index} ({url}) did not send its {what} in time; last error: {last}")]
    PeerMissing {
        /// Its index.
        index: u16,
        /// Its URL.
        url: String,
        /// What was awaited.
        what: &'static str,
        /// The last error seen.
        last: String,
    },
    /// A peer sent something that contradicts this custodian's view.
    #[error("custodian {index} disagrees on the {what}: ours {ours}, theirs {theirs}")]
    Disagree {
        /// Its index.
        index: u16,
        /// Which value.
        what: &'static str,
        /// Ours.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// The vault's parameters.
    #[error(transparent)]
    Vault(#[from] hemi_tunnel::VaultError),
    /// A signing session is unknown, used or expired.
    #[error("session {session:?}: {problem}")]
    Session {
        /// The session.
        session: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A malformed signing request.
    #[error("request: {0}")]
    Request(#[from] RequestError),
    /// The policy refused the transaction.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// The server could not listen.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

pub(crate) fn frost_err(stage: &'static str) -> impl FnOnce(frost::Error) -> CustodianError {
    move |source| CustodianError::Frost { stage, source }
}

/// The x-only form of a FROST verifying key (its SEC1 encoding without the parity byte).
///
/// # Errors
/// [`CustodianError::Frost`] if the key does not serialise (the identity point).
pub fn x_only(key: &frost::VerifyingKey) -> Result<XOnlyPublicKey, CustodianError> {
    let bytes = key.serialize().map_err(frost_err("group key"))?;
    XOnlyPublicKey::from_slice(bytes.get(1..).unwrap_or_default()).map_err(|_| {
        CustodianError::Frost {
            stage: "group key",
            source: frost::Error::MalformedVerifyingKey,
        }
    })
}
