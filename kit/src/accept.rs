//! `GuardedIncoming`: the accept loop of every listener. It caps open
//! connections in total and per source address (IPv6 by /64), sheds the
//! ones over a cap at once, and backs off after an accept error such as
//! running out of file descriptors instead of spinning on it. Every
//! accepted connection is a [`HandshakeDeadline`] that gives its place
//! back when it closes.

use crate::conn_guard::HandshakeDeadline;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, time::Sleep};
use tokio_stream::Stream;

/// Pause after a failed accept (EMFILE and the like): the listener is
/// retried, not hammered.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connection caps of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionCaps {
    /// Open connections at most.
    pub total: usize,
    /// Open connections per source address (IPv6: per /64) at most.
    pub per_address: usize,
    /// Addresses held only to `total`: the proxies in front of the port
    /// (every client behind a TLS-terminating load balancer arrives from
    /// its few addresses).
    pub uncapped: std::sync::Arc<[IpAddr]>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The place of one open connection; given back on drop.
#[derive(Debug)]
pub struct Place {
    counts: Arc<Mutex<Counts>>,
    /// The address counted against, None for a proxy.
    address: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(address) = self.address
            && let Some(held) = counts.by_address.get_mut(&address)
        {
            *held -= 1;
            if *held == 0 {
                counts.by_address.remove(&address);
            }
        }
    }
}

/// The accepted connections of a listener, within its caps.
pub struct GuardedIncoming {
    listener: TcpListener,
    caps: ConnectionCaps,
    handshake: Duration,
    // Why a mutex: taken once per accept and once per close, never held
    // across anything else.
    counts: Arc<Mutex<Counts>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl GuardedIncoming {
    /// Accepts on `listener` within `caps`; each connection must send its
    /// first bytes within `handshake`.
    pub fn new(listener: TcpListener, caps: ConnectionCaps, handshake: Duration) -> Self {
        Self {
            listener,
            caps,
            handshake,
            counts: Arc::default(),
            backoff: None,
        }
    }

    fn admit(&self, address: IpAddr) -> Option<Place> {
        // A proxy counts toward the total only (an IPv4 one may arrive
        // IPv4-mapped on a dual-stack listener).
        let canonical = address.to_canonical();
        let proxy = self.caps.uncapped.iter().any(|p| p.to_canonical() == canonical);
        let address = bucket(address);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = counts.by_address.get(&address).copied().unwrap_or(0);
        if counts.total >= self.caps.total || (!proxy && held >= self.caps.per_address) {
            return None;
        }
        counts.total += 1;
        if !proxy {
            *counts.by_address.entry(address).or_default() += 1;
        }
        Some(Place {
            counts: self.counts.clone(),
            address: (!proxy).then_some(address),
        })
    }
}

/// The address a connection counts against: IPv4 as it is, IPv6 by its /64
/// (one host usually holds a whole /64).
fn bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl Stream for GuardedIncoming {
    type Item = io::Result<HandshakeDeadline>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = &mut self.backoff {
                if backoff.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => {
                    tracing::warn!(%err, "accept failed: backing off");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                Poll::Ready(Ok((stream, peer))) => match self.admit(peer.ip()) {
                    Some(place) => {
                        let _ = stream.set_nodelay(true);
                        return Poll::Ready(Some(Ok(HandshakeDeadline::new(stream, self.handshake, Some(place)))));
                    }
                    // Dropped at once: closing costs less than holding.
                    None => tracing::debug!(%peer, "connection over the listener's caps: closed"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectionCaps, GuardedIncoming, bucket};
    use std::net::IpAddr;
    use std::time::Duration;

    #[tokio::test]
    async fn a_trusted_proxy_is_held_to_the_total_cap_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let proxy_mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let caps = ConnectionCaps {
            total: 4,
            per_address: 1,
            uncapped: [proxy].as_slice().into(),
        };
        let incoming = GuardedIncoming::new(listener, caps, Duration::from_secs(1));
        let held = incoming.admit(client).expect("a client's first connection");
        assert!(
            incoming.admit(client).is_none(),
            "a client's second is over the per-address cap"
        );
        let mut proxied: Vec<_> = (0..2).map(|_| incoming.admit(proxy)).collect();
        proxied.push(incoming.admit(proxy_mapped));
        assert!(
            proxied.iter().all(Option::is_some),
            "the proxy's connections are not capped per address"
        );
        assert!(incoming.admit(proxy).is_none(), "but they count toward the total");
        drop(held);
        assert!(incoming.admit(proxy).is_some(), "a freed place is taken again");
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(bucket(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
