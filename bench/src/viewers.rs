//! `hubbub-bench viewers`: one load-generator process holding many viewer
//! connections. It connects and joins, prints `{"ready":..}`, counts what
//! arrives until a `stop` line on stdin, then prints its tallies as JSON.
//!
//! It runs on one thread: tallies need no locks, and several processes use
//! several cores (and stay under the per-process file limit).

use crate::{
    grpc_conn::{GrpcConn, MessageStream},
    histogram::Histogram,
    scan,
};
use hubbub_proto::v1::{JoinRoomRequest, ServerEvent, server_event::Event};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    rc::Rc,
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::io::AsyncBufReadExt;

thread_local! {
    static UNPACKED: RefCell<crate::unpack::Unpacked> = RefCell::default();
}

/// Where this process's viewers go.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewersArgs {
    /// Gateway addresses (host:port), viewers spread round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub gateways: Vec<SocketAddr>,
    /// Viewers in this process.
    #[arg(long)]
    pub viewers: usize,
    /// Global index of this process's first viewer (spreads rooms, gateways
    /// and source addresses evenly over all processes).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Rooms `room-0` .. `room-{rooms-1}`.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Source addresses 127.0.0.1 .. 127.0.0.N, so that many connections
    /// fit in the ephemeral port range.
    #[arg(long, default_value_t = 16)]
    pub sources: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// How each viewer's Connect travels: `h2` (gRPC over HTTP/2, one
    /// connection per viewer) or `lean` (gRPC-web over HTTP/1.1, the
    /// gateway's lean path; joins share one HTTP/2 connection per gateway).
    #[arg(long, default_value = "h2")]
    pub transport: Transport,
}

/// The transport of the viewers' Connect streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    H2,
    Lean,
}

thread_local! {
    /// One HTTP/2 connection per gateway for the lean viewers' joins.
    static JOINERS: RefCell<std::collections::HashMap<SocketAddr, GrpcConn>> = RefCell::default();
}

/// What a viewers process saw.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Messages received by priority: [unspecified, low, normal, high].
    pub received: [u64; 4],
    /// Publish-to-viewer latency by priority.
    pub latency: [Histogram; 4],
    /// Batches received.
    pub batches: u64,
    /// Compressed batches (their messages were not counted).
    pub compressed: u64,
    /// `Missed` events and the messages they reported.
    pub missed: u64,
    /// Streams that ended or failed before `stop`.
    pub streams_lost: u64,
    /// Viewers that could not connect or join.
    pub failed: u64,
}

pub async fn run(args: ViewersArgs) -> anyhow::Result<()> {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let mut connected = 0usize;
    let indices: Vec<usize> = (args.first..args.first + args.viewers).collect();
    for chunk in indices.chunks(args.concurrency.max(1)) {
        let joins: Vec<_> = chunk
            .iter()
            .map(|&index| tokio::task::spawn_local(open_with_retries(args.clone(), index, tally.clone())))
            .collect();
        for join in joins {
            match join.await? {
                Ok(()) => connected += 1,
                Err(err) => {
                    tally.borrow_mut().failed += 1;
                    if tally.borrow().failed <= 3 {
                        eprintln!("viewer failed: {err:#}");
                    }
                }
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({ "ready": connected, "failed": args.viewers - connected })
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "stop" {
            break;
        }
    }
    println!("{}", serde_json::to_string(&*tally.borrow())?);
    Ok(())
}

/// Real clients retry a refused connection; so does the benchmark (three
/// tries, 200 ms apart), and counts the viewers that still failed.
async fn open_with_retries(args: ViewersArgs, index: usize, tally: Rc<RefCell<Tally>>) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match open_viewer(args.clone(), index, tally.clone()).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt >= 2 => return Err(err),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

async fn open_viewer(args: ViewersArgs, index: usize, tally: Rc<RefCell<Tally>>) -> anyhow::Result<()> {
    let gateway = args.gateways[index % args.gateways.len()];
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index % args.sources.clamp(1, 250)) as u8));
    let source = gateway.ip().is_loopback().then_some(source);
    if args.transport == Transport::Lean {
        return open_lean_viewer(&args, index, gateway, source, tally).await;
    }
    let mut conn = GrpcConn::connect(source, gateway).await?;
    let (session_id, events) = conn.open_session(format!("bench-{index}")).await?;
    let join = JoinRoomRequest {
        session_id,
        room_id: format!("room-{}", index % args.rooms.max(1)),
    };
    conn.unary("/hubbub.v1.ClientApi/JoinRoom", &join).await?;
    tokio::task::spawn_local(async move {
        let _conn = conn; // the connection lives as long as its stream
        count_until_lost(events, &tally).await;
    });
    Ok(())
}

async fn open_lean_viewer(
    args: &ViewersArgs,
    index: usize,
    gateway: SocketAddr,
    source: Option<IpAddr>,
    tally: Rc<RefCell<Tally>>,
) -> anyhow::Result<()> {
    let (session_id, guest_token, events) = crate::lean_conn::open(source, gateway, format!("bench-{index}")).await?;
    let joiner = match JOINERS.with(|joiners| joiners.borrow().get(&gateway).cloned()) {
        Some(joiner) => joiner,
        None => {
            let joiner = GrpcConn::connect(None, gateway).await?;
            JOINERS.with(|joiners| joiners.borrow_mut().insert(gateway, joiner.clone()));
            joiner
        }
    };
    let mut joiner = joiner;
    joiner.authorize(&guest_token)?;
    let join = JoinRoomRequest {
        session_id,
        room_id: format!("room-{}", index % args.rooms.max(1)),
    };
    joiner.unary("/hubbub.v1.ClientApi/JoinRoom", &join).await?;
    tokio::task::spawn_local(async move { count_until_lost(events, &tally).await });
    Ok(())
}

/// Counts a viewer's events until its stream ends (before `stop`: lost).
async fn count_until_lost(mut events: MessageStream, tally: &RefCell<Tally>) {
    while let Ok(Some(event)) = events.next().await {
        count(&event, tally);
    }
    tally.borrow_mut().streams_lost += 1;
}

fn count(event: &[u8], tally: &RefCell<Tally>) {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut tally = tally.borrow_mut();
    let tally = &mut *tally;
    let mut record = |seen: scan::Seen| {
        let lane = usize::from(seen.priority.min(3));
        tally.received[lane] += 1;
        if seen.sent_ns > 0 {
            tally.latency[lane].record(now_ns.saturating_sub(seen.sent_ns) / 1000);
        }
    };
    let scanned = scan::scan(event, &mut record);
    if let Some(compressed) = scanned.compressed {
        // Every viewer of a room gets the same bytes: unpack each batch once
        // per process, not once per viewer.
        UNPACKED.with(|cache| {
            for seen in cache.borrow_mut().get(compressed) {
                record(*seen);
            }
        });
    }
    if scanned.is_batch {
        tally.batches += 1;
        tally.compressed += u64::from(scanned.compressed.is_some());
    } else if let Ok(ServerEvent {
        event: Some(Event::Missed(missed)),
    }) = ServerEvent::decode(event)
    {
        tally.missed += missed.count;
    }
}
