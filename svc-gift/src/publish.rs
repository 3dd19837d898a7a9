//! Publishing committed gifts through their room: one `Room.PublishGifts`
//! per run of a room's gifts, on the room's owner (rendezvous over the room
//! instances, as gateways pick it), each gift with its recorded sender and
//! the record as the body. The room gives gifts its
//! high lane: never sampled, never dropped for a slow viewer. Publishing is
//! bounded and may fail; the record is durable already, and viewers repair
//! the hole by pulling.

use crate::metrics::GiftMetrics;
use crate::store::Record;
use hubbub_kit::channel::{Dialer, TracedChannel};
use hubbub_kit::discovery::Instances;
use hubbub_kit::rendezvous;
use hubbub_proto::v1::{RoomGift, RoomPublishGiftsRequest, room_client::RoomClient};
use prost::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Publishes records through their rooms.
pub struct RoomPublisher {
    instances: Instances,
    dialer: Dialer,
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
    pub fn new(instances: Instances, dialer: Dialer, timeout: Duration, metrics: GiftMetrics) -> Self {
        Self {
            instances,
            dialer,
            clients: Mutex::new(HashMap::new()),
            timeout,
            metrics,
        }
    }

    /// Publishes consecutive gifts of one room (`records`, in ledger order)
    /// in one `Room.PublishGifts`; true when the room took them.
    pub async fn publish(&self, records: &[Record]) -> bool {
        let Some(first) = records.first() else {
            return true;
        };
        let room_id = &first.room_id;
        let Some(mut client) = self.client_for(room_id) else {
            self.metrics.publish_failures.inc_by(records.len() as u64);
            return false;
        };
        let mut request = tonic::Request::new(RoomPublishGiftsRequest {
            room_id: room_id.clone(),
            gifts: records
                .iter()
                .map(|r| RoomGift {
                    sender_user_id: r.sender_user_id.clone(),
                    body: crate::convert::record(r.clone()).encode_to_vec().into(),
                })
                .collect(),
        });
        request.set_timeout(self.timeout);
        let failure = match tokio::time::timeout(self.timeout, client.publish_gifts(request)).await {
            Ok(Ok(_)) => return true,
            Ok(Err(status)) => status.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        self.metrics.publish_failures.inc_by(records.len() as u64);
        // One line per failed call, not per gift: a room instance that is
        // down must not flood the log.
        tracing::warn!(room = %room_id, gifts = records.len(), first_seq = first.seq, %failure,
            "publishing gifts through their room failed; viewers will pull them");
        false
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
