//! Test bed: starts a real Bitcoin Core (`bitcoind -regtest`) and drives it.
//!
//! Bitcoin Core is the outside truth our tests compare against: the Bitcoin client, the hVM's
//! view of Bitcoin, PoP and the tunnel are all checked against what a real node says. This crate
//! finds (or builds, via `scripts/bitcoind.sh`) a regtest-only, wallet-less `bitcoind`, starts it
//! on free loopback ports in a temporary data directory, and hands back a ready RPC client.
//!
//! Main items:
//! - [`BitcoinCore`]: one bitcoind owned by a test; killed on drop.
//! - [`shared`] / [`SharedCore`]: one bitcoind per test process, for tests that can share a chain.
//! - [`bitcoind_path`], [`free_port`], [`regtest_p2wpkh`]: the pieces.
//!
//! No bitcoind outlives its test process: each one gets a small `sh` watchdog that SIGKILLs it
//! (and removes its data directory) within about a second of the test process dying, even
//! after a crash or SIGKILL, when no destructor runs.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, BlockHash, CompressedPublicKey, Network, PrivateKey};
use hemi_btc_rpc_client::{BitcoinRpc, RpcError, RPC_IN_WARMUP};

/// RPC user of every bitcoind started here.
pub const RPC_USER: &str = "hemi";
/// RPC password of every bitcoind started here.
pub const RPC_PASSWORD: &str = "hemi-testkit";
/// Extra argument that exempts loopback peers from discouragement/bans (for P2P tests that
/// misbehave on purpose); pass it to [`BitcoinCore::start_with`].
pub const WHITELIST_LOOPBACK: &str = "-whitelist=noban@127.0.0.1";

/// How long a started bitcoind may take to answer RPC.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`BitcoinCore::stop`] waits for the process to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports the devnet uses (Core's regtest defaults); never handed out.
const RESERVED_PORTS: [u16; 2] = [18443, 18444];
/// Start attempts when a port picked by [`free_port`] was taken before bitcoind bound it.
const START_ATTEMPTS: usize = 3;

/// The workspace root, two levels above this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path to `bitcoind`: `$HEMI_BITCOIND` if set, else the last stdout line of
/// `<workspace>/scripts/bitcoind.sh` (which builds and caches it once, ~10 minutes; its progress
/// goes to stderr). The answer, success or failure, is cached for the process.
///
/// # Errors
/// If the script fails or the path it names is not a file.
pub fn bitcoind_path() -> anyhow::Result<PathBuf> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| locate_bitcoind().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_bitcoind() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("HEMI_BITCOIND").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let root = workspace_root();
            let script = root.join("scripts/bitcoind.sh");
            let out = Command::new("bash")
                .arg(&script)
                .current_dir(&root)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            if !out.status.success() {
                bail!("{} failed ({})", script.display(), out.status);
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .ok_or_else(|| anyhow!("{} printed no path", script.display()))?;
            PathBuf::from(last)
        }
    };
    if !path.is_file() {
        bail!("bitcoind not found at {}", path.display());
    }
    Ok(path)
}

/// A free loopback TCP port (never 18443/18444, never one this process handed out before).
/// Another process may still take it before it is bound; [`BitcoinCore::start`] retries then.
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        if !RESERVED_PORTS.contains(&port) && handed_out.insert(port) {
            return port;
        }
    }
}

/// A regtest P2WPKH key and address from a fixed 32-byte secret (deterministic test funds).
///
/// # Errors
/// If `secret` is not a valid secp256k1 secret key (zero or ≥ the group order).
pub fn regtest_p2wpkh(secret: &[u8; 32]) -> anyhow::Result<(PrivateKey, Address)> {
    let secp = Secp256k1::new();
    let key = PrivateKey::new(SecretKey::from_slice(secret)?, Network::Regtest);
    let pubkey = CompressedPublicKey::from_private_key(&secp, &key)?;
    Ok((key, Address::p2wpkh(&pubkey, Network::Regtest)))
}

/// A running `bitcoind -regtest`, owned by one test. Dropping it SIGKILLs the process.
pub struct BitcoinCore {
    /// A client for its RPC server (made on the runtime that started the node).
    pub rpc: BitcoinRpc,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// P2P port on 127.0.0.1.
    pub p2p_port: u16,
    /// Data directory, removed on drop.
    pub datadir: tempfile::TempDir,
    child: Child,
    watchdog: Option<Child>,
}

impl std::fmt::Debug for BitcoinCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinCore")
            .field("pid", &self.child.id())
            .field("rpc_port", &self.rpc_port)
            .field("p2p_port", &self.p2p_port)
            .field("datadir", &self.datadir.path())
            .finish_non_exhaustive()
    }
}

impl BitcoinCore {
    /// Starts bitcoind with the test defaults and waits until its RPC answers.
    ///
    /// # Errors
    /// As [`BitcoinCore::start_with`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts bitcoind with the test defaults plus `extra` arguments (later ones win, e.g.
    /// `-txindex=0`, or [`WHITELIST_LOOPBACK`]) and waits until its RPC answers (≤ 60 s).
    ///
    /// Defaults: `-regtest -server -txindex=1 -acceptnonstdtxn=0`, RPC and P2P on free
    /// 127.0.0.1 ports, no DNS/fixed seeds, no discovery, no NAT-PMP, no Tor, log to
    /// `<datadir>/regtest/debug.log` only.
    ///
    /// # Errors
    /// If bitcoind cannot be found or spawned, exits during start-up (the error then carries
    /// its stderr, e.g. "Invalid parameter -upnp"), or does not answer within 60 s.
    pub async fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let bitcoind = tokio::task::spawn_blocking(bitcoind_path).await??;
        let mut attempt = 1;
        loop {
            match Self::try_start(&bitcoind, extra).await {
                Err(Start::PortTaken(e)) if attempt < START_ATTEMPTS => {
                    note_port_race(&e);
                    attempt += 1;
                }
                Err(Start::PortTaken(e) | Start::Failed(e)) => return Err(e),
                Ok(core) => return Ok(core),
            }
        }
    }

    async fn try_start(bitcoind: &Path, extra: &[&str]) -> Result<Self, Start> {
        let datadir = tempfile::Builder::new()
            .prefix("hemi-bitcoind-")
            .tempdir()
            .context("creating the data directory")?;
        let rpc_port = free_port();
        let p2p_port = free_port();
        let mut args = vec![
            "-regtest".to_owned(),
            format!("-datadir={}", datadir.path().display()),
            "-server=1".to_owned(),
            format!("-rpcuser={RPC_USER}"),
            format!("-rpcpassword={RPC_PASSWORD}"),
            format!("-rpcport={rpc_port}"),
            "-rpcbind=127.0.0.1".to_owned(),
            "-rpcallowip=127.0.0.1".to_owned(),
            "-listen=1".to_owned(),
            format!("-bind=127.0.0.1:{p2p_port}"),
            "-txindex=1".to_owned(),
            "-acceptnonstdtxn=0".to_owned(),
            "-printtoconsole=0".to_owned(),
            "-dnsseed=0".to_owned(),
            "-fixedseeds=0".to_owned(),
            "-discover=0".to_owned(),
            "-natpmp=0".to_owned(),
            "-listenonion=0".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));

        let stderr_path = datadir.path().join("stderr.log");
        let stderr = File::create(&stderr_path).context("creating stderr.log")?;
        let child = Command::new(bitcoind)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {}", bitcoind.display()))?;
        let rpc = BitcoinRpc::with_auth(
            &format!("http://127.0.0.1:{rpc_port}"),
            RPC_USER,
            RPC_PASSWORD,
        )
        .context("building the RPC client")?;
        // From here on, Drop kills the child on every error path.
        let mut core = Self {
            rpc,
            rpc_port,
            p2p_port,
            datadir,
            child,
            watchdog: None,
        };
        core.watchdog = Some(spawn_watchdog(core.child.id(), core.datadir.path())?);
        core.wait_ready(READY_TIMEOUT).await?;
        Ok(core)
    }

    /// Waits until RPC answers, failing early if the process exits.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Start> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("polling bitcoind")? {
                let stderr = std::fs::read_to_string(self.datadir.path().join("stderr.log"))
                    .unwrap_or_default();
                let e = anyhow!(
                    "bitcoind exited during start-up ({status}): {}\n{}",
                    stderr.trim(),
                    self.debug_log_tail(20)
                );
                // Core's words for "P2P port taken" and "RPC port taken".
                let port_taken = stderr.contains("Unable to bind")
                    || stderr.contains("Unable to start HTTP server");
                return Err(if port_taken {
                    Start::PortTaken(e)
                } else {
                    Start::Failed(e)
                });
            }
            match self.rpc.wait_ready(Duration::from_millis(250)).await {
                Ok(()) => return Ok(()),
                Err(e @ RpcError::Transport(_)) => {
                    if Instant::now() >= deadline {
                        return Err(Start::Failed(anyhow!(
                            "bitcoind did not answer RPC within {timeout:?}: {e}"
                        )));
                    }
                }
                Err(e) if e.rpc_code() == Some(RPC_IN_WARMUP) && Instant::now() < deadline => {}
                Err(e) => return Err(Start::Failed(anyhow!(e).context("waiting for bitcoind"))),
            }
        }
    }

    /// The process id of bitcoind.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its P2P address (127.0.0.1:`p2p_port`).
    pub fn p2p_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.p2p_port))
    }

    /// Its RPC URL with credentials: `http://user:pass@127.0.0.1:port`.
    pub fn rpc_url(&self) -> String {
        format!(
            "http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{}",
            self.rpc_port
        )
    }

    /// Path of its `debug.log`.
    pub fn debug_log(&self) -> PathBuf {
        self.datadir.path().join("regtest").join("debug.log")
    }

    fn debug_log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.debug_log()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Mines `n` blocks paying their coinbase to `to`; returns their hashes, oldest first.
    ///
    /// # Errors
    /// If the RPC call fails.
    pub async fn mine(&self, n: u64, to: &Address) -> anyhow::Result<Vec<BlockHash>> {
        self.rpc
            .generate_to_address(n, to)
            .await
            .with_context(|| format!("mining {n} blocks"))
    }

    /// SIGKILLs bitcoind (no clean shutdown) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        // Errors only mean the process is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Shuts bitcoind down cleanly (RPC `stop`) and waits for it to exit (≤ 30 s, then SIGKILL).
    ///
    /// # Errors
    /// If `stop` fails, or bitcoind exits unsuccessfully or too slowly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.rpc.stop().await.context("RPC stop")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("polling bitcoind")? {
                if !status.success() {
                    bail!("bitcoind exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("bitcoind did not exit within {STOP_TIMEOUT:?} of stop; killed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BitcoinCore {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a start attempt failed: a port race (worth retrying with new ports) or anything else.
enum Start {
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Start {
    fn from(e: anyhow::Error) -> Self {
        Start::Failed(e)
    }
}

/// Port races are expected under parallel tests; say so on stderr (test output) and retry.
fn note_port_race(e: &anyhow::Error) {
    eprintln!("hemi-testkit: bitcoind lost a port race, retrying with new ports: {e:#}");
}

/// Starts `sh` watching this process and bitcoind `child`: when this process is gone it
/// SIGKILLs bitcoind and removes `datadir`; when bitcoind is gone it just exits.
fn spawn_watchdog(child: u32, datadir: &Path) -> anyhow::Result<Child> {
    const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
if ! kill -0 "$1" 2>/dev/null; then
  kill -9 "$2" 2>/dev/null
  sleep 1
  rm -rf "$3"
fi
"#;
    Command::new("sh")
        .args(["-c", SCRIPT, "hemi-bitcoind-watchdog"])
        .arg(std::process::id().to_string())
        .arg(child.to_string())
        .arg(datadir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the bitcoind watchdog (sh)")
}

/// One bitcoind shared by all tests of a test process; see [`shared`].
///
/// Tests sharing it see each other's blocks and transactions: assert on what you created
/// (your own addresses, txids, relative heights), not on absolute heights.
#[derive(Debug)]
pub struct SharedCore {
    core: BitcoinCore,
}

impl SharedCore {
    /// A fresh RPC client for the calling test's runtime (clients must not cross runtimes).
    ///
    /// # Errors
    /// Never in practice (the URL is known-good); an HTTP client build failure.
    pub fn rpc(&self) -> anyhow::Result<BitcoinRpc> {
        Ok(BitcoinRpc::with_auth(
            &format!("http://127.0.0.1:{}", self.core.rpc_port),
            RPC_USER,
            RPC_PASSWORD,
        )?)
    }

    /// See [`BitcoinCore::rpc_url`].
    pub fn rpc_url(&self) -> String {
        self.core.rpc_url()
    }

    /// See [`BitcoinCore::p2p_addr`].
    pub fn p2p_addr(&self) -> SocketAddr {
        self.core.p2p_addr()
    }

    /// RPC port on 127.0.0.1.
    pub fn rpc_port(&self) -> u16 {
        self.core.rpc_port
    }

    /// P2P port on 127.0.0.1.
    pub fn p2p_port(&self) -> u16 {
        self.core.p2p_port
    }

    /// The process id of bitcoind.
    pub fn pid(&self) -> u32 {
        self.core.pid()
    }
}

/// The process-wide shared bitcoind, started (blocking) on first use and never stopped: its
/// watchdog kills it and removes its data directory once the test process exits. Callable
/// from sync and async tests alike (it starts the node on its own thread and runtime).
///
/// # Errors
/// If the first start failed (the error is remembered; later calls return it too).
pub fn shared() -> anyhow::Result<&'static SharedCore> {
    static SHARED: OnceLock<Result<SharedCore, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(BitcoinCore::start())
            })
            .join()
            .map_err(|_| anyhow!("the thread starting bitcoind panicked"))
            .and_then(|r| r)
            .map(|core| SharedCore { core })
            .map_err(|e| format!("starting the shared bitcoind: {e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!(e.clone()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn free_ports_are_distinct_and_not_the_devnet_ports() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(!ports.contains(&18443) && !ports.contains(&18444));
    }

    #[test]
    fn fixed_secret_gives_a_fixed_regtest_p2wpkh_address() {
        let (_, a) = regtest_p2wpkh(&[1; 32]).unwrap();
        let (_, b) = regtest_p2wpkh(&[1; 32]).unwrap();
        assert_eq!(a, b);
        assert!(a.to_string().starts_with("bcrt1q"), "{a}");
        assert!(a.script_pubkey().is_p2wpkh());
        assert!(regtest_p2wpkh(&[0; 32]).is_err());
    }

    #[test]
    fn workspace_root_holds_the_bitcoind_script() {
        assert!(workspace_root().join("scripts/bitcoind.sh").is_file());
    }
}
