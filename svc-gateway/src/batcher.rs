//! `Batcher`: the gateway's clients' concurrent calls of one kind reach an
//! internal service as batches, one internal call per batch rather than per
//! client call. A call waits in a bounded queue; up to `in_flight` batches
//! run at once, and the calls that arrive while they run form the next one,
//! so an idle gateway sends a call alone at once and a busy one sends
//! hundreds per batch. Each item carries its own per-call credential naming
//! its user, and the trace context of its client call.
//!
//! What a batch is, and how its answer splits back into items, is a
//! [`BatchCall`]: gift sends ([`crate::gift_batch`]) and room publishes
//! ([`crate::publish_batch`]).

use prost::Message;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::Status;
use tracing::Instrument;

/// One kind of batched call.
pub trait BatchCall: Clone + Send + Sync + 'static {
    /// An item of the batch.
    type Item: Message + Send + 'static;
    /// One item's answer.
    type Answer: Send + 'static;
    /// Items per batch at most: the callee's limit.
    const MAX_ITEMS: usize;
    /// Encoded items per batch at most; the callee decodes this much plus
    /// one item of its own limit, so one item past the cut always fits.
    const MAX_BYTES: usize;
    /// The call, for spans and logs (`gift.SendGifts`).
    const NAME: &'static str;
    /// The W3C trace context of the client call `item` comes from.
    fn traceparent(item: &Self::Item) -> &str;
    /// The answer to a client whose item was never sent: the queue is full
    /// (`full`) or the gateway stops.
    fn unavailable(full: bool) -> Status;
    /// Makes one call: one answer per item, in order, or one error for them
    /// all.
    fn call(
        self,
        items: Vec<Self::Item>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer, Status>>, Status>> + Send;
}

type Answer<B> = oneshot::Sender<Result<<B as BatchCall>::Answer, Status>>;

struct Queued<B: BatchCall> {
    item: B::Item,
    answer: Answer<B>,
}

/// Where a gateway's calls of one kind queue. Cheap to clone; the batching
/// task ends when the last handle is dropped.
pub struct Batcher<B: BatchCall> {
    queue: mpsc::Sender<Queued<B>>,
}

impl<B: BatchCall> Clone for Batcher<B> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<B: BatchCall> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batcher({})", B::NAME)
    }
}

impl<B: BatchCall> Batcher<B> {
    /// Starts the batching task on the current runtime: at most `queue`
    /// calls wait, at most `in_flight` batches run, each bounded by
    /// `timeout`.
    pub fn start(call: B, queue: usize, in_flight: usize, timeout: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        tokio::spawn(run(call, receiver, Arc::new(Semaphore::new(in_flight.max(1))), timeout));
        Self { queue: sender }
    }

    /// Queues one item (its credential already minted) and waits for its
    /// own answer. UNAVAILABLE at once when the queue is full.
    pub async fn send(&self, item: B::Item) -> Result<B::Answer, Status> {
        let (answer, answered) = oneshot::channel();
        self.queue.try_send(Queued { item, answer }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                tracing::warn!(
                    call = B::NAME,
                    "the gateway's batch queue is full; answering UNAVAILABLE"
                );
                B::unavailable(true)
            }
            mpsc::error::TrySendError::Closed(_) => B::unavailable(false),
        })?;
        answered.await.unwrap_or_else(|_| Err(B::unavailable(false)))
    }
}

async fn run<B: BatchCall>(
    call: B,
    mut queue: mpsc::Receiver<Queued<B>>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
) {
    // An item that did not fit the previous batch opens the next.
    let mut carried: Option<Queued<B>> = None;
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
        while batch.len() < B::MAX_ITEMS {
            let Ok(next) = queue.try_recv() else { break };
            if next.answer.is_closed() {
                continue;
            }
            let size = next.item.encoded_len();
            if bytes + size > B::MAX_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        tokio::spawn(one_batch(call.clone(), batch, timeout, permit));
    }
}

/// One batched call; every item's waiter gets its own answer, or the
/// call's error when the call as a whole failed.
async fn one_batch<B: BatchCall>(call: B, batch: Vec<Queued<B>>, timeout: Duration, permit: OwnedSemaphorePermit) {
    let span = tracing::info_span!("gateway.batch", call = B::NAME, items = batch.len());
    // The batch's span reaches the client calls it carries.
    for queued in batch.iter().take(32) {
        hubbub_kit::tracecontext::add_link_from(&span, B::traceparent(&queued.item));
    }
    let (items, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.item, q.answer)).unzip();
    let expected = items.len();
    let outcome = call.call(items, timeout).instrument(span).await;
    drop(permit);
    let answered = match outcome {
        Ok(answered) if answered.len() == expected => answered,
        Ok(answered) => {
            tracing::error!(
                call = B::NAME,
                expected,
                got = answered.len(),
                "a batch was answered with the wrong number of outcomes"
            );
            let status = Status::internal(format!("{}'s answer did not match the items sent: retry", B::NAME));
            for answer in answers {
                let _ = answer.send(Err(status.clone()));
            }
            return;
        }
        Err(status) => {
            for answer in answers {
                let _ = answer.send(Err(status.clone()));
            }
            return;
        }
    };
    for (answer, outcome) in answers.into_iter().zip(answered) {
        let _ = answer.send(outcome);
    }
}
