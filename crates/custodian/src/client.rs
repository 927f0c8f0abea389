//! A small JSON-RPC 2.0 client over HTTP (reqwest, already in the tree), for calls to other
//! custodians and to the node a custodian trusts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// The largest answer read from a custodian or the L2 node.
const MAX_ANSWER: usize = 8 << 20;

/// Why a JSON-RPC call failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No answer: connection refused or reset, a timeout, an HTTP error status.
    #[error("{url}: {method}: {reason}")]
    Transport {
        /// The server.
        url: String,
        /// The method.
        method: String,
        /// Why.
        reason: String,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{url}: {method}: error {code}: {message}")]
    Remote {
        /// The server.
        url: String,
        /// The method.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer is not what the method returns.
    #[error("{url}: {method}: unexpected answer: {reason}")]
    Decode {
        /// The server.
        url: String,
        /// The method.
        method: String,
        /// Why.
        reason: String,
    },
}

/// A JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RpcClient {
    /// A client of `url` whose calls time out after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        RpcClient {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params`.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let transport = |reason: String| RpcError::Transport {
            url: self.url.clone(),
            method: method.to_string(),
            reason,
        };
        let decode = |reason: String| RpcError::Decode {
            url: self.url.clone(),
            method: method.to_string(),
            reason,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status();
        // At most MAX_ANSWER bytes, however much the other side sends.
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(error_chain(&e)))? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(decode(format!("an answer over {MAX_ANSWER} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            if status.is_success() {
                decode(format!("not JSON: {e}"))
            } else {
                transport(format!("HTTP {status}"))
            }
        })?;
        if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Remote {
                url: self.url.clone(),
                method: method.to_string(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        let result = answer
            .get("result")
            .cloned()
            .ok_or_else(|| decode("no result".into()))?;
        serde_json::from_value(result).map_err(|e| decode(e.to_string()))
    }
}

/// An error and its sources, on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}
