//! `hubbub-bench floor`: what one delivery costs the kernel here, with no
//! hubbub in the way. One thread sends a payload-sized chunk to each of N
//! loopback TCP connections, round after round, while another process
//! (`floor-sink`) reads them as viewers would; it prints the sending
//! thread's CPU per send. On loopback the receiver's TCP processing runs in
//! the sender's system call, so this is the least CPU any server can spend
//! per delivery on this machine; a gateway's CPU per delivery is read
//! against it.

use anyhow::{Context, bail};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Connections written to (each end in its own process: at most ~19,900).
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Rounds of one send per connection.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Pause between rounds, in ms (a room's batches are this far apart).
    #[arg(long, default_value_t = 200)]
    pub gap_ms: u64,
    /// Bytes per send (a one-message room batch as a gateway writes it).
    #[arg(long, default_value_t = 170)]
    pub payload: usize,
}

/// The receiving side: accepts `sockets` connections on `port` and reads
/// until every one has closed.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub sockets: usize,
}

pub fn run(args: FloorArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    drop(listener); // the sink listens on it; a brief race with nothing else
    let mut sink = Command::new(std::env::current_exe()?)
        .args(["floor-sink", "--port", &address.port().to_string()])
        .args(["--sockets", &args.sockets.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("start floor-sink")?;
    let mut ready = [0u8; 1];
    sink.stdout
        .as_mut()
        .context("sink stdout")?
        .read_exact(&mut ready)
        .context("the sink did not start")?;
    let connecting = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let mut sockets = Vec::with_capacity(args.sockets);
    for i in 0..args.sockets {
        // Spread over 16 source addresses, as the viewers are.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 16) as u8));
        let socket = connecting.block_on(crate::grpc_conn::dial(Some(source), address))?;
        let socket = socket.into_std()?;
        socket.set_nonblocking(true)?;
        sockets.push(socket);
    }
    std::thread::sleep(Duration::from_secs(1));
    let payload = vec![b'x'; args.payload.max(1)];
    let (mut sends, mut full) = (0u64, 0u64);
    let started = Instant::now();
    let cpu_before = thread_cpu_ns()?;
    for _ in 0..args.rounds {
        for socket in &mut sockets {
            match (&*socket).write(&payload) {
                Ok(_) => sends += 1,
                Err(err) if err.kind() == ErrorKind::WouldBlock => full += 1,
                Err(err) => bail!("send: {err}"),
            }
        }
        std::thread::sleep(Duration::from_millis(args.gap_ms));
    }
    let cpu = thread_cpu_ns()? - cpu_before;
    let elapsed = started.elapsed();
    drop(sockets);
    let _ = sink.wait();
    println!(
        "{}",
        serde_json::json!({
            "scenario": "floor",
            "sockets": args.sockets,
            "payload": args.payload,
            "sends": sends,
            "sends_refused_full": full,
            "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
            "cpu_us_per_send": ((cpu as f64 / 1000.0 / sends.max(1) as f64) * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

/// CPU time of the calling thread, in ns (its pauses between rounds excluded).
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .context("/proc/thread-self/schedstat")
}

pub async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    std::io::stdout().write_all(b"r")?;
    std::io::stdout().flush()?;
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..args.sockets {
        let (mut socket, _) = listener.accept().await?;
        readers.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = [0u8; 4096];
            while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
    }
    while readers.join_next().await.is_some() {}
    Ok(())
}
