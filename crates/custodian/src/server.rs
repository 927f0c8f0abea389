//! The signing service a custodian runs (`hemi custodian run`): FROST's two signing rounds
//! over JSON-RPC, for the coordinator only.
//!
//! ```text
//! custodian_info                         → index, identity, group key, vault address (public)
//! custodian_commit {session, request}    → round-1 commitments, one per input
//!     checks: the coordinator's signature; a new session; the request's shape; the Policy;
//!     computes every input's sighash itself and keeps it with the nonces (in memory, for this
//!     session only, single use, expiring)
//! custodian_sign {session, packages}     → signature shares, one per input
//!     checks: the coordinator's signature; the session is open (then closes it, whatever
//!     follows); each signing package's message is the sighash computed at commit
//! ```
//!
//! Requests are [`Envelope`]s from sender 0, signed by the coordinator's identity in the peers
//! file; answers are signed by the custodian's identity. Shares of the key never leave the
//! process; nonces are used once and dropped.
//!
//! A custodian remembers, on disk (`signed-payouts.json` beside its key store, written before
//! the share leaves), which withdrawal requests it has signed a payout of and with which inputs.
//! It signs another payout of the same request only if that one spends one of the same inputs
//! (a replacement: both cannot confirm), so a coordinator cannot have one request paid twice
//! while the first payout waits for its confirmations.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use frost_secp256k1_tr as frost;
use jsonrpsee::server::ServerHandle;
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dkg::{reply, start_server};
use crate::identity::{Envelope, Identity};
use crate::peers::Peers;
use crate::policy::Policy;
use crate::request::{SignRequest, WireSignRequest};
use crate::store::{KeyStore, Keys};
use crate::CustodianError;

/// `custodian_info`.
pub const INFO: &str = "custodian_info";
/// `custodian_commit`.
pub const COMMIT: &str = "custodian_commit";
/// `custodian_sign`.
pub const SIGN: &str = "custodian_sign";
/// How long a committed session waits for its `custodian_sign`.
pub const SESSION_TTL: Duration = Duration::from_secs(60);
/// The most sessions open at once.
const MAX_SESSIONS: usize = 256;
/// The most inputs one request may have.
const MAX_INPUTS: usize = 1_000;

/// `custodian_commit`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// A fresh id the coordinator picks.
    pub session: String,
    /// The custodian asked (a request for one custodian is not replayed to another).
    pub to: u16,
    /// Unix time after which the request is void (at most [`MAX_REQUEST_LIFE`] ahead).
    pub expires: u64,
    /// What to sign.
    pub request: WireSignRequest,
}

/// How far ahead a request's `expires` may be.
pub const MAX_REQUEST_LIFE: Duration = Duration::from_secs(120);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `custodian_commit`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitReply {
    /// The session.
    pub session: String,
    /// The custodian.
    pub from: u16,
    /// One per input.
    pub commitments: Vec<frost::round1::SigningCommitments>,
}

/// `custodian_sign`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The session committed to.
    pub session: String,
    /// One per input.
    pub packages: Vec<frost::SigningPackage>,
}

/// `custodian_sign`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignReply {
    /// The session.
    pub session: String,
    /// The custodian.
    pub from: u16,
    /// One per input.
    pub shares: Vec<frost::round2::SignatureShare>,
}

/// What a custodian does when a `custodian_sign` arrives (a fault to inject, for tests of the
/// coordinator's fallback).
#[derive(Debug, Clone, Default)]
pub enum BeforeShare {
    /// Answer (the normal case).
    #[default]
    Answer,
    /// `std::process::abort()` before answering: a custodian killed mid-round
    /// (`hemi custodian run --exit-before-share`).
    Abort,
    /// Send on the channel and never answer: the owner of the server tears it down, as a
    /// process that vanished (in-process tests).
    Vanish(tokio::sync::mpsc::UnboundedSender<()>),
}

struct Session {
    expires: Instant,
    sighashes: Vec<[u8; 32]>,
    nonces: Vec<frost::round1::SigningNonces>,
    /// The withdrawal ids the transaction pays (none for a sweep) and what it spends.
    payout_ids: Vec<u32>,
    inputs: Vec<bitcoin::OutPoint>,
}

/// The payouts a custodian has signed: request id → the inputs of every payout of it signed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ledger {
    version: u32,
    signed: std::collections::BTreeMap<u32, Vec<bitcoin::OutPoint>>,
}

impl Ledger {
    const VERSION: u32 = 1;

    fn load(path: &std::path::Path) -> Result<Self, CustodianError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let l: Ledger =
                    serde_json::from_slice(&bytes).map_err(|e| CustodianError::Encoding {
                        what: "signed-payouts.json",
                        reason: e.to_string(),
                    })?;
                if l.version != Self::VERSION {
                    return Err(CustodianError::Encoding {
                        what: "signed-payouts.json",
                        reason: format!(
                            "version {}; this build reads {}",
                            l.version,
                            Self::VERSION
                        ),
                    });
                }
                Ok(l)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger {
                version: Self::VERSION,
                signed: Default::default(),
            }),
            Err(source) => Err(CustodianError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The first request of `ids` already signed in a payout that shares no input with
    /// `inputs`, and that payout's inputs.
    fn conflict(
        &self,
        ids: &[u32],
        inputs: &[bitcoin::OutPoint],
    ) -> Option<(u32, &[bitcoin::OutPoint])> {
        ids.iter().find_map(|id| {
            self.signed
                .get(id)
                .filter(|before| !before.iter().any(|o| inputs.contains(o)))
                .map(|before| (*id, before.as_slice()))
        })
    }
}

/// A custodian's signing service.
pub struct SigningService {
    identity: Identity,
    peers: Peers,
    keys: Keys,
    policy: Arc<dyn Policy>,
    sessions: Mutex<HashMap<String, Session>>,
    before_share: BeforeShare,
    ledger_path: std::path::PathBuf,
    ledger: Mutex<Ledger>,
    /// Session ids seen, and until when (unix time) a request naming them could be valid.
    used: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for SigningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningService")
            .field("identity", &self.identity)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn rpc_err(code: i32, m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, m.into(), None::<()>)
}

fn invalid(e: impl std::fmt::Display) -> ErrorObjectOwned {
    rpc_err(-32602, e.to_string())
}

impl SigningService {
    /// The service of an open key store's keys, for the custodian set `peers`, signing what
    /// `policy` allows.
    ///
    /// # Errors
    /// An unreadable `signed-payouts.json`;
    /// [`CustodianError::NoKeys`] before keygen; [`CustodianError::NotAPeer`] if the store's
    /// identity is not its custodian index in `peers`; [`CustodianError::Disagree`] if the
    /// threshold differs.
    pub fn new(
        store: &KeyStore,
        peers: Peers,
        policy: Arc<dyn Policy>,
    ) -> Result<Self, CustodianError> {
        let keys = store
            .keys()
            .cloned()
            .ok_or_else(|| CustodianError::NoKeys {
                path: store.path().to_path_buf(),
            })?;
        let identity = store.identity().clone();
        if peers.peer(keys.index).map(|p| p.identity) != Some(identity.public()) {
            return Err(CustodianError::NotAPeer {
                identity: identity.public(),
                index: keys.index,
            });
        }
        if usize::from(peers.threshold) != keys.vault.threshold {
            return Err(CustodianError::Disagree {
                index: keys.index,
                what: "threshold (peers file vs the stored vault)",
                ours: keys.vault.threshold.to_string(),
                theirs: peers.threshold.to_string(),
            });
        }
        let ledger_path = store.path().with_file_name("signed-payouts.json");
        let ledger = Ledger::load(&ledger_path)?;
        Ok(SigningService {
            identity,
            peers,
            keys,
            policy,
            sessions: Mutex::new(HashMap::new()),
            before_share: BeforeShare::Answer,
            ledger_path,
            ledger: Mutex::new(ledger),
            used: Mutex::new(HashMap::new()),
        })
    }

    /// Injects a fault at `custodian_sign` (see [`BeforeShare`]).
    pub fn with_before_share(mut self, b: BeforeShare) -> Self {
        self.before_share = b;
        self
    }

    /// The keys served.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Serves on `listener` until the handle is stopped.
    ///
    /// # Errors
    /// [`CustodianError::Listen`].
    pub fn start(self, listener: TcpListener) -> Result<ServerHandle, CustodianError> {
        let reg = |e: jsonrpsee::core::RegisterMethodError| CustodianError::Encoding {
            what: "RPC module",
            reason: e.to_string(),
        };
        let mut m = jsonrpsee::RpcModule::new(self);
        m.register_method(INFO, |_, s, _| s.info()).map_err(reg)?;
        m.register_async_method(COMMIT, |params, s, _| async move {
            let env: Envelope = params.one().map_err(invalid)?;
            s.commit(env).await
        })
        .map_err(reg)?;
        m.register_async_method(SIGN, |params, s, _| async move {
            let env: Envelope = params.one().map_err(invalid)?;
            s.sign(env).await
        })
        .map_err(reg)?;
        start_server(listener, m)
    }

    fn info(&self) -> Value {
        let v = &self.keys.vault;
        json!({
            "index": self.keys.index,
            "identity": self.identity.public(),
            "groupKey": v.group_key,
            "outputKey": v.output_key(),
            "vaultAddress": v.address(self.keys.network).to_string(),
            "threshold": v.threshold,
            "custodians": self.peers.len(),
            "scriptKey": self.keys.script_key(),
        })
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The body of a request from the coordinator.
    fn coordinator_body<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        env: &Envelope,
    ) -> Result<T, ErrorObjectOwned> {
        if env.from != 0 {
            let e = CustodianError::UnknownSender {
                from: env.from,
                method: method.to_string(),
            };
            tracing::warn!(method, from = env.from, "refused: not the coordinator");
            return Err(rpc_err(-32003, e.to_string()));
        }
        env.open(method, &self.peers.coordinator).map_err(|e| {
            tracing::warn!(method, "refused: not signed by the coordinator");
            rpc_err(-32003, e.to_string())
        })
    }

    async fn commit(&self, env: Envelope) -> Result<Envelope, ErrorObjectOwned> {
        let body: CommitBody = self.coordinator_body(COMMIT, &env)?;
        let session = body.session;
        if session.is_empty() || session.len() > 128 {
            return Err(invalid("session: 1 to 128 characters"));
        }
        if body.to != self.keys.index {
            return Err(invalid(format!(
                "a request for custodian {}, this is custodian {}",
                body.to, self.keys.index
            )));
        }
        let now = unix_now();
        if body.expires < now || body.expires > now + MAX_REQUEST_LIFE.as_secs() {
            return Err(invalid(format!(
                "the request expires at {}; now is {now} (expired, or more than {} s ahead)",
                body.expires,
                MAX_REQUEST_LIFE.as_secs()
            )));
        }
        {
            // A session id is used once, for as long as a request naming it could be valid.
            let mut used = self.used();
            used.retain(|_, until| *until >= now);
            if used.insert(session.clone(), body.expires).is_some() {
                return Err(invalid(format!("session {session:?} is already used")));
            }
        }
        let request = SignRequest::from_wire(&body.request).map_err(invalid)?;
        let n = request.tx.input.len();
        if n > MAX_INPUTS {
            return Err(invalid(format!("{n} inputs: at most {MAX_INPUTS}")));
        }
        {
            let mut sessions = self.lock();
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            if sessions.contains_key(&session) {
                return Err(invalid(format!("session {session:?} is already used")));
            }
        }
        if let Err(e) = self.policy.check(&request, &self.keys.vault).await {
            tracing::warn!(%session, txid = %request.tx.compute_txid(), reason = %e, "refused by policy");
            return Err(rpc_err(-32004, format!("refused by policy: {e}")));
        }
        let payout_ids: Vec<u32> = request
            .tx
            .output
            .iter()
            .filter_map(|o| hemi_tunnel::payout::parse_id_list(&o.script_pubkey))
            .flatten()
            .collect();
        let inputs: Vec<bitcoin::OutPoint> =
            request.tx.input.iter().map(|i| i.previous_output).collect();
        if let Some((id, before)) = self.ledger().conflict(&payout_ids, &inputs) {
            let reason = format!(
                "withdrawal {id} was already signed in a payout spending {before:?}; another \
                 payout of it must replace that one (spend one of its inputs)"
            );
            tracing::warn!(%session, %reason, "refused: a second payout");
            return Err(rpc_err(-32004, format!("refused by policy: {reason}")));
        }
        let sighashes = request.sighashes().map_err(invalid)?;
        let share = self.keys.key_package().signing_share();
        let (nonces, commitments): (Vec<_>, Vec<_>) = sighashes
            .iter()
            .map(|_| frost::round1::commit(share, &mut rand::rngs::OsRng))
            .unzip();
        {
            let mut sessions = self.lock();
            if sessions.len() >= MAX_SESSIONS {
                return Err(rpc_err(-32005, "too many open sessions; try again later"));
            }
            if sessions.contains_key(&session) {
                return Err(invalid(format!("session {session:?} is already used")));
            }
            sessions.insert(
                session.clone(),
                Session {
                    expires: Instant::now() + SESSION_TTL,
                    sighashes,
                    nonces,
                    payout_ids,
                    inputs,
                },
            );
        }
        tracing::info!(%session, txid = %request.tx.compute_txid(), inputs = n, "committed");
        let reply_body = CommitReply {
            session,
            from: self.keys.index,
            commitments,
        };
        self.identity
            .seal_envelope(self.keys.index, &reply(COMMIT), &reply_body)
            .map_err(|e| rpc_err(-32603, e.to_string()))
    }

    async fn sign(&self, env: Envelope) -> Result<Envelope, ErrorObjectOwned> {
        let body: SignBody = self.coordinator_body(SIGN, &env)?;
        match &self.before_share {
            BeforeShare::Answer => {}
            BeforeShare::Abort => {
                tracing::error!("--exit-before-share: aborting before the signature share");
                std::process::abort();
            }
            BeforeShare::Vanish(tx) => {
                let _ = tx.send(());
                std::future::pending::<()>().await;
            }
        }
        let session = self
            .lock()
            .remove(&body.session)
            .filter(|s| s.expires > Instant::now())
            .ok_or_else(|| {
                invalid(CustodianError::Session {
                    session: body.session.clone(),
                    problem: "unknown, used or expired: commit first",
                })
            })?;
        if body.packages.len() != session.sighashes.len() {
            return Err(invalid(format!(
                "{} signing packages for {} inputs",
                body.packages.len(),
                session.sighashes.len()
            )));
        }
        let root = self.keys.vault.merkle_root().map(|r| r.to_byte_array());
        let mut shares = Vec::with_capacity(body.packages.len());
        for (input, (package, (sighash, nonces))) in body
            .packages
            .iter()
            .zip(session.sighashes.iter().zip(&session.nonces))
            .enumerate()
        {
            if package.message().as_slice() != sighash.as_slice() {
                tracing::warn!(session = %body.session, input, "refused: message is not the sighash");
                return Err(invalid(format!(
                    "input {input}: the signing package's message is not the sighash this \
                     custodian computed"
                )));
            }
            let share = frost::round2::sign_with_tweak(
                package,
                nonces,
                self.keys.key_package(),
                root.as_ref().map(|r| r.as_slice()),
            )
            .map_err(|e| invalid(format!("input {input}: {e}")))?;
            shares.push(share);
        }
        if !session.payout_ids.is_empty() {
            // On disk before the share leaves: a restarted custodian remembers it too.
            let mut ledger = self.ledger();
            for id in &session.payout_ids {
                let entry = ledger.signed.entry(*id).or_default();
                for o in &session.inputs {
                    if !entry.contains(o) {
                        entry.push(*o);
                    }
                }
            }
            let bytes =
                serde_json::to_vec_pretty(&*ledger).map_err(|e| rpc_err(-32603, e.to_string()))?;
            crate::store::write_atomic(&self.ledger_path, &bytes, false).map_err(|e| {
                tracing::error!(error = %e, "could not record the signed payout; not signing");
                rpc_err(-32603, format!("recording the signed payout: {e}"))
            })?;
        }
        tracing::info!(session = %body.session, inputs = shares.len(), "signed");
        let reply_body = SignReply {
            session: body.session,
            from: self.keys.index,
            shares,
        };
        self.identity
            .seal_envelope(self.keys.index, &reply(SIGN), &reply_body)
            .map_err(|e| rpc_err(-32603, e.to_string()))
    }
}
