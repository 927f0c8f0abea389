//! The `debug_` methods that expose L2 internals for followers: `debug_getRawBlock` (geth's
//! name), which serves [`hemi_chain::L2Block::encode`]'s bytes.

use std::sync::Arc;

use hemi_chain::Chain;
use hemi_finality::FinalityTracker;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::json;

/// What the `debug_` methods read: the chain, and finality for the `safe`/`finalized` tags.
pub(crate) struct DebugContext {
    pub(crate) chain: Arc<Chain>,
    pub(crate) finality: Arc<FinalityTracker>,
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
    Ok(m)
}
