//! Otterscan's `ots_` namespace at API level 8 (what Otterscan needs; reth and anvil serve the
//! same), plus `erigon_getHeaderByNumber`, which Otterscan probes first.
//!
//! The methods are composed from the node's own `eth_` and `debug_` methods (called in
//! process through [`jsonrpsee::Methods::call`]), so blocks, transactions and receipts have
//! exactly the shapes `eth_` gives, and traces are the `callTracer`'s frames flattened:
//! - `ots_traceTransaction`: every call frame in depth-first order with its depth;
//! - `ots_getInternalOperations`: value transfers (the top-level call's included), contract
//!   creations (with or without value) and self-destructs, as anvil answers;
//! - `ots_searchTransactionsBefore`/`After`: the transactions an address sent, received, or
//!   created a contract with, found by walking the chain's blocks (no index; at most
//!   [`SEARCH_BLOCKS`] blocks per call). Internal calls to the address are not searched.

use std::sync::{Arc, OnceLock};

use alloy_primitives::{Address, B256, U256};
use hemi_chain::Chain;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::Methods;
use serde_json::{json, Value};

/// Otterscan's API level (Otterscan requires 8).
pub(crate) const API_LEVEL: u64 = 8;
/// Blocks one `ots_searchTransactions*` call walks at most.
pub(crate) const SEARCH_BLOCKS: u64 = 100_000;
/// Largest page size a search or block-transactions call takes.
const MAX_PAGE: usize = 1_000;

/// What the `ots_` methods read.
#[derive(Clone)]
pub(crate) struct OtsContext {
    pub(crate) chain: Arc<Chain>,
    /// The node's whole method set, filled in once every module is merged.
    pub(crate) methods: Arc<OnceLock<Methods>>,
}

fn invalid(m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, m.into(), None::<()>)
}

fn failed(m: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, m.to_string(), None::<()>)
}

fn hex_u64(n: u64) -> String {
    format!("0x{n:x}")
}

fn quantity(v: &Value) -> Option<U256> {
    let s = v.as_str()?;
    U256::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// A JSON number or hex string parameter as a `u64`.
fn number_param(v: Option<&Value>, what: &str) -> Result<u64, ErrorObjectOwned> {
    match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .or_else(|| s.parse().ok()),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("{what} must be a non-negative integer")))
}

fn params_vec(params: &Params<'_>, usage: &str) -> Result<Vec<Value>, ErrorObjectOwned> {
    match params.as_str() {
        None => Ok(Vec::new()),
        Some(_) => params
            .parse::<Vec<Value>>()
            .map_err(|_| invalid(format!("expected {usage}"))),
    }
}

fn param<T: serde::de::DeserializeOwned>(
    v: &[Value],
    at: usize,
    usage: &str,
) -> Result<T, ErrorObjectOwned> {
    v.get(at)
        .and_then(|x| serde_json::from_value(x.clone()).ok())
        .ok_or_else(|| invalid(format!("expected {usage}")))
}

/// `ots_searchTransactions*`' `[address, blockNumber, pageSize]`.
fn search_params(params: &Params<'_>) -> Result<(Address, u64, usize), ErrorObjectOwned> {
    let usage = "[address, blockNumber, pageSize]";
    let v = params_vec(params, usage)?;
    let who: Address = param(&v, 0, usage)?;
    let block = number_param(v.get(1), "blockNumber")?;
    let size = (number_param(v.get(2), "pageSize")? as usize).clamp(1, MAX_PAGE);
    Ok((who, block, size))
}

/// A block parameter as `eth_` takes it: a JSON number becomes hex, a tag or hex stays.
fn block_param(v: Option<&Value>) -> Result<Value, ErrorObjectOwned> {
    match v {
        None | Some(Value::Null) => Ok(json!("latest")),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| json!(hex_u64(n)))
            .ok_or_else(|| invalid("block number must be a non-negative integer")),
        Some(Value::String(s)) => Ok(json!(s)),
        Some(_) => Err(invalid("block must be a number, a hex number or a tag")),
    }
}

impl OtsContext {
    /// Calls one of the node's own methods.
    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, ErrorObjectOwned> {
        let methods = self
            .methods
            .get()
            .ok_or_else(|| failed("the node's methods are not ready"))?;
        methods
            .call::<_, Value>(method, params)
            .await
            .map_err(|e| match e {
                jsonrpsee::core::server::MethodsError::JsonRpc(o) => o,
                other => failed(other),
            })
    }

    /// The `callTracer` frames of a transaction, or `None` when it is unknown.
    async fn call_frames(&self, hash: B256) -> Result<Option<Value>, ErrorObjectOwned> {
        if self.chain.tx_location(&hash).map_err(failed)?.is_none() {
            return Ok(None);
        }
        let t = self
            .call(
                "debug_traceTransaction",
                vec![json!(hash), json!({"tracer": "callTracer"})],
            )
            .await?;
        Ok(Some(t))
    }

    /// Block `n` with only transaction hashes, and its receipts; `None` past the head.
    async fn block_and_receipts(
        &self,
        block: Value,
        full: bool,
    ) -> Result<Option<(Value, Vec<Value>)>, ErrorObjectOwned> {
        let b = self
            .call("eth_getBlockByNumber", vec![block, json!(full)])
            .await?;
        if b.is_null() {
            return Ok(None);
        }
        let receipts = self
            .call("eth_getBlockReceipts", vec![b["number"].clone()])
            .await?;
        Ok(Some((b, receipts.as_array().cloned().unwrap_or_default())))
    }

    /// `ots_getBlockDetails`' answer for block `b` (a number, tag or hash's number).
    async fn block_details(&self, block: Value) -> Result<Value, ErrorObjectOwned> {
        let (mut b, receipts) = self
            .block_and_receipts(block, false)
            .await?
            .ok_or_else(|| failed("block not found"))?;
        let count = b["transactions"].as_array().map_or(0, Vec::len);
        let mut fees = U256::ZERO;
        for r in &receipts {
            let used = quantity(&r["gasUsed"]).unwrap_or_default();
            let price = quantity(&r["effectiveGasPrice"]).unwrap_or_default();
            fees = fees.saturating_add(used.saturating_mul(price));
        }
        if let Some(o) = b.as_object_mut() {
            o.remove("transactions");
            o.insert("transactionCount".into(), json!(count));
        }
        Ok(json!({
            "block": b,
            "issuance": {"blockReward": "0x0", "uncleReward": "0x0", "issuance": "0x0"},
            "totalFees": format!("{fees:#x}"),
        }))
    }

    /// A transaction and its receipt as the search methods answer them (the receipt with its
    /// block's timestamp).
    async fn tx_with_receipt(&self, hash: B256) -> Result<(Value, Value), ErrorObjectOwned> {
        let tx = self
            .call("eth_getTransactionByHash", vec![json!(hash)])
            .await?;
        let mut r = self
            .call("eth_getTransactionReceipt", vec![json!(hash)])
            .await?;
        let ts = match r.get("blockTimestamp") {
            Some(t) if !t.is_null() => t.clone(),
            _ => {
                let b = self
                    .call(
                        "eth_getBlockByNumber",
                        vec![r["blockNumber"].clone(), json!(false)],
                    )
                    .await?;
                b["timestamp"].clone()
            }
        };
        r["timestamp"] = ts;
        Ok((tx, r))
    }

    /// Whether user transaction `tx` of a block involves `who` directly: sent by it, sent to
    /// it, or creating it.
    fn involves(tx: &hemi_chain::SignedTx, who: Address) -> bool {
        let Some(env) = tx.tx.user_envelope() else {
            return false;
        };
        if tx.sender == who {
            return true;
        }
        use alloy_consensus::Transaction as _;
        match env.kind() {
            alloy_primitives::TxKind::Call(to) => to == who,
            alloy_primitives::TxKind::Create => tx.sender.create(env.nonce()) == who,
        }
    }

    /// The hashes of the transactions involving `who` in blocks `blocks` (walked in that
    /// order; within a block newest first), until `page` are found and the block is done.
    /// Returns them and whether the walk reached the range's end.
    fn search(
        &self,
        who: Address,
        blocks: impl Iterator<Item = u64>,
        page: usize,
    ) -> Result<(Vec<B256>, bool), ErrorObjectOwned> {
        let mut found = Vec::new();
        for (walked, n) in blocks.enumerate() {
            if walked as u64 >= SEARCH_BLOCKS {
                return Ok((found, false));
            }
            let Some(block) = self.chain.block(n).map_err(failed)? else {
                continue;
            };
            found.extend(
                block
                    .txs
                    .iter()
                    .rev()
                    .filter(|t| Self::involves(t, who))
                    .map(|t| t.hash),
            );
            if found.len() >= page {
                return Ok((found, false));
            }
        }
        Ok((found, true))
    }

    /// The hashes' transactions and receipts as `{txs, receipts, firstPage, lastPage}`.
    async fn search_result(
        &self,
        hashes: &[B256],
        first_page: bool,
        last_page: bool,
    ) -> Result<Value, ErrorObjectOwned> {
        let (mut txs, mut receipts) = (Vec::new(), Vec::new());
        for h in hashes {
            let (t, r) = self.tx_with_receipt(*h).await?;
            txs.push(t);
            receipts.push(r);
        }
        Ok(
            json!({"txs": txs, "receipts": receipts, "firstPage": first_page, "lastPage": last_page}),
        )
    }
}

/// One `callTracer` frame and its children, flattened depth first into Otterscan's trace
/// entries.
fn flatten(frame: &Value, depth: u32, out: &mut Vec<Value>) {
    let kind = frame["type"].as_str().unwrap_or("CALL");
    out.push(json!({
        "type": kind,
        "depth": depth,
        "from": frame["from"],
        "to": frame["to"],
        "value": frame.get("value").cloned().unwrap_or(Value::Null),
        "input": frame.get("input").cloned().unwrap_or(json!("0x")),
        "output": frame.get("output").cloned().unwrap_or(json!("0x")),
    }));
    if let Some(calls) = frame["calls"].as_array() {
        for c in calls {
            flatten(c, depth + 1, out);
        }
    }
}

/// Value transfers, creations (any value) and self-destructs in a `callTracer` frame tree, as
/// `ots_getInternalOperations`' `{type, from, to, value}` (0 transfer, 1 self-destruct,
/// 2 CREATE, 3 CREATE2).
fn internal_operations(frame: &Value, out: &mut Vec<Value>) {
    let value = frame.get("value").and_then(quantity).unwrap_or_default();
    let failed_frame = frame.get("error").is_some_and(|e| !e.is_null());
    let op = match frame["type"].as_str() {
        Some("CALL") if !value.is_zero() => Some(0),
        Some("SELFDESTRUCT") => Some(1),
        Some("CREATE") => Some(2),
        Some("CREATE2") => Some(3),
        _ => None,
    };
    if let (Some(op), false) = (op, failed_frame) {
        out.push(json!({
            "type": op,
            "from": frame["from"],
            "to": frame["to"],
            "value": format!("{value:#x}"),
        }));
    }
    if failed_frame {
        return; // a reverted frame's transfers did not happen
    }
    if let Some(calls) = frame["calls"].as_array() {
        for c in calls {
            internal_operations(c, out);
        }
    }
}

/// The first CREATE/CREATE2 frame that made `who`, as `(creator)`.
fn creator_of(frame: &Value, who: &str) -> Option<Value> {
    let made = matches!(frame["type"].as_str(), Some("CREATE" | "CREATE2"))
        && frame["to"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(who))
        && frame.get("error").is_none_or(Value::is_null);
    if made {
        return Some(frame["from"].clone());
    }
    frame["calls"]
        .as_array()?
        .iter()
        .find_map(|c| creator_of(c, who))
}

/// The `ots_` module (and `erigon_getHeaderByNumber`).
pub(crate) fn ots_module(ctx: OtsContext) -> anyhow::Result<jsonrpsee::RpcModule<OtsContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_method(
        "ots_getApiLevel",
        |_, _, _| -> Result<u64, ErrorObjectOwned> { Ok(API_LEVEL) },
    )?;
    for name in ["ots_getHeaderByNumber", "erigon_getHeaderByNumber"] {
        m.register_async_method(name, |params, ctx, _| async move {
            let v = params_vec(&params, "[blockNumber]")?;
            let b = ctx
                .call(
                    "eth_getBlockByNumber",
                    vec![block_param(v.first())?, json!(false)],
                )
                .await?;
            Ok::<_, ErrorObjectOwned>(b)
        })?;
    }
    m.register_async_method("ots_hasCode", |params, ctx, _| async move {
        let v = params_vec(&params, "[address, blockNumber?]")?;
        let who: Address = param(&v, 0, "[address, blockNumber?]")?;
        let code = ctx
            .call("eth_getCode", vec![json!(who), block_param(v.get(1))?])
            .await?;
        Ok::<_, ErrorObjectOwned>(code.as_str().is_some_and(|c| c.len() > 2))
    })?;
    m.register_async_method("ots_getInternalOperations", |params, ctx, _| async move {
        let v = params_vec(&params, "[txHash]")?;
        let hash: B256 = param(&v, 0, "[txHash]")?;
        let mut out = Vec::new();
        if let Some(frames) = ctx.call_frames(hash).await? {
            internal_operations(&frames, &mut out);
        }
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    })?;
    m.register_async_method("ots_traceTransaction", |params, ctx, _| async move {
        let v = params_vec(&params, "[txHash]")?;
        let hash: B256 = param(&v, 0, "[txHash]")?;
        Ok::<_, ErrorObjectOwned>(match ctx.call_frames(hash).await? {
            Some(frames) => {
                let mut out = Vec::new();
                flatten(&frames, 0, &mut out);
                Value::Array(out)
            }
            None => Value::Null,
        })
    })?;
    m.register_async_method("ots_getTransactionError", |params, ctx, _| async move {
        let v = params_vec(&params, "[txHash]")?;
        let hash: B256 = param(&v, 0, "[txHash]")?;
        let r = ctx
            .call("eth_getTransactionReceipt", vec![json!(hash)])
            .await?;
        // "0x" when it did not revert: what Erigon answers and every client reads.
        if r.is_null() || r["status"] != "0x0" {
            return Ok::<_, ErrorObjectOwned>(json!("0x"));
        }
        let frames = ctx.call_frames(hash).await?.unwrap_or_default();
        Ok(frames.get("output").cloned().unwrap_or(json!("0x")))
    })?;
    m.register_async_method("ots_getBlockDetails", |params, ctx, _| async move {
        let v = params_vec(&params, "[blockNumber]")?;
        ctx.block_details(block_param(v.first())?).await
    })?;
    m.register_async_method("ots_getBlockDetailsByHash", |params, ctx, _| async move {
        let v = params_vec(&params, "[blockHash]")?;
        let hash: B256 = param(&v, 0, "[blockHash]")?;
        let n = ctx
            .chain
            .number_of(&hash)
            .map_err(failed)?
            .ok_or_else(|| failed("block not found"))?;
        ctx.block_details(json!(hex_u64(n))).await
    })?;
    m.register_async_method("ots_getBlockTransactions", |params, ctx, _| async move {
        let usage = "[blockNumber, pageNumber, pageSize]";
        let v = params_vec(&params, usage)?;
        let page = number_param(v.get(1), "pageNumber")? as usize;
        let size = (number_param(v.get(2), "pageSize")? as usize).min(MAX_PAGE);
        let (mut b, receipts) = ctx
            .block_and_receipts(block_param(v.first())?, true)
            .await?
            .ok_or_else(|| failed("block not found"))?;
        let txs = b["transactions"].as_array().cloned().unwrap_or_default();
        let start = page.saturating_mul(size).min(txs.len());
        let end = start.saturating_add(size).min(txs.len());
        let page_txs: Vec<Value> = txs[start..end]
            .iter()
            .map(|t| {
                let mut t = t.clone();
                // Otterscan shows the method selector only.
                if let Some(input) = t["input"].as_str() {
                    t["input"] = json!(input.chars().take(10).collect::<String>());
                }
                t
            })
            .collect();
        let ts = b["timestamp"].clone();
        let page_receipts: Vec<Value> = receipts
            .get(start..end.min(receipts.len()))
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["logs"] = Value::Null;
                r["logsBloom"] = Value::Null;
                r["timestamp"] = ts.clone();
                r
            })
            .collect();
        b["transactions"] = Value::Array(page_txs);
        b["transactionCount"] = json!(txs.len());
        Ok::<_, ErrorObjectOwned>(json!({"fullblock": b, "receipts": page_receipts}))
    })?;
    m.register_async_method(
        "ots_searchTransactionsBefore",
        |params, ctx, _| async move {
            let (who, before, size) = search_params(&params)?;
            let head = ctx.chain.head().0;
            // Blocks below `before` (0: from the head), newest first.
            let top = if before == 0 {
                head
            } else {
                before.saturating_sub(1).min(head)
            };
            let (hashes, reached_genesis) = ctx.search(who, (1..=top).rev(), size)?;
            ctx.search_result(&hashes, before == 0, reached_genesis)
                .await
        },
    )?;
    m.register_async_method("ots_searchTransactionsAfter", |params, ctx, _| async move {
        let (who, after, size) = search_params(&params)?;
        let head = ctx.chain.head().0;
        // Blocks above `after` (0: from genesis), oldest first; answered newest first.
        let (mut hashes, reached_head) =
            ctx.search(who, after.saturating_add(1).max(1)..=head, size)?;
        // Within a block the walk took newest first; the page is newest first overall.
        hashes = {
            let mut by_block: Vec<(u64, u64, B256)> = Vec::new();
            for h in hashes {
                if let Some((n, i)) = ctx.chain.tx_location(&h).map_err(failed)? {
                    by_block.push((n, i, h));
                }
            }
            by_block.sort_by_key(|b| std::cmp::Reverse((b.0, b.1)));
            by_block.into_iter().map(|(_, _, h)| h).collect()
        };
        ctx.search_result(&hashes, reached_head, after == 0).await
    })?;
    m.register_async_method(
        "ots_getTransactionBySenderAndNonce",
        |params, ctx, _| async move {
            let usage = "[sender, nonce]";
            let v = params_vec(&params, usage)?;
            let who: Address = param(&v, 0, usage)?;
            let nonce = number_param(v.get(1), "nonce")?;
            let nonce_at = |n: u64| {
                let ctx = ctx.clone();
                async move {
                    let c = ctx
                        .call(
                            "eth_getTransactionCount",
                            vec![json!(who), json!(hex_u64(n))],
                        )
                        .await?;
                    quantity(&c)
                        .map(|c| c.saturating_to::<u64>())
                        .ok_or_else(|| failed("transaction count"))
                }
            };
            let head = ctx.chain.head().0;
            if nonce_at(head).await? <= nonce {
                return Ok::<_, ErrorObjectOwned>(Value::Null);
            }
            // The first block after which the sender's nonce is past `nonce`.
            let (mut lo, mut hi) = (1u64, head);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if nonce_at(mid).await? > nonce {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let block = ctx.chain.block(lo).map_err(failed)?;
            use alloy_consensus::Transaction as _;
            Ok(block
                .and_then(|b| {
                    b.txs.into_iter().find(|t| {
                        t.sender == who && t.tx.user_envelope().is_some_and(|e| e.nonce() == nonce)
                    })
                })
                .map_or(Value::Null, |t| json!(t.hash)))
        },
    )?;
    m.register_async_method("ots_getContractCreator", |params, ctx, _| async move {
        let v = params_vec(&params, "[address]")?;
        let who: Address = param(&v, 0, "[address]")?;
        let has_code = |n: u64| {
            let ctx = ctx.clone();
            async move {
                let c = ctx
                    .call("eth_getCode", vec![json!(who), json!(hex_u64(n))])
                    .await?;
                Ok::<_, ErrorObjectOwned>(c.as_str().is_some_and(|c| c.len() > 2))
            }
        };
        let head = ctx.chain.head().0;
        if !has_code(head).await? || has_code(0).await? {
            return Ok::<_, ErrorObjectOwned>(Value::Null);
        }
        // The first block with code at the address.
        let (mut lo, mut hi) = (1u64, head);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if has_code(mid).await? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let traces = ctx
            .call(
                "debug_traceBlockByNumber",
                vec![json!(hex_u64(lo)), json!({"tracer": "callTracer"})],
            )
            .await?;
        let who_s = format!("{who:?}");
        for t in traces.as_array().into_iter().flatten() {
            if let Some(creator) = creator_of(&t["result"], &who_s) {
                return Ok(json!({"hash": t["txHash"], "creator": creator}));
            }
        }
        Ok(Value::Null)
    })?;
    Ok(m)
}
