//! Group commit, the part both backends decide the same way: given a batch
//! of sends, the locked groups, the senders' roles and the messages already
//! stored under the batch's keys, what each send becomes (refused, a retry
//! answered with its original, or new under which seq) and what the
//! backend must write.
//!
//! Seqs are assigned in batch order per group, so a group's new messages
//! take consecutive seqs `first_seq ..= last_seq`, and every member's
//! mailbox gets one run of consecutive positions for them: one row per
//! member and group per batch, however many messages the batch holds.

use super::rows::GroupRow;
use super::rules::{self, Limits};
use super::*;
use std::collections::HashMap;

/// (group, sender, client_message_id): the idempotency key of a send.
pub(crate) type Key = (String, String, String);

/// What one send of the batch becomes.
#[derive(Debug)]
enum Outcome {
    Refused(StoreError),
    /// A retry of a stored message.
    Original(GroupMessage),
    /// New: `messages[i]` of the plan.
    New(usize),
}

/// One group's new messages in the batch.
#[derive(Debug, Clone)]
pub(crate) struct GroupRun {
    pub group_id: String,
    /// Seq of the group's first new message.
    pub first_seq: i64,
    /// How many new messages (consecutive seqs).
    pub count: i64,
    /// The group's bodies are end-to-end encrypted.
    pub e2e: bool,
}

/// What a batch writes and answers.
#[derive(Debug)]
pub(crate) struct Plan {
    outcomes: Vec<Outcome>,
    /// New messages in write order (by group, then seq).
    pub messages: Vec<GroupMessage>,
    /// One per group with new messages, by group id.
    pub runs: Vec<GroupRun>,
    /// (group, sender, seq): each sender's read position moves to its last
    /// new message; one per (group, sender).
    pub reads: Vec<(String, String, i64)>,
}

/// The argument checks of every send; the ones that pass go on to the
/// store. Returns the indexes that passed, and the refusals by index.
pub(crate) fn checked(messages: &[NewMessage], limits: &Limits) -> (Vec<usize>, HashMap<usize, StoreError>) {
    let mut ok = Vec::new();
    let mut refused = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        match rules::new_message(m, limits) {
            Ok(()) => ok.push(i),
            Err(e) => {
                refused.insert(i, e);
            }
        }
    }
    (ok, refused)
}

/// Decides every send of `messages` (`refused` already decided by
/// `checked`), given the locked `groups`, the senders' `roles` by
/// (group, user) and the stored `originals` by key.
pub(crate) fn plan(
    messages: &[NewMessage],
    mut refused: HashMap<usize, StoreError>,
    groups: &HashMap<String, GroupRow>,
    roles: &HashMap<(String, String), Role>,
    originals: &HashMap<Key, GroupMessage>,
    now: i64,
) -> Plan {
    let mut next_seq: HashMap<&str, i64> = HashMap::new();
    let mut first_in_batch: HashMap<Key, usize> = HashMap::new();
    let mut planned: Vec<GroupMessage> = Vec::new();
    let mut outcomes = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if let Some(e) = refused.remove(&i) {
            outcomes.push(Outcome::Refused(e));
            continue;
        }
        let decided = decide(m, groups, roles).and_then(|group| {
            let key = (
                m.group_id.clone(),
                m.sender_user_id.clone(),
                m.client_message_id.clone(),
            );
            if let Some(original) = originals.get(&key) {
                return rules::duplicate(m, original.clone()).map(|s| Outcome::Original(s.message));
            }
            if let Some(&first) = first_in_batch.get(&key) {
                // The same key twice in one batch: a retry racing its
                // original; answered like a retry of a stored one.
                let original = planned[first].clone();
                return rules::duplicate(m, original).map(|s| Outcome::Original(s.message));
            }
            let seq = next_seq.entry(group.group_id.as_str()).or_insert(group.last_seq);
            *seq += 1;
            first_in_batch.insert(key, planned.len());
            planned.push(GroupMessage {
                group_id: m.group_id.clone(),
                seq: *seq as u64,
                sender_user_id: m.sender_user_id.clone(),
                sender_device_id: m.sender_device_id.clone(),
                client_message_id: m.client_message_id.clone(),
                content_type: m.content_type.clone(),
                body: m.body.clone(),
                sent_at_ms: now,
            });
            Ok(Outcome::New(planned.len() - 1))
        });
        outcomes.push(decided.unwrap_or_else(Outcome::Refused));
    }
    // Write order: by group, then seq; outcomes point into it.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&planned[a], &planned[b]);
        (&x.group_id, x.seq).cmp(&(&y.group_id, y.seq))
    });
    let mut position = vec![0; planned.len()];
    for (at, &i) in order.iter().enumerate() {
        position[i] = at;
    }
    for outcome in &mut outcomes {
        if let Outcome::New(i) = outcome {
            *i = position[*i];
        }
    }
    let mut slots: Vec<Option<GroupMessage>> = planned.into_iter().map(Some).collect();
    let messages: Vec<GroupMessage> = order.iter().map(|&i| slots[i].take().expect("each once")).collect();

    let mut runs: Vec<GroupRun> = Vec::new();
    let mut reads: HashMap<(String, String), i64> = HashMap::new();
    for m in &messages {
        match runs.last_mut() {
            Some(run) if run.group_id == m.group_id => run.count += 1,
            _ => runs.push(GroupRun {
                group_id: m.group_id.clone(),
                first_seq: m.seq as i64,
                count: 1,
                e2e: groups.get(&m.group_id).is_some_and(|g| g.e2e),
            }),
        }
        let read = reads.entry((m.group_id.clone(), m.sender_user_id.clone())).or_default();
        *read = (*read).max(m.seq as i64);
    }
    let mut reads: Vec<(String, String, i64)> = reads.into_iter().map(|((g, u), s)| (g, u, s)).collect();
    // Member rows are updated in key order, like every other writer.
    reads.sort();
    Plan {
        outcomes,
        messages,
        runs,
        reads,
    }
}

/// The group a send goes to, if the sender may send this content there.
fn decide<'a>(
    m: &NewMessage,
    groups: &'a HashMap<String, GroupRow>,
    roles: &HashMap<(String, String), Role>,
) -> Result<&'a GroupRow, StoreError> {
    let group = rules::found(&m.group_id, groups.get(&m.group_id))?;
    let role = roles.get(&(m.group_id.clone(), m.sender_user_id.clone())).copied();
    rules::member(&m.sender_user_id, &m.group_id, role)?;
    rules::content_for(m, group.e2e)?;
    Ok(group)
}

impl Plan {
    /// What the batch answers once committed: each send's answer in the
    /// batch's order, and per group the messages (moved, not copied: they
    /// go on to the notify and push steps) with the diffusion's `rows`.
    pub fn finish(self, rows: Vec<(String, String, i64)>) -> SentBatch {
        let Plan {
            outcomes,
            messages,
            runs,
            ..
        } = self;
        let answers = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Refused(e) => Err(e),
                Outcome::Original(message) => Ok(Sent {
                    message,
                    duplicate: true,
                    deliveries: Vec::new(),
                }),
                Outcome::New(i) => Ok(Sent {
                    message: messages[i].clone(),
                    duplicate: false,
                    deliveries: Vec::new(),
                }),
            })
            .collect();
        SentBatch {
            answers,
            dispatched: dispatched(rows, &runs, messages),
        }
    }
}

/// Sorted, distinct group ids of the sends at `indexes`.
pub(crate) fn group_ids(messages: &[NewMessage], indexes: &[usize]) -> Vec<String> {
    let mut ids: Vec<String> = indexes.iter().map(|&i| messages[i].group_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Splits a diffusion's rows (group, user, head after the batch) into the
/// per-group deliveries the notify step takes, with the runs' `messages`
/// (in write order, as in `Plan::messages`), moved into their groups.
pub(crate) fn dispatched(
    rows: Vec<(String, String, i64)>,
    runs: &[GroupRun],
    messages: Vec<GroupMessage>,
) -> Vec<GroupDispatch> {
    let mut by_group: HashMap<String, Vec<Delivery>> = HashMap::new();
    for (group_id, user_id, head) in rows {
        by_group.entry(group_id).or_default().push(Delivery {
            user_id,
            mailbox_seq: head as u64,
        });
    }
    let mut messages = messages.into_iter();
    runs.iter()
        .map(|run| {
            let mut deliveries = by_group.remove(&run.group_id).unwrap_or_default();
            deliveries.sort();
            let of_run: Vec<GroupMessage> = messages.by_ref().take(run.count as usize).collect();
            GroupDispatch {
                group_id: run.group_id.clone(),
                end_to_end_encrypted: run.e2e,
                messages: of_run,
                deliveries,
            }
        })
        .collect()
}
