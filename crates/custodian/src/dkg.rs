//! Distributed key generation over JSON-RPC (`hemi custodian keygen`): FROST's three DKG parts
//! (RFC 9591's companion, Pedersen DKG with proofs of knowledge), each custodian in its own
//! process.
//!
//! Pull model: each custodian serves what it has made and polls the others for theirs.
//!
//! ```text
//! custodian_dkgRound1 {session}        → its round-1 package (commitments, proof of knowledge),
//!                                        its script key and the vault parameters it was given
//! custodian_dkgRound2 {session}        → its round-2 package for the caller (a secret share),
//!                                        sealed to the caller's identity (ECDH → ChaCha20-
//!                                        Poly1305, associated data: session, sender, recipient)
//! custodian_dkgResult {session}        → the group key, output key and a hash of the public
//!                                        key package it computed
//! ```
//!
//! Requests and answers are [`Envelope`]s signed by the sender's identity; the session id binds
//! them to one peer set and one set of vault parameters ([`session_id`]). A custodian stores
//! its result only when every other custodian reports the same group key and public key
//! package, then keeps serving until each has fetched its result (or `linger` ends).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::{Network, XOnlyPublicKey};
use frost_secp256k1_tr as frost;
use hemi_tunnel::Vault;
use jsonrpsee::types::ErrorObjectOwned;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::RpcClient;
use crate::identity::{canonical_json, Envelope, Identity, Sealed};
use crate::peers::{Peer, Peers};
use crate::store::Keys;
use crate::{frost_err, x_only, CustodianError};

/// `custodian_dkgRound1`.
pub const ROUND1: &str = "custodian_dkgRound1";
/// `custodian_dkgRound2`.
pub const ROUND2: &str = "custodian_dkgRound2";
/// `custodian_dkgResult`.
pub const RESULT: &str = "custodian_dkgResult";
/// JSON-RPC error code of "not ready yet, ask again".
pub const NOT_READY: i32 = -32001;

/// The answer method a reply to `method` is signed under.
pub fn reply(method: &str) -> String {
    format!("{method}/reply")
}

/// One custodian's DKG parameters.
#[derive(Debug, Clone)]
pub struct DkgConfig {
    /// The custodian set.
    pub peers: Peers,
    /// This custodian's index in it.
    pub index: u16,
    /// The session id ([`session_id`]); every custodian must have the same.
    pub session: String,
    /// The vault's recovery key.
    pub recovery_key: XOnlyPublicKey,
    /// The vault's recovery timelock, blocks.
    pub recovery_after: u16,
    /// The network of the vault's address.
    pub network: Network,
    /// The whole DKG's time limit.
    pub timeout: Duration,
    /// The pause between polls of a peer that is not ready.
    pub poll: Duration,
    /// How long to keep serving, after success, for peers that have not fetched the result.
    pub linger: Duration,
}

impl DkgConfig {
    /// A configuration with the default timings (120 s limit, 200 ms polls, 30 s linger) and
    /// the session id derived from the peers, the vault parameters and `label`.
    pub fn new(
        peers: Peers,
        index: u16,
        label: &str,
        recovery_key: XOnlyPublicKey,
        recovery_after: u16,
        network: Network,
    ) -> Self {
        let session = session_id(&peers, label, &recovery_key, recovery_after, network);
        DkgConfig {
            peers,
            index,
            session,
            recovery_key,
            recovery_after,
            network,
            timeout: Duration::from_secs(120),
            poll: Duration::from_millis(200),
            linger: Duration::from_secs(30),
        }
    }
}

/// The session id: sha256 over the peer set's digest, a free label (to run a new DKG with the
/// same set) and the vault parameters, hex.
pub fn session_id(
    peers: &Peers,
    label: &str,
    recovery_key: &XOnlyPublicKey,
    recovery_after: u16,
    network: Network,
) -> String {
    let mut e = sha256::Hash::engine();
    e.input(b"hemi-rs/custodian/v1/dkg-session");
    e.input(&peers.digest());
    e.input(&(label.len() as u64).to_be_bytes());
    e.input(label.as_bytes());
    e.input(&recovery_key.serialize());
    e.input(&recovery_after.to_be_bytes());
    e.input(network.to_core_arg().as_bytes());
    hex::encode(sha256::Hash::from_engine(e).to_byte_array())
}

/// A request for a DKG package.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fetch {
    session: String,
}

/// A round-1 answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Round1 {
    session: String,
    from: u16,
    package: frost::keys::dkg::round1::Package,
    script_key: XOnlyPublicKey,
    threshold: u16,
    recovery_key: XOnlyPublicKey,
    recovery_after: u16,
    network: Network,
}

/// A round-2 answer: the package for the caller, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Round2 {
    /// The session.
    pub session: String,
    /// The sender.
    pub from: u16,
    /// The recipient.
    pub to: u16,
    /// The sealed `frost::keys::dkg::round2::Package`.
    pub sealed: Sealed,
}

/// A result answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Outcome {
    session: String,
    from: u16,
    group_key: XOnlyPublicKey,
    output_key: XOnlyPublicKey,
    public_key_package: String,
}

/// The associated data of a round-2 box.
fn round2_aad(session: &str, from: u16, to: u16) -> Vec<u8> {
    let mut aad = b"hemi-rs/custodian/v1/dkg-round2".to_vec();
    aad.push(0);
    aad.extend_from_slice(session.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&from.to_be_bytes());
    aad.extend_from_slice(&to.to_be_bytes());
    aad
}

/// Seals `package` from `me` (custodian `from`) to custodian `to` with identity `to_key`.
///
/// # Errors
/// [`CustodianError::Encoding`], [`CustodianError::Crypto`].
pub fn seal_round2(
    me: &Identity,
    session: &str,
    from: u16,
    to: u16,
    to_key: &XOnlyPublicKey,
    package: &frost::keys::dkg::round2::Package,
) -> Result<Round2, CustodianError> {
    let plain = serde_json::to_vec(package).map_err(|e| CustodianError::Encoding {
        what: "round-2 package",
        reason: e.to_string(),
    })?;
    Ok(Round2 {
        session: session.to_string(),
        from,
        to,
        sealed: me.seal_to(to_key, &round2_aad(session, from, to), &plain)?,
    })
}

/// Opens a round-2 box addressed to `me` (custodian `to`) by custodian `from` (identity
/// `from_key`) in `session`.
///
/// # Errors
/// [`CustodianError::Disagree`] if it names another session, sender or recipient;
/// [`CustodianError::Crypto`] if it does not decrypt (altered, or sealed for another);
/// [`CustodianError::Encoding`].
pub fn open_round2(
    me: &Identity,
    session: &str,
    from: u16,
    to: u16,
    from_key: &XOnlyPublicKey,
    r: &Round2,
) -> Result<frost::keys::dkg::round2::Package, CustodianError> {
    if r.session != session || r.from != from || r.to != to {
        return Err(CustodianError::Disagree {
            index: from,
            what: "round-2 addressing (session, from, to)",
            ours: format!("{session}, {from}, {to}"),
            theirs: format!("{}, {}, {}", r.session, r.from, r.to),
        });
    }
    let plain = me.open_from(
        from_key,
        &round2_aad(session, from, to),
        &r.sealed,
        "round-2 package",
    )?;
    serde_json::from_slice(&plain).map_err(|e| CustodianError::Encoding {
        what: "round-2 package",
        reason: e.to_string(),
    })
}

/// What this custodian's DKG server answers.
struct Served {
    me: u16,
    session: String,
    peers: Peers,
    round1: Envelope,
    round2: Mutex<Option<BTreeMap<u16, Envelope>>>,
    outcome: Mutex<Option<Envelope>>,
    fetched: Mutex<BTreeSet<u16>>,
    fetched_notify: tokio::sync::Notify,
}

fn rpc_err(code: i32, m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, m.into(), None::<()>)
}

impl Served {
    /// The requester's index, its signature and session checked.
    fn requester(&self, method: &str, env: &Envelope) -> Result<u16, ErrorObjectOwned> {
        let key = (env.from != 0 && env.from != self.me)
            .then(|| self.peers.sender_key(env.from))
            .flatten()
            .ok_or_else(|| rpc_err(-32602, format!("{method}: unknown sender {}", env.from)))?;
        let body: Fetch = env
            .open(method, &key)
            .map_err(|e| rpc_err(-32602, e.to_string()))?;
        if body.session != self.session {
            return Err(rpc_err(
                -32602,
                format!(
                    "{method}: session {} is not ours ({}): same peers file, recovery key, \
                     timelock, network and --session on every custodian?",
                    body.session, self.session
                ),
            ));
        }
        Ok(env.from)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn module(served: Arc<Served>) -> Result<jsonrpsee::RpcModule<Served>, CustodianError> {
    let reg = |e: jsonrpsee::core::RegisterMethodError| CustodianError::Encoding {
        what: "RPC module",
        reason: e.to_string(),
    };
    let mut m = jsonrpsee::RpcModule::from_arc(served);
    m.register_method(
        ROUND1,
        |params, s, _| -> Result<Envelope, ErrorObjectOwned> {
            let env: Envelope = params.one().map_err(|e| rpc_err(-32602, e.to_string()))?;
            s.requester(ROUND1, &env)?;
            Ok(s.round1.clone())
        },
    )
    .map_err(reg)?;
    m.register_method(
        ROUND2,
        |params, s, _| -> Result<Envelope, ErrorObjectOwned> {
            let env: Envelope = params.one().map_err(|e| rpc_err(-32602, e.to_string()))?;
            let to = s.requester(ROUND2, &env)?;
            Served::lock(&s.round2)
                .as_ref()
                .and_then(|r| r.get(&to).cloned())
                .ok_or_else(|| {
                    rpc_err(NOT_READY, "round 2 not ready: waiting for round-1 packages")
                })
        },
    )
    .map_err(reg)?;
    m.register_method(
        RESULT,
        |params, s, _| -> Result<Envelope, ErrorObjectOwned> {
            let env: Envelope = params.one().map_err(|e| rpc_err(-32602, e.to_string()))?;
            let from = s.requester(RESULT, &env)?;
            let out = Served::lock(&s.outcome)
                .clone()
                .ok_or_else(|| rpc_err(NOT_READY, "no result yet: waiting for round-2 packages"))?;
            Served::lock(&s.fetched).insert(from);
            s.fetched_notify.notify_waiters();
            Ok(out)
        },
    )
    .map_err(reg)?;
    Ok(m)
}

/// Starts a JSON-RPC server with `module` on `listener`.
pub(crate) fn start_server<C: Send + Sync + 'static>(
    listener: TcpListener,
    module: jsonrpsee::RpcModule<C>,
) -> Result<jsonrpsee::server::ServerHandle, CustodianError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let listen = |source| CustodianError::Listen {
        addr: addr.clone(),
        source,
    };
    listener.set_nonblocking(true).map_err(listen)?;
    let server = jsonrpsee::server::Server::builder()
        .set_config(
            jsonrpsee::server::ServerConfig::builder()
                .http_only()
                .build(),
        )
        .build_from_tcp(listener)
        .map_err(listen)?;
    Ok(server.start(module))
}

/// This custodian's side of the polls.
struct Poller<'a> {
    me: u16,
    identity: &'a Identity,
    session: &'a str,
    deadline: Instant,
    poll: Duration,
}

impl Poller<'_> {
    /// Asks `peer` for `method`'s answer until it gives one or the deadline passes; checks the
    /// answer's signature.
    async fn fetch<T: DeserializeOwned>(
        &self,
        peer: &Peer,
        method: &str,
        what: &'static str,
    ) -> Result<T, CustodianError> {
        let request = self.identity.seal_envelope(
            self.me,
            method,
            &Fetch {
                session: self.session.to_string(),
            },
        )?;
        let mut last = String::from("no answer");
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CustodianError::PeerMissing {
                    index: peer.index,
                    url: peer.url.clone(),
                    what,
                    last,
                });
            }
            let client = RpcClient::new(&peer.url, left.min(Duration::from_secs(5)));
            match client
                .call::<Envelope>(method, json!([request.clone()]))
                .await
            {
                Ok(env) if env.from == peer.index => {
                    return env.open(&reply(method), &peer.identity);
                }
                Ok(env) => {
                    return Err(CustodianError::UnknownSender {
                        from: env.from,
                        method: reply(method),
                    })
                }
                Err(e) => {
                    tracing::debug!(peer = peer.index, method, error = %e, "DKG: not yet");
                    last = e.to_string();
                }
            }
            tokio::time::sleep(self.poll.min(left)).await;
        }
    }
}

fn disagree(
    index: u16,
    what: &'static str,
    ours: impl ToString,
    theirs: impl ToString,
) -> CustodianError {
    CustodianError::Disagree {
        index,
        what,
        ours: ours.to_string(),
        theirs: theirs.to_string(),
    }
}

fn package_hash(p: &frost::keys::PublicKeyPackage) -> Result<String, CustodianError> {
    let v = serde_json::to_value(p).map_err(|e| CustodianError::Encoding {
        what: "public key package",
        reason: e.to_string(),
    })?;
    Ok(sha256::Hash::hash(&canonical_json(&v)).to_string())
}

/// Runs this custodian's side of a DKG, serving on `listener`, and returns its keys (the caller
/// stores them). Each custodian also makes a fresh script key for the vault's multisig leaf.
///
/// # Errors
/// [`CustodianError::NotAPeer`] if `identity` is not custodian `config.index`;
/// [`CustodianError::PeerMissing`] naming a custodian that did not answer in time;
/// [`CustodianError::Disagree`] if one has other parameters or another result;
/// [`CustodianError::BadSignature`] / [`CustodianError::Crypto`] for a forged or altered
/// message; [`CustodianError::Frost`] if a DKG part fails (a bad proof or share).
pub async fn run_dkg(
    identity: &Identity,
    config: DkgConfig,
    listener: TcpListener,
) -> Result<Keys, CustodianError> {
    run_dkg_then(identity, config, listener, |_| Ok(())).await
}

/// [`run_dkg`], calling `save` with the keys as soon as they are made, before it lingers for
/// the peers that have not fetched its result: a custodian stopped then keeps its share.
///
/// # Errors
/// As [`run_dkg`], and what `save` returns.
pub async fn run_dkg_then(
    identity: &Identity,
    config: DkgConfig,
    listener: TcpListener,
    save: impl FnOnce(&Keys) -> Result<(), CustodianError>,
) -> Result<Keys, CustodianError> {
    let me = config.index;
    let peers = &config.peers;
    if peers.peer(me).map(|p| p.identity) != Some(identity.public()) {
        return Err(CustodianError::NotAPeer {
            identity: identity.public(),
            index: me,
        });
    }
    let n = peers.len() as u16;
    let k = peers.threshold;
    let id = |i: u16| frost::Identifier::try_from(i).map_err(frost_err("identifier"));
    let (secret1, package1) =
        frost::keys::dkg::part1(id(me)?, n, k, rand::rngs::OsRng).map_err(frost_err("part 1"))?;
    let script_key = Identity::generate();
    let round1 = Round1 {
        session: config.session.clone(),
        from: me,
        package: package1,
        script_key: script_key.public(),
        threshold: k,
        recovery_key: config.recovery_key,
        recovery_after: config.recovery_after,
        network: config.network,
    };
    let served = Arc::new(Served {
        me,
        session: config.session.clone(),
        peers: peers.clone(),
        round1: identity.seal_envelope(me, &reply(ROUND1), &round1)?,
        round2: Mutex::new(None),
        outcome: Mutex::new(None),
        fetched: Mutex::new(BTreeSet::new()),
        fetched_notify: tokio::sync::Notify::new(),
    });
    let handle = start_server(listener, module(served.clone())?)?;
    let result = exchange(identity, &config, &served, secret1, round1, script_key)
        .await
        .and_then(|keys| save(&keys).map(|()| keys));
    if result.is_ok() {
        // Serve until every peer has our result (they need it to finish), or linger ends.
        let until = Instant::now() + config.linger;
        loop {
            let waiting = served.fetched_notify.notified();
            if Served::lock(&served.fetched).len() + 1 >= peers.len() {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("DKG: not every custodian fetched our result before linger ended");
                break;
            }
            let _ = tokio::time::timeout(left, waiting).await;
        }
    }
    let _ = handle.stop();
    handle.stopped().await;
    result
}

async fn exchange(
    identity: &Identity,
    config: &DkgConfig,
    served: &Served,
    secret1: frost::keys::dkg::round1::SecretPackage,
    round1: Round1,
    script_key: Identity,
) -> Result<Keys, CustodianError> {
    let me = config.index;
    let peers = &config.peers;
    let others: Vec<&Peer> = peers.custodians.iter().filter(|p| p.index != me).collect();
    let poller = Poller {
        me,
        identity,
        session: &config.session,
        deadline: Instant::now() + config.timeout,
        poll: config.poll,
    };
    let id = |i: u16| frost::Identifier::try_from(i).map_err(frost_err("identifier"));

    // Round 1: every other custodian's commitments, script key and parameters.
    let mut round1_in = BTreeMap::new();
    let mut script_keys = vec![round1.script_key];
    for p in &others {
        let r: Round1 = poller.fetch(p, ROUND1, "round-1 package").await?;
        let i = p.index;
        if r.session != config.session || r.from != i {
            return Err(disagree(
                i,
                "session and sender",
                &config.session,
                r.session,
            ));
        }
        if r.threshold != round1.threshold {
            return Err(disagree(i, "threshold", round1.threshold, r.threshold));
        }
        if r.recovery_key != round1.recovery_key {
            return Err(disagree(
                i,
                "recovery key",
                round1.recovery_key,
                r.recovery_key,
            ));
        }
        if r.recovery_after != round1.recovery_after {
            return Err(disagree(
                i,
                "recovery timelock",
                round1.recovery_after,
                r.recovery_after,
            ));
        }
        if r.network != round1.network {
            return Err(disagree(i, "network", round1.network, r.network));
        }
        script_keys.push(r.script_key);
        round1_in.insert(id(i)?, r.package);
    }
    tracing::info!(custodian = me, "DKG: round 1 complete");

    // Round 2: our share for each, sealed to it; then theirs for us.
    let (secret2, outgoing) =
        frost::keys::dkg::part2(secret1, &round1_in).map_err(frost_err("part 2"))?;
    let mut sealed = BTreeMap::new();
    for p in &others {
        let package = outgoing.get(&id(p.index)?).ok_or(CustodianError::Frost {
            stage: "part 2",
            source: frost::Error::IncorrectNumberOfPackages,
        })?;
        let r2 = seal_round2(identity, &config.session, me, p.index, &p.identity, package)?;
        sealed.insert(p.index, identity.seal_envelope(me, &reply(ROUND2), &r2)?);
    }
    *Served::lock(&served.round2) = Some(sealed);
    let mut round2_in = BTreeMap::new();
    for p in &others {
        let r: Round2 = poller.fetch(p, ROUND2, "round-2 package").await?;
        let package = open_round2(identity, &config.session, p.index, me, &p.identity, &r)?;
        round2_in.insert(id(p.index)?, package);
    }
    let (key_package, public_package) =
        frost::keys::dkg::part3(&secret2, &round1_in, &round2_in).map_err(frost_err("part 3"))?;
    let group_key = x_only(public_package.verifying_key())?;
    let vault = Vault::new(
        group_key,
        usize::from(peers.threshold),
        script_keys,
        config.recovery_key,
        config.recovery_after,
    )?;
    let hash = package_hash(&public_package)?;
    let outcome = Outcome {
        session: config.session.clone(),
        from: me,
        group_key,
        output_key: vault.output_key(),
        public_key_package: hash.clone(),
    };
    *Served::lock(&served.outcome) = Some(identity.seal_envelope(me, &reply(RESULT), &outcome)?);
    tracing::info!(custodian = me, %group_key, "DKG: round 2 complete; comparing results");

    // Everyone must have the same group key, vault and verifying shares.
    for p in &others {
        let r: Outcome = poller.fetch(p, RESULT, "DKG result").await?;
        if r.group_key != group_key {
            return Err(disagree(p.index, "group key", group_key, r.group_key));
        }
        if r.output_key != outcome.output_key {
            return Err(disagree(
                p.index,
                "vault output key",
                outcome.output_key,
                r.output_key,
            ));
        }
        if r.public_key_package != hash {
            return Err(disagree(
                p.index,
                "public key package",
                &hash,
                r.public_key_package,
            ));
        }
    }
    Ok(Keys::new(
        me,
        config.network,
        key_package,
        public_package,
        *script_key.keypair(),
        vault,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_package() -> frost::keys::dkg::round2::Package {
        let rng = rand::rngs::OsRng;
        let ids: Vec<frost::Identifier> = (1..=2u16)
            .map(|i| frost::Identifier::try_from(i).expect("id"))
            .collect();
        let (s1, _) = frost::keys::dkg::part1(ids[0], 2, 2, rng).expect("part1");
        let (_, p2) = frost::keys::dkg::part1(ids[1], 2, 2, rng).expect("part1");
        let (_, out) = frost::keys::dkg::part2(s1, &BTreeMap::from([(ids[1], p2)])).expect("part2");
        out.get(&ids[1]).expect("package").clone()
    }

    #[test]
    fn a_tampered_or_misaddressed_round2_package_is_refused() {
        let a = Identity::generate();
        let b = Identity::generate();
        let c = Identity::generate();
        let package = sample_package();
        let r2 = seal_round2(&a, "s", 1, 2, &b.public(), &package).expect("seal");
        let back = open_round2(&b, "s", 1, 2, &a.public(), &r2).expect("open");
        assert_eq!(back, package);

        // One flipped ciphertext bit: the AEAD tag fails.
        let mut tampered = r2.clone();
        let mut bytes = hex::decode(&tampered.sealed.ciphertext).expect("hex");
        bytes[3] ^= 1;
        tampered.sealed.ciphertext = hex::encode(bytes);
        let err = open_round2(&b, "s", 1, 2, &a.public(), &tampered).expect_err("tampered");
        assert!(matches!(err, CustodianError::Crypto { .. }), "{err}");

        // Relabelled for another recipient or session: the associated data differs.
        let mut relabelled = r2.clone();
        relabelled.to = 3;
        let err = open_round2(&c, "s", 1, 3, &a.public(), &relabelled).expect_err("other");
        assert!(matches!(err, CustodianError::Crypto { .. }), "{err}");
        let mut other_session = r2.clone();
        other_session.session = "t".into();
        assert!(open_round2(&b, "t", 1, 2, &a.public(), &other_session).is_err());
        // And a package the caller did not expect is refused before decryption.
        let err = open_round2(&b, "s", 3, 2, &a.public(), &r2).expect_err("sender");
        assert!(matches!(err, CustodianError::Disagree { .. }), "{err}");

        // Tampering with a signed envelope breaks its signature first.
        let env = a.seal_envelope(1, &reply(ROUND2), &r2).expect("env");
        let mut forged = env.clone();
        forged.body["sealed"]["ciphertext"] = json!(tampered.sealed.ciphertext);
        let err = forged
            .open::<Round2>(&reply(ROUND2), &a.public())
            .expect_err("forged");
        assert!(matches!(err, CustodianError::BadSignature { .. }), "{err}");
    }
}
