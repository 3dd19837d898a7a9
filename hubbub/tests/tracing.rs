//! Traces as an independent OTLP receiver sees them (an in-process one here,
//! receiving real OTLP/gRPC): a message sent on one gateway, numbered by the
//! room service and delivered by another gateway is one trace; every message
//! of a batch reaches the delivery; each span names the role that made it;
//! housekeeping with nobody connected exports nothing.
//!
//! One test function: a process has one global subscriber.

mod support;

use hubbub_kit::telemetry::{self, Telemetry, TelemetryConfig};
use hubbub_proto::v1::{RoomMessageKind, SendRoomMessageRequest};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    trace::v1::Span,
};
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use support::{Viewer, authed};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A span as exported, with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    span: Span,
}

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").unwrap_or_default().to_owned();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Exported {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        })
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    text(&span.attributes, key)
}

/// Every span exported so far, after a flush.
async fn exported(telemetry: &Arc<Telemetry>, collector: &Collector) -> Vec<Exported> {
    let flushing = telemetry.clone();
    tokio::task::spawn_blocking(move || flushing.flush()).await.unwrap();
    collector.spans.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_follow_every_message_name_each_role_and_leave_housekeeping_out() {
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
    // Not a role's name: the process runs several, as `hubbub all` does.
    let telemetry = Arc::new(telemetry::init(&config, "test").expect("telemetry starts"));

    let presence_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let presence = presence_listener.local_addr().unwrap();
    let sandbox = support::start_with_room(
        2,
        |config| {
            config.presence_address = Some(format!("http://{presence}"));
            config.presence_report_ms = 50;
            config.room_presence_push_ms = 50;
        },
        // Long enough that a quick burst shares one batch.
        |room| room.batch_window_ms = 300,
    )
    .await;
    support::serve_presence(presence_listener, sandbox.shutdown.clone());

    housekeeping_exports_nothing(&telemetry, &collector, presence).await;

    let mut viewer = Viewer::connect(&sandbox, 1, Some("viewer")).await;
    viewer.join("traced").await;
    viewer.join("batched").await;
    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    sender.join("traced").await;
    sender.join("batched").await;

    send(&sender, "traced", "follow me").await;
    assert_eq!(viewer.room_messages(1).await[0].body.as_ref(), b"follow me");
    one_trace_across_gateway_room_gateway(&telemetry, &collector).await;

    let bodies: Vec<String> = (0..5).map(|i| format!("burst {i}")).collect();
    // Back to back, well within one batch window.
    for body in &bodies {
        send(&sender, "batched", body).await;
    }
    let got = viewer.room_messages(bodies.len()).await;
    assert_eq!(got.len(), bodies.len());
    every_message_of_a_batch_reaches_the_delivery(&telemetry, &collector, bodies.len()).await;
}

/// Sends `body` into `room` as `sender`.
async fn send(sender: &Viewer, room: &str, body: &str) {
    let request = SendRoomMessageRequest {
        session_id: sender.session_id.clone(),
        room_id: room.into(),
        body: body.as_bytes().to_vec().into(),
        kind: RoomMessageKind::Comment as i32,
    };
    sender
        .client
        .clone()
        .send_room_message(authed(request, sender.token.as_deref()))
        .await
        .unwrap();
}

/// With gateways reporting to presence every 50 ms and nobody connected,
/// a second of reports (counted by presence itself) exports no span.
async fn housekeeping_exports_nothing(telemetry: &Arc<Telemetry>, collector: &Collector, presence: SocketAddr) {
    let before = presence_reports(presence).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = presence_reports(presence).await;
    assert!(
        after >= before + 10,
        "the gateways kept reporting ({before} reports, then {after})"
    );
    let spans = exported(telemetry, collector).await;
    // The two scrapes above are calls of this test's own, traced as any
    // call from outside is.
    let names: Vec<(&str, &str)> = spans
        .iter()
        .filter(|e| e.span.name != "metrics")
        .map(|e| (e.service.as_str(), e.span.name.as_str()))
        .collect();
    assert!(names.is_empty(), "housekeeping exported spans: {names:#?}");
}

/// `ReportGateway` calls presence received, from its `/metrics`.
async fn presence_reports(presence: SocketAddr) -> u64 {
    support::scrape(presence)
        .await
        .lines()
        .filter(|line| line.starts_with("hubbub_grpc_requests_total") && line.contains("/ReportGateway\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The message sent into "traced" is one trace: the sending gateway's call,
/// the room's publish and the other gateway's delivery, each exported under
/// its role's service name.
async fn one_trace_across_gateway_room_gateway(telemetry: &Arc<Telemetry>, collector: &Collector) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = exported(telemetry, collector).await;
        let sent = spans
            .iter()
            .find(|e| e.span.name == "hubbub.v1.ClientApi/SendRoomMessage");
        if let Some(sent) = sent {
            let trace: Vec<&Exported> = spans.iter().filter(|e| e.span.trace_id == sent.span.trace_id).collect();
            // A client's message reaches its room in a PublishMany batch:
            // the item's own span continues the client's trace.
            let publish = trace.iter().find(|e| e.span.name == "room.publish");
            let delivered = trace
                .iter()
                .find(|e| e.span.name == "gateway.deliver" && attribute(&e.span, "gateway_id") == Some("gw-1"));
            if let (Some(publish), Some(delivered)) = (publish, delivered) {
                assert_eq!(attribute(&sent.span, "hubbub.role"), Some("gateway"));
                assert_eq!(attribute(&publish.span, "room_id"), Some("traced"));
                assert_eq!(attribute(&delivered.span, "room_id"), Some("traced"));
                assert!(
                    !publish.span.parent_span_id.is_empty(),
                    "the room's span has a remote parent"
                );
                assert!(
                    !delivered.span.parent_span_id.is_empty(),
                    "delivery continues the publish"
                );
                assert_eq!(sent.service, "hubbub-gateway");
                assert_eq!(publish.service, "hubbub-room");
                assert_eq!(delivered.service, "hubbub-gateway");
                for exported in &trace {
                    assert!(
                        ["hubbub-gateway", "hubbub-room"].contains(&exported.service.as_str()),
                        "{} exported as {}",
                        exported.span.name,
                        exported.service
                    );
                }
                return;
            }
        }
        if tokio::time::Instant::now() > deadline {
            let names: Vec<(String, String)> = spans
                .iter()
                .map(|e| (e.span.name.clone(), hex(&e.span.trace_id)))
                .collect();
            panic!("no single trace spans gateway -> room -> gateway; spans seen: {names:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message sent into "batched" reaches gw-1's delivery: its trace is
/// the delivery span's own or one of its links; and the burst did share a
/// batch, or the check would prove nothing.
async fn every_message_of_a_batch_reaches_the_delivery(
    telemetry: &Arc<Telemetry>,
    collector: &Collector,
    count: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = exported(telemetry, collector).await;
        let sent: BTreeSet<String> = spans
            .iter()
            .filter(|e| e.span.name == "gateway.send_room_message" && attribute(&e.span, "room_id") == Some("batched"))
            .map(|e| hex(&e.span.trace_id))
            .collect();
        let deliveries: Vec<&Span> = spans
            .iter()
            .map(|e| &e.span)
            .filter(|s| {
                s.name == "gateway.deliver"
                    && attribute(s, "gateway_id") == Some("gw-1")
                    && attribute(s, "room_id") == Some("batched")
            })
            .collect();
        let reached: BTreeSet<String> = deliveries
            .iter()
            .flat_map(|s| std::iter::once(hex(&s.trace_id)).chain(s.links.iter().map(|l| hex(&l.trace_id))))
            .collect();
        if sent.len() == count && sent.is_subset(&reached) {
            assert!(
                deliveries.len() < count && deliveries.iter().any(|s| !s.links.is_empty()),
                "the burst was delivered in {} batches: nothing was batched",
                deliveries.len()
            );
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<&String> = sent.difference(&reached).collect();
            panic!(
                "{} of {count} sent traces seen; not reaching a delivery span of gw-1: {missing:#?}; \
                 {} delivery spans",
                sent.len(),
                deliveries.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
