//! `[presence]` configuration.

use serde::Deserialize;
use std::net::SocketAddr;

/// Settings of the presence role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
    /// Redis to keep presence in (`redis://host:6379/0`); in memory when unset.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so deployments can share a Redis.
    pub key_prefix: String,
    /// Most ids one LocateUsers or GetRoomCounts call may name.
    pub max_ids_per_call: usize,
    /// In memory: rooms whose unique-viewer estimates (16 KiB each) are kept
    /// at most; the oldest go first.
    pub max_unique_rooms: usize,
    /// In memory: how long a room's estimate is kept after its last new viewer.
    pub uniques_retention_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7704)),
            redis_url: None,
            key_prefix: "hubbub:presence".to_owned(),
            max_ids_per_call: 1000,
            max_unique_rooms: crate::store::memory::DEFAULT_MAX_UNIQUE_ROOMS,
            uniques_retention_secs: crate::store::memory::DEFAULT_UNIQUES_RETENTION.as_secs(),
        }
    }
}
