//! Executing an L2 block's transactions with the hVM (revm + Bitcoin precompiles).

use alloy_consensus::{Receipt, Transaction, TxEnvelope};
use alloy_primitives::{Address, Bytes, Log, B256, U256};
use alloy_rpc_types_trace::geth::GethTrace;
use hemi_hvm::{BitcoinPin, HvmPrecompiles};
use revm::context::{BlockEnv, TxEnv};
use revm::context_interface::result::{EVMError, InvalidTransaction};
use revm::database::states::bundle_state::BundleRetention;
use revm::database::{BundleState, State};
use revm::database_interface::{DatabaseCommitExt, WrapDatabaseRef};
use revm::handler::SystemCallCommitEvm;
use revm::inspector::NoOpInspector;
use revm::primitives::hardfork::SpecId;
use revm::{Context, ExecuteCommitEvm, InspectEvm, MainBuilder, MainContext};
use revm_inspectors::tracing::{DebugInspector, TransactionContext};

use crate::block::L2Receipt;
use crate::state::StateView;
use crate::system::SystemTxKind;
use crate::tx::{L2Tx, SignedTx};
use crate::{BlockError, ChainError};

/// Least gas any transaction needs; a block with less room left is full.
const MIN_TX_GAS: u64 = 21_000;

/// The EVM rules L2 blocks run under.
pub const SPEC: SpecId = SpecId::PRAGUE;

/// The block being executed.
#[derive(Debug, Clone)]
pub struct BlockContext {
    /// Chain id.
    pub chain_id: u64,
    /// Block number.
    pub number: u64,
    /// Timestamp.
    pub timestamp: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Base fee.
    pub base_fee: u64,
    /// Receives priority fees: the sequencer.
    pub beneficiary: Address,
    /// `PREVRANDAO` (the parent hash: deterministic, not random).
    pub prevrandao: B256,
    /// Whether devnet state changes (`0x7A`) are allowed (the spec's `devState`).
    pub dev_state: bool,
}

impl BlockContext {
    pub(crate) fn block_env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(self.prevrandao),
            ..Default::default()
        }
    }
}

/// Whether invalid transactions are skipped (building) or make the block invalid (importing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The sequencer builds: skip what cannot be included, each transaction on its own.
    Build,
    /// As [`Mode::Build`], but a sender's transaction that is skipped keeps its later ones out
    /// too (forced-inclusion rule 1, which chains made before rule 2 keep).
    BuildHoldingBack,
    /// A follower re-executes: everything must apply.
    Import,
}

/// A block's execution.
#[derive(Debug)]
pub struct Executed {
    /// The transactions included, in order.
    pub txs: Vec<SignedTx>,
    /// Their receipts.
    pub receipts: Vec<L2Receipt>,
    /// Total gas used.
    pub gas_used: u64,
    /// State changes with original values.
    pub bundle: BundleState,
    /// Transactions left out while building, with why.
    pub rejected: Vec<(B256, String)>,
}

impl Executed {
    /// Records `stx` with its receipt (`success`, `logs`; cumulative gas as it stands).
    fn include(&mut self, stx: SignedTx, success: bool, logs: Vec<Log>) {
        self.receipts.push(L2Receipt {
            tx_type: stx.tx.tx_type(),
            receipt: Receipt {
                status: success.into(),
                cumulative_gas_used: self.gas_used,
                logs,
            },
        });
        self.txs.push(stx);
    }
}

/// revm's transaction environment for an Ethereum transaction.
pub fn tx_env(tx: &TxEnvelope, sender: Address) -> TxEnv {
    TxEnv {
        tx_type: tx.tx_type() as u8,
        caller: sender,
        gas_limit: tx.gas_limit(),
        gas_price: tx.max_fee_per_gas(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: tx.max_priority_fee_per_gas(),
        ..Default::default()
    }
}

/// geth's words for a transaction revm refuses.
pub fn invalid_tx_message(e: &InvalidTransaction) -> String {
    match e {
        InvalidTransaction::NonceTooLow { tx, state } => {
            format!("nonce too low: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::NonceTooHigh { tx, state } => {
            format!("nonce too high: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => {
            format!("insufficient funds for gas * price + value: have {balance} want {fee}")
        }
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. } => "intrinsic gas too low".into(),
        InvalidTransaction::GasPriceLessThanBasefee => {
            "max fee per gas less than block base fee".into()
        }
        InvalidTransaction::CallerGasLimitMoreThanBlock => "exceeds block gas limit".into(),
        InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => {
            "invalid chain id".into()
        }
        other => other.to_string(),
    }
}

/// Executes `txs` on `view` against the Bitcoin `pin`.
///
/// # Errors
/// In [`Mode::Import`], any transaction that cannot be applied; in both modes, database errors.
pub fn execute(
    view: StateView,
    block: &BlockContext,
    pin: BitcoinPin,
    txs: Vec<SignedTx>,
    mode: Mode,
) -> Result<Executed, ChainError> {
    match run(view, block, pin, txs, mode, None)? {
        Run::Executed(e) => Ok(e),
        Run::Traced(_) => Err(ChainError::Call("a trace where none was asked".into())),
    }
}

/// Re-executes block `block`'s `txs` on `view` (the parent's state) as an import does, up to
/// the user transaction at `target`, which runs under `inspector` (revm-inspectors' geth
/// tracers: `debug_traceTransaction`).
///
/// # Errors
/// [`ChainError::Call`] if `target` is not a user transaction of `txs`; what import refuses;
/// the tracer's errors.
pub fn trace(
    view: StateView,
    block: &BlockContext,
    pin: BitcoinPin,
    txs: Vec<SignedTx>,
    target: usize,
    inspector: DebugInspector,
    block_hash: B256,
) -> Result<GethTrace, ChainError> {
    match run(
        view,
        block,
        pin,
        txs,
        Mode::Import,
        Some((target, inspector, block_hash)),
    )? {
        Run::Traced(t) => Ok(*t),
        Run::Executed(_) => Err(ChainError::Call(format!(
            "transaction {target} of block {} is not a user transaction",
            block.number
        ))),
    }
}

/// What [`run`] did: executed the block, or traced one of its transactions.
enum Run {
    Executed(Executed),
    Traced(Box<GethTrace>),
}

/// The block's execution ([`execute`]), stopping at a traced transaction ([`trace`]).
fn run(
    view: StateView,
    block: &BlockContext,
    pin: BitcoinPin,
    txs: Vec<SignedTx>,
    mode: Mode,
    traced: Option<(usize, DebugInspector, B256)>,
) -> Result<Run, ChainError> {
    let state = State::builder()
        .with_database(WrapDatabaseRef(view))
        .with_bundle_update()
        .build();
    let chain_id = block.chain_id;
    let (target, inspector, block_hash) = match traced {
        Some((t, i, h)) => (Some(t), i, Some(h)),
        // Never called: untraced transactions run with `transact_commit`.
        None => (None, DebugInspector::Noop(NoOpInspector), None),
    };
    let mut evm = Context::mainnet()
        .with_db(state)
        .modify_cfg_chained(|c| {
            c.spec = SPEC;
            c.chain_id = chain_id;
        })
        .with_block(block.block_env())
        .build_mainnet_with_inspector(inspector)
        .with_precompiles(HvmPrecompiles::new(SPEC, pin));
    let mut out = Executed {
        txs: Vec::with_capacity(txs.len()),
        receipts: Vec::with_capacity(txs.len()),
        gas_used: 0,
        bundle: BundleState::default(),
        rejected: Vec::new(),
    };
    // Senders whose earlier transaction was left out: their later nonces cannot apply.
    let mut held_back: std::collections::HashSet<Address> = std::collections::HashSet::new();
    // Whether a user transaction came already (system transactions come before them).
    let mut user_seen = false;
    for (i, stx) in txs.into_iter().enumerate() {
        if mode != Mode::Import {
            if block.gas_limit - out.gas_used < MIN_TX_GAS {
                break;
            }
            if held_back.contains(&stx.sender) {
                continue;
            }
        }
        let env = match &stx.tx {
            L2Tx::BtcAttributes(_) => {
                if i != 0 {
                    return Err(misplaced(SystemTxKind::BtcAttributes, i));
                }
                out.include(stx, true, Vec::new());
                continue;
            }
            L2Tx::PopPayout(payout) => {
                if i != 1 {
                    return Err(misplaced(SystemTxKind::PopPayout, i));
                }
                let credits = payout
                    .payouts
                    .iter()
                    .map(|p| {
                        u128::try_from(p.amount)
                            .map(|a| (p.miner, a))
                            .map_err(|_| ChainError::from(BlockError::PayoutTooLarge(p.amount)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                evm.ctx
                    .journaled_state
                    .database
                    .increment_balances(credits)
                    .map_err(db_error)?;
                let logs = payout.logs();
                out.include(stx, true, logs);
                continue;
            }
            L2Tx::TunnelActivation(a) => {
                if i == 0 || user_seen {
                    return Err(misplaced(SystemTxKind::TunnelActivation, i));
                }
                install_tunnel(&mut evm.ctx.journaled_state.database, &a.params())?;
                out.include(stx, true, Vec::new());
                continue;
            }
            L2Tx::Deposit(_) | L2Tx::Payout(_) => {
                let (kind, calldata) = tunnel_call(&stx.tx);
                if i == 0 || user_seen {
                    return Err(misplaced(kind, i));
                }
                let result = evm
                    .system_call_with_caller_commit(
                        stx.sender,
                        hemi_tunnel::contracts::TUNNEL_MANAGER_ADDRESS,
                        calldata,
                    )
                    .map_err(|e| match e {
                        EVMError::Database(e) => db_error(e),
                        other => ChainError::Call(other.to_string()),
                    })?;
                let success = result.is_success();
                out.include(stx, success, result.into_logs());
                continue;
            }
            L2Tx::DevState(d) => {
                if i == 0 || user_seen {
                    return Err(misplaced(SystemTxKind::DevState, i));
                }
                if !block.dev_state {
                    return Err(BlockError::DevState(
                        "this chain takes none (only a regtest devnet does)".into(),
                    )
                    .into());
                }
                crate::dev::apply(&mut evm.ctx.journaled_state.database, d)?;
                out.include(stx, true, Vec::new());
                continue;
            }
            L2Tx::Eth(env) => {
                user_seen = true;
                env
            }
            L2Tx::Impersonated(imp) => {
                if !block.dev_state {
                    return Err(BlockError::DevState(
                        "impersonated transactions: this chain takes none (only a regtest devnet does)"
                            .into(),
                    )
                    .into());
                }
                user_seen = true;
                &imp.tx
            }
        };
        if out.gas_used + env.gas_limit() > block.gas_limit {
            match mode {
                Mode::Build | Mode::BuildHoldingBack => {
                    // Not invalid: it waits for the next block.
                    if mode == Mode::BuildHoldingBack {
                        held_back.insert(stx.sender);
                    }
                    continue;
                }
                Mode::Import => return Err(BlockError::TxOverGasLimit(stx.hash).into()),
            }
        }
        if target == Some(i) {
            let tx = tx_env(env, stx.sender);
            let res = evm.inspect_tx(tx.clone()).map_err(|e| match e {
                EVMError::Database(e) => db_error(e),
                other => ChainError::Call(other.to_string()),
            })?;
            let context = TransactionContext {
                block_hash,
                tx_index: Some(i),
                tx_hash: Some(stx.hash),
            };
            let block_env = block.block_env();
            let trace = evm
                .inspector
                .get_result(
                    Some(context),
                    &tx,
                    &block_env,
                    &res,
                    &mut evm.ctx.journaled_state.database,
                )
                .map_err(|e| ChainError::Call(format!("tracer: {e}")))?;
            return Ok(Run::Traced(Box::new(trace)));
        }
        let result = match evm.transact_commit(tx_env(env, stx.sender)) {
            Ok(r) => r,
            Err(EVMError::Transaction(e)) => {
                let why = invalid_tx_message(&e);
                match mode {
                    Mode::Build | Mode::BuildHoldingBack => {
                        if mode == Mode::BuildHoldingBack {
                            held_back.insert(stx.sender);
                        }
                        if !matches!(e, InvalidTransaction::NonceTooHigh { .. }) {
                            out.rejected.push((stx.hash, why));
                        }
                        continue;
                    }
                    Mode::Import => {
                        return Err(BlockError::InvalidTx {
                            tx: stx.hash,
                            reason: why,
                        }
                        .into())
                    }
                }
            }
            Err(EVMError::Database(e)) => return Err(db_error(e)),
            Err(e) => {
                return Err(BlockError::InvalidTx {
                    tx: stx.hash,
                    reason: e.to_string(),
                }
                .into())
            }
        };
        let gas = result.tx_gas_used();
        out.gas_used += gas;
        let success = result.is_success();
        let logs: Vec<Log> = result.into_logs();
        out.include(stx, success, logs);
    }
    let mut state = evm.ctx.journaled_state.database;
    state.merge_transitions(BundleRetention::Reverts);
    out.bundle = state.take_bundle();
    Ok(Run::Executed(out))
}

/// The outcome of a call that is not committed (`eth_call`, `eth_estimateGas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Returned data.
    Success {
        /// Output.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// Reverted with data.
    Revert {
        /// Revert data.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// Halted (out of gas, invalid opcode, …).
    Halt {
        /// Why.
        reason: String,
        /// Gas used.
        gas_used: u64,
    },
}

/// Unwraps revm's database error into ours.
pub(crate) fn db_error(
    e: revm::database_interface::bal::EvmDatabaseError<ChainError>,
) -> ChainError {
    match e {
        revm::database_interface::bal::EvmDatabaseError::Database(e) => e,
        other => ChainError::Db(other.to_string()),
    }
}

/// The tunnel manager call a `0x7F` / `0x7B` system transaction makes.
fn tunnel_call(tx: &L2Tx) -> (SystemTxKind, Bytes) {
    use hemi_tunnel::contracts::{confirm_deposit_calldata, finalize_withdrawal_calldata};
    match tx {
        L2Tx::Payout(p) => (SystemTxKind::Payout, finalize_withdrawal_calldata(p.txid)),
        L2Tx::Deposit(d) => (
            SystemTxKind::Deposit,
            confirm_deposit_calldata(d.txid, d.vout),
        ),
        // Only called for those two.
        _ => (SystemTxKind::Deposit, Bytes::new()),
    }
}

/// Installs the tunnel's contracts ([`crate::tunnel`]): their code, and the manager's
/// parameters in its first slots. A balance already at either address is kept.
fn install_tunnel<DB>(db: &mut DB, params: &hemi_tunnel::TunnelParams) -> Result<(), ChainError>
where
    DB: revm::Database<Error = revm::database_interface::bal::EvmDatabaseError<ChainError>>
        + revm::DatabaseCommit,
{
    use hemi_tunnel::contracts as c;
    use revm::state::{Account, AccountInfo, Bytecode, EvmStorageSlot, TransactionId};
    let mut changes = revm::primitives::HashMap::default();
    let install = [
        (
            c::TUNNEL_MANAGER_ADDRESS,
            c::tunnel_manager_code(),
            params.storage().to_vec(),
        ),
        (c::HEMI_BTC_ADDRESS, c::hemi_btc_code(), Vec::new()),
    ];
    for (address, code, slots) in install {
        let before = db.basic(address).map_err(db_error)?.unwrap_or_default();
        let info = AccountInfo {
            balance: before.balance,
            nonce: before.nonce.max(1),
            code_hash: alloy_primitives::keccak256(code),
            code: Some(Bytecode::new_raw(code.clone())),
            ..Default::default()
        };
        let storage = slots.into_iter().map(|(slot, value)| {
            (
                slot,
                EvmStorageSlot::new_changed(U256::ZERO, value, TransactionId::ZERO),
            )
        });
        let account = Account::from(info)
            .with_storage(storage)
            .with_touched_mark();
        changes.insert(address, account);
    }
    db.commit(changes);
    Ok(())
}

/// A system transaction out of its place (see [`crate::system`]).
fn misplaced(kind: SystemTxKind, index: usize) -> ChainError {
    BlockError::SystemTxPosition {
        kind: kind.name(),
        index,
        rule: kind.rule(),
    }
    .into()
}
