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

/// What a walk over a batch request's top-level fields found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    /// At most the limit.
    Within,
    /// More than the limit.
    Over,
    /// Not walkable by tags and lengths: malformed, or a group (which prost
    /// would skip, items after it and all), so never decoded either.
    Unreadable,
}

/// Counts `wire`'s top-level fields against `limit`, by their tags and
/// lengths alone.
fn count_fields(mut wire: &[u8], limit: usize) -> Count {
    let mut fields = 0;
    while !wire.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut wire) else {
            return Count::Unreadable;
        };
        let skip = match key & 7 {
            0 => match prost::encoding::decode_varint(&mut wire) {
                Ok(_) => 0,
                Err(_) => return Count::Unreadable,
            },
            1 => 8,
            2 => match prost::encoding::decode_varint(&mut wire) {
                Ok(len) => usize::try_from(len).unwrap_or(usize::MAX),
                Err(_) => return Count::Unreadable,
            },
            5 => 4,
            _ => return Count::Unreadable,
        };
        if skip > wire.len() {
            return Count::Unreadable;
        }
        wire = &wire[skip..];
        fields += 1;
        if fields > limit {
            return Count::Over;
        }
    }
    Count::Within
}

impl<D: Decoder<Error = Status>> Decoder for StrictDecoder<D>
where
    D::Item: 'static,
{
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use prost::bytes::Buf;
        if let Some(limit) = max_fields::<D::Item>() {
            // tonic hands a decoder the whole message in one buffer; were
            // it ever split, the batch is refused rather than left uncounted.
            let count = match buf.chunk().len() == buf.remaining() {
                true => count_fields(buf.chunk(), limit),
                false => Count::Unreadable,
            };
            match count {
                Count::Within => {}
                Count::Over => {
                    return Err(Status::invalid_argument(format!(
                        "more than {MAX_BATCH_ITEMS} items in one batch: send them in several calls"
                    )));
                }
                Count::Unreadable => {
                    return Err(Status::invalid_argument(
                        "the batch is not valid protobuf for this call (groups are not accepted)",
                    ));
                }
            }
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
        assert_eq!(count_fields(&many(MAX_BATCH_ITEMS), MAX_BATCH_ITEMS), Count::Within);
        assert_eq!(count_fields(&many(MAX_BATCH_ITEMS + 1), MAX_BATCH_ITEMS), Count::Over);
        // Two bytes an item on the wire: half a million of them in 1 MB.
        assert_eq!(count_fields(&many(500_000), MAX_BATCH_ITEMS), Count::Over);
        let gifts = v1::RoomPublishGiftsRequest {
            room_id: "r".into(),
            gifts: vec![v1::RoomGift::default(); MAX_BATCH_ITEMS],
        };
        let limit = max_fields::<v1::RoomPublishGiftsRequest>().unwrap();
        assert_eq!(count_fields(&gifts.encode_to_vec(), limit), Count::Within);
        assert_eq!(max_fields::<v1::RoomPublishRequest>(), None);
    }

    #[test]
    fn a_batch_that_cannot_be_walked_is_unreadable_and_refused() {
        let mut truncated = many(3);
        truncated.truncate(truncated.len() - 1);
        truncated.push(0x0a);
        truncated.push(0x7f);
        assert_eq!(count_fields(&truncated, 5), Count::Unreadable);
        assert_eq!(count_fields(&[0xff; 12], 0), Count::Unreadable);
        // An empty group on an unknown field, which prost would skip before
        // decoding every item after it: the walk cannot count past it.
        let mut grouped = vec![0x13, 0x14];
        grouped.extend(many(MAX_BATCH_ITEMS + 1));
        let decoded = v1::RoomPublishManyRequest::decode(&grouped[..]).expect("prost skips the group");
        assert_eq!(decoded.items.len(), MAX_BATCH_ITEMS + 1);
        assert_eq!(count_fields(&grouped, MAX_BATCH_ITEMS), Count::Unreadable);
    }
}
