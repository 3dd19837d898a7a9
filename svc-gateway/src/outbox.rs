//! `Outbox`: the bounded queue of one client stream, with lanes.
//!
//! Nothing ever waits on a slow device. When the queue is full, a normal or
//! low batch is dropped and counted (the device gets a `Missed` event once
//! there is room); a high-priority event evicts the oldest droppable one;
//! when nothing is droppable the stream is closed with RESOURCE_EXHAUSTED so
//! the device reconnects and pulls what it missed.

use crate::metrics::GatewayMetrics;
use hubbub_proto::{
    v1::{Missed, ServerEvent, server_event::Event},
    wire::EncodedEvent,
};
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};
use tokio_stream::Stream;
use tonic::Status;

/// How an event may be treated under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Likes, entrances: dropped first.
    Low,
    /// Comments: dropped when the device is behind.
    Normal,
    /// Gifts, co-streaming, system messages, notifies: never dropped; the
    /// stream closes instead.
    High,
}

#[derive(Debug)]
struct Queued {
    event: EncodedEvent,
    lane: Lane,
    room: Option<Arc<str>>,
    messages: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    /// Messages dropped per room, told to the device at the next chance.
    missed: Vec<(Arc<str>, u64)>,
    closing: Option<Closing>,
    /// The stream's task, parked until something is queued. Kept here, under
    /// the same lock as the queue, so a push can never miss a parked reader.
    reader: Option<Waker>,
}

#[derive(Debug)]
enum Closing {
    /// Flush what is queued, then end.
    Graceful,
    /// End now with this status (taken when sent).
    Failed(Option<Status>),
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
}

/// The sending side of a client stream; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    /// An outbox holding at most `capacity` events, and the stream that
    /// drains it (which keeps `guard` alive until the stream is dropped).
    pub fn new(capacity: usize, guard: impl Send + Sync + 'static) -> (Self, OutboxStream) {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            capacity: capacity.max(2),
        });
        let stream = OutboxStream {
            shared: shared.clone(),
            done: false,
            _guard: Box::new(guard),
        };
        (Self { shared }, stream)
    }

    /// Queues a room batch or notify in `lane`. False when it was not
    /// queued (dropped as a slow device's normal/low traffic, or closed).
    pub fn push(
        &self,
        event: EncodedEvent,
        lane: Lane,
        room: Option<Arc<str>>,
        messages: u64,
        metrics: &GatewayMetrics,
    ) -> bool {
        let mut state = self.lock();
        if state.closing.is_some() {
            return false;
        }
        if state.queue.len() >= self.shared.capacity {
            if lane < Lane::High {
                metrics.dropped.inc_by(messages);
                record_missed(&mut state.missed, room, messages);
                return false;
            }
            let Some(victim) = state.queue.iter().position(|queued| queued.lane < Lane::High) else {
                metrics.slow_closed.inc();
                state.closing = Some(Closing::Failed(Some(Status::resource_exhausted(
                    "this device did not read its stream fast enough: reconnect, re-join rooms and pull",
                ))));
                wake(state);
                return false;
            };
            let victim = state.queue.remove(victim).expect("position is in range");
            metrics.dropped.inc_by(victim.messages);
            record_missed(&mut state.missed, victim.room, victim.messages);
        }
        state.queue.push_back(Queued {
            event,
            lane,
            room,
            messages,
        });
        wake(state);
        true
    }

    /// Queues a control event (welcome, heartbeat, reconnect) only when
    /// there is room: a busy stream needs no heartbeat.
    pub fn offer(&self, event: EncodedEvent) {
        let mut state = self.lock();
        if state.closing.is_none() && state.queue.len() < self.shared.capacity {
            state.queue.push_back(Queued {
                event,
                lane: Lane::High,
                room: None,
                messages: 0,
            });
            wake(state);
        }
    }

    /// Ends the stream after what is queued.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closing.get_or_insert(Closing::Graceful);
        wake(state);
    }

    /// Ends the stream now with `status`, ahead of what is queued.
    pub fn fail(&self, status: Status) {
        let mut state = self.lock();
        if !matches!(state.closing, Some(Closing::Failed(_))) {
            state.closing = Some(Closing::Failed(Some(status)));
        }
        wake(state);
    }

    /// True once the stream is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Events queued now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Releases the lock, then wakes the parked reader, if any.
fn wake(mut state: MutexGuard<'_, State>) {
    let reader = state.reader.take();
    drop(state);
    if let Some(reader) = reader {
        reader.wake();
    }
}

fn record_missed(missed: &mut Vec<(Arc<str>, u64)>, room: Option<Arc<str>>, messages: u64) {
    let Some(room) = room else { return };
    match missed.iter_mut().find(|(id, _)| *id == room) {
        Some((_, count)) => *count += messages,
        None => missed.push((room, messages)),
    }
}

/// The response stream of `Connect`: drains an [`Outbox`].
pub struct OutboxStream {
    shared: Arc<Shared>,
    done: bool,
    _guard: Box<dyn Send + Sync>,
}

impl OutboxStream {
    /// The next item, or None after parking `waker` (under the queue's lock).
    fn next_ready(&self, waker: &Waker) -> Option<Option<Result<EncodedEvent, Status>>> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Closing::Failed(status)) = &mut state.closing {
            return Some(status.take().map(Err));
        }
        if !state.missed.is_empty() {
            let (room, count) = state.missed.remove(0);
            let event = ServerEvent {
                event: Some(Event::Missed(Missed {
                    room_id: room.to_string(),
                    count,
                })),
            };
            return Some(Some(Ok(EncodedEvent::encode(&event))));
        }
        if let Some(queued) = state.queue.pop_front() {
            return Some(Some(Ok(queued.event)));
        }
        if matches!(state.closing, Some(Closing::Graceful)) {
            return Some(None);
        }
        if !state.reader.as_ref().is_some_and(|parked| parked.will_wake(waker)) {
            state.reader = Some(waker.clone());
        }
        None
    }
}

impl Stream for OutboxStream {
    type Item = Result<EncodedEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.next_ready(cx.waker()) {
            Some(next) => {
                if next.as_ref().is_none_or(Result::is_err) {
                    self.done = true;
                }
                Poll::Ready(next)
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_proto::v1::Heartbeat;
    use prost::Message;
    use tokio_stream::StreamExt;

    fn event(n: i64) -> EncodedEvent {
        EncodedEvent::encode(&ServerEvent {
            event: Some(Event::Heartbeat(Heartbeat { server_time_ms: n })),
        })
    }

    fn decode(item: Option<Result<EncodedEvent, Status>>) -> Event {
        ServerEvent::decode(item.unwrap().unwrap().0).unwrap().event.unwrap()
    }

    #[tokio::test]
    async fn a_full_outbox_drops_normal_tells_the_device_and_keeps_high() {
        let metrics = GatewayMetrics::default();
        let (outbox, mut stream) = Outbox::new(2, ());
        let room: Arc<str> = "r".into();
        assert!(outbox.push(event(1), Lane::Normal, Some(room.clone()), 10, &metrics));
        assert!(outbox.push(event(2), Lane::High, Some(room.clone()), 1, &metrics));
        assert!(
            !outbox.push(event(3), Lane::Normal, Some(room.clone()), 5, &metrics),
            "dropped"
        );
        assert!(
            outbox.push(event(4), Lane::High, Some(room.clone()), 1, &metrics),
            "evicts the normal one"
        );
        assert_eq!(metrics.dropped.get(), 15);

        match decode(stream.next().await) {
            Event::Missed(missed) => assert_eq!((missed.room_id.as_str(), missed.count), ("r", 15)),
            other => panic!("expected Missed first, got {other:?}"),
        }
        for expected in [2, 4] {
            match decode(stream.next().await) {
                Event::Heartbeat(beat) => assert_eq!(beat.server_time_ms, expected),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn high_priority_that_cannot_fit_closes_the_stream_with_resource_exhausted() {
        let metrics = GatewayMetrics::default();
        let (outbox, mut stream) = Outbox::new(2, ());
        assert!(outbox.push(event(1), Lane::High, None, 1, &metrics));
        assert!(outbox.push(event(2), Lane::High, None, 1, &metrics));
        assert!(!outbox.push(event(3), Lane::High, None, 1, &metrics));
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
        assert_eq!(metrics.slow_closed.get(), 1);
    }

    #[tokio::test]
    async fn a_graceful_close_flushes_then_ends_and_wakes_a_waiting_reader() {
        let metrics = GatewayMetrics::default();
        let (outbox, mut stream) = Outbox::new(4, ());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = stream.next().await {
                got.push(item.unwrap());
            }
            got.len()
        });
        tokio::task::yield_now().await;
        outbox.push(event(1), Lane::Normal, None, 1, &metrics);
        outbox.close();
        assert!(!outbox.push(event(2), Lane::Normal, None, 1, &metrics), "closed");
        assert_eq!(reader.await.unwrap(), 1);
    }
}
