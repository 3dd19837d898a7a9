//! `GiftCommit`: concurrent records become one ledger transaction per batch
//! (group commit), while every caller still gets its own durable answer.
//! A hot room's gifts queue on one lane (by a hash of the room), so they
//! never contend for the room's row lock within a replica; each lane's
//! worker commits whatever queued while its previous transaction ran.
//! Queues are bounded: a full lane answers UNAVAILABLE at once.

use crate::metrics::GiftMetrics;
use crate::store::{GiftStore, NewRecord, Sent};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tracing::Instrument;

struct Pending {
    record: NewRecord,
    answer: oneshot::Sender<Result<Sent, Status>>,
    span: tracing::Span,
}

/// How records are batched (`[gift]` settings).
#[derive(Debug, Clone, Copy)]
pub struct CommitSettings {
    /// Lanes (transactions in flight at once per replica).
    pub lanes: usize,
    /// Records waiting per lane, at most.
    pub queue: usize,
    /// Records per transaction, at most.
    pub max_batch: usize,
}

/// The handle records go through. Cheap to clone.
#[derive(Clone)]
pub struct GiftCommit {
    lanes: Arc<Vec<mpsc::Sender<Pending>>>,
}

impl std::fmt::Debug for GiftCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GiftCommit").field("lanes", &self.lanes.len()).finish()
    }
}

impl GiftCommit {
    /// Starts one worker per lane; workers stop when every handle is
    /// dropped, after answering what they hold.
    pub fn start<S: GiftStore>(store: Arc<S>, settings: CommitSettings, metrics: GiftMetrics) -> Self {
        let lanes = (0..settings.lanes.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(settings.queue.max(1));
                tokio::spawn(run(store.clone(), receiver, settings.max_batch.max(1), metrics.clone()));
                sender
            })
            .collect();
        Self { lanes: Arc::new(lanes) }
    }

    /// Commits `record` in the next batch of its room's lane; durable when
    /// `Ok`.
    pub async fn commit(&self, record: NewRecord) -> Result<Sent, Status> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        record.room_id.hash(&mut hasher);
        let lane = &self.lanes[(hasher.finish() % self.lanes.len() as u64) as usize];
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            record,
            answer,
            span: tracing::Span::current(),
        };
        lane.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Status::unavailable("the gift ledger has too many records waiting to commit; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("the gift service is stopping; retry"),
        })?;
        answered.await.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the gift's commit was interrupted; retry with the same client_key",
            ))
        })
    }
}

async fn run<S: GiftStore>(
    store: Arc<S>,
    mut receiver: mpsc::Receiver<Pending>,
    max_batch: usize,
    metrics: GiftMetrics,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        let records: Vec<NewRecord> = batch
            .iter_mut()
            .map(|p| std::mem::replace(&mut p.record, placeholder()))
            .collect();
        let span = tracing::info_span!("gift.commit", records = records.len());
        for pending in &batch {
            span.follows_from(pending.span.id());
        }
        let began = std::time::Instant::now();
        let result = store.commit(&records).instrument(span).await;
        metrics.commits.inc();
        metrics.commit_seconds.observe(began.elapsed().as_secs_f64());
        let answers: Vec<Result<Sent, Status>> = match result {
            Ok(answers) => answers.into_iter().map(|a| a.map_err(Status::from)).collect(),
            // One record the database refuses must not fail the others:
            // each is committed again on its own.
            Err(_) if records.len() > 1 => {
                tracing::warn!(
                    records = records.len(),
                    "gift commit failed; committing its records one by one"
                );
                let mut one_by_one = Vec::with_capacity(records.len());
                for record in &records {
                    one_by_one.push(match store.commit(std::slice::from_ref(record)).await {
                        Ok(mut answers) => answers.remove(0).map_err(Status::from),
                        Err(e) => Err(Status::from(e)),
                    });
                }
                one_by_one
            }
            Err(e) => vec![Err(Status::from(e))],
        };
        let new = answers
            .iter()
            .filter(|a| a.as_ref().is_ok_and(|s| !s.duplicate))
            .count();
        metrics.records.inc_by(new as u64);
        for (pending, answer) in batch.drain(..).zip(answers) {
            let _ = pending.answer.send(answer);
        }
    }
}

/// What a record is replaced with once moved into its batch.
fn placeholder() -> NewRecord {
    NewRecord {
        room_id: String::new(),
        sender_user_id: String::new(),
        kind: crate::store::Kind::Gift,
        target_user_id: String::new(),
        gift_id: String::new(),
        count: 0,
        unit_value: 0,
        client_key: String::new(),
        payload: Vec::new(),
    }
}
