//! `GiftCommit`: concurrent records become one ledger transaction per batch
//! (group commit), while every caller still gets its own durable answer.
//! A hot room's gifts queue on one lane (by a hash of the room), so they
//! never contend for the room's row lock within a replica; each lane's
//! worker commits whatever queued while its previous transaction ran.
//! Queues are bounded: a full lane answers UNAVAILABLE at once.
//!
//! Each lane has its own publisher, fed by the worker after each commit in
//! seq order: a lane's records are published in the order they were
//! committed (viewers see no false gap), and whether the caller is still
//! there or not (a gift is never left unpublished because its sender hung
//! up after the commit).

use crate::addressee::Addressee;
use crate::metrics::GiftMetrics;
use crate::publish::RoomPublisher;
use crate::recent::Recent;
use crate::store::{GiftStore, Kind, NewRecord, Record, Sent, StoreError};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tracing::Instrument;

/// A committed record and whether its notify went out (`None` when the
/// publish queue was full: viewers pull it).
pub type Committed = (Sent, Option<oneshot::Receiver<bool>>);

struct Pending {
    record: NewRecord,
    answer: oneshot::Sender<Result<Committed, Status>>,
    span: tracing::Span,
}

/// A record to publish and who waits for the outcome.
type Publish = (Record, oneshot::Sender<bool>);

/// How records are batched (`[gift]` settings).
#[derive(Debug, Clone, Copy)]
pub struct CommitSettings {
    /// Lanes (transactions in flight at once per replica).
    pub lanes: usize,
    /// Records waiting per lane, at most (and records waiting to be
    /// published per lane).
    pub queue: usize,
    /// Records per transaction, at most.
    pub max_batch: usize,
}

/// Where committed records go.
pub struct Outlets<S> {
    /// Gifts, through their rooms.
    pub rooms: Arc<RoomPublisher>,
    /// Co-streaming records, to their addressees.
    pub addressees: Arc<Addressee>,
    /// The in-memory windows of hot rooms.
    pub recent: Arc<Recent<S>>,
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
    /// Starts one worker and one publisher per lane; they stop when every
    /// handle is dropped, after answering and publishing what they hold.
    pub fn start<S: GiftStore>(
        store: Arc<S>,
        settings: CommitSettings,
        outlets: Outlets<S>,
        metrics: GiftMetrics,
    ) -> Self {
        let outlets = Arc::new(outlets);
        let lanes = (0..settings.lanes.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(settings.queue.max(1));
                let (publish, published) = mpsc::channel(settings.queue.max(1));
                tokio::spawn(publisher(published, outlets.clone()));
                tokio::spawn(run(
                    store.clone(),
                    receiver,
                    settings.max_batch.max(1),
                    publish,
                    outlets.clone(),
                    metrics.clone(),
                ));
                sender
            })
            .collect();
        Self { lanes: Arc::new(lanes) }
    }

    /// Commits `record` in the next batch of its room's lane; durable when
    /// `Ok`.
    pub async fn commit(&self, record: NewRecord) -> Result<Committed, Status> {
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
                tracing::warn!("a gift commit lane is full; answering UNAVAILABLE");
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

/// Gifts published in one call at most.
const PUBLISH_BATCH: usize = 1000;
/// Bytes of encoded gifts per call at most, as the room decodes them.
const RUN_BYTES: usize = hubbub_kit::batch_item::MAX_BYTES;
/// A record's encoded size beyond its payload, at most (ids are 1 to 128
/// bytes, keys 64, plus numbers and tags).
const RECORD_OVERHEAD: usize = 5 * 128 + 2 * 64 + 128;

/// Publishes a lane's records in commit order: each run of one room's
/// gifts in one call, co-streaming records one by one to their addressee.
async fn publisher<S>(mut queue: mpsc::Receiver<Publish>, outlets: Arc<Outlets<S>>) {
    let mut batch: Vec<Publish> = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut rest = batch.drain(..).peekable();
        while let Some((record, done)) = rest.next() {
            if record.kind != Kind::Gift.as_i32() {
                let _ = done.send(outlets.addressees.deliver(&record).await);
                continue;
            }
            let room = record.room_id.clone();
            let mut bytes = record.payload.len() + RECORD_OVERHEAD;
            let (mut records, mut dones) = (vec![record], vec![done]);
            // One room's consecutive gifts, below what the room decodes in
            // one call.
            while let Some((next, done)) = rest.next_if(|(next, _)| {
                next.kind == Kind::Gift.as_i32()
                    && next.room_id == room
                    && bytes + next.payload.len() + RECORD_OVERHEAD <= RUN_BYTES
            }) {
                bytes += next.payload.len() + RECORD_OVERHEAD;
                records.push(next);
                dones.push(done);
            }
            let published = outlets.rooms.publish(&records).await;
            for done in dones {
                let _ = done.send(published);
            }
        }
    }
}

async fn run<S: GiftStore>(
    store: Arc<S>,
    mut receiver: mpsc::Receiver<Pending>,
    max_batch: usize,
    publish: mpsc::Sender<Publish>,
    outlets: Arc<Outlets<S>>,
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
            // A statement the database refused must not fail the records it
            // was batched with: each is committed again on its own. (An
            // outage fails them all at once: retrying one by one would only
            // hold the lane.)
            Err(StoreError::Rejected(why)) if records.len() > 1 => {
                tracing::warn!(records = records.len(), %why, "gift commit refused; committing its records one by one");
                let mut one_by_one = Vec::with_capacity(records.len());
                for (record, pending) in records.iter().zip(&batch) {
                    if pending.answer.is_closed() {
                        one_by_one.push(Err(Status::cancelled("the caller went away")));
                        continue;
                    }
                    one_by_one.push(match store.commit(std::slice::from_ref(record)).await {
                        Ok(answers) => one_answer(answers),
                        Err(e) => Err(Status::from(e)),
                    });
                }
                one_by_one
            }
            Err(e) => {
                let status = Status::from(e);
                records.iter().map(|_| Err(status.clone())).collect()
            }
        };
        let mut new = 0;
        for (pending, answer) in batch.drain(..).zip(answers) {
            let answer = answer.map(|sent| {
                if sent.duplicate {
                    return (sent, None);
                }
                new += 1;
                outlets.recent.committed(&sent.record);
                let (done, outcome) = oneshot::channel();
                match publish.try_send((sent.record.clone(), done)) {
                    Ok(()) => (sent, Some(outcome)),
                    Err(_) => {
                        metrics.publish_failures.inc();
                        tracing::warn!(room = %sent.record.room_id, "the gift publish queue is full; viewers will pull");
                        (sent, None)
                    }
                }
            });
            let _ = pending.answer.send(answer);
        }
        metrics.records.inc_by(new);
    }
}

/// The answer of a commit of one record. A store that answered none broke
/// its contract: the caller is told so, and the lane goes on.
fn one_answer(answers: Vec<Result<Sent, StoreError>>) -> Result<Sent, Status> {
    match answers.into_iter().next() {
        Some(answer) => answer.map_err(Status::from),
        None => {
            tracing::error!("the gift store answered a commit of one record with no answer");
            Err(Status::internal(
                "the gift ledger gave no answer for this record; it has been logged",
            ))
        }
    }
}

/// What a record is replaced with once moved into its batch.
fn placeholder() -> NewRecord {
    NewRecord {
        room_id: String::new(),
        sender_user_id: String::new(),
        kind: Kind::Gift,
        target_user_id: String::new(),
        gift_id: String::new(),
        count: 0,
        unit_value: 0,
        client_key: String::new(),
        payload: Vec::new(),
        answers_seq: 0,
        answer: 0,
    }
}
