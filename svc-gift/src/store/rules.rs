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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 * 1024,
            max_count: 10_000,
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
