//! `RoomRouter`: the rooms this instance owns and the gateways attached to
//! them. It numbers each room's messages, gathers them into one batch per
//! room per window, and queues each batch for exactly the gateways that
//! subscribed the room.

use crate::{
    config::RoomConfig,
    metrics::RoomMetrics,
    priority::priority_of,
    room_state::{Accepted, Incoming, RoomState},
};
use hubbub_kit::sharded::Sharded;
use hubbub_proto::v1::{
    RoomAttachResponse, RoomBatch, RoomMessage, RoomMessageKind, RoomSubscribed, room_attach_response::Event,
};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
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
    /// The message.
    pub message: Incoming,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// The room is above its publish cap.
    OverCap(OverCap),
    /// The room is new and this instance holds as many rooms as it may.
    TooManyRooms(usize),
}

/// A room above its publish cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverCap {
    /// When the room takes a message again.
    pub retry_after: Duration,
    /// The cap that was hit, per second.
    pub cap_per_sec: f64,
}

#[derive(Debug, Default)]
struct RoomShard {
    rooms: HashMap<String, RoomState>,
    /// Rooms with a pending batch, flushed at the next window.
    dirty: Vec<String>,
}

/// The rooms of this instance.
#[derive(Debug)]
pub struct RoomRouter {
    // Why sharded mutexes: a publish holds its room's lock while it numbers
    // the message and, for a flush, queues to every gateway, which is what
    // keeps per-room order; rooms in other shards proceed in parallel.
    rooms: Sharded<RoomShard>,
    /// Rooms held, against `config.max_rooms`: room ids come from callers,
    /// so the map must not grow with every id anyone names.
    held: AtomicUsize,
    config: Arc<RoomConfig>,
    next_attach_id: AtomicU64,
    metrics: RoomMetrics,
}

impl RoomRouter {
    /// A router with `config`'s ring size, batching and limits.
    pub fn new(config: Arc<RoomConfig>, metrics: RoomMetrics) -> Self {
        Self {
            rooms: Sharded::default(),
            held: AtomicUsize::new(0),
            config,
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
    pub fn subscribe(&self, link: &GatewayLink, room_id: &str) -> Result<(), Refused> {
        let mut shard = self.rooms.lock(room_id);
        let room = self.room(&mut shard, room_id)?;
        room.last_active = Instant::now();
        if !room.gateways.iter().any(|g| g.attach_id == link.attach_id) {
            room.gateways.push(link.clone());
        }
        let event = RoomAttachResponse {
            event: Some(Event::Subscribed(RoomSubscribed {
                room_id: room_id.to_owned(),
                recent: room.recent.iter().cloned().collect(),
                last_seq: room.sealed_seq,
                ring_after_seq: room.ring_after_seq,
            })),
        };
        if !self.queue(link, event) {
            room.gateways.retain(|g| g.attach_id != link.attach_id);
        }
        Ok(())
    }

    /// Stops sending `room_id` to `link`.
    pub fn unsubscribe(&self, link: &GatewayLink, room_id: &str) {
        let mut shard = self.rooms.lock(room_id);
        if let Some(room) = shard.rooms.get_mut(room_id) {
            room.gateways.retain(|g| g.attach_id != link.attach_id);
        }
    }

    /// Numbers a message and puts it in its lane; a high-priority message or
    /// a full batch is sent at once, the rest at the next window. Returns the
    /// sequence, or the cap that refused it.
    pub fn publish(&self, publish: Publish) -> Result<u64, Refused> {
        let Publish { room_id, message } = publish;
        let now = Instant::now();
        let kind = message.kind;
        let mut shard = self.rooms.lock(&room_id);
        let room = self.room(&mut shard, &room_id)?;
        if let Err(retry_after) = room.admit(kind, now) {
            self.metrics.refused.inc();
            return Err(Refused::OverCap(OverCap {
                retry_after,
                cap_per_sec: self.config.limits_of(&room_id).publish_cap_per_sec,
            }));
        }
        let (seq, accepted) = room.accept(&room_id, message, self.config.max_batch_messages, now);
        self.metrics.published(priority_of(kind));
        let flush_now = match accepted {
            Accepted::FlushNow => true,
            Accepted::Urgent => self.config.high_window_ms == 0,
            Accepted::Sampled => {
                self.metrics.sampled.inc();
                false
            }
            Accepted::Coalesced => {
                self.metrics.coalesced.inc();
                false
            }
            Accepted::Queued => false,
        };
        if flush_now {
            self.flush(room, &room_id);
        } else if accepted != Accepted::Sampled && !room.dirty {
            room.dirty = true;
            shard.dirty.push(room_id);
        }
        Ok(seq)
    }

    /// Sends the batches that are due: those holding a high-priority message
    /// (after the high window), and the others once their window is over.
    /// Called on every tick of the flusher.
    pub fn flush_due(&self) {
        self.flush_where(|room, now| {
            let Some(since) = room.pending_since else { return true };
            let waited = now.saturating_duration_since(since);
            let window = if room.urgent {
                self.config.high_window_ms
            } else {
                self.config.batch_window_ms
            };
            waited >= Duration::from_millis(window)
        });
    }

    /// Forgets rooms that nobody watches and nobody wrote to for `idle`, so
    /// memory follows the live rooms rather than every room ever used.
    /// Returns how many were forgotten.
    pub fn forget_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut forgotten = 0;
        for mut shard in self.rooms.each() {
            let before = shard.rooms.len();
            shard.rooms.retain(|_, room| !room.is_forgettable(now, idle));
            forgotten += before - shard.rooms.len();
        }
        self.held.fetch_sub(forgotten, Ordering::AcqRel);
        forgotten
    }

    /// Rooms held now.
    pub fn len(&self) -> usize {
        self.rooms.each().map(|shard| shard.rooms.len()).sum()
    }

    /// True when no room is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends every pending batch now (tests, shutdown).
    pub fn flush_all(&self) {
        self.flush_where(|_, _| true);
    }

    fn flush_where(&self, due: impl Fn(&RoomState, Instant) -> bool) {
        let now = Instant::now();
        for mut shard in self.rooms.each() {
            let shard = &mut *shard;
            let mut waiting = Vec::new();
            for room_id in std::mem::take(&mut shard.dirty) {
                let Some(room) = shard.rooms.get_mut(&room_id) else {
                    continue;
                };
                if due(room, now) {
                    room.dirty = false;
                    self.flush(room, &room_id);
                } else {
                    waiting.push(room_id);
                }
            }
            shard.dirty = waiting;
        }
    }

    /// The recent messages and last sequence of a room.
    pub fn recent(&self, room_id: &str) -> (Vec<RoomMessage>, u64) {
        let shard = self.rooms.lock(room_id);
        shard
            .rooms
            .get(room_id)
            .map(|room| (room.recent.iter().cloned().collect(), room.last_seq))
            .unwrap_or_default()
    }

    fn room<'a>(&self, shard: &'a mut RoomShard, room_id: &str) -> Result<&'a mut RoomState, Refused> {
        if !shard.rooms.contains_key(room_id) {
            let max = self.config.max_rooms;
            self.held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
                .map_err(|_| Refused::TooManyRooms(max))?;
            shard
                .rooms
                .insert(room_id.to_owned(), RoomState::fresh(self.config.limits_of(room_id)));
        }
        Ok(shard.rooms.get_mut(room_id).expect("present or just inserted"))
    }

    fn flush(&self, room: &mut RoomState, room_id: &str) {
        let Some(batch) = room.take_batch(room_id, self.config.recent_messages) else {
            return;
        };
        self.metrics.batches.inc();
        self.send_batch(room, batch);
    }

    fn send_batch(&self, room: &mut RoomState, batch: RoomBatch) {
        let event = RoomAttachResponse {
            event: Some(Event::Batch(batch)),
        };
        room.gateways.retain(|link| self.queue(link, event.clone()));
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

/// Sends batches as they fall due, ticking every `tick`, and forgets rooms
/// idle for `idle_room`, until `shutdown`.
pub async fn run_flusher(router: Arc<RoomRouter>, tick: Duration, idle_room: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(tick.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                router.flush_due();
                if last_sweep.elapsed() >= idle_room.min(Duration::from_secs(10)) {
                    last_sweep = Instant::now();
                    router.forget_idle(idle_room);
                }
            }
            _ = shutdown.cancelled() => {
                router.flush_all();
                return;
            }
        }
    }
}

/// A message of `kind` from `sender`, untraced (tests and benchmarks).
pub fn incoming(sender: &str, kind: RoomMessageKind, body: &str) -> Incoming {
    Incoming {
        sender_user_id: sender.to_owned(),
        kind,
        body: prost::bytes::Bytes::copy_from_slice(body.as_bytes()),
        trace: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> RoomRouter {
        let config = RoomConfig {
            recent_messages: 2,
            high_window_ms: 10,
            ..RoomConfig::default()
        };
        RoomRouter::new(Arc::new(config), RoomMetrics::default())
    }

    fn publish(router: &RoomRouter, room: &str, kind: RoomMessageKind, body: &str) -> u64 {
        router
            .publish(Publish {
                room_id: room.into(),
                message: incoming("u", kind, body),
            })
            .unwrap()
    }

    #[test]
    fn an_instance_holds_at_most_max_rooms() {
        let config = RoomConfig {
            max_rooms: 2,
            ..RoomConfig::default()
        };
        let router = RoomRouter::new(Arc::new(config), RoomMetrics::default());
        comment(&router, "a", "1");
        comment(&router, "b", "1");
        let refused = router.publish(Publish {
            room_id: "c".into(),
            message: incoming("u", RoomMessageKind::Comment, "1"),
        });
        assert_eq!(refused, Err(Refused::TooManyRooms(2)));
        comment(&router, "a", "still fine");
        router.flush_all();
        assert_eq!(router.forget_idle(Duration::ZERO), 2);
        comment(&router, "c", "room again");
    }

    fn comment(router: &RoomRouter, room: &str, body: &str) -> u64 {
        publish(router, room, RoomMessageKind::Comment, body)
    }

    fn batch_seqs(event: RoomAttachResponse) -> Vec<u64> {
        match event.event {
            Some(Event::Batch(batch)) => batch.messages.iter().map(|m| m.seq).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn sequences_batches_ring_and_subscriptions() {
        let router = router();
        let first = comment(&router, "a", "1");
        assert_eq!(comment(&router, "a", "2"), first + 1);
        let other = comment(&router, "b", "x");
        assert_eq!(comment(&router, "b", "y"), other + 1, "each room counts on its own");
        assert_eq!(comment(&router, "a", "3"), first + 2);
        assert_eq!(router.recent("a").0.len(), 0, "nothing delivered before the window");
        router.flush_all();
        let (recent, last) = router.recent("a");
        assert_eq!(last, first + 2);
        assert_eq!(
            recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![first + 1, first + 2],
            "ring keeps 2"
        );

        let (tx, mut rx) = mpsc::channel(8);
        let link = router.attach("gw".into(), tx);
        let _ = router.subscribe(&link, "a");
        match rx.try_recv().unwrap().unwrap().event {
            Some(Event::Subscribed(s)) => assert_eq!((s.last_seq, s.recent.len()), (first + 2, 2)),
            other => panic!("expected subscribed, got {other:?}"),
        }
        let fourth = comment(&router, "a", "4");
        let fifth = comment(&router, "a", "5");
        comment(&router, "b", "not subscribed");
        assert!(rx.try_recv().is_err(), "gathered until the window ends");
        router.flush_all();
        assert_eq!(
            batch_seqs(rx.try_recv().unwrap().unwrap()),
            vec![fourth, fifth],
            "one batch"
        );
        assert!(rx.try_recv().is_err(), "room b is not sent to this gateway");

        router.unsubscribe(&link, "a");
        comment(&router, "a", "6");
        router.flush_all();
        assert!(rx.try_recv().is_err(), "nothing after unsubscribe");
    }

    #[test]
    fn high_priority_goes_within_the_high_window_and_takes_the_pending_batch_along() {
        let router = router();
        let (tx, mut rx) = mpsc::channel(8);
        let link = router.attach("gw".into(), tx);
        let _ = router.subscribe(&link, "a");
        let _ = rx.try_recv();
        let comment_seq = comment(&router, "a", "c");
        let gift_seq = publish(&router, "a", RoomMessageKind::Gift, "g");
        assert!(rx.try_recv().is_err(), "within the high window");
        std::thread::sleep(Duration::from_millis(12));
        router.flush_due();
        assert_eq!(
            batch_seqs(rx.try_recv().unwrap().unwrap()),
            vec![comment_seq, gift_seq],
            "no batch-window wait, order kept"
        );
    }

    #[test]
    fn idle_unwatched_rooms_are_forgotten_and_numbering_still_increases() {
        let router = router();
        let (tx, _rx) = mpsc::channel(8);
        let link = router.attach("gw".into(), tx);
        let _ = router.subscribe(&link, "watched");
        let seq = comment(&router, "idle", "x");
        assert_eq!(router.forget_idle(Duration::ZERO), 0, "a pending batch keeps the room");
        router.flush_all();
        assert_eq!(router.forget_idle(Duration::from_secs(60)), 0, "recently active");
        assert_eq!(router.forget_idle(Duration::ZERO), 1, "only the unwatched room goes");
        assert_eq!(router.len(), 1);
        std::thread::sleep(Duration::from_millis(2));
        assert!(comment(&router, "idle", "again") > seq);
    }

    #[test]
    fn a_fresh_owner_numbers_above_an_earlier_one() {
        let before = router();
        let mut last = 0;
        for _ in 0..2000 {
            last = comment(&before, "a", "burst");
        }
        std::thread::sleep(Duration::from_millis(3));
        let after = router();
        assert!(comment(&after, "a", "next") > last);
        assert!(last < 1 << 53, "exact in JavaScript");
    }

    #[test]
    fn a_gateway_that_cannot_keep_up_is_kicked_not_waited_for() {
        let router = router();
        let (tx, _rx) = mpsc::channel(1);
        let link = router.attach("slow".into(), tx);
        let _ = router.subscribe(&link, "a"); // fills the queue
        assert!(!link.kick.is_cancelled());
        let first = publish(&router, "a", RoomMessageKind::Gift, "1");
        router.flush_all();
        assert!(link.kick.is_cancelled(), "the full queue ends its stream");
        assert_eq!(
            publish(&router, "a", RoomMessageKind::Gift, "2"),
            first + 1,
            "publishing goes on without it"
        );
    }
}
