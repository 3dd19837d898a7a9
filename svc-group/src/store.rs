//! `GroupStore`: the durable half of group chat. One trait, two backends
//! (`postgres` for deployments, `sqlite` for `hubbub all`), one conformance
//! suite for both (`tests/conformance.rs`). The model and its invariants are
//! in `svc-group/MODEL.md`; the schema in `migrations/group/`.
//!
//! A message is stored once, in its group, under a per-group `seq`; in the
//! same transaction it is written into the mailbox of every current member
//! (sender included) under a per-user `mailbox_seq`. Each device keeps its
//! own cursor over its user's mailbox. Every membership change is itself a
//! message of the group (content type [`GROUP_EVENT_CONTENT_TYPE`], sender
//! `""`), so devices learn it by pulling.
//!
//! # Distribution over Citus
//! Two families of tables, each with its own distribution column:
//! - by `group_id`, co-located: `groups`, `group_members`, `group_messages`.
//!   A send locks one `groups` row and reads the group's members: one shard.
//! - by `user_id`, co-located: `mailbox_heads`, `mailbox_runs`,
//!   `device_cursors`. A pull, an ack and a cursor read touch one shard.
//!
//! No sequence is global: `seq` is a counter in the group row, `mailbox_seq`
//! a counter in the user's head row. The two cross-family steps are the
//! diffusion (an `INSERT .. SELECT` from the group's members into the users'
//! heads and entries, which Citus runs as a repartitioned insert) and the
//! pull, written as a materialised CTE over the user's mailbox (a router
//! query on the user's shard) whose small result is then joined with
//! `group_messages` by `(group_id, seq)` primary key: Citus plans that as an
//! intermediate result pushed to the message shards, not as a join of two
//! distributed tables. `group_create_keys` is distributed by `owner_user_id`.
//! `list_groups` filters `group_members` by user: a fan-out over the group
//! shards (a rare call; a user-side membership table would make it a router
//! query if it ever matters).

mod batch;
mod error;
#[macro_use]
mod rows;
pub mod keys;
pub mod postgres;
mod postgres_groups;
mod postgres_keys;
mod postgres_mailbox;
mod postgres_retention;
mod pull;
mod rules;
pub mod sqlite;
mod sqlite_groups;
mod sqlite_keys;
mod sqlite_mailbox;
mod sqlite_retention;
mod types;

pub use error::StoreError;
pub use rules::GROUP_EVENT_CONTENT_TYPE;
pub use types::*;

use std::future::Future;

/// Shorthand for the futures the trait returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// Groups, members, messages, mailboxes and cursors; see the module
/// documentation. Every method is one transaction: it happens entirely or
/// not at all, and a retry after `Unavailable` is safe (calls are
/// idempotent or carry an idempotency key).
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group owned by `new.owner_user_id` with its initial members
    /// (duplicates and the owner's own id ignored), and writes its first
    /// message (seq 1, the creation event). With a non-empty `client_key`, a
    /// retry by the same owner returns the group created first
    /// (`Created::existed`, no dispatch).
    fn create_group(&self, new: &NewGroup) -> impl Future<Output = StoreResult<Created>> + Send;

    /// Adds `user_ids` with `role` (never `Owner`). All-or-nothing; existing
    /// members are skipped and keep their role. Added members see history
    /// from the event announcing them. Bumps the membership epoch when
    /// anyone was added.
    fn add_members(
        &self,
        actor: &str,
        group_id: &str,
        user_ids: &[String],
        role: Role,
    ) -> impl Future<Output = StoreResult<MembersChanged>> + Send;

    /// Removes `user_ids` (the actor's own id means leaving). All-or-nothing;
    /// non-members are skipped. The removal event is the last message the
    /// removed users receive. Bumps the membership epoch when anyone left.
    fn remove_members(
        &self,
        actor: &str,
        group_id: &str,
        user_ids: &[String],
    ) -> impl Future<Output = StoreResult<MembersChanged>> + Send;

    /// Makes `new_owner` (a member) the owner; the previous owner becomes an
    /// admin. Only the owner may.
    fn transfer_ownership(
        &self,
        actor: &str,
        group_id: &str,
        new_owner: &str,
    ) -> impl Future<Output = StoreResult<MembersChanged>> + Send;

    /// The group and its members (owner first, then by user id), for a member.
    fn members(&self, actor: &str, group_id: &str) -> impl Future<Output = StoreResult<GroupWithMembers>> + Send;

    /// The groups `user_id` belongs to, ordered by group id, after `after`
    /// (exclusive), at most `limit` (0: 100; capped at the page limit).
    fn list_groups(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Membership>>> + Send;

    /// Group commit: stores every message of the batch under the next seqs
    /// of its group and writes it into every member's mailbox, all in one
    /// transaction; each send is idempotent by (group, sender,
    /// client_message_id) and answered on its own (a refused send does not
    /// stop the others). A group's messages take consecutive seqs in batch
    /// order; each member gets one mailbox row per group per batch. The
    /// senders' read positions move to their messages. `Err` means nothing
    /// of the batch was stored.
    fn send_batch(&self, messages: &[NewMessage]) -> impl Future<Output = StoreResult<SentBatch>> + Send;

    /// One send as a batch of one, with its deliveries.
    fn send(&self, message: &NewMessage) -> impl Future<Output = StoreResult<Sent>> + Send {
        async move {
            let batch = self.send_batch(std::slice::from_ref(message)).await?;
            let mut sent = batch.answers.into_iter().next().ok_or_else(|| {
                StoreError::Unavailable(sqlx::Error::Protocol("a batch of one send gave no answer".into()))
            })??;
            sent.deliveries = batch
                .dispatched
                .into_iter()
                .next()
                .map(|d| d.deliveries)
                .unwrap_or_default();
            Ok(sent)
        }
    }

    /// The device's cursor, created on first use at a bounded window of
    /// recent history behind the mailbox head; with the mailbox head.
    fn cursor(&self, user_id: &str, device_id: &str) -> impl Future<Output = StoreResult<(DeviceCursor, u64)>> + Send;

    /// With `from.ack`, first moves the device's ack forward to it (as
    /// `ack`, in the same transaction); then the mailbox items strictly
    /// after `from.after` (unset: after the device's ack; never before its
    /// begin), ascending, at most `limit` (0: 100; capped at the page
    /// limit), joined with their messages. Moves fetch forward.
    fn pull(
        &self,
        user_id: &str,
        device_id: &str,
        from: Position,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Pulled>> + Send;

    /// Moves the device's ack forward to `mailbox_seq` (at most its fetch).
    fn ack(
        &self,
        user_id: &str,
        device_id: &str,
        mailbox_seq: u64,
    ) -> impl Future<Output = StoreResult<DeviceCursor>> + Send;

    /// Moves the user's read position in the group forward to `seq` (at most
    /// the group's last seq) and, when `mailbox_seq` is not 0, the device's
    /// read cursor to it (at most its fetch).
    fn mark_read(
        &self,
        user_id: &str,
        device_id: &str,
        group_id: &str,
        seq: u64,
        mailbox_seq: u64,
    ) -> impl Future<Output = StoreResult<MarkedRead>> + Send;

    /// Every current member's read position in the group, by user id.
    fn read_positions(
        &self,
        actor: &str,
        group_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<ReadPosition>>> + Send;

    /// Which current members have read the group up to `seq`.
    fn receipts(&self, actor: &str, group_id: &str, seq: u64) -> impl Future<Output = StoreResult<Receipts>> + Send;

    /// The group's messages before `before` (unset: the newest), newest
    /// first, never below the actor's begin position, at most `limit`.
    fn history(
        &self,
        actor: &str,
        group_id: &str,
        before: Option<u64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<History>> + Send;

    /// Clears the actor's visible history of the group: its begin position
    /// moves past the last seq. Returns the new begin position.
    fn clear_history(&self, actor: &str, group_id: &str) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Retention, one batch: trims the mailboxes of at most `users` users
    /// after `after` (by user id) as far as `policy` allows. A user's trim is
    /// a prefix of its mailbox (its trimmed position only moves up) and
    /// stops at the first entry that must stay. `None` when another replica
    /// is sweeping (this one skips the round).
    fn trim_mailboxes(
        &self,
        after: Option<&str>,
        users: u32,
        policy: Retention,
    ) -> impl Future<Output = StoreResult<Option<TrimStep>>> + Send;

    /// Retention, one batch: deletes at most `limit` messages sent before
    /// `sent_before_ms`, oldest first; the count deleted. A mailbox entry of
    /// a deleted message is pulled as `expired`. `None` when another replica
    /// is sweeping.
    fn expire_messages(&self, sent_before_ms: i64, limit: u32)
    -> impl Future<Output = StoreResult<Option<u64>>> + Send;
}

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
