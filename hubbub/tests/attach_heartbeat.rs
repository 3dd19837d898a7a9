//! A quiet attach stream still speaks: the room sends heartbeats on it, so
//! proxies on the way (a mesh's sidecars) never cut it as idle.

mod support;

use hubbub_kit::service_auth::Role;
use hubbub_proto::v1::{
    AttachHello, RoomAttachRequest, room_attach_request::Command, room_attach_response::Event, room_client::RoomClient,
};
use std::time::Duration;
use svc_room::RoomConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_attach_stream_carries_heartbeats() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = RoomConfig {
        listen: address,
        advertise: format!("http://{address}"),
        attach_heartbeat_ms: 1_000,
        ..RoomConfig::default()
    };
    tokio::spawn(svc_room::serve(config, support::options(), listener, shutdown.clone()));
    let gateway = support::credentials(Role::Gateway, "gw-quiet");
    let mut room = RoomClient::new(support::internal_channel(address, &gateway));
    let (commands, receiver) = tokio::sync::mpsc::channel(1);
    commands
        .send(RoomAttachRequest {
            command: Some(Command::Hello(AttachHello {
                gateway_id: "gw-quiet".into(),
            })),
        })
        .await
        .unwrap();
    let mut events = room
        .attach(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Accepted(_))), "{first:?}");
    // Nothing subscribed, nothing published: only heartbeats, about one a second.
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(3), events.message())
            .await
            .expect("a heartbeat within 3 s")
            .unwrap()
            .unwrap();
        assert!(matches!(next.event, Some(Event::Heartbeat(_))), "{next:?}");
    }
    drop(commands);
    shutdown.cancel();
}
