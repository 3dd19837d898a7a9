//! One process, several services in traces: when a process runs several
//! roles (`hubbub all`), each finished span goes to the processor of the
//! role that made it, whose resource names that role (`hubbub-room`, ...),
//! so a trace viewer shows the hops between roles as hops between services.
//!
//! The role of a span is its `hubbub.role` attribute (the server span of
//! every call has one) or else the crate it was made in, from the
//! `code.module.name` attribute tracing-opentelemetry records
//! (`svc_room::api` is the room's). Anything else goes to the fallback
//! processor, which keeps the provider's resource.

use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanProcessor},
};
use std::time::{Duration, Instant};

/// The roles a span can be routed to; `svc_<role>` is each one's crate.
pub const ROLES: [&str; 5] = ["gateway", "room", "group", "gift", "presence"];

/// `service.name` of a role's spans.
pub fn service_name(role: &str) -> String {
    format!("hubbub-{role}")
}

/// A span processor that sends each finished span to its role's processor.
#[derive(Debug)]
pub struct RoleRouter<P> {
    /// One per entry of [`ROLES`], in that order.
    roles: Vec<P>,
    fallback: P,
}

impl<P: SpanProcessor> RoleRouter<P> {
    /// Builds one processor per role and the fallback with `make`, called
    /// with the role's name, then with None; the first failure stops it.
    pub fn new<E>(mut make: impl FnMut(Option<&'static str>) -> Result<P, E>) -> Result<Self, E> {
        Ok(Self {
            roles: ROLES.iter().map(|role| make(Some(role))).collect::<Result<_, _>>()?,
            fallback: make(None)?,
        })
    }

    fn processors(&self) -> impl Iterator<Item = &P> {
        self.roles.iter().chain(std::iter::once(&self.fallback))
    }

    fn route(&self, span: &SpanData) -> &P {
        role_of(span)
            .and_then(|role| ROLES.iter().position(|known| *known == role))
            .map_or(&self.fallback, |index| &self.roles[index])
    }
}

/// The role that made `span`, if it says.
fn role_of(span: &SpanData) -> Option<&str> {
    let text = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .and_then(|kv| match &kv.value {
                Value::String(text) => Some(text.as_str()),
                _ => None,
            })
    };
    text("hubbub.role").or_else(|| {
        let module = text("code.module.name")?;
        let krate = module.split("::").next()?;
        krate.strip_prefix("svc_")
    })
}

/// `resource` with `service.name` replaced.
fn renamed(resource: &Resource, name: String) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            resource
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(name)
        .build()
}

/// The first error of `results`, after every one has run.
fn first_error(results: impl Iterator<Item = OTelSdkResult>) -> OTelSdkResult {
    // Collected first: every processor must be flushed or shut down, even
    // after one has failed.
    let results: Vec<OTelSdkResult> = results.collect();
    results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
}

impl<P: SpanProcessor> SpanProcessor for RoleRouter<P> {
    // The role is known for sure only once the span has ended (attributes
    // can be recorded after the start), and the batch processors this
    // routes to do nothing at start.
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.route(&span).on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        first_error(self.processors().map(SpanProcessor::force_flush))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        // One deadline for all, not `timeout` each.
        let deadline = Instant::now() + timeout;
        first_error(self.processors().map(|processor| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(timeout));
            }
            processor.shutdown_with_timeout(left)
        }))
    }

    fn set_resource(&mut self, resource: &Resource) {
        for (role, processor) in ROLES.iter().zip(&mut self.roles) {
            processor.set_resource(&renamed(resource, service_name(role)));
        }
        self.fallback.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{
        KeyValue,
        trace::{Span as _, Tracer as _, TracerProvider as _},
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// (service.name, span name) of every span a [`Recorder`] ended.
    type Ended = Arc<Mutex<Vec<(String, String)>>>;

    /// Records the spans it is given with its resource's service name.
    #[derive(Debug)]
    struct Recorder {
        service: String,
        ended: Ended,
    }

    impl SpanProcessor for Recorder {
        fn on_start(&self, _span: &mut Span, _cx: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.ended
                .lock()
                .unwrap()
                .push((self.service.clone(), span.name.into_owned()));
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
        fn set_resource(&mut self, resource: &Resource) {
            let name = resource.get(&opentelemetry::Key::new("service.name"));
            self.service = name.map(|name| name.to_string()).unwrap_or_default();
        }
    }

    fn provider() -> (SdkTracerProvider, Ended) {
        let ended = Ended::default();
        let router = RoleRouter::new(|_| {
            Ok::<_, ()>(Recorder {
                service: String::new(),
                ended: ended.clone(),
            })
        })
        .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(router)
            .with_resource(Resource::builder().with_service_name("hubbub-all").build())
            .build();
        (provider, ended)
    }

    fn service_of(ended: &Ended, span: &str) -> String {
        let ended = ended.lock().unwrap();
        let found = ended.iter().find(|(_, name)| name == span);
        found
            .unwrap_or_else(|| panic!("{span} not exported: {ended:?}"))
            .0
            .clone()
    }

    #[test]
    fn spans_go_to_the_service_of_their_role_attribute_or_crate() {
        let (provider, ended) = provider();
        let tracer = provider.tracer("test");
        let spans = [
            ("server of room", vec![KeyValue::new("hubbub.role", "room")]),
            ("server of gift", vec![KeyValue::new("hubbub.role", "gift")]),
            (
                "deliver",
                vec![KeyValue::new("code.module.name", "svc_gateway::delivery")],
            ),
            ("report", vec![KeyValue::new("code.module.name", "svc_presence")]),
            ("kit", vec![KeyValue::new("code.module.name", "hubbub_kit::channel")]),
            ("unknown role", vec![KeyValue::new("hubbub.role", "bench")]),
            ("bare", vec![]),
        ];
        for (name, attributes) in spans {
            tracer
                .span_builder(name)
                .with_attributes(attributes)
                .start(&tracer)
                .end();
        }
        assert_eq!(service_of(&ended, "server of room"), "hubbub-room");
        assert_eq!(service_of(&ended, "server of gift"), "hubbub-gift");
        assert_eq!(service_of(&ended, "deliver"), "hubbub-gateway");
        assert_eq!(service_of(&ended, "report"), "hubbub-presence");
        assert_eq!(service_of(&ended, "kit"), "hubbub-all");
        assert_eq!(service_of(&ended, "unknown role"), "hubbub-all");
        assert_eq!(service_of(&ended, "bare"), "hubbub-all");
    }

    #[test]
    fn the_role_attribute_wins_over_the_crate() {
        let (provider, ended) = provider();
        let tracer = provider.tracer("test");
        let mut span = tracer.start("server");
        span.set_attribute(KeyValue::new("code.module.name", "svc_gateway::api"));
        span.set_attribute(KeyValue::new("hubbub.role", "group"));
        span.end();
        assert_eq!(service_of(&ended, "server"), "hubbub-group");
    }

    /// Routing by crate relies on the attribute tracing-opentelemetry puts
    /// on every span; an upgrade that renames it must fail here.
    #[test]
    fn tracing_spans_carry_their_module_under_the_key_routing_reads() {
        let captured = Arc::new(Mutex::new(None));
        #[derive(Debug)]
        struct Capture(Arc<Mutex<Option<SpanData>>>);
        impl SpanProcessor for Capture {
            fn on_start(&self, _span: &mut Span, _cx: &Context) {}
            fn on_end(&self, span: SpanData) {
                *self.0.lock().unwrap() = Some(span);
            }
            fn force_flush(&self) -> OTelSdkResult {
                Ok(())
            }
            fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
                Ok(())
            }
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Capture(captured.clone()))
            .build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("somewhere").in_scope(|| {});
        });
        let span = captured.lock().unwrap().take().expect("span exported");
        let module = span.attributes.iter().find(|kv| kv.key.as_str() == "code.module.name");
        assert_eq!(
            module.map(|kv| kv.value.as_str().into_owned()),
            Some(module_path!().to_owned())
        );
    }
}
