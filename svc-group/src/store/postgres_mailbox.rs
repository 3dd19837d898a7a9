//! PostgreSQL: sending (write diffusion), mailboxes, device cursors, read
//! positions and history.

use super::batch;
use super::postgres::PgGroupStore;
use super::pull;
use super::rows::{CursorRow, GroupRow, ItemRow, MessageRow, RUNS_AFTER, RunRow};
use super::rules;
use super::*;
use std::collections::HashMap;

/// A member's role in a group.
#[derive(sqlx::FromRow)]
struct RoleRow {
    group_id: String,
    user_id: String,
    role: i32,
}

impl PgGroupStore {
    /// Group commit (`GroupStore::send_batch`): seven round trips for the
    /// whole batch; see `batch.rs` for what is decided and `diffuse` for
    /// the mailboxes.
    pub(super) async fn commit_batch(&self, messages: &[NewMessage]) -> StoreResult<SentBatch> {
        let (valid, refused) = batch::checked(messages, &self.limits);
        let now = unix_ms();
        if valid.is_empty() {
            let plan = batch::plan(
                messages,
                refused,
                &HashMap::new(),
                &HashMap::new(),
                &HashMap::new(),
                now,
            );
            return Ok(plan.finish(Vec::new()));
        }
        let group_ids = batch::group_ids(messages, &valid);
        let mut tx = self.pool.begin().await?;
        // Group rows first, in id order (the lock order of postgres.rs):
        // replicas committing to the same groups serialise here, and a
        // retry of a key waits for its original to commit.
        let groups: HashMap<String, GroupRow> = sqlx::query_as::<_, GroupRow>(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups g WHERE g.group_id = ANY($1) ORDER BY g.group_id FOR UPDATE"
        ))
        .bind(&group_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|g| (g.group_id.clone(), g))
        .collect();
        let (key_groups, key_senders, key_ids): (Vec<&str>, Vec<&str>, Vec<&str>) = valid
            .iter()
            .map(|&i| {
                let m = &messages[i];
                (
                    m.group_id.as_str(),
                    m.sender_user_id.as_str(),
                    m.client_message_id.as_str(),
                )
            })
            .collect();
        let roles: HashMap<(String, String), Role> = sqlx::query_as::<_, RoleRow>(
            // LATERAL with an OFFSET 0 fence: one primary-key probe per
            // send (a plain join of an unnest is hashed over the table).
            "SELECT DISTINCT m.group_id, m.user_id, m.role FROM unnest($1::text[], $2::text[]) AS k(group_id, user_id) \
             CROSS JOIN LATERAL (SELECT group_id, user_id, role FROM group_members m \
               WHERE m.group_id = k.group_id AND m.user_id = k.user_id OFFSET 0) AS m",
        )
        .bind(&key_groups)
        .bind(&key_senders)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter_map(|r| Role::from_i32(r.role).map(|role| ((r.group_id, r.user_id), role)))
        .collect();
        let originals: HashMap<batch::Key, GroupMessage> = sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::text[])) AS k(group_id, sender, id) \
             CROSS JOIN LATERAL (SELECT * FROM group_messages m WHERE m.group_id = k.group_id \
               AND m.sender_user_id = k.sender AND m.client_message_id = k.id OFFSET 0) AS m"
        ))
        .bind(&key_groups)
        .bind(&key_senders)
        .bind(&key_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| {
            let m = GroupMessage::from(r);
            (
                (
                    m.group_id.clone(),
                    m.sender_user_id.clone(),
                    m.client_message_id.clone(),
                ),
                m,
            )
        })
        .collect();
        let plan = batch::plan(messages, refused, &groups, &roles, &originals, now);
        if plan.messages.is_empty() {
            tx.commit().await?;
            return Ok(plan.finish(Vec::new()));
        }
        Self::store_messages(&mut tx, &plan).await?;
        let rows = Self::diffuse(&mut tx, &plan.runs).await?;
        tx.commit().await?;
        Ok(plan.finish(rows))
    }

    /// The plan's messages, the groups' new last seqs and the senders'
    /// read positions, in one statement (groups already locked; member
    /// rows in key order).
    async fn store_messages(conn: &mut sqlx::PgConnection, plan: &batch::Plan) -> Result<(), StoreError> {
        let ms = &plan.messages;
        let col = |f: fn(&GroupMessage) -> &str| ms.iter().map(f).collect::<Vec<&str>>();
        let seqs: Vec<i64> = ms.iter().map(|m| m.seq as i64).collect();
        let bodies: Vec<&[u8]> = ms.iter().map(|m| m.body.as_slice()).collect();
        let at: Vec<i64> = ms.iter().map(|m| m.sent_at_ms).collect();
        let run_groups: Vec<&str> = plan.runs.iter().map(|r| r.group_id.as_str()).collect();
        let run_lasts: Vec<i64> = plan.runs.iter().map(|r| r.first_seq + r.count - 1).collect();
        let read_groups: Vec<&str> = plan.reads.iter().map(|r| r.0.as_str()).collect();
        let read_users: Vec<&str> = plan.reads.iter().map(|r| r.1.as_str()).collect();
        let read_seqs: Vec<i64> = plan.reads.iter().map(|r| r.2).collect();
        sqlx::query(
            "WITH stored AS (INSERT INTO group_messages (group_id, seq, sender_user_id, sender_device_id, \
               client_message_id, content_type, body, sent_at_ms) \
               SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::bytea[], $8::bigint[])), \
             bumped AS (UPDATE groups g SET last_seq = v.last_seq \
               FROM unnest($9::text[], $10::bigint[]) AS v(group_id, last_seq) WHERE g.group_id = v.group_id) \
             UPDATE group_members m SET read_seq = GREATEST(m.read_seq, v.seq) \
               FROM unnest($11::text[], $12::text[], $13::bigint[]) AS v(group_id, user_id, seq) \
               WHERE m.group_id = v.group_id AND m.user_id = v.user_id",
        )
        .bind(col(|m| &m.group_id))
        .bind(&seqs)
        .bind(col(|m| &m.sender_user_id))
        .bind(col(|m| &m.sender_device_id))
        .bind(col(|m| &m.client_message_id))
        .bind(col(|m| &m.content_type))
        .bind(&bodies)
        .bind(&at)
        .bind(&run_groups)
        .bind(&run_lasts)
        .bind(&read_groups)
        .bind(&read_users)
        .bind(&read_seqs)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(super) async fn device_cursor(&self, user_id: &str, device_id: &str) -> StoreResult<(DeviceCursor, u64)> {
        rules::id("user_id", user_id)?;
        rules::id("device_id", device_id)?;
        let mut conn = self.pool.acquire().await?;
        Ok(self.cursor_in(&mut conn, user_id, device_id).await?.split())
    }

    pub(super) async fn pull_mailbox(
        &self,
        user_id: &str,
        device_id: &str,
        from: Position,
        limit: u32,
    ) -> StoreResult<Pulled> {
        rules::id("user_id", user_id)?;
        rules::id("device_id", device_id)?;
        let limit = self.limits.page(limit) as usize;
        let mut conn = self.pool.acquire().await?;
        let row = self.cursor_in(&mut conn, user_id, device_id).await?;
        let trimmed = row.trimmed_seq as u64;
        let (cursor, head) = row.split();
        let mut start = pull::start(from, &cursor, trimmed, device_id)?;
        let mut items: Vec<MailboxItem> = sqlx::query_as::<_, ItemRow>(concat!(
            mailbox_runs!(),
            // LATERAL with an OFFSET 0 fence: a per-run index range; a plain
            // join (or a flattened lateral) gets hashed and scans the group.
            "SELECT r.end_seq - (r.last_seq - m.seq) AS mailbox_seq, ",
            message_columns!(),
            " FROM runs r CROSS JOIN LATERAL (SELECT * FROM group_messages m WHERE m.group_id = r.group_id \
               AND m.seq > r.last_seq - LEAST(r.n, r.end_seq - $2) AND m.seq <= r.last_seq OFFSET 0) AS m \
             ORDER BY 1 LIMIT $3"
        ))
        .bind(user_id)
        .bind(start.after as i64)
        .bind(limit as i64 + 1)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(MailboxItem::from)
        .collect();
        if !pull::whole(&items, start.after, head, limit + 1) {
            let runs: Vec<RunRow> = sqlx::query_as(RUNS_AFTER)
                .bind(user_id)
                .bind(start.after as i64)
                .bind(limit as i64 + 1)
                .fetch_all(&mut *conn)
                .await?;
            items = pull::fill_expired(items, &mut start, head, &runs, limit + 1);
        }
        let has_more = rules::cut_page(&mut items, limit, |i| i.message.body.len());
        let last = pull::fetched(&items, &start);
        let (ack, trimmed_mailbox_seq) = (start.ack, start.trimmed);
        if last <= cursor.fetch_seq && ack <= cursor.ack_seq {
            return Ok(Pulled {
                items,
                has_more,
                cursor,
                head_mailbox_seq: head,
                trimmed_mailbox_seq,
            });
        }
        // Fetch and the ack riding on the pull, in one statement.
        let cursor = sqlx::query_as::<_, CursorRow>(concat!(
            "UPDATE device_cursors SET fetch_seq = GREATEST(fetch_seq, $3), ack_seq = GREATEST(ack_seq, $4) \
             WHERE user_id = $1 AND device_id = $2 ",
            cursor_returning!(),
            ", $5::bigint AS head_seq"
        ))
        .bind(user_id)
        .bind(device_id)
        .bind(last as i64)
        .bind(ack as i64)
        .bind(head.max(last) as i64)
        .fetch_one(&mut *conn)
        .await?;
        let (cursor, head) = cursor.split();
        Ok(Pulled {
            items,
            has_more,
            cursor,
            head_mailbox_seq: head,
            trimmed_mailbox_seq,
        })
    }

    pub(super) async fn ack_mailbox(
        &self,
        user_id: &str,
        device_id: &str,
        mailbox_seq: u64,
    ) -> StoreResult<DeviceCursor> {
        rules::id("user_id", user_id)?;
        rules::id("device_id", device_id)?;
        rules::positive("mailbox_seq", mailbox_seq)?;
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query_as::<_, CursorRow>(concat!(
            "UPDATE device_cursors SET ack_seq = GREATEST(ack_seq, $3) \
             WHERE user_id = $1 AND device_id = $2 AND fetch_seq >= $3 ",
            cursor_returning!(),
            ", 0::bigint AS head_seq"
        ))
        .bind(user_id)
        .bind(device_id)
        .bind(mailbox_seq as i64)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok(row.split().0);
        }
        let fetch: Option<i64> =
            sqlx::query_scalar("SELECT fetch_seq FROM device_cursors WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(&mut *conn)
                .await?;
        Err(rules::fetched("mailbox_seq", mailbox_seq, device_id, fetch.unwrap_or(0) as u64).unwrap_err())
    }

    pub(super) async fn mark(
        &self,
        user_id: &str,
        device_id: &str,
        group_id: &str,
        seq: u64,
        mailbox_seq: u64,
    ) -> StoreResult<MarkedRead> {
        rules::id("group_id", group_id)?;
        rules::id("device_id", device_id)?;
        rules::positive("seq", seq)?;
        let mut tx = self.pool.begin().await?;
        let (info, _, _) = Self::visible(&mut tx, user_id, group_id).await?;
        rules::seq_in_group("seq", seq, &info)?;
        let c = self.cursor_in(&mut tx, user_id, device_id).await?;
        rules::fetched("mailbox_seq", mailbox_seq, device_id, c.fetch_seq as u64)?;
        let read: i64 = sqlx::query_scalar(
            "UPDATE group_members SET read_seq = GREATEST(read_seq, $3) WHERE group_id = $1 AND user_id = $2 \
             RETURNING read_seq",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(seq as i64)
        .fetch_one(&mut *tx)
        .await?;
        let c = if mailbox_seq > 0 {
            sqlx::query_as::<_, CursorRow>(concat!(
                "UPDATE device_cursors SET read_seq = GREATEST(read_seq, $3) WHERE user_id = $1 AND device_id = $2 \
                 ",
                cursor_returning!(),
                ", 0::bigint AS head_seq"
            ))
            .bind(user_id)
            .bind(device_id)
            .bind(mailbox_seq as i64)
            .fetch_one(&mut *tx)
            .await?
        } else {
            c
        };
        tx.commit().await?;
        Ok(MarkedRead {
            read_seq: read as u64,
            cursor: c.split().0,
        })
    }

    pub(super) async fn positions(&self, actor: &str, group_id: &str) -> StoreResult<Vec<(String, u64)>> {
        let mut conn = self.pool.acquire().await?;
        Self::visible(&mut conn, actor, group_id).await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT user_id, read_seq FROM group_members WHERE group_id = $1 ORDER BY user_id")
                .bind(group_id)
                .fetch_all(&mut *conn)
                .await?;
        Ok(rows.into_iter().map(|(u, r)| (u, r as u64)).collect())
    }

    pub(super) async fn receipts_of(&self, actor: &str, group_id: &str, seq: u64) -> StoreResult<Receipts> {
        rules::positive("seq", seq)?;
        let mut conn = self.pool.acquire().await?;
        let (info, _, _) = Self::visible(&mut conn, actor, group_id).await?;
        rules::seq_in_group("seq", seq, &info)?;
        drop(conn);
        Ok(rules::receipts(self.positions(actor, group_id).await?, seq))
    }

    pub(super) async fn history_of(
        &self,
        actor: &str,
        group_id: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<History> {
        let limit = self.limits.page(limit) as usize;
        let mut conn = self.pool.acquire().await?;
        let (info, begin, _) = Self::visible(&mut conn, actor, group_id).await?;
        let before = rules::before(before, &info)?;
        let mut messages: Vec<GroupMessage> = sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM group_messages m WHERE m.group_id = $1 AND m.seq < $2 AND m.seq >= $3 \
             ORDER BY m.seq DESC LIMIT $4"
        ))
        .bind(group_id)
        .bind(before as i64)
        .bind(begin)
        .bind(limit as i64 + 1)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(GroupMessage::from)
        .collect();
        let has_more = rules::cut_page(&mut messages, limit, |m| m.body.len());
        // Retention deletes the oldest messages: below the oldest kept one
        // (or the whole group, when none is) nothing remains.
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM group_messages WHERE group_id = $1")
            .bind(group_id)
            .fetch_one(&mut *conn)
            .await?;
        let expired_through_seq = oldest.map_or(info.last_seq, |seq| seq as u64 - 1);
        Ok(History {
            messages,
            has_more,
            begin_seq: begin as u64,
            expired_through_seq,
        })
    }
}
