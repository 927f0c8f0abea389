//! The L2 devnet under abuse: SIGKILLed ten times while it produces blocks under a stream of
//! transfers and tunnel deposits, with Bitcoin blocks arriving (every block, receipt or mint a
//! client was shown survives the restart, nothing is minted twice, and the chain goes on), and a catalogue of malformed requests and refused transactions over HTTP and a raw
//! WebSocket, each answered with geth's code and message while the node stays up.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_consensus::crypto::secp256k1::{recover_signer, sign_message};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use anyhow::{bail, ensure, Context};
use common::{tail, wait_for, Hemi};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAIN_ID: u64 = 31337;
/// Keys 0–4 of the "test test … junk" mnemonic (the devnet funds accounts 0–9).
const DEV_KEYS: [&str; 5] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];
const GWEI: u128 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// Keys and transactions.

fn key(i: usize) -> B256 {
    DEV_KEYS[i].parse().expect("dev key")
}

fn random_key() -> B256 {
    B256::from(rand::thread_rng().gen::<[u8; 32]>())
}

fn address_of(secret: B256) -> Address {
    let msg = B256::repeat_byte(7);
    let sig = sign_message(secret, msg).expect("sign");
    recover_signer(&sig, msg).expect("recover")
}

/// An EIP-1559 transfer; fields the tests vary.
#[derive(Clone, Copy)]
struct Transfer {
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: u128,
    gas: u64,
    max_fee: u128,
    tip: u128,
}

impl Transfer {
    fn new(nonce: u64, to: Address, value: u128) -> Transfer {
        Transfer {
            chain_id: CHAIN_ID,
            nonce,
            to,
            value,
            gas: 21_000,
            max_fee: 20 * GWEI,
            tip: GWEI,
        }
    }

    fn unsigned(&self) -> TxEip1559 {
        TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas,
            max_fee_per_gas: self.max_fee,
            max_priority_fee_per_gas: self.tip,
            to: TxKind::Call(self.to),
            value: U256::from(self.value),
            access_list: Default::default(),
            input: Bytes::new(),
        }
    }

    /// `(raw 0x-hex, tx hash 0x-hex)` signed by `secret`.
    fn sign(&self, secret: B256) -> (String, String) {
        let tx = self.unsigned();
        let sig = sign_message(secret, tx.signature_hash()).expect("sign");
        self.with_signature(sig)
    }

    fn with_signature(&self, sig: Signature) -> (String, String) {
        let signed = self.unsigned().into_signed(sig);
        let hash = format!("{:#x}", signed.hash());
        let raw = TxEnvelope::from(signed).encoded_2718();
        (format!("0x{}", hex::encode(raw)), hash)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC over HTTP, keeping the whole response (the harness's `call` keeps only `result`).

fn hex_u64(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(u64::MAX)
}

fn hex_u128(v: &Value) -> u128 {
    v.as_str()
        .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(u128::MAX)
}

#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    url: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("reqwest client"),
            url: format!("http://{addr}"),
        }
    }

    /// POSTs `body` as JSON; returns the HTTP status and the body (JSON when it parses).
    async fn post(&self, body: String) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// One call; the whole response object.
    async fn req(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        Ok(self.post(body.to_string()).await?.1)
    }

    /// One call; its `result`, or an error carrying `error`.
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let r = self.req(method, params).await?;
        if let Some(e) = r.get("error") {
            bail!("{method}: {e}");
        }
        Ok(r["result"].clone())
    }

    /// A batch of calls, answered in order (chunks of 500, under the 1,000-call limit).
    async fn batch(&self, calls: &[(&str, Value)]) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(500) {
            let body: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
                .collect();
            let (status, resp) = self.post(Value::Array(body).to_string()).await?;
            let mut resp = match resp {
                Value::Array(a) if a.len() == chunk.len() => a,
                other => bail!("batch answered HTTP {status}: {other}"),
            };
            resp.sort_by_key(|r| r["id"].as_u64());
            for r in resp {
                if let Some(e) = r.get("error") {
                    bail!("batch call {}: {e}", r["id"]);
                }
                out.push(r["result"].clone());
            }
        }
        Ok(out)
    }

    async fn block_number(&self) -> anyhow::Result<u64> {
        Ok(hex_u64(&self.call("eth_blockNumber", json!([])).await?))
    }

    async fn pending_nonce(&self, a: Address) -> anyhow::Result<u64> {
        Ok(hex_u64(
            &self
                .call("eth_getTransactionCount", json!([a, "pending"]))
                .await?,
        ))
    }
}

/// `(code, message)` of a JSON-RPC error response, or an error when it succeeded.
fn rpc_error(resp: &Value) -> anyhow::Result<(i64, String)> {
    let e = resp
        .get("error")
        .with_context(|| format!("expected an error, got {resp}"))?;
    Ok((
        e["code"].as_i64().context("error code")?,
        e["message"].as_str().context("error message")?.to_string(),
    ))
}

// ---------------------------------------------------------------------------------------------
// A minimal WebSocket client (RFC 6455) that sends raw text frames, so malformed JSON can be sent.

struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
        let mut stream = TcpStream::connect(addr).await?;
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed during the WebSocket handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        ensure!(
            head.starts_with("HTTP/1.1 101"),
            "WebSocket upgrade refused: {head}"
        );
        let rest = buf.split_off(end);
        Ok(Ws { stream, buf: rest })
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mask: [u8; 4] = rand::thread_rng().gen();
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await?;
        Ok(())
    }

    async fn read_n(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            let got = self.stream.read(&mut chunk).await?;
            ensure!(got > 0, "WebSocket connection closed by the server");
            self.buf.extend_from_slice(&chunk[..got]);
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// The next text message; `None` when the server closes the connection.
    async fn read_text(&mut self) -> anyhow::Result<Option<String>> {
        let mut msg = Vec::new();
        loop {
            let h = match self.read_n(2).await {
                Ok(h) => h,
                Err(_) => return Ok(None),
            };
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len =
                match h[1] & 0x7f {
                    126 => u16::from_be_bytes(self.read_n(2).await?.try_into().expect("length"))
                        as usize,
                    127 => u64::from_be_bytes(self.read_n(8).await?.try_into().expect("length"))
                        as usize,
                    n => n as usize,
                };
            let mask = if h[1] & 0x80 != 0 {
                Some(self.read_n(4).await?)
            } else {
                None
            };
            let mut payload = self.read_n(len).await?;
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x8 => return Ok(None),
                0x9 => self.write_frame(0xA, &payload).await?,
                0xA => {}
                _ => {
                    msg.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(String::from_utf8(msg)?));
                    }
                }
            }
        }
    }

    /// Sends `text` as one text frame; returns the answer (JSON), or `None` if the server
    /// closed the connection instead.
    async fn send_raw(&mut self, text: &str) -> anyhow::Result<Option<Value>> {
        self.write_frame(0x1, text.as_bytes()).await?;
        let answer = tokio::time::timeout(Duration::from_secs(20), self.read_text())
            .await
            .context("no WebSocket answer within 20 s")??;
        Ok(answer.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
    }

    async fn req(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send_raw(&body.to_string())
            .await?
            .context("WebSocket closed instead of answering")
    }
}

// ---------------------------------------------------------------------------------------------
// Devnet processes.

fn devnet_args(extra: &[&str]) -> Vec<String> {
    let btc_rpc = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let btc_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
    devnet_args_on(&btc_rpc, &btc_p2p, extra)
}

/// [`devnet_args`] with the embedded Bitcoin node on the given addresses.
fn devnet_args_on(btc_rpc: &str, btc_p2p: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "devnet",
        "--bitcoin-block-time",
        "0",
        "--bitcoin-rpc-addr",
        btc_rpc,
        "--bitcoin-p2p-addr",
        btc_p2p,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn start_devnet(extra: &[&str], log_dir: &Path) -> anyhow::Result<Hemi> {
    let args = devnet_args(extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Hemi::start(&refs, log_dir).await
}

// ---------------------------------------------------------------------------------------------
// Test A: kill -9 during production under load.

/// A transfer the node accepted (returned its hash).
struct Sent {
    hash: String,
    value: u128,
}

/// Sends transfers from `senders` to `to` as fast as the node takes them, until aborted.
async fn load(
    http: Http,
    senders: Vec<(B256, Address)>,
    to: Address,
    sent: Arc<Mutex<Vec<Sent>>>,
) -> anyhow::Result<()> {
    let mut nonces = Vec::new();
    for (_, a) in &senders {
        nonces.push(http.pending_nonce(*a).await?);
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    loop {
        for (i, (secret, from)) in senders.iter().enumerate() {
            let value = rng.gen_range(1..1_000_000_000u128);
            let (raw, hash) = Transfer::new(nonces[i], to, value).sign(*secret);
            let resp = http.req("eth_sendRawTransaction", json!([raw])).await?;
            if resp.get("error").is_some() {
                // Per-sender pool limit or a nonce the chain already passed: resync, slow down.
                nonces[i] = http.pending_nonce(*from).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            ensure!(resp["result"] == hash.as_str(), "hash mismatch: {resp}");
            nonces[i] += 1;
            sent.lock().expect("sent list").push(Sent { hash, value });
        }
        // ~100 transfers a second per sender: tens per 0.2 s block, and the cumulative
        // re-check of every receipt after each restart stays within the time budget.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What clients were shown before a kill.
#[derive(Default)]
struct Seen {
    /// Head number → hash, as `eth_getBlockByNumber("latest")` reported it.
    heads: BTreeMap<u64, String>,
    /// Tx hash → (block number, block hash, value), as `eth_getTransactionReceipt` reported it.
    receipts: HashMap<String, (u64, String, u128)>,
}

impl Seen {
    fn head(&mut self, n: u64, hash: &str) -> anyhow::Result<()> {
        if let Some(old) = self.heads.insert(n, hash.to_string()) {
            ensure!(old == hash, "block {n} changed from {old} to {hash}");
        }
        Ok(())
    }

    fn receipt(&mut self, tx: &str, r: &Value, value: u128) -> anyhow::Result<()> {
        let n = hex_u64(&r["blockNumber"]);
        let h = r["blockHash"].as_str().context("blockHash")?.to_string();
        ensure!(r["status"] == "0x1", "transfer {tx} failed: {r}");
        if let Some((on, oh, _)) = self.receipts.insert(tx.to_string(), (n, h.clone(), value)) {
            ensure!(
                (on, &oh) == (n, &h),
                "receipt of {tx} moved from {on}/{oh} to {n}/{h}"
            );
        }
        Ok(())
    }
}

/// Polls heads and receipts of `sent` transfers until `until`.
async fn observe(
    http: &Http,
    sent: &Mutex<Vec<Sent>>,
    seen: &mut Seen,
    until: Instant,
) -> anyhow::Result<()> {
    while Instant::now() < until {
        let head = http
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        seen.head(
            hex_u64(&head["number"]),
            head["hash"].as_str().context("head hash")?,
        )?;
        let waiting: Vec<(String, u128)> = sent
            .lock()
            .expect("sent list")
            .iter()
            .filter(|s| !seen.receipts.contains_key(&s.hash))
            .map(|s| (s.hash.clone(), s.value))
            .collect();
        if !waiting.is_empty() {
            let calls: Vec<(&str, Value)> = waiting
                .iter()
                .map(|(h, _)| ("eth_getTransactionReceipt", json!([h])))
                .collect();
            let rs = http.batch(&calls).await?;
            for ((h, v), r) in waiting.iter().zip(rs) {
                if !r.is_null() {
                    seen.receipt(h, &r, *v)?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}

/// After a restart: every reported head and receipt is there unchanged; returns the exact sum
/// of the transfers now on chain (receipted before the kill or not).
async fn check_survivors(
    http: &Http,
    sent: &Mutex<Vec<Sent>>,
    seen: &mut Seen,
) -> anyhow::Result<u128> {
    let numbers: Vec<u64> = seen.heads.keys().copied().collect();
    let calls: Vec<(&str, Value)> = numbers
        .iter()
        .map(|n| ("eth_getBlockByNumber", json!([format!("{n:#x}"), false])))
        .collect();
    for (n, b) in numbers.iter().zip(http.batch(&calls).await?) {
        let want = &seen.heads[n];
        ensure!(
            b["hash"].as_str() == Some(want.as_str()),
            "block {n} was reported as {want} before the kill; after restart: {}",
            b["hash"]
        );
    }
    let all: Vec<(String, u128)> = sent
        .lock()
        .expect("sent list")
        .iter()
        .map(|s| (s.hash.clone(), s.value))
        .collect();
    let calls: Vec<(&str, Value)> = all
        .iter()
        .map(|(h, _)| ("eth_getTransactionReceipt", json!([h])))
        .collect();
    let mut on_chain = 0u128;
    for ((h, v), r) in all.iter().zip(http.batch(&calls).await?) {
        if let Some((n, bh, _)) = seen.receipts.get(h) {
            ensure!(
                !r.is_null(),
                "receipt of {h} (block {n} {bh}) was reported before the kill and is gone"
            );
            ensure!(
                r["blockHash"].as_str() == Some(bh.as_str()) && hex_u64(&r["blockNumber"]) == *n,
                "receipt of {h} moved from {n}/{bh} to {}/{}",
                r["blockNumber"],
                r["blockHash"]
            );
        }
        if !r.is_null() {
            on_chain += v;
            seen.receipt(h, &r, *v)?;
        }
    }
    Ok(on_chain)
}

/// Tunnel deposits made during the kill rounds, and the mints clients were shown.
#[derive(Default)]
struct Deposits {
    /// Bitcoin txids of the deposits broadcast.
    sent: Vec<String>,
    /// Txid → (L2 block, L2 transaction, hemiBTC units) as `hemi_getDeposit` reported the mint.
    minted: HashMap<String, (u64, String, u128)>,
}

impl Deposits {
    /// Locks 0.01 BTC for `recipient` with `hemi deposit` (from `key`, through the devnet's
    /// embedded Bitcoin node) and mines a Bitcoin block on top.
    async fn deposit(
        &mut self,
        http: &Http,
        btc_rpc: &str,
        key: &str,
        recipient: Address,
    ) -> anyhow::Result<()> {
        indexed(http, btc_rpc).await?;
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
            .args(["deposit", "--amount", "0.01", "--key", key])
            .args(["--recipient", &recipient.to_string()])
            .args(["--rpc-url", &http.url])
            .args(["--bitcoin-rpc", &format!("http://{btc_rpc}")])
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "hemi deposit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let txid = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.len() == 64)
            .context("hemi deposit printed no txid")?
            .to_string();
        self.sent.push(txid);
        http.call("hemi_mineBitcoin", json!([1])).await?;
        Ok(())
    }

    /// Signs a deposit of 0.01 BTC for `recipient` with `hemi deposit` without sending it (no
    /// `--bitcoin-rpc`: it prints the signed transaction), and tracks it from now on. Returns
    /// the raw transaction and its txid.
    async fn sign(
        &mut self,
        http: &Http,
        btc_rpc: &str,
        key: &str,
        recipient: Address,
    ) -> anyhow::Result<(String, String)> {
        indexed(http, btc_rpc).await?;
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
            .args(["deposit", "--amount", "0.01", "--key", key])
            .args(["--recipient", &recipient.to_string()])
            .args(["--rpc-url", &http.url])
            .env_remove("HEMI_BITCOIN_RPC")
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "hemi deposit (signed, not sent): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.len() > 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
            .context("hemi deposit printed no signed transaction")?
            .to_string();
        let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(&raw)?;
        let txid = tx.compute_txid().to_string();
        self.sent.push(txid.clone());
        Ok((raw, txid))
    }

    /// Every mint seen before is where it was, and the hemiBTC `minter` holds at the head is
    /// exactly the sum of the deposits minted up to it (none twice).
    async fn check_held(
        &mut self,
        http: &Http,
        token: &str,
        minter: Address,
    ) -> anyhow::Result<()> {
        let at = http.block_number().await?;
        self.observe(http).await?;
        let minted: u128 = self
            .minted
            .values()
            .filter(|m| m.0 <= at)
            .map(|m| m.2)
            .sum();
        let held = hemi_btc(http, token, minter, at).await?;
        ensure!(
            held == minted,
            "{minter} holds {held} hemiBTC units at block {at}, the mints up to it sum to {minted}"
        );
        Ok(())
    }

    /// Asks for every deposit's state: a mint seen before must be where it was.
    async fn observe(&mut self, http: &Http) -> anyhow::Result<()> {
        for txid in self.sent.clone() {
            let d = http.call("hemi_getDeposit", json!([txid])).await?;
            let was = self.minted.get(&txid).cloned();
            if d["status"] != "minted" {
                ensure!(
                    was.is_none(),
                    "deposit {txid} was minted in {was:?}, now {d}"
                );
                continue;
            }
            let at = (
                d["mintedIn"]["block"].as_u64().context("mintedIn.block")?,
                d["mintedIn"]["transactionHash"]
                    .as_str()
                    .context("mintedIn.transactionHash")?
                    .to_string(),
                d["net"].as_u64().context("net")? as u128,
            );
            if let Some(was) = was {
                ensure!(
                    was == at,
                    "deposit {txid}'s mint moved from {was:?} to {at:?}"
                );
            }
            self.minted.insert(txid, at);
        }
        Ok(())
    }
}

/// Waits until the node's Bitcoin index has the embedded node's tip (the coins `hemi deposit`
/// reads).
async fn indexed(http: &Http, btc_rpc: &str) -> anyhow::Result<()> {
    let btc = Http::new(btc_rpc.parse()?);
    let core_tip = btc.call("getblockcount", json!([])).await?;
    wait_for(10, "the node to index the embedded node's tip", || async {
        let t = http.call("hemi_btcTip", json!([])).await.ok()?;
        (t["height"] == core_tip).then_some(())
    })
    .await
}

/// `recipient`'s hemiBTC balance at block `at` (the tunnel's ERC-20 `balanceOf`).
async fn hemi_btc(http: &Http, token: &str, recipient: Address, at: u64) -> anyhow::Result<u128> {
    let data = format!("0x70a08231{:0>64}", hex::encode(recipient));
    let v = http
        .call(
            "eth_call",
            json!([{"to": token, "data": data}, format!("{at:#x}")]),
        )
        .await?;
    Ok(u128::from_str_radix(
        v.as_str().context("balanceOf")?.trim_start_matches("0x"),
        16,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_ten_times_under_load_loses_no_reported_block() -> anyhow::Result<()> {
    // Ten unless scripts/reliability.sh asks for another number.
    let rounds = common::kill_rounds();
    let started = Instant::now();
    let data = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let dir = data.path().to_string_lossy().to_string();
    let extra = [
        "--persist",
        "--dir",
        &dir,
        "--block-time",
        "0.2",
        "--deposit-confirmations",
        "1",
    ];
    // The embedded Bitcoin node keeps its addresses across restarts (deposits go through it).
    let btc_rpc = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let btc_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let args = devnet_args_on(&btc_rpc, &btc_p2p, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let senders: Vec<(B256, Address)> = (2..5).map(|i| (key(i), address_of(key(i)))).collect();
    let recipient = address_of(random_key());
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut seen = Seen::default();
    let mut hemi = Hemi::start(&args, logs.path()).await?;
    // A depositor's Bitcoin key, funded from the devnet's; the minted hemiBTC goes to another
    // fresh address.
    let depositor = hemi_btc_wallet::Key::from_secret_bytes([0x4d; 32])?;
    let depositor_hex = hex::encode(depositor.secret_bytes());
    let minter = address_of(random_key());
    let mut deposits = Deposits::default();
    {
        let http = Http::new(hemi.rpc_addr);
        let to = depositor.address(hemi_btc_wallet::KeyKind::P2wpkh, bitcoin::Network::Regtest);
        // The devnet's own coins mature as its Bitcoin index catches up with its start-up blocks.
        let to = to.to_string();
        wait_for(
            60,
            "the devnet's Bitcoin key to have mature coins",
            || async { http.call("hemi_sendBitcoin", json!([to, "5"])).await.ok() },
        )
        .await?;
        http.call("hemi_mineBitcoin", json!([1])).await?;
    }
    let token = Http::new(hemi.rpc_addr)
        .call("hemi_getTunnel", json!([]))
        .await?["tokenAddress"]
        .as_str()
        .context("tokenAddress")?
        .to_string();
    let mut max_restart = Duration::ZERO;
    for round in 1..=rounds {
        let http = Http::new(hemi.rpc_addr);
        let loader = tokio::spawn(load(http.clone(), senders.clone(), recipient, sent.clone()));
        let ms = rand::thread_rng().gen_range(300..=2000);
        let until = Instant::now() + Duration::from_millis(ms);
        // A deposit and a Bitcoin block each round, then what clients see until the kill. Every
        // third round the deposit is signed first and broadcast (and mined) racing the kill,
        // so the kill lands while the deposit is being sent, mined or minted.
        let racing = round % 3 == 0;
        let deposited = async {
            if racing {
                let (raw, txid) = deposits
                    .sign(&http, &btc_rpc, &depositor_hex, minter)
                    .await?;
                deposits.observe(&http).await?;
                Ok::<_, anyhow::Error>(Some((raw, txid)))
            } else {
                deposits
                    .deposit(&http, &btc_rpc, &depositor_hex, minter)
                    .await?;
                deposits.observe(&http).await?;
                Ok(None)
            }
        };
        let (observed, deposited) =
            tokio::join!(observe(&http, &sent, &mut seen, until), deposited);
        let (observed, racing) = match deposited {
            Ok(r) => (observed, r),
            Err(e) => (Err(e), None),
        };
        if let Some((raw, _)) = &racing {
            let (btc, http, raw) = (Http::new(btc_rpc.parse()?), http.clone(), raw.clone());
            tokio::spawn(async move {
                if btc.call("sendrawtransaction", json!([raw])).await.is_ok() {
                    let _ = http.call("hemi_mineBitcoin", json!([1])).await;
                }
            });
            let ms = rand::thread_rng().gen_range(0..=20);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        hemi.kill();
        loader.abort();
        match loader.await {
            // The kill races the sender: a request cut off by it is expected.
            Ok(Err(e)) if e.downcast_ref::<reqwest::Error>().is_some() => {}
            Ok(Err(e)) => bail!("load failed: {e:#}"),
            Ok(Ok(())) => unreachable!(),
            Err(_) => {} // aborted
        }
        if let Err(e) = observed {
            bail!(
                "round {round}: {e:#}\nlog tail:\n{}",
                tail(&hemi.log_text(), 30)
            );
        }
        let pre_kill_head = *seen.heads.keys().last().context("no head seen")?;
        let t = Instant::now();
        hemi = Hemi::start(&args, logs.path()).await?;
        max_restart = max_restart.max(t.elapsed());
        let http = Http::new(hemi.rpc_addr);
        let on_chain = match check_survivors(&http, &sent, &mut seen).await {
            Ok(v) => v,
            Err(e) => bail!(
                "round {round}: {e:#}\nlog tail:\n{}",
                tail(&hemi.log_text(), 30)
            ),
        };
        let balance = hex_u128(
            &http
                .call("eth_getBalance", json!([recipient, "latest"]))
                .await?,
        );
        let receipted: u128 = seen.receipts.values().map(|r| r.2).sum();
        ensure!(
            balance == on_chain && balance >= receipted,
            "round {round}: recipient holds {balance}, transfers on chain sum to {on_chain}, \
             receipted before kills {receipted}"
        );
        // Every mint shown before the kill is where it was; the hemiBTC held at a block is
        // exactly the sum of the deposits minted up to it (none twice).
        if let Err(e) = deposits.check_held(&http, &token, minter).await {
            bail!(
                "round {round}: {e:#}\nlog tail:\n{}",
                tail(&hemi.log_text(), 30)
            );
        }
        // The deposit broadcast at the kill: its depositor sends it again (the embedded node
        // may have lost it from its mempool, or have it, or have mined it) and it is minted
        // once.
        let mut racing_note = String::new();
        if let Some((raw, txid)) = &racing {
            let btc = Http::new(btc_rpc.parse()?);
            let resent = btc.call("sendrawtransaction", json!([raw])).await;
            racing_note = match &resent {
                Ok(_) => " while a deposit was sent (the node took it again)".into(),
                Err(e) => format!(" while a deposit was sent (sent again: {e:#})"),
            };
            http.call("hemi_mineBitcoin", json!([1])).await?;
            let minted = wait_for(60, "the deposit sent at the kill to be minted", || async {
                let d = http.call("hemi_getDeposit", json!([txid])).await.ok()?;
                (d["status"] == "minted").then_some(())
            })
            .await;
            if let Err(e) = minted {
                bail!(
                    "round {round}: {e:#} (sent again: {resent:?})\nlog tail:\n{}",
                    tail(&hemi.log_text(), 30)
                );
            }
            if let Err(e) = deposits.check_held(&http, &token, minter).await {
                bail!("round {round}, after the deposit sent at the kill: {e:#}");
            }
        }
        let after = wait_for(10, "the chain to grow past the pre-kill head", || async {
            let n = http.block_number().await.ok()?;
            (n > pre_kill_head).then_some(n)
        })
        .await?;
        eprintln!(
            "round {round}: killed after {ms} ms at head {pre_kill_head}{}; {} sent, {} receipts, \
             {} deposits ({} minted), restart and checks {:?}, head now {after}",
            racing_note,
            sent.lock().expect("sent list").len(),
            seen.receipts.len(),
            deposits.sent.len(),
            deposits.minted.len(),
            t.elapsed()
        );
    }
    let total_sent = sent.lock().expect("sent list").len();
    let head = Http::new(hemi.rpc_addr).block_number().await?;
    eprintln!(
        "SUMMARY kill -9: {rounds} rounds, {} reported heads (up to block {}) and {} receipts \
         checked after every restart, {total_sent} transfers accepted, {} deposits ({} mints \
         checked after every restart, none twice), final head {head}, slowest restart \
         {max_restart:?}, {:?} total",
        seen.heads.len(),
        seen.heads.keys().last().copied().unwrap_or_default(),
        seen.receipts.len(),
        deposits.sent.len(),
        deposits.minted.len(),
        started.elapsed()
    );
    ensure!(
        !deposits.minted.is_empty(),
        "no deposit was minted: the deposit half means nothing"
    );
    ensure!(
        seen.receipts.len() >= rounds,
        "too few receipts ({}) for the test to mean anything",
        seen.receipts.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test B: the bad-input catalogue.

/// Sends `raw` over HTTP and WS; both must refuse it with -32000 and the same message,
/// which must contain `want`. Returns the message.
async fn refused(http: &Http, ws: &mut Ws, what: &str, raw: &str, want: &str) -> String {
    let h = http
        .req("eth_sendRawTransaction", json!([raw]))
        .await
        .expect("http");
    let w = ws
        .req("eth_sendRawTransaction", json!([raw]))
        .await
        .expect("ws");
    let (hc, hm) = rpc_error(&h).unwrap_or_else(|e| panic!("{what} over HTTP: {e}"));
    let (wc, wm) = rpc_error(&w).unwrap_or_else(|e| panic!("{what} over WS: {e}"));
    eprintln!("{what:<28} {hc} {hm:?}");
    assert_eq!((hc, wc), (-32000, -32000), "{what}: {h} / {w}");
    assert_eq!(hm, wm, "{what}: HTTP and WS messages differ");
    assert!(hm.contains(want), "{what}: {hm:?} lacks {want:?}");
    hm
}

async fn wait_receipt(http: &Http, hash: &str) -> anyhow::Result<Value> {
    wait_for(15, "a receipt", || async {
        let r = http
            .call("eth_getTransactionReceipt", json!([hash]))
            .await
            .ok()?;
        (!r.is_null()).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_http_and_ws_is_refused_like_geth_and_the_node_stays_up(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let logs = tempfile::tempdir()?;
    let mut hemi = start_devnet(&["--block-time", "0.5"], logs.path()).await?;
    let http = Http::new(hemi.rpc_addr);
    let mut ws = Ws::connect(hemi.rpc_addr).await?;
    let first_block = http.block_number().await?;

    // Protocol-level errors, over both transports.
    let truncated = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber""#;
    let wrong_params = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
        "params": ["0xnot-an-address", "latest"]})
    .to_string();
    let unknown =
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_noSuchMethod", "params": []}).to_string();
    let cases: [(&str, &str, i64); 3] = [
        ("invalid JSON", truncated, -32700),
        ("wrong params", &wrong_params, -32602),
        ("unknown method", &unknown, -32601),
    ];
    for (what, body, code) in cases {
        let (status, h) = http.post(body.to_string()).await?;
        let w = ws.send_raw(body).await?.context("ws closed")?;
        let (hc, hm) = rpc_error(&h)?;
        let (wc, wm) = rpc_error(&w)?;
        eprintln!("{what:<28} HTTP {status} {hc} {hm:?} | WS {wc} {wm:?}");
        assert_eq!((hc, wc), (code, code), "{what}: {h} / {w}");
    }
    let (_, h) = http.post(unknown.clone()).await?;
    assert_eq!(
        rpc_error(&h)?.1,
        "the method eth_noSuchMethod does not exist/is not available"
    );

    // The batch limit: 1,000 calls are served, 1,001 refused.
    let batch = |n: usize| -> String {
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []}))
            .collect();
        Value::Array(calls).to_string()
    };
    let (status, ok) = http.post(batch(1000)).await?;
    assert_eq!(ok.as_array().map(Vec::len), Some(1000), "HTTP {status}");
    let (status, h) = http.post(batch(1001)).await?;
    let w = ws.send_raw(&batch(1001)).await?.context("ws closed")?;
    let (hc, hm) = rpc_error(&h)?;
    let (wc, wm) = rpc_error(&w)?;
    eprintln!(
        "{:<28} HTTP {status} {hc} {hm:?} {} | WS {wc} {wm:?}",
        "batch of 1001", h["error"]["data"]
    );

    // Bodies over 5 MiB.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{{"data":"0x{}"}},"latest"]}}"#,
        "00".repeat(5 * 1024 * 1024 / 2 + 1024)
    );
    // The server answers 413 from the Content-Length alone and closes the connection; a
    // client still writing the body may see that as a broken pipe instead of the answer.
    match http.post(big.clone()).await {
        Ok((status, h)) => {
            eprintln!("{:<28} HTTP {status} {h}", "5 MiB + 1 KiB body");
            assert_eq!(status, 413, "oversized body: {h}");
            assert!(h.get("error").is_some(), "oversized body: {status} {h}");
        }
        Err(e) => {
            eprintln!("{:<28} connection closed: {e:#}", "5 MiB + 1 KiB body");
            assert!(
                e.downcast_ref::<reqwest::Error>().is_some(),
                "oversized body: {e:#}"
            );
        }
    }
    http.block_number()
        .await
        .context("eth_blockNumber after an oversized body")?;
    match ws.send_raw(&big).await {
        Ok(Some(w)) => {
            eprintln!("{:<28} WS {w}", "5 MiB + 1 KiB message");
            assert!(
                w.get("error").is_some(),
                "oversized WS message answered {w}"
            );
        }
        Ok(None) => eprintln!("{:<28} WS connection closed", "5 MiB + 1 KiB message"),
        Err(e) => eprintln!("{:<28} WS {e:#}", "5 MiB + 1 KiB message"),
    }
    // Whatever the server did with that connection, a new one works.
    let mut ws = Ws::connect(hemi.rpc_addr).await?;
    assert_eq!(ws.req("eth_chainId", json!([])).await?["result"], "0x7a69");

    // Transactions.
    let (k0, k1) = (key(0), key(1));
    let (a0, a1) = (address_of(k0), address_of(k1));
    assert_eq!(
        a0,
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<Address>()?
    );
    let to = address_of(random_key());
    let mut msgs: Vec<(&str, String)> = Vec::new();

    let (raw, _) =
        Transfer::new(0, to, 1).with_signature(Signature::new(U256::ZERO, U256::ZERO, false));
    msgs.push((
        "r = s = 0",
        refused(&http, &mut ws, "r = s = 0", &raw, "invalid sender").await,
    ));
    let (raw, _) = Transfer::new(0, to, 1).with_signature(Signature::new(
        U256::MAX,
        U256::from(12345u64),
        true,
    ));
    msgs.push((
        "r >= n",
        refused(&http, &mut ws, "r >= n", &raw, "invalid sender").await,
    ));
    // EIP-2: the same signature with s' = n - s (and the other parity) recovers to the same
    // key in pre-Homestead rules; it must be refused.
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )?;
    let t = Transfer::new(http.pending_nonce(a0).await?, to, 1);
    let sig = sign_message(k0, t.unsigned().signature_hash())?;
    let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
    let (raw, _) = t.with_signature(high);
    msgs.push((
        "high s (EIP-2)",
        refused(&http, &mut ws, "high s (EIP-2)", &raw, "invalid sender").await,
    ));
    let garbage = "0x02deadbeef";
    let h = http.req("eth_sendRawTransaction", json!([garbage])).await?;
    let (gc, gm) = rpc_error(&h)?;
    eprintln!("{:<28} {gc} {gm:?}", "garbage bytes");
    assert!(gc == -32000 || gc == -32602, "garbage bytes: {h}");
    msgs.push(("garbage bytes 0x02deadbeef", gm));
    let h = http.req("eth_sendRawTransaction", json!(["0x"])).await?;
    let (ec, em) = rpc_error(&h)?;
    eprintln!("{:<28} {ec} {em:?}", "empty bytes");
    msgs.push(("empty bytes 0x", em));

    let mut wrong_chain = Transfer::new(0, to, 1);
    wrong_chain.chain_id = 1;
    let (raw, _) = wrong_chain.sign(k0);
    msgs.push((
        "chain id 1",
        refused(&http, &mut ws, "chain id 1", &raw, "chain id").await,
    ));

    // Nonce too low: a transfer that is mined, then its nonce again.
    let nonce0 = http.pending_nonce(a0).await?;
    let (raw_mined, hash) = Transfer::new(nonce0, to, 1).sign(k0);
    assert_eq!(
        http.call("eth_sendRawTransaction", json!([raw_mined]))
            .await?,
        hash.as_str()
    );
    wait_receipt(&http, &hash).await?;
    msgs.push((
        "same tx again after mining",
        refused(
            &http,
            &mut ws,
            "same tx again after mining",
            &raw_mined,
            "nonce too low",
        )
        .await,
    ));
    let (raw, _) = Transfer::new(nonce0, to, 2).sign(k0);
    msgs.push((
        "nonce too low",
        refused(&http, &mut ws, "nonce too low", &raw, "nonce too low").await,
    ));

    // A nonce gap is queued; an equal-priced replacement of it is refused, a 10% bump taken.
    let gap = http.pending_nonce(a1).await? + 5;
    let queued = Transfer::new(gap, to, 1);
    let (raw, hash) = queued.sign(k1);
    assert_eq!(
        http.call("eth_sendRawTransaction", json!([raw])).await?,
        hash.as_str()
    );
    let status = http.call("txpool_status", json!([])).await?;
    eprintln!("{:<28} txpool_status {status}", "nonce gap +5 accepted");
    assert!(hex_u64(&status["queued"]) >= 1, "{status}");
    msgs.push((
        "same tx again while queued",
        refused(
            &http,
            &mut ws,
            "same tx again while queued",
            &raw,
            "already known",
        )
        .await,
    ));
    let mut same_price = queued;
    same_price.value = 2;
    let (raw, _) = same_price.sign(k1);
    msgs.push((
        "replacement, same fees",
        refused(
            &http,
            &mut ws,
            "replacement, same fees",
            &raw,
            "replacement transaction underpriced",
        )
        .await,
    ));
    let mut bumped = same_price;
    bumped.max_fee = queued.max_fee * 11 / 10;
    bumped.tip = queued.tip * 11 / 10;
    let (raw, hash) = bumped.sign(k1);
    assert_eq!(
        http.call("eth_sendRawTransaction", json!([raw])).await?,
        hash.as_str(),
        "a 10% bump on both fees replaces"
    );

    let pauper = random_key();
    let (raw, _) = Transfer::new(0, to, 1).sign(pauper);
    msgs.push((
        "insufficient funds",
        refused(
            &http,
            &mut ws,
            "insufficient funds",
            &raw,
            "insufficient funds for gas * price + value",
        )
        .await,
    ));
    assert!(msgs.last().is_some_and(|m| m
        .1
        .starts_with("insufficient funds for gas * price + value")));

    let mut low_gas = Transfer::new(http.pending_nonce(a0).await?, to, 1);
    low_gas.gas = 20_000;
    let (raw, _) = low_gas.sign(k0);
    msgs.push((
        "gas 20000",
        refused(&http, &mut ws, "gas 20000", &raw, "intrinsic gas too low").await,
    ));

    // Precompiles with input they cannot parse.
    let p43 = "0x0000000000000000000000000000000000000043";
    let p40 = "0x0000000000000000000000000000000000000040";
    for (what, target, data) in [
        ("0x43 with 4 bytes", p43, "0xdeadbeef".to_string()),
        ("0x43 with no data", p43, "0x".to_string()),
        (
            "0x40 with a non-address",
            p40,
            format!("0x{}", hex::encode("this is not a bitcoin address at all")),
        ),
        ("0x40 with 4 bytes", p40, "0xdeadbeef".to_string()),
    ] {
        let call = json!([{"to": target, "data": data}, "latest"]);
        let h = http.req("eth_call", call.clone()).await?;
        let w = ws.req("eth_call", call).await?;
        eprintln!("{what:<28} {}", h.get("error").unwrap_or(&h["result"]));
        assert!(h.get("result").is_some() || h.get("error").is_some(), "{h}");
        assert_eq!(h.get("error"), w.get("error"), "{what}: HTTP and WS differ");
        assert_eq!(
            h.get("result"),
            w.get("result"),
            "{what}: HTTP and WS differ"
        );
        http.block_number()
            .await
            .context("eth_blockNumber after a precompile call")?;
    }
    let h = http
        .req(
            "eth_call",
            json!([{"to": "not-an-address", "data": "0x"}, "latest"]),
        )
        .await?;
    let (c, m) = rpc_error(&h)?;
    eprintln!("{:<28} {c} {m:?}", "eth_call to: not-an-address");
    assert_eq!(c, -32602, "{h}");

    // Still up, still producing.
    assert!(hemi.child.try_wait()?.is_none(), "the node exited");
    let now = http.block_number().await?;
    wait_for(10, "a new block", || async {
        (http.block_number().await.ok()? > now).then_some(())
    })
    .await?;
    assert!(now > first_block);
    assert_eq!(ws.req("eth_chainId", json!([])).await?["result"], "0x7a69");
    eprintln!("SUMMARY bad input: {} tx refusals checked over HTTP+WS; head {first_block} -> {now}+, {:?}", msgs.len(), started.elapsed());
    for (what, m) in &msgs {
        eprintln!("  {what:<28} {m}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test C: the pool journal carries waiting transactions across a clean restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_the_pools_waiting_transactions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().to_string();
    let extra = [
        "--persist",
        "--dir",
        data_arg.as_str(),
        "--block-time",
        "0.2",
    ];
    let mut hemi = start_devnet(&extra, dir.path()).await?;
    let secret = key(1);
    let from = address_of(secret);
    let to = address_of(random_key());
    let nonce = hex_u64(
        &hemi
            .call("eth_getTransactionCount", json!([from, "latest"]))
            .await?,
    );
    // Nonces +1 and +2 wait behind a gap (queued); they cannot be mined until +0 arrives.
    let mut waiting = Vec::new();
    for n in [nonce + 1, nonce + 2] {
        let (raw, hash) = Transfer::new(n, to, 1_000 + u128::from(n)).sign(secret);
        let got = hemi.call("eth_sendRawTransaction", json!([raw])).await?;
        assert_eq!(got.as_str(), Some(hash.as_str()));
        waiting.push(hash);
    }
    let status = hemi.call("txpool_status", json!([])).await?;
    assert_eq!(hex_u64(&status["queued"]), 2, "{status}");

    // SIGTERM: a clean shutdown writes the journal.
    let pid = hemi.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(term.success());
    let exited = wait_for(20, "hemi to exit on SIGTERM", || {
        let done = hemi.child.try_wait().ok().flatten().is_some();
        async move { done.then_some(()) }
    })
    .await;
    exited?;
    assert!(data.join("txpool.journal").exists(), "no journal written");

    let hemi = start_devnet(&extra, dir.path()).await?;
    let http = Http::new(hemi.rpc_addr);
    let status = hemi.call("txpool_status", json!([])).await?;
    assert_eq!(hex_u64(&status["queued"]), 2, "after restart: {status}");
    for h in &waiting {
        let tx = hemi.call("eth_getTransactionByHash", json!([h])).await?;
        assert_eq!(tx["hash"].as_str(), Some(h.as_str()), "{tx}");
        assert!(tx["blockHash"].is_null(), "{tx}");
    }
    // Closing the gap lets all three be mined.
    let (raw, first) = Transfer::new(nonce, to, 1_000 + u128::from(nonce)).sign(secret);
    hemi.call("eth_sendRawTransaction", json!([raw])).await?;
    for h in waiting.iter().chain([&first]) {
        wait_receipt(&http, h).await?;
    }
    let balance = hex_u128(&hemi.call("eth_getBalance", json!([to, "latest"])).await?);
    assert_eq!(balance, 3_000 + 3 * u128::from(nonce) + 3);
    Ok(())
}
