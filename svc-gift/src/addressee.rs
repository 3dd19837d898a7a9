//! Delivering a co-streaming record to its addressee only: presence says
//! where the user's sessions are (`LocateUsers`), and each gateway holding
//! one gets a `GatewayControl.Deliver` with the record inline
//! (`GiftNotify`). Never through the room: the request is not the room's
//! business. Bounded and lossy like every notify; the addressee lists what
//! is pending for them by pulling.

use crate::store::Record;
use hubbub_kit::channel::{Dialer, TracedChannel};
use hubbub_proto::v1::{
    GatewayControlDeliverRequest, GiftNotify, PresenceLocateUsersRequest, gateway_control_client::GatewayControlClient,
    gateway_control_deliver_request::Notify, presence_client::PresenceClient,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Gateway clients kept at most; past it the cache starts over (gateways
/// come and go, the map must not only grow).
const MAX_GATEWAYS: usize = 1024;

/// Delivers records to their addressee's sessions.
pub struct Addressee {
    presence: Option<PresenceClient<TracedChannel>>,
    dialer: Dialer,
    gateways: Mutex<HashMap<String, GatewayControlClient<TracedChannel>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Addressee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addressee")
            .field("presence", &self.presence.is_some())
            .finish()
    }
}

impl Addressee {
    /// Locates through `presence` (none: nobody is ever delivered to, the
    /// addressee pulls) and delivers through gateways dialled by `dialer`,
    /// each call bounded by `timeout`.
    pub fn new(presence: Option<PresenceClient<TracedChannel>>, dialer: Dialer, timeout: Duration) -> Self {
        Self {
            presence,
            dialer,
            gateways: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// Sends `record` to every session of its recipient; true when at
    /// least one gateway took it.
    pub async fn deliver(&self, record: &Record) -> bool {
        let Some(presence) = &self.presence else {
            return false;
        };
        let request = PresenceLocateUsersRequest {
            user_ids: vec![record.recipient_user_id.clone()],
        };
        let located = match tokio::time::timeout(self.timeout, presence.clone().locate_users(request)).await {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) => {
                tracing::warn!(%status, "presence could not locate a co-streaming addressee");
                return false;
            }
            Err(_) => {
                tracing::warn!("presence did not locate a co-streaming addressee in time");
                return false;
            }
        };
        let mut delivered = false;
        for gateway in located.gateways {
            let Some(client) = self.gateway(&gateway.address) else {
                continue;
            };
            let request = GatewayControlDeliverRequest {
                session_ids: gateway.sessions.into_iter().map(|s| s.session_id).collect(),
                notify: Some(Notify::GiftNotify(GiftNotify {
                    room_id: record.room_id.clone(),
                    gift: Some(crate::convert::record(record.clone())),
                })),
            };
            match tokio::time::timeout(self.timeout, client.clone().deliver(request)).await {
                Ok(Ok(answer)) => delivered |= answer.get_ref().delivered > 0,
                Ok(Err(status)) => {
                    tracing::warn!(address = %gateway.address, %status, "a gateway refused a gift notify")
                }
                Err(_) => tracing::warn!(address = %gateway.address, "a gateway did not take a gift notify in time"),
            }
        }
        delivered
    }

    fn gateway(&self, address: &str) -> Option<GatewayControlClient<TracedChannel>> {
        let mut gateways = self.gateways.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = gateways.get(address) {
            return Some(client.clone());
        }
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let channel = match self.dialer.dial(&url) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::error!(%address, error = %e, "presence named a gateway address that cannot be dialled");
                return None;
            }
        };
        if gateways.len() >= MAX_GATEWAYS {
            gateways.clear();
        }
        let client = GatewayControlClient::new(channel);
        gateways.insert(address.to_owned(), client.clone());
        Some(client)
    }
}
