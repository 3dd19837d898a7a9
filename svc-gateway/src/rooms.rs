//! `LocalRooms`: room -> local viewers, in sharded buckets. The gateway keeps
//! each held room's recent messages too (it sees all its traffic), so a join
//! to a room already held costs no call to the room service.

use crate::{
    batch::PreparedBatch,
    metrics::GatewayMetrics,
    outbox::{Lane, Outbox},
};
use hubbub_kit::sharded::Sharded;
use hubbub_proto::{
    v1::{RoomBatch, RoomMessage, RoomPresence, RoomSubscribed, ServerEvent, server_event::Event},
    wire::EncodedEvent,
};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};
use tokio::sync::oneshot;

/// What a joiner gets: the room's context, after which its stream continues.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Recent messages, ascending by seq.
    pub recent: Vec<RoomMessage>,
    /// The room's last seq.
    pub last_seq: u64,
    /// Local viewers, this one included.
    pub online: u64,
}

/// Outcome of adding a viewer.
#[derive(Debug)]
pub enum Joined {
    /// The room is live here: the snapshot is immediate.
    Ready(Snapshot),
    /// The room's subscription is on its way; `subscribe` is true for the
    /// joiner that must ask the room service for it.
    Pending {
        /// Resolves when the room service confirms.
        snapshot: oneshot::Receiver<Snapshot>,
        /// Send the subscription (first viewer of the room).
        subscribe: bool,
    },
}

#[derive(Debug, Default)]
struct LocalRoom {
    viewers: HashMap<Arc<str>, Outbox>,
    recent: VecDeque<RoomMessage>,
    last_seq: u64,
    live: bool,
    waiters: Vec<oneshot::Sender<Snapshot>>,
    /// Viewers who joined since the last presence report (unique viewers).
    new_viewers: Vec<String>,
    /// Viewers on all gateways, as presence last counted them.
    online_everywhere: u64,
}

impl LocalRoom {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            recent: self.recent.iter().cloned().collect(),
            last_seq: self.last_seq,
            online: (self.viewers.len() as u64).max(self.online_everywhere),
        }
    }

    fn remember(&mut self, messages: &[RoomMessage], keep: usize) {
        for message in messages {
            self.last_seq = self.last_seq.max(message.seq);
            self.recent.push_back(message.clone());
        }
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }

    /// Hands one prepared batch to every viewer; returns how many took it.
    fn fan_out(&self, batch: &PreparedBatch, metrics: &GatewayMetrics) -> u64 {
        let mut delivered = 0;
        for outbox in self.viewers.values() {
            let room = Some(batch.room_id.clone());
            if outbox.push(batch.event.clone(), batch.lane, room, batch.messages, metrics) {
                delivered += 1;
            }
        }
        metrics.deliveries.inc_by(delivered * batch.messages);
        delivered
    }
}

/// The rooms this replica holds viewers of.
#[derive(Debug)]
pub struct LocalRooms {
    // Why the fan-out runs under the room's shard lock: a joiner then either
    // finds a message in the snapshot or receives it, never both or neither.
    // The work under the lock is a non-blocking queue push per viewer.
    rooms: Sharded<HashMap<String, LocalRoom>>,
    keep_recent: usize,
    compress_above: usize,
    metrics: GatewayMetrics,
}

impl LocalRooms {
    /// Rooms keeping `keep_recent` messages each, compressing batches whose
    /// messages exceed `compress_above` bytes (0: never).
    pub fn new(keep_recent: usize, compress_above: usize, metrics: GatewayMetrics) -> Self {
        Self {
            rooms: Sharded::default(),
            keep_recent,
            compress_above,
            metrics,
        }
    }

    /// Adds a viewer (`viewer_id`: its user, or its device for a guest).
    pub fn join(&self, room_id: &str, session_id: Arc<str>, viewer_id: &str, outbox: Outbox) -> Joined {
        let mut shard = self.rooms.lock(room_id);
        let is_new = !shard.contains_key(room_id);
        let room = shard.entry(room_id.to_owned()).or_default();
        if is_new {
            self.metrics.rooms.inc();
        }
        if room.viewers.insert(session_id, outbox).is_none() {
            room.new_viewers.push(viewer_id.to_owned());
        }
        if room.live {
            return Joined::Ready(room.snapshot());
        }
        let (sender, receiver) = oneshot::channel();
        room.waiters.push(sender);
        Joined::Pending {
            snapshot: receiver,
            subscribe: is_new,
        }
    }

    /// Removes a viewer; true when the room has no viewer left here (the
    /// caller unsubscribes it).
    pub fn leave(&self, room_id: &str, session_id: &str) -> bool {
        let mut shard = self.rooms.lock(room_id);
        let Some(room) = shard.get_mut(room_id) else {
            return false;
        };
        room.viewers.remove(session_id);
        if !room.viewers.is_empty() {
            return false;
        }
        shard.remove(room_id);
        self.metrics.rooms.dec();
        true
    }

    /// Viewers of a room: presence's count over all gateways, or the local
    /// count when that is higher (presence lags by an interval).
    pub fn online(&self, room_id: &str) -> u64 {
        self.rooms
            .lock(room_id)
            .get(room_id)
            .map_or(0, |room| (room.viewers.len() as u64).max(room.online_everywhere))
    }

    /// Every held room with its local viewer count and the viewers who
    /// joined since the last call: one presence report's worth, whatever
    /// the churn in between.
    pub fn take_presence(&self) -> Vec<(String, u64, Vec<String>)> {
        let mut rooms = Vec::new();
        for mut shard in self.rooms.each() {
            for (room_id, room) in shard.iter_mut() {
                let new_viewers = std::mem::take(&mut room.new_viewers);
                rooms.push((room_id.clone(), room.viewers.len() as u64, new_viewers));
            }
        }
        rooms
    }

    /// Records presence's counts and pushes each room's count to its local
    /// viewers (encoded once per room; dropped first under pressure).
    pub fn push_online(&self, counts: &[(String, u64)]) {
        for (room_id, online) in counts {
            let mut shard = self.rooms.lock(room_id);
            let Some(room) = shard.get_mut(room_id) else { continue };
            room.online_everywhere = *online;
            let event = EncodedEvent::encode(&ServerEvent {
                event: Some(Event::RoomPresence(RoomPresence {
                    room_id: room_id.clone(),
                    online: (room.viewers.len() as u64).max(*online),
                })),
            });
            for outbox in room.viewers.values() {
                outbox.push(event.clone(), Lane::Low, None, 0, &self.metrics);
            }
        }
    }

    /// The room service confirmed a subscription: the room goes live, waiting
    /// joiners get their snapshot, and after a re-attach the viewers get the
    /// messages they missed meanwhile (as far as the ring reaches).
    pub fn on_subscribed(&self, subscribed: RoomSubscribed) {
        let mut shard = self.rooms.lock(&subscribed.room_id);
        let Some(room) = shard.get_mut(&subscribed.room_id) else {
            return; // everyone left before the answer came
        };
        if room.live {
            let missed: Vec<RoomMessage> = subscribed
                .recent
                .iter()
                .filter(|message| message.seq > room.last_seq)
                .cloned()
                .collect();
            if !missed.is_empty() {
                room.remember(&missed, self.keep_recent);
                let batch = RoomBatch {
                    room_id: subscribed.room_id.clone(),
                    messages: missed,
                    ..Default::default()
                };
                let prepared = PreparedBatch::new(batch, 0, self.compress_above);
                room.fan_out(&prepared, &self.metrics);
            }
            room.last_seq = subscribed.last_seq;
            return;
        }
        room.recent = subscribed.recent.into();
        while room.recent.len() > self.keep_recent {
            room.recent.pop_front();
        }
        room.last_seq = subscribed.last_seq;
        room.live = true;
        let snapshot = room.snapshot();
        for waiter in room.waiters.drain(..) {
            let _ = waiter.send(snapshot.clone());
        }
    }

    /// Writes a room batch to every local viewer of the room, encoded once
    /// (outside the lock). Returns the number of viewers written to.
    pub fn on_batch(&self, batch: RoomBatch) -> u64 {
        let prepared = PreparedBatch::new(batch, self.keep_recent, self.compress_above);
        let mut shard = self.rooms.lock(&prepared.room_id);
        let Some(room) = shard.get_mut(&*prepared.room_id) else {
            return 0;
        };
        room.remember(&prepared.tail, self.keep_recent);
        room.fan_out(&prepared, &self.metrics)
    }

    /// Rooms held here for which `keep` is true (re-subscription after a
    /// room instance comes back).
    pub fn room_ids(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut ids = Vec::new();
        for shard in self.rooms.each() {
            ids.extend(shard.keys().filter(|id| keep(id)).cloned());
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_proto::v1::{ServerEvent, server_event::Event};
    use prost::Message;
    use tokio_stream::StreamExt;

    fn message(seq: u64) -> RoomMessage {
        RoomMessage {
            room_id: "r".into(),
            seq,
            ..Default::default()
        }
    }

    async fn next_event(stream: &mut crate::outbox::OutboxStream) -> Event {
        let item = stream.next().await.unwrap().unwrap();
        ServerEvent::decode(item.0).unwrap().event.unwrap()
    }

    #[tokio::test]
    async fn joiners_wait_for_the_subscription_then_receive_batches() {
        let rooms = LocalRooms::new(2, 0, GatewayMetrics::default());
        let (outbox, mut stream) = Outbox::new(8, ());
        let Joined::Pending {
            mut snapshot,
            subscribe,
        } = rooms.join("r", "s1".into(), "u1", outbox.clone())
        else {
            panic!("a new room is pending");
        };
        assert!(subscribe);
        assert!(snapshot.try_recv().is_err());
        rooms.on_subscribed(RoomSubscribed {
            room_id: "r".into(),
            recent: vec![message(1), message(2), message(3)],
            last_seq: 3,
        });
        let snap = snapshot.try_recv().unwrap();
        assert_eq!((snap.last_seq, snap.recent.len(), snap.online), (3, 2, 1));

        assert_eq!(
            rooms.on_batch(RoomBatch {
                room_id: "r".into(),
                messages: vec![message(4)],
                ..Default::default()
            }),
            1
        );
        assert!(matches!(next_event(&mut stream).await, Event::RoomBatch(_)));

        let Joined::Ready(snap) = rooms.join("r", "s2".into(), "u2", outbox) else {
            panic!("live room answers at once")
        };
        assert_eq!(snap.last_seq, 4);
        assert!(!rooms.leave("r", "s1"));
        assert!(rooms.leave("r", "s2"), "last viewer out empties the room");
        assert_eq!(rooms.online("r"), 0);
    }

    #[tokio::test]
    async fn a_resubscription_delivers_what_was_missed() {
        let rooms = LocalRooms::new(10, 0, GatewayMetrics::default());
        let (outbox, mut stream) = Outbox::new(8, ());
        let _ = rooms.join("r", "s".into(), "u", outbox);
        rooms.on_subscribed(RoomSubscribed {
            room_id: "r".into(),
            recent: vec![message(1)],
            last_seq: 1,
        });
        rooms.on_subscribed(RoomSubscribed {
            room_id: "r".into(),
            recent: vec![message(1), message(2), message(3)],
            last_seq: 3,
        });
        match next_event(&mut stream).await {
            Event::RoomBatch(batch) => {
                assert_eq!(batch.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3])
            }
            other => panic!("expected the missed batch, got {other:?}"),
        }
    }
}
