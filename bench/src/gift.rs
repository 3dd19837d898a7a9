//! `hubbub-bench gift`: one hot room against a running deployment, through
//! the gateway's client API as apps would use it. The room's host (the
//! streamer) and `--viewers` guests watch; `--senders` signed-in users send
//! gifts at `--rate` per second in all, each with its send time in the
//! payload. Viewers take gifts from the room's stream and, as clients do,
//! pull every hole in the gift seqs at the end. Prints one JSON line: gifts
//! accepted per second, p50/p99 send -> the streamer has it and send -> a
//! viewer has it (over every delivery), ledger transactions per gift (from
//! the gift service's `/metrics`), and gifts lost or duplicated (both must
//! be 0). Then a reconnect storm: every viewer reconnects at once and pulls
//! the room's last `--storm-missing` gifts; the JSON says how many got them
//! all and how many store reads the gift service made to answer them.

use crate::{grpc_conn::GrpcConn, histogram::Histogram, scrape, token};
use anyhow::Context;
use flate2::read::GzDecoder;
use hubbub_proto::v1::{
    GiftKind, GiftRecord, GiftSetRoomHostRequest, JoinRoomRequest, PullGiftsRequest, PullGiftsResponse,
    RoomMessageKind, RoomMessageList, SendGiftRequest, SendGiftResponse, ServerEvent, server_event::Event,
};
use prost::Message;
use serde_json::json;
use std::{
    collections::{HashMap, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::watch;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct GiftArgs {
    /// The gateway's public address (host:port).
    #[arg(long)]
    pub gateway: SocketAddr,
    /// The gift service's internal address (host:port): the room's host is
    /// set there, and its `/metrics` read.
    #[arg(long)]
    pub gift: SocketAddr,
    /// The deployment's client token secret, to sign the users' tokens.
    #[arg(long, env = "HUBBUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// A backend credential with scope `gift.manage` (`hubbub token
    /// --service bench --scope gift.manage`), to name the room's host.
    #[arg(long, env = "HUBBUB_BENCH_GIFT_ADMIN", hide_env_values = true)]
    pub admin: String,
    /// Guests watching the room.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Users sending gifts.
    #[arg(long, default_value_t = 20)]
    pub senders: usize,
    /// Gifts per second over all senders.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Sends in flight at most.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Source addresses 127.0.0.1 .. 127.0.0.N for the connections.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// After the run, every viewer reconnects at once and pulls the room's
    /// last this many gifts, as clients do after a blip (0: no storm).
    #[arg(long, default_value_t = 200)]
    pub storm_missing: u64,
}

/// What one watcher saw: the gift seqs, and each delivery's latency.
#[derive(Default)]
struct Watched {
    seqs: Vec<u64>,
    latency: Histogram,
}

/// Gift lists of events already parsed, by a hash of the event: every
/// viewer of the room receives the same bytes, so each is parsed (and
/// unpacked) once per process, as one client would do once.
#[derive(Default)]
struct Parsed {
    lists: HashMap<u64, Arc<Vec<(u64, u64)>>>,
    order: VecDeque<u64>,
}

impl Parsed {
    fn gifts(&mut self, event: &[u8]) -> Arc<Vec<(u64, u64)>> {
        // Keyed by its length and both ends: batches differ in their first
        // bytes (seqs, times), and hashing whole events for every viewer
        // would cost the load generator more than the parse it saves.
        let mut hasher = DefaultHasher::new();
        event.len().hash(&mut hasher);
        event[..event.len().min(128)].hash(&mut hasher);
        event[event.len().saturating_sub(128)..].hash(&mut hasher);
        let key = hasher.finish();
        if let Some(list) = self.lists.get(&key) {
            return list.clone();
        }
        let list = Arc::new(parse(event));
        if self.order.len() >= 1024
            && let Some(old) = self.order.pop_front()
        {
            self.lists.remove(&old);
        }
        self.order.push_back(key);
        self.lists.insert(key, list.clone());
        list
    }
}

/// (seq, sent ns) of every gift in a room batch event.
fn parse(event: &[u8]) -> Vec<(u64, u64)> {
    let Ok(ServerEvent {
        event: Some(Event::RoomBatch(batch)),
    }) = ServerEvent::decode(event)
    else {
        return Vec::new();
    };
    let mut messages = batch.messages;
    if !batch.compressed.is_empty() {
        let mut plain = Vec::new();
        if GzDecoder::new(batch.compressed.as_ref())
            .read_to_end(&mut plain)
            .is_ok()
            && let Ok(list) = RoomMessageList::decode(plain.as_slice())
        {
            messages = list.messages;
        }
    }
    messages
        .iter()
        .filter(|m| m.kind == RoomMessageKind::Gift as i32)
        .filter_map(|m| GiftRecord::decode(m.body.as_ref()).ok())
        .map(|g| (g.seq, sent_ns(&g.payload)))
        .collect()
}

fn sent_ns(payload: &[u8]) -> u64 {
    payload
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn connect(args: &GiftArgs, index: usize) -> anyhow::Result<GrpcConn> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index % args.sources.clamp(1, 250)) as u8));
    GrpcConn::connect(Some(source).filter(|_| args.gateway.ip().is_loopback()), args.gateway).await
}

/// Connects a watcher (`user`, or a guest), joins `room`, and watches until
/// `stop`; returns what it saw and its connection (for the pulls).
async fn watch_room(
    args: GiftArgs,
    index: usize,
    user: Option<String>,
    room: String,
    parsed: Arc<Mutex<Parsed>>,
    mut stop: watch::Receiver<bool>,
    joined: Arc<AtomicU64>,
) -> anyhow::Result<(Watched, GrpcConn)> {
    let mut conn = connect(&args, index).await?;
    if let Some(user) = &user {
        conn.authorize(&token::mint(args.jwt_secret.as_bytes(), user, 3600))?;
    }
    let (session_id, mut events) = conn.open_session(format!("bench-{index}")).await?;
    conn.unary(
        "/hubbub.v1.ClientApi/JoinRoom",
        &JoinRoomRequest {
            session_id,
            room_id: room,
        },
    )
    .await?;
    joined.fetch_add(1, Ordering::SeqCst);
    let mut watched = Watched::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok((watched, conn)),
            event = events.next() => {
                let Some(event) = event? else { return Ok((watched, conn)) };
                let gifts = parsed.lock().expect("parsed").gifts(&event);
                let now = now_ns();
                for &(seq, sent) in gifts.iter() {
                    watched.seqs.push(seq);
                    if sent > 0 {
                        watched.latency.record(now.saturating_sub(sent) / 1000);
                    }
                }
            }
        }
    }
}

/// Every record of `room` after `after`, pulled in pages.
async fn pull_after(conn: &mut GrpcConn, room: &str, mut after: u64) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    loop {
        let request = PullGiftsRequest {
            room_id: room.to_owned(),
            after_seq: after,
            limit: 500,
            target_user_id: String::new(),
        };
        let page = PullGiftsResponse::decode(conn.unary("/hubbub.v1.ClientApi/PullGifts", &request).await?)?;
        after = page.gifts.last().map_or(after, |g| g.seq);
        seqs.extend(page.gifts.iter().map(|g| g.seq));
        if !page.has_more {
            return Ok(seqs);
        }
    }
}

/// Lost and duplicated gifts of one watcher once it pulled its holes, and
/// how many it repaired that way.
async fn settle(watched: &mut Watched, conn: &mut GrpcConn, room: &str, last: u64) -> anyhow::Result<(u64, u64, u64)> {
    watched.seqs.sort_unstable();
    let before = watched.seqs.len();
    watched.seqs.dedup();
    let duplicated = (before - watched.seqs.len()) as u64;
    let mut have = watched.seqs.clone();
    let mut repaired = 0;
    if (have.len() as u64) < last {
        // As a client does: pull after the last seq before each hole.
        let mut holes = Vec::new();
        let mut previous = 0;
        for &seq in have.iter().chain(std::iter::once(&(last + 1))) {
            if seq > previous + 1 {
                holes.push((previous, seq));
            }
            previous = seq;
        }
        for (after, until) in holes {
            let got: Vec<u64> = pull_after(conn, room, after)
                .await?
                .into_iter()
                .take_while(|s| *s < until)
                .collect();
            repaired += got.len() as u64;
            have.extend(got);
        }
        have.sort_unstable();
        have.dedup();
    }
    Ok((last.saturating_sub(have.len() as u64), duplicated, repaired))
}

pub async fn run(args: GiftArgs) -> anyhow::Result<()> {
    let room = format!("bench-gifts-{:08x}", now_ns() as u32);
    let streamer = format!("streamer-{room}");
    // The platform's backend names the host.
    let mut admin = GrpcConn::connect(None, args.gift).await?;
    admin.authorize(&args.admin)?;
    admin
        .unary(
            "/hubbub.v1.Gift/SetRoomHost",
            &GiftSetRoomHostRequest {
                room_id: room.clone(),
                host_user_id: streamer.clone(),
            },
        )
        .await
        .context("SetRoomHost (is HUBBUB_BENCH_GIFT_ADMIN a gift.manage credential?)")?;

    let (stop, stopped) = watch::channel(false);
    let parsed = Arc::new(Mutex::new(Parsed::default()));
    let joined = Arc::new(AtomicU64::new(0));
    let streamer_task = tokio::spawn(watch_room(
        args.clone(),
        0,
        Some(streamer.clone()),
        room.clone(),
        parsed.clone(),
        stopped.clone(),
        joined.clone(),
    ));
    let mut viewers = Vec::with_capacity(args.viewers);
    for index in 1..=args.viewers {
        viewers.push(tokio::spawn(watch_room(
            args.clone(),
            index,
            None,
            room.clone(),
            parsed.clone(),
            stopped.clone(),
            joined.clone(),
        )));
        if index % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while joined.load(Ordering::SeqCst) < args.viewers as u64 + 1 {
        anyhow::ensure!(Instant::now() < deadline, "viewers did not all join within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let commits_before = scrape::metric(args.gift, "hubbub_gift_commits_total")
        .await
        .unwrap_or(0.0);
    let records_before = scrape::metric(args.gift, "hubbub_gift_records_total")
        .await
        .unwrap_or(0.0);

    // Senders: one connection each, sends paced over them, bounded in flight.
    let mut senders = Vec::new();
    for s in 0..args.senders.max(1) {
        let mut conn = connect(&args, 10_000 + s).await?;
        conn.authorize(&token::mint(
            args.jwt_secret.as_bytes(),
            &format!("fan-{s}-{room}"),
            3600,
        ))?;
        senders.push(conn);
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let total = args.rate * args.duration;
    let began = Instant::now();
    for i in 0..total {
        let due = began + Duration::from_secs_f64(i as f64 / args.rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = limit.clone().acquire_owned().await?;
        let mut sender = senders[i as usize % senders.len()].clone();
        let (room, accepted, failed) = (room.clone(), accepted.clone(), failed.clone());
        tokio::spawn(async move {
            let request = SendGiftRequest {
                room_id: room,
                kind: GiftKind::Gift as i32,
                gift_id: "rose".into(),
                count: 1,
                client_key: format!("g{i}"),
                payload: now_ns().to_le_bytes().to_vec().into(),
                ..Default::default()
            };
            // A sender's calls share its connection as concurrent streams,
            // as an app's would.
            let answer = sender.unary("/hubbub.v1.ClientApi/SendGift", &request).await;
            match answer.map(SendGiftResponse::decode) {
                Ok(Ok(_)) => accepted.fetch_add(1, Ordering::SeqCst),
                _ => failed.fetch_add(1, Ordering::SeqCst),
            };
            drop(permit);
        });
    }
    let _ = limit.acquire_many(args.in_flight.max(1) as u32).await?;
    let send_seconds = began.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::SeqCst);
    // Let the stream drain, then stop watching.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true)?;
    let commits = scrape::metric(args.gift, "hubbub_gift_commits_total")
        .await
        .unwrap_or(0.0)
        - commits_before;
    let records = scrape::metric(args.gift, "hubbub_gift_records_total")
        .await
        .unwrap_or(0.0)
        - records_before;

    let (mut streamer_seen, mut streamer_conn) = streamer_task.await??;
    let (streamer_lost, streamer_dup, streamer_repaired) =
        settle(&mut streamer_seen, &mut streamer_conn, &room, accepted).await?;
    let mut latency = Histogram::default();
    let (mut lost, mut duplicated, mut repaired, mut viewers_failed) = (0, 0, 0, 0);
    for viewer in viewers {
        match viewer.await? {
            Ok((mut seen, mut conn)) => {
                latency.merge(&seen.latency);
                let (l, d, r) = settle(&mut seen, &mut conn, &room, accepted).await?;
                lost += l;
                duplicated += d;
                repaired += r;
            }
            Err(_) => viewers_failed += 1,
        }
    }
    let storm = reconnect_storm(&args, &room, accepted).await?;
    println!(
        "{}",
        json!({
            "scenario": "gift",
            "viewers": args.viewers,
            "senders": args.senders,
            "target_rate": args.rate,
            "accepted": accepted,
            "refused": failed.load(Ordering::SeqCst),
            "accepted_per_s": (accepted as f64 / send_seconds).round(),
            "send_to_streamer_ms": {
                "p50": streamer_seen.latency.quantile(0.50) as f64 / 1000.0,
                "p99": streamer_seen.latency.quantile(0.99) as f64 / 1000.0,
            },
            "send_to_viewer_ms": {
                "p50": latency.quantile(0.50) as f64 / 1000.0,
                "p99": latency.quantile(0.99) as f64 / 1000.0,
                "deliveries": latency.total(),
            },
            "ledger_transactions_per_gift": if records > 0.0 { commits / records } else { 0.0 },
            "lost": lost + streamer_lost,
            "duplicated": duplicated + streamer_dup,
            "repaired_by_pull": repaired + streamer_repaired,
            "viewers_failed": viewers_failed,
            "reconnect_storm": storm,
        })
    );
    Ok(())
}

/// Every viewer reconnects at once (a new connection, Connect, JoinRoom)
/// and pulls the room's last `--storm-missing` gifts; what it cost the
/// ledger's database is read from the gift service's `/metrics`.
async fn reconnect_storm(args: &GiftArgs, room: &str, last: u64) -> anyhow::Result<serde_json::Value> {
    let missing = args.storm_missing.min(last);
    if missing == 0 {
        return Ok(serde_json::Value::Null);
    }
    let reads = "hubbub_gift_pull_store_reads_total";
    let reads_before = scrape::metric(args.gift, reads).await.unwrap_or(0.0);
    let began = Instant::now();
    let storm: Vec<_> = (1..=args.viewers)
        .map(|index| {
            let (args, room) = (args.clone(), room.to_owned());
            tokio::spawn(async move {
                let mut conn = connect(&args, index).await?;
                let (session_id, _events) = conn.open_session(format!("storm-{index}")).await?;
                conn.unary(
                    "/hubbub.v1.ClientApi/JoinRoom",
                    &JoinRoomRequest {
                        session_id,
                        room_id: room.clone(),
                    },
                )
                .await?;
                let got = pull_after(&mut conn, &room, last - missing).await?;
                anyhow::Ok(got.len() as u64 == missing)
            })
        })
        .collect();
    let (mut whole, mut failed) = (0u64, 0u64);
    for viewer in storm {
        match viewer.await? {
            Ok(true) => whole += 1,
            _ => failed += 1,
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    let store_reads = scrape::metric(args.gift, reads).await.unwrap_or(0.0) - reads_before;
    Ok(json!({
        "viewers": args.viewers,
        "missing_per_viewer": missing,
        "viewers_repaired": whole,
        "viewers_failed": failed,
        "store_reads": store_reads,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }))
}
