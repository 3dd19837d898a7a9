//! What makes a record valid, the same for both backends.

use super::{Kind, NewRecord, Record, StoreError};

/// Client keys and gift ids: 1 to this many bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Default and largest page of a pull.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page of a pull.
pub const MAX_PAGE: u32 = 500;

/// Limits the store enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Payload bytes per record.
    pub max_payload_bytes: usize,
    /// Items per gift.
    pub max_count: u32,
    /// How long a co-streaming request waits for its answer, milliseconds.
    pub co_stream_ttl_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 * 1024,
            max_count: 10_000,
            co_stream_ttl_ms: 60_000,
        }
    }
}

/// The page size `limit` asks for.
pub fn page(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidArgument(message)
}

/// A room id, as every role takes them.
pub fn id(field: &str, value: &str) -> Result<(), StoreError> {
    hubbub_kit::ids::validate(field, value).map_err(|e| invalid(e.message().to_owned()))
}

/// A user id (sender, target, host): what a token's subject may be, 1 to
/// 128 bytes without control characters (`alice@example.com` is fine).
pub fn user(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > hubbub_kit::ids::MAX_ID_BYTES {
        return Err(invalid(format!(
            "{field} must be 1 to {} bytes, got {}",
            hubbub_kit::ids::MAX_ID_BYTES,
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}

fn key(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "{field} must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}

/// Checks a record before anything is read; the record's value
/// (count times unit value) on success.
pub fn check(record: &NewRecord, limits: &Limits) -> Result<u64, StoreError> {
    id("room_id", &record.room_id)?;
    user("sender_user_id", &record.sender_user_id)?;
    key("client_key", &record.client_key)?;
    if record.payload.len() > limits.max_payload_bytes {
        return Err(StoreError::ResourceExhausted(format!(
            "payload is {} bytes, above the limit of {}",
            record.payload.len(),
            limits.max_payload_bytes
        )));
    }
    match record.kind {
        Kind::Gift => {
            key("gift_id", &record.gift_id)?;
            if record.count == 0 || record.count > limits.max_count {
                return Err(invalid(format!(
                    "count must be 1 to {} for a gift, got {}",
                    limits.max_count, record.count
                )));
            }
            if !record.target_user_id.is_empty() {
                user("target_user_id", &record.target_user_id)?;
            }
        }
        Kind::CoStreamAnswer => {
            if record.answers_seq == 0 || record.answers_seq > i64::MAX as u64 {
                return Err(invalid(
                    "an answer names the request it answers in answers_seq".to_owned(),
                ));
            }
            // 4 (expired) is the ledger's own; the service refuses it from clients.
            if !(1..=EXPIRED).contains(&record.answer) {
                return Err(invalid(
                    "answer must be CO_STREAM_ANSWER_ACCEPT, _DECLINE or _CANCEL".to_owned(),
                ));
            }
            if !record.target_user_id.is_empty() || !record.gift_id.is_empty() || record.count != 0 {
                return Err(invalid(
                    "an answer carries no target_user_id, gift_id or count: it goes to the other party".to_owned(),
                ));
            }
        }
        Kind::CoStreamRequest => {
            if record.target_user_id.is_empty() {
                return Err(invalid("a co-streaming request needs target_user_id".to_owned()));
            }
            user("target_user_id", &record.target_user_id)?;
            if record.target_user_id == record.sender_user_id {
                return Err(invalid(
                    "a co-streaming request cannot target its own sender".to_owned(),
                ));
            }
            if !record.gift_id.is_empty() || record.count != 0 {
                return Err(invalid("a co-streaming request carries no gift_id or count".to_owned()));
            }
        }
    }
    // Totals are BIGINT: a value above i64 could never be added up.
    u64::from(record.count)
        .checked_mul(record.unit_value)
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| StoreError::ResourceExhausted("count times the item's value is out of range".to_owned()))
}

/// True when `retry` asks for what `original` stored.
pub fn same_content(retry: &NewRecord, original: &Record) -> bool {
    retry.kind.as_i32() == original.kind
        && retry.answers_seq == original.answers_seq
        && retry.answer == original.answer
        && retry.target_user_id == original.target_user_id
        && retry.gift_id == original.gift_id
        && retry.count == original.count
        && retry.payload == original.payload
}

/// The refusal of a reused key.
pub fn reused(record: &NewRecord) -> StoreError {
    StoreError::AlreadyExists(format!(
        "client_key {:?} was already used by this sender in room {:?} for a different record",
        record.client_key, record.room_id
    ))
}

/// The answer the ledger writes itself for a request whose time is up.
pub const EXPIRED: i32 = 4;

/// Who `answer` (1 accept, 2 decline, 3 cancel, 4 expired) by `sender` goes
/// to, or why it may not be given to `request` at `now_ms`. An expiry is
/// given in the addressee's name (who did not answer), to the requester,
/// once the request's time is up and never before.
pub fn answer_to(
    request: &super::CoStream,
    seq: u64,
    sender: &str,
    answer: i32,
    now_ms: i64,
) -> Result<String, StoreError> {
    if request.state != 0 {
        return Err(StoreError::FailedPrecondition(format!(
            "co-streaming request {seq} was already answered"
        )));
    }
    if answer == EXPIRED {
        if now_ms < request.expires_at_ms {
            return Err(StoreError::FailedPrecondition(format!(
                "co-streaming request {seq} has not expired yet"
            )));
        }
        if sender != request.addressee_user_id {
            return Err(StoreError::PermissionDenied(format!(
                "the expiry of co-streaming request {seq} is given in its addressee's name"
            )));
        }
        return Ok(request.requester_user_id.clone());
    }
    if now_ms >= request.expires_at_ms {
        return Err(StoreError::FailedPrecondition(format!(
            "co-streaming request {seq} expired"
        )));
    }
    let (allowed, other) = match answer {
        3 => (sender == request.requester_user_id, &request.addressee_user_id),
        _ => (sender == request.addressee_user_id, &request.requester_user_id),
    };
    if !allowed {
        return Err(StoreError::PermissionDenied(format!(
            "only the {} of co-streaming request {seq} may {}",
            if answer == 3 { "sender" } else { "addressee" },
            if answer == 3 {
                "cancel it"
            } else {
                "accept or decline it"
            }
        )));
    }
    Ok(other.clone())
}
