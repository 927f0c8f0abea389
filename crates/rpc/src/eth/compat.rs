//! Server-wide RPC middleware that words jsonrpsee's answers as geth's where clients read them.
//!
//! jsonrpsee answers an unknown method with `-32601 "Method not found"`; geth says
//! `"the method X does not exist/is not available"`, and some tools (cast, hardhat plugins)
//! match that text to detect optional methods. [`GethCompat`] answers unknown methods, alone
//! or inside a batch, with geth's message before they reach jsonrpsee's router, and answers
//! `eth_subscribe` over HTTP with geth's `-32601 "notifications not supported"`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, RpcServiceT,
};
use jsonrpsee::types::Request;

use super::errors::{code, method_not_found, ErrorObjectOwned};

/// geth's answer to a subscription over HTTP.
fn notifications_unsupported() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        code::METHOD_NOT_FOUND,
        "notifications not supported",
        None::<()>,
    )
}

/// The middleware itself; see the module docs. Install it with
/// `RpcServiceBuilder::new().layer_fn(move |s| GethCompat::new(s, methods.clone()))`.
#[derive(Debug, Clone)]
pub struct GethCompat<S> {
    service: S,
    methods: Arc<HashSet<String>>,
}

impl<S> GethCompat<S> {
    /// Wraps `service`, whose methods are `methods` (see [`method_set`]).
    pub fn new(service: S, methods: Arc<HashSet<String>>) -> GethCompat<S> {
        GethCompat { service, methods }
    }
}

/// The names of `module`'s methods, for [`GethCompat::new`].
pub fn method_set<C>(module: &jsonrpsee::RpcModule<C>) -> Arc<HashSet<String>> {
    Arc::new(module.method_names().map(str::to_owned).collect())
}

impl<S> RpcServiceT for GethCompat<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let known = self.methods.contains(request.method_name());
        let is_sub = matches!(request.method_name(), "eth_subscribe" | "eth_unsubscribe");
        let service = self.service.clone();
        async move {
            if !known {
                let err = method_not_found(request.method_name());
                return MethodResponse::error(request.id, err);
            }
            if !is_sub {
                return service.call(request).await;
            }
            // Over HTTP jsonrpsee refuses subscriptions with a bare -32603 "Internal error";
            // the subscription handlers never answer -32603 themselves, so this is that case.
            let id = request.id.clone().into_owned();
            let rp = service.call(request).await;
            if rp.as_error_code() == Some(code::INTERNAL) {
                let ext = rp.extensions().clone();
                MethodResponse::error(id, notifications_unsupported()).with_extensions(ext)
            } else {
                rp
            }
        }
    }

    fn batch<'a>(
        &self,
        mut requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in requests.iter_mut() {
            let unknown = match entry {
                Ok(BatchEntry::Call(req)) if !self.methods.contains(req.method_name()) => {
                    Some((req.id.clone(), method_not_found(req.method_name())))
                }
                _ => None,
            };
            if let Some((id, err)) = unknown {
                *entry = Err(BatchEntryErr::new(id, err));
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
