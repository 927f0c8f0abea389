//! The coordinator's side: [`VaultSigner`] gets one BIP-340 signature per input of a vault
//! transaction from a quorum of custodians.
//!
//! - [`LocalSigner`]: the custodians are in this process ([`hemi_tunnel::Custody`], the
//!   devnet's 2-of-3 set).
//! - [`RemoteSigner`]: the custodians are processes (`hemi custodian run`); it picks a quorum,
//!   runs commit → signing packages → shares → aggregation with the vault's tweak, and on any
//!   failure (no answer, a refusal, a bad share, a process gone mid-round) tries another quorum
//!   without the failed custodian, within a time limit per call.
//!
//! Every signature is checked against the vault's output key before it is returned. Turn
//! signatures into witnesses with [`crate::request::key_path_witness`] (payout inputs) and
//! [`crate::request::deposit_leaf_witness`] (sweep inputs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
use bitcoin::{ScriptBuf, Transaction, TxOut};
use frost_secp256k1_tr as frost;
use hemi_tunnel::{Custody, CustodyError, Vault};
use rand::RngCore;
use serde_json::json;

use crate::client::RpcClient;
use crate::dkg::reply;
use crate::identity::{Envelope, Identity};
use crate::peers::{Peer, Peers};
use crate::request::{RequestError, SignRequest, WireSignRequest};
use crate::server::{CommitBody, CommitReply, SignBody, SignReply, COMMIT, SIGN};
use crate::store::VaultFile;

/// Why no signatures were made.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The transaction, prevouts and leaves do not make a request.
    #[error("request: {0}")]
    Request(#[from] RequestError),
    /// Every quorum failed (or time ran out); each custodian's last failure.
    #[error("no quorum of {threshold} custodians signed within {elapsed:?}: {}", failures_text(.failures))]
    NoQuorum {
        /// k.
        threshold: u16,
        /// Time spent.
        elapsed: Duration,
        /// Per custodian, why it was left out.
        failures: Vec<(u16, String)>,
    },
    /// In-process signing failed.
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// An aggregated signature does not verify against the vault's output key.
    #[error(
        "input {input}: the aggregated signature does not verify against the vault's output key"
    )]
    Signature {
        /// The input.
        input: usize,
    },
    /// The signer's configuration does not fit the vault.
    #[error("signer: {0}")]
    Config(String),
}

fn failures_text(f: &[(u16, String)]) -> String {
    if f.is_empty() {
        return "no custodian was tried".into();
    }
    f.iter()
        .map(|(i, why)| format!("custodian {i}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the coordinator calls to sign a vault transaction.
#[async_trait::async_trait]
pub trait VaultSigner: Send + Sync {
    /// One BIP-340 signature per input of `tx`, made by a quorum of custodians, each
    /// verified against the vault's output key before it is returned.
    ///
    /// `leaves[i]` is `None` for a vault key-path input, the deposit leaf for a sweep input.
    ///
    /// # Errors
    /// [`SignerError`]: a malformed request, no quorum, a signature that does not verify.
    async fn sign_inputs(
        &self,
        tx: &Transaction,
        prevouts: &[TxOut],
        leaves: &[Option<ScriptBuf>],
    ) -> Result<Vec<schnorr::Signature>, SignerError>;
}

/// The k-subsets of 1..=n, in lexicographic order.
pub fn quorums(n: u16, k: u16) -> Vec<Vec<u16>> {
    fn go(start: u16, n: u16, k: u16, cur: &mut Vec<u16>, out: &mut Vec<Vec<u16>>) {
        if cur.len() == usize::from(k) {
            out.push(cur.clone());
            return;
        }
        for i in start..=n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    if k >= 1 && k <= n {
        go(1, n, k, &mut Vec::new(), &mut out);
    }
    out
}

fn verify(
    vault: &Vault,
    sighashes: &[[u8; 32]],
    sigs: &[schnorr::Signature],
) -> Result<(), SignerError> {
    let secp = Secp256k1::verification_only();
    let key = vault.output_key();
    for (input, (h, sig)) in sighashes.iter().zip(sigs).enumerate() {
        secp.verify_schnorr(sig, &Message::from_digest(*h), &key)
            .map_err(|_| SignerError::Signature { input })?;
    }
    Ok(())
}

/// The custodians in this process.
#[derive(Debug, Clone)]
pub struct LocalSigner {
    custody: Arc<Custody>,
    vault: Vault,
}

impl LocalSigner {
    /// Signs with `custody`'s members for `vault` (made by `custody.vault(…)`).
    pub fn new(custody: Arc<Custody>, vault: Vault) -> Self {
        LocalSigner { custody, vault }
    }
}

#[async_trait::async_trait]
impl VaultSigner for LocalSigner {
    async fn sign_inputs(
        &self,
        tx: &Transaction,
        prevouts: &[TxOut],
        leaves: &[Option<ScriptBuf>],
    ) -> Result<Vec<schnorr::Signature>, SignerError> {
        let request = SignRequest::new(tx.clone(), prevouts.to_vec(), leaves.to_vec())?;
        let sighashes = request.sighashes()?;
        let custody = self.custody.clone();
        let vault = self.vault.clone();
        let started = Instant::now();
        let work = move || -> Result<Vec<schnorr::Signature>, SignerError> {
            let n = custody.custodians().len() as u16;
            let root = vault.merkle_root();
            let mut failures = Vec::new();
            for quorum in quorums(n, custody.threshold) {
                let sigs: Result<Vec<_>, CustodyError> = sighashes
                    .iter()
                    .map(|h| custody.sign_key_path(*h, root, &quorum, &mut rand::rngs::OsRng))
                    .collect();
                match sigs {
                    Ok(sigs) => {
                        verify(&vault, &sighashes, &sigs)?;
                        return Ok(sigs);
                    }
                    Err(e) => {
                        tracing::warn!(?quorum, error = %e, "custodians: quorum failed; trying another");
                        failures.extend(quorum.iter().map(|i| (*i, e.to_string())));
                    }
                }
            }
            Err(SignerError::NoQuorum {
                threshold: custody.threshold,
                elapsed: started.elapsed(),
                failures,
            })
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| SignerError::Config(format!("signing task: {e}")))?
    }
}

/// The custodians as processes (see the module docs).
pub struct RemoteSigner {
    peers: Peers,
    identity: Identity,
    vault: Vault,
    public_key_package: frost::keys::PublicKeyPackage,
    call_timeout: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for RemoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSigner")
            .field("identity", &self.identity)
            .field("custodians", &self.peers.len())
            .field("output_key", &self.vault.output_key())
            .finish_non_exhaustive()
    }
}

/// One quorum's failure: who failed and why, or a fault that no other quorum can fix.
enum Attempt {
    Failed(Vec<(u16, String)>),
    Fatal(SignerError),
}

impl RemoteSigner {
    /// A coordinator with identity `coordinator` (the peers file's `[coordinator]` key) for the
    /// vault `vault_file` describes. Default limits: 10 s per [`VaultSigner::sign_inputs`]
    /// call, 3 s per request to a custodian.
    ///
    /// # Errors
    /// [`SignerError::Config`] if the identity is not the peers file's coordinator, or the
    /// vault file does not match the peers (threshold, number of custodians) or itself.
    pub fn new(
        peers: Peers,
        coordinator: Identity,
        vault_file: &VaultFile,
    ) -> Result<Self, SignerError> {
        if coordinator.public() != peers.coordinator {
            return Err(SignerError::Config(format!(
                "identity {} is not the peers file's coordinator {}",
                coordinator.public(),
                peers.coordinator
            )));
        }
        let vault = vault_file
            .vault()
            .map_err(|e| SignerError::Config(e.to_string()))?;
        if vault.threshold != usize::from(peers.threshold)
            || vault_file.public_key_package.verifying_shares().len() != peers.len()
        {
            return Err(SignerError::Config(format!(
                "the vault is {}-of-{}, the peers file {}-of-{}",
                vault.threshold,
                vault_file.public_key_package.verifying_shares().len(),
                peers.threshold,
                peers.len()
            )));
        }
        Ok(RemoteSigner {
            peers,
            identity: coordinator,
            vault,
            public_key_package: vault_file.public_key_package.clone(),
            call_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(3),
        })
    }

    /// Sets the limit per `sign_inputs` call and per request to one custodian.
    pub fn with_timeouts(mut self, call: Duration, request: Duration) -> Self {
        self.call_timeout = call;
        self.request_timeout = request;
        self
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Sends `body` under `method` to each of `members` at once; each answer's signature,
    /// sender and session are checked. Returns the answers, or who failed.
    async fn round<B, R>(
        &self,
        members: &[&Peer],
        method: &'static str,
        body: impl Fn(u16) -> B,
        deadline: Instant,
        check: impl Fn(&R) -> Result<(), String>,
    ) -> Result<BTreeMap<u16, R>, Attempt>
    where
        B: serde::Serialize,
        R: serde::de::DeserializeOwned + Send + 'static,
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.min(self.request_timeout);
        let mut tasks = tokio::task::JoinSet::new();
        for p in members {
            let client = RpcClient::new(&p.url, timeout);
            // Each custodian's request names it, so it cannot be replayed to another.
            let env = self
                .identity
                .seal_envelope(0, method, &body(p.index))
                .map_err(|e| Attempt::Fatal(SignerError::Config(e.to_string())))?;
            let (index, key) = (p.index, p.identity);
            tasks.spawn(async move {
                let answer = async {
                    let got: Envelope = client
                        .call(method, json!([env]))
                        .await
                        .map_err(|e| e.to_string())?;
                    if got.from != index {
                        return Err(format!("{method}: answered as custodian {}", got.from));
                    }
                    got.open::<R>(&reply(method), &key)
                        .map_err(|e| format!("{method} answer: {e}"))
                };
                // The client's own timeout covers the request; this one covers a server that
                // accepts the connection and never answers.
                let r = tokio::time::timeout(timeout + Duration::from_millis(200), answer)
                    .await
                    .unwrap_or_else(|_| Err(format!("{method}: no answer within {timeout:?}")));
                (index, r)
            });
        }
        let mut answers = BTreeMap::new();
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, Ok(r))) => match check(&r) {
                    Ok(()) => {
                        answers.insert(index, r);
                    }
                    Err(why) => failed.push((index, why)),
                },
                Ok((index, Err(why))) => failed.push((index, why)),
                Err(e) => {
                    return Err(Attempt::Fatal(SignerError::Config(format!("task: {e}"))));
                }
            }
        }
        if failed.is_empty() {
            Ok(answers)
        } else {
            Err(Attempt::Failed(failed))
        }
    }

    async fn attempt(
        &self,
        quorum: &[u16],
        wire: &WireSignRequest,
        sighashes: &[[u8; 32]],
        deadline: Instant,
    ) -> Result<Vec<schnorr::Signature>, Attempt> {
        let members: Vec<&Peer> = quorum.iter().filter_map(|i| self.peers.peer(*i)).collect();
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let session = hex::encode(bytes);
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .clamp(1, crate::server::MAX_REQUEST_LIFE.as_secs());
        let inputs = sighashes.len();
        let fatal = |e: frost::Error| Attempt::Fatal(SignerError::Config(format!("FROST: {e}")));
        let id = |i: u16| frost::Identifier::try_from(i).map_err(fatal);

        let commits: BTreeMap<u16, CommitReply> = self
            .round(
                &members,
                COMMIT,
                |to| CommitBody {
                    session: session.clone(),
                    to,
                    expires,
                    request: wire.clone(),
                },
                deadline,
                |r: &CommitReply| {
                    if r.session != session || r.commitments.len() != inputs {
                        Err(format!(
                            "commit answer for session {} with {} commitments",
                            r.session,
                            r.commitments.len()
                        ))
                    } else {
                        Ok(())
                    }
                },
            )
            .await?;
        let mut packages = Vec::with_capacity(inputs);
        for (input, h) in sighashes.iter().enumerate() {
            let mut map = BTreeMap::new();
            for (index, c) in &commits {
                map.insert(id(*index)?, c.commitments[input]);
            }
            packages.push(frost::SigningPackage::new(map, h));
        }
        let shares: BTreeMap<u16, SignReply> = self
            .round(
                &members,
                SIGN,
                |_| SignBody {
                    session: session.clone(),
                    packages: packages.clone(),
                },
                deadline,
                |r: &SignReply| {
                    if r.session != session || r.shares.len() != inputs {
                        Err(format!(
                            "sign answer for session {} with {} shares",
                            r.session,
                            r.shares.len()
                        ))
                    } else {
                        Ok(())
                    }
                },
            )
            .await?;
        let root = self.vault.merkle_root().map(|r| r.to_byte_array());
        let mut sigs = Vec::with_capacity(inputs);
        for (input, package) in packages.iter().enumerate() {
            let mut map = BTreeMap::new();
            for (index, r) in &shares {
                map.insert(id(*index)?, r.shares[input]);
            }
            let sig = frost::aggregate_with_tweak(
                package,
                &map,
                &self.public_key_package,
                root.as_ref().map(|r| r.as_slice()),
            )
            .map_err(|e| {
                let culprits: Vec<u16> = quorum
                    .iter()
                    .copied()
                    .filter(|i| {
                        frost::Identifier::try_from(*i).is_ok_and(|x| e.culprits().contains(&x))
                    })
                    .collect();
                let who = if culprits.is_empty() {
                    quorum.to_vec()
                } else {
                    culprits
                };
                Attempt::Failed(
                    who.into_iter()
                        .map(|i| (i, format!("input {input}: bad signature share: {e}")))
                        .collect(),
                )
            })?;
            let bytes = sig.serialize().map_err(fatal)?;
            let sig = schnorr::Signature::from_slice(&bytes)
                .map_err(|_| Attempt::Fatal(SignerError::Signature { input }))?;
            sigs.push(sig);
        }
        verify(&self.vault, sighashes, &sigs).map_err(Attempt::Fatal)?;
        Ok(sigs)
    }
}

#[async_trait::async_trait]
impl VaultSigner for RemoteSigner {
    async fn sign_inputs(
        &self,
        tx: &Transaction,
        prevouts: &[TxOut],
        leaves: &[Option<ScriptBuf>],
    ) -> Result<Vec<schnorr::Signature>, SignerError> {
        let request = SignRequest::new(tx.clone(), prevouts.to_vec(), leaves.to_vec())?;
        let sighashes = request.sighashes()?;
        let wire = request.to_wire();
        let started = Instant::now();
        let deadline = started + self.call_timeout;
        let mut failed: BTreeMap<u16, String> = BTreeMap::new();
        for quorum in quorums(self.peers.len() as u16, self.peers.threshold) {
            if quorum.iter().any(|i| failed.contains_key(i)) {
                continue;
            }
            if Instant::now() >= deadline {
                break;
            }
            match self.attempt(&quorum, &wire, &sighashes, deadline).await {
                Ok(sigs) => {
                    tracing::info!(?quorum, inputs = sigs.len(), "custodians signed");
                    return Ok(sigs);
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Failed(who)) => {
                    for (i, why) in who {
                        tracing::warn!(custodian = i, ?quorum, reason = %why, "custodian left out; trying another quorum");
                        failed.insert(i, why);
                    }
                }
            }
        }
        Err(SignerError::NoQuorum {
            threshold: self.peers.threshold,
            elapsed: started.elapsed(),
            failures: failed.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_signer_signs_every_input_for_the_vaults_output_key() {
        use bitcoin::{Amount, OutPoint, Txid};
        let custody = Arc::new(Custody::devnet().expect("devnet"));
        let recovery = Identity::generate().public();
        let vault = custody.vault(recovery, 144).expect("vault");
        let utxos: Vec<(OutPoint, TxOut)> = (0..3u8)
            .map(|n| {
                (
                    OutPoint::new(Txid::from_byte_array([n + 9; 32]), 0),
                    TxOut {
                        value: Amount::from_sat(100_000),
                        script_pubkey: vault.script_pubkey(),
                    },
                )
            })
            .collect();
        let request = hemi_tunnel::payout::Request {
            id: 7,
            script: vault.script_pubkey(),
            amount: 150_000,
            max_fee: 5_000,
        };
        let tx = hemi_tunnel::payout::build_payout(&vault, &utxos, &[request], 2).expect("tx");
        let prevouts: Vec<TxOut> = utxos.into_iter().map(|(_, o)| o).collect();
        let signer = LocalSigner::new(custody, vault.clone());
        let sigs = signer
            .sign_inputs(&tx, &prevouts, &[None, None, None])
            .await
            .expect("signs");
        let sighashes = SignRequest::new(tx.clone(), prevouts.clone(), vec![None; 3])
            .expect("request")
            .sighashes()
            .expect("sighashes");
        verify(&vault, &sighashes, &sigs).expect("verifies");
        let short = signer.sign_inputs(&tx, &prevouts, &[None]).await;
        assert!(matches!(short, Err(SignerError::Request(_))), "{short:?}");
    }

    #[test]
    fn quorums_are_every_k_subset_in_order() {
        assert_eq!(quorums(3, 2), vec![vec![1, 2], vec![1, 3], vec![2, 3]]);
        assert_eq!(quorums(4, 3).len(), 4);
        assert!(quorums(2, 3).is_empty());
    }
}
