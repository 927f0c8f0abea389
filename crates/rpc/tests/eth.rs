//! The `eth_` namespace over real HTTP and WebSocket on loopback, against a small in-test
//! backend holding a few fixed blocks and logs. It tests this layer — parsing, tag resolution,
//! filter bookkeeping, subscription delivery, error mapping, server limits — not a chain.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{keccak256, Address, Bytes, LogData, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{
    BlockOverrides, EIP1186AccountProofResponse, FeeHistory, Filter, Log, TransactionRequest,
};
use hemi_rpc::eth::backend::{BackendError, BackendResult, EthBackend, StateAt, Tag};
use hemi_rpc::eth::{log_matches, too_many_logs};
use hemi_rpc::{eth_module_with_config, EthRpcConfig, RpcConfig};
use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::server::ServerHandle;
use jsonrpsee::ws_client::WsClientBuilder;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast;

const CHAIN_ID: u64 = 31337;

fn addr(n: u8) -> Address {
    Address::repeat_byte(n)
}
fn topic(n: u8) -> B256 {
    B256::repeat_byte(n)
}
fn block_hash(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

/// Error(string) revert data for `reason`.
fn error_string(reason: &str) -> Bytes {
    let mut v = vec![0x08, 0xc3, 0x79, 0xa0];
    v.extend_from_slice(&U256::from(32).to_be_bytes::<32>());
    v.extend_from_slice(&U256::from(reason.len()).to_be_bytes::<32>());
    let mut padded = reason.as_bytes().to_vec();
    padded.resize(reason.len().div_ceil(32) * 32, 0);
    v.extend_from_slice(&padded);
    v.into()
}

/// A fixed little chain: block `n` has the logs `logs[n]`; `mine` appends a block with one log.
struct FakeChain {
    /// The senders `send_raw_transaction_recovered` was handed, in call order.
    recovered: Mutex<Vec<Option<hemi_rpc::eth::RecoveredSender>>>,
    logs: Mutex<Vec<Vec<alloy_primitives::Log>>>,
    blocks_tx: broadcast::Sender<u64>,
    pending_tx: broadcast::Sender<B256>,
}

impl FakeChain {
    fn new() -> Arc<FakeChain> {
        let logs = vec![
            vec![],
            vec![
                log(addr(0xaa), vec![topic(1), topic(2)]),
                log(addr(0xbb), vec![topic(1)]),
            ],
            vec![log(addr(0xaa), vec![topic(3), topic(2)])],
        ];
        Arc::new(FakeChain {
            recovered: Mutex::new(Vec::new()),
            logs: Mutex::new(logs),
            blocks_tx: broadcast::channel(64).0,
            pending_tx: broadcast::channel(64).0,
        })
    }

    fn head(&self) -> u64 {
        self.logs.lock().len() as u64 - 1
    }

    /// Appends a block whose one log is `(address, topics)` and announces it.
    fn add_block(&self, address: Address, topics: Vec<B256>) -> u64 {
        let n = {
            let mut logs = self.logs.lock();
            logs.push(vec![log(address, topics)]);
            logs.len() as u64 - 1
        };
        let _ = self.blocks_tx.send(n);
        n
    }
}

fn log(address: Address, topics: Vec<B256>) -> alloy_primitives::Log {
    alloy_primitives::Log {
        address,
        data: LogData::new_unchecked(topics, Bytes::from_static(b"\x01")),
    }
}

/// Balances encode the state they were read at, so tests can see how tags resolved.
fn balance_for(at: StateAt) -> U256 {
    match at {
        StateAt::Block(n) => U256::from(1000 + n),
        StateAt::Pending => U256::from(999),
    }
}

impl EthBackend for FakeChain {
    fn chain_id(&self) -> u64 {
        CHAIN_ID
    }
    fn tag(&self, tag: Tag) -> u64 {
        match tag {
            Tag::Latest | Tag::Pending => self.head(),
            Tag::Earliest => 0,
            Tag::Safe => 1,
            Tag::Finalized => 0,
        }
    }
    fn block_number_by_hash(&self, hash: B256) -> BackendResult<Option<u64>> {
        Ok((0..=self.head()).find(|n| block_hash(*n) == hash))
    }
    fn block(&self, number: u64, full: bool) -> BackendResult<Option<Value>> {
        if number > self.head() {
            return Ok(None);
        }
        let txs: Vec<Value> = if full {
            vec![json!({"hash": B256::ZERO})]
        } else {
            vec![json!(B256::ZERO)]
        };
        Ok(Some(json!({
            "number": format!("0x{number:x}"),
            "hash": block_hash(number),
            "parentHash": if number == 0 { B256::ZERO } else { block_hash(number - 1) },
            "timestamp": "0x64",
            "gasLimit": "0x1c9c380",
            "miner": Address::ZERO,
            "size": "0x200",
            "transactions": txs,
            "uncles": [],
        })))
    }
    fn block_tx_count(&self, number: u64) -> BackendResult<Option<u64>> {
        Ok((number <= self.head()).then_some(1))
    }
    fn transaction_by_hash(&self, hash: B256) -> BackendResult<Option<Value>> {
        Ok((hash == B256::ZERO).then(|| json!({"hash": hash})))
    }
    fn transaction_by_block_and_index(
        &self,
        number: u64,
        index: u64,
    ) -> BackendResult<Option<Value>> {
        Ok((number <= self.head() && index == 0)
            .then(|| json!({"hash": B256::ZERO, "blockNumber": format!("0x{number:x}")})))
    }
    fn receipt(&self, hash: B256) -> BackendResult<Option<Value>> {
        Ok((hash == B256::ZERO).then(|| json!({"transactionHash": hash, "status": "0x1"})))
    }
    fn block_receipts(&self, number: u64) -> BackendResult<Option<Vec<Value>>> {
        Ok((number <= self.head()).then(|| vec![json!({"status": "0x1"})]))
    }
    fn balance(&self, _address: Address, at: StateAt) -> BackendResult<U256> {
        Ok(balance_for(at))
    }
    fn transaction_count(&self, _address: Address, at: StateAt) -> BackendResult<u64> {
        Ok(if at == StateAt::Pending { 6 } else { 5 })
    }
    fn code(&self, _address: Address, _at: StateAt) -> BackendResult<Bytes> {
        Ok(Bytes::from_static(&[0x60, 0x00]))
    }
    fn storage(&self, _address: Address, slot: U256, _at: StateAt) -> BackendResult<B256> {
        Ok(B256::from(slot))
    }
    fn call(
        &self,
        request: TransactionRequest,
        _at: StateAt,
        state_overrides: Option<StateOverride>,
        _block_overrides: Option<BlockOverrides>,
    ) -> BackendResult<Bytes> {
        let input = request.input.input().cloned().unwrap_or_default();
        match input.first() {
            Some(0xde) => Err(BackendError::Reverted {
                data: error_string("not enough tokens"),
            }),
            Some(0xcc) => Err(BackendError::Reverted {
                data: Bytes::from_static(&[0x12, 0x34, 0x56, 0x78]),
            }),
            Some(0xee) => Err(BackendError::Execution("out of gas".into())),
            _ => Ok(Bytes::from(vec![
                state_overrides.map_or(0, |s| s.len() as u8)
            ])),
        }
    }
    fn estimate_gas(
        &self,
        _r: TransactionRequest,
        at: StateAt,
        _s: Option<StateOverride>,
    ) -> BackendResult<u64> {
        Ok(if at == StateAt::Pending {
            21_001
        } else {
            21_000
        })
    }
    fn create_access_list(
        &self,
        _r: TransactionRequest,
        _at: StateAt,
        _s: Option<StateOverride>,
    ) -> BackendResult<hemi_rpc::eth::AccessListResult> {
        Err(BackendError::Execution(
            "no access lists in this fake".into(),
        ))
    }
    fn send_raw_transaction(&self, raw: Bytes) -> BackendResult<B256> {
        if raw.first() == Some(&0x01) {
            return Err(BackendError::TxRejected(
                "nonce too low: next nonce 5, tx nonce 1".into(),
            ));
        }
        let h = keccak256(&raw);
        let _ = self.pending_tx.send(h);
        Ok(h)
    }
    fn send_raw_transaction_recovered(
        &self,
        raw: Bytes,
        recovered: Option<hemi_rpc::eth::RecoveredSender>,
    ) -> BackendResult<B256> {
        self.recovered.lock().push(recovered);
        self.send_raw_transaction(raw)
    }
    fn logs(&self, from: u64, to: u64, filter: &Filter, limit: usize) -> BackendResult<Vec<Log>> {
        let all = self.logs.lock();
        let mut out = Vec::new();
        let mut index = 0;
        for n in from..=to.min(all.len() as u64 - 1) {
            for (i, l) in all[n as usize].iter().enumerate() {
                index += 1;
                if log_matches(filter, l) {
                    if out.len() == limit {
                        return Err(too_many_logs(limit));
                    }
                    out.push(Log {
                        inner: l.clone(),
                        block_hash: Some(block_hash(n)),
                        block_number: Some(n),
                        block_timestamp: None,
                        transaction_hash: Some(B256::ZERO),
                        transaction_index: Some(i as u64),
                        log_index: Some(index - 1),
                        removed: false,
                    });
                }
            }
        }
        Ok(out)
    }
    fn fee_history(
        &self,
        count: u64,
        newest: u64,
        _p: Option<Vec<f64>>,
    ) -> BackendResult<FeeHistory> {
        Ok(FeeHistory {
            oldest_block: newest + 1 - count,
            base_fee_per_gas: vec![7; count as usize + 1],
            gas_used_ratio: vec![0.5; count as usize],
            ..Default::default()
        })
    }
    fn gas_price(&self) -> BackendResult<U256> {
        Ok(U256::from(1_000_000_007u64))
    }
    fn max_priority_fee(&self) -> BackendResult<U256> {
        Ok(U256::from(1u64))
    }
    fn proof(
        &self,
        address: Address,
        _slots: Vec<B256>,
        _number: u64,
    ) -> BackendResult<EIP1186AccountProofResponse> {
        Ok(EIP1186AccountProofResponse {
            address,
            ..Default::default()
        })
    }
    fn accounts(&self) -> Vec<Address> {
        vec![addr(0x11)]
    }
    fn syncing(&self) -> Value {
        json!(false)
    }
    fn txpool_status(&self) -> Value {
        json!({"pending": "0x0", "queued": "0x0"})
    }
    fn txpool_content(&self) -> Value {
        json!({"pending": {}, "queued": {}})
    }
    fn subscribe_blocks(&self) -> broadcast::Receiver<u64> {
        self.blocks_tx.subscribe()
    }
    fn subscribe_pending(&self) -> broadcast::Receiver<B256> {
        self.pending_tx.subscribe()
    }
    fn mine(&self) -> BackendResult<u64> {
        Ok(self.add_block(addr(0xcc), vec![topic(9)]))
    }
}

/// The next notification of `s`, within 5 seconds.
async fn next(s: &mut jsonrpsee::core::client::Subscription<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

struct Node {
    chain: Arc<FakeChain>,
    addr: SocketAddr,
    http: reqwest::Client,
    _handle: ServerHandle,
}

async fn node_with(config: EthRpcConfig) -> Node {
    let chain = FakeChain::new();
    let module = eth_module_with_config(chain.clone(), "hemi-rs/v-test".into(), config).unwrap();
    let rpc = RpcConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..RpcConfig::default()
    };
    let (addr, handle) = hemi_rpc::start(&rpc, module).await.unwrap();
    Node {
        chain,
        addr,
        http: reqwest::Client::new(),
        _handle: handle,
    }
}

async fn node() -> Node {
    node_with(EthRpcConfig::default()).await
}

impl Node {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Posts `body` and returns the JSON answer.
    async fn post(&self, body: impl Into<reqwest::Body>) -> Value {
        let resp = self
            .http
            .post(self.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let text = resp.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:.200}"))
    }

    /// The whole response object of one call.
    async fn raw(&self, method: &str, params: Value) -> Value {
        self.post(
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        )
        .await
    }

    /// The result of one call; panics on an error.
    async fn call(&self, method: &str, params: Value) -> Value {
        let r = self.raw(method, params).await;
        match r.get("result") {
            Some(v) => v.clone(),
            None => panic!("{method} failed: {r}"),
        }
    }

    /// The error of one call, as (code, message, data); panics on a result.
    async fn err(&self, method: &str, params: Value) -> (i64, String, Option<Value>) {
        let r = self.raw(method, params).await;
        let e = r
            .get("error")
            .unwrap_or_else(|| panic!("{method} succeeded: {r}"));
        (
            e["code"].as_i64().unwrap(),
            e["message"].as_str().unwrap().to_owned(),
            e.get("data").cloned(),
        )
    }
}

#[tokio::test]
async fn chain_identity_and_quantities_are_geths() {
    let n = node().await;
    assert_eq!(n.call("eth_chainId", json!([])).await, json!("0x7a69"));
    assert_eq!(n.call("net_version", json!([])).await, json!("31337"));
    assert_eq!(n.call("eth_blockNumber", json!([])).await, json!("0x2"));
    assert_eq!(n.call("net_listening", json!([])).await, json!(true));
    assert_eq!(n.call("net_peerCount", json!([])).await, json!("0x0"));
    assert_eq!(n.call("eth_mining", json!([])).await, json!(false));
    assert_eq!(n.call("eth_hashrate", json!([])).await, json!("0x0"));
    assert_eq!(
        n.call("web3_clientVersion", json!([])).await,
        json!("hemi-rs/v-test")
    );
    assert_eq!(
        n.call("web3_sha3", json!(["0x68656c6c6f20776f726c64"]))
            .await,
        json!("0x47173285a8d7341e5e972fc677286384f802f8ef42a5ec5f03bbfa254cb01fad")
    );
    assert_eq!(n.call("eth_gasPrice", json!([])).await, json!("0x3b9aca07"));
    assert_eq!(
        n.call("eth_maxPriorityFeePerGas", json!([])).await,
        json!("0x1")
    );
    assert_eq!(n.call("eth_accounts", json!([])).await, json!([addr(0x11)]));
    assert_eq!(n.call("eth_coinbase", json!([])).await, json!(addr(0x11)));
    assert_eq!(n.call("eth_syncing", json!([])).await, json!(false));
    assert_eq!(
        n.call("txpool_status", json!([])).await,
        json!({"pending": "0x0", "queued": "0x0"})
    );
    // Params may be omitted entirely for no-argument methods.
    let r = n
        .post(r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId"}"#)
        .await;
    assert_eq!(r["result"], json!("0x7a69"));
}

#[tokio::test]
async fn block_tags_and_eip1898_objects_resolve_to_the_right_state() {
    let n = node().await;
    let n = &n;
    let a = addr(0x42);
    let bal = |v: Value| async move { n.call("eth_getBalance", json!([a, v])).await };
    // Balance = 1000 + block number, or 999 for pending (see `balance_for`).
    assert_eq!(bal(json!("latest")).await, json!("0x3ea")); // block 2
    assert_eq!(bal(json!("earliest")).await, json!("0x3e8"));
    assert_eq!(bal(json!("safe")).await, json!("0x3e9"));
    assert_eq!(bal(json!("finalized")).await, json!("0x3e8"));
    assert_eq!(bal(json!("pending")).await, json!("0x3e7"));
    assert_eq!(bal(json!("0x1")).await, json!("0x3e9"));
    assert_eq!(bal(json!({"blockNumber": "0x1"})).await, json!("0x3e9"));
    assert_eq!(bal(json!({"blockNumber": "latest"})).await, json!("0x3ea"));
    assert_eq!(
        bal(json!({"blockHash": block_hash(1), "requireCanonical": true})).await,
        json!("0x3e9")
    );
    assert_eq!(bal(json!(block_hash(0))).await, json!("0x3e8"));
    // Omitted block parameter = latest.
    assert_eq!(n.call("eth_getBalance", json!([a])).await, json!("0x3ea"));
    // Nonce: pending counts the pool.
    assert_eq!(
        n.call("eth_getTransactionCount", json!([a, "pending"]))
            .await,
        json!("0x6")
    );
    assert_eq!(
        n.call("eth_getTransactionCount", json!([a, "latest"]))
            .await,
        json!("0x5")
    );
    // estimateGas defaults to pending, eth_call to latest.
    assert_eq!(
        n.call("eth_estimateGas", json!([{"to": a}])).await,
        json!("0x5209")
    );
    assert_eq!(
        n.call("eth_estimateGas", json!([{"to": a}, "latest"]))
            .await,
        json!("0x5208")
    );
    assert_eq!(
        n.call("eth_getStorageAt", json!([a, "0x1", "latest"]))
            .await,
        json!(B256::with_last_byte(1))
    );
    assert_eq!(
        n.call("eth_getCode", json!([a, "latest"])).await,
        json!("0x6000")
    );
    // eth_call with state overrides passes them through (the fake echoes their count).
    let overrides = json!({ format!("{}", addr(1)): {"balance": "0x1"}, format!("{}", addr(2)): {"nonce": "0x2"} });
    assert_eq!(
        n.call(
            "eth_call",
            json!([{"to": a, "input": "0x00"}, "latest", overrides])
        )
        .await,
        json!("0x02")
    );
    assert_eq!(
        n.call("eth_call", json!([{"to": a, "data": "0x00"}])).await,
        json!("0x00")
    );
}

#[tokio::test]
async fn unknown_blocks_are_header_not_found_for_state_and_null_for_blocks() {
    let n = node().await;
    let a = addr(0x42);
    let (code, msg, _) = n.err("eth_getBalance", json!([a, "0x99"])).await;
    assert_eq!((code, msg.as_str()), (-32000, "header not found"));
    let (code, msg, _) = n.err("eth_call", json!([{"to": a}, "0x3"])).await;
    assert_eq!((code, msg.as_str()), (-32000, "header not found"));
    let (code, msg, _) = n
        .err(
            "eth_getBalance",
            json!([a, {"blockHash": B256::repeat_byte(9)}]),
        )
        .await;
    assert_eq!((code, msg.as_str()), (-32000, "header for hash not found"));
    assert_eq!(
        n.call("eth_getBlockByNumber", json!(["0x99", false])).await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getBlockByHash", json!([B256::repeat_byte(9), false]))
            .await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getBlockTransactionCountByNumber", json!(["0x99"]))
            .await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getUncleCountByBlockNumber", json!(["0x99"]))
            .await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getBlockReceipts", json!(["0x99"])).await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getTransactionByHash", json!([B256::repeat_byte(9)]))
            .await,
        Value::Null
    );
    assert_eq!(
        n.call("eth_getTransactionReceipt", json!([B256::repeat_byte(9)]))
            .await,
        Value::Null
    );

    // Known blocks.
    let b = n
        .call("eth_getBlockByNumber", json!(["latest", true]))
        .await;
    assert_eq!(b["number"], json!("0x2"));
    assert_eq!(b["transactions"][0]["hash"], json!(B256::ZERO));
    let b = n
        .call("eth_getBlockByHash", json!([block_hash(1), false]))
        .await;
    assert_eq!(b["number"], json!("0x1"));
    assert_eq!(
        n.call("eth_getBlockByNumber", json!(["earliest", false]))
            .await["number"],
        json!("0x0")
    );
    assert_eq!(
        n.call("eth_getBlockTransactionCountByHash", json!([block_hash(1)]))
            .await,
        json!("0x1")
    );
    assert_eq!(
        n.call("eth_getUncleCountByBlockHash", json!([block_hash(1)]))
            .await,
        json!("0x0")
    );
    assert_eq!(
        n.call(
            "eth_getTransactionByBlockNumberAndIndex",
            json!(["0x1", "0x0"])
        )
        .await["blockNumber"],
        json!("0x1")
    );
    assert_eq!(
        n.call(
            "eth_getTransactionByBlockHashAndIndex",
            json!([block_hash(1), "0x5"])
        )
        .await,
        Value::Null
    );
    assert_eq!(
        n.call(
            "eth_getBlockReceipts",
            json!([{"blockHash": block_hash(2)}])
        )
        .await[0]["status"],
        json!("0x1")
    );
}

#[tokio::test]
async fn malformed_params_are_invalid_params_with_gethlike_messages() {
    let n = node().await;
    let (code, msg, _) = n.err("eth_getBalance", json!([])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32602, "missing value for required argument 0")
    );
    let (code, msg, _) = n.err("eth_getBalance", json!(["0x1234", "latest"])).await;
    assert_eq!(code, -32602);
    assert!(msg.starts_with("invalid argument 0:"), "{msg}");
    let (code, msg, _) = n.err("eth_getBalance", json!([addr(1), "latest", 3])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32602, "too many arguments, want at most 2")
    );
    let (code, msg, _) = n.err("eth_getBalance", json!([addr(1), "12"])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32602, "invalid argument 1: hex string without 0x prefix")
    );
    let (code, _, _) = n
        .err(
            "eth_getBalance",
            json!([addr(1), {"blockNumber": "0x1", "blockHash": block_hash(1)}]),
        )
        .await;
    assert_eq!(code, -32602);
    let (code, _, _) = n.err("eth_getBlockByNumber", json!(["0xzz", false])).await;
    assert_eq!(code, -32602);
    let (code, _, _) = n.err("eth_sendRawTransaction", json!(["0xnothex"])).await;
    assert_eq!(code, -32602);
    let (code, _, _) = n
        .err("eth_getLogs", json!([{"topics": [1, 2, 3, 4, 5]}]))
        .await;
    assert_eq!(code, -32602);
    let (code, _, _) = n.err("eth_getBalance", json!({"address": addr(1)})).await;
    assert_eq!(code, -32602);
    let (code, msg, _) = n
        .err("eth_call", json!([{"input": "0x01", "data": "0x02"}]))
        .await;
    assert_eq!(code, -32000);
    assert!(
        msg.starts_with("both \"data\" and \"input\" are set"),
        "{msg}"
    );
}

#[tokio::test]
async fn get_logs_matches_addresses_and_topics_with_wildcards_and_or_sets() {
    let n = node().await;
    let n = &n;
    let logs = |f: Value| async move { n.call("eth_getLogs", json!([f])).await };
    let count = |v: Value| v.as_array().unwrap().len();
    assert_eq!(count(logs(json!({"fromBlock": "earliest"})).await), 3);
    // Default range is latest..latest.
    assert_eq!(count(logs(json!({})).await), 1);
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "address": addr(0xaa)})).await),
        2
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "address": [addr(0xaa), addr(0xbb)]})).await),
        3
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "topics": [topic(1)]})).await),
        2
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "topics": [null, topic(2)]})).await),
        2
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "topics": [[topic(1), topic(3)], topic(2)]})).await),
        2
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "topics": [topic(1), topic(2)]})).await),
        1
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x0", "topics": [null, null, topic(2)]})).await),
        0
    );
    assert_eq!(count(logs(json!({"blockHash": block_hash(1)})).await), 2);
    let one = logs(json!({"fromBlock": "0x2", "toBlock": "0x2"})).await;
    assert_eq!(one[0]["address"], json!(addr(0xaa)));
    assert_eq!(one[0]["blockNumber"], json!("0x2"));
    assert_eq!(one[0]["blockHash"], json!(block_hash(2)));
    assert_eq!(one[0]["removed"], json!(false));
    assert_eq!(one[0]["topics"], json!([topic(3), topic(2)]));
    // A range beyond the head stops at the head; one wholly beyond it is empty.
    assert_eq!(
        count(logs(json!({"fromBlock": "0x1", "toBlock": "0x50"})).await),
        3
    );
    assert_eq!(
        count(logs(json!({"fromBlock": "0x40", "toBlock": "0x50"})).await),
        0
    );

    let (code, msg, _) = n
        .err(
            "eth_getLogs",
            json!([{"fromBlock": "0x2", "toBlock": "0x1"}]),
        )
        .await;
    assert_eq!((code, msg.as_str()), (-32000, "invalid block range params"));
    let (code, msg, _) = n
        .err("eth_getLogs", json!([{"blockHash": B256::repeat_byte(9)}]))
        .await;
    assert_eq!((code, msg.as_str()), (-32000, "unknown block"));
    let (code, _, _) = n
        .err(
            "eth_getLogs",
            json!([{"blockHash": block_hash(1), "fromBlock": "0x1"}]),
        )
        .await;
    assert_eq!(code, -32602);
}

#[tokio::test]
async fn get_logs_enforces_range_and_result_limits() {
    let n = node_with(EthRpcConfig {
        max_block_range: 2,
        max_logs: 2,
        ..EthRpcConfig::default()
    })
    .await;
    let (code, msg, _) = n
        .err(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "toBlock": "0x2"}]),
        )
        .await;
    assert_eq!(
        (code, msg.as_str()),
        (-32000, "exceed maximum block range: 2")
    );
    let (code, msg, _) = n
        .err(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": "0x2"}]),
        )
        .await;
    assert_eq!(
        (code, msg.as_str()),
        (-32000, "query returned more than 2 results")
    );
    let ok = n
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": "0x2", "address": addr(0xaa)}]),
        )
        .await;
    assert_eq!(ok.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn block_filter_returns_each_new_block_hash_once() {
    let n = node().await;
    let id = n.call("eth_newBlockFilter", json!([])).await;
    assert!(id.as_str().unwrap().starts_with("0x"));
    assert_eq!(n.call("eth_getFilterChanges", json!([id])).await, json!([]));
    let b3 = n.chain.add_block(addr(1), vec![]);
    let b4 = n.chain.add_block(addr(1), vec![]);
    assert_eq!(
        n.call("eth_getFilterChanges", json!([id])).await,
        json!([block_hash(b3), block_hash(b4)])
    );
    assert_eq!(n.call("eth_getFilterChanges", json!([id])).await, json!([]));
    let b5 = n.chain.add_block(addr(1), vec![]);
    assert_eq!(
        n.call("eth_getFilterChanges", json!([id])).await,
        json!([block_hash(b5)])
    );
}

#[tokio::test]
async fn log_filter_changes_return_only_new_matching_logs() {
    let n = node().await;
    let id = n
        .call(
            "eth_newFilter",
            json!([{"address": addr(0xaa), "topics": [null, topic(2)]}]),
        )
        .await;
    assert_eq!(n.call("eth_getFilterChanges", json!([id])).await, json!([]));
    n.chain.add_block(addr(0xaa), vec![topic(5), topic(2)]); // matches
    n.chain.add_block(addr(0xbb), vec![topic(5), topic(2)]); // other address
    n.chain.add_block(addr(0xaa), vec![topic(5)]); // too few topics
    let changes = n.call("eth_getFilterChanges", json!([id])).await;
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["blockNumber"], json!("0x3"));
    assert_eq!(n.call("eth_getFilterChanges", json!([id])).await, json!([]));
    // getFilterLogs answers the filter's whole range (default latest..latest here).
    let f = n
        .call(
            "eth_newFilter",
            json!([{"fromBlock": "0x0", "address": addr(0xaa)}]),
        )
        .await;
    assert_eq!(
        n.call("eth_getFilterLogs", json!([f]))
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // getFilterLogs on a block filter: not found, as geth.
    let bf = n.call("eth_newBlockFilter", json!([])).await;
    let (code, msg, _) = n.err("eth_getFilterLogs", json!([bf])).await;
    assert_eq!((code, msg.as_str()), (-32000, "filter not found"));
}

#[tokio::test]
async fn pending_transaction_filter_reports_pooled_hashes() {
    let n = node().await;
    let id = n.call("eth_newPendingTransactionFilter", json!([])).await;
    let h = n.call("eth_sendRawTransaction", json!(["0x02aa"])).await;
    assert_eq!(h, json!(keccak256([0x02, 0xaa])));
    assert_eq!(
        n.call("eth_getFilterChanges", json!([id])).await,
        json!([h])
    );
    assert_eq!(n.call("eth_getFilterChanges", json!([id])).await, json!([]));
}

#[tokio::test]
async fn uninstalled_and_expired_filters_are_not_found() {
    let n = node_with(EthRpcConfig {
        filter_timeout: Duration::from_millis(300),
        ..EthRpcConfig::default()
    })
    .await;
    let id = n.call("eth_newBlockFilter", json!([])).await;
    assert_eq!(
        n.call("eth_uninstallFilter", json!([id])).await,
        json!(true)
    );
    assert_eq!(
        n.call("eth_uninstallFilter", json!([id])).await,
        json!(false)
    );
    let (code, msg, _) = n.err("eth_getFilterChanges", json!([id])).await;
    assert_eq!((code, msg.as_str()), (-32000, "filter not found"));

    let polled = n.call("eth_newBlockFilter", json!([])).await;
    let idle = n.call("eth_newBlockFilter", json!([])).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n.call("eth_getFilterChanges", json!([polled])).await;
    }
    let (code, msg, _) = n.err("eth_getFilterChanges", json!([idle])).await;
    assert_eq!((code, msg.as_str()), (-32000, "filter not found"));
    n.call("eth_getFilterChanges", json!([polled])).await;
}

#[tokio::test]
async fn reverts_have_code_3_the_decoded_reason_and_the_data() {
    let n = node().await;
    let (code, msg, data) = n
        .err("eth_call", json!([{"to": addr(1), "input": "0xde"}]))
        .await;
    assert_eq!(code, 3);
    assert_eq!(msg, "execution reverted: not enough tokens");
    assert_eq!(data, Some(json!(error_string("not enough tokens"))));
    // A custom error: no reason, the raw bytes as data.
    let (code, msg, data) = n
        .err("eth_call", json!([{"to": addr(1), "input": "0xcc"}]))
        .await;
    assert_eq!(
        (code, msg.as_str(), data),
        (3, "execution reverted", Some(json!("0x12345678")))
    );
    // Other execution failures: -32000 with the backend's words.
    let (code, msg, _) = n
        .err("eth_call", json!([{"to": addr(1), "input": "0xee"}]))
        .await;
    assert_eq!((code, msg.as_str()), (-32000, "out of gas"));
}

#[tokio::test]
async fn pool_rejections_pass_through_verbatim_as_32000() {
    let n = node().await;
    let (code, msg, _) = n.err("eth_sendRawTransaction", json!(["0x01ff"])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32000, "nonce too low: next nonce 5, tx nonce 1")
    );
}

#[tokio::test]
async fn fee_history_takes_hex_or_decimal_counts_and_clamps() {
    let n = node().await;
    let h = n
        .call("eth_feeHistory", json!(["0x2", "latest", [25.0, 75.0]]))
        .await;
    assert_eq!(h["oldestBlock"], json!("0x1"));
    assert_eq!(h["baseFeePerGas"].as_array().unwrap().len(), 3);
    let h = n.call("eth_feeHistory", json!([2, "0x1"])).await;
    assert_eq!(h["oldestBlock"], json!("0x0"));
    // More blocks than exist: clamped to genesis..newest.
    let h = n.call("eth_feeHistory", json!(["5000", "latest"])).await;
    assert_eq!(h["oldestBlock"], json!("0x0"));
    let (code, msg, _) = n.err("eth_feeHistory", json!(["0x1", "0x99"])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32000, "request beyond head block: requested 153, head 2")
    );
    let (code, msg, _) = n
        .err("eth_feeHistory", json!(["0x1", "latest", [50.0, 10.0]]))
        .await;
    assert_eq!(code, -32000);
    assert!(msg.starts_with("invalid reward percentile"), "{msg}");
}

#[tokio::test]
async fn evm_mine_produces_a_block_and_returns_zero() {
    let n = node().await;
    assert_eq!(n.call("evm_mine", json!([])).await, json!("0x0"));
    assert_eq!(n.call("eth_blockNumber", json!([])).await, json!("0x3"));
}

#[tokio::test]
async fn ws_subscriptions_deliver_new_heads_logs_and_pending_hashes() {
    let n = node().await;
    let ws = WsClientBuilder::default()
        .build(format!("ws://{}", n.addr))
        .await
        .unwrap();
    let mut heads = ws
        .subscribe::<Value, _>("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe")
        .await
        .unwrap();
    let mut logs = ws
        .subscribe::<Value, _>(
            "eth_subscribe",
            rpc_params!["logs", json!({"address": addr(0xaa), "topics": [topic(7)]})],
            "eth_unsubscribe",
        )
        .await
        .unwrap();
    let mut pending = ws
        .subscribe::<Value, _>(
            "eth_subscribe",
            rpc_params!["newPendingTransactions"],
            "eth_unsubscribe",
        )
        .await
        .unwrap();
    // Ids are geth-shaped hex strings.
    match heads.kind() {
        jsonrpsee::core::client::SubscriptionKind::Subscription(
            jsonrpsee::types::SubscriptionId::Str(s),
        ) => {
            assert!(s.starts_with("0x"), "{s}")
        }
        other => panic!("unexpected id {other:?}"),
    }

    n.chain.add_block(addr(0xbb), vec![topic(7)]); // block 3: no matching log
    n.chain.add_block(addr(0xaa), vec![topic(7), topic(1)]); // block 4: matches

    let h3 = next(&mut heads).await;
    assert_eq!(h3["number"], json!("0x3"));
    assert_eq!(h3["hash"], json!(block_hash(3)));
    assert_eq!(h3["parentHash"], json!(block_hash(2)));
    assert!(
        h3.get("transactions").is_none() && h3.get("uncles").is_none(),
        "{h3}"
    );
    assert_eq!(next(&mut heads).await["number"], json!("0x4"));

    let l = next(&mut logs).await;
    assert_eq!(l["blockNumber"], json!("0x4"));
    assert_eq!(l["address"], json!(addr(0xaa)));
    assert_eq!(l["removed"], json!(false));

    let h = n.call("eth_sendRawTransaction", json!(["0x02bb"])).await;
    assert_eq!(next(&mut pending).await, h);

    // Unknown kinds are refused as geth does; the connection stays usable.
    let e = ws
        .subscribe::<Value, _>("eth_subscribe", rpc_params!["bogus"], "eth_unsubscribe")
        .await
        .err()
        .unwrap();
    match e {
        jsonrpsee::core::ClientError::Call(obj) => {
            assert_eq!(obj.code(), -32601);
            assert_eq!(obj.message(), "no \"bogus\" subscription in eth namespace");
        }
        other => panic!("{other:?}"),
    }
    heads.unsubscribe().await.unwrap();
    let bn: Value = ws.request("eth_blockNumber", rpc_params![]).await.unwrap();
    assert_eq!(bn, json!("0x4"));
}

#[tokio::test]
async fn protocol_errors_are_clear_and_the_server_survives_them() {
    let n = node().await;
    // Unknown method: geth's message, alone and in a batch.
    let (code, msg, _) = n.err("eth_bogus", json!([])).await;
    assert_eq!(
        (code, msg.as_str()),
        (
            -32601,
            "the method eth_bogus does not exist/is not available"
        )
    );
    let r = n
        .post(json!([{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"nope_x"}]).to_string())
        .await;
    let arr = r.as_array().unwrap();
    let by_id = |id: i64| arr.iter().find(|x| x["id"] == json!(id)).unwrap().clone();
    assert_eq!(by_id(1)["result"], json!("0x7a69"));
    assert_eq!(
        by_id(2)["error"]["message"],
        json!("the method nope_x does not exist/is not available")
    );

    // Malformed JSON: -32700.
    let r = n.post("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":").await;
    assert_eq!(r["error"]["code"], json!(-32700));
    // Not a request: -32600.
    let r = n.post("{\"id\":1}").await;
    assert_eq!(r["error"]["code"], json!(-32600));

    // A batch of 1001 calls is refused with one error.
    let batch: Vec<Value> = (0..1001)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"eth_chainId"}))
        .collect();
    let r = n.post(serde_json::to_string(&batch).unwrap()).await;
    assert_eq!(r["error"]["code"], json!(-32010), "{r}");
    assert_eq!(
        r["error"]["message"],
        json!("The batch request was too large")
    );
    // 1000 is fine.
    let r = n.post(serde_json::to_string(&batch[..1000]).unwrap()).await;
    assert_eq!(r.as_array().unwrap().len(), 1000);

    // A 6 MiB body is refused.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_sendRawTransaction\",\"params\":[\"0x{}\"]}}",
        "ab".repeat(3 * 1024 * 1024)
    );
    let resp = n
        .http
        .post(n.url())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["error"]["code"], json!(-32007), "{r}");
    assert_eq!(r["error"]["message"], json!("Request is too big"));

    // Subscriptions need a WebSocket: geth's answer over HTTP.
    let (code, msg, _) = n.err("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32601, "notifications not supported")
    );

    // Still answering.
    assert_eq!(n.call("eth_chainId", json!([])).await, json!("0x7a69"));
}

/// A batch of submissions reaches the backend with every sender already recovered (on the
/// machine's cores, by `PreRecover`), in order; bytes that are no transaction get no sender and
/// a single call recovers nothing ahead.
#[tokio::test]
async fn a_batch_of_submissions_arrives_with_senders_recovered() {
    let n = node().await;
    // EIP-155's example transaction, signed by 0x9d8A62f6….
    let good = "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83";
    let batch: Vec<Value> = (0..12)
        .map(|i| {
            let raw = if i == 5 { "0xc0ffee" } else { good };
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]})
        })
        .collect();
    let answer = n.post(serde_json::to_string(&batch).unwrap()).await;
    assert_eq!(answer.as_array().map(Vec::len), Some(12), "{answer}");
    let seen = std::mem::take(&mut *n.chain.recovered.lock());
    assert_eq!(seen.len(), 12);
    let signer: alloy_primitives::Address = "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
        .parse()
        .unwrap();
    let parallel = std::thread::available_parallelism().map_or(1, |p| p.get()) > 1;
    for (i, r) in seen.iter().enumerate() {
        let expected = (i != 5 && parallel).then_some(signer);
        assert_eq!(r.map(|r| r.sender), expected, "call #{i}");
    }
    // One call alone: recovered by the backend as before.
    n.post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [good]})
            .to_string(),
    )
    .await;
    assert_eq!(*n.chain.recovered.lock(), vec![None]);
}
