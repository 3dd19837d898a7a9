//! `[group]` configuration.

use serde::Deserialize;
use std::net::SocketAddr;

/// Settings of the group role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7702)),
        }
    }
}
