//! `GiftStore`: the durable ledger of live rooms. One trait, two backends
//! (`postgres` for deployments, `sqlite` for `hubbub all`), one conformance
//! suite for both (`tests/conformance.rs`). The model and its invariants
//! are in `svc-gift/LEDGER.md`; the schema in `migrations/gift/`.
//!
//! A record is stored once, in its room, under a per-room `seq` without
//! gaps; the room's running totals (by gift item, by recipient and by
//! sender) move in the same transaction, so they always equal the sum of
//! the ledger. Concurrent records are committed together (`commit`): one
//! transaction for many callers, each answered on its own.

mod batch;
mod error;
#[macro_use]
mod reads;
pub mod postgres;
mod rows;
pub mod rules;
pub mod sqlite;
mod types;

pub use error::StoreError;
pub use types::*;

use std::future::Future;

/// Shorthand for the store's results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The gift ledger; see the module documentation. Every method is one
/// transaction: it happens entirely or not at all, and a retry after
/// `Unavailable` is safe (records carry an idempotency key).
pub trait GiftStore: Send + Sync + 'static {
    /// Group commit: stores every new record of the batch under the next
    /// seqs of its room, in batch order, and moves the totals, in one
    /// transaction. Each record is decided and answered on its own: refused
    /// (and nothing of it stored), a retry of a key answered with its
    /// original (`duplicate`), or new. `Err` means nothing was stored.
    fn commit(&self, records: &[NewRecord]) -> impl Future<Output = StoreResult<Vec<StoreResult<Sent>>>> + Send;

    /// The room's records after `after` (ascending, at most `limit`: 0 means
    /// 100, capped at 500); with `recipient`, only those received by that
    /// user (seqs then have gaps).
    fn pull(
        &self,
        room_id: &str,
        after: u64,
        limit: u32,
        recipient: Option<&str>,
    ) -> impl Future<Output = StoreResult<Page>> + Send;

    /// Makes `host_user_id` the room's host (empty: none); gifts sent
    /// without a target from then on are theirs.
    fn set_host(&self, room_id: &str, host_user_id: &str) -> impl Future<Output = StoreResult<Room>> + Send;

    /// The room's ledger head and host (an unknown room: seq 0, no host).
    fn room(&self, room_id: &str) -> impl Future<Output = StoreResult<Room>> + Send;

    /// The room's totals by gift item, and its `top` biggest senders by
    /// value (ties by user id).
    fn room_totals(&self, room_id: &str, top: u32) -> impl Future<Output = StoreResult<RoomTotals>> + Send;

    /// The co-streaming requests waiting for `user_id`'s answer in the room
    /// (sent to them, unanswered, unexpired), oldest first, at most 500.
    fn pending(&self, room_id: &str, user_id: &str) -> impl Future<Output = StoreResult<Vec<Record>>> + Send;

    /// Co-streaming requests still waiting whose time was up at `now_ms`,
    /// soonest first, at most `limit`: the expiry sweep writes their
    /// expiry records.
    fn due_co_streams(&self, now_ms: i64, limit: u32) -> impl Future<Output = StoreResult<Vec<DueCoStream>>> + Send;

    /// What `user_id` received, by gift item, over every room.
    fn recipient_totals(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<ItemTotal>>> + Send;
}

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
