//! W3C trace context across every hop: injected into gRPC metadata by a
//! client interceptor, extracted from headers by the server's trace layer,
//! and carried as plain strings inside stream messages (a room batch travels
//! on a long-lived stream whose metadata was sent long before).

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
};
use std::collections::HashMap;
use tonic::{Request, Status, metadata::MetadataMap, service::Interceptor};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Injects the current span's context into every outgoing request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl Interceptor for TraceInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let cx = tracing::Span::current().context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut MetadataInjector(request.metadata_mut()))
        });
        Ok(request)
    }
}

/// The context of the remote caller found in HTTP headers (no parent when
/// there is none).
pub fn extract_from_headers(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// The current span's `traceparent` and `tracestate`, empty when untraced.
pub fn current_traceparent() -> (String, String) {
    let cx = tracing::Span::current().context();
    let mut fields = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut fields));
    (
        fields.remove("traceparent").unwrap_or_default(),
        fields.remove("tracestate").unwrap_or_default(),
    )
}

/// Makes `span` a child of the context carried in a message. Call before the
/// span is first entered. Empty strings leave the span a root.
pub fn set_parent_from(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if traceparent.is_empty() {
        return;
    }
    let mut fields = HashMap::new();
    fields.insert("traceparent".to_owned(), traceparent.to_owned());
    if !tracestate.is_empty() {
        fields.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let cx = global::get_text_map_propagator(|propagator| propagator.extract(&fields));
    // Fails only when the span is disabled; nothing to link then.
    let _ = span.set_parent(cx);
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), value.parse()) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}
