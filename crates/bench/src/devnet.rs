//! A `hemi devnet` child process (this binary) on free ports in a temporary directory, driven
//! over JSON-RPC by the benchmarks.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// A running devnet; killed on drop.
pub(crate) struct Devnet {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// The embedded Bitcoin node's bitcoind-compatible RPC.
    pub(crate) bitcoin_rpc: String,
    /// The embedded Bitcoin node's P2P address (what a `hemi node` follows).
    pub(crate) bitcoin_p2p: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Devnet {
    /// Starts `hemi devnet <extra…>` and waits until it answers.
    pub(crate) async fn start(extra: &[&str]) -> anyhow::Result<Devnet> {
        let bitcoin_rpc = format!("127.0.0.1:{}", hemi_testkit::free_port());
        let bitcoin_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
        let mut args = vec![
            "devnet",
            "--bitcoin-rpc-addr",
            &bitcoin_rpc,
            "--bitcoin-p2p-addr",
            &bitcoin_p2p,
        ];
        args.extend_from_slice(extra);
        let mut d = Self::spawn(&args).await?;
        d.bitcoin_rpc = format!("http://{bitcoin_rpc}");
        d.bitcoin_p2p = bitcoin_p2p;
        Ok(d)
    }

    /// Starts `hemi <args…> --rpc-addr <free> --dir <temporary>` (a devnet or a node) and
    /// waits until it answers.
    pub(crate) async fn spawn(args: &[&str]) -> anyhow::Result<Devnet> {
        let dir = tempfile::tempdir()?;
        let rpc = format!("127.0.0.1:{}", hemi_testkit::free_port());
        let log = std::fs::File::create(dir.path().join("hemi.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .args(["--rpc-addr", &rpc])
            .arg("--dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting hemi devnet")?;
        let d = Devnet {
            child,
            url: format!("http://{rpc}"),
            bitcoin_rpc: String::new(),
            bitcoin_p2p: String::new(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.head().await.is_err() {
            if Instant::now() > deadline {
                bail!("hemi {} did not answer", args.join(" "));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(d)
    }

    /// A JSON-RPC call; its `result`.
    pub(crate) async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let v: Value = self
            .http
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await?
            .json()
            .await?;
        if let Some(e) = v.get("error") {
            bail!("{method}: {e}");
        }
        Ok(v["result"].clone())
    }

    /// The L2 head.
    pub(crate) async fn head(&self) -> anyhow::Result<u64> {
        let v = self.call("eth_blockNumber", json!([])).await?;
        Ok(u64::from_str_radix(
            v.as_str().context("blockNumber")?.trim_start_matches("0x"),
            16,
        )?)
    }

    /// The Bitcoin tip height the devnet has indexed.
    pub(crate) async fn btc_height(&self) -> anyhow::Result<u64> {
        self.call("hemi_btcTip", json!([])).await?["height"]
            .as_u64()
            .context("btc tip")
    }
}
