//! Server-wide RPC middleware that reports every call's method, time and outcome to an
//! [`RpcObserver`] (the node's Prometheus metrics).
//!
//! It sits inside [`super::GethCompat`], so only the server's own methods reach it: a label
//! per method, never one per name a client makes up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, MethodResponse, Notification, RpcServiceT,
};
use jsonrpsee::types::Request;

/// Told of every call the server answers.
pub trait RpcObserver: Send + Sync + 'static {
    /// `method` was answered in `elapsed`; `ok` is false when the answer is an error.
    fn call(&self, method: &str, elapsed: Duration, ok: bool);
    /// A batch of calls of `methods` was answered, all together, in `elapsed`.
    fn batch(&self, methods: &[String], elapsed: Duration);
}

/// The middleware; install it with
/// `RpcServiceBuilder::new().layer_fn(move |s| Metered::new(s, observer.clone()))`.
#[derive(Clone)]
pub struct Metered<S> {
    service: S,
    observer: Arc<dyn RpcObserver>,
}

impl<S> Metered<S> {
    /// Wraps `service`, reporting to `observer`.
    pub fn new(service: S, observer: Arc<dyn RpcObserver>) -> Metered<S> {
        Metered { service, observer }
    }
}

impl<S> RpcServiceT for Metered<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let service = self.service.clone();
        let observer = self.observer.clone();
        async move {
            let method = request.method.clone();
            let start = Instant::now();
            let rp = service.call(request).await;
            observer.call(&method, start.elapsed(), !rp.is_error());
            rp
        }
    }

    fn batch<'a>(
        &self,
        requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let methods: Vec<String> = requests
            .iter()
            .filter_map(|e| match e {
                Ok(BatchEntry::Call(r)) => Some(r.method_name().to_owned()),
                _ => None,
            })
            .collect();
        let observer = self.observer.clone();
        let start = Instant::now();
        let fut = self.service.batch(requests);
        async move {
            let r = fut.await;
            observer.batch(&methods, start.elapsed());
            r
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.service.notification(n)
    }
}
