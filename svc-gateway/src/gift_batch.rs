//! Gift sends as `Gift.SendGifts` batches ([`Batcher`]): each item carries
//! its own per-call `SendGift` credential naming its sender.

use crate::batcher::{BatchCall, Batcher, Unsent};
use crate::deadline;
use hubbub_kit::{batch_item, channel::TracedChannel, tracecontext};
use hubbub_proto::v1::{self as pb, gift_client::GiftClient};
use std::time::Duration;
use tonic::{Code, Request, Status};

/// `Gift.SendGifts` on one client.
#[derive(Debug, Clone)]
pub struct SendGifts(pub GiftClient<TracedChannel>);

/// Where a gateway's gift sends queue.
pub type GiftBatcher = Batcher<SendGifts>;

/// One send as a batch item, with the trace context of the current call.
pub fn item(gift: pb::GiftSendGiftRequest, credential: String) -> pb::GiftSendGiftsItem {
    let (traceparent, tracestate) = tracecontext::current_traceparent();
    pb::GiftSendGiftsItem {
        gift: Some(gift),
        credential,
        traceparent,
        tracestate,
    }
}

impl BatchCall for SendGifts {
    type Item = pb::GiftSendGiftsItem;
    type Answer = pb::GiftSendGiftResponse;
    const MAX_ITEMS: usize = batch_item::MAX_ITEMS;
    const MAX_BYTES: usize = batch_item::MAX_BYTES;
    const NAME: &'static str = "gift.SendGifts";

    fn traceparent(item: &Self::Item) -> &str {
        &item.traceparent
    }

    fn unsent(why: Unsent) -> Status {
        Status::unavailable(match why {
            Unsent::QueueFull => "this gateway has too many gifts waiting for the gift service; retry shortly",
            Unsent::Stopped => "the gateway is stopping; retry with the same client_key",
            Unsent::WaitedTooLong => {
                "the gift waited too long for the gift service and was not sent; retry with the same client_key"
            }
        })
    }

    fn mismatched() -> Status {
        Status::internal("the gift service's answer did not match the gifts sent; retry with the same client_key")
    }

    async fn call(
        mut self,
        items: Vec<Self::Item>,
        timeout: Duration,
    ) -> Result<Vec<Result<Self::Answer, Status>>, Status> {
        let request = deadline::bound(Request::new(pb::GiftSendGiftsRequest { items }), timeout);
        match deadline::answer(timeout, "the gift service", self.0.send_gifts(request)).await {
            Ok(response) => Ok(response.outcomes.into_iter().map(into_result).collect()),
            // A timeout or a callee gone mid-call is UNAVAILABLE already.
            Err(status) if status.code() == Code::Unavailable => Err(status),
            // UNIMPLEMENTED: a gift service older than this gateway (upgrade
            // the gift roles first); anything else is this gateway's or the
            // service's fault, never the client's.
            Err(status) => {
                tracing::error!(%status, "the gift service refused a SendGifts batch");
                Err(Status::unavailable(
                    "the gift service could not take this gateway's gifts; retry with the same client_key",
                ))
            }
        }
    }
}

fn into_result(outcome: pb::GiftSendGiftsOutcome) -> Result<pb::GiftSendGiftResponse, Status> {
    match (outcome.code, outcome.sent) {
        (0, Some(sent)) => Ok(sent),
        (0, None) => Err(Status::internal(
            "the gift service answered a gift with neither record nor error",
        )),
        (code, _) => Err(Status::new(Code::from(code), outcome.message)),
    }
}
