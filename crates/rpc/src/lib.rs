//! The node's JSON-RPC server (jsonrpsee; HTTP and WebSocket on one port, 127.0.0.1:8545 by
//! default): the `hemi_` namespace over Bitcoin now; the `eth_` namespace joins it with the L2.
//!
//! Place in the chain of trust: it serves every stage (Bitcoin → hVM → sequencer → chain → PoP →
//! finality) to users; this crate only reads, through [`BitcoinView`] and status callbacks, so it
//! depends on no part's internals.
//!
//! Methods: `hemi_btcTip`, `hemi_btcHeader`, `hemi_btcBalance`, `hemi_btcUtxos`,
//! `hemi_btcTransaction`, `hemi_btcSyncStatus`, `hemi_nodeStatus` ([`hemi_module`]); the
//! Ethereum namespaces `eth_`, `net_`, `web3_`, `txpool_` and `evm_mine` ([`eth::eth_module`],
//! over the node's [`eth::EthBackend`]). The binary merges both modules and calls [`start`].

pub mod eth;
pub mod http_routes;
pub mod pop;

pub use eth::{eth_module, eth_module_with_config, EthBackend, EthContext, EthRpcConfig};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Address, BlockHash, Network, Txid};
use hemi_btc_view::{AsOf, BitcoinView, BlockRef, ViewError};
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};

/// A status callback (sync status, node status) supplied by the binary.
pub type StatusFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// What the RPC server reads from.
#[derive(Clone)]
pub struct RpcContext {
    /// Bitcoin, as indexed by our client.
    pub bitcoin: Arc<dyn BitcoinView>,
    /// The Bitcoin network (for address parsing).
    pub network: Network,
    /// `hemi_btcSyncStatus`.
    pub sync_status: StatusFn,
    /// `hemi_nodeStatus`.
    pub node_status: StatusFn,
}

/// Server limits (geth's defaults where it has them).
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Listen address; loopback unless told otherwise.
    pub addr: SocketAddr,
    /// Largest request body, bytes (geth: 5 MiB).
    pub max_request_body: u32,
    /// Largest response body, bytes.
    pub max_response_body: u32,
    /// Most calls in one batch (geth: 1000).
    pub max_batch: u32,
    /// Most concurrent connections.
    pub max_connections: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8545)),
            max_request_body: 5 * 1024 * 1024,
            max_response_body: 64 * 1024 * 1024,
            max_batch: 1000,
            max_connections: 1000,
        }
    }
}

/// JSON-RPC error codes (EIP-1474 / geth).
pub mod codes {
    /// Invalid params.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal error.
    pub const INTERNAL: i32 = -32603;
    /// Resource not found.
    pub const NOT_FOUND: i32 = -32001;
}

fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::INVALID_PARAMS, msg.into(), None::<()>)
}

fn internal(e: ViewError) -> ErrorObjectOwned {
    match e {
        ViewError::NotOnBestChain(_) | ViewError::TooDeep { .. } => invalid(e.to_string()),
        other => ErrorObjectOwned::owned(codes::INTERNAL, other.to_string(), None::<()>),
    }
}

fn one_param(params: &Params, name: &str) -> Result<Value, ErrorObjectOwned> {
    let v: Vec<Value> = params
        .parse()
        .map_err(|_| invalid(format!("expected params [{name}]")))?;
    v.into_iter()
        .next()
        .ok_or_else(|| invalid(format!("missing parameter {name}")))
}

fn opt_param(params: &Params, idx: usize) -> Result<Option<Value>, ErrorObjectOwned> {
    let v: Vec<Value> = params
        .parse()
        .map_err(|_| invalid("params must be an array"))?;
    Ok(v.into_iter().nth(idx).filter(|v| !v.is_null()))
}

fn parse_address(v: &Value, network: Network) -> Result<Address, ErrorObjectOwned> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid("address must be a string"))?;
    Address::from_str(s)
        .map_err(|e| invalid(format!("invalid Bitcoin address {s:?}: {e}")))?
        .require_network(network)
        .map_err(|_| invalid(format!("address {s} is not for network {network}")))
}

fn parse_asof(v: Option<Value>) -> Result<AsOf, ErrorObjectOwned> {
    match v {
        None => Ok(AsOf::Tip),
        Some(Value::String(s)) if s == "latest" => Ok(AsOf::Tip),
        Some(Value::String(s)) => BlockHash::from_str(&s).map(AsOf::Block).map_err(|_| {
            invalid(format!(
                "asOf must be a block hash or \"latest\", got {s:?}"
            ))
        }),
        Some(_) => Err(invalid("asOf must be a block hash string")),
    }
}

fn tip_json(b: BlockRef) -> Value {
    json!({"height": b.height, "hash": b.hash.to_string()})
}

fn header_json(b: BlockRef, h: &bitcoin::block::Header, tip: u32) -> Value {
    json!({
        "height": b.height,
        "hash": b.hash.to_string(),
        "version": h.version.to_consensus(),
        "prevBlockHash": h.prev_blockhash.to_string(),
        "merkleRoot": h.merkle_root.to_string(),
        "time": h.time,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "nonce": h.nonce,
        "confirmations": tip.saturating_sub(b.height) + 1,
        "hex": serialize_hex(h),
    })
}

/// Builds the module with every `hemi_` method.
///
/// # Errors
/// Only if a method name were registered twice (a bug).
pub fn hemi_module(
    ctx: RpcContext,
) -> Result<RpcModule<RpcContext>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ctx);
    m.register_blocking_method(
        "hemi_btcTip",
        |_, ctx, _| -> Result<Value, ErrorObjectOwned> {
            Ok(tip_json(ctx.bitcoin.tip().map_err(internal)?))
        },
    )?;
    m.register_blocking_method(
        "hemi_btcHeader",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let v = one_param(&params, "heightOrHash")?;
            let tip = ctx.bitcoin.tip().map_err(internal)?.height;
            let found = match &v {
                Value::Number(n) => {
                    let h = n
                        .as_u64()
                        .filter(|h| *h <= u32::MAX as u64)
                        .ok_or_else(|| invalid("height must be a non-negative integer"))?;
                    ctx.bitcoin.header_at(h as u32).map_err(internal)?
                }
                Value::String(s) if s.len() == 64 => {
                    let hash = BlockHash::from_str(s)
                        .map_err(|_| invalid(format!("not a block hash: {s:?}")))?;
                    ctx.bitcoin.header_by_hash(&hash).map_err(internal)?
                }
                Value::String(s) => {
                    let h: u32 = s
                        .strip_prefix("0x")
                        .map(|x| u32::from_str_radix(x, 16))
                        .unwrap_or_else(|| s.parse())
                        .map_err(|_| invalid(format!("not a height or block hash: {s:?}")))?;
                    ctx.bitcoin.header_at(h).map_err(internal)?
                }
                _ => return Err(invalid("heightOrHash must be a number or a block hash")),
            };
            Ok(found
                .map(|(b, h)| header_json(b, &h, tip))
                .unwrap_or(Value::Null))
        },
    )?;
    m.register_blocking_method(
        "hemi_btcBalance",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let addr = parse_address(&one_param(&params, "address")?, ctx.network)?;
            let at = parse_asof(opt_param(&params, 1)?)?;
            Ok(json!(ctx
                .bitcoin
                .balance_by_script(&addr.script_pubkey(), at)
                .map_err(internal)?))
        },
    )?;
    m.register_blocking_method("hemi_btcUtxos", |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
        let addr = parse_address(&one_param(&params, "address")?, ctx.network)?;
        let at = parse_asof(opt_param(&params, 1)?)?;
        let utxos = ctx.bitcoin.utxos_by_script(&addr.script_pubkey(), at).map_err(internal)?;
        Ok(Value::Array(
            utxos
                .into_iter()
                .map(|u| {
                    json!({"txid": u.outpoint.txid.to_string(), "vout": u.outpoint.vout, "value": u.value,
                           "height": u.height, "coinbase": u.coinbase,
                           "scriptPubKey": hex::encode(u.script_pubkey.as_bytes())})
                })
                .collect(),
        ))
    })?;
    m.register_blocking_method(
        "hemi_btcTransaction",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let v = one_param(&params, "txid")?;
            let s = v.as_str().ok_or_else(|| invalid("txid must be a string"))?;
            let txid = Txid::from_str(s).map_err(|_| invalid(format!("not a txid: {s:?}")))?;
            let tip = ctx.bitcoin.tip().map_err(internal)?;
            Ok(
                match ctx
                    .bitcoin
                    .transaction(&txid, AsOf::Tip)
                    .map_err(internal)?
                {
                    None => Value::Null,
                    Some(t) => json!({
                        "txid": txid.to_string(),
                        "hex": serialize_hex(&t.tx),
                        "blockHash": t.location.block.hash.to_string(),
                        "height": t.location.block.height,
                        "index": t.location.index,
                        "confirmations": tip.height.saturating_sub(t.location.block.height) + 1,
                    }),
                },
            )
        },
    )?;
    m.register_method(
        "hemi_btcSyncStatus",
        |_, ctx, _| -> Result<Value, ErrorObjectOwned> { Ok((ctx.sync_status)()) },
    )?;
    m.register_method(
        "hemi_nodeStatus",
        |_, ctx, _| -> Result<Value, ErrorObjectOwned> { Ok((ctx.node_status)()) },
    )?;
    // `web3_clientVersion` is served by the eth module (`eth::eth_module`), which takes the
    // binary's version string; registering it here too would make the two modules' merge fail.
    Ok(m)
}

/// Starts the server with `module`.
///
/// # Errors
/// The address cannot be bound.
pub async fn start<C: Send + Sync + 'static>(
    config: &RpcConfig,
    module: RpcModule<C>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    start_with_routes(config, module, Vec::new(), None).await
}

/// The observer of a server nobody observes.
struct Unobserved;

impl eth::RpcObserver for Unobserved {
    fn call(&self, _: &str, _: std::time::Duration, _: bool) {}
    fn batch(&self, _: &[String], _: std::time::Duration) {}
}

/// Starts the server with `module` and plain-HTTP `GET` routes beside JSON-RPC on the same port
/// (e.g. Hemi's `/v2/keystonefinality/{hash}`): a `GET` whose path starts with a route's prefix
/// is answered by its handler, given the rest of the path. `observer`, if any, is told of
/// every call answered ([`eth::Metered`]).
///
/// # Errors
/// The address cannot be bound.
pub async fn start_with_routes<C: Send + Sync + 'static>(
    config: &RpcConfig,
    module: RpcModule<C>,
    routes: Vec<(String, http_routes::GetHandler)>,
    observer: Option<Arc<dyn eth::RpcObserver>>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_body)
        .max_response_body_size(config.max_response_body)
        .max_connections(config.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch))
        .set_id_provider(eth::HexIdProvider)
        .build();
    let methods = eth::method_set(&module);
    let observer = observer.unwrap_or_else(|| Arc::new(Unobserved));
    let rpc_middleware = RpcServiceBuilder::new()
        .layer_fn(move |service| eth::GethCompat::new(service, methods.clone()))
        .layer_fn(move |service| eth::Metered::new(service, observer.clone()))
        .layer_fn(eth::PreRecover::new);
    let server = Server::builder()
        .set_config(server_config)
        .set_http_middleware(
            tower::ServiceBuilder::new().layer(http_routes::GetRoutesLayer::new(routes)),
        )
        .set_rpc_middleware(rpc_middleware)
        .build(config.addr)
        .await?;
    let addr = server.local_addr()?;
    let handle = server.start(module);
    tracing::info!(%addr, "JSON-RPC listening (HTTP and WebSocket)");
    Ok((addr, handle))
}
