//! The expiry sweep: a co-streaming request nobody answered in time gets
//! its answer from the ledger itself, `CO_STREAM_ANSWER_EXPIRED`, a record
//! given in the addressee's name and addressed to the requester, committed
//! and published like any answer. So the requester is told, and the
//! request's state leaves "pending" for good.
//!
//! Every replica sweeps; two replicas writing the same expiry write one
//! record: its client key is derived from the request (`ledger:expired:<seq>`,
//! a prefix clients may not use), so the second is a duplicate of the first.

use crate::commit::GiftCommit;
use crate::store::{GiftStore, Kind, NewRecord, rules, unix_ms};
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// Client keys that begin with this are the ledger's own.
pub const KEY_PREFIX: &str = "ledger:";
/// Requests expired per round at most (a round a tick: a backlog drains at
/// this many per tick and replica).
const ROUND: u32 = 500;

/// Sweeps every `every` until `shutdown`.
pub async fn run<S: GiftStore>(store: Arc<S>, commits: GiftCommit, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: the first round comes one interval after start.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        sweep(store.as_ref(), &commits).await;
    }
}

/// One round: writes the expiry of every request due, at most a round's;
/// returns how many were due.
pub async fn sweep<S: GiftStore>(store: &S, commits: &GiftCommit) -> usize {
    let due = match store.due_co_streams(unix_ms(), ROUND).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(%err, "the co-streaming expiry sweep could not read the due requests");
            return 0;
        }
    };
    let count = due.len();
    let expiries = due.into_iter().map(|request| async move {
        let answer = commits
            .commit(NewRecord {
                room_id: request.room_id.clone(),
                sender_user_id: request.addressee_user_id,
                kind: Kind::CoStreamAnswer,
                target_user_id: String::new(),
                gift_id: String::new(),
                count: 0,
                unit_value: 0,
                client_key: format!("{KEY_PREFIX}expired:{}", request.request_seq),
                payload: Vec::new(),
                answers_seq: request.request_seq,
                answer: rules::EXPIRED,
            })
            .await;
        match answer {
            Ok(_) => {}
            // Answered (or expired by another replica) in the meantime.
            Err(status) if status.code() == Code::FailedPrecondition => {}
            Err(status) => tracing::warn!(
                room_id = %request.room_id,
                seq = request.request_seq,
                %status,
                "could not write a co-streaming request's expiry; the next round tries again"
            ),
        }
    });
    join_all(expiries).await;
    count
}
