//! The PoP miner as a service: run alone (`hemi popm`) or built into the devnet, woken by the
//! node's `newKeystones` subscription besides polling.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_wallet::Key;
use hemi_pop::{MinerConfig, PopMiner};

/// Runs `miner` against the hemi node at `l2_rpc` until a signal: it polls, and a WebSocket
/// subscription to the node's new keystones wakes it sooner.
pub async fn run_popm(miner: PopMiner, l2_rpc: String) {
    let (wake_tx, wake_rx) = tokio::sync::broadcast::channel(16);
    let watch = tokio::spawn(watch_keystones(l2_rpc, wake_tx));
    let task = tokio::spawn(miner.run(Some(wake_rx)));
    crate::shutdown_signal().await;
    task.abort();
    watch.abort();
}

/// The node's WebSocket URL for its HTTP JSON-RPC URL (same host and port, as hemi serves both).
fn ws_url(http: &str) -> String {
    if let Some(rest) = http.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http.to_string()
    }
}

/// Subscribes to the node's `newKeystones` over WebSocket and wakes the miner on each one, so a
/// keystone is published as soon as it exists; reconnects with back-off. Polling goes on
/// regardless (a node without WebSocket is followed by polling alone).
async fn watch_keystones(l2_rpc: String, wake: tokio::sync::broadcast::Sender<()>) {
    use jsonrpsee::core::client::SubscriptionClientT;
    let url = ws_url(&l2_rpc);
    let mut backoff = Duration::from_secs(1);
    loop {
        let sub = async {
            let client = jsonrpsee::ws_client::WsClientBuilder::default()
                .build(&url)
                .await?;
            let mut sub = client
                .subscribe::<serde_json::Value, _>(
                    "eth_subscribe",
                    jsonrpsee::rpc_params!["newKeystones"],
                    "eth_unsubscribe",
                )
                .await?;
            tracing::info!(%url, "watching keystones over WebSocket");
            while let Some(k) = sub.next().await {
                let k = k?;
                tracing::debug!(keystone = %k["l2BlockNumber"], "new keystone");
                let _ = wake.send(());
            }
            Ok::<(), jsonrpsee::core::ClientError>(())
        };
        match sub.await {
            Ok(()) => {
                tracing::info!(%url, "keystone subscription ended; reconnecting");
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "no keystone subscription; polling");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Builds the devnet's built-in miner.
///
/// # Errors
/// An unreadable record.
pub(crate) fn devnet_miner(
    key: Key,
    l2_url: String,
    bitcoin_rpc: &str,
    record: Option<PathBuf>,
) -> anyhow::Result<PopMiner> {
    let bitcoin = BitcoinRpc::new(bitcoin_rpc).context("Bitcoin RPC for the PoP miner")?;
    let mut cfg = MinerConfig::new(key, bitcoin::Network::Regtest, l2_url, bitcoin);
    cfg.record_path = record;
    // Devnet blocks come every few seconds: look again often.
    cfg.poll = Duration::from_millis(500);
    Ok(PopMiner::new(cfg)?)
}
