//! The node's [`EthBackend`]: the `eth_` namespace answered from the L2 chain, the sequencer's
//! pool (devnet) or a follower.

use std::sync::Arc;

use alloy_consensus::Transaction as _;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{
    BlockOverrides, EIP1186AccountProofResponse, EIP1186StorageProof, FeeHistory, Filter, Log,
    TransactionRequest,
};
use hemi_btc_view::BitcoinView;
use hemi_chain::{
    created_address, gas_used_by, BlockWithReceipts, CallOutcome, Chain, ChainError, L2Receipt,
    L2Tx, SignedTx, StoredBlock,
};
use hemi_rpc::eth::backend::{BackendError, BackendResult, EthBackend, StateAt, Tag};
use hemi_sequencer::{Sequencer, SubmitError};
use revm::context::TxEnv;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Suggested priority fee (1 gwei, as anvil suggests).
const SUGGESTED_TIP: u128 = 1_000_000_000;
/// Largest gas an `eth_call`/`eth_estimateGas` may use (geth's RPCGasCap).
pub(crate) const CALL_GAS_CAP: u64 = 50_000_000;

/// The node as `eth_` sees it.
pub struct NodeBackend {
    /// The L2 chain.
    pub chain: Arc<Chain>,
    /// Our Bitcoin index (calls read it as of their block's pin).
    pub bitcoin: Arc<dyn BitcoinView>,
    /// The Bitcoin network (the precompiles parse addresses for it).
    pub network: bitcoin::Network,
    /// The sequencer (devnet); `None` on a follower.
    pub sequencer: Option<Arc<Sequencer>>,
    /// New block numbers (`eth_subscribe("newHeads")`, filters).
    pub blocks: broadcast::Sender<u64>,
    /// New pool transactions (`newPendingTransactions`).
    pub pending: broadcast::Sender<B256>,
    /// What `eth_accounts` lists (the devnet's accounts; none on a node).
    pub accounts: Vec<Address>,
    /// Their keys: `eth_sendTransaction` signs with them.
    pub dev_keys: std::collections::HashMap<Address, B256>,
    /// Bitcoin finality: gives `safe` and `finalized` their meaning.
    pub finality: Arc<hemi_finality::FinalityTracker>,
    /// New keystones as JSON (`eth_subscribe("newKeystones")`).
    pub keystones: broadcast::Sender<Value>,
    /// The follower (node --follow): its catch-up is `eth_syncing`.
    pub follower: Option<Arc<hemi_sync::Follower>>,
    /// The p2p network: a follower gossips the transactions it is sent to the sequencers.
    pub net: Option<Arc<hemi_net::Network>>,
}

fn chain_err(e: ChainError) -> BackendError {
    match e {
        ChainError::UnknownBlock(_) => BackendError::NotFound("header not found".into()),
        ChainError::Call(m) => BackendError::Execution(m),
        ChainError::BitcoinNotReady(m) => {
            BackendError::Execution(format!("Bitcoin not ready: {m}"))
        }
        other => BackendError::Internal(other.to_string()),
    }
}

fn hex_u64(n: u64) -> Value {
    json!(format!("0x{n:x}"))
}

fn hex_u128(n: u128) -> Value {
    json!(format!("0x{n:x}"))
}

/// A system transaction (`0x7A`–`0x7F`) as eth_getTransaction* shows it: from the system
/// address, no gas price, no signature, its type byte.
fn system_tx_json(
    tx: &SignedTx,
    block: Option<&StoredBlock>,
    index: usize,
    to: impl Into<Option<alloy_primitives::Address>>,
    gas: u64,
    input: alloy_primitives::Bytes,
) -> Value {
    json!({
        "type": format!("0x{:02x}", tx.tx.tx_type()),
        "hash": tx.hash,
        "from": tx.sender,
        "to": to.into(),
        "gas": hex_u64(gas),
        "gasPrice": "0x0",
        "value": "0x0",
        "nonce": "0x0",
        "input": input,
        "blockHash": block.map(|b| b.hash),
        "blockNumber": block.map(|b| hex_u64(b.header.number)),
        "transactionIndex": block.map(|_| hex_u64(index as u64)),
        "blockTimestamp": block.map(|b| hex_u64(b.header.timestamp)),
        "v": "0x0", "r": "0x0", "s": "0x0",
    })
}

impl NodeBackend {
    /// The base fee of the block after the head.
    fn next_base_fee(&self) -> BackendResult<u64> {
        let (head, _) = self.chain.head();
        let h = self
            .chain
            .header(head)
            .map_err(chain_err)?
            .ok_or_else(|| BackendError::NotFound("header not found".into()))?;
        Ok(Chain::next_base_fee(&h))
    }

    fn number(&self, at: StateAt) -> u64 {
        match at {
            StateAt::Block(n) => n,
            StateAt::Pending => self.chain.head().0,
        }
    }

    /// The devnet's sequencer, for impersonation (refused where the chain takes no devnet
    /// transactions).
    fn impersonator(&self) -> BackendResult<&Arc<Sequencer>> {
        match &self.sequencer {
            Some(seq) if self.chain.spec().dev_state => Ok(seq),
            _ => Err(BackendError::Execution(
                "only a regtest devnet impersonates accounts".into(),
            )),
        }
    }

    fn tx_json(&self, block: Option<&StoredBlock>, index: usize, tx: &SignedTx) -> Value {
        let base_fee = block.and_then(|b| b.header.base_fee_per_gas);
        match &tx.tx {
            // An impersonated transaction shows as anvil shows one: its own type and fields, from
            // the impersonated account, with the 0x79 transaction's hash (for an Ethereum
            // transaction the hash is its envelope's anyway).
            L2Tx::Eth(env) | L2Tx::Impersonated(hemi_chain::ImpersonatedTx { tx: env, .. }) => {
                let rpc = alloy_rpc_types_eth::Transaction {
                    inner: alloy_consensus::transaction::Recovered::new_unchecked(
                        env.clone(),
                        tx.sender,
                    ),
                    block_hash: block.map(|b| b.hash),
                    block_number: block.map(|b| b.header.number),
                    transaction_index: block.map(|_| index as u64),
                    effective_gas_price: block.map(|_| env.effective_gas_price(base_fee)),
                    block_timestamp: block.map(|b| b.header.timestamp),
                };
                let mut v = serde_json::to_value(rpc).unwrap_or(Value::Null);
                v["hash"] = json!(tx.hash);
                v
            }
            L2Tx::BtcAttributes(sys) => {
                system_tx_json(tx, block, index, sys.to, sys.gas, sys.data.clone())
            }
            L2Tx::PopPayout(_) => system_tx_json(
                tx,
                block,
                index,
                hemi_chain::pop_rewards::POP_REWARDS_ADDRESS,
                0,
                // The payout list, RLP: [keystone, [[miner, amount, relHeight, btcTxid], …]].
                alloy_primitives::Bytes::from(tx.tx.encoded_2718()[1..].to_vec()),
            ),
            // The changes, RLP: [block number, [[address, kind, key, value], …]].
            L2Tx::DevState(_) => system_tx_json(
                tx,
                block,
                index,
                alloy_primitives::Address::ZERO,
                0,
                alloy_primitives::Bytes::from(tx.tx.encoded_2718()[1..].to_vec()),
            ),
            L2Tx::TunnelActivation(_) => system_tx_json(
                tx,
                block,
                index,
                hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS,
                0,
                // The parameters, RLP: [vault output key, fee, minimum, confirmations].
                alloy_primitives::Bytes::from(tx.tx.encoded_2718()[1..].to_vec()),
            ),
            // What the chain called: confirmDeposit(txid, vout).
            L2Tx::Deposit(d) => system_tx_json(
                tx,
                block,
                index,
                hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS,
                0,
                hemi_tunnel::contracts::confirm_deposit_calldata(d.txid, d.vout),
            ),
            // finalizeWithdrawal(txid).
            L2Tx::Payout(p) => system_tx_json(
                tx,
                block,
                index,
                hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS,
                0,
                hemi_tunnel::contracts::finalize_withdrawal_calldata(p.txid),
            ),
        }
    }

    fn block_json(&self, block: &StoredBlock, full: bool) -> Value {
        let header = alloy_rpc_types_eth::Header {
            hash: block.hash,
            inner: block.header.clone(),
            total_difficulty: Some(U256::ZERO),
            size: Some(U256::from(block.size())),
        };
        let mut v = serde_json::to_value(header).unwrap_or(Value::Null);
        v["transactions"] = if full {
            Value::Array(
                block
                    .txs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| self.tx_json(Some(block), i, t))
                    .collect(),
            )
        } else {
            Value::Array(block.txs.iter().map(|t| json!(t.hash)).collect())
        };
        v["uncles"] = json!([]);
        v
    }

    fn receipt_json(
        &self,
        block: &StoredBlock,
        receipts: &[L2Receipt],
        index: usize,
    ) -> Option<Value> {
        let tx = block.txs.get(index)?;
        let r = receipts.get(index)?;
        let first_log: usize = receipts[..index].iter().map(|r| r.receipt.logs.len()).sum();
        let logs: Vec<Value> = r
            .receipt
            .logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "address": l.address,
                    "topics": l.data.topics(),
                    "data": l.data.data,
                    "blockNumber": hex_u64(block.header.number),
                    "blockHash": block.hash,
                    "blockTimestamp": hex_u64(block.header.timestamp),
                    "transactionHash": tx.hash,
                    "transactionIndex": hex_u64(index as u64),
                    "logIndex": hex_u64((first_log + i) as u64),
                    "removed": false,
                })
            })
            .collect();
        let (to, price) = match &tx.tx {
            L2Tx::Eth(env) | L2Tx::Impersonated(hemi_chain::ImpersonatedTx { tx: env, .. }) => (
                env.kind().to().copied(),
                env.effective_gas_price(block.header.base_fee_per_gas),
            ),
            L2Tx::BtcAttributes(sys) => (sys.to, 0),
            L2Tx::PopPayout(_) => (Some(hemi_chain::pop_rewards::POP_REWARDS_ADDRESS), 0),
            L2Tx::DevState(_) => (Some(alloy_primitives::Address::ZERO), 0),
            L2Tx::TunnelActivation(_) | L2Tx::Deposit(_) | L2Tx::Payout(_) => {
                (Some(hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS), 0)
            }
        };
        Some(json!({
            "transactionHash": tx.hash,
            "transactionIndex": hex_u64(index as u64),
            "blockHash": block.hash,
            "blockNumber": hex_u64(block.header.number),
            "blockTimestamp": hex_u64(block.header.timestamp),
            "from": tx.sender,
            "to": to,
            "cumulativeGasUsed": hex_u64(r.receipt.cumulative_gas_used),
            "gasUsed": hex_u64(gas_used_by(receipts, index)),
            "effectiveGasPrice": hex_u128(price),
            // No blob transactions here: the blob base fee stays at its floor, 1 wei (what
            // anvil reports on every receipt).
            "blobGasPrice": "0x1",
            "contractAddress": created_address(tx),
            "logs": logs,
            "logsBloom": r.bloom(),
            "type": hex_u64(u64::from(r.tx_type)),
            "status": if r.receipt.status.coerce_status() { "0x1" } else { "0x0" },
        }))
    }

    fn tx_env(&self, req: &TransactionRequest, gas_cap: u64) -> TxEnv {
        tx_env_of(self.chain.spec().chain_id, req, gas_cap)
    }

    fn run_call(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        timestamp: Option<u64>,
    ) -> BackendResult<CallOutcome> {
        let pin = hemi_chain::pin::pin_for(&self.chain, &self.bitcoin, self.network, number)
            .map_err(chain_err)?;
        self.chain
            .call(number, tx, overrides, pin, timestamp)
            .map_err(chain_err)
    }

    fn block_at(&self, number: u64) -> BackendResult<Option<Arc<BlockWithReceipts>>> {
        self.chain.block_with_receipts(number).map_err(chain_err)
    }
}

impl EthBackend for NodeBackend {
    fn chain_id(&self) -> u64 {
        self.chain.spec().chain_id
    }

    fn tag(&self, tag: Tag) -> u64 {
        match tag {
            Tag::Earliest => 0,
            Tag::Latest | Tag::Pending => self.chain.head().0,
            // Newest block covered by a keystone published in Bitcoin's best chain.
            Tag::Safe => self.finality.safe().min(self.chain.head().0),
            // Newest superfinal block (genesis while there is none).
            Tag::Finalized => self.finality.finalized().min(self.chain.head().0),
        }
    }

    fn block_number_by_hash(&self, hash: B256) -> BackendResult<Option<u64>> {
        self.chain.number_of(&hash).map_err(chain_err)
    }

    fn block(&self, number: u64, full: bool) -> BackendResult<Option<Value>> {
        Ok(self
            .block_at(number)?
            .map(|b| self.block_json(&b.block, full)))
    }

    fn block_tx_count(&self, number: u64) -> BackendResult<Option<u64>> {
        Ok(self.block_at(number)?.map(|b| b.block.txs.len() as u64))
    }

    fn transaction_by_hash(&self, hash: B256) -> BackendResult<Option<Value>> {
        if let Some((n, i)) = self.chain.tx_location(&hash).map_err(chain_err)? {
            return self.transaction_by_block_and_index(n, i);
        }
        let Some(seq) = &self.sequencer else {
            return Ok(None);
        };
        Ok(seq.with_pool(|p| {
            p.get(&hash).map(|tx| {
                self.tx_json(
                    None,
                    0,
                    &SignedTx {
                        tx: L2Tx::Eth(tx.envelope().clone()),
                        hash,
                        sender: tx.sender(),
                    },
                )
            })
        }))
    }

    fn transaction_by_block_and_index(
        &self,
        number: u64,
        index: u64,
    ) -> BackendResult<Option<Value>> {
        let Some(cached) = self.block_at(number)? else {
            return Ok(None);
        };
        let block = &cached.block;
        let i = index as usize;
        Ok(block.txs.get(i).map(|t| self.tx_json(Some(block), i, t)))
    }

    fn receipt(&self, hash: B256) -> BackendResult<Option<Value>> {
        let Some((n, i)) = self.chain.tx_location(&hash).map_err(chain_err)? else {
            return Ok(None);
        };
        let Some(cached) = self.block_at(n)? else {
            return Ok(None);
        };
        let block = &cached.block;
        let receipts = &cached.receipts;
        Ok(self.receipt_json(block, receipts, i as usize))
    }

    fn block_receipts(&self, number: u64) -> BackendResult<Option<Vec<Value>>> {
        let Some(cached) = self.block_at(number)? else {
            return Ok(None);
        };
        let block = &cached.block;
        let receipts = &cached.receipts;
        Ok(Some(
            (0..block.txs.len())
                .filter_map(|i| self.receipt_json(block, receipts, i))
                .collect(),
        ))
    }

    fn balance(&self, address: Address, at: StateAt) -> BackendResult<U256> {
        let view = self.chain.state_at(self.number(at)).map_err(chain_err)?;
        Ok(view
            .account(&address)
            .map_err(chain_err)?
            .map(|a| a.balance)
            .unwrap_or_default())
    }

    fn transaction_count(&self, address: Address, at: StateAt) -> BackendResult<u64> {
        let view = self.chain.state_at(self.number(at)).map_err(chain_err)?;
        let nonce = view
            .account(&address)
            .map_err(chain_err)?
            .map(|a| a.nonce)
            .unwrap_or_default();
        if at != StateAt::Pending {
            return Ok(nonce);
        }
        let Some(seq) = &self.sequencer else {
            return Ok(nonce);
        };
        Ok(seq.with_pool(|p| p.pending_nonce(&address).map_or(nonce, |n| n.max(nonce))))
    }

    fn code(&self, address: Address, at: StateAt) -> BackendResult<Bytes> {
        let view = self.chain.state_at(self.number(at)).map_err(chain_err)?;
        view.account_code(&address).map_err(chain_err)
    }

    fn storage(&self, address: Address, slot: U256, at: StateAt) -> BackendResult<B256> {
        let view = self.chain.state_at(self.number(at)).map_err(chain_err)?;
        let v = view
            .storage(&address, &B256::from(slot.to_be_bytes::<32>()))
            .map_err(chain_err)?;
        Ok(B256::from(v.to_be_bytes::<32>()))
    }

    fn call(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
        block_overrides: Option<BlockOverrides>,
    ) -> BackendResult<Bytes> {
        let number = self.number(at);
        let tx = self.tx_env(&request, CALL_GAS_CAP);
        let time = block_overrides.and_then(|b| b.time);
        match self.run_call(number, tx, state_overrides.as_ref(), time)? {
            CallOutcome::Success { output, .. } => Ok(output),
            CallOutcome::Revert { output, .. } => Err(BackendError::Reverted { data: output }),
            CallOutcome::Halt { reason, .. } => Err(BackendError::Execution(reason)),
        }
    }

    fn estimate_gas(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
    ) -> BackendResult<u64> {
        let number = self.number(at);
        let cap = request
            .gas
            .unwrap_or(self.chain.spec().gas_limit)
            .min(CALL_GAS_CAP);
        let overrides = state_overrides.as_ref();
        let try_gas = |gas: u64| -> BackendResult<CallOutcome> {
            let mut tx = self.tx_env(&request, cap);
            tx.gas_limit = gas;
            self.run_call(number, tx, overrides, None)
        };
        let used = match try_gas(cap)? {
            CallOutcome::Success { gas_used, .. } => gas_used,
            CallOutcome::Revert { output, .. } => {
                return Err(BackendError::Reverted { data: output })
            }
            CallOutcome::Halt { reason, .. } => {
                return Err(BackendError::Execution(if reason == "out of gas" {
                    format!("gas required exceeds allowance ({cap})")
                } else {
                    reason
                }))
            }
        };
        // Binary search the least limit that succeeds (refunds and the 63/64 rule make
        // `used` a lower bound, not the answer).
        let mut lo = used.saturating_sub(1).max(20_999);
        let mut hi = cap;
        if matches!(try_gas(used)?, CallOutcome::Success { .. }) {
            return Ok(used);
        }
        lo = lo.max(used);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            match try_gas(mid)? {
                CallOutcome::Success { .. } => hi = mid,
                _ => lo = mid,
            }
        }
        Ok(hi)
    }

    fn create_access_list(
        &self,
        request: TransactionRequest,
        at: StateAt,
        state_overrides: Option<StateOverride>,
    ) -> BackendResult<hemi_rpc::eth::AccessListResult> {
        let number = self.number(at);
        let tx = self.tx_env(&request, CALL_GAS_CAP);
        let pin = hemi_chain::pin::pin_for(&self.chain, &self.bitcoin, self.network, number)
            .map_err(chain_err)?;
        let (access_list, outcome) = self
            .chain
            .create_access_list(number, tx, state_overrides.as_ref(), pin)
            .map_err(chain_err)?;
        let (gas_used, error) = match outcome {
            CallOutcome::Success { gas_used, .. } => (gas_used, None),
            CallOutcome::Revert { gas_used, .. } => (gas_used, Some("execution reverted".into())),
            CallOutcome::Halt { reason, gas_used } => (gas_used, Some(reason)),
        };
        Ok(hemi_rpc::eth::AccessListResult {
            access_list,
            gas_used,
            error,
        })
    }

    fn send_transaction(&self, req: TransactionRequest) -> BackendResult<B256> {
        use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
        let from = req
            .from
            .ok_or_else(|| BackendError::InvalidParams("from is required".into()))?;
        let secret = self.dev_keys.get(&from).copied();
        let impersonated = secret.is_none()
            && self
                .sequencer
                .as_ref()
                .is_some_and(|s| s.is_impersonated(&from));
        if secret.is_none() && !impersonated {
            // geth's words for an account it holds no key of.
            return Err(BackendError::Execution("unknown account".into()));
        }
        let chain_id = self.chain.spec().chain_id;
        let nonce = match req.nonce {
            Some(n) => n,
            None => self.transaction_count(from, StateAt::Pending)?,
        };
        let gas_limit = match req.gas {
            Some(g) => g,
            None => self.estimate_gas(req.clone(), StateAt::Pending, None)?,
        };
        let to = req.to.unwrap_or(alloy_primitives::TxKind::Create);
        let value = req.value.unwrap_or_default();
        let input = req.input.input().cloned().unwrap_or_default();
        let base_fee = u128::from(self.next_base_fee()?);
        let sign = |hash: B256| match secret {
            Some(secret) => alloy_consensus::crypto::secp256k1::sign_message(secret, hash)
                .map_err(|e| BackendError::Execution(format!("signing: {e}"))),
            // An impersonated account's transaction carries no signature of its own.
            None => Ok(alloy_primitives::Signature::new(
                U256::ZERO,
                U256::ZERO,
                false,
            )),
        };
        let envelope: alloy_consensus::TxEnvelope = match req.gas_price {
            Some(gas_price) => {
                let tx = TxLegacy {
                    chain_id: Some(chain_id),
                    nonce,
                    gas_price,
                    gas_limit,
                    to,
                    value,
                    input,
                };
                let sig = sign(tx.signature_hash())?;
                tx.into_signed(sig).into()
            }
            None => {
                let tip = match req.max_priority_fee_per_gas {
                    Some(t) => t,
                    None => u128::try_from(self.max_priority_fee()?).unwrap_or(u128::MAX),
                };
                let max_fee = req
                    .max_fee_per_gas
                    .unwrap_or_else(|| base_fee.saturating_mul(2).saturating_add(tip));
                let tx = TxEip1559 {
                    chain_id,
                    nonce,
                    gas_limit,
                    max_fee_per_gas: max_fee,
                    max_priority_fee_per_gas: tip.min(max_fee),
                    to,
                    value,
                    access_list: req.access_list.clone().unwrap_or_default(),
                    input,
                };
                let sig = sign(tx.signature_hash())?;
                tx.into_signed(sig).into()
            }
        };
        if impersonated {
            let seq = self.impersonator()?;
            return seq
                .send_impersonated(hemi_chain::ImpersonatedTx { from, tx: envelope })
                .map_err(|e| match e {
                    ChainError::Call(m) => BackendError::TxRejected(m),
                    ChainError::InvalidBlock(hemi_chain::BlockError::DevState(m)) => {
                        BackendError::InvalidParams(m)
                    }
                    other => chain_err(other),
                });
        }
        self.send_raw_transaction(Bytes::from(L2Tx::Eth(envelope).encoded_2718()))
    }

    fn send_raw_transaction(&self, raw: Bytes) -> BackendResult<B256> {
        self.send_raw_transaction_recovered(raw, None)
    }

    fn send_raw_transaction_recovered(
        &self,
        raw: Bytes,
        recovered: Option<hemi_rpc::eth::RecoveredSender>,
    ) -> BackendResult<B256> {
        let recovered = recovered.map(|r| (r.hash, r.sender));
        let Some(seq) = &self.sequencer else {
            let Some(net) = &self.net else {
                return Err(BackendError::TxRejected(
                    "this node follows a sequencer; send transactions to the sequencer".into(),
                ));
            };
            // Checked as the sequencer's pool checks it without state (a bad transaction is
            // refused here, not gossiped), then gossiped.
            let spec = self.chain.spec();
            let checked = hemi_txpool::TxPool::check_recovered(
                &raw,
                &hemi_txpool::PoolConfig::new(spec.chain_id, spec.gas_limit),
                recovered,
            )
            .map_err(|e| BackendError::TxRejected(e.to_string()))?;
            net.publish_tx_now(raw.to_vec())
                .map_err(|e| BackendError::TxRejected(e.to_string()))?;
            return Ok(checked.hash());
        };
        let hash = seq.submit_recovered(&raw, recovered).map_err(|e| match e {
            SubmitError::Pool(p) => BackendError::TxRejected(p.to_string()),
            SubmitError::Chain(c) => chain_err(c),
            e @ SubmitError::Censored(_) => BackendError::TxRejected(e.to_string()),
        })?;
        if let Some(net) = &self.net {
            // Other nodes (and sequencers of a set) hear it too.
            let _ = net.publish_tx_now(raw.to_vec());
        }
        Ok(hash)
    }

    fn logs(&self, from: u64, to: u64, filter: &Filter, limit: usize) -> BackendResult<Vec<Log>> {
        let bloom = |b: &alloy_primitives::Bloom| filter.matches_bloom(*b);
        let matches = |l: &alloy_primitives::Log| hemi_rpc::eth::filters::log_matches(filter, l);
        let logs = self
            .chain
            .logs(from, to, &bloom, &matches, limit)
            .map_err(|e| match e {
                ChainError::TooManyLogs(n) => hemi_rpc::eth::filters::too_many_logs(n),
                other => chain_err(other),
            })?;
        Ok(logs
            .into_iter()
            .map(|l| Log {
                inner: l.log,
                block_hash: Some(l.block_hash),
                block_number: Some(l.block_number),
                block_timestamp: Some(l.block_timestamp),
                transaction_hash: Some(l.tx_hash),
                transaction_index: Some(l.tx_index),
                log_index: Some(l.log_index),
                removed: false,
            })
            .collect())
    }

    fn fee_history(
        &self,
        count: u64,
        newest: u64,
        reward_percentiles: Option<Vec<f64>>,
    ) -> BackendResult<FeeHistory> {
        let count = count.min(newest + 1);
        let oldest = newest + 1 - count;
        let mut base_fees = Vec::new();
        let mut ratios = Vec::new();
        let mut rewards = Vec::new();
        let mut last = None;
        for n in oldest..=newest {
            let Some(cached) = self.block_at(n)? else {
                return Err(BackendError::NotFound("header not found".into()));
            };
            let block = &cached.block;
            let h = &block.header;
            let base = h.base_fee_per_gas.unwrap_or_default();
            base_fees.push(u128::from(base));
            ratios.push(if h.gas_limit == 0 {
                0.0
            } else {
                h.gas_used as f64 / h.gas_limit as f64
            });
            if let Some(ps) = &reward_percentiles {
                let receipts = &cached.receipts;
                let mut tips: Vec<(u128, u64)> = block
                    .txs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| {
                        let env = t.tx.user_envelope()?;
                        Some((
                            env.effective_tip_per_gas(base).unwrap_or_default(),
                            gas_used_by(receipts, i),
                        ))
                    })
                    .collect();
                tips.sort_unstable();
                let total: u64 = tips.iter().map(|t| t.1).sum();
                let row = ps
                    .iter()
                    .map(|p| {
                        if tips.is_empty() {
                            return 0;
                        }
                        let threshold = (total as f64 * p / 100.0) as u64;
                        let mut acc = 0;
                        for (tip, gas) in &tips {
                            acc += gas;
                            if acc >= threshold {
                                return *tip;
                            }
                        }
                        tips.last().map(|t| t.0).unwrap_or_default()
                    })
                    .collect();
                rewards.push(row);
            }
            last = Some(block.header.clone());
        }
        if let Some(h) = last {
            base_fees.push(u128::from(Chain::next_base_fee(&h)));
        }
        Ok(FeeHistory {
            base_fee_per_gas: base_fees,
            gas_used_ratio: ratios,
            base_fee_per_blob_gas: Vec::new(),
            blob_gas_used_ratio: Vec::new(),
            oldest_block: oldest,
            reward: reward_percentiles.map(|_| rewards),
        })
    }

    fn gas_price(&self) -> BackendResult<U256> {
        Ok(U256::from(
            u128::from(self.next_base_fee()?) + SUGGESTED_TIP,
        ))
    }

    fn max_priority_fee(&self) -> BackendResult<U256> {
        Ok(U256::from(SUGGESTED_TIP))
    }

    fn proof(
        &self,
        address: Address,
        slots: Vec<B256>,
        number: u64,
    ) -> BackendResult<EIP1186AccountProofResponse> {
        let (head, p) = self.chain.proof(address, &slots).map_err(chain_err)?;
        if head != number {
            return Err(BackendError::NotFound(format!(
                "proofs are served for the newest block only ({head}); block {number} is history"
            )));
        }
        Ok(EIP1186AccountProofResponse {
            address,
            balance: p.account.balance,
            code_hash: p.account.code_hash,
            nonce: p.account.nonce,
            storage_hash: p.account.storage_root,
            account_proof: p.account_proof,
            storage_proof: p
                .storage
                .into_iter()
                .map(|(k, v, nodes)| EIP1186StorageProof {
                    key: alloy_serde::storage::JsonStorageKey::Hash(k),
                    value: v,
                    proof: nodes,
                })
                .collect(),
        })
    }

    fn accounts(&self) -> Vec<Address> {
        self.accounts.clone()
    }

    fn syncing(&self) -> Value {
        match self.follower.as_ref().and_then(|f| f.sync_progress()) {
            Some((starting, current, highest)) => json!({
                "startingBlock": hex_u64(starting),
                "currentBlock": hex_u64(current),
                "highestBlock": hex_u64(highest),
            }),
            None => Value::Bool(false),
        }
    }

    fn txpool_status(&self) -> Value {
        let (pending, queued) = self
            .sequencer
            .as_ref()
            .map(|s| s.with_pool(|p| p.status()))
            .unwrap_or_default();
        json!({"pending": hex_u64(pending as u64), "queued": hex_u64(queued as u64)})
    }

    fn txpool_content(&self) -> Value {
        let Some(seq) = &self.sequencer else {
            return json!({"pending": {}, "queued": {}});
        };
        let content = seq.with_pool(|p| p.content());
        let group = |g: &std::collections::BTreeMap<
            Address,
            std::collections::BTreeMap<u64, hemi_txpool::PooledTx>,
        >| {
            let mut out = serde_json::Map::new();
            for (addr, txs) in g {
                let mut m = serde_json::Map::new();
                for (nonce, tx) in txs {
                    m.insert(
                        nonce.to_string(),
                        self.tx_json(
                            None,
                            0,
                            &SignedTx {
                                tx: L2Tx::Eth(tx.envelope().clone()),
                                hash: tx.hash(),
                                sender: tx.sender(),
                            },
                        ),
                    );
                }
                out.insert(addr.to_checksum(None), Value::Object(m));
            }
            Value::Object(out)
        };
        json!({"pending": group(&content.pending), "queued": group(&content.queued)})
    }

    fn subscribe_blocks(&self) -> broadcast::Receiver<u64> {
        self.blocks.subscribe()
    }

    fn subscribe_pending(&self) -> broadcast::Receiver<B256> {
        self.pending.subscribe()
    }

    fn subscribe_keystones(&self) -> Option<broadcast::Receiver<Value>> {
        Some(self.keystones.subscribe())
    }

    fn mine(&self) -> BackendResult<u64> {
        let Some(seq) = &self.sequencer else {
            return Err(BackendError::Execution(
                "only the sequencer mines blocks".into(),
            ));
        };
        seq.produce()
            .map(|b| b.block.header.number)
            .map_err(chain_err)
    }

    fn increase_time(&self, seconds: u64) -> BackendResult<u64> {
        match &self.sequencer {
            Some(seq) => Ok(seq.increase_time(seconds)),
            None => Err(BackendError::Execution(
                "only the sequencer keeps the clock".into(),
            )),
        }
    }

    fn set_state(
        &self,
        address: alloy_primitives::Address,
        change: hemi_rpc::eth::StateChange,
    ) -> BackendResult<()> {
        use hemi_chain::dev::{DevChange, DevOp};
        use hemi_rpc::eth::StateChange;
        let Some(seq) = &self.sequencer else {
            return Err(BackendError::Execution(
                "only the devnet's sequencer changes state directly".into(),
            ));
        };
        let op = match change {
            StateChange::Balance(b) => DevOp::Balance(b),
            StateChange::Nonce(n) => DevOp::Nonce(n),
            StateChange::Code(c) => DevOp::Code(c),
            StateChange::Storage(k, v) => DevOp::Storage(k, v),
        };
        seq.set_state(vec![DevChange::new(address, op)])
            .map(|_| ())
            .map_err(|e| match e {
                ChainError::InvalidBlock(hemi_chain::BlockError::DevState(m)) => {
                    BackendError::InvalidParams(m)
                }
                other => chain_err(other),
            })
    }

    fn impersonate(&self, address: alloy_primitives::Address, on: bool) -> BackendResult<()> {
        self.impersonator()?.impersonate(address, on);
        Ok(())
    }

    fn auto_impersonate(&self, on: bool) -> BackendResult<()> {
        self.impersonator()?.auto_impersonate(on);
        Ok(())
    }

    fn snapshot(&self) -> BackendResult<u64> {
        match &self.sequencer {
            Some(seq) => Ok(seq.snapshot()),
            None => Err(BackendError::Execution(
                "only the sequencer takes snapshots".into(),
            )),
        }
    }

    fn revert(&self, id: u64) -> BackendResult<bool> {
        match &self.sequencer {
            Some(seq) => seq.revert(id).map_err(chain_err),
            None => Err(BackendError::Execution(
                "only the sequencer takes snapshots".into(),
            )),
        }
    }

    fn set_next_block_timestamp(&self, timestamp: u64) -> BackendResult<()> {
        match &self.sequencer {
            // anvil answers a timestamp in the past as invalid params (-32602).
            Some(seq) => seq.set_next_timestamp(timestamp).map_err(|e| match e {
                ChainError::Call(m) => BackendError::InvalidParams(m),
                other => chain_err(other),
            }),
            None => Err(BackendError::Execution(
                "only the sequencer keeps the clock".into(),
            )),
        }
    }
}

/// The transaction an `eth_call`-style request describes on chain `chain_id`, its gas capped at
/// `gas_cap` (also what `debug_traceCall` runs).
pub(crate) fn tx_env_of(chain_id: u64, req: &TransactionRequest, gas_cap: u64) -> TxEnv {
    let gas_price = req.max_fee_per_gas.or(req.gas_price).unwrap_or_default();
    let ty = if req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some() {
        2
    } else if req.access_list.is_some() {
        1
    } else {
        0
    };
    TxEnv {
        tx_type: ty,
        caller: req.from.unwrap_or_default(),
        gas_limit: req.gas.unwrap_or(gas_cap).min(gas_cap),
        gas_price,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        data: req.input.input().cloned().unwrap_or_default(),
        nonce: req.nonce.unwrap_or_default(),
        chain_id: Some(chain_id),
        access_list: req.access_list.clone().unwrap_or_default(),
        gas_priority_fee: if ty == 2 {
            Some(req.max_priority_fee_per_gas.unwrap_or_default())
        } else {
            None
        },
        ..Default::default()
    }
}
