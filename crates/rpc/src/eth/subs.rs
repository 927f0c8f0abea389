//! `eth_subscribe` / `eth_unsubscribe` over WebSocket: `newHeads`, `logs`,
//! `newPendingTransactions`, with geth's notification shapes, and Hemi's `newKeystones`.
//!
//! Each subscription is one task that waits on the backend's broadcast of committed block
//! numbers (or pooled transaction hashes) and on the connection closing. Block numbers are
//! followed with a cursor, so a receiver that lagged behind the broadcast still reports every
//! block in order (up to [`MAX_CATCH_UP`] blocks back).

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_rpc_types_eth::Filter;
use jsonrpsee::core::server::{PendingSubscriptionSink, SubscriptionSink};
use jsonrpsee::core::traits::IdProvider;
use jsonrpsee::types::{ErrorObjectOwned, Params, SubscriptionId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::backend::{EthBackend, Tag};
use super::errors::{backend_error, internal_error, invalid_params};
use super::filters::random_id;
use super::params::Args;
use super::EthContext;

/// Most blocks a subscription reports after falling behind; older ones are skipped.
pub const MAX_CATCH_UP: u64 = 1024;

/// Subscription ids as geth makes them (`0x` and 32 hex digits). Set it on the server with
/// `ServerConfigBuilder::set_id_provider` (done by [`crate::start`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HexIdProvider;

impl IdProvider for HexIdProvider {
    fn next_id(&self) -> SubscriptionId<'static> {
        SubscriptionId::Str(random_id().into())
    }
}

/// What a subscription reports.
enum Kind {
    NewHeads,
    Logs(Box<Filter>),
    Pending { full: bool },
    Keystones,
}

fn parse_kind(params: &Params) -> Result<Kind, ErrorObjectOwned> {
    let args = Args::parse(params, 2)?;
    let name: String = args.req(0)?;
    match name.as_str() {
        "newHeads" => Ok(Kind::NewHeads),
        "logs" => Ok(Kind::Logs(Box::new(
            args.opt::<Filter>(1)?.unwrap_or_default(),
        ))),
        "newPendingTransactions" => Ok(Kind::Pending {
            full: args.opt::<bool>(1)?.unwrap_or(false),
        }),
        "newKeystones" => Ok(Kind::Keystones),
        other => Err(ErrorObjectOwned::owned(
            super::errors::code::METHOD_NOT_FOUND,
            format!("no {other:?} subscription in eth namespace"),
            None::<()>,
        )),
    }
}

/// The `eth_subscribe` handler: parses the kind, accepts, and streams until the client leaves.
pub(crate) async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    ctx: Arc<EthContext>,
) {
    let kind = match parse_kind(&params) {
        Ok(k) => k,
        Err(e) => {
            pending.reject(e).await;
            return;
        }
    };
    if let Kind::Logs(f) = &kind {
        if f.get_block_hash().is_some() {
            pending
                .reject(invalid_params("logs subscription does not take blockHash"))
                .await;
            return;
        }
    }
    let backend = ctx.backend.clone();
    match kind {
        Kind::Keystones => {
            let Some(rx) = backend.subscribe_keystones() else {
                pending
                    .reject(invalid_params("this node has no keystones"))
                    .await;
                return;
            };
            relay(pending, rx, |v| async move { Some(v) }).await;
        }
        Kind::Pending { full } => {
            let rx = backend.subscribe_pending();
            relay(pending, rx, |hash| {
                let backend = backend.clone();
                async move {
                    if full {
                        pending_tx(&backend, hash).await
                    } else {
                        Some(Value::String(hash.to_string()))
                    }
                }
            })
            .await;
        }
        Kind::NewHeads | Kind::Logs(_) => {
            let mut rx = backend.subscribe_blocks();
            let Ok(sink) = pending.accept().await else {
                return;
            };
            let mut next: Option<u64> = None;
            loop {
                let newest = tokio::select! {
                    _ = sink.closed() => return,
                    r = rx.recv() => match r {
                        Ok(n) => n,
                        Err(RecvError::Lagged(_)) => {
                            let b = backend.clone();
                            match tokio::task::spawn_blocking(move || b.tag(Tag::Latest)).await {
                                Ok(n) => n,
                                Err(_) => return,
                            }
                        }
                        Err(RecvError::Closed) => return,
                    },
                };
                let from = match next {
                    Some(n) if n <= newest => n.max(newest.saturating_sub(MAX_CATCH_UP - 1)),
                    // First block, or the chain went back (a reorg): report from the new one.
                    _ => newest,
                };
                next = Some(newest.saturating_add(1));
                for number in from..=newest {
                    let items = match fetch(&backend, &kind, number).await {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!(number, error = %e.message(), "subscription fetch failed");
                            continue;
                        }
                    };
                    for item in items {
                        if send(&sink, &item).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The notifications block `number` yields for `kind`: its header, or its matching logs.
async fn fetch(
    backend: &Arc<dyn EthBackend>,
    kind: &Kind,
    number: u64,
) -> Result<Vec<Value>, ErrorObjectOwned> {
    let b = backend.clone();
    match kind {
        Kind::NewHeads => {
            let block = tokio::task::spawn_blocking(move || b.block(number, false))
                .await
                .map_err(|e| internal_error(e.to_string()))?
                .map_err(backend_error)?;
            Ok(block.map(header_of).into_iter().collect())
        }
        Kind::Logs(filter) => {
            let f = filter.clone();
            let logs = tokio::task::spawn_blocking(move || b.logs(number, number, &f, usize::MAX))
                .await
                .map_err(|e| internal_error(e.to_string()))?
                .map_err(backend_error)?;
            logs.into_iter()
                .map(|mut l| {
                    l.removed = false;
                    serde_json::to_value(l).map_err(|e| internal_error(e.to_string()))
                })
                .collect()
        }
        Kind::Pending { .. } | Kind::Keystones => Ok(Vec::new()),
    }
}

/// Accepts `pending` and relays what `rx` broadcasts, turned into notifications by `item`
/// (`None` skips one), until the client leaves or the broadcast closes. A receiver that lags
/// behind skips what it missed.
pub(crate) async fn relay<T, F, Fut>(
    pending: PendingSubscriptionSink,
    mut rx: tokio::sync::broadcast::Receiver<T>,
    mut item: F,
) where
    T: Clone,
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let Ok(sink) = pending.accept().await else {
        return;
    };
    loop {
        let next = tokio::select! {
            _ = sink.closed() => return,
            r = rx.recv() => match r {
                Ok(v) => v,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        if let Some(v) = item(next).await {
            if send(&sink, &v).await.is_err() {
                return;
            }
        }
    }
}

async fn pending_tx(backend: &Arc<dyn EthBackend>, hash: B256) -> Option<Value> {
    let b = backend.clone();
    tokio::task::spawn_blocking(move || b.transaction_by_hash(hash))
        .await
        .ok()?
        .ok()?
}

/// geth's `newHeads` object: the block without its body and the fields only full blocks carry.
pub fn header_of(mut block: Value) -> Value {
    if let Value::Object(map) = &mut block {
        for k in [
            "transactions",
            "uncles",
            "withdrawals",
            "size",
            "totalDifficulty",
        ] {
            map.remove(k);
        }
    }
    block
}

async fn send(sink: &SubscriptionSink, item: &impl Serialize) -> Result<(), ()> {
    let raw = serde_json::value::to_raw_value(item).map_err(|_| ())?;
    sink.send(raw).await.map_err(|_| ())
}
