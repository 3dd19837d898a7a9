//! The `hubbub.v1.Presence` handlers. The contract is final; the stores land
//! with their own issue, and until then every call answers UNIMPLEMENTED.

use hubbub_proto::v1::{self as pb, presence_server::Presence};
use tonic::{Request, Response, Status};

/// Serves `hubbub.v1.Presence`.
#[derive(Debug, Clone, Default)]
pub struct PresenceApi;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("Presence.{rpc} is not available in this release yet"))
}

#[tonic::async_trait]
impl Presence for PresenceApi {
    async fn report_gateway(
        &self,
        _: Request<pb::PresenceReportGatewayRequest>,
    ) -> Result<Response<pb::PresenceReportGatewayResponse>, Status> {
        Err(not_yet("ReportGateway"))
    }

    async fn locate_users(
        &self,
        _: Request<pb::PresenceLocateUsersRequest>,
    ) -> Result<Response<pb::PresenceLocateUsersResponse>, Status> {
        Err(not_yet("LocateUsers"))
    }

    async fn get_room_counts(
        &self,
        _: Request<pb::PresenceGetRoomCountsRequest>,
    ) -> Result<Response<pb::PresenceGetRoomCountsResponse>, Status> {
        Err(not_yet("GetRoomCounts"))
    }
}
