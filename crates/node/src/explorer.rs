//! The built-in explorer at `GET /explorer` on the RPC port: one HTML page with its script
//! inline (no CDN, no build step), reading this node's JSON-RPC and following new blocks over
//! its WebSocket. Pages: the chain (head, `safe`, `finalized`, latest blocks, transactions and
//! keystones), a block with its Bitcoin pin, keystone and finality ladder, a transaction, an
//! address, keystones with their PoP publications, the Bitcoin side, the tunnel's deposits and
//! withdrawals, and a deposit's provenance checked by `hemi_verifyProvenance`.

use alloy_sol_types::SolEvent;
use hemi_rpc::http_routes::{GetHandler, GetResponse};
use hemi_tunnel::contracts::ITunnelManager;
use std::sync::Arc;

/// The page, with the tunnel's event topics filled in.
fn page() -> String {
    include_str!("explorer.html")
        .replace(
            "__DEPOSIT_CONFIRMED__",
            &format!("{:#x}", ITunnelManager::DepositConfirmed::SIGNATURE_HASH),
        )
        .replace(
            "__WITHDRAWAL_REQUESTED__",
            &format!("{:#x}", ITunnelManager::WithdrawalRequested::SIGNATURE_HASH),
        )
}

/// The `/explorer` route.
pub(crate) fn route() -> GetHandler {
    let html = Arc::new(page());
    Arc::new(move |rest: &str| match rest {
        "" | "/" | "/index.html" => {
            GetResponse::text(200, "text/html; charset=utf-8", html.as_str().to_owned())
        }
        _ => GetResponse::text(404, "text/plain; charset=utf-8", "not found\n".into()),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_names_the_tunnel_topics() {
        let p = super::page();
        assert!(!p.contains("__DEPOSIT_CONFIRMED__"));
        assert!(!p.contains("__WITHDRAWAL_REQUESTED__"));
        assert!(p.contains("<title>hemi-rs explorer</title>"));
    }
}
