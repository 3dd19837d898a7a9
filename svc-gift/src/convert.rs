//! Store types to contract messages and back.

use crate::store::{ItemTotal, Kind, Record};
use hubbub_proto::v1 as pb;
use tonic::Status;

/// A stored record as the contract has it.
pub fn record(r: Record) -> pb::GiftRecord {
    pb::GiftRecord {
        room_id: r.room_id,
        seq: r.seq,
        sender_user_id: r.sender_user_id,
        kind: r.kind,
        target_user_id: r.target_user_id,
        gift_id: r.gift_id,
        count: r.count,
        client_key: r.client_key,
        payload: r.payload.into(),
        sent_at_ms: r.sent_at_ms,
        recipient_user_id: r.recipient_user_id,
        value: r.value,
        answers_seq: r.answers_seq,
        answer: r.answer,
        expires_at_ms: r.expires_at_ms,
    }
}

/// `r` as `viewer` may see it: a co-streaming record is its sender's and
/// its addressee's; anyone else gets its room, seq, kind and time only (the
/// seq is accounted for, so gap repair ends, and nothing of it is told).
/// `None`: a backend with `gift.read`, which sees everything.
pub fn for_viewer(r: Record, viewer: Option<&str>) -> pb::GiftRecord {
    let private = r.kind != Kind::Gift.as_i32();
    match viewer {
        Some(user) if private && user != r.sender_user_id && user != r.recipient_user_id => pb::GiftRecord {
            room_id: r.room_id,
            seq: r.seq,
            kind: r.kind,
            sent_at_ms: r.sent_at_ms,
            ..pb::GiftRecord::default()
        },
        _ => record(r),
    }
}

/// The contract's kind; INVALID_ARGUMENT when unset or unknown.
pub fn kind(n: i32) -> Result<Kind, Status> {
    match pb::GiftKind::try_from(n) {
        Ok(pb::GiftKind::Gift) => Ok(Kind::Gift),
        Ok(pb::GiftKind::CoStreamRequest) => Ok(Kind::CoStreamRequest),
        Ok(pb::GiftKind::CoStreamAnswer) => Ok(Kind::CoStreamAnswer),
        _ => Err(Status::invalid_argument(
            "kind must be GIFT_KIND_GIFT, GIFT_KIND_CO_STREAM_REQUEST or GIFT_KIND_CO_STREAM_ANSWER",
        )),
    }
}

/// A running total as the contract has it.
pub fn total(t: ItemTotal) -> pb::GiftTotal {
    pb::GiftTotal {
        key: t.key,
        count: t.count,
        value: t.value,
    }
}
