//! `PreparedBatch`: a room batch made ready for every local viewer at once:
//! encoded a single time (and, above a size threshold, gzip-compressed a
//! single time) into the bytes each connection is handed as they are.

use crate::outbox::Lane;
use flate2::{Compression, write::GzEncoder};
use hubbub_proto::{
    v1::{Priority, RoomBatch, RoomMessage, RoomMessageList, ServerEvent, server_event::Event},
    wire::EncodedEvent,
};
use prost::Message;
use std::{io::Write, sync::Arc};

/// Codec name of compressed batches; browsers undo it with DecompressionStream.
pub const GZIP: &str = "gzip";

/// A batch ready to fan out.
#[derive(Debug)]
pub struct PreparedBatch {
    /// The room.
    pub room_id: Arc<str>,
    /// The `ServerEvent` carrying it, encoded once.
    pub event: EncodedEvent,
    /// The lane of its most urgent message.
    pub lane: Lane,
    /// Messages in it (for delivery and loss counts).
    pub messages: u64,
    /// Its last `keep` messages, for the gateway's recent ring.
    pub tail: Vec<RoomMessage>,
    /// Its messages travel gzip-compressed.
    pub compressed: bool,
}

impl PreparedBatch {
    /// Encodes `batch`, compressing its messages when they exceed
    /// `compress_above` bytes (0: never).
    pub fn new(mut batch: RoomBatch, keep: usize, compress_above: usize) -> Self {
        let lane = batch
            .messages
            .iter()
            .map(|m| lane_of(m.priority))
            .max()
            .unwrap_or(Lane::Low);
        let messages = batch.messages.len() as u64;
        let tail = batch.messages[batch.messages.len().saturating_sub(keep)..].to_vec();
        let room_id: Arc<str> = batch.room_id.as_str().into();
        // Internal to the route layer: clients need not carry it.
        batch.linked_traceparents.clear();
        let mut compressed = false;
        if compress_above > 0 {
            let list = RoomMessageList {
                messages: std::mem::take(&mut batch.messages),
            };
            let plain = list.encode_to_vec();
            match (plain.len() > compress_above).then(|| gzip(&plain)).flatten() {
                Some(packed) if packed.len() < plain.len() => {
                    batch.compressed = packed.into();
                    batch.codec = GZIP.to_owned();
                    compressed = true;
                }
                _ => batch.messages = list.messages,
            }
        }
        let event = EncodedEvent::encode(&ServerEvent {
            event: Some(Event::RoomBatch(batch)),
        });
        Self {
            room_id,
            event,
            lane,
            messages,
            tail,
            compressed,
        }
    }
}

/// The outbox lane of a message priority.
pub fn lane_of(priority: i32) -> Lane {
    match Priority::try_from(priority).unwrap_or(Priority::Normal) {
        Priority::High => Lane::High,
        Priority::Low => Lane::Low,
        Priority::Normal | Priority::Unspecified => Lane::Normal,
    }
}

fn gzip(plain: &[u8]) -> Option<Vec<u8>> {
    // The fastest level: this runs once per batch, on the delivery path.
    let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 2), Compression::fast());
    encoder.write_all(plain).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn batch(count: usize, priority: Priority) -> RoomBatch {
        RoomBatch {
            room_id: "r".into(),
            messages: (0..count as u64)
                .map(|seq| RoomMessage {
                    room_id: "r".into(),
                    seq,
                    priority: priority as i32,
                    body: format!("comment number {seq} in a busy room").into_bytes().into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn decode(prepared: &PreparedBatch) -> RoomBatch {
        match ServerEvent::decode(prepared.event.message_bytes()).unwrap().event {
            Some(Event::RoomBatch(batch)) => batch,
            other => panic!("not a batch: {other:?}"),
        }
    }

    #[test]
    fn small_batches_stay_plain_and_big_ones_are_gzipped_once() {
        let small = PreparedBatch::new(batch(2, Priority::Normal), 20, 4096);
        assert_eq!(decode(&small).messages.len(), 2);
        assert_eq!(small.lane, Lane::Normal);

        let big = PreparedBatch::new(batch(500, Priority::High), 20, 4096);
        assert_eq!((big.lane, big.messages, big.tail.len()), (Lane::High, 500, 20));
        let wire = decode(&big);
        assert!(wire.messages.is_empty());
        assert_eq!(wire.codec, GZIP);
        let mut plain = Vec::new();
        GzDecoder::new(wire.compressed.as_ref())
            .read_to_end(&mut plain)
            .unwrap();
        let list = RoomMessageList::decode(plain.as_slice()).unwrap();
        assert_eq!(list.messages.len(), 500);
        assert_eq!(list.messages[499].seq, 499);
    }
}
