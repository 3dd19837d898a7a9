//! Metrics of a gift replica, served on its `/metrics`.

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use prometheus_client::registry::Registry;

/// Counters of a gift replica. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GiftMetrics {
    /// Records committed (retries answered as duplicates are not counted).
    pub records: Counter,
    /// Ledger transactions (each holds one or more records).
    pub commits: Counter,
    /// Duration of each ledger transaction.
    pub commit_seconds: Histogram,
    /// Records whose publish through their room failed or timed out (viewers
    /// recover them by pulling).
    pub publish_failures: Counter,
}

impl Default for GiftMetrics {
    fn default() -> Self {
        Self {
            records: Counter::default(),
            commits: Counter::default(),
            commit_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 13,
            )),
            publish_failures: Counter::default(),
        }
    }
}

impl GiftMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "hubbub_gift_records",
            "Ledger records committed",
            metrics.records.clone(),
        );
        registry.register(
            "hubbub_gift_commits",
            "Ledger transactions (records per commit = records / commits)",
            metrics.commits.clone(),
        );
        registry.register(
            "hubbub_gift_commit_seconds",
            "Duration of ledger transactions",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "hubbub_gift_publish_failures",
            "Records whose publish through the room failed (viewers pull them)",
            metrics.publish_failures.clone(),
        );
        metrics
    }
}
