//! Clients' room messages as `Room.PublishMany` batches ([`Batcher`]), one
//! batcher per room instance: each item carries its own per-call
//! `Room.Publish` credential naming its sender, so a busy room's comments
//! cost its owner a few calls a second rather than one per comment.

use crate::batcher::{BatchCall, Batcher, Unsent};
use crate::deadline;
use hubbub_kit::{batch_item, channel::TracedChannel, rate::exhausted_retry_after, tracecontext};
use hubbub_proto::v1::{
    RoomPublishManyItem, RoomPublishManyRequest, RoomPublishOutcome, RoomPublishRequest, room_client::RoomClient,
};
use std::time::Duration;
use tonic::{Code, Request, Status};

/// Bounds of a gateway's room publishing.
#[derive(Debug, Clone, Copy)]
pub struct PublishBounds {
    /// Messages waiting per room instance, at most.
    pub queue: usize,
    /// Batches in flight per room instance, at most.
    pub in_flight: usize,
    /// Time a batch may take.
    pub timeout: Duration,
}

/// `Room.PublishMany` on one room instance's client.
#[derive(Debug, Clone)]
pub struct PublishManyCall(pub RoomClient<TracedChannel>);

/// Where a gateway's messages for one room instance queue.
pub type RoomPublisher = Batcher<PublishManyCall>;

/// One message as a batch item, with the trace context of the current call.
pub fn item(publish: RoomPublishRequest, credential: String) -> RoomPublishManyItem {
    let (traceparent, tracestate) = tracecontext::current_traceparent();
    RoomPublishManyItem {
        publish: Some(publish),
        credential,
        traceparent,
        tracestate,
    }
}

impl BatchCall for PublishManyCall {
    type Item = RoomPublishManyItem;
    /// The message's room seq.
    type Answer = u64;
    const MAX_ITEMS: usize = batch_item::MAX_ITEMS;
    const MAX_BYTES: usize = batch_item::MAX_BYTES;
    const NAME: &'static str = "room.PublishMany";

    fn traceparent(item: &Self::Item) -> &str {
        &item.traceparent
    }

    fn unsent(why: Unsent) -> Status {
        Status::unavailable(match why {
            Unsent::QueueFull => "this gateway has too many messages waiting for their room; retry shortly",
            Unsent::Stopped => "the message was not sent: this gateway's link to the room went away; retry",
            Unsent::WaitedTooLong => "the message waited too long for its room and was not sent; retry",
        })
    }

    fn mismatched() -> Status {
        Status::internal("the room's answer did not match the messages sent; they may have been published")
    }

    async fn call(mut self, items: Vec<Self::Item>, timeout: Duration) -> Result<Vec<Result<u64, Status>>, Status> {
        let request = deadline::bound(Request::new(RoomPublishManyRequest { items }), timeout);
        match deadline::answer(timeout, "the room instance", self.0.publish_many(request)).await {
            Ok(response) => Ok(response.outcomes.into_iter().map(into_result).collect()),
            Err(status) if status.code() == Code::Unavailable => Err(status),
            // UNIMPLEMENTED: a room instance older than this gateway (upgrade
            // the room roles first); anything else is this gateway's or the
            // instance's fault, never the client's.
            Err(status) => {
                tracing::error!(%status, "a room instance refused a PublishMany batch");
                Err(Status::unavailable(
                    "the room instance could not take this gateway's messages; retry",
                ))
            }
        }
    }
}

/// An item's outcome as the client's answer.
fn into_result(outcome: RoomPublishOutcome) -> Result<u64, Status> {
    match Code::from(outcome.code) {
        Code::Ok => Ok(outcome.seq),
        // The instance lists of gateway and room disagree for a moment.
        Code::FailedPrecondition => Err(Status::unavailable("the room is moving between instances: retry")),
        Code::ResourceExhausted if outcome.retry_after_ms > 0 => Err(exhausted_retry_after(
            outcome.message,
            Duration::from_millis(outcome.retry_after_ms.into()),
        )),
        code => Err(Status::new(code, outcome.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_becomes_the_clients_answer() {
        let ok = RoomPublishOutcome {
            seq: 9,
            ..Default::default()
        };
        assert_eq!(into_result(ok).unwrap(), 9);
        let moving = RoomPublishOutcome {
            code: Code::FailedPrecondition as i32,
            message: "not the owner".into(),
            ..Default::default()
        };
        assert_eq!(into_result(moving).unwrap_err().code(), Code::Unavailable);
        let capped = RoomPublishOutcome {
            code: Code::ResourceExhausted as i32,
            message: "room is above its cap".into(),
            retry_after_ms: 120,
            ..Default::default()
        };
        let status = into_result(capped).unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after-ms").unwrap(), "120");
        let too_big = RoomPublishOutcome {
            code: Code::ResourceExhausted as i32,
            message: "body too large".into(),
            ..Default::default()
        };
        assert_eq!(into_result(too_big).unwrap_err().message(), "body too large");
    }
}
