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
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7704)),
            redis_url: None,
            key_prefix: "hubbub:presence".to_owned(),
            max_ids_per_call: 1000,
        }
    }
}
