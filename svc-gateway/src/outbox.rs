//! `Outbox`: the bounded queue of one client stream, with lanes.
//!
//! Nothing ever waits on a slow device. When the queue is full, a normal or
//! low batch is dropped and counted (the device gets a `Missed` event once
//! there is room); a high-priority event evicts the oldest droppable one;
//! when nothing is droppable the stream is closed with RESOURCE_EXHAUSTED so
//! the device reconnects and pulls what it missed.
//!
//! A lean-path stream attaches its socket ([`OutboxStream::write_directly`]):
//! then an event that finds nothing queued ahead of it is written by the
//! pusher itself, with one non-blocking write of the event's shared chunk,
//! and the stream's task is never woken. Only what the socket does not take
//! at once is queued, and the task writes it when the socket drains.

use crate::metrics::GatewayMetrics;
use hubbub_proto::{
    v1::{Missed, ServerEvent, server_event::Event},
    wire::EncodedEvent,
};
use prost::bytes::Bytes;
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};
use tokio::net::TcpStream;
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
    /// The lean path's socket, written by pushers while nothing waits.
    direct: Option<Arc<TcpStream>>,
    /// The stream's task holds an event it has not finished writing: what
    /// comes next must queue behind it.
    writing: bool,
    /// The rest of a chunk a pusher began on the socket: written first,
    /// never dropped (the HTTP framing depends on it).
    rest: Option<Bytes>,
}

impl State {
    /// Writes `event` on the lean socket now, when nothing waits ahead of
    /// it. True when the socket took it (what it did not take of a chunk it
    /// began is kept in `rest` for the stream's task).
    fn write_now(&mut self, event: &EncodedEvent) -> bool {
        let Some(socket) = &self.direct else { return false };
        if self.writing || self.rest.is_some() || !self.queue.is_empty() || !self.missed.is_empty() {
            return false;
        }
        let chunk = event.chunk();
        match socket.try_write(chunk) {
            Ok(written) if written == chunk.len() => true,
            Ok(written) if written > 0 => {
                self.rest = Some(chunk.slice(written..));
                true
            }
            // Full (or broken): queued; the stream's task finds out which.
            _ => false,
        }
    }
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
        event: &EncodedEvent,
        lane: Lane,
        room: Option<&Arc<str>>,
        messages: u64,
        metrics: &GatewayMetrics,
    ) -> bool {
        let state = self.lock();
        if state.closing.is_some() {
            return false;
        }
        let Err(mut state) = written_directly(state, event) else {
            return true;
        };
        if state.queue.len() >= self.shared.capacity {
            if lane < Lane::High {
                metrics.dropped.inc_by(messages);
                record_missed(&mut state.missed, room.cloned(), messages);
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
            event: event.clone(),
            lane,
            room: room.cloned(),
            messages,
        });
        wake(state);
        true
    }

    /// Queues a control event (welcome, heartbeat, reconnect) only when
    /// there is room: a busy stream needs no heartbeat.
    pub fn offer(&self, event: &EncodedEvent) {
        let state = self.lock();
        if state.closing.is_some() {
            return;
        }
        let Err(mut state) = written_directly(state, event) else {
            return;
        };
        if state.queue.len() < self.shared.capacity {
            state.queue.push_back(Queued {
                event: event.clone(),
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

/// Writes `event` on the lean socket when nothing waits ahead of it (the
/// stream's task is woken only to finish a chunk the socket took part of);
/// the lock back when it was not written.
fn written_directly<'a>(mut state: MutexGuard<'a, State>, event: &EncodedEvent) -> Result<(), MutexGuard<'a, State>> {
    if !state.write_now(event) {
        return Err(state);
    }
    if state.rest.is_some() {
        wake(state);
    }
    Ok(())
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

/// What a stream yields next.
enum Next {
    Item(Item),
    Failed(Option<Status>),
    End,
}

/// Something to write.
enum Item {
    Event(EncodedEvent),
    /// The rest of a chunk already begun on the lean socket.
    Rest(Bytes),
}

impl OutboxStream {
    /// The next item, or None after parking `waker` (under the queue's lock).
    /// `lean`: the caller writes chunks, and takes a begun chunk's rest.
    fn next_ready(&self, waker: &Waker, lean: bool) -> Option<Next> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        // Before a failure too: a chunk begun on the wire must end whole.
        if lean && let Some(rest) = state.rest.take() {
            state.writing = true;
            return Some(Next::Item(Item::Rest(rest)));
        }
        if let Some(Closing::Failed(status)) = &mut state.closing {
            return Some(Next::Failed(status.take()));
        }
        if !state.missed.is_empty() {
            let (room, count) = state.missed.remove(0);
            let event = ServerEvent {
                event: Some(Event::Missed(Missed {
                    room_id: room.to_string(),
                    count,
                })),
            };
            state.writing = state.direct.is_some();
            return Some(Next::Item(Item::Event(EncodedEvent::encode(&event))));
        }
        if let Some(queued) = state.queue.pop_front() {
            state.writing = state.direct.is_some();
            return Some(Next::Item(Item::Event(queued.event)));
        }
        if matches!(state.closing, Some(Closing::Graceful)) {
            return Some(Next::End);
        }
        if !state.reader.as_ref().is_some_and(|parked| parked.will_wake(waker)) {
            state.reader = Some(waker.clone());
        }
        None
    }

    /// From now on, events that find nothing queued are written on `socket`
    /// by whoever pushes them; read the rest with [`Self::poll_chunk`].
    pub fn write_directly(&self, socket: Arc<TcpStream>) {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).direct = Some(socket);
    }

    /// The next event (or, for `lean`, a begun chunk's rest); an error or
    /// None ends the stream.
    fn poll_item(&mut self, cx: &mut Context<'_>, lean: bool) -> Poll<Option<Result<Item, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(next) = self.next_ready(cx.waker(), lean) else {
            return Poll::Pending;
        };
        Poll::Ready(match next {
            Next::Failed(status) => {
                self.done = true;
                status.map(Err)
            }
            Next::End => {
                self.done = true;
                None
            }
            Next::Item(item) => Some(Ok(item)),
        })
    }

    /// The lean path's next bytes to write: a whole chunk, or the rest of
    /// one a pusher began. Call [`Self::written`] once they are written.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Status>>> {
        let bytes = |item| match item {
            Item::Event(event) => event.chunk().clone(),
            Item::Rest(rest) => rest,
        };
        self.poll_item(cx, true).map(|next| next.map(|item| item.map(bytes)))
    }

    /// The bytes [`Self::poll_chunk`] gave are on the wire: pushers may
    /// write directly again once nothing else is queued.
    pub fn written(&self) {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).writing = false;
    }
}

impl Drop for OutboxStream {
    fn drop(&mut self) {
        // Nobody writes on a stream that ended; the socket closes with it.
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.direct = None;
        state.rest = None;
    }
}

impl Stream for OutboxStream {
    type Item = Result<EncodedEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_item(cx, false).map(|item| match item {
            Some(Ok(Item::Event(event))) => Some(Ok(event)),
            Some(Err(status)) => Some(Err(status)),
            // Never given to this reader (only a lean stream's pushers
            // begin chunks); should it be, the stream ends rather than
            // send a broken frame.
            Some(Ok(Item::Rest(_))) => {
                self.done = true;
                None
            }
            None => None,
        })
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
        ServerEvent::decode(item.unwrap().unwrap().message_bytes())
            .unwrap()
            .event
            .unwrap()
    }

    #[tokio::test]
    async fn a_full_outbox_drops_normal_tells_the_device_and_keeps_high() {
        let metrics = GatewayMetrics::default();
        let (outbox, mut stream) = Outbox::new(2, ());
        let room: Arc<str> = "r".into();
        assert!(outbox.push(&event(1), Lane::Normal, Some(&room), 10, &metrics));
        assert!(outbox.push(&event(2), Lane::High, Some(&room), 1, &metrics));
        assert!(
            !outbox.push(&event(3), Lane::Normal, Some(&room), 5, &metrics),
            "dropped"
        );
        assert!(
            outbox.push(&event(4), Lane::High, Some(&room), 1, &metrics),
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
        assert!(outbox.push(&event(1), Lane::High, None, 1, &metrics));
        assert!(outbox.push(&event(2), Lane::High, None, 1, &metrics));
        assert!(!outbox.push(&event(3), Lane::High, None, 1, &metrics));
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
        outbox.push(&event(1), Lane::Normal, None, 1, &metrics);
        outbox.close();
        assert!(!outbox.push(&event(2), Lane::Normal, None, 1, &metrics), "closed");
        assert_eq!(reader.await.unwrap(), 1);
    }
}
