//! The `hubbub.v1.Room` gRPC handlers: decode, check, call the router, map
//! errors.

use crate::{
    config::RoomConfig,
    error::RoomError,
    publish_many,
    room_state::Incoming,
    router::{GatewayLink, Publish, Refused, RoomRouter},
};
use hubbub_kit::{
    auth::Identity,
    batch_item,
    closeable::{CloseableStream, Closer},
    discovery::Instances,
    ids, policy, rendezvous,
    service_auth::{self, Caller, InternalKey, Role},
    tracecontext,
};
use hubbub_proto::v1::{
    AttachAccepted, AttachHeartbeat, RoomAttachRequest, RoomAttachResponse, RoomGetRecentRequest,
    RoomGetRecentResponse, RoomMessageKind, RoomPublishGiftsRequest, RoomPublishGiftsResponse, RoomPublishManyRequest,
    RoomPublishManyResponse, RoomPublishRequest, RoomPublishResponse, room_attach_request::Command,
    room_attach_response::Event, room_server::Room,
};
use std::{collections::HashSet, sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Serves `hubbub.v1.Room`.
#[derive(Debug, Clone)]
pub struct RoomApi {
    router: Arc<RoomRouter>,
    config: Arc<RoomConfig>,
    instances: Instances,
    shutdown: CancellationToken,
    /// Verifies the per-item credentials of PublishMany.
    key: InternalKey,
}

impl RoomApi {
    /// Handlers over `router`; `shutdown` ends attach streams and refuses
    /// publishes while draining.
    pub fn new(
        router: Arc<RoomRouter>,
        config: Arc<RoomConfig>,
        instances: Instances,
        shutdown: CancellationToken,
        key: InternalKey,
    ) -> Self {
        Self {
            router,
            config,
            instances,
            shutdown,
            key,
        }
    }

    /// Errs unless this instance owns `room_id`.
    fn check_owner(&self, room_id: &str) -> Result<(), RoomError> {
        let instances = self.instances.borrow().clone();
        let Some(owner) = rendezvous::owner(room_id, &instances) else {
            return Ok(());
        };
        if instances[owner] == self.config.advertise {
            return Ok(());
        }
        Err(RoomError::NotOwner {
            room_id: room_id.to_owned(),
            owner: instances[owner].clone(),
            this: self.config.advertise.clone(),
        })
    }

    fn check_room(&self, room_id: &str) -> Result<(), Status> {
        ids::validate("room_id", room_id)?;
        Ok(self.check_owner(room_id)?)
    }

    /// Errs for a body above the size limit.
    fn check_size(&self, body: &[u8]) -> Result<(), RoomError> {
        if body.len() > self.config.max_body_bytes {
            return Err(RoomError::TooLarge {
                size: body.len(),
                limit: self.config.max_body_bytes,
            });
        }
        Ok(())
    }

    /// Publishes one message for `caller`, whose credential names the
    /// sender: a user (gateway, gift) or the backend service itself.
    fn publish_as(&self, caller: &Caller, request: RoomPublishRequest, trace: (String, String)) -> Result<u64, Status> {
        self.check_room(&request.room_id)?;
        let kind = RoomMessageKind::try_from(request.kind)
            .ok()
            .filter(|kind| *kind != RoomMessageKind::Unspecified)
            .ok_or_else(|| RoomError::Invalid(format!("kind {} is not a known RoomMessageKind", request.kind)))?;
        let allowed = policy::publishable_kinds(caller);
        if !allowed.contains(&kind) {
            return Err(Status::permission_denied(format!(
                "{} {:?} may not publish {}; it may publish {:?}",
                caller.role,
                caller.instance,
                kind.as_str_name(),
                allowed.iter().map(|k| k.as_str_name()).collect::<Vec<_>>()
            )));
        }
        // The sender is whom the credential names, never a request field.
        let sender_user_id = match (&caller.role, &caller.acting_for) {
            (Role::Service, _) => format!("{}{}", hubbub_kit::auth::SERVICE_PREFIX, caller.instance),
            (_, Some(Identity::User(user))) => user.clone(),
            _ => return Err(Status::permission_denied("Publish must be made for a signed-in user")),
        };
        if request.body.is_empty() {
            return Err(RoomError::Invalid("body is empty".into()).into());
        }
        self.check_size(&request.body)?;
        let room_id = request.room_id.clone();
        let published = self.router.publish(Publish {
            room_id: request.room_id,
            message: Incoming {
                sender_user_id,
                kind,
                body: request.body,
                trace,
            },
        });
        Ok(published.map_err(|refused| refusal(room_id, refused))?)
    }
}

/// Why the router refused a publish into `room_id`, for the caller.
fn refusal(room_id: String, refused: Refused) -> RoomError {
    match refused {
        Refused::OverCap(over) => RoomError::OverCap {
            room_id,
            cap_per_sec: over.cap_per_sec,
            retry_after: over.retry_after,
        },
        Refused::TooManyRooms(max) => RoomError::TooManyRooms(max),
    }
}

/// Items per `PublishMany` call, at most.
const MAX_PUBLISH_MANY_ITEMS: usize = batch_item::MAX_ITEMS;

/// Gifts per `PublishGifts` call, at most (a commit's worth).
const MAX_GIFTS_PER_CALL: usize = batch_item::MAX_ITEMS;

#[tonic::async_trait]
impl Room for RoomApi {
    type AttachStream = CloseableStream<RoomAttachResponse>;

    async fn attach(
        &self,
        request: Request<Streaming<RoomAttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(RoomError::Draining.into());
        }
        let instance = service_auth::caller(&request)?.instance.clone();
        // The span lives as long as the stream: it is closed by the task
        // that follows the gateway's commands, when the stream ends.
        let span = tracing::info_span!("room.attach", gateway = %instance);
        let mut inbound = request.into_inner();
        let gateway_id = match inbound.message().await? {
            Some(RoomAttachRequest {
                command: Some(Command::Hello(hello)),
            }) => hello.gateway_id,
            _ => {
                return Err(Status::invalid_argument("the first message of Attach must be `hello`"));
            }
        };
        ids::validate("hello.gateway_id", &gateway_id)?;
        if gateway_id != instance {
            return Err(Status::permission_denied(format!(
                "hello.gateway_id {gateway_id:?} is not the caller's own instance {instance:?}"
            )));
        }

        let (sender, receiver) = mpsc::channel(self.config.gateway_queue.max(2));
        let accepted = RoomAttachResponse {
            event: Some(Event::Accepted(AttachAccepted {
                instance_id: self.config.advertise.clone(),
            })),
        };
        sender
            .try_send(Ok(accepted))
            .expect("a fresh queue has room for one event");
        // Weak: the heartbeat never keeps a stream open that the router let go.
        tokio::spawn(heartbeat(
            sender.downgrade(),
            Duration::from_millis(self.config.attach_heartbeat_ms.max(1000)),
        ));
        let link = self.router.attach(gateway_id.clone(), sender);
        let closer = Closer::new();
        tracing::info!(gateway = %gateway_id, attach = link.attach_id, "gateway attached");
        tokio::spawn(
            self.clone()
                .follow_commands(inbound, link, closer.clone())
                .instrument(span),
        );
        Ok(Response::new(CloseableStream::new(receiver, closer)))
    }

    #[tracing::instrument(name = "room.publish", skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn publish(&self, mut request: Request<RoomPublishRequest>) -> Result<Response<RoomPublishResponse>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(RoomError::Draining.into());
        }
        let caller = service_auth::take_caller(&mut request)?;
        let seq = self.publish_as(&caller, request.into_inner(), tracecontext::current_traceparent())?;
        Ok(Response::new(RoomPublishResponse { seq }))
    }

    #[tracing::instrument(name = "room.publish_many", skip_all, fields(items))]
    async fn publish_many(
        &self,
        mut request: Request<RoomPublishManyRequest>,
    ) -> Result<Response<RoomPublishManyResponse>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(RoomError::Draining.into());
        }
        let batch = service_auth::take_caller(&mut request)?;
        let items = request.into_inner().items;
        if items.is_empty() || items.len() > MAX_PUBLISH_MANY_ITEMS {
            return Err(RoomError::Invalid(format!(
                "{} items in one PublishMany; send 1 to {MAX_PUBLISH_MANY_ITEMS}",
                items.len()
            ))
            .into());
        }
        tracing::Span::current().record("items", items.len());
        // Every credential is checked before anything is published: a bad
        // one means a broken or hostile caller, and none of its call lands.
        let senders = items
            .iter()
            .map(|item| publish_many::item_caller(&self.key, &batch, &item.credential))
            .collect::<Result<Vec<_>, Status>>()?;
        let outcomes = items
            .into_iter()
            .zip(&senders)
            .map(|(item, sender)| {
                let Some(publish) = item.publish else {
                    return publish_many::outcome(Err(RoomError::Invalid(
                        "a PublishMany item without its publish".into(),
                    )
                    .into()));
                };
                // Each item continues the trace of the call it came from, so
                // its viewers' deliveries do too; a backend's items (or any
                // without a well-formed context) stay within the batch's.
                let span = tracing::info_span!(
                    "room.publish",
                    room_id = %publish.room_id,
                    otel.status_code = tracing::field::Empty,
                    otel.status_message = tracing::field::Empty
                );
                if tracecontext::span_context_of(&item.traceparent).is_some() {
                    tracecontext::set_parent_from(&span, &item.traceparent, &item.tracestate);
                }
                let _entered = span.enter();
                let answer = self.publish_as(sender.caller(&batch), publish, tracecontext::current_traceparent());
                if let Err(status) = &answer {
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_message", status.message());
                }
                publish_many::outcome(answer)
            })
            .collect();
        Ok(Response::new(RoomPublishManyResponse { outcomes }))
    }

    async fn publish_gifts(
        &self,
        request: Request<RoomPublishGiftsRequest>,
    ) -> Result<Response<RoomPublishGiftsResponse>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(RoomError::Draining.into());
        }
        let request = request.into_inner();
        self.check_room(&request.room_id)?;
        if request.gifts.is_empty() {
            return Err(RoomError::Invalid("no gift to publish".into()).into());
        }
        if request.gifts.len() > MAX_GIFTS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "{} gifts in one call; the limit is {MAX_GIFTS_PER_CALL}",
                request.gifts.len()
            )));
        }
        for gift in &request.gifts {
            if gift.sender_user_id.is_empty() || gift.body.is_empty() {
                return Err(RoomError::Invalid("every gift needs a sender and a body".into()).into());
            }
            self.check_size(&gift.body)?;
        }
        let trace = tracecontext::current_traceparent();
        let mut seqs = Vec::with_capacity(request.gifts.len());
        for gift in request.gifts {
            let published = self.router.publish(Publish {
                room_id: request.room_id.clone(),
                message: Incoming {
                    sender_user_id: gift.sender_user_id,
                    kind: RoomMessageKind::Gift,
                    body: gift.body,
                    trace: trace.clone(),
                },
            });
            // Gifts take the high lane, which no cap refuses; a room this
            // instance cannot hold refuses them all alike.
            seqs.push(published.map_err(|refused| refusal(request.room_id.clone(), refused))?);
        }
        Ok(Response::new(RoomPublishGiftsResponse { seqs }))
    }

    async fn get_recent(
        &self,
        request: Request<RoomGetRecentRequest>,
    ) -> Result<Response<RoomGetRecentResponse>, Status> {
        let room_id = request.into_inner().room_id;
        self.check_room(&room_id)?;
        let (recent, last_seq) = self.router.recent(&room_id);
        Ok(Response::new(RoomGetRecentResponse { recent, last_seq }))
    }
}

impl RoomApi {
    /// Applies a gateway's subscribe/unsubscribe commands until its stream
    /// ends, it is kicked for being slow, or the instance drains; then
    /// removes it from every room it held.
    async fn follow_commands(self, mut inbound: Streaming<RoomAttachRequest>, link: GatewayLink, closer: Closer) {
        let mut rooms: HashSet<String> = HashSet::new();
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = link.kick.cancelled() => {
                    closer.fail(Status::resource_exhausted(
                        "gateway did not keep up with its rooms' traffic: re-attach and re-subscribe",
                    ));
                    break;
                }
                _ = self.shutdown.cancelled() => {
                    closer.close();
                    break;
                }
            };
            let command = match message {
                Ok(Some(RoomAttachRequest { command: Some(command) })) => command,
                Ok(Some(_)) => {
                    closer.fail(Status::invalid_argument("attach message without a command"));
                    break;
                }
                Ok(None) | Err(_) => break,
            };
            match command {
                Command::Hello(_) => {
                    closer.fail(Status::invalid_argument("`hello` may only be sent once"));
                    break;
                }
                Command::Subscribe(subscribe) => {
                    if let Some(status) = subscribe
                        .room_ids
                        .iter()
                        .find_map(|id| ids::validate("room_id", id).err())
                    {
                        closer.fail(status);
                        break;
                    }
                    for room_id in subscribe.room_ids {
                        // While instance lists change, gateway and room may
                        // disagree for a moment: skip rather than end the
                        // stream; the gateway's join times out and is retried.
                        if let Err(err) = self.check_owner(&room_id) {
                            tracing::warn!(gateway = %link.gateway_id, %err, "subscription skipped");
                            continue;
                        }
                        if let Err(refused) = self.router.subscribe(&link, &room_id) {
                            tracing::warn!(gateway = %link.gateway_id, ?refused, room_id, "subscription refused");
                            continue;
                        }
                        rooms.insert(room_id);
                    }
                }
                Command::Unsubscribe(unsubscribe) => {
                    for room_id in unsubscribe.room_ids {
                        self.router.unsubscribe(&link, &room_id);
                        rooms.remove(&room_id);
                    }
                }
            }
        }
        self.router.detach(&link, rooms);
        closer.close();
        tracing::info!(gateway = %link.gateway_id, attach = link.attach_id, "gateway detached");
    }
}

/// Sends a heartbeat on an attach stream every `every` while it lives (a
/// full queue skips one: traffic is flowing anyway).
async fn heartbeat(stream: mpsc::WeakSender<Result<RoomAttachResponse, Status>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(sender) = stream.upgrade() else { return };
        if sender.is_closed() {
            return;
        }
        let _ = sender.try_send(Ok(RoomAttachResponse {
            event: Some(Event::Heartbeat(AttachHeartbeat {})),
        }));
    }
}
