//! PostgreSQL: retention (mailbox trimming, message expiry). One sweep at a
//! time across replicas: each step first takes a transaction-level
//! advisory lock, and a replica that cannot get it skips the round.

use super::postgres::PgGroupStore;
use super::*;

/// Advisory lock key of the retention sweep (any constant shared by the
/// replicas; "hbretent" in ASCII).
const SWEEP_LOCK: i64 = 0x6862_7265_7465_6e74;

/// What one trim step did.
#[derive(sqlx::FromRow)]
struct TrimRow {
    last_user: Option<String>,
    batch: i64,
    users: i64,
    rows: i64,
}

impl PgGroupStore {
    pub(super) async fn trim(
        &self,
        after: Option<&str>,
        users: u32,
        policy: Retention,
    ) -> StoreResult<Option<TrimStep>> {
        let mut tx = self.pool.begin().await?;
        if !Self::sweep_lock(&mut tx).await? {
            return Ok(None);
        }
        // Head rows locked in user order (the commits' order), so the sweep
        // and a commit never deadlock. For each user, the first run that
        // must stay (young, or unacked and not past `any_before`) ends the
        // prefix that goes; a run whose message expired counts as old.
        // Work per user is what it removes plus one probe.
        let row: TrimRow = sqlx::query_as(
            "WITH u AS (SELECT user_id, trimmed_seq, head_seq FROM mailbox_heads \
               WHERE user_id > $1 ORDER BY user_id LIMIT $2 FOR UPDATE), \
             a AS (SELECT u.*, LEAST(u.head_seq, COALESCE((SELECT MIN(d.ack_seq) FROM device_cursors d \
               WHERE d.user_id = u.user_id), u.head_seq)) AS acked FROM u), \
             cut AS MATERIALIZED (SELECT a.user_id, a.trimmed_seq, COALESCE((SELECT r.end_seq - r.n FROM mailbox_runs r \
               LEFT JOIN group_messages m ON m.group_id = r.group_id AND m.seq = r.last_seq \
               WHERE r.user_id = a.user_id AND r.end_seq > a.trimmed_seq \
                 AND NOT (COALESCE(m.sent_at_ms, 0) < $4 \
                   OR (r.end_seq <= a.acked AND COALESCE(m.sent_at_ms, 0) < $3)) \
               ORDER BY r.end_seq LIMIT 1), a.head_seq) AS upto FROM a), \
             gone AS (DELETE FROM mailbox_runs r USING cut c WHERE c.upto > c.trimmed_seq \
               AND r.user_id = c.user_id AND r.end_seq > c.trimmed_seq AND r.end_seq <= c.upto RETURNING 1), \
             moved AS (UPDATE mailbox_heads h SET trimmed_seq = c.upto FROM cut c \
               WHERE h.user_id = c.user_id AND c.upto > c.trimmed_seq RETURNING 1) \
             SELECT (SELECT MAX(user_id) FROM u) AS last_user, (SELECT COUNT(*) FROM u) AS batch, \
               (SELECT COUNT(*) FROM moved) AS users, (SELECT COUNT(*) FROM gone) AS rows",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(users.max(1)))
        .bind(policy.acked_before_ms)
        .bind(policy.any_before_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(TrimStep {
            next_after: row.last_user.filter(|_| row.batch >= i64::from(users.max(1))),
            users: row.users as u64,
            rows: row.rows as u64,
        }))
    }

    pub(super) async fn expire(&self, sent_before_ms: i64, limit: u32) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        if !Self::sweep_lock(&mut tx).await? {
            return Ok(None);
        }
        let deleted = sqlx::query(
            "DELETE FROM group_messages m USING (SELECT group_id, seq FROM group_messages \
               WHERE sent_at_ms < $1 ORDER BY sent_at_ms LIMIT $2) o \
             WHERE m.group_id = o.group_id AND m.seq = o.seq",
        )
        .bind(sent_before_ms)
        .bind(i64::from(limit.max(1)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(deleted))
    }

    async fn sweep_lock(conn: &mut sqlx::PgConnection) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut *conn)
            .await?)
    }
}
