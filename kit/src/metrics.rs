//! Prometheus metrics: each role owns a registry, served at `/metrics` on the
//! role's own port. gRPC request counts and latencies are recorded for every
//! role by the serving stack.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use std::sync::Arc;

/// Labels of per-method gRPC metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `/package.Service/Method`.
    pub method: String,
}

/// Metrics recorded by the serving stack for every role.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    /// Requests received, by method.
    pub requests: Family<MethodLabels, Counter>,
    /// Time until response headers, by method (the whole call for unary).
    pub latency: Family<MethodLabels, Histogram>,
}

impl GrpcMetrics {
    /// Registers the serving metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<MethodLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
        });
        registry.register("hubbub_grpc_requests", "gRPC requests received", requests.clone());
        registry.register(
            "hubbub_grpc_response_seconds",
            "Time until gRPC response headers",
            latency.clone(),
        );
        Self { requests, latency }
    }

    /// Counts a call served outside the tower stack (the lean path) as the
    /// layer counts its own; the call is timed until the timer is dropped,
    /// once its response head is written. `method` must be a served path.
    pub fn start_call(&self, method: &str) -> CallTimer {
        let labels = MethodLabels {
            method: method.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
        CallTimer {
            latency: self.latency.get_or_create(&labels).clone(),
            started: std::time::Instant::now(),
        }
    }
}

/// Times one call until dropped; see [`GrpcMetrics::start_call`].
#[derive(Debug)]
pub struct CallTimer {
    latency: Histogram,
    started: std::time::Instant,
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.latency.observe(self.started.elapsed().as_secs_f64());
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// A registry shared between the role that fills it and the endpoint that
/// reads it.
pub type SharedRegistry = Arc<Registry>;
