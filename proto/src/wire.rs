//! The `ClientApi` server with a pre-encoded stream element.
//!
//! A room batch goes to every viewer of a room. Encoding it once into an
//! [`EncodedEvent`] and cloning that (a reference count) per connection
//! replaces a deep clone plus an encode per connection. On the wire it is
//! exactly a `ServerEvent`, so clients see no difference.

use crate::v1::ServerEvent;
use prost::{
    Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{DecodeContext, WireType, skip_field},
};

/// The encoded body of one `ServerEvent`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedEvent(pub Bytes);

impl EncodedEvent {
    /// Encodes `event` once.
    pub fn encode(event: &ServerEvent) -> Self {
        Self(event.encode_to_vec().into())
    }

    /// The encoded size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty event.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&ServerEvent> for EncodedEvent {
    fn from(event: &ServerEvent) -> Self {
        Self::encode(event)
    }
}

impl Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    // The server never decodes a stream element; anything given is skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// The `hubbub.v1.ClientApi` server whose `Connect` stream yields
/// [`EncodedEvent`]s.
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/wire/hubbub.v1.rs"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Heartbeat, server_event::Event};

    #[test]
    fn an_encoded_event_is_a_server_event_on_the_wire() {
        let event = ServerEvent {
            event: Some(Event::Heartbeat(Heartbeat { server_time_ms: 42 })),
        };
        let encoded = EncodedEvent::encode(&event);
        assert_eq!(encoded.encode_to_vec(), event.encode_to_vec());
        assert_eq!(ServerEvent::decode(encoded.0.clone()).unwrap(), event);
    }
}
