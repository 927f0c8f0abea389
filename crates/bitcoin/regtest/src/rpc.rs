//! A bitcoind-compatible JSON-RPC subset over HTTP (default 127.0.0.1:18443): the same method
//! names, parameter forms, result shapes and error codes as Bitcoin Core, in Core's dialect
//! (JSON-RPC 1.0 replies with `result`, `error`, `id`; HTTP 500 on error, 2.0 when asked).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, BlockHash, Network, OutPoint, Transaction, Txid};
use hemi_btc_view::{AsOf, BitcoinView};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::str::FromStr;
use tokio::net::TcpListener;

use crate::node::RegtestNode;

/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Core's RPC error codes used here.
mod code {
    pub(super) const MISC_ERROR: i64 = -1;
    pub(super) const TYPE_ERROR: i64 = -3;
    pub(super) const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub(super) const INVALID_PARAMETER: i64 = -8;
    pub(super) const DATABASE_ERROR: i64 = -20;
    pub(super) const VERIFY_ERROR: i64 = -25;
    pub(super) const DESERIALIZATION_ERROR: i64 = -22;
    pub(super) const METHOD_NOT_FOUND: i64 = -32601;
    pub(super) const INVALID_REQUEST: i64 = -32600;
    pub(super) const PARSE_ERROR: i64 = -32700;
}

/// An RPC error in Core's form.
#[derive(Debug, Clone)]
pub(crate) struct RpcError {
    /// Core's error code.
    pub code: i64,
    /// Core's message.
    pub message: String,
}

fn err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
    }
}

type RpcResult = Result<Value, RpcError>;

/// Basic-auth credentials the server requires (none = open, loopback only by default).
#[derive(Debug, Clone, Default)]
pub struct RpcAuth {
    /// `user:password`, if required.
    pub user_pass: Option<String>,
}

/// Serves the RPC on `addr` until the task is dropped; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_rpc(
    node: Arc<RegtestNode>,
    addr: SocketAddr,
    auth: RpcAuth,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let auth = Arc::new(auth);
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let node = node.clone();
            let auth = auth.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    let auth = auth.clone();
                    async move { Ok::<_, Infallible>(handle_http(node, &auth, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    tracing::info!(%local, "bitcoind-compatible RPC listening");
    Ok((local, handle))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn authorized(auth: &RpcAuth, req: &Request<Incoming>) -> bool {
    use base64::Engine;
    let Some(expected) = &auth.user_pass else {
        return true;
    };
    let Some(h) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = h.strip_prefix("Basic ") else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map(|d| d == expected.as_bytes())
        .unwrap_or(false)
}

async fn handle_http(
    node: Arc<RegtestNode>,
    auth: &RpcAuth,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if !authorized(auth, &req) {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
        return r;
    }
    if req.method() != hyper::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"result": null, "error": {"code": code::INVALID_REQUEST, "message": "JSONRPC server handles only POST requests"}, "id": null}),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"result": null, "error": {"code": code::INVALID_REQUEST, "message": "Request body too large"}, "id": null}),
            )
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"result": null, "error": {"code": code::PARSE_ERROR, "message": "Parse error"}, "id": null}),
            )
        }
    };
    let node2 = node.clone();
    let result = tokio::task::spawn_blocking(move || match parsed {
        Value::Array(reqs) => {
            let out: Vec<Value> = reqs.into_iter().map(|r| one_request(&node2, r).1).collect();
            (StatusCode::OK, Value::Array(out))
        }
        single => one_request(&node2, single),
    })
    .await;
    match result {
        Ok((status, v)) => reply(status, v),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"result": null, "error": {"code": code::MISC_ERROR, "message": "internal error"}, "id": null}),
        ),
    }
}

fn one_request(node: &RegtestNode, req: Value) -> (StatusCode, Value) {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let v2 = req.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"result": null, "error": {"code": code::INVALID_REQUEST, "message": "Method must be a string"}, "id": id}),
        );
    };
    let params = match req.get("params") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(_)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"result": null, "error": {"code": code::INVALID_PARAMETER, "message": "named parameters are not supported here; pass an array"}, "id": id}),
            )
        }
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"result": null, "error": {"code": code::INVALID_REQUEST, "message": "Params must be an array or object"}, "id": id}),
            )
        }
    };
    match dispatch(node, method, &params) {
        Ok(result) if v2 => (
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "result": result, "id": id}),
        ),
        Ok(result) => (
            StatusCode::OK,
            json!({"result": result, "error": null, "id": id}),
        ),
        Err(e) => {
            let status = if e.code == code::METHOD_NOT_FOUND {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let error = json!({"code": e.code, "message": e.message});
            if v2 {
                (
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "error": error, "id": id}),
                )
            } else {
                (status, json!({"result": null, "error": error, "id": id}))
            }
        }
    }
}

fn param(p: &[Value], i: usize) -> Option<&Value> {
    p.get(i).filter(|v| !v.is_null())
}

fn hash_param(p: &[Value], i: usize, name: &str) -> Result<BlockHash, RpcError> {
    let s = param(p, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE_ERROR, format!("{name} must be a string")))?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(
            code::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    s.parse().map_err(|_| {
        err(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

fn txid_param(p: &[Value], i: usize) -> Result<Txid, RpcError> {
    let s = param(p, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE_ERROR, "txid must be a string"))?;
    if s.len() != 64 {
        return Err(err(
            code::INVALID_PARAMETER,
            format!("txid must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    s.parse().map_err(|_| {
        err(
            code::INVALID_PARAMETER,
            format!("txid must be hexadecimal string (not '{s}')"),
        )
    })
}

fn u64_param(p: &[Value], i: usize, name: &str) -> Result<Option<u64>, RpcError> {
    match param(p, i) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            err(
                code::TYPE_ERROR,
                format!("{name}: expected a non-negative integer"),
            )
        }),
    }
}

fn bool_or_int(p: &[Value], i: usize) -> Option<i64> {
    match param(p, i)? {
        Value::Bool(b) => Some(*b as i64),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn decode_tx(p: &[Value], i: usize) -> Result<Transaction, RpcError> {
    let s = param(p, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE_ERROR, "hexstring must be a string"))?;
    deserialize_hex::<Transaction>(s).map_err(|_| {
        err(
            code::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })
}

/// BTC/kvB parameter to sat/kvB.
fn feerate_param(p: &[Value], i: usize) -> Result<Option<u64>, RpcError> {
    match param(p, i) {
        None => Ok(Some(10_000_000)), // Core's default maxfeerate: 0.10 BTC/kvB
        Some(v) => {
            let btc = v
                .as_f64()
                .ok_or_else(|| err(code::TYPE_ERROR, "maxfeerate: expected a number"))?;
            Amount::from_btc(btc)
                .map(|a| Some(a.to_sat()))
                .map_err(|_| err(code::TYPE_ERROR, "Invalid amount"))
        }
    }
}

fn difficulty(bits: bitcoin::CompactTarget) -> f64 {
    bitcoin::Target::from_compact(bits).difficulty_float()
}

fn header_json(node: &RegtestNode, hash: &BlockHash) -> RpcResult {
    let store = node.store();
    let tree = store.headers();
    let n = tree
        .get(hash)
        .ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    let tip = store.indexed_tip();
    let on_chain = store
        .header_at(n.height)
        .ok()
        .flatten()
        .map(|(b, _)| b.hash)
        == Some(*hash);
    let confirmations: i64 = if on_chain {
        (tip.height - n.height + 1) as i64
    } else {
        -1
    };
    let h = n.header;
    let ntx = store
        .block(hash)
        .ok()
        .flatten()
        .map(|b| b.txdata.len())
        .unwrap_or(0);
    let mut v = json!({
        "hash": hash.to_string(),
        "confirmations": confirmations,
        "height": n.height,
        "version": h.version.to_consensus(),
        "versionHex": format!("{:08x}", h.version.to_consensus()),
        "merkleroot": h.merkle_root.to_string(),
        "time": h.time,
        "mediantime": tree.median_time_past(hash).unwrap_or(h.time),
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "target": format!("{:064x}", bitcoin::Target::from_compact(h.bits)),
        "difficulty": difficulty(h.bits),
        "chainwork": hex::encode(n.chainwork.to_be_bytes()),
        "nTx": ntx,
    });
    if n.height > 0 {
        v["previousblockhash"] = json!(h.prev_blockhash.to_string());
    }
    if on_chain {
        if let Ok(Some((next, _))) = store.header_at(n.height + 1) {
            v["nextblockhash"] = json!(next.hash.to_string());
        }
    }
    Ok(v)
}

fn script_json(script: &bitcoin::Script, network: Network) -> Value {
    let kind = if script.is_p2pkh() {
        "pubkeyhash"
    } else if script.is_p2sh() {
        "scripthash"
    } else if script.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if script.is_p2wsh() {
        "witness_v0_scripthash"
    } else if script.is_p2tr() {
        "witness_v1_taproot"
    } else if script.is_op_return() {
        "nulldata"
    } else if script.is_multisig() {
        "multisig"
    } else if script.is_p2pk() {
        "pubkey"
    } else {
        "nonstandard"
    };
    let mut v =
        json!({"asm": script.to_asm_string(), "hex": hex::encode(script.as_bytes()), "type": kind});
    if let Ok(a) = Address::from_script(script, network) {
        v["address"] = json!(a.to_string());
    }
    v
}

/// Transaction JSON in Core's `decoderawtransaction` / verbose `getrawtransaction` shape.
pub fn tx_json(tx: &Transaction, network: Network) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|i| {
            let mut v = if tx.is_coinbase() {
                json!({"coinbase": hex::encode(i.script_sig.as_bytes())})
            } else {
                json!({"txid": i.previous_output.txid.to_string(), "vout": i.previous_output.vout,
                       "scriptSig": {"asm": i.script_sig.to_asm_string(), "hex": hex::encode(i.script_sig.as_bytes())}})
            };
            if !i.witness.is_empty() {
                v["txinwitness"] = json!(i.witness.iter().map(hex::encode).collect::<Vec<_>>());
            }
            v["sequence"] = json!(i.sequence.0);
            v
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| json!({"value": o.value.to_btc(), "n": n, "scriptPubKey": script_json(&o.script_pubkey, network)}))
        .collect();
    json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
    })
}

fn dispatch(node: &RegtestNode, method: &str, p: &[Value]) -> RpcResult {
    let store = node.store();
    let network = store.network();
    let db = |e: hemi_btc_store::StoreError| err(code::DATABASE_ERROR, e.to_string());
    match method {
        "getblockcount" => Ok(json!(store.indexed_tip().height)),
        "getbestblockhash" => Ok(json!(store.indexed_tip().hash.to_string())),
        "getblockhash" => {
            let h = param(p, 0).and_then(Value::as_i64).ok_or_else(|| err(code::TYPE_ERROR, "height must be a number"))?;
            if h < 0 || h > store.indexed_tip().height as i64 {
                return Err(err(code::INVALID_PARAMETER, "Block height out of range"));
            }
            let (b, _) = store.header_at(h as u32).map_err(|e| err(code::DATABASE_ERROR, e.to_string()))?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "Block height out of range"))?;
            Ok(json!(b.hash.to_string()))
        }
        "getblockchaininfo" => {
            let tip = store.indexed_tip();
            let tree = store.headers();
            let n = tree.get(&tip.hash).ok_or_else(|| err(code::MISC_ERROR, "tip not in header tree"))?;
            Ok(json!({
                "chain": "regtest",
                "blocks": tip.height,
                "headers": tree.best_height(),
                "bestblockhash": tip.hash.to_string(),
                "bits": format!("{:08x}", n.header.bits.to_consensus()),
                "target": format!("{:064x}", bitcoin::Target::from_compact(n.header.bits)),
                "difficulty": difficulty(n.header.bits),
                "time": n.header.time,
                "mediantime": tree.median_time_past(&tip.hash).unwrap_or(n.header.time),
                "verificationprogress": 1.0,
                "initialblockdownload": false,
                "chainwork": hex::encode(n.chainwork.to_be_bytes()),
                "size_on_disk": 0,
                "pruned": false,
                "warnings": [],
            }))
        }
        "getblockheader" => {
            let hash = hash_param(p, 0, "blockhash")?;
            let verbose = bool_or_int(p, 1).unwrap_or(1) != 0;
            if verbose {
                header_json(node, &hash)
            } else {
                let tree = store.headers();
                let n = tree.get(&hash).ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
                Ok(json!(serialize_hex(&n.header)))
            }
        }
        "getblock" => {
            let hash = hash_param(p, 0, "blockhash")?;
            let verbosity = bool_or_int(p, 1).unwrap_or(1);
            if !store.headers().contains(&hash) {
                return Err(err(code::INVALID_ADDRESS_OR_KEY, "Block not found"));
            }
            let block = store.block(&hash).map_err(db)?.ok_or_else(|| err(code::MISC_ERROR, "Block not available (pruned data)"))?;
            if verbosity == 0 {
                return Ok(json!(serialize_hex(&block)));
            }
            let mut v = header_json(node, &hash)?;
            v["size"] = json!(block.total_size());
            v["strippedsize"] = json!(bitcoin::consensus::serialize(&block.header).len() + bitcoin::VarInt(block.txdata.len() as u64).size() + block.txdata.iter().map(|t| t.base_size()).sum::<usize>());
            v["weight"] = json!(block.weight().to_wu());
            if let Some(cb) = block.txdata.first() {
                let mut c = json!({"version": cb.version.0, "locktime": cb.lock_time.to_consensus_u32()});
                if let Some(i) = cb.input.first() {
                    c["sequence"] = json!(i.sequence.0);
                    c["coinbase"] = json!(hex::encode(i.script_sig.as_bytes()));
                    if let Some(w) = i.witness.nth(0) {
                        c["witness"] = json!(hex::encode(w));
                    }
                }
                v["coinbase_tx"] = c;
            }
            v["tx"] = if verbosity >= 2 {
                Value::Array(block.txdata.iter().map(|t| {
                    let mut j = tx_json(t, network);
                    j["hex"] = json!(serialize_hex(t));
                    j
                }).collect())
            } else {
                json!(block.txdata.iter().map(|t| t.compute_txid().to_string()).collect::<Vec<_>>())
            };
            Ok(v)
        }
        "getrawtransaction" => {
            let txid = txid_param(p, 0)?;
            let verbose = bool_or_int(p, 1).unwrap_or(0) != 0;
            let from_pool = node.with_mempool(|m| m.get(&txid).map(|e| e.tx.clone()));
            let (tx, loc) = match from_pool {
                Some(tx) => (tx, None),
                None => match store.transaction(&txid, AsOf::Tip).map_err(|e| err(code::DATABASE_ERROR, e.to_string()))? {
                    Some(t) => (t.tx, Some(t.location)),
                    None => return Err(err(code::INVALID_ADDRESS_OR_KEY, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")),
                },
            };
            if !verbose {
                return Ok(json!(serialize_hex(&tx)));
            }
            let mut v = tx_json(&tx, network);
            v["hex"] = json!(serialize_hex(&tx));
            if let Some(loc) = loc {
                let tip = store.indexed_tip();
                let time = store.headers().get(&loc.block.hash).map(|n| n.header.time).unwrap_or(0);
                v["blockhash"] = json!(loc.block.hash.to_string());
                v["confirmations"] = json!(tip.height - loc.block.height + 1);
                v["time"] = json!(time);
                v["blocktime"] = json!(time);
            }
            Ok(v)
        }
        "decoderawtransaction" => Ok(tx_json(&decode_tx(p, 0)?, network)),
        // Core's inclusion proofs: a CMerkleBlock of the block holding the txids.
        "gettxoutproof" => {
            let ids = p.first().and_then(Value::as_array).ok_or_else(|| err(code::INVALID_PARAMETER, "txids must be an array"))?;
            let mut txids = Vec::with_capacity(ids.len());
            for i in 0..ids.len() {
                txids.push(txid_param(ids, i)?);
            }
            let first = txids.first().ok_or_else(|| err(code::INVALID_PARAMETER, "Parameter 'txids' cannot be empty"))?;
            let hash = match p.get(1).filter(|v| !v.is_null()) {
                Some(_) => hash_param(p, 1, "blockhash")?,
                None => store
                    .transaction(first, AsOf::Tip)
                    .map_err(|e| err(code::DATABASE_ERROR, e.to_string()))?
                    .map(|t| t.location.block.hash)
                    .ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Transaction not yet in block"))?,
            };
            let block = store.block(&hash).map_err(db)?.ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            let inside: std::collections::HashSet<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
            if txids.iter().any(|t| !inside.contains(t)) {
                return Err(err(code::INVALID_ADDRESS_OR_KEY, "Not all transactions found in specified or retrieved block"));
            }
            let mb = bitcoin::MerkleBlock::from_block_with_predicate(&block, |t| txids.contains(t));
            Ok(json!(serialize_hex(&mb)))
        }
        "verifytxoutproof" => {
            let hex_proof = p.first().and_then(Value::as_str).ok_or_else(|| err(code::INVALID_PARAMETER, "proof must be a hex string"))?;
            let bytes = hex::decode(hex_proof).map_err(|_| err(code::DESERIALIZATION_ERROR, "proof must be hexadecimal string"))?;
            let mb: bitcoin::MerkleBlock = bitcoin::consensus::deserialize(&bytes).map_err(|_| err(code::DESERIALIZATION_ERROR, "TX decode failed"))?;
            let (mut matches, mut indexes) = (Vec::new(), Vec::new());
            if mb.extract_matches(&mut matches, &mut indexes).is_err() {
                return Ok(json!([]));
            }
            let hash = mb.header.block_hash();
            let on_best = match store.headers().get(&hash) {
                Some(n) => store.header_at(n.height).map_err(|e| err(code::DATABASE_ERROR, e.to_string()))?.is_some_and(|(b, _)| b.hash == hash),
                None => false,
            };
            if !on_best {
                return Err(err(code::INVALID_ADDRESS_OR_KEY, "Block not found in chain"));
            }
            Ok(json!(matches.iter().map(|t| t.to_string()).collect::<Vec<_>>()))
        }
        "sendrawtransaction" => {
            let tx = decode_tx(p, 0)?;
            let max = feerate_param(p, 1)?;
            let acc = node.submit_transaction(tx, max).map_err(|r| {
                // Core's sendrawtransaction messages: the validation state, or for a fee cap its text.
                let msg = if r.reason == "max-fee-exceeded" { r.details.clone().unwrap_or_default() } else { r.to_string() };
                err(r.code, msg)
            })?;
            Ok(json!(acc.txid.to_string()))
        }
        "testmempoolaccept" => {
            let arr = param(p, 0).and_then(Value::as_array).ok_or_else(|| err(code::TYPE_ERROR, "rawtxs must be an array"))?;
            let max = feerate_param(p, 1)?;
            let mut out = Vec::new();
            for raw in arr {
                let tx = decode_tx(std::slice::from_ref(raw), 0)?;
                let txid = tx.compute_txid().to_string();
                let wtxid = tx.compute_wtxid().to_string();
                out.push(match node.test_transaction(&tx, max) {
                    Ok(a) => json!({"txid": txid, "wtxid": wtxid, "allowed": true, "vsize": a.vsize,
                        "fees": {"base": Amount::from_sat(a.fee).to_btc(),
                                 "effective-feerate": (a.fee as f64 * 1000.0 / a.vsize as f64) / 1e8,
                                 "effective-includes": [wtxid]}}),
                    Err(r) => {
                        let mut v = json!({"txid": txid, "wtxid": wtxid, "allowed": false, "reject-reason": r.test_accept_reason()});
                        if let Some(d) = r.test_accept_details() {
                            v["reject-details"] = json!(d);
                        }
                        v
                    }
                });
            }
            Ok(Value::Array(out))
        }
        "getrawmempool" => {
            let verbose = bool_or_int(p, 0).unwrap_or(0) != 0;
            if verbose {
                let ids = node.with_mempool(|m| m.txids());
                let mut o = serde_json::Map::new();
                for t in ids {
                    if let Ok(v) = mempool_entry(node, &t) {
                        o.insert(t.to_string(), v);
                    }
                }
                Ok(Value::Object(o))
            } else {
                Ok(json!(node.with_mempool(|m| m.txids()).iter().map(ToString::to_string).collect::<Vec<_>>()))
            }
        }
        "getmempoolentry" => mempool_entry(node, &txid_param(p, 0)?),
        // Core's answer: each outpoint, with the mempool transaction spending it if any.
        "gettxspendingprevout" => {
            let list = p.first().and_then(Value::as_array).ok_or_else(|| err(code::INVALID_PARAMETER, "Invalid parameter, outputs are missing"))?;
            if list.is_empty() {
                return Err(err(code::INVALID_PARAMETER, "Invalid parameter, outputs are missing"));
            }
            let mut out = Vec::with_capacity(list.len());
            for o in list {
                let txid = o
                    .get("txid")
                    .and_then(Value::as_str)
                    .and_then(|t| Txid::from_str(t).ok())
                    .ok_or_else(|| err(code::INVALID_PARAMETER, "txid must be hexadecimal string (not '')"))?;
                let vout = match o.get("vout") {
                    None => return Err(err(code::INVALID_PARAMETER, "Invalid parameter, missing vout key")),
                    Some(v) => match v.as_i64() {
                        Some(n) if n < 0 => return Err(err(code::INVALID_PARAMETER, "Invalid parameter, vout cannot be negative")),
                        Some(n) => u32::try_from(n).map_err(|_| err(code::INVALID_PARAMETER, "Invalid parameter, vout out of range"))?,
                        None => return Err(err(code::TYPE_ERROR, "vout must be a number")),
                    },
                };
                let spender = node.with_mempool(|m| m.spender(&OutPoint::new(txid, vout)));
                let mut v = json!({"txid": txid.to_string(), "vout": vout});
                if let Some(s) = spender {
                    v["spendingtxid"] = json!(s.to_string());
                }
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        "getmempoolinfo" => {
            let (size, bytes) = node.with_mempool(|m| (m.len(), m.txids().iter().filter_map(|t| m.get(t)).map(|e| e.vsize).sum::<u64>()));
            Ok(json!({"loaded": true, "size": size, "bytes": bytes, "minrelaytxfee": 0.000001, "incrementalrelayfee": 0.000001, "fullrbf": true}))
        }
        "generatetoaddress" => {
            let n = u64_param(p, 0, "nblocks")?.ok_or_else(|| err(code::TYPE_ERROR, "nblocks must be a number"))?;
            let addr = address_param(p, 1, network)?;
            let hashes = node.mine(n as u32, &addr.script_pubkey()).map_err(|e| err(code::MISC_ERROR, e.to_string()))?;
            Ok(json!(hashes.iter().map(ToString::to_string).collect::<Vec<_>>()))
        }
        "generateblock" => {
            let addr = address_param(p, 0, network)?;
            let list = param(p, 1).and_then(Value::as_array).ok_or_else(|| err(code::TYPE_ERROR, "transactions must be an array"))?;
            let mut txs = Vec::new();
            for item in list {
                let s = item.as_str().ok_or_else(|| err(code::TYPE_ERROR, "transaction must be a hex string or txid"))?;
                if s.len() == 64 {
                    let txid: Txid = s.parse().map_err(|_| err(code::INVALID_PARAMETER, "bad txid"))?;
                    let tx = node.with_mempool(|m| m.get(&txid).map(|e| e.tx.clone()))
                        .ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, format!("Transaction {txid} not in mempool.")))?;
                    txs.push(tx);
                } else {
                    txs.push(deserialize_hex(s).map_err(|_| err(code::DESERIALIZATION_ERROR, format!("Transaction decode failed for {s}")))?);
                }
            }
            let hash = node.mine_block_with(&addr.script_pubkey(), txs).map_err(|e| err(code::VERIFY_ERROR, format!("TestBlockValidity failed: {e}")))?;
            Ok(json!({"hash": hash.to_string()}))
        }
        "invalidateblock" => {
            let hash = hash_param(p, 0, "blockhash")?;
            node.invalidate_block(&hash).map_err(|_| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            Ok(Value::Null)
        }
        "reconsiderblock" => {
            let hash = hash_param(p, 0, "blockhash")?;
            node.reconsider_block(&hash).map_err(|_| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            Ok(Value::Null)
        }
        "estimatesmartfee" => {
            let target = u64_param(p, 0, "conf_target")?.ok_or_else(|| err(code::TYPE_ERROR, "conf_target must be a number"))?;
            if !(1..=1008).contains(&target) {
                return Err(err(code::INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008"));
            }
            let rate = node.estimate_fee_kvb(target as u32);
            Ok(json!({"feerate": Amount::from_sat(rate).to_btc(), "blocks": target.max(2)}))
        }
        "getnetworkinfo" => Ok(json!({"version": 319900, "subversion": "/hemi-rs:0.1.0/", "protocolversion": 70016,
            "localservices": "0000000000000409", "networkactive": true, "connections": 0, "relayfee": 0.000001,
            "incrementalfee": 0.000001, "warnings": []})),
        "uptime" => Ok(json!(0)),
        "help" => Ok(json!("hemi-rs embedded regtest node: getblockchaininfo getblockcount getbestblockhash getblockhash getblockheader getblock getrawtransaction decoderawtransaction gettxoutproof verifytxoutproof sendrawtransaction testmempoolaccept getrawmempool getmempoolentry gettxspendingprevout getmempoolinfo generatetoaddress generateblock invalidateblock reconsiderblock estimatesmartfee getnetworkinfo")),
        _ => Err(err(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

fn address_param(p: &[Value], i: usize, network: Network) -> Result<Address, RpcError> {
    let s = param(p, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE_ERROR, "address must be a string"))?;
    s.parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .ok()
        .and_then(|a| a.require_network(network).ok())
        .ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

fn mempool_entry(node: &RegtestNode, txid: &Txid) -> RpcResult {
    node.with_mempool(|m| {
        let e = m.get(txid).ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
        let btc = |sat: u64| Amount::from_sat(sat).to_btc();
        let mut ancestors = m.ancestors_of(&e.parents);
        ancestors.insert(*txid);
        let descendants = m.with_descendants(txid);
        let sum = |ids: &mut dyn Iterator<Item = &Txid>| -> (u64, u64) {
            ids.filter_map(|t| m.get(t)).fold((0, 0), |(f, v), x| (f + x.fee, v + x.vsize))
        };
        let (anc_fee, anc_size) = sum(&mut ancestors.iter());
        let (desc_fee, desc_size) = sum(&mut descendants.iter());
        // Cluster mempool's chunk: with no cluster linearisation here, a transaction's chunk is
        // itself plus the ancestors it pays for (the CPFP case), which is Core's answer for
        // single transactions and parent-child pairs.
        Ok(json!({
            "vsize": e.vsize, "weight": e.weight, "time": e.time, "height": e.height,
            "descendantcount": descendants.len(), "descendantsize": desc_size,
            "ancestorcount": ancestors.len(), "ancestorsize": anc_size,
            "wtxid": e.wtxid.to_string(),
            "fees": {"base": btc(e.fee), "modified": btc(e.fee), "ancestor": btc(anc_fee), "descendant": btc(desc_fee), "chunk": btc(anc_fee)},
            "depends": e.parents.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "spentby": m.children(txid).iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "bip125-replaceable": true, "unbroadcast": false,
        }))
    })
}
