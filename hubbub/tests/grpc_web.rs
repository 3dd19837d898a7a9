//! gRPC-web for real: a Node gRPC-web client (connect-node over HTTP/1.1,
//! what browser apps use) drives the gateway. Events must arrive one by one
//! as they are sent, and a browser origin must pass the CORS preflight.

mod support;

use hubbub_proto::v1::{RoomMessageKind, SendRoomMessageRequest};
use std::{path::PathBuf, process::Stdio, time::Duration};
use support::{Viewer, authed, node, node::next_line, token};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const ORIGIN: &str = "http://app.example.test";

fn web_tests_dir() -> PathBuf {
    node::repo_dir("web-tests")
}

/// Installs the probe's packages and generates its code when a plain
/// `cargo test` runs without scripts/test.sh having done it.
fn prepare_probe() {
    node::prepare(
        &web_tests_dir(),
        &[("gen/hubbub/v1/client_api_pb.js", &["run", "--silent", "generate"])],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_client_gets_connect_events_one_by_one_and_cors_preflight_passes() {
    watch_through_the_probe(Some(&token("web-user"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_guest_joins_with_the_guest_token_of_its_welcome() {
    watch_through_the_probe(None).await;
}

/// Runs the browser client (as a user with `token`, or as a guest) and
/// checks what it sees, event by event.
async fn watch_through_the_probe(token: Option<&str>) {
    prepare_probe();
    let sandbox = support::start(1, |config| config.heartbeat_interval_ms = 60_000).await;
    let mut command = Command::new("node");
    command
        .arg(web_tests_dir().join("grpc-web-probe.mjs"))
        .args(["--url", &format!("http://{}", sandbox.gateways[0])]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let mut child = command
        .args(["--room", "web-room"])
        .args(["--origin", ORIGIN])
        .args(["--expect", "3"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (scripts/test.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let preflight = next_line(&mut lines).await["preflight"].clone();
    assert!(matches!(preflight["status"].as_u64(), Some(200 | 204)), "{preflight}");
    assert_eq!(preflight["allow_origin"], ORIGIN, "{preflight}");
    let allow_headers = preflight["allow_headers"].as_str().unwrap().to_ascii_lowercase();
    for header in ["authorization", "x-grpc-web", "content-type", "traceparent"] {
        assert!(allow_headers.contains(header), "{header} not allowed: {preflight}");
    }

    let welcome = next_line(&mut lines).await;
    assert_eq!(welcome["event"], "welcome");
    assert_eq!(welcome["guest"], token.is_none(), "{welcome}");
    assert!(next_line(&mut lines).await.get("joined").is_some());

    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    sender.join("web-room").await;
    // Send one message, wait until the browser client has it, only then the
    // next: a transport that buffered the stream would never show the first.
    for n in 1..=3u64 {
        let body = format!("message {n}");
        let request = SendRoomMessageRequest {
            session_id: sender.session_id.clone(),
            room_id: "web-room".into(),
            body: body.clone().into_bytes().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        let sent = sender
            .client
            .send_room_message(authed(request, sender.token.as_deref()))
            .await
            .unwrap();
        let seq = sent.into_inner().seq;
        let event = loop {
            let line = next_line(&mut lines).await;
            if line["event"] == "room_batch" {
                break line;
            }
        };
        assert_eq!(event["seqs"], serde_json::json!([seq.to_string()]), "{event}");
        assert_eq!(event["bodies"], serde_json::json!([body]), "{event}");
    }
    assert_eq!(next_line(&mut lines).await["done"], true);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "probe exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_responses_let_a_browser_read_the_status() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sandbox = support::start(1, |_| {}).await;
    let _ = sandbox.client(0).await; // the gateway is up
    let mut stream = tokio::net::TcpStream::connect(sandbox.gateways[0]).await.unwrap();
    // An empty LeaveRoomRequest in one gRPC-web frame: flag 0, length 0.
    let frame = [0u8, 0, 0, 0, 0];
    let head = format!(
        "POST /hubbub.v1.ClientApi/LeaveRoom HTTP/1.1\r\nHost: gateway\r\nOrigin: {ORIGIN}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        frame.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("access-control-allow-origin: {ORIGIN}")),
        "{text}"
    );
    let expose = text
        .lines()
        .find(|l| l.starts_with("access-control-expose-headers:"))
        .unwrap_or_default();
    for header in ["grpc-status", "grpc-message", "retry-after-ms"] {
        assert!(expose.contains(header), "{header} exposed: {text}");
    }
    // The missing token is reported first, as UNAUTHENTICATED (16), with a
    // message that says what to send.
    assert!(text.contains("grpc-status: 16"), "{text}");
    assert!(text.contains("guest_token"), "{text}");
}
