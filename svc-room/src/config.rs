//! `[room]` configuration.

use serde::Deserialize;
use std::net::SocketAddr;

/// Settings of a room instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
    /// This instance's address as gateways know it (`http://room-0:7701`);
    /// with `instances`, it decides which rooms this instance owns.
    pub advertise: String,
    /// Every room instance's advertised address, the same list gateways use.
    /// Empty: this instance owns every room (a single instance).
    pub instances: Vec<String>,
    /// Recent messages kept per room and given to late joiners.
    pub recent_messages: usize,
    /// Largest message body accepted by `Publish`, in bytes.
    pub max_body_bytes: usize,
    /// Events queued per attached gateway before it counts as too slow and
    /// its stream is ended (it re-attaches).
    pub gateway_queue: usize,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7701)),
            advertise: "http://127.0.0.1:7701".to_owned(),
            instances: Vec::new(),
            recent_messages: 20,
            max_body_bytes: 16 * 1024,
            gateway_queue: 16 * 1024,
        }
    }
}
