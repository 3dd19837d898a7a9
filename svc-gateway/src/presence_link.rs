//! Reporting to presence and hearing back from it. Once per interval the
//! gateway sends one aggregated report (every held room's local count, the
//! viewers new since the last report, the sessions opened and closed), so
//! presence traffic grows with rooms and gateways, never with churn; a join
//! or leave only appends to memory. Once per push interval it asks presence
//! for its rooms' counts over all gateways and pushes them to the viewers.

use crate::gateway::Gateway;
use hubbub_kit::{channel::TracedChannel, tracecontext};
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
/// Most sessions in one report (about 1 MB): a full snapshot of a big
/// gateway goes as a snapshot followed by numbered deltas, each well under
/// presence's request limit.
pub const SESSIONS_PER_REPORT: usize = 10_000;

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
        // Housekeeping, once a second per gateway: never traced.
        let span = tracecontext::unsampled_span("gateway.presence_report");
        let reports = build_reports(&gateway, seq + 1, full);
        full = false;
        for request in reports {
            seq = request.report_seq;
            let sent = tracing::Instrument::instrument(client.report_gateway(request), span.clone()).await;
            if let Err(status) = sent {
                // Presence lost our state, or the report may not have landed:
                // the next one is a full snapshot either way.
                if status.code() != tonic::Code::FailedPrecondition {
                    tracing::debug!(%status, "presence report failed");
                }
                full = true;
                break;
            }
        }
    }
}

/// The reports of one interval, numbered from `seq`: one, or for a big full
/// snapshot a snapshot of the first sessions followed by deltas adding the
/// rest, the rooms in the last (each report replaces the rooms).
pub fn build_reports(gateway: &Gateway, seq: u64, full: bool) -> Vec<PresenceReportGatewayRequest> {
    let config = &gateway.config;
    let Some(pending) = &gateway.presence_changes else {
        return Vec::new();
    };
    // Changes are taken before a snapshot is read, so a session opened in
    // between is in both; presence keeps it once.
    let changes = pending.take();
    let sessions_added: Vec<PresenceSession> = if full {
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
    let removed = if full { Vec::new() } else { changes.removed };
    let report = PresenceReportGatewayRequest {
        gateway_id: config.id.clone(),
        address: config.advertise.clone(),
        report_seq: seq,
        full_snapshot: full,
        sessions_added,
        removed_session_ids: removed,
        rooms,
        ttl_ms: config.presence_ttl_ms,
    };
    split_report(report, SESSIONS_PER_REPORT)
}

/// Splits one report into reports of at most `per_report` added sessions,
/// numbered on from its `report_seq`: only the first can be a snapshot and
/// carries the removals, only the last carries the rooms (each report
/// replaces the gateway's rooms at presence, so they must arrive whole).
pub fn split_report(report: PresenceReportGatewayRequest, per_report: usize) -> Vec<PresenceReportGatewayRequest> {
    let PresenceReportGatewayRequest {
        gateway_id,
        address,
        report_seq,
        full_snapshot,
        sessions_added,
        removed_session_ids,
        rooms,
        ttl_ms,
    } = report;
    let mut chunks: Vec<Vec<PresenceSession>> = Vec::new();
    let mut sessions_added = sessions_added.into_iter().peekable();
    while sessions_added.peek().is_some() {
        chunks.push(sessions_added.by_ref().take(per_report.max(1)).collect());
    }
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    let mut removed = Some(removed_session_ids);
    let mut rooms = Some(rooms);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, sessions_added)| PresenceReportGatewayRequest {
            gateway_id: gateway_id.clone(),
            address: address.clone(),
            report_seq: report_seq + index as u64,
            full_snapshot: full_snapshot && index == 0,
            sessions_added,
            removed_session_ids: removed.take().unwrap_or_default(),
            rooms: if index == last {
                rooms.take().unwrap_or_default()
            } else {
                Vec::new()
            },
            ttl_ms,
        })
        .collect()
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
        let span = tracecontext::unsampled_span("gateway.room_counts");
        for chunk in room_ids.chunks(ROOMS_PER_CALL) {
            let request = PresenceGetRoomCountsRequest {
                room_ids: chunk.to_vec(),
            };
            let asked = tracing::Instrument::instrument(client.get_room_counts(request), span.clone());
            match asked.await {
                Ok(answer) => {
                    let counts: Vec<(String, u64, u64)> = answer
                        .into_inner()
                        .rooms
                        .into_iter()
                        .map(|c| (c.room_id, c.online, c.unique_viewers))
                        .collect();
                    gateway.rooms.push_online(&counts);
                }
                Err(status) => tracing::debug!(%status, "room counts unavailable"),
            }
        }
    }
}
