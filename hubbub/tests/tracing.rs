//! One trace across every hop: a message sent on one gateway, numbered by
//! the room service and delivered by another gateway shows up as one trace
//! at an OTLP collector (an in-process one here, receiving real OTLP/gRPC).

mod support;

use hubbub_kit::telemetry::{self, TelemetryConfig};
use hubbub_proto::v1::{RoomMessageKind, SendRoomMessageRequest};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use support::{Viewer, authed};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_is_one_trace_from_sending_gateway_through_room_to_delivering_gateway() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let config = TelemetryConfig {
        log: "warn".into(),
        otlp_endpoint: Some(endpoint),
        service_name: None,
    };
    let telemetry = Arc::new(telemetry::init(&config, "test").expect("telemetry starts"));

    let sandbox = support::start(2, |_| {}).await;
    let mut viewer = Viewer::connect(&sandbox, 1, Some("viewer")).await;
    viewer.join("traced").await;
    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    sender.join("traced").await;
    let request = SendRoomMessageRequest {
        session_id: sender.session_id.clone(),
        room_id: "traced".into(),
        body: b"follow me".to_vec().into(),
        kind: RoomMessageKind::Comment as i32,
    };
    sender
        .client
        .send_room_message(authed(request, sender.token.as_deref()))
        .await
        .unwrap();
    assert_eq!(viewer.room_messages(1).await[0].body.as_ref(), b"follow me");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let flushing = telemetry.clone();
        tokio::task::spawn_blocking(move || flushing.flush()).await.unwrap();
        let spans = collector.spans.lock().unwrap().clone();
        let sent = spans.iter().find(|s| s.name == "hubbub.v1.ClientApi/SendRoomMessage");
        if let Some(sent) = sent {
            let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == sent.trace_id).collect();
            let publish = trace.iter().find(|s| s.name == "hubbub.v1.Room/Publish");
            let delivered = trace
                .iter()
                .find(|s| s.name == "gateway.deliver" && attribute(s, "gateway_id") == Some("gw-1"));
            if let (Some(publish), Some(delivered)) = (publish, delivered) {
                assert_eq!(attribute(sent, "hubbub.role"), Some("gateway"));
                assert_eq!(attribute(publish, "hubbub.role"), Some("room"));
                assert_eq!(attribute(delivered, "room_id"), Some("traced"));
                assert!(
                    !publish.parent_span_id.is_empty(),
                    "the room's span has a remote parent"
                );
                assert!(!delivered.parent_span_id.is_empty(), "delivery continues the publish");
                return;
            }
        }
        if tokio::time::Instant::now() > deadline {
            let names: Vec<(String, String)> = spans.iter().map(|s| (s.name.clone(), hex(&s.trace_id))).collect();
            panic!("no single trace spans gateway -> room -> gateway; spans seen: {names:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
