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
    /// Presence (`http://host:port`), asked where members' devices are after
    /// each commit. Unset: no notifies are sent; devices still get every
    /// message on their next pull ("" also unsets it).
    #[serde(deserialize_with = "hubbub_kit::config::empty_is_none")]
    pub presence_address: Option<String>,
    /// Commits whose notifies may wait for the notifier; beyond it a commit's
    /// notify is dropped and counted (the send never waits for it).
    pub notify_queue: usize,
    /// Bound of each LocateUsers and Deliver call of the notifier.
    pub notify_timeout_ms: u64,
    /// Group commit lanes: store transactions of sends in flight at once
    /// per replica (a group's sends always share one lane).
    pub commit_lanes: usize,
    /// Sends waiting per lane; beyond it a send answers UNAVAILABLE.
    pub commit_queue: usize,
    /// Sends per transaction, at most.
    pub commit_max_batch: usize,
    /// The offline push sink (`[group.push]`); off unless `url` is set.
    pub push: PushConfig,
    /// How long messages and mailbox entries are kept (`[group.retention]`).
    pub retention: RetentionConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7702)),
            store: GroupStoreConfig::default(),
            presence_address: Some("http://127.0.0.1:7704".to_owned()),
            notify_queue: 4096,
            notify_timeout_ms: 2_000,
            commit_lanes: 4,
            commit_queue: 4096,
            commit_max_batch: 256,
            push: PushConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Retention (`[group.retention]`), applied by a sweep on every replica (one
/// at a time on PostgreSQL). Durations in seconds; 0 means never.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Messages older than this are deleted from their group (history ends
    /// above them; a device that had not pulled one gets it as `expired`,
    /// or its mailbox trimmed past it). Default: kept forever.
    pub message_ttl_secs: u64,
    /// Mailbox entries every device of their user has acked are trimmed
    /// once their message is this old: the devices have them, and history
    /// still does. Default: 7 days.
    pub mailbox_acked_ttl_secs: u64,
    /// Mailbox entries are trimmed once their message is this old even if a
    /// device never acked them (a phone lost for months must not keep a
    /// mailbox forever); that device's next pull is told where it resumes.
    /// Default: never.
    pub mailbox_max_age_secs: u64,
    /// Time between sweeps.
    pub sweep_interval_secs: u64,
    /// Users per trim transaction.
    pub sweep_users: u32,
    /// Messages per expiry transaction.
    pub sweep_messages: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            message_ttl_secs: 0,
            mailbox_acked_ttl_secs: 7 * 24 * 3600,
            mailbox_max_age_secs: 0,
            sweep_interval_secs: 300,
            sweep_users: 500,
            sweep_messages: 5_000,
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
    /// Relative paths are taken from the working directory: the default,
    /// `data`, puts the file in `./data/group.sqlite3`, writable wherever
    /// `cargo run` is started from a checkout (and ignored by git).
    pub data_dir: PathBuf,
    /// Connections to PostgreSQL per replica.
    pub max_connections: u32,
    /// Applies the schema's migrations at start (under an advisory lock).
    /// False where `hubbub migrate` runs them first (the chart's hook Job):
    /// a replica then only checks the schema is current, and refuses to
    /// start otherwise.
    pub migrate_on_start: bool,
    /// Without `migrate_on_start`: how long a starting replica waits for
    /// the schema to be brought up (0: refuse at once).
    pub schema_wait_secs: u64,
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
            migrate_on_start: true,
            schema_wait_secs: 0,
            data_dir: PathBuf::from("data"),
            max_connections: 16,
            max_members: 1000,
            max_body_bytes: 64 * 1024,
            max_page: 500,
            new_device_window: 1000,
        }
    }
}

/// The offline push sink (`[group.push]`): members with no online session
/// are posted, batched and signed, to the platform's push service. See
/// `svc-group/src/push.rs` for the request it receives and how to verify it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Where to POST (`http://push.internal:8080/hubbub`). Unset: no push,
    /// nothing queued. Plain `http` only: put TLS on a sidecar or the mesh.
    pub url: Option<String>,
    /// HMAC-SHA256 key of the signature, at least 32 bytes; required with
    /// `url` (`HUBBUB_GROUP__PUSH__SECRET` sets it from the environment).
    pub secret: Option<String>,
    /// User-message pairs per request, at most; a batch leaves when full or
    /// `flush_ms` after its first pair, whichever comes first.
    pub max_batch: usize,
    /// How long a batch waits for more pairs.
    pub flush_ms: u64,
    /// User-message pairs held at most (queued or being retried); beyond
    /// it new ones are dropped and counted, never waited for.
    pub queue: usize,
    /// Bound of each attempt (connect, send, answer).
    pub timeout_ms: u64,
    /// Bodies up to this size go along (base64); longer ones are left out
    /// and flagged `body_truncated`. End-to-end encrypted bodies never go.
    pub max_body_bytes: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            max_batch: 500,
            flush_ms: 200,
            queue: 10_000,
            timeout_ms: 5_000,
            max_body_bytes: 1024,
        }
    }
}

// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_batch", &self.max_batch)
            .field("flush_ms", &self.flush_ms)
            .field("queue", &self.queue)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}
