//! One conformance suite for every `KeyStore` backend (end-to-end key
//! distribution): PostgreSQL for real (`DATABASE_URL`, from
//! `scripts/test.sh`) and SQLite in a temporary file.

use std::sync::Arc;
use svc_group::config::GroupStoreConfig;
use svc_group::store::keys::{DeviceKeys, KeyStore, MAX_ONE_TIME_KEYS, OneTimeKey};
use svc_group::store::{GroupStore, NewGroup, StoreError, postgres::PgGroupStore, sqlite::SqliteGroupStore};

fn uid(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() >> 16)
}

fn device(identity: &str, prekey: &str) -> DeviceKeys {
    DeviceKeys {
        identity_key: identity.as_bytes().to_vec(),
        signed_prekey: prekey.as_bytes().to_vec(),
        signed_prekey_signature: b"signature".to_vec(),
    }
}

fn one_time(ids: std::ops::Range<u32>) -> Vec<OneTimeKey> {
    ids.map(|i| OneTimeKey {
        key_id: format!("k{i:03}"),
        public_key: format!("otk-{i}").into_bytes(),
    })
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

async fn members_fetch_the_devices_of_a_group_claiming_one_time_keys<S: GroupStore + KeyStore>(store: S) {
    let store = Arc::new(store);
    let (alice, bob, carol, stranger) = (uid("alice"), uid("bob"), uid("carol"), uid("stranger"));
    let g = store
        .create_group(&NewGroup {
            owner_user_id: alice.clone(),
            name: "sealed".into(),
            member_user_ids: vec![bob.clone(), carol.clone()],
            end_to_end_encrypted: true,
            client_key: String::new(),
        })
        .await
        .unwrap()
        .group
        .group
        .group_id;
    let everyone = vec![alice.clone(), bob.clone(), carol.clone(), stranger.clone()];
    assert_eq!(
        store
            .upload_keys(&bob, "phone", &device("bob-id", "p1"), &one_time(0..3))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .upload_keys(&bob, "phone", &device("bob-id", "p1"), &one_time(0..3))
            .await
            .unwrap(),
        3,
        "a retried upload adds nothing"
    );
    assert_eq!(
        store
            .upload_keys(&bob, "laptop", &device("bob-laptop", "l1"), &one_time(0..1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .upload_keys(&alice, "phone", &device("alice-id", "a1"), &[])
            .await
            .unwrap(),
        0
    );

    // Alice's phone gets bob's two devices (not itself; carol has no keys).
    let first = store.claim_group_keys(&alice, "phone", &g, &everyone).await.unwrap();
    let names: Vec<(String, String)> = first.iter().map(|b| (b.user_id.clone(), b.device_id.clone())).collect();
    assert_eq!(
        names,
        vec![(bob.clone(), "laptop".into()), (bob.clone(), "phone".into())]
    );
    assert_eq!(first[1].keys.identity_key, b"bob-id");
    assert!(first.iter().all(|b| b.one_time_key.is_some()));
    // Each one-time key is handed out once.
    let second = store.claim_group_keys(&alice, "phone", &g, &everyone).await.unwrap();
    assert_eq!(
        second[0].one_time_key, None,
        "the laptop's only key is gone: the signed prekey remains"
    );
    let (a, b) = (
        first[1].one_time_key.clone().unwrap(),
        second[1].one_time_key.clone().unwrap(),
    );
    assert_ne!(a.key_id, b.key_id);
    // A retried upload of the laptop's claimed key does not bring it back.
    assert_eq!(
        store
            .upload_keys(&bob, "laptop", &device("bob-laptop", "l1"), &one_time(0..1))
            .await
            .unwrap(),
        0
    );
    let third = store.claim_group_keys(&alice, "phone", &g, &everyone).await.unwrap();
    assert_eq!(third[0].one_time_key, None, "a claimed key is handed out once, ever");
    // Another device of alice's sees alice's phone.
    let tablet = store.claim_group_keys(&alice, "tablet", &g, &everyone).await.unwrap();
    assert!(tablet.iter().any(|b| b.user_id == alice && b.device_id == "phone"));

    // Two members claiming at once never get the same key.
    store
        .upload_keys(&carol, "phone", &device("carol-id", "c1"), &[])
        .await
        .unwrap();
    store
        .upload_keys(&bob, "phone", &device("bob-id", "p1"), &one_time(10..30))
        .await
        .unwrap();
    let claims: Vec<_> = (0..2)
        .map(|i| {
            let (store, g, who) = (store.clone(), g.clone(), [alice.clone(), carol.clone()][i].clone());
            let everyone = everyone.clone();
            tokio::spawn(async move { store.claim_group_keys(&who, "phone", &g, &everyone).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for claim in claims {
        let bundles = claim.await.unwrap();
        let bob_phone = bundles
            .iter()
            .find(|b| b.user_id == bob && b.device_id == "phone")
            .unwrap();
        got.push(bob_phone.one_time_key.clone().unwrap().key_id);
    }
    assert_ne!(got[0], got[1]);

    // The signed prekey rotates; the identity key never changes.
    store
        .upload_keys(&bob, "phone", &device("bob-id", "p2"), &[])
        .await
        .unwrap();
    let rotated = store.claim_group_keys(&alice, "phone", &g, &everyone).await.unwrap();
    assert_eq!(
        rotated
            .iter()
            .find(|b| b.device_id == "phone" && b.user_id == bob)
            .unwrap()
            .keys
            .signed_prekey,
        b"p2"
    );
    let message = refused!(
        store.upload_keys(&bob, "phone", &device("other-id", "p3"), &[]).await,
        FailedPrecondition
    );
    assert!(message.contains("identity key"), "{message}");

    // Only the named members, at most 50 of them.
    let only_alice = store
        .claim_group_keys(&carol, "phone", &g, std::slice::from_ref(&alice))
        .await
        .unwrap();
    assert!(only_alice.iter().all(|b| b.user_id == alice) && !only_alice.is_empty());
    let many: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    refused!(
        store.claim_group_keys(&alice, "phone", &g, &many).await,
        InvalidArgument
    );
    refused!(store.claim_group_keys(&alice, "phone", &g, &[]).await, InvalidArgument);

    // Refusals.
    refused!(
        store.claim_group_keys(&stranger, "phone", &g, &everyone).await,
        PermissionDenied
    );
    refused!(
        store
            .claim_group_keys(&alice, "phone", "no-such-group", &everyone)
            .await,
        NotFound
    );
    refused!(
        store.upload_keys(&bob, "tablet", &device("", "p"), &[]).await,
        InvalidArgument
    );
    let too_many = one_time(0..MAX_ONE_TIME_KEYS as u32 + 1);
    refused!(
        store.upload_keys(&bob, "tablet", &device("t", "p"), &too_many).await,
        ResourceExhausted
    );
    let near_full = one_time(100..100 + MAX_ONE_TIME_KEYS as u32 - 10);
    let message = refused!(
        store
            .upload_keys(&bob, "phone", &device("bob-id", "p2"), &near_full)
            .await,
        ResourceExhausted
    );
    assert!(message.contains("one-time keys"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_members_fetch_the_devices_of_a_group_claiming_one_time_keys() {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL for the key suite: run scripts/test.sh, which starts one");
    let store = PgGroupStore::connect(&url, &GroupStoreConfig::default()).await.unwrap();
    members_fetch_the_devices_of_a_group_claiming_one_time_keys(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_members_fetch_the_devices_of_a_group_claiming_one_time_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteGroupStore::open(&dir.path().join("group.sqlite3"), &GroupStoreConfig::default())
        .await
        .unwrap();
    members_fetch_the_devices_of_a_group_claiming_one_time_keys(store).await;
}
