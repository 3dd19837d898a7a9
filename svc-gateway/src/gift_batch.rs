//! `GiftBatcher`: the gateway's clients' concurrent gift sends reach the
//! gift service as `Gift.SendGifts` batches, one internal call per batch
//! rather than per gift. A send waits in a bounded queue; up to
//! `in_flight` batches run at once, and the sends that arrive while they
//! run form the next one, so an idle gateway sends a gift alone at once and
//! a busy one sends hundreds per call. Each item carries its own per-call
//! credential naming its sender and the trace context of its client call.

use crate::deadline;
use hubbub_kit::{channel::TracedChannel, tracecontext};
use hubbub_proto::v1::{self as pb, gift_client::GiftClient};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::{Code, Request, Status};
use tracing::Instrument;

/// Items per batch at most: the gift service's limit.
const MAX_ITEMS: usize = 1000;
/// Encoded items per batch at most; the gift service decodes this much plus
/// one request of its own limit, so one item past the cut always fits.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

type Answer = oneshot::Sender<Result<pb::GiftSendGiftResponse, Status>>;

struct Queued {
    item: pb::GiftSendGiftsItem,
    answer: Answer,
}

/// Where a gateway's gift sends queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GiftBatcher {
    queue: mpsc::Sender<Queued>,
}

impl GiftBatcher {
    /// Starts the batching task on the current runtime: at most `queue`
    /// sends wait, at most `in_flight` batches run, each bounded by
    /// `timeout`. The task ends when the last handle is dropped.
    pub fn start(client: GiftClient<TracedChannel>, queue: usize, in_flight: usize, timeout: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        tokio::spawn(run(
            client,
            receiver,
            Arc::new(Semaphore::new(in_flight.max(1))),
            timeout,
        ));
        Self { queue: sender }
    }

    /// Queues one send (its credential already minted) and waits for its
    /// own answer. UNAVAILABLE at once when the queue is full.
    pub async fn send(
        &self,
        gift: pb::GiftSendGiftRequest,
        credential: String,
    ) -> Result<pb::GiftSendGiftResponse, Status> {
        let (traceparent, tracestate) = tracecontext::current_traceparent();
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            item: pb::GiftSendGiftsItem {
                gift: Some(gift),
                credential,
                traceparent,
                tracestate,
            },
            answer,
        };
        self.queue.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                tracing::warn!("the gateway's gift send queue is full; answering UNAVAILABLE");
                Status::unavailable("this gateway has too many gifts waiting for the gift service; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("the gateway is stopping; retry"),
        })?;
        answered.await.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the gift send was interrupted; retry with the same client_key",
            ))
        })
    }
}

async fn run(
    client: GiftClient<TracedChannel>,
    mut queue: mpsc::Receiver<Queued>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
) {
    // An item that did not fit the previous batch opens the next.
    let mut carried: Option<Queued> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        if first.answer.is_closed() {
            // Its client gave up (and was told to retry): never sent.
            continue;
        }
        let mut bytes = first.item.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_ITEMS {
            let Ok(next) = queue.try_recv() else { break };
            if next.answer.is_closed() {
                continue;
            }
            let size = next.item.encoded_len();
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        tokio::spawn(call(client.clone(), batch, timeout, permit));
    }
}

/// One SendGifts; every item's waiter gets its own outcome, or the call's
/// error when the call as a whole failed.
async fn call(
    mut client: GiftClient<TracedChannel>,
    batch: Vec<Queued>,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("gateway.gift_batch", items = batch.len());
    // The batch's span reaches the client calls it carries.
    for queued in batch.iter().take(32) {
        tracecontext::add_link_from(&span, &queued.item.traceparent);
    }
    let (items, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.item, q.answer)).unzip();
    let expected = items.len();
    let request = deadline::bound(Request::new(pb::GiftSendGiftsRequest { items }), timeout);
    let answer = deadline::answer(timeout, "the gift service", client.send_gifts(request))
        .instrument(span)
        .await;
    drop(permit);
    let outcomes = match answer {
        // A timeout or a callee gone mid-call is UNAVAILABLE already.
        Err(status) if status.code() == Code::Unavailable => Err(status),
        // UNIMPLEMENTED: a gift service older than this gateway (upgrade the
        // gift roles first); anything else is this gateway's or the
        // service's fault, never the client's.
        Err(status) => {
            tracing::error!(%status, "the gift service refused a SendGifts batch");
            Err(Status::unavailable(
                "the gift service could not take this gateway's gifts; retry with the same client_key",
            ))
        }
        Ok(response) => {
            let outcomes = response.outcomes;
            if outcomes.len() == expected {
                Ok(outcomes)
            } else {
                tracing::error!(
                    expected,
                    got = outcomes.len(),
                    "the gift service answered a SendGifts with the wrong number of outcomes"
                );
                Err(Status::internal(
                    "the gift service's answer did not match the gifts sent; retry with the same client_key",
                ))
            }
        }
    };
    match outcomes {
        Ok(outcomes) => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(into_result(outcome));
            }
        }
        Err(status) => {
            for answer in answers {
                let _ = answer.send(Err(status.clone()));
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
