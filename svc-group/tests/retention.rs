//! Retention, on both backends: mailbox trimming (acked, and past the
//! maximum age), message expiry, and what a device below either is told.
//! Retention sweeps the whole database, so each PostgreSQL scenario gets a
//! database of its own (dropped at the end), and each SQLite one a file.

use std::time::Duration;
use svc_group::config::{GroupStoreConfig, RetentionConfig};
use svc_group::metrics::GroupMetrics;
use svc_group::retention;
use svc_group::store::{
    GroupStore, NewGroup, NewMessage, Position, Retention, postgres::PgGroupStore, sqlite::SqliteGroupStore, unix_ms,
};
use tokio_util::sync::CancellationToken;

fn text(group_id: &str, sender: &str, key: &str) -> NewMessage {
    NewMessage {
        group_id: group_id.into(),
        sender_user_id: sender.into(),
        sender_device_id: "phone".into(),
        client_message_id: key.into(),
        content_type: "text/plain".into(),
        body: format!("body of {key}").into_bytes(),
    }
}

async fn group<S: GroupStore>(store: &S, owner: &str, members: &[&str]) -> String {
    let new = NewGroup {
        owner_user_id: owner.into(),
        name: "retention".into(),
        member_user_ids: members.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    };
    store.create_group(&new).await.unwrap().group.group.group_id
}

/// A moment strictly between what was sent before and what is sent after.
async fn moment() -> i64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = unix_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    t
}

/// Trims every user of a small database in one step.
async fn trim<S: GroupStore>(store: &S, policy: Retention) -> (u64, u64) {
    let step = store
        .trim_mailboxes(None, 1000, policy)
        .await
        .unwrap()
        .expect("no other sweeper");
    assert_eq!(step.next_after, None, "one batch covers the test's users");
    (step.users, step.rows)
}

async fn acked_entries_are_trimmed_and_a_device_below_is_told<S: GroupStore>(store: S) {
    let g = group(&store, "owner", &["member"]).await;
    for i in 0..5 {
        store.send(&text(&g, "owner", &format!("k{i}"))).await.unwrap();
    }
    // The member's mailbox: the creation event and five messages.
    let phone = store.pull("member", "phone", Position::ACKED, 100).await.unwrap();
    assert_eq!(phone.items.len(), 6);
    store.ack("member", "phone", 6).await.unwrap();
    let tablet = store.pull("member", "tablet", Position::ACKED, 3).await.unwrap();
    store.ack("member", "tablet", 3).await.unwrap();
    assert_eq!(tablet.trimmed_mailbox_seq, 0);

    // Nothing is old enough yet: nothing goes.
    let young = Retention {
        acked_before_ms: unix_ms() - 60_000,
        any_before_ms: 0,
    };
    assert_eq!(trim(&store, young).await, (0, 0));
    // Acked by every device: up to the tablet's ack, for the member; all of
    // the owner's (it has no device: nothing waits for it).
    let acked = Retention {
        acked_before_ms: unix_ms() + 1_000,
        any_before_ms: 0,
    };
    let (users, rows) = trim(&store, acked).await;
    assert_eq!(users, 2);
    assert_eq!(rows, 3 + 6);
    assert_eq!(trim(&store, acked).await, (0, 0), "a second pass finds nothing");

    // The tablet resumes after its ack, unaffected.
    let tablet = store.pull("member", "tablet", Position::ACKED, 100).await.unwrap();
    assert_eq!(tablet.trimmed_mailbox_seq, 0);
    assert_eq!(tablet.items.first().unwrap().mailbox_seq, 4);
    // The phone asking again from the start is told where the mailbox
    // resumes, and gets what is left.
    let again = store.pull("member", "phone", Position::after(0), 100).await.unwrap();
    assert_eq!(again.trimmed_mailbox_seq, 3);
    let positions: Vec<u64> = again.items.iter().map(|i| i.mailbox_seq).collect();
    assert_eq!(positions, vec![4, 5, 6]);
    // A new device starts past the trim.
    let laptop = store.cursor("member", "laptop").await.unwrap().0;
    assert_eq!(laptop.begin_seq, 4);
    // History is the group's, untouched by mailbox trimming.
    let history = store.history("member", &g, None, 100).await.unwrap();
    assert_eq!(history.messages.len(), 6);
    assert_eq!(history.expired_through_seq, 0);

    // Past the maximum age, unacked entries go too; the tablet (acked to
    // 3, fetched to 6) is told on every pull until it acks past the trim.
    let any = Retention {
        acked_before_ms: unix_ms() + 1_000,
        any_before_ms: unix_ms() + 1_000,
    };
    assert_eq!(trim(&store, any).await, (1, 3));
    for _ in 0..2 {
        let told = store.pull("member", "tablet", Position::ACKED, 100).await.unwrap();
        assert_eq!(told.trimmed_mailbox_seq, 6);
        assert!(told.items.is_empty());
        assert_eq!(told.cursor.ack_seq, 3, "being told is not acking");
        assert_eq!(told.cursor.fetch_seq, 6);
    }
    store.ack("member", "tablet", 6).await.unwrap();
    let settled = store.pull("member", "tablet", Position::ACKED, 100).await.unwrap();
    assert_eq!(settled.trimmed_mailbox_seq, 0);
    // New messages arrive after the trim as usual.
    store.send(&text(&g, "owner", "later")).await.unwrap();
    let later = store.pull("member", "tablet", Position::ACKED, 100).await.unwrap();
    assert_eq!(later.items.len(), 1);
    assert_eq!(later.items[0].mailbox_seq, 7);
    assert_eq!(later.items[0].message.body, b"body of later");
}

async fn expired_messages_keep_their_positions_and_history_says_where_it_ends<S: GroupStore>(store: S) {
    let g = group(&store, "owner", &["member"]).await;
    for i in 0..3 {
        store.send(&text(&g, "owner", &format!("old{i}"))).await.unwrap();
    }
    let t = moment().await;
    for i in 0..2 {
        store.send(&text(&g, "owner", &format!("new{i}"))).await.unwrap();
    }
    // The creation event and three messages are older than t.
    assert_eq!(store.expire_messages(t, 1000).await.unwrap(), Some(4));
    assert_eq!(store.expire_messages(t, 1000).await.unwrap(), Some(0));

    // The member never pulled: every position is there, the expired ones
    // as placeholders naming their group and seq, in order.
    let first = store.pull("member", "phone", Position::ACKED, 2).await.unwrap();
    let got: Vec<(u64, u64, bool)> = first
        .items
        .iter()
        .map(|i| (i.mailbox_seq, i.message.seq, i.expired))
        .collect();
    assert_eq!(got, vec![(1, 1, true), (2, 2, true)]);
    assert!(first.has_more);
    assert_eq!(first.items[0].message.group_id, g);
    assert!(first.items[0].message.body.is_empty());
    let rest = store.pull("member", "phone", Position::after(2), 100).await.unwrap();
    let got: Vec<(u64, bool)> = rest.items.iter().map(|i| (i.message.seq, i.expired)).collect();
    assert_eq!(got, vec![(3, true), (4, true), (5, false), (6, false)]);
    assert_eq!(rest.items[2].message.body, b"body of new0");
    assert!(!rest.has_more);

    // History ends above what expired, and says so.
    let history = store.history("owner", &g, None, 100).await.unwrap();
    let seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![6, 5]);
    assert_eq!(history.expired_through_seq, 4);

    // Mailbox entries of expired messages are old: a trim past that age
    // takes them, acked or not, and a device asking below is told; a new
    // device simply starts past the trim.
    let past = Retention {
        acked_before_ms: t,
        any_before_ms: t,
    };
    let (users, _) = trim(&store, past).await;
    assert_eq!(users, 2);
    let told = store.pull("member", "phone", Position::after(0), 100).await.unwrap();
    assert_eq!(told.trimmed_mailbox_seq, 4);
    let seqs: Vec<u64> = told.items.iter().map(|i| i.message.seq).collect();
    assert_eq!(seqs, vec![5, 6]);
    let tablet = store.pull("member", "tablet", Position::ACKED, 100).await.unwrap();
    assert_eq!(tablet.trimmed_mailbox_seq, 0);
    assert_eq!(tablet.cursor.begin_seq, 5);
    assert_eq!(tablet.items.len(), 2);
}

async fn the_sweep_covers_every_user_in_batches_while_sends_go_on<S: GroupStore>(store: S) {
    let members: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = group(&store, "owner", &refs).await;
    for i in 0..4 {
        store.send(&text(&g, "owner", &format!("k{i}"))).await.unwrap();
    }
    // Every member's phone has fetched everything and acked nothing.
    for member in &members {
        assert_eq!(
            store
                .pull(member, "phone", Position::ACKED, 100)
                .await
                .unwrap()
                .items
                .len(),
            5
        );
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let config = RetentionConfig {
        message_ttl_secs: 1,
        sweep_users: 3,
        sweep_messages: 2,
        ..RetentionConfig::default()
    };
    // Sends keep committing into the same mailboxes while the sweep runs:
    // neither waits forever on the other, and nothing new is trimmed.
    let store = std::sync::Arc::new(store);
    let sending = {
        let store = store.clone();
        let g = g.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                store.send(&text(&g, "owner", &format!("during{i}"))).await.unwrap();
            }
        })
    };
    let swept = retention::sweep(&*store, &config, &GroupMetrics::default(), &CancellationToken::new())
        .await
        .unwrap();
    sending.await.unwrap();
    assert_eq!(swept.users, 8, "every member and the owner, over three batches");
    assert_eq!(swept.messages, 5, "the creation event and four messages, two at a time");
    for member in &members {
        let pulled = store.pull(member, "phone", Position::ACKED, 100).await.unwrap();
        assert_eq!(pulled.trimmed_mailbox_seq, 5, "{member}: told, although it never acked");
        let bodies: Vec<&[u8]> = pulled.items.iter().map(|i| i.message.body.as_slice()).collect();
        assert_eq!(bodies.len(), 20, "{member}: every send made during the sweep");
        assert!(pulled.items.iter().all(|i| !i.expired), "{member}");
    }
}

/// A PostgreSQL database of its own, dropped when the scenario ends.
async fn on_own_postgres<F: AsyncFnOnce(PgGroupStore)>(scenario: F) {
    use sqlx::Connection;
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL: run scripts/test.sh, which starts one");
    let name = format!("hbretention_{:x}", rand::random::<u32>());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let store = PgGroupStore::connect(&format!("{base}/{name}"), &GroupStoreConfig::default())
        .await
        .unwrap();
    scenario(store).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::on_own_postgres(super::$scenario).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("group.sqlite3");
                    let store = super::SqliteGroupStore::open(&path, &super::GroupStoreConfig::default())
                        .await
                        .unwrap();
                    super::$scenario(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    acked_entries_are_trimmed_and_a_device_below_is_told,
    expired_messages_keep_their_positions_and_history_says_where_it_ends,
    the_sweep_covers_every_user_in_batches_while_sends_go_on,
);
