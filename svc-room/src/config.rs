//! `[room]` configuration.

use serde::Deserialize;
use std::{collections::BTreeMap, net::SocketAddr};

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
    /// Instead of `instances`: a DNS name (`host:port`) resolving to every
    /// room instance (a headless Service); `advertise` must then be this
    /// instance's `http://<ip>:<port>`.
    pub instances_dns: Option<String>,
    /// How often `instances_dns` is resolved again.
    pub dns_refresh_ms: u64,
    /// Recent messages kept per room and given to late joiners.
    pub recent_messages: usize,
    /// Largest message body accepted by `Publish`, in bytes.
    pub max_body_bytes: usize,
    /// Events queued per attached gateway before it counts as too slow and
    /// its stream is ended (it re-attaches).
    pub gateway_queue: usize,
    /// Interval of heartbeats on each attach stream, so that proxies on the
    /// way (a mesh's sidecars, whose stream idle timeout is minutes) never
    /// cut a quiet one.
    pub attach_heartbeat_ms: u64,
    /// How long normal and low messages are gathered into one batch per
    /// room. High-priority messages never wait: they flush the batch at once.
    pub batch_window_ms: u64,
    /// Longest a high-priority message waits before its batch is sent (0:
    /// at once). A few milliseconds let a burst of gifts share one batch,
    /// which costs every viewer one write instead of many.
    pub high_window_ms: u64,
    /// A batch is sent as soon as it holds this many messages.
    pub max_batch_messages: usize,
    /// Seconds after which a room nobody watches or writes to is forgotten
    /// (its ring with it).
    pub idle_room_secs: u64,
    /// Rooms this instance holds at most; a new room beyond it is refused
    /// (RESOURCE_EXHAUSTED) until idle ones are forgotten.
    pub max_rooms: usize,
    /// Limits of every room, unless overridden.
    pub limits: RoomLimits,
    /// Limits of particular rooms, by room id (`[room.overrides."big-show"]`).
    pub overrides: BTreeMap<String, RoomLimits>,
}

/// Per-room delivery caps and publish limits. High-priority messages are
/// exempt from all of them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoomLimits {
    /// Normal messages (comments) a viewer can read per second; above it
    /// they are sampled: delivered at this rate, the rest dropped and counted.
    pub delivery_cap_per_sec: f64,
    /// Low messages (likes, entrances) delivered one by one per second; above
    /// it they are coalesced into per-kind counters in the next batch.
    pub low_cap_per_sec: f64,
    /// Normal and low messages the room accepts per second; above it
    /// `Publish` answers RESOURCE_EXHAUSTED with a retry hint.
    pub publish_cap_per_sec: f64,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            delivery_cap_per_sec: 50.0,
            low_cap_per_sec: 20.0,
            publish_cap_per_sec: 20_000.0,
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            advertise: "http://127.0.0.1:7701".to_owned(),
            instances: Vec::new(),
            instances_dns: None,
            dns_refresh_ms: 5_000,
            recent_messages: 20,
            max_body_bytes: 16 * 1024,
            gateway_queue: 16 * 1024,
            attach_heartbeat_ms: 30_000,
            batch_window_ms: 50,
            high_window_ms: 20,
            max_batch_messages: 256,
            idle_room_secs: 600,
            max_rooms: 200_000,
            limits: RoomLimits::default(),
            overrides: BTreeMap::new(),
        }
    }
}

impl RoomConfig {
    /// The limits of `room_id`.
    pub fn limits_of(&self, room_id: &str) -> RoomLimits {
        self.overrides.get(room_id).copied().unwrap_or(self.limits)
    }
}
