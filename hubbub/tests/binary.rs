//! The `hubbub` binary as a newcomer runs it: `hubbub all` on the embedded
//! stores, a token minted with `hubbub token`, then connect, join, send and
//! receive; every role answers health, reflection and `/metrics`; SIGTERM
//! drains and exits cleanly.

mod support;

use hubbub_proto::v1::{
    ConnectRequest, JoinRoomRequest, RoomMessageKind, SendRoomMessageRequest, client_api_client::ClientApiClient,
    server_event::Event,
};
use std::time::Duration;
use support::all::{All, BINARY, INTERNAL_GATEWAY, LISTENERS, PUBLIC, channel};
use support::{authed, next_event};
use tokio::process::Command;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mode_serves_a_newcomer_from_token_to_received_message() {
    // Its own SQLite directory, not ./data of the checkout; removed when
    // the test ends.
    let data = tempfile::tempdir().unwrap();
    let All {
        mut child,
        ports,
        secret,
        ..
    } = All::start(data.path(), &[]).await;
    let minted = std::process::Command::new(BINARY)
        .args(["token", "--user", "newcomer", "--ttl", "10m"])
        .env("HUBBUB_JWT_SECRET", &secret)
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();

    let mut client = ClientApiClient::new(channel(ports[0]).await);
    let connect = ConnectRequest {
        device_id: "laptop".into(),
        client_info: "test".into(),
    };
    let mut events = client
        .connect(authed(connect, Some(&token)))
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Welcome(welcome)) = next_event(&mut events).await else {
        panic!("welcome first")
    };
    assert_eq!(welcome.user_id, "newcomer");
    let join = JoinRoomRequest {
        session_id: welcome.session_id.clone(),
        room_id: "lobby".into(),
    };
    client.join_room(authed(join, Some(&token))).await.unwrap();
    let send = SendRoomMessageRequest {
        session_id: welcome.session_id.clone(),
        room_id: "lobby".into(),
        body: b"hello, hubbub".to_vec().into(),
        kind: RoomMessageKind::Comment as i32,
    };
    let seq = client
        .send_room_message(authed(send, Some(&token)))
        .await
        .unwrap()
        .into_inner()
        .seq;
    loop {
        match next_event(&mut events).await {
            Some(Event::RoomBatch(batch)) => {
                assert_eq!(batch.messages[0].seq, seq);
                assert_eq!(batch.messages[0].body.as_ref(), b"hello, hubbub");
                assert_eq!(batch.messages[0].sender_user_id, "newcomer");
                break;
            }
            Some(Event::Heartbeat(_) | Event::RoomPresence(_)) => {}
            other => panic!("expected the room batch, got {other:?}"),
        }
    }

    // Every listener: health SERVING for its service, reflection v1 and
    // v1alpha of exactly what it serves, /metrics on internal ones only.
    for (index, (&(role, service), port)) in LISTENERS.iter().zip(&ports).enumerate() {
        let channel = channel(*port).await;
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{role} health: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{role}");
        let mut listed = reflected_services(channel.clone()).await;
        listed.sort();
        let mut expected = vec![
            service.to_string(),
            "grpc.health.v1.Health".to_owned(),
            "grpc.reflection.v1.ServerReflection".to_owned(),
            "grpc.reflection.v1alpha.ServerReflection".to_owned(),
        ];
        expected.sort();
        assert_eq!(listed, expected, "{role} reflection v1 lists exactly what it serves");
        assert!(
            reflected_services_v1alpha(channel).await.contains(&service.to_owned()),
            "{role} reflection v1alpha"
        );
        let metrics = http_get(*port, "/metrics").await;
        if index == PUBLIC {
            assert!(
                !metrics.starts_with("HTTP/1.1 200"),
                "the public port serves no metrics: {metrics}"
            );
            assert!(!metrics.contains("hubbub_"), "{metrics}");
        } else {
            assert!(metrics.starts_with("HTTP/1.1 200"), "{role}: {metrics}");
            assert!(metrics.contains("hubbub_grpc_requests_total"), "{role}: {metrics}");
        }
    }
    let metrics = http_get(ports[INTERNAL_GATEWAY], "/metrics").await;
    assert!(metrics.contains("hubbub_gateway_connections 1"), "{metrics}");

    // The gateway reaches the group service (on SQLite) for the user: a
    // new user belongs to no group yet.
    let listed = client
        .list_my_groups(authed(hubbub_proto::v1::ListMyGroupsRequest::default(), Some(&token)))
        .await
        .expect("ListMyGroups through the gateway")
        .into_inner();
    assert!(listed.groups.is_empty(), "a new user has no groups: {listed:?}");
    assert!(listed.next_page_token.is_empty(), "and no next page");

    // SIGTERM: the client is told to reconnect, then the process exits 0.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    loop {
        match next_event(&mut events).await {
            Some(Event::Reconnect(reconnect)) => {
                assert_eq!(reconnect.reason, "draining");
                break;
            }
            Some(Event::Heartbeat(_) | Event::RoomPresence(_)) => {}
            other => panic!("expected Reconnect, got {other:?}"),
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn unknown_config_keys_stop_the_binary_with_the_key_named() {
    let output = Command::new(BINARY)
        .args(["--set", "gateway.heartbeat=5", "gateway"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway") && stderr.contains("unknown field `heartbeat`"),
        "{stderr}"
    );

    let output = Command::new(BINARY)
        .arg("gateway")
        .env_remove("HUBBUB_JWT_SECRET")
        .env_remove("HUBBUB_INTERNAL_KEY")
        .args(["--set", "gateway.listen=127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HUBBUB_INTERNAL_KEY"));

    // A separate role with an internal key but a short client secret.
    let output = Command::new(BINARY)
        .arg("gateway")
        .env("HUBBUB_INTERNAL_KEY", "k".repeat(32))
        .env("HUBBUB_JWT_SECRET", "short")
        .args(["--set", "gateway.listen=127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32"), "{stderr}");
}

/// Lists services through one version of the reflection API (v1 and v1alpha
/// have the same shape in different modules).
macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        match responses.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

async fn reflected_services(channel: Channel) -> Vec<String> {
    list_services!(v1, channel)
}

async fn reflected_services_v1alpha(channel: Channel) -> Vec<String> {
    list_services!(v1alpha, channel)
}

async fn http_get(port: u16, path: &str) -> String {
    support::http_get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path).await
}
