//! One conformance suite for every `PresenceStore` backend: the in-memory
//! one and Redis, for real (`REDIS_URL`, which `scripts/test.sh` provides
//! by starting a throwaway Redis). Each Redis test uses its own key prefix,
//! so tests run in parallel against one server.

use std::time::Duration;
use svc_presence::store::{
    Applied, GatewayReport, PresenceStore, RoomReport, SessionEntry, memory::MemoryPresence, redis::RedisPresence,
};

fn redis() -> RedisPresence {
    let url = std::env::var("REDIS_URL")
        .expect("REDIS_URL must point at a Redis for the conformance suite: run scripts/test.sh, which starts one");
    RedisPresence::new(&url, &format!("hbtest{:016x}", rand::random::<u64>())).unwrap()
}

fn report(gateway: &str, seq: u64, full: bool) -> GatewayReport {
    GatewayReport {
        gateway_id: gateway.into(),
        address: format!("http://{gateway}:7700"),
        report_seq: seq,
        full,
        sessions_added: Vec::new(),
        sessions_removed: Vec::new(),
        rooms: Vec::new(),
        ttl: Duration::from_secs(30),
    }
}

fn room(room_id: &str, online: u64) -> RoomReport {
    RoomReport {
        room_id: room_id.into(),
        online,
        new_viewers: Vec::new(),
    }
}

fn session(gateway: &str, user: &str, device: &str) -> SessionEntry {
    SessionEntry {
        session_id: format!("{gateway}~{user}-{device}"),
        user_id: user.into(),
        device_id: device.into(),
        connected_at_ms: 1_700_000_000_000,
    }
}

fn ids(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn online<S: PresenceStore>(store: &S, rooms: &[&str]) -> Vec<u64> {
    store
        .room_counts(&ids(rooms))
        .await
        .unwrap()
        .iter()
        .map(|c| c.online)
        .collect()
}

async fn counts_add_up_over_gateways_and_follow_each_report<S: PresenceStore>(store: S) {
    let mut a = report("gw-a", 1, true);
    a.rooms = vec![room("r1", 3), room("r2", 1)];
    let mut b = report("gw-b", 7, true);
    b.rooms = vec![room("r1", 2)];
    assert!(matches!(store.report(&a).await.unwrap(), Applied::Yes { .. }));
    assert!(matches!(store.report(&b).await.unwrap(), Applied::Yes { .. }));
    assert_eq!(online(&store, &["r1", "r2", "r3"]).await, vec![5, 1, 0]);

    let mut next = report("gw-a", 2, false);
    next.rooms = vec![room("r1", 1)];
    assert!(matches!(store.report(&next).await.unwrap(), Applied::Yes { .. }));
    assert_eq!(
        online(&store, &["r1", "r2"]).await,
        vec![3, 0],
        "absolute counts replace the last report"
    );
}

async fn a_delta_without_its_predecessor_asks_for_a_full_snapshot<S: PresenceStore>(store: S) {
    assert_eq!(
        store.report(&report("gw", 5, false)).await.unwrap(),
        Applied::NeedFullSnapshot
    );
    assert!(matches!(
        store.report(&report("gw", 5, true)).await.unwrap(),
        Applied::Yes { .. }
    ));
    assert_eq!(
        store.report(&report("gw", 7, false)).await.unwrap(),
        Applied::NeedFullSnapshot,
        "6 was lost"
    );
    assert!(matches!(
        store.report(&report("gw", 6, false)).await.unwrap(),
        Applied::Yes { .. }
    ));
}

async fn many_users_are_located_in_one_call_grouped_by_gateway<S: PresenceStore>(store: S) {
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    for (g, gateway) in ["gw-a", "gw-b"].iter().enumerate() {
        let mut full = report(gateway, 1, true);
        for (i, user) in users.iter().enumerate() {
            if i % 2 == g || i % 10 == 0 {
                full.sessions_added.push(session(gateway, user, "phone"));
            }
        }
        if g == 0 {
            full.sessions_added.push(session(gateway, "user-0", "laptop"));
        }
        store.report(&full).await.unwrap();
    }
    let located = store.locate(&users).await.unwrap();
    assert_eq!(
        located.iter().map(|l| l.gateway_id.as_str()).collect::<Vec<_>>(),
        vec!["gw-a", "gw-b"]
    );
    assert_eq!(located[0].address, "http://gw-a:7700");
    let total: usize = located.iter().map(|l| l.sessions.len()).sum();
    assert_eq!(total, 500 + 50 + 1 + 500 + 50, "every session of every user");
    let user0: Vec<&SessionEntry> = located
        .iter()
        .flat_map(|l| &l.sessions)
        .filter(|s| s.user_id == "user-0")
        .collect();
    assert_eq!(user0.len(), 3, "two devices on gw-a, one on gw-b");

    let mut delta = report("gw-a", 2, false);
    delta.sessions_removed = vec![session("gw-a", "user-0", "phone").session_id];
    delta.sessions_added = vec![session("gw-a", "user-1", "tablet")];
    store.report(&delta).await.unwrap();
    let located = store.locate(&ids(&["user-0", "user-1", "nobody"])).await.unwrap();
    let on_a: Vec<(String, String)> = located[0]
        .sessions
        .iter()
        .map(|s| (s.user_id.clone(), s.device_id.clone()))
        .collect();
    assert_eq!(
        on_a,
        vec![("user-0".into(), "laptop".into()), ("user-1".into(), "tablet".into())]
    );
    assert_eq!(located[0].sessions[0], session("gw-a", "user-0", "laptop"));
}

async fn a_session_in_both_a_snapshot_and_the_next_delta_is_held_once<S: PresenceStore>(store: S) {
    let mut full = report("gw", 1, true);
    full.sessions_added = vec![session("gw", "u", "phone")];
    store.report(&full).await.unwrap();
    let mut delta = report("gw", 2, false);
    delta.sessions_added = vec![session("gw", "u", "phone")];
    store.report(&delta).await.unwrap();
    assert_eq!(store.locate(&ids(&["u"])).await.unwrap()[0].sessions.len(), 1);
}

async fn unique_viewers_are_within_the_error_bound<S: PresenceStore>(store: S) {
    for seq in 1..=10u64 {
        let mut r = report("gw", seq, seq == 1);
        let mut viewers: Vec<String> = (0..2000).map(|i| format!("viewer-{}", (seq - 1) * 2000 + i)).collect();
        viewers.extend((0..100).map(|i| format!("viewer-{i}"))); // seen before: not new uniques
        r.rooms = vec![RoomReport {
            room_id: "show".into(),
            online: 10,
            new_viewers: viewers,
        }];
        store.report(&r).await.unwrap();
    }
    let uniques = store.room_counts(&ids(&["show"])).await.unwrap()[0].unique_viewers;
    let error = (uniques as f64 - 20_000.0).abs() / 20_000.0;
    assert!(
        error < 0.03,
        "20,000 distinct viewers estimated as {uniques} ({:.2}% off)",
        error * 100.0
    );
}

async fn a_gateway_that_stops_reporting_vanishes_after_its_ttl<S: PresenceStore>(store: S) {
    let mut short = report("gone", 1, true);
    short.ttl = Duration::from_millis(300);
    short.rooms = vec![room("r", 4)];
    short.sessions_added = vec![session("gone", "u", "d")];
    store.report(&short).await.unwrap();
    let mut stays = report("stays", 1, true);
    stays.rooms = vec![room("r", 1)];
    store.report(&stays).await.unwrap();
    assert_eq!(online(&store, &["r"]).await, vec![5]);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        online(&store, &["r"]).await,
        vec![1],
        "only the gateway still reporting counts"
    );
    assert!(store.locate(&ids(&["u"])).await.unwrap().is_empty());
    assert_eq!(
        store.report(&report("gone", 2, false)).await.unwrap(),
        Applied::NeedFullSnapshot
    );
}

async fn after_losing_everything_the_next_full_report_restores_it<S: PresenceStore>(
    store: S,
    flush: impl AsyncFnOnce(&S),
) {
    let mut full = report("gw", 1, true);
    full.rooms = vec![room("r", 3)];
    full.sessions_added = vec![session("gw", "u", "d")];
    store.report(&full).await.unwrap();
    flush(&store).await;
    assert_eq!(online(&store, &["r"]).await, vec![0]);
    let mut delta = report("gw", 2, false);
    delta.rooms = vec![room("r", 3)];
    assert_eq!(
        store.report(&delta).await.unwrap(),
        Applied::NeedFullSnapshot,
        "the store lost its state"
    );
    let mut again = report("gw", 3, true);
    again.rooms = vec![room("r", 3)];
    again.sessions_added = vec![session("gw", "u", "d")];
    store.report(&again).await.unwrap();
    assert_eq!(online(&store, &["r"]).await, vec![3]);
    assert_eq!(store.locate(&ids(&["u"])).await.unwrap()[0].sessions.len(), 1);
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::MemoryPresence::new()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::redis()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    counts_add_up_over_gateways_and_follow_each_report,
    a_delta_without_its_predecessor_asks_for_a_full_snapshot,
    many_users_are_located_in_one_call_grouped_by_gateway,
    a_session_in_both_a_snapshot_and_the_next_delta_is_held_once,
    unique_viewers_are_within_the_error_bound,
    a_gateway_that_stops_reporting_vanishes_after_its_ttl,
);

#[tokio::test]
async fn memory_recovers_from_losing_everything() {
    after_losing_everything_the_next_full_report_restores_it(MemoryPresence::new(), async |s: &MemoryPresence| {
        s.flush()
    })
    .await;
}

#[tokio::test]
async fn redis_recovers_from_a_flush() {
    after_losing_everything_the_next_full_report_restores_it(redis(), async |s: &RedisPresence| {
        s.flush().await.unwrap()
    })
    .await;
}
