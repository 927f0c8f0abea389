//! Plain-HTTP `GET` routes served beside JSON-RPC on the same port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::Value;

/// Answers a `GET` for the path after the route's prefix.
pub type GetHandler = Arc<dyn Fn(&str) -> GetResponse + Send + Sync>;

/// A [`GetHandler`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl GetResponse {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> GetResponse {
        GetResponse {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A text answer of `content_type`.
    pub fn text(status: u16, content_type: &'static str, body: String) -> GetResponse {
        GetResponse {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }
}

/// The tower layer that serves [`GetHandler`]s and passes everything else to JSON-RPC.
#[derive(Clone)]
pub struct GetRoutesLayer {
    routes: Arc<Vec<(String, GetHandler)>>,
}

impl GetRoutesLayer {
    /// Routes as `(path prefix, handler)`.
    pub fn new(routes: Vec<(String, GetHandler)>) -> Self {
        GetRoutesLayer {
            routes: Arc::new(routes),
        }
    }
}

impl<S> tower::Layer<S> for GetRoutesLayer {
    type Service = GetRoutes<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GetRoutes {
            inner,
            routes: self.routes.clone(),
        }
    }
}

/// The service [`GetRoutesLayer`] makes.
#[derive(Clone)]
pub struct GetRoutes<S> {
    inner: S,
    routes: Arc<Vec<(String, GetHandler)>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<HttpRequest<B>> for GetRoutes<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        if req.method() == http::Method::GET {
            let path = req.uri().path().to_string();
            let found = self.routes.iter().find_map(|(prefix, h)| {
                path.strip_prefix(prefix.as_str())
                    .map(|rest| (h.clone(), rest.to_string()))
            });
            if let Some((handler, rest)) = found {
                return Box::pin(async move {
                    // Handlers may read storage: keep them off the async workers.
                    let r = tokio::task::spawn_blocking(move || handler(&rest))
                        .await
                        .unwrap_or_else(|e| {
                            GetResponse::json(500, &serde_json::json!({"error": e.to_string()}))
                        });
                    let resp = http::Response::builder()
                        .status(r.status)
                        .header(http::header::CONTENT_TYPE, r.content_type)
                        .body(HttpBody::from(r.body))
                        .map_err(|e| -> BoxError { Box::new(e) })?;
                    Ok(resp)
                });
            }
        }
        let fut = self.inner.call(req.map(HttpBody::new));
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
