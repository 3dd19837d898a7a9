//! Rows as both backends read them (`FromRow`), and their conversion into
//! the store's types. Numbers are `i64` in SQL (neither PostgreSQL nor
//! SQLite has unsigned integers); they are never negative.

use super::{DeviceCursor, GroupInfo, GroupMessage, MailboxItem, Member, Membership, Role};

// Column lists as macros, so queries stay `&'static str` (`concat!`), which
// is what sqlx accepts as SQL without an audit wrapper.

/// Columns of `groups g` that `GroupRow` reads.
macro_rules! group_columns {
    () => {
        "g.group_id, g.name, g.owner_user_id, g.member_count, g.created_at_ms, g.e2e, g.last_seq, g.epoch"
    };
}

/// Columns of `group_messages m` that `MessageRow` reads.
macro_rules! message_columns {
    () => {
        "m.group_id, m.seq, m.sender_user_id, m.sender_device_id, m.client_message_id, m.content_type, \
         m.body, m.sent_at_ms"
    };
}

/// The CTE `runs`: user `$1`'s first `$3` mailbox runs past position `$2`.
/// A run covers positions `end_seq - n + 1 ..= end_seq` for group seqs
/// `last_seq - n + 1 ..= last_seq`, so these runs hold at least `$3` items
/// after `$2`. Cut from the user's mailbox first (one shard under Citus);
/// each backend then joins every run with its messages by a primary-key
/// range (positions after `$2` only), ascending, at most `$3` (`ItemRow`).
macro_rules! mailbox_runs {
    () => {
        "WITH runs AS MATERIALIZED (SELECT end_seq, n, group_id, last_seq FROM mailbox_runs \
           WHERE user_id = $1 AND end_seq > $2 ORDER BY end_seq LIMIT $3) "
    };
}

/// `RETURNING` of a `device_cursors` update, to be followed by a `head_seq`.
macro_rules! cursor_returning {
    () => {
        "RETURNING device_id, begin_seq, fetch_seq, ack_seq, read_seq"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupRow {
    pub group_id: String,
    pub name: String,
    pub owner_user_id: String,
    pub member_count: i64,
    pub created_at_ms: i64,
    pub e2e: bool,
    pub last_seq: i64,
    pub epoch: i64,
}

impl From<GroupRow> for GroupInfo {
    fn from(r: GroupRow) -> Self {
        GroupInfo {
            group_id: r.group_id,
            name: r.name,
            owner_user_id: r.owner_user_id,
            member_count: r.member_count as u32,
            created_at_ms: r.created_at_ms,
            end_to_end_encrypted: r.e2e,
            last_seq: r.last_seq as u64,
            epoch: r.epoch as u64,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub group_id: String,
    pub seq: i64,
    pub sender_user_id: String,
    pub sender_device_id: String,
    pub client_message_id: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub sent_at_ms: i64,
}

impl From<MessageRow> for GroupMessage {
    fn from(r: MessageRow) -> Self {
        GroupMessage {
            group_id: r.group_id,
            seq: r.seq as u64,
            sender_user_id: r.sender_user_id,
            sender_device_id: r.sender_device_id,
            client_message_id: r.client_message_id,
            content_type: r.content_type,
            body: r.body,
            sent_at_ms: r.sent_at_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ItemRow {
    pub mailbox_seq: i64,
    #[sqlx(flatten)]
    pub message: MessageRow,
}

impl From<ItemRow> for MailboxItem {
    fn from(r: ItemRow) -> Self {
        MailboxItem {
            mailbox_seq: r.mailbox_seq as u64,
            message: r.message.into(),
            expired: false,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub user_id: String,
    pub role: i32,
    pub joined_at_ms: i64,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            user_id: r.user_id,
            role: Role::from_i32(r.role).unwrap_or(Role::Member),
            joined_at_ms: r.joined_at_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MembershipRow {
    #[sqlx(flatten)]
    pub group: GroupRow,
    pub role: i32,
    pub joined_at_ms: i64,
    pub begin_seq: i64,
    pub read_seq: i64,
}

impl From<MembershipRow> for Membership {
    fn from(r: MembershipRow) -> Self {
        Membership {
            group: r.group.into(),
            role: Role::from_i32(r.role).unwrap_or(Role::Member),
            joined_at_ms: r.joined_at_ms,
            begin_seq: r.begin_seq as u64,
            read_seq: r.read_seq as u64,
        }
    }
}

/// `device_cursors` with the user's mailbox head.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CursorRow {
    pub device_id: String,
    pub begin_seq: i64,
    pub fetch_seq: i64,
    pub ack_seq: i64,
    pub read_seq: i64,
    pub head_seq: i64,
    /// The user's trimmed position, where a query reads it.
    #[sqlx(default)]
    pub trimmed_seq: i64,
}

impl CursorRow {
    pub fn split(self) -> (DeviceCursor, u64) {
        (
            DeviceCursor {
                device_id: self.device_id,
                begin_seq: self.begin_seq as u64,
                fetch_seq: self.fetch_seq as u64,
                ack_seq: self.ack_seq as u64,
                read_seq: self.read_seq as u64,
            },
            self.head_seq as u64,
        )
    }
}

/// A mailbox run (see `mailbox_runs!`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub end_seq: i64,
    pub n: i64,
    pub group_id: String,
    pub last_seq: i64,
}

/// The user's first runs past `$2`, at most `$3` (both backends).
pub(crate) const RUNS_AFTER: &str = "SELECT end_seq, n, group_id, last_seq FROM mailbox_runs \
     WHERE user_id = $1 AND end_seq > $2 ORDER BY end_seq LIMIT $3";

/// Owner first, then by user id.
pub(crate) fn owner_first(members: &mut [Member]) {
    members.sort_by(|a, b| (a.role != Role::Owner, &a.user_id).cmp(&(b.role != Role::Owner, &b.user_id)));
}
