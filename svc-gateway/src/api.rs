//! The `hubbub.v1.ClientApi` handlers: authenticate (always first), find the
//! session's replica, run the call here or forward it to the owner with the
//! caller's identity signed into the forwarding credential, map errors.

use crate::outbox::OutboxStream;
use crate::{
    gateway::{Gateway, Opener},
    sessions::gateway_of,
};
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
use std::{sync::Arc, time::Duration};
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
    Peer(Box<GatewayControlClient<TracedChannel>>),
}

impl ClientApiService {
    /// Handlers of `gateway`, authenticating with `jwt`.
    pub fn new(gateway: Arc<Gateway>, jwt: JwtKey, shutdown: CancellationToken) -> Self {
        Self { gateway, jwt, shutdown }
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &crate::metrics::GatewayMetrics {
        &self.gateway.metrics
    }

    fn route(&self, session_id: &str) -> Result<Route, Status> {
        if session_id.is_empty() {
            return Err(Status::invalid_argument(
                "session_id is required: use the session_id of Connect's Welcome",
            ));
        }
        match gateway_of(session_id) {
            Some(id) if id == self.gateway.config.id => Ok(Route::Here),
            Some(id) => self
                .gateway
                .peers
                .get(id)
                .map(|peer| Route::Peer(Box::new(peer)))
                .ok_or_else(|| {
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
        let mut request = Request::new(GatewayControlForwardRequest { call: Some(call) });
        // The owner takes the caller from this signed credential, never from a field.
        self.gateway.credentials.act_for(&mut request, identity);
        let timeout = Duration::from_millis(self.gateway.config.call_timeout_ms);
        let call = peer.forward(crate::deadline::bound(request, timeout));
        crate::deadline::answer(timeout, "the gateway holding this session", call)
            .await?
            .result
            .ok_or_else(|| Status::internal("the owning gateway answered without a result"))
    }

    /// The caller of a call other than Connect: a user, or a guest with the
    /// guest token of its Welcome.
    fn caller<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        Ok(self.jwt.require(request.metadata())?.identity)
    }

    /// The caller of a call only signed-in users may make.
    fn user<T>(&self, request: &Request<T>, rpc: &str) -> Result<Identity, Status> {
        let identity = self.caller(request)?;
        identity.require_user(rpc)?;
        Ok(identity)
    }
}

/// The caller's address: the peer's, or behind a trusted proxy the
/// rightmost `x-forwarded-for` entry that is not a trusted proxy.
fn client_address<T>(request: &Request<T>, trusted: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    let peer = request.remote_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = request.metadata().get_all("x-forwarded-for");
    let mut chain: Vec<std::net::IpAddr> = forwarded
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect();
    chain.reverse();
    Some(chain.into_iter().find(|ip| !trusted.contains(ip)).unwrap_or(peer))
}

fn unexpected() -> Status {
    Status::internal("the owning gateway answered a different call")
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
        let verified = self.jwt.identify(request.metadata())?;
        let address = format!(
            "ip:{}",
            client_address(&request, &self.gateway.config.trusted_proxies)
                .map_or("unknown".into(), |ip| ip.to_string())
        );
        // Guests, with a guest token or without, are limited per source
        // address: guest identities cost nothing to make.
        let rate_key = match &verified {
            Some(verified) if !verified.identity.is_guest() => verified.identity.id(),
            _ => address.as_str(),
        };
        self.gateway.check_session_rate(rate_key)?;
        let opener = match verified {
            Some(verified) => {
                let guest_address = verified.identity.is_guest().then(|| address.clone());
                Opener {
                    identity: verified.identity,
                    expires_at: Some(verified.expires_at),
                    guest_token: String::new(),
                    guest_address,
                }
            }
            None => {
                let ttl = Duration::from_secs(self.gateway.config.guest_token_ttl_secs);
                let (identity, guest_token) = self.jwt.mint_guest(ttl);
                Opener {
                    identity,
                    expires_at: Some(hubbub_kit::jwt::unix_now().saturating_add(ttl.as_secs())),
                    guest_token,
                    guest_address: Some(address),
                }
            }
        };
        let stream = self.gateway.connect(opener, request.into_inner().device_id)?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(name = "gateway.join_room", skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn join_room(&self, request: Request<pb::JoinRoomRequest>) -> Result<Response<pb::JoinRoomResponse>, Status> {
        let identity = self.caller(&request)?;
        self.gateway.check_session_rate(identity.id())?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.join_room(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::JoinRoom(request)).await? {
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
        let identity = self.caller(&request)?;
        self.gateway.check_session_rate(identity.id())?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.leave_room(&identity, request)?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::LeaveRoom(request)).await? {
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
        let identity = self.user(&request, "SendRoomMessage")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.send_room_message(&identity, request).await?,
            Route::Peer(peer) => {
                // Checked here too, so a flood of session ids naming another
                // replica costs no call to it.
                self.gateway.check_session_rate(identity.id())?;
                match self.forward(*peer, &identity, Call::SendRoomMessage(request)).await? {
                    Answer::SendRoomMessage(answer) => answer,
                    _ => return Err(unexpected()),
                }
            }
        };
        Ok(Response::new(answer))
    }

    async fn send_gift(&self, request: Request<pb::SendGiftRequest>) -> Result<Response<pb::SendGiftResponse>, Status> {
        let identity = self.user(&request, "SendGift")?;
        let answer = self
            .gateway
            .gifts(&identity)?
            .send(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn pull_gifts(
        &self,
        request: Request<pb::PullGiftsRequest>,
    ) -> Result<Response<pb::PullGiftsResponse>, Status> {
        let identity = self.caller(&request)?;
        let answer = self
            .gateway
            .gifts(&identity)?
            .pull(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_room_gift_totals(
        &self,
        request: Request<pb::GetRoomGiftTotalsRequest>,
    ) -> Result<Response<pb::GetRoomGiftTotalsResponse>, Status> {
        let identity = self.caller(&request)?;
        let answer = self
            .gateway
            .gifts(&identity)?
            .room_totals(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_my_gift_totals(
        &self,
        request: Request<pb::GetMyGiftTotalsRequest>,
    ) -> Result<Response<pb::GetMyGiftTotalsResponse>, Status> {
        let identity = self.user(&request, "GetMyGiftTotals")?;
        let answer = self.gateway.gifts(&identity)?.my_totals(&identity).await?;
        Ok(Response::new(answer))
    }

    async fn list_pending_co_streams(
        &self,
        request: Request<pb::ListPendingCoStreamsRequest>,
    ) -> Result<Response<pb::ListPendingCoStreamsResponse>, Status> {
        let identity = self.user(&request, "ListPendingCoStreams")?;
        let answer = self
            .gateway
            .gifts(&identity)?
            .pending(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let identity = self.user(&request, "CreateGroup")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .create_group(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn add_group_members(
        &self,
        request: Request<pb::AddGroupMembersRequest>,
    ) -> Result<Response<pb::AddGroupMembersResponse>, Status> {
        let identity = self.user(&request, "AddGroupMembers")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .add_members(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::RemoveGroupMembersRequest>,
    ) -> Result<Response<pb::RemoveGroupMembersResponse>, Status> {
        let identity = self.user(&request, "RemoveGroupMembers")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .remove_members(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn list_my_groups(
        &self,
        request: Request<pb::ListMyGroupsRequest>,
    ) -> Result<Response<pb::ListMyGroupsResponse>, Status> {
        let identity = self.user(&request, "ListMyGroups")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .list_my_groups(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn send_group_message(
        &self,
        request: Request<pb::SendGroupMessageRequest>,
    ) -> Result<Response<pb::SendGroupMessageResponse>, Status> {
        let identity = self.user(&request, "SendGroupMessage")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .send(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn pull_mailbox(
        &self,
        request: Request<pb::PullMailboxRequest>,
    ) -> Result<Response<pb::PullMailboxResponse>, Status> {
        let identity = self.user(&request, "PullMailbox")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.pull_mailbox(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::PullMailbox(request)).await? {
                Answer::PullMailbox(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn ack(&self, request: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let identity = self.user(&request, "Ack")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.ack(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::Ack(request)).await? {
                Answer::Ack(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        let identity = self.user(&request, "MarkRead")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.mark_read(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::MarkRead(request)).await? {
                Answer::MarkRead(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn upload_device_keys(
        &self,
        request: Request<pb::UploadDeviceKeysRequest>,
    ) -> Result<Response<pb::UploadDeviceKeysResponse>, Status> {
        let identity = self.user(&request, "UploadDeviceKeys")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.upload_device_keys(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::UploadDeviceKeys(request)).await? {
                Answer::UploadDeviceKeys(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn claim_group_keys(
        &self,
        request: Request<pb::ClaimGroupKeysRequest>,
    ) -> Result<Response<pb::ClaimGroupKeysResponse>, Status> {
        let identity = self.user(&request, "ClaimGroupKeys")?;
        let request = request.into_inner();
        let answer = match self.route(&request.session_id)? {
            Route::Here => self.gateway.claim_group_keys(&identity, request).await?,
            Route::Peer(peer) => match self.forward(*peer, &identity, Call::ClaimGroupKeys(request)).await? {
                Answer::ClaimGroupKeys(answer) => answer,
                _ => return Err(unexpected()),
            },
        };
        Ok(Response::new(answer))
    }

    async fn get_read_receipts(
        &self,
        request: Request<pb::GetReadReceiptsRequest>,
    ) -> Result<Response<pb::GetReadReceiptsResponse>, Status> {
        let identity = self.user(&request, "GetReadReceipts")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .get_read_receipts(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_read_positions(
        &self,
        request: Request<pb::GetReadPositionsRequest>,
    ) -> Result<Response<pb::GetReadPositionsResponse>, Status> {
        let identity = self.user(&request, "GetReadPositions")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .get_read_positions(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_group_members(
        &self,
        request: Request<pb::GetGroupMembersRequest>,
    ) -> Result<Response<pb::GetGroupMembersResponse>, Status> {
        let identity = self.user(&request, "GetGroupMembers")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .get_group_members(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn transfer_group_ownership(
        &self,
        request: Request<pb::TransferGroupOwnershipRequest>,
    ) -> Result<Response<pb::TransferGroupOwnershipResponse>, Status> {
        let identity = self.user(&request, "TransferGroupOwnership")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .transfer_group_ownership(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_group_history(
        &self,
        request: Request<pb::GetGroupHistoryRequest>,
    ) -> Result<Response<pb::GetGroupHistoryResponse>, Status> {
        let identity = self.user(&request, "GetGroupHistory")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .get_group_history(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    async fn clear_group_history(
        &self,
        request: Request<pb::ClearGroupHistoryRequest>,
    ) -> Result<Response<pb::ClearGroupHistoryResponse>, Status> {
        let identity = self.user(&request, "ClearGroupHistory")?;
        let answer = self
            .gateway
            .groups(&identity)?
            .clear_group_history(&identity, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }
}
