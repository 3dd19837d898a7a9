//! `hubbub-bench churn`: viewers joining and leaving a few rooms at a target
//! rate against a running gateway and presence. Prints one JSON line:
//! joins+leaves per second sustained, gateway CPU per 100k events, the Redis
//! commands per second the churn caused, and the count error after it stops.

use crate::{grpc_conn::GrpcConn, scrape};
use anyhow::Context;
use hubbub_proto::v1::{
    JoinRoomRequest, LeaveRoomRequest, PresenceGetRoomCountsRequest, presence_client::PresenceClient,
};
use serde_json::json;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    /// Gateway address (host:port); scraped for CPU.
    #[arg(long)]
    pub gateway: SocketAddr,
    /// The gateway's internal address (host:port), scraped for CPU.
    #[arg(long)]
    pub gateway_metrics: SocketAddr,
    /// Presence address (host:port), asked for the counts afterwards.
    #[arg(long)]
    pub presence: SocketAddr,
    /// Credential to read room counts with
    /// (`hubbub token --service bench --scope room.read`).
    #[arg(long, env = "HUBBUB_BENCH_READ_CREDENTIAL")]
    pub read_credential: String,
    /// Redis behind presence (host:port), for its command counts; optional.
    #[arg(long)]
    pub redis: Option<SocketAddr>,
    /// Simulated viewers (one connection each).
    #[arg(long, default_value_t = 2000)]
    pub viewers: usize,
    /// Rooms they join and leave.
    #[arg(long, default_value_t = 4)]
    pub rooms: usize,
    /// Joins plus leaves per second.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The gateways' presence report interval, in ms: counts are checked
    /// two intervals (plus one push) after the churn stops.
    #[arg(long, default_value_t = 1000)]
    pub report_ms: u64,
    /// Calls in flight at most.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
}

struct ChurnViewer {
    conn: GrpcConn,
    session_id: String,
    room: String,
    joined: AtomicBool,
    busy: AtomicBool,
}

pub async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    let mut viewers = Vec::with_capacity(args.viewers);
    for index in 0..args.viewers {
        viewers.push(Arc::new(
            open(&args, index).await.with_context(|| format!("viewer {index}"))?,
        ));
    }
    let redis_before = match args.redis {
        Some(redis) => Some(redis_calls(redis).await?),
        None => None,
    };
    let cpu_before = scrape::sample(args.gateway_metrics).await?.cpu_seconds;
    let events = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut issued = 0u64;
    let mut next = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while issued < due {
            let viewer = viewers[next % viewers.len()].clone();
            next += 1;
            if viewer.busy.swap(true, Ordering::AcqRel) {
                continue; // its previous call is still in flight
            }
            issued += 1;
            let permit = limit.clone().acquire_owned().await?;
            let (events, failures) = (events.clone(), failures.clone());
            tokio::spawn(async move {
                let joined = viewer.joined.load(Ordering::Acquire);
                let mut conn = viewer.conn.clone();
                let result = if joined {
                    let leave = LeaveRoomRequest {
                        session_id: viewer.session_id.clone(),
                        room_id: viewer.room.clone(),
                    };
                    conn.unary("/hubbub.v1.ClientApi/LeaveRoom", &leave).await
                } else {
                    let join = JoinRoomRequest {
                        session_id: viewer.session_id.clone(),
                        room_id: viewer.room.clone(),
                    };
                    conn.unary("/hubbub.v1.ClientApi/JoinRoom", &join).await
                };
                match result {
                    Ok(_) => {
                        viewer.joined.store(!joined, Ordering::Release);
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                viewer.busy.store(false, Ordering::Release);
                drop(permit);
            });
        }
    }
    let _ = limit.acquire_many(args.in_flight.max(1) as u32).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = scrape::sample(args.gateway_metrics).await?.cpu_seconds - cpu_before;
    let redis_per_s = match (args.redis, redis_before) {
        (Some(redis), Some(before)) => Some(((redis_calls(redis).await? - before) as f64 / elapsed).round()),
        _ => None,
    };

    // The truth, then what presence says two intervals later.
    let mut truth = vec![0u64; args.rooms.max(1)];
    for (index, viewer) in viewers.iter().enumerate() {
        if viewer.joined.load(Ordering::Acquire) {
            truth[index % args.rooms.max(1)] += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(2 * args.report_ms + 200)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", args.presence))?
        .connect()
        .await?;
    let room_ids: Vec<String> = (0..args.rooms.max(1)).map(|r| format!("churn-{r}")).collect();
    let mut request = tonic::Request::new(PresenceGetRoomCountsRequest { room_ids });
    let credential = format!("Bearer {}", args.read_credential).parse()?;
    request.metadata_mut().insert("authorization", credential);
    let counts = PresenceClient::new(channel)
        .get_room_counts(request)
        .await?
        .into_inner()
        .rooms;
    let error: u64 = counts.iter().zip(&truth).map(|(c, t)| c.online.abs_diff(*t)).sum();
    let done = events.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "scenario": "churn",
            "viewers": args.viewers,
            "rooms": args.rooms,
            "target_rate": args.rate,
            "joins_leaves": done,
            "joins_leaves_per_s": (done as f64 / elapsed).round(),
            "failed_calls": failures.load(Ordering::Relaxed),
            "gateway_cpu_s_per_100k_events": if done > 0 { ((cpu / (done as f64 / 1e5)) * 1000.0).round() / 1000.0 } else { 0.0 },
            "redis_commands_per_s": redis_per_s,
            "online_truth": truth,
            "online_presence": counts.iter().map(|c| c.online).collect::<Vec<_>>(),
            "count_error_after_2_intervals": error,
        })
    );
    Ok(())
}

async fn open(args: &ChurnArgs, index: usize) -> anyhow::Result<ChurnViewer> {
    let mut conn = GrpcConn::connect(None, args.gateway).await?;
    let (session_id, mut events) = conn.open_session(format!("churn-{index}")).await?;
    // Keep reading so the gateway never sees a slow device.
    tokio::spawn(async move { while let Ok(Some(_)) = events.next().await {} });
    Ok(ChurnViewer {
        conn,
        session_id,
        room: format!("churn-{}", index % args.rooms.max(1)),
        joined: AtomicBool::new(false),
        busy: AtomicBool::new(false),
    })
}

/// Total commands Redis has run (`INFO commandstats`).
async fn redis_calls(address: SocketAddr) -> anyhow::Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"INFO commandstats\r\n").await?;
    let mut text = Vec::new();
    let mut buffer = [0u8; 16384];
    // A bulk reply: "$<len>\r\n<body>\r\n".
    loop {
        let n = stream.read(&mut buffer).await?;
        anyhow::ensure!(n > 0, "redis closed the connection");
        text.extend_from_slice(&buffer[..n]);
        let reply = String::from_utf8_lossy(&text);
        if let Some((head, body)) = reply.split_once("\r\n") {
            let len: usize = head.trim_start_matches('$').parse()?;
            if body.len() >= len {
                return Ok(body
                    .lines()
                    .filter_map(|line| line.split("calls=").nth(1))
                    .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
                    .sum());
            }
        }
    }
}
