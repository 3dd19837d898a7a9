//! Group commit, the part both backends share: given the batch, its rooms
//! (locked) and the originals of its keys, decide each record (refused, a
//! duplicate, or new at the next seq of its room) and add up the totals the
//! new ones move, so each total row is written once per commit.

use super::rules::{self, Limits};
use super::{CoStream, Kind, NewRecord, Record, Room, Sent, StoreError, StoreResult};
use std::collections::{BTreeMap, HashMap};

/// (room, sender, client key): what a record is idempotent by.
pub type Key = (String, String, String);

/// Each record's value, or why it was refused before anything was read.
pub fn checked(records: &[NewRecord], limits: &Limits) -> Vec<StoreResult<u64>> {
    records.iter().map(|r| rules::check(r, limits)).collect()
}

/// The answers of a batch where every record was refused by the checks
/// (called when no record names a room to commit into).
pub fn refusals(checked: Vec<StoreResult<u64>>) -> Vec<StoreResult<Sent>> {
    checked
        .into_iter()
        .map(|c| c.and_then(|_| Err(StoreError::Unavailable("a valid record was not committed".to_owned()))))
        .collect()
}

/// The keys of the records that passed the checks.
pub fn keys(records: &[NewRecord], checked: &[StoreResult<u64>]) -> Vec<Key> {
    records
        .iter()
        .zip(checked)
        .filter(|(_, c)| c.is_ok())
        .map(|(r, _)| (r.room_id.clone(), r.sender_user_id.clone(), r.client_key.clone()))
        .collect()
}

/// Sorted, distinct rooms of the records that passed the checks (the lock
/// order of both backends).
pub fn rooms(records: &[NewRecord], checked: &[StoreResult<u64>]) -> Vec<String> {
    let mut rooms: Vec<String> = records
        .iter()
        .zip(checked)
        .filter(|(_, c)| c.is_ok())
        .map(|(r, _)| r.room_id.clone())
        .collect();
    rooms.sort_unstable();
    rooms.dedup();
    rooms
}

/// The (room, request seq) pairs the batch's valid answers name.
pub fn answered(records: &[NewRecord], checked: &[StoreResult<u64>]) -> Vec<(String, u64)> {
    let mut keys: Vec<(String, u64)> = records
        .iter()
        .zip(checked)
        .filter(|(r, c)| c.is_ok() && r.kind == Kind::CoStreamAnswer)
        .map(|(r, _)| (r.room_id.clone(), r.answers_seq))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A running total to add to: (scope, key) -> (count, value).
pub type Sums = BTreeMap<(String, String), (i64, i64)>;

/// What a commit writes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Each record's answer, in batch order.
    pub answers: Vec<StoreResult<Sent>>,
    /// The new records, in seq order per room.
    pub new: Vec<Record>,
    /// Rooms whose last seq moved: room -> new last seq.
    pub last_seqs: BTreeMap<String, u64>,
    /// (room, gift item) totals to add.
    pub room_items: Sums,
    /// (recipient, gift item) totals to add.
    pub recipient_items: Sums,
    /// (room, sender) totals to add.
    pub room_senders: Sums,
    /// New co-streaming requests (room, seq) -> their state.
    pub co_streams: BTreeMap<(String, u64), CoStream>,
    /// Requests answered: (room, seq) -> the answer.
    pub answered: BTreeMap<(String, u64), i32>,
}

/// Decides the batch. `rooms` holds every room of the batch (locked, with
/// its host and last seq); `originals` the stored records of its keys.
pub fn plan(
    records: &[NewRecord],
    checked: Vec<StoreResult<u64>>,
    rooms: &HashMap<String, Room>,
    originals: &HashMap<Key, Record>,
    requests: &HashMap<(String, u64), CoStream>,
    limits: &super::rules::Limits,
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    // Keys committed earlier in this batch: a retry inside one batch is a
    // duplicate of the first, as it would be across batches.
    let mut fresh: HashMap<Key, usize> = HashMap::new();
    for (record, check) in records.iter().zip(checked) {
        let answer = check.and_then(|value| {
            let key = (
                record.room_id.clone(),
                record.sender_user_id.clone(),
                record.client_key.clone(),
            );
            let earlier = originals.get(&key).or_else(|| fresh.get(&key).map(|&i| &plan.new[i]));
            if let Some(original) = earlier {
                return if rules::same_content(record, original) {
                    Ok(Sent {
                        record: original.clone(),
                        duplicate: true,
                    })
                } else {
                    Err(rules::reused(record))
                };
            }
            let room = rooms.get(&record.room_id).ok_or_else(|| {
                StoreError::Unavailable(format!("room {:?} was not locked by its commit", record.room_id))
            })?;
            let recipient = if record.kind == Kind::CoStreamAnswer {
                let key = (record.room_id.clone(), record.answers_seq);
                let request = plan
                    .co_streams
                    .get(&key)
                    .or_else(|| requests.get(&key))
                    .ok_or_else(|| {
                        StoreError::FailedPrecondition(format!(
                            "room {:?} has no co-streaming request {}",
                            record.room_id, record.answers_seq
                        ))
                    })?;
                // An answer given earlier in this batch counts.
                let mut request = request.clone();
                if let Some(&given) = plan.answered.get(&key) {
                    request.state = given;
                }
                rules::answer_to(
                    &request,
                    record.answers_seq,
                    &record.sender_user_id,
                    record.answer,
                    now_ms,
                )?
            } else if record.target_user_id.is_empty() {
                if room.host_user_id.is_empty() {
                    return Err(StoreError::FailedPrecondition(format!(
                        "room {:?} has no host to receive a gift without target_user_id; name a target, \
                         or wait for the host",
                        record.room_id
                    )));
                }
                room.host_user_id.clone()
            } else {
                record.target_user_id.clone()
            };
            // Totals are BIGINT: a record that would push one past it is
            // refused before it takes a seq.
            let add = (i64::from(record.count), value as i64);
            if record.kind == Kind::Gift {
                let keys = [
                    (&plan.room_items, (&record.room_id, &record.gift_id)),
                    (&plan.recipient_items, (&recipient, &record.gift_id)),
                    (&plan.room_senders, (&record.room_id, &record.sender_user_id)),
                ];
                let overflows = keys.iter().any(|(sums, (scope, key))| {
                    let sum = sums
                        .get(&((*scope).clone(), (*key).clone()))
                        .copied()
                        .unwrap_or_default();
                    sum.0.checked_add(add.0).is_none() || sum.1.checked_add(add.1).is_none()
                });
                if overflows {
                    return Err(StoreError::ResourceExhausted(
                        "this gift would overflow a running total".to_owned(),
                    ));
                }
            }
            let last = plan.last_seqs.entry(record.room_id.clone()).or_insert(room.last_seq);
            *last += 1;
            let stored = Record {
                room_id: record.room_id.clone(),
                seq: *last,
                sender_user_id: record.sender_user_id.clone(),
                kind: record.kind.as_i32(),
                target_user_id: record.target_user_id.clone(),
                recipient_user_id: recipient,
                gift_id: record.gift_id.clone(),
                count: record.count,
                value,
                client_key: record.client_key.clone(),
                payload: record.payload.clone(),
                sent_at_ms: now_ms,
                answers_seq: record.answers_seq,
                answer: record.answer,
                expires_at_ms: if record.kind == Kind::CoStreamRequest {
                    now_ms.saturating_add(limits.co_stream_ttl_ms)
                } else {
                    0
                },
            };
            match record.kind {
                Kind::CoStreamRequest => {
                    plan.co_streams.insert(
                        (stored.room_id.clone(), stored.seq),
                        CoStream {
                            requester_user_id: stored.sender_user_id.clone(),
                            addressee_user_id: stored.recipient_user_id.clone(),
                            state: 0,
                            expires_at_ms: stored.expires_at_ms,
                        },
                    );
                }
                Kind::CoStreamAnswer => {
                    plan.answered
                        .insert((stored.room_id.clone(), stored.answers_seq), stored.answer);
                }
                Kind::Gift => {}
            }
            if record.kind == Kind::Gift {
                for (sums, scope, key) in [
                    (&mut plan.room_items, &stored.room_id, &stored.gift_id),
                    (&mut plan.recipient_items, &stored.recipient_user_id, &stored.gift_id),
                    (&mut plan.room_senders, &stored.room_id, &stored.sender_user_id),
                ] {
                    let sum = sums.entry((scope.clone(), key.clone())).or_default();
                    sum.0 += add.0;
                    sum.1 += add.1;
                }
            }
            fresh.insert(key, plan.new.len());
            plan.new.push(stored.clone());
            Ok(Sent {
                record: stored,
                duplicate: false,
            })
        });
        plan.answers.push(answer);
    }
    plan
}

/// The sums as three parallel columns, in key order (the lock order of
/// the totals' upserts).
pub fn columns(sums: &Sums) -> (Vec<&str>, Vec<&str>, Vec<i64>, Vec<i64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((scope, key), (count, value)) in sums {
        out.0.push(scope.as_str());
        out.1.push(key.as_str());
        out.2.push(*count);
        out.3.push(*value);
    }
    out
}
