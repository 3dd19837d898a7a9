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
use serde_json::json;
use std::{net::SocketAddr, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
};

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
    /// How messages reach the room service: one call each, or each 5 ms
    /// tick's in one call, as a busy gateway batches them.
    #[arg(long, value_enum, default_value = "many")]
    pub publish_calls: crate::publisher::PublishCalls,
    /// A gateway's role credential, for `PublishMany`
    /// (`hubbub token --role gateway --service bench --call /hubbub.v1.Room/PublishMany`).
    #[arg(long, env = "HUBBUB_BENCH_GATEWAY_CREDENTIAL")]
    pub gateway_credential: Option<String>,
    /// The gift ledger's role credential, for `PublishGifts`
    /// (`hubbub token --role gift --service bench --call /hubbub.v1.Room/PublishGifts`).
    #[arg(long, env = "HUBBUB_BENCH_LEDGER_CREDENTIAL")]
    pub ledger_credential: Option<String>,
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
    let crate::publisher::Published {
        accepted: published,
        refused,
    } = crate::publisher::publish(&args).await?;
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
        "publish_calls": args.publish_calls,
        "publishes_refused": refused,
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
