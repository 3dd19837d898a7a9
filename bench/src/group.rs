//! `hubbub-bench group`: group chat against a running deployment, through
//! the gateway's client API as apps would use it. G groups of M members;
//! some members have a device online (a `Connect` stream that pulls on every
//! `GroupNotify` and acks); each group's owner sends at a target rate with
//! its send time in the body. One more device per group stays offline and
//! catches up at the end. Prints one JSON line: messages/s accepted, mailbox
//! entries/s written, send -> pulled latency on every online device,
//! catch-up time, and messages missing or duplicated (both must be 0).

use crate::{grpc_conn::GrpcConn, histogram::Histogram, token};
use anyhow::{Context, bail};
use hubbub_proto::v1::{
    AckRequest, CreateGroupRequest, CreateGroupResponse, PullMailboxRequest, PullMailboxResponse,
    SendGroupMessageRequest, ServerEvent, server_event::Event,
};
use prost::Message;
use serde_json::json;
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Content type of the benchmark's messages (group events have another).
const CONTENT_TYPE: &str = "application/vnd.hubbub.bench";

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupArgs {
    /// The gateway's public address (host:port).
    #[arg(long)]
    pub gateway: SocketAddr,
    /// The deployment's client token secret, to sign the users' tokens.
    #[arg(long, env = "HUBBUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Groups.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Members per group, owner included.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Members per group with a device online.
    #[arg(long, default_value_t = 50)]
    pub online: usize,
    /// Messages per second over all groups.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Body bytes per message (8 at least: the send time).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Sends in flight at most.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Source addresses 127.0.0.1 .. 127.0.0.N for the devices.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// What the same PostgreSQL writes raw (narrow mailbox-shaped rows per
    /// second, measured by bench/group.sh), printed beside for scale.
    #[arg(long)]
    pub raw_postgres_rows_per_s: Option<f64>,
}

/// What the online devices saw.
#[derive(Debug, Default)]
struct Tally {
    latency: Histogram,
    /// Send -> the device's notify for it arrived (where the time goes).
    to_notify: Histogram,
    /// (group, seq) pairs received, per device: duplicates are counted.
    received: u64,
    duplicates: u64,
    per_group: Vec<u64>,
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    if args.members < 2 || args.online > args.members || args.payload < 8 {
        bail!("--members must be 2 or more, --online at most --members, --payload 8 or more");
    }
    let run_id = format!("{:08x}", rand_u32());
    let secret = args.jwt_secret.as_bytes();
    let user = |group: usize, member: usize| format!("bench-{run_id}-g{group}-m{member}");

    // Groups, each created by its owner (member 0).
    let mut owners = Vec::new();
    let mut group_ids = Vec::new();
    for group in 0..args.groups {
        let mut conn = connect(&args, group).await?;
        conn.authorize(&token::mint(secret, &user(group, 0), 3600))?;
        let create = CreateGroupRequest {
            name: format!("bench {group}"),
            member_user_ids: (1..args.members).map(|m| user(group, m)).collect(),
            end_to_end_encrypted: false,
            client_key: format!("{run_id}-{group}"),
        };
        let created = CreateGroupResponse::decode(conn.unary("/hubbub.v1.ClientApi/CreateGroup", &create).await?)?;
        group_ids.push(created.group.context("CreateGroup answered no group")?.group_id);
        owners.push(conn);
    }

    // Online devices, and one device per group that goes offline now and
    // catches up at the end.
    let tally = Arc::new(Mutex::new(Tally {
        per_group: vec![0; args.groups],
        ..Tally::default()
    }));
    let mut devices = Vec::new();
    for (group, group_id) in group_ids.iter().enumerate() {
        for member in 0..args.online {
            let token = token::mint(secret, &user(group, member), 3600);
            let device = Device::open(&args, group, &token, "bench-online").await?;
            devices.push(tokio::spawn(device.follow(group_id.clone(), group, tally.clone())));
        }
    }
    let laggards: Vec<String> = (0..args.groups)
        .map(|group| token::mint(secret, &user(group, args.members - 1), 3600))
        .collect();
    for (group, token) in laggards.iter().enumerate() {
        let mut device = Device::open(&args, group, token, "bench-offline").await?;
        device.pull_all(None, 0, None, true).await?; // its cursor now exists; then it goes away
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // presence learns the devices
    {
        let mut tally = tally.lock().expect("tally");
        *tally = Tally {
            per_group: vec![0; args.groups],
            ..Tally::default()
        };
    }

    // Send.
    let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..args.groups).map(|_| AtomicU64::new(0)).collect());
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0u64;
    while Instant::now() < end {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due {
            let group = (sent % args.groups as u64) as usize;
            let permit = limit.clone().acquire_owned().await?;
            let mut conn = owners[group].clone();
            let accepted = accepted.clone();
            let request = SendGroupMessageRequest {
                group_id: group_ids[group].clone(),
                device_id: "bench-sender".into(),
                client_message_id: format!("{run_id}-{sent}"),
                content_type: CONTENT_TYPE.into(),
                body: body(args.payload).into(),
            };
            tokio::spawn(async move {
                if conn
                    .unary("/hubbub.v1.ClientApi/SendGroupMessage", &request)
                    .await
                    .is_ok()
                {
                    accepted[group].fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
            sent += 1;
        }
    }
    let _ = limit.acquire_many(args.in_flight.max(1) as u32).await?;
    let send_seconds = started.elapsed().as_secs_f64();
    let accepted: Vec<u64> = accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let total: u64 = accepted.iter().sum();

    // Let the last notifies and pulls land, then count.
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let done = {
            let tally = tally.lock().expect("tally");
            (0..args.groups).all(|g| tally.per_group[g] >= accepted[g] * args.online as u64)
        };
        if done || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for device in &devices {
        device.abort();
    }

    // The offline devices come back.
    let mut catch_up = Histogram::default();
    let mut caught_up = 0u64;
    for (group, token) in laggards.iter().enumerate() {
        let mut device = Device::open(&args, group, token, "bench-offline").await?;
        let began = Instant::now();
        let items = device.pull_all(Some(&group_ids[group]), group, None, true).await?;
        catch_up.record(began.elapsed().as_micros() as u64);
        caught_up += items;
    }

    let tally = tally.lock().expect("tally");
    let expected: u64 = accepted.iter().map(|a| a * args.online as u64).sum();
    let unique = tally.received - tally.duplicates;
    println!(
        "{}",
        json!({
            "scenario": "group",
            "groups": args.groups,
            "members": args.members,
            "online_devices_per_group": args.online,
            "target_rate": args.rate,
            "accepted": total,
            "accepted_per_s": (total as f64 / send_seconds).round(),
            "mailbox_entries_per_s": (total as f64 * args.members as f64 / send_seconds).round(),
            "send_to_pulled_ms": {
                "p50": tally.latency.quantile(0.50) as f64 / 1000.0,
                "p99": tally.latency.quantile(0.99) as f64 / 1000.0,
                "samples": tally.latency.total(),
            },
            "send_to_notified_ms": {
                "p50": tally.to_notify.quantile(0.50) as f64 / 1000.0,
                "p99": tally.to_notify.quantile(0.99) as f64 / 1000.0,
            },
            "raw_postgres_rows_per_s": args.raw_postgres_rows_per_s,
            "missing": expected.saturating_sub(unique),
            "duplicated": tally.duplicates,
            "catch_up": {
                "items": caught_up,
                "ms_max": catch_up.quantile(1.0) as f64 / 1000.0,
            },
        })
    );
    Ok(())
}

/// One device: its connection, session and event stream.
struct Device {
    conn: GrpcConn,
    session_id: String,
    events: crate::grpc_conn::MessageStream,
    /// Highest mailbox position acked, and fetched.
    acked: u64,
    fetched: u64,
    /// Notifies not yet passed by a pull: (mailbox_seq, arrival micros).
    notified: std::collections::VecDeque<(u64, u64)>,
}

impl Device {
    async fn open(args: &GroupArgs, index: usize, token: &str, device_id: &str) -> anyhow::Result<Self> {
        let mut conn = connect(args, index).await?;
        conn.authorize(token)?;
        let (session_id, events) = conn.open_session(device_id.to_owned()).await?;
        Ok(Self {
            conn,
            session_id,
            events,
            acked: 0,
            fetched: 0,
            notified: Default::default(),
        })
    }

    /// Pulls on every notify until the task is aborted.
    async fn follow(mut self, group_id: String, group: usize, tally: Arc<Mutex<Tally>>) -> anyhow::Result<()> {
        let mut seen = HashSet::new();
        // Whatever is already there first (the group's creation).
        self.pull_all(Some(&group_id), group, Some((&tally, &mut seen)), false)
            .await?;
        while let Some(event) = self.events.next().await? {
            if let Some(Event::GroupNotify(notify)) = ServerEvent::decode(event)?.event {
                self.notified.push_back((notify.mailbox_seq, unix_micros()));
                // A notify at or below what this device already fetched
                // was covered by an earlier pull, as a client skips it.
                if notify.mailbox_seq > self.fetched {
                    self.pull_all(Some(&group_id), group, Some((&tally, &mut seen)), false)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Pulls pages until the mailbox is drained, each pull acking the page
    /// before (one call per page, as a client following notifies does; the
    /// last page is acked by the next pull, or at once with `settle`);
    /// counts the benchmark's messages of `group_id` into `tally`. Returns
    /// the items.
    async fn pull_all(
        &mut self,
        group_id: Option<&str>,
        group: usize,
        mut tally: Option<(&Arc<Mutex<Tally>>, &mut HashSet<u64>)>,
        settle: bool,
    ) -> anyhow::Result<u64> {
        let mut items = 0;
        loop {
            let pull = PullMailboxRequest {
                session_id: self.session_id.clone(),
                after_mailbox_seq: None,
                limit: 500,
                ack_mailbox_seq: (self.fetched > self.acked).then_some(self.fetched),
            };
            let page = PullMailboxResponse::decode(self.conn.unary("/hubbub.v1.ClientApi/PullMailbox", &pull).await?)?;
            let now = unix_micros();
            let mut last = None;
            for item in &page.items {
                last = Some(item.mailbox_seq);
                items += 1;
                let Some(message) = &item.message else { continue };
                if message.content_type != CONTENT_TYPE || group_id.is_some_and(|id| id != message.group_id) {
                    continue;
                }
                if let Some((tally, seen)) = tally.as_mut() {
                    let mut tally = tally.lock().expect("tally");
                    tally.received += 1;
                    if !seen.insert(message.seq) {
                        tally.duplicates += 1;
                    } else {
                        tally.per_group[group] += 1;
                    }
                    let sent = u64::from_le_bytes(message.body[..8].try_into().expect("8 bytes"));
                    tally.latency.record(now.saturating_sub(sent));
                    while self.notified.front().is_some_and(|(seq, _)| *seq < item.mailbox_seq) {
                        self.notified.pop_front();
                    }
                    if let Some((_, at)) = self.notified.front() {
                        tally.to_notify.record(at.saturating_sub(sent));
                    }
                }
            }
            self.acked = self.acked.max(pull.ack_mailbox_seq.unwrap_or(0));
            if let Some(mailbox_seq) = last {
                self.fetched = self.fetched.max(mailbox_seq);
            }
            if !page.has_more {
                if settle && self.fetched > self.acked {
                    let ack = AckRequest {
                        session_id: self.session_id.clone(),
                        mailbox_seq: self.fetched,
                    };
                    self.conn.unary("/hubbub.v1.ClientApi/Ack", &ack).await?;
                    self.acked = self.fetched;
                }
                return Ok(items);
            }
        }
    }
}

async fn connect(args: &GroupArgs, index: usize) -> anyhow::Result<GrpcConn> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index % args.sources.max(1)) as u8));
    GrpcConn::connect(Some(source).filter(|_| args.gateway.ip().is_loopback()), args.gateway).await
}

/// The send time in microseconds, then filler.
fn body(size: usize) -> Vec<u8> {
    let mut body = unix_micros().to_le_bytes().to_vec();
    body.resize(size, b'x');
    body
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn rand_u32() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}
