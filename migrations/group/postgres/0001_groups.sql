-- Group chat: groups, members, messages (distributed by group_id), and
-- mailboxes and device cursors (distributed by user_id). See
-- svc-group/MODEL.md. Numbers are BIGINT and never negative.

-- One row per group. `last_seq` is the group's message counter: a send
-- takes this row's lock, so the per-group seq has no gaps across replicas.
CREATE TABLE groups (
    group_id      TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    owner_user_id TEXT    NOT NULL,
    e2e           BOOLEAN NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    last_seq      BIGINT  NOT NULL DEFAULT 0,
    epoch         BIGINT  NOT NULL DEFAULT 1,
    member_count  BIGINT  NOT NULL
);

-- CreateGroup idempotency: (owner, client_key) -> the group created first.
CREATE TABLE group_create_keys (
    owner_user_id TEXT NOT NULL,
    client_key    TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    PRIMARY KEY (owner_user_id, client_key)
);

-- Current members only (a removed member's row is deleted). role: 1 member,
-- 2 admin, 3 owner. begin_seq: first group seq of the member's visible
-- history (the event that added it, or past a clear); read_seq: highest seq
-- any of its devices marked read.
CREATE TABLE group_members (
    group_id     TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    role         INTEGER NOT NULL,
    joined_at_ms BIGINT  NOT NULL,
    begin_seq    BIGINT  NOT NULL,
    read_seq     BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

-- Messages, stored once per group. Group events have sender_user_id ''.
CREATE TABLE group_messages (
    group_id          TEXT   NOT NULL,
    seq               BIGINT NOT NULL,
    sender_user_id    TEXT   NOT NULL,
    sender_device_id  TEXT   NOT NULL,
    client_message_id TEXT   NOT NULL,
    content_type      TEXT   NOT NULL,
    body              BYTEA  NOT NULL,
    sent_at_ms        BIGINT NOT NULL,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, sender_user_id, client_message_id)
);

-- Per-user mailbox counter (the last mailbox_seq assigned).
CREATE TABLE mailbox_heads (
    user_id  TEXT   PRIMARY KEY,
    head_seq BIGINT NOT NULL
);

-- One entry per (member, message) written while the user was a member.
CREATE TABLE mailbox_entries (
    user_id     TEXT   NOT NULL,
    mailbox_seq BIGINT NOT NULL,
    group_id    TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (user_id, mailbox_seq)
);

-- Per-device positions in the user's mailbox.
CREATE TABLE device_cursors (
    user_id   TEXT   NOT NULL,
    device_id TEXT   NOT NULL,
    begin_seq BIGINT NOT NULL,
    fetch_seq BIGINT NOT NULL,
    ack_seq   BIGINT NOT NULL,
    read_seq  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
