//! A viewer's `Connect` over HTTP/1.1 binary gRPC-web, as a browser's fetch
//! sends it: the gateway's lean path. Its other calls (JoinRoom) go over a
//! shared HTTP/2 connection ([`crate::grpc_conn::GrpcConn`]), as a browser
//! multiplexes them.

use crate::grpc_conn::MessageStream;
use anyhow::{Context, bail};
use hubbub_proto::v1::{ConnectRequest, ServerEvent, server_event::Event};
use prost::Message;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens a lean Connect from `source` to `target`: the Welcome's session id
/// and guest token, and the events after it. The request is written and the
/// response read on the socket itself, as a browser's network stack would:
/// a load generator with an HTTP client task per viewer would spend more
/// CPU per event than the gateway it measures.
pub async fn open(
    source: Option<IpAddr>,
    target: SocketAddr,
    device_id: String,
) -> anyhow::Result<(String, String, MessageStream)> {
    let mut socket = crate::grpc_conn::dial(source, target).await?;
    let message = ConnectRequest {
        device_id,
        client_info: "hubbub-bench lean".into(),
    }
    .encode_to_vec();
    // Origin-form, as browsers send it (the lean path judges the request line).
    let mut request = format!(
        "POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n\r\n",
        message.len() + 5
    )
    .into_bytes();
    request.push(0);
    request.extend_from_slice(&(message.len() as u32).to_be_bytes());
    request.extend_from_slice(&message);
    socket.write_all(&request).await?;
    let mut read = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if read.len() > 16 * 1024 || socket.read_buf(&mut read).await? == 0 {
            bail!("Connect: no response head");
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!("Connect: {}", head.lines().next().unwrap_or(""));
    }
    if let Some(status) = head
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .filter(|s| s.trim() != "0")
    {
        bail!("Connect: grpc-status {}", status.trim());
    }
    if !head.contains("cache-control: no-store") || !head.contains("transfer-encoding: chunked") {
        bail!("Connect was not served by the lean path (is gateway.lean_connect on?)");
    }
    let mut events = MessageStream::chunked(socket, read.split_off(head_end));
    let welcome = events.next().await?.context("stream ended before Welcome")?;
    let Some(Event::Welcome(welcome)) = ServerEvent::decode(welcome)?.event else {
        bail!("first event was not Welcome");
    };
    Ok((welcome.session_id, welcome.guest_token, events))
}
