//! `hemi custodian`: a tunnel vault custodian as its own process (the library is
//! `hemi-custodian`).
//!
//! ```text
//! hemi custodian init --dir DIR                       identity key → DIR/custodian.json
//! hemi custodian coordinator-key --out FILE           the node's key that asks for signatures
//! hemi custodian keygen --dir DIR --index I --peers FILE --listen ADDR
//!                       [--recovery-key HEX --recovery-after N --network regtest --session S]
//! hemi custodian run --dir DIR --peers FILE --listen ADDR --l2-rpc URL
//! ```
//!
//! The key store's passphrase comes from `--passphrase-file FILE` or `HEMI_CUSTODIAN_PASSPHRASE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hemi_custodian::dkg::{run_dkg_then, DkgConfig};
use hemi_custodian::store::{write_atomic, VAULT_FILE};
use hemi_custodian::{
    BeforeShare, Identity, KeyStore, Passphrase, Peers, SigningService, TunnelPolicy,
};

/// `hemi custodian` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CustodianCommand {
    /// Creates DIR/custodian.json with a new identity key (encrypted under the passphrase) and
    /// prints the identity public key for the peers file.
    Init(InitArgs),
    /// Writes a new coordinator identity key (the node's, that asks custodians to sign) to a
    /// file readable by its owner only, and prints its public key for the peers file.
    CoordinatorKey(CoordinatorKeyArgs),
    /// Runs the distributed key generation with the other custodians of the peers file;
    /// stores the key share encrypted and writes DIR/vault.json.
    Keygen(KeygenArgs),
    /// Serves the signing rounds to the coordinator, signing only what the L2 node says is
    /// owed (pending withdrawals) or minted (taproot deposits to sweep).
    Run(RunArgs),
    /// Fallback when FROST signing is unavailable: a PSBT that spends vault outputs through
    /// the vault's sortedmulti_a leaf (printed as base64).
    FallbackPsbt(FallbackPsbtArgs),
    /// Adds this custodian's script-key signature to a fallback PSBT (the file, in place).
    FallbackSign(FallbackSignArgs),
    /// Turns a fallback PSBT with k signatures into the Bitcoin transaction; prints it, or
    /// broadcasts it with --bitcoin-rpc and prints its txid.
    FallbackFinalize(FallbackFinalizeArgs),
}

/// `hemi custodian fallback-psbt` flags.
#[derive(Debug, Args)]
pub(crate) struct FallbackPsbtArgs {
    /// The vault (vault.json from keygen).
    #[arg(long)]
    pub vault: PathBuf,
    /// A vault output to spend, TXID:VOUT:SATOSHIS (repeatable; the amount is signed, so a
    /// wrong one makes every signature invalid).
    #[arg(long = "input", required = true)]
    pub inputs: Vec<String>,
    /// A payment, ADDRESS=BTC (repeatable).
    #[arg(long = "pay", required = true)]
    pub payments: Vec<String>,
    /// Fee rate, sat/vB.
    #[arg(long, default_value_t = 2)]
    pub fee_rate: u64,
}

/// `hemi custodian fallback-sign` flags.
#[derive(Debug, Args)]
pub(crate) struct FallbackSignArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The PSBT file (base64), signed in place.
    pub psbt: PathBuf,
}

/// `hemi custodian fallback-finalize` flags.
#[derive(Debug, Args)]
pub(crate) struct FallbackFinalizeArgs {
    /// The vault (vault.json).
    #[arg(long)]
    pub vault: PathBuf,
    /// The PSBT file (base64).
    pub psbt: PathBuf,
    /// Broadcast through this Bitcoin Core RPC (may carry user:password@).
    #[arg(long, env = "HEMI_BITCOIN_RPC")]
    pub bitcoin_rpc: Option<String>,
}

/// Where the key store is and how to open it.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The custodian's directory (custodian.json, vault.json).
    #[arg(long, env = "HEMI_CUSTODIAN_DIR")]
    pub dir: PathBuf,
    /// A file holding the key store's passphrase (else the environment variable
    /// HEMI_CUSTODIAN_PASSPHRASE; never a flag, which would show in the process list).
    #[arg(long, env = "HEMI_CUSTODIAN_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl StoreArgs {
    fn passphrase(&self) -> anyhow::Result<Passphrase> {
        let from_env = std::env::var("HEMI_CUSTODIAN_PASSPHRASE").ok();
        match (&self.passphrase_file, &from_env) {
            (Some(f), _) => Passphrase::from_file(f).context("--passphrase-file"),
            (None, Some(p)) => Passphrase::new(p).context("HEMI_CUSTODIAN_PASSPHRASE"),
            (None, None) => {
                bail!("no passphrase: give --passphrase-file FILE or set HEMI_CUSTODIAN_PASSPHRASE")
            }
        }
    }
}

/// `hemi custodian init` flags.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `hemi custodian coordinator-key` flags.
#[derive(Debug, Args)]
pub(crate) struct CoordinatorKeyArgs {
    /// The key file to create (64 hex digits; refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

/// `hemi custodian keygen` flags.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// This custodian's index in the peers file.
    #[arg(long, env = "HEMI_CUSTODIAN_INDEX")]
    pub index: u16,
    /// The peers file (TOML: threshold, [[custodian]] index/url/identity, [coordinator]).
    #[arg(long, env = "HEMI_CUSTODIAN_PEERS")]
    pub peers: PathBuf,
    /// Where to serve the DKG to the other custodians (this custodian's URL in the peers file).
    #[arg(long, env = "HEMI_CUSTODIAN_LISTEN")]
    pub listen: String,
    /// The vault's recovery key (x-only or compressed hex). Default on regtest: the devnet's.
    #[arg(long, env = "HEMI_CUSTODIAN_RECOVERY_KEY")]
    pub recovery_key: Option<String>,
    /// The recovery leaf's timelock, Bitcoin blocks.
    #[arg(long, env = "HEMI_CUSTODIAN_RECOVERY_AFTER", default_value_t = hemi_node::DEVNET_RECOVERY_AFTER)]
    pub recovery_after: u16,
    /// Bitcoin network of the vault's address: mainnet, testnet, testnet4, signet, regtest.
    #[arg(long, env = "HEMI_NETWORK", default_value = "regtest")]
    pub network: String,
    /// A label mixed into the session id (to run a new DKG with the same peers); the same on
    /// every custodian.
    #[arg(long, env = "HEMI_CUSTODIAN_SESSION", default_value = "")]
    pub session: String,
    /// Seconds to wait for the other custodians.
    #[arg(long, env = "HEMI_CUSTODIAN_TIMEOUT", default_value_t = 120)]
    pub timeout: u64,
}

/// `hemi custodian run` flags.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The peers file.
    #[arg(long, env = "HEMI_CUSTODIAN_PEERS")]
    pub peers: PathBuf,
    /// Where to serve the signing rounds.
    #[arg(long, env = "HEMI_CUSTODIAN_LISTEN")]
    pub listen: String,
    /// The L2 node this custodian trusts to say which withdrawals are pending and which
    /// deposits are minted.
    #[arg(long, env = "HEMI_L2_RPC")]
    pub l2_rpc: String,
    /// Test only: abort the process when a signature share is asked for (after committing).
    #[arg(long, hide = true)]
    pub exit_before_share: bool,
}

fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(listen).with_context(|| format!("--listen {listen}"))
}

/// Runs a `hemi custodian` subcommand.
///
/// # Errors
/// Bad flags, an unreadable or undecryptable key store, a DKG or server failure.
pub(crate) async fn run(cmd: CustodianCommand) -> anyhow::Result<()> {
    match cmd {
        CustodianCommand::Init(a) => {
            let pass = a.store.passphrase()?;
            let store = KeyStore::create(&a.store.dir, &pass)?;
            println!("identity {}", store.identity().public());
            println!("key store {}", store.path().display());
            Ok(())
        }
        CustodianCommand::CoordinatorKey(a) => coordinator_key(&a.out),
        CustodianCommand::Keygen(a) => keygen(a).await,
        CustodianCommand::Run(a) => serve(a).await,
        CustodianCommand::FallbackPsbt(a) => fallback_psbt(&a),
        CustodianCommand::FallbackSign(a) => fallback_sign(&a),
        CustodianCommand::FallbackFinalize(a) => fallback_finalize(&a).await,
    }
}

/// A PSBT file: BIP-174's base64.
fn read_psbt(path: &Path) -> anyhow::Result<bitcoin::psbt::Psbt> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .with_context(|| format!("{} is not base64", path.display()))?;
    bitcoin::psbt::Psbt::deserialize(&bytes)
        .with_context(|| format!("{} is not a PSBT", path.display()))
}

/// A PSBT as BIP-174's base64.
fn psbt_base64(psbt: &bitcoin::psbt::Psbt) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(psbt.serialize())
}

fn fallback_psbt(a: &FallbackPsbtArgs) -> anyhow::Result<()> {
    use std::str::FromStr;
    let (file, vault) = hemi_custodian::VaultFile::load(&a.vault)?;
    let mut utxos = Vec::new();
    for i in &a.inputs {
        let mut parts = i.split(':');
        let (Some(txid), Some(vout), Some(sats), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("--input {i:?}: expected TXID:VOUT:SATOSHIS");
        };
        let outpoint = bitcoin::OutPoint::new(
            bitcoin::Txid::from_str(txid).with_context(|| format!("--input {i:?}: txid"))?,
            vout.parse()
                .with_context(|| format!("--input {i:?}: vout"))?,
        );
        let value = bitcoin::Amount::from_sat(
            sats.parse()
                .with_context(|| format!("--input {i:?}: satoshis"))?,
        );
        utxos.push((
            outpoint,
            bitcoin::TxOut {
                value,
                script_pubkey: vault.script_pubkey(),
            },
        ));
    }
    let mut payments = Vec::new();
    for p in &a.payments {
        let Some((addr, btc)) = p.split_once('=') else {
            bail!("--pay {p:?}: expected ADDRESS=BTC");
        };
        let address = bitcoin::Address::from_str(addr)
            .with_context(|| format!("--pay {p:?}: address"))?
            .require_network(file.network)
            .with_context(|| format!("--pay {p:?}: not a {} address", file.network))?;
        let value = bitcoin::Amount::from_str_in(btc, bitcoin::Denomination::Bitcoin)
            .with_context(|| format!("--pay {p:?}: amount"))?;
        payments.push(bitcoin::TxOut {
            value,
            script_pubkey: address.script_pubkey(),
        });
    }
    let psbt = hemi_custodian::fallback::fallback_psbt(&vault, &utxos, &payments, a.fee_rate)?;
    println!("{}", psbt_base64(&psbt));
    Ok(())
}

fn fallback_sign(a: &FallbackSignArgs) -> anyhow::Result<()> {
    let pass = a.store.passphrase()?;
    let store = KeyStore::open(&a.store.dir, &pass)?;
    let keys = store
        .keys()
        .context("this custodian has no vault key yet (run `hemi custodian keygen`)")?;
    let mut psbt = read_psbt(&a.psbt)?;
    // Say what is being signed: every output, by address.
    for o in &psbt.unsigned_tx.output {
        let to = bitcoin::Address::from_script(&o.script_pubkey, keys.network)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| hex::encode(o.script_pubkey.as_bytes()));
        let vault = if o.script_pubkey == keys.vault.script_pubkey() {
            " (the vault)"
        } else {
            ""
        };
        eprintln!("  pays {} to {to}{vault}", o.value);
    }
    let n = keys.sign_fallback(&mut psbt)?;
    write_atomic(
        &a.psbt,
        format!("{}\n", psbt_base64(&psbt)).as_bytes(),
        false,
    )?;
    println!(
        "custodian {} signed {n} input(s) of {}",
        keys.index,
        a.psbt.display()
    );
    Ok(())
}

async fn fallback_finalize(a: &FallbackFinalizeArgs) -> anyhow::Result<()> {
    let (_, vault) = hemi_custodian::VaultFile::load(&a.vault)?;
    let psbt = read_psbt(&a.psbt)?;
    let tx = hemi_custodian::fallback::finalize_fallback(&psbt, &vault)?;
    match &a.bitcoin_rpc {
        Some(url) => {
            let rpc = hemi_btc_rpc_client::BitcoinRpc::new(url).context("--bitcoin-rpc")?;
            let txid = rpc
                .send_raw_transaction(&tx)
                .await
                .map_err(|e| anyhow::anyhow!("Bitcoin node refused the spend: {e}"))?;
            println!("{txid}");
        }
        None => println!("{}", bitcoin::consensus::encode::serialize_hex(&tx)),
    }
    Ok(())
}

fn coordinator_key(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists already: refusing to replace a key",
            out.display()
        );
    }
    let id = Identity::generate();
    // Never replaces a key, even one that appeared since the check above.
    hemi_custodian::store::write_new(out, format!("{}\n", id.secret_hex()).as_bytes(), true)?;
    println!("coordinator identity {}", id.public());
    println!("key file {}", out.display());
    Ok(())
}

async fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let network = crate::config::parse_network(&a.network)?;
    let recovery_key = match &a.recovery_key {
        Some(k) => hemi_custodian::identity::parse_public_key("--recovery-key", k)?,
        None if network == bitcoin::Network::Regtest => {
            hemi_btc_wallet::Key::from_seed(hemi_node::DEVNET_RECOVERY_KEY_SEED).x_only()
        }
        None => bail!("--recovery-key is required on {network} (only regtest has a default)"),
    };
    if a.recovery_after == 0 {
        bail!("--recovery-after must be at least 1 block");
    }
    if !(1..=3600).contains(&a.timeout) {
        bail!("--timeout {} is outside 1..=3600 seconds", a.timeout);
    }
    let pass = a.store.passphrase()?;
    let mut store = KeyStore::open(&a.store.dir, &pass)?;
    if store.keys().is_some() {
        bail!(
            "{} already holds a vault key: refusing to replace it (use a new --dir)",
            store.path().display()
        );
    }
    let peers = Peers::load(&a.peers)?;
    let listener = bind(&a.listen)?;
    let mut config = DkgConfig::new(
        peers,
        a.index,
        &a.session,
        recovery_key,
        a.recovery_after,
        network,
    );
    config.timeout = Duration::from_secs(a.timeout);
    let vault_path = a.store.dir.join(VAULT_FILE);
    let identity = store.identity().clone();
    // Stored (share encrypted, vault.json written) before lingering for slower peers.
    let keys = run_dkg_then(&identity, config, listener, |keys| {
        store.save_keys(keys.clone(), &pass)?;
        keys.vault_file().write(&vault_path)
    })
    .await?;
    let vault_file = keys.vault_file();
    println!("vault address {}", vault_file.address);
    println!("group key {}", vault_file.group_key);
    println!("output key {}", vault_file.output_key);
    println!("vault file {}", vault_path.display());
    Ok(())
}

async fn serve(a: RunArgs) -> anyhow::Result<()> {
    let pass = a.store.passphrase()?;
    let store = KeyStore::open(&a.store.dir, &pass)?;
    let peers = Peers::load(&a.peers)?;
    let policy = Arc::new(TunnelPolicy::node(&a.l2_rpc, Duration::from_secs(5)));
    let mut service = SigningService::new(&store, peers, policy)?;
    if a.exit_before_share {
        service = service.with_before_share(BeforeShare::Abort);
    }
    let keys = service.keys();
    println!(
        "custodian {} of vault {} (group key {}) on {}",
        keys.index,
        keys.vault.address(keys.network),
        keys.vault.group_key,
        a.listen
    );
    let listener = bind(&a.listen)?;
    let handle = service.start(listener)?;
    hemi_node::shutdown_signal().await;
    let _ = handle.stop();
    handle.stopped().await;
    Ok(())
}
