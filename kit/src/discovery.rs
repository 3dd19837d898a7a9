//! Where the instances of a role are: a fixed list from configuration, or
//! the addresses a DNS name resolves to (the headless Service of a
//! StatefulSet), re-resolved on an interval. Either way the answer is a
//! watch channel of sorted `http://ip:port` addresses, so rendezvous hashing
//! gives every role the same owners from the same list.

use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The current instance list; `changed()` fires when it changes.
pub type Instances = watch::Receiver<Arc<Vec<String>>>;

/// A fixed list, and the sender that replaces it (for tests and reloads).
pub fn fixed(addresses: &[String]) -> (watch::Sender<Arc<Vec<String>>>, Instances) {
    let mut sorted = addresses.to_vec();
    sorted.sort();
    sorted.dedup();
    watch::channel(Arc::new(sorted))
}

/// Why a DNS name cannot be followed.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {name:?} (expected host:port): {source}")]
pub struct DnsError {
    /// The name as configured.
    pub name: String,
    /// The resolver's error.
    #[source]
    pub source: std::io::Error,
}

/// Follows `name` (`host:port`): resolved once now (an error if it does not
/// resolve), then every `refresh` until `shutdown`. A failed or empty later
/// answer keeps the previous list: a resolver hiccup must not move rooms.
pub async fn dns(name: String, refresh: Duration, shutdown: CancellationToken) -> Result<Instances, DnsError> {
    let first = resolve(&name).await.map_err(|source| DnsError {
        name: name.clone(),
        source,
    })?;
    let (sender, receiver) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = shutdown.cancelled() => return,
            }
            match resolve(&name).await {
                Ok(addresses) if !addresses.is_empty() => {
                    sender.send_if_modified(|current| {
                        let changed = **current != addresses;
                        if changed {
                            tracing::info!(%name, instances = ?addresses, "instance list changed");
                            *current = Arc::new(addresses);
                        }
                        changed
                    });
                }
                Ok(_) => tracing::warn!(%name, "DNS answered no instance; keeping the last list"),
                Err(err) => tracing::warn!(%name, %err, "DNS lookup failed; keeping the last list"),
            }
        }
    });
    Ok(receiver)
}

/// The room instances as a role's configuration names them: `dns` (a
/// `host:port` name, followed every `refresh`) when set, else the fixed
/// `list`; an error a person can act on when neither is usable. `what` is
/// the configuration prefix of the two keys (`gateway.room_instances`...).
pub async fn configured(
    what: &str,
    list: &[String],
    dns_name: Option<&str>,
    refresh: Duration,
    shutdown: CancellationToken,
) -> Result<Instances, String> {
    match dns_name {
        Some(name) => dns(name.to_owned(), refresh, shutdown).await.map_err(|e| e.to_string()),
        None if list.is_empty() => Err(format!("set {what} (addresses) or {what}_dns (host:port)")),
        None => Ok(fixed(list).1),
    }
}

async fn resolve(name: &str) -> std::io::Result<Vec<String>> {
    let mut addresses: Vec<String> = tokio::net::lookup_host(name)
        .await?
        .map(|address| format!("http://{address}"))
        .collect();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolves_to_sorted_http_addresses_and_bad_names_are_refused() {
        let instances = dns(
            "localhost:7701".into(),
            Duration::from_secs(60),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let list = instances.borrow().clone();
        assert!(
            list.iter()
                .any(|a| a == "http://127.0.0.1:7701" || a == "http://[::1]:7701"),
            "{list:?}"
        );
        assert!(
            dns("no-port".into(), Duration::from_secs(1), CancellationToken::new())
                .await
                .is_err()
        );

        let (_, fixed) = fixed(&["http://b:1".into(), "http://a:1".into(), "http://a:1".into()]);
        assert_eq!(**fixed.borrow(), vec!["http://a:1".to_owned(), "http://b:1".to_owned()]);
    }
}
