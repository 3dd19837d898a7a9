//! `Notifier`: after a commit, tells the members' online devices that their
//! mailbox moved, off the send's path.
//!
//! A commit hands its deliveries (user -> new mailbox head) to a bounded
//! queue and returns; when the queue is full the notice is dropped and
//! counted, never waited for. A lost notify costs nothing: the device's next
//! pull (or its next Connect) brings everything, so every step here is best
//! effort and bounded in time.
//!
//! Notices that queued while the worker was busy are merged (up to 64, so
//! many small groups committing at once cost one lookup): each user once,
//! with its highest head. Then one `Presence.LocateUsers` per 1,000 users
//! (presence's per-call limit), answered grouped by gateway; then, per
//! gateway, one `GatewayControl.Deliver` per distinct (group, mailbox
//! head). A Deliver carries one
//! notify for many sessions, and a notify names the user's own head, so the
//! sessions of users whose heads are equal share a call (a user's devices
//! always do); gateways are called concurrently.
//!
//! The users of a notice that presence did not find on any gateway are
//! offline: the commit's messages are pushed to them through the
//! [`PushSink`] when one is configured (see [`offline_users`] for who
//! counts). A user whose LocateUsers call failed is not taken for offline:
//! presence could not say, and a push to a user at their screen is noise.

use crate::metrics::GroupMetrics;
use crate::push::{PushMessages, PushSink, Pushable};
use crate::store::Delivery;
use hubbub_kit::channel::{Dialer, TracedChannel};
use hubbub_proto::v1::{
    GatewayControlDeliverRequest, GatewayLocation, GroupNotify, PresenceLocateUsersRequest,
    gateway_control_client::GatewayControlClient, gateway_control_deliver_request::Notify,
    presence_client::PresenceClient,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most user ids one LocateUsers call may name (presence's default limit).
pub const LOCATE_CHUNK: usize = 1000;
/// Queued notices merged into one round of lookups and Delivers, at most.
const MERGE: usize = 64;
/// Notices worked on at once; the queue holds the rest.
const MAX_IN_FLIGHT: usize = 32;
/// Gateway channels kept; gateways come and go with deploys, so the map is
/// bounded: when full, an arbitrary entry makes room (a dropped channel
/// is dialled again on next use).
const MAX_GATEWAY_CHANNELS: usize = 1024;

/// One commit's deliveries, to be notified.
#[derive(Debug)]
struct Notice {
    group_id: String,
    /// When the commit handed it over.
    at: std::time::Instant,
    deliveries: Vec<Delivery>,
    /// The commit's pushable messages, for whoever turns out offline.
    push: Option<PushMessages>,
}

/// The handle commits notify through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Notice>>,
    push: PushSink,
    metrics: GroupMetrics,
}

impl Notifier {
    /// A notifier that sends nothing (no presence configured): devices learn
    /// of new items on their next pull. Without presence nobody is known to
    /// be offline, so nothing is pushed either.
    pub fn disabled(metrics: GroupMetrics) -> Self {
        Self {
            queue: None,
            push: PushSink::disabled(),
            metrics,
        }
    }

    /// Starts the notifier's worker, asking `presence` where devices are,
    /// dialling gateways with `dialer` and handing offline users to `push`;
    /// it stops at `shutdown`.
    pub fn start(
        presence: TracedChannel,
        dialer: Dialer,
        push: PushSink,
        queue: usize,
        timeout: Duration,
        metrics: GroupMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let worker = Arc::new(Worker {
            presence: PresenceClient::new(presence),
            gateways: Mutex::default(),
            dialer,
            push: push.clone(),
            timeout,
            metrics: metrics.clone(),
        });
        tokio::spawn(run(receiver, worker, shutdown));
        Self {
            queue: Some(sender),
            push,
            metrics,
        }
    }

    /// Queues a notify of `deliveries` (of a commit in `group_id`) and, for
    /// those members found offline, a push of `pushable` (None for
    /// membership events, which are not pushed); never waits. Dropped and
    /// counted when the queue is full.
    pub fn notify(&self, group_id: &str, deliveries: Vec<Delivery>, pushable: Option<Pushable<'_>>) {
        let Some(queue) = &self.queue else { return };
        if deliveries.is_empty() {
            return;
        }
        let notice = Notice {
            group_id: group_id.to_owned(),
            at: std::time::Instant::now(),
            deliveries,
            // Cut now, so the queue holds short bodies, not the commit's.
            push: pushable.and_then(|pushable| self.push.prepare(group_id, pushable)),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(notice) {
            self.metrics.notifies_dropped.inc();
        }
    }
}

async fn run(mut receiver: mpsc::Receiver<Notice>, worker: Arc<Worker>, shutdown: CancellationToken) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => return,
            notice = receiver.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
        };
        // Waiting here for a slot is what lets the queue fill up, and a full
        // queue drops notices instead of slowing sends.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Whatever queued meanwhile goes along: one presence lookup for the
        // users of many commits (many small groups commit in one breath).
        let mut notices = vec![notice];
        while notices.len() < MERGE {
            match receiver.try_recv() {
                Ok(more) => notices.push(more),
                Err(_) => break,
            }
        }
        let worker = worker.clone();
        tokio::spawn(async move {
            worker.notify(notices).await;
            drop(permit);
        });
    }
}

struct Worker {
    presence: PresenceClient<TracedChannel>,
    // Why a std lock: held only to look up or insert a channel, never across
    // an await.
    gateways: Mutex<HashMap<String, GatewayControlClient<TracedChannel>>>,
    dialer: Dialer,
    push: PushSink,
    timeout: Duration,
    metrics: GroupMetrics,
}

impl Worker {
    /// Notifies the users of `notices` (several commits): each user once,
    /// with its highest head; presence asked once per 1,000 distinct users.
    async fn notify(self: &Arc<Self>, notices: Vec<Notice>) {
        let mut latest: HashMap<String, (Arc<str>, u64)> = HashMap::new();
        for notice in &notices {
            let group: Arc<str> = notice.group_id.as_str().into();
            for d in &notice.deliveries {
                let entry = latest.entry(d.user_id.clone()).or_insert_with(|| (group.clone(), 0));
                if d.mailbox_seq >= entry.1 {
                    *entry = (group.clone(), d.mailbox_seq);
                }
            }
        }
        let wanted: Vec<Delivery> = latest
            .iter()
            .map(|(user_id, (_, head))| Delivery {
                user_id: user_id.clone(),
                mailbox_seq: *head,
            })
            .collect();
        let latest = Arc::new(latest);
        let mut calls = JoinSet::new();
        let mut offline: HashSet<String> = HashSet::new();
        let pushing = notices.iter().any(|n| n.push.is_some());
        for chunk in wanted.chunks(LOCATE_CHUNK) {
            let request = PresenceLocateUsersRequest {
                user_ids: chunk.iter().map(|d| d.user_id.clone()).collect(),
            };
            let located = match tokio::time::timeout(self.timeout, self.presence.clone().locate_users(request)).await {
                Ok(Ok(answer)) => answer.into_inner(),
                Ok(Err(status)) => {
                    self.failed("presence", &status.to_string());
                    continue;
                }
                Err(_) => {
                    self.failed("presence", "no answer in time");
                    continue;
                }
            };
            if pushing {
                offline.extend(offline_users(chunk, &located.gateways));
            }
            for gateway in located.gateways {
                let (worker, latest) = (self.clone(), latest.clone());
                calls.spawn(async move { worker.deliver(&latest, gateway).await });
            }
        }
        for notice in &notices {
            if let Some(push) = &notice.push {
                let theirs: Vec<String> = notice
                    .deliveries
                    .iter()
                    .filter(|d| offline.contains(&d.user_id))
                    .map(|d| d.user_id.clone())
                    .collect();
                self.push.enqueue(push, &theirs);
            }
        }
        while calls.join_next().await.is_some() {}
        for notice in &notices {
            self.metrics.notify_seconds.observe(notice.at.elapsed().as_secs_f64());
        }
    }

    /// One Deliver per distinct (group, mailbox head) among the gateway's
    /// sessions, one after the other: they share the gateway's connection,
    /// and the notices in flight bound the streams opened at once.
    async fn deliver(&self, latest: &HashMap<String, (Arc<str>, u64)>, gateway: GatewayLocation) {
        let mut by_head: BTreeMap<(u64, Arc<str>), Vec<String>> = BTreeMap::new();
        for session in gateway.sessions {
            if let Some((group, head)) = latest.get(&session.user_id) {
                by_head
                    .entry((*head, group.clone()))
                    .or_default()
                    .push(session.session_id);
            }
        }
        let Some(client) = self.gateway(&gateway.address) else {
            return;
        };
        for ((mailbox_seq, group_id), session_ids) in by_head {
            let request = GatewayControlDeliverRequest {
                session_ids,
                notify: Some(Notify::GroupNotify(GroupNotify {
                    group_id: group_id.to_string(),
                    mailbox_seq,
                })),
            };
            match tokio::time::timeout(self.timeout, client.clone().deliver(request)).await {
                Ok(Ok(answer)) => {
                    self.metrics.notifies_sent.inc_by(u64::from(answer.get_ref().delivered));
                }
                Ok(Err(status)) => self.failed(&gateway.address, &status.to_string()),
                Err(_) => self.failed(&gateway.address, "no answer in time"),
            }
        }
    }

    /// The cached client of the gateway at `address`.
    fn gateway(&self, address: &str) -> Option<GatewayControlClient<TracedChannel>> {
        let mut gateways = self.gateways.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = gateways.get(address) {
            return Some(client.clone());
        }
        // Presence reports what gateways advertise; accept a bare host:port.
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let channel = match self.dialer.dial(&url) {
            Ok(channel) => channel,
            Err(err) => {
                self.failed(address, &err.to_string());
                return None;
            }
        };
        if gateways.len() >= MAX_GATEWAY_CHANNELS
            && let Some(evicted) = gateways.keys().next().cloned()
        {
            gateways.remove(&evicted);
        }
        let client = GatewayControlClient::new(channel);
        gateways.insert(address.to_owned(), client.clone());
        Some(client)
    }

    fn failed(&self, peer: &str, why: &str) {
        self.metrics.notify_failures.inc();
        // Debug, not warn: a notify is best effort and a burst of failures
        // would flood the log; the counter is what an operator watches.
        tracing::debug!(
            peer,
            why,
            "group notify not delivered; devices will get it on their next pull"
        );
    }
}

/// The users of `deliveries` with no session on any of `gateways` (one
/// LocateUsers answer about those users), in the order of `deliveries`.
pub fn offline_users(deliveries: &[Delivery], gateways: &[GatewayLocation]) -> Vec<String> {
    let online: HashSet<&str> = gateways
        .iter()
        .flat_map(|gateway| gateway.sessions.iter())
        .map(|session| session.user_id.as_str())
        .collect();
    deliveries
        .iter()
        .filter(|d| !online.contains(d.user_id.as_str()))
        .map(|d| d.user_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_proto::v1::PresenceSession;

    fn delivery(user_id: &str) -> Delivery {
        Delivery {
            user_id: user_id.to_owned(),
            mailbox_seq: 7,
        }
    }

    fn gateway(address: &str, users: &[&str]) -> GatewayLocation {
        GatewayLocation {
            gateway_id: address.to_owned(),
            address: address.to_owned(),
            sessions: users
                .iter()
                .enumerate()
                .map(|(i, user)| PresenceSession {
                    user_id: (*user).to_owned(),
                    session_id: format!("{address}-{i}"),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn offline_are_the_delivered_users_no_gateway_has_a_session_of() {
        let deliveries: Vec<Delivery> = ["alice", "bob", "carol", "dave"].into_iter().map(delivery).collect();
        // alice on two gateways, carol on one; zed is not in the notice.
        let gateways = [gateway("gw-1", &["alice", "zed"]), gateway("gw-2", &["carol", "alice"])];
        assert_eq!(offline_users(&deliveries, &gateways), ["bob", "dave"]);
        assert_eq!(
            offline_users(&deliveries, &[]),
            ["alice", "bob", "carol", "dave"],
            "no gateway answered: everyone is offline"
        );
        let everyone = [gateway("gw-1", &["dave", "carol", "bob", "alice"])];
        assert!(offline_users(&deliveries, &everyone).is_empty());
        assert!(offline_users(&[], &gateways).is_empty());
    }
}
