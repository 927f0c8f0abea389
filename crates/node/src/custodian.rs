//! The custodians' coordinator: pays pending withdrawal requests in batches. Every second: read
//! the tunnel's pending requests from the chain, pick the vault outputs that are minted deposits
//! or earlier payouts' change, build one payout for every request whose fee share fits its
//! maximum, have it signed by a quorum of custodians through a [`VaultSigner`] (the devnet's
//! in-process 2-of-3 set, or `hemi custodian` processes over JSON-RPC; another quorum if one
//! fails), and broadcast it through the Bitcoin RPC. The chain finalizes it once it has its
//! confirmations (the `0x7B` system transaction). Minted taproot deposits are swept into the
//! vault through their deposit leaf in the same loop (one sweep transaction, FROST-signed),
//! before their depositor's reclaim leaf opens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, TxKind, U256};
use alloy_sol_types::SolCall;
use bitcoin::{OutPoint, ScriptBuf, TxOut, Txid};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_store::ChainStore;
use hemi_btc_view::{AsOf, BitcoinView};
use hemi_chain::{CallOutcome, Chain};
use hemi_custodian::request::{deposit_leaf_witness, key_path_witness};
use hemi_custodian::VaultSigner;
use hemi_tunnel::contracts::{self, ITunnelManager, TUNNEL_MANAGER_ADDRESS};
use hemi_tunnel::payout::{build_payout, PayoutError, Request};
use hemi_tunnel::sweep::{build_sweep, SweepInput};

use crate::tunnel::Tunnel;

/// The payout fee rate on the devnet's regtest, sat/vB.
const FEE_RATE: u64 = 2;
/// The most requests one payout pays.
const MAX_BATCH: usize = 100;
/// How long a broadcast payout holds its requests and inputs before they are tried again.
const IN_FLIGHT: Duration = Duration::from_secs(120);

/// A withdrawal request as the contract holds it.
pub(crate) fn get_withdrawal(
    chain: &Chain,
    bitcoin: &Arc<dyn BitcoinView>,
    network: bitcoin::Network,
    id: u64,
) -> anyhow::Result<ITunnelManager::Withdrawal> {
    let head = chain.head().0;
    let pin = hemi_chain::pin::pin_for(chain, bitcoin, network, head)?;
    let tx = revm::context::TxEnv::builder()
        .kind(TxKind::Call(TUNNEL_MANAGER_ADDRESS))
        .data(Bytes::from(
            ITunnelManager::getWithdrawalCall { id: U256::from(id) }.abi_encode(),
        ))
        .gas_limit(1_000_000)
        .chain_id(Some(chain.spec().chain_id))
        .build()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    match chain.call(head, tx, None, pin, None)? {
        CallOutcome::Success { output, .. } => Ok(
            ITunnelManager::getWithdrawalCall::abi_decode_returns(&output)?,
        ),
        other => anyhow::bail!("getWithdrawal({id}): {other:?}"),
    }
}

/// The number of requests made so far.
pub(crate) fn withdrawal_count(chain: &Chain) -> anyhow::Result<u64> {
    let state = chain.state_at(chain.head().0)?;
    let slot = alloy_primitives::B256::from(
        U256::from(contracts::SLOT_WITHDRAWAL_COUNT).to_be_bytes::<32>(),
    );
    Ok(u64::try_from(state.storage(&TUNNEL_MANAGER_ADDRESS, &slot)?).unwrap_or(u64::MAX))
}

/// The coordinator of the custodian set.
pub(crate) struct Custodians {
    pub(crate) signer: Arc<dyn VaultSigner>,
    pub(crate) tunnel: Tunnel,
    pub(crate) chain: Arc<Chain>,
    pub(crate) store: Arc<ChainStore>,
    pub(crate) rpc: BitcoinRpc,
}

#[derive(Default)]
struct InFlight {
    /// Request id → the payout that pays it, and when it was broadcast.
    requests: HashMap<u64, (Txid, Instant)>,
    /// Input → the transaction that spends it, and when it was broadcast.
    inputs: HashMap<OutPoint, (Txid, Instant)>,
}

impl Custodians {
    /// Pays pending requests until the task is dropped.
    pub(crate) async fn run(self) {
        let me = Arc::new(self);
        let mut state = InFlight::default();
        let mut first_open = 1u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m = me.clone();
            let result = tokio::task::spawn_blocking(move || m.plan(first_open)).await;
            let (payable, open) = match result {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "custodians: nothing to pay yet");
                    continue;
                }
                Err(_) => return,
            };
            first_open = open;
            let now = Instant::now();
            // A request stays in flight while its payout is in Bitcoin's mempool or chain (it
            // leaves `payable` once L2 finalizes it); one whose payout vanished is paid again,
            // and its old inputs, free again, go into the new payout, which then replaces the
            // old one (the custodians sign a second payout of a request only if it does).
            let mut gone = Vec::new();
            for (id, (txid, t)) in &state.requests {
                if now.duration_since(*t) >= IN_FLIGHT && !me.known(txid).await {
                    gone.push(*id);
                }
            }
            let pending: HashSet<u64> = payable.iter().map(|r| u64::from(r.id)).collect();
            state
                .requests
                .retain(|id, _| pending.contains(id) && !gone.contains(id));
            let held: HashSet<Txid> = state.requests.values().map(|(t, _)| *t).collect();
            state
                .inputs
                .retain(|_, (txid, t)| held.contains(txid) || now.duration_since(*t) < IN_FLIGHT);
            me.sweep_round(&mut state, now).await;
            let requests: Vec<Request> = payable
                .into_iter()
                .filter(|r| !state.requests.contains_key(&u64::from(r.id)))
                .take(MAX_BATCH)
                .collect();
            if requests.is_empty() {
                continue;
            }
            let m = me.clone();
            let busy: HashSet<OutPoint> = state.inputs.keys().copied().collect();
            let made = tokio::task::spawn_blocking(move || m.pay(requests, &busy)).await;
            let Ok(Ok(Some((mut tx, prevouts, ids)))) = made else {
                if let Ok(Err(e)) = made {
                    tracing::warn!(error = %e, "custodians: no payout");
                }
                continue;
            };
            let leaves = vec![None; tx.input.len()];
            match me.signer.sign_inputs(&tx, &prevouts, &leaves).await {
                Ok(sigs) => {
                    for (txin, sig) in tx.input.iter_mut().zip(sigs) {
                        txin.witness = key_path_witness(sig);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?ids, "custodians: the payout was not signed");
                    continue;
                }
            }
            match me.rpc.send_raw_transaction(&tx).await {
                Ok(txid) => {
                    tracing::info!(%txid, ?ids, "custodians: payout broadcast");
                    for id in ids {
                        state.requests.insert(u64::from(id), (txid, now));
                    }
                    for i in &tx.input {
                        state.inputs.insert(i.previous_output, (txid, now));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "custodians: payout refused by Bitcoin"),
            }
        }
    }

    /// Sweeps the minted, unswept taproot deposits (not held by a sweep in flight) into the
    /// vault and broadcasts the sweep.
    async fn sweep_round(self: &Arc<Self>, state: &mut InFlight, now: Instant) {
        let m = self.clone();
        let busy: HashSet<OutPoint> = state.inputs.keys().copied().collect();
        let made = tokio::task::spawn_blocking(move || m.sweep(&busy)).await;
        let (mut tx, inputs) = match made {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "custodians: no sweep");
                return;
            }
        };
        let prevouts: Vec<TxOut> = inputs.iter().map(SweepInput::prevout).collect();
        let leaves: Vec<Option<ScriptBuf>> = inputs
            .iter()
            .map(|i| Some(i.deposit.deposit_leaf()))
            .collect();
        match self.signer.sign_inputs(&tx, &prevouts, &leaves).await {
            Ok(sigs) => {
                for ((txin, i), sig) in tx.input.iter_mut().zip(&inputs).zip(sigs) {
                    match deposit_leaf_witness(sig, &i.deposit) {
                        Some(w) => txin.witness = w,
                        None => return,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "custodians: the sweep was not signed");
                return;
            }
        }
        match self.rpc.send_raw_transaction(&tx).await {
            Ok(txid) => {
                tracing::info!(%txid, deposits = tx.input.len(), "custodians: taproot deposits swept into the vault");
                for i in &tx.input {
                    state.inputs.insert(i.previous_output, (txid, now));
                }
            }
            Err(e) => tracing::warn!(error = %e, "custodians: sweep refused by Bitcoin"),
        }
    }

    /// Whether Bitcoin still knows transaction `txid`: in the indexed chain or the mempool.
    async fn known(&self, txid: &Txid) -> bool {
        if matches!(self.store.transaction(txid, AsOf::Tip), Ok(Some(_))) {
            return true;
        }
        self.rpc.get_mempool_entry(txid).await.is_ok()
    }

    /// The minted taproot deposits still unspent at the Bitcoin tip, found through their hints
    /// in the blocks that can hold one (the mint window plus the sweep window, twice over).
    fn sweepable(&self, busy: &HashSet<OutPoint>) -> anyhow::Result<Vec<SweepInput>> {
        let params = &self.tunnel.spec.params;
        let state = self.chain.state_at(self.chain.head().0)?;
        let tip = self.store.tip()?;
        let lookback = 2 * (params.deposit_confirmations + contracts::SWEEP_BLOCKS);
        let vault_key = self.tunnel.vault.output_key();
        let mut out = Vec::new();
        for back in 0..lookback {
            let Some(height) = tip.height.checked_sub(back) else {
                break;
            };
            let Some((block, _)) = self.store.header_at(height)? else {
                continue;
            };
            let found = hemi_chain::tunnel::taproot_deposits_in(
                self.store.as_ref(),
                height,
                block.hash,
                vault_key,
            )?;
            for f in found.iter() {
                if busy.contains(&f.outpoint) || self.store.utxo(&f.outpoint)?.is_none() {
                    continue;
                }
                let display = contracts::txid_display(&f.outpoint.txid);
                if hemi_chain::tunnel::minted_in(&state, display, f.outpoint.vout)?.is_some() {
                    out.push(SweepInput {
                        outpoint: f.outpoint,
                        value: bitcoin::Amount::from_sat(f.value),
                        deposit: f.deposit,
                    });
                }
            }
        }
        out.truncate(hemi_tunnel::sweep::MAX_SWEEP_INPUTS);
        Ok(out)
    }

    /// One unsigned sweep of every sweepable deposit, if there is one, with its inputs.
    fn sweep(
        &self,
        busy: &HashSet<OutPoint>,
    ) -> anyhow::Result<Option<(bitcoin::Transaction, Vec<SweepInput>)>> {
        let inputs = self.sweepable(busy)?;
        if inputs.is_empty() {
            return Ok(None);
        }
        let tx = build_sweep(&self.tunnel.vault, &inputs, FEE_RATE)?;
        Ok(Some((tx, inputs)))
    }

    /// The pending requests (from `first_open` on) and the first id still open.
    fn plan(&self, first_open: u64) -> anyhow::Result<(Vec<Request>, u64)> {
        let count = withdrawal_count(&self.chain)?;
        let bitcoin = self.store.clone() as Arc<dyn BitcoinView>;
        let mut out = Vec::new();
        let mut open = None;
        for id in first_open..=count {
            let w = get_withdrawal(&self.chain, &bitcoin, self.tunnel.network, id)?;
            if w.status != 1 {
                continue;
            }
            open.get_or_insert(id);
            out.push(Request {
                id: u32::try_from(id)?,
                script: ScriptBuf::from_bytes(w.script.to_vec()),
                amount: w.amount,
                max_fee: w.maxFee,
            });
        }
        Ok((out, open.unwrap_or(count + 1)))
    }

    /// The vault outputs the custodians may spend, not held by a payout in flight: minted
    /// deposits, sweeps' outputs, and the change of payouts L2 has finalized (a payout is found
    /// for `finalizeWithdrawal` through its unspent change: spending it earlier would leave
    /// the payout's requests pending).
    fn spendable(&self, busy: &HashSet<OutPoint>) -> anyhow::Result<Vec<(OutPoint, TxOut)>> {
        let vault = self.tunnel.vault.script_pubkey();
        let state = self.chain.state_at(self.chain.head().0)?;
        let mut out = Vec::new();
        for u in self.store.utxos_by_script(&vault, AsOf::Tip)? {
            if busy.contains(&u.outpoint) {
                continue;
            }
            let minted = hemi_chain::tunnel::minted_in(
                &state,
                contracts::txid_display(&u.outpoint.txid),
                u.outpoint.vout,
            )?
            .is_some();
            let change = !minted
                && match self.store.transaction(&u.outpoint.txid, AsOf::Tip)? {
                    Some(t) if hemi_tunnel::sweep::is_sweep(&t.tx) => true,
                    Some(t) if hemi_tunnel::payout::is_payout(&t.tx) => {
                        hemi_chain::tunnel::payout_processed(
                            &state,
                            contracts::txid_display(&u.outpoint.txid),
                        )?
                    }
                    _ => false,
                };
            if minted || change {
                out.push((
                    u.outpoint,
                    TxOut {
                        value: bitcoin::Amount::from_sat(u.value),
                        script_pubkey: u.script_pubkey,
                    },
                ));
            }
        }
        // Largest first; at most 50 inputs.
        out.sort_by_key(|(_, o)| std::cmp::Reverse(o.value));
        out.truncate(50);
        Ok(out)
    }

    /// Builds one unsigned payout of as many of `requests` as can pay their fee share, with
    /// the outputs it spends and the ids it pays.
    #[allow(clippy::type_complexity)]
    fn pay(
        &self,
        mut requests: Vec<Request>,
        busy: &HashSet<OutPoint>,
    ) -> anyhow::Result<Option<(bitcoin::Transaction, Vec<TxOut>, Vec<u32>)>> {
        let utxos = self.spendable(busy)?;
        if utxos.is_empty() {
            return Ok(None);
        }
        let tx = loop {
            if requests.is_empty() {
                return Ok(None);
            }
            match build_payout(&self.tunnel.vault, &utxos, &requests, FEE_RATE) {
                Ok(tx) => break tx,
                // That request waits (until its deadline lets its requester challenge).
                Err(PayoutError::FeeTooHigh { id, .. }) => requests.retain(|r| r.id != id),
                Err(PayoutError::InsufficientFunds { .. }) if requests.len() > 1 => {
                    requests.pop();
                }
                Err(e) => return Err(e.into()),
            }
        };
        let prevouts: Vec<TxOut> = utxos.iter().map(|(_, o)| o.clone()).collect();
        Ok(Some((
            tx,
            prevouts,
            requests.iter().map(|r| r.id).collect(),
        )))
    }
}
