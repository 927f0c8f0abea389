//! Server-wide RPC middleware that recovers the senders of a batch's `eth_sendRawTransaction`
//! calls on every core before the batch runs.
//!
//! jsonrpsee answers a batch's calls one after another on the connection's task, so a batch of
//! 100 submissions recovered 100 signatures on one core while the other idled (the benchmark
//! client waits for the answer). Here the batch's raw transactions are decoded and their
//! signatures recovered on scoped threads, one chunk per core, and each call's request carries
//! the result ([`RecoveredSender`]) in its extensions, where `eth_sendRawTransaction` finds it
//! and passes it to [`super::EthBackend::send_raw_transaction_recovered`]. Only this process
//! writes extensions, so a client cannot supply a sender. Calls that do not decode are left
//! alone: the handler refuses them with the usual error.

use std::future::Future;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256};
use jsonrpsee::server::middleware::rpc::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::types::Request;

/// A batch needs at least this many submissions before threads are worth starting.
const MIN_PARALLEL: usize = 8;

/// The sender recovered for a submission's bytes, and the transaction hash it belongs to (the
/// handler uses it only when the transaction it decodes has this hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredSender {
    /// The transaction hash.
    pub hash: B256,
    /// Its signer.
    pub sender: Address,
}

/// The sender of EIP-2718 `raw`, if it decodes and its signature recovers.
fn recover(raw: &[u8]) -> Option<RecoveredSender> {
    let envelope = TxEnvelope::decode_2718_exact(raw).ok()?;
    let sender = envelope.recover_signer().ok()?;
    Some(RecoveredSender {
        hash: *envelope.tx_hash(),
        sender,
    })
}

/// Recovers every one of `raws` on up to `threads` threads, in order.
fn recover_all(raws: &[Bytes], threads: usize) -> Vec<Option<RecoveredSender>> {
    let chunk = raws.len().div_ceil(threads.max(1)).max(1);
    let mut chunks = raws.chunks(chunk);
    let first = chunks.next().unwrap_or(&[]);
    std::thread::scope(|s| {
        let others: Vec<_> = chunks
            .map(|c| s.spawn(move || c.iter().map(|r| recover(r)).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<Option<RecoveredSender>> = first.iter().map(|r| recover(r)).collect();
        // Every thread joined (so none is left for the scope to re-raise); a panic in one (none
        // is known) costs only the hints.
        let joined: Vec<_> = others.into_iter().map(|h| h.join()).collect();
        if joined.iter().any(Result::is_err) {
            return vec![None; raws.len()];
        }
        out.extend(joined.into_iter().flatten().flatten());
        out
    })
}

/// The raw bytes of an `eth_sendRawTransaction` call's `[hex]` parameters.
fn raw_param(entry: &BatchEntry<'_>) -> Option<Bytes> {
    if entry.method_name() != "eth_sendRawTransaction" {
        return None;
    }
    let params = entry.params()?;
    let (raw,): (Bytes,) = serde_json::from_str(params.get()).ok()?;
    Some(raw)
}

/// The middleware; install it with
/// `RpcServiceBuilder::new().layer_fn(PreRecover::new)`.
#[derive(Clone)]
pub struct PreRecover<S> {
    service: S,
    threads: usize,
}

impl<S> PreRecover<S> {
    /// Wraps `service`, recovering on as many threads as the machine has cores.
    pub fn new(service: S) -> PreRecover<S> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        PreRecover { service, threads }
    }
}

impl<S> RpcServiceT for PreRecover<S>
where
    S: RpcServiceT + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        self.service.call(request)
    }

    fn batch<'a>(
        &self,
        mut requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        if self.threads > 1 {
            let mut at = Vec::new();
            let mut raws = Vec::new();
            for (i, entry) in requests.iter().enumerate() {
                if let Ok(e) = entry {
                    if let Some(raw) = raw_param(e) {
                        at.push(i);
                        raws.push(raw);
                    }
                }
            }
            if raws.len() >= MIN_PARALLEL {
                let recovered = recover_all(&raws, self.threads);
                let mut found = at.into_iter().zip(recovered).peekable();
                for (i, entry) in requests.iter_mut().enumerate() {
                    let Some((_, r)) = found.next_if(|(j, _)| *j == i) else {
                        continue;
                    };
                    if let (Ok(e), Some(r)) = (entry, r) {
                        e.extensions_mut().insert(r);
                    }
                }
            }
        }
        self.service.batch(requests)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.service.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_on_threads_keeps_order_and_skips_garbage() {
        // Signed legacy transaction from EIP-155's example (sender 0x9d8a62f6…).
        let good: Bytes = "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
            .parse()
            .expect("hex");
        let expected = recover(&good).expect("recovers");
        assert_eq!(
            expected.sender,
            "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
                .parse::<Address>()
                .expect("address")
        );
        let raws: Vec<Bytes> = (0..25)
            .map(|i| {
                if i % 5 == 3 {
                    Bytes::from(vec![0xde, 0xad, i as u8])
                } else {
                    good.clone()
                }
            })
            .collect();
        for threads in [1, 2, 3, 8] {
            let got = recover_all(&raws, threads);
            assert_eq!(got.len(), raws.len());
            for (i, r) in got.iter().enumerate() {
                assert_eq!(*r, (i % 5 != 3).then_some(expected), "#{i} on {threads}");
            }
        }
        assert!(recover_all(&[], 4).is_empty());
    }
}
