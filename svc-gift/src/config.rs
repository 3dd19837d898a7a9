//! `[gift]` configuration.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of the gift role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GiftConfig {
    /// Address to listen on (gRPC, health, reflection, `/metrics`).
    pub listen: SocketAddr,
    /// The ledger store (`[gift.store]`).
    pub store: GiftStoreConfig,
    /// The room instances (`http://host:port`), as the gateways know them:
    /// a committed gift is published through its room's owner.
    pub room_instances: Vec<String>,
    /// Instead of `room_instances`: a DNS name (`host:port`) resolving to
    /// every room instance.
    pub room_instances_dns: Option<String>,
    /// How often `room_instances_dns` is resolved again.
    pub room_instances_refresh_ms: u64,
    /// Presence (`http://host:port`), asked where a co-streaming record's
    /// addressee is connected. Unset (or ""): such records are only pulled.
    #[serde(deserialize_with = "hubbub_kit::config::empty_is_none")]
    pub presence_address: Option<String>,
    /// Bound of each publish through the room (the send has answered
    /// durable by then; a publish past it is reported as not published).
    pub publish_timeout_ms: u64,
    /// Commit lanes: store transactions in flight at once per replica (a
    /// room's records always share one lane).
    pub commit_lanes: usize,
    /// Records waiting per lane; beyond it a send answers UNAVAILABLE.
    pub commit_queue: usize,
    /// Records per transaction, at most.
    pub commit_max_batch: usize,
    /// Most items one gift may carry (a count above is refused): keeps
    /// every total far from overflowing.
    pub max_count: u32,
    /// How long a co-streaming request waits for its answer; unanswered, it
    /// expires and takes none.
    pub co_stream_ttl_secs: u64,
    /// How often each replica looks for requests whose time is up, to write
    /// their expiry record (to the requester).
    pub co_stream_sweep_ms: u64,
    /// The public window of a room's ledger: its last this many records.
    /// Viewers pull only within it (a pull from below starts at its first
    /// record and says so); a recipient's own records (a streamer's gift
    /// history) and the platform's backends reach the whole ledger, which
    /// is kept. 0: the whole ledger is public.
    pub public_window_records: u64,
    /// Rooms whose newest records are held in memory for pulls.
    pub recent_rooms: usize,
    /// Records held per room.
    pub recent_records: usize,
    /// How long a read of a room's newest records answers pulls (records
    /// another replica committed meanwhile show up at most this late).
    pub recent_ttl_ms: u64,
    /// The gift catalogue: item id -> value of one item, in the platform's
    /// unit (coins, cents). Empty: every item id is accepted, worth 0 (for
    /// development); otherwise an item not listed is refused.
    pub catalogue: BTreeMap<String, u64>,
}

impl Default for GiftConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7703)),
            store: GiftStoreConfig::default(),
            room_instances: vec!["http://127.0.0.1:7701".to_owned()],
            room_instances_dns: None,
            room_instances_refresh_ms: 5_000,
            presence_address: Some("http://127.0.0.1:7704".to_owned()),
            publish_timeout_ms: 2_000,
            commit_lanes: 4,
            commit_queue: 8192,
            commit_max_batch: 512,
            max_count: 10_000,
            co_stream_ttl_secs: 60,
            co_stream_sweep_ms: 1_000,
            public_window_records: 100_000,
            recent_rooms: 1024,
            recent_records: 256,
            recent_ttl_ms: 250,
            catalogue: BTreeMap::new(),
        }
    }
}

/// The ledger store (`[gift.store]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GiftStoreConfig {
    /// PostgreSQL URL. Unset: SQLite in `data_dir`, for `hubbub all`.
    pub database_url: Option<String>,
    /// Directory of the SQLite file (`gift.sqlite3`), created if missing.
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
    /// Bytes of a record's payload, at most.
    pub max_payload_bytes: usize,
}

impl Default for GiftStoreConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("data"),
            max_connections: 16,
            migrate_on_start: true,
            schema_wait_secs: 0,
            max_payload_bytes: 4 * 1024,
        }
    }
}
