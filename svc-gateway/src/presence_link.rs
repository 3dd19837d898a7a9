//! Reporting to presence and hearing back from it. Once per interval the
//! gateway sends one aggregated report (every held room's local count, the
//! viewers new since the last report, the sessions opened and closed), so
//! presence traffic grows with rooms and gateways, never with churn; a join
//! or leave only appends to memory. Once per push interval it asks presence
//! for its rooms' counts over all gateways and pushes them to the viewers.

use crate::gateway::Gateway;
use hubbub_kit::channel::TracedChannel;
use hubbub_proto::v1::{
    PresenceGetRoomCountsRequest, PresenceReportGatewayRequest, PresenceSession, RoomOnlineReport,
    presence_client::PresenceClient, room_online_report::Online,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Most rooms asked about in one GetRoomCounts call.
const ROOMS_PER_CALL: usize = 1000;

/// Sessions opened and closed since the last report.
#[derive(Debug, Default)]
pub struct SessionChanges {
    added: Vec<PresenceSession>,
    removed: Vec<String>,
}

/// The changes waiting for the next report; appended to by connects and
/// disconnects, taken by the reporter.
#[derive(Debug, Default)]
pub struct PendingChanges(Mutex<SessionChanges>);

impl PendingChanges {
    /// A session opened (users only: guests cannot be notified).
    pub fn opened(&self, session: PresenceSession) {
        self.lock().added.push(session);
    }

    /// A session closed.
    pub fn closed(&self, session_id: &str) {
        self.lock().removed.push(session_id.to_owned());
    }

    fn take(&self) -> SessionChanges {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionChanges> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the reporter and the count pusher until `shutdown`.
pub fn start(gateway: Arc<Gateway>, client: PresenceClient<TracedChannel>, shutdown: CancellationToken) {
    tokio::spawn(report_loop(gateway.clone(), client.clone(), shutdown.clone()));
    tokio::spawn(push_loop(gateway, client, shutdown));
}

async fn report_loop(gateway: Arc<Gateway>, mut client: PresenceClient<TracedChannel>, shutdown: CancellationToken) {
    let config = &gateway.config;
    let mut ticker = tokio::time::interval(Duration::from_millis(config.presence_report_ms.max(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut full = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        seq += 1;
        let request = build_report(&gateway, seq, full);
        match client.report_gateway(request).await {
            Ok(_) => full = false,
            Err(status) => {
                // Presence lost our state, or the report may not have landed:
                // the next one is a full snapshot either way.
                if status.code() != tonic::Code::FailedPrecondition {
                    tracing::debug!(%status, "presence report failed");
                }
                full = true;
            }
        }
    }
}

fn build_report(gateway: &Gateway, seq: u64, full: bool) -> PresenceReportGatewayRequest {
    let config = &gateway.config;
    // Changes are taken before a snapshot is read, so a session opened in
    // between is in both; presence keeps it once.
    let changes = gateway.presence_changes.take();
    let sessions_added = if full {
        gateway
            .sessions
            .snapshot()
            .iter()
            .filter_map(|session| {
                Some(PresenceSession {
                    user_id: session.identity.user_id()?.to_owned(),
                    device_id: session.device_id.clone(),
                    session_id: session.id.to_string(),
                    connected_at_ms: session.connected_at_ms,
                })
            })
            .collect()
    } else {
        changes.added
    };
    let rooms = gateway
        .rooms
        .take_presence()
        .into_iter()
        .map(|(room_id, online, new_viewer_ids)| RoomOnlineReport {
            room_id,
            online: Some(Online::OnlineAbsolute(online)),
            new_viewer_ids,
        })
        .collect();
    PresenceReportGatewayRequest {
        gateway_id: config.id.clone(),
        address: config.advertise.clone(),
        report_seq: seq,
        full_snapshot: full,
        sessions_added,
        removed_session_ids: if full { Vec::new() } else { changes.removed },
        rooms,
        ttl_ms: config.presence_ttl_ms,
    }
}

async fn push_loop(gateway: Arc<Gateway>, mut client: PresenceClient<TracedChannel>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_millis(gateway.config.room_presence_push_ms.max(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let room_ids = gateway.rooms.room_ids(|_| true);
        for chunk in room_ids.chunks(ROOMS_PER_CALL) {
            let request = PresenceGetRoomCountsRequest {
                room_ids: chunk.to_vec(),
            };
            match client.get_room_counts(request).await {
                Ok(answer) => {
                    let counts: Vec<(String, u64)> = answer
                        .into_inner()
                        .rooms
                        .into_iter()
                        .map(|c| (c.room_id, c.online))
                        .collect();
                    gateway.rooms.push_online(&counts);
                }
                Err(status) => tracing::debug!(%status, "room counts unavailable"),
            }
        }
    }
}
