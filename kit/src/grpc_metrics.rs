//! A tower layer that counts gRPC calls and times them until response
//! headers, per method. Only the methods the listener serves get a label of
//! their own; every other path shares `other`, so a scanner cannot grow the
//! label set.

use crate::metrics::{GrpcMetrics, MethodLabels};
use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tower::{Layer, Service};

/// Wraps a service with [`GrpcMetrics`] recording.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
    known: Arc<HashSet<String>>,
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`, labelling the `known` paths.
    pub fn new(metrics: GrpcMetrics, known: HashSet<String>) -> Self {
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
    known: Arc<HashSet<String>>,
}

impl<S, B> Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let labels = MethodLabels {
            method: if self.known.contains(path) {
                path.to_owned()
            } else {
                "other".to_owned()
            },
        };
        self.metrics.requests.get_or_create(&labels).inc();
        let latency = self.metrics.latency.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            response
        })
    }
}
