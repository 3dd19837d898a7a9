//! The `hubbub.v1.GatewayControl` handlers: what other services and peer
//! replicas call on this gateway.

use crate::gateway::Gateway;
use crate::outbox::Lane;
use hubbub_kit::service_auth;
use hubbub_proto::v1::{
    GatewayControlDeliverRequest, GatewayControlDeliverResponse, GatewayControlForwardRequest,
    GatewayControlForwardResponse, ServerEvent, gateway_control_deliver_request::Notify,
    gateway_control_forward_request::Call, gateway_control_forward_response::Result as Answer,
    gateway_control_server::GatewayControl, server_event::Event,
};
use hubbub_proto::wire::EncodedEvent;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `hubbub.v1.GatewayControl`.
#[derive(Debug, Clone)]
pub struct GatewayControlService {
    gateway: Arc<Gateway>,
}

impl GatewayControlService {
    /// Handlers of `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

#[tonic::async_trait]
impl GatewayControl for GatewayControlService {
    #[tracing::instrument(name = "gateway.deliver_notify", skip_all)]
    async fn deliver(
        &self,
        request: Request<GatewayControlDeliverRequest>,
    ) -> Result<Response<GatewayControlDeliverResponse>, Status> {
        let request = request.into_inner();
        let event = match request.notify {
            Some(Notify::GroupNotify(notify)) => Event::GroupNotify(notify),
            Some(Notify::GiftNotify(notify)) => Event::GiftNotify(notify),
            None => return Err(Status::invalid_argument("notify is required")),
        };
        let event = EncodedEvent::encode(&ServerEvent { event: Some(event) });
        let mut response = GatewayControlDeliverResponse::default();
        for session_id in request.session_ids {
            match self.gateway.sessions.get(&session_id) {
                Some(session) => {
                    let metrics = &self.gateway.metrics;
                    // Notifies are high priority: a device that cannot take one
                    // is closed, reconnects and pulls.
                    if session.outbox.push(&event, Lane::High, None, 1, metrics) {
                        response.delivered += 1;
                    }
                }
                None => response.gone_session_ids.push(session_id),
            }
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "gateway.forwarded", skip_all)]
    async fn forward(
        &self,
        request: Request<GatewayControlForwardRequest>,
    ) -> Result<Response<GatewayControlForwardResponse>, Status> {
        // The forwarding replica verified the client's token and signed the
        // identity into its credential; the policy layer checked it is there.
        let identity = service_auth::caller(&request)?
            .acting_for
            .clone()
            .ok_or_else(|| Status::permission_denied("Forward must be made for a user or guest"))?;
        let request = request.into_inner();
        let gateway = &self.gateway;
        let answer = match request.call {
            Some(Call::JoinRoom(call)) => Answer::JoinRoom(gateway.join_room(&identity, call).await?),
            Some(Call::LeaveRoom(call)) => Answer::LeaveRoom(gateway.leave_room(&identity, call)?),
            Some(Call::SendRoomMessage(call)) => {
                Answer::SendRoomMessage(gateway.send_room_message(&identity, call).await?)
            }
            Some(Call::PullMailbox(call)) => Answer::PullMailbox(gateway.pull_mailbox(&identity, call).await?),
            Some(Call::Ack(call)) => Answer::Ack(gateway.ack(&identity, call).await?),
            Some(Call::MarkRead(call)) => Answer::MarkRead(gateway.mark_read(&identity, call).await?),
            Some(Call::UploadDeviceKeys(call)) => {
                Answer::UploadDeviceKeys(gateway.upload_device_keys(&identity, call).await?)
            }
            Some(Call::ClaimGroupKeys(call)) => {
                Answer::ClaimGroupKeys(gateway.claim_group_keys(&identity, call).await?)
            }
            None => return Err(Status::invalid_argument("call is required")),
        };
        Ok(Response::new(GatewayControlForwardResponse { result: Some(answer) }))
    }
}
