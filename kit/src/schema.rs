//! A store's PostgreSQL schema at the binary's version: brought up at start
//! (sqlx's migrator holds an advisory lock, so replicas starting at once do
//! not race), or, where the deployment runs `hubbub migrate` first (the
//! chart's pre-install/pre-upgrade Job, with `migrate_on_start = false`),
//! only checked, so a replica never serves on a schema older than its code.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// Applies `migrator`'s migrations (its history in `table`) when `apply`,
/// else checks that the newest one was applied.
pub async fn bring_up(pool: &PgPool, migrator: &Migrator, table: &str, apply: bool) -> Result<(), MigrateError> {
    if apply {
        return migrator.run(pool).await;
    }
    let wanted = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    // A missing history table is a schema never migrated: version 0.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await?;
    let applied: i64 = if exists {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(max(version), 0) FROM {table} WHERE success"
        )))
        .fetch_one(pool)
        .await?
    } else {
        0
    };
    if applied < wanted {
        return Err(MigrateError::Source(
            format!(
                "the schema ({table}) is at migration {applied} and this binary needs {wanted}: \
                 run `hubbub migrate` first, or set migrate_on_start = true"
            )
            .into(),
        ));
    }
    Ok(())
}
