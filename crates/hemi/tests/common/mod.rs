//! Shared end-to-end harness: the real `hemi` binary as a child process, a JSON-RPC client for
//! it, and Bitcoin helpers that make keys and sign in Rust (our Bitcoin Core has no wallet).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bitcoin::{Address, Amount, Network, OutPoint, Transaction, TxOut};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use serde_json::{json, Value};

/// A running `hemi` process; SIGKILLed on drop.
pub(crate) struct Hemi {
    pub child: Child,
    pub rpc_addr: SocketAddr,
    pub log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Hemi {
    /// Starts `hemi <args…> --rpc-addr 127.0.0.1:<free>` and waits until its RPC answers.
    pub(crate) async fn start(args: &[&str], log_dir: &Path) -> anyhow::Result<Hemi> {
        let port = hemi_testkit::free_port();
        let rpc_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = log_dir.join(format!("hemi-{port}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_hemi"))
            .args(args)
            .arg("--rpc-addr")
            .arg(rpc_addr.to_string())
            .env(
                "RUST_LOG",
                "info,hemi_btc_client=debug,arc_malachitebft=warn,arc_malachitebft_network=off",
            )
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .context("spawning hemi")?;
        let h = Hemi {
            child,
            rpc_addr,
            log,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if h.call("web3_clientVersion", json!([])).await.is_ok() {
                return Ok(h);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("hemi did not answer on {rpc_addr}; log:\n{}", h.log_text())
    }

    /// `hemi devnet` on the real Bitcoin Core `core` (P2P for the client, RPC to fund its key
    /// and broadcast PoP transactions), plus `extra` flags.
    pub(crate) async fn devnet_on(
        core: &hemi_testkit::BitcoinCore,
        log_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Hemi> {
        let peer = core.p2p_addr().to_string();
        let url = core.rpc_url();
        let mut args = vec!["devnet", "--bitcoin-peer", &peer, "--bitcoin-rpc", &url];
        args.extend_from_slice(extra);
        Hemi::start(&args, log_dir).await
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// JSON-RPC 2.0 call; returns `result` or an error carrying `error`.
    pub(crate) async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = self
            .http
            .post(format!("http://{}", self.rpc_addr))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if let Some(e) = resp.get("error") {
            bail!("{method}: {e}");
        }
        Ok(resp["result"].clone())
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hemi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node's `eth_blockNumber`.
pub(crate) async fn head_of(hemi: &Hemi) -> anyhow::Result<u64> {
    let v = hemi.call("eth_blockNumber", json!([])).await?;
    Ok(u64::from_str_radix(
        v.as_str().context("number")?.trim_start_matches("0x"),
        16,
    )?)
}

/// `hash`'s receipt on `hemi` once it has one (polled), or an error naming `what` after `secs`.
pub(crate) async fn receipt_of(
    hemi: &Hemi,
    hash: &str,
    secs: u64,
    what: &str,
) -> anyhow::Result<Value> {
    wait_for(secs, what, || async {
        let r = hemi
            .call("eth_getTransactionReceipt", json!([hash]))
            .await
            .ok()?;
        (!r.is_null()).then_some(r)
    })
    .await
}

/// Polls `f` until it returns `Some`, or fails after `secs` with `what`.
pub(crate) async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until hemi's indexed tip is Bitcoin Core's best block.
pub(crate) async fn wait_synced(hemi: &Hemi, core: &BitcoinRpc, secs: u64) -> anyhow::Result<()> {
    let best = core.get_best_block_hash().await?.to_string();
    let r = wait_for(secs, "hemi to reach Bitcoin Core's tip", || async {
        let tip = hemi.call("hemi_btcTip", json!([])).await.ok()?;
        (tip["hash"] == best.as_str()).then_some(())
    })
    .await;
    if r.is_err() {
        let tip = hemi.call("hemi_btcTip", json!([])).await.ok();
        let status = hemi.call("hemi_btcSyncStatus", json!([])).await.ok();
        bail!(
            "not synced: core best {best}, hemi tip {tip:?}, status {status:?}\nlog tail:\n{}",
            tail(&hemi.log_text(), 40)
        );
    }
    Ok(())
}

/// How many kill -9 rounds the crash tests run: `HEMI_KILL_ROUNDS` (scripts/reliability.sh sets
/// it: 3 for CI's short form, 20 for `--full`), else 10.
pub(crate) fn kill_rounds() -> usize {
    std::env::var("HEMI_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10)
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts hemi's balance and UTXO set of `addr` equal Bitcoin Core's `scantxoutset`.
pub(crate) async fn assert_address_matches(
    hemi: &Hemi,
    core: &BitcoinRpc,
    addr: &Address,
) -> anyhow::Result<u64> {
    let scan = core
        .scan_tx_out_set_addresses(std::slice::from_ref(addr))
        .await?;
    let balance = hemi
        .call("hemi_btcBalance", json!([addr.to_string()]))
        .await?;
    assert_eq!(
        balance.as_u64(),
        Some(scan.total_amount_sats),
        "balance of {addr}"
    );
    let utxos = hemi
        .call("hemi_btcUtxos", json!([addr.to_string()]))
        .await?;
    let mut ours: Vec<(String, u64, u64, u64)> = utxos
        .as_array()
        .context("utxos array")?
        .iter()
        .map(|u| {
            (
                u["txid"].as_str().unwrap_or_default().to_string(),
                u["vout"].as_u64().unwrap_or(u64::MAX),
                u["value"].as_u64().unwrap_or(0),
                u["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut theirs: Vec<(String, u64, u64, u64)> = scan
        .unspents
        .iter()
        .map(|u| {
            (
                u.txid.to_string(),
                u.vout as u64,
                u.amount_sats,
                u.height as u64,
            )
        })
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "UTXOs of {addr}");
    eprintln!(
        "{addr}: {} UTXOs, {} sat match Bitcoin Core",
        ours.len(),
        scan.total_amount_sats
    );
    Ok(scan.total_amount_sats)
}

/// Mature P2WPKH/P2TR UTXOs of `key` according to Bitcoin Core.
pub(crate) async fn spendable(
    core: &BitcoinRpc,
    key: &Key,
    kind: KeyKind,
) -> anyhow::Result<Vec<(OutPoint, TxOut)>> {
    let addr = key.address(kind, Network::Regtest);
    let tip = core.get_block_count().await? as u32;
    let scan = core.scan_tx_out_set_addresses(&[addr]).await?;
    let mut out = Vec::new();
    for u in scan.unspents {
        // Coinbase maturity: only take outputs at least 100 deep (non-coinbase are fine too).
        if tip + 1 - u.height >= 100 {
            out.push((
                OutPoint::new(u.txid, u.vout),
                TxOut {
                    value: Amount::from_sat(u.amount_sats),
                    script_pubkey: u.script_pubkey,
                },
            ));
        }
    }
    out.sort_by_key(|(op, _)| (op.txid, op.vout));
    Ok(out)
}

/// A signed payment from `from` (one UTXO) to `to` outputs, 2 sat/vB.
pub(crate) fn pay(
    from: &Key,
    kind: KeyKind,
    utxo: (OutPoint, TxOut),
    to: Vec<(bitcoin::ScriptBuf, u64)>,
) -> anyhow::Result<Transaction> {
    let outputs = to
        .into_iter()
        .map(|(s, v)| TxOut {
            value: Amount::from_sat(v),
            script_pubkey: s,
        })
        .collect();
    Ok(build_payment(from, kind, &[utxo], outputs, 2.0)?)
}

/// `tests/js` (npm clients, pinned by its lockfile).
pub(crate) fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js")
}

/// The npm `@foundry-rs/cast` binary.
pub(crate) fn cast_bin() -> PathBuf {
    js_dir().join("node_modules/@foundry-rs/cast-linux-amd64/bin/cast")
}

/// Runs the npm `cast` with `args`; its trimmed stdout, or an error with its stderr.
pub(crate) fn cast(args: &[&str]) -> anyhow::Result<String> {
    let bin = cast_bin();
    let out = Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "cast {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs a client script (`program args…` in `cwd`, with `RPC_URL` pointing at `hemi` plus
/// `env`) and returns the last line of its stdout that is a JSON object; a failure carries the
/// script's output and the tail of hemi's log.
pub(crate) fn client_script(
    hemi: &Hemi,
    program: impl AsRef<OsStr>,
    args: &[&OsStr],
    cwd: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let shown = format!(
        "{} {}",
        program.as_ref().to_string_lossy(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new(program.as_ref())
        .args(args)
        .current_dir(cwd)
        .env("RPC_URL", format!("http://{}", hemi.rpc_addr))
        .env_remove("WS_URL")
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{stdout}\n{stderr}\nhemi log tail:\n{}",
            out.status,
            tail(&hemi.log_text(), 30)
        );
    }
    eprint!("{stderr}");
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    Ok(serde_json::from_str(last).unwrap_or(Value::Null))
}

/// A peer that accepts anything, has no blocks of its own, and gossips what the test gives it.
pub(crate) struct Evil;

impl hemi_net::NetApp for Evil {
    fn check_block(&self, _: &hemi_net::PeerId, _: &[u8]) -> hemi_net::Verdict {
        hemi_net::Verdict::Accept
    }
    fn check_tx(&self, _: &hemi_net::PeerId, _: &[u8]) -> hemi_net::Verdict {
        hemi_net::Verdict::Accept
    }
    fn serve(&self, request: &hemi_net::Request) -> hemi_net::Response {
        match request {
            hemi_net::Request::Head => hemi_net::Response::Head {
                number: 0,
                hash: vec![0; 32],
            },
            _ => hemi_net::Response::NotFound,
        }
    }
}

/// The sequencer set a node reports (`hemi_getSequencerSet`), sorted as a chain spec names it.
pub(crate) async fn sequencer_set(hemi: &Hemi) -> anyhow::Result<hemi_chain::ValidatorSet> {
    let ss = hemi.call("hemi_getSequencerSet", json!([])).await?;
    let mut set: Vec<alloy_primitives::Address> = ss["validators"]
        .as_array()
        .context("validators")?
        .iter()
        .map(|v| v["address"].as_str().unwrap_or_default().parse())
        .collect::<Result<_, _>>()?;
    set.sort();
    Ok(hemi_chain::ValidatorSet(set))
}

/// Runs the `hemi` binary with `args`; (success, stdout, stderr).
pub(crate) fn hemi_cli(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args(args)
        .output()
        .context("running hemi")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Block `n` as `debug_getRawBlock` serves it, decoded.
pub(crate) async fn raw_block(hemi: &Hemi, n: u64) -> anyhow::Result<hemi_chain::L2Block> {
    let raw = hemi
        .call("debug_getRawBlock", json!([format!("0x{n:x}")]))
        .await?;
    Ok(hemi_chain::L2Block::decode(&hex::decode(
        raw.as_str().context("raw block")?.trim_start_matches("0x"),
    )?)?)
}
