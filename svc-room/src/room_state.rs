//! `RoomState`: one room's sequence, recent ring, pending batch and lanes.
//!
//! Lanes: a high-priority message flushes the pending batch at once (so it
//! never waits, and sequence order is kept); normal messages are delivered
//! up to the room's per-viewer cap and sampled above it; low messages are
//! delivered up to their own cap and coalesced into counters above it.

use crate::{config::RoomLimits, priority::priority_of, router::GatewayLink};
use hubbub_kit::rate::TokenBucket;
use hubbub_proto::v1::{Priority, RoomBatch, RoomMessage, RoomMessageKind};
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Most messages of one batch whose traces its delivery span links to (a
/// batch holds up to `max_batch_messages`; beyond this the links stop).
const MAX_LINKS: usize = 256;

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Queued for the next batch.
    Queued,
    /// Queued, and the batch must go now (it is full).
    FlushNow,
    /// A high-priority message: the batch goes within the high window.
    Urgent,
    /// Sampled away: over the room's per-viewer cap.
    Sampled,
    /// Counted into the batch's coalesced counters.
    Coalesced,
}

/// A message to add, with its trace context.
#[derive(Debug)]
pub struct Incoming {
    /// The sender.
    pub sender_user_id: String,
    /// Its kind.
    pub kind: RoomMessageKind,
    /// Its payload.
    pub body: prost::bytes::Bytes,
    /// W3C `traceparent` and `tracestate` of the publishing call.
    pub trace: (String, String),
}

/// One room on its owning instance.
#[derive(Debug)]
pub struct RoomState {
    /// Last assigned sequence.
    pub last_seq: u64,
    /// Last sequence whose fate is sealed: sent in a batch, sampled away or
    /// coalesced. Messages above it are still pending and follow in a batch,
    /// so a new subscriber is told this one, not `last_seq`.
    pub sealed_seq: u64,
    /// Delivered messages, newest last.
    pub recent: VecDeque<RoomMessage>,
    /// `recent` holds every message delivered after this seq: the seq of
    /// the last message that left the ring, or where this instance's
    /// numbering of the room began.
    pub ring_after_seq: u64,
    /// Gateways subscribed to the room.
    pub gateways: Vec<GatewayLink>,
    pending: Vec<RoomMessage>,
    coalesced: HashMap<i32, u64>,
    trace: Option<(String, String)>,
    /// Traceparents of the pending batch's other traced messages.
    linked: Vec<String>,
    normal: TokenBucket,
    low: TokenBucket,
    publish: TokenBucket,
    /// True while the room waits in its shard's list of rooms to flush.
    pub dirty: bool,
    /// When the oldest pending message or counter arrived.
    pub pending_since: Option<Instant>,
    /// True when a high-priority message is pending.
    pub urgent: bool,
    /// Last publish or subscription: a room idle for long is forgotten.
    pub last_active: Instant,
}

impl RoomState {
    /// A room new to this instance. Its sequence starts from the clock
    /// (milliseconds << 10) rather than from zero, so that after a restart
    /// or an ownership move the new owner numbers above anything the old one
    /// issued, without coordination: the old owner would have had to average
    /// over 1,024 messages per millisecond in this room to get ahead. The
    /// values stay below 2^53, so JavaScript clients read them exactly.
    pub fn fresh(limits: RoomLimits) -> Self {
        // Caps allow one second of burst: a quiet room's first messages all go out.
        let bucket = |rate: f64| TokenBucket::new(rate, rate.max(1.0));
        let start = (unix_ms().max(0) as u64) << 10;
        Self {
            last_seq: start,
            sealed_seq: start,
            recent: VecDeque::new(),
            ring_after_seq: start,
            gateways: Vec::new(),
            pending: Vec::new(),
            coalesced: HashMap::new(),
            trace: None,
            linked: Vec::new(),
            normal: bucket(limits.delivery_cap_per_sec),
            low: bucket(limits.low_cap_per_sec),
            publish: bucket(limits.publish_cap_per_sec),
            dirty: false,
            pending_since: None,
            urgent: false,
            last_active: Instant::now(),
        }
    }

    /// Checks the room's publish cap for a message of `kind` (high priority
    /// is exempt); on refusal, how long until the room takes one again.
    pub fn admit(&mut self, kind: RoomMessageKind, now: Instant) -> Result<(), Duration> {
        if priority_of(kind) == Priority::High {
            return Ok(());
        }
        self.publish.take_at(now)
    }

    /// Numbers a message and puts it in its lane. Returns its sequence.
    pub fn accept(&mut self, room_id: &str, incoming: Incoming, max_batch: usize, now: Instant) -> (u64, Accepted) {
        let priority = priority_of(incoming.kind);
        self.pending_since.get_or_insert(now);
        self.last_active = now;
        self.last_seq += 1;
        let seq = self.last_seq;
        let delivered = match priority {
            Priority::High => true,
            Priority::Normal => self.normal.take_at(now).is_ok(),
            _ => self.low.take_at(now).is_ok(),
        };
        if !delivered {
            if priority == Priority::Normal {
                return (seq, Accepted::Sampled);
            }
            *self.coalesced.entry(incoming.kind as i32).or_default() += 1;
            return (seq, Accepted::Coalesced);
        }
        if !incoming.trace.0.is_empty() {
            if self.trace.is_none() {
                self.trace = Some(incoming.trace);
            } else if self.linked.len() < MAX_LINKS {
                self.linked.push(incoming.trace.0);
            }
        }
        self.pending.push(RoomMessage {
            room_id: room_id.to_owned(),
            seq,
            sender_user_id: incoming.sender_user_id,
            kind: incoming.kind as i32,
            priority: priority as i32,
            body: incoming.body,
            sent_at_ms: unix_ms(),
        });
        let outcome = if self.pending.len() >= max_batch {
            Accepted::FlushNow
        } else if priority == Priority::High {
            self.urgent = true;
            Accepted::Urgent
        } else {
            Accepted::Queued
        };
        (seq, outcome)
    }

    /// True when nothing would be lost by forgetting the room: no gateway
    /// subscribed, nothing pending, and no activity for `idle`. Its sequence
    /// starts from the clock again, so it still only increases.
    pub fn is_forgettable(&self, now: Instant, idle: Duration) -> bool {
        self.gateways.is_empty()
            && !self.dirty
            && self.pending.is_empty()
            && self.coalesced.is_empty()
            && now.saturating_duration_since(self.last_active) >= idle
    }

    /// Takes the pending batch (None when there is nothing to send) and
    /// records its messages in the ring of `keep` recent ones.
    pub fn take_batch(&mut self, room_id: &str, keep: usize) -> Option<RoomBatch> {
        self.pending_since = None;
        self.urgent = false;
        self.sealed_seq = self.last_seq;
        if self.pending.is_empty() && self.coalesced.is_empty() {
            return None;
        }
        let messages = std::mem::take(&mut self.pending);
        for message in &messages {
            self.recent.push_back(message.clone());
        }
        while self.recent.len() > keep {
            if let Some(gone) = self.recent.pop_front() {
                self.ring_after_seq = gone.seq;
            }
        }
        let coalesced = self
            .coalesced
            .drain()
            .map(|(kind, count)| {
                let name = RoomMessageKind::try_from(kind).unwrap_or_default().as_str_name();
                (name.to_owned(), count)
            })
            .collect();
        let (traceparent, tracestate) = self.trace.take().unwrap_or_default();
        Some(RoomBatch {
            room_id: room_id.to_owned(),
            messages,
            coalesced,
            traceparent,
            tracestate,
            linked_traceparents: std::mem::take(&mut self.linked),
            ..Default::default()
        })
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(kind: RoomMessageKind) -> Incoming {
        Incoming {
            sender_user_id: "u".into(),
            kind,
            body: "x".into(),
            trace: Default::default(),
        }
    }

    fn limits(normal: f64, low: f64) -> RoomLimits {
        RoomLimits {
            delivery_cap_per_sec: normal,
            low_cap_per_sec: low,
            publish_cap_per_sec: 1000.0,
        }
    }

    #[test]
    fn normal_is_sampled_above_the_cap_low_is_coalesced_high_always_goes() {
        let now = Instant::now();
        let mut room = RoomState::fresh(limits(2.0, 1.0));
        let outcomes: Vec<Accepted> = (0..4)
            .map(|_| room.accept("r", incoming(RoomMessageKind::Comment), 100, now).1)
            .collect();
        assert_eq!(
            outcomes,
            vec![Accepted::Queued, Accepted::Queued, Accepted::Sampled, Accepted::Sampled]
        );
        assert_eq!(
            room.accept("r", incoming(RoomMessageKind::Like), 100, now).1,
            Accepted::Queued
        );
        for _ in 0..5 {
            assert_eq!(
                room.accept("r", incoming(RoomMessageKind::Like), 100, now).1,
                Accepted::Coalesced
            );
        }
        assert_eq!(
            room.accept("r", incoming(RoomMessageKind::Gift), 100, now).1,
            Accepted::Urgent
        );
        assert!(room.urgent);

        let batch = room.take_batch("r", 10).unwrap();
        let seqs: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending: {seqs:?}");
        assert_eq!(batch.messages.len(), 4, "2 comments, 1 like, 1 gift");
        assert_eq!(batch.coalesced.get("ROOM_MESSAGE_KIND_LIKE"), Some(&5));
        assert_eq!(room.recent.len(), 4);
        assert!(room.take_batch("r", 10).is_none(), "nothing left");
    }

    #[test]
    fn the_publish_cap_refuses_normal_with_a_hint_but_never_high() {
        let now = Instant::now();
        let mut room = RoomState::fresh(RoomLimits {
            publish_cap_per_sec: 2.0,
            ..RoomLimits::default()
        });
        assert!(room.admit(RoomMessageKind::Comment, now).is_ok());
        assert!(room.admit(RoomMessageKind::Comment, now).is_ok());
        let wait = room.admit(RoomMessageKind::Comment, now).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(room.admit(RoomMessageKind::Gift, now).is_ok());
    }

    #[test]
    fn a_full_batch_asks_to_be_sent() {
        let now = Instant::now();
        let mut room = RoomState::fresh(limits(100.0, 100.0));
        assert_eq!(
            room.accept("r", incoming(RoomMessageKind::Comment), 2, now).1,
            Accepted::Queued
        );
        assert_eq!(
            room.accept("r", incoming(RoomMessageKind::Comment), 2, now).1,
            Accepted::FlushNow
        );
    }
}
