//! Metrics of a group replica, served on its `/metrics`.

use prometheus_client::{metrics::counter::Counter, registry::Registry};

/// Counters of a group replica. Cheap to clone (the counters are shared).
#[derive(Debug, Clone, Default)]
pub struct GroupMetrics {
    /// Messages committed by SendGroupMessage (retries answered as
    /// duplicates are not counted).
    pub messages_sent: Counter,
    /// Store transactions of group commit (each holds one or more sends).
    pub commits: Counter,
    /// Mailbox entries written by commits (sends and membership events).
    pub mailbox_entries: Counter,
    /// Sessions a gateway took a notify for.
    pub notifies_sent: Counter,
    /// Commits whose notify was dropped because the notify queue was full.
    pub notifies_dropped: Counter,
    /// LocateUsers or Deliver calls that failed or timed out (their devices
    /// get the messages on their next pull).
    pub notify_failures: Counter,
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
        metrics
    }
}
