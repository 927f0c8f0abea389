//! Where a follower's blocks come from: the [`BlockSource`] seam, and [`RpcSource`], a node's
//! JSON-RPC.

use std::time::Duration;

use alloy_primitives::Address;
use hemi_chain::L2Block;
use serde_json::{json, Value};

use crate::FollowError;

/// A source of sealed L2 blocks (a node's JSON-RPC today; p2p gossip next). A follower checks
/// everything a source hands it, so a source need not be trusted.
#[async_trait::async_trait]
pub trait BlockSource: Send + Sync + std::fmt::Debug {
    /// A name for logs and status (the URL, a peer id).
    fn name(&self) -> &str;

    /// The number of the newest block the source has.
    ///
    /// # Errors
    /// [`FollowError::Rpc`] when the source cannot be reached or answers nonsense.
    async fn head(&self) -> Result<u64, FollowError>;

    /// Block `number` of the source's chain, decoded.
    ///
    /// # Errors
    /// [`FollowError::Rpc`] when the source cannot be reached or does not serve the block;
    /// [`FollowError::Refused`] when the bytes it serves are not a block.
    async fn block(&self, number: u64) -> Result<L2Block, FollowError>;

    /// The follower refused block `number` this source handed it (a p2p source blames the
    /// peer that served it). The default does nothing.
    fn refused(&self, number: u64, error: &FollowError) {
        let _ = (number, error);
    }
}

/// A hemi node's JSON-RPC as a block source: `eth_blockNumber` and `debug_getRawBlock`
/// (`rlp([header, [tx, …], seal])`, see [`hemi_chain::block`]).
#[derive(Debug, Clone)]
pub struct RpcSource {
    url: String,
    http: reqwest::Client,
}

impl RpcSource {
    /// The node serving JSON-RPC at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RpcSource {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
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

#[async_trait::async_trait]
impl BlockSource for RpcSource {
    fn name(&self) -> &str {
        &self.url
    }

    async fn head(&self) -> Result<u64, FollowError> {
        let url = &self.url;
        let v = rpc(&self.http, url, "eth_blockNumber", json!([])).await?;
        v.as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| FollowError::Rpc(format!("{url}: eth_blockNumber returned {v}")))
    }

    async fn block(&self, number: u64) -> Result<L2Block, FollowError> {
        let url = &self.url;
        let v = rpc(
            &self.http,
            url,
            "debug_getRawBlock",
            json!([format!("0x{number:x}")]),
        )
        .await?;
        let hex = v
            .as_str()
            .ok_or_else(|| FollowError::Rpc(format!("{url}: block {number} not served")))?;
        let bytes = alloy_primitives::hex::decode(hex)
            .map_err(|e| FollowError::Rpc(format!("{url}: block {number}: {e}")))?;
        L2Block::decode(&bytes).map_err(|error| FollowError::Refused { number, error })
    }
}

/// Asks a sequencer for its sealing address (`hemi_nodeStatus.sequencer`).
///
/// # Errors
/// RPC failure or no address in the answer.
pub async fn sequencer_address(url: &str) -> Result<Address, FollowError> {
    node_status(url).await?["sequencer"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FollowError::Rpc("hemi_nodeStatus has no sequencer address".into()))
}

/// The followed node's `hemi_nodeStatus`.
///
/// # Errors
/// Transport or RPC errors.
pub async fn node_status(url: &str) -> Result<Value, FollowError> {
    rpc(&reqwest::Client::new(), url, "hemi_nodeStatus", json!([])).await
}
