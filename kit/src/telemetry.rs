//! Logs to stderr and, when an OTLP endpoint is configured, spans exported
//! over OTLP/gRPC. The log filter applies to the log layer only: a global
//! filter would also starve the OpenTelemetry layer of spans.

use crate::span_routing::{self, RoleRouter};
use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchSpanProcessor, SdkTracerProvider},
};
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

/// `[telemetry]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log filter, `RUST_LOG` syntax ("info", "svc_room=debug,info").
    pub log: String,
    /// OTLP/gRPC collector endpoint ("http://otel-collector:4317"); spans are
    /// exported only when set.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every exported span; defaults to "hubbub-<role>",
    /// and in a process of several roles to that of the role that made each
    /// span.
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log: "info".to_owned(),
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("telemetry.log {0:?} is not a valid filter: {1}")]
    Filter(String, #[source] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter for {0}: {1}")]
    Exporter(String, #[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed in this process")]
    AlreadyInstalled,
}

/// Keeps the exporter alive; `shutdown` flushes spans still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes queued spans and stops the exporter. Blocks: call it from a
    /// multi-thread runtime or a blocking task.
    pub fn shutdown(&self) {
        if let Some(Err(err)) = self.provider.as_ref().map(SdkTracerProvider::shutdown) {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
    }

    /// Exports every finished span now (used by tests and before exit).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

/// Installs the process-wide subscriber and the W3C propagator. Must run
/// inside a Tokio runtime when OTLP export is on.
pub fn init(config: &TelemetryConfig, role: &str) -> Result<Telemetry, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log).map_err(|err| TelemetryError::Filter(config.log.clone(), err))?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not for log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);

    let (spans, provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let provider = provider(endpoint, config.service_name.as_deref(), role)?;
            global::set_tracer_provider(provider.clone());
            // Our own spans only: transport crates' internals are noise in a trace.
            let targets = Targets::new()
                .with_target("hubbub", tracing::Level::INFO)
                .with_target("hubbub_kit", tracing::Level::INFO)
                .with_target("svc_gateway", tracing::Level::INFO)
                .with_target("svc_room", tracing::Level::INFO)
                .with_target("svc_group", tracing::Level::INFO)
                .with_target("svc_gift", tracing::Level::INFO)
                .with_target("svc_presence", tracing::Level::INFO);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("hubbub"))
                .with_filter(targets);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };

    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}

/// The tracer provider exporting to `endpoint`. A process of one role, or
/// one with `service_name` configured, names one service; a process of
/// several roles names each span's role ([`span_routing`]).
fn provider(endpoint: &str, service_name: Option<&str>, role: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|err| TelemetryError::Exporter(endpoint.to_owned(), err))
    };
    let single = service_name.is_some() || span_routing::ROLES.contains(&role);
    let service_name = service_name.map_or_else(|| span_routing::service_name(role), str::to_owned);
    let builder =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service_name).build());
    let builder = if single {
        builder.with_batch_exporter(exporter()?)
    } else {
        // An exporter and a batch per role: an OTLP exporter sends one
        // resource, and the resource is where service.name lives.
        let router = RoleRouter::new(|_| exporter().map(|exporter| BatchSpanProcessor::builder(exporter).build()))?;
        builder.with_span_processor(router)
    };
    Ok(builder.build())
}

/// The server span of one call, named after the method and tagged with the
/// serving role.
pub fn role_span(role: &'static str, path: &str) -> tracing::Span {
    let name = path.trim_start_matches('/');
    tracing::info_span!(
        "grpc",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "grpc",
        hubbub.role = role,
    )
}
