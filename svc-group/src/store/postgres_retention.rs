//! PostgreSQL: retention (mailbox trimming, message expiry). One sweep at a
//! time across replicas: each step first takes a transaction-level
//! advisory lock, and a replica that cannot get it skips the round.

use super::postgres::PgGroupStore;
use super::rules::MAX_RUNS_PER_STEP;
use super::*;

/// Advisory lock key of the retention sweep (any constant shared by the
/// replicas; "hbretent" in ASCII).
const SWEEP_LOCK: i64 = 0x6862_7265_7465_6e74;

/// The cut of each user of the CTE `u` (user_id, trimmed_seq, head_seq) as
/// `cut` (user_id, trimmed_seq, upto). Walking up from the user's trim, the
/// first run that must stay (young, or unacked and not past `$4`) ends the
/// prefix that may go; a run whose message expired counts as old; at most
/// `$5` runs per user per step. Work per user: what it removes plus one
/// probe.
macro_rules! trim_cuts {
    () => {
        "a AS (SELECT u.*, LEAST(u.head_seq, COALESCE((SELECT MIN(d.ack_seq) FROM device_cursors d \
           WHERE d.user_id = u.user_id), u.head_seq)) AS acked FROM u), \
         cut AS MATERIALIZED (SELECT a.user_id, a.trimmed_seq, LEAST( \
           COALESCE((SELECT r.end_seq - r.n FROM mailbox_runs r \
             LEFT JOIN group_messages m ON m.group_id = r.group_id AND m.seq = r.last_seq \
             WHERE r.user_id = a.user_id AND r.end_seq > a.trimmed_seq \
               AND NOT (COALESCE(m.sent_at_ms, 0) < $4 \
                 OR (r.end_seq <= a.acked AND COALESCE(m.sent_at_ms, 0) < $3)) \
             ORDER BY r.end_seq LIMIT 1), a.head_seq), \
           COALESCE((SELECT r.end_seq FROM mailbox_runs r WHERE r.user_id = a.user_id \
             AND r.end_seq > a.trimmed_seq ORDER BY r.end_seq LIMIT 1 OFFSET $5 - 1), a.head_seq)) AS upto FROM a) "
    };
}

/// A user of a trim batch and how far it may be trimmed.
#[derive(sqlx::FromRow)]
struct CutRow {
    user_id: String,
    trimmed_seq: i64,
    upto: i64,
}

impl PgGroupStore {
    /// Three statements: find the batch's users with something to trim (no
    /// lock: most users have nothing, and locking them all would write every
    /// head row on every sweep); lock those heads in user order (the
    /// commits' order, so no deadlock); then, in a statement whose snapshot
    /// is younger than the locks, so that every commit into these users has
    /// either landed or waits, compute the cuts again and apply them. (In one
    /// statement, a head updated by a commit during the sweep would be read
    /// new while that commit's run stayed invisible: the trim could jump
    /// over a fresh message.)
    pub(super) async fn trim(
        &self,
        after: Option<&str>,
        users: u32,
        policy: Retention,
    ) -> StoreResult<Option<TrimStep>> {
        let users = i64::from(users.max(1));
        let mut tx = self.pool.begin().await?;
        if !Self::sweep_lock(&mut tx).await? {
            return Ok(None);
        }
        let batch: Vec<CutRow> = sqlx::query_as(concat!(
            "WITH u AS (SELECT user_id, trimmed_seq, head_seq FROM mailbox_heads \
               WHERE user_id > $1 ORDER BY user_id LIMIT $2), ",
            trim_cuts!(),
            "SELECT user_id, trimmed_seq, upto FROM cut ORDER BY user_id"
        ))
        .bind(after.unwrap_or(""))
        .bind(users)
        .bind(policy.acked_before_ms)
        .bind(policy.any_before_ms)
        .bind(MAX_RUNS_PER_STEP)
        .fetch_all(&mut *tx)
        .await?;
        let mut step = TrimStep {
            next_after: batch
                .last()
                .map(|c| c.user_id.clone())
                .filter(|_| batch.len() as i64 >= users),
            ..TrimStep::default()
        };
        let candidates: Vec<&str> = batch
            .iter()
            .filter(|c| c.upto > c.trimmed_seq)
            .map(|c| c.user_id.as_str())
            .collect();
        if candidates.is_empty() {
            tx.commit().await?;
            return Ok(Some(step));
        }
        sqlx::query("SELECT user_id FROM mailbox_heads WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
            .bind(&candidates)
            .execute(&mut *tx)
            .await?;
        let (moved, gone): (i64, i64) = sqlx::query_as(concat!(
            // `$2` only keeps the numbers of the cuts' parameters.
            "WITH u AS (SELECT user_id, trimmed_seq, head_seq FROM mailbox_heads WHERE user_id = ANY($1) \
               AND $2::bigint IS NOT NULL), ",
            trim_cuts!(),
            ", gone AS (DELETE FROM mailbox_runs r USING cut c WHERE c.upto > c.trimmed_seq \
               AND r.user_id = c.user_id AND r.end_seq > c.trimmed_seq AND r.end_seq <= c.upto RETURNING 1), \
             moved AS (UPDATE mailbox_heads h SET trimmed_seq = c.upto FROM cut c \
               WHERE h.user_id = c.user_id AND c.upto > c.trimmed_seq RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM moved), (SELECT COUNT(*) FROM gone)"
        ))
        .bind(&candidates)
        .bind(users)
        .bind(policy.acked_before_ms)
        .bind(policy.any_before_ms)
        .bind(MAX_RUNS_PER_STEP)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        step.users = moved as u64;
        step.rows = gone as u64;
        Ok(Some(step))
    }

    pub(super) async fn expire(&self, sent_before_ms: i64, limit: u32) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        if !Self::sweep_lock(&mut tx).await? {
            return Ok(None);
        }
        // By row address: a join on the primary key may be planned as a
        // scan of the whole table.
        let deleted = sqlx::query(
            "DELETE FROM group_messages WHERE ctid = ANY(ARRAY(SELECT ctid FROM group_messages \
               WHERE sent_at_ms < $1 ORDER BY sent_at_ms LIMIT $2))",
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
