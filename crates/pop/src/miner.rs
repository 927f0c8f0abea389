//! The miner loop: reconcile the record with what Bitcoin and the node say, keep unconfirmed
//! publications in the mempool (re-broadcast, fee bump), publish what nobody has published.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, Network, OutPoint, Transaction, TxOut};
use hemi_btc_rpc_client::{BitcoinRpc, RpcError};
use hemi_btc_wallet::{Key, KeyKind, WalletError};
use parking_lot::Mutex;
use serde::Serialize;

use crate::l2::{IndexedUtxo, L2Client, L2Error, L2Keystone};
use crate::record::{MinerRecord, Publication, RecordError, RECORD_VERSION};
use crate::tx::build_pop_transaction;

/// Coinbase outputs are spendable in the block 100 after theirs.
const COINBASE_MATURITY: u32 = 100;
/// Confirmed publications are forgotten this many Bitcoin blocks after their confirmation.
const FORGET_AFTER: u32 = 100;
/// Core's "Transaction outputs already in utxo set".
const RPC_VERIFY_ALREADY_IN_UTXO_SET: i64 = -27;

/// How the miner runs.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// The miner's key: its Bitcoin coins, and (same secp256k1 key) its L2 reward address.
    pub key: Key,
    /// Which of the key's scripts it spends and receives change on.
    pub kind: KeyKind,
    /// Bitcoin network of the addresses.
    pub network: Network,
    /// The hemi node's JSON-RPC URL.
    pub l2_url: String,
    /// The Bitcoin node's RPC (broadcast, mempool, fee estimates, tip).
    pub bitcoin: BitcoinRpc,
    /// Where the record lives; `None` keeps it in memory (not restart-safe).
    pub record_path: Option<PathBuf>,
    /// Fee-rate cap, sat/vB.
    pub max_fee_rate: f64,
    /// Fee rate when the node has no estimate, sat/vB (also the floor).
    pub min_fee_rate: f64,
    /// `estimatesmartfee` target, blocks.
    pub conf_target: u16,
    /// Bitcoin blocks a publication may stay unconfirmed before it is fee-bumped.
    pub bump_after: u32,
    /// How many of the newest keystones are considered.
    pub lookback: usize,
    /// Most unconfirmed publications at once.
    pub max_pending: usize,
    /// Polling interval (keystone notifications also wake the miner).
    pub poll: Duration,
}

impl MinerConfig {
    /// Defaults for everything but the key and the endpoints: P2WPKH, cap 100 sat/vB, floor
    /// 1 sat/vB, target 6 blocks (Hemi's), bump after 3 blocks, the newest 12 keystones (Hemi's),
    /// 24 pending at most, poll every 2 s.
    pub fn new(key: Key, network: Network, l2_url: String, bitcoin: BitcoinRpc) -> Self {
        MinerConfig {
            key,
            kind: KeyKind::P2wpkh,
            network,
            l2_url,
            bitcoin,
            record_path: None,
            max_fee_rate: 100.0,
            min_fee_rate: 1.0,
            conf_target: 6,
            bump_after: 3,
            lookback: 12,
            max_pending: 24,
            poll: Duration::from_secs(2),
        }
    }
}

/// Why a miner step failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PopError {
    /// The hemi node could not be asked.
    #[error("hemi node: {0}")]
    L2(#[from] L2Error),
    /// The Bitcoin node could not be asked.
    #[error("Bitcoin node: {0}")]
    Bitcoin(#[from] RpcError),
    /// Building or signing failed.
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    /// The record file.
    #[error("record: {0}")]
    Record(#[from] RecordError),
    /// Configuration.
    #[error("config: {0}")]
    Config(String),
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Keystones newly published (L2 numbers).
    pub published: Vec<u64>,
    /// Publications fee-bumped.
    pub bumped: Vec<u64>,
    /// Publications re-broadcast (back from a restart or a mempool eviction).
    pub rebroadcast: Vec<u64>,
    /// Keystones left for a later step (no spendable coin, pending limit).
    pub waiting: Vec<u64>,
}

/// What `hemi_nodeStatus` shows of the miner.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MinerStatus {
    /// Bitcoin address it spends from.
    pub bitcoin_address: String,
    /// L2 address of the same key (PoP rewards).
    pub reward_address: String,
    /// Publications confirmed in Bitcoin (still remembered).
    pub confirmed: usize,
    /// Publications in the mempool.
    pub pending: usize,
    /// The last error, if the last step failed.
    pub last_error: Option<String>,
}

/// The PoP miner.
pub struct PopMiner {
    cfg: MinerConfig,
    l2: L2Client,
    address: Address,
    record: MinerRecord,
    status: Arc<Mutex<MinerStatus>>,
}

/// The Ethereum address of a secp256k1 key (keccak256 of the uncompressed public key).
fn reward_address(key: &Key) -> String {
    let pk = key.public_key().inner.serialize_uncompressed();
    alloy_primitives::Address::from_slice(&alloy_primitives::keccak256(&pk[1..])[12..])
        .to_checksum(None)
}

impl PopMiner {
    /// A miner; loads its record if there is one.
    ///
    /// # Errors
    /// [`PopError::Record`] for an unreadable record or one of another key;
    /// [`PopError::Config`] for bad fee settings.
    pub fn new(cfg: MinerConfig) -> Result<Self, PopError> {
        if !(cfg.min_fee_rate > 0.0 && cfg.min_fee_rate <= cfg.max_fee_rate) {
            return Err(PopError::Config(format!(
                "fee rates: need 0 < min ({}) <= max ({})",
                cfg.min_fee_rate, cfg.max_fee_rate
            )));
        }
        let address = cfg.key.address(cfg.kind, cfg.network);
        let record = match &cfg.record_path {
            Some(p) => MinerRecord::load(p, &address.to_string()).map_err(PopError::Record)?,
            None => MinerRecord {
                version: RECORD_VERSION,
                address: address.to_string(),
                publications: Vec::new(),
            },
        };
        let l2 = L2Client::new(&cfg.l2_url).map_err(PopError::L2)?;
        let status = Arc::new(Mutex::new(MinerStatus {
            bitcoin_address: address.to_string(),
            reward_address: reward_address(&cfg.key),
            ..Default::default()
        }));
        Ok(PopMiner {
            cfg,
            l2,
            address,
            record,
            status,
        })
    }

    /// The Bitcoin address the miner spends from.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The L2 (Ethereum) address of the miner's key: where PoP rewards go.
    pub fn reward_address(&self) -> String {
        reward_address(&self.cfg.key)
    }

    /// A live view of the miner's status.
    pub fn status(&self) -> Arc<Mutex<MinerStatus>> {
        self.status.clone()
    }

    /// The record (what it published).
    pub fn record(&self) -> &MinerRecord {
        &self.record
    }

    fn save(&self) -> Result<(), PopError> {
        match &self.cfg.record_path {
            Some(p) => self.record.save(p).map_err(PopError::Record),
            None => Ok(()),
        }
    }

    async fn fee_rate(&self) -> f64 {
        let estimate = self
            .cfg
            .bitcoin
            .estimate_smart_fee(self.cfg.conf_target)
            .await
            .ok()
            .flatten();
        estimate
            .unwrap_or(self.cfg.min_fee_rate)
            .clamp(self.cfg.min_fee_rate, self.cfg.max_fee_rate)
    }

    /// Runs [`PopMiner::step`] every `poll`, or sooner when `wake` fires, until the task is
    /// dropped. Errors are logged and shown in the status; the loop goes on.
    pub async fn run(mut self, mut wake: Option<tokio::sync::broadcast::Receiver<()>>) {
        tracing::info!(address = %self.address, reward = %self.reward_address(), "PoP miner running");
        loop {
            match self.step().await {
                Ok(r) => {
                    if !r.published.is_empty() || !r.bumped.is_empty() || !r.rebroadcast.is_empty()
                    {
                        tracing::info!(published = ?r.published, bumped = ?r.bumped, rebroadcast = ?r.rebroadcast, "PoP miner");
                    }
                    self.status.lock().last_error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "PoP miner step failed");
                    self.status.lock().last_error = Some(e.to_string());
                }
            }
            let sleep = tokio::time::sleep(self.cfg.poll);
            match wake.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = sleep => {}
                        r = rx.recv() => {
                            if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                                wake = None;
                            }
                        }
                    }
                }
                None => sleep.await,
            }
        }
    }

    /// One pass: reconcile, keep pending publications alive, publish new keystones.
    ///
    /// # Errors
    /// The node or Bitcoin cannot be asked, or the record cannot be written. A failure to
    /// broadcast one transaction is not an error of the step: it is logged and retried later.
    pub async fn step(&mut self) -> Result<StepReport, PopError> {
        let mut report = StepReport::default();
        let bitcoin_tip = u32::try_from(self.cfg.bitcoin.get_block_count().await?).unwrap_or(0);
        let keystones = self
            .l2
            .latest_keystones(self.cfg.lookback)
            .await
            .map_err(PopError::L2)?;
        let index_tip = self.l2.btc_tip().await.map_err(PopError::L2)?;
        let mut changed = self.reconcile(&keystones, bitcoin_tip).await?;
        changed |= self.keep_alive(bitcoin_tip, index_tip, &mut report).await?;
        if changed {
            self.save()?;
        }
        self.publish(&keystones, bitcoin_tip, index_tip, &mut report)
            .await?;
        let mut st = self.status.lock();
        st.confirmed = self
            .record
            .publications
            .iter()
            .filter(|p| p.confirmed.is_some())
            .count();
        st.pending = self
            .record
            .publications
            .iter()
            .filter(|p| p.pending())
            .count();
        Ok(report)
    }

    /// Marks publications confirmed / covered / unconfirmed again from the node's view.
    async fn reconcile(
        &mut self,
        keystones: &[L2Keystone],
        bitcoin_tip: u32,
    ) -> Result<bool, PopError> {
        let mut changed = false;
        let mut keep = Vec::with_capacity(self.record.publications.len());
        for mut p in std::mem::take(&mut self.record.publications) {
            let known = match keystones.iter().find(|k| k.hash == p.keystone) {
                Some(k) => Some(k.clone()),
                None => self.l2.keystone(&p.keystone).await.map_err(PopError::L2)?,
            };
            let publication = known.as_ref().and_then(|k| k.publication);
            let (confirmed, covered) = match publication {
                Some(pb) if p.txids.contains(&pb.txid) => (Some(pb.height), false),
                Some(_) => (None, true),
                None => (None, false),
            };
            if (confirmed, covered) != (p.confirmed, p.covered) {
                if p.confirmed.is_some() && confirmed.is_none() {
                    tracing::info!(
                        keystone = p.l2_block_number,
                        "PoP publication left Bitcoin's best chain; watching it again"
                    );
                    // Back in the mempool (or gone); the bump clock starts again.
                    p.sent_at = bitcoin_tip;
                }
                p.confirmed = confirmed;
                p.covered = covered;
                changed = true;
            }
            // A keystone the node no longer knows (another chain, a reset devnet): once one of
            // our versions is confirmed there is nothing left to watch.
            if known.is_none() && p.pending() {
                let mut confirmed_somewhere = false;
                for t in &p.txids {
                    confirmed_somewhere |= self.l2.btc_confirmed(t).await.map_err(PopError::L2)?;
                }
                if confirmed_somewhere {
                    changed = true;
                    continue;
                }
            }
            // Forget what is long confirmed (or covered), or no longer a keystone at all.
            let settled =
                publication.is_some_and(|pb| bitcoin_tip >= pb.height.saturating_add(FORGET_AFTER));
            if settled || known.is_none() && !p.pending() {
                changed = true;
                continue;
            }
            keep.push(p);
        }
        self.record.publications = keep;
        Ok(changed)
    }

    /// Keeps pending publications in the mempool and bumps the stuck ones.
    async fn keep_alive(
        &mut self,
        bitcoin_tip: u32,
        index_tip: u32,
        report: &mut StepReport,
    ) -> Result<bool, PopError> {
        let mut changed = false;
        let mut i = 0;
        while i < self.record.publications.len() {
            let p = self.record.publications[i].clone();
            if !p.pending() {
                i += 1;
                continue;
            }
            let in_mempool = self.in_mempool(&p).await?;
            if !in_mempool {
                match self.broadcast(&p.raw).await {
                    Ok(()) => report.rebroadcast.push(p.l2_block_number),
                    Err(e) if e.rpc_code() == Some(RPC_VERIFY_ALREADY_IN_UTXO_SET) => {
                        // Confirmed; the node's index has not caught up yet.
                    }
                    Err(e) => {
                        // Gone for good only if the node has caught up with Bitcoin and knows
                        // none of our versions: then the input was spent by something else.
                        // Tips read now, not at the start of the step: a block that confirmed it
                        // meanwhile must be in the index before we conclude anything.
                        let fresh_tip =
                            u32::try_from(self.cfg.bitcoin.get_block_count().await?).unwrap_or(0);
                        let fresh_index = self.l2.btc_tip().await.map_err(PopError::L2)?;
                        let mut known = false;
                        for t in &p.txids {
                            known |= self.l2.btc_confirmed(t).await.map_err(PopError::L2)?;
                        }
                        if fresh_index >= fresh_tip.max(bitcoin_tip).max(index_tip) && !known {
                            tracing::warn!(keystone = p.l2_block_number, error = %e, "PoP transaction can no longer be broadcast; publishing the keystone anew");
                            self.drop_with_descendants(i);
                            changed = true;
                            continue;
                        }
                    }
                }
                i += 1;
                continue;
            }
            let has_child = p.change_outpoint().is_some_and(|(c, _)| {
                self.record
                    .publications
                    .iter()
                    .any(|q| q.pending() && q.input == c)
            });
            if bitcoin_tip >= p.sent_at.saturating_add(self.cfg.bump_after) && !has_child {
                if self.bump(i, bitcoin_tip).await? {
                    report.bumped.push(p.l2_block_number);
                }
                changed = true;
            }
            i += 1;
        }
        Ok(changed)
    }

    async fn in_mempool(&self, p: &Publication) -> Result<bool, PopError> {
        let Some(txid) = p.txid() else {
            return Ok(false);
        };
        match self.cfg.bitcoin.get_mempool_entry(&txid).await {
            Ok(_) => Ok(true),
            Err(RpcError::Rpc { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn broadcast(&self, raw: &str) -> Result<(), RpcError> {
        let tx: Transaction = deserialize_hex(raw)
            .map_err(|e| RpcError::Decode(format!("our own record's transaction: {e}")))?;
        self.cfg.bitcoin.send_raw_transaction(&tx).await.map(|_| ())
    }

    fn drop_with_descendants(&mut self, i: usize) {
        let removed = self.record.publications.remove(i);
        let mut gone: Vec<OutPoint> = removed.change_outpoint().map(|c| c.0).into_iter().collect();
        while let Some(c) = gone.pop() {
            if let Some(j) = self
                .record
                .publications
                .iter()
                .position(|q| q.pending() && q.input == c)
            {
                let q = self.record.publications.remove(j);
                gone.extend(q.change_outpoint().map(|c| c.0));
            }
        }
    }

    /// Replaces publication `i` with a higher fee (same input). Returns whether it did.
    async fn bump(&mut self, i: usize, bitcoin_tip: u32) -> Result<bool, PopError> {
        let old = self.record.publications[i].clone();
        let rate = (old.fee_rate * 1.25)
            .max(old.fee_rate + 1.0)
            .min(self.cfg.max_fee_rate);
        if rate <= old.fee_rate {
            tracing::warn!(
                keystone = old.l2_block_number,
                fee_rate = old.fee_rate,
                "PoP transaction stuck at the fee-rate cap"
            );
            self.record.publications[i].sent_at = bitcoin_tip;
            return Ok(false);
        }
        let abbreviated = deserialize_hex::<Transaction>(&old.raw)
            .ok()
            .and_then(|t| {
                t.output.iter().find_map(|o| {
                    hemi_keystone::AbbreviatedKeystone::from_pop_script(&o.script_pubkey).ok()
                })
            })
            .ok_or_else(|| {
                PopError::Record(RecordError::NoPopOutput {
                    keystone: old.keystone.clone(),
                })
            })?;
        let utxo = (
            old.input,
            TxOut {
                value: Amount::from_sat(old.input_value),
                script_pubkey: self.cfg.key.script_pubkey(self.cfg.kind),
            },
        );
        let tx = match build_pop_transaction(&self.cfg.key, self.cfg.kind, utxo, &abbreviated, rate)
        {
            Ok(tx) => tx,
            Err(WalletError::InsufficientFunds { .. }) => {
                // The coin cannot pay more: leave the transaction as it is and go on publishing.
                tracing::warn!(
                    keystone = old.l2_block_number,
                    fee_rate = rate,
                    "PoP transaction's coin cannot pay a higher fee"
                );
                self.record.publications[i].sent_at = bitcoin_tip;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let mut new = fill(old.clone(), &tx, rate, old.input_value);
        new.sent_at = bitcoin_tip;
        self.record.publications[i] = new;
        self.save()?;
        match self.broadcast(&serialize_hex(&tx)).await {
            Ok(()) => {
                tracing::info!(keystone = old.l2_block_number, from = old.fee_rate, to = rate, txid = %tx.compute_txid(), "PoP transaction fee-bumped (RBF)");
                Ok(true)
            }
            Err(e) if !matches!(e, RpcError::Rpc { .. }) => {
                // Outcome unknown (the node may have taken it): keep the record of the new one;
                // the next steps re-broadcast it.
                tracing::warn!(keystone = old.l2_block_number, error = %e, "fee bump broadcast failed; will retry");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(keystone = old.l2_block_number, error = %e, "fee bump refused; keeping the previous transaction");
                let mut back = old;
                back.sent_at = bitcoin_tip;
                self.record.publications[i] = back;
                self.save()?;
                Ok(false)
            }
        }
    }

    /// Spendable coins: confirmed outputs of our address (mature, not spent by a pending
    /// publication) first, then change of pending publications nobody spends yet.
    async fn coins(&self, index_tip: u32) -> Result<Vec<(OutPoint, TxOut)>, PopError> {
        let spent: HashSet<OutPoint> = self
            .record
            .publications
            .iter()
            .filter(|p| p.confirmed.is_none())
            .map(|p| p.input)
            .collect();
        let mut confirmed: Vec<IndexedUtxo> = self
            .l2
            .btc_utxos(&self.address.to_string())
            .await
            .map_err(PopError::L2)?
            .into_iter()
            .filter(|u| !spent.contains(&u.outpoint))
            .filter(|u| {
                !u.coinbase
                    || index_tip.saturating_add(1) >= u.height.saturating_add(COINBASE_MATURITY)
            })
            .collect();
        confirmed.sort_by_key(|u| std::cmp::Reverse(u.txout.value));
        let script = self.cfg.key.script_pubkey(self.cfg.kind);
        let mut out: Vec<(OutPoint, TxOut)> = confirmed
            .into_iter()
            .map(|u| (u.outpoint, u.txout))
            .collect();
        for p in &self.record.publications {
            if !p.pending() {
                continue;
            }
            if let Some((op, value)) = p.change_outpoint() {
                if !spent.contains(&op) {
                    out.push((
                        op,
                        TxOut {
                            value: Amount::from_sat(value),
                            script_pubkey: script.clone(),
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Publishes keystones nobody has published and we are not already publishing.
    async fn publish(
        &mut self,
        keystones: &[L2Keystone],
        bitcoin_tip: u32,
        index_tip: u32,
        report: &mut StepReport,
    ) -> Result<(), PopError> {
        let todo: Vec<&L2Keystone> = keystones
            .iter()
            .filter(|k| k.publication.is_none())
            .filter(|k| {
                !self
                    .record
                    .publications
                    .iter()
                    .any(|p| p.keystone == k.hash)
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut coins = self.coins(index_tip).await?;
        let rate = self.fee_rate().await;
        for k in todo {
            let pending = self
                .record
                .publications
                .iter()
                .filter(|p| p.pending())
                .count();
            if pending >= self.cfg.max_pending {
                report.waiting.push(k.l2_block_number);
                continue;
            }
            let mut built = None;
            while !coins.is_empty() {
                let coin = coins.remove(0);
                match build_pop_transaction(
                    &self.cfg.key,
                    self.cfg.kind,
                    coin.clone(),
                    &k.abbreviated,
                    rate,
                ) {
                    Ok(tx) => {
                        built = Some((coin, tx));
                        break;
                    }
                    Err(WalletError::InsufficientFunds { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(((input, txout), tx)) = built else {
                tracing::warn!(address = %self.address, keystone = k.l2_block_number, "no spendable coin for a PoP transaction");
                report.waiting.push(k.l2_block_number);
                continue;
            };
            let p = fill(
                Publication {
                    keystone: k.hash.clone(),
                    l2_block_number: k.l2_block_number,
                    txids: Vec::new(),
                    raw: String::new(),
                    fee_rate: rate,
                    fee: 0,
                    vsize: 0,
                    input,
                    input_value: txout.value.to_sat(),
                    change: None,
                    sent_at: bitcoin_tip,
                    confirmed: None,
                    covered: false,
                },
                &tx,
                rate,
                txout.value.to_sat(),
            );
            // Recorded before it is broadcast: a crash in between re-broadcasts this very
            // transaction at the next start instead of publishing the keystone again.
            self.record.publications.push(p.clone());
            self.save()?;
            match self.broadcast(&p.raw).await {
                Ok(()) => {
                    // Its change is spendable too, after the confirmed coins: chains of
                    // unconfirmed publications cannot be fee-bumped one by one.
                    if let Some((op, value)) = p.change_outpoint() {
                        coins.push((
                            op,
                            TxOut {
                                value: Amount::from_sat(value),
                                script_pubkey: self.cfg.key.script_pubkey(self.cfg.kind),
                            },
                        ));
                    }
                    tracing::info!(keystone = k.l2_block_number, txid = ?p.txid(), vsize = p.vsize, fee = p.fee, "PoP transaction broadcast");
                    report.published.push(k.l2_block_number);
                }
                Err(e) if !matches!(e, RpcError::Rpc { .. }) => {
                    // Outcome unknown: the node may have it. Keep the record; the next steps
                    // re-broadcast the same bytes rather than publish the keystone again.
                    tracing::warn!(keystone = k.l2_block_number, error = %e, "PoP broadcast failed; will retry");
                }
                Err(e) => {
                    tracing::warn!(keystone = k.l2_block_number, error = %e, "PoP transaction refused by the Bitcoin node");
                    self.record.publications.pop();
                    self.save()?;
                    report.waiting.push(k.l2_block_number);
                }
            }
        }
        Ok(())
    }
}

/// Fills the transaction-dependent fields of a publication.
fn fill(mut p: Publication, tx: &Transaction, rate: f64, input_value: u64) -> Publication {
    let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    p.txids.push(tx.compute_txid());
    p.raw = serialize_hex(tx);
    p.fee_rate = rate;
    p.fee = input_value.saturating_sub(out);
    p.vsize = tx.vsize() as u64;
    p.change = tx
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| !o.script_pubkey.is_op_return())
        .map(|(i, o)| (i as u32, o.value.to_sat()));
    p
}
