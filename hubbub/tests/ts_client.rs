//! The TypeScript client (`clients/ts`, built) against a real gateway over
//! gRPC-web: a guest connects, joins with its guest token, gets a precise
//! error for a bad call, and receives room messages one by one.

mod support;

use hubbub_proto::v1::{RoomMessageKind, SendRoomMessageRequest};
use serde_json::Value;
use std::{path::PathBuf, process::Stdio, time::Duration};
use support::{Viewer, authed};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{ChildStdout, Command},
};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/ts")
}

/// Installs, generates and builds the client when a plain `cargo test`
/// runs without scripts/test.sh having done it.
fn prepare_client() {
    let dir = client_dir();
    let run = |args: &[&str]| {
        let status = std::process::Command::new("npm")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm must be installed (scripts/test.sh installs it)");
        assert!(status.success(), "npm {args:?} failed in {}", dir.display());
    };
    if !dir.join("node_modules").exists() {
        run(&["ci", "--no-audit", "--no-fund"]);
    }
    if !dir.join("src/gen/hubbub/v1/client_api_pb.ts").exists() {
        run(&["run", "--silent", "generate"]);
    }
    if !dir.join("dist/src/index.js").exists() {
        run(&["run", "--silent", "build"]);
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the client printed nothing within 10 s")
        .expect("reading the client's output")
        .expect("the client exited early");
    let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert!(value.get("error").is_none(), "the client failed: {line}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_connects_joins_and_receives_room_messages() {
    prepare_client();
    let sandbox = support::start(1, |config| config.heartbeat_interval_ms = 60_000).await;
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
