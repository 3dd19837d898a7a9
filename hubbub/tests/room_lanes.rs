//! Lanes and limits over real gRPC: high priority always arrives, in order
//! and without waiting for the batch window, while comments above a room's
//! cap are sampled; users and rooms over their publish limits are refused
//! with a retry hint.

mod support;

use hubbub_kit::service_auth::{Credentials, Role};
use hubbub_proto::v1::{RoomMessageKind, RoomPublishRequest, room_client::RoomClient};
use std::time::{Duration, Instant};
use support::Viewer;
use tonic::{Code, Request};

/// A publish as the role that may send `kind` would make it: gifts from
/// the gift service, comments from a gateway, both for a user.
fn publish(room_id: &str, kind: RoomMessageKind, body: String) -> Request<RoomPublishRequest> {
    let role = match kind {
        RoomMessageKind::Gift => Role::Gift,
        _ => Role::Gateway,
    };
    let credentials: Credentials = support::credentials(role, "gw-0");
    support::acting(
        &credentials,
        "backend",
        "/hubbub.v1.Room/Publish",
        RoomPublishRequest {
            room_id: room_id.into(),
            kind: kind as i32,
            body: body.into_bytes().into(),
        },
    )
}

fn room_client(sandbox: &support::Sandbox) -> RoomClient<hubbub_kit::channel::TracedChannel> {
    RoomClient::new(support::internal_channel(
        sandbox.room,
        &support::credentials(Role::Gateway, "gw-0"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_arrives_in_full_and_in_order_while_comments_are_sampled() {
    let sandbox = support::start(1, |_| {}).await;
    let mut viewer = Viewer::connect(&sandbox, 0, Some("viewer")).await;
    viewer.join("show").await;
    let mut room = room_client(&sandbox);

    // 600 comments against a cap of 50/s (burst 50), with 30 gifts among them.
    let mut gifts = Vec::new();
    for i in 0..600 {
        let kind = if i % 20 == 0 {
            RoomMessageKind::Gift
        } else {
            RoomMessageKind::Comment
        };
        let seq = room
            .publish(publish("show", kind, format!("{i}")))
            .await
            .unwrap()
            .into_inner()
            .seq;
        if kind == RoomMessageKind::Gift {
            gifts.push(seq);
        }
    }
    let mut got_gifts = Vec::new();
    let mut comments = 0;
    while got_gifts.len() < gifts.len() {
        let batch = viewer
            .room_batch_within(support::PATIENCE)
            .await
            .expect("gifts keep arriving");
        for message in batch {
            match RoomMessageKind::try_from(message.kind).unwrap() {
                RoomMessageKind::Gift => got_gifts.push(message.seq),
                _ => comments += 1,
            }
        }
    }
    assert_eq!(got_gifts, gifts, "every gift, in order");
    assert!(
        comments < 200,
        "comments above the cap were sampled: {comments} of 570 delivered"
    );
    assert!(comments >= 40, "comments up to the cap still flow: {comments}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gift_does_not_wait_for_the_batch_window() {
    let sandbox = support::start_with_room(
        1,
        |_| {},
        |room| {
            room.batch_window_ms = 300;
            room.high_window_ms = 10;
        },
    )
    .await;
    let mut viewer = Viewer::connect(&sandbox, 0, Some("viewer")).await;
    viewer.join("show").await;
    let mut room = room_client(&sandbox);
    // Warm the path, then time a lone gift from publish to arrival.
    room.publish(publish("show", RoomMessageKind::Gift, "warm".into()))
        .await
        .unwrap();
    viewer.room_batch_within(support::PATIENCE).await.unwrap();
    let mut fastest = Duration::MAX;
    for i in 0..5 {
        let started = Instant::now();
        room.publish(publish("show", RoomMessageKind::Gift, format!("g{i}")))
            .await
            .unwrap();
        viewer.room_batch_within(support::PATIENCE).await.unwrap();
        fastest = fastest.min(started.elapsed());
    }
    // The batch window is 300 ms; a gift that waited for it could never beat that.
    assert!(fastest < Duration::from_millis(200), "fastest gift took {fastest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_publish_rate_is_refused_with_a_retry_hint() {
    let sandbox = support::start(1, |config| {
        config.user_publish_per_sec = 1.0;
        config.user_publish_burst = 2.0;
    })
    .await;
    let mut user = Viewer::connect(&sandbox, 0, Some("chatty")).await;
    user.join("r").await;
    let mut results = Vec::new();
    for i in 0..3 {
        results.push(user.send_comment("r", &format!("{i}")).await);
    }
    assert!(results[0].is_ok() && results[1].is_ok(), "the burst passes");
    let err = results[2].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let retry: u64 = err
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&retry), "retry hint {retry} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_over_its_publish_cap_refuses_comments_but_not_gifts() {
    let sandbox = support::start_with_room(1, |_| {}, |room| room.limits.publish_cap_per_sec = 3.0).await;
    let mut room = room_client(&sandbox);
    for i in 0..3 {
        room.publish(publish("capped", RoomMessageKind::Comment, format!("{i}")))
            .await
            .unwrap();
    }
    let err = room
        .publish(publish("capped", RoomMessageKind::Comment, "over".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("publish cap of 3/s"), "{}", err.message());
    assert!(err.metadata().get("retry-after-ms").is_some());
    room.publish(publish("capped", RoomMessageKind::Gift, "gift".into()))
        .await
        .expect("high priority is exempt");
    room.publish(publish("other", RoomMessageKind::Comment, "x".into()))
        .await
        .expect("other rooms are not affected");
}

/// The room's count of `method` calls (`/PublishMany`), from its `/metrics`.
async fn room_calls(sandbox: &support::Sandbox, method: &str) -> u64 {
    support::scrape(sandbox.room)
        .await
        .lines()
        .filter(|line| line.starts_with("hubbub_grpc_requests_total") && line.contains(&format!("{method}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_messages_reach_the_room_in_batches_each_as_its_sender_in_order() {
    let sandbox = support::start_with_room(
        1,
        |config| {
            config.room_publish_batches_in_flight = 1;
            config.user_publish_per_sec = 1000.0;
            config.user_publish_burst = 1000.0;
        },
        // Every comment delivered, none sampled.
        |room| room.limits.delivery_cap_per_sec = 1e9,
    )
    .await;
    let mut viewer = Viewer::connect(&sandbox, 0, Some("viewer")).await;
    viewer.join("busy").await;
    const USERS: usize = 8;
    const EACH: usize = 10;
    let mut senders = Vec::new();
    for u in 0..USERS {
        let mut user = Viewer::connect(&sandbox, 0, Some(&format!("user-{u}"))).await;
        user.join("busy").await;
        senders.push(tokio::spawn(async move {
            // The whole viewer, stream included, lives as long as the task.
            let mut user = user;
            let mut seqs = Vec::new();
            for i in 0..EACH {
                seqs.push(user.send_comment("busy", &format!("user-{u} {i}")).await.unwrap());
            }
            seqs
        }));
    }
    let mut all_seqs = Vec::new();
    for sender in senders {
        let seqs = sender.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one user's seqs rise: {seqs:?}");
        all_seqs.extend(seqs);
    }
    all_seqs.sort_unstable();
    all_seqs.dedup();
    assert_eq!(all_seqs.len(), USERS * EACH, "every message has its own seq");

    // Every message arrives, from its own sender, in each sender's order.
    let got = viewer.room_messages(USERS * EACH).await;
    for u in 0..USERS {
        let sender = format!("user-{u}");
        let bodies: Vec<String> = got
            .iter()
            .filter(|m| m.sender_user_id == sender)
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{sender} {i}")).collect();
        assert_eq!(bodies, expected);
    }
    // They travelled in batches: fewer calls than messages, none unary.
    let batches = room_calls(&sandbox, "/PublishMany").await;
    assert!(
        (1..(USERS * EACH) as u64).contains(&batches),
        "{batches} PublishMany calls carried {} messages",
        USERS * EACH
    );
    assert_eq!(room_calls(&sandbox, "/Publish").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_over_its_cap_answers_a_clients_message_with_a_retry_hint_through_the_batch() {
    let sandbox = support::start_with_room(1, |_| {}, |room| room.limits.publish_cap_per_sec = 3.0).await;
    let mut user = Viewer::connect(&sandbox, 0, Some("chatty")).await;
    user.join("capped").await;
    let mut codes = Vec::new();
    let mut hint = None;
    for i in 0..5 {
        match user.send_comment("capped", &format!("{i}")).await {
            Ok(_) => codes.push(Code::Ok),
            Err(status) => {
                codes.push(status.code());
                hint = hint.or_else(|| status.metadata().get("retry-after-ms").cloned());
            }
        }
    }
    assert_eq!(codes[..3], [Code::Ok; 3], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == Code::ResourceExhausted), "{codes:?}");
    let retry: u64 = hint.expect("a retry hint").to_str().unwrap().parse().unwrap();
    assert!((1..=1000).contains(&retry), "retry hint {retry} ms");
}
