//! The SQLite `GroupStore`, for `hubbub all`: one file under the data
//! directory, WAL journal, a busy timeout, and a pool of one connection, so
//! there is exactly one writer at a time (which is what keeps each group's
//! seq and each user's mailbox seq gap-free here; PostgreSQL uses row locks).
//! The SQL is PostgreSQL's where both accept it; arrays are bound as JSON
//! (`json_each`), and statements PostgreSQL runs as one CTE are two here.

use super::batch::{self, GroupRun};
use super::rows::{CursorRow, GroupRow, MemberRow, owner_first};
use super::rules::{self, Draft, Limits};
use super::*;
use crate::config::GroupStoreConfig;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

/// Group chat in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteGroupStore {
    pub(super) pool: SqlitePool,
    pub(super) limits: Limits,
}

impl SqliteGroupStore {
    /// Opens (creating it if missing) the database file `path` and brings
    /// the schema up to date.
    pub async fn open(path: &Path, config: &GroupStoreConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // One connection: one writer at a time, so transactions never meet
        // SQLITE_BUSY inside this process.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let mut migrator = sqlx::migrate!("../migrations/group/sqlite");
        migrator.dangerous_set_table_name("_sqlx_migrations_group");
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            limits: config.into(),
        })
    }

    /// Opens `group.sqlite3` in `config.data_dir`, creating the directory.
    pub async fn open_in_data_dir(config: &GroupStoreConfig) -> Result<(Self, std::path::PathBuf), StoreError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        let path = config.data_dir.join("group.sqlite3");
        Ok((Self::open(&path, config).await?, path))
    }

    /// The group row (the single writer connection makes it exclusive).
    pub(super) async fn lock_group(conn: &mut SqliteConnection, group_id: &str) -> Result<GroupRow, StoreError> {
        let row = sqlx::query_as::<_, GroupRow>(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups g WHERE g.group_id = $1"
        ))
        .bind(group_id)
        .fetch_optional(&mut *conn)
        .await?;
        rules::found(group_id, row)
    }

    pub(super) async fn role(
        conn: &mut SqliteConnection,
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
        conn: &mut SqliteConnection,
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
        conn: &mut SqliteConnection,
        g: &mut GroupRow,
        d: Draft<'_>,
    ) -> Result<Dispatch, StoreError> {
        let seq: i64 =
            sqlx::query_scalar("UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = $1 RETURNING last_seq")
                .bind(&g.group_id)
                .fetch_one(&mut *conn)
                .await?;
        sqlx::query(
            "INSERT INTO group_messages (group_id, seq, sender_user_id, sender_device_id, client_message_id, \
             content_type, body, sent_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&g.group_id)
        .bind(seq)
        .bind(d.sender)
        .bind(d.device)
        .bind(d.client_message_id)
        .bind(d.content_type)
        .bind(d.body)
        .bind(d.now)
        .execute(&mut *conn)
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
    /// member of its group: per run, every member's head moves by the run's
    /// messages, then one mailbox row per member records the positions it
    /// got. Runs go in group id order, so a member's positions follow that
    /// order. Returns (group, member, head after its run).
    pub(super) async fn diffuse(
        conn: &mut SqliteConnection,
        runs: &[GroupRun],
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut written = Vec::new();
        for run in runs {
            let heads: Vec<(String, i64)> = sqlx::query_as(
                "INSERT INTO mailbox_heads (user_id, head_seq) \
                 SELECT user_id, $2 FROM group_members WHERE group_id = $1 ORDER BY user_id \
                 ON CONFLICT (user_id) DO UPDATE SET head_seq = head_seq + excluded.head_seq \
                 RETURNING user_id, head_seq",
            )
            .bind(&run.group_id)
            .bind(run.count)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO mailbox_runs (user_id, end_seq, group_id, last_seq, n) \
                 SELECT h.user_id, h.head_seq, $1, $2, $3 FROM mailbox_heads h \
                 WHERE h.user_id IN (SELECT user_id FROM group_members WHERE group_id = $1)",
            )
            .bind(&run.group_id)
            .bind(run.first_seq + run.count - 1)
            .bind(run.count)
            .execute(&mut *conn)
            .await?;
            written.extend(heads.into_iter().map(|(u, h)| (run.group_id.clone(), u, h)));
        }
        Ok(written)
    }

    pub(super) async fn members_of(conn: &mut SqliteConnection, g: GroupRow) -> Result<GroupWithMembers, StoreError> {
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
        conn: &mut SqliteConnection,
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

impl GroupStore for SqliteGroupStore {
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
        SqliteGroupStore::members(self, actor, group_id).await
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

/// A list bound as a JSON array, read in SQL with `json_each`.
pub(super) fn json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// How write transactions start: taking the write lock at once, so two
/// instances over one file (or a reader upgrading) wait on the busy timeout
/// instead of failing with "database is locked" mid-transaction.
pub(super) const WRITE: &str = "BEGIN IMMEDIATE";
