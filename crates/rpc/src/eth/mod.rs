//! The Ethereum JSON-RPC namespaces (`eth_`, `net_`, `web3_`, `txpool_`, and anvil's
//! `evm_mine`) as geth serves them, so that ethers, viem, web3.py and cast work unchanged.
//!
//! This layer parses parameters ([`params`]), resolves block tags and EIP-1898 block parameters,
//! keeps polled filters ([`filters`]) and WebSocket subscriptions ([`subs`]), and maps the
//! node's answers and refusals to geth's codes and messages ([`errors`]). The node itself is
//! behind [`EthBackend`] ([`backend`]): the chain and the sequencer implement it, tests fake it.
//!
//! Entry point: [`eth_module`] (or [`eth_module_with_config`]), merged by the binary with the
//! `hemi_` module and served by [`crate::start`].

pub mod backend;
pub mod compat;
pub mod errors;
pub mod filters;
pub mod metered;
pub mod params;
pub mod prerecover;
pub mod subs;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{BlockOverrides, FeeHistory, Filter, TransactionRequest};
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use serde::Serialize;
use serde_json::{json, Value};

pub use backend::{
    AccessListResult, BackendError, BackendResult, EthBackend, StateAt, StateChange, Tag,
};
pub use compat::{method_set, GethCompat};
pub use errors::{backend_error, decode_revert_reason, revert_error};
pub use filters::{log_matches, too_many_logs, FilterStore, LogLimits};
pub use metered::{Metered, RpcObserver};
pub use params::BlockParam;
pub use prerecover::{PreRecover, RecoveredSender};
pub use subs::HexIdProvider;

use errors::{internal_error, invalid_params, server_error};
use params::{quantity, quantity_u256, resolve_number, resolve_state, Args};

/// Limits and timeouts of the `eth_` namespace; defaults are geth's where it has them.
#[derive(Debug, Clone)]
pub struct EthRpcConfig {
    /// A filter not polled for this long is removed (geth: 5 minutes).
    pub filter_timeout: Duration,
    /// Most filters installed at once (a bound on memory; geth has none).
    pub max_filters: usize,
    /// Most blocks one `eth_getLogs` may span.
    pub max_block_range: u64,
    /// Most logs one `eth_getLogs` may return.
    pub max_logs: usize,
    /// Most blocks one `eth_feeHistory` reports (geth: 1024; more is clamped).
    pub max_fee_history: u64,
}

impl Default for EthRpcConfig {
    fn default() -> Self {
        EthRpcConfig {
            filter_timeout: Duration::from_secs(5 * 60),
            max_filters: 10_000,
            max_block_range: 10_000,
            max_logs: 10_000,
            max_fee_history: 1024,
        }
    }
}

/// The state behind the `eth_` module: the backend, the installed filters, the limits.
pub struct EthContext {
    /// The node.
    pub backend: Arc<dyn EthBackend>,
    /// Installed polled filters.
    pub filters: FilterStore,
    /// Limits and timeouts.
    pub config: EthRpcConfig,
    /// `web3_clientVersion`'s answer.
    pub client_version: String,
}

impl EthContext {
    fn log_limits(&self) -> LogLimits {
        LogLimits {
            max_block_range: self.config.max_block_range,
            max_logs: self.config.max_logs,
        }
    }
}

type RpcResult = Result<Value, ErrorObjectOwned>;

fn to_json(v: impl Serialize) -> RpcResult {
    serde_json::to_value(v).map_err(|e| internal_error(e.to_string()))
}

fn opt_json(v: Option<Value>) -> Value {
    v.unwrap_or(Value::Null)
}

/// Registers `name` as a method run on a blocking thread (every backend call may touch disk).
fn blocking<F>(
    m: &mut RpcModule<EthContext>,
    name: &'static str,
    f: F,
) -> Result<(), RegisterMethodError>
where
    F: Fn(&EthContext, &Params<'_>) -> RpcResult + Clone + Send + Sync + 'static,
{
    m.register_blocking_method(name, move |params, ctx, _| f(&ctx, &params))?;
    Ok(())
}

/// Registers `name` as a cheap method answered inline.
fn inline<F>(
    m: &mut RpcModule<EthContext>,
    name: &'static str,
    f: F,
) -> Result<(), RegisterMethodError>
where
    F: Fn(&EthContext, &Params<'_>) -> RpcResult + Send + Sync + 'static,
{
    m.register_method(name, move |params, ctx, _| f(ctx, &params))?;
    Ok(())
}

/// The `eth_`, `net_`, `web3_`, `txpool_` and `evm_mine` methods over `backend`, with default
/// limits. `client_version` is `web3_clientVersion`'s answer.
///
/// # Errors
/// Only if a method name were registered twice (a bug).
pub fn eth_module(
    backend: Arc<dyn EthBackend>,
    client_version: String,
) -> Result<RpcModule<EthContext>, RegisterMethodError> {
    eth_module_with_config(backend, client_version, EthRpcConfig::default())
}

/// [`eth_module`] with explicit limits.
///
/// # Errors
/// Only if a method name were registered twice (a bug).
pub fn eth_module_with_config(
    backend: Arc<dyn EthBackend>,
    client_version: String,
    config: EthRpcConfig,
) -> Result<RpcModule<EthContext>, RegisterMethodError> {
    let ctx = EthContext {
        backend,
        filters: FilterStore::new(config.filter_timeout, config.max_filters),
        config,
        client_version,
    };
    let mut m = RpcModule::new(ctx);
    register_chain(&mut m)?;
    register_state(&mut m)?;
    register_blocks(&mut m)?;
    register_execution(&mut m)?;
    register_logs_and_filters(&mut m)?;
    register_fees(&mut m)?;
    register_misc(&mut m)?;
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, ctx, _| subs::subscribe(params, pending, ctx),
    )?;
    Ok(m)
}

/// Chain identity and head: `eth_chainId`, `eth_blockNumber`, `net_*`, `web3_*`, `eth_syncing`.
fn register_chain(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    inline(m, "eth_chainId", |c, p| {
        Args::parse(p, 0)?;
        Ok(quantity(c.backend.chain_id()))
    })?;
    inline(m, "net_version", |c, p| {
        Args::parse(p, 0)?;
        Ok(json!(c.backend.chain_id().to_string()))
    })?;
    inline(m, "net_listening", |_, p| {
        Args::parse(p, 0)?;
        Ok(json!(true))
    })?;
    inline(m, "net_peerCount", |_, p| {
        Args::parse(p, 0)?;
        Ok(quantity(0))
    })?;
    inline(m, "web3_clientVersion", |c, p| {
        Args::parse(p, 0)?;
        Ok(json!(c.client_version))
    })?;
    inline(m, "web3_sha3", |_, p| {
        let a = Args::parse(p, 1)?;
        let data: Bytes = a.req(0)?;
        Ok(json!(keccak256(&data)))
    })?;
    blocking(m, "eth_blockNumber", |c, p| {
        Args::parse(p, 0)?;
        Ok(quantity(c.backend.tag(Tag::Latest)))
    })?;
    blocking(m, "eth_syncing", |c, p| {
        Args::parse(p, 0)?;
        Ok(c.backend.syncing())
    })?;
    Ok(())
}

/// Account state: balance, code, storage, nonce, proof.
fn register_state(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_getBalance", |c, p| {
        let a = Args::parse(p, 2)?;
        let addr = a.address(0)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::LATEST)?)?;
        Ok(quantity_u256(
            c.backend.balance(addr, at).map_err(backend_error)?,
        ))
    })?;
    blocking(m, "eth_getCode", |c, p| {
        let a = Args::parse(p, 2)?;
        let addr = a.address(0)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::LATEST)?)?;
        to_json(c.backend.code(addr, at).map_err(backend_error)?)
    })?;
    blocking(m, "eth_getStorageAt", |c, p| {
        let a = Args::parse(p, 3)?;
        let addr = a.address(0)?;
        let slot = a.with(1, |v| {
            params::parse_storage_key(v).map_err(|e| format!("unable to decode storage key: {e}"))
        })?;
        let at = resolve_state(&*c.backend, a.block_or(2, BlockParam::LATEST)?)?;
        let value = c
            .backend
            .storage(addr, slot.into(), at)
            .map_err(backend_error)?;
        Ok(json!(value))
    })?;
    blocking(m, "eth_getTransactionCount", |c, p| {
        let a = Args::parse(p, 2)?;
        let addr = a.address(0)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::LATEST)?)?;
        Ok(quantity(
            c.backend
                .transaction_count(addr, at)
                .map_err(backend_error)?,
        ))
    })?;
    blocking(m, "eth_getProof", |c, p| {
        let a = Args::parse(p, 3)?;
        let addr = a.address(0)?;
        let slots = a.with(1, |v| {
            v.as_array()
                .ok_or_else(|| "storage keys must be an array".to_owned())?
                .iter()
                .map(params::parse_storage_key)
                .collect::<Result<Vec<B256>, _>>()
        })?;
        let number = match resolve_state(&*c.backend, a.block_or(2, BlockParam::LATEST)?)? {
            StateAt::Block(n) => n,
            StateAt::Pending => c.backend.tag(Tag::Pending),
        };
        to_json(
            c.backend
                .proof(addr, slots, number)
                .map_err(backend_error)?,
        )
    })?;
    Ok(())
}

/// Blocks, transactions and receipts. Unknown blocks and transactions are `null`.
fn register_blocks(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_getBlockByNumber", |c, p| {
        let a = Args::parse(p, 2)?;
        let block = a.with(0, BlockParam::number_or_tag)?;
        let full = a.opt::<bool>(1)?.unwrap_or(false);
        match resolve_number(&*c.backend, block)? {
            Some(n) => Ok(opt_json(c.backend.block(n, full).map_err(backend_error)?)),
            None => Ok(Value::Null),
        }
    })?;
    blocking(m, "eth_getBlockByHash", |c, p| {
        let a = Args::parse(p, 2)?;
        let hash: B256 = a.req(0)?;
        let full = a.opt::<bool>(1)?.unwrap_or(false);
        match c
            .backend
            .block_number_by_hash(hash)
            .map_err(backend_error)?
        {
            Some(n) => Ok(opt_json(c.backend.block(n, full).map_err(backend_error)?)),
            None => Ok(Value::Null),
        }
    })?;
    blocking(m, "eth_getBlockTransactionCountByNumber", |c, p| {
        let a = Args::parse(p, 1)?;
        let block = a.with(0, BlockParam::number_or_tag)?;
        block_tx_count(c, resolve_number(&*c.backend, block)?)
    })?;
    blocking(m, "eth_getBlockTransactionCountByHash", |c, p| {
        let a = Args::parse(p, 1)?;
        let hash: B256 = a.req(0)?;
        block_tx_count(
            c,
            c.backend
                .block_number_by_hash(hash)
                .map_err(backend_error)?,
        )
    })?;
    blocking(m, "eth_getUncleCountByBlockNumber", |c, p| {
        let a = Args::parse(p, 1)?;
        let block = a.with(0, BlockParam::number_or_tag)?;
        uncle_count(c, resolve_number(&*c.backend, block)?)
    })?;
    blocking(m, "eth_getUncleCountByBlockHash", |c, p| {
        let a = Args::parse(p, 1)?;
        let hash: B256 = a.req(0)?;
        uncle_count(
            c,
            c.backend
                .block_number_by_hash(hash)
                .map_err(backend_error)?,
        )
    })?;
    inline(m, "eth_getUncleByBlockNumberAndIndex", |_, p| {
        Args::parse(p, 2)?;
        Ok(Value::Null)
    })?;
    inline(m, "eth_getUncleByBlockHashAndIndex", |_, p| {
        Args::parse(p, 2)?;
        Ok(Value::Null)
    })?;
    blocking(m, "eth_getTransactionByHash", |c, p| {
        let a = Args::parse(p, 1)?;
        let hash: B256 = a.req(0)?;
        Ok(opt_json(
            c.backend.transaction_by_hash(hash).map_err(backend_error)?,
        ))
    })?;
    blocking(m, "eth_getTransactionReceipt", |c, p| {
        let a = Args::parse(p, 1)?;
        let hash: B256 = a.req(0)?;
        Ok(opt_json(c.backend.receipt(hash).map_err(backend_error)?))
    })?;
    blocking(m, "eth_getBlockReceipts", |c, p| {
        let a = Args::parse(p, 1)?;
        let block = a.with(0, BlockParam::number_or_hash)?;
        match resolve_number(&*c.backend, block)? {
            Some(n) => to_json(c.backend.block_receipts(n).map_err(backend_error)?),
            None => Ok(Value::Null),
        }
    })?;
    blocking(m, "eth_getTransactionByBlockNumberAndIndex", |c, p| {
        let a = Args::parse(p, 2)?;
        let block = a.with(0, BlockParam::number_or_tag)?;
        let index = a.with(1, index_param)?;
        tx_by_index(c, resolve_number(&*c.backend, block)?, index)
    })?;
    blocking(m, "eth_getTransactionByBlockHashAndIndex", |c, p| {
        let a = Args::parse(p, 2)?;
        let hash: B256 = a.req(0)?;
        let index = a.with(1, index_param)?;
        tx_by_index(
            c,
            c.backend
                .block_number_by_hash(hash)
                .map_err(backend_error)?,
            index,
        )
    })?;
    Ok(())
}

fn index_param(v: &Value) -> Result<u64, String> {
    match v {
        Value::String(s) => params::parse_hex_u64(s),
        _ => Err("index must be a hex string".to_owned()),
    }
}

fn block_tx_count(c: &EthContext, number: Option<u64>) -> RpcResult {
    let Some(n) = number else {
        return Ok(Value::Null);
    };
    Ok(c.backend
        .block_tx_count(n)
        .map_err(backend_error)?
        .map(quantity)
        .unwrap_or(Value::Null))
}

fn uncle_count(c: &EthContext, number: Option<u64>) -> RpcResult {
    let Some(n) = number else {
        return Ok(Value::Null);
    };
    // Blocks have no uncles; the count is 0 for every block that exists.
    Ok(match c.backend.block_tx_count(n).map_err(backend_error)? {
        Some(_) => quantity(0),
        None => Value::Null,
    })
}

fn tx_by_index(c: &EthContext, number: Option<u64>, index: u64) -> RpcResult {
    let Some(n) = number else {
        return Ok(Value::Null);
    };
    Ok(opt_json(
        c.backend
            .transaction_by_block_and_index(n, index)
            .map_err(backend_error)?,
    ))
}

/// Parses a call request, refusing geth's `data`/`input` conflict.
fn call_request(a: &Args) -> Result<TransactionRequest, ErrorObjectOwned> {
    let tx: TransactionRequest = a.req(0)?;
    if let (Some(i), Some(d)) = (&tx.input.input, &tx.input.data) {
        if i != d {
            return Err(server_error(
                "both \"data\" and \"input\" are set and not equal. Please use \"input\" to pass transaction call data",
            ));
        }
    }
    Ok(tx)
}

/// `eth_call`, `eth_estimateGas`, `eth_sendRawTransaction`.
fn register_execution(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_call", |c, p| {
        let a = Args::parse(p, 4)?;
        let tx = call_request(&a)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::LATEST)?)?;
        let state: Option<StateOverride> = a.opt(2)?;
        let block: Option<BlockOverrides> = a.opt(3)?;
        to_json(
            c.backend
                .call(tx, at, state, block)
                .map_err(backend_error)?,
        )
    })?;
    blocking(m, "eth_estimateGas", |c, p| {
        let a = Args::parse(p, 3)?;
        let tx = call_request(&a)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::PENDING)?)?;
        let state: Option<StateOverride> = a.opt(2)?;
        Ok(quantity(
            c.backend
                .estimate_gas(tx, at, state)
                .map_err(backend_error)?,
        ))
    })?;
    blocking(m, "eth_createAccessList", |c, p| {
        let a = Args::parse(p, 3)?;
        let tx = call_request(&a)?;
        let at = resolve_state(&*c.backend, a.block_or(1, BlockParam::PENDING)?)?;
        let state: Option<StateOverride> = a.opt(2)?;
        to_json(
            c.backend
                .create_access_list(tx, at, state)
                .map_err(backend_error)?,
        )
    })?;
    // Inline, not on the blocking pool: a batch of 100 submissions as 100 blocking tasks spent
    // more time in thread wake-ups than in signature recovery (docs/BENCHMARKS.md).
    blocking(m, "eth_sendTransaction", |c, p| {
        let a = Args::parse(p, 1)?;
        let tx = call_request(&a)?;
        to_json(c.backend.send_transaction(tx).map_err(backend_error)?)
    })?;
    // A batch's senders arrive recovered on every core ([`PreRecover`]).
    m.register_method("eth_sendRawTransaction", |p, c, ext| {
        let a = Args::parse(&p, 1)?;
        let raw: Bytes = a.req(0)?;
        if raw.is_empty() {
            return Err(invalid_params("invalid argument 0: empty transaction"));
        }
        let recovered = ext.get::<RecoveredSender>().copied();
        to_json(
            c.backend
                .send_raw_transaction_recovered(raw, recovered)
                .map_err(backend_error)?,
        )
    })?;
    Ok(())
}

/// `eth_getLogs` and the polled filters.
fn register_logs_and_filters(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_getLogs", |c, p| {
        let a = Args::parse(p, 1)?;
        let filter: Filter = a.req(0)?;
        to_json(filters::get_logs(&*c.backend, &filter, c.log_limits())?)
    })?;
    blocking(m, "eth_newFilter", |c, p| {
        let a = Args::parse(p, 1)?;
        let filter: Filter = a.req(0)?;
        Ok(json!(c.filters.new_log_filter(&*c.backend, filter)?))
    })?;
    blocking(m, "eth_newBlockFilter", |c, p| {
        Args::parse(p, 0)?;
        Ok(json!(c.filters.new_block_filter(&*c.backend)?))
    })?;
    blocking(m, "eth_newPendingTransactionFilter", |c, p| {
        // geth takes an optional `fullTx` flag; hashes are all this node reports.
        Args::parse(p, 1)?;
        Ok(json!(c.filters.new_pending_filter(&*c.backend)?))
    })?;
    blocking(m, "eth_getFilterChanges", |c, p| {
        let a = Args::parse(p, 1)?;
        let id: String = a.req(0)?;
        c.filters.changes(&*c.backend, &id, c.log_limits())
    })?;
    blocking(m, "eth_getFilterLogs", |c, p| {
        let a = Args::parse(p, 1)?;
        let id: String = a.req(0)?;
        to_json(c.filters.logs(&*c.backend, &id, c.log_limits())?)
    })?;
    inline(m, "eth_uninstallFilter", |c, p| {
        let a = Args::parse(p, 1)?;
        let id: String = a.req(0)?;
        Ok(json!(c.filters.uninstall(&id)))
    })?;
    Ok(())
}

/// `eth_feeHistory`, `eth_gasPrice`, `eth_maxPriorityFeePerGas`.
fn register_fees(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_feeHistory", |c, p| {
        let a = Args::parse(p, 3)?;
        let count = a.with(0, params::parse_hex_or_decimal_u64)?;
        let newest = a.with(1, BlockParam::number_or_tag)?;
        let percentiles: Option<Vec<f64>> = a.opt(2)?;
        if let Some(ps) = &percentiles {
            check_percentiles(ps)?;
        }
        let head = c.backend.tag(Tag::Latest);
        let newest = match newest {
            BlockParam::Number(n) if n > head => {
                return Err(server_error(format!(
                    "request beyond head block: requested {n}, head {head}"
                )))
            }
            BlockParam::Number(n) => n,
            BlockParam::Tag(t) => c.backend.tag(t),
            BlockParam::Hash { .. } => {
                return Err(invalid_params("invalid argument 1: block hash not allowed"))
            }
        };
        let count = count
            .min(c.config.max_fee_history)
            .min(newest.saturating_add(1));
        if count == 0 {
            return to_json(FeeHistory::default());
        }
        to_json(
            c.backend
                .fee_history(count, newest, percentiles)
                .map_err(backend_error)?,
        )
    })?;
    blocking(m, "eth_gasPrice", |c, p| {
        Args::parse(p, 0)?;
        Ok(quantity_u256(c.backend.gas_price().map_err(backend_error)?))
    })?;
    blocking(m, "eth_maxPriorityFeePerGas", |c, p| {
        Args::parse(p, 0)?;
        Ok(quantity_u256(
            c.backend.max_priority_fee().map_err(backend_error)?,
        ))
    })?;
    Ok(())
}

/// geth's checks on reward percentiles: at most 100, each in 0..=100, strictly increasing.
fn check_percentiles(ps: &[f64]) -> Result<(), ErrorObjectOwned> {
    if ps.len() > 100 {
        return Err(server_error(
            "invalid reward percentile: over the query limit 100",
        ));
    }
    for (i, p) in ps.iter().enumerate() {
        if !(0.0..=100.0).contains(p) {
            return Err(server_error(format!("invalid reward percentile: {p:.6}")));
        }
        if i > 0 && *p <= ps[i - 1] {
            return Err(server_error(format!(
                "invalid reward percentile: #{}:{:.6} >= #{}:{:.6}",
                i - 1,
                ps[i - 1],
                i,
                p
            )));
        }
    }
    Ok(())
}

/// Accounts, mining, the pool, `evm_mine`.
fn register_misc(m: &mut RpcModule<EthContext>) -> Result<(), RegisterMethodError> {
    blocking(m, "eth_accounts", |c, p| {
        Args::parse(p, 0)?;
        to_json(c.backend.accounts())
    })?;
    blocking(m, "eth_coinbase", |c, p| {
        Args::parse(p, 0)?;
        match c.backend.accounts().first() {
            Some(a) => to_json(a),
            None => Err(server_error("etherbase must be explicitly specified")),
        }
    })?;
    inline(m, "eth_mining", |_, p| {
        Args::parse(p, 0)?;
        Ok(json!(false))
    })?;
    inline(m, "eth_hashrate", |_, p| {
        Args::parse(p, 0)?;
        Ok(quantity(0))
    })?;
    blocking(m, "txpool_status", |c, p| {
        Args::parse(p, 0)?;
        Ok(c.backend.txpool_status())
    })?;
    blocking(m, "txpool_content", |c, p| {
        Args::parse(p, 0)?;
        Ok(c.backend.txpool_content())
    })?;
    blocking(m, "evm_mine", |c, _| {
        // anvil and hardhat accept an optional timestamp or options object; the block is mined
        // now either way.
        c.backend.mine().map_err(backend_error)?;
        Ok(json!("0x0"))
    })?;
    // anvil_mine(blocks?, interval?) and its hardhat_ alias: that many blocks now (at most
    // 10,000 in one call), `interval` seconds apart when given.
    for name in ["anvil_mine", "hardhat_mine"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 2)?;
            let n: Option<alloy_primitives::U64> = a.opt(0)?;
            let interval: Option<alloy_primitives::U64> = a.opt(1)?;
            let n = n.map_or(1, |n| n.to::<u64>());
            if n > 10_000 {
                return Err(invalid_params(format!(
                    "{n} blocks: at most 10000 per call"
                )));
            }
            for i in 0..n {
                if let (Some(step), true) = (interval, i > 0) {
                    c.backend
                        .increase_time(step.to::<u64>())
                        .map_err(backend_error)?;
                }
                c.backend.mine().map_err(backend_error)?;
            }
            Ok(Value::Null)
        })?;
    }
    for name in ["evm_increaseTime", "anvil_increaseTime"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 1)?;
            let secs: alloy_primitives::U64 = a.req(0)?;
            let total = c
                .backend
                .increase_time(secs.to::<u64>())
                .map_err(backend_error)?;
            // anvil answers with the total adjustment as a JSON number.
            Ok(json!(total))
        })?;
    }
    for name in ["anvil_setBalance", "hardhat_setBalance"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 2)?;
            let address: Address = a.req(0)?;
            let balance: U256 = a.req(1)?;
            c.backend
                .set_state(address, StateChange::Balance(balance))
                .map_err(backend_error)?;
            Ok(Value::Null)
        })?;
    }
    for name in ["anvil_setNonce", "hardhat_setNonce", "evm_setAccountNonce"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 2)?;
            let address: Address = a.req(0)?;
            let nonce: alloy_primitives::U64 = a.req(1)?;
            c.backend
                .set_state(address, StateChange::Nonce(nonce.to::<u64>()))
                .map_err(backend_error)?;
            Ok(Value::Null)
        })?;
    }
    for name in ["anvil_setCode", "hardhat_setCode"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 2)?;
            let address: Address = a.req(0)?;
            let code: Bytes = a.req(1)?;
            c.backend
                .set_state(address, StateChange::Code(code))
                .map_err(backend_error)?;
            Ok(Value::Null)
        })?;
    }
    for name in ["anvil_setStorageAt", "hardhat_setStorageAt"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 3)?;
            let address: Address = a.req(0)?;
            let slot: U256 = a.req(1)?;
            let value: B256 = a.req(2)?;
            c.backend
                .set_state(
                    address,
                    StateChange::Storage(slot, U256::from_be_bytes(value.0)),
                )
                .map_err(backend_error)?;
            // anvil answers true.
            Ok(json!(true))
        })?;
    }
    for (name, on) in [
        ("anvil_impersonateAccount", true),
        ("hardhat_impersonateAccount", true),
        ("anvil_stopImpersonatingAccount", false),
        ("hardhat_stopImpersonatingAccount", false),
    ] {
        blocking(m, name, move |c, p| {
            let a = Args::parse(p, 1)?;
            let address: Address = a.req(0)?;
            c.backend.impersonate(address, on).map_err(backend_error)?;
            Ok(Value::Null)
        })?;
    }
    blocking(m, "anvil_autoImpersonateAccount", |c, p| {
        let a = Args::parse(p, 1)?;
        let on: bool = a.req(0)?;
        c.backend.auto_impersonate(on).map_err(backend_error)?;
        Ok(Value::Null)
    })?;
    for name in ["evm_snapshot", "anvil_snapshot"] {
        blocking(m, name, |c, _| {
            let id = c.backend.snapshot().map_err(backend_error)?;
            // anvil answers a quantity: "0x0", "0x1", …
            Ok(json!(format!("0x{id:x}")))
        })?;
    }
    for name in ["evm_revert", "anvil_revert"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 1)?;
            let id: alloy_primitives::U256 = a.req(0)?;
            match u64::try_from(id) {
                Ok(id) => c
                    .backend
                    .revert(id)
                    .map_err(backend_error)
                    .map(|b| json!(b)),
                Err(_) => Ok(json!(false)),
            }
        })?;
    }
    for name in ["evm_setNextBlockTimestamp", "anvil_setNextBlockTimestamp"] {
        blocking(m, name, |c, p| {
            let a = Args::parse(p, 1)?;
            let ts: alloy_primitives::U64 = a.req(0)?;
            c.backend
                .set_next_block_timestamp(ts.to::<u64>())
                .map_err(backend_error)?;
            Ok(Value::Null)
        })?;
    }
    Ok(())
}
