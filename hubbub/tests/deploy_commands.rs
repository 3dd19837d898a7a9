//! What deployments run besides the roles: `--check-config` (the chart's
//! tests run it on every rendered configuration) and `hubbub migrate` (the
//! chart's hook Job), with replicas that only check the schema.

use sqlx::Connection;
use std::process::Command;
use svc_gift::store::postgres::PgGiftStore;
use svc_group::{config::GroupStoreConfig, store::postgres::PgGroupStore};

const BINARY: &str = env!("CARGO_BIN_EXE_hubbub");
const SECRETS: [(&str, &str); 2] = [
    ("HUBBUB_JWT_SECRET", "client-secret-of-at-least-32-bytes!!"),
    ("HUBBUB_INTERNAL_KEY", "internal-key-of-at-least-32-bytes!!!"),
];

fn hubbub(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BINARY)
        .args(args)
        .env_remove("HUBBUB_JWT_SECRET")
        .env_remove("HUBBUB_INTERNAL_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_says_what_a_role_would_listen_on_and_call_and_refuses_what_would_not_start() {
    let (code, out, err) = hubbub(
        &[
            "gateway",
            "--check-config",
            "--set",
            "gateway.listen=0.0.0.0:9000",
            "--set",
            "gateway.room_instances=[\"http://room-0.rooms:7701\"]",
        ],
        &SECRETS,
    );
    assert_eq!(code, 0, "{err}");
    let described: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(described["role"], "gateway");
    assert_eq!(described["listen"]["public"], "0.0.0.0:9000");
    assert_eq!(described["calls"]["room"][0], "http://room-0.rooms:7701");
    // A role without its secrets, a misspelled key, an address no role can dial.
    let (code, _, err) = hubbub(&["gateway", "--check-config"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("HUBBUB_INTERNAL_KEY"), "{err}");
    let (code, _, err) = hubbub(&["room", "--check-config", "--set", "room.listn=0.0.0.0:1"], &SECRETS);
    assert_eq!(code, 2);
    assert!(err.contains("listn"), "{err}");
    let (code, _, err) = hubbub(
        &[
            "gift",
            "--check-config",
            "--set",
            "gift.room_instances=[\"not an address\"]",
        ],
        &SECRETS,
    );
    assert_eq!(code, 2);
    assert!(err.contains("gift.room_instances"), "{err}");
    // Every role of `all`, one line each.
    let (code, out, err) = hubbub(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_brings_the_schemas_up_and_replicas_that_do_not_migrate_check_them() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL: run scripts/test.sh");
    let (base, _) = url.rsplit_once('/').unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let name = format!("hbmigrate_{:x}", rand::random::<u32>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let fresh = format!("{base}/{name}");
    let no_migrate = GroupStoreConfig {
        migrate_on_start: false,
        ..GroupStoreConfig::default()
    };
    // Before the migration, replicas that do not migrate refuse to start.
    let Err(refused) = PgGroupStore::connect(&fresh, &no_migrate).await else {
        panic!("a replica started on an empty schema");
    };
    assert!(refused.to_string().contains("hubbub migrate"), "{refused}");
    let check = hubbub_kit::schema::Schema::Check(std::time::Duration::ZERO);
    let Err(refused) = PgGiftStore::open(&fresh, 1, Default::default(), check).await else {
        panic!("a replica started on an empty schema");
    };
    assert!(refused.to_string().contains("hubbub migrate"), "{refused}");
    // A replica that waits for the schema starts once the migration ran.
    let waiting = {
        let fresh = fresh.clone();
        tokio::spawn(async move {
            let wait = hubbub_kit::schema::Schema::Check(std::time::Duration::from_secs(60));
            PgGiftStore::open(&fresh, 1, Default::default(), wait).await.map(drop)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits for the migration");
    let (code, out, err) = hubbub(
        &[
            "migrate",
            "--set",
            &format!("group.store.database_url={fresh:?}"),
            "--set",
            &format!("gift.store.database_url={fresh:?}"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("group store") && out.contains("gift store"), "{out}");
    waiting.await.unwrap().expect("the waiting replica starts");
    PgGroupStore::connect(&fresh, &no_migrate).await.unwrap();
    PgGiftStore::open(&fresh, 1, Default::default(), check).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
