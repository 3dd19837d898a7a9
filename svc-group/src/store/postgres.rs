//! The PostgreSQL `GroupStore`, through an sqlx pool.
//!
//! Lock order, the same in every transaction so none can deadlock with
//! another: first the `groups` row (`FOR UPDATE`: it serialises every write
//! to one group, across replicas), then `group_members` rows, then
//! `mailbox_heads` rows in ascending user id. A send is seven round trips
//! whatever the group's size and however many messages a group commit
//! holds: BEGIN, the groups' locks, the senders' roles, the idempotency
//! check, messages + seqs + read positions (one statement), diffusion to
//! every member (one statement), COMMIT.

use super::batch::{self, GroupRun};
use super::rows::{CursorRow, GroupRow, MemberRow, owner_first};
use super::rules::{self, Draft, Limits};
use super::*;
use crate::config::GroupStoreConfig;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use std::time::Duration;

/// Group chat in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgGroupStore {
    pub(super) pool: PgPool,
    pub(super) limits: Limits,
}

/// The group schema's migration history.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_group";

impl PgGroupStore {
    /// Connects to `url` and brings the schema up to date. Replicas starting
    /// at once do not race: sqlx's migrator holds a PostgreSQL advisory lock
    /// while it applies migrations.
    pub async fn connect(url: &str, config: &GroupStoreConfig) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let mut migrator = sqlx::migrate!("../migrations/group/postgres");
        // Own table, so gift's migrations may share the database.
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        // Applied here, or only checked where `hubbub migrate` runs them.
        let schema = hubbub_kit::schema::Schema::from_settings(config.migrate_on_start, config.schema_wait_secs);
        hubbub_kit::schema::bring_up(&pool, &migrator, MIGRATIONS_TABLE, schema).await?;
        Ok(Self {
            pool,
            limits: config.into(),
        })
    }

    /// Locks the group row for the rest of the transaction.
    pub(super) async fn lock_group(conn: &mut PgConnection, group_id: &str) -> Result<GroupRow, StoreError> {
        let row = sqlx::query_as::<_, GroupRow>(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups g WHERE g.group_id = $1 FOR UPDATE"
        ))
        .bind(group_id)
        .fetch_optional(&mut *conn)
        .await?;
        rules::found(group_id, row)
    }

    pub(super) async fn role(
        conn: &mut PgConnection,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<Role>, StoreError> {
        let role: Option<i32> =
            sqlx::query_scalar("SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group_id)
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(role.and_then(Role::from_i32))
    }

    /// The group (unlocked) and the actor's membership row, for reads.
    pub(super) async fn visible(
        conn: &mut PgConnection,
        actor: &str,
        group_id: &str,
    ) -> Result<(GroupInfo, i64, i64), StoreError> {
        let row: Option<(i64, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT g.last_seq, g.member_count, m.begin_seq, m.read_seq FROM groups g \
             LEFT JOIN group_members m ON m.group_id = g.group_id AND m.user_id = $2 WHERE g.group_id = $1",
        )
        .bind(group_id)
        .bind(actor)
        .fetch_optional(&mut *conn)
        .await?;
        let (last_seq, member_count, begin, read) = rules::found(group_id, row)?;
        let (Some(begin), Some(read)) = (begin, read) else {
            return Err(rules::member(actor, group_id, None).unwrap_err());
        };
        let info = GroupInfo {
            group_id: group_id.to_owned(),
            name: String::new(),
            owner_user_id: String::new(),
            member_count: member_count as u32,
            created_at_ms: 0,
            end_to_end_encrypted: false,
            last_seq: last_seq as u64,
            epoch: 0,
        };
        Ok((info, begin, read))
    }

    /// Stores one message under the next seq of the locked group `g` and
    /// writes it into every current member's mailbox.
    pub(super) async fn append(
        conn: &mut PgConnection,
        g: &mut GroupRow,
        d: Draft<'_>,
    ) -> Result<Dispatch, StoreError> {
        let seq: i64 = sqlx::query_scalar(
            "WITH bump AS (UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = $1 RETURNING last_seq) \
             INSERT INTO group_messages (group_id, seq, sender_user_id, sender_device_id, client_message_id, \
             content_type, body, sent_at_ms) SELECT $1, last_seq, $2, $3, $4, $5, $6, $7 FROM bump RETURNING seq",
        )
        .bind(&g.group_id)
        .bind(d.sender)
        .bind(d.device)
        .bind(d.client_message_id)
        .bind(d.content_type)
        .bind(d.body)
        .bind(d.now)
        .fetch_one(&mut *conn)
        .await?;
        g.last_seq = seq;
        let run = GroupRun {
            group_id: g.group_id.clone(),
            first_seq: seq,
            count: 1,
            e2e: g.e2e,
        };
        let deliveries = batch::dispatched(
            Self::diffuse(conn, std::slice::from_ref(&run)).await?,
            &[run],
            Vec::new(),
        )
        .pop()
        .map(|d| d.deliveries)
        .unwrap_or_default();
        let message = GroupMessage {
            group_id: g.group_id.clone(),
            seq: seq as u64,
            sender_user_id: d.sender.to_owned(),
            sender_device_id: d.device.to_owned(),
            client_message_id: d.client_message_id.to_owned(),
            content_type: d.content_type.to_owned(),
            body: d.body.to_vec(),
            sent_at_ms: d.now,
        };
        Ok(Dispatch { message, deliveries })
    }

    /// Writes each run of new messages into the mailbox of every current
    /// member of its group, in one statement: every member's head moves by
    /// its new messages, and one mailbox row per member and run records the
    /// positions it got. Heads are upserted, and so locked, in ascending
    /// user id whatever the groups: two commits to overlapping members take
    /// the same locks in the same order and never deadlock. Returns
    /// (group, member, the member's last position of that group's run): a
    /// member of several groups of the batch gets one per group, the
    /// highest being its new head.
    pub(super) async fn diffuse(
        conn: &mut PgConnection,
        runs: &[GroupRun],
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        if let [run] = runs {
            return Self::diffuse_one(conn, run).await;
        }
        let groups: Vec<&str> = runs.iter().map(|r| r.group_id.as_str()).collect();
        let firsts: Vec<i64> = runs.iter().map(|r| r.first_seq).collect();
        let counts: Vec<i64> = runs.iter().map(|r| r.count).collect();
        // A member's runs take its new positions in group id order: its new
        // head minus its new items, plus the running sum of its runs.
        Ok(sqlx::query_as(
            "WITH batch AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS b(group_id, first_seq, n)), \
             fan AS MATERIALIZED (SELECT m.user_id, b.group_id, b.first_seq, b.n FROM batch b \
               CROSS JOIN LATERAL (SELECT user_id FROM group_members m WHERE m.group_id = b.group_id OFFSET 0) AS m), \
             counts AS (SELECT user_id, sum(n)::bigint AS n FROM fan GROUP BY user_id), \
             heads AS (INSERT INTO mailbox_heads AS h (user_id, head_seq) SELECT user_id, n FROM counts ORDER BY user_id \
               ON CONFLICT (user_id) DO UPDATE SET head_seq = h.head_seq + EXCLUDED.head_seq \
               RETURNING h.user_id, h.head_seq), \
             runs AS (INSERT INTO mailbox_runs (user_id, end_seq, group_id, last_seq, n) \
               SELECT f.user_id, h.head_seq - c.n + sum(f.n) OVER (PARTITION BY f.user_id ORDER BY f.group_id), \
                 f.group_id, f.first_seq + f.n - 1, f.n \
               FROM fan f JOIN heads h ON h.user_id = f.user_id JOIN counts c ON c.user_id = f.user_id \
               RETURNING group_id, user_id, end_seq) \
             SELECT group_id, user_id, end_seq FROM runs",
        )
        .bind(&groups)
        .bind(&firsts)
        .bind(&counts)
        .fetch_all(&mut *conn)
        .await?)
    }

    /// `diffuse` for one group: each member's head moves by the run and the
    /// run ends at the new head, with none of the general case's grouping
    /// (a third less work for the commonest commit).
    async fn diffuse_one(conn: &mut PgConnection, run: &GroupRun) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "WITH heads AS (INSERT INTO mailbox_heads AS h (user_id, head_seq) \
               SELECT user_id, $3 FROM group_members WHERE group_id = $1 ORDER BY user_id \
               ON CONFLICT (user_id) DO UPDATE SET head_seq = h.head_seq + EXCLUDED.head_seq \
               RETURNING h.user_id, h.head_seq), \
             runs AS (INSERT INTO mailbox_runs (user_id, end_seq, group_id, last_seq, n) \
               SELECT user_id, head_seq, $1, $2 + $3 - 1, $3 FROM heads) \
             SELECT $1, user_id, head_seq FROM heads",
        )
        .bind(&run.group_id)
        .bind(run.first_seq)
        .bind(run.count)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub(super) async fn members_of(conn: &mut PgConnection, g: GroupRow) -> Result<GroupWithMembers, StoreError> {
        let mut members: Vec<Member> =
            sqlx::query_as::<_, MemberRow>("SELECT user_id, role, joined_at_ms FROM group_members WHERE group_id = $1")
                .bind(&g.group_id)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(Member::from)
                .collect();
        owner_first(&mut members);
        Ok(GroupWithMembers {
            group: g.into(),
            members,
        })
    }

    /// The device's cursor, created at the new-device window when missing.
    pub(super) async fn cursor_in(
        &self,
        conn: &mut PgConnection,
        user_id: &str,
        device_id: &str,
    ) -> Result<CursorRow, StoreError> {
        const SELECT: &str = "SELECT c.device_id, c.begin_seq, c.fetch_seq, c.ack_seq, c.read_seq, \
             COALESCE(h.head_seq, 0) AS head_seq, COALESCE(h.trimmed_seq, 0) AS trimmed_seq FROM device_cursors c \
             LEFT JOIN mailbox_heads h ON h.user_id = c.user_id WHERE c.user_id = $1 AND c.device_id = $2";
        if let Some(row) = sqlx::query_as::<_, CursorRow>(SELECT)
            .bind(user_id)
            .bind(device_id)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(row);
        }
        let head: Option<(i64, i64)> =
            sqlx::query_as("SELECT head_seq, trimmed_seq FROM mailbox_heads WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
        let (head, trimmed) = head.unwrap_or((0, 0));
        // A new device never starts below what retention trimmed.
        let begin = self.limits.new_device_begin(head as u64).max(trimmed as u64 + 1) as i64;
        // Two first pulls of one device at once: the second insert does
        // nothing and both read the same cursor.
        sqlx::query(
            "INSERT INTO device_cursors (user_id, device_id, begin_seq, fetch_seq, ack_seq, read_seq) \
             VALUES ($1, $2, $3, $3 - 1, $3 - 1, $3 - 1) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(begin)
        .execute(&mut *conn)
        .await?;
        Ok(sqlx::query_as::<_, CursorRow>(SELECT)
            .bind(user_id)
            .bind(device_id)
            .fetch_one(&mut *conn)
            .await?)
    }
}

impl GroupStore for PgGroupStore {
    async fn create_group(&self, new: &NewGroup) -> StoreResult<Created> {
        self.create(new).await
    }
    async fn add_members(
        &self,
        actor: &str,
        group_id: &str,
        user_ids: &[String],
        role: Role,
    ) -> StoreResult<MembersChanged> {
        self.add(actor, group_id, user_ids, role).await
    }
    async fn remove_members(&self, actor: &str, group_id: &str, user_ids: &[String]) -> StoreResult<MembersChanged> {
        self.remove(actor, group_id, user_ids).await
    }
    async fn transfer_ownership(&self, actor: &str, group_id: &str, new_owner: &str) -> StoreResult<MembersChanged> {
        self.transfer(actor, group_id, new_owner).await
    }
    async fn members(&self, actor: &str, group_id: &str) -> StoreResult<GroupWithMembers> {
        PgGroupStore::members(self, actor, group_id).await
    }
    async fn list_groups(&self, user_id: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<Membership>> {
        self.list(user_id, after, limit).await
    }
    async fn send_batch(&self, messages: &[NewMessage]) -> StoreResult<SentBatch> {
        self.commit_batch(messages).await
    }
    async fn cursor(&self, user_id: &str, device_id: &str) -> StoreResult<(DeviceCursor, u64)> {
        self.device_cursor(user_id, device_id).await
    }
    async fn pull(&self, user_id: &str, device_id: &str, from: Position, limit: u32) -> StoreResult<Pulled> {
        self.pull_mailbox(user_id, device_id, from, limit).await
    }
    async fn ack(&self, user_id: &str, device_id: &str, mailbox_seq: u64) -> StoreResult<DeviceCursor> {
        self.ack_mailbox(user_id, device_id, mailbox_seq).await
    }
    async fn mark_read(
        &self,
        user_id: &str,
        device_id: &str,
        group_id: &str,
        seq: u64,
        mailbox_seq: u64,
    ) -> StoreResult<MarkedRead> {
        self.mark(user_id, device_id, group_id, seq, mailbox_seq).await
    }
    async fn read_positions(&self, actor: &str, group_id: &str) -> StoreResult<Vec<ReadPosition>> {
        let rows = self.positions(actor, group_id).await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, read_seq)| ReadPosition { user_id, read_seq })
            .collect())
    }
    async fn receipts(&self, actor: &str, group_id: &str, seq: u64) -> StoreResult<Receipts> {
        self.receipts_of(actor, group_id, seq).await
    }
    async fn history(&self, actor: &str, group_id: &str, before: Option<u64>, limit: u32) -> StoreResult<History> {
        self.history_of(actor, group_id, before, limit).await
    }
    async fn clear_history(&self, actor: &str, group_id: &str) -> StoreResult<u64> {
        self.clear(actor, group_id).await
    }
    async fn trim_mailboxes(
        &self,
        after: Option<&str>,
        users: u32,
        policy: Retention,
    ) -> StoreResult<Option<TrimStep>> {
        self.trim(after, users, policy).await
    }
    async fn expire_messages(&self, sent_before_ms: i64, limit: u32) -> StoreResult<Option<u64>> {
        self.expire(sent_before_ms, limit).await
    }
}
