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
use hemi_custodian::dkg::{run_dkg, DkgConfig};
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
}

/// Where the key store is and how to open it.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The custodian's directory (custodian.json, vault.json).
    #[arg(long, env = "HEMI_DIR")]
    pub dir: PathBuf,
    /// A file holding the key store's passphrase.
    #[arg(long, env = "HEMI_CUSTODIAN_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase itself: set it through HEMI_CUSTODIAN_PASSPHRASE (a flag would show in
    /// the process list).
    #[arg(
        long,
        env = "HEMI_CUSTODIAN_PASSPHRASE",
        hide = true,
        hide_env_values = true
    )]
    pub passphrase: Option<String>,
}

impl StoreArgs {
    fn passphrase(&self) -> anyhow::Result<Passphrase> {
        match (&self.passphrase_file, &self.passphrase) {
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
    }
}

fn coordinator_key(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists already: refusing to replace a key",
            out.display()
        );
    }
    let id = Identity::generate();
    write_atomic(out, format!("{}\n", id.secret_hex()).as_bytes(), true)?;
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
    let keys = run_dkg(store.identity(), config, listener).await?;
    let vault_file = keys.vault_file();
    store.save_keys(keys, &pass)?;
    let vault_path = a.store.dir.join(VAULT_FILE);
    vault_file.write(&vault_path)?;
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
