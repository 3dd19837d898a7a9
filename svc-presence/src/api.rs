//! The `hubbub.v1.Presence` handlers over a `PresenceStore`.

use crate::store::{Applied, GatewayReport, PresenceStore, RoomReport, SessionEntry, StoreError};
use hubbub_kit::ids;
use hubbub_proto::v1::{
    self as pb, GatewayLocation, PresenceSession, RoomCount, presence_server::Presence, room_online_report::Online,
};
use std::{collections::HashSet, sync::Arc, time::Duration};
use tonic::{Request, Response, Status};

/// Shortest and longest TTL a report may ask for.
const TTL_RANGE_MS: (u32, u32) = (100, 600_000);

/// Serves `hubbub.v1.Presence`.
#[derive(Debug)]
pub struct PresenceApi<S> {
    store: Arc<S>,
    max_ids: usize,
}

impl<S> PresenceApi<S> {
    /// Handlers over `store`, answering at most `max_ids` ids per call.
    pub fn new(store: Arc<S>, max_ids: usize) -> Self {
        Self { store, max_ids }
    }

    fn check_ids(&self, field: &str, values: &[String]) -> Result<(), Status> {
        if values.len() > self.max_ids {
            return Err(Status::resource_exhausted(format!(
                "{field} names {} ids; the limit is {} per call",
                values.len(),
                self.max_ids
            )));
        }
        values.iter().try_for_each(|value| ids::validate(field, value))
    }
}

fn unavailable(err: StoreError) -> Status {
    Status::unavailable(err.to_string())
}

fn session(s: PresenceSession) -> SessionEntry {
    SessionEntry {
        session_id: s.session_id,
        user_id: s.user_id,
        device_id: s.device_id,
        connected_at_ms: s.connected_at_ms,
    }
}

#[tonic::async_trait]
impl<S: PresenceStore> Presence for PresenceApi<S> {
    #[tracing::instrument(name = "presence.report", skip_all, fields(gateway = %request.get_ref().gateway_id))]
    async fn report_gateway(
        &self,
        request: Request<pb::PresenceReportGatewayRequest>,
    ) -> Result<Response<pb::PresenceReportGatewayResponse>, Status> {
        let caller = hubbub_kit::service_auth::caller(&request)?.instance.clone();
        let request = request.into_inner();
        ids::validate("gateway_id", &request.gateway_id)?;
        if request.gateway_id != caller {
            return Err(Status::permission_denied(format!(
                "gateway {caller:?} may report only under its own id, not {:?}",
                request.gateway_id
            )));
        }
        if !(TTL_RANGE_MS.0..=TTL_RANGE_MS.1).contains(&request.ttl_ms) {
            return Err(Status::invalid_argument(format!(
                "ttl_ms {} is outside {}..={}",
                request.ttl_ms, TTL_RANGE_MS.0, TTL_RANGE_MS.1
            )));
        }
        let mut rooms = Vec::with_capacity(request.rooms.len());
        for room in request.rooms {
            ids::validate("rooms.room_id", &room.room_id)?;
            let online = match room.online {
                Some(Online::OnlineAbsolute(online)) => online,
                Some(Online::OnlineDelta(_)) => {
                    return Err(Status::invalid_argument(
                        "online_delta is not accepted: report online_absolute for every room each interval",
                    ));
                }
                None => 0,
            };
            rooms.push(RoomReport {
                room_id: room.room_id,
                online,
                new_viewers: room.new_viewer_ids,
            });
        }
        let report = GatewayReport {
            gateway_id: request.gateway_id,
            address: request.address,
            report_seq: request.report_seq,
            full: request.full_snapshot,
            sessions_added: request.sessions_added.into_iter().map(session).collect(),
            sessions_removed: request.removed_session_ids,
            rooms,
            ttl: Duration::from_millis(u64::from(request.ttl_ms)),
        };
        match self.store.report(&report).await.map_err(unavailable)? {
            Applied::Yes { expires_at_ms } => Ok(Response::new(pb::PresenceReportGatewayResponse { expires_at_ms })),
            Applied::NeedFullSnapshot => Err(Status::failed_precondition(
                "presence does not hold this gateway's previous report: send a full snapshot",
            )),
        }
    }

    async fn locate_users(
        &self,
        request: Request<pb::PresenceLocateUsersRequest>,
    ) -> Result<Response<pb::PresenceLocateUsersResponse>, Status> {
        let user_ids = request.into_inner().user_ids;
        self.check_ids("user_ids", &user_ids)?;
        let located = self.store.locate(&user_ids).await.map_err(unavailable)?;
        let online: HashSet<&str> = located
            .iter()
            .flat_map(|l| l.sessions.iter().map(|s| s.user_id.as_str()))
            .collect();
        let offline_user_ids = user_ids
            .iter()
            .filter(|u| !online.contains(u.as_str()))
            .cloned()
            .collect();
        let gateways = located
            .into_iter()
            .map(|location| GatewayLocation {
                gateway_id: location.gateway_id,
                address: location.address,
                sessions: location
                    .sessions
                    .into_iter()
                    .map(|s| PresenceSession {
                        user_id: s.user_id,
                        device_id: s.device_id,
                        session_id: s.session_id,
                        connected_at_ms: s.connected_at_ms,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::PresenceLocateUsersResponse {
            gateways,
            offline_user_ids,
        }))
    }

    async fn get_room_counts(
        &self,
        request: Request<pb::PresenceGetRoomCountsRequest>,
    ) -> Result<Response<pb::PresenceGetRoomCountsResponse>, Status> {
        let room_ids = request.into_inner().room_ids;
        self.check_ids("room_ids", &room_ids)?;
        let counts = self.store.room_counts(&room_ids).await.map_err(unavailable)?;
        let rooms = room_ids
            .into_iter()
            .zip(counts)
            .map(|(room_id, count)| RoomCount {
                room_id,
                online: count.online,
                unique_viewers: count.unique_viewers,
            })
            .collect();
        Ok(Response::new(pb::PresenceGetRoomCountsResponse { rooms }))
    }
}
