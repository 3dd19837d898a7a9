//! SQLite: retention (mailbox trimming, message expiry), the same rules as
//! `postgres_retention.rs` inside one write transaction (one writer: no
//! commit can land between reading the cuts and applying them, no lock
//! order to keep, no other sweeper to race).

use super::rules::MAX_RUNS_PER_STEP;
use super::sqlite::{SqliteGroupStore, WRITE};
use super::*;

/// A user's trim, as computed.
#[derive(sqlx::FromRow)]
struct CutRow {
    user_id: String,
    trimmed_seq: i64,
    upto: i64,
}

impl SqliteGroupStore {
    pub(super) async fn trim(
        &self,
        after: Option<&str>,
        users: u32,
        policy: Retention,
    ) -> StoreResult<Option<TrimStep>> {
        let users = i64::from(users.max(1));
        let mut tx = self.pool.begin_with(WRITE).await?;
        let cuts: Vec<CutRow> = sqlx::query_as(
            "WITH u AS (SELECT user_id, trimmed_seq, head_seq FROM mailbox_heads \
               WHERE user_id > $1 ORDER BY user_id LIMIT $2), \
             a AS (SELECT u.*, MIN(u.head_seq, COALESCE((SELECT MIN(d.ack_seq) FROM device_cursors d \
               WHERE d.user_id = u.user_id), u.head_seq)) AS acked FROM u) \
             SELECT a.user_id, a.trimmed_seq, MIN( \
               COALESCE((SELECT r.end_seq - r.n FROM mailbox_runs r \
                 LEFT JOIN group_messages m ON m.group_id = r.group_id AND m.seq = r.last_seq \
                 WHERE r.user_id = a.user_id AND r.end_seq > a.trimmed_seq \
                   AND NOT (COALESCE(m.sent_at_ms, 0) < $4 \
                     OR (r.end_seq <= a.acked AND COALESCE(m.sent_at_ms, 0) < $3)) \
                 ORDER BY r.end_seq LIMIT 1), a.head_seq), \
               COALESCE((SELECT r.end_seq FROM mailbox_runs r WHERE r.user_id = a.user_id \
                 AND r.end_seq > a.trimmed_seq ORDER BY r.end_seq LIMIT 1 OFFSET $5 - 1), a.head_seq)) AS upto \
             FROM a ORDER BY a.user_id",
        )
        .bind(after.unwrap_or(""))
        .bind(users)
        .bind(policy.acked_before_ms)
        .bind(policy.any_before_ms)
        .bind(MAX_RUNS_PER_STEP)
        .fetch_all(&mut *tx)
        .await?;
        let mut step = TrimStep {
            next_after: cuts
                .last()
                .map(|c| c.user_id.clone())
                .filter(|_| cuts.len() as i64 >= users),
            ..TrimStep::default()
        };
        for cut in cuts.iter().filter(|c| c.upto > c.trimmed_seq) {
            step.rows += sqlx::query("DELETE FROM mailbox_runs WHERE user_id = $1 AND end_seq > $2 AND end_seq <= $3")
                .bind(&cut.user_id)
                .bind(cut.trimmed_seq)
                .bind(cut.upto)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE mailbox_heads SET trimmed_seq = $2 WHERE user_id = $1")
                .bind(&cut.user_id)
                .bind(cut.upto)
                .execute(&mut *tx)
                .await?;
            step.users += 1;
        }
        tx.commit().await?;
        Ok(Some(step))
    }

    pub(super) async fn expire(&self, sent_before_ms: i64, limit: u32) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin_with(WRITE).await?;
        let deleted = sqlx::query(
            "DELETE FROM group_messages WHERE rowid IN (SELECT rowid FROM group_messages \
               WHERE sent_at_ms < $1 ORDER BY sent_at_ms LIMIT $2)",
        )
        .bind(sent_before_ms)
        .bind(i64::from(limit.max(1)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(deleted))
    }
}
