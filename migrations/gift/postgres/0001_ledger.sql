-- The gift ledger of live rooms (svc-gift/LEDGER.md). Distributed by
-- room_id, except the recipients' totals (by recipient_user_id).

-- One row per room that has a ledger or a host. `last_seq` is the room's
-- gift counter: a commit takes this row's lock, so seqs have no gaps
-- across replicas. `host_user_id` receives the gifts sent without a target.
CREATE TABLE gift_rooms (
    room_id      TEXT   PRIMARY KEY,
    last_seq     BIGINT NOT NULL DEFAULT 0,
    host_user_id TEXT   NOT NULL DEFAULT ''
) WITH (fillfactor = 50);

-- The records, stored once. `target_user_id` as the sender asked (empty:
-- the host), `recipient_user_id` as resolved at commit. `value` is count
-- times the catalogue's unit value.
CREATE TABLE gift_records (
    room_id           TEXT     NOT NULL,
    seq               BIGINT   NOT NULL,
    sender_user_id    TEXT     NOT NULL,
    kind              INTEGER  NOT NULL,
    target_user_id    TEXT     NOT NULL,
    recipient_user_id TEXT     NOT NULL,
    gift_id           TEXT     NOT NULL,
    count             BIGINT   NOT NULL,
    value             BIGINT   NOT NULL,
    client_key        TEXT     NOT NULL,
    payload           BYTEA    NOT NULL,
    sent_at_ms        BIGINT   NOT NULL,
    PRIMARY KEY (room_id, seq),
    UNIQUE (room_id, sender_user_id, client_key)
);
CREATE INDEX gift_records_by_recipient ON gift_records (room_id, recipient_user_id, seq);

-- Running totals, kept in the commit's transaction (never recomputed).
CREATE TABLE gift_room_totals (
    room_id TEXT   NOT NULL,
    gift_id TEXT   NOT NULL,
    count   BIGINT NOT NULL,
    value   BIGINT NOT NULL,
    PRIMARY KEY (room_id, gift_id)
) WITH (fillfactor = 50);

CREATE TABLE gift_recipient_totals (
    recipient_user_id TEXT   NOT NULL,
    gift_id           TEXT   NOT NULL,
    count             BIGINT NOT NULL,
    value             BIGINT NOT NULL,
    PRIMARY KEY (recipient_user_id, gift_id)
) WITH (fillfactor = 50);

CREATE TABLE gift_room_senders (
    room_id        TEXT   NOT NULL,
    sender_user_id TEXT   NOT NULL,
    count          BIGINT NOT NULL,
    value          BIGINT NOT NULL,
    PRIMARY KEY (room_id, sender_user_id)
);
CREATE INDEX gift_room_senders_by_value ON gift_room_senders (room_id, value DESC, sender_user_id);
