//! Answers `GET /metrics` ahead of the gRPC stack. It sits outermost because
//! the gRPC-web layer refuses every other HTTP/1.1 request, and Prometheus
//! scrapes over HTTP/1.1.

use crate::{metrics, process_metrics};
use prometheus_client::registry::Registry;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::{Layer, Service};

/// Serves a registry at `/metrics`, passing every other request through.
#[derive(Debug, Clone)]
pub struct MetricsEndpointLayer {
    registry: Arc<Registry>,
}

impl MetricsEndpointLayer {
    /// Serves `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl<S> Layer<S> for MetricsEndpointLayer {
    type Service = MetricsEndpoint<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsEndpoint {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// See [`MetricsEndpointLayer`].
#[derive(Debug, Clone)]
pub struct MetricsEndpoint<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S, B> Service<http::Request<B>> for MetricsEndpoint<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
            let mut text = process_metrics::render();
            text.push_str(&metrics::render(&self.registry));
            let response = http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(tonic::body::Body::new(text))
                .expect("static headers are valid");
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
