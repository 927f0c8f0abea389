//! A small typed JSON-RPC client for Bitcoin Core (and the embedded regtest node).
//!
//! This is how hemi-rs *talks to* a Bitcoin node out of band: tests and tools use it to mine,
//! submit transactions, reorg (`invalidateblock`) and read the chain back as an outside truth.
//! It is not on the trust path — the Bitcoin client validates everything it gets over P2P — so
//! it stays thin: one HTTP POST per call, Core's error code and message passed through unchanged,
//! no silent retries (only [`BitcoinRpc::wait_ready`] polls, and only while the node warms up).
//!
//! Main types:
//! - [`BitcoinRpc`]: the client (cheap to clone); [`BitcoinRpc::call`] for any method, typed
//!   helpers (`get_block`, `send_raw_transaction`, `generate_block`, ...) for the common ones.
//! - [`RpcError`]: transport, HTTP, Core's own `{code, message}`, decode and URL errors.
//! - [`ScanResult`] / [`ScanUtxo`]: `scantxoutset` results with amounts in satoshis.
//!
//! Requests carry `"jsonrpc": "2.0"` (Core ≥ 28 answers in 2.0 style, older Core and
//! 1.0-style servers answer with `result`/`error` both present; both are understood).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Block, BlockHash, ScriptBuf, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// Core's error code while it is still starting ("Loading block index...", "Verifying blocks...").
pub const RPC_IN_WARMUP: i64 = -28;

/// Satoshis per bitcoin.
const SATS_PER_BTC: f64 = 100_000_000.0;

/// The largest amount Bitcoin allows (21 million BTC), in satoshis.
const MAX_MONEY_SATS: u64 = 21_000_000 * 100_000_000;

/// How long to wait for a TCP connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from [`BitcoinRpc`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request did not get an HTTP answer (connection refused, reset, timed out).
    #[error("transport error talking to the node: {0}")]
    Transport(String),
    /// The node answered with a non-success HTTP status and no JSON-RPC error object
    /// (e.g. 401 for wrong credentials, 503 when Core's work queue is full).
    #[error("HTTP {status} from the node: {body}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Response body (often empty for 401).
        body: String,
    },
    /// The node answered with a JSON-RPC error; `code` and `message` are Core's own
    /// (e.g. -8 invalid parameter, -25 missing inputs, -26 rejected by policy, -28 warming up).
    #[error("node error {code}: {message}")]
    Rpc {
        /// Core's error code (`RPC_*` in Core's `rpc/protocol.h`).
        code: i64,
        /// Core's error message.
        message: String,
    },
    /// The answer could not be decoded into the expected type.
    #[error("cannot decode the node's answer: {0}")]
    Decode(String),
    /// The node URL (or the credentials given with it) is not usable.
    #[error("bad node URL: {0}")]
    BadUrl(String),
    /// The cookie file could not be read or does not hold `user:password`.
    #[error("bad cookie file {path}: {reason}")]
    Cookie {
        /// The cookie file's path.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl RpcError {
    /// Core's error code, if this is an error reported by the node itself.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One unspent output found by [`BitcoinRpc::scan_tx_out_set_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanUtxo {
    /// Transaction that created the output.
    pub txid: Txid,
    /// Output index in that transaction.
    pub vout: u32,
    /// The output's script.
    pub script_pubkey: ScriptBuf,
    /// The output's value in satoshis.
    pub amount_sats: u64,
    /// Height of the block that holds the transaction.
    pub height: u32,
}

/// The result of [`BitcoinRpc::scan_tx_out_set_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    /// Sum of all unspents' values, in satoshis.
    pub total_amount_sats: u64,
    /// The unspent outputs, in the node's order.
    pub unspents: Vec<ScanUtxo>,
}

/// Basic-auth credentials.
#[derive(Clone)]
struct Auth {
    user: String,
    pass: String,
}

/// An async JSON-RPC client for Bitcoin Core over HTTP with basic auth.
///
/// Cloning is cheap and clones share one connection pool. Connections belong to the tokio
/// runtime that opened them: build a fresh client per runtime (e.g. per `#[tokio::test]`).
#[derive(Clone)]
pub struct BitcoinRpc {
    url: reqwest::Url,
    auth: Option<Auth>,
    http: reqwest::Client,
    next_id: Arc<AtomicU64>,
}

impl fmt::Debug for BitcoinRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("BitcoinRpc")
            .field("url", &self.url.as_str())
            .field("user", &self.auth.as_ref().map(|a| a.user.as_str()))
            .finish_non_exhaustive()
    }
}

/// The JSON-RPC response envelope (1.0 has both fields, 2.0 exactly one of them).
#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct CoreError {
    code: i64,
    #[serde(default)]
    message: String,
}

impl BitcoinRpc {
    /// A client for `url`, e.g. `http://user:pass@127.0.0.1:18443`; credentials in the URL become
    /// basic auth (taken verbatim, no percent-decoding). A URL without a scheme gets `http://`.
    ///
    /// # Errors
    /// [`RpcError::BadUrl`] if the URL does not parse, is not `http`, or has no host;
    /// [`RpcError::Transport`] if the HTTP client cannot be built.
    pub fn new(url: &str) -> Result<Self, RpcError> {
        let (url, auth) = parse_url(url)?;
        Self::build(url, auth)
    }

    /// A client for `url` with explicit basic-auth credentials (they win over any in the URL).
    ///
    /// # Errors
    /// As [`BitcoinRpc::new`].
    pub fn with_auth(url: &str, user: &str, pass: &str) -> Result<Self, RpcError> {
        let (url, _) = parse_url(url)?;
        Self::build(
            url,
            Some(Auth {
                user: user.to_owned(),
                pass: pass.to_owned(),
            }),
        )
    }

    /// A client for `url` authenticating with Core's cookie file (`<datadir>/<chain>/.cookie`,
    /// one line `__cookie__:<password>`). The file is read once, here: Core writes a new cookie
    /// on every start, so build a new client after restarting the node.
    ///
    /// # Errors
    /// [`RpcError::Cookie`] if the file cannot be read or has no `:`; otherwise as
    /// [`BitcoinRpc::new`].
    pub fn with_cookie_file(url: &str, path: &Path) -> Result<Self, RpcError> {
        let cookie_err = |reason: String| RpcError::Cookie {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| cookie_err(e.to_string()))?;
        let (user, pass) = parse_cookie(&text)
            .ok_or_else(|| cookie_err("expected one line `user:password`".into()))?;
        Self::with_auth(url, user, pass)
    }

    fn build(url: reqwest::Url, auth: Option<Auth>) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        Ok(Self {
            url,
            auth,
            http,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The node URL, without credentials.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Calls `method` with positional `params` (a JSON array; `null` means none) and decodes
    /// the result into `T` (use `()` for methods that return `null`, `Value` for anything).
    ///
    /// # Errors
    /// [`RpcError::Rpc`] with Core's code and message if the node reports an error;
    /// [`RpcError::Transport`] / [`RpcError::Http`] if there is no usable HTTP answer;
    /// [`RpcError::Decode`] if the answer is not JSON-RPC or the result is not a `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let params = if params.is_null() { json!([]) } else { params };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });

        let mut req = self.http.post(self.url.clone()).json(&body);
        if let Some(auth) = &self.auth {
            req = req.basic_auth(&auth.user, Some(&auth.pass));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RpcError::Transport(format!("{method}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RpcError::Transport(format!("{method}: {e}")))?;
        decode_response(method, status.as_u16(), status.is_success(), &bytes)
    }

    /// Polls `getblockchaininfo` until the node answers, for at most `timeout`. Connection
    /// errors and Core's -28 "warming up" are retried; any other error is returned at once.
    ///
    /// # Errors
    /// The last error seen if the node is not ready within `timeout`, or the first error that
    /// is not a start-up error.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), RpcError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                remaining.max(Duration::from_millis(100)),
                self.call::<Value>("getblockchaininfo", json!([])),
            )
            .await;
            let err = match attempt {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => RpcError::Transport("getblockchaininfo: timed out".into()),
            };
            let retryable =
                matches!(err, RpcError::Transport(_)) || err.rpc_code() == Some(RPC_IN_WARMUP);
            if !retryable || Instant::now() >= deadline {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `getblockcount`: height of the active chain's tip.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn get_block_count(&self) -> Result<u64, RpcError> {
        self.call("getblockcount", json!([])).await
    }

    /// `getbestblockhash`: hash of the active chain's tip.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn get_best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.call("getbestblockhash", json!([])).await
    }

    /// `getblockhash`: hash of the active chain's block at `height`.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; Core answers -8 for a height above the tip.
    pub async fn get_block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        self.call("getblockhash", json!([height])).await
    }

    /// `getblock <hash> 0`: the full block, consensus-decoded.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; -5 for an unknown block; [`RpcError::Decode`] for bad bytes.
    pub async fn get_block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        let hex: String = self.call("getblock", json!([hash, 0])).await?;
        decode_hex("getblock", &hex)
    }

    /// `getblockheader <hash> false`: the 80-byte header, consensus-decoded.
    ///
    /// # Errors
    /// As [`BitcoinRpc::get_block`].
    pub async fn get_block_header(
        &self,
        hash: &BlockHash,
    ) -> Result<bitcoin::block::Header, RpcError> {
        let hex: String = self.call("getblockheader", json!([hash, false])).await?;
        decode_hex("getblockheader", &hex)
    }

    /// `getrawtransaction <txid> 0`: a transaction from the mempool or, with `-txindex`, any block.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; -5 if the node does not know the transaction.
    pub async fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, RpcError> {
        let hex: String = self.call("getrawtransaction", json!([txid, 0])).await?;
        decode_hex("getrawtransaction", &hex)
    }

    /// `sendrawtransaction`: submits `tx` to the mempool and relays it.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; e.g. -25 (missing/spent inputs), -26 (policy, such as
    /// "min relay fee not met"), -27 (already in the chain).
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.call("sendrawtransaction", json!([serialize_hex(tx)]))
            .await
    }

    /// `testmempoolaccept`: whether each of `txs` would be accepted, one object per
    /// transaction (`allowed`, `reject-reason`, `vsize`, `fees`, ...), without submitting.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn test_mempool_accept(&self, txs: &[Transaction]) -> Result<Vec<Value>, RpcError> {
        let hexes: Vec<String> = txs.iter().map(serialize_hex).collect();
        self.call("testmempoolaccept", json!([hexes])).await
    }

    /// `generatetoaddress`: mines `n` blocks paying their coinbase to `to` (regtest).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn generate_to_address(
        &self,
        n: u64,
        to: &Address,
    ) -> Result<Vec<BlockHash>, RpcError> {
        self.call("generatetoaddress", json!([n, to.to_string()]))
            .await
    }

    /// `generateblock`: mines one block paying its coinbase to `to` and holding exactly `txs`
    /// (in order, after the coinbase), whether or not they are in the mempool (regtest).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; -25 if a transaction does not fit the chain.
    pub async fn generate_block(
        &self,
        to: &Address,
        txs: &[Transaction],
    ) -> Result<BlockHash, RpcError> {
        #[derive(Deserialize)]
        struct Generated {
            hash: BlockHash,
        }
        let hexes: Vec<String> = txs.iter().map(serialize_hex).collect();
        let generated: Generated = self
            .call("generateblock", json!([to.to_string(), hexes]))
            .await?;
        Ok(generated.hash)
    }

    /// `invalidateblock`: marks `hash` (and its descendants) invalid, reorging away from it.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn invalidate_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        self.call("invalidateblock", json!([hash])).await
    }

    /// `reconsiderblock`: undoes [`BitcoinRpc::invalidate_block`] for `hash`.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn reconsider_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        self.call("reconsiderblock", json!([hash])).await
    }

    /// `getblockchaininfo`, as JSON (`chain`, `blocks`, `bestblockhash`, `initialblockdownload`, ...).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn get_blockchain_info(&self) -> Result<Value, RpcError> {
        self.call("getblockchaininfo", json!([])).await
    }

    /// `addnode <addr> <command>`, `command` being `"add"`, `"remove"` or `"onetry"`.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; -23 if the node was already added, -24 if it was not.
    pub async fn add_node(&self, addr: &str, command: &str) -> Result<(), RpcError> {
        self.call("addnode", json!([addr, command])).await
    }

    /// `getpeerinfo`, one JSON object per connected peer.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn get_peer_info(&self) -> Result<Vec<Value>, RpcError> {
        self.call("getpeerinfo", json!([])).await
    }

    /// `scantxoutset start ["addr(A)", ...]`: the UTXOs paying any of `addresses` at the tip.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`] (-8 if another scan is running); [`RpcError::Decode`] if an
    /// entry is malformed or an amount is not a valid bitcoin amount.
    pub async fn scan_tx_out_set_addresses(
        &self,
        addresses: &[Address],
    ) -> Result<ScanResult, RpcError> {
        let descriptors: Vec<String> = addresses.iter().map(|a| format!("addr({a})")).collect();
        let raw: Value = self
            .call("scantxoutset", json!(["start", descriptors]))
            .await?;
        parse_scan_result(&raw)
    }

    /// `getrawmempool`: txids in the mempool.
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn get_raw_mempool(&self) -> Result<Vec<Txid>, RpcError> {
        self.call("getrawmempool", json!([])).await
    }

    /// `estimatesmartfee <blocks>` in sat/vB, or `None` when the node has no estimate yet
    /// (always the case on a fresh regtest chain).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn estimate_smart_fee(&self, blocks: u16) -> Result<Option<f64>, RpcError> {
        let raw: Value = self.call("estimatesmartfee", json!([blocks])).await?;
        // Core answers BTC per 1000 vB; 1 BTC/kvB = 1e8 sat / 1e3 vB = 1e5 sat/vB.
        Ok(raw
            .get("feerate")
            .and_then(Value::as_f64)
            .map(|btc_per_kvb| btc_per_kvb * 100_000.0))
    }

    /// `getmempoolentry <txid>`, as JSON (`vsize`, `fees`, `depends`, ...).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`]; -5 if the transaction is not in the mempool.
    pub async fn get_mempool_entry(&self, txid: &Txid) -> Result<Value, RpcError> {
        self.call("getmempoolentry", json!([txid])).await
    }

    /// `stop`: asks the node to shut down (it answers before it has exited).
    ///
    /// # Errors
    /// As [`BitcoinRpc::call`].
    pub async fn stop(&self) -> Result<(), RpcError> {
        self.call::<Value>("stop", json!([])).await.map(drop)
    }
}

/// Parses a node URL, splitting off credentials.
fn parse_url(raw: &str) -> Result<(reqwest::Url, Option<Auth>), RpcError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url =
        reqwest::Url::parse(&with_scheme).map_err(|e| RpcError::BadUrl(format!("{raw}: {e}")))?;
    if url.scheme() != "http" {
        return Err(RpcError::BadUrl(format!(
            "{raw}: scheme {} is not supported (plain http only)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(RpcError::BadUrl(format!("{raw}: no host")));
    }
    let auth = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some(Auth {
            user: url.username().to_owned(),
            pass: url.password().unwrap_or_default().to_owned(),
        })
    };
    // Credentials travel in the Authorization header, never in the request line or in logs.
    url.set_username("")
        .and_then(|()| url.set_password(None))
        .map_err(|()| RpcError::BadUrl(format!("{raw}: cannot strip credentials")))?;
    Ok((url, auth))
}

/// Splits a cookie file's content `user:password` (trailing newline allowed).
fn parse_cookie(text: &str) -> Option<(&str, &str)> {
    let line = text.lines().next()?.trim();
    let (user, pass) = line.split_once(':')?;
    (!user.is_empty()).then_some((user, pass))
}

/// Turns one HTTP answer into the call's result or error.
fn decode_response<T: DeserializeOwned>(
    method: &str,
    status: u16,
    success: bool,
    body: &[u8],
) -> Result<T, RpcError> {
    let http_error = || RpcError::Http {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let resp: Response = match serde_json::from_slice(body) {
        Ok(resp) => resp,
        // Core answers 401/403/503 with an empty or HTML body.
        Err(_) if !success => return Err(http_error()),
        Err(e) => return Err(RpcError::Decode(format!("{method}: not JSON-RPC: {e}"))),
    };
    match resp.error {
        Some(err) if !err.is_null() => {
            let err: CoreError = serde_json::from_value(err.clone())
                .map_err(|_| RpcError::Decode(format!("{method}: malformed error object {err}")))?;
            return Err(RpcError::Rpc {
                code: err.code,
                message: err.message,
            });
        }
        _ => {}
    }
    if !success {
        return Err(http_error());
    }
    serde_json::from_value(resp.result.unwrap_or(Value::Null))
        .map_err(|e| RpcError::Decode(format!("{method}: unexpected result: {e}")))
}

/// Consensus-decodes a hex string returned by `method`.
fn decode_hex<T: bitcoin::consensus::Decodable>(method: &str, hex: &str) -> Result<T, RpcError> {
    deserialize_hex(hex).map_err(|e| RpcError::Decode(format!("{method}: {e}")))
}

/// Converts a bitcoin amount as Core prints it (a JSON number with up to 8 decimals) to satoshis.
///
/// `round(btc * 1e8)` is exact here: for any amount up to 21e6 BTC the f64 nearest the decimal
/// is within 2^-29 BTC of it (< 0.19 sat after scaling) and the product rounds by at most
/// 0.125 sat, so the error stays below half a satoshi.
///
/// # Errors
/// [`RpcError::Decode`] if `btc` is negative, not finite, or above 21 million BTC.
pub fn btc_to_sats(btc: f64) -> Result<u64, RpcError> {
    if !btc.is_finite() || btc < 0.0 {
        return Err(RpcError::Decode(format!("{btc} is not a bitcoin amount")));
    }
    let sats = (btc * SATS_PER_BTC).round();
    // MAX_MONEY_SATS (2.1e15) < 2^53, so it is exact as f64 and the cast below is lossless.
    #[allow(clippy::cast_precision_loss)]
    if sats > MAX_MONEY_SATS as f64 {
        return Err(RpcError::Decode(format!(
            "{btc} BTC is above 21 million BTC"
        )));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(sats as u64)
}

/// Reads a JSON amount field in BTC as satoshis.
fn amount_field(obj: &Value, field: &str) -> Result<u64, RpcError> {
    let btc = obj
        .get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| RpcError::Decode(format!("scantxoutset: no numeric `{field}`")))?;
    btc_to_sats(btc)
}

/// Decodes `scantxoutset start`'s answer.
fn parse_scan_result(raw: &Value) -> Result<ScanResult, RpcError> {
    #[derive(Deserialize)]
    struct RawUtxo {
        txid: Txid,
        vout: u32,
        #[serde(rename = "scriptPubKey")]
        script_pubkey: String,
        height: u32,
    }
    let decode = |what: &str| RpcError::Decode(format!("scantxoutset: {what}"));
    let entries = raw
        .get("unspents")
        .and_then(Value::as_array)
        .ok_or_else(|| decode("no `unspents` array"))?;
    let mut unspents = Vec::with_capacity(entries.len());
    for entry in entries {
        let utxo = RawUtxo::deserialize(entry).map_err(|e| decode(&e.to_string()))?;
        let script_pubkey = ScriptBuf::from_hex(&utxo.script_pubkey)
            .map_err(|e| decode(&format!("bad scriptPubKey: {e}")))?;
        unspents.push(ScanUtxo {
            txid: utxo.txid,
            vout: utxo.vout,
            script_pubkey,
            amount_sats: amount_field(entry, "amount")?,
            height: utxo.height,
        });
    }
    Ok(ScanResult {
        total_amount_sats: amount_field(raw, "total_amount")?,
        unspents,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn url_credentials_become_basic_auth_and_leave_the_url() {
        let (url, auth) = parse_url("http://alice:s3cret@127.0.0.1:18443").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:18443/");
        let auth = auth.unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.pass.as_str()),
            ("alice", "s3cret")
        );
    }

    #[test]
    fn url_without_credentials_has_no_auth() {
        let (url, auth) = parse_url("http://127.0.0.1:18443").unwrap();
        assert_eq!(url.port(), Some(18443));
        assert!(auth.is_none());
    }

    #[test]
    fn url_with_user_only_has_empty_password() {
        let (_, auth) = parse_url("http://bob@localhost:8332/").unwrap();
        let auth = auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.pass.as_str()), ("bob", ""));
    }

    #[test]
    fn url_without_scheme_defaults_to_http() {
        let (url, auth) = parse_url("u:p@127.0.0.1:1234").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:1234/");
        assert_eq!(auth.unwrap().user, "u");
    }

    #[test]
    fn url_keeps_wallet_path() {
        let (url, _) = parse_url("http://u:p@127.0.0.1:1234/wallet/w1").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:1234/wallet/w1");
    }

    #[test]
    fn bad_urls_are_rejected() {
        for bad in [
            "https://127.0.0.1:1",
            "ftp://host",
            "http://",
            "http://[::1",
        ] {
            assert!(
                matches!(parse_url(bad), Err(RpcError::BadUrl(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn explicit_credentials_win_over_url_credentials() {
        let rpc = BitcoinRpc::with_auth("http://a:b@127.0.0.1:1", "c", "d").unwrap();
        assert_eq!(rpc.url(), "http://127.0.0.1:1/");
        let auth = rpc.auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.pass.as_str()), ("c", "d"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let rpc = BitcoinRpc::new("http://user:hunter2@127.0.0.1:1").unwrap();
        let shown = format!("{rpc:?}");
        assert!(
            shown.contains("user") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn cookie_file_is_split_at_the_first_colon() {
        assert_eq!(
            parse_cookie("__cookie__:ab:cd\n"),
            Some(("__cookie__", "ab:cd"))
        );
        assert_eq!(parse_cookie("nocolon"), None);
        assert_eq!(parse_cookie(""), None);
        assert_eq!(parse_cookie(":pw"), None);
    }

    #[test]
    fn cookie_file_is_read_into_auth() {
        let dir = std::env::temp_dir().join(format!("hemi-rpc-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".cookie");
        std::fs::write(&path, "__cookie__:deadbeef").unwrap();
        let rpc = BitcoinRpc::with_cookie_file("http://127.0.0.1:1", &path).unwrap();
        let auth = rpc.auth.unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.pass.as_str()),
            ("__cookie__", "deadbeef")
        );
        let missing = BitcoinRpc::with_cookie_file("http://127.0.0.1:1", &dir.join("nope"));
        assert!(matches!(missing, Err(RpcError::Cookie { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn btc_to_sats_is_exact_at_the_edges() {
        assert_eq!(btc_to_sats(0.0).unwrap(), 0);
        assert_eq!(btc_to_sats(0.00000001).unwrap(), 1);
        assert_eq!(btc_to_sats(0.1).unwrap(), 10_000_000);
        assert_eq!(btc_to_sats(0.29).unwrap(), 29_000_000);
        assert_eq!(btc_to_sats(50.0).unwrap(), 5_000_000_000);
        assert_eq!(btc_to_sats(20999999.9769).unwrap(), 2_099_999_997_690_000);
        assert_eq!(btc_to_sats(21_000_000.0).unwrap(), MAX_MONEY_SATS);
    }

    #[test]
    fn btc_to_sats_rejects_non_amounts() {
        for bad in [-0.00000001, f64::NAN, f64::INFINITY, 21_000_000.00000001] {
            assert!(btc_to_sats(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn btc_to_sats_is_exact_for_core_formatted_json() {
        // Core prints amounts with exactly 8 decimals; serde_json parses them to f64.
        for (text, sats) in [
            ("0.00000001", 1u64),
            ("20999999.97690000", 2_099_999_997_690_000),
            ("0.00000000", 0),
            ("12345678.87654321", 1_234_567_887_654_321),
            ("20999999.99999999", 2_099_999_999_999_999),
            ("1e-8", 1),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(btc_to_sats(v.as_f64().unwrap()).unwrap(), sats, "{text}");
        }
    }

    #[test]
    fn btc_to_sats_round_trips_every_satoshi_in_sampled_ranges() {
        // Every amount near 0, near 1 BTC and near MAX_MONEY, printed the way Core prints it.
        let ranges = [
            0..20_000u64,
            100_000_000 - 10_000..100_000_000 + 10_000,
            MAX_MONEY_SATS - 20_000..MAX_MONEY_SATS + 1,
        ];
        for sats in ranges.into_iter().flatten() {
            let text = format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000);
            let btc: f64 = text.parse().unwrap();
            assert_eq!(btc_to_sats(btc).unwrap(), sats, "{text}");
        }
    }

    #[test]
    fn core_error_keeps_code_and_message() {
        // Core ≥ 28 answers a 2.0 request with HTTP 200 and an error object...
        let body = br#"{"jsonrpc":"2.0","error":{"code":-8,"message":"Block height out of range"},"id":1}"#;
        let err = decode_response::<Value>("getblockhash", 200, true, body).unwrap_err();
        assert!(
            matches!(&err, RpcError::Rpc { code: -8, message } if message == "Block height out of range"),
            "{err:?}"
        );
        // ...and 1.0-style with HTTP 500 and `result: null`.
        let body =
            br#"{"result":null,"error":{"code":-26,"message":"min relay fee not met"},"id":1}"#;
        let err = decode_response::<Value>("sendrawtransaction", 500, false, body).unwrap_err();
        assert_eq!(err.rpc_code(), Some(-26));
    }

    #[test]
    fn http_errors_without_json_keep_status_and_body() {
        let err = decode_response::<Value>("getblockcount", 401, false, b"").unwrap_err();
        assert!(matches!(err, RpcError::Http { status: 401, .. }), "{err:?}");
        let err =
            decode_response::<Value>("x", 503, false, b"Work queue depth exceeded").unwrap_err();
        assert!(
            matches!(&err, RpcError::Http { status: 503, body } if body.contains("Work queue")),
            "{err:?}"
        );
    }

    #[test]
    fn results_decode_in_both_dialects() {
        let v1 = br#"{"result":101,"error":null,"id":1}"#;
        let v2 = br#"{"jsonrpc":"2.0","result":101,"id":1}"#;
        assert_eq!(
            decode_response::<u64>("getblockcount", 200, true, v1).unwrap(),
            101
        );
        assert_eq!(
            decode_response::<u64>("getblockcount", 200, true, v2).unwrap(),
            101
        );
        let null = br#"{"jsonrpc":"2.0","result":null,"id":1}"#;
        decode_response::<()>("invalidateblock", 200, true, null).unwrap();
        let wrong = decode_response::<u64>("getblockcount", 200, true, br#"{"result":"x"}"#);
        assert!(matches!(wrong, Err(RpcError::Decode(_))));
        let garbage = decode_response::<u64>("getblockcount", 200, true, b"<html>");
        assert!(matches!(garbage, Err(RpcError::Decode(_))));
    }

    #[test]
    fn scan_result_decodes_amounts_as_sats() {
        // Verbatim shape of Core's answer, amounts printed with 8 decimals.
        let raw: Value = serde_json::from_str(
            r#"{
              "success": true, "txouts": 5, "height": 101,
              "bestblock": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
              "unspents": [{
                "txid": "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b",
                "vout": 0,
                "scriptPubKey": "0014751e76e8199196d454941c45d1b3a323f1433bd6",
                "desc": "addr(x)#y",
                "amount": 20999999.97690000,
                "coinbase": true,
                "height": 7,
                "blockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
                "confirmations": 95
              }],
              "total_amount": 20999999.97690000
            }"#,
        )
        .unwrap();
        let scan = parse_scan_result(&raw).unwrap();
        assert_eq!(scan.total_amount_sats, 2_099_999_997_690_000);
        assert_eq!(scan.unspents.len(), 1);
        let utxo = &scan.unspents[0];
        assert_eq!((utxo.vout, utxo.height), (0, 7));
        assert_eq!(utxo.amount_sats, 2_099_999_997_690_000);
        assert!(utxo.script_pubkey.is_p2wpkh());
    }

    #[test]
    fn scan_result_rejects_negative_amounts() {
        let raw = json!({ "unspents": [], "total_amount": -1.0 });
        assert!(matches!(parse_scan_result(&raw), Err(RpcError::Decode(_))));
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error() {
        // Bind then drop a listener so the port is (almost surely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rpc = BitcoinRpc::new(&format!("http://u:p@127.0.0.1:{port}")).unwrap();
        let err = rpc.get_block_count().await.unwrap_err();
        assert!(matches!(err, RpcError::Transport(_)), "{err:?}");
        let err = rpc
            .wait_ready(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Transport(_)), "{err:?}");
    }
}
