//! The span of every served call, and how its failure is logged: a
//! caller's mistake quietly, a server fault loudly.

use crate::tracecontext;
use std::time::Duration;
use tower_http::{classify::GrpcFailureClass, trace::TraceLayer};

/// A span per call (none for probes and scrapes), continuing the caller's
/// trace; failures logged by who caused them.
#[allow(clippy::type_complexity)] // tower-http's type, spelled out once
pub fn trace_layer(
    role: &'static str,
) -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::GrpcErrorsAsFailures>,
    impl Fn(&http::Request<tonic::body::Body>) -> tracing::Span + Clone,
    tower_http::trace::DefaultOnRequest,
    tower_http::trace::DefaultOnResponse,
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    impl Fn(GrpcFailureClass, Duration, &tracing::Span) + Clone,
> {
    TraceLayer::new_for_grpc()
        .make_span_with(move |request: &http::Request<tonic::body::Body>| {
            let path = request.uri().path();
            // Probes and scrapes come every few seconds from everywhere:
            // tracing them would bury the traces worth reading.
            if path == "/metrics" || path.starts_with("/grpc.health.v1.Health/") {
                return tracing::Span::none();
            }
            let span = crate::telemetry::role_span(role, path);
            // Before the span is entered, as tracing-opentelemetry requires.
            let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
                &span,
                tracecontext::extract_from_headers(request.headers()),
            );
            span
        })
        .on_failure(|failure: GrpcFailureClass, latency: Duration, _span: &tracing::Span| {
            let latency_ms = latency.as_millis() as u64;
            match &failure {
                GrpcFailureClass::Status(status) if is_client_fault(status.code_raw()) => {
                    tracing::debug!(
                        code = status.code_raw(),
                        message = status.message(),
                        latency_ms,
                        "call refused"
                    )
                }
                GrpcFailureClass::Status(status) => {
                    tracing::error!(
                        code = status.code_raw(),
                        message = status.message(),
                        latency_ms,
                        "call failed"
                    )
                }
                GrpcFailureClass::Error(error) => tracing::warn!(%error, latency_ms, "call broke off"),
                _ => tracing::warn!(%failure, latency_ms, "call failed"),
            }
        })
}

/// Codes that say the caller got something wrong (or gave up), not that
/// this server is at fault.
fn is_client_fault(code: i32) -> bool {
    use tonic::Code::*;
    matches!(
        tonic::Code::from_i32(code),
        Cancelled
            | InvalidArgument
            | NotFound
            | AlreadyExists
            | PermissionDenied
            | Unauthenticated
            | FailedPrecondition
            | OutOfRange
            | ResourceExhausted
            | Aborted
            | DeadlineExceeded
            | Unimplemented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_mistakes_are_told_apart_from_server_faults() {
        use tonic::Code;
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
        ] {
            assert!(is_client_fault(code as i32), "{code:?} is the caller's");
        }
        for code in [Code::Internal, Code::Unknown, Code::DataLoss, Code::Unavailable] {
            assert!(!is_client_fault(code as i32), "{code:?} is ours");
        }
    }
}
