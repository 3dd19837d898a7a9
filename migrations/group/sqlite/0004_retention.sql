-- Retention (svc-group/src/retention.rs). `trimmed_seq`: the user's mailbox
-- positions up to here were trimmed; a device whose pull starts below it is
-- told so (`trimmed_mailbox_seq`) and resumes after it. The time index lets
-- the sweep find messages past their retention without scanning groups.
ALTER TABLE mailbox_heads ADD COLUMN trimmed_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX group_messages_by_time ON group_messages (sent_at_ms);
