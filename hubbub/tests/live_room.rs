//! The live room path end to end: one room instance, two gateways, viewers
//! on both, all over real gRPC on 127.0.0.1. The Connect contract runs once
//! per transport of the stream (`on_both_transports!`).

mod support;

use hubbub_proto::v1::{
    JoinRoomRequest, LeaveRoomRequest, RoomMessageKind, SendRoomMessageRequest, server_event::Event,
};
use std::time::Duration;
use support::{ConnectOver, Sandbox, Viewer, authed, next_event};
use tonic::Code;

async fn two_gateways() -> Sandbox {
    support::start(2, |_| {}).await
}

/// Two gateways whose viewers connect over `over`.
async fn two_gateways_over(over: ConnectOver) -> Sandbox {
    let mut sandbox = two_gateways().await;
    sandbox.connect_over = over;
    sandbox
}

/// The Connect contract, one test per transport of the stream: gRPC over
/// HTTP/2 (tonic) and gRPC-web over HTTP/1.1 (the gateway's lean path).
/// Each test is an `async fn(ConnectOver)` of this file.
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::support::ConnectOver;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_http2() {
                super::$name(ConnectOver::Http2).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_lean_http1() {
                super::$name(ConnectOver::Lean).await
            }
        }
    )*};
}

on_both_transports!(
    every_viewer_on_every_gateway_receives_every_message_in_order,
    a_viewer_who_left_receives_nothing_more,
    a_late_joiner_gets_recent_messages_and_the_stream_continues_after_them,
    a_guest_can_watch_but_not_send,
    a_draining_gateway_tells_its_clients_to_reconnect_and_ends_their_streams,
    heartbeats_arrive_on_the_configured_interval,
    viewers_keep_receiving_after_the_room_instance_restarts,
    a_device_that_goes_away_is_removed_from_its_rooms
);

async fn every_viewer_on_every_gateway_receives_every_message_in_order(over: ConnectOver) {
    let sandbox = two_gateways_over(over).await;
    let mut viewers = Vec::new();
    for index in 0..6 {
        let mut viewer = Viewer::connect(&sandbox, index % 2, Some(&format!("viewer-{index}"))).await;
        viewer.join("concert").await;
        viewers.push(viewer);
    }
    let mut alice = Viewer::connect(&sandbox, 0, Some("alice")).await;
    let mut bob = Viewer::connect(&sandbox, 1, Some("bob")).await;
    alice.join("concert").await;
    bob.join("concert").await;

    // Two senders on two gateways at once: the room's sequence decides the order.
    let (a, b) = tokio::join!(
        async {
            let mut seqs = Vec::new();
            for i in 0..15 {
                seqs.push(alice.send_comment("concert", &format!("alice {i}")).await.unwrap());
            }
            seqs
        },
        async {
            let mut seqs = Vec::new();
            for i in 0..15 {
                seqs.push(bob.send_comment("concert", &format!("bob {i}")).await.unwrap());
            }
            seqs
        }
    );
    let mut all: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
    all.sort_unstable();
    let first = all[0];
    assert_eq!(
        all,
        (first..first + 30).collect::<Vec<_>>(),
        "each accepted message got its own seq, with no gap"
    );

    let mut reference: Option<Vec<(u64, Vec<u8>)>> = None;
    for viewer in viewers.iter_mut().chain([&mut alice, &mut bob]) {
        let got: Vec<(u64, Vec<u8>)> = viewer
            .room_messages(30)
            .await
            .into_iter()
            .map(|m| (m.seq, m.body.to_vec()))
            .collect();
        assert_eq!(
            got.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            all,
            "every message, in room order"
        );
        let alice_order: Vec<&[u8]> = got
            .iter()
            .map(|(_, b)| b.as_slice())
            .filter(|b| b.starts_with(b"alice"))
            .collect();
        let expected: Vec<Vec<u8>> = (0..15).map(|i| format!("alice {i}").into_bytes()).collect();
        assert_eq!(
            alice_order,
            expected.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            "a sender's order is kept"
        );
        match &reference {
            None => reference = Some(got),
            Some(first) => assert_eq!(&got, first, "every viewer sees the same sequence"),
        }
    }
}

async fn a_viewer_who_left_receives_nothing_more(over: ConnectOver) {
    let sandbox = two_gateways_over(over).await;
    let mut stays = Viewer::connect(&sandbox, 1, Some("stays")).await;
    let mut leaves = Viewer::connect(&sandbox, 1, Some("leaves")).await;
    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    for viewer in [&mut stays, &mut leaves, &mut sender] {
        viewer.join("r").await;
    }
    sender.send_comment("r", "before").await.unwrap();
    assert_eq!(leaves.room_messages(1).await[0].body.as_ref(), b"before");
    assert_eq!(stays.room_messages(1).await[0].body.as_ref(), b"before");

    let request = authed(
        LeaveRoomRequest {
            session_id: leaves.session_id.clone(),
            room_id: "r".into(),
        },
        leaves.token.as_deref(),
    );
    leaves.client.leave_room(request).await.unwrap();
    sender.send_comment("r", "after").await.unwrap();
    // `stays` is on the same gateway: once it has the message, `leaves` would have it too.
    assert_eq!(stays.room_messages(1).await[0].body.as_ref(), b"after");
    assert_eq!(leaves.room_batch_within(Duration::from_millis(300)).await, None);

    // Sending into a room the session left is refused.
    let err = leaves.send_comment("r", "ghost").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

async fn a_late_joiner_gets_recent_messages_and_the_stream_continues_after_them(over: ConnectOver) {
    let sandbox = two_gateways_over(over).await;
    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    sender.join("r").await;
    let mut third = 0;
    for i in 1..=3 {
        third = sender.send_comment("r", &format!("m{i}")).await.unwrap();
    }
    let mut late = Viewer::connect(&sandbox, 1, Some("late")).await;
    let joined = late.join("r").await;
    assert!(joined.online >= 1);
    let fourth = sender.send_comment("r", "m4").await.unwrap();
    assert_eq!(fourth, third + 1);
    // Whatever the batch window still held at the join arrives on the
    // stream: recent + stream hold every message exactly once, in order.
    let mut seen: Vec<(u64, Vec<u8>)> = joined.recent.iter().map(|m| (m.seq, m.body.to_vec())).collect();
    while seen.last().map(|(seq, _)| *seq) != Some(fourth) {
        let more = late
            .room_batch_within(support::PATIENCE)
            .await
            .expect("the stream continues");
        seen.extend(more.iter().map(|m| (m.seq, m.body.to_vec())));
    }
    let expected: Vec<(u64, Vec<u8>)> = (1..=4).map(|i| (third - 3 + i, format!("m{i}").into_bytes())).collect();
    assert_eq!(seen, expected);
}

async fn a_guest_can_watch_but_not_send(over: ConnectOver) {
    let sandbox = two_gateways_over(over).await;
    let mut guest = Viewer::connect(&sandbox, 0, None).await;
    guest.join("r").await;
    let err = guest.send_comment("r", "hi").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut user = Viewer::connect(&sandbox, 0, Some("u")).await;
    user.join("r").await;
    user.send_comment("r", "hello guests").await.unwrap();
    assert_eq!(guest.room_messages(1).await[0].body.as_ref(), b"hello guests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_rather_than_treated_as_a_guest() {
    let sandbox = two_gateways().await;
    let mut client = sandbox.client(0).await;
    let forged = hubbub_kit::auth::JwtKey::new(b"not-the-secret").mint("mallory", Duration::from_secs(60));
    let request = authed(
        hubbub_proto::v1::ConnectRequest {
            device_id: "d".into(),
            client_info: String::new(),
        },
        Some(&forged),
    );
    let err = client.connect(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("signature"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_above_the_configured_limit_are_refused() {
    let sandbox = support::start(1, |config| config.max_room_message_bytes = 64).await;
    let mut user = Viewer::connect(&sandbox, 0, Some("u")).await;
    user.join("r").await;
    user.send_comment("r", &"x".repeat(64))
        .await
        .expect("at the limit is fine");
    let err = user.send_comment("r", &"x".repeat(65)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("limit is 64"), "{}", err.message());

    let err = user.send_comment("r", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut request = SendRoomMessageRequest {
        session_id: user.session_id.clone(),
        room_id: "r".into(),
        body: b"x".to_vec().into(),
        kind: RoomMessageKind::System as i32,
    };
    let err = user
        .client
        .send_room_message(authed(request.clone(), user.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "clients may not send system messages"
    );
    request.room_id = "bad room!".into();
    request.kind = RoomMessageKind::Comment as i32;
    let err = user
        .client
        .send_room_message(authed(request, user.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_session_ids_are_refused() {
    let sandbox = two_gateways().await;
    let mut alice = Viewer::connect(&sandbox, 0, Some("alice")).await;
    let mut mallory = Viewer::connect(&sandbox, 0, Some("mallory")).await;
    alice.join("r").await;

    let forged = [
        alice.session_id.clone(),    // someone else's session
        format!("gw-0~{:032x}", 42), // well-formed, never issued
        "gw-9~0000".to_owned(),      // a gateway that does not exist
        "nonsense".to_owned(),       // not a session id at all
    ];
    for session_id in forged {
        let join = JoinRoomRequest {
            session_id: session_id.clone(),
            room_id: "r".into(),
        };
        let err = mallory
            .client
            .join_room(authed(join, mallory.token.as_deref()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "join with {session_id}: {err:?}");

        let send = SendRoomMessageRequest {
            session_id: session_id.clone(),
            room_id: "r".into(),
            body: b"spoof".to_vec().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        let err = mallory
            .client
            .send_room_message(authed(send, mallory.token.as_deref()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "send with {session_id}: {err:?}");
    }
    // Alice's session through the other gateway: forwarded to its owner, still checked there.
    let mut via_other = sandbox.client(1).await;
    let join = JoinRoomRequest {
        session_id: alice.session_id.clone(),
        room_id: "r".into(),
    };
    let err = via_other
        .join_room(authed(join.clone(), mallory.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    via_other
        .join_room(authed(join, alice.token.as_deref()))
        .await
        .expect("forwarded to the owning gateway");
    assert!(
        alice.room_batch_within(Duration::from_millis(200)).await.is_none(),
        "nothing was sent by mallory"
    );
}

async fn a_draining_gateway_tells_its_clients_to_reconnect_and_ends_their_streams(over: ConnectOver) {
    let sandbox = two_gateways_over(over).await;
    let mut viewer = Viewer::connect(&sandbox, 0, Some("v")).await;
    viewer.join("r").await;
    sandbox.gateway_shutdowns[0].cancel();
    loop {
        match next_event(&mut viewer.events).await {
            Some(Event::Reconnect(reconnect)) => {
                assert_eq!(reconnect.reason, "draining");
                break;
            }
            Some(Event::Heartbeat(_)) => {}
            other => panic!("expected Reconnect, got {other:?}"),
        }
    }
    assert!(
        next_event(&mut viewer.events).await.is_none(),
        "the stream ends after Reconnect"
    );
    // The other gateway still serves.
    let mut other = Viewer::connect(&sandbox, 1, Some("w")).await;
    other.join("r").await;
}

async fn heartbeats_arrive_on_the_configured_interval(over: ConnectOver) {
    let mut sandbox = support::start(1, |config| config.heartbeat_interval_ms = 100).await;
    sandbox.connect_over = over;
    let mut viewer = Viewer::connect(&sandbox, 0, None).await;
    let started = tokio::time::Instant::now();
    let mut beats = 0;
    while beats < 3 {
        if let Some(Event::Heartbeat(beat)) = next_event(&mut viewer.events).await {
            assert!(beat.server_time_ms > 0);
            beats += 1;
        }
    }
    // Two intervals between the first beat and the third; the first may
    // come right after Welcome, and the timer fires within a millisecond
    // of each tick, either way.
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "three beats take two intervals at least"
    );
}

async fn viewers_keep_receiving_after_the_room_instance_restarts(over: ConnectOver) {
    let mut sandbox = two_gateways_over(over).await;
    let mut viewer = Viewer::connect(&sandbox, 1, Some("viewer")).await;
    let mut sender = Viewer::connect(&sandbox, 0, Some("sender")).await;
    viewer.join("r").await;
    sender.join("r").await;
    let last_before = sender.send_comment("r", "before").await.unwrap();
    assert_eq!(viewer.room_messages(1).await[0].body.as_ref(), b"before");

    sandbox.restart_room().await;
    // The gateways re-attach and re-subscribe on their own; the viewer does nothing.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        if sender.send_comment("r", "after").await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the room never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted instance lost its ring: the viewer is told which seqs it
    // may have missed before the new messages arrive, never left guessing.
    let mut gap = None;
    let before_seq = last_before;
    loop {
        match next_event(&mut viewer.events).await {
            Some(Event::RoomGap(announced)) => gap = Some(announced),
            Some(Event::RoomBatch(batch)) if batch.messages.iter().any(|m| m.body.as_ref() == b"after") => {
                let gap = gap.expect("a RoomGap comes before the messages after the hole");
                assert_eq!(gap.room_id, "r");
                assert_eq!(gap.after_seq, before_seq, "the gap starts after the last seq delivered");
                assert!(gap.until_seq > gap.after_seq);
                assert!(
                    batch.messages.iter().all(|m| m.seq > gap.until_seq),
                    "and new seqs come after it"
                );
                break;
            }
            Some(_) => {}
            None => panic!("the stream ended"),
        }
    }
}

async fn a_device_that_goes_away_is_removed_from_its_rooms(over: ConnectOver) {
    let mut sandbox = support::start(1, |_| {}).await;
    sandbox.connect_over = over;
    let mut stays = Viewer::connect(&sandbox, 0, Some("stays")).await;
    let mut goes = Viewer::connect(&sandbox, 0, Some("goes")).await;
    stays.join("r").await;
    assert_eq!(goes.join("r").await.online, 2);
    drop(goes);
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let mut newcomer = Viewer::connect(&sandbox, 0, Some("newcomer")).await;
        let online = newcomer.join("r").await.online;
        if online == 2 {
            break; // stays + newcomer: the vanished device was cleaned up
        }
        assert!(tokio::time::Instant::now() < deadline, "online stuck at {online}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_is_enforced() {
    let sandbox = support::start(1, |config| config.max_connections = 1).await;
    let _first = Viewer::connect(&sandbox, 0, Some("first")).await;
    let mut client = sandbox.client(0).await;
    let request = authed(
        hubbub_proto::v1::ConnectRequest {
            device_id: "d".into(),
            client_info: String::new(),
        },
        Some(&support::token("second")),
    );
    let err = client.connect(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("limit of 1"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_disconnects_leave_no_viewer_behind() {
    let sandbox = support::start(1, |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let viewer = Viewer::connect(&sandbox, 0, Some(&format!("racer-{i}"))).await;
        tasks.push(tokio::spawn(async move {
            let request = authed(
                JoinRoomRequest {
                    session_id: viewer.session_id.clone(),
                    room_id: format!("race-{}", i % 4),
                },
                viewer.token.as_deref(),
            );
            let mut client = viewer.client.clone();
            // The stream goes away while the join is on its way.
            let join = tokio::spawn(async move { client.join_room(request).await });
            tokio::time::sleep(Duration::from_micros(200 * (i % 5))).await;
            drop(viewer.events);
            let _ = join.await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every room emptied: the gateway holds none of them any more.
    let metrics = support::scrape(sandbox.gateways_internal[0]).await;
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let mut metrics = metrics;
    // Both drain as the resets arrive: eventually, not at once.
    while !(metrics.contains("hubbub_gateway_rooms 0") && metrics.contains("hubbub_gateway_connections 0")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms left with orphan viewers, or streams never closed: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = support::scrape(sandbox.gateways_internal[0]).await;
    }
}
