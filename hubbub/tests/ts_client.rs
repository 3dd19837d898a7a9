//! The TypeScript client (`clients/ts`, built) against a real gateway over
//! gRPC-web: a guest connects, joins with its guest token, gets a precise
//! error for a bad call, and receives room messages one by one.

mod support;

use hubbub_proto::v1::{RoomMessageKind, SendRoomMessageRequest};
use serde_json::Value;
use std::{path::PathBuf, process::Stdio, time::Duration};
use support::{Viewer, authed, node, node::next_line};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{ChildStdout, Command},
};

fn client_dir() -> PathBuf {
    node::repo_dir("clients/ts")
}

/// Installs, generates and builds the client when a plain `cargo test`
/// runs without scripts/test.sh having done it.
fn prepare_client() {
    node::prepare(
        &client_dir(),
        &[
            ("src/gen/hubbub/v1/client_api_pb.ts", &["run", "--silent", "generate"]),
            ("dist/src/index.js", &["run", "--silent", "build"]),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_connects_joins_and_receives_room_messages() {
    connects_joins_and_receives(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_does_the_same_over_the_lean_connect_path() {
    connects_joins_and_receives(true).await;
}

/// Connect over tonic (`lean` false) or over the lean path; every other
/// call of the client goes to tonic either way.
async fn connects_joins_and_receives(lean: bool) {
    prepare_client();
    let sandbox = support::start(1, |config| {
        config.heartbeat_interval_ms = 60_000;
        config.lean_connect = lean;
    })
    .await;
    let mut child = Command::new("node")
        .arg(client_dir().join("smoke/watch.mjs"))
        .args(["--url", &format!("http://{}", sandbox.gateways[0])])
        .args(["--room", "ts-room", "--expect", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (scripts/test.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let welcome = next_line(&mut lines).await;
    assert_eq!(welcome["welcome"]["guest"], true, "{welcome}");
    assert_eq!(welcome["welcome"]["heartbeatMs"], 60_000, "{welcome}");
    assert_eq!(next_line(&mut lines).await["joined"], "ts-room");
    // NOT_FOUND (5) for a session that is not one, mapped by HubbubError.
    assert_eq!(next_line(&mut lines).await["refused"], 5);

    let mut sender = Viewer::connect(&sandbox, 0, Some("ts-sender")).await;
    sender.join("ts-room").await;
    for n in 1..=2u64 {
        let body = format!("hello {n}");
        let request = SendRoomMessageRequest {
            session_id: sender.session_id.clone(),
            room_id: "ts-room".into(),
            body: body.clone().into_bytes().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        sender
            .client
            .send_room_message(authed(request, sender.token.as_deref()))
            .await
            .unwrap();
        let got = next_line(&mut lines).await;
        assert_eq!(got["message"], body, "{got}");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// The next line of `lines` that has `key`, within the patience.
async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, key: &str) -> Value {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no line with {key:?}");
        let line = next_line(lines).await;
        if line.get(key).is_some() {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_connection_comes_back_after_a_gateway_restart_and_rejoins() {
    prepare_client();
    let mut sandbox = support::start(1, |config| {
        config.heartbeat_interval_ms = 60_000;
        // Told to come back within 200 ms when the gateway drains.
        config.drain_reconnect_after_ms = 200;
    })
    .await;
    let mut child = Command::new("node")
        .arg(client_dir().join("smoke/reconnect.mjs"))
        .args(["--url", &format!("http://{}", sandbox.gateways[0])])
        .args(["--room", "ts-back"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (scripts/test.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(line_with(&mut lines, "state").await["state"], "connecting");
    assert_eq!(line_with(&mut lines, "state").await["state"], "connected");
    let send = |viewer: &mut Viewer, body: &str| {
        let request = SendRoomMessageRequest {
            session_id: viewer.session_id.clone(),
            room_id: "ts-back".into(),
            body: body.as_bytes().to_vec().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        let token = viewer.token.clone();
        let mut client = viewer.client.clone();
        async move {
            client
                .send_room_message(authed(request, token.as_deref()))
                .await
                .unwrap()
        }
    };
    let mut sender = Viewer::connect(&sandbox, 0, Some("ts-sender")).await;
    sender.join("ts-back").await;
    // The client may still be joining: send until it has the first.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        send(&mut sender, "before").await;
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), line_with(&mut lines, "message")).await {
            assert_eq!(line["message"], "before");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the client never got a message");
    }

    sandbox.restart_gateway(0).await;
    // Down, then up again on its own, and in the room again.
    assert_eq!(line_with(&mut lines, "state").await["state"], "disconnected");
    loop {
        if line_with(&mut lines, "state").await["state"] == "connected" {
            break;
        }
    }
    let mut sender = Viewer::connect(&sandbox, 0, Some("ts-sender-2")).await;
    sender.join("ts-back").await;
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        send(&mut sender, "after").await;
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), line_with(&mut lines, "message")).await {
            // Nothing from before comes twice: the next message is the new one.
            assert_eq!(line["message"], "after", "{line}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no message after the restart");
    }
}
