//! What both backends decide the same way: argument checks, limits, role
//! permissions, the bodies of group events, new-device windows.

use super::{GroupInfo, GroupMessage, NewGroup, NewMessage, Role, StoreError};
use crate::config::GroupStoreConfig;

/// Content type of the messages the store writes for membership changes
/// (JSON bodies: `{"event": "created" | "members_added" | "members_removed"
/// | "ownership_transferred", "actor": .., "users": [..], "role": ..,
/// "epoch": ..}`). Their sender is `""`; clients may not send this type.
pub const GROUP_EVENT_CONTENT_TYPE: &str = "application/vnd.hubbub.group-event+json";

/// Content types an end-to-end encrypted group accepts start with this
/// (`application/vnd.hubbub.ciphertext`, or with a suffix naming the
/// client's scheme, like `application/vnd.hubbub.ciphertext+olm`).
pub const CIPHERTEXT_CONTENT_TYPE: &str = "application/vnd.hubbub.ciphertext";

/// Bytes of bodies a pull or history page carries at most (it always
/// carries one item): a page of large bodies stays far below the gateway's
/// message limit, and the device just pulls again.
pub const PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Mailbox runs one retention step removes per user at most, so that the
/// first sweep over a long mailbox is many short transactions, not one
/// that holds its locks (or SQLite's writer) for the whole prefix.
pub(crate) const MAX_RUNS_PER_STEP: i64 = 10_000;

/// Pull and history page size when the caller asks for 0.
const DEFAULT_PAGE: u32 = 100;

/// The limits a store enforces, from its configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_members: u32,
    pub max_body_bytes: usize,
    pub max_page: u32,
    pub new_device_window: u64,
}

impl From<&GroupStoreConfig> for Limits {
    fn from(c: &GroupStoreConfig) -> Self {
        Self {
            max_members: c.max_members,
            max_body_bytes: c.max_body_bytes,
            max_page: c.max_page.max(1),
            new_device_window: c.new_device_window,
        }
    }
}

impl Limits {
    /// A caller's page size, defaulted and capped.
    pub fn page(&self, asked: u32) -> u32 {
        if asked == 0 {
            DEFAULT_PAGE.min(self.max_page)
        } else {
            asked.min(self.max_page)
        }
    }

    /// First mailbox position of a new device when the head is at `head`.
    pub fn new_device_begin(&self, head: u64) -> u64 {
        head.saturating_sub(self.new_device_window) + 1
    }
}

fn invalid(msg: String) -> StoreError {
    StoreError::InvalidArgument(msg)
}

/// Checks an id of 1 to 128 bytes.
pub(crate) fn id(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > 128 {
        return Err(invalid(format!(
            "{what} must be 1 to 128 bytes, got {} bytes",
            value.len()
        )));
    }
    printable(what, value)
}

/// Text without control characters: PostgreSQL refuses NUL in TEXT, and a
/// store error must never be what a client's input can provoke.
pub(crate) fn printable(what: &str, value: &str) -> Result<(), StoreError> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(invalid(format!(
            "{what} holds a control character ({:?}) at byte {at}; use printable text",
            c
        ))),
        None => Ok(()),
    }
}

/// Checks a list of user ids (at least one) and returns them sorted, once.
pub(crate) fn user_list(user_ids: &[String]) -> Result<Vec<String>, StoreError> {
    if user_ids.is_empty() {
        return Err(invalid("user_ids must name at least one user".into()));
    }
    for u in user_ids {
        id("every user id", u)?;
    }
    let mut users = user_ids.to_vec();
    users.sort();
    users.dedup();
    Ok(users)
}

/// Checks a new group; returns its initial members besides the owner, sorted.
pub(crate) fn new_group(new: &NewGroup, limits: &Limits) -> Result<Vec<String>, StoreError> {
    id("owner_user_id", &new.owner_user_id)?;
    if new.name.is_empty() || new.name.len() > 128 {
        return Err(invalid(format!(
            "name must be 1 to 128 bytes, got {} bytes",
            new.name.len()
        )));
    }
    if new.client_key.len() > 64 {
        return Err(invalid(format!(
            "client_key must be 0 to 64 bytes, got {}",
            new.client_key.len()
        )));
    }
    printable("name", &new.name)?;
    printable("client_key", &new.client_key)?;
    for u in &new.member_user_ids {
        id("every member id", u)?;
    }
    let mut members: Vec<String> = new
        .member_user_ids
        .iter()
        .filter(|u| **u != new.owner_user_id)
        .cloned()
        .collect();
    members.sort();
    members.dedup();
    let total = members.len() as u64 + 1;
    if total > limits.max_members as u64 {
        return Err(StoreError::ResourceExhausted(format!(
            "a group holds at most {} members (owner included); {total} were given",
            limits.max_members
        )));
    }
    Ok(members)
}

/// Checks a message to send.
pub(crate) fn new_message(m: &NewMessage, limits: &Limits) -> Result<(), StoreError> {
    id("group_id", &m.group_id)?;
    id("sender_user_id", &m.sender_user_id)?;
    if m.sender_device_id.len() > 128 {
        return Err(invalid(format!(
            "sender_device_id must be 0 to 128 bytes, got {}",
            m.sender_device_id.len()
        )));
    }
    if m.client_message_id.is_empty() || m.client_message_id.len() > 64 {
        return Err(invalid(format!(
            "client_message_id must be 1 to 64 bytes, got {}",
            m.client_message_id.len()
        )));
    }
    if m.content_type.is_empty() || m.content_type.len() > 64 {
        return Err(invalid(format!(
            "content_type must be 1 to 64 bytes, got {}",
            m.content_type.len()
        )));
    }
    printable("sender_device_id", &m.sender_device_id)?;
    printable("client_message_id", &m.client_message_id)?;
    printable("content_type", &m.content_type)?;
    if m.content_type == GROUP_EVENT_CONTENT_TYPE {
        return Err(invalid(format!(
            "content_type {GROUP_EVENT_CONTENT_TYPE} is reserved for group events"
        )));
    }
    if m.body.is_empty() {
        return Err(invalid("body must not be empty".into()));
    }
    if m.body.len() > limits.max_body_bytes {
        return Err(StoreError::ResourceExhausted(format!(
            "body is {} bytes; the limit is {}",
            m.body.len(),
            limits.max_body_bytes
        )));
    }
    Ok(())
}

/// An end-to-end encrypted group takes ciphertext only: a body the server
/// could read is refused before it is stored.
pub(crate) fn content_for(m: &NewMessage, e2e: bool) -> Result<(), StoreError> {
    if e2e && !m.content_type.starts_with(CIPHERTEXT_CONTENT_TYPE) {
        return Err(invalid(format!(
            "group {} is end-to-end encrypted: encrypt the body on the device and send it with content_type \
             {CIPHERTEXT_CONTENT_TYPE} (or {CIPHERTEXT_CONTENT_TYPE}+<scheme>), not {:?}",
            m.group_id, m.content_type
        )));
    }
    Ok(())
}

/// The group must exist.
pub(crate) fn found<T>(group_id: &str, row: Option<T>) -> Result<T, StoreError> {
    row.ok_or_else(|| StoreError::NotFound(format!("group {group_id} does not exist")))
}

/// The actor must be a member.
pub(crate) fn member(actor: &str, group_id: &str, role: Option<Role>) -> Result<Role, StoreError> {
    role.ok_or_else(|| StoreError::PermissionDenied(format!("{actor} is not a member of group {group_id}")))
}

/// May `actor_role` add members with `role`?
pub(crate) fn may_add(actor: &str, actor_role: Role, role: Role) -> Result<(), StoreError> {
    match (actor_role, role) {
        (_, Role::Owner) => Err(invalid(
            "members cannot be added as OWNER; transfer ownership instead".into(),
        )),
        (Role::Member, _) => Err(StoreError::PermissionDenied(format!(
            "{actor} is a MEMBER; only the OWNER or an ADMIN may add members"
        ))),
        (Role::Admin, Role::Admin) => Err(StoreError::PermissionDenied(format!(
            "{actor} is an ADMIN; only the OWNER may add ADMINs"
        ))),
        _ => Ok(()),
    }
}

/// May `actor` (with `actor_role`) remove `target` (with `target_role`)?
pub(crate) fn may_remove(actor: &str, actor_role: Role, target: &str, target_role: Role) -> Result<(), StoreError> {
    if actor == target {
        if actor_role == Role::Owner {
            return Err(StoreError::FailedPrecondition(format!(
                "{actor} owns the group and cannot leave it; transfer ownership first"
            )));
        }
        return Ok(());
    }
    match (actor_role, target_role) {
        (Role::Owner, _) | (Role::Admin, Role::Member) => Ok(()),
        (Role::Admin, _) => Err(StoreError::PermissionDenied(format!(
            "{actor} is an ADMIN and may remove only MEMBERs; {target} is {}",
            target_role.name().to_uppercase()
        ))),
        (Role::Member, _) => Err(StoreError::PermissionDenied(format!(
            "{actor} is a MEMBER and may remove only itself, not {target}"
        ))),
    }
}

/// A group seq must exist.
pub(crate) fn seq_in_group(what: &str, seq: u64, group: &GroupInfo) -> Result<(), StoreError> {
    if seq > group.last_seq {
        return Err(StoreError::OutOfRange(format!(
            "{what} {seq} is above the last seq {} of group {}",
            group.last_seq, group.group_id
        )));
    }
    Ok(())
}

/// A mailbox position must have been fetched by the device.
pub(crate) fn fetched(what: &str, mailbox_seq: u64, device_id: &str, fetch_seq: u64) -> Result<(), StoreError> {
    if mailbox_seq > fetch_seq {
        return Err(StoreError::OutOfRange(format!(
            "{what} {mailbox_seq} is above the fetch cursor {fetch_seq} of device {device_id}: pull before"
        )));
    }
    Ok(())
}

/// Where a pull of `device_id` at `cursor` starts, and the ack it moves to
/// first: (start, ack). An ack above the fetch cursor is refused.
pub(crate) fn pull_start(
    from: super::Position,
    cursor: &super::DeviceCursor,
    device_id: &str,
) -> Result<(u64, u64), StoreError> {
    let ack = match from.ack {
        Some(ack) => {
            positive("ack_mailbox_seq", ack)?;
            fetched("ack_mailbox_seq", ack, device_id, cursor.fetch_seq)?;
            ack.max(cursor.ack_seq)
        }
        None => cursor.ack_seq,
    };
    if let Some(after) = from.after {
        within("after_mailbox_seq", after)?;
    }
    let start = from.after.unwrap_or(ack).max(cursor.begin_seq.saturating_sub(1));
    Ok((start, ack))
}

/// The body of a group event.
pub(crate) fn event_body(event: &str, actor: &str, users: &[String], role: Option<Role>, epoch: u64) -> Vec<u8> {
    serde_json::json!({
        "event": event,
        "actor": actor,
        "users": users,
        "role": role.map(Role::name),
        "epoch": epoch,
    })
    .to_string()
    .into_bytes()
}

/// A fresh group id.
pub(crate) fn new_group_id() -> String {
    format!("g{:032x}", rand::random::<u128>())
}

/// What `append` writes.
pub(crate) struct Draft<'a> {
    pub sender: &'a str,
    pub device: &'a str,
    pub client_message_id: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub now: i64,
}

/// Event draft: sender "" and a key no client can hold (its sender is "").
pub(crate) fn event<'a>(key: &'a str, body: &'a [u8], now: i64) -> Draft<'a> {
    Draft {
        sender: "",
        device: "",
        client_message_id: key,
        content_type: GROUP_EVENT_CONTENT_TYPE,
        body,
        now,
    }
}

/// Adding `adding` members to a group of `count` must stay within the limit.
pub(crate) fn room_for(count: u64, adding: u64, limits: &Limits, group_id: &str) -> Result<(), StoreError> {
    if count + adding > limits.max_members as u64 {
        return Err(StoreError::ResourceExhausted(format!(
            "group {group_id} has {count} members; adding {adding} would exceed the limit of {}; nobody was added",
            limits.max_members
        )));
    }
    Ok(())
}

/// Only the owner transfers ownership.
pub(crate) fn may_transfer(actor: &str, actor_role: Role) -> Result<(), StoreError> {
    if actor_role != Role::Owner {
        return Err(StoreError::PermissionDenied(format!(
            "{actor} is {}; only the OWNER may transfer ownership",
            actor_role.name().to_uppercase()
        )));
    }
    Ok(())
}

/// Ownership goes to a member.
pub(crate) fn transfer_target(user: &str, group_id: &str, role: Option<Role>) -> Result<(), StoreError> {
    if role.is_none() {
        return Err(StoreError::FailedPrecondition(format!(
            "{user} is not a member of group {group_id}; add it before transferring ownership"
        )));
    }
    Ok(())
}

/// A position that must be at least 1 (and within what the store counts).
pub(crate) fn positive(what: &str, value: u64) -> Result<(), StoreError> {
    if value == 0 {
        return Err(invalid(format!("{what} must be at least 1")));
    }
    within(what, value)
}

/// Positions are stored as BIGINT: anything above is past every position.
pub(crate) fn within(what: &str, value: u64) -> Result<(), StoreError> {
    if value > i64::MAX as u64 {
        return Err(StoreError::OutOfRange(format!(
            "{what} {value} is past every position (at most {})",
            i64::MAX
        )));
    }
    Ok(())
}

/// A retry of `m` found `original` under the same key: the same content is
/// the same message, other content a refused reuse of the key.
pub(crate) fn duplicate(m: &NewMessage, original: GroupMessage) -> Result<super::Sent, StoreError> {
    if original.content_type != m.content_type || original.body != m.body {
        return Err(StoreError::AlreadyExists(format!(
            "client_message_id {:?} was already used by {} in group {} for a different message (seq {}); \
             use a new id for new content",
            m.client_message_id, m.sender_user_id, m.group_id, original.seq
        )));
    }
    Ok(super::Sent {
        message: original,
        duplicate: true,
        deliveries: Vec::new(),
    })
}

/// Read receipts from every member's read position.
pub(crate) fn receipts(positions: Vec<(String, u64)>, seq: u64) -> super::Receipts {
    let (read, unread): (Vec<_>, Vec<_>) = positions.into_iter().partition(|(_, r)| *r >= seq);
    super::Receipts {
        reader_user_ids: read.into_iter().map(|(u, _)| u).collect(),
        unread_count: unread.len() as u32,
    }
}

/// The exclusive upper bound of a history page.
pub(crate) fn before(before: Option<u64>, group: &GroupInfo) -> Result<u64, StoreError> {
    let end = group.last_seq + 1;
    match before {
        None => Ok(end),
        Some(b) if b > end => Err(StoreError::OutOfRange(format!(
            "before_seq {b} is above the next seq {end} of group {}",
            group.group_id
        ))),
        Some(b) => Ok(b),
    }
}

/// Cuts a page read with one item more than `limit` to at most `limit`
/// items and about `PAGE_BYTES` of bodies (never to nothing); returns
/// whether more follow.
pub(crate) fn cut_page<T>(items: &mut Vec<T>, limit: usize, body_len: impl Fn(&T) -> usize) -> bool {
    let mut bytes = 0;
    let mut keep = 0;
    for item in items.iter().take(limit) {
        bytes += body_len(item) + 128;
        if keep > 0 && bytes > PAGE_BYTES {
            break;
        }
        keep += 1;
    }
    let more = items.len() > keep;
    items.truncate(keep);
    more
}
