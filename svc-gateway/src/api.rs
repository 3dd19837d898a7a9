//! The `hubbub.v1.ClientApi` handlers: authenticate, find the session's
//! replica, run the call here or forward it to the owner, map errors.

use crate::outbox::OutboxStream;
use crate::{gateway::Gateway, sessions::gateway_of};
use hubbub_kit::{
    auth::{Identity, JwtKey},
    channel::TracedChannel,
};
use hubbub_proto::{
    v1::{
        self as pb, GatewayControlForwardRequest, gateway_control_client::GatewayControlClient,
        gateway_control_forward_request::Call, gateway_control_forward_response::Result as Answer,
    },
    wire::server::client_api_server::ClientApi,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Serves `hubbub.v1.ClientApi`.
#[derive(Debug, Clone)]
pub struct ClientApiService {
    gateway: Arc<Gateway>,
    jwt: JwtKey,
    shutdown: CancellationToken,
}

/// Where a session call runs.
enum Route {
    Here,
    Peer(GatewayControlClient<TracedChannel>),
}

impl ClientApiService {
    /// Handlers of `gateway`, authenticating with `jwt`.
    pub fn new(gateway: Arc<Gateway>, jwt: JwtKey, shutdown: CancellationToken) -> Self {
        Self { gateway, jwt, shutdown }
    }

    fn route(&self, session_id: &str) -> Result<Route, Status> {
        if session_id.is_empty() {
            return Err(Status::invalid_argument(
                "session_id is required: use the session_id of Connect's Welcome",
            ));
        }
        match gateway_of(session_id) {
            Some(id) if id == self.gateway.config.id => Ok(Route::Here),
            Some(id) => self.gateway.peers.get(id).cloned().map(Route::Peer).ok_or_else(|| {
                Status::not_found(format!(
                    "session {session_id:?} names gateway {id:?}, which is not a known replica: reconnect"
                ))
            }),
            None => Err(Status::not_found(format!(
                "session {session_id:?} is not a session id: use the session_id of Connect's Welcome"
            ))),
        }
    }

    async fn forward(
        &self,
        mut peer: GatewayControlClient<TracedChannel>,
        identity: &Identity,
        call: Call,
    ) -> Result<Answer, Status> {
        self.gateway.metrics.forwarded.inc();
        let request = GatewayControlForwardRequest {
            user_id: identity.user_id().unwrap_or_default().to_owned(),
            call: Some(call),
        };
        peer.forward(request)
            .await?
            .into_inner()
            .result
            .ok_or_else(|| Status::internal("the owning gateway answered without a result"))
    }
}

fn unexpected() -> Status {
    Status::internal("the owning gateway answered a different call")
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not available in this release yet"))
}

#[tonic::async_trait]
impl ClientApi for ClientApiService {
    type ConnectStream = OutboxStream;

    #[tracing::instrument(name = "gateway.connect", skip_all)]
    async fn connect(&self, request: Request<pb::ConnectRequest>) -> Result<Response<Self::ConnectStream>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "this gateway is draining: connect to another replica",
            ));
        }
        let identity = self.jwt.identify(request.metadata())?;
        let stream = self.gateway.connect(identity, request.into_inner().device_id)?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(name = "gateway.join_room", skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn join_room(&self, request: Request<pb::JoinRoomRequest>) -> Result<Response<pb::JoinRoomResponse>, Status> {
        let identity = self.jwt.identify(request.metadata())?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.join_room(&identity, request).await?,
            Route::Peer(peer) => match self.forward(peer, &identity, Call::JoinRoom(request)).await? {
                Answer::JoinRoom(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    #[tracing::instrument(name = "gateway.leave_room", skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn leave_room(
        &self,
        request: Request<pb::LeaveRoomRequest>,
    ) -> Result<Response<pb::LeaveRoomResponse>, Status> {
        let identity = self.jwt.identify(request.metadata())?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.leave_room(&identity, request)?,
            Route::Peer(peer) => match self.forward(peer, &identity, Call::LeaveRoom(request)).await? {
                Answer::LeaveRoom(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    #[tracing::instrument(name = "gateway.send_room_message", skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn send_room_message(
        &self,
        request: Request<pb::SendRoomMessageRequest>,
    ) -> Result<Response<pb::SendRoomMessageResponse>, Status> {
        let identity = self.jwt.identify(request.metadata())?;
        identity.require_user("SendRoomMessage")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.send_room_message(&identity, request).await?,
            Route::Peer(peer) => match self.forward(peer, &identity, Call::SendRoomMessage(request)).await? {
                Answer::SendRoomMessage(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn send_gift(&self, _: Request<pb::SendGiftRequest>) -> Result<Response<pb::SendGiftResponse>, Status> {
        Err(not_yet("SendGift"))
    }

    async fn pull_gifts(&self, _: Request<pb::PullGiftsRequest>) -> Result<Response<pb::PullGiftsResponse>, Status> {
        Err(not_yet("PullGifts"))
    }

    async fn create_group(
        &self,
        _: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        Err(not_yet("CreateGroup"))
    }

    async fn add_group_members(
        &self,
        _: Request<pb::AddGroupMembersRequest>,
    ) -> Result<Response<pb::AddGroupMembersResponse>, Status> {
        Err(not_yet("AddGroupMembers"))
    }

    async fn remove_group_members(
        &self,
        _: Request<pb::RemoveGroupMembersRequest>,
    ) -> Result<Response<pb::RemoveGroupMembersResponse>, Status> {
        Err(not_yet("RemoveGroupMembers"))
    }

    async fn list_my_groups(
        &self,
        _: Request<pb::ListMyGroupsRequest>,
    ) -> Result<Response<pb::ListMyGroupsResponse>, Status> {
        Err(not_yet("ListMyGroups"))
    }

    async fn send_group_message(
        &self,
        _: Request<pb::SendGroupMessageRequest>,
    ) -> Result<Response<pb::SendGroupMessageResponse>, Status> {
        Err(not_yet("SendGroupMessage"))
    }

    async fn pull_mailbox(
        &self,
        _: Request<pb::PullMailboxRequest>,
    ) -> Result<Response<pb::PullMailboxResponse>, Status> {
        Err(not_yet("PullMailbox"))
    }

    async fn ack(&self, _: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        Err(not_yet("Ack"))
    }

    async fn mark_read(&self, _: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        Err(not_yet("MarkRead"))
    }
}
