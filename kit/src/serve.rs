//! The serving stack every role shares. Two kinds of listener:
//!
//! - **public** (the gateway's client port): the role's client services
//!   over gRPC and gRPC-web with CORS, health, and reflection of exactly
//!   those services. No `/metrics`, nothing internal. Always plaintext:
//!   TLS for clients is terminated by the load balancer or ingress.
//! - **internal** (every role): the internal services behind the service
//!   credential check of [`crate::internal_auth`], health, reflection of
//!   exactly those services, and `/metrics` for Prometheus. Over (m)TLS
//!   when `[internal_tls]` is set ([`crate::tls`]).
//!
//! Both trace every call (continuing the caller's trace), count it under a
//! bounded set of method labels, drop connections that stay silent past the
//! handshake timeout or stop answering keepalive pings, cap streams per
//! connection, and bound how long a drain may take.

use crate::conn_guard::HandshakeDeadline;
use crate::lean::{close_http1::CloseHttp1Layer, rewind::Rewind, split::split};
use crate::{
    accept::{ConnectionCaps, GuardedIncoming},
    call_trace::trace_layer,
    grpc_metrics::GrpcMetricsLayer,
    internal_auth::InternalAuthLayer,
    metrics::GrpcMetrics,
    metrics_endpoint::MetricsEndpointLayer,
    served::{HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA, descriptors_of, known_methods},
    service_auth::InternalKey,
    tls::InternalTls,
};
use http::{HeaderName, Method};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::pin::Pin;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;
use tower_http::cors::{AllowOrigin, CorsLayer};

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

/// `[listener]`: connection limits every listener of every role applies.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// A connection must send its first request bytes within this long.
    pub handshake_timeout_ms: u64,
    /// HTTP/2 pings on every connection this often...
    pub keepalive_interval_ms: u64,
    /// ...and a peer that does not answer one within this long is dropped.
    pub keepalive_timeout_ms: u64,
    /// Streams one HTTP/2 connection may have open at once.
    pub max_concurrent_streams: u32,
    /// How long a drain may wait for open calls before the role exits anyway.
    pub drain_timeout_ms: u64,
    /// Connections the listener holds open at most; beyond it new ones are
    /// closed at once.
    pub max_connections: usize,
    /// Connections one source address (IPv6: one /64) may hold open.
    pub max_connections_per_address: usize,
    /// After this long a connection is told to go away (HTTP/2 GOAWAY):
    /// the calls on it finish, new ones go to a new connection, and one
    /// that holds no call is closed.
    pub max_connection_age_secs: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: 10_000,
            // Below the idle timeouts of common meshes and load balancers.
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 20_000,
            max_concurrent_streams: 128,
            // Above a gateway's 100k client streams; below the open-file limit
            // of a process that holds them.
            max_connections: 120_000,
            max_connections_per_address: 1_000,
            max_connection_age_secs: 3_600,
            drain_timeout_ms: 30_000,
        }
    }
}

/// What every role needs to serve: the internal key its internal listener
/// verifies (and its own credentials are signed with), the connection
/// limits of its listeners, and the TLS of its internal listener and of its
/// channels to peers, if any.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The internal key.
    pub internal_key: InternalKey,
    /// Connection limits.
    pub limits: ListenerLimits,
    /// `[internal_tls]`, loaded: None serves and dials plaintext.
    pub tls: Option<InternalTls>,
}

impl ServeOptions {
    /// Options with `internal_key`, default limits and no TLS.
    pub fn new(internal_key: InternalKey) -> Self {
        Self {
            internal_key,
            limits: ListenerLimits::default(),
            tls: None,
        }
    }

    /// The internal listener of `role`.
    pub fn internal(
        &self,
        role: &'static str,
        routes: Routes,
        service_names: Vec<&'static str>,
        metrics: RoleMetrics,
    ) -> RoleServer {
        RoleServer {
            role,
            exposure: Exposure::Internal {
                key: self.internal_key.clone(),
                tls: self.tls.clone(),
            },
            routes,
            service_names,
            metrics,
            limits: self.limits.clone(),
        }
    }
}

/// Which side of the trust boundary a listener serves.
#[derive(Debug, Clone)]
pub enum Exposure {
    /// The client port: gRPC-web and CORS, no metrics, no credential check;
    /// TLS (HTTP/2 only, for browsers to multiplex) when `tls` is set.
    Public {
        /// TLS of the port; None: plaintext HTTP/2 and HTTP/1.1.
        tls: Option<crate::tls::PublicTls>,
        /// A long-lived call served on the lean path over plaintext
        /// HTTP/1.1 (TLS in front of it is the load balancer's or the
        /// mesh's); with `tls`, every call stays on tonic.
        lean: Option<LeanRoute>,
        /// Proxies in front of the port, held only to the total connection
        /// cap, not to the per-address one.
        proxies: Vec<std::net::IpAddr>,
    },
    /// An internal port: every call needs a credential signed with `key`,
    /// and connections speak TLS when `tls` is set.
    Internal {
        /// The key credentials must be signed with.
        key: InternalKey,
        /// TLS of the port; None: plaintext.
        tls: Option<InternalTls>,
    },
}

/// The lean call of a public port, and its head limits.
#[derive(Clone)]
pub struct LeanRoute {
    /// The call.
    pub calls: Arc<dyn crate::lean::split::LeanCalls>,
    /// Bounds on its request head.
    pub limits: crate::lean::head::HeadLimits,
    /// Time a client has to send the head.
    pub head_timeout: Duration,
}

impl std::fmt::Debug for LeanRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanRoute")
            .field("path", &self.calls.path())
            .field("limits", &self.limits)
            .finish()
    }
}

/// The metrics of a role, shared by its listeners: the registry is served by
/// the internal one, and every listener records its calls into it.
#[derive(Debug, Clone)]
pub struct RoleMetrics {
    registry: Arc<Registry>,
    grpc: GrpcMetrics,
}

impl RoleMetrics {
    /// Adds the serving metrics to a role's `registry`.
    pub fn new(mut registry: Registry) -> Self {
        let grpc = GrpcMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            grpc,
        }
    }
}

/// One listener of a role.
pub struct RoleServer {
    /// Role name, for spans and logs ("gateway", "room", ...).
    pub role: &'static str,
    /// Which side of the boundary it serves.
    pub exposure: Exposure,
    /// Its gRPC services.
    pub routes: Routes,
    /// Fully-qualified names of those services: reported SERVING by health,
    /// listed by reflection, labelled by metrics.
    pub service_names: Vec<&'static str>,
    /// The role's metrics.
    pub metrics: RoleMetrics,
    /// Connection limits.
    pub limits: ListenerLimits,
}

/// Serves `server` on `listener` until `shutdown` is cancelled, then reports
/// NOT_SERVING and waits for open calls to finish, at most the drain
/// timeout. Long-lived streams must be ended by the role itself when
/// `shutdown` fires.
pub async fn serve(server: RoleServer, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let RoleServer {
        role,
        exposure,
        routes,
        service_names,
        metrics,
        limits,
    } = server;

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in &service_names {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let described = descriptors_of(&service_names);
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(described.clone())
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH)
            .with_service_name(REFLECTION_V1)
            .with_service_name(REFLECTION_V1ALPHA);
        for name in &service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let routes = routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let known = known_methods(&service_names);

    {
        // Tell load balancers first, so no new call lands while we drain.
        let shutdown = shutdown.clone();
        let service_names = service_names.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for name in service_names {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            // The server as a whole too: what a probe without a service
            // name (Kubernetes' gRPC probes) asks.
            health.set_service_status("", ServingStatus::NotServing).await;
        });
    }

    let handshake = Duration::from_millis(limits.handshake_timeout_ms.max(1));
    let caps = ConnectionCaps {
        total: limits.max_connections.max(1),
        per_address: limits.max_connections_per_address.max(1),
        uncapped: match &exposure {
            Exposure::Public { proxies, .. } => proxies.as_slice().into(),
            Exposure::Internal { .. } => Default::default(),
        },
    };
    let incoming = GuardedIncoming::new(listener, caps, handshake);
    let builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_millis(limits.keepalive_interval_ms.max(100))))
        .http2_keepalive_timeout(Some(Duration::from_millis(limits.keepalive_timeout_ms.max(100))))
        .max_concurrent_streams(limits.max_concurrent_streams.max(1))
        // Graceful only: streams in flight finish; a connection that holds
        // none (a peer that only answers pings) is closed, and clients
        // open a fresh one for their next call.
        .max_connection_age(Duration::from_secs(limits.max_connection_age_secs.max(1)));
    let grpc_metrics = GrpcMetricsLayer::new(metrics.grpc.clone(), known);
    let signal = shutdown.clone().cancelled_owned();
    let served = async move {
        match exposure {
            Exposure::Public { tls, lean, .. } => {
                // Every connection as a Rewind: with a lean call, the bytes
                // its first reads took are put back in front for tonic.
                type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<Rewind<HandshakeDeadline>>> + Send>>;
                let lean_on = tls.is_none() && lean.is_some();
                let (incoming, lean_streams): (Incoming, _) = match (&tls, lean) {
                    (None, Some(lean)) => {
                        let (incoming, streams) = split(
                            incoming,
                            lean.calls,
                            lean.limits,
                            lean.head_timeout,
                            metrics.grpc.clone(),
                        );
                        (Box::pin(incoming), Some(streams))
                    }
                    _ => (
                        Box::pin(incoming.map(|accepted| accepted.map(|io| Rewind::new(Vec::new(), io)))),
                        None,
                    ),
                };
                let builder = match tls {
                    Some(tls) => builder.tls_config(tls.server_config(handshake))?,
                    None => builder,
                };
                let served = builder
                    // gRPC-web clients in browsers speak HTTP/1.1.
                    .accept_http1(true)
                    // Outermost, with a lean call: HTTP/1.1 connections carry one
                    // request each, so every Connect reaches the lean path.
                    .layer(tower::util::option_layer(lean_on.then_some(CloseHttp1Layer)))
                    // A browser's preflight is answered before anything else runs.
                    .layer(cors())
                    // Translates gRPC-web to gRPC, so every layer below sees plain gRPC.
                    .layer(tonic_web::GrpcWebLayer::new())
                    // Inside gRPC-web: browser calls get a span continuing their trace too.
                    .layer(trace_layer(role))
                    // Counts what reached a service, under known method names only.
                    .layer(grpc_metrics)
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, signal)
                    .await;
                // The lean streams end as the role drains them (their
                // Reconnect, then their trailers): wait as for tonic's own,
                // within the same drain timeout.
                if let Some(streams) = lean_streams {
                    streams.close();
                    streams.wait().await;
                }
                served
            }
            Exposure::Internal { key, tls } => {
                let builder = match tls {
                    // Applies to our incoming stream too: tonic runs each
                    // handshake in its own task over `HandshakeDeadline`, so a
                    // silent peer still fails at the TCP deadline, and the
                    // timeout bounds a peer that trickles its handshake.
                    Some(tls) => builder.tls_config(tls.server_config(handshake))?,
                    None => builder,
                };
                builder
                    // Prometheus scrapes over HTTP/1.1 (over TLS only with
                    // HTTP/2, the one protocol tonic's TLS offers in ALPN).
                    .accept_http1(true)
                    .layer(trace_layer(role))
                    // `/metrics` is plain HTTP, open to the scraper.
                    .layer(MetricsEndpointLayer::new(metrics.registry.clone()))
                    .layer(grpc_metrics)
                    // Innermost: refused calls are still traced and counted,
                    // and no handler runs before the credential is checked.
                    .layer(InternalAuthLayer::new(key))
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, signal)
                    .await
            }
        }
    };
    let drain = Duration::from_millis(limits.drain_timeout_ms);
    tokio::select! {
        served = served => served?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(role, "drain timeout: calls still open are cut");
        }
    }
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
        // Every header a client reads: the status, and the retry hint of a
        // refusal (RESOURCE_EXHAUSTED), which a browser could not read unless
        // exposed; grpc-encoding for compressed answers.
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("retry-after-ms"),
            header("grpc-encoding"),
            header("grpc-accept-encoding"),
        ])
        .max_age(Duration::from_secs(600))
}
