//! The codec of every hubbub service: prost, except that a message that does
//! not decode (truncated, invalid UTF-8 in a string, a wrong wire type) is
//! the caller's mistake, INVALID_ARGUMENT, rather than INTERNAL, prost's
//! default, which would page whoever runs the server; and that a batch
//! request with more items than a batch may hold is refused before it is
//! decoded (an empty item is 2 bytes on the wire and a hundred in memory).

use crate::v1;
use prost::Message;
use std::any::TypeId;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};

/// prost with caller-facing decode errors.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = StrictDecoder<<tonic_prost::ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(tonic_prost::ProstCodec::<T, U>::default().decoder())
    }
}

/// A decoder whose failures are INVALID_ARGUMENT.
#[derive(Debug)]
pub struct StrictDecoder<D>(pub D);

/// Items one batch request (`Room.PublishMany`, `Room.PublishGifts`,
/// `Gift.SendGifts`) holds at most.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// The top-level fields a request of type `T` may hold, when it is a batch:
/// its items, plus its other fields (each sent at most once).
fn max_fields<T: 'static>() -> Option<usize> {
    let id = TypeId::of::<T>();
    if id == TypeId::of::<v1::RoomPublishManyRequest>() || id == TypeId::of::<v1::GiftSendGiftsRequest>() {
        Some(MAX_BATCH_ITEMS)
    } else if id == TypeId::of::<v1::RoomPublishGiftsRequest>() {
        Some(MAX_BATCH_ITEMS + 1)
    } else {
        None
    }
}

/// Whether `wire` holds more than `limit` top-level fields, read by their
/// tags and lengths alone. Malformed input answers false: the decoder
/// refuses it with its own words.
fn more_fields_than(mut wire: &[u8], limit: usize) -> bool {
    let mut fields = 0;
    while !wire.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut wire) else {
            return false;
        };
        let skip = match key & 7 {
            0 => match prost::encoding::decode_varint(&mut wire) {
                Ok(_) => 0,
                Err(_) => return false,
            },
            1 => 8,
            2 => match prost::encoding::decode_varint(&mut wire) {
                Ok(len) => len as usize,
                Err(_) => return false,
            },
            5 => 4,
            _ => return false,
        };
        if skip > wire.len() {
            return false;
        }
        wire = &wire[skip..];
        fields += 1;
        if fields > limit {
            return true;
        }
    }
    false
}

impl<D: Decoder<Error = Status>> Decoder for StrictDecoder<D>
where
    D::Item: 'static,
{
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use prost::bytes::Buf;
        if let Some(limit) = max_fields::<D::Item>()
            && buf.chunk().len() == buf.remaining()
            && more_fields_than(buf.chunk(), limit)
        {
            return Err(Status::invalid_argument(format!(
                "more than {MAX_BATCH_ITEMS} items in one batch: send them in several calls"
            )));
        }
        self.0.decode(buf).map_err(|status| match status.code() {
            Code::Internal => Status::invalid_argument(format!(
                "the message is not valid protobuf for this call: {}",
                status.message()
            )),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many(items: usize) -> Vec<u8> {
        v1::RoomPublishManyRequest {
            items: vec![v1::RoomPublishManyItem::default(); items],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_batch_is_counted_on_the_wire_up_to_its_limit() {
        assert!(!more_fields_than(&many(MAX_BATCH_ITEMS), MAX_BATCH_ITEMS));
        assert!(more_fields_than(&many(MAX_BATCH_ITEMS + 1), MAX_BATCH_ITEMS));
        // Two bytes an item on the wire: half a million of them in 1 MB.
        assert!(more_fields_than(&many(500_000), MAX_BATCH_ITEMS));
        let gifts = v1::RoomPublishGiftsRequest {
            room_id: "r".into(),
            gifts: vec![v1::RoomGift::default(); MAX_BATCH_ITEMS],
        };
        assert!(!more_fields_than(
            &gifts.encode_to_vec(),
            max_fields::<v1::RoomPublishGiftsRequest>().unwrap()
        ));
        assert_eq!(max_fields::<v1::RoomPublishRequest>(), None);
    }

    #[test]
    fn malformed_wire_is_left_to_the_decoder() {
        let mut truncated = many(3);
        truncated.truncate(truncated.len() - 1);
        truncated.push(0x0a);
        truncated.push(0x7f);
        assert!(!more_fields_than(&truncated, 5));
        assert!(!more_fields_than(&[0xff; 12], 0));
        assert!(!more_fields_than(&[0x0b], 0), "a group wire type");
    }
}
