//! Reads what the benchmark needs from an encoded `ServerEvent` without
//! decoding it: for each room message, its priority and the send time the
//! publisher put in the first 8 bytes of its body. No allocation.

/// Field numbers of `ServerEvent`, `RoomBatch` and `RoomMessage`.
const EVENT_ROOM_BATCH: u64 = 2;
const BATCH_MESSAGES: u64 = 2;
const BATCH_COMPRESSED: u64 = 3;
const MESSAGE_PRIORITY: u64 = 5;
const MESSAGE_BODY: u64 = 6;

/// One message seen in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// `Priority` value (1 low, 2 normal, 3 high).
    pub priority: u8,
    /// Publisher's send time, ns since the Unix epoch (0 when absent).
    pub sent_ns: u64,
}

/// What one event held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// True when the event was a room batch.
    pub is_batch: bool,
    /// The compressed messages of the batch, when it was compressed.
    pub compressed: Option<&'a [u8]>,
}

/// Calls `each` for every plain room message of `event`; a compressed
/// batch's bytes are returned for the caller to unpack once.
pub fn scan(event: &[u8], mut each: impl FnMut(Seen)) -> Scanned<'_> {
    let mut scanned = Scanned::default();
    for (field, value) in Fields(event) {
        if field != EVENT_ROOM_BATCH {
            continue;
        }
        scanned.is_batch = true;
        for (field, value) in Fields(value) {
            match field {
                BATCH_MESSAGES => each(message(value)),
                BATCH_COMPRESSED => scanned.compressed = Some(value),
                _ => {}
            }
        }
    }
    scanned
}

/// Calls `each` for every message of an unpacked `RoomMessageList`.
pub fn scan_list(list: &[u8], mut each: impl FnMut(Seen)) {
    for (field, value) in Fields(list) {
        if field == 1 {
            each(message(value));
        }
    }
}

fn message(bytes: &[u8]) -> Seen {
    let mut seen = Seen {
        priority: 0,
        sent_ns: 0,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((key, after)) = varint(rest) else { break };
        let (field, wire) = (key >> 3, key & 7);
        rest = after;
        match wire {
            0 => {
                let Some((value, after)) = varint(rest) else { break };
                if field == MESSAGE_PRIORITY {
                    seen.priority = value as u8;
                }
                rest = after;
            }
            2 => {
                let Some((len, after)) = varint(rest) else { break };
                let Some(value) = after.get(..len as usize) else { break };
                if field == MESSAGE_BODY && value.len() >= 8 {
                    seen.sent_ns = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
                }
                rest = &after[len as usize..];
            }
            1 => rest = rest.get(8..).unwrap_or_default(),
            5 => rest = rest.get(4..).unwrap_or_default(),
            _ => break,
        }
    }
    seen
}

/// Length-delimited fields of a message (others are skipped).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, rest) = varint(self.0)?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => self.0 = varint(rest)?.1,
                1 => self.0 = rest.get(8..)?,
                5 => self.0 = rest.get(4..)?,
                2 => {
                    let (len, rest) = varint(rest)?;
                    let value = rest.get(..len as usize)?;
                    self.0 = &rest[len as usize..];
                    return Some((field, value));
                }
                _ => return None,
            }
        }
    }
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_proto::v1::{Priority, RoomBatch, RoomMessage, ServerEvent, server_event::Event};
    use prost::Message;

    #[test]
    fn finds_priority_and_send_time_of_every_message() {
        let messages = (0..3u64)
            .map(|i| {
                let mut body = (1000 + i).to_le_bytes().to_vec();
                body.extend_from_slice(b"payload");
                RoomMessage {
                    room_id: "r".into(),
                    seq: 1 << 50,
                    sender_user_id: "u".into(),
                    kind: 1,
                    priority: if i == 1 { Priority::High } else { Priority::Normal } as i32,
                    body: body.into(),
                    sent_at_ms: 1_700_000_000_000,
                }
            })
            .collect();
        let event = ServerEvent {
            event: Some(Event::RoomBatch(RoomBatch {
                room_id: "r".into(),
                messages,
                traceparent: "00-abc".into(),
                ..Default::default()
            })),
        };
        let mut seen = Vec::new();
        let encoded = event.encode_to_vec();
        let scanned = scan(&encoded, |s| seen.push(s));
        assert!(scanned.is_batch && scanned.compressed.is_none());
        assert_eq!(
            seen,
            vec![
                Seen {
                    priority: 2,
                    sent_ns: 1000
                },
                Seen {
                    priority: 3,
                    sent_ns: 1001
                },
                Seen {
                    priority: 2,
                    sent_ns: 1002
                }
            ]
        );
    }
}
