//! Rooms move when the room instance list changes: gateways attach to the
//! new instance, re-subscribe the rooms it now owns, and viewers keep
//! receiving without doing anything.

mod support;

use hubbub_kit::{auth::JwtKey, channel, discovery};
use hubbub_proto::v1::{RoomGetRecentRequest, room_client::RoomClient};
use std::time::Duration;
use support::{Sandbox, Viewer};
use svc_gateway::GatewayConfig;
use svc_room::RoomConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn room_instance(shutdown: &CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let config = RoomConfig {
        listen: listener.local_addr().unwrap(),
        advertise: address.clone(),
        ..RoomConfig::default()
    };
    tokio::spawn(svc_room::serve(config, support::options(), listener, shutdown.clone()));
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_move_to_a_new_instance_and_viewers_keep_receiving() {
    let shutdown = CancellationToken::new();
    let first = room_instance(&shutdown).await;
    let second = room_instance(&shutdown).await;
    let (instances, watched) = discovery::fixed(std::slice::from_ref(&first));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let gateway_internal = internal.local_addr().unwrap();
    let config = GatewayConfig {
        listen: gateway,
        internal_listen: gateway_internal,
        id: "gw-0".into(),
        attach_retry_ms: 50,
        presence_address: None,
        user_publish_per_sec: 10_000.0,
        user_publish_burst: 10_000.0,
        ..GatewayConfig::default()
    };
    let gateway_configs = vec![config.clone()];
    tokio::spawn(svc_gateway::serve_with(
        config,
        watched,
        JwtKey::new(support::SECRET),
        support::options(),
        svc_gateway::GatewayListeners {
            public: listener,
            internal,
        },
        shutdown.clone(),
    ));
    let sandbox = Sandbox {
        room: first.trim_start_matches("http://").parse().unwrap(),
        gateways: vec![gateway],
        gateways_internal: vec![gateway_internal],
        shutdown: shutdown.clone(),
        gateway_shutdowns: vec![shutdown.clone()],
        room_shutdown: shutdown.clone(),
        gateway_configs,
        connect_over: support::ConnectOver::Http2,
    };

    let rooms: Vec<String> = (0..12).map(|i| format!("room-{i}")).collect();
    let mut viewer = Viewer::connect(&sandbox, 0, Some("viewer")).await;
    for room in &rooms {
        viewer.join(room).await;
        viewer.send_comment(room, "before").await.unwrap();
    }
    let mut got = 0;
    while got < rooms.len() {
        got += viewer.room_batch_within(support::PATIENCE).await.unwrap().len();
    }

    // A second instance joins the list: about half the rooms now belong to it.
    let both = vec![first.clone(), second.clone()];
    instances.send(std::sync::Arc::new(both.clone())).unwrap();
    let moved: Vec<&String> = rooms
        .iter()
        .filter(|room| both[hubbub_kit::rendezvous::owner(room, &both).unwrap()] == second)
        .collect();
    assert!(!moved.is_empty(), "some room changes owner");

    // Every room still delivers; the moved ones through the new instance.
    // A message sent while the gateway still follows the old list may land
    // on the old owner just before the room leaves it (viewers are then told
    // of the gap), so each room is sent to until one of its messages arrives.
    let deadline = tokio::time::Instant::now() + 2 * support::PATIENCE;
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < rooms.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms that never delivered after the move: {:?}",
            rooms.iter().filter(|r| !delivered.contains(*r)).collect::<Vec<_>>()
        );
        for room in rooms.iter().filter(|room| !delivered.contains(*room)) {
            match viewer.send_comment(room, &format!("after {room}")).await {
                Ok(_) => {}
                Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
            }
        }
        let round = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Some(batch) = viewer.room_batch_within(round - tokio::time::Instant::now()).await {
            for message in batch {
                if message.body.starts_with(b"after") {
                    delivered.insert(message.room_id.clone());
                }
            }
            if delivered.len() == rooms.len() {
                break;
            }
        }
    }
    let reader = support::service("reader", &["room.read"]);
    let mut second_client = RoomClient::new(channel::traced(&second, &reader).unwrap());
    for room in moved {
        let recent = second_client
            .get_recent(RoomGetRecentRequest { room_id: room.clone() })
            .await
            .unwrap()
            .into_inner()
            .recent;
        assert!(
            recent.iter().any(|m| m.body.starts_with(b"after")),
            "{room} was served by the new instance"
        );
    }
}
