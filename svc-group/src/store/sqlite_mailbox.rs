//! SQLite: sending (write diffusion), mailboxes, device cursors, read
//! positions and history.

use super::batch;
use super::pull;
use super::rows::{CursorRow, GroupRow, ItemRow, MessageRow, RUNS_AFTER, RunRow};
use super::rules;
use super::sqlite::{SqliteGroupStore, WRITE};
use super::*;
use std::collections::HashMap;

impl SqliteGroupStore {
    /// Group commit (`GroupStore::send_batch`) in one write transaction;
    /// see `batch.rs` for what is decided and `diffuse` for the mailboxes.
    /// The single writer makes the reads below exclusive.
    pub(super) async fn commit_batch(&self, messages: &[NewMessage]) -> StoreResult<SentBatch> {
        let (valid, refused) = batch::checked(messages, &self.limits);
        let now = unix_ms();
        let mut groups: HashMap<String, GroupRow> = HashMap::new();
        let mut roles: HashMap<(String, String), Role> = HashMap::new();
        let mut originals: HashMap<batch::Key, GroupMessage> = HashMap::new();
        if valid.is_empty() {
            let plan = batch::plan(messages, refused, &groups, &roles, &originals, now);
            return Ok(plan.finish(Vec::new()));
        }
        let mut tx = self.pool.begin_with(WRITE).await?;
        for group_id in batch::group_ids(messages, &valid) {
            if let Some(g) = sqlx::query_as::<_, GroupRow>(concat!(
                "SELECT ",
                group_columns!(),
                " FROM groups g WHERE g.group_id = $1"
            ))
            .bind(&group_id)
            .fetch_optional(&mut *tx)
            .await?
            {
                groups.insert(group_id, g);
            }
        }
        for &i in &valid {
            let m = &messages[i];
            if let Some(role) = Self::role(&mut tx, &m.group_id, &m.sender_user_id).await? {
                roles.insert((m.group_id.clone(), m.sender_user_id.clone()), role);
            }
            if let Some(original) = sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM group_messages m \
                 WHERE m.group_id = $1 AND m.sender_user_id = $2 AND m.client_message_id = $3"
            ))
            .bind(&m.group_id)
            .bind(&m.sender_user_id)
            .bind(&m.client_message_id)
            .fetch_optional(&mut *tx)
            .await?
            {
                let key = (
                    m.group_id.clone(),
                    m.sender_user_id.clone(),
                    m.client_message_id.clone(),
                );
                originals.insert(key, original.into());
            }
        }
        let plan = batch::plan(messages, refused, &groups, &roles, &originals, now);
        if plan.messages.is_empty() {
            tx.commit().await?;
            return Ok(plan.finish(Vec::new()));
        }
        for m in &plan.messages {
            sqlx::query(
                "INSERT INTO group_messages (group_id, seq, sender_user_id, sender_device_id, client_message_id, \
                 content_type, body, sent_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&m.group_id)
            .bind(m.seq as i64)
            .bind(&m.sender_user_id)
            .bind(&m.sender_device_id)
            .bind(&m.client_message_id)
            .bind(&m.content_type)
            .bind(&m.body)
            .bind(m.sent_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        for run in &plan.runs {
            sqlx::query("UPDATE groups SET last_seq = $2 WHERE group_id = $1")
                .bind(&run.group_id)
                .bind(run.first_seq + run.count - 1)
                .execute(&mut *tx)
                .await?;
        }
        for (group_id, user_id, seq) in &plan.reads {
            sqlx::query("UPDATE group_members SET read_seq = MAX(read_seq, $3) WHERE group_id = $1 AND user_id = $2")
                .bind(group_id)
                .bind(user_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let rows = Self::diffuse(&mut tx, &plan.runs).await?;
        tx.commit().await?;
        Ok(plan.finish(rows))
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
            "SELECT r.end_seq - (r.last_seq - m.seq) AS mailbox_seq, ",
            message_columns!(),
            " FROM runs r JOIN group_messages m ON m.group_id = r.group_id \
               AND m.seq > r.last_seq - MIN(r.n, r.end_seq - $2) AND m.seq <= r.last_seq \
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
            "UPDATE device_cursors SET fetch_seq = MAX(fetch_seq, $3), ack_seq = MAX(ack_seq, $4) \
             WHERE user_id = $1 AND device_id = $2 ",
            cursor_returning!(),
            ", $5 AS head_seq"
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
            "UPDATE device_cursors SET ack_seq = MAX(ack_seq, $3) \
             WHERE user_id = $1 AND device_id = $2 AND fetch_seq >= $3 ",
            cursor_returning!(),
            ", 0 AS head_seq"
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
        let mut tx = self.pool.begin_with(WRITE).await?;
        let (info, _, _) = Self::visible(&mut tx, user_id, group_id).await?;
        rules::seq_in_group("seq", seq, &info)?;
        let c = self.cursor_in(&mut tx, user_id, device_id).await?;
        rules::fetched("mailbox_seq", mailbox_seq, device_id, c.fetch_seq as u64)?;
        let read: i64 = sqlx::query_scalar(
            "UPDATE group_members SET read_seq = MAX(read_seq, $3) WHERE group_id = $1 AND user_id = $2 \
             RETURNING read_seq",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(seq as i64)
        .fetch_one(&mut *tx)
        .await?;
        let c = if mailbox_seq > 0 {
            sqlx::query_as::<_, CursorRow>(concat!(
                "UPDATE device_cursors SET read_seq = MAX(read_seq, $3) WHERE user_id = $1 AND device_id = $2 \
                 ",
                cursor_returning!(),
                ", 0 AS head_seq"
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
