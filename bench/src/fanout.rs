//! `hubbub-bench fanout`: N viewers over several processes, R rooms, a
//! publish rate and priority mix for a duration, against any deployment.
//! Prints one JSON line: deliveries/s, latency percentiles and loss per
//! priority, gateway memory per connection, server CPU per million deliveries.

use crate::{
    histogram::Histogram,
    scrape::{self, ProcessSample},
    viewers::Tally,
};
use anyhow::{Context, bail};
use hubbub_proto::v1::{RoomMessageKind, RoomPublishRequest, room_client::RoomClient};
use serde_json::json;
use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
};
use tonic::transport::Channel;

/// The scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Gateway addresses (host:port); also scraped for memory and CPU.
    #[arg(long, value_delimiter = ',', required = true)]
    pub gateways: Vec<SocketAddr>,
    /// The gateways' internal addresses (host:port), for `/metrics`; by
    /// default the public ones.
    #[arg(long, value_delimiter = ',')]
    pub gateway_metrics: Vec<SocketAddr>,
    /// Credential for publishing gifts
    /// (`hubbub token --role gift --service bench --user bench --call /hubbub.v1.Room/Publish`).
    #[arg(long, env = "HUBBUB_BENCH_GIFT_CREDENTIAL")]
    pub gift_credential: String,
    /// Credential for publishing comments and likes
    /// (`hubbub token --role gateway --service bench --user bench --call /hubbub.v1.Room/Publish`).
    #[arg(long, env = "HUBBUB_BENCH_USER_CREDENTIAL")]
    pub user_credential: String,
    /// Room service address (host:port): messages are published there, as a
    /// backend would, and it is scraped for CPU.
    #[arg(long)]
    pub room: SocketAddr,
    /// Viewer connections in all.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Rooms the viewers spread over.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Messages published per second, over all rooms.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Body size in bytes (at least 8: the send time).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Priority mix in percent: high,normal,low.
    #[arg(long, value_delimiter = ',', default_value = "5,90,5")]
    pub mix: Vec<u64>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Load-generator processes holding the viewers (each < 20k files).
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// Source addresses 127.0.0.1..N for the viewers.
    #[arg(long, default_value_t = 16)]
    pub sources: usize,
    /// Seconds to wait after connecting before the idle memory reading.
    #[arg(long, default_value_t = 3)]
    pub idle: u64,
    /// Concurrent publish calls in flight at most.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// The viewers' Connect transport: h2 or lean (see `viewers --transport`).
    #[arg(long, default_value = "h2")]
    pub transport: crate::viewers::Transport,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

fn metrics_of(args: &FanoutArgs) -> &[SocketAddr] {
    if args.gateway_metrics.is_empty() {
        &args.gateways
    } else {
        &args.gateway_metrics
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    if args.mix.len() != 3 || args.mix.iter().sum::<u64>() == 0 {
        bail!("--mix takes three percentages: high,normal,low");
    }
    let before = scrape::total(metrics_of(&args)).await?;

    // Viewers, spread over processes.
    let mut workers = Vec::new();
    let per = args.viewers.div_ceil(args.processes.max(1));
    for p in 0..args.processes.max(1) {
        let first = p * per;
        let count = per.min(args.viewers.saturating_sub(first));
        if count == 0 {
            break;
        }
        workers.push(spawn_worker(&args, first, count)?);
    }
    let mut ready = 0u64;
    for worker in &mut workers {
        let line = worker
            .lines
            .next_line()
            .await?
            .context("a viewers process exited early")?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        ready += value["ready"].as_u64().context("bad ready line")?;
    }
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle = scrape::total(metrics_of(&args)).await?;
    let room_start = scrape::sample(args.room).await?;
    let bench_cpu_start: f64 = workers
        .iter()
        .filter_map(|w| w.child.id())
        .map(scrape::child_cpu_seconds)
        .sum();

    // Publish.
    let published = publish(&args).await?;
    let under_load = scrape::total(metrics_of(&args)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last batches land
    let gateways_end = scrape::total(metrics_of(&args)).await?;
    let room_end = scrape::sample(args.room).await?;
    let bench_cpu: f64 = workers
        .iter()
        .filter_map(|w| w.child.id())
        .map(scrape::child_cpu_seconds)
        .sum::<f64>()
        - bench_cpu_start;

    // Tallies.
    let mut tally = Tally::default();
    for worker in &mut workers {
        worker.stdin.write_all(b"stop\n").await?;
        let line = worker.lines.next_line().await?.context("a viewers process died")?;
        let one: Tally = serde_json::from_str(&line)?;
        for lane in 0..4 {
            tally.received[lane] += one.received[lane];
            tally.latency[lane].merge(&one.latency[lane]);
        }
        tally.batches += one.batches;
        tally.compressed += one.compressed;
        tally.missed += one.missed;
        tally.streams_lost += one.streams_lost;
        tally.failed += one.failed;
        let _ = worker.child.wait().await;
    }

    let deliveries: u64 = tally.received.iter().sum();
    let seconds = args.duration as f64;
    let server_cpu = (gateways_end.cpu_seconds - idle.cpu_seconds) + (room_end.cpu_seconds - room_start.cpu_seconds);
    let viewers_per_room = ready as f64 / args.rooms.max(1) as f64;
    let lanes = [("high", 3usize, 0usize), ("normal", 2, 1), ("low", 1, 2)];
    let mut per_priority = serde_json::Map::new();
    for (name, lane, index) in lanes {
        let expected = (published[index] as f64 * viewers_per_room).round() as u64;
        per_priority.insert(
            name.into(),
            json!({
                "published": published[index],
                "expected_deliveries": expected,
                "delivered": tally.received[lane],
                "not_delivered": expected.saturating_sub(tally.received[lane]),
                "latency_ms": latency(&tally.latency[lane]),
            }),
        );
    }
    let per_connection = |sample: &ProcessSample| (sample.resident_bytes - before.resident_bytes) / ready.max(1) as f64;
    let report = json!({
        "scenario": "fanout",
        "transport": args.transport,
        "viewers": ready,
        "viewers_failed": tally.failed,
        "rooms": args.rooms,
        "gateways": args.gateways.len(),
        "rate": args.rate,
        "payload": args.payload,
        "duration_s": args.duration,
        "deliveries": deliveries,
        "deliveries_per_s": (deliveries as f64 / seconds).round(),
        "batches": tally.batches,
        "compressed_batches": tally.compressed,
        "missed_reported": tally.missed,
        "streams_lost": tally.streams_lost,
        "priority": per_priority,
        "gateway_rss_per_connection_bytes": {
            "idle": per_connection(&idle).round(),
            "under_load": per_connection(&under_load).round(),
        },
        "server_cpu_seconds": (server_cpu * 1000.0).round() / 1000.0,
        "gateway_cpu_seconds": ((gateways_end.cpu_seconds - idle.cpu_seconds) * 1000.0).round() / 1000.0,
        "room_cpu_seconds": ((room_end.cpu_seconds - room_start.cpu_seconds) * 1000.0).round() / 1000.0,
        "server_cpu_s_per_million_deliveries": if deliveries > 0 {
            ((server_cpu / (deliveries as f64 / 1e6)) * 1000.0).round() / 1000.0
        } else { 0.0 },
        "bench_cpu_seconds": (bench_cpu * 1000.0).round() / 1000.0,
    });
    println!("{report}");
    Ok(())
}

fn latency(histogram: &Histogram) -> serde_json::Value {
    let ms = |q: f64| histogram.quantile(q) as f64 / 1000.0;
    json!({ "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "samples": histogram.total() })
}

fn spawn_worker(args: &FanoutArgs, first: usize, count: usize) -> anyhow::Result<Worker> {
    let gateways: Vec<String> = args.gateways.iter().map(ToString::to_string).collect();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("viewers")
        .args(["--gateways", &gateways.join(",")])
        .args(["--viewers", &count.to_string()])
        .args(["--first", &first.to_string()])
        .args(["--rooms", &args.rooms.to_string()])
        .args(["--sources", &args.sources.to_string()])
        .args([
            "--transport",
            if args.transport == crate::viewers::Transport::Lean {
                "lean"
            } else {
                "h2"
            },
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    Ok(Worker { child, stdin, lines })
}

/// Publishes at the rate for the duration; returns counts [high, normal, low].
async fn publish(args: &FanoutArgs) -> anyhow::Result<[u64; 3]> {
    let channel = Channel::from_shared(format!("http://{}", args.room))?.connect().await?;
    let client = RoomClient::new(channel);
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let bearer = |token: &str| -> anyhow::Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
        Ok(format!("Bearer {token}").parse()?)
    };
    let (gift, user) = (bearer(&args.gift_credential)?, bearer(&args.user_credential)?);
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0u64;
    let total: u64 = args.mix.iter().sum();
    while Instant::now() < end {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due {
            let slot = (sent * 7919) % total; // spread the mix evenly over time
            let (lane, kind) = if slot < args.mix[0] {
                (0, RoomMessageKind::Gift)
            } else if slot < args.mix[0] + args.mix[1] {
                (1, RoomMessageKind::Comment)
            } else {
                (2, RoomMessageKind::Like)
            };
            let room_id = format!("room-{}", sent % args.rooms.max(1) as u64);
            let permit = limit.clone().acquire_owned().await?;
            let mut client = client.clone();
            let counts = counts.clone();
            let (gift, user) = (gift.clone(), user.clone());
            let payload = args.payload;
            let seed = sent;
            tokio::spawn(async move {
                let mut request = tonic::Request::new(RoomPublishRequest {
                    room_id,
                    kind: kind as i32,
                    body: body(payload, seed).into(),
                });
                // Gifts as the gift ledger sends them, the rest as a gateway.
                let credential = if lane == 0 { &gift } else { &user };
                request.metadata_mut().insert("authorization", credential.clone());
                if client.publish(request).await.is_ok() {
                    counts[lane].fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
            sent += 1;
        }
    }
    // Wait for the calls in flight.
    let _ = limit.acquire_many(args.in_flight.max(1) as u32).await?;
    Ok([
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
    ])
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
