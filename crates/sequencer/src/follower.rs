//! Follower mode (`hemi node --follow URL`): fetch the sequencer's blocks over JSON-RPC
//! (`eth_blockNumber`, `debug_getRawBlock`), check the seal, re-execute against our own
//! Bitcoin client, and commit only blocks whose roots match.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use hemi_btc_view::BitcoinView;
use hemi_chain::{Chain, ChainError, L2Block};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::pin::resolve_pin;

/// Why following stopped or a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The sequencer's RPC failed or answered nonsense.
    #[error("sequencer RPC: {0}")]
    Rpc(String),
    /// A block was refused.
    #[error("block {number} refused: {error}")]
    Refused {
        /// Its number.
        number: u64,
        /// Why.
        error: ChainError,
    },
}

/// Follows a sequencer.
pub struct Follower {
    chain: Arc<Chain>,
    bitcoin: Arc<dyn BitcoinView>,
    network: bitcoin::Network,
    url: String,
    sequencer: Address,
    http: reqwest::Client,
    blocks: broadcast::Sender<u64>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("url", &self.url).finish()
    }
}

async fn rpc(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, FollowError> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| FollowError::Rpc(format!("{method}: {e}")))?
        .json()
        .await
        .map_err(|e| FollowError::Rpc(format!("{method}: {e}")))?;
    if let Some(err) = resp.get("error") {
        return Err(FollowError::Rpc(format!("{method}: {err}")));
    }
    Ok(resp.get("result").cloned().unwrap_or(Value::Null))
}

/// Asks a sequencer for its sealing address (`hemi_nodeStatus.sequencer`).
///
/// # Errors
/// RPC failure or no address in the answer.
pub async fn sequencer_address(url: &str) -> Result<Address, FollowError> {
    let http = reqwest::Client::new();
    let status = rpc(&http, url, "hemi_nodeStatus", json!([])).await?;
    status["sequencer"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FollowError::Rpc("hemi_nodeStatus has no sequencer address".into()))
}

impl Follower {
    /// A follower of the sequencer at `url` whose blocks must be sealed by `sequencer`.
    pub fn new(
        chain: Arc<Chain>,
        bitcoin: Arc<dyn BitcoinView>,
        network: bitcoin::Network,
        url: String,
        sequencer: Address,
    ) -> Self {
        Follower {
            chain,
            bitcoin,
            network,
            url,
            sequencer,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            blocks: broadcast::channel(1024).0,
        }
    }

    /// Numbers of blocks as they are imported.
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<u64> {
        self.blocks.subscribe()
    }

    /// The sequencer's head number.
    ///
    /// # Errors
    /// RPC failure.
    pub async fn remote_head(&self) -> Result<u64, FollowError> {
        let v = rpc(&self.http, &self.url, "eth_blockNumber", json!([])).await?;
        v.as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| FollowError::Rpc(format!("eth_blockNumber returned {v}")))
    }

    /// Fetches and imports block `number`. `Ok(false)` when our Bitcoin client is not ready
    /// for it yet (try again later).
    ///
    /// # Errors
    /// RPC failure, or the block was refused (tampered, wrong seal, different roots).
    pub async fn import(&self, number: u64) -> Result<bool, FollowError> {
        let v = rpc(
            &self.http,
            &self.url,
            "debug_getRawBlock",
            json!([format!("0x{number:x}")]),
        )
        .await?;
        let hex = v
            .as_str()
            .ok_or_else(|| FollowError::Rpc(format!("block {number} not served")))?;
        let bytes = alloy_primitives::hex::decode(hex)
            .map_err(|e| FollowError::Rpc(format!("block {number}: {e}")))?;
        self.import_raw(number, &bytes).await
    }

    /// Imports one raw block (as `debug_getRawBlock` returns it).
    ///
    /// # Errors
    /// The block was refused.
    pub async fn import_raw(&self, number: u64, bytes: &[u8]) -> Result<bool, FollowError> {
        let block =
            L2Block::decode(bytes).map_err(|error| FollowError::Refused { number, error })?;
        let chain = self.chain.clone();
        let view = self.bitcoin.clone();
        let network = self.network;
        let sequencer = self.sequencer;
        let result = tokio::task::spawn_blocking(move || {
            chain.import_block(&block, sequencer, &|attrs| {
                resolve_pin(view.clone(), network, attrs)
            })
        })
        .await
        .map_err(|e| FollowError::Rpc(format!("import task: {e}")))?;
        match result {
            Ok(_) => {
                let _ = self.blocks.send(number);
                Ok(true)
            }
            Err(ChainError::BitcoinNotReady(why)) => {
                tracing::debug!(number, %why, "waiting for Bitcoin");
                Ok(false)
            }
            Err(error) => Err(FollowError::Refused { number, error }),
        }
    }

    /// Follows forever: polls the sequencer's head and imports every new block. A refused block
    /// is logged and retried after a pause (the chain does not move past it).
    pub async fn run(self: Arc<Self>, poll: Duration) {
        loop {
            match self.sync_once().await {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "following"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Imports every block the sequencer has beyond our head; returns how many were imported.
    ///
    /// # Errors
    /// RPC failure or a refused block.
    pub async fn sync_once(&self) -> Result<u64, FollowError> {
        let remote = self.remote_head().await?;
        let mut imported = 0;
        while self.chain.head().0 < remote {
            let next = self.chain.head().0 + 1;
            if !self.import(next).await? {
                break;
            }
            imported += 1;
        }
        Ok(imported)
    }
}
