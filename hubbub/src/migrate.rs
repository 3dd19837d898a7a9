//! `hubbub migrate`: the group and gift stores' PostgreSQL schemas brought
//! to this binary's version, once, before the roles start (the Helm chart's
//! pre-install/pre-upgrade Job), so replicas never race to migrate.

use crate::config::Config;
use anyhow::Context;

/// Migrates every store with a `database_url`; says what it did.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let mut migrated = 0;
    if let Some(url) = &config.group.store.database_url {
        let store = svc_group::store::postgres::PgGroupStore::connect(
            url,
            &svc_group::config::GroupStoreConfig {
                migrate_on_start: true,
                max_connections: 1,
                ..config.group.store.clone()
            },
        )
        .await
        .context("group store (group.store.database_url)")?;
        drop(store);
        println!("group store: schema up to date");
        migrated += 1;
    }
    if let Some(url) = &config.gift.store.database_url {
        let store = svc_gift::store::postgres::PgGiftStore::connect(url, 1, Default::default())
            .await
            .context("gift store (gift.store.database_url)")?;
        drop(store);
        println!("gift store: schema up to date");
        migrated += 1;
    }
    if migrated == 0 {
        println!("no store has a database_url: nothing to migrate (SQLite stores migrate themselves)");
    }
    Ok(())
}
