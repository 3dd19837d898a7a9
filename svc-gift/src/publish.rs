//! Publishing a committed gift through its room: `Room.Publish` on the
//! room's owner (rendezvous over the room instances, as gateways pick it),
//! as the sender, with the record as the body. The room gives gifts its
//! high lane: never sampled, never dropped for a slow viewer. Publishing is
//! bounded and may fail; the record is durable already, and viewers repair
//! the hole by pulling.

use crate::metrics::GiftMetrics;
use crate::store::Record;
use hubbub_kit::auth::Identity;
use hubbub_kit::channel::{Dialer, TracedChannel};
use hubbub_kit::discovery::Instances;
use hubbub_kit::rendezvous;
use hubbub_kit::service_auth::Credentials;
use hubbub_proto::v1::{RoomMessageKind, RoomPublishRequest, room_client::RoomClient};
use prost::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Publishes records through their rooms.
pub struct RoomPublisher {
    instances: Instances,
    dialer: Dialer,
    credentials: Credentials,
    /// Clients by instance address; pruned to the current list.
    clients: Mutex<HashMap<String, RoomClient<TracedChannel>>>,
    timeout: Duration,
    metrics: GiftMetrics,
}

impl std::fmt::Debug for RoomPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomPublisher").field("timeout", &self.timeout).finish()
    }
}

impl RoomPublisher {
    /// A publisher over `instances`, each call bounded by `timeout`.
    pub fn new(
        instances: Instances,
        dialer: Dialer,
        credentials: Credentials,
        timeout: Duration,
        metrics: GiftMetrics,
    ) -> Self {
        Self {
            instances,
            dialer,
            credentials,
            clients: Mutex::new(HashMap::new()),
            timeout,
            metrics,
        }
    }

    /// Publishes the gift `record` in its room as its sender; true when the
    /// room took it.
    pub async fn publish(&self, record: &Record) -> bool {
        let Some(mut client) = self.client_for(&record.room_id) else {
            self.metrics.publish_failures.inc();
            return false;
        };
        let mut request = tonic::Request::new(RoomPublishRequest {
            room_id: record.room_id.clone(),
            kind: RoomMessageKind::Gift as i32,
            body: crate::convert::record(record.clone()).encode_to_vec().into(),
        });
        request.set_timeout(self.timeout);
        self.credentials
            .act_for(&mut request, &Identity::User(record.sender_user_id.clone()));
        match tokio::time::timeout(self.timeout, client.publish(request)).await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                self.metrics.publish_failures.inc();
                tracing::warn!(room = %record.room_id, seq = record.seq, %status, "publishing a gift through its room failed");
                false
            }
            Err(_) => {
                self.metrics.publish_failures.inc();
                tracing::warn!(room = %record.room_id, seq = record.seq, "publishing a gift through its room timed out");
                false
            }
        }
    }

    fn client_for(&self, room_id: &str) -> Option<RoomClient<TracedChannel>> {
        let addresses = self.instances.borrow().clone();
        let owner = &addresses[rendezvous::owner(room_id, &addresses)?];
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(owner) {
            clients.retain(|address, _| addresses.contains(address));
            match self.dialer.dial(owner) {
                Ok(channel) => {
                    clients.insert(owner.clone(), RoomClient::new(channel));
                }
                Err(e) => {
                    tracing::error!(address = %owner, error = %e, "a room instance address cannot be dialled");
                    return None;
                }
            }
        }
        clients.get(owner).cloned()
    }
}
