//! One conformance suite for every `GiftStore` backend: PostgreSQL for real
//! (`DATABASE_URL`, which `scripts/test.sh` provides), and SQLite in a
//! temporary file. Every test uses fresh random room and user ids.

use std::collections::BTreeMap;
use std::sync::Arc;
use svc_gift::store::{
    GiftStore, Kind, NewRecord, Record, StoreError, postgres::PgGiftStore, rules::Limits, sqlite::SqliteGiftStore,
};

fn uid(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() >> 16)
}

fn gift(room: &str, sender: &str, key: &str, gift_id: &str, count: u32, unit: u64) -> NewRecord {
    NewRecord {
        room_id: room.into(),
        sender_user_id: sender.into(),
        kind: Kind::Gift,
        target_user_id: String::new(),
        gift_id: gift_id.into(),
        count,
        unit_value: unit,
        client_key: key.into(),
        payload: Vec::new(),
        answers_seq: 0,
        answer: 0,
    }
}

async fn one<S: GiftStore>(store: &S, record: NewRecord) -> Result<svc_gift::store::Sent, StoreError> {
    store.commit(std::slice::from_ref(&record)).await.unwrap().remove(0)
}

async fn all<S: GiftStore>(store: &S, room: &str) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |r: &Record| r.seq);
        let page = store.pull(room, after, 500, None).await.unwrap();
        out.extend(page.records);
        if !page.has_more {
            return out;
        }
    }
}

macro_rules! refused {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(StoreError::$variant(message)) => message,
            other => panic!(
                "expected {} from `{}`, got {other:?}",
                stringify!($variant),
                stringify!($result)
            ),
        }
    };
}

async fn a_retry_is_answered_with_its_original_and_counted_once<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, host, fan) = (uid("room"), uid("host"), uid("fan"));
    store.set_host(&room, &host).await.unwrap();
    let first = one(&store, gift(&room, &fan, "k1", "rose", 3, 10)).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!((first.record.seq, first.record.value), (1, 30));
    assert_eq!(first.record.recipient_user_id, host);
    let again = one(&store, gift(&room, &fan, "k1", "rose", 3, 10)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.record, first.record);
    // The same key with other content is refused; inside one batch, the
    // second of two equal records is a duplicate of the first.
    let message = refused!(one(&store, gift(&room, &fan, "k1", "rose", 4, 10)).await, AlreadyExists);
    assert!(message.contains("k1"), "{message}");
    let batch = store
        .commit(&[
            gift(&room, &fan, "k2", "rose", 1, 10),
            gift(&room, &fan, "k2", "rose", 1, 10),
        ])
        .await
        .unwrap();
    let seqs: Vec<(u64, bool)> = batch
        .iter()
        .map(|a| a.as_ref().map(|s| (s.record.seq, s.duplicate)).unwrap())
        .collect();
    assert_eq!(seqs, vec![(2, false), (2, true)]);
    let totals = store.room_totals(&room, 10).await.unwrap();
    assert_eq!(
        (totals.items[0].count, totals.items[0].value),
        (4, 40),
        "each gift counted once"
    );
    assert_eq!(store.recipient_totals(&host).await.unwrap()[0].count, 4);
    assert_eq!(all(&store, &room).await.len(), 2);
}

async fn concurrent_senders_get_one_gap_free_sequence_and_exact_totals<S: GiftStore>(open: impl AsyncFn() -> S) {
    let (room, host) = (uid("room"), uid("host"));
    // Two instances over one database: two replicas of the gift service.
    let stores = [Arc::new(open().await), Arc::new(open().await)];
    stores[0].set_host(&room, &host).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = stores[t % 2].clone();
            let room = room.clone();
            tokio::spawn(async move {
                let sender = format!("sender-{t}");
                let mut seqs = Vec::new();
                for i in 0..25 {
                    // Batches of two, as group commit makes them.
                    let batch = [
                        gift(&room, &sender, &format!("a{i}"), "rose", 1 + t as u32, 1),
                        gift(&room, &sender, &format!("b{i}"), "rocket", 1, 100),
                    ];
                    for answer in store.commit(&batch).await.unwrap() {
                        seqs.push(answer.unwrap().record.seq);
                    }
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a sender's records keep their order"
        );
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>(), "one gap-free sequence");
    let ledger = all(&*stores[1], &room).await;
    assert_eq!(ledger.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
    // Totals equal the sum of the ledger.
    let mut by_item: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_sender: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &ledger {
        let i = by_item.entry(r.gift_id.clone()).or_default();
        i.0 += u64::from(r.count);
        i.1 += r.value;
        let s = by_sender.entry(r.sender_user_id.clone()).or_default();
        s.0 += u64::from(r.count);
        s.1 += r.value;
    }
    let totals = stores[0].room_totals(&room, 3).await.unwrap();
    let items: BTreeMap<String, (u64, u64)> = totals
        .items
        .iter()
        .map(|t| (t.key.clone(), (t.count, t.value)))
        .collect();
    assert_eq!(items, by_item);
    let recipient: BTreeMap<String, (u64, u64)> = stores[1]
        .recipient_totals(&host)
        .await
        .unwrap()
        .iter()
        .map(|t| (t.key.clone(), (t.count, t.value)))
        .collect();
    assert_eq!(recipient, by_item, "everything went to the host");
    let mut top: Vec<(u64, String)> = by_sender.iter().map(|(k, v)| (v.1, k.clone())).collect();
    top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let got: Vec<(u64, String)> = totals.top_senders.iter().map(|t| (t.value, t.key.clone())).collect();
    assert_eq!(got, top[..3].to_vec(), "top senders by value");
}

async fn gifts_go_to_their_target_or_the_host_of_the_moment<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, fan, first, second, guest) = (uid("room"), uid("fan"), uid("host"), uid("host"), uid("guest"));
    let message = refused!(
        one(&store, gift(&room, &fan, "k0", "rose", 1, 1)).await,
        FailedPrecondition
    );
    assert!(message.contains("no host"), "{message}");
    assert_eq!(
        store.room(&room).await.unwrap().last_seq,
        0,
        "a refused record takes no seq"
    );
    store.set_host(&room, &first).await.unwrap();
    let a = one(&store, gift(&room, &fan, "k1", "rose", 1, 1)).await.unwrap();
    let mut aimed = gift(&room, &fan, "k2", "rose", 1, 1);
    aimed.target_user_id = guest.clone();
    let b = one(&store, aimed.clone()).await.unwrap();
    let room_now = store.set_host(&room, &second).await.unwrap();
    assert_eq!(
        (room_now.host_user_id.as_str(), room_now.last_seq),
        (second.as_str(), 2)
    );
    let c = one(&store, gift(&room, &fan, "k3", "rose", 1, 1)).await.unwrap();
    assert_eq!(
        [&a, &b, &c].map(|s| s.record.recipient_user_id.clone()),
        [first.clone(), guest.clone(), second.clone()]
    );
    // A retry of k1 after the host changed is still the original.
    let retry = one(&store, gift(&room, &fan, "k1", "rose", 1, 1)).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.record.recipient_user_id, first);
    // Pulling what one user received: only theirs, seqs with gaps.
    let theirs = store.pull(&room, 0, 10, Some(&guest)).await.unwrap();
    assert_eq!(theirs.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(theirs.last_seq, 3);
}

async fn co_streaming_requests_are_addressed_and_never_counted<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, host, viewer) = (uid("room"), uid("host"), uid("viewer"));
    store.set_host(&room, &host).await.unwrap();
    let request = NewRecord {
        kind: Kind::CoStreamRequest,
        target_user_id: host.clone(),
        gift_id: String::new(),
        count: 0,
        payload: b"{\"video\":true}".to_vec(),
        ..gift(&room, &viewer, "ask-1", "", 0, 0)
    };
    let sent = one(&store, request.clone()).await.unwrap();
    assert_eq!(sent.record.kind, 2);
    assert_eq!(sent.record.recipient_user_id, host);
    let pending = store.pull(&room, 0, 10, Some(&host)).await.unwrap();
    assert_eq!(pending.records, vec![sent.record.clone()]);
    assert!(store.room_totals(&room, 10).await.unwrap().items.is_empty());
    let mut to_self = request.clone();
    to_self.target_user_id = viewer.clone();
    to_self.client_key = "ask-2".into();
    refused!(one(&store, to_self).await, InvalidArgument);
    let mut untargeted = request.clone();
    untargeted.target_user_id.clear();
    untargeted.client_key = "ask-3".into();
    refused!(one(&store, untargeted).await, InvalidArgument);
    let mut with_count = request;
    with_count.count = 1;
    with_count.client_key = "ask-4".into();
    refused!(one(&store, with_count).await, InvalidArgument);
}

/// A co-streaming request from `from` to `to`.
fn ask(room: &str, from: &str, to: &str, key: &str) -> NewRecord {
    NewRecord {
        kind: Kind::CoStreamRequest,
        target_user_id: to.into(),
        ..gift(room, from, key, "", 0, 0)
    }
}

/// An answer by `by` to request `seq`: 1 accept, 2 decline, 3 cancel.
fn reply(room: &str, by: &str, key: &str, seq: u64, answer: i32) -> NewRecord {
    NewRecord {
        kind: Kind::CoStreamAnswer,
        answers_seq: seq,
        answer,
        ..gift(room, by, key, "", 0, 0)
    }
}

async fn a_co_streaming_request_takes_one_answer_from_the_right_party<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, host, viewer, other) = (uid("room"), uid("host"), uid("viewer"), uid("other"));
    let first = one(&store, ask(&room, &viewer, &host, "a1")).await.unwrap().record;
    let second = one(&store, ask(&room, &viewer, &host, "a2")).await.unwrap().record;
    let third = one(&store, ask(&room, &other, &host, "a3")).await.unwrap().record;
    assert!(first.expires_at_ms > first.sent_at_ms);
    let pending: Vec<u64> = store
        .pending(&room, &host)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(pending, vec![first.seq, second.seq, third.seq]);
    assert!(
        store.pending(&room, &viewer).await.unwrap().is_empty(),
        "pending for their addressee only"
    );
    // Only the addressee accepts or declines; only the sender cancels.
    let message = refused!(
        one(&store, reply(&room, &viewer, "r0", first.seq, 1)).await,
        PermissionDenied
    );
    assert!(message.contains("addressee"), "{message}");
    refused!(
        one(&store, reply(&room, &host, "r1", first.seq, 3)).await,
        PermissionDenied
    );
    let accepted = one(&store, reply(&room, &host, "r2", first.seq, 1))
        .await
        .unwrap()
        .record;
    assert_eq!(
        (accepted.kind, accepted.answer, accepted.answers_seq),
        (3, 1, first.seq)
    );
    assert_eq!(
        accepted.recipient_user_id, viewer,
        "an answer goes back to the requester"
    );
    // One answer per request, also inside one batch.
    let message = refused!(
        one(&store, reply(&room, &host, "r3", first.seq, 2)).await,
        FailedPrecondition
    );
    assert!(message.contains("already answered"), "{message}");
    let both = store
        .commit(&[
            reply(&room, &viewer, "r4", second.seq, 3),
            reply(&room, &host, "r5", second.seq, 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        both[0].as_ref().unwrap().record.recipient_user_id,
        host,
        "a cancel goes to the addressee"
    );
    refused!(both[1].clone(), FailedPrecondition);
    // A retry of an answer is its original.
    let again = one(&store, reply(&room, &host, "r2", first.seq, 1)).await.unwrap();
    assert!(again.duplicate);
    // Unknown requests, and gifts, take no answer.
    let g = one(&store, gift(&room, &viewer, "g", "rose", 1, 1)).await;
    assert!(g.is_err(), "no host in this room");
    refused!(one(&store, reply(&room, &host, "r6", 999, 1)).await, FailedPrecondition);
    refused!(
        one(&store, reply(&room, &host, "r7", third.seq, 0)).await,
        InvalidArgument
    );
    let pending: Vec<u64> = store
        .pending(&room, &host)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(pending, vec![third.seq]);
}

async fn an_unanswered_request_expires<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, host, viewer) = (uid("room"), uid("host"), uid("viewer"));
    let request = one(&store, ask(&room, &viewer, &host, "a")).await.unwrap().record;
    let answered = one(&store, ask(&room, &viewer, &host, "b")).await.unwrap().record;
    one(&store, reply(&room, &host, "r0", answered.seq, 2)).await.unwrap();
    assert_eq!(store.pending(&room, &host).await.unwrap().len(), 1);
    let due_here = |due: Vec<svc_gift::store::DueCoStream>| {
        due.into_iter()
            .filter(|d| d.room_id == room)
            .map(|d| (d.request_seq, d.addressee_user_id))
            .collect::<Vec<_>>()
    };
    let now = svc_gift::store::unix_ms();
    assert!(due_here(store.due_co_streams(now, 1_000_000).await.unwrap()).is_empty());
    // The ledger's expiry may not come early.
    let message = refused!(
        one(&store, reply(&room, &host, "ledger:early", request.seq, 4)).await,
        FailedPrecondition
    );
    assert!(message.contains("not expired yet"), "{message}");
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    assert!(store.pending(&room, &host).await.unwrap().is_empty(), "expired");
    let message = refused!(
        one(&store, reply(&room, &host, "r", request.seq, 1)).await,
        FailedPrecondition
    );
    assert!(message.contains("expired"), "{message}");
    // Due: the unanswered one only, in its addressee's name.
    let due = due_here(
        store
            .due_co_streams(svc_gift::store::unix_ms(), 1_000_000)
            .await
            .unwrap(),
    );
    assert_eq!(due, vec![(request.seq, host.clone())]);
    // Its expiry is given in the addressee's name, to the requester, once.
    refused!(
        one(&store, reply(&room, &viewer, "ledger:x", request.seq, 4)).await,
        PermissionDenied
    );
    let expiry = one(&store, reply(&room, &host, "ledger:expired", request.seq, 4))
        .await
        .unwrap()
        .record;
    assert_eq!((expiry.recipient_user_id.as_str(), expiry.answer), (viewer.as_str(), 4));
    assert!(
        one(&store, reply(&room, &host, "ledger:expired", request.seq, 4))
            .await
            .unwrap()
            .duplicate
    );
    let message = refused!(
        one(&store, reply(&room, &viewer, "c", request.seq, 3)).await,
        FailedPrecondition
    );
    assert!(message.contains("already answered"), "{message}");
    assert!(
        due_here(
            store
                .due_co_streams(svc_gift::store::unix_ms(), 1_000_000)
                .await
                .unwrap()
        )
        .is_empty()
    );
}

async fn every_refusal_has_its_precise_error<S: GiftStore>(open: impl AsyncFn() -> S) {
    let store = open().await;
    let (room, host, fan) = (uid("room"), uid("host"), uid("fan"));
    store.set_host(&room, &host).await.unwrap();
    let ok = gift(&room, &fan, "k", "rose", 1, 1);
    let cases: Vec<(NewRecord, &str)> = vec![
        (
            NewRecord {
                room_id: "bad room".into(),
                ..ok.clone()
            },
            "room_id",
        ),
        (
            NewRecord {
                sender_user_id: String::new(),
                ..ok.clone()
            },
            "sender_user_id",
        ),
        (
            NewRecord {
                client_key: String::new(),
                ..ok.clone()
            },
            "client_key",
        ),
        (
            NewRecord {
                client_key: "k".repeat(65),
                ..ok.clone()
            },
            "client_key",
        ),
        (
            NewRecord {
                gift_id: String::new(),
                ..ok.clone()
            },
            "gift_id",
        ),
        (NewRecord { count: 0, ..ok.clone() }, "count"),
        (
            NewRecord {
                target_user_id: "a\u{0}b".into(),
                ..ok.clone()
            },
            "target_user_id",
        ),
    ];
    // Refused records in a batch leave the valid one alone.
    let mut batch: Vec<NewRecord> = cases.iter().map(|c| c.0.clone()).collect();
    batch.push(ok.clone());
    let answers = store.commit(&batch).await.unwrap();
    for ((_, field), answer) in cases.iter().zip(&answers) {
        let message = refused!(answer.clone(), InvalidArgument);
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(answers.last().unwrap().as_ref().unwrap().record.seq, 1);
    let big = NewRecord {
        payload: vec![0; 4097],
        client_key: "big".into(),
        ..ok.clone()
    };
    refused!(one(&store, big).await, ResourceExhausted);
    let too_many = NewRecord {
        count: 10_001,
        client_key: "n".into(),
        ..ok.clone()
    };
    let message = refused!(one(&store, too_many).await, InvalidArgument);
    assert!(message.contains("10000"), "{message}");
    let priceless = NewRecord {
        count: 10_000,
        unit_value: u64::MAX / 2,
        client_key: "p".into(),
        ..ok.clone()
    };
    refused!(one(&store, priceless).await, ResourceExhausted);
    refused!(store.pull("bad room", 0, 10, None).await, InvalidArgument);
    refused!(store.pull(&room, u64::MAX, 10, None).await, InvalidArgument);
    // Two gifts that fit alone but not together: the second is refused and
    // takes no seq, the totals stay exact.
    let huge = (i64::MAX as u64 / 2 + 1) / 10_000 + 1;
    let answers = store
        .commit(&[
            NewRecord {
                count: 10_000,
                unit_value: huge,
                client_key: "h1".into(),
                ..ok.clone()
            },
            NewRecord {
                count: 10_000,
                unit_value: huge,
                client_key: "h2".into(),
                ..ok.clone()
            },
        ])
        .await
        .unwrap();
    let first = answers[0].as_ref().unwrap().record.seq;
    let message = refused!(answers[1].clone(), ResourceExhausted);
    assert!(message.contains("overflow"), "{message}");
    assert_eq!(store.room(&room).await.unwrap().last_seq, first);
    // User ids are what tokens name: an address is fine.
    let mail = NewRecord {
        sender_user_id: "fan@example.com".into(),
        client_key: "m".into(),
        ..ok.clone()
    };
    assert!(one(&store, mail).await.is_ok());
    // Pages are capped at 500 and say when more follow.
    let room = uid("room");
    store.set_host(&room, &host).await.unwrap();
    let many: Vec<NewRecord> = (0..600)
        .map(|i| gift(&room, &fan, &format!("m{i}"), "rose", 1, 1))
        .collect();
    store.commit(&many).await.unwrap();
    let page = store.pull(&room, 0, 10_000, None).await.unwrap();
    assert_eq!((page.records.len(), page.has_more, page.last_seq), (500, true, 600));
}

async fn postgres() -> PgGiftStore {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL for the conformance suite: run scripts/test.sh");
    PgGiftStore::connect(&url, 8, limits()).await.unwrap()
}

/// The default limits, with co-streaming requests that expire within a test
/// (long enough for a loaded machine to answer them first).
fn limits() -> Limits {
    Limits {
        co_stream_ttl_ms: 1_500,
        ..Limits::default()
    }
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("gift.sqlite3");
                    super::$scenario(async || {
                        super::SqliteGiftStore::open(&path, super::limits()).await.unwrap()
                    })
                    .await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_retry_is_answered_with_its_original_and_counted_once,
    concurrent_senders_get_one_gap_free_sequence_and_exact_totals,
    gifts_go_to_their_target_or_the_host_of_the_moment,
    co_streaming_requests_are_addressed_and_never_counted,
    every_refusal_has_its_precise_error,
    a_co_streaming_request_takes_one_answer_from_the_right_party,
    an_unanswered_request_expires,
);
