//! Gifts end to end, through the gateway, over real gRPC, on real
//! PostgreSQL (`DATABASE_URL`, which `scripts/test.sh` provides): the
//! platform's backend names a room's host; a viewer's gift is durable when
//! SendGift answers, reaches every viewer of the room in its high lane with
//! the record inline, and a retry is answered with the original; PullGifts
//! (also for guests) returns the ledger; refusals are precise.

mod support;

use hubbub_kit::service_auth::{Credentials, InternalKey, Role};
use hubbub_proto::v1::{
    CoStreamAnswer, GetMyGiftTotalsRequest, GetRoomGiftTotalsRequest, GiftKind, GiftRecord, GiftSetRoomHostRequest,
    GiftTotal, ListPendingCoStreamsRequest, PullGiftsRequest, RoomMessageKind, SendGiftRequest,
    gift_client::GiftClient,
};
use prost::Message;
use support::{Sandbox, Viewer, authed};
use svc_gift::GiftConfig;
use svc_gift::config::GiftStoreConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL database for the gift tests: run scripts/test.sh, which starts one",
    )
}

/// One gateway and a room (from the sandbox), and the gift role on
/// PostgreSQL publishing through that room.
async fn start() -> (Sandbox, std::net::SocketAddr) {
    let (sandbox, gift, _, _) = start_restartable().await;
    (sandbox, gift)
}

/// The sandbox, the gift role's address, presence's, and the token that
/// stops the gift role alone.
async fn start_restartable() -> (Sandbox, std::net::SocketAddr, std::net::SocketAddr, CancellationToken) {
    start_with(|_| {}).await
}

/// [`start_restartable`] with the gift role's settings changed by `tweak`.
async fn start_with(
    tweak: impl Fn(&mut GiftConfig),
) -> (Sandbox, std::net::SocketAddr, std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gift = listener.local_addr().unwrap();
    let presence_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let presence = presence_listener.local_addr().unwrap();
    let sandbox = support::start(1, |config| {
        config.gift_address = Some(format!("http://{gift}"));
        config.presence_address = Some(format!("http://{presence}"));
        config.presence_report_ms = 50;
        // The bursts below are one user's.
        config.gift_calls_per_sec = 1e6;
        config.gift_calls_burst = 1e6;
    })
    .await;
    support::serve_presence(presence_listener, sandbox.shutdown.clone());
    let stop = sandbox.shutdown.child_token();
    serve_gift(
        listener,
        &format!("http://{}", sandbox.room),
        presence,
        stop.clone(),
        tweak,
    );
    (sandbox, gift, presence, stop)
}

/// The gift role on `listener` on PostgreSQL, publishing through `room`,
/// until `shutdown`.
fn serve_gift(
    listener: TcpListener,
    room: &str,
    presence: std::net::SocketAddr,
    shutdown: CancellationToken,
    tweak: impl Fn(&mut GiftConfig),
) {
    let mut config = GiftConfig {
        listen: listener.local_addr().unwrap(),
        store: GiftStoreConfig {
            database_url: Some(database_url()),
            max_connections: 4,
            ..GiftStoreConfig::default()
        },
        room_instances: vec![room.to_owned()],
        presence_address: Some(format!("http://{presence}")),
        catalogue: [("rose".to_owned(), 10), ("rocket".to_owned(), 500)]
            .into_iter()
            .collect(),
        // Pulls see every commit at once (the windows' lag is the
        // recent-windows suite's business).
        recent_ttl_ms: 0,
        // Every test's gift role shares the database: only the expiry test
        // sweeps (on its own database), or one deployment would expire, and
        // deliver through its own presence, another's requests.
        co_stream_sweep_ms: 24 * 3600 * 1000,
        ..GiftConfig::default()
    };
    tweak(&mut config);
    tokio::spawn(async move {
        if let Err(err) = svc_gift::serve(config, support::options(), listener, shutdown).await {
            panic!("the gift role stopped: {err}");
        }
    });
}

/// A fresh database next to `DATABASE_URL`'s, for a test whose gift role
/// must not see the others' records.
async fn own_database() -> String {
    use sqlx::Connection;
    let url = database_url();
    let name = format!("hbgift_{:x}", rand::random::<u32>());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// The platform's backend, with scope `gift.manage`.
fn backend(gift: std::net::SocketAddr) -> GiftClient<hubbub_kit::channel::TracedChannel> {
    let credentials = Credentials::with_scopes(
        InternalKey::new(support::INTERNAL_KEY),
        Role::Service,
        "backend",
        vec!["gift.manage".to_owned()],
    );
    GiftClient::new(support::internal_channel(gift, &credentials))
}

fn rose(room: &str, key: &str) -> SendGiftRequest {
    SendGiftRequest {
        room_id: room.into(),
        kind: GiftKind::Gift as i32,
        gift_id: "rose".into(),
        count: 3,
        client_key: key.into(),
        payload: b"for you".to_vec().into(),
        ..Default::default()
    }
}

/// The next gift records on `viewer`'s stream, decoded from the room's
/// high lane.
async fn gifts_seen(viewer: &mut Viewer, count: usize) -> Vec<GiftRecord> {
    let mut seen = Vec::new();
    while seen.len() < count {
        for message in viewer.room_messages(1).await {
            if message.kind == RoomMessageKind::Gift as i32 {
                seen.push(GiftRecord::decode(message.body.as_ref()).expect("a gift's body is its record"));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gift_is_durable_reaches_every_viewer_and_is_pulled_back() {
    let (sandbox, gift) = start().await;
    let (room, host, fan) = (unique("live"), unique("host"), unique("fan"));
    let mut fan_viewer = Viewer::connect(&sandbox, 0, Some(&fan)).await;
    let mut guest = Viewer::connect(&sandbox, 0, None).await;
    fan_viewer.join(&room).await;
    guest.join(&room).await;

    // No host yet: a gift without a target has nobody to go to.
    let refused = fan_viewer
        .client
        .send_gift(authed(rose(&room, "k0"), fan_viewer.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // The platform's backend names the host.
    let set = backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.host_user_id, host);

    let sent = fan_viewer
        .client
        .send_gift(authed(rose(&room, "k1"), fan_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    let record = sent.gift.unwrap();
    assert!(!sent.duplicate);
    assert_eq!(
        (record.seq, record.count, record.value),
        (1, 3, 30),
        "priced from the catalogue"
    );
    assert_eq!(record.sender_user_id, fan);
    assert_eq!(record.recipient_user_id, host);
    // Every viewer, the guest and the sender's own device, gets it inline.
    assert_eq!(gifts_seen(&mut guest, 1).await, vec![record.clone()]);
    assert_eq!(gifts_seen(&mut fan_viewer, 1).await, vec![record.clone()]);

    // A retry is the original, published nothing again.
    let again = fan_viewer
        .client
        .send_gift(authed(rose(&room, "k1"), fan_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.gift.unwrap(), record);
    let mut other = rose(&room, "k1");
    other.count = 4;
    let reused = fan_viewer
        .client
        .send_gift(authed(other, fan_viewer.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");

    // A second gift, then the guest pulls the ledger as after a reconnect.
    let mut rocket = rose(&room, "k2");
    rocket.gift_id = "rocket".into();
    rocket.count = 1;
    let second = fan_viewer
        .client
        .send_gift(authed(rocket, fan_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner()
        .gift
        .unwrap();
    assert_eq!((second.seq, second.value), (2, 500));
    let pulled = guest
        .client
        .pull_gifts(authed(
            PullGiftsRequest {
                room_id: room.clone(),
                after_seq: 0,
                limit: 10,
                target_user_id: String::new(),
            },
            guest.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.gifts, vec![record, second]);
    assert_eq!(pulled.last_seq, 2);
    // A joiner learns where the ledger stands (heads are about a second
    // old: the first joins were told 0). Awaited, not timed: a loaded
    // machine refreshes them later.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut late = Viewer::connect(&sandbox, 0, None).await;
        let told = late.join(&room).await.gift_seq;
        if told == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "joiners are still told {told}, not 2"
        );
    }

    // Totals, kept with every commit: the room's (a guest may read them)...
    let totals = guest
        .client
        .get_room_gift_totals(authed(
            GetRoomGiftTotalsRequest {
                room_id: room.clone(),
                top: 5,
            },
            guest.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner();
    let total = |key: &str, count: u64, value: u64| GiftTotal {
        key: key.into(),
        count,
        value,
    };
    assert_eq!(totals.items, vec![total("rocket", 1, 500), total("rose", 3, 30)]);
    assert_eq!(totals.top_senders, vec![total(&fan, 4, 530)]);
    // ...and what the host received, which only the host reads.
    let mut host_viewer = Viewer::connect(&sandbox, 0, Some(&host)).await;
    let mine = host_viewer
        .client
        .get_my_gift_totals(authed(GetMyGiftTotalsRequest {}, host_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.items, totals.items);
    let nothing = fan_viewer
        .client
        .get_my_gift_totals(authed(GetMyGiftTotalsRequest {}, fan_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.items.is_empty());
    let status = guest
        .client
        .get_my_gift_totals(authed(GetMyGiftTotalsRequest {}, guest.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gifts_are_refused_precisely_and_guests_cannot_send() {
    let (sandbox, gift) = start().await;
    let (room, host, fan) = (unique("live"), unique("host"), unique("fan"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    let mut fan_viewer = Viewer::connect(&sandbox, 0, Some(&fan)).await;
    let token = fan_viewer.token.clone();
    let mut unknown = rose(&room, "u1");
    unknown.gift_id = "diamond".into();
    let mut unset = rose(&room, "u2");
    unset.kind = 0;
    let mut to_self = rose(&room, "u3");
    to_self.kind = GiftKind::CoStreamRequest as i32;
    to_self.gift_id.clear();
    to_self.count = 0;
    to_self.target_user_id = fan.clone();
    let mut big = rose(&room, "u4");
    big.payload = vec![0; 5000].into();
    for (request, code, words) in [
        (unknown, Code::InvalidArgument, "catalogue"),
        (unset, Code::InvalidArgument, "kind"),
        (to_self, Code::InvalidArgument, "own sender"),
        (big, Code::ResourceExhausted, "payload"),
        (rose("bad room", "u5"), Code::InvalidArgument, "room_id"),
    ] {
        let status = fan_viewer
            .client
            .send_gift(authed(request, token.as_deref()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(words), "{words}: {status:?}");
    }
    let mut guest = Viewer::connect(&sandbox, 0, None).await;
    let status = guest
        .client
        .send_gift(authed(rose(&room, "g1"), guest.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Hosts are set by the platform's backend (scope gift.manage), not by other roles.
    let status = GiftClient::new(support::internal_channel(
        gift,
        &support::credentials(Role::Group, "group"),
    ))
    .set_room_host(GiftSetRoomHostRequest {
        room_id: room.clone(),
        host_user_id: fan,
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_streaming_request_reaches_only_its_addressee() {
    let (sandbox, gift) = start().await;
    let (room, host, asker, bystander) = (unique("live"), unique("host"), unique("asker"), unique("other"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    // The host has not even joined the room; the others have.
    let mut host_viewer = Viewer::connect(&sandbox, 0, Some(&host)).await;
    let mut asker_viewer = Viewer::connect(&sandbox, 0, Some(&asker)).await;
    let mut other = Viewer::connect(&sandbox, 0, Some(&bystander)).await;
    asker_viewer.join(&room).await;
    other.join(&room).await;
    let request = SendGiftRequest {
        room_id: room.clone(),
        kind: GiftKind::CoStreamRequest as i32,
        target_user_id: host.clone(),
        client_key: "ask".into(),
        payload: b"camera on".to_vec().into(),
        ..Default::default()
    };
    // Presence learns the host's session within a report or two: retry the
    // delivery by sending new requests until one is delivered.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let mut key = 0;
    let record = loop {
        key += 1;
        let sent = asker_viewer
            .client
            .send_gift(authed(
                SendGiftRequest {
                    client_key: format!("ask-{key}"),
                    ..request.clone()
                },
                asker_viewer.token.as_deref(),
            ))
            .await
            .unwrap()
            .into_inner();
        let record = sent.gift.unwrap();
        if let Some(delivered) = host_event(&mut host_viewer).await {
            assert!(delivered.seq <= record.seq, "one of the requests sent");
            break delivered;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host never received a request"
        );
    };
    assert_eq!(record.recipient_user_id, host);
    assert_eq!(record.payload.as_ref(), b"camera on");
    // The bystander was told nothing of it.
    assert_eq!(
        host_event(&mut other).await,
        None,
        "a request reaches its addressee only"
    );
    // A gift afterwards: the bystander's room stream carries the gift and
    // nothing of the requests before it.
    let after = asker_viewer
        .client
        .send_gift(authed(rose(&room, "after"), asker_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner()
        .gift
        .unwrap();
    let mut kinds = Vec::new();
    loop {
        let batch = other.room_messages(1).await;
        kinds.extend(batch.iter().map(|m| m.kind));
        if batch.iter().any(|m| m.kind == RoomMessageKind::Gift as i32) {
            break;
        }
    }
    assert!(
        !kinds.contains(&(RoomMessageKind::CoStreamRequest as i32)),
        "a request never travels in the room: {kinds:?}"
    );
    // Pulling the ledger, the bystander sees the requests' seqs only; the
    // host sees them whole.
    let pull = |target: &str| PullGiftsRequest {
        room_id: room.clone(),
        after_seq: 0,
        limit: 100,
        target_user_id: target.into(),
    };
    let seen = other
        .client
        .pull_gifts(authed(pull(""), other.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.gifts.last().unwrap(), &after);
    for r in &seen.gifts[..seen.gifts.len() - 1] {
        assert_eq!(r.kind, GiftKind::CoStreamRequest as i32);
        assert!(
            r.sender_user_id.is_empty() && r.payload.is_empty() && r.recipient_user_id.is_empty(),
            "{r:?}"
        );
    }
    let pending = host_viewer
        .client
        .pull_gifts(authed(pull(&host), host_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner();
    // What the host received: every request whole, and the gift (to the
    // host, as it had no target).
    let requests: Vec<&GiftRecord> = pending
        .gifts
        .iter()
        .filter(|r| r.kind == GiftKind::CoStreamRequest as i32)
        .collect();
    assert_eq!(requests.len(), key);
    assert!(
        requests
            .iter()
            .all(|r| r.sender_user_id == asker && r.payload.as_ref() == b"camera on")
    );
    assert_eq!(pending.gifts.last().unwrap(), &after);

    // The host lists what waits for an answer, accepts one, and the asker
    // (only the asker) is told.
    let waiting = host_viewer
        .client
        .list_pending_co_streams(authed(
            ListPendingCoStreamsRequest { room_id: room.clone() },
            host_viewer.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.requests.len(), key);
    let accept = SendGiftRequest {
        room_id: room.clone(),
        kind: GiftKind::CoStreamAnswer as i32,
        client_key: "yes".into(),
        answers_seq: record.seq,
        answer: CoStreamAnswer::Accept as i32,
        ..Default::default()
    };
    let answer = host_viewer
        .client
        .send_gift(authed(accept.clone(), host_viewer.token.as_deref()))
        .await
        .unwrap()
        .into_inner()
        .gift
        .unwrap();
    assert_eq!(
        (answer.recipient_user_id.as_str(), answer.answers_seq),
        (asker.as_str(), record.seq)
    );
    assert_eq!(host_event(&mut asker_viewer).await, Some(answer.clone()));
    assert_eq!(host_event(&mut other).await, None);
    // The asker may not accept its own request; a second answer is refused.
    let fresh = asker_viewer
        .client
        .send_gift(authed(
            SendGiftRequest {
                client_key: "ask-fresh".into(),
                ..request.clone()
            },
            asker_viewer.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner()
        .gift
        .unwrap();
    let status = asker_viewer
        .client
        .send_gift(authed(
            SendGiftRequest {
                client_key: "self".into(),
                answers_seq: fresh.seq,
                ..accept.clone()
            },
            asker_viewer.token.as_deref(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = host_viewer
        .client
        .send_gift(authed(
            SendGiftRequest {
                client_key: "again".into(),
                ..accept
            },
            host_viewer.token.as_deref(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}

/// The next gift notify on `viewer`'s stream within a short wait (room
/// batches and other events skipped).
async fn host_event(viewer: &mut Viewer) -> Option<GiftRecord> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    loop {
        let event = tokio::time::timeout_at(deadline, viewer.events.message()).await.ok()?;
        if let Some(hubbub_proto::v1::ServerEvent {
            event: Some(hubbub_proto::v1::server_event::Event::GiftNotify(notify)),
        }) = event.expect("stream error")
        {
            return notify.gift;
        }
    }
}

/// Sends `request` until the gift service answers (it may be restarting):
/// the same client_key makes every retry safe.
async fn send_until_accepted(viewer: &mut Viewer, request: SendGiftRequest) -> GiftRecord {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        match viewer
            .client
            .send_gift(authed(request.clone(), viewer.token.as_deref()))
            .await
        {
            Ok(answer) => return answer.into_inner().gift.unwrap(),
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::Unavailable,
                    "only an outage may refuse: {status:?}"
                );
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the gift service never came back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every gift `viewer` sees on its stream within `wait`.
async fn gifts_within(viewer: &mut Viewer, wait: std::time::Duration) -> Vec<GiftRecord> {
    let mut seen = Vec::new();
    while let Some(batch) = viewer.room_batch_within(wait).await {
        seen.extend(
            batch
                .iter()
                .filter(|m| m.kind == RoomMessageKind::Gift as i32)
                .map(|m| GiftRecord::decode(m.body.as_ref()).unwrap()),
        );
    }
    seen
}

/// What `viewer` pulls after `after`, every page.
async fn pull_after(viewer: &mut Viewer, room: &str, mut after: u64) -> Vec<GiftRecord> {
    let mut all = Vec::new();
    loop {
        let page = viewer
            .client
            .pull_gifts(authed(
                PullGiftsRequest {
                    room_id: room.into(),
                    after_seq: after,
                    limit: 500,
                    target_user_id: String::new(),
                },
                viewer.token.as_deref(),
            ))
            .await
            .unwrap()
            .into_inner();
        after = page.gifts.last().map_or(after, |g| g.seq);
        all.extend(page.gifts);
        if !page.has_more {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_a_restart_and_lost_notifies_loses_no_acknowledged_gift() {
    let (sandbox, gift, presence, mut stop) = start_restartable().await;
    let room_address = format!("http://{}", sandbox.room);
    let (room, host, fan) = (unique("live"), unique("host"), unique("fan"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    let mut sender = Viewer::connect(&sandbox, 0, Some(&fan)).await;
    let mut watcher = Viewer::connect(&sandbox, 0, None).await;
    watcher.join(&room).await;
    let mut acknowledged = Vec::new();
    let mut seen = Vec::new();
    let restart = |listener: TcpListener, room_at: &str, stop: &mut CancellationToken| {
        *stop = sandbox.shutdown.child_token();
        serve_gift(listener, room_at, presence, stop.clone(), |_| {});
    };
    let rebind = || async {
        loop {
            if let Ok(listener) = TcpListener::bind(gift).await {
                return listener;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    for i in 0..60 {
        if i == 20 {
            // The gift service stops mid-burst and comes back on the same
            // port, publishing to nowhere: the next gifts are durable but
            // never announced (notifies dropped on purpose).
            stop.cancel();
            let listener = rebind().await;
            restart(listener, "http://127.0.0.1:9", &mut stop);
        }
        if i == 30 {
            // Announced again.
            stop.cancel();
            let listener = rebind().await;
            restart(listener, &room_address, &mut stop);
        }
        if i == 40 {
            // The watcher's stream drops mid-burst; it comes back at 50.
            seen.extend(gifts_within(&mut watcher, std::time::Duration::from_millis(300)).await);
            drop(watcher);
            watcher = Viewer::connect(&sandbox, 0, None).await;
        }
        if i == 50 {
            watcher.join(&room).await;
        }
        let mut request = rose(&room, &format!("burst-{i}"));
        request.count = 1;
        acknowledged.push(send_until_accepted(&mut sender, request).await.seq);
    }
    assert_eq!(
        acknowledged,
        (1..=60).collect::<Vec<u64>>(),
        "one gap-free sequence across restarts"
    );
    seen.extend(gifts_within(&mut watcher, std::time::Duration::from_millis(500)).await);
    // The watcher saw holes (dropped notifies, its own absence) and
    // repairs each by pulling exactly the range after the last seq it holds.
    seen.sort_by_key(|g| g.seq);
    seen.dedup_by_key(|g| g.seq);
    let mut have: Vec<u64> = seen.iter().map(|g| g.seq).collect();
    assert!(have.len() < 60, "the test drops notifies: {have:?}");
    let mut repaired = Vec::new();
    let mut last = 0;
    for &seq in have.iter().chain(std::iter::once(&61)) {
        if seq > last + 1 {
            let gap: Vec<u64> = pull_after(&mut watcher, &room, last)
                .await
                .into_iter()
                .map(|g| g.seq)
                .take_while(|s| *s < seq)
                .collect();
            assert_eq!(gap, ((last + 1)..seq).collect::<Vec<u64>>(), "the range after {last}");
            repaired.extend(gap);
        }
        last = seq;
    }
    have.extend(repaired);
    have.sort_unstable();
    assert_eq!(have, acknowledged, "every acknowledged gift, once");
}

/// The role credential (no `Bearer`) `credentials` present to the gift service.
fn role_token(credentials: &Credentials) -> String {
    let header = credentials.header_for("hubbub.v1.Gift");
    header.to_str().unwrap().trim_start_matches("Bearer ").to_owned()
}

/// A batch item from `gateway` for `user`, with the credential `credential`.
fn item(room: &str, key: &str, user: &str, credential: String) -> hubbub_proto::v1::GiftSendGiftsItem {
    let send = rose(room, key);
    hubbub_proto::v1::GiftSendGiftsItem {
        gift: Some(hubbub_proto::v1::GiftSendGiftRequest {
            room_id: send.room_id,
            sender_user_id: user.into(),
            kind: send.kind,
            gift_id: send.gift_id,
            count: send.count,
            client_key: send.client_key,
            payload: send.payload,
            ..Default::default()
        }),
        credential,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_sends_takes_each_sender_from_its_own_credential() {
    use hubbub_kit::auth::Identity;
    use hubbub_proto::v1::GiftSendGiftsRequest;
    let (_sandbox, gift) = start().await;
    let (room, host, fan, other) = (unique("live"), unique("host"), unique("fan"), unique("other"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    let gateway = support::credentials(Role::Gateway, "gateway-0");
    let elsewhere = support::credentials(Role::Gateway, "gateway-1");
    let group = support::credentials(Role::Group, "group");
    let send = "/hubbub.v1.Gift/SendGift";
    let fan_id = Identity::User(fan.clone());
    let items = vec![
        item(&room, "b1", &fan, gateway.token_acting(send, &fan_id)),
        // Names another sender than its credential.
        item(&room, "b2", &other, gateway.token_acting(send, &fan_id)),
        // Minted by another gateway than the one sending the batch.
        item(&room, "b3", &fan, elsewhere.token_acting(send, &fan_id)),
        // For another method.
        item(
            &room,
            "b4",
            &fan,
            gateway.token_acting("/hubbub.v1.Gift/PullGifts", &fan_id),
        ),
        // Another role's, and a guest's.
        item(&room, "b5", &fan, group.token_acting(send, &fan_id)),
        item(
            &room,
            "b6",
            &fan,
            gateway.token_acting(send, &Identity::Guest(fan.clone())),
        ),
        // The gateway's own role credential acts for nobody; a tampered one; none.
        item(&room, "b7", &fan, role_token(&gateway)),
        item(
            &room,
            "b7",
            &fan,
            gateway.token_acting(send, &fan_id).replacen('.', "", 1),
        ),
        item(&room, "b8", &fan, String::new()),
        // The same key again in the same batch: the original.
        item(&room, "b1", &fan, gateway.token_acting(send, &fan_id)),
    ];
    let mut client = GiftClient::new(support::internal_channel(gift, &gateway));
    let outcomes = client
        .send_gifts(GiftSendGiftsRequest { items })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert_eq!(outcomes.len(), 10);
    let first = outcomes[0]
        .sent
        .as_ref()
        .expect("the first item is sent")
        .gift
        .clone()
        .unwrap();
    assert_eq!(
        (first.sender_user_id.as_str(), first.recipient_user_id.as_str()),
        (fan.as_str(), host.as_str())
    );
    for (index, outcome) in outcomes.iter().enumerate().take(9).skip(1) {
        assert_eq!(outcome.code, Code::PermissionDenied as i32, "item {index}: {outcome:?}");
        assert!(outcome.sent.is_none(), "item {index}");
    }
    assert!(outcomes[1].message.contains("sender_user_id"), "{:?}", outcomes[1]);
    assert!(outcomes[2].message.contains("gateway that sent"), "{:?}", outcomes[2]);
    let again = outcomes[9].sent.as_ref().expect("the repeat is answered");
    assert!(
        again.duplicate && again.gift.as_ref().unwrap().seq == first.seq,
        "{again:?}"
    );
    // Only the one gift was recorded.
    let page = backend(gift)
        .pull_gifts(hubbub_proto::v1::GiftPullGiftsRequest {
            room_id: room.clone(),
            ..Default::default()
        })
        .await;
    // The platform's gift.manage backend may not read; a batch needs items, and only gateways batch.
    assert_eq!(page.unwrap_err().code(), Code::PermissionDenied);
    let status = client
        .send_gifts(GiftSendGiftsRequest { items: Vec::new() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = GiftClient::new(support::internal_channel(gift, &group))
        .send_gifts(GiftSendGiftsRequest {
            items: vec![item(&room, "b9", &fan, gateway.token_acting(send, &fan_id))],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let totals = client
        .get_room_head(hubbub_proto::v1::GiftGetRoomHeadRequest { room_id: room })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(totals.last_seq, first.seq, "one record in the room");
}

/// One page of `viewer`'s pull of `room` after `after`, of `target` when set.
async fn pull_page(viewer: &mut Viewer, room: &str, after: u64, target: &str) -> hubbub_proto::v1::PullGiftsResponse {
    viewer
        .client
        .pull_gifts(authed(
            PullGiftsRequest {
                room_id: room.into(),
                after_seq: after,
                limit: 500,
                target_user_id: target.into(),
            },
            viewer.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_pull_within_the_public_window_and_the_streamer_keeps_every_gift() {
    let (sandbox, gift, _, _) = start_with(|config| config.public_window_records = 3).await;
    let (room, host, fan) = (unique("live"), unique("host"), unique("fan"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    let mut sender = Viewer::connect(&sandbox, 0, Some(&fan)).await;
    for i in 0..5 {
        send_until_accepted(&mut sender, rose(&room, &format!("w{i}"))).await;
    }
    let seqs = |page: &hubbub_proto::v1::PullGiftsResponse| page.gifts.iter().map(|g| g.seq).collect::<Vec<_>>();
    // A guest below the window gets its last 3 records and is told where it starts.
    let mut guest = Viewer::connect(&sandbox, 0, None).await;
    let page = pull_page(&mut guest, &room, 0, "").await;
    assert_eq!(
        (seqs(&page), page.window_start_seq, page.last_seq),
        (vec![3, 4, 5], 2, 5)
    );
    // Within the window nothing is said.
    let page = pull_page(&mut guest, &room, 3, "").await;
    assert_eq!((seqs(&page), page.window_start_seq), (vec![4, 5], 0));
    // Someone else's gifts received: the window too.
    let page = pull_page(&mut sender, &room, 0, &host).await;
    assert_eq!((seqs(&page), page.window_start_seq), (vec![3, 4, 5], 2));
    // The streamer's own history is whole, and so is the backend's ledger.
    let mut streamer = Viewer::connect(&sandbox, 0, Some(&host)).await;
    let page = pull_page(&mut streamer, &room, 0, &host).await;
    assert_eq!((seqs(&page), page.window_start_seq), (vec![1, 2, 3, 4, 5], 0));
    let reader = Credentials::with_scopes(
        InternalKey::new(support::INTERNAL_KEY),
        Role::Service,
        "ledger-reader",
        vec!["gift.read".to_owned()],
    );
    let page = GiftClient::new(support::internal_channel(gift, &reader))
        .pull_gifts(hubbub_proto::v1::GiftPullGiftsRequest {
            room_id: room.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            page.gifts.iter().map(|g| g.seq).collect::<Vec<_>>(),
            page.window_start_seq
        ),
        (vec![1, 2, 3, 4, 5], 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_expires_and_its_requester_is_told() {
    let own = own_database().await;
    let url = own.clone();
    let (sandbox, gift, _, _) = start_with(move |config| {
        config.co_stream_ttl_secs = 1;
        config.co_stream_sweep_ms = 100;
        config.store.database_url = Some(url.clone());
    })
    .await;
    let (room, host, asker) = (unique("live"), unique("host"), unique("asker"));
    backend(gift)
        .set_room_host(GiftSetRoomHostRequest {
            room_id: room.clone(),
            host_user_id: host.clone(),
        })
        .await
        .unwrap();
    let mut asker_viewer = Viewer::connect(&sandbox, 0, Some(&asker)).await;
    let mut host_viewer = Viewer::connect(&sandbox, 0, Some(&host)).await;
    let ask = SendGiftRequest {
        room_id: room.clone(),
        kind: GiftKind::CoStreamRequest as i32,
        target_user_id: host.clone(),
        client_key: "ask".into(),
        ..Default::default()
    };
    let request = send_until_accepted(&mut asker_viewer, ask).await;
    // Only the ledger writes expiries, and its keys are its own.
    let mut forged = SendGiftRequest {
        room_id: room.clone(),
        kind: GiftKind::CoStreamAnswer as i32,
        client_key: "forged".into(),
        answers_seq: request.seq,
        answer: CoStreamAnswer::Expired as i32,
        ..Default::default()
    };
    let mut reserved = forged.clone();
    reserved.answer = CoStreamAnswer::Decline as i32;
    reserved.client_key = "ledger:expired:1".into();
    for attempt in [forged.clone(), reserved] {
        let status = host_viewer
            .client
            .send_gift(authed(attempt, host_viewer.token.as_deref()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    // Past its time, the requester gets the ledger's expiry, in the host's name.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let expiry = loop {
        if let Some(record) = host_event(&mut asker_viewer).await
            && record.answers_seq == request.seq
        {
            break record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expiry reached the requester"
        );
    };
    assert_eq!(
        (
            expiry.kind,
            expiry.answer,
            expiry.sender_user_id.as_str(),
            expiry.recipient_user_id.as_str()
        ),
        (
            GiftKind::CoStreamAnswer as i32,
            CoStreamAnswer::Expired as i32,
            host.as_str(),
            asker.as_str()
        )
    );
    // It is the request's one answer: nothing pends, a late accept is refused.
    let pending = host_viewer
        .client
        .list_pending_co_streams(authed(
            ListPendingCoStreamsRequest { room_id: room.clone() },
            host_viewer.token.as_deref(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(pending.requests.is_empty(), "{pending:?}");
    forged.answer = CoStreamAnswer::Accept as i32;
    forged.client_key = "late".into();
    let status = host_viewer
        .client
        .send_gift(authed(forged, host_viewer.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("already answered"), "{status:?}");
    sandbox.shutdown.cancel();
    drop_database(&own).await;
}

async fn drop_database(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit_once('/').unwrap().1;
    let mut admin = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gift_service_that_refuses_the_batch_is_the_servers_fault_not_the_clients() {
    // The gateway's gift address points at a role that does not serve Gift
    // (as an older gift role would not serve SendGifts): UNIMPLEMENTED there.
    let other = support::start(1, |_| {}).await;
    let not_gift = other.room;
    let sandbox = support::start(1, |config| {
        config.gift_address = Some(format!("http://{not_gift}"));
    })
    .await;
    let mut fan = Viewer::connect(&sandbox, 0, Some(&unique("fan"))).await;
    let status = fan
        .client
        .send_gift(authed(rose(&unique("live"), "k"), fan.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("could not take"), "{status:?}");
}
