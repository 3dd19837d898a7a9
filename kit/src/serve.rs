//! The serving stack every role shares: its gRPC services plus health,
//! reflection (v1 and v1alpha, so grpcurl 1.8 works), `/metrics`, gRPC-web
//! with CORS, and a trace span per call that continues the caller's trace.

use crate::{
    grpc_metrics::GrpcMetricsLayer, metrics::GrpcMetrics, metrics_endpoint::MetricsEndpointLayer, tracecontext,
};
use http::{HeaderName, Method};
use prometheus_client::registry::Registry;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

/// Why a role stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (listener, HTTP/2).
    #[error("serving failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not read the descriptors.
    #[error("reflection cannot load descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// What a role serves.
pub struct RoleServer {
    /// Role name, for spans and logs ("gateway", "room", ...).
    pub role: &'static str,
    /// The role's gRPC services.
    pub routes: Routes,
    /// Fully-qualified names of those services, reported SERVING by health.
    pub service_names: Vec<&'static str>,
    /// The role's metrics, served at `/metrics` on the same port.
    pub registry: Registry,
    /// Keep-alive pings on idle HTTP/2 connections (none when `None`).
    pub http2_keepalive: Option<Duration>,
}

/// Serves `server` on `listener` until `shutdown` is cancelled, then reports
/// NOT_SERVING and waits for open calls to finish. Long-lived streams must be
/// ended by the role itself when `shutdown` fires.
pub async fn serve(server: RoleServer, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let RoleServer {
        role,
        routes,
        service_names,
        mut registry,
        http2_keepalive,
    } = server;

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in &service_names {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hubbub_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let grpc_metrics = GrpcMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    {
        // Tell load balancers first, so no new call lands while we drain.
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for name in service_names {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
        });
    }

    Server::builder()
        // gRPC-web clients in browsers speak HTTP/1.1.
        .accept_http1(true)
        .http2_keepalive_interval(http2_keepalive)
        .tcp_nodelay(true)
        // Outermost: Prometheus scrapes over HTTP/1.1, which gRPC-web would refuse.
        .layer(MetricsEndpointLayer::new(registry))
        // Then CORS: a browser's preflight is answered before anything else runs.
        .layer(cors())
        // Translates gRPC-web to gRPC, so every layer below sees plain gRPC.
        .layer(tonic_web::GrpcWebLayer::new())
        // Inside gRPC-web: browser calls get a span continuing their trace too.
        .layer(
            TraceLayer::new_for_grpc().make_span_with(move |request: &http::Request<_>| {
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = %request.uri().path().trim_start_matches('/'),
                    otel.kind = "server",
                    rpc.system = "grpc",
                    hubbub.role = role,
                );
                // Before the span is entered, as tracing-opentelemetry requires.
                let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
                    &span,
                    tracecontext::extract_from_headers(request.headers()),
                );
                span
            }),
        )
        // Innermost: counts what reached a service, timed without the layers above.
        .layer(GrpcMetricsLayer::new(grpc_metrics))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    tracing::info!(role, "stopped serving");
    Ok(())
}

/// CORS for browser gRPC-web clients: any origin (the token, not the origin,
/// authorises), the headers gRPC-web sends, and the trailers it must read.
fn cors() -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header("content-type"),
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("authorization"),
            header("traceparent"),
            header("tracestate"),
            header("connect-protocol-version"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(600))
}
