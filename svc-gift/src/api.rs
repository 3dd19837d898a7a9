//! The `hubbub.v1.Gift` handlers: who acts, what a gift is worth, and the
//! answer once the record is durable (then published through its room).

use crate::commit::GiftCommit;
use crate::convert;
use crate::recent::Recent;
use crate::store::{GiftStore, Kind, NewRecord};
use futures_util::FutureExt;
use futures_util::future::join_all;
use hubbub_kit::batch_item;
use hubbub_kit::service_auth::{self, Caller, InternalKey, Role};
use hubbub_kit::tracecontext;
use hubbub_proto::v1::{self as pb, gift_server::Gift};
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// Items in one SendGifts at most.
pub const MAX_BATCH_ITEMS: usize = hubbub_kit::batch_item::MAX_ITEMS;
/// The method a batch item's credential must be for.
const SEND_GIFT: &str = "/hubbub.v1.Gift/SendGift";

/// Serves `hubbub.v1.Gift`.
pub struct GiftApi<S> {
    store: Arc<S>,
    commits: GiftCommit,
    recent: Arc<Recent<S>>,
    catalogue: Arc<BTreeMap<String, u64>>,
    publish_timeout: std::time::Duration,
    /// Verifies the per-item credentials of SendGifts.
    key: InternalKey,
    /// `public_window_records` (0: no window).
    public_window: u64,
}

impl<S> GiftApi<S> {
    /// Handlers over `store`, committing through `commits`.
    pub fn new(
        store: Arc<S>,
        commits: GiftCommit,
        recent: Arc<Recent<S>>,
        catalogue: BTreeMap<String, u64>,
        publish_timeout: std::time::Duration,
        key: InternalKey,
        public_window: u64,
    ) -> Self {
        Self {
            store,
            commits,
            recent,
            catalogue: Arc::new(catalogue),
            publish_timeout,
            key,
            public_window,
        }
    }

    /// Records one send for `sender` (verified): durable before it
    /// answers, then its notify awaited a short while.
    async fn send_for(
        &self,
        sender: String,
        call: pb::GiftSendGiftRequest,
        publish_wait: std::time::Duration,
    ) -> Result<pb::GiftSendGiftResponse, Status>
    where
        S: GiftStore,
    {
        let kind = convert::kind(call.kind)?;
        if kind == Kind::CoStreamAnswer && call.answer == crate::store::rules::EXPIRED {
            return Err(Status::invalid_argument(
                "CO_STREAM_ANSWER_EXPIRED is written by the ledger itself once a request's time is up",
            ));
        }
        if call.client_key.starts_with(crate::expiry::KEY_PREFIX) {
            return Err(Status::invalid_argument(format!(
                "client_key may not start with {:?}: the ledger's own records use it",
                crate::expiry::KEY_PREFIX
            )));
        }
        let unit_value = self.unit_value(kind, &call.gift_id)?;
        let (sent, outcome) = self
            .commits
            .commit(NewRecord {
                room_id: call.room_id,
                sender_user_id: sender,
                kind,
                target_user_id: call.target_user_id,
                gift_id: call.gift_id,
                count: call.count,
                unit_value,
                client_key: call.client_key,
                payload: call.payload.to_vec(),
                answers_seq: call.answers_seq,
                answer: call.answer,
            })
            .await?;
        // Durable now. The lane publishes it (a gift through the room, a
        // co-streaming record to its addressee) whether this caller waits
        // or not; a duplicate publishes nothing again (its viewers had the
        // original, or pull it).
        let published = match outcome {
            Some(mut outcome) if publish_wait.is_zero() => outcome.try_recv().unwrap_or(false),
            Some(outcome) => tokio::time::timeout(publish_wait, outcome)
                .await
                .is_ok_and(|done| done.unwrap_or(false)),
            None => false,
        };
        Ok(pb::GiftSendGiftResponse {
            gift: Some(convert::record(sent.record)),
            duplicate: sent.duplicate,
            published,
        })
    }

    /// The value of one `gift_id`: the catalogue's, or 0 without one.
    fn unit_value(&self, kind: Kind, gift_id: &str) -> Result<u64, Status> {
        if kind != Kind::Gift || self.catalogue.is_empty() {
            return Ok(0);
        }
        self.catalogue
            .get(gift_id)
            .copied()
            .ok_or_else(|| Status::invalid_argument(format!("gift_id {gift_id:?} is not in the gift catalogue")))
    }
}

/// The sender: the user the gateway's credential acts for, which the
/// request's field must name.
fn sender(caller: &Caller, claimed: &str) -> Result<String, Status> {
    let user = caller
        .acting_for
        .as_ref()
        .and_then(|identity| identity.user_id())
        .filter(|_| caller.role == Role::Gateway)
        .ok_or_else(|| Status::permission_denied("gifts are sent by a signed-in user, through a gateway"))?;
    if claimed != user {
        return Err(Status::permission_denied(format!(
            "sender_user_id {claimed:?} is not the user the credential acts for ({user:?})"
        )));
    }
    Ok(user.to_owned())
}

#[tonic::async_trait]
impl<S: GiftStore> Gift for GiftApi<S> {
    #[tracing::instrument(name = "gift.send", skip_all)]
    async fn send_gift(
        &self,
        request: Request<pb::GiftSendGiftRequest>,
    ) -> Result<Response<pb::GiftSendGiftResponse>, Status> {
        let sender = sender(service_auth::caller(&request)?, &request.get_ref().sender_user_id)?;
        Ok(Response::new(
            self.send_for(sender, request.into_inner(), self.publish_timeout)
                .await?,
        ))
    }

    #[tracing::instrument(name = "gift.send_batch", skip_all, fields(items))]
    async fn send_gifts(
        &self,
        request: Request<pb::GiftSendGiftsRequest>,
    ) -> Result<Response<pb::GiftSendGiftsResponse>, Status> {
        let batch = service_auth::caller(&request)?.clone();
        let items = request.into_inner().items;
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(Status::invalid_argument(format!(
                "{} items in one SendGifts; send 1 to {MAX_BATCH_ITEMS}",
                items.len()
            )));
        }
        tracing::Span::current().record("items", items.len());
        // Every item is decided on its own, as if it came alone; they enter
        // their lanes in the batch's order (join_all polls them in order).
        // An item is answered once durable, without waiting for its publish:
        // one slow room must not hold the batch's other gifts (the lane
        // publishes them all the same).
        let sends = items.into_iter().map(|item| {
            let span = tracing::info_span!(
                "gift.send",
                otel.status_code = tracing::field::Empty,
                otel.status_message = tracing::field::Empty
            );
            tracecontext::set_parent_from(&span, &item.traceparent, &item.tracestate);
            let batch = &batch;
            async move {
                let gift = item
                    .gift
                    .ok_or_else(|| Status::invalid_argument("a SendGifts item without its gift"))?;
                let caller = batch_item::item_caller(&self.key, batch, &item.credential, SEND_GIFT, "SendGifts")?;
                let sender = sender(&caller, &gift.sender_user_id)?;
                self.send_for(sender, gift, std::time::Duration::ZERO).await
            }
            .instrument(span.clone())
            .map(move |answer| {
                if let Err(status) = &answer {
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_message", status.message());
                }
                answer
            })
        });
        let outcomes = join_all(sends)
            .await
            .into_iter()
            .map(|answer| match answer {
                Ok(sent) => pb::GiftSendGiftsOutcome {
                    sent: Some(sent),
                    ..Default::default()
                },
                Err(status) => pb::GiftSendGiftsOutcome {
                    sent: None,
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                },
            })
            .collect();
        Ok(Response::new(pb::GiftSendGiftsResponse { outcomes }))
    }

    #[tracing::instrument(name = "gift.pull", skip_all)]
    async fn pull_gifts(
        &self,
        request: Request<pb::GiftPullGiftsRequest>,
    ) -> Result<Response<pb::GiftPullGiftsResponse>, Status> {
        // Who is looking: the user or guest a gateway acts for; a backend
        // (scope gift.read, the policy's only other caller) sees everything.
        let viewer = service_auth::caller(&request)?
            .acting_for
            .as_ref()
            .map(|identity| identity.user_id().unwrap_or_default().to_owned());
        let call = request.into_inner();
        let recipient = (!call.target_user_id.is_empty()).then_some(call.target_user_id.as_str());
        // A viewer reaches the room's public window; a recipient their own
        // whole history, a backend the whole ledger.
        let windowed = self.public_window > 0
            && viewer
                .as_deref()
                .is_some_and(|viewer| viewer.is_empty() || recipient != Some(viewer));
        let mut after = call.after_seq;
        let mut window_start_seq = 0;
        // The public ledger from the hot rooms' windows (which know the
        // head); one user's records from the store, pulled again from the
        // window's start only when the first page began below it.
        let page = match recipient {
            None => {
                if windowed {
                    let floor = self
                        .recent
                        .head(&call.room_id)
                        .await?
                        .saturating_sub(self.public_window);
                    if floor > after {
                        (after, window_start_seq) = (floor, floor);
                    }
                }
                self.recent.pull(&call.room_id, after, call.limit).await?
            }
            Some(_) => {
                self.recent.reads().inc();
                let page = self.store.pull(&call.room_id, after, call.limit, recipient).await?;
                let floor = page.last_seq.saturating_sub(self.public_window);
                if windowed && floor > after {
                    (after, window_start_seq) = (floor, floor);
                    self.recent.reads().inc();
                    self.store.pull(&call.room_id, after, call.limit, recipient).await?
                } else {
                    page
                }
            }
        };
        Ok(Response::new(pb::GiftPullGiftsResponse {
            gifts: page
                .records
                .into_iter()
                .map(|r| convert::for_viewer(r, viewer.as_deref()))
                .collect(),
            has_more: page.has_more,
            last_seq: page.last_seq,
            window_start_seq,
        }))
    }

    #[tracing::instrument(name = "gift.room_totals", skip_all)]
    async fn get_room_totals(
        &self,
        request: Request<pb::GiftGetRoomTotalsRequest>,
    ) -> Result<Response<pb::GiftGetRoomTotalsResponse>, Status> {
        let call = request.into_inner();
        let top = if call.top == 0 { 10 } else { call.top };
        let totals = self.store.room_totals(&call.room_id, top).await?;
        Ok(Response::new(pb::GiftGetRoomTotalsResponse {
            items: totals.items.into_iter().map(convert::total).collect(),
            top_senders: totals.top_senders.into_iter().map(convert::total).collect(),
        }))
    }

    #[tracing::instrument(name = "gift.recipient_totals", skip_all)]
    async fn get_recipient_totals(
        &self,
        request: Request<pb::GiftGetRecipientTotalsRequest>,
    ) -> Result<Response<pb::GiftGetRecipientTotalsResponse>, Status> {
        // A gateway asks for its user's own; a backend (gift.read) for anyone.
        let caller = service_auth::caller(&request)?;
        if let Some(identity) = &caller.acting_for
            && identity.user_id() != Some(request.get_ref().recipient_user_id.as_str())
        {
            return Err(Status::permission_denied(
                "a user reads only the gifts they received themself",
            ));
        }
        let call = request.into_inner();
        let items = self.store.recipient_totals(&call.recipient_user_id).await?;
        Ok(Response::new(pb::GiftGetRecipientTotalsResponse {
            items: items.into_iter().map(convert::total).collect(),
        }))
    }

    #[tracing::instrument(name = "gift.pending", skip_all)]
    async fn list_pending_co_streams(
        &self,
        request: Request<pb::GiftListPendingCoStreamsRequest>,
    ) -> Result<Response<pb::GiftListPendingCoStreamsResponse>, Status> {
        let caller = service_auth::caller(&request)?;
        if let Some(identity) = &caller.acting_for
            && identity.user_id() != Some(request.get_ref().user_id.as_str())
        {
            return Err(Status::permission_denied(
                "a user lists only the requests waiting for them",
            ));
        }
        let call = request.into_inner();
        let requests = self.store.pending(&call.room_id, &call.user_id).await?;
        Ok(Response::new(pb::GiftListPendingCoStreamsResponse {
            requests: requests.into_iter().map(convert::record).collect(),
        }))
    }

    #[tracing::instrument(name = "gift.head", skip_all)]
    async fn get_room_head(
        &self,
        request: Request<pb::GiftGetRoomHeadRequest>,
    ) -> Result<Response<pb::GiftGetRoomHeadResponse>, Status> {
        let last_seq = self.recent.head(&request.get_ref().room_id).await?;
        Ok(Response::new(pb::GiftGetRoomHeadResponse { last_seq }))
    }

    #[tracing::instrument(name = "gift.set_host", skip_all)]
    async fn set_room_host(
        &self,
        request: Request<pb::GiftSetRoomHostRequest>,
    ) -> Result<Response<pb::GiftSetRoomHostResponse>, Status> {
        let call = request.into_inner();
        let room = self.store.set_host(&call.room_id, &call.host_user_id).await?;
        tracing::info!(room = %room.room_id, host = %room.host_user_id, "room host set");
        Ok(Response::new(pb::GiftSetRoomHostResponse {
            host_user_id: room.host_user_id,
            last_seq: room.last_seq,
        }))
    }
}
