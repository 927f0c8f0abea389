//! Queries on state that commit nothing: `eth_call`, logs, `eth_getProof`, access lists and
//! traces.

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{keccak256, Address, Bloom, Log, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_trace::geth::{GethDebugTracingOptions, GethTrace};
use alloy_trie::EMPTY_ROOT_HASH;
use hemi_hvm::BitcoinPin;
use revm::context::TxEnv;
use revm::context_interface::result::{EVMError, ExecutionResult, ResultAndState};
use revm::database::CacheDB;
use revm::database_interface::WrapDatabaseRef;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, ExecuteEvm, InspectEvm, MainBuilder, MainContext};
use revm_inspectors::access_list::AccessListInspector;
use revm_inspectors::tracing::DebugInspector;

use super::{AccountProof, Chain, LocatedLog};
use crate::db::StoredAccount;
use crate::exec::{self, CallOutcome, SPEC};
use crate::state::StateView;
use crate::ChainError;

/// The database a call runs on: the state after a block, with overrides on top.
type CallDb = CacheDB<WrapDatabaseRef<StateView>>;

/// A call's execution left uncommitted under an inspector: the inspector, the transaction, the
/// block it ran in, its result and state changes, and the database before them.
struct Inspected<I> {
    inspector: I,
    tx: TxEnv,
    block: revm::context::BlockEnv,
    result: ResultAndState,
    db: CallDb,
}

impl Chain {
    /// Runs a call on the state after block `number` without committing it.
    ///
    /// # Errors
    /// [`ChainError::Call`] when the transaction is invalid (e.g. insufficient funds);
    /// database errors.
    pub fn call(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        bitcoin: BitcoinPin,
        timestamp: Option<u64>,
    ) -> Result<CallOutcome, ChainError> {
        let ctx = self.call_context(number, &tx, overrides, timestamp)?;
        let mut evm = ctx
            .build_mainnet()
            .with_precompiles(hemi_hvm::HvmPrecompiles::new(SPEC, bitcoin));
        match evm.transact(tx) {
            Ok(r) => Ok(match r.result {
                ExecutionResult::Success { output, gas, .. } => CallOutcome::Success {
                    output: output.into_data(),
                    gas_used: gas.tx_gas_used(),
                },
                ExecutionResult::Revert { output, gas, .. } => CallOutcome::Revert {
                    output,
                    gas_used: gas.tx_gas_used(),
                },
                ExecutionResult::Halt { reason, gas, .. } => CallOutcome::Halt {
                    reason: halt_message(&reason),
                    gas_used: gas.tx_gas_used(),
                },
            }),
            Err(EVMError::Transaction(e)) => Err(ChainError::Call(exec::invalid_tx_message(&e))),
            Err(EVMError::Database(e)) => Err(e),
            Err(e) => Err(ChainError::Call(e.to_string())),
        }
    }

    /// The EVM context of a call on the state after block `number` (a call sees the block
    /// after it, as geth's pending-block semantics for calls): no nonce, base fee, block gas
    /// limit or EIP-3607 checks, and no balance check for a call that pays nothing.
    fn call_context(
        &self,
        number: u64,
        tx: &TxEnv,
        overrides: Option<&StateOverride>,
        timestamp: Option<u64>,
    ) -> Result<revm::handler::MainnetContext<CallDb>, ChainError> {
        let header = self
            .header(number)?
            .ok_or(ChainError::UnknownBlock(number))?;
        let view = self.state_at(number)?;
        let mut db = CacheDB::new(WrapDatabaseRef(view));
        if let Some(o) = overrides {
            apply_overrides(&mut db, o)?;
        }
        let mut ctx = self.block_context(
            &header,
            timestamp.unwrap_or(header.timestamp),
            header.beneficiary,
        );
        ctx.number = header.number + 1;
        let zero_price = tx.gas_price == 0 && tx.gas_priority_fee.unwrap_or(0) == 0;
        let chain_id = self.spec.chain_id;
        Ok(Context::mainnet()
            .with_db(db)
            .modify_cfg_chained(|c| {
                c.spec = SPEC;
                c.chain_id = chain_id;
                c.disable_nonce_check = true;
                c.disable_base_fee = true;
                c.disable_balance_check = zero_price;
                c.disable_block_gas_limit = true;
                c.disable_eip3607 = true;
            })
            .with_block(ctx.block_env()))
    }

    /// [`Chain::call`] under `inspector`, uncommitted.
    fn inspect_call<I>(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        bitcoin: BitcoinPin,
        inspector: I,
    ) -> Result<Inspected<I>, ChainError>
    where
        I: revm::Inspector<revm::handler::MainnetContext<CallDb>>,
    {
        let ctx = self.call_context(number, &tx, overrides, None)?;
        let block = ctx.block.clone();
        let mut evm = ctx
            .build_mainnet_with_inspector(inspector)
            .with_precompiles(hemi_hvm::HvmPrecompiles::new(SPEC, bitcoin));
        let result = evm.inspect_tx(tx.clone()).map_err(|e| match e {
            EVMError::Transaction(e) => ChainError::Call(exec::invalid_tx_message(&e)),
            EVMError::Database(e) => e,
            other => ChainError::Call(other.to_string()),
        })?;
        Ok(Inspected {
            inspector: evm.inspector,
            tx,
            block,
            result,
            db: evm.ctx.journaled_state.database,
        })
    }

    /// [`Chain::call`] under a geth tracer (`debug_traceCall`).
    ///
    /// # Errors
    /// As [`Chain::call`]; the tracer's errors.
    pub fn trace_call(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        bitcoin: BitcoinPin,
        opts: GethDebugTracingOptions,
    ) -> Result<GethTrace, ChainError> {
        let inspector =
            DebugInspector::new(opts).map_err(|e| ChainError::Call(format!("tracer: {e}")))?;
        let mut run = self.inspect_call(number, tx, overrides, bitcoin, inspector)?;
        run.inspector
            .get_result(None, &run.tx, &run.block, &run.result, &mut run.db)
            .map_err(|e| ChainError::Call(format!("tracer: {e}")))
    }

    /// `eth_createAccessList`: the storage slots and accounts a call touches (leaving out the
    /// sender, the callee and the precompiles, as geth), and the gas the call uses with that
    /// list attached.
    ///
    /// # Errors
    /// As [`Chain::call`].
    pub fn create_access_list(
        &self,
        number: u64,
        tx: TxEnv,
        overrides: Option<&StateOverride>,
        bitcoin: BitcoinPin,
    ) -> Result<(AccessList, CallOutcome), ChainError> {
        let seed = tx.access_list.clone();
        let run = self.inspect_call(
            number,
            tx.clone(),
            overrides,
            bitcoin.clone(),
            AccessListInspector::new(seed),
        )?;
        let list = run.inspector.into_access_list();
        let with_list = TxEnv {
            access_list: list.clone(),
            // An access list makes it an EIP-2930 transaction at least.
            tx_type: tx.tx_type.max(1),
            ..tx
        };
        let outcome = self.call(number, with_list, overrides, bitcoin, None)?;
        Ok((list, outcome))
    }

    /// User transaction `index` of block `number` re-executed under a geth tracer on its
    /// parent's state, after the block's transactions before it (`debug_traceTransaction`).
    ///
    /// # Errors
    /// [`ChainError::UnknownBlock`]; [`ChainError::Call`] for a system transaction or a bad
    /// tracer configuration; database errors.
    pub fn trace_transaction(
        &self,
        number: u64,
        index: usize,
        bitcoin: BitcoinPin,
        opts: GethDebugTracingOptions,
    ) -> Result<GethTrace, ChainError> {
        let block = self
            .block(number)?
            .ok_or(ChainError::UnknownBlock(number))?;
        let parent = number
            .checked_sub(1)
            .map(|p| self.header(p))
            .transpose()?
            .flatten()
            .ok_or(ChainError::UnknownBlock(number))?;
        let inspector =
            DebugInspector::new(opts).map_err(|e| ChainError::Call(format!("tracer: {e}")))?;
        let ctx = self.block_context(&parent, block.header.timestamp, block.header.beneficiary);
        let view = self.state_at(parent.number)?;
        exec::trace(view, &ctx, bitcoin, block.txs, index, inspector, block.hash)
    }

    /// Logs of blocks `from..=to` whose block bloom passes `bloom` and that `matches` accepts;
    /// at most `limit`.
    ///
    /// # Errors
    /// [`ChainError::TooManyLogs`] past `limit`; database errors.
    pub fn logs(
        &self,
        from: u64,
        to: u64,
        bloom: &dyn Fn(&Bloom) -> bool,
        matches: &dyn Fn(&Log) -> bool,
        limit: usize,
    ) -> Result<Vec<LocatedLog>, ChainError> {
        let mut out = Vec::new();
        for n in from..=to {
            let Some(header) = self.header(n)? else {
                break;
            };
            if !bloom(&header.logs_bloom) {
                continue;
            }
            let Some(cached) = self.block_with_receipts(n)? else {
                break;
            };
            let (block, receipts) = (&cached.block, &cached.receipts);
            let mut log_index = 0u64;
            for (i, (r, tx)) in receipts.iter().zip(&block.txs).enumerate() {
                for log in &r.receipt.logs {
                    if matches(log) {
                        if out.len() >= limit {
                            return Err(ChainError::TooManyLogs(limit));
                        }
                        out.push(LocatedLog {
                            log: log.clone(),
                            block_number: n,
                            block_hash: block.hash,
                            block_timestamp: header.timestamp,
                            tx_hash: tx.hash,
                            tx_index: i as u64,
                            log_index,
                        });
                    }
                    log_index += 1;
                }
            }
        }
        Ok(out)
    }

    /// An EIP-1186 proof of `address` and `slots` against the newest state root.
    ///
    /// # Errors
    /// Database errors.
    pub fn proof(
        &self,
        address: Address,
        slots: &[B256],
    ) -> Result<(u64, AccountProof), ChainError> {
        let snap = self.state.snapshot()?;
        let number = snap.head();
        let account = snap.account(&address)?.unwrap_or(StoredAccount {
            code_hash: alloy_primitives::KECCAK256_EMPTY,
            storage_root: EMPTY_ROOT_HASH,
            ..Default::default()
        });
        let account_proof = hemi_trie::proof(&snap.account_nodes(), keccak256(address))?;
        let mut out = Vec::new();
        for slot in slots {
            let value = snap.storage(&address, slot)?;
            let nodes = hemi_trie::proof(&snap.storage_nodes(address), keccak256(slot))?;
            out.push((*slot, value, nodes));
        }
        Ok((
            number,
            AccountProof {
                account,
                account_proof,
                storage: out,
            },
        ))
    }
}

pub(super) fn halt_message(reason: &revm::context_interface::result::HaltReason) -> String {
    use revm::context_interface::result::{HaltReason, OutOfGasError};
    match reason {
        HaltReason::OutOfGas(OutOfGasError::Basic)
        | HaltReason::OutOfGas(OutOfGasError::Memory)
        | HaltReason::OutOfGas(OutOfGasError::MemoryLimit)
        | HaltReason::OutOfGas(_) => "out of gas".into(),
        HaltReason::OpcodeNotFound | HaltReason::InvalidFEOpcode => "invalid opcode".into(),
        HaltReason::StackUnderflow => "stack underflow".into(),
        HaltReason::StackOverflow => "stack overflow".into(),
        HaltReason::InvalidJump => "invalid jump destination".into(),
        HaltReason::PrecompileError | HaltReason::PrecompileErrorWithContext(_) => {
            "precompile failed".into()
        }
        other => format!("{other:?}"),
    }
}

pub(super) fn apply_overrides(
    db: &mut CacheDB<WrapDatabaseRef<StateView>>,
    overrides: &StateOverride,
) -> Result<(), ChainError> {
    use revm::database_interface::DatabaseRef;
    for (address, o) in overrides {
        let mut info: AccountInfo = db.basic_ref(*address)?.unwrap_or_default();
        if let Some(b) = o.balance {
            info.balance = b;
        }
        if let Some(n) = o.nonce {
            info.nonce = n;
        }
        if let Some(code) = &o.code {
            let c = Bytecode::new_raw(code.clone());
            info.code_hash = c.hash_slow();
            info.code = Some(c);
        }
        db.insert_account_info(*address, info);
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(ChainError::Call(format!(
                "account {address} has both 'state' and 'stateDiff'"
            )));
        }
        if let Some(state) = &o.state {
            let slots = state
                .iter()
                .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                .collect();
            db.replace_account_storage(*address, slots)?;
        }
        if let Some(diff) = &o.state_diff {
            for (k, v) in diff {
                db.insert_account_storage(
                    *address,
                    U256::from_be_bytes(k.0),
                    U256::from_be_bytes(v.0),
                )?;
            }
        }
    }
    Ok(())
}
