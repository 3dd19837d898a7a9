//! Online counts over two gateways, through a real presence service: every
//! viewer's count converges to the true number as viewers come and go, and
//! a gateway that stops reporting drops out of the counts after its TTL.

mod support;

use hubbub_proto::v1::server_event::Event;
use std::time::Duration;
use support::Viewer;
use tokio::net::TcpListener;

/// Reads events until a RoomPresence for `room` says `expected`; its
/// unique viewers.
async fn sees_online(viewer: &mut Viewer, room: &str, expected: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let mut last = None;
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(wait, viewer.events.message()).await {
            Ok(Ok(Some(event))) => {
                if let Some(Event::RoomPresence(presence)) = event.event {
                    if presence.room_id == room && presence.online == expected {
                        return presence.unique_viewers;
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
    support::serve_presence(listener, sandbox.shutdown.clone());

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
        let unique = sees_online(viewer, "live", 3).await;
        assert_eq!(
            unique, 5,
            "unique viewers count everyone seen, not only those still here"
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_100k_sessions_reaches_presence_in_chunks() {
    use hubbub_kit::service_auth::Role;
    use hubbub_proto::v1::{
        PresenceLocateUsersRequest, PresenceReportGatewayRequest, PresenceSession, RoomOnlineReport,
        presence_client::PresenceClient, room_online_report::Online,
    };
    use prost::Message;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    support::serve_presence(listener, shutdown.clone());

    let sessions: Vec<PresenceSession> = (0..100_000)
        .map(|i| PresenceSession {
            user_id: format!("user-{i}"),
            device_id: "phone".into(),
            session_id: format!("gw-big~{i:032x}"),
            connected_at_ms: 1_700_000_000_000,
        })
        .collect();
    let snapshot = PresenceReportGatewayRequest {
        gateway_id: "gw-big".into(),
        address: "http://gw-big:7705".into(),
        report_seq: 1,
        full_snapshot: true,
        sessions_added: sessions,
        removed_session_ids: Vec::new(),
        rooms: vec![RoomOnlineReport {
            room_id: "huge".into(),
            online: Some(Online::OnlineAbsolute(100_000)),
            new_viewer_ids: Vec::new(),
        }],
        ttl_ms: 60_000,
    };
    assert!(
        snapshot.encoded_len() > 4 * 1024 * 1024,
        "in one message it would exceed the 4 MiB limit"
    );
    let reports = svc_gateway::presence_link::split_report(snapshot, svc_gateway::presence_link::SESSIONS_PER_REPORT);
    assert!(reports.len() >= 10);

    let gateway = support::credentials(Role::Gateway, "gw-big");
    let mut as_gateway = PresenceClient::new(support::internal_channel(address, &gateway));
    for report in reports {
        assert!(report.encoded_len() < 2 * 1024 * 1024, "each chunk is small");
        let mut sent = Err(tonic::Status::unavailable("not yet"));
        for _ in 0..100 {
            sent = as_gateway.report_gateway(report.clone()).await;
            if !matches!(&sent, Err(status) if status.code() == tonic::Code::Unavailable) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent.unwrap();
    }

    let group = support::credentials(Role::Group, "group");
    let mut as_group = PresenceClient::new(support::internal_channel(address, &group));
    for first in [0, 45_000, 99_000] {
        let user_ids: Vec<String> = (first..first + 1000).map(|i| format!("user-{i}")).collect();
        let located = as_group
            .locate_users(PresenceLocateUsersRequest { user_ids })
            .await
            .unwrap()
            .into_inner();
        assert!(
            located.offline_user_ids.is_empty(),
            "from {first}: {:?}",
            located.offline_user_ids.len()
        );
        assert_eq!(located.gateways[0].sessions.len(), 1000);
    }
    shutdown.cancel();
}
