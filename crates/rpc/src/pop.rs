//! Keystones and Bitcoin finality over JSON-RPC and HTTP.
//!
//! - `hemi_getLatestKeystones(count ≤ 50)` (newest first) and `hemi_getKeystone(hash, count)`
//!   (the keystone and its descendants): keystones with their first Bitcoin publication.
//! - `hemi_getFinality(blockTagOrNumberOrHash)`: the finality of one L2 block.
//! - Hemi's own names, in Hemi's shapes (op-geth `eth/api_hemi.go`): `kss_getLatestKeystones`,
//!   `kss_getKeystone` (result `{"keystones": [...]}`, errors in-band as Hemi does),
//!   `kss_subscribe("newKeystones")`.
//! - `GET /v2/keystonefinality/{hash}`: Hemi's BFG finality endpoint, same JSON, 400 for a bad
//!   hash, 404 for an unknown keystone ([`keystone_finality_http`]).
//!
//! Keystone hashes are printed as Hemi prints them (btcd chainhash order: byte-reversed hex).

use std::str::FromStr;
use std::sync::Arc;

use alloy_primitives::B256;
use hemi_finality::{Finality, FinalityTracker, KeystoneInfo, Publication};
use hemi_keystone::KeystoneId;
use jsonrpsee::core::server::PendingSubscriptionSink;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};

/// Most keystones one call returns (op-geth's limit).
pub const MAX_KEYSTONES: usize = 50;

/// What the keystone methods read: the finality tracker and a way to name blocks.
pub trait PopBackend: Send + Sync + 'static {
    /// The tracker.
    fn tracker(&self) -> &FinalityTracker;
    /// The newest L2 block number.
    fn head(&self) -> u64;
    /// The number of the canonical block with `hash`.
    fn number_of(&self, hash: &B256) -> Option<u64>;
    /// `hemi_getForkChoice`: the competing L2 tips this node knows and their PoP scores.
    fn fork_choice(&self) -> Value;
}

fn h256(b: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(b))
}

fn publication_json(p: &Publication) -> Value {
    json!({
        "txid": p.txid.to_string(),
        "blockHash": p.block_hash.to_string(),
        "height": p.height,
        "keystoneL2BlockNumber": p.keystone_number,
    })
}

/// A keystone in the `hemi_` shape.
pub fn keystone_json(k: &KeystoneInfo) -> Value {
    let ks = &k.keystone;
    json!({
        "hash": k.id.to_hex(),
        "version": ks.version,
        "l1BlockNumber": ks.l1_block_number,
        "l2BlockNumber": k.number,
        "parentEPHash": h256(&ks.parent_ep_hash),
        "prevKeystoneEPHash": h256(&ks.prev_keystone_ep_hash),
        "stateRoot": h256(&ks.state_root),
        "epHash": h256(&ks.ep_hash),
        "abbreviated": hex::encode(ks.abbreviate().to_bytes()),
        "publication": k.publication.as_ref().map(publication_json),
    })
}

/// A keystone in Hemi's `hemi.L2Keystone` JSON (snake case, hex without `0x`, the first
/// keystone's empty previous-keystone hash as `""`).
pub fn hemi_keystone_json(k: &KeystoneInfo) -> Value {
    let ks = &k.keystone;
    let prev = if ks.prev_keystone_ep_hash == [0; 32] {
        String::new()
    } else {
        hex::encode(ks.prev_keystone_ep_hash)
    };
    json!({
        "version": ks.version,
        "l1_block_number": ks.l1_block_number,
        "l2_block_number": ks.l2_block_number,
        "parent_ep_hash": hex::encode(ks.parent_ep_hash),
        "prev_ep_keystone_hash": prev,
        "state_root": hex::encode(ks.state_root),
        "ep_hash": hex::encode(ks.ep_hash),
    })
}

/// A block's finality in the `hemi_` shape.
pub fn finality_json(f: &Finality, depth: u32, safe: u64, finalized: u64) -> Value {
    json!({
        "blockNumber": f.number,
        "blockHash": format!("{:#x}", f.block_hash),
        "keystone": f.keystone.as_ref().map(keystone_json),
        "effectivePublication": f.effective_publication.as_ref().map(publication_json),
        "bitcoinTip": {"height": f.bitcoin_tip.height, "hash": f.bitcoin_tip.hash.to_string()},
        "effectiveConfirmations": f.effective_confirmations,
        "superFinality": f.super_finality,
        "superfinalityDepth": depth,
        "safe": f.number <= safe,
        "finalized": f.number <= finalized,
    })
}

fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(crate::codes::INVALID_PARAMS, msg.into(), None::<()>)
}

fn params_array(params: &Params) -> Result<Vec<Value>, ErrorObjectOwned> {
    match params.as_str() {
        None => Ok(Vec::new()),
        Some(_) => params
            .parse::<Vec<Value>>()
            .map_err(|_| invalid("params must be an array")),
    }
}

fn count_param(v: Option<&Value>, default: usize) -> Result<usize, String> {
    let n = match v {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s
            .strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| s.parse().ok()),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "count must be a non-negative integer, got {}",
            v.unwrap_or(&Value::Null)
        )
    })?;
    if n as usize > MAX_KEYSTONES {
        return Err("count too large".into());
    }
    Ok(n as usize)
}

fn hash_param(v: Option<&Value>) -> Result<KeystoneId, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or("keystone hash must be a string")?;
    KeystoneId::from_hex(s).map_err(|e| e.to_string())
}

/// Hemi's in-band error object (`protocol.Error`).
fn hemi_error(message: &str) -> Value {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({"timestamp": ts, "message": message})
}

/// The block `v` names: a number (JSON or hex), a tag, or a 32-byte block hash.
fn resolve_block<B: PopBackend + ?Sized>(
    b: &B,
    v: Option<&Value>,
) -> Result<Option<u64>, ErrorObjectOwned> {
    let t = b.tracker();
    match v {
        None | Some(Value::Null) => Ok(Some(b.head())),
        Some(Value::Number(n)) => Ok(n.as_u64()),
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "pending" => Ok(Some(b.head())),
            "earliest" => Ok(Some(0)),
            "safe" => Ok(Some(t.safe())),
            "finalized" => Ok(Some(t.finalized())),
            s if s.len() == 66 => {
                let h =
                    B256::from_str(s).map_err(|_| invalid(format!("not a block hash: {s:?}")))?;
                Ok(b.number_of(&h))
            }
            s => s
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .map(Some)
                .ok_or_else(|| invalid(format!("not a block number, tag or hash: {s:?}"))),
        },
        Some(other) => Err(invalid(format!("not a block number, tag or hash: {other}"))),
    }
}

/// The keystone and finality methods.
///
/// # Errors
/// A method name clashes with one already registered.
pub fn pop_module<B: PopBackend>(
    backend: Arc<B>,
) -> Result<RpcModule<Arc<B>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(backend);
    m.register_method(
        "hemi_getLatestKeystones",
        |params, b, _| -> Result<Value, ErrorObjectOwned> {
            let p = params_array(&params)?;
            let count = count_param(p.first(), 1).map_err(invalid)?;
            Ok(Value::Array(
                b.tracker()
                    .latest_keystones(count)
                    .iter()
                    .map(keystone_json)
                    .collect(),
            ))
        },
    )?;
    m.register_method(
        "hemi_getKeystone",
        |params, b, _| -> Result<Value, ErrorObjectOwned> {
            let p = params_array(&params)?;
            let id = hash_param(p.first()).map_err(invalid)?;
            let count = count_param(p.get(1), 1).map_err(invalid)?;
            Ok(Value::Array(
                b.tracker()
                    .keystone_and_descendants(&id.0, count)
                    .iter()
                    .map(keystone_json)
                    .collect(),
            ))
        },
    )?;
    m.register_blocking_method(
        "hemi_getForkChoice",
        |_, b, _| -> Result<Value, ErrorObjectOwned> { Ok(b.fork_choice()) },
    )?;
    m.register_method("kss_getLatestKeystones", |params, b, _| -> Result<Value, ErrorObjectOwned> {
        let p = params_array(&params)?;
        Ok(match count_param(p.first(), 1) {
            Ok(count) => json!({"keystones": b.tracker().latest_keystones(count).iter().map(hemi_keystone_json).collect::<Vec<_>>()}),
            Err(e) => json!({"keystones": null, "error": hemi_error(&e)}),
        })
    })?;
    m.register_method("kss_getKeystone", |params, b, _| -> Result<Value, ErrorObjectOwned> {
        let p = params_array(&params)?;
        let r = hash_param(p.first()).and_then(|id| Ok((id, count_param(p.get(1), 1)?)));
        Ok(match r {
            Ok((id, count)) => {
                let ks = b.tracker().keystone_and_descendants(&id.0, count);
                if ks.is_empty() {
                    json!({"keystones": null, "error": hemi_error(&format!("keystone not found: {id}"))})
                } else {
                    json!({"keystones": ks.iter().map(hemi_keystone_json).collect::<Vec<_>>()})
                }
            }
            Err(e) => json!({"keystones": null, "error": hemi_error(&e)}),
        })
    })?;
    m.register_blocking_method(
        "hemi_getFinality",
        |params, b, _| -> Result<Value, ErrorObjectOwned> {
            let p = params_array(&params)?;
            let Some(number) = resolve_block(b.as_ref().as_ref(), p.first())? else {
                return Ok(Value::Null);
            };
            let t = b.tracker();
            match t.finality(number) {
                Ok(Some(f)) => Ok(finality_json(
                    &f,
                    t.params().superfinality_depth,
                    t.safe(),
                    t.finalized(),
                )),
                Ok(None) => Ok(Value::Null),
                Err(e) => Err(ErrorObjectOwned::owned(
                    crate::codes::INTERNAL,
                    e.to_string(),
                    None::<()>,
                )),
            }
        },
    )?;
    m.register_subscription(
        "kss_subscribe",
        "kss_subscription",
        "kss_unsubscribe",
        |params, pending, b, _| kss_subscribe(params, pending, Arc::clone(&*b)),
    )?;
    Ok(m)
}

async fn kss_subscribe<B: PopBackend>(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    b: Arc<B>,
) {
    let kind = params_array(&params)
        .ok()
        .and_then(|p| p.first().and_then(Value::as_str).map(str::to_string));
    if kind.as_deref() != Some("newKeystones") {
        pending
            .reject(ErrorObjectOwned::owned(
                -32601,
                format!(
                    "no {:?} subscription in kss namespace",
                    kind.unwrap_or_default()
                ),
                None::<()>,
            ))
            .await;
        return;
    }
    // Hemi's popm only needs a nudge; it then polls kss_getLatestKeystones.
    crate::eth::subs::relay(pending, b.tracker().subscribe(), |k| async move {
        Some(Value::String(format!(
            "New Keystone Available: {} at L2 block {}",
            k.id, k.number
        )))
    })
    .await;
}

/// Answers `GET /v2/keystonefinality/{hash}` as Hemi's BFG does: `(status, JSON body)`.
/// 200 with `l2_keystone`, `block_hash` (the Bitcoin block of the earliest publication of the
/// keystone or a descendant, hex in internal byte order as Hemi prints it), `block_height`,
/// `effective_confirmations`, `super_finality` (left out while nothing is published); 400 for a
/// malformed hash; 404 for a keystone this node does not have.
pub fn keystone_finality_http(tracker: &FinalityTracker, hash: &str) -> (u16, Value) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let err =
        |status: u16, msg: String| (status, json!({"timestamp": ts, "trace": "", "error": msg}));
    let Ok(id) = KeystoneId::from_hex(hash) else {
        return err(
            400,
            format!("invalid keystone hash {hash:?}: expected 64 hex digits"),
        );
    };
    let Some(k) = tracker
        .keystone_and_descendants(&id.0, 1)
        .into_iter()
        .next()
    else {
        return err(404, format!("unknown keystone: {id}"));
    };
    match tracker.finality(k.number) {
        Ok(Some(f)) => {
            let mut body = json!({
                "l2_keystone": hemi_keystone_json(&k),
                "block_hash": "",
                "block_height": 0,
                "effective_confirmations": 0,
            });
            if let (Some(p), Some(c)) = (f.effective_publication, f.effective_confirmations) {
                use bitcoin::hashes::Hash;
                body["block_hash"] = json!(hex::encode(p.block_hash.to_byte_array()));
                body["block_height"] = json!(p.height);
                body["effective_confirmations"] = json!(c);
                body["super_finality"] = json!(f.super_finality);
            }
            (200, body)
        }
        Ok(None) => err(404, format!("unknown keystone: {id}")),
        Err(e) => err(500, format!("internal error: {e}")),
    }
}
