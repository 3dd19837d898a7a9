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
use std::time::{Duration, Instant};
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
    /// Encoded items per batch at most: the item that would cross it opens
    /// the next batch (a first item alone may exceed it by its own size,
    /// which the callee's request limit allows for).
    const MAX_BYTES: usize;
    /// The call, for spans and logs (`gift.SendGifts`).
    const NAME: &'static str;
    /// The W3C trace context of the client call `item` comes from.
    fn traceparent(item: &Self::Item) -> &str;
    /// The answer to a client whose item was never sent, and why.
    fn unsent(why: Unsent) -> Status;
    /// The answer to every client of a batch whose answer did not hold one
    /// outcome per item (the callee's fault).
    fn mismatched() -> Status;
    /// Makes one call: one answer per item, in order, or one error for them
    /// all.
    fn call(
        self,
        items: Vec<Self::Item>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer, Status>>, Status>> + Send;
}

/// Why an item was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The queue was full.
    QueueFull,
    /// The gateway is stopping, or the link it queued for went away.
    Stopped,
    /// It waited a whole call timeout for the batches ahead of it.
    WaitedTooLong,
}

type Answer<B> = oneshot::Sender<Result<<B as BatchCall>::Answer, Status>>;

struct Queued<B: BatchCall> {
    item: B::Item,
    answer: Answer<B>,
    since: Instant,
}

impl<B: BatchCall> Queued<B> {
    /// The item, unless it is left unsent: its client gave up (and was told
    /// to retry), or it waited so long that it is answered now, unsent,
    /// rather than sent late. An item in a batch that began is always
    /// answered with its outcome: a client is never told to retry a message
    /// that may still be published.
    fn fresh(self, timeout: Duration) -> Option<Self> {
        if self.answer.is_closed() {
            return None;
        }
        if self.since.elapsed() >= timeout {
            let _ = self.answer.send(Err(B::unsent(Unsent::WaitedTooLong)));
            return None;
        }
        Some(self)
    }
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
    /// own answer: UNAVAILABLE at once when the queue is full, or after a
    /// call timeout in the queue; else the outcome of the batch it went in,
    /// which the same timeout bounds.
    pub async fn send(&self, item: B::Item) -> Result<B::Answer, Status> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            item,
            answer,
            since: Instant::now(),
        };
        self.queue.try_send(queued).map_err(|e| match e {
            // Counted and logged as the call's UNAVAILABLE; once is enough.
            mpsc::error::TrySendError::Full(_) => {
                tracing::debug!(call = B::NAME, "the gateway's batch queue is full");
                B::unsent(Unsent::QueueFull)
            }
            mpsc::error::TrySendError::Closed(_) => B::unsent(Unsent::Stopped),
        })?;
        answered.await.unwrap_or_else(|_| Err(B::unsent(Unsent::Stopped)))
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
        let Some(first) = first.fresh(timeout) else {
            continue;
        };
        let mut bytes = first.item.encoded_len();
        let mut batch = vec![first];
        while batch.len() < B::MAX_ITEMS {
            let Ok(next) = queue.try_recv() else { break };
            let Some(next) = next.fresh(timeout) else {
                continue;
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_proto::v1::RoomPublishOutcome as Item;
    use std::sync::Mutex;

    /// Records each batch's items; holds every call until `open` has a
    /// permit; answers each item with ten times its seq.
    #[derive(Clone)]
    struct Recorded {
        batches: Arc<Mutex<Vec<Vec<u64>>>>,
        open: Arc<Semaphore>,
    }

    impl BatchCall for Recorded {
        type Item = Item;
        type Answer = u64;
        const MAX_ITEMS: usize = 3;
        const MAX_BYTES: usize = 1024;
        const NAME: &'static str = "test.Recorded";

        fn traceparent(_: &Item) -> &str {
            ""
        }

        fn unsent(why: Unsent) -> Status {
            Status::unavailable(format!("{why:?}"))
        }

        fn mismatched() -> Status {
            Status::internal("mismatched")
        }

        async fn call(self, items: Vec<Item>, _: Duration) -> Result<Vec<Result<u64, Status>>, Status> {
            self.batches.lock().unwrap().push(items.iter().map(|i| i.seq).collect());
            let _ = self.open.acquire().await.unwrap();
            Ok(items.iter().map(|i| Ok(i.seq * 10)).collect())
        }
    }

    fn item(seq: u64) -> Item {
        Item {
            seq,
            ..Default::default()
        }
    }

    fn recorded() -> Recorded {
        Recorded {
            batches: Arc::default(),
            open: Arc::new(Semaphore::new(0)),
        }
    }

    /// Sends `seq` from a task of its own.
    fn send_from_task(batcher: &Batcher<Recorded>, seq: u64) -> tokio::task::JoinHandle<Result<u64, Status>> {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.send(item(seq)).await })
    }

    /// Sends `1`, which goes alone and is held in its call.
    async fn first_held(call: &Recorded, batcher: &Batcher<Recorded>) -> tokio::task::JoinHandle<Result<u64, Status>> {
        let first = send_from_task(batcher, 1);
        while call.batches.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        first
    }

    #[tokio::test]
    async fn items_arriving_while_a_batch_runs_form_the_next_each_answered_its_own() {
        let call = recorded();
        let batcher = Batcher::start(call.clone(), 16, 1, Duration::from_secs(5));
        let first = first_held(&call, &batcher).await;
        let rest: Vec<_> = (2..=5).map(|seq| send_from_task(&batcher, seq)).collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        call.open.add_permits(100);
        assert_eq!(first.await.unwrap().unwrap(), 10);
        for (seq, answer) in (2..=5).zip(rest) {
            assert_eq!(answer.await.unwrap().unwrap(), seq * 10);
        }
        // One alone, then at most MAX_ITEMS per batch, in arrival order.
        let batches = call.batches.lock().unwrap().clone();
        assert_eq!(batches, vec![vec![1], vec![2, 3, 4], vec![5]]);
    }

    #[tokio::test]
    async fn an_item_that_waited_a_whole_timeout_is_answered_unsent_and_never_sent() {
        let call = recorded();
        let batcher = Batcher::start(call.clone(), 16, 1, Duration::from_millis(50));
        let first = first_held(&call, &batcher).await;
        let late = send_from_task(&batcher, 2);
        tokio::time::sleep(Duration::from_millis(120)).await;
        call.open.add_permits(100);
        // The batch that began is answered with its outcome, however late.
        assert_eq!(first.await.unwrap().unwrap(), 10);
        let status = late.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "WaitedTooLong");
        assert_eq!(call.batches.lock().unwrap().clone(), vec![vec![1]]);
    }

    #[tokio::test]
    async fn a_full_queue_answers_at_once() {
        let call = recorded();
        let batcher = Batcher::start(call.clone(), 1, 1, Duration::from_secs(5));
        let _first = first_held(&call, &batcher).await;
        let _queued = send_from_task(&batcher, 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = batcher.send(item(3)).await.unwrap_err();
        assert_eq!(status.message(), "QueueFull");
        call.open.add_permits(100);
    }
}
