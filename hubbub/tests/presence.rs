//! Online counts over two gateways, through a real presence service: every
//! viewer's count converges to the true number as viewers come and go, and
//! a gateway that stops reporting drops out of the counts after its TTL.

mod support;

use hubbub_proto::v1::server_event::Event;
use std::time::Duration;
use support::Viewer;
use svc_presence::PresenceConfig;
use tokio::net::TcpListener;

/// Reads events until a RoomPresence for `room` says `expected`.
async fn sees_online(viewer: &mut Viewer, room: &str, expected: u64) {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let mut last = None;
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(wait, viewer.events.message()).await {
            Ok(Ok(Some(event))) => {
                if let Some(Event::RoomPresence(presence)) = event.event {
                    if presence.room_id == room && presence.online == expected {
                        return;
                    }
                    last = Some(presence.online);
                }
            }
            other => panic!("online never reached {expected} (last seen {last:?}): {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_counts_converge_over_gateways_and_heal_when_one_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let presence = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = support::start(2, |config| {
        config.presence_address = Some(presence.clone());
        config.presence_report_ms = 100;
        config.room_presence_push_ms = 150;
        config.presence_ttl_ms = 1_000;
    })
    .await;
    let config = PresenceConfig {
        listen: listener.local_addr().unwrap(),
        ..PresenceConfig::default()
    };
    tokio::spawn(svc_presence::serve(config, support::options(), listener, sandbox.shutdown.clone()));

    let mut viewers = Vec::new();
    for i in 0..5 {
        let mut viewer = Viewer::connect(&sandbox, usize::from(i >= 3), Some(&format!("v{i}"))).await;
        viewer.join("live").await;
        viewers.push(viewer);
    }
    for viewer in &mut viewers {
        sees_online(viewer, "live", 5).await;
    }

    // One leaves on each gateway (one by closing its stream).
    let gone = viewers.remove(4);
    drop(gone);
    let leaving = viewers.remove(0);
    let request = support::authed(
        hubbub_proto::v1::LeaveRoomRequest {
            session_id: leaving.session_id.clone(),
            room_id: "live".into(),
        },
        leaving.token.as_deref(),
    );
    leaving.client.clone().leave_room(request).await.unwrap();
    for viewer in &mut viewers {
        sees_online(viewer, "live", 3).await;
    }

    // The second gateway stops: its last report expires after the TTL.
    sandbox.gateway_shutdowns[1].cancel();
    let started = tokio::time::Instant::now();
    for viewer in viewers.iter_mut().take(2) {
        sees_online(viewer, "live", 2).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "healed within the TTL and a push interval"
    );
}
