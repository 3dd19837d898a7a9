//! A store's PostgreSQL schema at the binary's version: brought up at start
//! (sqlx's migrator holds an advisory lock, so replicas starting at once do
//! not race), or, where the deployment runs `hubbub migrate` first (the
//! chart's pre-install/pre-upgrade Job, with `migrate_on_start = false`),
//! only checked, so a replica never serves on a schema older than its code.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// What a replica does with the schema at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Applies the migrations.
    Migrate,
    /// Checks they were applied, waiting up to this long for `hubbub
    /// migrate` to apply them (a first install starts the roles and the
    /// migration Job together).
    Check(std::time::Duration),
}

impl Schema {
    /// From a store's `migrate_on_start` and `schema_wait_secs`.
    pub fn from_settings(migrate_on_start: bool, wait_secs: u64) -> Self {
        if migrate_on_start {
            Schema::Migrate
        } else {
            Schema::Check(std::time::Duration::from_secs(wait_secs))
        }
    }
}

/// Applies `migrator`'s migrations (its history in `table`), or checks that
/// the newest one was applied, as `schema` says.
pub async fn bring_up(pool: &PgPool, migrator: &Migrator, table: &str, schema: Schema) -> Result<(), MigrateError> {
    let wait = match schema {
        Schema::Migrate => return migrator.run(pool).await,
        Schema::Check(wait) => wait,
    };
    let wanted = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        let applied = applied(pool, table).await?;
        if applied >= wanted {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrateError::Source(
                format!(
                    "the schema ({table}) is at migration {applied} and this binary needs {wanted}: \
                     run `hubbub migrate` first, or set migrate_on_start = true"
                )
                .into(),
            ));
        }
        if !told {
            tracing::warn!(
                table,
                applied,
                wanted,
                "waiting for `hubbub migrate` to bring the schema up to date"
            );
            told = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The newest migration applied; 0 for a schema never migrated.
async fn applied(pool: &PgPool, table: &str) -> Result<i64, MigrateError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(0);
    }
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(max(version), 0) FROM {table} WHERE success"
    )))
    .fetch_one(pool)
    .await?)
}
