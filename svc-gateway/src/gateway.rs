//! `Gateway`: the state of one replica and the session calls it runs, the
//! same whether a call arrived from the client or was forwarded by a peer.

use crate::{
    config::GatewayConfig,
    groups::GroupLink,
    limits::RateLimiter,
    metrics::GatewayMetrics,
    outbox::{Lane, Outbox, OutboxStream},
    presence_link::PendingChanges,
    publish_batch,
    room_link::RoomLinks,
    rooms::{Joined, LocalRooms},
    sessions::{Session, Sessions, StreamLimits, new_session_id},
};
use hubbub_kit::{auth::Identity, ids, policy::ROOM_PUBLISH, rate::exhausted_retry_after, service_auth::Credentials};
use hubbub_proto::{
    v1::{
        AckRequest, AckResponse, ClaimGroupKeysRequest, ClaimGroupKeysResponse, GroupNotify, JoinRoomRequest,
        JoinRoomResponse, LeaveRoomRequest, LeaveRoomResponse, MarkReadRequest, MarkReadResponse, PresenceSession,
        PullMailboxRequest, PullMailboxResponse, Reconnect, RoomMessageKind, RoomPublishRequest,
        SendRoomMessageRequest, SendRoomMessageResponse, ServerEvent, UploadDeviceKeysRequest,
        UploadDeviceKeysResponse, Welcome, server_event::Event,
    },
    wire::EncodedEvent,
};
use std::{sync::Arc, time::Duration};
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
    pub peers: crate::peers::Peers,
    /// Per-user publish allowance.
    pub limiter: RateLimiter,
    /// Per-caller allowance of Connect, JoinRoom and LeaveRoom.
    pub session_limiter: RateLimiter,
    /// Group calls per user.
    pub group_limiter: RateLimiter,
    /// Gift calls per user or guest.
    pub gift_limiter: RateLimiter,
    /// Session changes for the next presence report (None: no presence
    /// configured, so nothing is kept for it).
    pub presence_changes: Option<PendingChanges>,
    /// This replica's service credentials, for calls made for its users.
    pub credentials: Credentials,
    /// The group service, when configured.
    pub groups: Option<GroupLink>,
    /// The gift service, when configured.
    pub gifts: Option<crate::gifts::GiftLink>,
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
            // Closed first: a join racing this drop then finds the session
            // gone, and no push lands in an outbox nobody reads.
            session.outbox.close();
            let rooms: Vec<String> = session.rooms().drain().collect();
            for room_id in rooms {
                self.gateway.leave_local(&room_id, &self.session_id);
            }
            self.gateway
                .sessions
                .release(&session.identity, session.guest_address.as_deref());
            self.gateway.metrics.connections.dec();
            if let (Some(_), Some(changes)) = (session.identity.user_id(), &self.gateway.presence_changes) {
                changes.closed(&self.session_id);
            }
        }
    }
}

/// Who opens a stream.
#[derive(Debug, Clone)]
pub struct Opener {
    /// The verified user, or the guest.
    pub identity: Identity,
    /// When its token expires.
    pub expires_at: Option<u64>,
    /// The guest token to hand out in Welcome (empty for users).
    pub guest_token: String,
    /// For a guest: its source address (`ip:...`), which caps its streams.
    pub guest_address: Option<String>,
}

impl Gateway {
    /// Opens a device's stream: registers the session and queues `Welcome`.
    pub fn connect(self: &Arc<Self>, opener: Opener, device_id: String) -> Result<OutboxStream, Status> {
        ids::validate("device_id", &device_id)?;
        let Opener {
            identity,
            expires_at,
            guest_token,
            guest_address,
        } = opener;
        let limits = StreamLimits {
            total: self.config.max_connections,
            per_identity: self.config.max_streams_per_user,
            guests_per_address: self.config.max_guest_streams_per_address,
        };
        self.sessions.reserve(&identity, guest_address.as_deref(), limits)?;
        let session_id: Arc<str> = new_session_id(&self.config.id).into();
        let guard = SessionGuard {
            gateway: self.clone(),
            session_id: session_id.clone(),
        };
        let (outbox, stream) = Outbox::new(self.config.outbox_capacity, guard);
        outbox.offer(&EncodedEvent::encode(&ServerEvent {
            event: Some(Event::Welcome(Welcome {
                session_id: session_id.to_string(),
                user_id: identity.user_id().unwrap_or_default().to_owned(),
                guest: identity.is_guest(),
                heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                max_room_message_bytes: self.config.max_room_message_bytes as u32,
                guest_token,
            })),
        }));
        let connected_at_ms = hubbub_kit::rate::unix_ms();
        if let (Some(user_id), Some(changes)) = (identity.user_id(), &self.presence_changes) {
            changes.opened(PresenceSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                session_id: session_id.to_string(),
                connected_at_ms,
            });
        }
        let session = Arc::new(Session {
            id: session_id.clone(),
            identity,
            device_id,
            connected_at_ms,
            expires_at,
            guest_address,
            outbox,
            rooms: Default::default(),
        });
        self.sessions.insert(session.clone());
        self.tell_pending(session);
        self.metrics.connections.inc();
        tracing::debug!(session = %session_id, "session opened");
        Ok(stream)
    }

    /// Off the Connect path: asks the group service whether the session's
    /// device has mailbox items past its ack and, if so, pushes a
    /// GroupNotify naming the head (group_id ""). Best effort, like every
    /// notify: when the group service is slow or down the device still
    /// pulls on its own, and Welcome never waits for it.
    fn tell_pending(self: &Arc<Self>, session: Arc<Session>) {
        let Some(groups) = self.groups.clone() else { return };
        if session.identity.user_id().is_none() {
            return;
        }
        let gateway = self.clone();
        tokio::spawn(async move {
            match groups.pending(&session.identity, &session.device_id).await {
                Ok(Some(head)) => {
                    let event = EncodedEvent::encode(&ServerEvent {
                        event: Some(Event::GroupNotify(GroupNotify {
                            group_id: String::new(),
                            mailbox_seq: head,
                        })),
                    });
                    session.outbox.push(&event, Lane::High, None, 1, &gateway.metrics);
                }
                Ok(None) => {}
                Err(status) => {
                    tracing::debug!(session = %session.id, %status, "could not tell the device what it has to pull")
                }
            }
        });
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
        let viewer_id = self.presence_changes.as_ref().map(|_| session.identity.id());
        let joined = self
            .rooms
            .join(&request.room_id, session.id.clone(), viewer_id, session.outbox.clone());
        // The stream may have ended since the session was looked up: its
        // guard then already left every room, so leave this one too rather
        // than keep a viewer nobody reads.
        if self.sessions.get(&session.id).is_none() {
            self.leave_local(&request.room_id, &session.id);
            return Err(Status::not_found(
                "the session's stream ended during the join: reconnect",
            ));
        }
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
        let gift_seq = match &self.gifts {
            Some(gifts) => gifts.head(&request.room_id).await,
            None => 0,
        };
        Ok(JoinRoomResponse {
            recent: snapshot.recent,
            online: self.rooms.online(&request.room_id).max(snapshot.online),
            last_seq: snapshot.last_seq,
            gift_seq,
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
        let user_id = identity.require_user("SendRoomMessage")?;
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
        if let Err(retry_after) = self.limiter.check(user_id) {
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
            room_id: request.room_id,
            kind: kind as i32,
            body: request.body,
        };
        // The room takes the sender from this signed credential.
        let credential = self.credentials.token_acting(ROOM_PUBLISH, identity);
        // No timeout of its own: the batcher answers a message that waited a
        // call timeout unsent, and a sent one with its batch's outcome (the
        // batch bounded by the same timeout), so a client told to retry was
        // never published.
        let seq = self
            .links
            .publisher_for(&publish.room_id)?
            .send(publish_batch::item(publish, credential))
            .await?;
        Ok(SendRoomMessageResponse { seq })
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
            session.outbox.offer(&EncodedEvent::encode(&ServerEvent {
                event: Some(Event::Reconnect(Reconnect {
                    reason: "draining".into(),
                    after_ms,
                })),
            }));
            session.outbox.close();
        }
    }

    /// The group service for a call of `caller`, or UNAVAILABLE when none
    /// is configured; RESOURCE_EXHAUSTED (with retry-after-ms) past the
    /// caller's group call allowance, so one user can neither fill the
    /// group service's commit lanes nor drain members' one-time keys.
    pub fn groups(&self, caller: &Identity) -> Result<&GroupLink, Status> {
        let link = self.groups.as_ref().ok_or_else(|| {
            Status::unavailable("this gateway has no group service configured (gateway.group_address)")
        })?;
        self.allow(&self.group_limiter, "group", self.config.group_calls_per_sec, caller)?;
        Ok(link)
    }

    /// The gift service for a call by `caller`, within its call allowance.
    pub fn gifts(&self, caller: &Identity) -> Result<&crate::gifts::GiftLink, Status> {
        let link = self
            .gifts
            .as_ref()
            .ok_or_else(|| Status::unavailable("this gateway has no gift service configured (gateway.gift_address)"))?;
        self.allow(&self.gift_limiter, "gift", self.config.gift_calls_per_sec, caller)?;
        Ok(link)
    }

    /// RESOURCE_EXHAUSTED with `retry-after-ms` when `caller` is past
    /// `limiter`'s allowance of `what` calls.
    fn allow(&self, limiter: &RateLimiter, what: &str, per_sec: f64, caller: &Identity) -> Result<(), Status> {
        limiter.check(caller.id()).map_err(|retry_after| {
            self.metrics.rate_limited.inc();
            exhausted_retry_after(
                format!(
                    "more than {per_sec} {what} calls per second: retry after {} ms",
                    retry_after.as_millis().max(1)
                ),
                retry_after,
            )
        })
    }

    /// PullMailbox for the device of a session of this replica.
    pub async fn pull_mailbox(
        &self,
        identity: &Identity,
        request: PullMailboxRequest,
    ) -> Result<PullMailboxResponse, Status> {
        identity.require_user("PullMailbox")?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        self.groups(identity)?.pull(identity, &session.device_id, request).await
    }

    /// Ack for the device of a session of this replica.
    pub async fn ack(&self, identity: &Identity, request: AckRequest) -> Result<AckResponse, Status> {
        identity.require_user("Ack")?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        self.groups(identity)?.ack(identity, &session.device_id, request).await
    }

    /// UploadDeviceKeys for the device of a session of this replica.
    pub async fn upload_device_keys(
        &self,
        identity: &Identity,
        request: UploadDeviceKeysRequest,
    ) -> Result<UploadDeviceKeysResponse, Status> {
        identity.require_user("UploadDeviceKeys")?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        self.groups(identity)?
            .upload_keys(identity, &session.device_id, request)
            .await
    }

    /// ClaimGroupKeys for the device of a session of this replica.
    pub async fn claim_group_keys(
        &self,
        identity: &Identity,
        request: ClaimGroupKeysRequest,
    ) -> Result<ClaimGroupKeysResponse, Status> {
        identity.require_user("ClaimGroupKeys")?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        self.groups(identity)?
            .claim_keys(identity, &session.device_id, request)
            .await
    }

    /// MarkRead for the device of a session of this replica.
    pub async fn mark_read(&self, identity: &Identity, request: MarkReadRequest) -> Result<MarkReadResponse, Status> {
        identity.require_user("MarkRead")?;
        let session = self.sessions.owned_by(&request.session_id, identity)?;
        self.groups(identity)?
            .mark_read(identity, &session.device_id, request)
            .await
    }

    /// Ends the streams whose token has expired, with UNAUTHENTICATED: a
    /// revoked user's access ends with their token, and no guest stream
    /// outlives its guest token. Returns how many.
    pub fn end_expired(&self, now_secs: u64) -> usize {
        let mut ended = 0;
        for session in self.sessions.snapshot() {
            let expired = session
                .expires_at
                .is_some_and(|exp| exp.saturating_add(hubbub_kit::jwt::LEEWAY_SECS) < now_secs);
            if expired && !session.outbox.is_closed() {
                session.outbox.fail(Status::unauthenticated(
                    "the token this stream was opened with has expired: reconnect with a fresh token",
                ));
                ended += 1;
            }
        }
        ended
    }

    /// Takes one session call from `caller`'s allowance.
    pub fn check_session_rate(&self, caller: &str) -> Result<(), Status> {
        self.session_limiter.check(caller).map_err(|retry_after| {
            self.metrics.rate_limited.inc();
            exhausted_retry_after(
                format!(
                    "more than {} Connect, JoinRoom and LeaveRoom calls per second: retry after {} ms",
                    self.config.session_calls_per_sec,
                    retry_after.as_millis().max(1)
                ),
                retry_after,
            )
        })
    }

    fn leave_local(&self, room_id: &str, session_id: &str) {
        self.metrics.leaves.inc();
        if self.rooms.leave(room_id, session_id) {
            self.links.unsubscribe(room_id);
        }
    }
}
