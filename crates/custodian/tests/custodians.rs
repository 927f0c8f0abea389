//! Three custodians on 127.0.0.1 in one test process: the DKG over JSON-RPC, the encrypted key
//! store, and the coordinator's RemoteSigner with its fallbacks. No Bitcoin node: the policy's
//! node answers come from a fixed table ([`Table`]), the rules themselves are the real ones.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut, Txid};
use hemi_custodian::client::RpcClient;
use hemi_custodian::dkg::{run_dkg, DkgConfig};
use hemi_custodian::policy::{DepositStatus, TunnelView, Withdrawal};
use hemi_custodian::request::{deposit_leaf_witness, key_path_witness};
use hemi_custodian::server::{CommitBody, COMMIT};
use hemi_custodian::store::{KeyStore, Passphrase, VaultFile, STORE_FILE, VAULT_FILE};
use hemi_custodian::{
    BeforeShare, CustodianError, Envelope, FixedPolicy, Identity, Peer, Peers, Policy, PolicyError,
    RemoteSigner, SignRequest, SignerError, SigningService, TunnelPolicy, VaultSigner,
};
use hemi_tunnel::payout::{build_payout, Request};
use hemi_tunnel::sweep::{build_sweep, SweepInput};
use hemi_tunnel::{TaprootDeposit, Vault};
use serde_json::json;

const PASS: &str = "a long test passphrase";

/// What the "node" says: withdrawals by id, deposits by outpoint.
#[derive(Default, Clone)]
struct Table {
    withdrawals: HashMap<u32, Withdrawal>,
    deposits: HashMap<OutPoint, DepositStatus>,
    vault_key: Option<bitcoin::XOnlyPublicKey>,
}

#[async_trait::async_trait]
impl TunnelView for Table {
    async fn withdrawal(&self, id: u32) -> Result<Withdrawal, PolicyError> {
        Ok(self.withdrawals.get(&id).cloned().unwrap_or(Withdrawal {
            status: "unknown".into(),
            script: ScriptBuf::new(),
            amount: 0,
            max_fee: 0,
        }))
    }
    async fn deposit(&self, outpoint: OutPoint) -> Result<DepositStatus, PolicyError> {
        Ok(self
            .deposits
            .get(&outpoint)
            .cloned()
            .unwrap_or(DepositStatus {
                status: "unknown".into(),
                vout: None,
                amount: None,
                format: None,
                fee: None,
            }))
    }
    async fn vault_output_key(&self) -> Result<bitcoin::XOnlyPublicKey, PolicyError> {
        self.vault_key
            .ok_or_else(|| PolicyError::Refused("this table names no vault".into()))
    }
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

/// A custodian set after its DKG: directories (with custodian.json and vault.json), the peers,
/// the coordinator's identity.
struct Set {
    dirs: Vec<tempfile::TempDir>,
    peers: Peers,
    coordinator: Identity,
    vault_file: VaultFile,
    vault: Vault,
    recovery: Identity,
}

async fn dkg_set() -> Set {
    let pass = Passphrase::new(PASS).expect("pass");
    let mut dirs = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        stores.push(KeyStore::create(dir.path(), &pass).expect("init"));
        dirs.push(dir);
    }
    let listeners: Vec<TcpListener> = (0..3).map(|_| listener()).collect();
    let coordinator = Identity::generate();
    let peers = Peers {
        threshold: 2,
        custodians: stores
            .iter()
            .zip(&listeners)
            .enumerate()
            .map(|(i, (s, l))| Peer {
                index: i as u16 + 1,
                url: format!("http://{}", l.local_addr().expect("addr")),
                identity: s.identity().public(),
            })
            .collect(),
        coordinator: coordinator.public(),
    };
    // The peers file as the operators would write it.
    let peers = Peers::parse(&peers.to_toml()).expect("peers file");
    let recovery = Identity::generate();
    let mut tasks = Vec::new();
    for (i, (store, l)) in stores.into_iter().zip(listeners).enumerate() {
        let mut config = DkgConfig::new(
            peers.clone(),
            i as u16 + 1,
            "test",
            recovery.public(),
            144,
            bitcoin::Network::Regtest,
        );
        config.timeout = Duration::from_secs(20);
        config.poll = Duration::from_millis(25);
        config.linger = Duration::from_secs(5);
        tasks.push(tokio::spawn(async move {
            let keys = run_dkg(store.identity(), config, l).await;
            (store, keys)
        }));
    }
    let mut vault_file = None;
    for (t, dir) in tasks.into_iter().zip(&dirs) {
        let (mut store, keys) = t.await.expect("task");
        let keys = keys.expect("dkg");
        let vf = keys.vault_file();
        store.save_keys(keys, &pass).expect("store");
        vf.write(&dir.path().join(VAULT_FILE)).expect("vault.json");
        vault_file = Some(vf);
    }
    let vault_file = vault_file.expect("three custodians");
    let vault = vault_file.vault().expect("vault");
    Set {
        dirs,
        peers,
        coordinator,
        vault_file,
        vault,
        recovery,
    }
}

impl Set {
    fn dir(&self, index: u16) -> &Path {
        self.dirs[usize::from(index) - 1].path()
    }

    fn service(&self, index: u16, policy: Arc<dyn Policy>) -> SigningService {
        let store = KeyStore::open(self.dir(index), &Passphrase::new(PASS).expect("p"))
            .expect("open store");
        SigningService::new(&store, self.peers.clone(), policy).expect("service")
    }

    fn signer(&self) -> RemoteSigner {
        RemoteSigner::new(
            self.peers.clone(),
            self.coordinator.clone(),
            &self.vault_file,
        )
        .expect("signer")
        .with_timeouts(Duration::from_secs(10), Duration::from_secs(2))
    }

    /// A listener on custodian `index`'s port (its URL in the peers file).
    fn listener(&self, index: u16) -> TcpListener {
        let url = &self.peers.peer(index).expect("peer").url;
        TcpListener::bind(url.trim_start_matches("http://")).expect("rebind")
    }

    /// Starts custodian `index` on this runtime.
    fn start(&self, index: u16, policy: Arc<dyn Policy>) -> jsonrpsee::server::ServerHandle {
        self.service(index, policy)
            .start(self.listener(index))
            .expect("start")
    }

    /// Starts custodian `index` on a runtime of its own that is dropped (every task and
    /// connection with it) when the first `custodian_sign` arrives: a process killed mid-round.
    fn start_vanishing(&self, index: u16, policy: Arc<dyn Policy>) -> std::thread::JoinHandle<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let service = self
            .service(index, policy)
            .with_before_share(BeforeShare::Vanish(tx));
        let l = self.listener(index);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let _handle = service.start(l).expect("start");
                let _ = rx.recv().await;
            });
            rt.shutdown_background();
        })
    }

    /// Two requests paid from two vault outputs; the table says both are pending.
    fn payout(&self) -> (bitcoin::Transaction, Vec<TxOut>, Table) {
        let requests: Vec<Request> = (1..=2u32)
            .map(|id| Request {
                id,
                script: ScriptBuf::new_p2tr(
                    &Secp256k1::verification_only(),
                    Identity::generate().public(),
                    None,
                ),
                amount: 50_000 * u64::from(id),
                max_fee: 2_000,
            })
            .collect();
        let (tx, prevouts) = self.payout_of(&requests, 1, 2);
        let mut table = Table {
            vault_key: Some(self.vault.output_key()),
            ..Table::default()
        };
        for r in &requests {
            table.withdrawals.insert(
                r.id,
                Withdrawal {
                    status: "pending".into(),
                    script: r.script.clone(),
                    amount: r.amount,
                    max_fee: r.max_fee,
                },
            );
        }
        (tx, prevouts, table)
    }

    /// A payout of `requests` from two vault outputs with txids made of `seed` and `seed + 1`,
    /// at `fee_rate` sat/vB.
    fn payout_of(
        &self,
        requests: &[Request],
        seed: u8,
        fee_rate: u64,
    ) -> (bitcoin::Transaction, Vec<TxOut>) {
        let utxos: Vec<(OutPoint, TxOut)> = (0..2u8)
            .map(|n| {
                (
                    OutPoint::new(Txid::from_byte_array([seed + n; 32]), u32::from(n)),
                    TxOut {
                        value: Amount::from_sat(120_000),
                        script_pubkey: self.vault.script_pubkey(),
                    },
                )
            })
            .collect();
        let tx = build_payout(&self.vault, &utxos, requests, fee_rate).expect("payout");
        (tx, utxos.into_iter().map(|(_, o)| o).collect())
    }
}

/// The requests `tx` pays, as the table holds them.
fn requests_of(tx: &bitcoin::Transaction, table: &Table) -> Vec<Request> {
    let ids: Vec<u32> = tx
        .output
        .iter()
        .filter_map(|o| hemi_tunnel::payout::parse_id_list(&o.script_pubkey))
        .flatten()
        .collect();
    ids.iter()
        .map(|id| {
            let w = &table.withdrawals[id];
            Request {
                id: *id,
                script: w.script.clone(),
                amount: w.amount,
                max_fee: w.max_fee,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_signed_in_one_payout_or_its_replacement_never_in_a_second_and_only_for_this_vault(
) {
    let set = dkg_set().await;
    let (tx, prevouts, table) = set.payout();
    let requests = requests_of(&tx, &table);
    let ok: Arc<dyn Policy> = Arc::new(TunnelPolicy::new(table.clone()));
    let signer = set.signer();
    let mut h: Vec<_> = (1..=3).map(|i| set.start(i, ok.clone())).collect();
    signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect("the first payout is signed");
    // The same requests from other vault outputs: both could confirm; every custodian refuses.
    let (second, second_prevouts) = set.payout_of(&requests, 10, 2);
    let err = signer
        .sign_inputs(&second, &second_prevouts, &[None, None])
        .await
        .expect_err("a second payout of the same requests");
    assert!(err.to_string().contains("already signed"), "{err}");
    // A replacement (same inputs, a higher fee rate) is signed: only one of the two confirms.
    let (bumped, bumped_prevouts) = set.payout_of(&requests, 1, 3);
    assert_ne!(bumped.compute_txid(), tx.compute_txid());
    signer
        .sign_inputs(&bumped, &bumped_prevouts, &[None, None])
        .await
        .expect("the replacement is signed");
    // Restarted custodians remember it (signed-payouts.json).
    for x in h.drain(..) {
        let _ = x.stop();
        x.stopped().await;
    }
    let h: Vec<_> = (1..=3).map(|i| set.start(i, ok.clone())).collect();
    let err = signer
        .sign_inputs(&second, &second_prevouts, &[None, None])
        .await
        .expect_err("still a second payout after a restart");
    assert!(err.to_string().contains("already signed"), "{err}");
    for x in h {
        let _ = x.stop();
        x.stopped().await;
    }
    // A node running another vault is never trusted for this one's withdrawals.
    let other = Table {
        vault_key: Some(Identity::generate().public()),
        ..table
    };
    let wrong: Arc<dyn Policy> = Arc::new(TunnelPolicy::new(other));
    let h: Vec<_> = (1..=3).map(|i| set.start(i, wrong.clone())).collect();
    let (fresh, fresh_prevouts, _) = set.payout();
    let err = signer
        .sign_inputs(&fresh, &fresh_prevouts, &[None, None])
        .await
        .expect_err("another vault's node");
    assert!(
        err.to_string().contains("runs the vault with output key"),
        "{err}"
    );
    for x in h {
        let _ = x.stop();
    }
}

fn key_path_sighashes(tx: &bitcoin::Transaction, prevouts: &[TxOut]) -> Vec<[u8; 32]> {
    let mut cache = SighashCache::new(tx);
    (0..prevouts.len())
        .map(|i| {
            cache
                .taproot_key_spend_signature_hash(
                    i,
                    &Prevouts::All(prevouts),
                    TapSighashType::Default,
                )
                .expect("sighash")
                .to_byte_array()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_custodians_agree_on_one_group_key_and_store_it_encrypted() {
    let set = dkg_set().await;
    let pass = Passphrase::new(PASS).expect("p");
    let mut group_keys = Vec::new();
    let mut vault_files = Vec::new();
    for i in 1..=3u16 {
        let store = KeyStore::open(set.dir(i), &pass).expect("open");
        let keys = store.keys().expect("keys");
        assert_eq!(keys.index, i);
        group_keys.push(keys.vault.group_key);
        vault_files.push(std::fs::read(set.dir(i).join(VAULT_FILE)).expect("vault.json"));
        // Encrypted at rest: no key share, no script secret, no identity secret in clear.
        let text = std::fs::read_to_string(set.dir(i).join(STORE_FILE)).expect("read");
        for secret in [
            "signing_share",
            "signingShare",
            &store.identity().secret_hex(),
        ] {
            assert!(
                !text.contains(secret),
                "custodian {i}'s store shows {secret}"
            );
        }
        assert!(text.contains("\"version\": 1"), "{text}");
        // A wrong passphrase is a clear error.
        let wrong = KeyStore::open(set.dir(i), &Passphrase::new("not it").expect("p"))
            .expect_err("wrong passphrase");
        assert!(
            matches!(wrong, CustodianError::WrongPassphrase { .. }),
            "{wrong}"
        );
        assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
    }
    assert!(
        group_keys.windows(2).all(|w| w[0] == w[1]),
        "{group_keys:?}"
    );
    assert!(
        vault_files.windows(2).all(|w| w[0] == w[1]),
        "vault.json differs"
    );
    // vault.json loads back to the same vault: the DKG's group key inside, three script keys
    // in the multisig leaf, the recovery key in the recovery leaf.
    let (file, vault) = VaultFile::load(&set.dir(2).join(VAULT_FILE)).expect("load");
    assert_eq!(vault.group_key, group_keys[0]);
    assert_eq!(vault.custodian_keys.len(), 3);
    assert_eq!(vault.recovery_key, set.recovery.public());
    assert_eq!(
        file.address,
        vault.address(bitcoin::Network::Regtest).to_string()
    );
    assert!(file.address.starts_with("bcrt1p"), "{}", file.address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_signer_signs_a_payout_and_a_sweep_that_verify_against_the_vault_key() {
    let set = dkg_set().await;
    let (tx, prevouts, mut table) = set.payout();
    // The sweep's deposits, minted as the table says.
    let inputs: Vec<SweepInput> = (0..2u8)
        .map(|n| SweepInput {
            outpoint: OutPoint::new(Txid::from_byte_array([0x40 + n; 32]), u32::from(n)),
            value: Amount::from_sat(80_000),
            deposit: TaprootDeposit {
                chain_id: 31337,
                recipient: alloy_primitives::Address::repeat_byte(n + 1),
                max_fee: Amount::from_sat(1_000),
                vault_key: set.vault.output_key(),
                depositor_key: Identity::generate().public(),
                reclaim_after: 144,
            },
        })
        .collect();
    for i in &inputs {
        table.deposits.insert(
            i.outpoint,
            DepositStatus {
                status: "minted".into(),
                vout: Some(i.outpoint.vout),
                amount: Some(i.value.to_sat()),
                format: Some("taproot".into()),
                fee: Some(1_000),
            },
        );
    }
    let policy: Arc<dyn Policy> = Arc::new(TunnelPolicy::new(table));
    let handles: Vec<_> = (1..=3).map(|i| set.start(i, policy.clone())).collect();
    let signer = set.signer();

    let started = Instant::now();
    let sigs = signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect("payout signatures");
    let secp = Secp256k1::verification_only();
    for (sig, h) in sigs.iter().zip(key_path_sighashes(&tx, &prevouts)) {
        secp.verify_schnorr(sig, &Message::from_digest(h), &set.vault.output_key())
            .expect("BIP-341 key-path signature by the vault's output key");
    }
    let mut signed = tx.clone();
    for (txin, sig) in signed.input.iter_mut().zip(&sigs) {
        txin.witness = key_path_witness(*sig);
        assert_eq!(txin.witness.len(), 1);
    }

    let mut sweep = build_sweep(&set.vault, &inputs, 2).expect("sweep");
    let sweep_prevouts: Vec<TxOut> = inputs.iter().map(SweepInput::prevout).collect();
    let leaves: Vec<Option<ScriptBuf>> = inputs
        .iter()
        .map(|i| Some(i.deposit.deposit_leaf()))
        .collect();
    let sigs = signer
        .sign_inputs(&sweep, &sweep_prevouts, &leaves)
        .await
        .expect("sweep signatures");
    let mut cache = SighashCache::new(&sweep);
    for (n, (sig, i)) in sigs.iter().zip(&inputs).enumerate() {
        let h = cache
            .taproot_script_spend_signature_hash(
                n,
                &Prevouts::All(&sweep_prevouts),
                TapLeafHash::from_script(&i.deposit.deposit_leaf(), LeafVersion::TapScript),
                TapSighashType::Default,
            )
            .expect("sighash");
        secp.verify_schnorr(
            sig,
            &Message::from_digest(h.to_byte_array()),
            &set.vault.output_key(),
        )
        .expect("script-path signature by the vault's output key");
    }
    for ((txin, sig), i) in sweep.input.iter_mut().zip(&sigs).zip(&inputs) {
        txin.witness = deposit_leaf_witness(*sig, &i.deposit).expect("witness");
        assert_eq!(txin.witness.len(), 3);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A transaction that is neither a payout nor a sweep gets no signature.
    let mut other = tx.clone();
    other
        .output
        .retain(|o| hemi_tunnel::payout::parse_id_list(&o.script_pubkey).is_none());
    let err = signer
        .sign_inputs(&other, &prevouts, &[None, None])
        .await
        .expect_err("not a tunnel transaction");
    assert!(err.to_string().contains("neither a payout"), "{err}");
    for h in handles {
        let _ = h.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_or_killed_custodian_is_replaced_by_another_quorum_and_two_gone_fail_clearly() {
    let set = dkg_set().await;
    let (tx, prevouts, table) = set.payout();
    let ok: Arc<dyn Policy> = Arc::new(TunnelPolicy::new(table.clone()));
    let mut paid = table.clone();
    if let Some(w) = paid.withdrawals.get_mut(&1) {
        w.status = "paid".into();
    }
    let refuses: Arc<dyn Policy> = Arc::new(TunnelPolicy::new(paid));
    let signer = set.signer();
    let secp = Secp256k1::verification_only();
    let check = |sigs: &[bitcoin::secp256k1::schnorr::Signature]| {
        for (sig, h) in sigs.iter().zip(key_path_sighashes(&tx, &prevouts)) {
            secp.verify_schnorr(sig, &Message::from_digest(h), &set.vault.output_key())
                .expect("verifies");
        }
    };

    // Custodian 1's node says request 1 is paid: it refuses; [2, 3] sign.
    let h: Vec<_> = [(1, refuses.clone()), (2, ok.clone()), (3, ok.clone())]
        .into_iter()
        .map(|(i, p)| set.start(i, p))
        .collect();
    let sigs = signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect("the other quorum signs");
    check(&sigs);
    for x in h {
        let _ = x.stop();
        x.stopped().await;
    }

    // Custodian 1 commits, then is gone before its share; [2, 3] sign.
    let killed = set.start_vanishing(1, ok.clone());
    let h: Vec<_> = [2, 3]
        .into_iter()
        .map(|i| set.start(i, ok.clone()))
        .collect();
    let started = Instant::now();
    let sigs = signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect("the other quorum signs");
    check(&sigs);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    killed.join().expect("the killed custodian's thread");
    for x in h {
        let _ = x.stop();
        x.stopped().await;
    }

    // Two of three gone (1 refuses, 2 not running): a clear error naming both.
    let h: Vec<_> = [(1, refuses), (3, ok)]
        .into_iter()
        .map(|(i, p)| set.start(i, p))
        .collect();
    let err = signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect_err("no quorum");
    assert!(matches!(err, SignerError::NoQuorum { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("custodian 1") && text.contains("refused by policy"),
        "{text}"
    );
    assert!(
        text.contains("withdrawal 1") && text.contains("paid"),
        "{text}"
    );
    assert!(text.contains("custodian 2"), "{text}");
    for x in h {
        let _ = x.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_by_an_unknown_coordinator_key_is_refused() {
    let set = dkg_set().await;
    let (tx, prevouts, _) = set.payout();
    let h: Vec<_> = (1..=3)
        .map(|i| set.start(i, Arc::new(FixedPolicy::allow())))
        .collect();
    // A coordinator whose key is not the peers file's cannot even be built…
    let rogue = Identity::generate();
    assert!(RemoteSigner::new(set.peers.clone(), rogue.clone(), &set.vault_file).is_err());
    // …and one that believes it is the coordinator is refused by every custodian.
    let mut believed = set.peers.clone();
    believed.coordinator = rogue.public();
    let signer = RemoteSigner::new(believed, rogue.clone(), &set.vault_file)
        .expect("signer")
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(2));
    let err = signer
        .sign_inputs(&tx, &prevouts, &[None, None])
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("bad signature"), "{err}");
    // Straight to one custodian: refused with the reason, nothing committed.
    let request = SignRequest::new(tx, prevouts, vec![None, None]).expect("request");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body = CommitBody {
        session: "rogue".into(),
        to: 1,
        expires: now + 60,
        request: request.to_wire(),
    };
    let client = RpcClient::new(&set.peers.custodians[0].url, Duration::from_secs(2));
    for (from, who) in [(0u16, &rogue), (2, &rogue)] {
        let env = who.seal_envelope(from, COMMIT, &body).expect("env");
        let err = client
            .call::<serde_json::Value>(COMMIT, json!([env]))
            .await
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("-32003"), "{text}");
    }
    // The real coordinator's key is accepted for the same request.
    let env = set
        .coordinator
        .seal_envelope(0, COMMIT, &body)
        .expect("env");
    client
        .call::<serde_json::Value>(COMMIT, json!([env]))
        .await
        .expect("the coordinator is heard");
    // Replayed, sent to another custodian, or expired: refused.
    let refused = |env: Envelope, want: &'static str| {
        let client = client.clone();
        async move {
            let err = client
                .call::<serde_json::Value>(COMMIT, json!([env]))
                .await
                .expect_err(want);
            assert!(err.to_string().contains(want), "{err}");
        }
    };
    refused(env, "already used").await;
    let for_two = CommitBody {
        session: "for two".into(),
        to: 2,
        ..body.clone()
    };
    let env = set
        .coordinator
        .seal_envelope(0, COMMIT, &for_two)
        .expect("env");
    refused(env, "a request for custodian 2").await;
    let stale = CommitBody {
        session: "stale".into(),
        expires: now - 1,
        ..body
    };
    let env = set
        .coordinator
        .seal_envelope(0, COMMIT, &stale)
        .expect("env");
    refused(env, "expired").await;
    for x in h {
        let _ = x.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dkg_with_a_custodian_missing_fails_naming_it() {
    let pass = Passphrase::new(PASS).expect("pass");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let stores: Vec<_> = dirs
        .iter()
        .map(|d| KeyStore::create(d.path(), &pass).expect("init"))
        .collect();
    let listeners: Vec<TcpListener> = (0..3).map(|_| listener()).collect();
    let peers = Peers {
        threshold: 2,
        custodians: stores
            .iter()
            .zip(&listeners)
            .enumerate()
            .map(|(i, (s, l))| Peer {
                index: i as u16 + 1,
                url: format!("http://{}", l.local_addr().expect("addr")),
                identity: s.identity().public(),
            })
            .collect(),
        coordinator: Identity::generate().public(),
    };
    let mut config = DkgConfig::new(
        peers,
        1,
        "",
        Identity::generate().public(),
        144,
        bitcoin::Network::Regtest,
    );
    config.timeout = Duration::from_millis(800);
    config.poll = Duration::from_millis(50);
    let mut it = listeners.into_iter();
    let mine = it.next().expect("listener");
    drop(it); // custodians 2 and 3 never start
    let err = run_dkg(stores[0].identity(), config, mine)
        .await
        .expect_err("missing peers");
    assert!(
        matches!(err, CustodianError::PeerMissing { index: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("round-1 package"), "{err}");
}
