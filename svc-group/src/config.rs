//! `[group]` configuration.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of the group role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
    /// The durable store (`[group.store]`).
    pub store: GroupStoreConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7702)),
            store: GroupStoreConfig::default(),
        }
    }
}

/// Settings of the group store (`[group.store]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupStoreConfig {
    /// PostgreSQL URL (`postgres://user@host:port/db`). Unset: SQLite in
    /// `data_dir`, for `hubbub all`.
    pub database_url: Option<String>,
    /// Directory of the SQLite file (`group.sqlite3`), created if missing.
    pub data_dir: PathBuf,
    /// Connections to PostgreSQL per replica.
    pub max_connections: u32,
    /// Members per group, owner included.
    pub max_members: u32,
    /// Bytes per message body.
    pub max_body_bytes: usize,
    /// Largest page of a pull, a history read or a group list.
    pub max_page: u32,
    /// How many of the newest mailbox items a device sees on its first pull
    /// (its begin position is that far behind the mailbox head).
    pub new_device_window: u64,
}

impl Default for GroupStoreConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("data"),
            max_connections: 16,
            max_members: 1000,
            max_body_bytes: 64 * 1024,
            max_page: 500,
            new_device_window: 1000,
        }
    }
}
