//! `Deliveries`: a few workers that write room traffic to local viewers, so
//! the attach stream of a room instance never waits on one room's fan-out.
//!
//! Each room is always handled by the same worker (by a hash of its id),
//! which keeps every room's events in order (a subscription's answer before
//! its batches, batches in sequence), while a huge room holds up only the
//! rooms that share its worker, not every room of the instance. Queues are
//! bounded: when the workers fall behind, the attach stream waits, the room
//! instance's queue for this gateway fills, and the instance cuts the stream,
//! which re-subscribes and tells viewers about the gap.

use crate::rooms::LocalRooms;
use hubbub_kit::tracecontext;
use hubbub_proto::v1::{RoomBatch, RoomSubscribed};
use std::{
    hash::{BuildHasher, RandomState},
    sync::Arc,
};
use tokio::sync::mpsc;

/// Events queued per worker.
const WORKER_QUEUE: usize = 1024;

/// One event for the local viewers of a room.
#[derive(Debug)]
pub enum Delivery {
    /// A subscription's answer.
    Subscribed(RoomSubscribed),
    /// A batch of the room's traffic.
    Batch(RoomBatch),
}

impl Delivery {
    fn room_id(&self) -> &str {
        match self {
            Delivery::Subscribed(subscribed) => &subscribed.room_id,
            Delivery::Batch(batch) => &batch.room_id,
        }
    }
}

/// The workers of one gateway.
#[derive(Debug, Clone)]
pub struct Deliveries {
    workers: Arc<[mpsc::Sender<Delivery>]>,
    hasher: RandomState,
}

impl Deliveries {
    /// Starts `workers` workers writing into `rooms`; they end when every
    /// handle is dropped.
    pub fn start(rooms: Arc<LocalRooms>, workers: usize, gateway_id: &str) -> Self {
        let workers: Vec<mpsc::Sender<Delivery>> = (0..workers.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(WORKER_QUEUE);
                tokio::spawn(work(rooms.clone(), receiver, gateway_id.to_owned()));
                sender
            })
            .collect();
        Self {
            workers: workers.into(),
            hasher: RandomState::new(),
        }
    }

    /// Queues `delivery` on its room's worker, waiting while that is full.
    pub async fn send(&self, delivery: Delivery) {
        let index = (self.hasher.hash_one(delivery.room_id()) as usize) % self.workers.len();
        // Fails only when the worker is gone, i.e. at shutdown.
        let _ = self.workers[index].send(delivery).await;
    }
}

async fn work(rooms: Arc<LocalRooms>, mut receiver: mpsc::Receiver<Delivery>, gateway_id: String) {
    while let Some(delivery) = receiver.recv().await {
        match delivery {
            Delivery::Subscribed(subscribed) => rooms.on_subscribed(subscribed),
            Delivery::Batch(batch) => deliver(&rooms, batch, &gateway_id),
        }
    }
}

/// Fans a batch out under a span that continues the first message's trace
/// and links every other message's, so each message's trace reaches its
/// delivery.
fn deliver(rooms: &LocalRooms, batch: RoomBatch, gateway_id: &str) {
    let span = tracing::info_span!(
        "gateway.deliver",
        gateway_id = %gateway_id,
        room_id = %batch.room_id,
        messages = batch.messages.len(),
        viewers = tracing::field::Empty,
    );
    tracecontext::set_parent_from(&span, &batch.traceparent, &batch.tracestate);
    for traceparent in &batch.linked_traceparents {
        tracecontext::add_link_from(&span, traceparent);
    }
    span.in_scope(|| {
        let viewers = rooms.on_batch(batch);
        tracing::Span::current().record("viewers", viewers);
    });
}
