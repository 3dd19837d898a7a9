//! `GiftLink`: the gateway's calls to the gift service for its clients,
//! each made for the user (or, for pulls, the guest) the gateway verified,
//! who travels in a per-call credential; a send's `sender_user_id` says the
//! same, so the gift service can check that the two agree. Sends go in
//! batches ([`GiftBatcher`]), each with its own credential.

use crate::deadline;
use crate::gift_batch::{self, GiftBatcher, SendGifts};
use hubbub_kit::{auth::Identity, channel::TracedChannel, service_auth::Credentials};
use hubbub_proto::v1::{self as pb, gift_client::GiftClient};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Status};

/// The method a batched send's credential is for.
const SEND_GIFT: &str = "/hubbub.v1.Gift/SendGift";
/// How long a room's gift head answers joins.
const HEAD_TTL: Duration = Duration::from_secs(1);
/// Rooms whose gift head is held at most.
const MAX_HEADS: usize = 10_000;
/// How long a join waits for a head it does not hold.
const HEAD_WAIT: Duration = Duration::from_millis(300);

/// A client of the gift service.
#[derive(Debug, Clone)]
pub struct GiftLink {
    client: GiftClient<TracedChannel>,
    credentials: Credentials,
    timeout: Duration,
    sends: GiftBatcher,
    /// Rooms' last gift seqs as recently asked: a wave of joins into one
    /// room costs one call per second per gateway.
    heads: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
}

impl GiftLink {
    /// Calls the gift service on `channel` as `credentials`, each call
    /// bounded by `timeout`; sends wait in a queue of `send_queue`, with at
    /// most `batches_in_flight` batches running. Starts the batching task
    /// on the current runtime.
    pub fn new(
        channel: TracedChannel,
        credentials: Credentials,
        timeout: Duration,
        send_queue: usize,
        batches_in_flight: usize,
    ) -> Self {
        // A page is at most 500 records of a 4 KiB payload each; a batch's
        // answer holds at most its items' records (about 1 MiB).
        let client = GiftClient::new(channel).max_decoding_message_size(4 * 1024 * 1024);
        Self {
            sends: GiftBatcher::start(SendGifts(client.clone()), send_queue, batches_in_flight, timeout),
            client,
            credentials,
            timeout,
            heads: Arc::default(),
        }
    }

    /// The room's last gift seq for a joiner, at most a second old; 0 when
    /// the gift service does not answer within a short wait (the joiner can
    /// still pull).
    pub async fn head(&self, room_id: &str) -> u64 {
        if let Some((seq, at)) = self.heads.lock().unwrap_or_else(|p| p.into_inner()).get(room_id)
            && at.elapsed() < HEAD_TTL
        {
            return *seq;
        }
        // The gateway asks for itself: a head is the room's, not a user's.
        let mut request = Request::new(pb::GiftGetRoomHeadRequest {
            room_id: room_id.to_owned(),
        });
        request.set_timeout(HEAD_WAIT);
        let answer = tokio::time::timeout(HEAD_WAIT, self.client.clone().get_room_head(request)).await;
        // A failure is kept as 0 for the same second: a gift service that
        // does not answer slows one join per room per second, not every one.
        let seq = match answer {
            Ok(Ok(answer)) => answer.get_ref().last_seq,
            _ => 0,
        };
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() >= MAX_HEADS {
            // Stale ones first; else any one: never all at once.
            heads.retain(|_, (_, at)| at.elapsed() < HEAD_TTL);
            if heads.len() >= MAX_HEADS
                && let Some(any) = heads.keys().next().cloned()
            {
                heads.remove(&any);
            }
        }
        heads.insert(room_id.to_owned(), (seq, Instant::now()));
        seq
    }

    fn request<T>(&self, caller: &Identity, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.credentials.act_for(&mut request, caller);
        deadline::bound(request, self.timeout)
    }

    /// ClientApi.SendGift, for a signed-in `user`.
    pub async fn send(&self, user: &Identity, call: pb::SendGiftRequest) -> Result<pb::SendGiftResponse, Status> {
        let gift = pb::GiftSendGiftRequest {
            room_id: call.room_id,
            sender_user_id: user.id().to_owned(),
            kind: call.kind,
            target_user_id: call.target_user_id,
            gift_id: call.gift_id,
            count: call.count,
            client_key: call.client_key,
            payload: call.payload,
            answers_seq: call.answers_seq,
            answer: call.answer,
        };
        let credential = self.credentials.token_acting(SEND_GIFT, user);
        let answer = tokio::time::timeout(self.timeout, self.sends.send(gift_batch::item(gift, credential)))
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "the gift service did not answer within {} ms: retry with the same client_key",
                    self.timeout.as_millis()
                ))
            })??;
        Ok(pb::SendGiftResponse {
            gift: answer.gift,
            duplicate: answer.duplicate,
        })
    }

    /// ClientApi.PullGifts, for a user or a guest.
    pub async fn pull(&self, caller: &Identity, call: pb::PullGiftsRequest) -> Result<pb::PullGiftsResponse, Status> {
        let request = self.request(
            caller,
            pb::GiftPullGiftsRequest {
                room_id: call.room_id,
                after_seq: call.after_seq,
                limit: call.limit,
                target_user_id: call.target_user_id,
            },
        );
        let answer = deadline::answer(
            self.timeout,
            "the gift service",
            self.client.clone().pull_gifts(request),
        )
        .await?;
        Ok(pb::PullGiftsResponse {
            gifts: answer.gifts,
            has_more: answer.has_more,
            last_seq: answer.last_seq,
            window_start_seq: answer.window_start_seq,
        })
    }

    /// ClientApi.GetRoomGiftTotals, for a user or a guest.
    pub async fn room_totals(
        &self,
        caller: &Identity,
        call: pb::GetRoomGiftTotalsRequest,
    ) -> Result<pb::GetRoomGiftTotalsResponse, Status> {
        let request = self.request(
            caller,
            pb::GiftGetRoomTotalsRequest {
                room_id: call.room_id,
                top: call.top,
            },
        );
        let answer = deadline::answer(
            self.timeout,
            "the gift service",
            self.client.clone().get_room_totals(request),
        )
        .await?;
        Ok(pb::GetRoomGiftTotalsResponse {
            items: answer.items,
            top_senders: answer.top_senders,
        })
    }

    /// ClientApi.GetMyGiftTotals, for a signed-in `user`.
    pub async fn my_totals(&self, user: &Identity) -> Result<pb::GetMyGiftTotalsResponse, Status> {
        let request = self.request(
            user,
            pb::GiftGetRecipientTotalsRequest {
                recipient_user_id: user.id().to_owned(),
            },
        );
        let answer = deadline::answer(
            self.timeout,
            "the gift service",
            self.client.clone().get_recipient_totals(request),
        )
        .await?;
        Ok(pb::GetMyGiftTotalsResponse { items: answer.items })
    }

    /// ClientApi.ListPendingCoStreams, for a signed-in `user`.
    pub async fn pending(
        &self,
        user: &Identity,
        call: pb::ListPendingCoStreamsRequest,
    ) -> Result<pb::ListPendingCoStreamsResponse, Status> {
        let request = self.request(
            user,
            pb::GiftListPendingCoStreamsRequest {
                room_id: call.room_id,
                user_id: user.id().to_owned(),
            },
        );
        let answer = deadline::answer(
            self.timeout,
            "the gift service",
            self.client.clone().list_pending_co_streams(request),
        )
        .await?;
        Ok(pb::ListPendingCoStreamsResponse {
            requests: answer.requests,
        })
    }
}
