-- Co-streaming answers (svc-gift/LEDGER.md). An answer is a record of its
-- own (kind 3) naming the request it answers; a request's state lives in
-- gift_co_streams, moved in the answer's commit, so a request takes one
-- answer and the pending ones of a user are one index range.
ALTER TABLE gift_records ADD COLUMN answers_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gift_records ADD COLUMN answer INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gift_records ADD COLUMN expires_at_ms INTEGER NOT NULL DEFAULT 0;

-- state: 0 pending, else the answer (1 accepted, 2 declined, 3 cancelled).
CREATE TABLE gift_co_streams (
    room_id           TEXT    NOT NULL,
    request_seq       INTEGER NOT NULL,
    requester_user_id TEXT    NOT NULL,
    addressee_user_id TEXT    NOT NULL,
    state             INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (room_id, request_seq)
);
CREATE INDEX gift_co_streams_pending ON gift_co_streams (room_id, addressee_user_id, state, request_seq);
