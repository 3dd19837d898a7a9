//! `PresenceStore`: who is where. One trait, two backends (`memory` for
//! `hubbub all`, `redis` for deployments), one conformance suite for both
//! (`tests/conformance.rs`).
//!
//! The unit of writing is a gateway's report, sent once per interval: its
//! rooms' absolute online counts (so a lost report heals at the next one),
//! its session changes since the previous report (numbered, so a gap asks
//! for a full snapshot), and the viewers first seen per room. Everything a
//! gateway wrote expires with its TTL unless the next report renews it.

pub mod hll;
pub mod memory;
pub mod redis;

use std::{future::Future, time::Duration};

/// A device session on a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The session id (names its gateway).
    pub session_id: String,
    /// Its user.
    pub user_id: String,
    /// Its device.
    pub device_id: String,
    /// When it connected, unix milliseconds.
    pub connected_at_ms: i64,
}

/// One room as a gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomReport {
    /// The room.
    pub room_id: String,
    /// Viewers connected to this gateway now.
    pub online: u64,
    /// Users who joined since the previous report (for unique viewers).
    pub new_viewers: Vec<String>,
}

/// What a gateway reports once per interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReport {
    /// The gateway.
    pub gateway_id: String,
    /// Where other services reach it (GatewayControl).
    pub address: String,
    /// Increases by one per report; a full snapshot may restart it.
    pub report_seq: u64,
    /// True when `sessions_added` is every session the gateway holds.
    pub full: bool,
    /// Sessions opened since the previous report (or all, when `full`).
    pub sessions_added: Vec<SessionEntry>,
    /// Sessions closed since the previous report.
    pub sessions_removed: Vec<String>,
    /// Every room with viewers on the gateway, with absolute counts.
    pub rooms: Vec<RoomReport>,
    /// How long the report holds without a successor.
    pub ttl: Duration,
}

/// Outcome of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Stored; it holds until then (unix milliseconds).
    Yes {
        /// Expiry of what the gateway wrote.
        expires_at_ms: i64,
    },
    /// A delta whose predecessor the store does not have (first report,
    /// gateway expired, store restarted empty): send a full snapshot.
    NeedFullSnapshot,
}

/// The sessions of some users on one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The gateway.
    pub gateway_id: String,
    /// Its address.
    pub address: String,
    /// The sessions found there, sorted by session id.
    pub sessions: Vec<SessionEntry>,
}

/// Counts of one room over all live gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomCount {
    /// Viewers online now.
    pub online: u64,
    /// Distinct users ever seen, estimated by HyperLogLog (standard error
    /// 0.81% with 2^14 registers).
    pub unique_viewers: u64,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is unreachable or failed.
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
}

/// Who is where; see the module documentation.
pub trait PresenceStore: Send + Sync + 'static {
    /// Applies one gateway report.
    fn report(&self, report: &GatewayReport) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// The live sessions of `user_ids`, grouped by gateway (sorted by gateway id).
    fn locate(&self, user_ids: &[String]) -> impl Future<Output = Result<Vec<Location>, StoreError>> + Send;

    /// Online and unique-viewer counts of `room_ids`, in the same order.
    fn room_counts(&self, room_ids: &[String]) -> impl Future<Output = Result<Vec<RoomCount>, StoreError>> + Send;
}

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
