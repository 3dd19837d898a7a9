//! Gift sends as `Gift.SendGifts` batches ([`Batcher`]): each item carries
//! its own per-call `SendGift` credential naming its sender.

use crate::batcher::{BatchCall, Batcher};
use crate::deadline;
use hubbub_kit::{channel::TracedChannel, tracecontext};
use hubbub_proto::v1::{self as pb, gift_client::GiftClient};
use std::time::Duration;
use tonic::{Code, Request, Status};

/// Encoded items per batch at most; the gift service decodes this much plus
/// one request of its own limit, so one item past the cut always fits.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

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
    const MAX_ITEMS: usize = 1000;
    const MAX_BYTES: usize = MAX_BATCH_BYTES;
    const NAME: &'static str = "gift.SendGifts";

    fn traceparent(item: &Self::Item) -> &str {
        &item.traceparent
    }

    fn unavailable(full: bool) -> Status {
        if full {
            Status::unavailable("this gateway has too many gifts waiting for the gift service; retry shortly")
        } else {
            Status::unavailable("the gift send was interrupted; retry with the same client_key")
        }
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
