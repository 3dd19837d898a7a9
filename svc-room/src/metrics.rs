//! Metrics of a room instance.

use hubbub_proto::v1::Priority;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Label of per-priority counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabel {
    /// "high", "normal" or "low".
    pub priority: &'static str,
}

/// Counters and gauges of a room instance.
#[derive(Debug, Clone, Default)]
pub struct RoomMetrics {
    /// Messages accepted, by priority.
    pub published: Family<PriorityLabel, Counter>,
    /// Events queued to gateways (batches and subscription answers).
    pub events_sent: Counter,
    /// Gateway streams attached now.
    pub gateways: Gauge,
    /// Gateway streams ended because they could not keep up.
    pub gateways_kicked: Counter,
    /// Batches sent (each to every subscribed gateway).
    pub batches: Counter,
    /// Normal messages sampled away above a room's per-viewer cap.
    pub sampled: Counter,
    /// Low messages coalesced into counters above a room's low cap.
    pub coalesced: Counter,
    /// Publishes refused by a room's publish cap.
    pub refused: Counter,
}

impl RoomMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "hubbub_room_published",
            "Room messages accepted",
            metrics.published.clone(),
        );
        registry.register(
            "hubbub_room_events_sent",
            "Events queued to gateways",
            metrics.events_sent.clone(),
        );
        registry.register(
            "hubbub_room_gateways",
            "Gateway streams attached",
            metrics.gateways.clone(),
        );
        registry.register(
            "hubbub_room_gateways_kicked",
            "Gateway streams ended for being too slow",
            metrics.gateways_kicked.clone(),
        );
        registry.register(
            "hubbub_room_batches",
            "Batches sent to gateways",
            metrics.batches.clone(),
        );
        registry.register(
            "hubbub_room_sampled",
            "Normal messages sampled away above the per-viewer cap",
            metrics.sampled.clone(),
        );
        registry.register(
            "hubbub_room_coalesced",
            "Low messages coalesced into counters",
            metrics.coalesced.clone(),
        );
        registry.register(
            "hubbub_room_refused",
            "Publishes refused by a room's cap",
            metrics.refused.clone(),
        );
        metrics
    }

    /// Counts one accepted message.
    pub fn published(&self, priority: Priority) {
        let priority = match priority {
            Priority::High => "high",
            Priority::Normal => "normal",
            _ => "low",
        };
        self.published.get_or_create(&PriorityLabel { priority }).inc();
    }
}
