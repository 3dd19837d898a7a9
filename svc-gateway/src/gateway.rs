//! `Gateway`: the state of one replica and the session calls it runs, the
//! same whether a call arrived from the client or was forwarded by a peer.

use crate::{
    config::GatewayConfig,
    limits::PublishLimiter,
    metrics::GatewayMetrics,
    outbox::{Outbox, OutboxStream},
    presence_link::PendingChanges,
    room_link::RoomLinks,
    rooms::{Joined, LocalRooms},
    sessions::{Session, Sessions, new_session_id},
};
use hubbub_kit::{auth::Identity, channel::TracedChannel, ids, rate::exhausted_retry_after};
use hubbub_proto::{
    v1::{
        JoinRoomRequest, JoinRoomResponse, LeaveRoomRequest, LeaveRoomResponse, PresenceSession, Reconnect,
        RoomMessageKind, RoomPublishRequest, SendRoomMessageRequest, SendRoomMessageResponse, ServerEvent, Welcome,
        gateway_control_client::GatewayControlClient, server_event::Event,
    },
    wire::EncodedEvent,
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tonic::Status;

/// One gateway replica.
#[derive(Debug)]
pub struct Gateway {
    /// Its settings.
    pub config: GatewayConfig,
    /// Client streams by session id.
    pub sessions: Sessions,
    /// Rooms with local viewers.
    pub rooms: Arc<LocalRooms>,
    /// Attach streams to the room instances.
    pub links: Arc<RoomLinks>,
    /// Other replicas, for forwarding.
    pub peers: HashMap<String, GatewayControlClient<TracedChannel>>,
    /// Per-user publish allowance.
    pub limiter: PublishLimiter,
    /// Session changes for the next presence report.
    pub presence_changes: PendingChanges,
    /// Its metrics.
    pub metrics: GatewayMetrics,
}

/// Removes a session when its stream is dropped (client gone, closed, or
/// failed), leaving every room it was in.
struct SessionGuard {
    gateway: Arc<Gateway>,
    session_id: Arc<str>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(session) = self.gateway.sessions.remove(&self.session_id) {
            let rooms: Vec<String> = session.rooms().drain().collect();
            for room_id in rooms {
                self.gateway.leave_local(&room_id, &self.session_id);
            }
            self.gateway.metrics.connections.dec();
            if session.identity.user_id().is_some() {
                self.gateway.presence_changes.closed(&self.session_id);
            }
        }
    }
}

impl Gateway {
    /// Opens a device's stream: registers the session and queues `Welcome`.
    pub fn connect(self: &Arc<Self>, identity: Identity, device_id: String) -> Result<OutboxStream, Status> {
        ids::validate("device_id", &device_id)?;
        if self.sessions.len() >= self.config.max_connections {
            return Err(Status::resource_exhausted(format!(
                "this gateway holds its limit of {} streams: retry on another replica",
                self.config.max_connections
            )));
        }
        let session_id: Arc<str> = new_session_id(&self.config.id).into();
        let guard = SessionGuard {
            gateway: self.clone(),
            session_id: session_id.clone(),
        };
        let (outbox, stream) = Outbox::new(self.config.outbox_capacity, guard);
        outbox.offer(EncodedEvent::encode(&ServerEvent {
            event: Some(Event::Welcome(Welcome {
                session_id: session_id.to_string(),
                user_id: identity.user_id().unwrap_or_default().to_owned(),
                guest: identity == Identity::Guest,
                heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                max_room_message_bytes: self.config.max_room_message_bytes as u32,
            })),
        }));
        let connected_at_ms = hubbub_kit::rate::unix_ms();
        if let Some(user_id) = identity.user_id() {
            self.presence_changes.opened(PresenceSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                session_id: session_id.to_string(),
                connected_at_ms,
            });
        }
        self.sessions.insert(Arc::new(Session {
            id: session_id.clone(),
            identity,
            device_id,
            connected_at_ms,
            outbox,
            rooms: Default::default(),
        }));
        self.metrics.connections.inc();
        tracing::debug!(session = %session_id, "session opened");
        Ok(stream)
    }

    /// Joins a room on a session of this replica.
    pub async fn join_room(&self, identity: &Identity, request: JoinRoomRequest) -> Result<JoinRoomResponse, Status> {
        ids::validate("room_id", &request.room_id)?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        {
            let mut rooms = session.rooms();
            if !rooms.contains(&request.room_id) && rooms.len() >= self.config.max_rooms_per_session {
                return Err(Status::resource_exhausted(format!(
                    "a session may be in {} rooms at once: leave one first",
                    self.config.max_rooms_per_session
                )));
            }
            rooms.insert(request.room_id.clone());
        }
        self.metrics.joins.inc();
        let viewer_id = session.identity.user_id().unwrap_or(&session.device_id);
        let joined = self
            .rooms
            .join(&request.room_id, session.id.clone(), viewer_id, session.outbox.clone());
        let snapshot = match joined {
            Joined::Ready(snapshot) => snapshot,
            Joined::Pending { snapshot, subscribe } => {
                if subscribe {
                    self.links.subscribe(&request.room_id);
                }
                let wait = Duration::from_millis(self.config.join_timeout_ms);
                match tokio::time::timeout(wait, snapshot).await {
                    Ok(Ok(snapshot)) => snapshot,
                    _ => {
                        session.rooms().remove(&request.room_id);
                        self.leave_local(&request.room_id, &session.id);
                        return Err(Status::unavailable(format!(
                            "the owner of room {:?} did not answer within {} ms: retry",
                            request.room_id, self.config.join_timeout_ms
                        )));
                    }
                }
            }
        };
        Ok(JoinRoomResponse {
            recent: snapshot.recent,
            online: self.rooms.online(&request.room_id).max(snapshot.online),
            last_seq: snapshot.last_seq,
        })
    }

    /// Leaves a room on a session of this replica (idempotent).
    pub fn leave_room(&self, identity: &Identity, request: LeaveRoomRequest) -> Result<LeaveRoomResponse, Status> {
        ids::validate("room_id", &request.room_id)?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        if session.rooms().remove(&request.room_id) {
            self.leave_local(&request.room_id, &session.id);
        }
        Ok(LeaveRoomResponse {})
    }

    /// Sends a message into a room the session has joined.
    pub async fn send_room_message(
        &self,
        identity: &Identity,
        request: SendRoomMessageRequest,
    ) -> Result<SendRoomMessageResponse, Status> {
        let user_id = identity.require_user("SendRoomMessage")?.to_owned();
        ids::validate("room_id", &request.room_id)?;
        let kind = RoomMessageKind::try_from(request.kind).unwrap_or(RoomMessageKind::Unspecified);
        if !matches!(kind, RoomMessageKind::Comment | RoomMessageKind::Like) {
            return Err(Status::invalid_argument(format!(
                "kind {} cannot be sent by clients: use ROOM_MESSAGE_KIND_COMMENT or ROOM_MESSAGE_KIND_LIKE",
                kind.as_str_name()
            )));
        }
        if request.body.is_empty() {
            return Err(Status::invalid_argument("body is empty"));
        }
        let limit = self.config.max_room_message_bytes;
        if request.body.len() > limit {
            return Err(Status::resource_exhausted(format!(
                "body is {} bytes; the limit is {limit}",
                request.body.len()
            )));
        }
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        if !session.rooms().contains(&request.room_id) {
            return Err(Status::failed_precondition(format!(
                "this session has not joined room {:?}: call JoinRoom first",
                request.room_id
            )));
        }
        if let Err(retry_after) = self.limiter.check(&user_id) {
            self.metrics.rate_limited.inc();
            return Err(exhausted_retry_after(
                format!(
                    "you are sending more than {} messages per second: retry after {} ms",
                    self.config.user_publish_per_sec,
                    retry_after.as_millis().max(1)
                ),
                retry_after,
            ));
        }
        let publish = RoomPublishRequest {
            room_id: request.room_id.clone(),
            sender_user_id: user_id,
            kind: kind as i32,
            body: request.body,
        };
        let response = self
            .links
            .client_for(&request.room_id)?
            .publish(publish)
            .await
            .map_err(|status| match status.code() {
                // The instance lists of gateway and room disagree for a moment.
                tonic::Code::FailedPrecondition => {
                    Status::unavailable(format!("room {:?} is moving between instances: retry", request.room_id))
                }
                _ => status,
            })?
            .into_inner();
        Ok(SendRoomMessageResponse { seq: response.seq })
    }

    /// Tells every client to reconnect elsewhere, then ends their streams
    /// once what is queued has been written.
    pub fn drain(&self) {
        let sessions = self.sessions.snapshot();
        tracing::info!(sessions = sessions.len(), "draining client streams");
        let spread = u64::from(self.config.drain_reconnect_after_ms.max(1));
        for session in sessions {
            // Jittered so a fleet of clients does not come back at once.
            let after_ms = (rand::random::<u64>() % spread) as u32;
            session.outbox.offer(EncodedEvent::encode(&ServerEvent {
                event: Some(Event::Reconnect(Reconnect {
                    reason: "draining".into(),
                    after_ms,
                })),
            }));
            session.outbox.close();
        }
    }

    fn leave_local(&self, room_id: &str, session_id: &str) {
        self.metrics.leaves.inc();
        if self.rooms.leave(room_id, session_id) {
            self.links.unsubscribe(room_id);
        }
    }
}
