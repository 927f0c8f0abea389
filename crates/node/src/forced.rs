//! `hemi_getForcedTransactions`: the L2 transactions published in Bitcoin for forced inclusion
//! (`hemi force-tx`), with their confirmations, window and fate.

use std::sync::Arc;

use hemi_btc_view::BitcoinView;
use hemi_chain::forced::forced_in;
use hemi_chain::Chain;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};

/// Bitcoin blocks scanned by default, and at most.
const DEFAULT_LOOKBACK: u32 = 144;
const MAX_LOOKBACK: u32 = 288;

/// What the method reads.
pub(crate) struct ForcedContext {
    pub(crate) chain: Arc<Chain>,
    pub(crate) bitcoin: Arc<dyn BitcoinView>,
}

fn failed(e: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>)
}

/// The first L2 block whose pinned Bitcoin tip is at least `height` (pins rise with the chain),
/// if any.
fn first_pinned_at(chain: &Chain, height: u32) -> Result<Option<u64>, ErrorObjectOwned> {
    let head = chain.head().0;
    let pinned = |n: u64| -> Result<bool, ErrorObjectOwned> {
        Ok(chain
            .pin(n)
            .map_err(failed)?
            .is_some_and(|p| p.height >= height))
    };
    if head == 0 || !pinned(head)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (1u64, head);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pinned(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}

fn list(ctx: &ForcedContext, lookback: u32) -> Result<Value, ErrorObjectOwned> {
    let Some(p) = ctx.chain.spec().forced_inclusion else {
        return Ok(json!({"enabled": false, "transactions": []}));
    };
    let view = ctx.bitcoin.as_ref();
    let tip = view.tip().map_err(failed)?;
    let head = ctx.chain.head().0;
    let mut out = Vec::new();
    for h in tip.height.saturating_sub(lookback - 1)..=tip.height {
        let Some((block, _)) = view.header_at(h).map_err(failed)? else {
            continue;
        };
        let found = match forced_in(
            view,
            h,
            block.hash,
            ctx.chain.spec().chain_id,
            p.taproot_envelopes,
        ) {
            Ok(f) => f,
            Err(_) => continue,
        };
        for f in found.iter() {
            let confirmations = tip.height - h + 1;
            let included = ctx.chain.tx_location(&f.hash).map_err(failed)?;
            let due_from = first_pinned_at(&ctx.chain, h + p.confirmations.max(1) - 1)?;
            let deadline = due_from.map(|a| a + p.window.max(1) - 1);
            let status = match (included, due_from, deadline) {
                (Some(_), _, _) => "included",
                (None, None, _) => "confirming",
                (None, Some(_), Some(d)) if head < d => "due",
                // Its deadline passed without it: it was invalid when due (skipped by rule).
                _ => "skipped",
            };
            out.push(json!({
                "hash": f.hash,
                "btcTxid": f.btc_txid.to_string(),
                "carrier": f.carrier.as_str(),
                "btcBlock": f.block.to_string(),
                "btcHeight": f.height,
                "btcConfirmations": confirmations,
                "confirmationsNeeded": p.confirmations,
                "dueFrom": due_from,
                "deadline": deadline,
                "status": status,
                "includedIn": included.map(|(n, i)| json!({"blockNumber": n, "index": i})),
            }));
        }
    }
    Ok(json!({
        "enabled": true,
        "confirmations": p.confirmations,
        "window": p.window,
        "head": head,
        "bitcoinTip": tip.height,
        "transactions": out,
    }))
}

/// The module.
pub(crate) fn forced_module(
    ctx: ForcedContext,
) -> anyhow::Result<jsonrpsee::RpcModule<ForcedContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_blocking_method(
        "hemi_getForcedTransactions",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let v: Vec<Value> = if params.as_str().is_none() {
                Vec::new()
            } else {
                params.parse().map_err(|_| {
                    ErrorObjectOwned::owned(-32602, "expected params [lookbackBlocks?]", None::<()>)
                })?
            };
            let lookback = match v.first() {
                None | Some(Value::Null) => DEFAULT_LOOKBACK,
                Some(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=MAX_LOOKBACK).contains(n))
                    .ok_or_else(|| {
                        ErrorObjectOwned::owned(
                            -32602,
                            format!("lookbackBlocks must be 1..={MAX_LOOKBACK}"),
                            None::<()>,
                        )
                    })?,
            };
            list(&ctx, lookback)
        },
    )?;
    Ok(m)
}
