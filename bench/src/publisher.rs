//! The fan-out scenario's publisher: messages at a rate and priority mix,
//! into the room service, as its callers send them. Gifts come as the gift
//! ledger sends them, comments and likes as a gateway does: one call per
//! message (`--publish-calls one`: `Room.Publish`), or, as a gateway
//! batches its clients' messages, the messages due in each 5 ms tick in one
//! call (`many`: `Room.PublishMany` with each item's own per-call
//! credential, and `Room.PublishGifts`).

use crate::fanout::FanoutArgs;
use anyhow::Context;
use hubbub_proto::v1::{
    RoomGift, RoomMessageKind, RoomPublishGiftsRequest, RoomPublishManyItem, RoomPublishManyRequest,
    RoomPublishRequest, room_client::RoomClient,
};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

/// How messages reach the room service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishCalls {
    /// One `Publish` per message.
    One,
    /// One `PublishMany` (and one `PublishGifts` per room) per tick.
    Many,
}

/// Messages accepted, per lane: high, normal, low.
type Counts = Arc<[AtomicU64; 3]>;

fn bearer(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    Ok(format!("Bearer {token}").parse()?)
}

/// One message due: its lane, kind, room and body.
struct Due {
    lane: usize,
    kind: RoomMessageKind,
    room_id: String,
    body: Vec<u8>,
}

/// Publishes at the rate for the duration.
pub async fn publish(args: &FanoutArgs) -> anyhow::Result<Published> {
    let channel = Channel::from_shared(format!("http://{}", args.room))?.connect().await?;
    let client = RoomClient::new(channel).max_encoding_message_size(8 * 1024 * 1024);
    let counts: Counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let refused = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let credentials = Credentials::of(args)?;
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0u64;
    let total: u64 = args.mix.iter().sum();
    while Instant::now() < end {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        let mut tick = Vec::new();
        while sent < due {
            let slot = (sent * 7919) % total; // spread the mix evenly over time
            let (lane, kind) = if slot < args.mix[0] {
                (0, RoomMessageKind::Gift)
            } else if slot < args.mix[0] + args.mix[1] {
                (1, RoomMessageKind::Comment)
            } else {
                (2, RoomMessageKind::Like)
            };
            tick.push(Due {
                lane,
                kind,
                room_id: format!("room-{}", sent % args.rooms.max(1) as u64),
                body: body(args.payload, sent),
            });
            sent += 1;
        }
        match args.publish_calls {
            PublishCalls::One => {
                for due in tick {
                    let permit = limit.clone().acquire_owned().await?;
                    let call = one(client.clone(), &credentials, due, counts.clone(), refused.clone());
                    tokio::spawn(async move {
                        call.await;
                        drop(permit);
                    });
                }
            }
            PublishCalls::Many => {
                // A tick after a stall carries the backlog: cut it within
                // the room's limits on items and bytes per call.
                for chunk in chunks(tick, args.payload) {
                    let permit = limit.clone().acquire_owned().await?;
                    let call = many(client.clone(), &credentials, chunk, counts.clone(), refused.clone());
                    tokio::spawn(async move {
                        call.await;
                        drop(permit);
                    });
                }
            }
        }
    }
    // Wait for the calls in flight.
    let _ = limit.acquire_many(args.in_flight.max(1) as u32).await?;
    Ok(Published {
        accepted: [
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed),
            counts[2].load(Ordering::Relaxed),
        ],
        refused: refused.load(Ordering::Relaxed),
    })
}

/// What the publisher got through.
pub struct Published {
    /// Messages the room accepted, per lane: high, normal, low.
    pub accepted: [u64; 3],
    /// Messages refused or lost with their call (each also not delivered).
    pub refused: u64,
}

/// Messages per call at most, and their bodies' bytes (well under the
/// room's limits on items and request size, credentials included).
const CALL_ITEMS: usize = 1000;
const CALL_BYTES: usize = 512 * 1024;

/// A tick cut into calls within the room's limits.
fn chunks(tick: Vec<Due>, payload: usize) -> Vec<Vec<Due>> {
    let per_call = CALL_ITEMS.min((CALL_BYTES / payload.max(1)).max(1));
    let mut chunks = Vec::new();
    let mut tick = tick.into_iter().peekable();
    while tick.peek().is_some() {
        chunks.push(tick.by_ref().take(per_call).collect());
    }
    chunks
}

/// The publisher's credentials, as `authorization` values and raw tokens.
#[derive(Clone)]
struct Credentials {
    /// Per-call `Publish` credentials acting for the bench user.
    gift: MetadataValue<Ascii>,
    user: MetadataValue<Ascii>,
    user_token: String,
    /// Role credentials of a gateway and of the gift ledger (many).
    gateway: Option<MetadataValue<Ascii>>,
    ledger: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    fn of(args: &FanoutArgs) -> anyhow::Result<Self> {
        let role = |token: &Option<String>, what: &str| -> anyhow::Result<Option<MetadataValue<Ascii>>> {
            match (args.publish_calls, token) {
                (PublishCalls::One, _) => Ok(None),
                (PublishCalls::Many, Some(token)) => Ok(Some(bearer(token)?)),
                (PublishCalls::Many, None) => Err(anyhow::anyhow!("--publish-calls many needs {what}")),
            }
        };
        Ok(Self {
            gift: bearer(&args.gift_credential)?,
            user: bearer(&args.user_credential)?,
            user_token: args.user_credential.clone(),
            gateway: role(&args.gateway_credential, "--gateway-credential")?,
            ledger: role(&args.ledger_credential, "--ledger-credential")?,
        })
    }
}

/// One message in one `Publish`.
fn one(
    mut client: RoomClient<Channel>,
    credentials: &Credentials,
    due: Due,
    counts: Counts,
    refused: Arc<AtomicU64>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // Gifts as the gift ledger sends them, the rest as a gateway.
    let credential = if due.lane == 0 {
        &credentials.gift
    } else {
        &credentials.user
    }
    .clone();
    async move {
        let mut request = tonic::Request::new(RoomPublishRequest {
            room_id: due.room_id,
            kind: due.kind as i32,
            body: due.body.into(),
        });
        request.metadata_mut().insert("authorization", credential);
        match client.publish(request).await {
            Ok(_) => counts[due.lane].fetch_add(1, Ordering::Relaxed),
            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A tick's messages: comments and likes in one `PublishMany`, gifts in one
/// `PublishGifts` per room.
fn many(
    client: RoomClient<Channel>,
    credentials: &Credentials,
    tick: Vec<Due>,
    counts: Counts,
    refused: Arc<AtomicU64>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let credentials = credentials.clone();
    async move {
        let mut gifts: BTreeMap<String, Vec<RoomGift>> = BTreeMap::new();
        let mut items = Vec::new();
        let mut lanes = Vec::new();
        for due in tick {
            if due.lane == 0 {
                gifts.entry(due.room_id).or_default().push(RoomGift {
                    sender_user_id: "bench".into(),
                    body: due.body.into(),
                });
                continue;
            }
            lanes.push(due.lane);
            items.push(RoomPublishManyItem {
                publish: Some(RoomPublishRequest {
                    room_id: due.room_id,
                    kind: due.kind as i32,
                    body: due.body.into(),
                }),
                credential: credentials.user_token.clone(),
                ..Default::default()
            });
        }
        let ledger = async {
            for (room_id, gifts) in gifts {
                let count = gifts.len() as u64;
                let mut request = tonic::Request::new(RoomPublishGiftsRequest { room_id, gifts });
                let ledger = credentials.ledger.clone().context("ledger")?;
                request.metadata_mut().insert("authorization", ledger);
                match client.clone().publish_gifts(request).await {
                    Ok(_) => counts[0].fetch_add(count, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(count, Ordering::Relaxed),
                };
            }
            anyhow::Ok(())
        };
        let others = async {
            if items.is_empty() {
                return anyhow::Ok(());
            }
            let mut request = tonic::Request::new(RoomPublishManyRequest { items });
            let gateway = credentials.gateway.clone().context("gateway")?;
            request.metadata_mut().insert("authorization", gateway);
            match client.clone().publish_many(request).await {
                Ok(answer) => {
                    for (outcome, lane) in answer.into_inner().outcomes.iter().zip(lanes) {
                        match outcome.code {
                            0 => counts[lane].fetch_add(1, Ordering::Relaxed),
                            _ => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
                Err(_) => {
                    refused.fetch_add(lanes.len() as u64, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        };
        let _ = tokio::join!(ledger, others);
    }
}

/// The send time, then words drawn from a small vocabulary: compressible
/// about as much as real chat text, not as much as a run of one letter.
fn body(size: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "wow", "so", "good", "lol", "gg", "nice", "play", "again", "this", "is", "amazing", "haha", "love", "it",
        "from", "brazil", "hello", "everyone", "first", "time", "here", "best", "stream", "ever", "what", "a", "move",
        "clutch", "insane", "let's", "go", "team",
    ];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut body = now.to_le_bytes().to_vec();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while body.len() < size.max(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize].as_bytes());
        body.push(b' ');
    }
    body.truncate(size.max(8));
    body
}
