//! Log queries (`eth_getLogs`) and polled filters (`eth_newFilter`, `eth_newBlockFilter`,
//! `eth_newPendingTransactionFilter`, `eth_getFilterChanges`, `eth_getFilterLogs`,
//! `eth_uninstallFilter`).
//!
//! Block and log filters remember the next block they have not reported and read the chain
//! forward from it on each poll, so no task runs per filter; pending-transaction filters hold a
//! receiver of the pool's broadcast. A filter not polled for the timeout (geth: 5 minutes) is
//! dropped on the next filter call.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use alloy_primitives::{Log as PrimitiveLog, B256};
use alloy_rpc_types_eth::{BlockNumberOrTag, Filter, FilterBlockOption, Log};
use jsonrpsee::types::ErrorObjectOwned;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::backend::{BackendError, EthBackend, Tag};
use super::errors::{backend_error, server_error};

/// Whether `log` matches `filter`'s addresses and topics (not its block range): the address is
/// one of the filter's (or the filter names none), and each of the four topic positions the
/// filter sets holds one of its values (`null`/empty positions match anything; a position the
/// filter sets but the log lacks does not match). The backend's `logs` uses this so that
/// `eth_getLogs`, filters and subscriptions agree.
pub fn log_matches(filter: &Filter, log: &PrimitiveLog) -> bool {
    filter.matches_address(log.address) && filter.matches_topics(log.topics())
}

/// The error a backend returns when a log query would yield more than `limit` logs.
pub fn too_many_logs(limit: usize) -> BackendError {
    BackendError::Execution(format!("query returned more than {limit} results"))
}

/// Limits of log queries.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Most blocks one `eth_getLogs` may span.
    pub max_block_range: u64,
    /// Most logs one `eth_getLogs` may return.
    pub max_logs: usize,
}

/// Resolves a tag in a filter's range to a block number.
fn resolve_tag(backend: &dyn EthBackend, b: Option<&BlockNumberOrTag>, head: u64) -> u64 {
    match b {
        None | Some(BlockNumberOrTag::Latest) | Some(BlockNumberOrTag::Pending) => head,
        Some(BlockNumberOrTag::Earliest) => backend.tag(Tag::Earliest),
        Some(BlockNumberOrTag::Safe) => backend.tag(Tag::Safe),
        Some(BlockNumberOrTag::Finalized) => backend.tag(Tag::Finalized),
        Some(BlockNumberOrTag::Number(n)) => *n,
    }
}

/// `eth_getLogs`: resolves the filter's block range against the head and asks the backend.
///
/// # Errors
/// geth's messages, code -32000: "unknown block" (block hash), "invalid block range params"
/// (from after to), "exceed maximum block range: N", "query returned more than N results".
pub fn get_logs(
    backend: &dyn EthBackend,
    filter: &Filter,
    limits: LogLimits,
) -> Result<Vec<Log>, ErrorObjectOwned> {
    let head = backend.tag(Tag::Latest);
    let (from, to) = match filter.block_option {
        FilterBlockOption::AtBlockHash(hash) => {
            match backend.block_number_by_hash(hash).map_err(backend_error)? {
                Some(n) => (n, n),
                None => return Err(server_error("unknown block")),
            }
        }
        FilterBlockOption::Range {
            from_block,
            to_block,
        } => {
            let from = resolve_tag(backend, from_block.as_ref(), head);
            let to = resolve_tag(backend, to_block.as_ref(), head);
            if from > to {
                return Err(server_error("invalid block range params"));
            }
            if from > head {
                return Ok(Vec::new());
            }
            (from, to.min(head))
        }
    };
    query_range(backend, filter, from, to, limits)
}

fn query_range(
    backend: &dyn EthBackend,
    filter: &Filter,
    from: u64,
    to: u64,
    limits: LogLimits,
) -> Result<Vec<Log>, ErrorObjectOwned> {
    if to - from >= limits.max_block_range {
        return Err(server_error(format!(
            "exceed maximum block range: {}",
            limits.max_block_range
        )));
    }
    let logs = backend
        .logs(from, to, filter, limits.max_logs)
        .map_err(backend_error)?;
    if logs.len() > limits.max_logs {
        return Err(backend_error(too_many_logs(limits.max_logs)));
    }
    Ok(logs)
}

/// What a polled filter reports.
#[derive(Debug)]
enum Kind {
    /// Hashes of new blocks; `next` is the first not yet reported.
    Blocks { next: u64 },
    /// Hashes of transactions entering the pool.
    Pending { rx: broadcast::Receiver<B256> },
    /// Logs of new blocks matching `filter`; `next` is the first block not yet searched.
    Logs { filter: Box<Filter>, next: u64 },
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    last_poll: Instant,
}

/// What one poll must fetch, taken under the lock and fetched outside it.
enum Poll {
    Blocks {
        from: u64,
        to: u64,
    },
    Hashes(Vec<B256>),
    Logs {
        filter: Box<Filter>,
        from: u64,
        to: u64,
    },
}

/// The installed filters of one server.
#[derive(Debug)]
pub struct FilterStore {
    filters: Mutex<HashMap<String, Entry>>,
    timeout: Duration,
    max_filters: usize,
}

impl FilterStore {
    /// An empty store whose filters expire after `timeout` without a poll.
    pub fn new(timeout: Duration, max_filters: usize) -> FilterStore {
        FilterStore {
            filters: Mutex::new(HashMap::new()),
            timeout,
            max_filters,
        }
    }

    fn install(&self, kind: Kind) -> Result<String, ErrorObjectOwned> {
        let mut filters = self.filters.lock();
        self.expire(&mut filters);
        if filters.len() >= self.max_filters {
            return Err(server_error("too many filters installed"));
        }
        let id = random_id();
        filters.insert(
            id.clone(),
            Entry {
                kind,
                last_poll: Instant::now(),
            },
        );
        Ok(id)
    }

    fn expire(&self, filters: &mut HashMap<String, Entry>) {
        let timeout = self.timeout;
        filters.retain(|_, e| e.last_poll.elapsed() < timeout);
    }

    /// `eth_newBlockFilter`.
    ///
    /// # Errors
    /// Too many filters installed.
    pub fn new_block_filter(&self, backend: &dyn EthBackend) -> Result<String, ErrorObjectOwned> {
        let next = backend.tag(Tag::Latest).saturating_add(1);
        self.install(Kind::Blocks { next })
    }

    /// `eth_newPendingTransactionFilter`.
    ///
    /// # Errors
    /// Too many filters installed.
    pub fn new_pending_filter(&self, backend: &dyn EthBackend) -> Result<String, ErrorObjectOwned> {
        self.install(Kind::Pending {
            rx: backend.subscribe_pending(),
        })
    }

    /// `eth_newFilter`.
    ///
    /// # Errors
    /// Too many filters installed.
    pub fn new_log_filter(
        &self,
        backend: &dyn EthBackend,
        filter: Filter,
    ) -> Result<String, ErrorObjectOwned> {
        let next = backend.tag(Tag::Latest).saturating_add(1);
        self.install(Kind::Logs {
            filter: Box::new(filter),
            next,
        })
    }

    /// `eth_uninstallFilter`: whether the filter existed.
    pub fn uninstall(&self, id: &str) -> bool {
        let mut filters = self.filters.lock();
        self.expire(&mut filters);
        filters.remove(id).is_some()
    }

    /// `eth_getFilterChanges`: block hashes, transaction hashes or logs since the last poll.
    ///
    /// # Errors
    /// "filter not found" (-32000); a backend error reading blocks or logs.
    pub fn changes(
        &self,
        backend: &dyn EthBackend,
        id: &str,
        limits: LogLimits,
    ) -> Result<Value, ErrorObjectOwned> {
        let head = backend.tag(Tag::Latest);
        let poll = {
            let mut filters = self.filters.lock();
            self.expire(&mut filters);
            let entry = filters
                .get_mut(id)
                .ok_or_else(|| server_error("filter not found"))?;
            entry.last_poll = Instant::now();
            match &mut entry.kind {
                Kind::Blocks { next } => {
                    // Report at most the last `max_block_range` blocks of a long gap.
                    let from = (*next).max(
                        head.saturating_sub(limits.max_block_range)
                            .saturating_add(1),
                    );
                    let poll = Poll::Blocks { from, to: head };
                    *next = (*next).max(head.saturating_add(1));
                    poll
                }
                Kind::Pending { rx } => {
                    let mut hashes = Vec::new();
                    loop {
                        match rx.try_recv() {
                            Ok(h) => hashes.push(h),
                            Err(TryRecvError::Lagged(_)) => continue,
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                    Poll::Hashes(hashes)
                }
                Kind::Logs { filter, next } => {
                    let mut from = *next;
                    let mut to = head;
                    if let Some(n) = filter
                        .block_option
                        .get_from_block()
                        .and_then(|b| b.as_number())
                    {
                        from = from.max(n);
                    }
                    if let Some(n) = filter
                        .block_option
                        .get_to_block()
                        .and_then(|b| b.as_number())
                    {
                        to = to.min(n);
                    }
                    from = from.max(to.saturating_sub(limits.max_block_range).saturating_add(1));
                    *next = (*next).max(head.saturating_add(1));
                    Poll::Logs {
                        filter: filter.clone(),
                        from,
                        to,
                    }
                }
            }
        };
        match poll {
            Poll::Hashes(h) => Ok(hashes_json(&h)),
            Poll::Blocks { from, to } => {
                let mut hashes = Vec::new();
                for n in from..=to {
                    if let Some(h) = block_hash(backend, n)? {
                        hashes.push(h);
                    }
                }
                Ok(hashes_json(&hashes))
            }
            Poll::Logs { from, to, .. } if from > to => Ok(Value::Array(Vec::new())),
            Poll::Logs { filter, from, to } => {
                if matches!(filter.block_option, FilterBlockOption::AtBlockHash(_)) {
                    return Ok(Value::Array(Vec::new()));
                }
                let logs = query_range(backend, &filter, from, to, limits)?;
                serde_json::to_value(logs).map_err(|e| super::errors::internal_error(e.to_string()))
            }
        }
    }

    /// `eth_getFilterLogs`: every log the log filter `id` matches over its whole range.
    ///
    /// # Errors
    /// "filter not found" (-32000) for an unknown or non-log filter; the `eth_getLogs` errors.
    pub fn logs(
        &self,
        backend: &dyn EthBackend,
        id: &str,
        limits: LogLimits,
    ) -> Result<Vec<Log>, ErrorObjectOwned> {
        let filter = {
            let mut filters = self.filters.lock();
            self.expire(&mut filters);
            match filters.get_mut(id) {
                Some(Entry {
                    kind: Kind::Logs { filter, .. },
                    last_poll,
                }) => {
                    *last_poll = Instant::now();
                    filter.clone()
                }
                _ => return Err(server_error("filter not found")),
            }
        };
        get_logs(backend, &filter, limits)
    }

    /// How many filters are installed (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.filters.lock().len()
    }

    /// Whether no filter is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hash of block `n`, read from the backend's block object.
///
/// # Errors
/// The backend's error.
pub(crate) fn block_hash(
    backend: &dyn EthBackend,
    n: u64,
) -> Result<Option<B256>, ErrorObjectOwned> {
    Ok(backend
        .block(n, false)
        .map_err(backend_error)?
        .and_then(|b| b.get("hash").cloned())
        .and_then(|h| serde_json::from_value::<B256>(h).ok()))
}

fn hashes_json(hashes: &[B256]) -> Value {
    Value::Array(
        hashes
            .iter()
            .map(|h| Value::String(h.to_string()))
            .collect(),
    )
}

/// A fresh unguessable id, geth-style: `0x` and 32 hex digits (16 random bytes), so that one
/// client cannot guess and uninstall another's filter.
pub fn random_id() -> String {
    // `RandomState::new()` is seeded from the OS once per thread and moved on per call; two
    // SipHash outputs of it give 128 unpredictable bits without another dependency.
    let a = RandomState::new().build_hasher().finish();
    let mut h = RandomState::new().build_hasher();
    h.write_u64(a);
    let b = h.finish();
    format!("0x{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, LogData};

    fn log(addr: Address, topics: Vec<B256>) -> PrimitiveLog {
        PrimitiveLog {
            address: addr,
            data: LogData::new_unchecked(topics, Bytes::new()),
        }
    }

    #[test]
    fn topics_match_positionally_with_wildcards_and_or_sets() {
        let a = Address::repeat_byte(1);
        let (t1, t2, t3) = (
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(3),
        );
        let l = log(a, vec![t1, t2]);
        let f = |v: serde_json::Value| -> Filter {
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(log_matches(&f(serde_json::json!({})), &l));
        assert!(log_matches(&f(serde_json::json!({"topics": [t1]})), &l));
        assert!(log_matches(
            &f(serde_json::json!({"topics": [null, t2]})),
            &l
        ));
        assert!(log_matches(
            &f(serde_json::json!({"topics": [[t3, t1], [t2]]})),
            &l
        ));
        assert!(!log_matches(&f(serde_json::json!({"topics": [t2]})), &l));
        assert!(!log_matches(
            &f(serde_json::json!({"topics": [null, null, t3]})),
            &l
        ));
        assert!(log_matches(&f(serde_json::json!({"address": a})), &l));
        assert!(log_matches(
            &f(serde_json::json!({"address": [Address::ZERO, a]})),
            &l
        ));
        assert!(!log_matches(
            &f(serde_json::json!({"address": Address::ZERO})),
            &l
        ));
    }

    #[test]
    fn random_ids_differ() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 34);
    }
}
