//! Follower mode (`hemi node --follow URL`): fetch the sequencer's blocks over JSON-RPC
//! (`eth_blockNumber`, `debug_getRawBlock`: `rlp([header, [tx, …], seal])`, see
//! [`hemi_chain::block`]), check the seal (the sequencer's signature over the block hash, next
//! to the header), re-execute against our own Bitcoin client, and commit only blocks whose roots
//! match.

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
    node_status(url).await?["sequencer"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FollowError::Rpc("hemi_nodeStatus has no sequencer address".into()))
}

/// The followed node's `hemi_nodeStatus`.
///
/// # Errors
/// Transport or RPC errors.
pub async fn node_status(url: &str) -> Result<serde_json::Value, FollowError> {
    rpc(&reqwest::Client::new(), url, "hemi_nodeStatus", json!([])).await
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

    /// Imports one raw block (as `debug_getRawBlock` returns it: [`L2Block::encode`]).
    ///
    /// # Errors
    /// The block was refused: malformed or in the old format (no seal item), sealed by someone
    /// other than the sequencer (also after any change to the header or the seal), or its
    /// re-execution differs.
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Bytes, B256};
    use alloy_rlp::Encodable;
    use bitcoin::Network;
    use hemi_btc_headers::ChainParams;
    use hemi_btc_regtest::RegtestNode;
    use hemi_btc_store::ChainStore;
    use hemi_chain::ChainSpec;
    use hemi_hvm::BitcoinPin;

    use crate::pin::next_attributes;

    const SEQUENCER: B256 = B256::repeat_byte(0x11);

    fn address(secret: B256) -> Address {
        hemi_chain::eth_address(
            &bitcoin::secp256k1::SecretKey::from_slice(secret.as_slice()).expect("key"),
        )
    }

    fn refusal(r: Result<bool, FollowError>) -> String {
        match r {
            Err(FollowError::Refused { number: 1, error }) => error.to_string(),
            other => panic!("expected block 1 to be refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn raw_blocks_carry_the_seal_next_to_the_header_and_the_follower_checks_it() {
        let store =
            Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
        let key = hemi_btc_wallet::Key::from_seed("follower-seal-test");
        RegtestNode::new(store.clone())
            .mine(101, &key.script_pubkey(hemi_btc_wallet::KeyKind::P2wpkh))
            .expect("mine");
        let spec = ChainSpec::devnet().expect("spec");
        let sequencer_chain = Chain::open(None, spec.clone()).expect("chain");
        let (attrs, pinned) = next_attributes(store.as_ref(), None).expect("attributes");
        let pin = BitcoinPin {
            view: store.clone(),
            pinned,
            network: Network::Regtest,
        };
        sequencer_chain
            .build_block(&pin, &attrs, vec![], 1_000, SEQUENCER)
            .expect("build");
        let raw = sequencer_chain
            .raw_block(1)
            .expect("read")
            .expect("block 1");
        let genuine = L2Block::decode(&raw).expect("decode");
        assert!(genuine.header.extra_data.is_empty());
        assert_eq!(
            genuine.signer(spec.chain_id).expect("signer"),
            address(SEQUENCER)
        );
        let follower_of = |sequencer: Address| {
            Follower::new(
                Arc::new(Chain::open(None, spec.clone()).expect("chain")),
                store.clone(),
                Network::Regtest,
                "http://127.0.0.1:9".into(),
                sequencer,
            )
        };
        let follower = follower_of(address(SEQUENCER));

        // The old encoding: rlp([header with vanity ‖ Clique seal in extraData, txs]).
        let mut old_header = genuine.header.clone();
        old_header.extra_data = Bytes::from(vec![0u8; 97]);
        let txs = hemi_chain::block::encode_txs(&genuine.txs);
        let mut old = Vec::new();
        alloy_rlp::Header {
            list: true,
            payload_length: old_header.length() + txs.len(),
        }
        .encode(&mut old);
        old_header.encode(&mut old);
        old.extend_from_slice(&txs);
        let err = refusal(follower.import_raw(1, &old).await);
        assert!(err.contains("raw block format 1"), "{err}");

        // The header changed after sealing.
        let mut changed = genuine.clone();
        changed.header.timestamp += 1;
        let err = refusal(follower.import_raw(1, &changed.encode()).await);
        assert!(
            err.starts_with("invalid seal: block 1 is signed by 0x"),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("not by the sequencer {}", address(SEQUENCER))),
            "{err}"
        );

        // The seal changed.
        let mut bad_seal = raw.clone();
        let last = bad_seal.len() - 10;
        bad_seal[last] ^= 0x80;
        let err = refusal(follower.import_raw(1, &bad_seal).await);
        assert!(err.starts_with("invalid seal: "), "{err}");

        // Genuine, but we follow another sequencer.
        let other = B256::repeat_byte(0x22);
        let err = refusal(follower_of(address(other)).import_raw(1, &raw).await);
        assert_eq!(
            err,
            format!(
                "invalid seal: block 1 is signed by {}, not by the sequencer {}",
                address(SEQUENCER),
                address(other)
            )
        );

        assert_eq!(follower.chain.head().0, 0, "nothing refused was committed");
        assert!(follower.import_raw(1, &raw).await.expect("genuine"));
        assert_eq!(follower.chain.head(), sequencer_chain.head());
        assert_eq!(follower.chain.raw_block(1).expect("read"), Some(raw));
    }
}
