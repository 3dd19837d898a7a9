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

/// The codec of the `ClientApi` server: prost, with small per-call buffers.
/// A gateway holds one `Connect` call per connection for hours; the default
/// 8 KiB encode buffer per call would be a quarter of an idle connection's
/// memory. Buffers grow on demand when a batch is large.
#[derive(Debug, Clone, Default)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

/// Initial encode/decode buffer of a `ClientApi` call.
const CALL_BUFFER_BYTES: usize = 512;
/// Encoded bytes after which a stream yields to the transport.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

impl<T, U> tonic::codec::Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = crate::codec::StrictDecoder<<tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        let settings = tonic::codec::BufferSettings::new(CALL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES);
        tonic_prost::ProstCodec::<T, U>::raw_encoder(settings)
    }

    fn decoder(&mut self) -> Self::Decoder {
        let settings = tonic::codec::BufferSettings::new(CALL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES);
        crate::codec::StrictDecoder(tonic_prost::ProstCodec::<T, U>::raw_decoder(settings))
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
