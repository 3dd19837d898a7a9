//! The retention sweep: every `sweep_interval_secs`, trims the mailboxes of
//! every user as far as `[group.retention]` allows, then deletes the messages
//! past `message_ttl_secs`, in bounded transactions. Mailboxes go first and
//! count a message past its TTL as old, so a device that had not pulled it
//! is mostly told "trimmed up to here" rather than handed placeholders.

use crate::config::RetentionConfig;
use crate::metrics::GroupMetrics;
use crate::store::{GroupStore, Retention, StoreError, unix_ms};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The cutoffs of a sweep at `now_ms`.
pub fn policy(config: &RetentionConfig, now_ms: i64) -> (Retention, Option<i64>) {
    let before = |secs: u64| (secs > 0).then(|| now_ms.saturating_sub(secs.saturating_mul(1000) as i64));
    let expire = before(config.message_ttl_secs);
    let any = [before(config.mailbox_max_age_secs), expire]
        .into_iter()
        .flatten()
        .max();
    let policy = Retention {
        acked_before_ms: before(config.mailbox_acked_ttl_secs).unwrap_or(0).max(any.unwrap_or(0)),
        any_before_ms: any.unwrap_or(0),
    };
    (policy, expire)
}

/// Whether the configuration removes anything at all.
pub fn enabled(config: &RetentionConfig) -> bool {
    config.message_ttl_secs > 0 || config.mailbox_acked_ttl_secs > 0 || config.mailbox_max_age_secs > 0
}

/// Runs sweeps until `shutdown`; a failed sweep is logged and retried at
/// the next interval.
pub fn start<S: GroupStore>(
    store: Arc<S>,
    config: RetentionConfig,
    metrics: GroupMetrics,
    shutdown: CancellationToken,
) {
    if !enabled(&config) {
        return;
    }
    let every = Duration::from_secs(config.sweep_interval_secs.max(1));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = sweep(&*store, &config, &metrics, &shutdown).await {
                metrics.retention_failures.inc();
                tracing::error!(error = %e, "group retention sweep failed; retrying at the next interval");
            }
        }
    });
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Mailbox rows (runs).
    pub runs: u64,
    /// Users whose trimmed position moved.
    pub users: u64,
    /// Messages.
    pub messages: u64,
}

/// One sweep over every user, then the expired messages. Stops early when
/// another replica holds the sweep or `shutdown` is cancelled.
pub async fn sweep<S: GroupStore>(
    store: &S,
    config: &RetentionConfig,
    metrics: &GroupMetrics,
    shutdown: &CancellationToken,
) -> Result<Swept, StoreError> {
    let (policy, expire) = policy(config, unix_ms());
    let mut swept = Swept::default();
    let mut after: Option<String> = None;
    loop {
        if shutdown.is_cancelled() {
            return Ok(swept);
        }
        let Some(step) = store
            .trim_mailboxes(after.as_deref(), config.sweep_users, policy)
            .await?
        else {
            tracing::debug!("another replica is sweeping group retention");
            return Ok(swept);
        };
        swept.runs += step.rows;
        swept.users += step.users;
        metrics.retention_runs_trimmed.inc_by(step.rows);
        match step.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if let Some(before) = expire {
        loop {
            if shutdown.is_cancelled() {
                return Ok(swept);
            }
            let Some(n) = store.expire_messages(before, config.sweep_messages).await? else {
                return Ok(swept);
            };
            swept.messages += n;
            metrics.retention_messages_expired.inc_by(n);
            if n < u64::from(config.sweep_messages.max(1)) {
                break;
            }
        }
    }
    if swept != Swept::default() {
        tracing::info!(
            runs = swept.runs,
            users = swept.users,
            messages = swept.messages,
            "group retention sweep"
        );
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_configuration() {
        let now = 1_000_000_000;
        let off = RetentionConfig {
            mailbox_acked_ttl_secs: 0,
            ..RetentionConfig::default()
        };
        assert!(!enabled(&off));
        assert_eq!(policy(&off, now), (Retention::default(), None));
        let acked = RetentionConfig {
            mailbox_acked_ttl_secs: 10,
            ..RetentionConfig::default()
        };
        assert_eq!(policy(&acked, now).0.acked_before_ms, now - 10_000);
        assert_eq!(policy(&acked, now).0.any_before_ms, 0);
        // A message TTL trims unacked entries of expired messages too, and
        // never lets the acked rule keep more than it.
        let ttl = RetentionConfig {
            message_ttl_secs: 5,
            mailbox_acked_ttl_secs: 10,
            mailbox_max_age_secs: 60,
            ..RetentionConfig::default()
        };
        let (p, expire) = policy(&ttl, now);
        assert_eq!(expire, Some(now - 5_000));
        assert_eq!(p.any_before_ms, now - 5_000);
        assert_eq!(p.acked_before_ms, now - 5_000);
    }
}
