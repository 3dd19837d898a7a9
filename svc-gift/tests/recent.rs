//! The hot rooms' windows over a real (SQLite) ledger: a storm of pulls
//! after recent seqs costs the store one read per room and refresh, and
//! every answer is what the store itself would give.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use svc_gift::recent::{Recent, RecentSettings};
use svc_gift::store::{
    DueCoStream, GiftStore, ItemTotal, Kind, NewRecord, Page, Record, Room, RoomTotals, Sent, StoreResult,
    rules::Limits, sqlite::SqliteGiftStore,
};

/// The real store, counting the reads that reach it.
struct Counted {
    inner: SqliteGiftStore,
    reads: AtomicUsize,
}

impl GiftStore for Counted {
    async fn commit(&self, records: &[NewRecord]) -> StoreResult<Vec<StoreResult<Sent>>> {
        self.inner.commit(records).await
    }
    async fn pull(&self, room_id: &str, after: u64, limit: u32, recipient: Option<&str>) -> StoreResult<Page> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.pull(room_id, after, limit, recipient).await
    }
    async fn set_host(&self, room_id: &str, host_user_id: &str) -> StoreResult<Room> {
        self.inner.set_host(room_id, host_user_id).await
    }
    async fn room(&self, room_id: &str) -> StoreResult<Room> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.room(room_id).await
    }
    async fn room_totals(&self, room_id: &str, top: u32) -> StoreResult<RoomTotals> {
        self.inner.room_totals(room_id, top).await
    }
    async fn pending(&self, room_id: &str, user_id: &str) -> StoreResult<Vec<Record>> {
        self.inner.pending(room_id, user_id).await
    }
    async fn due_co_streams(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<DueCoStream>> {
        self.inner.due_co_streams(now_ms, limit).await
    }
    async fn recipient_totals(&self, user_id: &str) -> StoreResult<Vec<ItemTotal>> {
        self.inner.recipient_totals(user_id).await
    }
}

fn gift(i: usize) -> NewRecord {
    NewRecord {
        room_id: "hot".into(),
        sender_user_id: format!("fan-{}", i % 7),
        kind: Kind::Gift,
        target_user_id: String::new(),
        gift_id: "rose".into(),
        count: 1,
        unit_value: 1,
        client_key: format!("k{i}"),
        payload: Vec::new(),
        answers_seq: 0,
        answer: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_costs_one_read_per_room_and_answers_what_the_store_would() {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteGiftStore::open(&dir.path().join("gift.sqlite3"), Limits::default())
        .await
        .unwrap();
    inner.set_host("hot", "streamer").await.unwrap();
    let batch: Vec<NewRecord> = (0..300).map(gift).collect();
    inner.commit(&batch).await.unwrap();
    let store = Arc::new(Counted {
        inner,
        reads: AtomicUsize::new(0),
    });
    let settings = RecentSettings {
        rooms: 4,
        records: 256,
        ttl: Duration::from_secs(60),
    };
    let recent = Arc::new(Recent::new(store.clone(), settings));
    // 1,000 viewers back at once, each after the last gift it saw.
    let storm: Vec<_> = (0..1000)
        .map(|v| {
            let recent = recent.clone();
            tokio::spawn(async move {
                let after = 44 + (v as u64 * 7) % 257;
                (after, recent.pull("hot", after, 100).await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for viewer in storm {
        answers.push(viewer.await.unwrap());
    }
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        2,
        "one head and one page for the whole storm"
    );
    for (after, page) in &answers {
        let direct = store.inner.pull("hot", *after, 100, None).await.unwrap();
        assert_eq!(page, &direct, "after {after}");
    }
    // Older than the window: the store answers.
    let before = store.reads.load(Ordering::SeqCst);
    let old = recent.pull("hot", 10, 5).await.unwrap();
    assert_eq!(old.records.first().unwrap().seq, 11);
    assert_eq!(store.reads.load(Ordering::SeqCst), before + 1);
    // What this replica commits joins the window at once.
    let sent = store.commit(&[gift(300)]).await.unwrap().remove(0).unwrap();
    recent.committed(&sent.record);
    let newest = recent.pull("hot", 300, 10).await.unwrap();
    assert_eq!(newest.records, vec![sent.record]);
    assert_eq!(newest.last_seq, 301);
    assert_eq!(store.reads.load(Ordering::SeqCst), before + 1, "served from memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_window_is_read_again_and_rooms_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteGiftStore::open(&dir.path().join("gift.sqlite3"), Limits::default())
        .await
        .unwrap();
    inner.set_host("hot", "streamer").await.unwrap();
    inner.commit(&[gift(0)]).await.unwrap();
    let store = Arc::new(Counted {
        inner,
        reads: AtomicUsize::new(0),
    });
    let settings = RecentSettings {
        rooms: 2,
        records: 16,
        ttl: Duration::from_millis(50),
    };
    let recent = Recent::new(store.clone(), settings);
    assert_eq!(recent.pull("hot", 0, 10).await.unwrap().records.len(), 1);
    // Another replica commits: this one sees it once its window is stale.
    store.commit(&[gift(1)]).await.unwrap();
    assert_eq!(
        recent.pull("hot", 0, 10).await.unwrap().records.len(),
        1,
        "within the ttl"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(recent.pull("hot", 0, 10).await.unwrap().records.len(), 2, "read again");
    // Windows for more rooms than allowed: the least recently used goes.
    for room in ["a", "b", "c"] {
        recent.pull(room, 0, 10).await.unwrap();
    }
    let reads = store.reads.load(Ordering::SeqCst);
    recent.pull("c", 0, 10).await.unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), reads, "c is held");
    recent.pull("hot", 0, 10).await.unwrap();
    assert!(
        store.reads.load(Ordering::SeqCst) > reads,
        "hot was evicted and read again"
    );
}
