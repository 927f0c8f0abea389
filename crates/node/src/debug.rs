//! The `debug_` methods: `debug_getRawBlock` (geth's name), which serves
//! [`hemi_chain::L2Block::encode`]'s bytes to followers, and geth's tracing API —
//! `debug_traceTransaction`, `debug_traceCall`, `debug_traceBlockByNumber`,
//! `debug_traceBlockByHash` — with revm-inspectors' tracers (struct logger, `callTracer`,
//! `prestateTracer` with diff mode, `4byteTracer`, `flatCallTracer`, `muxTracer`, `noopTracer`),
//! re-executing against the block's own Bitcoin pin so hVM calls trace as they ran.
//!
//! Also the cheap part of Parity's `trace_` namespace, as reth and anvil serve it, from the same
//! re-execution with the flat call tracer: `trace_transaction`, `trace_get`, `trace_block` and
//! `trace_filter` (at most [`TRACE_FILTER_BLOCKS`] blocks per call). Only user transactions are
//! traced; the system transactions (`0x7C`, `0x7A`) have no call traces.

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_rpc_types_eth::TransactionRequest;
use alloy_rpc_types_trace::filter::TraceFilter;
use alloy_rpc_types_trace::geth::{
    GethDebugBuiltInTracerType, GethDebugTracerType, GethDebugTracingCallOptions,
    GethDebugTracingOptions,
};
use alloy_rpc_types_trace::parity::LocalizedTransactionTrace;
use hemi_btc_view::BitcoinView;
use hemi_chain::Chain;
use hemi_finality::FinalityTracker;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};

/// Most blocks one `trace_filter` call re-executes (each user transaction is traced by
/// re-executing its block up to it, so a call's cost grows with the square of a block's
/// transactions: the span is kept short).
pub(crate) const TRACE_FILTER_BLOCKS: u64 = 100;

/// The flat call tracer's options: Parity-style traces.
fn flat_call_tracer() -> GethDebugTracingOptions {
    GethDebugTracingOptions {
        tracer: Some(GethDebugTracerType::BuiltInTracer(
            GethDebugBuiltInTracerType::FlatCallTracer,
        )),
        ..Default::default()
    }
}

/// What the `debug_` methods read: the chain, and finality for the `safe`/`finalized` tags.
pub(crate) struct DebugContext {
    pub(crate) chain: Arc<Chain>,
    pub(crate) finality: Arc<FinalityTracker>,
    /// Bitcoin, for the pin each traced block executed against.
    pub(crate) bitcoin: Arc<dyn BitcoinView>,
    pub(crate) network: bitcoin::Network,
}

fn invalid(m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, m.into(), None::<()>)
}

fn failed(e: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>)
}

impl DebugContext {
    /// The block number a `debug_getRawBlock` parameter names: a tag (as every `eth_` method
    /// reads it: `safe` and `finalized` from Bitcoin finality, never above the head) or a hex
    /// number.
    fn number(&self, param: &str) -> Result<u64, ErrorObjectOwned> {
        let head = self.chain.head().0;
        Ok(match param {
            "latest" | "pending" => head,
            "safe" => self.finality.safe().min(head),
            "finalized" => self.finality.finalized().min(head),
            "earliest" => 0,
            hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16).map_err(|_| {
                ErrorObjectOwned::owned(-32602, format!("invalid block number {hex:?}"), None::<()>)
            })?,
        })
    }
}

impl DebugContext {
    /// The trace of user transaction `index` of block `number`.
    fn trace_tx(
        &self,
        number: u64,
        index: usize,
        opts: GethDebugTracingOptions,
    ) -> Result<Value, ErrorObjectOwned> {
        let pin = hemi_chain::pin::pin_for(&self.chain, &self.bitcoin, self.network, number)
            .map_err(failed)?;
        let trace = self
            .chain
            .trace_transaction(number, index, pin, opts)
            .map_err(failed)?;
        serde_json::to_value(trace).map_err(failed)
    }

    /// Parity-style traces of the transaction `hash`; `None` when no block holds it.
    fn parity_tx(&self, hash: B256) -> Result<Option<Vec<Value>>, ErrorObjectOwned> {
        let Some((number, index)) = self.chain.tx_location(&hash).map_err(failed)? else {
            return Ok(None);
        };
        let block = self
            .chain
            .block(number)
            .map_err(failed)?
            .ok_or_else(|| failed(format!("block #{number} not found")))?;
        let index = usize::try_from(index).map_err(failed)?;
        self.parity_at(&block, index).map(Some)
    }

    /// Parity-style traces of transaction `index` of `block` (a user transaction).
    fn parity_at(
        &self,
        block: &hemi_chain::StoredBlock,
        index: usize,
    ) -> Result<Vec<Value>, ErrorObjectOwned> {
        let number = block.header.number;
        let mut traces = match self.trace_tx(number, index, flat_call_tracer())? {
            Value::Array(traces) => traces,
            other => return Err(failed(format!("flat call tracer answered {other}"))),
        };
        // geth's flat call tracer gives the root call the transaction's gas limit; Parity's
        // traces (OpenEthereum, reth, anvil) give it what is left after the intrinsic cost.
        if let Some(env) = block.txs.get(index).and_then(|t| t.tx.user_envelope()) {
            let limit = alloy_consensus::Transaction::gas_limit(env);
            let left = limit.saturating_sub(hemi_txpool::intrinsic_gas(env));
            for t in &mut traces {
                let root = t["traceAddress"].as_array().is_some_and(|a| a.is_empty());
                if root && t["action"].get("gas").is_some() {
                    t["action"]["gas"] = json!(format!("{left:#x}"));
                }
            }
        }
        Ok(traces)
    }

    /// Parity-style traces of every user transaction of block `number`, in order; `None` past
    /// the head.
    fn parity_block(&self, number: u64) -> Result<Option<Vec<Value>>, ErrorObjectOwned> {
        let Some(block) = self.chain.block(number).map_err(failed)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (i, tx) in block.txs.iter().enumerate() {
            if tx.tx.user_envelope().is_some() {
                out.extend(self.parity_at(&block, i)?);
            }
        }
        Ok(Some(out))
    }

    /// `trace_filter`: the traces of blocks `fromBlock..=toBlock` (default: the head) whose
    /// call, create or self-destruct matches the address filters, then `after` skipped and at
    /// most `count` kept.
    fn parity_filter(&self, filter: &TraceFilter) -> Result<Vec<Value>, ErrorObjectOwned> {
        let head = self.chain.head().0;
        let from = filter.from_block.unwrap_or(head);
        let to = filter.to_block.unwrap_or(head).min(head);
        if from > to {
            return Ok(Vec::new());
        }
        if to - from >= TRACE_FILTER_BLOCKS {
            return Err(invalid(format!(
                "trace_filter spans {} blocks; at most {TRACE_FILTER_BLOCKS} per call",
                to - from + 1
            )));
        }
        let matcher = filter.matcher();
        let skip = filter.after.unwrap_or(0) as usize;
        let take = filter.count.map_or(usize::MAX, |c| c as usize);
        if take == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut matched = 0usize;
        for n in from..=to {
            for t in self.parity_block(n)?.unwrap_or_default() {
                let parsed: LocalizedTransactionTrace =
                    serde_json::from_value(t.clone()).map_err(failed)?;
                if !matcher.matches(&parsed.trace) {
                    continue;
                }
                matched += 1;
                if matched > skip {
                    out.push(t);
                    if out.len() == take {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every user transaction of block `number`, traced: geth's `[{txHash, result}]`.
    fn trace_block(
        &self,
        number: u64,
        opts: GethDebugTracingOptions,
    ) -> Result<Value, ErrorObjectOwned> {
        let block = self
            .chain
            .block(number)
            .map_err(failed)?
            .ok_or_else(|| failed(format!("block #{number} not found")))?;
        let mut out = Vec::new();
        for (i, tx) in block.txs.iter().enumerate() {
            if tx.tx.user_envelope().is_none() {
                continue;
            }
            let result = self.trace_tx(number, i, opts.clone())?;
            out.push(json!({"txHash": tx.hash, "result": result}));
        }
        Ok(Value::Array(out))
    }
}

/// The parameter list of a `debug_` call whose usage is `usage` (e.g. `[txHash, options?]`),
/// and its first parameter as a `T`.
fn first_param<T: serde::de::DeserializeOwned>(
    params: jsonrpsee::types::Params<'_>,
    usage: &str,
) -> Result<(Vec<Value>, T), ErrorObjectOwned> {
    let v: Vec<Value> = params
        .parse()
        .map_err(|_| invalid(format!("expected {usage}")))?;
    let first = v
        .first()
        .and_then(|x| serde_json::from_value(x.clone()).ok())
        .ok_or_else(|| invalid(format!("expected {usage}")))?;
    Ok((v, first))
}

/// Parses the optional tracer options at `params[at]` (geth: absent means the struct logger).
fn tracing_options<T: serde::de::DeserializeOwned + Default>(
    v: &[Value],
    at: usize,
) -> Result<T, ErrorObjectOwned> {
    match v.get(at) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(o) => {
            serde_json::from_value(o.clone()).map_err(|e| invalid(format!("tracer options: {e}")))
        }
    }
}

/// The `debug_` module.
pub(crate) fn debug_module(
    ctx: DebugContext,
) -> anyhow::Result<jsonrpsee::RpcModule<DebugContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_blocking_method(
        "debug_getRawBlock",
        |params, ctx, _| -> Result<serde_json::Value, ErrorObjectOwned> {
            let bad = |m: String| ErrorObjectOwned::owned(-32602, m, None::<()>);
            let v: Vec<serde_json::Value> = params
                .parse()
                .map_err(|_| bad("expected [blockNumber]".into()))?;
            let s = v
                .first()
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("expected [blockNumber]".into()))?;
            let n = ctx.number(s)?;
            match ctx.chain.raw_block(n) {
                Ok(Some(b)) => Ok(json!(format!("0x{}", hex::encode(b)))),
                Ok(None) => Err(ErrorObjectOwned::owned(
                    -32000,
                    "header not found",
                    None::<()>,
                )),
                Err(e) => Err(ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>)),
            }
        },
    )?;
    m.register_blocking_method(
        "debug_traceTransaction",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (v, hash): (_, B256) = first_param(params, "[txHash, options?]")?;
            let opts: GethDebugTracingOptions = tracing_options(&v, 1)?;
            let (number, index) = ctx
                .chain
                .tx_location(&hash)
                .map_err(failed)?
                .ok_or_else(|| failed(format!("transaction {hash} not found")))?;
            let index = usize::try_from(index).map_err(failed)?;
            ctx.trace_tx(number, index, opts)
        },
    )?;
    m.register_blocking_method(
        "debug_traceBlockByNumber",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (v, s): (_, String) = first_param(params, "[blockNumber, options?]")?;
            let n = ctx.number(&s)?;
            let opts: GethDebugTracingOptions = tracing_options(&v, 1)?;
            ctx.trace_block(n, opts)
        },
    )?;
    m.register_blocking_method(
        "debug_traceBlockByHash",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (v, hash): (_, B256) = first_param(params, "[blockHash, options?]")?;
            let n = ctx
                .chain
                .number_of(&hash)
                .map_err(failed)?
                .ok_or_else(|| failed(format!("block {hash} not found")))?;
            let opts: GethDebugTracingOptions = tracing_options(&v, 1)?;
            ctx.trace_block(n, opts)
        },
    )?;
    m.register_blocking_method(
        "trace_transaction",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (_, hash): (_, B256) = first_param(params, "[txHash]")?;
            Ok(ctx.parity_tx(hash)?.map_or(Value::Null, Value::Array))
        },
    )?;
    m.register_blocking_method(
        "trace_get",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let usage = "[txHash, [index]]";
            let (v, hash): (_, B256) = first_param(params, usage)?;
            let indices: Vec<alloy_primitives::U64> = v
                .get(1)
                .and_then(|i| serde_json::from_value(i.clone()).ok())
                .ok_or_else(|| invalid(format!("expected {usage}")))?;
            // Parity's rule (reth's too): one index, into the transaction's trace list.
            let [index] = indices.as_slice() else {
                return Ok(Value::Null);
            };
            let traces = ctx.parity_tx(hash)?.unwrap_or_default();
            Ok(usize::try_from(index.to::<u64>())
                .ok()
                .and_then(|i| traces.get(i).cloned())
                .unwrap_or(Value::Null))
        },
    )?;
    m.register_blocking_method(
        "trace_block",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (_, s): (_, String) = first_param(params, "[blockNumber]")?;
            let n = ctx.number(&s)?;
            Ok(ctx.parity_block(n)?.map_or(Value::Null, Value::Array))
        },
    )?;
    m.register_blocking_method(
        "trace_filter",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let usage = "[{fromBlock?, toBlock?, fromAddress?, toAddress?, mode?, after?, count?}]";
            let v: Vec<Value> = params
                .parse()
                .map_err(|_| invalid(format!("expected {usage}")))?;
            let filter: TraceFilter = v
                .first()
                .map(|f| serde_json::from_value(f.clone()))
                .transpose()
                .map_err(|e| invalid(format!("trace filter: {e}")))?
                .ok_or_else(|| invalid(format!("expected {usage}")))?;
            Ok(Value::Array(ctx.parity_filter(&filter)?))
        },
    )?;
    m.register_blocking_method(
        "debug_traceCall",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let (v, request): (_, TransactionRequest) =
                first_param(params, "[call, blockNumber?, options?]")?;
            let n = match v.get(1).and_then(Value::as_str) {
                Some(s) => ctx.number(s)?,
                None => ctx.chain.head().0,
            };
            let opts: GethDebugTracingCallOptions = tracing_options(&v, 2)?;
            let tx = crate::eth::tx_env_of(
                ctx.chain.spec().chain_id,
                &request,
                crate::eth::CALL_GAS_CAP,
            );
            let pin = hemi_chain::pin::pin_for(&ctx.chain, &ctx.bitcoin, ctx.network, n)
                .map_err(failed)?;
            let trace = ctx
                .chain
                .trace_call(
                    n,
                    tx,
                    opts.state_overrides.as_ref(),
                    pin,
                    opts.tracing_options,
                )
                .map_err(failed)?;
            serde_json::to_value(trace).map_err(failed)
        },
    )?;
    Ok(m)
}
