//! `[presence]` configuration.

use serde::Deserialize;
use std::net::SocketAddr;

/// Settings of the presence role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7704)),
        }
    }
}
