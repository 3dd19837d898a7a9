//! `GroupCommit`: concurrent sends become one store transaction each batch
//! (group commit), while every caller still gets its own durable answer.
//!
//! Sends go to one of `lanes` queues by a hash of their group, so one
//! group's sends are batched together in this replica and never contend
//! with each other for the group's row lock. Each lane's worker takes
//! whatever has queued (up to `max_batch`) while its previous transaction
//! ran, commits it with `GroupStore::send_batch`, answers every caller,
//! then hands the batch's deliveries to the notifier. Under light load a
//! batch is one send and costs what a plain send costs; under heavy load a
//! batch grows with the commit time, and the cost of a message (one mailbox
//! row per member and group per batch) falls. Queues are bounded: a full
//! lane answers `UNAVAILABLE` at once, with a hint to retry.

use crate::metrics::GroupMetrics;
use crate::notify::Notifier;
use crate::store::{GroupStore, NewMessage, Sent, SentBatch, StoreError};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tracing::Instrument;

/// One send waiting for its lane.
struct Pending {
    message: NewMessage,
    answer: oneshot::Sender<Result<Sent, Status>>,
    /// The caller's span, so the commit is traced under each send it holds.
    span: tracing::Span,
}

/// The handle sends go through. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    lanes: Arc<Vec<mpsc::Sender<Pending>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("lanes", &self.lanes.len()).finish()
    }
}

/// How sends are batched (`[group]` settings).
#[derive(Debug, Clone, Copy)]
pub struct CommitSettings {
    /// Lanes (transactions in flight at once per replica).
    pub lanes: usize,
    /// Sends waiting per lane, at most.
    pub queue: usize,
    /// Sends per transaction, at most.
    pub max_batch: usize,
}

impl GroupCommit {
    /// Starts one worker per lane over `store`; workers stop when every
    /// handle is dropped, after answering what they hold.
    pub fn start<S: GroupStore>(
        store: Arc<S>,
        settings: CommitSettings,
        notifier: Notifier,
        metrics: GroupMetrics,
    ) -> Self {
        let lanes = (0..settings.lanes.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(settings.queue.max(1));
                tokio::spawn(run(
                    store.clone(),
                    receiver,
                    settings.max_batch.max(1),
                    notifier.clone(),
                    metrics.clone(),
                ));
                sender
            })
            .collect();
        Self { lanes: Arc::new(lanes) }
    }

    /// Sends `message` in the next batch of its group's lane and waits for
    /// its own answer (durable when `Ok`).
    pub async fn send(&self, message: NewMessage) -> Result<Sent, Status> {
        let lane = &self.lanes[lane_of(&message.group_id, self.lanes.len())];
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            message,
            answer,
            span: tracing::Span::current(),
        };
        lane.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Status::unavailable("the group service has too many sends waiting to commit; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("the group service is stopping; retry"),
        })?;
        match answered.await {
            Ok(answer) => answer,
            // The worker went away with the send: whether it committed is
            // unknown, and a retry with the same client_message_id is safe.
            Err(_) => Err(Status::unavailable(
                "the send's commit was interrupted; retry with the same client_message_id",
            )),
        }
    }
}

fn lane_of(group_id: &str, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    group_id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

async fn run<S: GroupStore>(
    store: Arc<S>,
    mut receiver: mpsc::Receiver<Pending>,
    max_batch: usize,
    notifier: Notifier,
    metrics: GroupMetrics,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        // Moved out, not copied: the answers need only the senders.
        let messages: Vec<NewMessage> = batch.iter_mut().map(|p| std::mem::take(&mut p.message)).collect();
        let span = tracing::info_span!("group.commit", sends = messages.len());
        for pending in &batch {
            span.follows_from(pending.span.id());
        }
        let began = std::time::Instant::now();
        let result = store.send_batch(&messages).instrument(span).await;
        metrics.commits.inc();
        metrics.commit_seconds.observe(began.elapsed().as_secs_f64());
        match result {
            Ok(mut sent) => {
                let answers = std::mem::take(&mut sent.answers);
                finished(sent, answers.iter(), &notifier, &metrics);
                for (pending, answer) in batch.drain(..).zip(answers) {
                    let _ = pending.answer.send(answer.map_err(Status::from));
                }
            }
            // One send the database refuses must not fail the sends it was
            // batched with: each is committed again on its own.
            Err(_) if batch.len() > 1 => {
                tracing::warn!(
                    sends = batch.len(),
                    "group commit failed; committing its sends one by one"
                );
                for (pending, message) in batch.drain(..).zip(&messages) {
                    let one = store.send_batch(std::slice::from_ref(message)).await;
                    let answer = match one {
                        Ok(mut sent) => {
                            let answers = std::mem::take(&mut sent.answers);
                            finished(sent, answers.iter(), &notifier, &metrics);
                            // A store that answers none broke its contract:
                            // the caller is told, and the lane goes on.
                            answers.into_iter().next().map_or_else(
                                || {
                                    tracing::error!("the group store answered a send of one with no answer");
                                    Err(Status::internal(
                                        "the group store gave no answer for this send; it has been logged",
                                    ))
                                },
                                |answer| answer.map_err(Status::from),
                            )
                        }
                        Err(e) => Err(Status::from(e)),
                    };
                    let _ = pending.answer.send(answer);
                }
            }
            Err(e) => {
                let status = Status::from(e);
                for pending in batch.drain(..) {
                    let _ = pending.answer.send(Err(status.clone()));
                }
            }
        }
    }
}

/// Counts what a commit stored and hands its deliveries to the notifier.
fn finished<'a>(
    sent: SentBatch,
    answers: impl Iterator<Item = &'a Result<Sent, StoreError>>,
    notifier: &Notifier,
    metrics: &GroupMetrics,
) {
    let new = answers.filter(|a| a.as_ref().is_ok_and(|s| !s.duplicate)).count();
    metrics.messages_sent.inc_by(new as u64);
    for dispatch in sent.dispatched {
        metrics
            .mailbox_entries
            .inc_by((dispatch.messages.len() * dispatch.deliveries.len()) as u64);
        let pushable = crate::push::Pushable {
            end_to_end_encrypted: dispatch.end_to_end_encrypted,
            messages: &dispatch.messages,
        };
        notifier.notify(&dispatch.group_id, dispatch.deliveries, Some(pushable));
    }
}
