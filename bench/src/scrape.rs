//! Reads a role's `/metrics` (process CPU and memory) over plain HTTP/1.1.

use anyhow::Context;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CPU seconds and resident bytes of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `process_resident_memory_bytes`.
    pub resident_bytes: f64,
}

/// `address`'s `/metrics` as text.
async fn text(address: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("scrape {address}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// The value of the metric line `name` in `text`.
fn value(address: SocketAddr, text: &str, name: &str) -> anyhow::Result<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("{address}/metrics has no {name}"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// One metric of `address`'s `/metrics`.
pub async fn metric(address: SocketAddr, name: &str) -> anyhow::Result<f64> {
    value(address, &text(address).await?, name)
}

/// Scrapes `address`'s `/metrics`.
pub async fn sample(address: SocketAddr) -> anyhow::Result<ProcessSample> {
    let text = text(address).await?;
    Ok(ProcessSample {
        cpu_seconds: value(address, &text, "process_cpu_seconds_total")?,
        resident_bytes: value(address, &text, "process_resident_memory_bytes")?,
    })
}

/// Samples every address and adds them up.
pub async fn total(addresses: &[SocketAddr]) -> anyhow::Result<ProcessSample> {
    let mut sum = ProcessSample::default();
    for address in addresses {
        let one = sample(*address).await?;
        sum.cpu_seconds += one.cpu_seconds;
        sum.resident_bytes += one.resident_bytes;
    }
    Ok(sum)
}

/// CPU seconds a child process of ours has used (user + system).
pub fn child_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}
