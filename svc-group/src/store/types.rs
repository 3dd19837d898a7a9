//! What the `GroupStore` takes and answers.

/// A member's role. The numbers are the contract's `GroupRole` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sends and reads messages; may leave.
    Member = 1,
    /// A member that may also add members and remove members.
    Admin = 2,
    /// The one owner: may add admins, remove anyone but itself, transfer.
    Owner = 3,
}

impl Role {
    /// The role stored as `n`, if any.
    pub fn from_i32(n: i32) -> Option<Role> {
        match n {
            1 => Some(Role::Member),
            2 => Some(Role::Admin),
            3 => Some(Role::Owner),
            _ => None,
        }
    }

    /// Its name in messages and events.
    pub fn name(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// A group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group, assigned at creation.
    pub group_id: String,
    /// Display name.
    pub name: String,
    /// The owner.
    pub owner_user_id: String,
    /// Members, owner included.
    pub member_count: u32,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Bodies are end-to-end encrypted by the clients.
    pub end_to_end_encrypted: bool,
    /// Last assigned message seq.
    pub last_seq: u64,
    /// Membership epoch: 1 at creation, +1 on every add or removal that
    /// changed someone (clients rekey when it moves).
    pub epoch: u64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub user_id: String,
    /// Its role.
    pub role: Role,
    /// When it was added, unix milliseconds.
    pub joined_at_ms: i64,
}

/// A group as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group.
    pub group: GroupInfo,
    /// The member's role.
    pub role: Role,
    /// When it was added.
    pub joined_at_ms: i64,
    /// First seq of its visible history (joined, or cleared).
    pub begin_seq: u64,
    /// Highest seq it marked read.
    pub read_seq: u64,
}

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWithMembers {
    /// The group.
    pub group: GroupInfo,
    /// Owner first, then by user id.
    pub members: Vec<Member>,
}

/// A group to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewGroup {
    /// The creator, who becomes the owner.
    pub owner_user_id: String,
    /// Display name, 1 to 128 bytes.
    pub name: String,
    /// Initial members besides the owner (as `Member`).
    pub member_user_ids: Vec<String>,
    /// Fixed for the group's life.
    pub end_to_end_encrypted: bool,
    /// Idempotency key per owner, 0 to 64 bytes ("" for none).
    pub client_key: String,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    /// The group.
    pub group_id: String,
    /// The sender (a member).
    pub sender_user_id: String,
    /// The sending device, 0 to 128 bytes.
    pub sender_device_id: String,
    /// Idempotency key per (group, sender), 1 to 64 bytes.
    pub client_message_id: String,
    /// 1 to 64 bytes; the group-event type is reserved.
    pub content_type: String,
    /// 1 byte to the body limit.
    pub body: Vec<u8>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMessage {
    /// The group.
    pub group_id: String,
    /// Per-group sequence, 1, 2, 3... without gaps.
    pub seq: u64,
    /// The sender; "" for a group event.
    pub sender_user_id: String,
    /// The sending device ("" when unknown).
    pub sender_device_id: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
    /// What the body holds.
    pub content_type: String,
    /// The payload.
    pub body: Vec<u8>,
    /// Commit time, unix milliseconds.
    pub sent_at_ms: i64,
}

/// One mailbox entry written by a commit: what the notify step tells the
/// user's devices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivery {
    /// The member.
    pub user_id: String,
    /// The member's new mailbox head.
    pub mailbox_seq: u64,
}

/// What a commit wrote into mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The message written.
    pub message: GroupMessage,
    /// One per member it was written to, sorted by user id.
    pub deliveries: Vec<Delivery>,
}

/// Outcome of `create_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The group and its members, owner first.
    pub group: GroupWithMembers,
    /// True when `client_key` named a group created before.
    pub existed: bool,
    /// The creation event, for the notify step (None when `existed`).
    pub dispatch: Option<Dispatch>,
}

/// Outcome of a membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersChanged {
    /// The group after the change.
    pub group: GroupInfo,
    /// Who was added, removed, or changed role (removed ones with their
    /// former role), by user id; empty when nothing changed.
    pub changed: Vec<Member>,
    /// The change's event (None when nothing changed).
    pub dispatch: Option<Dispatch>,
}

/// Outcome of `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message as stored (the original one for a duplicate).
    pub message: GroupMessage,
    /// True when this was a retry: nothing was written again.
    pub duplicate: bool,
    /// The mailbox heads after the send (empty for a duplicate, and in a
    /// `SentBatch`, which reports them per group).
    pub deliveries: Vec<Delivery>,
}

/// What one group commit wrote for one group: its new messages and, per
/// member, the mailbox head after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDispatch {
    /// The group.
    pub group_id: String,
    /// Its bodies are end-to-end encrypted (never to be shown to a push
    /// provider).
    pub end_to_end_encrypted: bool,
    /// New messages the commit stored in it, ascending by seq.
    pub messages: Vec<GroupMessage>,
    /// One per member written to, sorted by user id (each member received
    /// one mailbox entry per message, the last at `mailbox_seq`).
    pub deliveries: Vec<Delivery>,
}

/// Outcome of `send_batch`.
#[derive(Debug)]
pub struct SentBatch {
    /// One answer per send, in the batch's order (each `Sent` with empty
    /// `deliveries`: they are in `dispatched`).
    pub answers: Vec<Result<Sent, super::StoreError>>,
    /// Per group with new messages, by group id.
    pub dispatched: Vec<GroupDispatch>,
}

/// Where one device stands in its user's mailbox (mailbox positions).
/// `begin_seq - 1 <= ack_seq <= fetch_seq`, `read_seq <= fetch_seq`; all
/// only move forward.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceCursor {
    /// The device.
    pub device_id: String,
    /// First position the device can pull.
    pub begin_seq: u64,
    /// Highest position returned by a pull.
    pub fetch_seq: u64,
    /// Highest position the device confirmed stored.
    pub ack_seq: u64,
    /// Highest position the device marked read.
    pub read_seq: u64,
}

/// One mailbox entry with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxItem {
    /// Position in the user's mailbox.
    pub mailbox_seq: u64,
    /// The message; when `expired`, only its group id and seq.
    pub message: GroupMessage,
    /// The message outlived its group's retention before this pull.
    pub expired: bool,
}

/// Where a pull starts, and what it acks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Items strictly after this; unset: after the ack (once `ack` moved it).
    pub after: Option<u64>,
    /// Ack up to here first (at most the device's fetch); unset: no ack.
    pub ack: Option<u64>,
}

impl Position {
    /// After the device's ack, acking nothing.
    pub const ACKED: Position = Position { after: None, ack: None };

    /// Strictly after `seq`, acking nothing.
    pub fn after(seq: u64) -> Position {
        Position {
            after: Some(seq),
            ack: None,
        }
    }
}

/// A page of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Ascending by mailbox_seq.
    pub items: Vec<MailboxItem>,
    /// More items follow the last one.
    pub has_more: bool,
    /// The cursor after the pull.
    pub cursor: DeviceCursor,
    /// The user's mailbox head.
    pub head_mailbox_seq: u64,
    /// Non-zero when the pull started below the user's trimmed position:
    /// everything up to it is gone, and the page resumes after it.
    pub trimmed_mailbox_seq: u64,
}

/// Outcome of `mark_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedRead {
    /// The user's read position in the group.
    pub read_seq: u64,
    /// The device's cursor.
    pub cursor: DeviceCursor,
}

/// One member's read position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPosition {
    /// The member.
    pub user_id: String,
    /// Highest seq it marked read (0: none).
    pub read_seq: u64,
}

/// Who has read a seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipts {
    /// Current members whose read position is at or above it, by user id.
    pub reader_user_ids: Vec<String>,
    /// Current members below it.
    pub unread_count: u32,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Newest first.
    pub messages: Vec<GroupMessage>,
    /// Older visible messages remain: ask again before the last one.
    pub has_more: bool,
    /// The actor's begin position (nothing below it is visible).
    pub begin_seq: u64,
    /// Messages up to this seq outlived retention (0: none did).
    pub expired_through_seq: u64,
}

/// What one retention step may remove (`GroupStore::trim_mailboxes`,
/// `GroupStore::expire_messages`); times are unix milliseconds, 0 for never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Mailbox entries every device of their user has acked, of messages
    /// sent before this, may go.
    pub acked_before_ms: i64,
    /// Mailbox entries of messages sent before this go, acked or not.
    pub any_before_ms: i64,
}

/// One step of mailbox trimming over a batch of users.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrimStep {
    /// The last user of the batch: the next step starts after it; `None`
    /// when the batch reached the last user.
    pub next_after: Option<String>,
    /// Users whose trimmed position moved.
    pub users: u64,
    /// Mailbox rows (runs) removed.
    pub rows: u64,
}
