//! Metrics of a group replica, served on its `/metrics`.

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use prometheus_client::registry::Registry;

/// Buckets of the duration histograms, in seconds: 1 ms to ~4 s.
fn seconds() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 13,
    ))
}

/// Counters of a group replica. Cheap to clone (the counters are shared).
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    /// Messages committed by SendGroupMessage (retries answered as
    /// duplicates are not counted).
    pub messages_sent: Counter,
    /// Store transactions of group commit (each holds one or more sends).
    pub commits: Counter,
    /// Duration of each group commit transaction.
    pub commit_seconds: Histogram,
    /// From a commit's end to its last gateway answering the notify.
    pub notify_seconds: Histogram,
    /// Mailbox entries written by commits (sends and membership events).
    pub mailbox_entries: Counter,
    /// Sessions a gateway took a notify for.
    pub notifies_sent: Counter,
    /// Commits whose notify was dropped because the notify queue was full.
    pub notifies_dropped: Counter,
    /// LocateUsers or Deliver calls that failed or timed out (their devices
    /// get the messages on their next pull).
    pub notify_failures: Counter,
    /// User-message pairs the push receiver accepted (a pair retried after
    /// a lost answer may be counted twice: delivery is at least once).
    pub pushes_delivered: Counter,
    /// Push requests that failed: refused, timed out, no connection, 5xx or
    /// 429 (all but refusals are retried).
    pub push_batch_failures: Counter,
    /// User-message pairs never delivered: the push queue was full, the
    /// receiver refused their batch (4xx other than 429), or the replica
    /// stopped before they could be delivered.
    pub pushes_dropped: Counter,
    /// Mailbox rows (runs) removed by retention.
    pub retention_runs_trimmed: Counter,
    /// Messages deleted by retention.
    pub retention_messages_expired: Counter,
    /// Retention sweeps that failed (retried at the next interval).
    pub retention_failures: Counter,
}

impl Default for GroupMetrics {
    fn default() -> Self {
        Self {
            messages_sent: Counter::default(),
            commits: Counter::default(),
            commit_seconds: seconds(),
            notify_seconds: seconds(),
            mailbox_entries: Counter::default(),
            notifies_sent: Counter::default(),
            notifies_dropped: Counter::default(),
            notify_failures: Counter::default(),
            pushes_delivered: Counter::default(),
            push_batch_failures: Counter::default(),
            pushes_dropped: Counter::default(),
            retention_runs_trimmed: Counter::default(),
            retention_messages_expired: Counter::default(),
            retention_failures: Counter::default(),
        }
    }
}

impl GroupMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "hubbub_group_messages_sent",
            "Group messages committed",
            metrics.messages_sent.clone(),
        );
        registry.register(
            "hubbub_group_commits",
            "Group commit transactions (sends per commit = messages_sent / commits)",
            metrics.commits.clone(),
        );
        registry.register(
            "hubbub_group_commit_seconds",
            "Duration of group commit transactions",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "hubbub_group_notify_seconds",
            "From a commit to its last gateway having taken the notify",
            metrics.notify_seconds.clone(),
        );
        registry.register(
            "hubbub_group_mailbox_entries",
            "Mailbox entries written",
            metrics.mailbox_entries.clone(),
        );
        registry.register(
            "hubbub_group_notifies_sent",
            "Sessions notified through their gateway",
            metrics.notifies_sent.clone(),
        );
        registry.register(
            "hubbub_group_notifies_dropped",
            "Commits whose notify was dropped on a full queue",
            metrics.notifies_dropped.clone(),
        );
        registry.register(
            "hubbub_group_notify_failures",
            "Presence or gateway calls of the notifier that failed",
            metrics.notify_failures.clone(),
        );
        registry.register(
            "hubbub_group_pushes_delivered",
            "User-message pairs accepted by the offline push receiver",
            metrics.pushes_delivered.clone(),
        );
        registry.register(
            "hubbub_group_push_batch_failures",
            "Offline push requests that failed (refused, timed out, 5xx, 429)",
            metrics.push_batch_failures.clone(),
        );
        registry.register(
            "hubbub_group_pushes_dropped",
            "User-message pairs never pushed (full queue, refused batch, stop)",
            metrics.pushes_dropped.clone(),
        );
        registry.register(
            "hubbub_group_retention_runs_trimmed",
            "Mailbox rows removed by retention",
            metrics.retention_runs_trimmed.clone(),
        );
        registry.register(
            "hubbub_group_retention_messages_expired",
            "Group messages deleted by retention",
            metrics.retention_messages_expired.clone(),
        );
        registry.register(
            "hubbub_group_retention_failures",
            "Retention sweeps that failed",
            metrics.retention_failures.clone(),
        );
        metrics
    }
}
