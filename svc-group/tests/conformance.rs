//! One conformance suite for every `GroupStore` backend: PostgreSQL, for
//! real (`DATABASE_URL`, which `scripts/test.sh` provides by starting a
//! throwaway PostgreSQL), and SQLite in a temporary file. Every test uses
//! fresh random group and user ids, so tests share one database.
//!
//! Each scenario gets `open`, which opens one more store instance over the
//! same database (a second replica), with the configuration it is given.

use std::sync::Arc;
use std::time::Instant;
use svc_group::config::GroupStoreConfig;
use svc_group::store::{
    GroupStore, MailboxItem, NewGroup, NewMessage, Position, Role, StoreError, postgres::PgGroupStore,
    sqlite::SqliteGroupStore,
};

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL for the conformance suite: run scripts/test.sh, which starts one",
    )
}

async fn postgres(config: GroupStoreConfig) -> PgGroupStore {
    PgGroupStore::connect(&database_url(), &config).await.unwrap()
}

fn config() -> GroupStoreConfig {
    GroupStoreConfig::default()
}

fn uid(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() >> 16)
}

fn text(group_id: &str, sender: &str, key: &str, body: &str) -> NewMessage {
    NewMessage {
        group_id: group_id.into(),
        sender_user_id: sender.into(),
        sender_device_id: "phone".into(),
        client_message_id: key.into(),
        content_type: "text/plain".into(),
        body: body.as_bytes().to_vec(),
    }
}

async fn group<S: GroupStore>(store: &S, owner: &str, members: &[&str]) -> String {
    let created = store
        .create_group(&NewGroup {
            owner_user_id: owner.into(),
            name: "test".into(),
            member_user_ids: members.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    created.group.group.group_id
}

/// Pulls everything after the device's ack in pages of `page`, acking each.
async fn drain<S: GroupStore>(store: &S, user: &str, device: &str, page: u32) -> Vec<MailboxItem> {
    let mut all = Vec::new();
    loop {
        let pulled = store.pull(user, device, Position::ACKED, page).await.unwrap();
        let Some(last) = pulled.items.last().map(|i| i.mailbox_seq) else {
            break;
        };
        store.ack(user, device, last).await.unwrap();
        all.extend(pulled.items);
        if !pulled.has_more {
            break;
        }
    }
    all
}

/// A one-user list.
fn one(user: &str) -> Vec<String> {
    vec![user.to_owned()]
}

fn seqs_of(items: &[MailboxItem], group_id: &str) -> Vec<u64> {
    items
        .iter()
        .filter(|i| i.message.group_id == group_id)
        .map(|i| i.message.seq)
        .collect()
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

async fn a_retry_answers_the_original_and_other_content_is_refused<S: GroupStore>(
    open: impl AsyncFn(GroupStoreConfig) -> S,
) {
    let store = open(config()).await;
    let (owner, member) = (uid("owner"), uid("member"));
    let new = NewGroup {
        owner_user_id: owner.clone(),
        name: "retry".into(),
        member_user_ids: vec![member.clone(), member.clone(), owner.clone()],
        client_key: "create-1".into(),
        ..Default::default()
    };
    let first = store.create_group(&new).await.unwrap();
    let again = store.create_group(&new).await.unwrap();
    assert!(!first.existed && again.existed);
    assert_eq!(first.group.group.group_id, again.group.group.group_id);
    assert_eq!(
        first.group.group.member_count, 2,
        "duplicates and the owner counted once"
    );
    assert_eq!(first.group.members[0].role, Role::Owner);
    let g = first.group.group.group_id;

    let sent = store.send(&text(&g, &owner, "m-1", "hello")).await.unwrap();
    assert_eq!(sent.message.seq, 2, "seq 1 is the creation event");
    assert!(!sent.duplicate);
    assert_eq!(sent.deliveries.len(), 2, "every member, sender included");
    let retry = store.send(&text(&g, &owner, "m-1", "hello")).await.unwrap();
    assert!(retry.duplicate && retry.deliveries.is_empty());
    assert_eq!(retry.message, sent.message);
    let message = refused!(store.send(&text(&g, &owner, "m-1", "other")).await, AlreadyExists);
    assert!(message.contains("m-1"), "{message}");
    let items = drain(&store, &member, "d1", 100).await;
    assert_eq!(seqs_of(&items, &g), vec![1, 2], "delivered once");
}

async fn concurrent_senders_get_one_gap_free_sequence<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = Arc::new(open(config()).await);
    let senders: Vec<String> = (0..8).map(|i| uid(&format!("s{i}"))).collect();
    let others: Vec<&str> = senders[1..].iter().map(String::as_str).collect();
    let g = group(&*store, &senders[0], &others).await;
    let tasks: Vec<_> = senders
        .iter()
        .map(|sender| {
            let (store, g, sender) = (store.clone(), g.clone(), sender.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let sent = store.send(&text(&g, &sender, &format!("k{i}"), "x")).await.unwrap();
                    seqs.push(sent.message.seq);
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
            "one sender's messages keep its order"
        );
        seqs.extend(mine);
    }
    seqs.sort();
    assert_eq!(seqs, (2..=401).collect::<Vec<u64>>());
    for member in &senders {
        let items = drain(&*store, member, "d", 500).await;
        assert_eq!(
            seqs_of(&items, &g),
            (1..=401).collect::<Vec<u64>>(),
            "{member}'s mailbox in group order"
        );
        let mailbox: Vec<u64> = items.iter().map(|i| i.mailbox_seq).collect();
        assert!(
            mailbox.windows(2).all(|w| w[1] == w[0] + 1),
            "mailbox seqs without gaps"
        );
    }
}

async fn two_instances_send_into_one_group_gap_free<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let (a, b) = (Arc::new(open(config()).await), Arc::new(open(config()).await));
    let (u1, u2) = (uid("u1"), uid("u2"));
    let g = group(&*a, &u1, &[&u2]).await;
    let spawn = |store: Arc<S>, sender: String| {
        let g = g.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                store.send(&text(&g, &sender, &format!("k{i}"), "x")).await.unwrap();
            }
        })
    };
    let (t1, t2) = (spawn(a.clone(), u1.clone()), spawn(b.clone(), u2.clone()));
    t1.await.unwrap();
    t2.await.unwrap();
    let history = b.history(&u1, &g, None, 500).await.unwrap();
    let mut seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    seqs.reverse();
    assert_eq!(seqs, (1..=201).collect::<Vec<u64>>());
    assert_eq!(
        seqs_of(&drain(&*a, &u2, "d", 500).await, &g),
        (1..=201).collect::<Vec<u64>>()
    );
}

async fn three_devices_each_get_everything_once_across_reconnects<S: GroupStore>(
    open: impl AsyncFn(GroupStoreConfig) -> S,
) {
    let store = open(config()).await;
    let (owner, user) = (uid("owner"), uid("user"));
    let g = group(&store, &owner, &[&user]).await;
    for i in 0..30 {
        store.send(&text(&g, &owner, &format!("a{i}"), "x")).await.unwrap();
    }
    for device in ["phone", "laptop", "tablet"] {
        let mut stored: Vec<u64> = Vec::new();
        // First session: two pages stored and acked, then a third fetched but
        // lost before it was stored (a crash): fetch moved, ack did not.
        for _ in 0..2 {
            let page = store.pull(&user, device, Position::ACKED, 7).await.unwrap();
            stored.extend(page.items.iter().map(|i| i.message.seq));
            store
                .ack(&user, device, page.items.last().unwrap().mailbox_seq)
                .await
                .unwrap();
        }
        let lost = store.pull(&user, device, Position::ACKED, 7).await.unwrap();
        assert!(lost.cursor.fetch_seq > lost.cursor.ack_seq);
        // Reconnect: resumes after the ack, so the lost page comes again.
        let rest = drain(&store, &user, device, 7).await;
        stored.extend(rest.iter().map(|i| i.message.seq));
        assert_eq!(
            stored,
            (1..=31).collect::<Vec<u64>>(),
            "{device}: every message once, in order"
        );
    }
    for i in 0..5 {
        store.send(&text(&g, &owner, &format!("b{i}"), "x")).await.unwrap();
    }
    for device in ["phone", "laptop", "tablet"] {
        let later = drain(&store, &user, device, 100).await;
        assert_eq!(
            seqs_of(&later, &g),
            (32..=36).collect::<Vec<u64>>(),
            "{device} after reconnecting"
        );
        let (cursor, head) = store.cursor(&user, device).await.unwrap();
        assert_eq!((cursor.fetch_seq, cursor.ack_seq, head), (36, 36, 36));
    }
}

async fn an_offline_member_catches_up_on_10000_messages_in_pages<S: GroupStore>(
    open: impl AsyncFn(GroupStoreConfig) -> S,
) {
    let store = Arc::new(open(config()).await);
    let (owner, offline) = (uid("owner"), uid("offline"));
    let g = group(&*store, &owner, &[&offline]).await;
    drain(&*store, &offline, "phone", 10).await; // the device was in sync before going offline
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (store, g, owner) = (store.clone(), g.clone(), owner.clone());
            tokio::spawn(async move {
                // In group commits of 50, as the service batches them.
                for chunk in 0..50 {
                    let batch: Vec<NewMessage> = (0..50)
                        .map(|i| text(&g, &owner, &format!("t{t}-{chunk}-{i}"), "catch me up"))
                        .collect();
                    let sent = store.send_batch(&batch).await.unwrap();
                    assert!(sent.answers.iter().all(|a| a.as_ref().is_ok_and(|s| !s.duplicate)));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let started = Instant::now();
    let items = drain(&*store, &offline, "phone", 500).await;
    let took = started.elapsed();
    println!("catch-up of {} items in pages of 500: {took:?}", items.len());
    assert_eq!(seqs_of(&items, &g), (2..=10_001).collect::<Vec<u64>>());
    // A new device starts a bounded window behind the head.
    let fresh = drain(&*store, &offline, "new-tablet", 500).await;
    assert_eq!(fresh.len(), 1000, "the new-device window");
    assert_eq!(fresh.last().unwrap().message.seq, 10_001);
}

async fn removal_stops_delivery_and_addition_shows_history_from_joining<S: GroupStore>(
    open: impl AsyncFn(GroupStoreConfig) -> S,
) {
    let store = open(config()).await;
    let (owner, stays, leaves, joins) = (uid("owner"), uid("stays"), uid("leaves"), uid("joins"));
    let g = group(&store, &owner, &[&stays, &leaves]).await;
    store.send(&text(&g, &owner, "before", "x")).await.unwrap();
    let removed = store
        .remove_members(&owner, &g, &[leaves.clone(), uid("never")])
        .await
        .unwrap();
    assert_eq!(removed.changed.len(), 1, "non-members are skipped");
    assert_eq!((removed.group.member_count, removed.group.epoch), (2, 2));
    let removal_seq = removed.dispatch.as_ref().unwrap().message.seq;
    assert!(
        removed.dispatch.unwrap().deliveries.iter().any(|d| d.user_id == leaves),
        "the removed hear of it"
    );
    let after = store.send(&text(&g, &owner, "after", "x")).await.unwrap();
    assert!(after.deliveries.iter().all(|d| d.user_id != leaves));
    let items = drain(&store, &leaves, "d", 100).await;
    assert_eq!(
        seqs_of(&items, &g),
        vec![1, 2, removal_seq],
        "nothing after the removal"
    );
    refused!(store.send(&text(&g, &leaves, "k", "x")).await, PermissionDenied);
    refused!(store.history(&leaves, &g, None, 10).await, PermissionDenied);
    refused!(store.mark_read(&leaves, "d", &g, 1, 0).await, PermissionDenied);
    refused!(store.receipts(&leaves, &g, 1).await, PermissionDenied);
    assert!(store.list_groups(&leaves, None, 0).await.unwrap().is_empty());

    let added = store
        .add_members(&owner, &g, &[joins.clone(), stays.clone()], Role::Member)
        .await
        .unwrap();
    assert_eq!(added.changed.len(), 1, "existing members are skipped");
    assert_eq!(added.group.epoch, 3);
    let join_seq = added.dispatch.unwrap().message.seq;
    store.send(&text(&g, &stays, "welcome", "x")).await.unwrap();
    let history = store.history(&joins, &g, None, 100).await.unwrap();
    assert_eq!(history.begin_seq, join_seq);
    assert_eq!(
        history.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![join_seq + 1, join_seq]
    );
    let items = drain(&store, &joins, "d", 100).await;
    assert_eq!(seqs_of(&items, &g), vec![join_seq, join_seq + 1]);
    // Clearing history moves begin past the last seq.
    let begin = store.clear_history(&joins, &g).await.unwrap();
    assert_eq!(begin, join_seq + 2);
    assert!(store.history(&joins, &g, None, 100).await.unwrap().messages.is_empty());
}

async fn every_permission_refusal_has_its_precise_error<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(GroupStoreConfig {
        max_members: 4,
        max_body_bytes: 16,
        ..config()
    })
    .await;
    let (owner, admin, member, other, stranger) = (uid("owner"), uid("admin"), uid("member"), uid("other"), uid("x"));
    let g = group(&store, &owner, &[&member]).await;
    let nowhere = uid("nowhere");
    refused!(store.send(&text(&nowhere, &owner, "k", "x")).await, NotFound);
    refused!(
        store.add_members(&owner, &nowhere, &one(&admin), Role::Member).await,
        NotFound
    );
    refused!(
        store.add_members(&stranger, &g, &one(&admin), Role::Member).await,
        PermissionDenied
    );
    refused!(
        store.add_members(&member, &g, &one(&admin), Role::Member).await,
        PermissionDenied
    );
    refused!(
        store.add_members(&owner, &g, &one(&admin), Role::Owner).await,
        InvalidArgument
    );
    refused!(
        store.add_members(&owner, &g, &[String::new()], Role::Member).await,
        InvalidArgument
    );
    store.add_members(&owner, &g, &one(&admin), Role::Admin).await.unwrap();
    refused!(
        store.add_members(&admin, &g, &one(&other), Role::Admin).await,
        PermissionDenied
    );
    let full = refused!(
        store
            .add_members(&admin, &g, &[other.clone(), uid("a"), uid("b")], Role::Member)
            .await,
        ResourceExhausted
    );
    assert!(full.contains("limit of 4"), "{full}");
    assert_eq!(
        store.members(&owner, &g).await.unwrap().members.len(),
        3,
        "nobody was added"
    );
    store.add_members(&admin, &g, &one(&other), Role::Member).await.unwrap();
    refused!(
        store
            .create_group(&NewGroup {
                owner_user_id: owner.clone(),
                name: "big".into(),
                member_user_ids: (0..4).map(|i| format!("m{i}")).collect(),
                ..Default::default()
            })
            .await,
        ResourceExhausted
    );
    refused!(
        store
            .create_group(&NewGroup {
                owner_user_id: owner.clone(),
                ..Default::default()
            })
            .await,
        InvalidArgument
    );

    refused!(store.remove_members(&member, &g, &one(&other)).await, PermissionDenied);
    refused!(
        store.remove_members(&stranger, &g, &one(&other)).await,
        PermissionDenied
    );
    refused!(store.remove_members(&admin, &g, &one(&owner)).await, PermissionDenied);
    refused!(store.remove_members(&owner, &g, &one(&owner)).await, FailedPrecondition);
    refused!(store.transfer_ownership(&admin, &g, &admin).await, PermissionDenied);
    refused!(
        store.transfer_ownership(&owner, &g, &stranger).await,
        FailedPrecondition
    );

    refused!(store.send(&text(&g, &stranger, "k", "x")).await, PermissionDenied);
    refused!(
        store.send(&text(&g, &member, "k", "far too long for the limit")).await,
        ResourceExhausted
    );
    refused!(store.send(&text(&g, &member, "", "x")).await, InvalidArgument);
    let mut event = text(&g, &member, "k", "x");
    event.content_type = svc_group::store::GROUP_EVENT_CONTENT_TYPE.into();
    refused!(store.send(&event).await, InvalidArgument);

    let last = store.send(&text(&g, &member, "k", "x")).await.unwrap().message.seq;
    refused!(store.ack(&member, "d", 0).await, InvalidArgument);
    let ahead = refused!(store.ack(&member, "d", 1).await, OutOfRange);
    assert!(ahead.contains("fetch cursor"), "{ahead}");
    refused!(store.mark_read(&member, "d", &g, last + 1, 0).await, OutOfRange);
    refused!(store.mark_read(&member, "d", &g, last, 99).await, OutOfRange);
    refused!(store.mark_read(&member, "d", &g, 0, 0).await, InvalidArgument);
    refused!(store.mark_read(&member, "d", &nowhere, 1, 0).await, NotFound);
    refused!(store.receipts(&member, &g, last + 1).await, OutOfRange);
    refused!(store.history(&member, &g, Some(last + 2), 10).await, OutOfRange);

    // What the roles do allow.
    store.remove_members(&admin, &g, &one(&other)).await.unwrap();
    store.remove_members(&member, &g, &one(&member)).await.unwrap();
    let moved = store.transfer_ownership(&owner, &g, &admin).await.unwrap();
    assert_eq!(moved.group.owner_user_id, admin);
    let roles: Vec<(String, Role)> = moved.changed.iter().map(|m| (m.user_id.clone(), m.role)).collect();
    assert!(roles.contains(&(admin.clone(), Role::Owner)) && roles.contains(&(owner.clone(), Role::Admin)));
    store.remove_members(&owner, &g, &one(&owner)).await.unwrap();
    assert_eq!(store.members(&admin, &g).await.unwrap().members.len(), 1);
}

async fn read_positions_and_receipts_follow_mark_read<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, a, b) = (uid("owner"), uid("a"), uid("b"));
    let g = group(&store, &owner, &[&a, &b]).await;
    let seq = store.send(&text(&g, &owner, "m", "x")).await.unwrap().message.seq;
    let receipts = store.receipts(&a, &g, seq).await.unwrap();
    assert_eq!(
        (receipts.reader_user_ids, receipts.unread_count),
        (vec![owner.clone()], 2),
        "the sender has read it"
    );

    let page = store.pull(&a, "phone", Position::ACKED, 10).await.unwrap();
    let item = page.items.iter().find(|i| i.message.seq == seq).unwrap();
    let marked = store.mark_read(&a, "phone", &g, seq, item.mailbox_seq).await.unwrap();
    assert_eq!((marked.read_seq, marked.cursor.read_seq), (seq, item.mailbox_seq));
    let lower = store.mark_read(&a, "laptop", &g, 1, 0).await.unwrap();
    assert_eq!(lower.read_seq, seq, "read only moves forward, over all devices");
    let mut readers = vec![owner.clone(), a.clone()];
    readers.sort();
    let receipts = store.receipts(&b, &g, seq).await.unwrap();
    assert_eq!((receipts.reader_user_ids, receipts.unread_count), (readers, 1));
    let positions = store.read_positions(&owner, &g).await.unwrap();
    let of = |u: &str| positions.iter().find(|p| p.user_id == u).unwrap().read_seq;
    assert_eq!((of(&owner), of(&a), of(&b)), (seq, seq, 0));
    let mine = store.list_groups(&a, None, 0).await.unwrap();
    assert_eq!((mine.len(), mine[0].read_seq, mine[0].group.last_seq), (1, seq, seq));
    // Ack never moves backwards.
    store.ack(&a, "phone", item.mailbox_seq).await.unwrap();
    assert_eq!(store.ack(&a, "phone", 1).await.unwrap().ack_seq, item.mailbox_seq);
}

async fn groups_are_listed_in_pages_by_group_id<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let user = uid("user");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(group(&store, &user, &[]).await);
    }
    ids.sort();
    let first = store.list_groups(&user, None, 2).await.unwrap();
    let rest = store
        .list_groups(&user, Some(&first[1].group.group_id), 2)
        .await
        .unwrap();
    let listed: Vec<String> = first.iter().chain(&rest).map(|m| m.group.group_id.clone()).collect();
    assert_eq!(listed, ids);
    assert!(first.iter().all(|m| m.role == Role::Owner));
}

async fn sending_to_a_1000_member_group_is_one_transaction<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let owner = uid("owner");
    let members: Vec<String> = (0..999).map(|i| uid(&format!("m{i}"))).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = group(&store, &owner, &refs).await;
    let mut took = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let sent = store
            .send(&text(&g, &owner, &format!("k{i}"), "to everyone"))
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(sent.deliveries.len(), 1000);
    }
    took.sort();
    println!(
        "send to 1,000 members: p50 {:?}, p90 {:?}, max {:?}",
        took[25], took[45], took[49]
    );
    let items = drain(&store, &members[500], "d", 500).await;
    assert_eq!(seqs_of(&items, &g), (1..=51).collect::<Vec<u64>>());
}

async fn a_group_commit_answers_each_send_on_its_own<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, both, stranger) = (uid("owner"), uid("both"), uid("stranger"));
    let a = group(&store, &owner, &[&both]).await;
    let b = group(&store, &owner, &[&both]).await;
    let stored = store.send(&text(&a, &owner, "stored", "before")).await.unwrap();
    drain(&store, &both, "phone", 100).await;
    let batch = vec![
        text(&a, &owner, "a1", "one"),
        text(&b, &both, "b1", "two"),
        text(&a, &stranger, "x", "not a member"),
        text(&a, &both, "a2", "three"),
        text(&a, &owner, "a1", "one"), // the same key again, same content: a retry
        text(&a, &owner, "a1", "other content"), // the same key, other content
        text(&a, &owner, "stored", "before"), // a retry of a stored message
        text(&b, &owner, "empty", ""),
        text(&b, &owner, "b2", "four"),
    ];
    let sent = store.send_batch(&batch).await.unwrap();
    let answers = sent.answers;
    assert_eq!(answers.len(), batch.len());
    let seq = |i: usize| answers[i].as_ref().unwrap().message.seq;
    let last_before = stored.message.seq;
    assert_eq!(
        (seq(0), seq(3)),
        (last_before + 1, last_before + 2),
        "consecutive in batch order"
    );
    assert_eq!((seq(1), seq(8)), (2, 3), "group b: after its creation event");
    refused!(&answers[2], PermissionDenied);
    assert!(answers[4].as_ref().unwrap().duplicate && seq(4) == seq(0));
    refused!(&answers[5], AlreadyExists);
    assert!(answers[6].as_ref().unwrap().duplicate && seq(6) == last_before);
    refused!(&answers[7], InvalidArgument);
    assert!(!answers[0].as_ref().unwrap().duplicate);
    // One dispatch per group, every member with its head after the commit.
    let groups: Vec<&str> = sent.dispatched.iter().map(|d| d.group_id.as_str()).collect();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort();
    assert_eq!(groups, expected);
    assert!(
        sent.dispatched
            .iter()
            .all(|d| d.messages.len() == 2 && d.deliveries.len() == 2)
    );
    // The member of both groups finds all four, in per-group order, at
    // consecutive mailbox positions.
    let items = drain(&store, &both, "phone", 100).await;
    assert_eq!(seqs_of(&items, &a), vec![seq(0), seq(3)]);
    assert_eq!(seqs_of(&items, &b), vec![seq(1), seq(8)]);
    let positions: Vec<u64> = items.iter().map(|i| i.mailbox_seq).collect();
    let first = positions[0];
    assert_eq!(positions, (first..first + 4).collect::<Vec<u64>>());
    let heads: Vec<u64> = sent
        .dispatched
        .iter()
        .flat_map(|d| d.deliveries.iter().filter(|x| x.user_id == both).map(|x| x.mailbox_seq))
        .collect();
    assert_eq!(heads.iter().max(), Some(&(first + 3)), "the notify names the head");
    // The senders' read positions moved to their own last messages.
    let reads = store.read_positions(&owner, &a).await.unwrap();
    let read_of = |u: &str| reads.iter().find(|r| r.user_id == u).unwrap().read_seq;
    assert_eq!((read_of(&owner), read_of(&both)), (seq(0), seq(3)));
}

async fn pages_cut_through_a_commit_of_many_messages<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, member) = (uid("owner"), uid("member"));
    let g = group(&store, &owner, &[&member]).await;
    let batch: Vec<NewMessage> = (0..10).map(|i| text(&g, &owner, &format!("k{i}"), "x")).collect();
    store.send_batch(&batch).await.unwrap();
    // Pages of 3 cut the commit's one mailbox row into 3 + 3 + 3 + 2.
    let mut sizes = Vec::new();
    let mut items = Vec::new();
    loop {
        let page = store.pull(&member, "phone", Position::ACKED, 3).await.unwrap();
        sizes.push(page.items.len());
        if let Some(last) = page.items.last() {
            store.ack(&member, "phone", last.mailbox_seq).await.unwrap();
        }
        items.extend(page.items);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(sizes, vec![3, 3, 3, 2]);
    assert_eq!(seqs_of(&items, &g), (1..=11).collect::<Vec<u64>>());
    // From any position inside it, exactly what follows.
    let from = items[5].mailbox_seq;
    let page = store.pull(&member, "tablet", Position::after(from), 100).await.unwrap();
    assert_eq!(
        page.items.iter().map(|i| i.message.seq).collect::<Vec<u64>>(),
        (7..=11).collect::<Vec<u64>>()
    );
    assert_eq!(page.items[0].mailbox_seq, from + 1);
}

async fn a_page_of_large_bodies_is_cut_by_bytes<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, member) = (uid("owner"), uid("member"));
    let g = group(&store, &owner, &[&member]).await;
    let big = "x".repeat(64 * 1024);
    let batch: Vec<NewMessage> = (0..40).map(|i| text(&g, &owner, &format!("big{i}"), &big)).collect();
    store.send_batch(&batch).await.unwrap();
    let page = store.pull(&member, "phone", Position::ACKED, 100).await.unwrap();
    let bytes: usize = page.items.iter().map(|i| i.message.body.len()).sum();
    assert!(page.has_more, "cut by bytes, not by count");
    assert!(
        bytes <= 2 * 1024 * 1024 && page.items.len() >= 20,
        "{} items, {bytes} bytes",
        page.items.len()
    );
    let all = drain(&store, &member, "phone", 100).await;
    assert_eq!(
        all.len(),
        41,
        "everything arrives, in more pages (the first was not acked)"
    );
    let history = store.history(&member, &g, None, 500).await.unwrap();
    assert!(history.has_more && history.messages.len() < 41);
    // A NUL in a text field is refused on its own; its batch goes through.
    let mut nul = text(&g, &owner, "k\0", "x");
    nul.client_message_id = "k\0".into();
    let sent = store.send_batch(&[nul, text(&g, &owner, "fine", "x")]).await.unwrap();
    refused!(&sent.answers[0], InvalidArgument);
    assert!(sent.answers[1].is_ok());
}

async fn an_ack_rides_on_the_next_pull<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, member) = (uid("owner"), uid("member"));
    let g = group(&store, &owner, &[&member]).await;
    for i in 0..5 {
        store.send(&text(&g, &owner, &format!("k{i}"), "x")).await.unwrap();
    }
    let first = store.pull(&member, "phone", Position::ACKED, 2).await.unwrap();
    let fetched = first.items.last().unwrap().mailbox_seq;
    assert_eq!(first.cursor.ack_seq, first.cursor.begin_seq - 1, "nothing acked yet");
    // Acking the page before and pulling the next: one call.
    let from = Position {
        after: None,
        ack: Some(fetched),
    };
    let second = store.pull(&member, "phone", from, 2).await.unwrap();
    assert_eq!(second.cursor.ack_seq, fetched);
    assert_eq!(second.items[0].mailbox_seq, fetched + 1, "starts after the new ack");
    // An ack above what was fetched is refused, and so is 0.
    let beyond = Position {
        after: None,
        ack: Some(second.cursor.fetch_seq + 1),
    };
    let message = refused!(store.pull(&member, "phone", beyond, 2).await, OutOfRange);
    assert!(message.contains("fetch cursor"), "{message}");
    let zero = Position {
        after: None,
        ack: Some(0),
    };
    refused!(store.pull(&member, "phone", zero, 2).await, InvalidArgument);
    // An ack on an empty page still lands.
    let after_second = second.items.last().unwrap().mailbox_seq;
    let rest = store
        .pull(&member, "phone", Position::after(after_second), 100)
        .await
        .unwrap();
    let last = rest.items.last().unwrap().mailbox_seq;
    assert!(rest.cursor.ack_seq < last);
    let settled = Position {
        after: None,
        ack: Some(last),
    };
    let empty = store.pull(&member, "phone", settled, 10).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.cursor.ack_seq, last);
}

async fn an_encrypted_group_takes_ciphertext_only<S: GroupStore>(open: impl AsyncFn(GroupStoreConfig) -> S) {
    let store = open(config()).await;
    let (owner, member) = (uid("owner"), uid("member"));
    let g = store
        .create_group(&NewGroup {
            owner_user_id: owner.clone(),
            name: "secret".into(),
            member_user_ids: vec![member.clone()],
            end_to_end_encrypted: true,
            client_key: String::new(),
        })
        .await
        .unwrap()
        .group
        .group
        .group_id;
    let message = refused!(store.send(&text(&g, &owner, "plain", "hello")).await, InvalidArgument);
    assert!(message.contains("end-to-end encrypted"), "{message}");
    let mut sealed = text(&g, &owner, "sealed", "\u{1}opaque");
    sealed.content_type = "application/vnd.hubbub.ciphertext+olm".into();
    let sent = store.send(&sealed).await.unwrap();
    let items = drain(&store, &member, "phone", 10).await;
    assert_eq!(items.last().unwrap().message.seq, sent.message.seq);
    assert_eq!(items.last().unwrap().message.content_type, sealed.content_type);
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(async |config| super::postgres(config).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("group.sqlite3");
                    super::$scenario(async |config| {
                        super::SqliteGroupStore::open(&path, &config).await.unwrap()
                    })
                    .await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_retry_answers_the_original_and_other_content_is_refused,
    concurrent_senders_get_one_gap_free_sequence,
    two_instances_send_into_one_group_gap_free,
    three_devices_each_get_everything_once_across_reconnects,
    an_offline_member_catches_up_on_10000_messages_in_pages,
    removal_stops_delivery_and_addition_shows_history_from_joining,
    every_permission_refusal_has_its_precise_error,
    read_positions_and_receipts_follow_mark_read,
    groups_are_listed_in_pages_by_group_id,
    sending_to_a_1000_member_group_is_one_transaction,
    a_group_commit_answers_each_send_on_its_own,
    pages_cut_through_a_commit_of_many_messages,
    an_encrypted_group_takes_ciphertext_only,
    an_ack_rides_on_the_next_pull,
    a_page_of_large_bodies_is_cut_by_bytes,
);

/// Replicas starting at once on an empty database: sqlx's migrator takes an
/// advisory lock, so exactly one applies the schema and all start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_migrate_an_empty_database_at_once() {
    use sqlx::Connection;
    let url = database_url();
    let name = format!("hbmigrate_{:x}", rand::random::<u32>());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let fresh = format!("{base}/{name}");
    let replicas: Vec<_> = (0..4)
        .map(|_| {
            let fresh = fresh.clone();
            tokio::spawn(async move { PgGroupStore::connect(&fresh, &config()).await.map(drop) })
        })
        .collect();
    for replica in replicas {
        replica.await.unwrap().expect("every replica starts");
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
