//! W3C trace context across every hop: injected into gRPC metadata by a
//! client interceptor, extracted from headers by the server's trace layer,
//! and carried as plain strings inside stream messages (a room batch travels
//! on a long-lived stream whose metadata was sent long before).

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
};
use std::collections::HashMap;
use tonic::metadata::MetadataMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Injects the current span's context into outgoing request metadata.
pub fn inject_current(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut MetadataInjector(metadata)));
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

/// A span for housekeeping (presence reports, count polls): its trace is
/// marked not sampled, so neither it nor the spans of the calls it makes,
/// here or on the callee, are exported; with nobody connected a role then
/// exports nothing.
pub fn unsampled_span(name: &'static str) -> tracing::Span {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    let span = tracing::info_span!("housekeeping", otel.name = name);
    let remote = SpanContext::new(
        TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes()),
        SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes()),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    span
}

/// Links `span` to the trace a `traceparent` names (ignored when malformed):
/// one delivery span then reaches every message of a batch.
pub fn add_link_from(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = span_context_of(traceparent) {
        span.add_link(context);
    }
}

/// The remote span context a `traceparent` names, if it is well-formed.
pub fn span_context_of(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::TraceContextExt;
    let mut fields = HashMap::new();
    fields.insert("traceparent".to_owned(), traceparent.to_owned());
    let cx = global::get_text_map_propagator(|propagator| propagator.extract(&fields));
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
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
