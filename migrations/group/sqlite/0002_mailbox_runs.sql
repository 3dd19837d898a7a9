-- Group commit writes one mailbox row per member and group per commit,
-- however many consecutive messages of the group the commit holds: a run.
-- A run covers mailbox positions end_seq - n + 1 ..= end_seq of user_id,
-- which are the group's seqs last_seq - n + 1 ..= last_seq, in order.
CREATE TABLE mailbox_runs (
    user_id  TEXT   NOT NULL,
    end_seq  INTEGER NOT NULL,
    group_id TEXT   NOT NULL,
    last_seq INTEGER NOT NULL,
    n        INTEGER NOT NULL CHECK (n >= 1),
    PRIMARY KEY (user_id, end_seq)
);

-- Entries written before are runs of one.
INSERT INTO mailbox_runs (user_id, end_seq, group_id, last_seq, n)
SELECT user_id, mailbox_seq, group_id, seq, 1 FROM mailbox_entries;
DROP TABLE mailbox_entries;
