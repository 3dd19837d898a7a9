//! The `ClientApi` server with a pre-encoded stream element.
//!
//! A room batch goes to every viewer of a room. Encoding it once into an
//! [`EncodedEvent`] and cloning that (a reference count) per connection
//! replaces a deep clone plus an encode per connection. On the wire it is
//! exactly a `ServerEvent`, so clients see no difference.
//!
//! The encoded bytes sit inside a complete HTTP/1.1 chunk holding one
//! gRPC-web data frame (size line, frame header, message, CRLF): the lean
//! Connect path writes that same chunk to every viewer as it is, while
//! tonic takes only the message.

use crate::v1::ServerEvent;
use prost::{
    Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{DecodeContext, WireType, skip_field},
};

/// The encoded body of one `ServerEvent`, inside its gRPC-web chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    /// `{size:x}\r\n`, the 5-byte frame header, the message, `\r\n`.
    chunk: Bytes,
    /// Where the message starts in `chunk`.
    message_at: u8,
}

impl EncodedEvent {
    /// Encodes `event` once.
    pub fn encode(event: &ServerEvent) -> Self {
        let len = event.encoded_len();
        let mut chunk = Vec::with_capacity(len + CHUNK_OVERHEAD);
        let message_at = chunk_head(&mut chunk, len);
        // The length is known and the Vec has room: nothing can fail.
        event.encode_raw(&mut chunk);
        chunk.extend_from_slice(b"\r\n");
        Self {
            chunk: chunk.into(),
            message_at,
        }
    }

    /// The encoded `ServerEvent`.
    pub fn message(&self) -> &[u8] {
        &self.chunk[usize::from(self.message_at)..self.chunk.len() - 2]
    }

    /// The encoded `ServerEvent`, sharing this event's memory.
    pub fn message_bytes(&self) -> Bytes {
        self.chunk.slice(usize::from(self.message_at)..self.chunk.len() - 2)
    }

    /// The whole HTTP/1.1 chunk carrying it as a gRPC-web data frame.
    pub fn chunk(&self) -> &Bytes {
        &self.chunk
    }

    /// The encoded size in bytes.
    pub fn len(&self) -> usize {
        self.chunk.len() - usize::from(self.message_at) - 2
    }

    /// True for an empty event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes a chunk adds around a message at most: 16 hex digits and CRLF,
/// the frame header, the closing CRLF.
const CHUNK_OVERHEAD: usize = 16 + 2 + 5 + 2;

/// Writes a chunk's size line and a gRPC-web data frame's header for a
/// message of `len` bytes; returns where the message starts.
fn chunk_head(out: &mut Vec<u8>, len: usize) -> u8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let size = len + 5;
    let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in (0..digits).rev() {
        out.push(HEX[(size >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
    out.push(0);
    // A gRPC-web frame says its length in 4 bytes; the server's messages are
    // bounded far below (tonic refuses anything over its limits anyway).
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.len() as u8
}

impl Default for EncodedEvent {
    fn default() -> Self {
        Self::encode(&ServerEvent::default())
    }
}

impl From<&ServerEvent> for EncodedEvent {
    fn from(event: &ServerEvent) -> Self {
        Self::encode(event)
    }
}

impl Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.message());
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
        self.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
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
        assert_eq!(ServerEvent::decode(encoded.message_bytes()).unwrap(), event);
    }

    #[test]
    fn an_encoded_event_is_a_complete_grpc_web_chunk() {
        for size in [0usize, 6, 250, 251, 4090, 70_000] {
            let event = ServerEvent {
                event: Some(Event::RoomBatch(crate::v1::RoomBatch {
                    room_id: "r".repeat(size),
                    ..Default::default()
                })),
            };
            let message = event.encode_to_vec();
            let encoded = EncodedEvent::encode(&event);
            let mut expected = format!("{:x}\r\n", message.len() + 5).into_bytes();
            expected.push(0);
            expected.extend_from_slice(&(message.len() as u32).to_be_bytes());
            expected.extend_from_slice(&message);
            expected.extend_from_slice(b"\r\n");
            assert_eq!(encoded.chunk().as_ref(), expected.as_slice(), "{size}");
            assert_eq!(encoded.message(), message.as_slice());
            assert_eq!(encoded.len(), message.len());
        }
        let empty = EncodedEvent::default();
        assert_eq!(empty.chunk().as_ref(), b"5\r\n\0\0\0\0\0\r\n");
        assert!(empty.is_empty());
    }
}
