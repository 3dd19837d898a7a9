//! Metrics of a gateway replica.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Counters and gauges of a gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayMetrics {
    /// Client streams open now.
    pub connections: Gauge,
    /// Rooms with at least one local viewer.
    pub rooms: Gauge,
    /// Room messages written to client outboxes.
    pub deliveries: Counter,
    /// Client streams closed because their outbox was full of high-priority events.
    pub slow_closed: Counter,
    /// Room messages dropped for devices that did not keep up (normal and low only).
    pub dropped: Counter,
    /// Room messages refused by the per-user publish limit.
    pub rate_limited: Counter,
    /// Room joins.
    pub joins: Counter,
    /// Room leaves (explicit or by disconnect).
    pub leaves: Counter,
    /// Calls forwarded to the replica owning the session.
    pub forwarded: Counter,
    /// Gaps announced to viewers (a room stream the ring could not mend).
    pub room_gaps: Counter,
    /// Room messages dropped as at or below a room's last delivered seq.
    pub stale_dropped: Counter,
    /// Streams ended because their token expired.
    pub expired_closed: Counter,
    /// Connect streams opened on the lean path (HTTP/1.1 gRPC-web).
    pub lean_streams: Counter,
    /// Room batches sent gzip-compressed.
    pub compressed_batches: Counter,
}

impl GatewayMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "hubbub_gateway_connections",
            "Client streams open",
            m.connections.clone(),
        );
        registry.register("hubbub_gateway_rooms", "Rooms with local viewers", m.rooms.clone());
        registry.register(
            "hubbub_gateway_deliveries",
            "Room messages written to outboxes",
            m.deliveries.clone(),
        );
        registry.register(
            "hubbub_gateway_slow_closed",
            "Streams closed for a full outbox",
            m.slow_closed.clone(),
        );
        registry.register(
            "hubbub_gateway_dropped",
            "Room messages dropped for slow devices",
            m.dropped.clone(),
        );
        registry.register(
            "hubbub_gateway_rate_limited",
            "Room messages refused by the per-user limit",
            m.rate_limited.clone(),
        );
        registry.register("hubbub_gateway_joins", "Room joins", m.joins.clone());
        registry.register("hubbub_gateway_leaves", "Room leaves", m.leaves.clone());
        registry.register(
            "hubbub_gateway_forwarded",
            "Calls forwarded to the owning replica",
            m.forwarded.clone(),
        );
        registry.register(
            "hubbub_gateway_room_gaps",
            "Room stream gaps announced to viewers",
            m.room_gaps.clone(),
        );
        registry.register(
            "hubbub_gateway_stale_dropped",
            "Room messages dropped as older than the last delivered",
            m.stale_dropped.clone(),
        );
        registry.register(
            "hubbub_gateway_expired_closed",
            "Streams ended at their token's expiry",
            m.expired_closed.clone(),
        );
        registry.register(
            "hubbub_gateway_lean_streams",
            "Connect streams opened on the lean path",
            m.lean_streams.clone(),
        );
        registry.register(
            "hubbub_gateway_compressed_batches",
            "Room batches sent gzip-compressed",
            m.compressed_batches.clone(),
        );
        m
    }
}
