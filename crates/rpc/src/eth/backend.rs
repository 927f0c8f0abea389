//! What the `eth_` namespace reads and writes. The node implements [`EthBackend`] over the L2
//! chain and the sequencer; this crate only parses, resolves tags, keeps filters and
//! subscriptions, and maps errors to geth's codes.

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{
    BlockOverrides, EIP1186AccountProofResponse, FeeHistory, Filter, Log, TransactionRequest,
};
use serde_json::Value;
use tokio::sync::broadcast;

/// One of anvil's direct state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// `anvil_setBalance`.
    Balance(U256),
    /// `anvil_setNonce`.
    Nonce(u64),
    /// `anvil_setCode`.
    Code(Bytes),
    /// `anvil_setStorageAt`: slot, value.
    Storage(U256, U256),
}

/// A block tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// The newest block.
    Latest,
    /// The block being built (reads as latest plus the pool's nonces).
    Pending,
    /// Genesis.
    Earliest,
    /// Newest block covered by a keystone published in Bitcoin's best chain.
    Safe,
    /// Newest superfinal block.
    Finalized,
}

/// The state a read is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAt {
    /// After block `n`.
    Block(u64),
    /// After the newest block, with pending pool transactions counted where it matters
    /// (`eth_getTransactionCount(.., "pending")`).
    Pending,
}

/// Why the backend could not answer; the RPC layer maps each to geth's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The pool refused a transaction; the message is geth's ("nonce too low: …"). Code -32000.
    #[error("{0}")]
    TxRejected(String),
    /// `eth_call`/`eth_estimateGas` reverted. Code 3, "execution reverted[: reason]", data = the
    /// revert bytes.
    #[error("execution reverted")]
    Reverted {
        /// The revert data.
        data: Bytes,
    },
    /// Execution failed otherwise ("out of gas", "insufficient funds for gas * price + value",
    /// "gas required exceeds allowance (N)"). Code -32000.
    #[error("{0}")]
    Execution(String),
    /// A block or the state at it is not available ("header not found", "missing trie node").
    /// Code -32000, as geth.
    #[error("{0}")]
    NotFound(String),
    /// A parameter is wrong in a way only the backend can see. Code -32602.
    #[error("{0}")]
    InvalidParams(String),
    /// Storage or another internal failure. Code -32603.
    #[error("{0}")]
    Internal(String),
}

/// `eth_createAccessList`'s answer, as geth writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessListResult {
    /// Accounts and slots touched (the sender, the callee and precompiles left out).
    pub access_list: alloy_rpc_types_eth::AccessList,
    /// Gas the call uses with the list attached.
    #[serde(with = "alloy_serde::quantity")]
    pub gas_used: u64,
    /// Why the call failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of a backend call.
pub type BackendResult<T> = Result<T, BackendError>;

/// The L2 node as the `eth_`, `net_` and `txpool_` namespaces see it. Every method is
/// synchronous (called from blocking tasks) and must not panic on any input.
pub trait EthBackend: Send + Sync + 'static {
    /// EIP-155 chain id.
    fn chain_id(&self) -> u64;
    /// The block number a tag names (`Pending` names the latest block).
    fn tag(&self, tag: Tag) -> u64;
    /// The number of the canonical block with this hash.
    fn block_number_by_hash(&self, hash: B256) -> BackendResult<Option<u64>>;
    /// Block `number` as geth shows it, with full transaction objects or only their hashes.
    fn block(&self, number: u64, full: bool) -> BackendResult<Option<Value>>;
    /// How many transactions block `number` has.
    fn block_tx_count(&self, number: u64) -> BackendResult<Option<u64>>;
    /// A transaction by hash, mined (with block fields) or pending in the pool (block fields null).
    fn transaction_by_hash(&self, hash: B256) -> BackendResult<Option<Value>>;
    /// The `index`th transaction of block `number`.
    fn transaction_by_block_and_index(
        &self,
        number: u64,
        index: u64,
    ) -> BackendResult<Option<Value>>;
    /// The receipt of a mined transaction.
    fn receipt(&self, hash: B256) -> BackendResult<Option<Value>>;
    /// All receipts of block `number` (`eth_getBlockReceipts`).
    fn block_receipts(&self, number: u64) -> BackendResult<Option<Vec<Value>>>;
    /// Balance in wei.
    fn balance(&self, address: Address, at: StateAt) -> BackendResult<U256>;
    /// Nonce (`Pending`: counting the pool's pending transactions).
    fn transaction_count(&self, address: Address, at: StateAt) -> BackendResult<u64>;
    /// Contract code.
    fn code(&self, address: Address, at: StateAt) -> BackendResult<Bytes>;
    /// One storage slot.
    fn storage(&self, address: Address, slot: U256, at: StateAt) -> BackendResult<B256>;
    /// `eth_call`: returns the output, or [`BackendError::Reverted`].
    fn call(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
        block_overrides: Option<BlockOverrides>,
    ) -> BackendResult<Bytes>;
    /// `eth_estimateGas`: the least gas limit with which the call succeeds.
    fn estimate_gas(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
    ) -> BackendResult<u64>;
    /// `eth_createAccessList`: what the call touches, the gas it uses with that list, and the
    /// revert or halt reason if it fails (geth answers a failing call with `error`, not an
    /// RPC error).
    fn create_access_list(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
    ) -> BackendResult<AccessListResult>;
    /// Adds a signed EIP-2718 transaction to the pool; returns its hash.
    fn send_raw_transaction(&self, raw: Bytes) -> BackendResult<B256>;
    /// [`Self::send_raw_transaction`] with the sender already recovered by this process (from
    /// the same bytes, [`super::PreRecover`]); a backend may skip its own recovery when the hash
    /// matches.
    fn send_raw_transaction_recovered(
        &self,
        raw: Bytes,
        recovered: Option<super::RecoveredSender>,
    ) -> BackendResult<B256> {
        let _ = recovered;
        self.send_raw_transaction(raw)
    }
    /// Logs of blocks `from..=to` matching `filter`'s addresses and topics (the block range in
    /// `filter` is already resolved into `from`/`to`). At most `limit` logs, else an error.
    fn logs(&self, from: u64, to: u64, filter: &Filter, limit: usize) -> BackendResult<Vec<Log>>;
    /// `eth_feeHistory` over `count` blocks ending at `newest`.
    fn fee_history(
        &self,
        count: u64,
        newest: u64,
        reward_percentiles: Option<Vec<f64>>,
    ) -> BackendResult<FeeHistory>;
    /// `eth_gasPrice`: suggested legacy gas price (base fee + suggested tip).
    fn gas_price(&self) -> BackendResult<U256>;
    /// `eth_maxPriorityFeePerGas`.
    fn max_priority_fee(&self) -> BackendResult<U256>;
    /// `eth_getProof` at block `number` (only recent state may be available).
    fn proof(
        &self,
        address: Address,
        slots: Vec<B256>,
        number: u64,
    ) -> BackendResult<EIP1186AccountProofResponse>;
    /// `eth_sendTransaction`: signs `tx` with the key of its `from` (one of the devnet's
    /// accounts), filling nonce, gas and fees as anvil does, and submits it.
    fn send_transaction(&self, tx: TransactionRequest) -> BackendResult<B256> {
        let _ = tx;
        Err(BackendError::Execution("unknown account".into()))
    }
    /// `eth_accounts`: the devnet's unlocked dev accounts (empty on a node).
    fn accounts(&self) -> Vec<Address>;
    /// `eth_syncing`: `false`, or geth's object while a follower catches up.
    fn syncing(&self) -> Value;
    /// `txpool_status`: `{"pending": "0x..", "queued": "0x.."}`.
    fn txpool_status(&self) -> Value;
    /// `txpool_content`: geth's shape.
    fn txpool_content(&self) -> Value;
    /// Numbers of blocks as they are committed (feeds newHeads, logs, filters).
    fn subscribe_blocks(&self) -> broadcast::Receiver<u64>;
    /// Hashes of transactions as they enter the pool.
    fn subscribe_pending(&self) -> broadcast::Receiver<B256>;
    /// Anvil/hardhat `evm_mine`: produce a block now (devnet only; others return an error).
    fn mine(&self) -> BackendResult<u64>;
    /// anvil's `evm_increaseTime`: later blocks run `seconds` ahead; the total adjustment
    /// (devnet only).
    fn increase_time(&self, seconds: u64) -> BackendResult<u64> {
        let _ = seconds;
        Err(BackendError::Execution(
            "only the devnet's sequencer keeps anvil's clock".into(),
        ))
    }
    /// anvil's `evm_setNextBlockTimestamp` (devnet only).
    fn set_next_block_timestamp(&self, timestamp: u64) -> BackendResult<()> {
        let _ = timestamp;
        Err(BackendError::Execution(
            "only the devnet's sequencer keeps anvil's clock".into(),
        ))
    }
    /// anvil's `anvil_setBalance` / `setNonce` / `setCode` / `setStorageAt` (devnet only): the
    /// change holds once this returns.
    fn set_state(&self, address: Address, change: StateChange) -> BackendResult<()> {
        let _ = (address, change);
        Err(BackendError::Execution(
            "only the devnet's sequencer changes state directly".into(),
        ))
    }
    /// anvil's `anvil_impersonateAccount` (`on`) and `anvil_stopImpersonatingAccount`
    /// (devnet only): `eth_sendTransaction` from `address` needs no key.
    fn impersonate(&self, address: Address, on: bool) -> BackendResult<()> {
        let _ = (address, on);
        Err(BackendError::Execution(
            "only the devnet's sequencer impersonates accounts".into(),
        ))
    }
    /// anvil's `anvil_autoImpersonateAccount` (devnet only): every account is impersonated.
    fn auto_impersonate(&self, on: bool) -> BackendResult<()> {
        let _ = on;
        Err(BackendError::Execution(
            "only the devnet's sequencer impersonates accounts".into(),
        ))
    }
    /// anvil's `evm_snapshot`: the snapshot id (devnet only).
    fn snapshot(&self) -> BackendResult<u64> {
        Err(BackendError::Execution(
            "only the devnet's sequencer takes snapshots".into(),
        ))
    }
    /// anvil's `evm_revert`: `false` for an unknown id (devnet only).
    fn revert(&self, id: u64) -> BackendResult<bool> {
        let _ = id;
        Err(BackendError::Execution(
            "only the devnet's sequencer takes snapshots".into(),
        ))
    }
    /// New keystones as JSON (`eth_subscribe("newKeystones")`); `None` where there are none.
    fn subscribe_keystones(&self) -> Option<broadcast::Receiver<Value>> {
        None
    }
}
