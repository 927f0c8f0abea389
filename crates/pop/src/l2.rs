//! The miner's view of a hemi node: keystones with their first Bitcoin publication, and the
//! node's indexed Bitcoin (UTXOs of the miner's address, confirmed transactions).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut, Txid};
use hemi_keystone::AbbreviatedKeystone;
use serde_json::{json, Value};

/// A keystone as `hemi_getLatestKeystones` / `hemi_getKeystone` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Keystone {
    /// Keystone hash (Hemi's display form).
    pub hash: String,
    /// L2 block number.
    pub l2_block_number: u64,
    /// The 76 bytes to publish.
    pub abbreviated: AbbreviatedKeystone,
    /// Its earliest best-chain Bitcoin publication, by anyone.
    pub publication: Option<L2Publication>,
}

/// A Bitcoin publication as the node's index reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Publication {
    /// The PoP transaction.
    pub txid: Txid,
    /// Height of its block.
    pub height: u32,
}

/// A spendable output of the miner's address as the node indexed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedUtxo {
    /// Where.
    pub outpoint: OutPoint,
    /// Value and script.
    pub txout: TxOut,
    /// Height of its block.
    pub height: u32,
    /// From a coinbase (matures after 100 blocks).
    pub coinbase: bool,
}

/// JSON-RPC 2.0 client for a hemi node.
#[derive(Debug, Clone)]
pub struct L2Client {
    url: String,
    http: reqwest::Client,
    id: std::sync::Arc<AtomicU64>,
}

/// Why a call to the hemi node failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum L2Error {
    /// The HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The node could not be reached or did not answer JSON.
    #[error("{method} at {url}: {error}")]
    Transport {
        /// The JSON-RPC method.
        method: String,
        /// The node's URL.
        url: String,
        /// The transport's error.
        error: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("{method}: {error}")]
    Rpc {
        /// The JSON-RPC method.
        method: String,
        /// The error object.
        error: Value,
    },
    /// The node's answer lacks a field or has one of the wrong shape.
    #[error("{method}: bad {field} in {got}")]
    Malformed {
        /// The JSON-RPC method.
        method: &'static str,
        /// The field (or `result` for the whole answer).
        field: &'static str,
        /// What the node sent.
        got: Value,
    },
}

fn parse_keystone(method: &'static str, v: &Value) -> Result<L2Keystone, L2Error> {
    let bad = |field: &'static str| L2Error::Malformed {
        method,
        field,
        got: v.clone(),
    };
    let get = |field: &'static str| {
        v.get(field)
            .filter(|x| !x.is_null())
            .ok_or_else(|| bad(field))
    };
    let hash = get("hash")?
        .as_str()
        .ok_or_else(|| bad("hash"))?
        .to_string();
    let l2_block_number = get("l2BlockNumber")?
        .as_u64()
        .ok_or_else(|| bad("l2BlockNumber"))?;
    let raw = get("abbreviated")?
        .as_str()
        .ok_or_else(|| bad("abbreviated"))?;
    let bytes = hex::decode(raw.trim_start_matches("0x")).map_err(|_| bad("abbreviated"))?;
    let abbreviated = AbbreviatedKeystone::from_bytes(&bytes).map_err(|_| bad("abbreviated"))?;
    let publication = match v.get("publication") {
        None | Some(Value::Null) => None,
        Some(p) => Some(L2Publication {
            txid: Txid::from_str(p["txid"].as_str().unwrap_or_default())
                .map_err(|_| bad("publication.txid"))?,
            height: p["height"]
                .as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(|| bad("publication.height"))?,
        }),
    };
    Ok(L2Keystone {
        hash,
        l2_block_number,
        abbreviated,
        publication,
    })
}

impl L2Client {
    /// A client for the node at `url` (`http://127.0.0.1:8545`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(url: &str) -> Result<Self, L2Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| L2Error::Client(e.to_string()))?;
        Ok(L2Client {
            url: url.to_string(),
            http,
            id: Default::default(),
        })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, L2Error> {
        let transport = |e: reqwest::Error| L2Error::Transport {
            method: method.to_string(),
            url: self.url.clone(),
            error: e.to_string(),
        };
        let id = self.id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(transport)?
            .json()
            .await
            .map_err(transport)?;
        if let Some(e) = resp.get("error").filter(|e| !e.is_null()) {
            return Err(L2Error::Rpc {
                method: method.to_string(),
                error: e.clone(),
            });
        }
        Ok(resp.get("result").cloned().unwrap_or(Value::Null))
    }

    /// The newest `count` keystones, newest first.
    ///
    /// # Errors
    /// Transport, RPC or decoding errors.
    pub async fn latest_keystones(&self, count: usize) -> Result<Vec<L2Keystone>, L2Error> {
        const METHOD: &str = "hemi_getLatestKeystones";
        let v = self.call(METHOD, json!([count])).await?;
        v.as_array()
            .ok_or_else(|| L2Error::Malformed {
                method: METHOD,
                field: "result",
                got: v.clone(),
            })?
            .iter()
            .map(|k| parse_keystone(METHOD, k))
            .collect()
    }

    /// One keystone by hash; `None` if the node does not know it (or it left the chain).
    ///
    /// # Errors
    /// Transport, RPC or decoding errors.
    pub async fn keystone(&self, hash: &str) -> Result<Option<L2Keystone>, L2Error> {
        const METHOD: &str = "hemi_getKeystone";
        let v = self.call(METHOD, json!([hash, 1])).await?;
        match v.as_array().and_then(|a| a.first()) {
            Some(k) => parse_keystone(METHOD, k).map(Some),
            None => Ok(None),
        }
    }

    /// Height of the Bitcoin tip the node has indexed.
    ///
    /// # Errors
    /// Transport or RPC errors.
    pub async fn btc_tip(&self) -> Result<u32, L2Error> {
        let v = self.call("hemi_btcTip", json!([])).await?;
        v["height"]
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| L2Error::Malformed {
                method: "hemi_btcTip",
                field: "height",
                got: v.clone(),
            })
    }

    /// Confirmed unspent outputs of `address`.
    ///
    /// # Errors
    /// Transport, RPC or decoding errors.
    pub async fn btc_utxos(&self, address: &str) -> Result<Vec<IndexedUtxo>, L2Error> {
        let v = self.call("hemi_btcUtxos", json!([address])).await?;
        let bad = |field: &'static str| L2Error::Malformed {
            method: "hemi_btcUtxos",
            field,
            got: v.clone(),
        };
        v.as_array()
            .ok_or_else(|| bad("result"))?
            .iter()
            .map(|u| {
                let txid = Txid::from_str(u["txid"].as_str().unwrap_or_default())
                    .map_err(|_| bad("txid"))?;
                let vout = u["vout"]
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| bad("vout"))?;
                let script = hex::decode(u["scriptPubKey"].as_str().unwrap_or_default())
                    .map_err(|_| bad("scriptPubKey"))?;
                Ok(IndexedUtxo {
                    outpoint: OutPoint::new(txid, vout),
                    txout: TxOut {
                        value: Amount::from_sat(u["value"].as_u64().ok_or_else(|| bad("value"))?),
                        script_pubkey: ScriptBuf::from_bytes(script),
                    },
                    height: u["height"]
                        .as_u64()
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or_else(|| bad("height"))?,
                    coinbase: u["coinbase"].as_bool().unwrap_or(false),
                })
            })
            .collect()
    }

    /// Whether the node's Bitcoin index has `txid` confirmed on its best chain.
    ///
    /// # Errors
    /// Transport or RPC errors.
    pub async fn btc_confirmed(&self, txid: &Txid) -> Result<bool, L2Error> {
        let v = self
            .call("hemi_btcTransaction", json!([txid.to_string()]))
            .await?;
        Ok(!v.is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hemi_keystone::Keystone;

    #[test]
    fn keystone_json_parses_and_bad_json_is_an_error() {
        let a = Keystone {
            version: 1,
            l1_block_number: 5,
            l2_block_number: 10,
            parent_ep_hash: [1; 32],
            prev_keystone_ep_hash: [2; 32],
            state_root: [3; 32],
            ep_hash: [4; 32],
        }
        .abbreviate();
        let v = json!({"hash": a.id().to_hex(), "l2BlockNumber": 10,
            "abbreviated": hex::encode(a.to_bytes()),
            "publication": {"txid": "11".repeat(32), "height": 7}});
        let k = parse_keystone("test", &v).expect("parses");
        assert_eq!(k.abbreviated, a);
        assert_eq!(k.publication.map(|p| p.height), Some(7));
        let mut short = v.clone();
        short["abbreviated"] = json!("0011");
        assert!(parse_keystone("test", &short).is_err());
        assert!(parse_keystone("test", &json!({"hash": "x"})).is_err());
    }
}
