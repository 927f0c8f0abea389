//! The sequencer set: `hemi devnet --sequencers N` (N validators in this process) and
//! `hemi node --sequencer-key KEY --validators FILE` (one validator of a set spread over
//! machines), each a Malachite engine ([`hemi_consensus`]) over the node's chain; and
//! `hemi_getSequencerSet`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use anyhow::Context;
use hemi_chain::{Chain, ChainError, L2Block};
use hemi_consensus::{lan_timeouts, Host, PubKey, Running, SetStatus, ValidatorConfig, Verdict};
use hemi_sequencer::Sequencer;
use jsonrpsee::types::ErrorObjectOwned;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

/// Seed labels of the devnet set's keys: `hemi-devnet-sequencer-key-<i>` (key 0 is the lone
/// sequencer's).
pub(crate) fn devnet_key(i: usize) -> B256 {
    alloy_primitives::keccak256(format!("hemi-devnet-sequencer-key-{i}"))
}

/// Most validators `hemi devnet --sequencers` runs in one process.
pub const MAX_DEVNET_SEQUENCERS: usize = 16;

/// The node's chain as a validator's application sees it.
struct SetHost(Arc<Sequencer>);

impl Host for SetHost {
    fn head(&self) -> u64 {
        self.0.chain().head().0
    }

    fn propose(&self, height: u64, beneficiary: Address) -> Result<L2Block, String> {
        self.0
            .propose(height, beneficiary)
            .map_err(|e| e.to_string())
    }

    fn validate(&self, block: &L2Block) -> Verdict {
        match self.0.validate(block) {
            Ok(()) => Verdict::Valid,
            Err(ChainError::BitcoinNotReady(why)) => Verdict::NotReady(why),
            Err(e) => Verdict::Invalid(e.to_string()),
        }
    }

    fn commit(&self, block: &L2Block) -> Result<(), String> {
        match self.0.commit(block) {
            Ok(new) => {
                if new {
                    let cert = block.certificate.as_ref().map_or(0, |c| c.signatures.len());
                    tracing::info!(
                        number = block.header.number,
                        txs = block.txs.len(),
                        proposer = %block.header.beneficiary,
                        signatures = cert,
                        "block decided"
                    );
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn block(&self, number: u64) -> Option<L2Block> {
        self.0
            .chain()
            .block(number)
            .ok()
            .flatten()
            .map(|b| b.to_l2_block())
    }
}

/// The validators this process runs, and what they see.
pub(crate) struct SequencerSet {
    pub(crate) status: Arc<SetStatus>,
    running: Mutex<Vec<Running>>,
    /// The write-ahead logs' directory when not persisted: removed at stop.
    scratch: Option<PathBuf>,
}

impl SequencerSet {
    /// Stops every validator of this process (and removes an unpersisted set's logs).
    pub(crate) fn stop(&self) {
        for r in self.running.lock().drain(..) {
            r.stop();
        }
        if let Some(dir) = &self.scratch {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), "removing the set's write-ahead logs: {e}");
                }
            }
        }
    }
}

/// One entry of a validators file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileEntry {
    /// The compressed secp256k1 public key, hex.
    public_key: String,
    /// Where its consensus network listens, a multiaddr (`/ip4/…/tcp/…`).
    consensus_addr: String,
    /// Its address (optional; checked against the key when given).
    #[serde(default)]
    address: Option<Address>,
}

/// `--validators FILE`: `{"validators": [{"publicKey": "0x02…", "consensusAddr":
/// "/ip4/…/tcp/…"}, …]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    validators: Vec<FileEntry>,
}

/// A parsed validators file.
#[derive(Debug, Clone)]
pub(crate) struct ValidatorsFile {
    pub(crate) keys: Vec<PubKey>,
    pub(crate) addrs: Vec<(Address, String)>,
}

impl ValidatorsFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// Unreadable, not the shape above, a bad key or multiaddr, an address that does not
    /// match its key, a duplicate, or more than 256 validators.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --validators {}", path.display()))?;
        let shape: FileShape = serde_json::from_str(&text)
            .with_context(|| format!("--validators {} is not a validators file", path.display()))?;
        if shape.validators.is_empty()
            || shape.validators.len() > hemi_chain::certificate::MAX_VALIDATORS
        {
            anyhow::bail!(
                "--validators {}: {} validators (1..=256)",
                path.display(),
                shape.validators.len()
            );
        }
        let mut keys = Vec::new();
        let mut addrs = Vec::new();
        for (i, e) in shape.validators.into_iter().enumerate() {
            let bytes: [u8; 33] = hex::decode(e.public_key.trim_start_matches("0x"))
                .ok()
                .and_then(|v| v.try_into().ok())
                .with_context(|| format!("validator {i}: publicKey is not 33 bytes of hex"))?;
            let key = PubKey(bytes);
            let address = key
                .address()
                .map_err(|e| anyhow::anyhow!("validator {i}: publicKey: {e}"))?;
            if let Some(a) = e.address {
                if a != address {
                    anyhow::bail!("validator {i}: address {a} is not its key's ({address})");
                }
            }
            if addrs.iter().any(|(a, _)| *a == address) {
                anyhow::bail!("validator {i}: {address} is listed twice");
            }
            e.consensus_addr
                .parse::<hemi_net::Multiaddr>()
                .with_context(|| {
                    format!(
                        "validator {i}: consensusAddr {:?} is not a multiaddr",
                        e.consensus_addr
                    )
                })?;
            keys.push(key);
            addrs.push((address, e.consensus_addr));
        }
        Ok(ValidatorsFile { keys, addrs })
    }

    /// The validators' addresses, sorted (the chain spec's `validators`).
    pub(crate) fn addresses(&self) -> Vec<Address> {
        let mut v: Vec<Address> = self.addrs.iter().map(|(a, _)| *a).collect();
        v.sort();
        v
    }
}

/// The set a validators file names (sorted, as the chain spec keeps it), or a comma-separated
/// list of addresses given in its place: what `hemi verify --validators` trusts.
///
/// # Errors
/// A list entry that is not an address, or a file [`ValidatorsFile::load`] refuses.
pub fn validator_addresses(file_or_list: &str) -> anyhow::Result<Vec<Address>> {
    if file_or_list.starts_with("0x") && !Path::new(file_or_list).exists() {
        let mut v = file_or_list
            .split(',')
            .map(|a| {
                a.trim()
                    .parse::<Address>()
                    .with_context(|| format!("--validators: {a:?} is not an address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        return Ok(v);
    }
    Ok(ValidatorsFile::load(Path::new(file_or_list))?.addresses())
}

/// A free loopback port (for the devnet's in-process validators).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where a validator keeps its write-ahead log: in `--dir` when persisted, else a directory
/// of this process under the system's temporary one.
fn wal_path(dir: &Path, persist: bool, name: &str) -> PathBuf {
    if persist {
        dir.join("consensus").join(name).join("wal")
    } else {
        scratch_dir().join(name).join("wal")
    }
}

/// An unpersisted devnet set's directory for its logs (removed when the set stops).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hemi-consensus-{}", std::process::id()))
}

/// Starts `keys.len()` validators in this process over the devnet's sequencer, joined on
/// loopback.
///
/// # Errors
/// No free port, or an engine that does not start.
pub(crate) async fn start_devnet_set(
    sequencer: Arc<Sequencer>,
    keys: &[B256],
    block_time: std::time::Duration,
    dir: &Path,
    persist: bool,
) -> anyhow::Result<Arc<SequencerSet>> {
    let pubs: Vec<PubKey> = keys
        .iter()
        .map(|k| PubKey::of_secret(*k).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let set = hemi_consensus::ValidatorSet::new(&pubs).map_err(anyhow::Error::msg)?;
    let ports = keys
        .iter()
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let addr = |p: u16| -> hemi_net::Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{p}")
            .parse()
            .expect("a loopback multiaddr parses")
    };
    if !persist {
        // A killed devnet leaves its logs; one that had this process id must not be replayed
        // into a new, in-memory chain.
        match std::fs::remove_dir_all(scratch_dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::anyhow!("clearing {}: {e}", scratch_dir().display()))
            }
            _ => {}
        }
    }
    let status = Arc::new(SetStatus::default());
    let host: Arc<dyn Host> = Arc::new(SetHost(sequencer.clone()));
    let mut running = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let cfg = ValidatorConfig {
            chain_id: sequencer.chain().spec().chain_id,
            secret: *key,
            set: set.clone(),
            listen: addr(ports[i]),
            peers: ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| addr(*p))
                .collect(),
            wal: wal_path(dir, persist, &format!("v{i}")),
            block_time,
            timeouts: lan_timeouts(),
            moniker: format!("sequencer-{i}"),
            equivocate: false,
        };
        running.push(
            hemi_consensus::start(cfg, host.clone(), status.clone())
                .await
                .map_err(|e| anyhow::anyhow!("starting sequencer {i}: {e}"))?,
        );
    }
    Ok(Arc::new(SequencerSet {
        status,
        running: Mutex::new(running),
        scratch: (!persist).then(scratch_dir),
    }))
}

/// Starts this node's validator of the set in `file`.
///
/// # Errors
/// The key is not in the file, or the engine does not start.
pub(crate) async fn start_validator(
    sequencer: Arc<Sequencer>,
    key: B256,
    file: &ValidatorsFile,
    block_time: std::time::Duration,
    dir: &Path,
    equivocate: bool,
    overrides: &[(Address, String)],
) -> anyhow::Result<Arc<SequencerSet>> {
    let me = PubKey::of_secret(key)
        .and_then(|k| k.address())
        .map_err(|e| anyhow::anyhow!("--sequencer-key: {e}"))?;
    let Some((_, listen)) = file.addrs.iter().find(|(a, _)| *a == me) else {
        anyhow::bail!("--sequencer-key is {me}, which is not in --validators");
    };
    if let Some((a, _)) = overrides
        .iter()
        .find(|(a, _)| !file.addrs.iter().any(|(f, _)| f == a))
    {
        anyhow::bail!("--consensus-peer {a} is not in --validators");
    }
    let set = hemi_consensus::ValidatorSet::new(&file.keys).map_err(anyhow::Error::msg)?;
    let cfg = ValidatorConfig {
        chain_id: sequencer.chain().spec().chain_id,
        secret: key,
        set,
        listen: listen.parse()?,
        peers: file
            .addrs
            .iter()
            .filter(|(a, _)| *a != me)
            .map(|(a, m)| {
                let at = overrides
                    .iter()
                    .find(|(o, _)| o == a)
                    .map_or(m.as_str(), |(_, o)| o.as_str());
                at.parse::<hemi_net::Multiaddr>()
                    .with_context(|| format!("the consensus address of {a}: {at:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
        wal: wal_path(dir, true, "validator"),
        block_time,
        timeouts: lan_timeouts(),
        moniker: format!("{me}"),
        equivocate,
    };
    let status = Arc::new(SetStatus::default());
    let host: Arc<dyn Host> = Arc::new(SetHost(sequencer));
    let running = hemi_consensus::start(cfg, host, status.clone())
        .await
        .map_err(|e| anyhow::anyhow!("starting the validator: {e}"))?;
    Ok(Arc::new(SequencerSet {
        status,
        running: Mutex::new(vec![running]),
        scratch: None,
    }))
}

/// What `hemi_getSequencerSet` reads.
pub(crate) struct SetContext {
    pub(crate) chain: Arc<Chain>,
    pub(crate) set: Option<Arc<SequencerSet>>,
}

fn describe(ctx: &SetContext) -> Result<Value, ErrorObjectOwned> {
    let err = |e: ChainError| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>);
    let spec = ctx.chain.spec();
    let (head, _) = ctx.chain.head();
    let mut v = match &ctx.set {
        Some(s) => s.status.to_json(),
        None if spec.validators.is_empty() => json!({
            "validators": [{"address": Address::ZERO, "votingPower": 1}],
        }),
        None => json!({
            "validators": spec.validators.iter().map(|a| json!({"address": a, "votingPower": 1})).collect::<Vec<_>>(),
            "quorum": hemi_chain::certificate::quorum(spec.validators.len()),
        }),
    };
    if spec.validators.is_empty() {
        // One sequencer key seals: it is the set.
        let beneficiary = ctx
            .chain
            .header(head)
            .map_err(err)?
            .map(|h| h.beneficiary)
            .unwrap_or_default();
        v["mode"] = json!("single");
        v["validators"] =
            json!([{"address": beneficiary, "votingPower": 1, "lastSignedHeight": head}]);
        v["quorum"] = json!(1);
        v["height"] = json!(head + 1);
        return Ok(v);
    }
    v["mode"] = json!("bft");
    v["engine"] = json!("malachite (Tendermint)");
    v["head"] = json!(head);
    if let Some(b) = ctx.chain.block(head).map_err(err)? {
        if let Some(c) = &b.certificate {
            let signers = c
                .signers(spec.chain_id, head, b.hash)
                .map_err(|e| err(e.into()))?;
            v["headCertificate"] = json!({
                "round": c.round,
                "signers": signers,
            });
        }
    }
    Ok(v)
}

/// The `hemi_getSequencerSet` module.
pub(crate) fn set_module(ctx: SetContext) -> anyhow::Result<jsonrpsee::RpcModule<SetContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_blocking_method("hemi_getSequencerSet", |_, ctx, _| describe(&ctx))?;
    Ok(m)
}
