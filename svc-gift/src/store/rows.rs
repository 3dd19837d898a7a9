//! Rows as both backends read them. Numbers are `i64` in SQL; never
//! negative.

use super::{ItemTotal, Record, Room};

/// Columns of `gift_records` that `RecordRow` reads.
pub const RECORD_COLUMNS: &str = "room_id, seq, sender_user_id, kind, target_user_id, recipient_user_id, \
     gift_id, count, value, client_key, payload, sent_at_ms, answers_seq, answer, expires_at_ms";

#[derive(Debug, sqlx::FromRow)]
pub struct RecordRow {
    room_id: String,
    seq: i64,
    sender_user_id: String,
    kind: i32,
    target_user_id: String,
    recipient_user_id: String,
    gift_id: String,
    count: i64,
    value: i64,
    client_key: String,
    payload: Vec<u8>,
    sent_at_ms: i64,
    answers_seq: i64,
    answer: i32,
    expires_at_ms: i64,
}

impl From<RecordRow> for Record {
    fn from(r: RecordRow) -> Self {
        Record {
            room_id: r.room_id,
            seq: r.seq as u64,
            sender_user_id: r.sender_user_id,
            kind: r.kind,
            target_user_id: r.target_user_id,
            recipient_user_id: r.recipient_user_id,
            gift_id: r.gift_id,
            count: r.count as u32,
            value: r.value as u64,
            client_key: r.client_key,
            payload: r.payload,
            sent_at_ms: r.sent_at_ms,
            answers_seq: r.answers_seq as u64,
            answer: r.answer,
            expires_at_ms: r.expires_at_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct RoomRow {
    room_id: String,
    last_seq: i64,
    host_user_id: String,
}

impl From<RoomRow> for Room {
    fn from(r: RoomRow) -> Self {
        Room {
            room_id: r.room_id,
            last_seq: r.last_seq as u64,
            host_user_id: r.host_user_id,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct TotalRow {
    key: String,
    count: i64,
    value: i64,
}

impl From<TotalRow> for ItemTotal {
    fn from(r: TotalRow) -> Self {
        ItemTotal {
            key: r.key,
            count: r.count as u64,
            value: r.value as u64,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct CoStreamRow {
    pub room_id: String,
    pub request_seq: i64,
    requester_user_id: String,
    addressee_user_id: String,
    state: i32,
    expires_at_ms: i64,
}

impl CoStreamRow {
    /// ((room, request seq), state).
    pub fn split(self) -> ((String, u64), super::CoStream) {
        (
            (self.room_id, self.request_seq as u64),
            super::CoStream {
                requester_user_id: self.requester_user_id,
                addressee_user_id: self.addressee_user_id,
                state: self.state,
                expires_at_ms: self.expires_at_ms,
            },
        )
    }
}
