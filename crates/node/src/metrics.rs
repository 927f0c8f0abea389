//! Prometheus metrics at `GET /metrics` on the JSON-RPC port (OpenMetrics text, what
//! Prometheus, VictoriaMetrics and Grafana Agent scrape), and one log line per block.
//!
//! Gauges are read from the node's parts when scraped (L2 head, safe and finalized; the pool;
//! the Bitcoin client's indexed and announced heights and the head's pin; keystones known and
//! published). Counters run from the node's start: blocks, transactions, gas, tunnel deposits
//! and withdrawals (counted from the blocks as they arrive), and every RPC call by method with
//! its latency ([`hemi_rpc::eth::RpcObserver`]).

use std::sync::Arc;
use std::time::Duration;

use alloy_sol_types::SolEvent;
use hemi_btc_client::BitcoinClient;
use hemi_chain::{Chain, L2Tx};
use hemi_finality::FinalityTracker;
use hemi_sequencer::Sequencer;
use hemi_tunnel::contracts::{ITunnelManager, TUNNEL_MANAGER_ADDRESS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An RPC method, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

/// The build, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
    role: String,
}

/// A histogram of RPC latencies: 50 µs to ~13 s in ×4 steps.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

/// The node's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    sources: Sources,
    head: Gauge,
    safe: Gauge,
    finalized: Gauge,
    finality_lag: Gauge,
    pool_pending: Gauge,
    pool_queued: Gauge,
    btc_indexed: Gauge,
    btc_peer: Gauge,
    btc_lag: Gauge,
    btc_peers: Gauge,
    pin: Gauge,
    pin_lag: Gauge,
    keystones: Gauge,
    keystones_published: Gauge,
    blocks: Counter,
    txs: Counter,
    gas: Counter,
    deposits: Counter,
    withdrawals_requested: Counter,
    withdrawals_paid: Counter,
    rpc_calls: Family<Method, Counter>,
    rpc_errors: Family<Method, Counter>,
    rpc_seconds: Family<Method, Histogram, fn() -> Histogram>,
    rpc_batches: Counter,
    rpc_batch_seconds: Histogram,
}

/// What the gauges are read from.
pub(crate) struct Sources {
    /// The L2 chain.
    pub(crate) chain: Arc<Chain>,
    /// Keystones and finality.
    pub(crate) tracker: Arc<FinalityTracker>,
    /// The pool, when this node sequences.
    pub(crate) sequencer: Option<Arc<Sequencer>>,
    /// The Bitcoin client.
    pub(crate) client: BitcoinClient,
}

impl Metrics {
    /// Registers every metric; `role` is "devnet" or "node".
    pub(crate) fn new(sources: Sources, role: &str) -> Arc<Metrics> {
        let mut r = Registry::with_prefix("hemi");
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
                role: role.to_string(),
            })
            .set(1);
        r.register("build_info", "The running hemi-rs (always 1)", build);
        let m = Metrics {
            head: gauge(&mut r, "l2_head_block", "The L2 chain's head block number"),
            safe: gauge(
                &mut r,
                "l2_safe_block",
                "The newest L2 block whose keystone Bitcoin has published (the `safe` tag)",
            ),
            finalized: gauge(
                &mut r,
                "l2_finalized_block",
                "The newest superfinal L2 block (the `finalized` tag)",
            ),
            finality_lag: gauge(
                &mut r,
                "l2_finality_lag_blocks",
                "L2 blocks between the head and the newest superfinal block",
            ),
            pool_pending: gauge(
                &mut r,
                "txpool_pending",
                "Transactions ready for the next block",
            ),
            pool_queued: gauge(
                &mut r,
                "txpool_queued",
                "Transactions waiting for an earlier nonce",
            ),
            btc_indexed: gauge(
                &mut r,
                "bitcoin_indexed_height",
                "The Bitcoin client's best indexed block height",
            ),
            btc_peer: gauge(
                &mut r,
                "bitcoin_peer_height",
                "The best Bitcoin height a peer announced",
            ),
            btc_lag: gauge(
                &mut r,
                "bitcoin_lag_blocks",
                "Bitcoin blocks the client's index is behind its peers",
            ),
            btc_peers: gauge(
                &mut r,
                "bitcoin_peers",
                "Bitcoin peers with a completed handshake",
            ),
            pin: gauge(
                &mut r,
                "l2_bitcoin_pin_height",
                "The Bitcoin height the L2 head pins (what the hVM reads)",
            ),
            pin_lag: gauge(
                &mut r,
                "l2_bitcoin_pin_lag_blocks",
                "Bitcoin blocks between the indexed tip and the L2 head's pin",
            ),
            keystones: gauge(&mut r, "keystones", "Keystones of the canonical L2 chain"),
            keystones_published: gauge(
                &mut r,
                "keystones_published",
                "Keystones with a PoP publication in the best Bitcoin chain",
            ),
            blocks: counter(&mut r, "l2_blocks", "L2 blocks added since the start"),
            txs: counter(
                &mut r,
                "l2_transactions",
                "User transactions in the L2 blocks added since the start",
            ),
            gas: counter(
                &mut r,
                "l2_gas_used",
                "Gas used by the L2 blocks added since the start",
            ),
            deposits: counter(
                &mut r,
                "tunnel_deposits",
                "BTC deposits minted as hemiBTC since the start",
            ),
            withdrawals_requested: counter(
                &mut r,
                "tunnel_withdrawals_requested",
                "Withdrawals requested since the start",
            ),
            withdrawals_paid: counter(
                &mut r,
                "tunnel_withdrawals_paid",
                "Withdrawals paid on Bitcoin and finalized since the start",
            ),
            rpc_calls: Family::default(),
            rpc_errors: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency),
            rpc_batches: counter(&mut r, "rpc_batches", "JSON-RPC batches answered"),
            rpc_batch_seconds: latency(),
            registry: Registry::default(),
            sources,
        };
        r.register(
            "rpc_requests",
            "JSON-RPC calls answered, by method (batched calls included)",
            m.rpc_calls.clone(),
        );
        r.register(
            "rpc_errors",
            "JSON-RPC calls answered with an error, by method",
            m.rpc_errors.clone(),
        );
        r.register(
            "rpc_request_duration_seconds",
            "Time to answer a JSON-RPC call, by method (calls outside batches)",
            m.rpc_seconds.clone(),
        );
        r.register(
            "rpc_batch_duration_seconds",
            "Time to answer a JSON-RPC batch",
            m.rpc_batch_seconds.clone(),
        );
        Arc::new(Metrics { registry: r, ..m })
    }

    /// Reads the gauges and returns every metric as OpenMetrics text ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let s = &self.sources;
        let head = s.chain.head().0;
        let finalized = s.tracker.finalized();
        set(&self.head, head);
        set(&self.safe, s.tracker.safe());
        set(&self.finalized, finalized);
        set(&self.finality_lag, head.saturating_sub(finalized));
        let (pending, queued) = s
            .sequencer
            .as_ref()
            .map(|q| q.with_pool(|p| p.status()))
            .unwrap_or_default();
        set(&self.pool_pending, pending as u64);
        set(&self.pool_queued, queued as u64);
        let btc = s.client.status();
        set(&self.btc_indexed, btc.indexed_height.into());
        set(&self.btc_peer, btc.peer_height.into());
        set(
            &self.btc_lag,
            btc.peer_height.saturating_sub(btc.indexed_height).into(),
        );
        set(&self.btc_peers, btc.connected_peers.len() as u64);
        if let Ok(Some(pin)) = s.chain.pin(head) {
            set(&self.pin, pin.height.into());
            set(
                &self.pin_lag,
                btc.indexed_height.saturating_sub(pin.height).into(),
            );
        }
        set(&self.keystones, s.tracker.keystone_count() as u64);
        set(
            &self.keystones_published,
            s.tracker.published_count() as u64,
        );
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// Counts block `number` (read from the chain) and logs its line.
    fn count_block(&self, number: u64) {
        let Ok(Some(b)) = self.sources.chain.block_with_receipts(number) else {
            return;
        };
        let txs = b
            .block
            .txs
            .iter()
            .filter(|t| t.tx.user_envelope().is_some())
            .count();
        let deposits = b
            .block
            .txs
            .iter()
            .filter(|t| matches!(t.tx, L2Tx::Deposit(_)))
            .count();
        let (mut requested, mut paid) = (0u64, 0u64);
        for log in b.receipts.iter().flat_map(|r| &r.receipt.logs) {
            if log.address != TUNNEL_MANAGER_ADDRESS {
                continue;
            }
            match log.topics().first() {
                Some(t) if *t == ITunnelManager::WithdrawalRequested::SIGNATURE_HASH => {
                    requested += 1
                }
                Some(t) if *t == ITunnelManager::WithdrawalPaid::SIGNATURE_HASH => paid += 1,
                _ => {}
            }
        }
        let gas = b.block.header.gas_used;
        self.blocks.inc();
        self.txs.inc_by(txs as u64);
        self.gas.inc_by(gas);
        self.deposits.inc_by(deposits as u64);
        self.withdrawals_requested.inc_by(requested);
        self.withdrawals_paid.inc_by(paid);
        let pin = self.sources.chain.pin(number).ok().flatten();
        tracing::info!(
            number,
            txs,
            gas,
            hash = %b.block.hash,
            bitcoin_pin = pin.map(|p| p.height),
            bitcoin_tip = self.sources.client.status().indexed_height,
            deposits,
            withdrawals = requested,
            "block"
        );
    }
}

fn set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

impl hemi_rpc::eth::RpcObserver for Metrics {
    fn call(&self, method: &str, elapsed: Duration, ok: bool) {
        let label = Method {
            method: method.to_string(),
        };
        self.rpc_calls.get_or_create(&label).inc();
        if !ok {
            self.rpc_errors.get_or_create(&label).inc();
        }
        self.rpc_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    fn batch(&self, methods: &[String], elapsed: Duration) {
        for m in methods {
            self.rpc_calls
                .get_or_create(&Method { method: m.clone() })
                .inc();
        }
        self.rpc_batches.inc();
        self.rpc_batch_seconds.observe(elapsed.as_secs_f64());
    }
}

/// Counts every block the chain adds (and logs one line for each), from `blocks`' numbers.
pub(crate) fn spawn_block_counter(
    metrics: Arc<Metrics>,
    mut blocks: tokio::sync::broadcast::Receiver<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = metrics.sources.chain.head().0;
        loop {
            let n = match blocks.recv().await {
                Ok(n) => n,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    metrics.sources.chain.head().0
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            // After an unwind (a fork switch) the new branch's blocks count from where it
            // forks; a block seen twice is counted once per time it was added.
            let from = if n <= last { n } else { last + 1 };
            last = n;
            let m = metrics.clone();
            if tokio::task::spawn_blocking(move || {
                for number in from..=n {
                    m.count_block(number);
                }
            })
            .await
            .is_err()
            {
                return;
            }
        }
    })
}
