//! `RoomRouter`: the rooms this instance owns and the gateways attached to
//! them. It assigns each room's sequence, keeps its recent ring, and queues
//! every message for exactly the gateways that subscribed the room.

use crate::{metrics::RoomMetrics, priority::priority_of};
use hubbub_kit::sharded::Sharded;
use hubbub_proto::v1::{
    RoomAttachResponse, RoomBatch, RoomMessage, RoomMessageKind, RoomSubscribed,
    room_attach_response::Event,
};
use prost::bytes::Bytes;
use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// What an attached gateway receives.
pub type AttachSender = mpsc::Sender<Result<RoomAttachResponse, Status>>;

/// One attached gateway stream.
#[derive(Debug, Clone)]
pub struct GatewayLink {
    /// Unique per attach (a gateway that re-attaches gets a new id).
    pub attach_id: u64,
    /// The gateway's id, for logs.
    pub gateway_id: String,
    /// Its outbound queue.
    pub sender: AttachSender,
    /// Cancelled to end the stream (the gateway was too slow).
    pub kick: CancellationToken,
}

/// A message to publish, already validated by the API layer.
#[derive(Debug)]
pub struct Publish {
    /// The room.
    pub room_id: String,
    /// The sender.
    pub sender_user_id: String,
    /// Its kind.
    pub kind: RoomMessageKind,
    /// Its payload.
    pub body: Bytes,
    /// W3C context of the publishing call, carried to the delivering gateways.
    pub traceparent: (String, String),
}

#[derive(Debug)]
struct RoomState {
    last_seq: u64,
    recent: VecDeque<RoomMessage>,
    gateways: Vec<GatewayLink>,
}

impl RoomState {
    /// A room new to this instance. Its sequence starts from the clock
    /// (milliseconds << 10) rather than from zero, so that after a restart
    /// or an ownership move the new owner numbers above anything the old one
    /// issued, without coordination: the old owner would have had to average
    /// over 1,024 messages per millisecond in this room to get ahead. The
    /// values stay below 2^53, so JavaScript clients read them exactly.
    fn fresh() -> Self {
        Self {
            last_seq: (unix_ms().max(0) as u64) << 10,
            recent: VecDeque::new(),
            gateways: Vec::new(),
        }
    }
}

/// The rooms of this instance.
#[derive(Debug)]
pub struct RoomRouter {
    // Why sharded mutexes: a publish holds its room's lock while it assigns
    // the sequence and queues to every gateway, which is what keeps per-room
    // order; rooms in other shards proceed in parallel.
    rooms: Sharded<HashMap<String, RoomState>>,
    recent_messages: usize,
    next_attach_id: AtomicU64,
    metrics: RoomMetrics,
}

impl RoomRouter {
    /// A router keeping `recent_messages` per room.
    pub fn new(recent_messages: usize, metrics: RoomMetrics) -> Self {
        Self {
            rooms: Sharded::default(),
            recent_messages,
            next_attach_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Registers a gateway stream.
    pub fn attach(&self, gateway_id: String, sender: AttachSender) -> GatewayLink {
        self.metrics.gateways.inc();
        GatewayLink {
            attach_id: self.next_attach_id.fetch_add(1, Ordering::Relaxed),
            gateway_id,
            sender,
            kick: CancellationToken::new(),
        }
    }

    /// Removes a gateway stream from the rooms it subscribed.
    pub fn detach(&self, link: &GatewayLink, rooms: impl IntoIterator<Item = String>) {
        for room_id in rooms {
            self.unsubscribe(link, &room_id);
        }
        self.metrics.gateways.dec();
    }

    /// Starts sending `room_id` to `link`, first with a `subscribed` event
    /// carrying the recent messages, queued under the room's lock so no batch
    /// can overtake it.
    pub fn subscribe(&self, link: &GatewayLink, room_id: &str) {
        let mut shard = self.rooms.lock(room_id);
        let room = shard
            .entry(room_id.to_owned())
            .or_insert_with(RoomState::fresh);
        if !room.gateways.iter().any(|g| g.attach_id == link.attach_id) {
            room.gateways.push(link.clone());
        }
        let event = RoomAttachResponse {
            event: Some(Event::Subscribed(RoomSubscribed {
                room_id: room_id.to_owned(),
                recent: room.recent.iter().cloned().collect(),
                last_seq: room.last_seq,
            })),
        };
        if !self.queue(link, event) {
            room.gateways.retain(|g| g.attach_id != link.attach_id);
        }
    }

    /// Stops sending `room_id` to `link`.
    pub fn unsubscribe(&self, link: &GatewayLink, room_id: &str) {
        let mut shard = self.rooms.lock(room_id);
        if let Some(room) = shard.get_mut(room_id) {
            room.gateways.retain(|g| g.attach_id != link.attach_id);
        }
    }

    /// Assigns the next sequence, records the message in the ring and queues
    /// it for every subscribed gateway. Returns the sequence.
    pub fn publish(&self, publish: Publish) -> u64 {
        let Publish {
            room_id,
            sender_user_id,
            kind,
            body,
            traceparent: (traceparent, tracestate),
        } = publish;
        let priority = priority_of(kind);
        let mut shard = self.rooms.lock(&room_id);
        let room = shard
            .entry(room_id.clone())
            .or_insert_with(RoomState::fresh);
        room.last_seq += 1;
        let message = RoomMessage {
            room_id: room_id.clone(),
            seq: room.last_seq,
            sender_user_id,
            kind: kind as i32,
            priority: priority as i32,
            body,
            sent_at_ms: unix_ms(),
        };
        room.recent.push_back(message.clone());
        while room.recent.len() > self.recent_messages {
            room.recent.pop_front();
        }
        let event = RoomAttachResponse {
            event: Some(Event::Batch(RoomBatch {
                room_id,
                messages: vec![message],
                traceparent,
                tracestate,
                ..Default::default()
            })),
        };
        let seq = room.last_seq;
        room.gateways.retain(|link| self.queue(link, event.clone()));
        self.metrics.published(priority);
        seq
    }

    /// The recent messages and last sequence of a room.
    pub fn recent(&self, room_id: &str) -> (Vec<RoomMessage>, u64) {
        let shard = self.rooms.lock(room_id);
        shard
            .get(room_id)
            .map(|room| (room.recent.iter().cloned().collect(), room.last_seq))
            .unwrap_or_default()
    }

    /// Queues an event for a gateway; false when the gateway is gone or too
    /// slow (its stream is then ended so it re-attaches and re-syncs).
    fn queue(&self, link: &GatewayLink, event: RoomAttachResponse) -> bool {
        match link.sender.try_send(Ok(event)) {
            Ok(()) => {
                self.metrics.events_sent.inc();
                true
            }
            Err(TrySendError::Full(_)) => {
                tracing::warn!(gateway = %link.gateway_id, "gateway too slow: ending its attach stream");
                self.metrics.gateways_kicked.inc();
                link.kick.cancel();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
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

    fn publish(router: &RoomRouter, room: &str, body: &str) -> u64 {
        router.publish(Publish {
            room_id: room.into(),
            sender_user_id: "u".into(),
            kind: RoomMessageKind::Comment,
            body: Bytes::from(body.to_owned()),
            traceparent: Default::default(),
        })
    }

    fn batch_seqs(event: RoomAttachResponse) -> Vec<u64> {
        match event.event {
            Some(Event::Batch(batch)) => batch.messages.iter().map(|m| m.seq).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn sequences_ring_and_subscriptions() {
        let router = RoomRouter::new(2, RoomMetrics::default());
        let first = publish(&router, "a", "1");
        assert_eq!(publish(&router, "a", "2"), first + 1);
        let other = publish(&router, "b", "x");
        assert_eq!(
            publish(&router, "b", "y"),
            other + 1,
            "each room counts on its own"
        );
        assert_eq!(publish(&router, "a", "3"), first + 2);
        let (recent, last) = router.recent("a");
        assert_eq!(last, first + 2);
        assert_eq!(
            recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![first + 1, first + 2],
            "ring keeps 2"
        );

        let (tx, mut rx) = mpsc::channel(8);
        let link = router.attach("gw".into(), tx);
        router.subscribe(&link, "a");
        match rx.try_recv().unwrap().unwrap().event {
            Some(Event::Subscribed(s)) => assert_eq!((s.last_seq, s.recent.len()), (first + 2, 2)),
            other => panic!("expected subscribed, got {other:?}"),
        }
        let fourth = publish(&router, "a", "4");
        publish(&router, "b", "not subscribed");
        assert_eq!(batch_seqs(rx.try_recv().unwrap().unwrap()), vec![fourth]);
        assert!(rx.try_recv().is_err(), "room b is not sent to this gateway");

        router.unsubscribe(&link, "a");
        publish(&router, "a", "5");
        assert!(rx.try_recv().is_err(), "nothing after unsubscribe");
    }

    #[test]
    fn a_fresh_owner_numbers_above_an_earlier_one() {
        let before = RoomRouter::new(2, RoomMetrics::default());
        let mut last = 0;
        for _ in 0..2000 {
            last = publish(&before, "a", "burst");
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
        let after = RoomRouter::new(2, RoomMetrics::default());
        assert!(publish(&after, "a", "next") > last);
        assert!(last < 1 << 53, "exact in JavaScript");
    }

    #[test]
    fn a_gateway_that_cannot_keep_up_is_kicked_not_waited_for() {
        let router = RoomRouter::new(4, RoomMetrics::default());
        let (tx, _rx) = mpsc::channel(1);
        let link = router.attach("slow".into(), tx);
        router.subscribe(&link, "a"); // fills the queue
        assert!(!link.kick.is_cancelled());
        let first = publish(&router, "a", "1");
        assert!(link.kick.is_cancelled(), "the full queue ends its stream");
        assert_eq!(
            publish(&router, "a", "2"),
            first + 1,
            "publishing goes on without it"
        );
    }
}
