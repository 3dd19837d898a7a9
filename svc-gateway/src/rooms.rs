//! `LocalRooms`: room -> local viewers. The map of rooms is sharded; each
//! room has a lock of its own, so the fan-out of one room never holds up
//! joins, leaves or batches of the rooms beside it. The gateway keeps each
//! held room's recent messages too (it sees all its traffic), so a join to a
//! room already held costs no call to the room service.
//!
//! Invariants, per room, as viewers see it:
//! - sequences only increase: a message at or below the last seq delivered
//!   (a late batch from a room's previous owner) is dropped;
//! - no silent gap: when a re-subscription shows that the owner's ring no
//!   longer reaches back to the last seq delivered here, viewers get a
//!   `RoomGap` with the range they may have missed.

use crate::{
    batch::PreparedBatch,
    metrics::GatewayMetrics,
    outbox::{Lane, Outbox},
    spread,
};
use hubbub_kit::sharded::Sharded;
use hubbub_proto::{
    v1::{RoomBatch, RoomGap, RoomMessage, RoomPresence, RoomSubscribed, ServerEvent, server_event::Event},
    wire::EncodedEvent,
};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
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
    /// Set when the room left the map: a joiner holding it must look again.
    removed: bool,
    waiters: Vec<oneshot::Sender<Snapshot>>,
    /// Viewers who joined since the last presence report (unique viewers);
    /// only kept when presence is configured.
    new_viewers: Vec<String>,
    /// Viewers on all gateways, as presence last counted them.
    online_everywhere: u64,
}

/// One room and its own lock. Why a lock per room: the fan-out of a big
/// room is long, and under it a joiner either finds a message in the
/// snapshot or receives it, never both or neither.
#[derive(Debug, Default)]
struct RoomCell(Mutex<LocalRoom>);

impl RoomCell {
    fn lock(&self) -> MutexGuard<'_, LocalRoom> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
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

    /// Hands one prepared batch to every viewer, a big room's viewers over
    /// up to `threads` threads; returns how many took it.
    fn fan_out(&self, batch: &PreparedBatch, threads: usize, metrics: &GatewayMetrics) -> u64 {
        let push = |outbox: &&Outbox| {
            u64::from(outbox.push(&batch.event, batch.lane, Some(&batch.room_id), batch.messages, metrics))
        };
        let delivered = if self.viewers.len() >= 2 * spread::MIN_PER_THREAD && threads > 1 {
            let viewers: Vec<&Outbox> = self.viewers.values().collect();
            spread::spread(&viewers, threads, push)
        } else {
            self.viewers.values().map(|outbox| push(&outbox)).sum()
        };
        metrics.deliveries.inc_by(delivered * batch.messages);
        if batch.compressed {
            metrics.compressed_batches.inc();
        }
        delivered
    }

    /// Tells every viewer that seqs in `(after, until]` may never arrive.
    fn announce_gap(&self, room_id: &str, after: u64, until: u64, metrics: &GatewayMetrics) {
        metrics.room_gaps.inc();
        let event = EncodedEvent::encode(&ServerEvent {
            event: Some(Event::RoomGap(RoomGap {
                room_id: room_id.to_owned(),
                after_seq: after,
                until_seq: until,
            })),
        });
        // High: a gap notice is what lets a viewer recover; never dropped.
        for outbox in self.viewers.values() {
            outbox.push(&event, Lane::High, None, 0, metrics);
        }
    }
}

/// The rooms this replica holds viewers of.
#[derive(Debug)]
pub struct LocalRooms {
    rooms: Sharded<HashMap<String, Arc<RoomCell>>>,
    keep_recent: usize,
    compress_above: usize,
    /// Threads one batch's fan-out may use.
    fanout_threads: usize,
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
            fanout_threads: 1,
            metrics,
        }
    }

    /// Lets one batch's fan-out use up to `threads` threads.
    pub fn with_fanout_threads(mut self, threads: usize) -> Self {
        self.fanout_threads = threads.max(1);
        self
    }

    fn cell(&self, room_id: &str) -> Option<Arc<RoomCell>> {
        self.rooms.lock(room_id).get(room_id).cloned()
    }

    /// Adds a viewer. `viewer_id` (its user or guest id) is remembered for
    /// the next presence report when given.
    pub fn join(&self, room_id: &str, session_id: Arc<str>, viewer_id: Option<&str>, outbox: Outbox) -> Joined {
        loop {
            let (cell, is_new) = {
                let mut shard = self.rooms.lock(room_id);
                match shard.get(room_id) {
                    Some(cell) => (cell.clone(), false),
                    None => {
                        let cell = Arc::new(RoomCell::default());
                        shard.insert(room_id.to_owned(), cell.clone());
                        self.metrics.rooms.inc();
                        (cell, true)
                    }
                }
            };
            let mut room = cell.lock();
            if room.removed {
                continue; // emptied and dropped meanwhile: take the new one
            }
            if room.viewers.insert(session_id.clone(), outbox.clone()).is_none()
                && let Some(viewer_id) = viewer_id
            {
                room.new_viewers.push(viewer_id.to_owned());
            }
            if room.live {
                return Joined::Ready(room.snapshot());
            }
            // Joiners that gave up waiting leave their senders behind.
            room.waiters.retain(|waiter| !waiter.is_closed());
            let (sender, receiver) = oneshot::channel();
            room.waiters.push(sender);
            return Joined::Pending {
                snapshot: receiver,
                subscribe: is_new,
            };
        }
    }

    /// Removes a viewer; true when the room has no viewer left here (the
    /// caller unsubscribes it).
    pub fn leave(&self, room_id: &str, session_id: &str) -> bool {
        let Some(cell) = self.cell(room_id) else {
            return false;
        };
        let mut room = cell.lock();
        room.viewers.remove(session_id);
        if !room.viewers.is_empty() || room.removed {
            return false;
        }
        room.removed = true;
        // Room lock, then shard lock: no path takes them the other way round.
        let mut shard = self.rooms.lock(room_id);
        if shard.get(room_id).is_some_and(|held| Arc::ptr_eq(held, &cell)) {
            shard.remove(room_id);
            self.metrics.rooms.dec();
        }
        true
    }

    /// Viewers of a room: presence's count over all gateways, or the local
    /// count when that is higher (presence lags by an interval).
    pub fn online(&self, room_id: &str) -> u64 {
        self.cell(room_id).map_or(0, |cell| {
            let room = cell.lock();
            (room.viewers.len() as u64).max(room.online_everywhere)
        })
    }

    fn cells(&self) -> Vec<(String, Arc<RoomCell>)> {
        let mut cells = Vec::new();
        for shard in self.rooms.each() {
            cells.extend(shard.iter().map(|(id, cell)| (id.clone(), cell.clone())));
        }
        cells
    }

    /// Every held room with its local viewer count and the viewers who
    /// joined since the last call: one presence report's worth, whatever
    /// the churn in between.
    pub fn take_presence(&self) -> Vec<(String, u64, Vec<String>)> {
        self.cells()
            .into_iter()
            .map(|(room_id, cell)| {
                let mut room = cell.lock();
                let new_viewers = std::mem::take(&mut room.new_viewers);
                (room_id, room.viewers.len() as u64, new_viewers)
            })
            .collect()
    }

    /// Records presence's counts (online, unique viewers) and pushes each
    /// room's to its local viewers (encoded once per room; dropped first
    /// under pressure).
    pub fn push_online(&self, counts: &[(String, u64, u64)]) {
        for (room_id, online, unique_viewers) in counts {
            let Some(cell) = self.cell(room_id) else { continue };
            let mut room = cell.lock();
            room.online_everywhere = *online;
            let event = EncodedEvent::encode(&ServerEvent {
                event: Some(Event::RoomPresence(RoomPresence {
                    room_id: room_id.clone(),
                    online: (room.viewers.len() as u64).max(*online),
                    unique_viewers: *unique_viewers,
                })),
            });
            for outbox in room.viewers.values() {
                outbox.push(&event, Lane::Low, None, 0, &self.metrics);
            }
        }
    }

    /// The room service confirmed a subscription: the room goes live and
    /// waiting joiners get their snapshot. After a re-attach or a move the
    /// viewers get what they missed as far as the owner's ring reaches, and
    /// a `RoomGap` for what lies beyond it.
    pub fn on_subscribed(&self, subscribed: RoomSubscribed) {
        let Some(cell) = self.cell(&subscribed.room_id) else {
            return; // everyone left before the answer came
        };
        let mut room = cell.lock();
        if room.live {
            if room.last_seq < subscribed.ring_after_seq {
                room.announce_gap(
                    &subscribed.room_id,
                    room.last_seq,
                    subscribed.ring_after_seq,
                    &self.metrics,
                );
            }
            let missed: Vec<RoomMessage> = subscribed
                .recent
                .into_iter()
                .filter(|message| message.seq > room.last_seq)
                .collect();
            if !missed.is_empty() {
                room.remember(&missed, self.keep_recent);
                let batch = RoomBatch {
                    room_id: subscribed.room_id.clone(),
                    messages: missed,
                    ..Default::default()
                };
                let prepared = PreparedBatch::new(batch, 0, self.compress_above);
                room.fan_out(&prepared, self.fanout_threads, &self.metrics);
            }
            room.last_seq = room.last_seq.max(subscribed.last_seq);
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

    /// Writes a room batch to every local viewer of the room, encoded once,
    /// after dropping messages at or below the last seq delivered. Returns
    /// the number of viewers written to.
    pub fn on_batch(&self, mut batch: RoomBatch) -> u64 {
        let Some(cell) = self.cell(&batch.room_id) else {
            return 0;
        };
        let mut room = cell.lock();
        if !room.live {
            return 0; // the subscription's answer, with its ring, comes first
        }
        let before = batch.messages.len();
        let last_seq = room.last_seq;
        batch.messages.retain(|message| message.seq > last_seq);
        let stale = (before - batch.messages.len()) as u64;
        if stale > 0 {
            self.metrics.stale_dropped.inc_by(stale);
        }
        if batch.messages.is_empty() && (stale > 0 || batch.coalesced.is_empty()) {
            return 0;
        }
        let prepared = PreparedBatch::new(batch, self.keep_recent, self.compress_above);
        room.remember(&prepared.tail, self.keep_recent);
        room.fan_out(&prepared, self.fanout_threads, &self.metrics)
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

    fn batch(seqs: &[u64]) -> RoomBatch {
        RoomBatch {
            room_id: "r".into(),
            messages: seqs.iter().copied().map(message).collect(),
            ..Default::default()
        }
    }

    fn subscribed(recent: &[u64], last_seq: u64, ring_after_seq: u64) -> RoomSubscribed {
        RoomSubscribed {
            room_id: "r".into(),
            recent: recent.iter().copied().map(message).collect(),
            last_seq,
            ring_after_seq,
        }
    }

    async fn next_event(stream: &mut crate::outbox::OutboxStream) -> Event {
        let item = stream.next().await.unwrap().unwrap();
        ServerEvent::decode(item.message_bytes()).unwrap().event.unwrap()
    }

    fn seqs(event: Event) -> Vec<u64> {
        match event {
            Event::RoomBatch(batch) => batch.messages.iter().map(|m| m.seq).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn joiners_wait_for_the_subscription_then_receive_batches() {
        let rooms = LocalRooms::new(2, 0, GatewayMetrics::default());
        let (outbox, mut stream) = Outbox::new(8, ());
        let Joined::Pending {
            mut snapshot,
            subscribe,
        } = rooms.join("r", "s1".into(), Some("u1"), outbox.clone())
        else {
            panic!("a new room is pending");
        };
        assert!(subscribe);
        assert!(snapshot.try_recv().is_err());
        rooms.on_subscribed(subscribed(&[1, 2, 3], 3, 0));
        let snap = snapshot.try_recv().unwrap();
        assert_eq!((snap.last_seq, snap.recent.len(), snap.online), (3, 2, 1));

        assert_eq!(rooms.on_batch(batch(&[4])), 1);
        assert!(matches!(next_event(&mut stream).await, Event::RoomBatch(_)));

        let Joined::Ready(snap) = rooms.join("r", "s2".into(), Some("u2"), outbox) else {
            panic!("live room answers at once")
        };
        assert_eq!(snap.last_seq, 4);
        assert!(!rooms.leave("r", "s1"));
        assert!(rooms.leave("r", "s2"), "last viewer out empties the room");
        assert_eq!(rooms.online("r"), 0);
        assert!(rooms.room_ids(|_| true).is_empty());
    }

    #[tokio::test]
    async fn a_resubscription_delivers_what_was_missed() {
        let rooms = LocalRooms::new(10, 0, GatewayMetrics::default());
        let (outbox, mut stream) = Outbox::new(8, ());
        let _ = rooms.join("r", "s".into(), None, outbox);
        rooms.on_subscribed(subscribed(&[1], 1, 0));
        rooms.on_subscribed(subscribed(&[1, 2, 3], 3, 0));
        assert_eq!(seqs(next_event(&mut stream).await), vec![2, 3]);
    }

    #[tokio::test]
    async fn a_hole_the_ring_cannot_fill_reaches_viewers_as_a_gap() {
        let metrics = GatewayMetrics::default();
        let rooms = LocalRooms::new(10, 0, metrics.clone());
        let (outbox, mut stream) = Outbox::new(8, ());
        let _ = rooms.join("r", "s".into(), None, outbox);
        rooms.on_subscribed(subscribed(&[], 10, 0));
        rooms.on_batch(batch(&[11]));
        assert_eq!(seqs(next_event(&mut stream).await), vec![11]);
        // The owner restarted: its ring starts above what we saw.
        rooms.on_subscribed(subscribed(&[5001, 5002], 5002, 5000));
        match next_event(&mut stream).await {
            Event::RoomGap(gap) => assert_eq!((gap.after_seq, gap.until_seq), (11, 5000)),
            other => panic!("expected a gap, got {other:?}"),
        }
        assert_eq!(seqs(next_event(&mut stream).await), vec![5001, 5002]);
        assert_eq!(metrics.room_gaps.get(), 1);
    }

    #[tokio::test]
    async fn stale_messages_from_a_previous_owner_are_dropped() {
        let metrics = GatewayMetrics::default();
        let rooms = LocalRooms::new(10, 0, metrics.clone());
        let (outbox, mut stream) = Outbox::new(8, ());
        let _ = rooms.join("r", "s".into(), None, outbox);
        rooms.on_subscribed(subscribed(&[], 100, 0));
        assert_eq!(rooms.on_batch(batch(&[101, 102])), 1);
        assert_eq!(rooms.on_batch(batch(&[90, 102])), 0, "nothing new");
        assert_eq!(rooms.on_batch(batch(&[99, 103])), 1);
        assert_eq!(seqs(next_event(&mut stream).await), vec![101, 102]);
        assert_eq!(seqs(next_event(&mut stream).await), vec![103]);
        assert_eq!(metrics.stale_dropped.get(), 3);
    }

    #[test]
    fn joiners_that_gave_up_leave_no_waiter_behind() {
        let rooms = LocalRooms::new(2, 0, GatewayMetrics::default());
        for i in 0..100 {
            let (outbox, _stream) = Outbox::new(2, ());
            let joined = rooms.join("r", format!("s{i}").into(), None, outbox);
            drop(joined); // the join timed out
        }
        let cell = rooms.cell("r").unwrap();
        assert!(cell.lock().waiters.len() <= 1);
        assert!(cell.lock().new_viewers.is_empty(), "nothing kept without presence");
    }
}
